//! Figure 2: X509-SVID chain verification.
//!
//! Both paths verify the same chain (leaf + intermediate) against the same
//! root at the same time. `verify_svid` also parses every certificate with
//! x509-parser and checks the X509-SVID rules; the webpki reference is the
//! signature and path check alone, so it is a floor, not a like-for-like
//! rival.

use std::time::SystemTime;

use appnet_identity::{
    CertificateDer, SpiffeId, SvidError, TrustBundle, VerifiedSvid, verify_svid,
};
use rustls_pki_types::{TrustAnchor, UnixTime};

use crate::BenchError;
use crate::pki::{LEAF_TTL, Pki};

/// A workload chain, the bundle with its root, and the same root as a
/// webpki trust anchor.
#[derive(Debug)]
pub struct VerifyBench {
    id: SpiffeId,
    chain: Vec<CertificateDer<'static>>,
    bundle: TrustBundle,
    anchors: Vec<TrustAnchor<'static>>,
    now: SystemTime,
}

impl VerifyBench {
    /// Issues an SVID and keeps leaf + intermediate; verification happens
    /// at `now`.
    ///
    /// # Errors
    /// A [`BenchError`] if the CA or the trust anchor cannot be made.
    pub fn new(now: SystemTime) -> Result<Self, BenchError> {
        let pki = Pki::generate(now)?;
        let id = pki.id("web")?;
        let svid = pki.intermediate.issue_svid(&id, pki.issued_at, LEAF_TTL)?;
        let chain = svid.chain().iter().take(2).cloned().collect();
        let anchors = vec![webpki::anchor_from_trusted_cert(pki.root.root())?.to_owned()];
        Ok(Self {
            id,
            chain,
            bundle: pki.bundle,
            anchors,
            now,
        })
    }

    /// The identity in the leaf.
    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    /// The chain verified: leaf, then intermediate.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// One `verify_svid`.
    ///
    /// # Errors
    /// [`BenchError::Svid`] if the chain does not verify.
    pub fn through_crate(&self) -> Result<VerifiedSvid, BenchError> {
        Ok(verify_svid(&self.chain, &self.bundle, self.now)?)
    }

    /// One `webpki::EndEntityCert::verify_for_usage` (client auth, no
    /// revocation), parsing the leaf as webpki needs.
    ///
    /// # Errors
    /// [`BenchError::Webpki`] if the chain does not verify.
    pub fn raw(&self) -> Result<(), BenchError> {
        let since_epoch = self
            .now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let (leaf, intermediates) = self
            .chain
            .split_first()
            .ok_or(BenchError::Svid(SvidError::EmptyChain))?;
        let leaf = webpki::EndEntityCert::try_from(leaf)?;
        leaf.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &self.anchors,
            intermediates,
            UnixTime::since_unix_epoch(since_epoch),
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )?;
        Ok(())
    }
}
