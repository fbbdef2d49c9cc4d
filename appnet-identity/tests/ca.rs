//! The CA hierarchy and CSR handling: what an issued leaf looks like, that
//! the identity comes from the caller, and that bad CSRs and bad CA material
//! are typed errors.

use std::time::{Duration, SystemTime};

use appnet_identity::{
    CaError, CertificateAuthority, CertificateSigningRequest, CsrError, DEFAULT_WORKLOAD_TTL,
    KeyAlgorithm, SpiffeId, TrustBundle, TrustDomain, WorkloadKey, verify_svid,
};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

const DAY: Duration = Duration::from_secs(86400);

fn td() -> TrustDomain {
    "cluster.local".parse().unwrap()
}

fn hierarchy(now: SystemTime) -> (CertificateAuthority, CertificateAuthority) {
    let root = CertificateAuthority::generate_root(td(), now, 3650 * DAY).unwrap();
    let inter = root.issue_intermediate("east", now, 365 * DAY).unwrap();
    (root, inter)
}

#[test]
fn issued_leaf_has_exactly_the_svid_shape() {
    let now = SystemTime::now();
    let (root, inter) = hierarchy(now);
    let key = WorkloadKey::generate().unwrap();
    let id = SpiffeId::istio(td(), "default", "web").unwrap();
    let csr = key.csr(&id).unwrap();
    let chain = inter.issue(&csr, &id, now, DEFAULT_WORKLOAD_TTL).unwrap();
    assert_eq!(chain.len(), 3, "leaf → intermediate → root");
    assert_eq!(chain[1], *inter.certificate());
    assert_eq!(chain[2], *root.certificate());

    let (_, leaf) = X509Certificate::from_der(&chain[0]).unwrap();
    let sans: Vec<_> = leaf
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .clone();
    assert_eq!(
        sans,
        vec![GeneralName::URI("spiffe://cluster.local/ns/default/sa/web")]
    );
    let bc = leaf.basic_constraints().unwrap().unwrap();
    assert!(!bc.value.ca);
    let ku = leaf.key_usage().unwrap().unwrap();
    assert!(ku.critical, "key usage must be critical");
    assert!(ku.value.digital_signature());
    assert!(!ku.value.key_cert_sign() && !ku.value.crl_sign());
    let eku = leaf.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    let lifetime = leaf.validity().not_after.timestamp() - leaf.validity().not_before.timestamp();
    assert_eq!(lifetime, 86400);

    // Serials are random: two issues differ.
    let again = inter.issue(&csr, &id, now, DEFAULT_WORKLOAD_TTL).unwrap();
    let (_, leaf2) = X509Certificate::from_der(&again[0]).unwrap();
    assert_ne!(leaf.raw_serial(), leaf2.raw_serial());

    // And the chain verifies against the root.
    let bundle = TrustBundle::from(root.bundle().unwrap());
    assert_eq!(verify_svid(&chain, &bundle, now).unwrap().id, id);
}

#[test]
fn identity_comes_from_the_caller_not_the_csr() {
    let now = SystemTime::now();
    let (_, inter) = hierarchy(now);
    let key = WorkloadKey::generate().unwrap();
    let asked = SpiffeId::istio(td(), "kube-system", "admin").unwrap();
    let csr = key.csr(&asked).unwrap();
    let verified = csr.verify().unwrap();
    assert_eq!(verified.requested_uris, vec![asked.to_string()]);
    assert_eq!(verified.algorithm, KeyAlgorithm::EcdsaP256);

    let caller = SpiffeId::istio(td(), "default", "web").unwrap();
    let chain = inter.issue(&csr, &caller, now, DAY).unwrap();
    let (_, leaf) = X509Certificate::from_der(&chain[0]).unwrap();
    let uris: Vec<String> = leaf
        .extensions()
        .iter()
        .filter_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => Some(
                san.general_names
                    .iter()
                    .filter_map(|n| match n {
                        GeneralName::URI(u) => Some(u.to_string()),
                        _ => None,
                    })
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(uris, vec![caller.to_string()]);
}

#[test]
fn intermediate_per_cluster_all_chain_to_root() {
    let now = SystemTime::now();
    let root = CertificateAuthority::generate_root(td(), now, 3650 * DAY).unwrap();
    let bundle = TrustBundle::from(root.bundle().unwrap());
    for cluster in ["east", "west", "north"] {
        let inter = root.issue_intermediate(cluster, now, 30 * DAY).unwrap();
        let id = SpiffeId::istio(td(), cluster, "app").unwrap();
        let svid = inter.issue_svid(&id, now, DAY).unwrap();
        assert_eq!(verify_svid(svid.chain(), &bundle, now).unwrap().id, id);
    }
}

#[test]
fn issuance_refusals() {
    let now = SystemTime::now();
    let (_, inter) = hierarchy(now);
    let key = WorkloadKey::generate().unwrap();
    let foreign: SpiffeId = "spiffe://other/ns/a/sa/b".parse().unwrap();
    let csr = key.csr(&foreign).unwrap();
    assert!(matches!(
        inter.issue(&csr, &foreign, now, DAY),
        Err(CaError::WrongTrustDomain { .. })
    ));
    let root_id = td().id();
    assert!(matches!(
        inter.issue(&csr, &root_id, now, DAY),
        Err(CaError::RootId(_))
    ));
    let ok_id = SpiffeId::istio(td(), "a", "b").unwrap();
    assert!(matches!(
        inter.issue(&csr, &ok_id, now, Duration::ZERO),
        Err(CaError::ZeroTtl)
    ));
    assert!(matches!(
        inter.issue(&csr, &ok_id, now + 400 * DAY, DAY),
        Err(CaError::CaNotValid)
    ));
}

#[test]
fn lifetime_is_clamped_to_the_ca() {
    let now = SystemTime::now();
    let root = CertificateAuthority::generate_root(td(), now, 10 * DAY).unwrap();
    let inter = root.issue_intermediate("c", now, 100 * DAY).unwrap();
    let id = SpiffeId::istio(td(), "a", "b").unwrap();
    let svid = inter.issue_svid(&id, now, 1000 * DAY).unwrap();
    assert!(svid.not_after() <= root.not_after());
    assert!(inter.not_after() <= root.not_after());
}

#[test]
fn csr_with_bad_signature_is_rejected() {
    let now = SystemTime::now();
    let (_, inter) = hierarchy(now);
    let id = SpiffeId::istio(td(), "a", "b").unwrap();
    let csr = WorkloadKey::generate().unwrap().csr(&id).unwrap();
    let mut der = csr.der().to_vec();
    let n = der.len();
    der[n - 4] ^= 0x01; // inside the signature
    let tampered = CertificateSigningRequest::from_der(der);
    assert_eq!(tampered.verify(), Err(CsrError::BadSignature));
    assert!(matches!(
        inter.issue(&tampered, &id, now, DAY),
        Err(CaError::Csr(CsrError::BadSignature))
    ));
}

#[test]
fn csr_with_unsupported_key_is_rejected() {
    // Turn the P-256 curve OID (…3.1.7) into an unknown curve (…3.1.8).
    let id = SpiffeId::istio(td(), "a", "b").unwrap();
    let der = WorkloadKey::generate()
        .unwrap()
        .csr(&id)
        .unwrap()
        .der()
        .to_vec();
    let p256 = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    let at = der.windows(p256.len()).position(|w| w == p256).unwrap();
    let mut bad = der.clone();
    bad[at + p256.len() - 1] = 0x08;
    assert!(matches!(
        CertificateSigningRequest::from_der(bad).verify(),
        Err(CsrError::UnsupportedKey(msg)) if msg.contains("1.2.840.10045.3.1.8")
    ));
}

#[test]
fn garbage_and_truncated_csrs() {
    assert!(matches!(
        CertificateSigningRequest::from_pem("hello"),
        Err(CsrError::Pem(_))
    ));
    assert!(matches!(
        CertificateSigningRequest::from_pem(
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        ),
        Err(CsrError::Pem(_))
    ));
    assert!(matches!(
        CertificateSigningRequest::from_der(vec![0x30, 0x03, 0x02, 0x01]).verify(),
        Err(CsrError::Malformed(_))
    ));
    let id = SpiffeId::istio(td(), "a", "b").unwrap();
    let der = WorkloadKey::generate()
        .unwrap()
        .csr(&id)
        .unwrap()
        .der()
        .to_vec();
    for cut in [1, 10, der.len() / 2, der.len() - 1] {
        assert!(matches!(
            CertificateSigningRequest::from_der(der[..cut].to_vec()).verify(),
            Err(CsrError::Malformed(_))
        ));
    }
    let mut trailing = der.clone();
    trailing.extend_from_slice(b"xx");
    assert!(matches!(
        CertificateSigningRequest::from_der(trailing).verify(),
        Err(CsrError::Malformed(_))
    ));
    // PEM round trip.
    let csr = CertificateSigningRequest::from_der(der.clone());
    let back = CertificateSigningRequest::from_pem(&csr.to_pem()).unwrap();
    assert_eq!(back.der(), der.as_slice());
}

#[test]
fn ca_from_pem_round_trip_and_refusals() {
    let now = SystemTime::now();
    let (root, inter) = hierarchy(now);
    let loaded =
        CertificateAuthority::from_pem(td(), &inter.chain_pem(), &inter.key_pem()).unwrap();
    assert_eq!(loaded.chain(), inter.chain());
    let id = SpiffeId::istio(td(), "a", "b").unwrap();
    let svid = loaded.issue_svid(&id, now, DAY).unwrap();
    let bundle = TrustBundle::from(root.bundle().unwrap());
    assert_eq!(verify_svid(svid.chain(), &bundle, now).unwrap().id, id);

    assert!(matches!(
        CertificateAuthority::from_pem(td(), &inter.chain_pem(), &root.key_pem()),
        Err(CaError::KeyMismatch)
    ));
    assert!(matches!(
        CertificateAuthority::from_pem(td(), &svid.chain_pem(), &inter.key_pem()),
        Err(CaError::NotCa(_))
    ));
    assert!(matches!(
        CertificateAuthority::from_pem(td(), "garbage", &inter.key_pem()),
        Err(CaError::Load(_))
    ));
    assert!(matches!(
        CertificateAuthority::from_pem(td(), &inter.chain_pem(), "garbage"),
        Err(CaError::Load(_))
    ));
    let truncated = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    assert!(matches!(
        CertificateAuthority::from_pem(td(), truncated, &inter.key_pem()),
        Err(CaError::Load(_))
    ));
}
