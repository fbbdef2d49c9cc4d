//! Shared code for the appnet bench binaries.
//!
//! What this crate does: sets up the fixtures (a CA hierarchy, CSRs, chains,
//! TLS config pairs) and the single operations each figure times, once
//! through the appnet crates and once through the plain libraries they are
//! built on, plus a wall-clock [`compare`] that times the two paths in
//! interleaved rounds so a noisy machine skews both alike.
//!
//! What it does not do: statistics beyond a mean rate, or any timing
//! assertion. The `identity_bench` binary prints the figures; the smoke test
//! (`tests/smoke.rs`) runs every operation with a tiny budget so the benches
//! keep compiling and keep measuring what they claim.
//!
//! The figures:
//! 1. [`IssueBench`]: CSR → signed leaf, `CertificateAuthority::issue` vs
//!    x509-parser + rcgen by hand.
//! 2. [`VerifyBench`]: X509-SVID chain verification, `verify_svid` vs
//!    `webpki::EndEntityCert::verify_for_usage`.
//! 3. [`HandshakeBench`]: in-memory mutual TLS 1.3 handshakes, the
//!    `appnet_identity::tls` configs vs plain rustls WebPKI configs.
//!
//! And for appnet-xds (the `xds_bench` binary), [`XdsBench`]: encode and
//! decode + validate throughput of batches of WDS `Address` resources.
//!
//! ```no_run
//! use std::time::{Duration, SystemTime};
//! use appnet_benches::{Budget, IssueBench, compare};
//!
//! # fn main() -> Result<(), appnet_benches::BenchError> {
//! let bench = IssueBench::new(SystemTime::now())?;
//! let budget = Budget::from_secs_f64(0.2).expect("a positive budget");
//! let cmp = compare(
//!     &budget,
//!     || bench.through_crate().map(drop),
//!     || bench.raw().map(drop),
//! )?;
//! println!("{:.0} vs {:.0} ops/s", cmp.ours.per_second(), cmp.reference.per_second());
//! # Ok(()) }
//! ```

pub mod fanout;
mod handshake;
mod issue;
mod measure;
mod pki;
mod verify;
mod xds;

pub use handshake::{Established, HandshakeBench, SERVER_NAME, TlsPair};
pub use issue::IssueBench;
pub use measure::{Budget, Comparison, Throughput, budget_from_args, compare, run_for};
pub use verify::VerifyBench;
pub use xds::{Batch, XdsBench};

use appnet_identity::{CaError, SpiffeId, SpiffeIdError, SvidError};

/// Why a fixture could not be built or an operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// The appnet CA refused to build or issue.
    #[error("appnet CA: {0}")]
    Ca(#[from] CaError),
    /// `verify_svid` rejected a chain.
    #[error("X509-SVID verification: {0}")]
    Svid(#[from] SvidError),
    /// A fixed SPIFFE ID did not parse.
    #[error("SPIFFE ID: {0}")]
    SpiffeId(#[from] SpiffeIdError),
    /// The raw path could not parse or verify the CSR.
    #[error("raw CSR check: {0}")]
    Csr(String),
    /// rcgen could not build or sign a certificate.
    #[error("rcgen: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// webpki rejected a chain or a trust anchor.
    #[error("webpki: {0}")]
    Webpki(#[from] webpki::Error),
    /// appnet could not build its TLS credentials or configs.
    #[error("appnet TLS config: {0}")]
    TlsConfig(#[from] appnet_identity::tls::TlsError),
    /// rustls refused a config or failed the handshake.
    #[error("rustls: {0}")]
    Tls(#[from] rustls::Error),
    /// rustls could not build the WebPKI client verifier.
    #[error("rustls client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// Moving TLS records between the two in-memory ends failed.
    #[error("in-memory transport: {0}")]
    Io(#[from] std::io::Error),
    /// Neither end had anything to send but the handshake was not done.
    #[error("handshake stalled after {flights} flights")]
    HandshakeStalled {
        /// Flights exchanged before the stall.
        flights: usize,
    },
    /// A completed handshake authenticated someone else than expected.
    #[error("{side} saw peer {seen:?}, expected {expected}")]
    WrongPeer {
        /// Which end looked (`"client"` or `"server"`).
        side: &'static str,
        /// The identity expected.
        expected: SpiffeId,
        /// What the peer certificate held, if it held a SPIFFE ID.
        seen: Option<SpiffeId>,
    },
    /// appnet-xds refused a resource it had encoded itself.
    #[error("xDS resource: {0}")]
    Xds(#[from] appnet_xds::ResourceError),
    /// The plain client saw another server certificate than the one set up.
    #[error("the plain client saw another server certificate than server.test's")]
    WrongServerCertificate,
}
