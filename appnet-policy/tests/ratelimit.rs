//! Rate limits for LLM traffic: buckets, two-phase reservations, cost
//! weights, governance, shadow mode, headers and bounded key tables.

use std::time::Duration;

use appnet_policy::{
    CancelPolicy, Clock, CostModel, CostWeights, LimitKey, LimitRequest, LimitSpec, LimitUnit,
    MAX_LIMITS, MAX_REFILL_PERIOD, ManualClock, ModelAllowList, RateLimitError, RateLimited,
    RateLimiter, SpecError, TokenBucket, Usage,
};
use proptest::prelude::*;

const SEC: Duration = Duration::from_secs(1);

fn tokens(name: &str, capacity: u64, refill_per: Duration, key: LimitKey) -> LimitSpec {
    LimitSpec::new(name, LimitUnit::Tokens, capacity, refill_per, key)
}

fn requests(name: &str, capacity: u64, refill_per: Duration, key: LimitKey) -> LimitSpec {
    LimitSpec::new(name, LimitUnit::Requests, capacity, refill_per, key)
}

fn req(principal: &str, model: &str, input: u64, output: u64) -> LimitRequest<'static> {
    LimitRequest::new(principal.to_owned(), model.to_owned()).with_tokens(input, output)
}

fn remaining(limiter: &RateLimiter, limit: &str, r: &LimitRequest<'_>, clock: &ManualClock) -> u64 {
    limiter.quota(limit, r, clock.now()).unwrap().remaining
}

fn limited(err: RateLimitError) -> RateLimited {
    match err {
        RateLimitError::Limited(l) => l,
        other => panic!("expected Limited, got {other:?}"),
    }
}

#[test]
fn refill_over_time_with_manual_clock() {
    let clock = ManualClock::new();
    let limiter = RateLimiter::builder()
        .clock(clock.clone())
        .limit(requests("rps", 2, 10 * SEC, LimitKey::Global))
        .build()
        .unwrap();
    let r = req("p", "m", 0, 0);
    let a = limiter.reserve(&r, clock.now()).unwrap();
    let b = limiter.reserve(&r, clock.now()).unwrap();
    let err = limited(limiter.reserve(&r, clock.now()).unwrap_err());
    assert_eq!(err.retry_after, 5 * SEC);
    clock.advance(Duration::from_millis(4_999));
    assert!(limiter.reserve(&r, clock.now()).is_err());
    clock.advance(Duration::from_millis(1));
    let c = limiter.reserve(&r, clock.now()).unwrap();
    assert_eq!(remaining(&limiter, "rps", &r, &clock), 0);
    // Refill stops at the capacity however long we wait.
    clock.advance(3_600 * SEC);
    assert_eq!(remaining(&limiter, "rps", &r, &clock), 2);
    for p in [a, b, c] {
        p.settle_reserved();
    }

    let t0 = clock.now();
    let mut bucket = TokenBucket::new(5, 5 * SEC, t0).unwrap();
    assert!(bucket.try_take(5, t0));
    assert_eq!(bucket.available(t0 + 2 * SEC), 2);
    assert_eq!(bucket.retry_after(3, t0), Some(3 * SEC));
    assert_eq!(bucket.retry_after(6, t0), None);
    assert_eq!(bucket.until_full(t0), 5 * SEC);
}

#[test]
fn several_limits_all_must_pass_and_a_failed_one_takes_nothing() {
    let clock = ManualClock::new();
    let limiter = RateLimiter::builder()
        .clock(clock.clone())
        .limit(tokens("tpm", 100, 60 * SEC, LimitKey::Global))
        .limit(requests("rpm", 2, 60 * SEC, LimitKey::PerPrincipal))
        .build()
        .unwrap();
    let r = req("alice", "m", 10, 0);
    let _p1 = limiter.reserve(&r, clock.now()).unwrap();
    let _p2 = limiter.reserve(&r, clock.now()).unwrap();
    assert_eq!(remaining(&limiter, "tpm", &r, &clock), 80);
    let err = limited(limiter.reserve(&r, clock.now()).unwrap_err());
    assert_eq!(err.limit, "rpm");
    // The token limit passed its check but gave nothing away.
    assert_eq!(remaining(&limiter, "tpm", &r, &clock), 80);

    // The other way round: tokens fail, the request count is untouched.
    let bob = req("bob", "m", 90, 0);
    let err = limited(limiter.reserve(&bob, clock.now()).unwrap_err());
    assert_eq!(err.limit, "tpm");
    assert_eq!(remaining(&limiter, "rpm", &bob, &clock), 2);
    assert_eq!(remaining(&limiter, "tpm", &bob, &clock), 80);

    // When several fail, the one that frees up last is reported.
    let stats = limiter.stats();
    assert_eq!(stats.limits[0].rejected, 1);
    assert_eq!(stats.limits[1].rejected, 1);
    let both = req("alice", "m", 90, 0);
    let err = limited(limiter.reserve(&both, clock.now()).unwrap_err());
    // rpm needs 30 s for one request, tpm 6 s for 10 tokens.
    assert_eq!((err.limit.as_str(), err.retry_after), ("rpm", 30 * SEC));
}

#[test]
fn reserve_then_settle_refunds_and_charges_overuse() {
    let clock = ManualClock::new();
    let limiter = RateLimiter::builder()
        .clock(clock.clone())
        .limit(tokens("tpm", 1_000, 60 * SEC, LimitKey::PerPrincipal))
        .limit(requests("rpm", 10, 60 * SEC, LimitKey::PerPrincipal))
        .build()
        .unwrap();
    let r = req("p", "m", 100, 400);
    let permit = limiter.reserve(&r, clock.now()).unwrap();
    let reserved: Vec<_> = permit.quotas().map(|q| (q.limit, q.reserved)).collect();
    assert_eq!(reserved, [("tpm", 500), ("rpm", 1)]);
    assert_eq!(remaining(&limiter, "tpm", &r, &clock), 500);
    permit.settle(Usage::new(100, 50), clock.now());
    assert_eq!(remaining(&limiter, "tpm", &r, &clock), 850);
    // A request is a request, whatever its usage.
    assert_eq!(remaining(&limiter, "rpm", &r, &clock), 9);

    let permit = limiter
        .reserve(&req("p", "m", 10, 10), clock.now())
        .unwrap();
    assert_eq!(remaining(&limiter, "tpm", &r, &clock), 830);
    permit.settle(Usage::new(10, 300), clock.now());
    assert_eq!(remaining(&limiter, "tpm", &r, &clock), 540);

    // A reservation over the capacity is clamped, so it can go through.
    clock.advance(60 * SEC);
    let huge = limiter
        .reserve(&req("p", "m", 5_000, 5_000), clock.now())
        .unwrap();
    assert_eq!(huge.quotas().next().unwrap().reserved, 1_000);
    assert_eq!(remaining(&limiter, "tpm", &r, &clock), 0);
    huge.settle(Usage::new(200, 100), clock.now());
    assert_eq!(remaining(&limiter, "tpm", &r, &clock), 700);
}

#[test]
fn drop_guard_settles_exactly_once_on_cancel() {
    let clock = ManualClock::new();
    let build = |policy| {
        RateLimiter::builder()
            .clock(clock.clone())
            .cancel_policy(policy)
            .limit(tokens("tpm", 100, 60 * SEC, LimitKey::Global))
            .limit(requests("rpm", 10, 60 * SEC, LimitKey::Global))
            .build()
            .unwrap()
    };
    let r = req("p", "m", 30, 10);

    let refunding = build(CancelPolicy::RefundTokens);
    let permit = refunding.reserve(&r, clock.now()).unwrap();
    assert_eq!(remaining(&refunding, "tpm", &r, &clock), 60);
    let moved = vec![permit];
    drop(moved);
    assert_eq!(remaining(&refunding, "tpm", &r, &clock), 100);
    assert_eq!(remaining(&refunding, "rpm", &r, &clock), 9);
    assert_eq!(refunding.stats().cancelled, 1);
    // A settled permit's drop does nothing more.
    let permit = refunding.reserve(&r, clock.now()).unwrap();
    permit.settle(Usage::new(30, 0), clock.now());
    assert_eq!(remaining(&refunding, "tpm", &r, &clock), 70);
    assert_eq!(refunding.stats().cancelled, 1);
    // An explicit cancel counts once, and its drop adds nothing.
    let permit = refunding.reserve(&r, clock.now()).unwrap();
    permit.cancel(clock.now());
    assert_eq!(remaining(&refunding, "tpm", &r, &clock), 70);
    assert_eq!(refunding.stats().cancelled, 2);

    let charging = build(CancelPolicy::ChargeReservation);
    let permit = charging.reserve(&r, clock.now()).unwrap();
    let handle = std::thread::spawn(move || drop(permit));
    handle.join().unwrap();
    assert_eq!(remaining(&charging, "tpm", &r, &clock), 60);
    assert_eq!(charging.stats().cancelled, 1);
}

#[test]
fn never_below_zero_and_overuse_becomes_bounded_debt() {
    let clock = ManualClock::new();
    let limiter = RateLimiter::builder()
        .clock(clock.clone())
        .limit(tokens("t", 10, 10 * SEC, LimitKey::Global))
        .build()
        .unwrap();
    let r = req("p", "m", 10, 0);
    let permit = limiter.reserve(&r, clock.now()).unwrap();
    permit.settle(Usage::new(1_000_000, 1_000_000), clock.now());
    assert_eq!(remaining(&limiter, "t", &r, &clock), 0);
    // Debt is capped at one bucket: 10 s to pay it, then the level grows.
    let err = limited(
        limiter
            .reserve(&req("p", "m", 1, 0), clock.now())
            .unwrap_err(),
    );
    assert_eq!(err.remaining, 0);
    assert_eq!(err.retry_after, 11 * SEC);
    assert_eq!(err.reset, 20 * SEC);
    clock.advance(10 * SEC);
    assert_eq!(remaining(&limiter, "t", &r, &clock), 0);
    clock.advance(5 * SEC);
    assert_eq!(remaining(&limiter, "t", &r, &clock), 5);

    // Refunds never push a bucket over its capacity.
    clock.advance(60 * SEC);
    let permit = limiter.reserve(&req("p", "m", 10, 0), clock.now()).unwrap();
    clock.advance(60 * SEC);
    permit.settle(Usage::new(0, 0), clock.now());
    assert_eq!(remaining(&limiter, "t", &r, &clock), 10);
}

#[test]
fn per_principal_isolation() {
    let clock = ManualClock::new();
    let limiter = RateLimiter::builder()
        .clock(clock.clone())
        .limit(requests("rpm", 1, 60 * SEC, LimitKey::PerPrincipal))
        .limit(tokens(
            "per-pair",
            100,
            60 * SEC,
            LimitKey::PerPrincipalModel,
        ))
        .build()
        .unwrap();
    let alice = req("alice", "m", 60, 0);
    let _a = limiter.reserve(&alice, clock.now()).unwrap();
    assert!(limiter.reserve(&alice, clock.now()).is_err());
    let _b = limiter
        .reserve(&req("bob", "m", 60, 0), clock.now())
        .unwrap();
    assert_eq!(remaining(&limiter, "per-pair", &alice, &clock), 40);
    assert_eq!(
        remaining(&limiter, "per-pair", &req("alice", "other", 0, 0), &clock),
        100
    );
    // "ab" + "c" and "a" + "bc" are different pairs.
    let pairs = RateLimiter::builder()
        .clock(clock.clone())
        .limit(requests("pair", 1, 60 * SEC, LimitKey::PerPrincipalModel))
        .build()
        .unwrap();
    let _x = pairs.reserve(&req("ab", "c", 0, 0), clock.now()).unwrap();
    let _y = pairs.reserve(&req("a", "bc", 0, 0), clock.now()).unwrap();
    assert_eq!(pairs.key_count(), 2);
}

#[test]
fn per_model_cost_weights() {
    let clock = ManualClock::new();
    let costs = CostModel::new(CostWeights::UNIT)
        .with_model("big-*", CostWeights::per_mille(1_000, 100, 4_000))
        .unwrap();
    let limiter = RateLimiter::builder()
        .clock(clock.clone())
        .cost_model(costs)
        .limit(tokens("tpm", 1_000, 60 * SEC, LimitKey::PerModel))
        .build()
        .unwrap();
    let big = req("p", "big-1", 10, 5);
    let permit = limiter.reserve(&big, clock.now()).unwrap();
    assert_eq!(permit.quotas().next().unwrap().reserved, 10 + 20);
    // 10 input, all cached (1 token), 2 output (8 tokens).
    permit.settle(Usage::new(10, 2).with_cached_input(10), clock.now());
    assert_eq!(remaining(&limiter, "tpm", &big, &clock), 1_000 - 9);

    let small = req("p", "small", 10, 5);
    let permit = limiter.reserve(&small, clock.now()).unwrap();
    assert_eq!(permit.quotas().next().unwrap().reserved, 15);
    permit.settle(Usage::new(10, 2).with_cached_input(10), clock.now());
    assert_eq!(remaining(&limiter, "tpm", &small, &clock), 1_000 - 12);
}

#[test]
fn allow_list_rejects_before_touching_buckets() {
    let clock = ManualClock::new();
    let allow = ModelAllowList::default()
        .allow("cluster.local/ns/a/*", &["gpt-4o*", "embed"])
        .unwrap()
        .allow("*", &["embed"])
        .unwrap();
    let limiter = RateLimiter::builder()
        .clock(clock.clone())
        .allow_list(allow)
        .limit(tokens("tpm", 100, 60 * SEC, LimitKey::Global))
        .limit(requests("rpm", 5, 60 * SEC, LimitKey::PerPrincipal))
        .build()
        .unwrap();
    let a = "cluster.local/ns/a/sa/x";
    assert!(
        limiter
            .reserve(&req(a, "gpt-4o-mini", 1, 1), clock.now())
            .is_ok()
    );
    assert!(
        limiter
            .reserve(&req("other", "embed", 1, 1), clock.now())
            .is_ok()
    );
    let keys = limiter.key_count();
    let denied = req("cluster.local/ns/b/sa/y", "gpt-4o", 50, 0);
    let err = limiter.reserve(&denied, clock.now()).unwrap_err();
    assert_eq!(
        err,
        RateLimitError::ModelNotAllowed {
            principal: "cluster.local/ns/b/sa/y".into(),
            model: "gpt-4o".into(),
        }
    );
    assert!(err.headers().is_empty());
    assert!(matches!(
        limiter.reserve(&req(a, "claude", 1, 1), clock.now()),
        Err(RateLimitError::ModelNotAllowed { .. })
    ));
    // Nothing was taken and no bucket was created for the denied principal.
    assert_eq!(limiter.key_count(), keys);
    assert_eq!(remaining(&limiter, "tpm", &denied, &clock), 96);
    assert_eq!(limiter.stats().model_denied, 2);
    // An empty list governs nothing; a rule with no models still restricts.
    assert!(ModelAllowList::allow_all().allows("x", "y"));
    let none = ModelAllowList::default().allow::<&str>("x", &[]).unwrap();
    assert!(none.is_restrictive() && !none.allows("x", "y"));
}

#[test]
fn headers_429_values_and_retry_after_rounding() {
    let clock = ManualClock::new();
    let limiter = RateLimiter::builder()
        .clock(clock.clone())
        .limit(tokens("tpm", 10, 60 * SEC, LimitKey::Global))
        .build()
        .unwrap();
    let _p = limiter.reserve(&req("p", "m", 10, 0), clock.now()).unwrap();
    clock.advance(Duration::from_millis(500));
    let err = limiter
        .reserve(&req("p", "m", 1, 0), clock.now())
        .unwrap_err();
    let l = limited(err.clone());
    assert_eq!(l.unit, LimitUnit::Tokens);
    assert_eq!(l.retry_after, Duration::from_millis(5_500));
    assert_eq!(l.reset, Duration::from_millis(59_500));
    let expected = [
        ("retry-after", "6"),
        ("x-ratelimit-limit", "10"),
        ("x-ratelimit-remaining", "0"),
        ("x-ratelimit-reset", "60"),
    ];
    let got = err.headers();
    let got: Vec<_> = got.iter().map(|(n, v)| (*n, v.as_str())).collect();
    assert_eq!(got, expected);
    assert!(l.to_string().contains("tpm"));

    // A microsecond wait is still `retry-after: 1`, never 0.
    let fast = RateLimiter::builder()
        .clock(clock.clone())
        .limit(tokens("fast", 1_000_000, SEC, LimitKey::Global))
        .build()
        .unwrap();
    let _all = fast
        .reserve(&req("p", "m", 1_000_000, 0), clock.now())
        .unwrap();
    let l = limited(fast.reserve(&req("p", "m", 1, 0), clock.now()).unwrap_err());
    assert_eq!(l.retry_after, Duration::from_micros(1));
    assert_eq!(l.retry_after_secs(), 1);
    assert_eq!(l.headers()[0], ("retry-after", "1".to_owned()));
    // Whole seconds stay as they are.
    clock.advance(SEC);
    let _all = fast
        .reserve(&req("p", "m", 1_000_000, 0), clock.now())
        .unwrap();
    let l = limited(
        fast.reserve(&req("p", "m", 1_000_000, 0), clock.now())
            .unwrap_err(),
    );
    assert_eq!(l.headers()[0], ("retry-after", "1".to_owned()));
    assert_eq!(l.headers()[3], ("x-ratelimit-reset", "1".to_owned()));

    // A successful response gets the tightest enforced limit's numbers.
    let two = RateLimiter::builder()
        .clock(clock.clone())
        .limit(tokens("big", 1_000, 60 * SEC, LimitKey::Global))
        .limit(requests("many", 100, 60 * SEC, LimitKey::Global))
        .build()
        .unwrap();
    let p = two.reserve(&req("p", "m", 100, 0), clock.now()).unwrap();
    let tight = p.tightest().unwrap();
    assert_eq!((tight.limit, tight.remaining), ("big", 900));
    let p2 = two.reserve(&req("p", "m", 0, 0), clock.now()).unwrap();
    assert_eq!(
        p2.headers(),
        [
            ("x-ratelimit-limit", "1000".to_owned()),
            ("x-ratelimit-remaining", "900".to_owned()),
            ("x-ratelimit-reset", "6".to_owned()),
        ]
    );
    drop((p, p2));
}

#[test]
fn shadow_mode_never_rejects_but_reports() {
    let clock = ManualClock::new();
    let limiter = RateLimiter::builder()
        .clock(clock.clone())
        .limit(tokens("enforced", 1_000, 60 * SEC, LimitKey::Global))
        .limit(requests("trial", 1, 60 * SEC, LimitKey::PerPrincipal).shadow_mode())
        .build()
        .unwrap();
    let r = req("p", "m", 10, 0);
    let first = limiter.reserve(&r, clock.now()).unwrap();
    assert!(!first.would_have_limited());
    let mut permits = Vec::new();
    for _ in 0..5 {
        let p = limiter.reserve(&r, clock.now()).unwrap();
        assert!(p.would_have_limited());
        assert_eq!(p.shadow_limited().collect::<Vec<_>>(), ["trial"]);
        permits.push(p);
    }
    let stats = limiter.stats();
    assert_eq!(stats.limits[1].shadow_rejected, 5);
    assert_eq!(stats.limits[1].rejected, 0);
    assert_eq!(stats.limits[0].rejected, 0);
    // The shadow bucket was charged only for the request it admitted.
    assert_eq!(remaining(&limiter, "trial", &r, &clock), 0);
    assert_eq!(remaining(&limiter, "enforced", &r, &clock), 940);
    // Shadow limits do not drive the client-facing headers.
    assert_eq!(first.tightest().unwrap().limit, "enforced");
    first.settle(Usage::new(10, 0), clock.now());
    clock.advance(60 * SEC);
    assert_eq!(remaining(&limiter, "trial", &r, &clock), 1);
}

#[test]
fn invalid_specs_are_rejected_with_typed_errors() {
    let build = |spec: LimitSpec| RateLimiter::builder().limit(spec).build().unwrap_err();
    assert_eq!(
        build(tokens("t", 0, SEC, LimitKey::Global)),
        SpecError::ZeroCapacity { limit: "t".into() }
    );
    assert_eq!(
        build(tokens("t", 1, Duration::ZERO, LimitKey::Global)),
        SpecError::ZeroRefillPeriod { limit: "t".into() }
    );
    assert!(matches!(
        build(tokens("t", 1, MAX_REFILL_PERIOD + SEC, LimitKey::Global)),
        SpecError::RefillPeriodTooLong { .. }
    ));
    assert_eq!(
        build(tokens("", 1, SEC, LimitKey::Global)),
        SpecError::EmptyName
    );
    let dup = RateLimiter::builder()
        .limit(tokens("t", 1, SEC, LimitKey::Global))
        .limit(requests("t", 1, SEC, LimitKey::PerModel))
        .build()
        .unwrap_err();
    assert_eq!(dup, SpecError::DuplicateName { limit: "t".into() });
    let mut many = RateLimiter::builder();
    for i in 0..=MAX_LIMITS {
        many = many.limit(tokens(&format!("l{i}"), 1, SEC, LimitKey::Global));
    }
    assert_eq!(
        many.build().unwrap_err(),
        SpecError::TooManyLimits {
            count: MAX_LIMITS + 1,
            max: MAX_LIMITS
        }
    );
    assert_eq!(
        RateLimiter::builder()
            .max_keys_per_limit(0)
            .build()
            .unwrap_err(),
        SpecError::ZeroMaxKeys
    );
    for bad in ["", "a*b", "**"] {
        assert!(matches!(
            ModelAllowList::default().allow(bad, &["m"]),
            Err(SpecError::InvalidPattern { .. })
        ));
        assert!(matches!(
            ModelAllowList::default().allow("p", &[bad]),
            Err(SpecError::InvalidPattern { .. })
        ));
    }
    assert!(
        CostModel::default()
            .with_model("*mini", CostWeights::UNIT)
            .is_err()
    );
    assert!(matches!(
        TokenBucket::new(0, SEC, ManualClock::new().now()),
        Err(SpecError::ZeroCapacity { .. })
    ));
    // The largest period is fine.
    assert!(
        RateLimiter::builder()
            .limit(tokens("t", u64::MAX, MAX_REFILL_PERIOD, LimitKey::Global))
            .build()
            .is_ok()
    );
}

#[test]
fn idle_eviction_bounds_memory() {
    let clock = ManualClock::new();
    let limiter = RateLimiter::builder()
        .clock(clock.clone())
        .max_keys_per_limit(4)
        .sweep_backoff(Duration::from_millis(100))
        .limit(requests(
            "rps",
            1,
            Duration::from_millis(50),
            LimitKey::PerPrincipal,
        ))
        .build()
        .unwrap();
    let held = limiter.reserve(&req("p0", "m", 0, 0), clock.now()).unwrap();
    for i in 1..4 {
        limiter
            .reserve(&req(&format!("p{i}"), "m", 0, 0), clock.now())
            .unwrap()
            .settle_reserved();
    }
    assert_eq!(limiter.key_count(), 4);
    // Full, nothing idle: a new key fails closed and is counted.
    let err = limiter
        .reserve(&req("p4", "m", 0, 0), clock.now())
        .unwrap_err();
    assert_eq!(
        err,
        RateLimitError::KeyTableFull {
            limit: "rps".into()
        }
    );
    assert_eq!(err.headers(), [("retry-after", "1".to_owned())]);
    assert_eq!(limiter.stats().limits[0].key_table_full, 1);
    // After 60 ms three buckets are idle, but the sweep backs off for 100 ms
    // after one that freed nothing.
    clock.advance(Duration::from_millis(60));
    assert!(limiter.reserve(&req("p4", "m", 0, 0), clock.now()).is_err());
    // Known keys are never refused.
    limiter
        .reserve(&req("p1", "m", 0, 0), clock.now())
        .unwrap()
        .settle_reserved();
    clock.advance(Duration::from_millis(40));
    limiter
        .reserve(&req("p4", "m", 0, 0), clock.now())
        .unwrap()
        .settle_reserved();
    assert_eq!(limiter.key_count(), 3, "p2 and p3 were forgotten, p4 added");
    assert_eq!(limiter.stats().limits[0].key_table_full, 2);

    // Many principals over time: memory stays bounded.
    for i in 0..1_000 {
        clock.advance(SEC);
        let r = req(&format!("many-{i}"), "m", 0, 0);
        limiter.reserve(&r, clock.now()).unwrap().settle_reserved();
        assert!(limiter.key_count() <= 4);
    }
    assert!(
        limiter
            .quota("rps", &req("p0", "m", 0, 0), clock.now())
            .is_some()
    );
    clock.advance(SEC);
    assert_eq!(limiter.evict_idle(clock.now()), 3);
    assert_eq!(limiter.key_count(), 1, "the held permit keeps p0");
    held.settle_reserved();
    assert_eq!(limiter.evict_idle(clock.now()), 1);
    limiter
        .reserve(&req("p5", "m", 0, 0), clock.now())
        .unwrap()
        .settle_reserved();
    assert_eq!(
        limiter.evict_idle(clock.now()),
        0,
        "p5's bucket is not full"
    );
    clock.advance(SEC);
    assert_eq!(limiter.evict_idle(clock.now()), 1);
    assert_eq!(limiter.key_count(), 0);
    assert_eq!(limiter.stats().limits[0].keys, 0);
}

#[derive(Debug, Clone)]
enum Op {
    Reserve {
        principal: usize,
        model: usize,
        input: u64,
        output: u64,
    },
    Settle {
        index: usize,
        input: u64,
        cached: u64,
        output: u64,
    },
    Drop {
        index: usize,
    },
    Advance {
        millis: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let reserve =
        (0..3usize, 0..2usize, 0..60u64, 0..60u64).prop_map(|(principal, model, input, output)| {
            Op::Reserve {
                principal,
                model,
                input,
                output,
            }
        });
    let settle = (any::<usize>(), 0..80u64, 0..80u64, 0..200u64).prop_map(
        |(index, input, cached, output)| Op::Settle {
            index,
            input,
            cached,
            output,
        },
    );
    prop_oneof![
        4 => reserve,
        2 => settle,
        1 => any::<usize>().prop_map(|index| Op::Drop { index }),
        2 => (0..3_000u64).prop_map(|millis| Op::Advance { millis }),
    ]
}

const MODELS: [&str; 2] = ["cheap", "pricey"];
const PRINCIPALS: [&str; 3] = ["a", "b", "c"];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_sequences_keep_buckets_within_bounds(
        ops in proptest::collection::vec(op(), 1..120),
        refund_on_cancel in any::<bool>(),
    ) {
        let clock = ManualClock::new();
        let pricey = CostWeights::per_mille(1_000, 250, 3_000);
        let costs = CostModel::default().with_model("pricey", pricey).unwrap();
        let policy = if refund_on_cancel {
            CancelPolicy::RefundTokens
        } else {
            CancelPolicy::ChargeReservation
        };
        let global = (200u64, 7 * SEC);
        let per_principal = (5u64, 3 * SEC);
        let limiter = RateLimiter::builder()
            .clock(clock.clone())
            .cost_model(costs)
            .cancel_policy(policy)
            .limit(tokens("global", global.0, global.1, LimitKey::Global))
            .limit(requests("rpp", per_principal.0, per_principal.1, LimitKey::PerPrincipal))
            .limit(tokens("pair", 120, 5 * SEC, LimitKey::PerPrincipalModel))
            .limit(tokens("shadow", 50, 2 * SEC, LimitKey::PerModel).shadow_mode())
            .build()
            .unwrap();
        let start = clock.now();
        let mut permits = Vec::new();
        // Admitted reservations and refunds on the global limit.
        let (mut granted, mut refunded) = (0u128, 0u128);
        let mut granted_per_principal = [0u128; 3];
        for op in ops {
            match op {
                Op::Reserve { principal, model, input, output } => {
                    let r = req(PRINCIPALS[principal], MODELS[model], input, output);
                    match limiter.reserve(&r, clock.now()) {
                        Ok(p) => {
                            granted += u128::from(p.quotas().next().unwrap().reserved);
                            granted_per_principal[principal] += 1;
                            for q in p.quotas() {
                                prop_assert!(q.remaining <= q.limit_value);
                                prop_assert!(q.reserved <= q.limit_value);
                            }
                            permits.push((p, model));
                        }
                        Err(RateLimitError::Limited(l)) => {
                            prop_assert!(l.remaining <= l.limit_value);
                            prop_assert!(l.retry_after > Duration::ZERO);
                            prop_assert!(l.limit != "shadow");
                        }
                        Err(other) => prop_assert!(false, "unexpected {other:?}"),
                    }
                }
                Op::Settle { index, input, cached, output } if !permits.is_empty() => {
                    let (p, model) = permits.swap_remove(index % permits.len());
                    let reserved = p.quotas().next().unwrap().reserved;
                    let usage = Usage::new(input, output).with_cached_input(cached);
                    let weights = if model == 1 { pricey } else { CostWeights::UNIT };
                    let actual = weights.usage_cost(usage);
                    refunded += u128::from(reserved.saturating_sub(actual));
                    p.settle(usage, clock.now());
                }
                Op::Drop { index } if !permits.is_empty() => {
                    let (p, _) = permits.swap_remove(index % permits.len());
                    if refund_on_cancel {
                        refunded += u128::from(p.quotas().next().unwrap().reserved);
                    }
                    drop(p);
                }
                Op::Advance { millis } => clock.advance(Duration::from_millis(millis)),
                Op::Settle { .. } | Op::Drop { .. } => {}
            }
            for principal in PRINCIPALS {
                for model in MODELS {
                    let r = req(principal, model, 0, 0);
                    for spec in limiter.limits() {
                        let q = limiter.quota(&spec.name, &r, clock.now()).unwrap();
                        prop_assert!(q.remaining <= q.limit_value);
                    }
                }
            }
            // Admission never exceeds capacity + refill + refunds: in
            // sub-units, granted × period ≤ (cap + refunds) × period +
            // elapsed × cap.
            let elapsed = (clock.now() - start).as_nanos();
            let (cap, period) = (u128::from(global.0), global.1.as_nanos());
            prop_assert!(granted * period <= (cap + refunded) * period + elapsed * cap);
            let (cap, period) = (u128::from(per_principal.0), per_principal.1.as_nanos());
            for g in granted_per_principal {
                prop_assert!(g * period <= cap * period + elapsed * cap);
            }
        }
        drop(permits);
        prop_assert!(limiter.key_count() <= 3 + 3 + 6 + 2);
    }
}
