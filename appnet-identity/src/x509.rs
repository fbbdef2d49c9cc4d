//! The facts appnet reads from one X.509 certificate, parsed once with
//! `x509-parser` so every check below works on plain data.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Key usage bits appnet checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct KeyUsageBits {
    pub(crate) digital_signature: bool,
    pub(crate) key_cert_sign: bool,
    pub(crate) crl_sign: bool,
}

/// Extended key usage purposes appnet checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct EkuBits {
    pub(crate) server_auth: bool,
    pub(crate) client_auth: bool,
}

/// What one certificate says about itself.
#[derive(Debug, Clone)]
pub(crate) struct CertFacts {
    pub(crate) uri_sans: Vec<String>,
    /// `None` when there is no basic-constraints extension.
    pub(crate) is_ca: Option<bool>,
    pub(crate) key_usage: Option<KeyUsageBits>,
    pub(crate) eku: Option<EkuBits>,
    pub(crate) not_before: SystemTime,
    pub(crate) not_after: SystemTime,
}

impl CertFacts {
    /// Parses DER; the error is a human-readable reason.
    pub(crate) fn parse(der: &[u8]) -> Result<Self, String> {
        let (rest, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
        if !rest.is_empty() {
            return Err(format!(
                "{} trailing bytes after the certificate",
                rest.len()
            ));
        }
        let ext = |e: x509_parser::error::X509Error| format!("bad extension: {e}");
        let uri_sans = match cert.subject_alternative_name().map_err(ext)? {
            Some(san) => san
                .value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::URI(u) => Some((*u).to_owned()),
                    _ => None,
                })
                .collect(),
            None => Vec::new(),
        };
        let is_ca = cert.basic_constraints().map_err(ext)?.map(|b| b.value.ca);
        let key_usage = cert.key_usage().map_err(ext)?.map(|k| KeyUsageBits {
            digital_signature: k.value.digital_signature(),
            key_cert_sign: k.value.key_cert_sign(),
            crl_sign: k.value.crl_sign(),
        });
        let eku = cert.extended_key_usage().map_err(ext)?.map(|e| EkuBits {
            server_auth: e.value.server_auth || e.value.any,
            client_auth: e.value.client_auth || e.value.any,
        });
        let validity = cert.validity();
        Ok(Self {
            uri_sans,
            is_ca,
            key_usage,
            eku,
            not_before: to_system_time(validity.not_before.timestamp()),
            not_after: to_system_time(validity.not_after.timestamp()),
        })
    }
}

/// Seconds since the Unix epoch (possibly negative) as a `SystemTime`.
pub(crate) fn to_system_time(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}
