//! Smoke test for the identity benches: every operation runs with a tiny
//! budget, produces what it claims (valid SVIDs, verified chains, completed
//! handshakes with the expected peers), and is counted. No timing
//! assertions: this only keeps the benches from rotting.

use std::process::Command;
use std::time::{Duration, SystemTime};

use appnet_benches::{
    Budget, HandshakeBench, IssueBench, SERVER_NAME, VerifyBench, compare, run_for,
};
use appnet_identity::{CertificateDer, SpiffeBundle, TrustBundle, verify_svid};
use rustls::{HandshakeKind, ProtocolVersion};
use x509_parser::prelude::{FromDer, X509Certificate};

const TINY: Budget = Budget {
    warm_up: Duration::from_millis(1),
    measure: Duration::from_millis(20),
    rounds: 2,
};

/// `(OID, critical)` of every extension, sorted.
fn extensions(der: &CertificateDer<'_>) -> Vec<(String, bool)> {
    let (_, cert) = X509Certificate::from_der(der).expect("a certificate");
    let mut exts: Vec<_> = cert
        .extensions()
        .iter()
        .map(|e| (e.oid.to_id_string(), e.critical))
        .collect();
    exts.sort();
    exts
}

#[test]
fn issue_paths_make_the_same_kind_of_svid_and_count() {
    let now = SystemTime::now();
    let bench = IssueBench::new(now).expect("setup");

    let chain = bench.through_crate().expect("crate issue");
    assert_eq!(chain.len(), 3, "leaf, intermediate, root");
    let verified = verify_svid(&chain, bench.crate_bundle(), now).expect("crate leaf verifies");
    assert_eq!(&verified.id, bench.id());

    let raw = bench.raw().expect("raw issue");
    let raw_root = SpiffeBundle::new(
        bench.id().trust_domain().clone(),
        vec![bench.raw_ca_certificate().clone()],
    )
    .expect("raw CA as a bundle");
    let verified = verify_svid(
        std::slice::from_ref(&raw),
        &TrustBundle::from(raw_root),
        now,
    )
    .expect("raw leaf is a valid X509-SVID");
    assert_eq!(&verified.id, bench.id());
    assert_eq!(
        extensions(&chain[0]),
        extensions(&raw),
        "both paths must sign the same extensions"
    );

    let cmp = compare(
        &TINY,
        || bench.through_crate().map(drop),
        || bench.raw().map(drop),
    )
    .expect("issue loop");
    assert!(cmp.ours.ops > 0, "{cmp:?}");
    assert!(cmp.reference.ops > 0, "{cmp:?}");
    assert!(cmp.ratio() > 0.0, "{cmp:?}");
    assert_eq!(cmp.rounds.len(), 2, "{cmp:?}");
    assert!(cmp.median_ratio() > 0.0, "{cmp:?}");
}

#[test]
fn verify_paths_accept_the_chain_and_count() {
    let bench = VerifyBench::new(SystemTime::now()).expect("setup");
    assert_eq!(bench.chain().len(), 2, "leaf and intermediate");
    assert_eq!(&bench.through_crate().expect("verify_svid").id, bench.id());
    bench.raw().expect("webpki");

    let cmp =
        compare(&TINY, || bench.through_crate().map(drop), || bench.raw()).expect("verify loop");
    assert!(cmp.ours.ops > 0, "{cmp:?}");
    assert!(cmp.reference.ops > 0, "{cmp:?}");
}

#[test]
fn handshakes_complete_with_the_expected_peers_and_count() {
    let bench = HandshakeBench::new(SystemTime::now()).expect("setup");
    let mut scratch = Vec::new();

    let ours = bench
        .ours()
        .handshake(&mut scratch)
        .expect("appnet handshake");
    assert!(!ours.client.is_handshaking() && !ours.server.is_handshaking());
    assert_eq!(ours.client_saw().as_ref(), Some(bench.server_id()));
    assert_eq!(ours.server_saw().as_ref(), Some(bench.client_id()));

    let plain = bench
        .plain()
        .handshake(&mut scratch)
        .expect("plain handshake");
    assert!(!plain.client.is_handshaking() && !plain.server.is_handshaking());
    assert_eq!(plain.server_saw().as_ref(), Some(bench.client_id()));
    assert_eq!(plain.server_leaf(), Some(bench.plain_server_leaf()));
    assert_eq!(plain.server.server_name(), Some(SERVER_NAME));

    for done in [&ours, &plain] {
        for side in [&*done.client as &rustls::CommonState, &done.server] {
            assert_eq!(side.protocol_version(), Some(ProtocolVersion::TLSv1_3));
            assert_eq!(side.handshake_kind(), Some(HandshakeKind::Full));
            assert_eq!(side.alpn_protocol(), Some(&b"h2"[..]));
        }
        // Client hello; server hello..finished; client certificate..finished.
        assert_eq!(done.flights, 3);
    }

    let mut other = Vec::new();
    let cmp = compare(
        &TINY,
        || bench.ours().handshake(&mut scratch).map(drop),
        || bench.plain().handshake(&mut other).map(drop),
    )
    .expect("handshake loop");
    assert!(cmp.ours.ops > 0, "{cmp:?}");
    assert!(cmp.reference.ops > 0, "{cmp:?}");
}

#[test]
fn run_for_counts_and_stops_at_the_first_error() {
    let mut n = 0;
    let t = run_for(Duration::ZERO, &mut || {
        n += 1;
        Ok::<_, ()>(())
    })
    .expect("no error");
    assert_eq!((t.ops, n), (1, 1), "always at least one op");

    let mut left = 3;
    let err = run_for(Duration::from_secs(60), &mut || {
        left -= 1;
        if left == 0 { Err("boom") } else { Ok(()) }
    });
    assert_eq!(err, Err("boom"));
}

#[test]
fn budget_rejects_non_positive_seconds() {
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert_eq!(Budget::from_secs_f64(bad), None, "{bad}");
    }
    let b = Budget::from_secs_f64(2.0).expect("positive");
    assert_eq!(b.measure, Duration::from_secs(2));
    assert_eq!(b.warm_up, Duration::from_millis(500));
    assert_eq!(b.rounds, 20, "100 ms slices");
    assert_eq!(Budget::from_secs_f64(0.01).map(|b| b.rounds), Some(4));
}

#[test]
fn the_binary_prints_three_figures() {
    let out = Command::new(env!("CARGO_BIN_EXE_identity_bench"))
        .args(["--seconds", "0.01"])
        .output()
        .expect("run identity_bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for figure in ["1. CSR", "2. Chain verify", "3. Mutual TLS"] {
        assert!(stdout.contains(figure), "missing {figure:?} in:\n{stdout}");
    }
    assert_eq!(stdout.matches("paired rounds").count(), 3, "{stdout}");
    assert_eq!(stdout.matches("goal >= 0.90x").count(), 2, "{stdout}");

    let bad = Command::new(env!("CARGO_BIN_EXE_identity_bench"))
        .args(["--seconds", "0"])
        .output()
        .expect("run identity_bench");
    assert_eq!(bad.status.code(), Some(2));
}
