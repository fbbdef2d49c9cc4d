//! SPIFFE bundle JSON: round trips, the format's members, and every way a
//! document can be wrong.

use std::time::{Duration, SystemTime};

use appnet_identity::{BundleError, CertificateAuthority, SpiffeBundle, TrustBundle, TrustDomain};
use base64::Engine as _;
use serde_json::{Value, json};

fn td(s: &str) -> TrustDomain {
    s.parse().unwrap()
}

fn root(name: &str) -> CertificateAuthority {
    CertificateAuthority::generate_root(td(name), SystemTime::now(), Duration::from_secs(86400))
        .unwrap()
}

fn doc_of(bundle: &SpiffeBundle) -> Value {
    serde_json::from_str(&bundle.to_json().unwrap()).unwrap()
}

#[test]
fn round_trip_with_metadata_and_jwt_keys() {
    let a = root("example.org");
    let b = root("example.org");
    let bundle = SpiffeBundle::new(td("example.org"), vec![a.root().clone(), b.root().clone()])
        .unwrap()
        .with_sequence(7)
        .with_refresh_hint(Duration::from_secs(300));
    let mut doc = doc_of(&bundle);
    assert_eq!(doc["spiffe_sequence"], 7);
    assert_eq!(doc["spiffe_refresh_hint"], 300);
    let keys = doc["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    for (k, der) in keys.iter().zip(bundle.roots()) {
        assert_eq!(k["use"], "x509-svid");
        assert_eq!(k["kty"], "EC");
        assert_eq!(k["crv"], "P-256");
        assert_eq!(k["x"].as_str().unwrap().len(), 43, "32 bytes, base64url");
        assert_eq!(k["y"].as_str().unwrap().len(), 43);
        let x5c = k["x5c"].as_array().unwrap();
        assert_eq!(x5c.len(), 1);
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(x5c[0].as_str().unwrap())
            .unwrap();
        assert_eq!(decoded, der.to_vec());
    }
    // A JWT authority rides along untouched.
    let jwt =
        json!({"use": "jwt-svid", "kty": "EC", "kid": "k1", "crv": "P-256", "x": "AA", "y": "BB"});
    doc["keys"].as_array_mut().unwrap().push(jwt.clone());
    let text = serde_json::to_vec(&doc).unwrap();
    let back = SpiffeBundle::from_json(td("example.org"), &text).unwrap();
    assert_eq!(back.roots(), bundle.roots());
    assert_eq!(back.sequence(), Some(7));
    assert_eq!(back.refresh_hint(), Some(Duration::from_secs(300)));
    let again = doc_of(&back);
    assert_eq!(again["keys"].as_array().unwrap().last().unwrap(), &jwt);
    assert_eq!(
        SpiffeBundle::from_json(td("example.org"), back.to_json().unwrap().as_bytes()).unwrap(),
        back
    );
}

fn base_doc() -> Value {
    doc_of(&root("td").bundle().unwrap())
}

fn parse(doc: &Value) -> Result<SpiffeBundle, BundleError> {
    SpiffeBundle::from_json(td("td"), &serde_json::to_vec(doc).unwrap())
}

#[test]
fn missing_keys() {
    assert_eq!(parse(&json!({})), Err(BundleError::MissingKeys));
    assert_eq!(parse(&json!({"keys": 3})), Err(BundleError::MissingKeys));
}

#[test]
fn empty_keys_is_an_empty_bundle() {
    let b = parse(&json!({"keys": []})).unwrap();
    assert!(b.roots().is_empty());
}

#[test]
fn not_json() {
    assert!(matches!(
        SpiffeBundle::from_json(td("td"), b"{not json"),
        Err(BundleError::Json(_))
    ));
    assert!(matches!(
        SpiffeBundle::from_json(td("td"), b"[1,2]"),
        Err(BundleError::Json(_))
    ));
    assert!(matches!(
        SpiffeBundle::from_json(td("td"), &[0xff, 0xfe, 0x00]),
        Err(BundleError::Json(_))
    ));
}

#[test]
fn x5c_must_hold_exactly_one_cert() {
    let mut doc = base_doc();
    doc["keys"][0]["x5c"] = json!([]);
    assert_eq!(
        parse(&doc),
        Err(BundleError::X5cCount { index: 0, count: 0 })
    );
    let mut doc = base_doc();
    let c = doc["keys"][0]["x5c"][0].clone();
    doc["keys"][0]["x5c"] = json!([c.clone(), c]);
    assert_eq!(
        parse(&doc),
        Err(BundleError::X5cCount { index: 0, count: 2 })
    );
    let mut doc = base_doc();
    doc["keys"][0].as_object_mut().unwrap().remove("x5c");
    assert!(matches!(
        parse(&doc),
        Err(BundleError::BadKey { index: 0, .. })
    ));
}

#[test]
fn bad_certificates() {
    let mut doc = base_doc();
    doc["keys"][0]["x5c"] = json!(["!!!not base64"]);
    assert!(matches!(
        parse(&doc),
        Err(BundleError::BadCertificate { index: 0, .. })
    ));
    let mut doc = base_doc();
    doc["keys"][0]["x5c"] =
        json!([base64::engine::general_purpose::STANDARD.encode(b"garbage der")]);
    assert!(matches!(
        parse(&doc),
        Err(BundleError::BadCertificate { index: 0, .. })
    ));
    let mut doc = base_doc();
    let der = base64::engine::general_purpose::STANDARD
        .decode(doc["keys"][0]["x5c"][0].as_str().unwrap())
        .unwrap();
    doc["keys"][0]["x5c"] =
        json!([base64::engine::general_purpose::STANDARD.encode(&der[..der.len() / 2])]);
    assert!(matches!(
        parse(&doc),
        Err(BundleError::BadCertificate { index: 0, .. })
    ));
}

#[test]
fn jwk_parameters_must_match_the_certificate() {
    let other = base_doc();
    let mut doc = base_doc();
    assert_ne!(doc["keys"][0]["x"], other["keys"][0]["x"]);
    doc["keys"][0]["x"] = other["keys"][0]["x"].clone();
    assert_eq!(parse(&doc), Err(BundleError::KeyMismatch { index: 0 }));
    let mut missing = base_doc();
    missing["keys"][0].as_object_mut().unwrap().remove("y");
    assert_eq!(parse(&missing), Err(BundleError::KeyMismatch { index: 0 }));
    let mut doc3 = base_doc();
    doc3["keys"][0]["kty"] = json!("RSA");
    assert_eq!(parse(&doc3), Err(BundleError::KeyMismatch { index: 0 }));
}

#[test]
fn key_entries_must_be_objects_with_a_use() {
    assert!(matches!(
        parse(&json!({"keys": [5]})),
        Err(BundleError::BadKey { index: 0, .. })
    ));
    let mut doc = base_doc();
    doc["keys"][0].as_object_mut().unwrap().remove("use");
    assert!(matches!(
        parse(&doc),
        Err(BundleError::BadKey { index: 0, .. })
    ));
}

#[test]
fn metadata_members_must_be_unsigned_integers() {
    let mut doc = base_doc();
    doc["spiffe_sequence"] = json!(-1);
    assert_eq!(
        parse(&doc),
        Err(BundleError::BadMember {
            member: "spiffe_sequence"
        })
    );
    let mut doc = base_doc();
    doc["spiffe_refresh_hint"] = json!("soon");
    assert_eq!(
        parse(&doc),
        Err(BundleError::BadMember {
            member: "spiffe_refresh_hint"
        })
    );
}

#[test]
fn trust_domains_are_never_merged() {
    let a = root("a.test");
    let a2 = root("a.test");
    let b = root("b.test");
    let mut tb = TrustBundle::from_bundles([a.bundle().unwrap(), b.bundle().unwrap()]).unwrap();
    assert_eq!(tb.trust_domains().count(), 2);
    assert_eq!(
        tb.add(a2.bundle().unwrap()),
        Err(BundleError::DuplicateTrustDomain(td("a.test")))
    );
    assert!(matches!(
        TrustBundle::from_bundles([a.bundle().unwrap(), a2.bundle().unwrap()]),
        Err(BundleError::DuplicateTrustDomain(_))
    ));
    // Replacing is explicit and keeps other trust domains intact.
    let old = tb.replace(a2.bundle().unwrap()).unwrap();
    assert_eq!(old.roots(), a.bundle().unwrap().roots());
    assert_eq!(
        tb.get(&td("a.test")).unwrap().roots(),
        a2.bundle().unwrap().roots()
    );
    assert_eq!(
        tb.get(&td("b.test")).unwrap().roots(),
        b.bundle().unwrap().roots()
    );
    assert!(tb.anchors_for(&td("c.test")).is_none());
    assert!(tb.remove(&td("b.test")).is_some());
    assert_eq!(tb.trust_domains().count(), 1);
}
