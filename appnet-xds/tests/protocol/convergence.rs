//! Convergence: after random interleavings of store updates and removals,
//! subscription changes, partial message delivery, reconnects and NACKs of
//! poisoned resources, every client's accepted state equals the server's
//! view of what it subscribes to, once messages stop moving.
//!
//! Precisely, for each client and type, at quiescence:
//! - every resource the client holds is one it subscribes to, and is not
//!   poisoned;
//! - every subscribed resource the server has with a clean body, the client
//!   has with the same body;
//! - a subscribed resource whose current server body is poisoned is either
//!   absent at the client or held at an earlier clean body (last good);
//! - a resource the server no longer has is gone from the client, except in
//!   state-of-the-world for types that are not full-state (EDS here), where
//!   the protocol has no way to say "deleted";
//! - no response is left un-answered on any stream.

use appnet_xds::{ServerConfig, StreamKind, Variant, type_url};
use proptest::prelude::*;

use crate::pair::Pair;

const TYPES: [&str; 2] = [type_url::CLUSTER, type_url::ENDPOINT];
/// Three ADS clients and one per-type (EDS) delta stream.
const CLIENTS: [(Variant, Option<usize>); 4] = [
    (Variant::Sotw, None),
    (Variant::Delta, None),
    (Variant::Sotw, None),
    (Variant::Delta, Some(1)),
];

#[derive(Clone, Debug)]
enum Op {
    Put { t: usize, n: u8, body: u8 },
    Del { t: usize, n: u8 },
    Sub { c: usize, t: usize, n: u8 },
    Unsub { c: usize, t: usize, n: u8 },
    Wildcard { c: usize, t: usize, on: bool },
    Reconnect { c: usize },
    Pump { c: usize, phase: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    let t = 0..TYPES.len();
    let c = 0..CLIENTS.len();
    // Few names, so subscription changes and updates collide often.
    let n = 0u8..3;
    prop_oneof![
        4 => (t.clone(), n.clone(), 0u8..6).prop_map(|(t, n, body)| Op::Put { t, n, body }),
        2 => (t.clone(), n.clone()).prop_map(|(t, n)| Op::Del { t, n }),
        2 => (c.clone(), t.clone(), n.clone()).prop_map(|(c, t, n)| Op::Sub { c, t, n }),
        1 => (c.clone(), t.clone(), n).prop_map(|(c, t, n)| Op::Unsub { c, t, n }),
        1 => (c.clone(), t, any::<bool>()).prop_map(|(c, t, on)| Op::Wildcard { c, t, on }),
        1 => c.clone().prop_map(|c| Op::Reconnect { c }),
        10 => (c, 0u8..4).prop_map(|(c, phase)| Op::Pump { c, phase }),
    ]
}

fn name(n: u8) -> String {
    format!("r{n}")
}

/// Body 0 is poisoned: every client rejects it.
fn body(b: u8) -> String {
    if b == 0 {
        "poison".to_owned()
    } else {
        format!("v{b}")
    }
}

/// Whether client `c` can speak about type `t` (per-type streams only one).
fn speaks(c: usize, t: usize) -> bool {
    CLIENTS[c].1.is_none_or(|only| only == t)
}

fn apply(p: &mut Pair, op: &Op) {
    match *op {
        Op::Sub { c, t, .. } | Op::Unsub { c, t, .. } | Op::Wildcard { c, t, .. }
            if !speaks(c, t) =>
        {
            let refused = p.conns[c].client.subscribe(TYPES[t], ["x"]);
            assert!(refused.is_err(), "a per-type stream refuses other types");
        }
        Op::Put { t, n, body: b } => {
            p.insert(TYPES[t], &name(n), &body(b));
        }
        Op::Del { t, n } => {
            p.remove(TYPES[t], &name(n));
        }
        Op::Sub { c, t, n } => p.conns[c].client.subscribe(TYPES[t], [name(n)]).unwrap(),
        Op::Unsub { c, t, n } => {
            p.conns[c].client.unsubscribe(TYPES[t], [name(n)]).unwrap();
        }
        Op::Wildcard { c, t, on: true } => p.conns[c].client.subscribe_wildcard(TYPES[t]).unwrap(),
        Op::Wildcard { c, t, on: false } => {
            p.conns[c].client.unsubscribe_wildcard(TYPES[t]).unwrap();
        }
        Op::Reconnect { c } => p.reconnect(c),
        Op::Pump { c, phase } => {
            match phase {
                0 => p.client_send(c),
                1 => p.server_recv(c),
                2 => p.server_send(c),
                _ => p.client_recv(c),
            };
        }
    }
}

fn check(p: &Pair) -> Result<(), TestCaseError> {
    for (c, (variant, _)) in CLIENTS.iter().enumerate() {
        for (ti, t) in TYPES.into_iter().enumerate() {
            if !speaks(c, ti) {
                continue;
            }
            let server = p.server_view(t);
            let client = p.client_view(c, t);
            let subscribed = |n: &str| p.conns[c].client.is_subscribed(t, n);
            for (n, b) in &client {
                prop_assert!(subscribed(n), "client {c} holds unsubscribed {t} {n}");
                prop_assert!(b != "poison", "client {c} accepted a poisoned {n}");
                match server.get(n) {
                    Some(sb) if sb != "poison" => {
                        prop_assert_eq!(b, sb, "client {} {} {}", c, t, n)
                    }
                    Some(_) => {}
                    None => prop_assert!(
                        *variant == Variant::Sotw && t == type_url::ENDPOINT,
                        "client {c} ({variant:?}) still holds deleted {t} {n}"
                    ),
                }
            }
            for (n, sb) in &server {
                if subscribed(n) && sb != "poison" {
                    prop_assert_eq!(client.get(n), Some(sb), "client {} {} {}", c, t, n);
                }
            }
        }
        for st in p.conns[c].server.status() {
            prop_assert!(st.outstanding.is_none(), "client {c}: {st:?} un-answered");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn clients_converge_to_the_server_view(ops in prop::collection::vec(op(), 1..80)) {
        let mut p = Pair::new();
        for (i, (v, only)) in CLIENTS.into_iter().enumerate() {
            let kind = match only {
                Some(t) => StreamKind::Single(TYPES[t].to_owned()),
                None => StreamKind::Aggregated,
            };
            // The delta ADS client gets its pushes in tiny steps (one
            // resource each), three in flight, so multi-step pushes meet
            // every interleaving; the per-type delta client keeps the
            // defaults.
            let mut config = ServerConfig::default();
            if i == 1 {
                config.delta_chunk_size = 1;
                config.delta_steps_in_flight = 3;
            }
            p.connect_with(v, kind, config);
        }
        for op in &ops {
            apply(&mut p, op);
        }
        p.drive();
        check(&p)?;
        // And again after more changes on the settled system.
        p.insert(TYPES[0], "r0", "late");
        p.remove(TYPES[1], "r1");
        p.drive();
        check(&p)?;
    }
}
