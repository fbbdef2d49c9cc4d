//! The wire contract: type URLs, field numbers pinned against hand-encoded
//! bytes, round trips domain → wire → `Any` → domain, and typed errors for
//! every kind of bad input.

mod wire {
    pub(crate) mod errors;
    pub(crate) mod fixtures;
    pub(crate) mod handcoded;
    pub(crate) mod props;
    pub(crate) mod roundtrip;
}
