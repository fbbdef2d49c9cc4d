//! **Not built yet.** This crate is a placeholder in the appnet workspace so
//! that the dependency graph in `DESIGN.md` exists from day one; it exports
//! nothing and claims nothing. See the project README for what works today.
