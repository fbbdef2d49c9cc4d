//! SPIFFE workload identity for sidecar-less meshes.
//!
//! What this crate does:
//! - [`SpiffeId`] and [`TrustDomain`], parsed to the letter of the SPIFFE-ID
//!   standard, with Istio's `spiffe://<td>/ns/<ns>/sa/<sa>` form;
//! - workload keys and CSRs ([`WorkloadKey`], [`CertificateSigningRequest`]);
//! - a CA hierarchy ([`CertificateAuthority`]: root → one intermediate per
//!   cluster → workload X509-SVIDs), where the issued identity always comes
//!   from the authenticated caller, never from the CSR;
//! - X509-SVID verification against a [`TrustBundle`] of several trust
//!   domains ([`verify_svid`]), and SPIFFE bundle JSON ([`SpiffeBundle`]);
//! - rustls mutual-TLS configs whose verifiers check the chain and the peer's
//!   SPIFFE ID (see [`tls`]);
//! - certificate rotation: a pure schedule and a driver publishing on a
//!   `tokio::sync::watch` channel (see [`rotation`]).
//!
//! What it does not do: JWT-SVIDs, CRLs/OCSP, or reading the environment.
//! Time is always passed in (`now`), so every rule is testable.
//!
//! # Features
//! - `istio-ca`: the Istio CSR API (`istio.v1.auth.IstioCertificateService`),
//!   a tonic client and server.
//!
//! # Example: issue and verify an SVID
//! ```
//! use std::time::{Duration, SystemTime};
//! use appnet_identity::{
//!     CertificateAuthority, SpiffeId, TrustBundle, TrustDomain, WorkloadKey, verify_svid,
//! };
//!
//! let now = SystemTime::now();
//! let td: TrustDomain = "cluster.local".parse()?;
//! let root = CertificateAuthority::generate_root(td.clone(), now, Duration::from_secs(86400 * 365))?;
//! let cluster = root.issue_intermediate("east", now, Duration::from_secs(86400 * 30))?;
//!
//! // The workload makes a key and a CSR; the CA decides the identity.
//! let key = WorkloadKey::generate()?;
//! let id = SpiffeId::istio(td, "default", "web")?;
//! let csr = key.csr(&id)?;
//! let chain = cluster.issue(&csr, &id, now, Duration::from_secs(86400))?;
//!
//! let bundle = TrustBundle::from(root.bundle()?);
//! let verified = verify_svid(&chain, &bundle, now)?;
//! assert_eq!(verified.id, id);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod bundle;
mod ca;
mod csr;
mod spiffe;
mod svid;
mod x509;

#[cfg(feature = "istio-ca")]
pub mod istio_ca;

#[doc(hidden)]
pub mod fuzzing;
pub mod rotation;
pub mod tls;

pub use bundle::{BundleError, SpiffeBundle, TrustBundle, USE_JWT_SVID, USE_X509_SVID};
pub use ca::{
    CaError, CertificateAuthority, DEFAULT_INTERMEDIATE_TTL, DEFAULT_ROOT_TTL, DEFAULT_WORKLOAD_TTL,
};
pub use csr::{CertificateSigningRequest, CsrError, KeyAlgorithm, VerifiedCsr, WorkloadKey};
pub use spiffe::{
    MAX_SPIFFE_ID_LEN, MAX_TRUST_DOMAIN_LEN, SPIFFE_SCHEME, SpiffeId, SpiffeIdError, TrustDomain,
};
pub use svid::{Svid, SvidError, VerifiedSvid, leaf_spiffe_id, verify_svid};

/// Re-exported so callers need not depend on `rustls-pki-types` directly.
pub use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// PEM-encodes certificates, one `CERTIFICATE` block each, in order.
pub fn pem_certs(certs: &[CertificateDer<'_>]) -> String {
    certs
        .iter()
        .map(|c| pem::encode(&pem::Pem::new("CERTIFICATE", c.to_vec())))
        .collect()
}

/// Reads every `CERTIFICATE` block of a PEM text, in order.
///
/// # Errors
/// [`CaError::Load`] if the text is not PEM.
pub fn certs_from_pem(text: &str) -> Result<Vec<CertificateDer<'static>>, CaError> {
    Ok(pem::parse_many(text)
        .map_err(|e| CaError::Load(e.to_string()))?
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| CertificateDer::from(b.into_contents()))
        .collect())
}
