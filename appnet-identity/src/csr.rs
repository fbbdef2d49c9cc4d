//! Workload keys and certificate signing requests.
//!
//! A workload (or the node proxy acting for it) generates a P-256 key with
//! [`WorkloadKey::generate`] and a CSR for its SPIFFE ID with
//! [`WorkloadKey::csr`]. A CA reads a CSR with [`CertificateSigningRequest::verify`],
//! which checks the self-signature and the key type and returns only the
//! public key: what the CSR *asks* for (subject, SANs, CA flags) is never
//! trusted, the CA decides the identity from the authenticated caller.

use rcgen::{CertificateParams, DistinguishedName, KeyPair, SanType};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

use crate::SpiffeId;

/// Why a key or CSR could not be made or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CsrError {
    /// The PEM text has no `CERTIFICATE REQUEST` block, or is not PEM.
    #[error("not a PEM certificate request: {0}")]
    Pem(String),
    /// The DER bytes are not a PKCS#10 certificate request.
    #[error("malformed certificate request: {0}")]
    Malformed(String),
    /// The request's self-signature does not verify with its own key.
    #[error("certificate request signature does not verify")]
    BadSignature,
    /// The request's key type is not one appnet issues for.
    #[error("unsupported key in certificate request: {0}")]
    UnsupportedKey(String),
    /// The key could not be generated or the request could not be encoded.
    #[error("could not generate key or request: {0}")]
    Generate(String),
}

/// The key algorithms a CA accepts in a CSR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyAlgorithm {
    /// ECDSA on P-256 (what Istio's node proxy uses).
    EcdsaP256,
    /// ECDSA on P-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
    /// RSA with a modulus of at least 2048 bits.
    Rsa {
        /// Modulus size in bits.
        bits: usize,
    },
}

/// A workload's private key: ECDSA P-256, PKCS#8.
pub struct WorkloadKey {
    key: KeyPair,
}

impl std::fmt::Debug for WorkloadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadKey")
            .field("algorithm", &"ECDSA P-256")
            .finish_non_exhaustive()
    }
}

impl WorkloadKey {
    /// Generates a fresh P-256 key.
    ///
    /// # Errors
    /// [`CsrError::Generate`] if the system RNG fails.
    pub fn generate() -> Result<Self, CsrError> {
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map(|key| Self { key })
            .map_err(|e| CsrError::Generate(e.to_string()))
    }

    /// A CSR for `id`: one URI SAN, empty subject, signed by this key.
    ///
    /// # Errors
    /// [`CsrError::Generate`] if the request cannot be encoded.
    pub fn csr(&self, id: &SpiffeId) -> Result<CertificateSigningRequest, CsrError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        let uri = id
            .to_string()
            .try_into()
            .map_err(|e: rcgen::Error| CsrError::Generate(e.to_string()))?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        let csr = params
            .serialize_request(&self.key)
            .map_err(|e| CsrError::Generate(e.to_string()))?;
        Ok(CertificateSigningRequest {
            der: csr.der().to_vec(),
        })
    }

    /// The PKCS#8 DER of the private key, as rustls wants it.
    pub fn private_key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialize_der()))
    }

    /// The private key as PKCS#8 PEM.
    pub fn to_pem(&self) -> String {
        self.key.serialize_pem()
    }
}

/// A PKCS#10 certificate signing request, as DER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSigningRequest {
    der: Vec<u8>,
}

/// What a CA takes from a CSR after checking it: the public key only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCsr {
    /// The SubjectPublicKeyInfo, DER.
    pub(crate) spki_der: Vec<u8>,
    /// The key's algorithm.
    pub algorithm: KeyAlgorithm,
    /// The URI SANs the request asked for. Informational only: issuance
    /// ignores them.
    pub requested_uris: Vec<String>,
}

impl CertificateSigningRequest {
    /// Wraps DER bytes (not checked until [`verify`](Self::verify)).
    pub fn from_der(der: impl Into<Vec<u8>>) -> Self {
        Self { der: der.into() }
    }

    /// Reads the first `CERTIFICATE REQUEST` (or `NEW CERTIFICATE REQUEST`)
    /// PEM block.
    ///
    /// # Errors
    /// [`CsrError::Pem`] when there is no such block.
    pub fn from_pem(pem_text: &str) -> Result<Self, CsrError> {
        let blocks = pem::parse_many(pem_text).map_err(|e| CsrError::Pem(e.to_string()))?;
        blocks
            .into_iter()
            .find(|b| matches!(b.tag(), "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST"))
            .map(|b| Self {
                der: b.into_contents(),
            })
            .ok_or_else(|| CsrError::Pem("no CERTIFICATE REQUEST block".into()))
    }

    /// The DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The request as PEM.
    pub fn to_pem(&self) -> String {
        pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", self.der.clone()))
    }

    /// Parses the request, checks its self-signature and that its key is
    /// ECDSA P-256/P-384, Ed25519 or RSA ≥ 2048 bits.
    ///
    /// # Errors
    /// [`CsrError::Malformed`], [`CsrError::BadSignature`] or
    /// [`CsrError::UnsupportedKey`].
    pub fn verify(&self) -> Result<VerifiedCsr, CsrError> {
        let (rest, csr) = X509CertificationRequest::from_der(&self.der)
            .map_err(|e| CsrError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(CsrError::Malformed(format!(
                "{} trailing bytes after the request",
                rest.len()
            )));
        }
        let info = &csr.certification_request_info;
        let spki = &info.subject_pki;
        let oid = &spki.algorithm.algorithm;
        let algorithm = if *oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok());
            match curve {
                Some(c) if c == OID_EC_P256 => KeyAlgorithm::EcdsaP256,
                Some(c) if c == OID_NIST_EC_P384 => KeyAlgorithm::EcdsaP384,
                Some(c) => return Err(CsrError::UnsupportedKey(format!("EC curve {c}"))),
                None => {
                    return Err(CsrError::UnsupportedKey(
                        "EC key without a named curve".into(),
                    ));
                }
            }
        } else if *oid == OID_SIG_ED25519 {
            KeyAlgorithm::Ed25519
        } else if *oid == OID_PKCS1_RSAENCRYPTION {
            let bits = match spki.parsed() {
                Ok(PublicKey::RSA(rsa)) => rsa.key_size(),
                _ => return Err(CsrError::Malformed("unreadable RSA public key".into())),
            };
            if bits < 2048 {
                return Err(CsrError::UnsupportedKey(format!("RSA key of {bits} bits")));
            }
            KeyAlgorithm::Rsa { bits }
        } else {
            return Err(CsrError::UnsupportedKey(format!("key algorithm {oid}")));
        };
        csr.verify_signature().map_err(|_| CsrError::BadSignature)?;
        let requested_uris = csr
            .requested_extensions()
            .into_iter()
            .flatten()
            .filter_map(|ext| match ext {
                x509_parser::extensions::ParsedExtension::SubjectAlternativeName(san) => {
                    Some(san.general_names.iter().filter_map(|n| match n {
                        x509_parser::extensions::GeneralName::URI(u) => Some((*u).to_owned()),
                        _ => None,
                    }))
                }
                _ => None,
            })
            .flatten()
            .collect();
        Ok(VerifiedCsr {
            spki_der: spki.raw.to_vec(),
            algorithm,
            requested_uris,
        })
    }
}
