//! Interleavings the convergence property test once found wrong, kept as
//! named regressions: subscription changes racing responses in flight.

use appnet_xds::{StreamKind, Variant, type_url};

use crate::pair::Pair;

const CDS: &str = type_url::CLUSTER;

fn pair(variant: Variant) -> (Pair, usize) {
    let mut p = Pair::new();
    let c = p.connect(variant, StreamKind::Aggregated);
    (p, c)
}

fn assert_converged(p: &Pair, c: usize) {
    let client = p.client_view(c, CDS);
    let server: std::collections::BTreeMap<_, _> = p
        .server_view(CDS)
        .into_iter()
        .filter(|(n, _)| p.conns[c].client.is_subscribed(CDS, n))
        .collect();
    assert_eq!(client, server);
}

#[test]
fn unsubscribe_then_wildcard_while_a_response_is_in_flight() {
    for variant in [Variant::Sotw, Variant::Delta] {
        let (mut p, c) = pair(variant);
        p.conns[c].client.subscribe(CDS, ["r1"]).unwrap();
        p.insert(CDS, "r1", "1");
        p.client_send(c);
        p.conns[c].client.unsubscribe(CDS, ["r1"]).unwrap();
        p.server_recv(c); // the subscription to r1
        p.client_send(c); // the unsubscription, not yet received
        p.conns[c].client.subscribe_wildcard(CDS).unwrap();
        p.server_send(c); // r1, in flight
        // The server forgets r1 on the unsubscription; the client takes r1
        // from the in-flight response under its new wildcard...
        p.remove(CDS, "r1");
        // ...so its removal must still reach the client.
        p.drive();
        assert_converged(&p, c);
        assert!(p.client_view(c, CDS).is_empty(), "{variant:?}");
    }
}

#[test]
fn wildcard_off_and_on_before_the_server_hears_it() {
    for variant in [Variant::Sotw, Variant::Delta] {
        let (mut p, c) = pair(variant);
        p.conns[c].client.subscribe_wildcard(CDS).unwrap();
        p.insert(CDS, "r0", "1");
        p.drive();
        p.conns[c].client.unsubscribe_wildcard(CDS).unwrap();
        p.client_send(c);
        p.conns[c].client.subscribe_wildcard(CDS).unwrap();
        p.drive();
        assert_converged(&p, c);
        assert_eq!(p.client_view(c, CDS).len(), 1, "{variant:?}");
    }
}

#[test]
fn stale_sotw_unsubscription_then_resubscription() {
    let (mut p, c) = pair(Variant::Sotw);
    p.insert(CDS, "a", "1");
    p.insert(CDS, "b", "1");
    p.conns[c].client.subscribe(CDS, ["a", "b"]).unwrap();
    p.drive();
    p.insert(CDS, "a", "2");
    p.server_send(c); // a newer response is in flight...
    p.conns[c].client.unsubscribe(CDS, ["b"]).unwrap();
    p.client_send(c); // ...so this unsubscription arrives stale and is ignored
    p.server_recv(c);
    p.client_recv(c); // b is no longer wanted: set aside, not kept
    p.conns[c].client.subscribe(CDS, ["b"]).unwrap();
    // The server never heard b was dropped and will not resend it: the
    // client takes it back from what it set aside.
    p.drive();
    assert_converged(&p, c);
    assert_eq!(p.client_view(c, CDS)["b"], "1");
}

#[test]
fn unsubscribe_then_reconnect_drops_the_resource() {
    for variant in [Variant::Sotw, Variant::Delta] {
        let (mut p, c) = pair(variant);
        p.insert(CDS, "r4", "1");
        p.conns[c].client.subscribe(CDS, ["r4"]).unwrap();
        p.drive();
        p.conns[c].client.unsubscribe(CDS, ["r4"]).unwrap();
        p.reconnect(c);
        p.drive();
        assert!(p.client_view(c, CDS).is_empty(), "{variant:?}");
    }
}
