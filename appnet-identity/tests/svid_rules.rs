//! Every X509-SVID rule (SPIFFE X509-SVID standard §4–5), each broken by a
//! certificate built here with rcgen, and each reported by its own error.

use std::time::{Duration, SystemTime};

use appnet_identity::{
    CertificateAuthority, CertificateDer, SpiffeBundle, SpiffeId, SvidError, TrustBundle,
    TrustDomain, verify_svid,
};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

const HOUR: Duration = Duration::from_secs(3600);

struct Pki {
    now: SystemTime,
    root_der: CertificateDer<'static>,
    root: Issuer<'static, KeyPair>,
    inter_der: CertificateDer<'static>,
    inter: Issuer<'static, KeyPair>,
}

fn ca_params(cn: &str, now: SystemTime, constraint: BasicConstraints) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(constraint);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = (now - HOUR).into();
    p.not_after = (now + 10 * HOUR).into();
    p
}

impl Pki {
    fn new() -> Self {
        let now = SystemTime::now();
        let root_key = KeyPair::generate().unwrap();
        let root_params = ca_params("root", now, BasicConstraints::Unconstrained);
        let root_der = root_params.self_signed(&root_key).unwrap().der().clone();
        let root = Issuer::new(root_params, root_key);
        let inter_key = KeyPair::generate().unwrap();
        let inter_params = ca_params("inter", now, BasicConstraints::Constrained(0));
        let inter_der = inter_params
            .signed_by(&inter_key, &root)
            .unwrap()
            .der()
            .clone();
        let inter = Issuer::new(inter_params, inter_key);
        Self {
            now,
            root_der,
            root,
            inter_der,
            inter,
        }
    }

    fn bundle(&self, td: &str) -> TrustBundle {
        TrustBundle::from(
            SpiffeBundle::new(td.parse().unwrap(), vec![self.root_der.clone()]).unwrap(),
        )
    }

    /// A good leaf for spiffe://td/ns/a/sa/b, modified by `f`.
    fn leaf(&self, f: impl FnOnce(&mut CertificateParams)) -> Vec<CertificateDer<'static>> {
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        p.subject_alt_names = vec![SanType::URI("spiffe://td/ns/a/sa/b".try_into().unwrap())];
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.not_before = (self.now - HOUR).into();
        p.not_after = (self.now + HOUR).into();
        f(&mut p);
        let key = KeyPair::generate().unwrap();
        let leaf = p.signed_by(&key, &self.inter).unwrap().der().clone();
        vec![leaf, self.inter_der.clone()]
    }

    fn check(&self, chain: &[CertificateDer<'_>]) -> Result<SpiffeId, SvidError> {
        verify_svid(chain, &self.bundle("td"), self.now).map(|v| v.id)
    }
}

fn uri(s: &str) -> SanType {
    SanType::URI(s.try_into().unwrap())
}

#[test]
fn good_chain_verifies() {
    let pki = Pki::new();
    let chain = pki.leaf(|_| {});
    assert_eq!(
        pki.check(&chain).unwrap().to_string(),
        "spiffe://td/ns/a/sa/b"
    );
    // A trailing root in the presented chain is fine too.
    let mut with_root = chain.clone();
    with_root.push(pki.root_der.clone());
    assert!(pki.check(&with_root).is_ok());
    // Without the EKU extension the leaf is still valid (it is optional).
    let no_eku = pki.leaf(|p| p.extended_key_usages.clear());
    assert!(pki.check(&no_eku).is_ok());
}

#[test]
fn empty_chain() {
    let pki = Pki::new();
    assert_eq!(pki.check(&[]), Err(SvidError::EmptyChain));
}

#[test]
fn no_uri_san() {
    let pki = Pki::new();
    let chain =
        pki.leaf(|p| p.subject_alt_names = vec![SanType::DnsName("a.test".try_into().unwrap())]);
    assert_eq!(pki.check(&chain), Err(SvidError::NoUriSan));
}

#[test]
fn two_uri_sans() {
    let pki = Pki::new();
    let chain = pki.leaf(|p| p.subject_alt_names.push(uri("spiffe://td/other")));
    assert_eq!(
        pki.check(&chain),
        Err(SvidError::MultipleUriSans { count: 2 })
    );
}

#[test]
fn uri_san_not_spiffe() {
    let pki = Pki::new();
    let chain = pki.leaf(|p| p.subject_alt_names = vec![uri("https://td/ns/a")]);
    assert!(matches!(
        pki.check(&chain),
        Err(SvidError::InvalidSpiffeId { uri, .. }) if uri == "https://td/ns/a"
    ));
}

#[test]
fn root_path_id() {
    let pki = Pki::new();
    let chain = pki.leaf(|p| p.subject_alt_names = vec![uri("spiffe://td")]);
    assert!(matches!(pki.check(&chain), Err(SvidError::RootPathId(_))));
}

#[test]
fn leaf_is_ca() {
    let pki = Pki::new();
    let chain = pki.leaf(|p| p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained));
    assert_eq!(pki.check(&chain), Err(SvidError::LeafIsCa));
}

#[test]
fn leaf_key_cert_sign() {
    let pki = Pki::new();
    let chain = pki.leaf(|p| p.key_usages.push(KeyUsagePurpose::KeyCertSign));
    assert_eq!(pki.check(&chain), Err(SvidError::LeafKeyCertSign));
}

#[test]
fn leaf_crl_sign() {
    let pki = Pki::new();
    let chain = pki.leaf(|p| p.key_usages.push(KeyUsagePurpose::CrlSign));
    assert_eq!(pki.check(&chain), Err(SvidError::LeafCrlSign));
}

#[test]
fn leaf_without_digital_signature() {
    let pki = Pki::new();
    let chain = pki.leaf(|p| p.key_usages = vec![KeyUsagePurpose::KeyEncipherment]);
    assert_eq!(
        pki.check(&chain),
        Err(SvidError::LeafMissingDigitalSignature)
    );
    let no_ku = pki.leaf(|p| p.key_usages.clear());
    assert_eq!(
        pki.check(&no_ku),
        Err(SvidError::LeafMissingDigitalSignature)
    );
}

#[test]
fn leaf_eku_needs_both() {
    let pki = Pki::new();
    let server_only =
        pki.leaf(|p| p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth]);
    assert_eq!(
        pki.check(&server_only),
        Err(SvidError::LeafExtendedKeyUsage {
            server_auth: true,
            client_auth: false
        })
    );
    let client_only =
        pki.leaf(|p| p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth]);
    assert_eq!(
        pki.check(&client_only),
        Err(SvidError::LeafExtendedKeyUsage {
            server_auth: false,
            client_auth: true
        })
    );
}

#[test]
fn intermediate_not_ca() {
    let pki = Pki::new();
    let mut p = ca_params("not a ca", pki.now, BasicConstraints::Unconstrained);
    p.is_ca = IsCa::ExplicitNoCa;
    let key = KeyPair::generate().unwrap();
    let bad_inter = p.signed_by(&key, &pki.root).unwrap().der().clone();
    let mut chain = pki.leaf(|_| {});
    chain[1] = bad_inter;
    assert_eq!(
        pki.check(&chain),
        Err(SvidError::IntermediateNotCa { index: 1 })
    );
}

#[test]
fn intermediate_without_key_cert_sign() {
    let pki = Pki::new();
    let mut p = ca_params("no sign", pki.now, BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().unwrap();
    let bad_inter = p.signed_by(&key, &pki.root).unwrap().der().clone();
    let mut chain = pki.leaf(|_| {});
    chain[1] = bad_inter;
    assert_eq!(
        pki.check(&chain),
        Err(SvidError::IntermediateMissingKeyCertSign { index: 1 })
    );
}

#[test]
fn validity_window() {
    let pki = Pki::new();
    let chain = pki.leaf(|_| {});
    let late = pki.now + 2 * HOUR;
    assert!(matches!(
        verify_svid(&chain, &pki.bundle("td"), late),
        Err(SvidError::Expired { index: 0, .. })
    ));
    let early = pki.now - 2 * HOUR;
    assert!(matches!(
        verify_svid(&chain, &pki.bundle("td"), early),
        Err(SvidError::NotYetValid { index: 0, .. })
    ));
    // The intermediate's window counts too.
    let very_late = pki.now + 11 * HOUR;
    let long_leaf = pki.leaf(|p| p.not_after = (pki.now + 100 * HOUR).into());
    assert!(matches!(
        verify_svid(&long_leaf, &pki.bundle("td"), very_late),
        Err(SvidError::Expired { index: 1, .. })
    ));
}

#[test]
fn unknown_trust_domain() {
    let pki = Pki::new();
    let chain = pki.leaf(|p| p.subject_alt_names = vec![uri("spiffe://elsewhere/ns/a/sa/b")]);
    assert_eq!(
        pki.check(&chain),
        Err(SvidError::UnknownTrustDomain("elsewhere".parse().unwrap()))
    );
}

#[test]
fn chain_only_to_own_trust_domain() {
    // Our root is trusted for trust domain "other", not for "td": a leaf of
    // "td" signed under it must not verify, even though the root is in the
    // bundle.
    let pki = Pki::new();
    let stranger = Pki::new();
    let mut bundle = pki.bundle("other");
    bundle
        .add(SpiffeBundle::new("td".parse().unwrap(), vec![stranger.root_der.clone()]).unwrap())
        .unwrap();
    let chain = pki.leaf(|_| {});
    assert_eq!(
        verify_svid(&chain, &bundle, pki.now),
        Err(SvidError::UntrustedChain("td".parse().unwrap()))
    );
}

#[test]
fn bad_signature() {
    let pki = Pki::new();
    let mut chain = pki.leaf(|_| {});
    let mut der = chain[0].to_vec();
    let last = der.len() - 3;
    der[last] ^= 0x55; // inside the signature BIT STRING
    chain[0] = CertificateDer::from(der);
    let err = pki.check(&chain).unwrap_err();
    assert!(matches!(err, SvidError::BadSignature(_)), "{err:?}");
}

#[test]
fn malformed_and_truncated() {
    let pki = Pki::new();
    let chain = pki.leaf(|_| {});
    let truncated = CertificateDer::from(chain[0][..chain[0].len() / 2].to_vec());
    assert!(matches!(
        pki.check(&[truncated]),
        Err(SvidError::Malformed { index: 0, .. })
    ));
    let garbage = CertificateDer::from(b"not a certificate".to_vec());
    assert!(matches!(
        pki.check(&[chain[0].clone(), garbage]),
        Err(SvidError::Malformed { index: 1, .. })
    ));
    let mut trailing = chain[0].to_vec();
    trailing.push(0);
    assert!(matches!(
        pki.check(&[CertificateDer::from(trailing)]),
        Err(SvidError::Malformed { index: 0, .. })
    ));
}

#[test]
fn root_rotation_overlap() {
    // Old and new roots side by side: leaves under either verify; after the
    // old root is dropped only the new one's do.
    let now = SystemTime::now();
    let td: TrustDomain = "td".parse().unwrap();
    let old = CertificateAuthority::generate_root(td.clone(), now - HOUR, 100 * HOUR).unwrap();
    let new = CertificateAuthority::generate_root(td.clone(), now - HOUR, 100 * HOUR).unwrap();
    let id = SpiffeId::istio(td.clone(), "ns", "sa").unwrap();
    let old_leaf = old.issue_svid(&id, now - HOUR, 10 * HOUR).unwrap();
    let new_leaf = new.issue_svid(&id, now - HOUR, 10 * HOUR).unwrap();
    let both = TrustBundle::from(
        SpiffeBundle::new(td.clone(), vec![old.root().clone(), new.root().clone()]).unwrap(),
    );
    assert!(verify_svid(old_leaf.chain(), &both, now).is_ok());
    assert!(verify_svid(new_leaf.chain(), &both, now).is_ok());
    let new_only = TrustBundle::from(new.bundle().unwrap());
    assert_eq!(
        verify_svid(old_leaf.chain(), &new_only, now).map(|v| v.id),
        Err(SvidError::UntrustedChain(td))
    );
    assert!(verify_svid(new_leaf.chain(), &new_only, now).is_ok());
}
