//! The client side: requests it builds, and how it judges responses.

use std::time::Instant;

use appnet_xds::{
    ClientConfig, ClientStream, DeltaDiscoveryResponse, DeltaResource, DiscoveryResponse, Node,
    ProtocolError, Request, StreamKind, Variant, type_url,
};

use crate::pair::{Pair, TestValidator, any};

const CDS: &str = type_url::CLUSTER;
const EDS: &str = type_url::ENDPOINT;

fn client(variant: Variant) -> ClientStream {
    let node = Node {
        id: "n1".into(),
        ..Default::default()
    };
    ClientStream::new(
        variant,
        StreamKind::Aggregated,
        Some(node),
        ClientConfig::default(),
    )
}

fn sotw_response(version: &str, nonce: &str, bodies: &[(&str, &str)]) -> DiscoveryResponse {
    DiscoveryResponse {
        version_info: version.into(),
        resources: bodies.iter().map(|(n, b)| any(CDS, n, b)).collect(),
        type_url: CDS.into(),
        nonce: nonce.into(),
        ..Default::default()
    }
}

fn sotw_req(r: Request) -> appnet_xds::DiscoveryRequest {
    r.into_sotw().expect("SotW request")
}

#[test]
fn first_requests_carry_the_node_once_and_legacy_or_star_wildcards() {
    let mut c = client(Variant::Sotw);
    c.subscribe_wildcard(CDS).unwrap();
    c.subscribe(EDS, ["a"]).unwrap();
    let r1 = sotw_req(c.poll_request().unwrap());
    let r2 = sotw_req(c.poll_request().unwrap());
    assert_eq!(c.poll_request(), None);
    assert_eq!(
        (r1.type_url.as_str(), r2.type_url.as_str()),
        (CDS, EDS),
        "make order"
    );
    assert_eq!(r1.node.unwrap().id, "n1");
    assert!(r2.node.is_none(), "node only on the stream's first request");
    assert!(
        r1.resource_names.is_empty(),
        "wildcard-only: the legacy empty list"
    );
    // Wildcard plus a name: "*" is spelled out.
    c.subscribe(CDS, ["x"]).unwrap();
    let r = sotw_req(c.poll_request().unwrap());
    assert_eq!(r.resource_names, ["*", "x"]);
}

#[test]
fn duplicate_names_are_nacked_and_nothing_is_applied() {
    let now = Instant::now();
    for variant in [Variant::Sotw, Variant::Delta] {
        let mut c = client(variant);
        c.subscribe_wildcard(CDS).unwrap();
        c.poll_request().unwrap();
        let dup: appnet_xds::Response = match variant {
            Variant::Sotw => sotw_response("v1", "n1", &[("a", "1"), ("a", "2")]).into(),
            Variant::Delta => DeltaDiscoveryResponse {
                resources: ["1", "2"]
                    .iter()
                    .map(|b| DeltaResource {
                        name: "a".into(),
                        version: (*b).into(),
                        resource: Some(any(CDS, "a", b)),
                        ..Default::default()
                    })
                    .collect(),
                type_url: CDS.into(),
                nonce: "n1".into(),
                ..Default::default()
            }
            .into(),
        };
        let ev = c.handle_response(dup, now, &mut TestValidator).unwrap();
        assert!(!ev.acked, "{variant:?}");
        assert!(
            ev.rejected[0].reason.contains("duplicate"),
            "{:?}",
            ev.rejected
        );
        assert_eq!(c.resources(CDS).count(), 0);
        let nack = c.poll_request().unwrap();
        assert!(nack.is_nack());
        assert_eq!(nack.response_nonce(), "n1");
    }
}

#[test]
fn rejected_resources_keep_their_last_good_version_and_nack_names_them() {
    let now = Instant::now();
    let mut c = client(Variant::Sotw);
    c.subscribe_wildcard(CDS).unwrap();
    c.poll_request().unwrap();
    let ev = c
        .handle_response(
            sotw_response("v1", "n1", &[("a", "1"), ("b", "1")]),
            now,
            &mut TestValidator,
        )
        .unwrap();
    assert!(ev.acked);
    let ack = sotw_req(c.poll_request().unwrap());
    assert_eq!(
        (ack.version_info.as_str(), ack.response_nonce.as_str()),
        ("v1", "n1")
    );
    assert!(ack.error_detail.is_none());

    let ev = c
        .handle_response(
            sotw_response("v2", "n2", &[("a", "poison"), ("b", "2")]),
            now,
            &mut TestValidator,
        )
        .unwrap();
    assert!(!ev.acked);
    assert_eq!(ev.updated, ["b"], "valid resources still apply");
    assert_eq!(ev.rejected[0].name.as_deref(), Some("a"));
    let nack = sotw_req(c.poll_request().unwrap());
    assert_eq!(
        nack.version_info, "v1",
        "version stays at the last accepted"
    );
    assert_eq!(nack.response_nonce, "n2");
    assert!(
        nack.error_detail
            .unwrap()
            .message
            .starts_with("a: poisoned")
    );
    assert_eq!(
        c.resource(CDS, "a").unwrap().version(),
        "v1",
        "last good kept"
    );
    let st = &c.status()[0];
    assert_eq!(st.version, "v1");
    assert!(st.last_nack.is_some());
}

#[test]
fn reconnect_resends_subscriptions_with_known_versions() {
    let mut p = Pair::new();
    p.insert(CDS, "a", "1");
    p.insert(CDS, "b", "1");
    p.insert(EDS, "a", "1");
    for variant in [Variant::Sotw, Variant::Delta] {
        let c = p.connect(variant, StreamKind::Aggregated);
        p.conns[c].client.subscribe_wildcard(CDS).unwrap();
        p.conns[c].client.subscribe(EDS, ["a"]).unwrap();
        p.drive();
        p.insert(CDS, "b", "2");
        p.reconnect(c);
        let from_req = p.conns[c].requests.len();
        let from = p.conns[c].responses.len();
        p.drive();
        let first = &p.conns[c].requests[from_req];
        match first {
            Request::Sotw(r) => {
                assert!(
                    r.node.is_some() && !r.version_info.is_empty() && r.response_nonce.is_empty()
                );
            }
            Request::Delta(r) => {
                assert!(r.node.is_some());
                assert_eq!(r.initial_resource_versions.len(), 2, "{r:?}");
            }
        }
        if variant == Variant::Delta {
            // Only the changed resource comes again.
            let sent: Vec<String> = p
                .responses_since(c, from)
                .iter()
                .flat_map(|r| r.clone().into_delta().unwrap().resources)
                .map(|r| r.name)
                .collect();
            assert_eq!(sent, ["b"]);
        }
        assert_eq!(p.client_view(c, CDS), p.server_view(CDS), "{variant:?}");
        // Toggle p's state back for the next variant.
        p.insert(CDS, "b", "1");
    }
}

#[test]
fn unsubscribing_drops_resources_and_unknown_names_are_no_ops() {
    let mut p = Pair::new();
    p.insert(EDS, "a", "1");
    p.insert(EDS, "b", "1");
    for variant in [Variant::Sotw, Variant::Delta] {
        let c = p.connect(variant, StreamKind::Aggregated);
        let client = &mut p.conns[c].client;
        client.subscribe(EDS, ["a", "b"]).unwrap();
        assert_eq!(client.unsubscribe(CDS, ["never"]).unwrap(), 0);
        p.drive();
        let client = &mut p.conns[c].client;
        assert_eq!(client.unsubscribe(EDS, ["b", "never"]).unwrap(), 1);
        p.drive();
        assert_eq!(p.client_view(c, EDS).keys().collect::<Vec<_>>(), ["a"]);
        // Re-subscribing brings it back.
        p.conns[c].client.subscribe(EDS, ["b"]).unwrap();
        p.drive();
        assert_eq!(p.client_view(c, EDS).len(), 2, "{variant:?}");
    }
}

#[test]
fn responses_for_foreign_types_or_variants_are_typed_errors() {
    let now = Instant::now();
    let mut c = client(Variant::Sotw);
    let r = sotw_response("v", "n", &[]);
    assert_eq!(
        c.handle_response(r, now, &mut TestValidator),
        Err(ProtocolError::UnexpectedType {
            type_url: CDS.into()
        })
    );
    assert!(matches!(
        c.handle_response(DeltaDiscoveryResponse::default(), now, &mut TestValidator),
        Err(ProtocolError::WrongVariant { .. })
    ));
    let mut single = ClientStream::new(
        Variant::Sotw,
        StreamKind::Single(EDS.into()),
        None,
        ClientConfig::default(),
    );
    assert!(matches!(
        single.subscribe(CDS, ["a"]),
        Err(ProtocolError::TypeMismatch { .. })
    ));
}

#[test]
fn a_poisoned_resource_is_nacked_once_end_to_end() {
    for variant in [Variant::Sotw, Variant::Delta] {
        let mut p = Pair::new();
        p.insert(CDS, "a", "1");
        p.insert(CDS, "b", "1");
        let c = p.connect(variant, StreamKind::Aggregated);
        p.conns[c].client.subscribe_wildcard(CDS).unwrap();
        p.drive();
        let (req0, resp0) = (p.conns[c].requests.len(), p.conns[c].responses.len());
        p.insert(CDS, "a", "poison");
        p.insert(CDS, "b", "2");
        let moved = p.drive();
        assert_eq!(moved, 4, "one response and its NACK, once ({variant:?})");
        assert_eq!(p.conns[c].responses.len() - resp0, 1);
        let nack = &p.conns[c].requests[req0];
        assert!(nack.is_nack(), "{variant:?}");
        // The good part of the response applied; the bad one kept its last good.
        let view = p.client_view(c, CDS);
        assert_eq!((view["a"].as_str(), view["b"].as_str()), ("1", "2"));
        let st = p.conns[c].server.type_status(CDS).unwrap();
        assert!(st.last_nack.unwrap().message.contains("poisoned"));
        // Fixing it sends it again, and it is ACKed.
        p.insert(CDS, "a", "3");
        p.drive();
        assert_eq!(p.client_view(c, CDS)["a"], "3");
        assert!(!p.conns[c].requests.last().unwrap().is_nack());
    }
}
