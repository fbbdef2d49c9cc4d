//! State-of-the-world rules.

use std::time::Instant;

use appnet_xds::{
    AckState, DiscoveryRequest, DiscoveryResponse, Node, ProtocolError, Response, ServerConfig,
    ServerStream, Status, StreamKind, Variant, type_url,
};

use crate::pair::{Pair, decode};

const CDS: &str = type_url::CLUSTER;
const EDS: &str = type_url::ENDPOINT;

fn request(type_url: &str, names: &[&str], version: &str, nonce: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        version_info: version.to_owned(),
        resource_names: names.iter().map(|s| s.to_string()).collect(),
        type_url: type_url.to_owned(),
        response_nonce: nonce.to_owned(),
        ..Default::default()
    }
}

fn nack(mut r: DiscoveryRequest, message: &str) -> DiscoveryRequest {
    r.error_detail = Some(Status {
        code: 3,
        message: message.to_owned(),
        details: Vec::new(),
    });
    r
}

fn ads() -> ServerStream {
    ServerStream::new(
        Variant::Sotw,
        StreamKind::Aggregated,
        ServerConfig::default(),
        7,
    )
}

fn sotw(r: Response) -> DiscoveryResponse {
    r.into_sotw().expect("a SotW response")
}

fn names(r: &DiscoveryResponse) -> Vec<String> {
    r.resources.iter().map(|a| decode(a).name).collect()
}

fn seeded() -> Pair {
    let mut p = Pair::new();
    p.insert(CDS, "a", "1");
    p.insert(CDS, "b", "1");
    p.insert(EDS, "a", "1");
    p.insert(EDS, "b", "1");
    p
}

#[test]
fn every_response_has_a_fresh_nonce_and_acks_echo_version_and_nonce() {
    let p = seeded();
    let now = Instant::now();
    let mut s = ads();
    s.handle_request(request(CDS, &[], "", ""), now).unwrap();
    let r1 = sotw(s.poll_response(&p.store, now).unwrap().unwrap());
    assert!(!r1.nonce.is_empty() && !r1.version_info.is_empty());
    assert_eq!(names(&r1), ["a", "b"]);
    assert_eq!(
        s.poll_response(&p.store, now).unwrap(),
        None,
        "one response"
    );

    let out = s
        .handle_request(request(CDS, &[], &r1.version_info, &r1.nonce), now)
        .unwrap();
    let AckState::Acked(acked) = out.ack else {
        panic!("expected an ACK, got {:?}", out.ack)
    };
    assert_eq!(
        (acked.version.as_str(), acked.nonce.as_str()),
        (r1.version_info.as_str(), r1.nonce.as_str())
    );
    let st = s.type_status(CDS).unwrap();
    assert_eq!(st.acked.unwrap().version, r1.version_info);
    assert!(st.outstanding.is_none());

    // Another change: a new response with another nonce and version.
    let mut p = p;
    p.insert(CDS, "c", "1");
    let r2 = sotw(s.poll_response(&p.store, now).unwrap().unwrap());
    assert_ne!(r2.nonce, r1.nonce);
    assert_ne!(r2.version_info, r1.version_info);
    assert_eq!(names(&r2), ["a", "b", "c"]);
}

#[test]
fn nack_keeps_last_version_and_does_not_resend() {
    let mut p = seeded();
    let now = Instant::now();
    let mut s = ads();
    s.handle_request(request(CDS, &[], "", ""), now).unwrap();
    let r1 = sotw(s.poll_response(&p.store, now).unwrap().unwrap());
    s.handle_request(request(CDS, &[], &r1.version_info, &r1.nonce), now)
        .unwrap();

    p.insert(CDS, "a", "bad");
    let r2 = sotw(s.poll_response(&p.store, now).unwrap().unwrap());
    let out = s
        .handle_request(
            nack(request(CDS, &[], &r1.version_info, &r2.nonce), "a is bad"),
            now,
        )
        .unwrap();
    let AckState::Nacked(n) = out.ack else {
        panic!("expected a NACK")
    };
    assert_eq!(n.rejected_version, r2.version_info);
    assert_eq!(n.client_version, r1.version_info);
    assert_eq!(n.message, "a is bad");
    let st = s.type_status(CDS).unwrap();
    assert_eq!(
        st.acked.unwrap().version,
        r1.version_info,
        "acked version stays"
    );
    assert_eq!(st.last_nack.unwrap().nonce, r2.nonce);

    // No resend loop: the same content is not sent again...
    assert_eq!(s.poll_response(&p.store, now).unwrap(), None);
    // ...until it changes.
    p.insert(CDS, "a", "fixed");
    let r3 = sotw(s.poll_response(&p.store, now).unwrap().unwrap());
    assert_eq!(decode(&r3.resources[0]).body, "fixed");
}

#[test]
fn stale_nonce_is_ignored() {
    let mut p = seeded();
    let now = Instant::now();
    let mut s = ads();
    s.handle_request(request(EDS, &["a"], "", ""), now).unwrap();
    let r1 = sotw(s.poll_response(&p.store, now).unwrap().unwrap());
    s.handle_request(request(EDS, &["a"], &r1.version_info, &r1.nonce), now)
        .unwrap();
    p.insert(EDS, "a", "2");
    let r2 = sotw(s.poll_response(&p.store, now).unwrap().unwrap());

    // A request still answering r1 (and asking for "b") is stale: ignored
    // whole, subscription included.
    let out = s
        .handle_request(request(EDS, &["a", "b"], &r1.version_info, &r1.nonce), now)
        .unwrap();
    assert_eq!(
        out.ack,
        AckState::Stale {
            nonce: r1.nonce.clone()
        }
    );
    assert!(out.subscription.added.is_empty());
    let st = s.type_status(EDS).unwrap();
    assert_eq!(st.names, ["a"]);
    assert_eq!(
        st.outstanding.unwrap().nonce,
        r2.nonce,
        "still waiting for r2"
    );

    // A garbage nonce is stale too.
    let out = s
        .handle_request(request(EDS, &["b"], "", "nope"), now)
        .unwrap();
    assert!(matches!(out.ack, AckState::Stale { .. }));
    assert_eq!(s.type_status(EDS).unwrap().names, ["a"]);
}

#[test]
fn wildcard_star_and_legacy_empty() {
    let p = seeded();
    let now = Instant::now();
    // Legacy: an empty first request is a wildcard.
    let mut s = ads();
    s.handle_request(request(CDS, &[], "", ""), now).unwrap();
    assert!(s.type_status(CDS).unwrap().wildcard);
    let r = sotw(s.poll_response(&p.store, now).unwrap().unwrap());
    assert_eq!(names(&r), ["a", "b"]);
    // Once names were sent, an empty list means "nothing", not wildcard.
    s.handle_request(request(CDS, &["a"], &r.version_info, &r.nonce), now)
        .unwrap();
    let r = sotw(s.poll_response(&p.store, now).unwrap().unwrap());
    assert_eq!(names(&r), ["a"]);
    let out = s
        .handle_request(request(CDS, &[], &r.version_info, &r.nonce), now)
        .unwrap();
    assert_eq!(out.subscription.removed, ["a"]);
    let st = s.type_status(CDS).unwrap();
    assert!(!st.wildcard && st.names.is_empty());

    // Explicit "*" alongside a name: wildcard plus that name.
    let mut s = ads();
    s.handle_request(request(EDS, &["*", "zzz"], "", ""), now)
        .unwrap();
    let st = s.type_status(EDS).unwrap();
    assert!(st.wildcard && st.names == ["zzz"]);
    let r = sotw(s.poll_response(&p.store, now).unwrap().unwrap());
    assert_eq!(names(&r), ["a", "b"], "unknown names are simply absent");
}

#[test]
fn newly_requested_names_are_sent_and_resent_after_unsubscribe() {
    let p = seeded();
    let now = Instant::now();
    let mut s = ads();
    s.handle_request(request(EDS, &["a"], "", ""), now).unwrap();
    let r = sotw(s.poll_response(&p.store, now).unwrap().unwrap());
    assert_eq!(names(&r), ["a"]);
    s.handle_request(request(EDS, &["a", "b"], &r.version_info, &r.nonce), now)
        .unwrap();
    let r = sotw(s.poll_response(&p.store, now).unwrap().unwrap());
    assert_eq!(names(&r), ["a", "b"]);
    let out = s
        .handle_request(request(EDS, &["a", "b"], &r.version_info, &r.nonce), now)
        .unwrap();
    assert!(matches!(out.ack, AckState::Acked(_)));
    // Unsubscribe "b" (the latest nonce again: a pure subscription change):
    // nothing to send for EDS.
    let out = s
        .handle_request(request(EDS, &["a"], &r.version_info, &r.nonce), now)
        .unwrap();
    assert_eq!(out.ack, AckState::Repeat);
    assert_eq!(out.subscription.removed, ["b"]);
    assert_eq!(s.poll_response(&p.store, now).unwrap(), None);
    // Re-subscribe "b": sent again although it did not change.
    s.handle_request(request(EDS, &["a", "b"], &r.version_info, &r.nonce), now)
        .unwrap();
    let r = sotw(s.poll_response(&p.store, now).unwrap().unwrap());
    assert_eq!(names(&r), ["a", "b"]);
}

#[test]
fn full_state_types_send_complete_sets_and_absence_deletes() {
    let mut p = seeded();
    let c = p.connect(Variant::Sotw, StreamKind::Aggregated);
    p.conns[c].client.subscribe_wildcard(CDS).unwrap();
    p.conns[c].client.subscribe(EDS, ["a", "b"]).unwrap();
    p.drive();
    assert_eq!(p.client_view(c, CDS).len(), 2);
    p.remove(CDS, "a");
    p.remove(EDS, "a");
    let from = p.conns[c].responses.len();
    p.drive();
    let sent = p.responses_since(c, from);
    let cds: Vec<_> = sent.iter().filter(|r| r.type_url() == CDS).collect();
    assert_eq!(cds.len(), 1, "one CDS response");
    let cds = sotw(cds[0].clone());
    assert_eq!(names(&cds), ["b"], "the full remaining set");
    assert!(
        !p.client_view(c, CDS).contains_key("a"),
        "absence deleted it"
    );
    // EDS is not full-state: a removal cannot be expressed in SotW, so the
    // server sends nothing and the client keeps what it had.
    assert!(sent.iter().all(|r| r.type_url() != EDS));
    assert!(p.client_view(c, EDS).contains_key("a"));
}

#[test]
fn node_comes_only_from_the_first_request() {
    let now = Instant::now();
    let mut config = ServerConfig::default();
    config.require_node = true;
    let mut s = ServerStream::new(Variant::Sotw, StreamKind::Aggregated, config, 1);
    assert_eq!(
        s.handle_request(request(CDS, &[], "", ""), now),
        Err(ProtocolError::MissingNode)
    );
    let mut first = request(CDS, &[], "", "");
    first.node = Some(Node {
        id: "first".into(),
        ..Default::default()
    });
    s.handle_request(first, now).unwrap();
    let mut later = request(EDS, &["a"], "", "");
    later.node = Some(Node {
        id: "impostor".into(),
        ..Default::default()
    });
    s.handle_request(later, now).unwrap();
    assert_eq!(s.node().unwrap().id, "first");
}

#[test]
fn per_type_streams_fill_in_and_check_the_type() {
    let p = seeded();
    let now = Instant::now();
    let mut s = ServerStream::new(
        Variant::Sotw,
        StreamKind::Single(CDS.to_owned()),
        ServerConfig::default(),
        1,
    );
    let out = s.handle_request(request("", &[], "", ""), now).unwrap();
    assert_eq!(out.type_url, CDS);
    assert_eq!(
        s.handle_request(request(EDS, &[], "", ""), now),
        Err(ProtocolError::TypeMismatch {
            expected: CDS.to_owned(),
            got: EDS.to_owned()
        })
    );
    let r = sotw(s.poll_response(&p.store, now).unwrap().unwrap());
    assert_eq!(r.type_url, CDS);
    let mut ads = ads();
    assert_eq!(
        ads.handle_request(request("", &[], "", ""), now),
        Err(ProtocolError::MissingTypeUrl)
    );
    assert!(matches!(
        ads.handle_request(appnet_xds::DeltaDiscoveryRequest::default(), now),
        Err(ProtocolError::WrongVariant { .. })
    ));
}

#[test]
fn oversized_sotw_response_is_refused_once() {
    let mut p = Pair::new();
    p.insert(CDS, "a", &"x".repeat(300));
    let now = Instant::now();
    let mut config = ServerConfig::default();
    config.max_message_size = 200;
    let mut s = ServerStream::new(Variant::Sotw, StreamKind::Aggregated, config, 1);
    s.handle_request(request(CDS, &[], "", ""), now).unwrap();
    assert!(matches!(
        s.poll_response(&p.store, now),
        Err(ProtocolError::MessageTooLarge {
            limit: 200,
            name: None,
            ..
        })
    ));
    assert_eq!(
        s.poll_response(&p.store, now).unwrap(),
        None,
        "reported once"
    );
    p.insert(CDS, "a", "small");
    let r = sotw(s.poll_response(&p.store, now).unwrap().unwrap());
    assert_eq!(names(&r), ["a"]);
}
