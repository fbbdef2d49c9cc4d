//! **Not built yet.** The reference `ztunnel`, `waypoint` and `control-plane`
//! binaries will live here, composed only from the appnet crates. Nothing in
//! this crate runs a mesh today; see the project README.
