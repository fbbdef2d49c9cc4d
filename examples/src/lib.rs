//! **Not built yet.** The reference `ztunnel`, `waypoint` and `control-plane`
//! binaries will live here, composed only from the appnet crates. Nothing in
//! this crate runs a mesh today; see the project README.

/// The project README's code examples, compiled and run as doc tests here
/// (the one crate that sees every library), so the README cannot drift
/// from the API.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
