//! Certificate rotation: a pure schedule and a tokio driver that publishes
//! renewed credentials on the `watch` channel the [`tls`](crate::tls)
//! configs read at every handshake.
//!
//! - [`RotationSchedule`] (with its [`RefreshPolicy`]) decides when to
//!   refresh: at half life with jitter, with exponential backoff after
//!   failures, never before notBefore nor after notAfter (the last try is
//!   just before expiry; if even that fails, [`RotationSchedule::wait`]
//!   keeps retrying at the backoff pace). It takes `now` and the jitter
//!   sample as inputs and does no IO.
//! - [`RotationHandle::start`] runs it: it fetches SVIDs from a
//!   [`CertificateSource`], sleeps with `tokio::time`, reads wall time from
//!   a [`Clock`] ([`SystemClock`], or [`TokioClock`] for tests on paused
//!   time), and publishes. A failed renewal never unpublishes the current
//!   credentials: they are served until a renewal succeeds, even past
//!   expiry (peers will then refuse them, which is the honest outcome).
//! - The handle also republishes the current SVID with a new trust bundle
//!   ([`RotationHandle::update_bundle`]), for root rotation.
//!
//! What it does not do: decide identities, build CSRs (a source does), or
//! persist credentials.
//!
//! ```no_run
//! use std::time::Duration;
//! use appnet_identity::rotation::{
//!     CertificateSource, Clock, RefreshPolicy, Renewal, RotationHandle, SystemClock,
//! };
//! use appnet_identity::tls::{self, AllowedPeers};
//! use appnet_identity::{CaError, CertificateAuthority, SpiffeId, TrustBundle};
//!
//! /// Issues SVIDs from an in-process CA.
//! struct LocalCa {
//!     ca: CertificateAuthority,
//!     id: SpiffeId,
//! }
//!
//! impl CertificateSource for LocalCa {
//!     type Error = CaError;
//!     async fn fetch(&self) -> Result<Renewal, CaError> {
//!         let svid = self.ca.issue_svid(&self.id, SystemClock.now(), Duration::from_secs(3600))?;
//!         Ok(Renewal::from(svid))
//!     }
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let now = SystemClock.now();
//! let ca = CertificateAuthority::generate_root("td".parse()?, now, Duration::from_secs(86400))?;
//! let bundle = TrustBundle::from(ca.bundle()?);
//! let id: SpiffeId = "spiffe://td/ns/a/sa/web".parse()?;
//! let rotation =
//!     RotationHandle::start(LocalCa { ca, id }, bundle, SystemClock, RefreshPolicy::default())
//!         .await;
//! // Every new handshake presents the SVID published at that moment.
//! let config = tls::server_config(rotation.credentials(), AllowedPeers::AnyTrusted, vec![])?;
//! # let _ = config;
//! println!("{:?}", rotation.status());
//! rotation.stop().await;
//! # Ok(()) }
//! ```

mod clock;
mod driver;
mod schedule;

pub use clock::{Clock, SystemClock, TokioClock};
pub use driver::{CertificateSource, Renewal, RotationError, RotationHandle, RotationStatus};
pub use schedule::{RefreshPolicy, RotationSchedule, Validity};
