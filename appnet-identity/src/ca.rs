//! A CA hierarchy: a root, one intermediate per cluster, and issuance of
//! workload X509-SVIDs from CSRs.
//!
//! The identity a leaf carries is the one the *caller* passes to
//! [`CertificateAuthority::issue`], decided by whoever authenticated the
//! requester; the CSR contributes its public key and nothing else.

use std::time::{Duration, SystemTime};

use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber, SubjectPublicKeyInfo,
};
use rustls_pki_types::CertificateDer;

use crate::bundle::SpiffeBundle;
use crate::csr::{CertificateSigningRequest, CsrError, WorkloadKey};
use crate::x509::CertFacts;
use crate::{SpiffeId, Svid, TrustDomain};

/// Default lifetime of a workload certificate (Istio's default too).
pub const DEFAULT_WORKLOAD_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Default lifetime of a per-cluster intermediate CA.
pub const DEFAULT_INTERMEDIATE_TTL: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// Default lifetime of a root CA.
pub const DEFAULT_ROOT_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);

/// Why a CA could not be built or could not issue.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// The CSR was malformed, badly signed or carried an unsupported key.
    #[error(transparent)]
    Csr(#[from] CsrError),
    /// The identity to issue is in another trust domain than this CA's.
    #[error("CA for trust domain {ca} cannot issue {requested}")]
    WrongTrustDomain {
        /// This CA's trust domain.
        ca: TrustDomain,
        /// The identity asked for.
        requested: SpiffeId,
    },
    /// An X509-SVID's SPIFFE ID must have a path.
    #[error("cannot issue an X509-SVID for the trust domain ID {0} (no path)")]
    RootId(SpiffeId),
    /// The requested lifetime is zero.
    #[error("certificate lifetime must be positive")]
    ZeroTtl,
    /// This CA expires before `now`, or is not valid yet.
    #[error("the CA certificate is not valid at the requested time")]
    CaNotValid,
    /// PEM or DER input for the CA could not be read.
    #[error("could not read CA material: {0}")]
    Load(String),
    /// The certificate given as a CA is not one.
    #[error("certificate is not a CA: {0}")]
    NotCa(&'static str),
    /// The private key does not belong to the CA certificate.
    #[error("the private key does not match the CA certificate")]
    KeyMismatch,
    /// rcgen failed to build or sign the certificate.
    #[error("signing failed: {0}")]
    Sign(String),
}

fn sign_err(e: rcgen::Error) -> CaError {
    CaError::Sign(e.to_string())
}

/// A certificate authority: a key and a chain from its certificate up to the
/// root (a root's chain is just itself).
#[derive(Debug)]
pub struct CertificateAuthority {
    trust_domain: TrustDomain,
    issuer: Issuer<'static, KeyPair>,
    chain: Vec<CertificateDer<'static>>,
    not_before: SystemTime,
    not_after: SystemTime,
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    // Positive and non-zero, as RFC 5280 asks.
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

fn ca_params(
    td: &TrustDomain,
    common_name: String,
    not_before: SystemTime,
    ttl: Duration,
    constraint: BasicConstraints,
) -> Result<CertificateParams, CaError> {
    if ttl.is_zero() {
        return Err(CaError::ZeroTtl);
    }
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, td.as_str());
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(constraint);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    // X509-SVID §3: a signing certificate may carry its trust domain's ID.
    params.subject_alt_names = vec![SanType::URI(
        td.id().to_string().try_into().map_err(sign_err)?,
    )];
    params.serial_number = Some(random_serial());
    params.not_before = not_before.into();
    params.not_after = (not_before + ttl).into();
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn new_key() -> Result<KeyPair, CaError> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(sign_err)
}

impl CertificateAuthority {
    /// Generates a self-signed root CA for `trust_domain`, valid from `now`
    /// for `ttl` (see [`DEFAULT_ROOT_TTL`]).
    ///
    /// # Errors
    /// [`CaError::ZeroTtl`] or [`CaError::Sign`].
    pub fn generate_root(
        trust_domain: TrustDomain,
        now: SystemTime,
        ttl: Duration,
    ) -> Result<Self, CaError> {
        let params = ca_params(
            &trust_domain,
            format!("appnet root CA {trust_domain}"),
            now,
            ttl,
            BasicConstraints::Unconstrained,
        )?;
        let key = new_key()?;
        let cert = params.self_signed(&key).map_err(sign_err)?;
        Ok(Self {
            trust_domain,
            chain: vec![cert.der().clone()],
            issuer: Issuer::new(params, key),
            not_before: now,
            not_after: now + ttl,
        })
    }

    /// Issues an intermediate CA for `cluster`, signed by this CA, valid from
    /// `now` for `ttl` (see [`DEFAULT_INTERMEDIATE_TTL`]), clamped to this
    /// CA's own expiry. It may sign leaves only (path length 0).
    ///
    /// # Errors
    /// [`CaError::ZeroTtl`], [`CaError::CaNotValid`] or [`CaError::Sign`].
    pub fn issue_intermediate(
        &self,
        cluster: &str,
        now: SystemTime,
        ttl: Duration,
    ) -> Result<Self, CaError> {
        let ttl = self.clamp(now, ttl)?;
        let params = ca_params(
            &self.trust_domain,
            format!("appnet intermediate CA {cluster}"),
            now,
            ttl,
            BasicConstraints::Constrained(0),
        )?;
        let key = new_key()?;
        let cert = params.signed_by(&key, &self.issuer).map_err(sign_err)?;
        let mut chain = vec![cert.der().clone()];
        chain.extend(self.chain.iter().cloned());
        Ok(Self {
            trust_domain: self.trust_domain.clone(),
            chain,
            issuer: Issuer::new(params, key),
            not_before: now,
            not_after: now + ttl,
        })
    }

    /// Loads a CA from PEM: `chain_pem` holds this CA's certificate first,
    /// then its issuers up to the root; `key_pem` its PKCS#8 private key.
    ///
    /// # Errors
    /// [`CaError::Load`] for unreadable input, [`CaError::NotCa`] when the
    /// first certificate is not a CA allowed to sign certificates,
    /// [`CaError::KeyMismatch`] when the key is not the certificate's.
    pub fn from_pem(
        trust_domain: TrustDomain,
        chain_pem: &str,
        key_pem: &str,
    ) -> Result<Self, CaError> {
        let chain = crate::certs_from_pem(chain_pem)?;
        let first = chain
            .first()
            .ok_or_else(|| CaError::Load("no CERTIFICATE block".into()))?;
        let facts = CertFacts::parse(first).map_err(CaError::Load)?;
        if facts.is_ca != Some(true) {
            return Err(CaError::NotCa("basic constraints do not say cA=true"));
        }
        if !facts.key_usage.is_some_and(|k| k.key_cert_sign) {
            return Err(CaError::NotCa("key usage lacks keyCertSign"));
        }
        let key = KeyPair::from_pem(key_pem).map_err(|e| CaError::Load(e.to_string()))?;
        let cert_spki = cert_spki(first)?;
        if cert_spki != key.subject_public_key_info() {
            return Err(CaError::KeyMismatch);
        }
        let issuer = Issuer::from_ca_cert_der(first, key).map_err(sign_err)?;
        Ok(Self {
            trust_domain,
            not_before: facts.not_before,
            not_after: facts.not_after,
            chain,
            issuer,
        })
    }

    fn clamp(&self, now: SystemTime, ttl: Duration) -> Result<Duration, CaError> {
        if ttl.is_zero() {
            return Err(CaError::ZeroTtl);
        }
        if now < self.not_before || now >= self.not_after {
            return Err(CaError::CaNotValid);
        }
        let left = self
            .not_after
            .duration_since(now)
            .map_err(|_| CaError::CaNotValid)?;
        Ok(ttl.min(left))
    }

    /// Issues a workload X509-SVID for `identity` from `csr`, valid from
    /// `now` for `ttl` (see [`DEFAULT_WORKLOAD_TTL`]) but never past this
    /// CA's expiry. Returns the chain leaf → this CA → … → root.
    ///
    /// The leaf has exactly one URI SAN (`identity`), an empty subject (so
    /// the SAN is critical), `cA=false`, key usage digitalSignature
    /// (critical), EKU serverAuth + clientAuth and a random serial. Whatever
    /// the CSR requested besides its public key is ignored.
    ///
    /// # Errors
    /// [`CaError::Csr`] for a malformed, badly signed or unsupported CSR;
    /// [`CaError::WrongTrustDomain`], [`CaError::RootId`],
    /// [`CaError::ZeroTtl`], [`CaError::CaNotValid`], [`CaError::Sign`].
    pub fn issue(
        &self,
        csr: &CertificateSigningRequest,
        identity: &SpiffeId,
        now: SystemTime,
        ttl: Duration,
    ) -> Result<Vec<CertificateDer<'static>>, CaError> {
        if identity.trust_domain() != &self.trust_domain {
            return Err(CaError::WrongTrustDomain {
                ca: self.trust_domain.clone(),
                requested: identity.clone(),
            });
        }
        if identity.is_root() {
            return Err(CaError::RootId(identity.clone()));
        }
        let ttl = self.clamp(now, ttl)?;
        let verified = csr.verify()?;
        let public_key = SubjectPublicKeyInfo::from_der(&verified.spki_der)
            .map_err(|e| CsrError::UnsupportedKey(e.to_string()))?;

        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = vec![SanType::URI(
            identity.to_string().try_into().map_err(sign_err)?,
        )];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.serial_number = Some(random_serial());
        params.not_before = now.into();
        params.not_after = (now + ttl).into();
        params.use_authority_key_identifier_extension = true;
        let leaf = params
            .signed_by(&public_key, &self.issuer)
            .map_err(sign_err)?;
        let mut chain = Vec::with_capacity(self.chain.len() + 1);
        chain.push(leaf.der().clone());
        chain.extend(self.chain.iter().cloned());
        Ok(chain)
    }

    /// Generates a key, a CSR and a certificate for `identity` in one step:
    /// for a control plane issuing to itself, and for tests.
    ///
    /// # Errors
    /// As [`issue`](Self::issue).
    pub fn issue_svid(
        &self,
        identity: &SpiffeId,
        now: SystemTime,
        ttl: Duration,
    ) -> Result<Svid, CaError> {
        let key = WorkloadKey::generate()?;
        let csr = key.csr(identity)?;
        let chain = self.issue(&csr, identity, now, ttl)?;
        Svid::new(chain, key.private_key_der()).map_err(|e| CaError::Sign(e.to_string()))
    }

    /// The trust domain this CA issues for.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// This CA's certificate, then its issuers up to the root.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// This CA's own certificate.
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.chain[0]
    }

    /// The last certificate of the chain: the root.
    pub fn root(&self) -> &CertificateDer<'static> {
        &self.chain[self.chain.len() - 1]
    }

    /// The chain as PEM (this CA first).
    pub fn chain_pem(&self) -> String {
        crate::pem_certs(&self.chain)
    }

    /// The private key as PKCS#8 PEM (handle with care).
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// A SPIFFE bundle holding this CA's root, for peers to trust.
    ///
    /// # Errors
    /// [`CaError::Load`] if the root (as loaded from PEM) is not usable as a
    /// trust anchor.
    pub fn bundle(&self) -> Result<SpiffeBundle, CaError> {
        SpiffeBundle::new(self.trust_domain.clone(), vec![self.root().clone()])
            .map_err(|e| CaError::Load(e.to_string()))
    }

    /// When this CA's own certificate expires.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }
}

fn cert_spki(der: &[u8]) -> Result<Vec<u8>, CaError> {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
        .map_err(|e| CaError::Load(e.to_string()))?;
    Ok(cert.public_key().raw.to_vec())
}
