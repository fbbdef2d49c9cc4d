//! Entry points for the fuzz targets in `fuzz/` and for the test that replays
//! their seed corpus under a normal `cargo test`. Each takes arbitrary bytes,
//! must never panic, and asserts the properties that must hold for what it
//! accepts. Not part of the stable API.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use crate::{
    CertificateAuthority, CertificateDer, CertificateSigningRequest, SpiffeBundle, SpiffeId,
    TrustBundle, TrustDomain, verify_svid,
};

/// Parses bytes (as UTF-8, lossily) as a SPIFFE ID and a trust domain;
/// whatever parses must print back to the same string and parse again.
pub fn spiffe_id(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    if let Ok(id) = SpiffeId::new(&s) {
        let shown = id.to_string();
        assert_eq!(shown, s, "Display must round-trip");
        assert_eq!(SpiffeId::new(&shown).ok(), Some(id));
    }
    if let Ok(td) = TrustDomain::new(&s) {
        assert_eq!(td.to_string(), s);
    }
}

/// A fixed time and trust bundle for [`verify_chain`], made once.
fn verify_fixture() -> Option<&'static (SystemTime, TrustBundle)> {
    static FIXTURE: OnceLock<Option<(SystemTime, TrustBundle)>> = OnceLock::new();
    FIXTURE
        .get_or_init(|| {
            let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
            let td = TrustDomain::new("fuzz.test").ok()?;
            let ca =
                CertificateAuthority::generate_root(td, now, Duration::from_secs(86400)).ok()?;
            let bundle = TrustBundle::from(ca.bundle().ok()?);
            Some((now, bundle))
        })
        .as_ref()
}

/// Splits `data` into certificates (each prefixed by a 2-byte big-endian
/// length; at most 4) and verifies them as an X509-SVID chain. Garbage must
/// give an error, never a panic.
pub fn verify_chain(data: &[u8]) {
    let mut chain = Vec::new();
    let mut rest = data;
    while chain.len() < 4 && rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
        let take = len.min(rest.len());
        chain.push(CertificateDer::from(rest[..take].to_vec()));
        rest = &rest[take..];
    }
    if let Some((now, bundle)) = verify_fixture() {
        let _ = verify_svid(&chain, bundle, *now);
    }
    if let Some(leaf) = chain.first() {
        let _ = crate::leaf_spiffe_id(leaf);
    }
}

/// Reads bytes as a SPIFFE bundle document; an accepted bundle must write
/// out and read back equal.
pub fn bundle_json(data: &[u8]) {
    let Ok(td) = TrustDomain::new("fuzz.test") else {
        return;
    };
    if let Ok(bundle) = SpiffeBundle::from_json(td.clone(), data)
        && let Ok(text) = bundle.to_json()
    {
        let back = SpiffeBundle::from_json(td, text.as_bytes());
        assert_eq!(back.ok(), Some(bundle), "bundle JSON must round-trip");
    }
}

/// Reads bytes as a CSR, both as DER and (lossily) as PEM.
pub fn csr(data: &[u8]) {
    let _ = CertificateSigningRequest::from_der(data.to_vec()).verify();
    if let Ok(csr) = CertificateSigningRequest::from_pem(&String::from_utf8_lossy(data)) {
        let _ = csr.verify();
    }
}
