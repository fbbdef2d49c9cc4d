//! Figure 1: CSR → signed leaf.
//!
//! Both paths do the same work per operation: parse the CSR, verify its
//! self-signature, read its public key, and sign a leaf with one URI SAN,
//! an empty subject, `cA=false`, digitalSignature, EKU serverAuth +
//! clientAuth, a random serial and an authority key identifier, with an
//! ECDSA P-256 CA key.

use std::time::SystemTime;

use appnet_identity::{
    CertificateAuthority, CertificateDer, CertificateSigningRequest, SpiffeId, TrustBundle,
    WorkloadKey,
};
use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber, SubjectPublicKeyInfo,
};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;

use crate::BenchError;
use crate::pki::{LEAF_TTL, Pki};

/// A pre-made CSR, the appnet intermediate CA that issues from it, and an
/// rcgen CA (its own P-256 key) for the hand-written path.
#[derive(Debug)]
pub struct IssueBench {
    pki: Pki,
    id: SpiffeId,
    csr: CertificateSigningRequest,
    raw_issuer: Issuer<'static, KeyPair>,
    raw_ca_certificate: CertificateDer<'static>,
}

impl IssueBench {
    /// Generates the CAs, a workload key and its CSR. Certificates are
    /// valid from a few minutes before `now`.
    ///
    /// # Errors
    /// A [`BenchError`] if any key or certificate cannot be made.
    pub fn new(now: SystemTime) -> Result<Self, BenchError> {
        let pki = Pki::generate(now)?;
        let id = pki.id("web")?;
        let csr = WorkloadKey::generate()
            .and_then(|key| key.csr(&id))
            .map_err(appnet_identity::CaError::from)?;

        let mut ca = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, pki.trust_domain.as_str());
        dn.push(DnType::CommonName, "raw rcgen CA");
        ca.distinguished_name = dn;
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.not_before = pki.issued_at.into();
        ca.not_after = (pki.issued_at + appnet_identity::DEFAULT_INTERMEDIATE_TTL).into();
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let raw_ca_certificate = ca.self_signed(&key)?.der().clone();
        Ok(Self {
            pki,
            id,
            csr,
            raw_issuer: Issuer::new(ca, key),
            raw_ca_certificate,
        })
    }

    /// The identity both paths put in the leaf.
    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    /// The time both paths issue at.
    pub fn issued_at(&self) -> SystemTime {
        self.pki.issued_at
    }

    /// A bundle with the appnet root, which [`through_crate`](Self::through_crate)
    /// chains lead to.
    pub fn crate_bundle(&self) -> &TrustBundle {
        &self.pki.bundle
    }

    /// The self-signed rcgen CA certificate that signs [`raw`](Self::raw)
    /// leaves.
    pub fn raw_ca_certificate(&self) -> &CertificateDer<'static> {
        &self.raw_ca_certificate
    }

    /// One issuance through `CertificateAuthority::issue`: the chain leaf →
    /// intermediate → root.
    ///
    /// # Errors
    /// [`BenchError::Ca`] if the CA refuses.
    pub fn through_crate(&self) -> Result<Vec<CertificateDer<'static>>, BenchError> {
        let ca: &CertificateAuthority = &self.pki.intermediate;
        Ok(ca.issue(&self.csr, &self.id, self.pki.issued_at, LEAF_TTL)?)
    }

    /// One issuance by hand: x509-parser parses and verifies the CSR, rcgen
    /// signs the leaf. Returns the leaf alone.
    ///
    /// # Errors
    /// [`BenchError::Csr`] for a CSR that does not parse or verify,
    /// [`BenchError::Rcgen`] if signing fails.
    pub fn raw(&self) -> Result<CertificateDer<'static>, BenchError> {
        let (rest, request) = X509CertificationRequest::from_der(self.csr.der())
            .map_err(|e| BenchError::Csr(e.to_string()))?;
        if !rest.is_empty() {
            return Err(BenchError::Csr("trailing bytes after the request".into()));
        }
        request
            .verify_signature()
            .map_err(|e| BenchError::Csr(e.to_string()))?;
        let public_key =
            SubjectPublicKeyInfo::from_der(request.certification_request_info.subject_pki.raw)?;

        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = vec![SanType::URI(self.id.to_string().try_into()?)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.serial_number = Some(random_serial());
        params.not_before = self.pki.issued_at.into();
        params.not_after = (self.pki.issued_at + LEAF_TTL).into();
        params.use_authority_key_identifier_extension = true;
        Ok(params
            .signed_by(&public_key, &self.raw_issuer)?
            .der()
            .clone())
    }
}

/// 16 random bytes, positive and non-zero (RFC 5280), from the same thread
/// RNG appnet uses.
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}
