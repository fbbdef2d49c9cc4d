//! X509-SVID verification (SPIFFE X509-SVID standard, sections 4 and 5) and
//! the [`Svid`] credential type.

use std::time::SystemTime;

use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

use crate::bundle::TrustBundle;
use crate::x509::CertFacts;
use crate::{SpiffeId, SpiffeIdError, TrustDomain};

/// Why a certificate chain is not a valid X509-SVID for a trust bundle.
/// One variant per rule; `index` is the position in the presented chain
/// (0 = leaf).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SvidError {
    /// No certificate was presented.
    #[error("empty certificate chain")]
    EmptyChain,
    /// A certificate is not parseable DER X.509.
    #[error("certificate {index} is malformed: {reason}")]
    Malformed {
        /// Position in the chain.
        index: usize,
        /// What the parser said.
        reason: String,
    },
    /// The leaf has no URI SAN.
    #[error("leaf has no URI SAN")]
    NoUriSan,
    /// The leaf has more than one URI SAN.
    #[error("leaf has {count} URI SANs; an X509-SVID has exactly one")]
    MultipleUriSans {
        /// How many.
        count: usize,
    },
    /// The leaf's URI SAN is not a SPIFFE ID.
    #[error("leaf URI SAN {uri:?} is not a SPIFFE ID: {error}")]
    InvalidSpiffeId {
        /// The SAN.
        uri: String,
        /// Why it is not a SPIFFE ID.
        error: SpiffeIdError,
    },
    /// The leaf's SPIFFE ID has no path (it names a trust domain).
    #[error("leaf SPIFFE ID {0} has no path")]
    RootPathId(SpiffeId),
    /// The leaf says it is a CA.
    #[error("leaf has cA=true")]
    LeafIsCa,
    /// The leaf has no key usage extension, or it lacks digitalSignature.
    #[error("leaf key usage lacks digitalSignature")]
    LeafMissingDigitalSignature,
    /// The leaf may sign certificates.
    #[error("leaf key usage has keyCertSign")]
    LeafKeyCertSign,
    /// The leaf may sign CRLs.
    #[error("leaf key usage has cRLSign")]
    LeafCrlSign,
    /// The leaf's extended key usage lacks serverAuth or clientAuth.
    #[error(
        "leaf extended key usage must have both serverAuth and clientAuth (server: {server_auth}, client: {client_auth})"
    )]
    LeafExtendedKeyUsage {
        /// Whether serverAuth was present.
        server_auth: bool,
        /// Whether clientAuth was present.
        client_auth: bool,
    },
    /// An intermediate is not a CA.
    #[error("certificate {index} signs the chain but is not a CA")]
    IntermediateNotCa {
        /// Position in the chain.
        index: usize,
    },
    /// An intermediate's key usage lacks keyCertSign.
    #[error("certificate {index} signs the chain but its key usage lacks keyCertSign")]
    IntermediateMissingKeyCertSign {
        /// Position in the chain.
        index: usize,
    },
    /// A certificate is not valid yet.
    #[error("certificate {index} is not valid before {not_before:?}")]
    NotYetValid {
        /// Position in the chain.
        index: usize,
        /// Its notBefore.
        not_before: SystemTime,
    },
    /// A certificate has expired.
    #[error("certificate {index} expired at {not_after:?}")]
    Expired {
        /// Position in the chain.
        index: usize,
        /// Its notAfter.
        not_after: SystemTime,
    },
    /// The trust bundle has no roots for the leaf's trust domain.
    #[error("no trust bundle for trust domain {0}")]
    UnknownTrustDomain(TrustDomain),
    /// No path from the leaf to a root of its own trust domain's bundle.
    #[error("chain does not lead to a root of trust domain {0}")]
    UntrustedChain(TrustDomain),
    /// A signature in the chain does not verify.
    #[error("bad signature in chain: {0}")]
    BadSignature(String),
    /// Any other path-validation failure, as webpki named it.
    #[error("chain validation failed: {0}")]
    Path(String),
}

/// A chain that passed [`verify_svid`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSvid {
    /// The leaf's SPIFFE ID.
    pub id: SpiffeId,
    /// The earliest notAfter along the chain: when this verification lapses.
    pub expires: SystemTime,
}

/// Checks the leaf rules only (SAN, CA flag, key usages, EKU) and returns
/// its SPIFFE ID and facts.
pub(crate) fn leaf_identity(der: &[u8]) -> Result<(SpiffeId, CertFacts), SvidError> {
    let leaf = CertFacts::parse(der).map_err(|reason| SvidError::Malformed { index: 0, reason })?;
    let uri = match leaf.uri_sans.as_slice() {
        [] => return Err(SvidError::NoUriSan),
        [uri] => uri,
        many => return Err(SvidError::MultipleUriSans { count: many.len() }),
    };
    let id = SpiffeId::new(uri).map_err(|error| SvidError::InvalidSpiffeId {
        uri: uri.clone(),
        error,
    })?;
    if id.is_root() {
        return Err(SvidError::RootPathId(id));
    }
    if leaf.is_ca == Some(true) {
        return Err(SvidError::LeafIsCa);
    }
    let ku = leaf.key_usage.unwrap_or_default();
    if ku.key_cert_sign {
        return Err(SvidError::LeafKeyCertSign);
    }
    if ku.crl_sign {
        return Err(SvidError::LeafCrlSign);
    }
    if !ku.digital_signature {
        return Err(SvidError::LeafMissingDigitalSignature);
    }
    if let Some(eku) = leaf.eku
        && !(eku.server_auth && eku.client_auth)
    {
        return Err(SvidError::LeafExtendedKeyUsage {
            server_auth: eku.server_auth,
            client_auth: eku.client_auth,
        });
    }
    Ok((id, leaf))
}

fn check_window(index: usize, facts: &CertFacts, now: SystemTime) -> Result<(), SvidError> {
    if now < facts.not_before {
        return Err(SvidError::NotYetValid {
            index,
            not_before: facts.not_before,
        });
    }
    if now > facts.not_after {
        return Err(SvidError::Expired {
            index,
            not_after: facts.not_after,
        });
    }
    Ok(())
}

/// Verifies `chain` (leaf first, then intermediates; a trailing root is
/// allowed) as an X509-SVID against `bundle` at time `now`.
///
/// Every rule of the X509-SVID standard is checked, each with its own
/// [`SvidError`]: exactly one URI SAN holding a SPIFFE ID with a path; the
/// leaf is not a CA, has digitalSignature and neither keyCertSign nor
/// cRLSign; an EKU, if present, has serverAuth and clientAuth; every
/// intermediate is a CA with keyCertSign; every certificate is inside its
/// validity window; and the chain leads (signatures checked by webpki) to a
/// root of the bundle of the leaf's *own* trust domain — roots of other
/// trust domains are never tried.
///
/// # Errors
/// The [`SvidError`] of the first rule that fails.
pub fn verify_svid(
    chain: &[CertificateDer<'_>],
    bundle: &TrustBundle,
    now: SystemTime,
) -> Result<VerifiedSvid, SvidError> {
    let leaf_der = chain.first().ok_or(SvidError::EmptyChain)?;
    let (id, leaf) = leaf_identity(leaf_der)?;
    check_window(0, &leaf, now)?;
    let mut expires = leaf.not_after;
    for (i, der) in chain.iter().enumerate().skip(1) {
        let facts =
            CertFacts::parse(der).map_err(|reason| SvidError::Malformed { index: i, reason })?;
        if facts.is_ca != Some(true) {
            return Err(SvidError::IntermediateNotCa { index: i });
        }
        if !facts.key_usage.is_some_and(|k| k.key_cert_sign) {
            return Err(SvidError::IntermediateMissingKeyCertSign { index: i });
        }
        check_window(i, &facts, now)?;
        expires = expires.min(facts.not_after);
    }
    let td = id.trust_domain();
    let anchors = bundle
        .anchors_for(td)
        .ok_or_else(|| SvidError::UnknownTrustDomain(td.clone()))?;
    let unix = UnixTime::since_unix_epoch(
        now.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default(),
    );
    let ee = webpki::EndEntityCert::try_from(leaf_der).map_err(|e| SvidError::Malformed {
        index: 0,
        reason: e.to_string(),
    })?;
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        anchors,
        &chain[1..],
        unix,
        // Both purposes were checked above when an EKU is present.
        webpki::KeyUsage::client_auth(),
        None,
        None,
    )
    .map_err(|e| match e {
        webpki::Error::UnknownIssuer => SvidError::UntrustedChain(td.clone()),
        webpki::Error::InvalidSignatureForPublicKey
        | webpki::Error::SignatureAlgorithmMismatch
        | webpki::Error::UnsupportedSignatureAlgorithmContext(_)
        | webpki::Error::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => {
            // webpki does not say which link failed. If every link the peer
            // presented verifies, the failure is at a root that merely
            // shares a subject name (as old and new roots do during
            // rotation): the chain does not lead to a trusted root.
            if presented_links_verify(chain) {
                SvidError::UntrustedChain(td.clone())
            } else {
                SvidError::BadSignature(format!("{e:?}"))
            }
        }
        other => SvidError::Path(format!("{other:?}")),
    })?;
    Ok(VerifiedSvid { id, expires })
}

/// Whether each certificate of `chain` is signed by the next one.
fn presented_links_verify(chain: &[CertificateDer<'_>]) -> bool {
    use x509_parser::prelude::{FromDer, X509Certificate};
    chain.windows(2).all(|pair| {
        match (
            X509Certificate::from_der(&pair[0]),
            X509Certificate::from_der(&pair[1]),
        ) {
            (Ok((_, child)), Ok((_, parent))) => {
                child.verify_signature(Some(parent.public_key())).is_ok()
            }
            _ => false,
        }
    })
}

/// An X509-SVID with its private key: what a workload presents in mutual
/// TLS. The key is never printed by `Debug`.
pub struct Svid {
    id: SpiffeId,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    not_before: SystemTime,
    not_after: SystemTime,
}

impl Clone for Svid {
    fn clone(&self) -> Self {
        Self {
            id: self.id.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            not_before: self.not_before,
            not_after: self.not_after,
        }
    }
}

impl std::fmt::Debug for Svid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Svid")
            .field("id", &self.id)
            .field("chain_len", &self.chain.len())
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl Svid {
    /// Builds an SVID from a chain (leaf first) and the leaf's private key.
    /// The leaf rules are checked (not the chain: see [`verify_svid`]).
    ///
    /// # Errors
    /// An [`SvidError`] for an empty chain or a leaf that breaks a rule.
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, SvidError> {
        let leaf = chain.first().ok_or(SvidError::EmptyChain)?;
        let (id, facts) = leaf_identity(leaf)?;
        Ok(Self {
            id,
            not_before: facts.not_before,
            not_after: facts.not_after,
            chain,
            key,
        })
    }

    /// The SPIFFE ID in the leaf.
    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    /// The chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The leaf's private key.
    pub fn key(&self) -> &PrivateKeyDer<'static> {
        &self.key
    }

    /// The leaf's notBefore.
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// The leaf's notAfter.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The chain as PEM, leaf first.
    pub fn chain_pem(&self) -> String {
        crate::pem_certs(&self.chain)
    }
}

/// The SPIFFE ID in a leaf certificate, checking the leaf rules only (for a
/// peer certificate rustls has already verified).
///
/// # Errors
/// An [`SvidError`] for a leaf that breaks a rule.
pub fn leaf_spiffe_id(leaf: &CertificateDer<'_>) -> Result<SpiffeId, SvidError> {
    leaf_identity(leaf).map(|(id, _)| id)
}
