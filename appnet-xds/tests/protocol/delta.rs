//! Incremental (delta) rules.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use appnet_xds::{
    AckState, DeltaDiscoveryRequest, DeltaDiscoveryResponse, ProtocolError, ServerConfig,
    ServerStream, Status, StreamKind, Variant, type_url,
};

use crate::pair::{Pair, decode};

const EDS: &str = type_url::ENDPOINT;
const WDS: &str = type_url::ADDRESS;

fn request(
    type_url: &str,
    subscribe: &[&str],
    unsubscribe: &[&str],
    nonce: &str,
) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: type_url.to_owned(),
        resource_names_subscribe: subscribe.iter().map(|s| s.to_string()).collect(),
        resource_names_unsubscribe: unsubscribe.iter().map(|s| s.to_string()).collect(),
        response_nonce: nonce.to_owned(),
        ..Default::default()
    }
}

fn stream() -> ServerStream {
    ServerStream::new(
        Variant::Delta,
        StreamKind::Aggregated,
        ServerConfig::default(),
        9,
    )
}

fn poll(s: &mut ServerStream, p: &Pair, now: Instant) -> Option<DeltaDiscoveryResponse> {
    s.poll_response(&p.store, now)
        .unwrap()
        .map(|r| r.into_delta().expect("delta"))
}

fn updated(r: &DeltaDiscoveryResponse) -> Vec<&str> {
    r.resources.iter().map(|r| r.name.as_str()).collect()
}

fn seeded() -> Pair {
    let mut p = Pair::new();
    for n in ["a", "b", "c"] {
        p.insert(EDS, n, "1");
        p.insert(WDS, n, "1");
    }
    p
}

#[test]
fn ack_and_nack_without_resend_loop() {
    let mut p = seeded();
    let now = Instant::now();
    let mut s = stream();
    s.handle_request(request(EDS, &["a", "b"], &[], ""), now)
        .unwrap();
    let r1 = poll(&mut s, &p, now).unwrap();
    assert_eq!(updated(&r1), ["a", "b"]);
    assert_eq!(poll(&mut s, &p, now), None, "one outstanding response");
    let out = s
        .handle_request(request(EDS, &[], &[], &r1.nonce), now)
        .unwrap();
    assert!(matches!(out.ack, AckState::Acked(ref a) if a.nonce == r1.nonce));

    p.insert(EDS, "a", "poison");
    let r2 = poll(&mut s, &p, now).unwrap();
    assert_eq!(updated(&r2), ["a"], "only what changed");
    let mut nack = request(EDS, &[], &[], &r2.nonce);
    nack.error_detail = Some(Status {
        code: 3,
        message: "a: poisoned".into(),
        details: vec![],
    });
    let out = s.handle_request(nack, now).unwrap();
    assert!(matches!(out.ack, AckState::Nacked(ref n) if n.message == "a: poisoned"));
    assert_eq!(
        poll(&mut s, &p, now),
        None,
        "a NACKed version is not resent"
    );
    p.insert(EDS, "a", "2");
    assert_eq!(updated(&poll(&mut s, &p, now).unwrap()), ["a"]);
}

#[test]
fn subscription_changes_with_a_stale_nonce_are_honoured() {
    let mut p = seeded();
    let now = Instant::now();
    let mut s = stream();
    s.handle_request(request(EDS, &["a"], &[], ""), now)
        .unwrap();
    let r1 = poll(&mut s, &p, now).unwrap();
    s.handle_request(request(EDS, &[], &[], &r1.nonce), now)
        .unwrap();
    p.insert(EDS, "a", "2");
    let r2 = poll(&mut s, &p, now).unwrap();
    // The client, not yet having seen r2, subscribes to "b" with r1's nonce.
    let out = s
        .handle_request(request(EDS, &["b"], &[], &r1.nonce), now)
        .unwrap();
    assert_eq!(
        out.ack,
        AckState::Stale {
            nonce: r1.nonce.clone()
        }
    );
    assert_eq!(
        out.subscription.added,
        ["b"],
        "honoured despite the stale nonce"
    );
    assert_eq!(poll(&mut s, &p, now), None, "r2 still outstanding");
    s.handle_request(request(EDS, &[], &[], &r2.nonce), now)
        .unwrap();
    assert_eq!(updated(&poll(&mut s, &p, now).unwrap()), ["b"]);
}

#[test]
fn removed_resources_for_deletions_and_names_that_do_not_exist() {
    let mut p = seeded();
    let now = Instant::now();
    let mut s = stream();
    s.handle_request(request(EDS, &["a", "ghost"], &[], ""), now)
        .unwrap();
    let r = poll(&mut s, &p, now).unwrap();
    assert_eq!(updated(&r), ["a"]);
    assert_eq!(r.removed_resources, ["ghost"], "does-not-exist notice");
    s.handle_request(request(EDS, &[], &[], &r.nonce), now)
        .unwrap();
    assert_eq!(poll(&mut s, &p, now), None, "said once");

    p.remove(EDS, "a");
    let r = poll(&mut s, &p, now).unwrap();
    assert!(r.resources.is_empty());
    assert_eq!(r.removed_resources, ["a"]);
    s.handle_request(request(EDS, &[], &[], &r.nonce), now)
        .unwrap();
    // It comes back: sent again.
    p.insert(EDS, "a", "back");
    let r = poll(&mut s, &p, now).unwrap();
    assert_eq!(
        decode(r.resources[0].resource.as_ref().unwrap()).body,
        "back"
    );
}

#[test]
fn wildcard_legacy_empty_and_star_and_unsubscribe() {
    let mut p = seeded();
    let now = Instant::now();
    let mut s = stream();
    // An empty first request is the legacy wildcard.
    s.handle_request(request(WDS, &[], &[], ""), now).unwrap();
    let r = poll(&mut s, &p, now).unwrap();
    assert_eq!(updated(&r), ["a", "b", "c"]);
    s.handle_request(request(WDS, &[], &[], &r.nonce), now)
        .unwrap();
    // Unsubscribing "*" stops updates; later changes are not sent.
    let out = s
        .handle_request(request(WDS, &[], &["*"], &r.nonce), now)
        .unwrap();
    assert_eq!(out.subscription.wildcard, Some(false));
    p.insert(WDS, "a", "2");
    assert_eq!(poll(&mut s, &p, now), None);
    // "*" again: everything the client no longer has is sent.
    s.handle_request(request(WDS, &["*"], &[], &r.nonce), now)
        .unwrap();
    assert_eq!(updated(&poll(&mut s, &p, now).unwrap()), ["a", "b", "c"]);
}

#[test]
fn unsubscribing_what_was_never_subscribed_is_harmless() {
    let p = seeded();
    let now = Instant::now();
    let mut s = stream();
    s.handle_request(request(EDS, &["a"], &[], ""), now)
        .unwrap();
    let r = poll(&mut s, &p, now).unwrap();
    let out = s
        .handle_request(request(EDS, &[], &["never", "*"], &r.nonce), now)
        .unwrap();
    assert_eq!(out.subscription.not_subscribed, ["never", "*"]);
    assert!(matches!(out.ack, AckState::Acked(_)));
    let st = s.type_status(EDS).unwrap();
    assert_eq!(st.names, ["a"], "state intact");
    assert_eq!(st.resources_sent, 1);
    assert_eq!(poll(&mut s, &p, now), None);
}

#[test]
fn initial_resource_versions_suppress_resending_unchanged_resources() {
    let p = seeded();
    let now = Instant::now();
    let mut s = stream();
    let mut first = request(EDS, &["a", "b", "c"], &[], "");
    let version = |n: &str| p.store.get(EDS, n).unwrap().version().to_owned();
    first.initial_resource_versions = HashMap::from([
        ("a".to_owned(), version("a")),
        ("b".to_owned(), "old".to_owned()),
        ("gone".to_owned(), "x".to_owned()),
    ]);
    first.resource_names_subscribe.push("gone".into());
    s.handle_request(first, now).unwrap();
    let r = poll(&mut s, &p, now).unwrap();
    assert_eq!(
        updated(&r),
        ["b", "c"],
        "a is current, b is stale, c is new"
    );
    assert!(
        r.removed_resources.is_empty(),
        "removals come after updates"
    );
    s.handle_request(request(EDS, &[], &[], &r.nonce), now)
        .unwrap();
    let r = poll(&mut s, &p, now).unwrap();
    assert!(r.resources.is_empty());
    assert_eq!(r.removed_resources, ["gone"], "the client's copy is stale");
}

#[test]
fn first_request_is_answered_even_when_empty() {
    let p = Pair::new();
    let now = Instant::now();
    let mut s = stream();
    s.handle_request(request(WDS, &[], &[], ""), now).unwrap();
    let r = poll(&mut s, &p, now).unwrap();
    assert!(r.resources.is_empty() && r.removed_resources.is_empty());
    assert!(!r.nonce.is_empty());
}

#[test]
fn a_client_that_never_acks_gets_one_coalesced_response() {
    let mut p = seeded();
    let now = Instant::now();
    let mut config = ServerConfig::default();
    config.ack_timeout = Some(Duration::from_secs(10));
    let mut s = ServerStream::new(Variant::Delta, StreamKind::Aggregated, config, 3);
    s.handle_request(request(EDS, &["a", "b"], &[], ""), now)
        .unwrap();
    let r1 = poll(&mut s, &p, now).unwrap();
    for i in 0..100 {
        p.insert(EDS, "a", &format!("v{i}"));
        p.insert(EDS, "b", &format!("v{i}"));
        assert_eq!(poll(&mut s, &p, now), None, "no queue builds up");
    }
    assert_eq!(s.poll_timeout(), Some(now + Duration::from_secs(10)));
    assert!(s.handle_timeout(now + Duration::from_secs(9)).is_ok());
    assert_eq!(
        s.handle_timeout(now + Duration::from_secs(10)),
        Err(ProtocolError::AckTimeout {
            type_url: EDS.to_owned(),
            nonce: r1.nonce.clone(),
            timeout: Duration::from_secs(10)
        })
    );
    // When it finally ACKs, it gets only the latest state, once.
    s.handle_request(request(EDS, &[], &[], &r1.nonce), now)
        .unwrap();
    let r2 = poll(&mut s, &p, now).unwrap();
    let bodies: Vec<_> = r2
        .resources
        .iter()
        .map(|r| decode(r.resource.as_ref().unwrap()).body)
        .collect();
    assert_eq!(bodies, ["v99", "v99"]);
}

#[test]
fn large_updates_are_split_to_fit_the_size_limit() {
    let mut p = Pair::new();
    for i in 0..10 {
        p.insert(EDS, &format!("r{i}"), &"x".repeat(100));
    }
    p.insert(EDS, "huge", &"x".repeat(2000));
    let mut config = ServerConfig::default();
    config.max_message_size = 450;
    let now = Instant::now();
    let mut s = ServerStream::new(Variant::Delta, StreamKind::Aggregated, config, 3);
    s.handle_request(request(EDS, &["*"], &[], ""), now)
        .unwrap();
    let mut got = Vec::new();
    let mut too_large = Vec::new();
    for _ in 0..20 {
        match s.poll_response(&p.store, now) {
            Ok(Some(r)) => {
                assert!(r.encoded_len() <= 450);
                let r = r.into_delta().unwrap();
                got.extend(r.resources.iter().map(|r| r.name.clone()));
                s.handle_request(request(EDS, &[], &[], &r.nonce), now)
                    .unwrap();
            }
            Ok(None) => break,
            Err(ProtocolError::MessageTooLarge { name, .. }) => too_large.push(name),
            Err(e) => panic!("{e}"),
        }
    }
    got.sort();
    assert_eq!(got.len(), 10, "every resource that fits arrives: {got:?}");
    assert_eq!(too_large, [Some("huge".to_owned())]);
}

#[test]
fn steps_of_a_large_push_overlap_up_to_the_limit() {
    let mut p = Pair::new();
    for i in 0..6 {
        p.insert(EDS, &format!("r{i}"), &"x".repeat(100));
    }
    let now = Instant::now();
    // One resource per step, two steps in flight.
    let mut config = ServerConfig::default();
    config.delta_chunk_size = 1;
    config.delta_steps_in_flight = 2;
    let mut s = ServerStream::new(Variant::Delta, StreamKind::Aggregated, config.clone(), 3);
    s.handle_request(request(EDS, &["*"], &[], ""), now)
        .unwrap();
    let r1 = poll(&mut s, &p, now).unwrap();
    let r2 = poll(&mut s, &p, now).unwrap();
    assert_eq!((updated(&r1), updated(&r2)), (vec!["r0"], vec!["r1"]));
    assert_eq!(poll(&mut s, &p, now), None, "two steps in flight at most");
    let oldest = s.type_status(EDS).unwrap().outstanding.unwrap();
    assert_eq!(oldest.nonce, r1.nonce);
    // The older step's ACK is an ACK, not a stale nonce, and makes room
    // for one more step.
    let out = s
        .handle_request(request(EDS, &[], &[], &r1.nonce), now)
        .unwrap();
    assert!(matches!(out.ack, AckState::Acked(ref a) if a.nonce == r1.nonce));
    let r3 = poll(&mut s, &p, now).unwrap();
    assert_eq!(updated(&r3), ["r2"]);
    assert_eq!(poll(&mut s, &p, now), None);
    // Answering the newest step answers the one before it too.
    s.handle_request(request(EDS, &[], &[], &r3.nonce), now)
        .unwrap();
    assert_eq!(s.type_status(EDS).unwrap().outstanding, None);
    let r4 = poll(&mut s, &p, now).unwrap();
    let r5 = poll(&mut s, &p, now).unwrap();
    assert_eq!((updated(&r4), updated(&r5)), (vec!["r3"], vec!["r4"]));
    s.handle_request(request(EDS, &[], &[], &r4.nonce), now)
        .unwrap();
    let r6 = poll(&mut s, &p, now).unwrap();
    assert_eq!(updated(&r6), ["r5"], "the push's last step");
    // The push is out; a new change waits for every step's ACK, as any
    // change does: only the steps of one push overlap.
    p.insert(EDS, "r0", "changed");
    assert_eq!(poll(&mut s, &p, now), None, "not a step of the push");
    s.handle_request(request(EDS, &[], &[], &r6.nonce), now)
        .unwrap();
    assert_eq!(updated(&poll(&mut s, &p, now).unwrap()), ["r0"]);

    // With one step in flight the server waits for every ACK.
    config.delta_steps_in_flight = 1;
    let mut s = ServerStream::new(Variant::Delta, StreamKind::Aggregated, config, 4);
    s.handle_request(request(EDS, &["*"], &[], ""), now)
        .unwrap();
    assert!(poll(&mut s, &p, now).is_some());
    assert_eq!(poll(&mut s, &p, now), None);
}

#[test]
fn a_name_resubscribed_while_in_flight_and_deleted_meanwhile_is_removed() {
    let mut p = seeded();
    let now = Instant::now();
    let mut s = stream();
    s.handle_request(request(EDS, &["*"], &[], ""), now)
        .unwrap();
    let r1 = poll(&mut s, &p, now).unwrap();
    assert_eq!(updated(&r1), ["a", "b", "c"]);
    p.remove(EDS, "a");
    // Before r1 arrives, the client names "a" explicitly and then drops it
    // again (the wildcard still covers it); then it takes r1, "a" included.
    s.handle_request(request(EDS, &["a"], &[], ""), now)
        .unwrap();
    s.handle_request(request(EDS, &[], &["a"], ""), now)
        .unwrap();
    s.handle_request(request(EDS, &[], &[], &r1.nonce), now)
        .unwrap();
    // So the server must take it back.
    let r2 = poll(&mut s, &p, now).unwrap();
    assert_eq!(r2.removed_resources, ["a"]);
    assert!(r2.resources.is_empty());
}

#[test]
fn a_name_dropped_and_rewidened_into_while_in_flight_and_deleted_is_removed() {
    let mut p = seeded();
    let now = Instant::now();
    let mut s = stream();
    s.handle_request(request(EDS, &["a"], &[], ""), now)
        .unwrap();
    let r1 = poll(&mut s, &p, now).unwrap();
    assert_eq!(updated(&r1), ["a"]);
    // Before r1 arrives, the client drops "a", then subscribes to the
    // wildcard, which covers "a" again: it may have taken r1's "a" or not,
    // depending on when the wildcard came. "a" is deleted meanwhile.
    s.handle_request(request(EDS, &[], &["a"], ""), now)
        .unwrap();
    p.remove(EDS, "a");
    s.handle_request(request(EDS, &["*"], &[], &r1.nonce), now)
        .unwrap();
    let r2 = poll(&mut s, &p, now).unwrap();
    assert_eq!(updated(&r2), ["b", "c"]);
    s.handle_request(request(EDS, &[], &[], &r2.nonce), now)
        .unwrap();
    // So the server takes it back, in case the client has it.
    let r3 = poll(&mut s, &p, now).unwrap();
    assert_eq!(r3.removed_resources, ["a"]);
    assert!(r3.resources.is_empty());
}

#[test]
fn a_later_step_supersedes_what_an_unsubscribed_earlier_step_carried() {
    let mut p = Pair::new();
    for n in ["a", "x", "z"] {
        p.insert(EDS, n, "1");
    }
    let now = Instant::now();
    let mut config = ServerConfig::default();
    config.delta_chunk_size = 1;
    config.delta_steps_in_flight = 2;
    let mut s = ServerStream::new(Variant::Delta, StreamKind::Aggregated, config, 3);
    s.handle_request(request(EDS, &["a", "x", "z"], &[], ""), now)
        .unwrap();
    let s1 = poll(&mut s, &p, now).unwrap();
    let s2 = poll(&mut s, &p, now).unwrap();
    assert_eq!((updated(&s1), updated(&s2)), (vec!["a"], vec!["x"]));
    // Before s2 arrives the client drops "x", the store moves it on, and
    // the client asks for it again.
    s.handle_request(request(EDS, &[], &["x"], ""), now)
        .unwrap();
    p.insert(EDS, "x", "2");
    s.handle_request(request(EDS, &["x"], &[], ""), now)
        .unwrap();
    s.handle_request(request(EDS, &[], &[], &s1.nonce), now)
        .unwrap();
    let s3 = poll(&mut s, &p, now).unwrap();
    assert_eq!(updated(&s3), ["x"]);
    assert_eq!(decode(s3.resources[0].resource.as_ref().unwrap()).body, "2");
    // The store goes back to the first content (the same version), and
    // then the client answers s2 and s3: it holds "x" at 2 (s3 came after
    // s2), so the server must send 1 again.
    p.insert(EDS, "x", "1");
    s.handle_request(request(EDS, &[], &[], &s2.nonce), now)
        .unwrap();
    let mut last_x = None;
    while let Some(r) = poll(&mut s, &p, now) {
        for res in &r.resources {
            if res.name == "x" {
                last_x = Some(decode(res.resource.as_ref().unwrap()).body);
            }
        }
        s.handle_request(request(EDS, &[], &[], &r.nonce), now)
            .unwrap();
    }
    assert_eq!(
        last_x.as_deref(),
        Some("1"),
        "the client ends with the store's x"
    );
}

#[test]
fn a_step_sent_early_gets_its_full_ack_timeout_from_its_turn() {
    let mut p = Pair::new();
    for n in ["a", "b", "c"] {
        p.insert(EDS, n, "1");
    }
    let t0 = Instant::now();
    let mut config = ServerConfig::default();
    config.delta_chunk_size = 1;
    config.delta_steps_in_flight = 2;
    config.ack_timeout = Some(Duration::from_secs(10));
    let mut s = ServerStream::new(Variant::Delta, StreamKind::Aggregated, config, 3);
    s.handle_request(request(EDS, &["*"], &[], ""), t0).unwrap();
    let s1 = poll(&mut s, &p, t0).unwrap();
    let _s2 = poll(&mut s, &p, t0).unwrap();
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(10)));
    // The client takes 8 s over the first step: the second's clock starts
    // then, not when it was sent.
    let t8 = t0 + Duration::from_secs(8);
    s.handle_request(request(EDS, &[], &[], &s1.nonce), t8)
        .unwrap();
    assert_eq!(s.poll_timeout(), Some(t8 + Duration::from_secs(10)));
    assert!(s.handle_timeout(t0 + Duration::from_secs(17)).is_ok());
    assert!(s.handle_timeout(t8 + Duration::from_secs(10)).is_err());
}
