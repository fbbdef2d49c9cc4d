//! Trust bundles: the X.509 roots of each trust domain, and the SPIFFE bundle
//! format (a JWKS with `spiffe_sequence` and `spiffe_refresh_hint`).
//!
//! A [`SpiffeBundle`] belongs to exactly one trust domain. A [`TrustBundle`]
//! holds one `SpiffeBundle` per trust domain and never merges two of them:
//! a leaf is only ever checked against the roots of its own trust domain.
//! Several roots in one bundle are how a root rotates (old and new side by
//! side, then new only).

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rustls_pki_types::{CertificateDer, TrustAnchor};
use serde_json::{Map, Value, json};
use x509_parser::oid_registry::{OID_EC_P256, OID_NIST_EC_P384, OID_NIST_EC_P521};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;

use crate::TrustDomain;

/// The JWK `use` of an X.509 authority in a SPIFFE bundle.
pub const USE_X509_SVID: &str = "x509-svid";
/// The JWK `use` of a JWT authority in a SPIFFE bundle.
pub const USE_JWT_SVID: &str = "jwt-svid";

/// Why a bundle could not be read or changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The document is not JSON, or not a JSON object.
    #[error("bundle is not a JSON object: {0}")]
    Json(String),
    /// The document has no `keys` array.
    #[error("bundle has no \"keys\" array")]
    MissingKeys,
    /// A key entry is not an object or lacks a required member.
    #[error("key {index}: {reason}")]
    BadKey {
        /// Position in `keys`.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// An x509-svid key does not hold exactly one certificate in `x5c`.
    #[error("key {index}: x5c must hold exactly one certificate, found {count}")]
    X5cCount {
        /// Position in `keys`.
        index: usize,
        /// How many it holds.
        count: usize,
    },
    /// A certificate could not be decoded or is not usable as a root.
    #[error("root {index}: {reason}")]
    BadCertificate {
        /// Position (in `keys`, or in the roots given).
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// The JWK's key parameters do not describe the certificate's key.
    #[error("key {index}: JWK parameters do not match the certificate's public key")]
    KeyMismatch {
        /// Position in `keys`.
        index: usize,
    },
    /// `spiffe_sequence` or `spiffe_refresh_hint` is not a non-negative integer.
    #[error("{member} must be a non-negative integer")]
    BadMember {
        /// The member name.
        member: &'static str,
    },
    /// A second bundle for a trust domain already present.
    #[error("a bundle for trust domain {0} is already present")]
    DuplicateTrustDomain(TrustDomain),
}

/// The X.509 authorities of one trust domain, with the SPIFFE bundle
/// metadata.
#[derive(Debug, Clone)]
pub struct SpiffeBundle {
    trust_domain: TrustDomain,
    roots: Vec<CertificateDer<'static>>,
    anchors: Vec<TrustAnchor<'static>>,
    sequence: Option<u64>,
    refresh_hint: Option<Duration>,
    /// `jwt-svid` and unknown-use keys, kept verbatim so a read-write round
    /// trip loses nothing.
    other_keys: Vec<Value>,
}

impl PartialEq for SpiffeBundle {
    fn eq(&self, other: &Self) -> bool {
        self.trust_domain == other.trust_domain
            && self.roots == other.roots
            && self.sequence == other.sequence
            && self.refresh_hint == other.refresh_hint
            && self.other_keys == other.other_keys
    }
}

fn anchor(index: usize, der: &CertificateDer<'_>) -> Result<TrustAnchor<'static>, BundleError> {
    webpki::anchor_from_trusted_cert(der)
        .map(|a| a.to_owned())
        .map_err(|e| BundleError::BadCertificate {
            index,
            reason: format!("{e:?}"),
        })
}

impl SpiffeBundle {
    /// A bundle of `roots` for `trust_domain`, without metadata.
    ///
    /// # Errors
    /// [`BundleError::BadCertificate`] for a root that does not parse.
    pub fn new(
        trust_domain: TrustDomain,
        roots: Vec<CertificateDer<'static>>,
    ) -> Result<Self, BundleError> {
        let anchors = roots
            .iter()
            .enumerate()
            .map(|(i, r)| anchor(i, r))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            trust_domain,
            roots,
            anchors,
            sequence: None,
            refresh_hint: None,
            other_keys: Vec::new(),
        })
    }

    /// Sets `spiffe_sequence`.
    pub fn with_sequence(mut self, sequence: u64) -> Self {
        self.sequence = Some(sequence);
        self
    }

    /// Sets `spiffe_refresh_hint`.
    pub fn with_refresh_hint(mut self, hint: Duration) -> Self {
        self.refresh_hint = Some(hint);
        self
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The X.509 roots.
    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.roots
    }

    /// The roots as webpki trust anchors.
    pub fn anchors(&self) -> &[TrustAnchor<'static>] {
        &self.anchors
    }

    /// `spiffe_sequence`, if set.
    pub fn sequence(&self) -> Option<u64> {
        self.sequence
    }

    /// `spiffe_refresh_hint`, if set.
    pub fn refresh_hint(&self) -> Option<Duration> {
        self.refresh_hint
    }

    /// Reads a SPIFFE bundle document for `trust_domain` (the document does
    /// not name its trust domain; the caller knows it).
    ///
    /// Keys with `use: x509-svid` become roots (exactly one certificate in
    /// `x5c`, base64 DER, and the JWK's key members must all be present and
    /// describe that certificate's key); keys
    /// with another `use` are kept verbatim but not used.
    ///
    /// # Errors
    /// A [`BundleError`] naming the first problem.
    pub fn from_json(trust_domain: TrustDomain, json: &[u8]) -> Result<Self, BundleError> {
        let doc: Value =
            serde_json::from_slice(json).map_err(|e| BundleError::Json(e.to_string()))?;
        let obj = doc
            .as_object()
            .ok_or_else(|| BundleError::Json("top level is not an object".into()))?;
        let keys = obj
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(BundleError::MissingKeys)?;
        let uint = |member: &'static str| -> Result<Option<u64>, BundleError> {
            match obj.get(member) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_u64()
                    .map(Some)
                    .ok_or(BundleError::BadMember { member }),
            }
        };
        let sequence = uint("spiffe_sequence")?;
        let refresh_hint = uint("spiffe_refresh_hint")?.map(Duration::from_secs);
        let mut roots = Vec::new();
        let mut anchors = Vec::new();
        let mut other_keys = Vec::new();
        for (index, key) in keys.iter().enumerate() {
            let bad = |reason: &str| BundleError::BadKey {
                index,
                reason: reason.to_owned(),
            };
            let key_obj = key.as_object().ok_or_else(|| bad("not an object"))?;
            let key_use = key_obj
                .get("use")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("missing \"use\""))?;
            if key_use != USE_X509_SVID {
                other_keys.push(key.clone());
                continue;
            }
            let x5c = key_obj
                .get("x5c")
                .and_then(Value::as_array)
                .ok_or_else(|| bad("x509-svid key without \"x5c\""))?;
            let [cert_b64] = x5c.as_slice() else {
                return Err(BundleError::X5cCount {
                    index,
                    count: x5c.len(),
                });
            };
            let der = cert_b64
                .as_str()
                .and_then(|s| STANDARD.decode(s).ok())
                .ok_or_else(|| BundleError::BadCertificate {
                    index,
                    reason: "x5c entry is not base64".into(),
                })?;
            let der = CertificateDer::from(der);
            let jwk =
                jwk_for(&der).map_err(|reason| BundleError::BadCertificate { index, reason })?;
            // Every public-key member (kty, crv, x, y / n, e) must be there
            // and describe the certificate's key.
            if jwk
                .iter()
                .any(|(name, value)| key_obj.get(name) != Some(value))
            {
                return Err(BundleError::KeyMismatch { index });
            }
            anchors.push(anchor(index, &der)?);
            roots.push(der);
        }
        Ok(Self {
            trust_domain,
            roots,
            anchors,
            sequence,
            refresh_hint,
            other_keys,
        })
    }

    /// Writes the bundle as a SPIFFE bundle document.
    ///
    /// # Errors
    /// [`BundleError::BadCertificate`] if a root's public key cannot be
    /// expressed as a JWK (an unsupported key type).
    pub fn to_json(&self) -> Result<String, BundleError> {
        let mut keys = Vec::with_capacity(self.roots.len() + self.other_keys.len());
        for (index, der) in self.roots.iter().enumerate() {
            let mut jwk =
                jwk_for(der).map_err(|reason| BundleError::BadCertificate { index, reason })?;
            jwk.insert("use".into(), json!(USE_X509_SVID));
            jwk.insert("x5c".into(), json!([STANDARD.encode(der)]));
            keys.push(Value::Object(jwk));
        }
        keys.extend(self.other_keys.iter().cloned());
        let mut doc = Map::new();
        doc.insert("keys".into(), Value::Array(keys));
        if let Some(seq) = self.sequence {
            doc.insert("spiffe_sequence".into(), json!(seq));
        }
        if let Some(hint) = self.refresh_hint {
            doc.insert("spiffe_refresh_hint".into(), json!(hint.as_secs()));
        }
        serde_json::to_string_pretty(&Value::Object(doc))
            .map_err(|e| BundleError::Json(e.to_string()))
    }
}

/// The JWK public-key members (`kty`, `crv`, `x`, `y`, `n`, `e`) describing
/// a certificate's key.
fn jwk_for(der: &[u8]) -> Result<Map<String, Value>, String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    let spki = cert.public_key();
    let mut m = Map::new();
    match spki.parsed().map_err(|e| e.to_string())? {
        PublicKey::EC(point) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .ok_or("EC key without a named curve")?;
            let (crv, len) = if curve == OID_EC_P256 {
                ("P-256", 32)
            } else if curve == OID_NIST_EC_P384 {
                ("P-384", 48)
            } else if curve == OID_NIST_EC_P521 {
                ("P-521", 66)
            } else {
                return Err(format!("unsupported EC curve {curve}"));
            };
            let data = point.data();
            if data.len() != 1 + 2 * len || data[0] != 0x04 {
                return Err("EC point is not uncompressed".into());
            }
            m.insert("kty".into(), json!("EC"));
            m.insert("crv".into(), json!(crv));
            m.insert("x".into(), json!(URL_SAFE_NO_PAD.encode(&data[1..=len])));
            m.insert("y".into(), json!(URL_SAFE_NO_PAD.encode(&data[1 + len..])));
        }
        PublicKey::RSA(rsa) => {
            let strip = |b: &[u8]| {
                let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
                URL_SAFE_NO_PAD.encode(&b[start..])
            };
            m.insert("kty".into(), json!("RSA"));
            m.insert("n".into(), json!(strip(rsa.modulus)));
            m.insert("e".into(), json!(strip(rsa.exponent)));
        }
        _ if spki.algorithm.algorithm == x509_parser::oid_registry::OID_SIG_ED25519 => {
            m.insert("kty".into(), json!("OKP"));
            m.insert("crv".into(), json!("Ed25519"));
            m.insert(
                "x".into(),
                json!(URL_SAFE_NO_PAD.encode(&spki.subject_public_key.data)),
            );
        }
        _ => {
            return Err(format!(
                "unsupported key algorithm {}",
                spki.algorithm.algorithm
            ));
        }
    }
    Ok(m)
}

/// The roots of every trust domain a workload trusts: its own, and any it
/// federates with. One [`SpiffeBundle`] per trust domain, never merged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrustBundle {
    domains: BTreeMap<TrustDomain, SpiffeBundle>,
}

impl TrustBundle {
    /// An empty bundle (trusts nothing).
    pub fn new() -> Self {
        Self::default()
    }

    /// A bundle of the given trust domains' bundles.
    ///
    /// # Errors
    /// [`BundleError::DuplicateTrustDomain`] if two share a trust domain.
    pub fn from_bundles(
        bundles: impl IntoIterator<Item = SpiffeBundle>,
    ) -> Result<Self, BundleError> {
        let mut tb = Self::new();
        for b in bundles {
            tb.add(b)?;
        }
        Ok(tb)
    }

    /// Adds a trust domain's bundle.
    ///
    /// # Errors
    /// [`BundleError::DuplicateTrustDomain`] if it is already present (use
    /// [`replace`](Self::replace) to update one).
    pub fn add(&mut self, bundle: SpiffeBundle) -> Result<(), BundleError> {
        let td = bundle.trust_domain.clone();
        if self.domains.contains_key(&td) {
            return Err(BundleError::DuplicateTrustDomain(td));
        }
        self.domains.insert(td, bundle);
        Ok(())
    }

    /// Puts `bundle` in place of its trust domain's bundle (root rotation),
    /// returning the old one.
    pub fn replace(&mut self, bundle: SpiffeBundle) -> Option<SpiffeBundle> {
        self.domains.insert(bundle.trust_domain.clone(), bundle)
    }

    /// Drops a trust domain.
    pub fn remove(&mut self, trust_domain: &TrustDomain) -> Option<SpiffeBundle> {
        self.domains.remove(trust_domain)
    }

    /// The bundle of one trust domain.
    pub fn get(&self, trust_domain: &TrustDomain) -> Option<&SpiffeBundle> {
        self.domains.get(trust_domain)
    }

    /// The trust anchors of one trust domain, if it is known.
    pub fn anchors_for(&self, trust_domain: &TrustDomain) -> Option<&[TrustAnchor<'static>]> {
        self.domains.get(trust_domain).map(|b| b.anchors())
    }

    /// The trust domains present.
    pub fn trust_domains(&self) -> impl Iterator<Item = &TrustDomain> {
        self.domains.keys()
    }

    /// Every trust domain's bundle.
    pub fn bundles(&self) -> impl Iterator<Item = &SpiffeBundle> {
        self.domains.values()
    }
}

impl From<SpiffeBundle> for TrustBundle {
    fn from(bundle: SpiffeBundle) -> Self {
        let mut domains = BTreeMap::new();
        domains.insert(bundle.trust_domain.clone(), bundle);
        Self { domains }
    }
}
