//! Weighted backends: shares within ±2 % over 10,000 seeded draws, weight 0,
//! invalid backends.

use std::collections::BTreeMap;

use appnet_policy::{DirectReason, RouteOutcome, Router, SeededRandom};

use crate::{doc, get, pick_with, router};

const DRAWS: u32 = 10_000;

/// Counts the answers to 10,000 requests with one seeded generator.
fn shares(r: &Router, seed: u64) -> BTreeMap<String, u32> {
    let mut rng = SeededRandom::new(seed);
    let mut counts = BTreeMap::new();
    for _ in 0..DRAWS {
        *counts
            .entry(pick_with(r, &get("h.com", "/"), &mut rng))
            .or_insert(0) += 1;
    }
    counts
}

/// Asserts each name's share is its expected percentage ±2 points.
fn assert_shares(counts: &BTreeMap<String, u32>, want: &[(&str, f64)]) {
    let total: u32 = counts.values().sum();
    assert_eq!(total, DRAWS);
    for (name, pct) in want {
        let got = f64::from(counts.get(*name).copied().unwrap_or(0)) * 100.0 / f64::from(DRAWS);
        assert!(
            (got - pct).abs() <= 2.0,
            "{name}: {got:.2}% vs {pct}% ({counts:?})"
        );
    }
    let named: Vec<&str> = want.iter().map(|(n, _)| *n).collect();
    for (name, c) in counts {
        assert!(
            named.contains(&name.as_str()) || *c == 0,
            "unexpected {name}"
        );
    }
}

fn weighted(backends: &str) -> Router {
    router(&[doc(
        "r",
        "ns",
        &format!("hostnames: [h.com]\nrules:\n- backendRefs:\n{backends}"),
    )])
}

#[test]
fn weights_split_traffic_by_share() {
    let r = weighted("  - {name: a, port: 80, weight: 80}\n  - {name: b, port: 80, weight: 20}");
    for seed in [1, 2, 3] {
        assert_shares(&shares(&r, seed), &[("a", 80.0), ("b", 20.0)]);
    }
    let r = weighted(
        "  - {name: a, port: 80, weight: 1}\n  - {name: b, port: 80, weight: 2}\n  - {name: c, port: 80, weight: 7}",
    );
    assert_shares(&shares(&r, 9), &[("a", 10.0), ("b", 20.0), ("c", 70.0)]);
}

#[test]
fn weighted_choice_is_deterministic_for_a_seed() {
    let r = weighted("  - {name: a, port: 80, weight: 50}\n  - {name: b, port: 80, weight: 50}");
    assert_eq!(shares(&r, 5), shares(&r, 5));
    assert_ne!(shares(&r, 5), shares(&r, 6));
}

#[test]
fn default_weight_is_one() {
    let r = weighted("  - {name: a, port: 80}\n  - {name: b, port: 80}");
    assert_shares(&shares(&r, 4), &[("a", 50.0), ("b", 50.0)]);
}

#[test]
fn weight_zero_gets_no_traffic() {
    let r = weighted("  - {name: a, port: 80, weight: 0}\n  - {name: b, port: 80, weight: 3}");
    assert_shares(&shares(&r, 1), &[("b", 100.0)]);
    assert_eq!(shares(&r, 1).get("a"), None);
}

#[test]
fn all_weights_zero_gives_500() {
    let r = weighted("  - {name: a, port: 80, weight: 0}\n  - {name: b, port: 80, weight: 0}");
    match crate::route(&r, &get("h.com", "/")) {
        RouteOutcome::Direct(d) => {
            assert_eq!(d.status, 500);
            assert_eq!(d.reason, DirectReason::NoBackend);
            assert_eq!(d.route_key, Some("ns/r"));
            assert_eq!(d.rule_index, Some(0));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn rule_without_backends_gives_500() {
    let r = router(&[doc("r", "ns", "rules:\n- matches: [{path: {value: /}}]")]);
    assert_eq!(crate::route(&r, &get("h.com", "/")).status(), Some(500));
    // A route without rules gets the default rule: everything, no backend.
    let r = router(&[doc("r", "ns", "hostnames: [h.com]")]);
    assert_eq!(crate::route(&r, &get("h.com", "/x")).status(), Some(500));
}

#[test]
fn invalid_backend_share_gets_500() {
    let r = weighted(
        "  - {name: a, port: 80, weight: 1}\n  - {name: b, kind: Bogus, group: example.com, weight: 1}",
    );
    assert_shares(&shares(&r, 2), &[("a", 50.0), ("500", 50.0)]);
    let mut rng = SeededRandom::new(2);
    let out = (0..100)
        .map(|_| r.route(&get("h.com", "/"), &mut rng))
        .find(|o| o.status() == Some(500));
    match out {
        Some(RouteOutcome::Direct(d)) => assert_eq!(d.reason, DirectReason::InvalidBackend),
        other => panic!("{other:?}"),
    }
}

#[test]
fn backend_check_decides_validity() {
    let routes = crate::routes(&doc(
        "r",
        "ns",
        "hostnames: [h.com]\nrules:\n- backendRefs:\n  - {name: gone, port: 80}\n  - {name: here, port: 80}",
    ));
    let r = Router::with_backend_check(routes, |_, b| b.name != "gone");
    assert_shares(&shares(&r, 3), &[("here", 50.0), ("500", 50.0)]);
}

#[test]
fn single_backend_takes_no_draw() {
    // A generator that would panic if drawn from proves no draw is taken.
    struct NoDraw;
    impl appnet_policy::Random for NoDraw {
        fn next_u64(&mut self) -> u64 {
            panic!("drew")
        }
    }
    let r = weighted("  - {name: a, port: 80, weight: 5}");
    assert_eq!(pick_with(&r, &get("h.com", "/"), &mut NoDraw), "a");
}
