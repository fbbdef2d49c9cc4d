use super::*;

const IDLE: Duration = Duration::from_secs(300);

#[test]
fn first_checkout_dials_and_later_ones_join_then_reuse() {
    let mut pool = Pool::new(3, IDLE);
    let now = Instant::now();
    let Checkout::Dial(id) = pool.checkout(&"a") else {
        panic!("first checkout must dial");
    };
    assert_eq!(pool.checkout(&"a"), Checkout::Join(id));
    pool.connected(id, 100, now);
    assert_eq!(pool.checkout(&"a"), Checkout::Reuse(id));
    assert_eq!(
        pool.stats(),
        PoolStats {
            connections: 1,
            streams: 3
        }
    );
    // Full at 3: the fourth stream needs a second connection.
    let Checkout::Dial(second) = pool.checkout(&"a") else {
        panic!("full connection must lead to a new dial");
    };
    assert_ne!(second, id);
}

#[test]
fn keys_never_share_connections() {
    let mut pool = Pool::new(100, IDLE);
    let Checkout::Dial(a) = pool.checkout(&"a") else {
        panic!()
    };
    let Checkout::Dial(b) = pool.checkout(&"b") else {
        panic!()
    };
    assert_ne!(a, b);
}

#[test]
fn peer_limit_lowers_the_cap() {
    let mut pool = Pool::new(100, IDLE);
    let now = Instant::now();
    let Checkout::Dial(id) = pool.checkout(&"a") else {
        panic!()
    };
    pool.connected(id, 2, now);
    assert_eq!(pool.checkout(&"a"), Checkout::Reuse(id));
    assert!(matches!(pool.checkout(&"a"), Checkout::Dial(other) if other != id));
    // A later SETTINGS raising the limit is honoured, capped by ours.
    pool.set_peer_limit(id, usize::MAX);
    assert_eq!(pool.checkout(&"a"), Checkout::Reuse(id));
}

#[test]
fn freed_slots_are_reused_before_dialling() {
    let mut pool = Pool::new(1, IDLE);
    let now = Instant::now();
    let Checkout::Dial(id) = pool.checkout(&"a") else {
        panic!()
    };
    pool.connected(id, 10, now);
    assert!(pool.release(id, now));
    assert_eq!(pool.checkout(&"a"), Checkout::Reuse(id));
}

#[test]
fn idle_eviction_only_after_the_whole_timeout_and_only_when_idle() {
    let mut pool = Pool::new(10, IDLE);
    let t0 = Instant::now();
    let Checkout::Dial(id) = pool.checkout(&"a") else {
        panic!()
    };
    pool.connected(id, 10, t0);
    assert_eq!(pool.idle_deadline(id), None, "a stream is held");
    assert!(!pool.evict_if_idle(id, t0 + 2 * IDLE));
    assert!(pool.release(id, t0));
    assert_eq!(pool.idle_deadline(id), Some(t0 + IDLE));
    assert!(!pool.evict_if_idle(id, t0 + IDLE - Duration::from_millis(1)));
    // Used again meanwhile: the deadline restarts from the next release.
    assert_eq!(pool.checkout(&"a"), Checkout::Reuse(id));
    assert!(!pool.evict_if_idle(id, t0 + IDLE));
    let t1 = t0 + Duration::from_secs(100);
    assert!(pool.release(id, t1));
    assert!(!pool.evict_if_idle(id, t0 + IDLE));
    assert!(pool.evict_if_idle(id, t1 + IDLE));
    assert!(!pool.contains(id));
    assert_eq!(pool.stats(), PoolStats::default());
    // Gone: the next checkout dials afresh.
    assert!(matches!(pool.checkout(&"a"), Checkout::Dial(_)));
}

#[test]
fn draining_and_failed_connections_take_no_new_streams() {
    let mut pool = Pool::new(10, IDLE);
    let now = Instant::now();
    let Checkout::Dial(id) = pool.checkout(&"a") else {
        panic!()
    };
    pool.connected(id, 10, now);
    pool.drain(id);
    let Checkout::Dial(second) = pool.checkout(&"a") else {
        panic!("draining connection must not be reused")
    };
    pool.dial_failed(second);
    assert!(!pool.contains(second));
    // Releases on a forgotten connection are harmless.
    assert!(!pool.release(second, now));
    pool.closed(id);
    assert_eq!(pool.stats(), PoolStats::default());
}

#[test]
fn a_dialling_connection_is_not_idle() {
    let mut pool = Pool::new(10, IDLE);
    let now = Instant::now();
    let Checkout::Dial(id) = pool.checkout(&"a") else {
        panic!()
    };
    assert_eq!(pool.checkout(&"a"), Checkout::Join(id));
    assert!(!pool.release(id, now));
    assert!(!pool.release(id, now));
    assert_eq!(pool.idle_deadline(id), None);
    pool.connected(id, 10, now);
    assert_eq!(pool.idle_deadline(id), Some(now + IDLE));
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Checkout(u8),
        Connect(usize, u8),
        Release(usize),
        Drain(usize),
        Fail(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..3).prop_map(Op::Checkout),
            (0usize..16, 1u8..6).prop_map(|(i, l)| Op::Connect(i, l)),
            (0usize..16).prop_map(Op::Release),
            (0usize..16).prop_map(Op::Drain),
            (0usize..16).prop_map(Op::Fail),
        ]
    }

    proptest! {
        /// Whatever happens, no connection carries more streams than its
        /// limit, and the stats equal the slots handed out minus returned.
        #[test]
        fn never_over_limit(ops in proptest::collection::vec(op(), 0..200)) {
            let mut pool = Pool::new(4, IDLE);
            let now = Instant::now();
            let mut held: Vec<ConnectionId> = Vec::new();
            let mut seen: Vec<ConnectionId> = Vec::new();
            for op in ops {
                match op {
                    Op::Checkout(k) => {
                        let id = match pool.checkout(&k) {
                            Checkout::Reuse(id) | Checkout::Join(id) | Checkout::Dial(id) => id,
                        };
                        held.push(id);
                        if !seen.contains(&id) { seen.push(id); }
                    }
                    Op::Connect(i, limit) => if let Some(id) = seen.get(i) {
                        pool.connected(*id, usize::from(limit), now);
                    },
                    Op::Release(i) => if i < held.len() {
                        let id = held.swap_remove(i);
                        pool.release(id, now);
                    },
                    Op::Drain(i) => if let Some(id) = seen.get(i) { pool.drain(*id) },
                    Op::Fail(i) => if let Some(id) = seen.get(i) {
                        pool.dial_failed(*id);
                        held.retain(|h| h != id);
                    },
                }
                for (id, e) in &pool.entries {
                    // A limit lowered by the peer may leave a connection
                    // above it, never above our own cap.
                    prop_assert!(e.streams <= 4, "{id:?} carries {}", e.streams);
                }
                let live: usize = held.iter().filter(|id| pool.contains(**id)).count();
                prop_assert_eq!(pool.stats().streams, live);
            }
        }
    }
}
