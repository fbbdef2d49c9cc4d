//! The CA hierarchy every figure starts from: an appnet root, one cluster
//! intermediate, and the trust bundle holding the root.

use std::time::{Duration, SystemTime};

use appnet_identity::{CertificateAuthority, SpiffeId, TrustBundle, TrustDomain};

use crate::BenchError;

/// The trust domain of every bench identity.
pub(crate) const TRUST_DOMAIN: &str = "bench.test";

/// How long before `now` certificates start being valid, so a clock read a
/// moment later by rustls never finds them "not valid yet".
const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// Lifetime of bench leaves: far longer than any run.
pub(crate) const LEAF_TTL: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Debug)]
pub(crate) struct Pki {
    pub(crate) trust_domain: TrustDomain,
    pub(crate) root: CertificateAuthority,
    pub(crate) intermediate: CertificateAuthority,
    pub(crate) bundle: TrustBundle,
    /// The `now` every certificate is issued at (a little before the
    /// caller's `now`).
    pub(crate) issued_at: SystemTime,
}

impl Pki {
    pub(crate) fn generate(now: SystemTime) -> Result<Self, BenchError> {
        let trust_domain: TrustDomain = TRUST_DOMAIN.parse()?;
        let issued_at = now.checked_sub(BACKDATE).unwrap_or(now);
        let root = CertificateAuthority::generate_root(
            trust_domain.clone(),
            issued_at,
            appnet_identity::DEFAULT_ROOT_TTL,
        )?;
        let intermediate = root.issue_intermediate(
            "bench",
            issued_at,
            appnet_identity::DEFAULT_INTERMEDIATE_TTL,
        )?;
        let bundle = TrustBundle::from(root.bundle()?);
        Ok(Self {
            trust_domain,
            root,
            intermediate,
            bundle,
            issued_at,
        })
    }

    /// The Istio-style ID of service account `sa` in namespace `default`.
    pub(crate) fn id(&self, sa: &str) -> Result<SpiffeId, BenchError> {
        Ok(SpiffeId::istio(self.trust_domain.clone(), "default", sa)?)
    }
}
