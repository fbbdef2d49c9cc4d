//! The pure schedule: unit tests and properties.

use std::time::{Duration, SystemTime};

use proptest::prelude::*;

use appnet_identity::rotation::{RefreshPolicy, RotationSchedule, Validity};

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

const T0: u64 = 1_700_000_000;

/// A certificate valid for 100 s from `T0`.
fn hundred_seconds() -> Validity {
    Validity::new(at(T0), at(T0 + 100))
}

fn no_jitter() -> RotationSchedule {
    let mut policy = RefreshPolicy::default();
    policy.jitter = 0.0;
    RotationSchedule::new(policy)
}

#[test]
fn refreshes_at_half_life_without_jitter() {
    let schedule = no_jitter();
    for sample in [0.0, 0.3, 0.999] {
        assert_eq!(
            schedule.next_refresh(hundred_seconds(), at(T0 + 1), sample, 0),
            at(T0 + 50)
        );
    }
}

#[test]
fn default_jitter_spans_45_to_55_percent_of_lifetime() {
    let schedule = RotationSchedule::default();
    let v = hundred_seconds();
    assert_eq!(schedule.refresh_point(v, 0.0), at(T0 + 45));
    assert_eq!(schedule.refresh_point(v, 0.5), at(T0 + 50));
    assert_eq!(schedule.refresh_point(v, 1.0), at(T0 + 55));
    let high = schedule.refresh_point(v, 0.999_999);
    assert!(high > at(T0 + 54) && high < at(T0 + 55), "{high:?}");
}

#[test]
fn jitter_sample_out_of_range_or_nan_is_clamped() {
    let schedule = RotationSchedule::default();
    let v = hundred_seconds();
    assert_eq!(schedule.refresh_point(v, -3.0), at(T0 + 45));
    assert_eq!(schedule.refresh_point(v, 7.0), at(T0 + 55));
    assert_eq!(schedule.refresh_point(v, f64::NAN), at(T0 + 50));
    assert_eq!(schedule.refresh_point(v, f64::INFINITY), at(T0 + 55));
}

#[test]
fn refresh_fraction_follows_the_policy() {
    let mut policy = RefreshPolicy::default();
    policy.refresh_at = 0.8;
    policy.jitter = 0.1;
    let schedule = RotationSchedule::new(policy);
    assert_eq!(schedule.refresh_point(hundred_seconds(), 0.0), at(T0 + 70));
    assert_eq!(schedule.refresh_point(hundred_seconds(), 1.0), at(T0 + 90));
}

#[test]
fn backoff_doubles_from_one_second() {
    let schedule = RotationSchedule::default();
    let waits: Vec<u64> = (0..=6).map(|n| schedule.backoff(n).as_secs()).collect();
    assert_eq!(waits, [0, 1, 2, 4, 8, 16, 32]);
}

#[test]
fn backoff_is_capped_at_five_minutes() {
    let schedule = RotationSchedule::default();
    assert_eq!(schedule.backoff(9), Duration::from_secs(256));
    assert_eq!(schedule.backoff(10), Duration::from_secs(300));
    assert_eq!(schedule.backoff(64), Duration::from_secs(300));
    assert_eq!(schedule.backoff(u32::MAX), Duration::from_secs(300));
}

#[test]
fn backoff_factor_zero_behaves_as_one() {
    let mut policy = RefreshPolicy::default();
    policy.backoff_factor = 0;
    let schedule = RotationSchedule::new(policy);
    assert_eq!(schedule.backoff(1), Duration::from_secs(1));
    assert_eq!(schedule.backoff(5), Duration::from_secs(1));
}

#[test]
fn after_a_failure_retry_is_now_plus_backoff() {
    let schedule = RotationSchedule::default();
    let v = hundred_seconds();
    assert_eq!(schedule.next_refresh(v, at(T0 + 50), 0.5, 1), at(T0 + 51));
    assert_eq!(schedule.next_refresh(v, at(T0 + 51), 0.5, 2), at(T0 + 53));
    assert_eq!(schedule.next_refresh(v, at(T0 + 53), 0.5, 3), at(T0 + 57));
    // The jitter sample only moves the first refresh.
    assert_eq!(schedule.next_refresh(v, at(T0 + 53), 0.0, 3), at(T0 + 57));
}

#[test]
fn retries_are_clamped_just_before_expiry() {
    let schedule = RotationSchedule::default();
    let v = hundred_seconds();
    // 81 + 32 would be after notAfter: the last try is 1 s before it.
    assert_eq!(schedule.next_refresh(v, at(T0 + 81), 0.5, 6), at(T0 + 99));
    assert_eq!(schedule.next_refresh(v, at(T0 + 95), 0.5, 30), at(T0 + 99));
}

#[test]
fn refresh_is_never_before_not_before() {
    let schedule = RotationSchedule::default();
    let v = hundred_seconds();
    // A clock behind the certificate (skew): retry no earlier than notBefore.
    assert_eq!(schedule.next_refresh(v, at(T0 - 600), 0.5, 1), at(T0));
    let mut policy = RefreshPolicy::default();
    policy.refresh_at = 0.0;
    policy.jitter = 0.0;
    assert_eq!(RotationSchedule::new(policy).refresh_point(v, 0.5), at(T0));
}

#[test]
fn wait_is_time_until_refresh() {
    let schedule = no_jitter();
    let v = hundred_seconds();
    assert_eq!(schedule.wait(v, at(T0), 0.5, 0), Duration::from_secs(50));
    assert_eq!(
        schedule.wait(v, at(T0 + 50), 0.5, 2),
        Duration::from_secs(2)
    );
    assert_eq!(
        schedule.wait(v, at(T0 + 98), 0.5, 6),
        Duration::from_secs(1)
    );
}

#[test]
fn wait_is_zero_when_a_fresh_certificate_is_due() {
    let schedule = no_jitter();
    let v = hundred_seconds();
    assert!(schedule.is_due(v, at(T0 + 60), 0.5));
    assert!(!schedule.is_due(v, at(T0 + 49), 0.5));
    assert_eq!(schedule.wait(v, at(T0 + 60), 0.5, 0), Duration::ZERO);
}

#[test]
fn after_expiry_retries_keep_backing_off() {
    let schedule = RotationSchedule::default();
    let v = hundred_seconds();
    // The retry window has closed: no tight loop, the backoff pace goes on.
    assert_eq!(
        schedule.wait(v, at(T0 + 99), 0.5, 7),
        Duration::from_secs(64)
    );
    assert_eq!(
        schedule.wait(v, at(T0 + 500), 0.5, 12),
        Duration::from_secs(300)
    );
}

#[test]
fn empty_or_inverted_validity_refreshes_at_not_before() {
    let schedule = RotationSchedule::default();
    let empty = Validity::new(at(T0), at(T0));
    let inverted = Validity::new(at(T0 + 10), at(T0));
    assert_eq!(empty.lifetime(), Duration::ZERO);
    assert_eq!(inverted.lifetime(), Duration::ZERO);
    assert_eq!(schedule.next_refresh(empty, at(T0 + 5), 0.5, 0), at(T0));
    assert_eq!(
        schedule.next_refresh(inverted, at(T0 + 5), 0.5, 3),
        at(T0 + 10)
    );
}

#[test]
fn lifetime_shorter_than_margin_refreshes_at_not_before() {
    let schedule = RotationSchedule::default();
    let v = Validity::new(at(T0), at(T0) + Duration::from_millis(500));
    assert_eq!(schedule.next_refresh(v, at(T0), 0.5, 0), at(T0));
    assert_eq!(schedule.next_refresh(v, at(T0), 0.5, 4), at(T0));
}

/// Instants up to ~3000 years either side of 1970.
fn instant() -> impl Strategy<Value = SystemTime> {
    (-100_000_000_000i64..100_000_000_000, 0u32..1_000_000_000).prop_map(|(secs, nanos)| {
        let offset = Duration::new(secs.unsigned_abs(), nanos);
        if secs < 0 {
            SystemTime::UNIX_EPOCH - offset
        } else {
            SystemTime::UNIX_EPOCH + offset
        }
    })
}

fn validity() -> impl Strategy<Value = Validity> {
    (instant(), 1u64..u64::MAX).prop_map(|(not_before, lifetime_ns)| {
        Validity::new(not_before, not_before + Duration::from_nanos(lifetime_ns))
    })
}

fn fraction() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => -0.5f64..1.5,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
    ]
}

fn policy() -> impl Strategy<Value = RefreshPolicy> {
    (
        fraction(),
        fraction(),
        0u64..10_000_000_000,
        0u32..10,
        0u64..1_000_000_000_000,
        0u64..100_000_000_000,
    )
        .prop_map(|(refresh_at, jitter, base, factor, cap, margin)| {
            let mut p = RefreshPolicy::default();
            p.refresh_at = refresh_at;
            p.jitter = jitter;
            p.backoff_base = Duration::from_nanos(base);
            p.backoff_factor = factor;
            p.backoff_cap = Duration::from_nanos(cap);
            p.expiry_margin = Duration::from_nanos(margin);
            p
        })
}

proptest! {
    #[test]
    fn refresh_is_within_validity_for_any_input(
        policy in policy(),
        v in validity(),
        now in instant(),
        sample in fraction(),
        failures in any::<u32>(),
    ) {
        let schedule = RotationSchedule::new(policy);
        let t = schedule.next_refresh(v, now, sample, failures);
        prop_assert!(t >= v.not_before, "{t:?} before {v:?}");
        prop_assert!(t <= v.not_after, "{t:?} after {v:?}");
    }

    #[test]
    fn default_policy_refreshes_in_jitter_window(
        v in validity(),
        now in instant(),
        sample in 0.0f64..1.0,
    ) {
        let schedule = RotationSchedule::default();
        let t = schedule.next_refresh(v, now, sample, 0);
        let lifetime = v.lifetime().as_secs_f64();
        let offset = t.duration_since(v.not_before).unwrap_or_default().as_secs_f64();
        // Unless the 1 s margin bites (lifetimes under ~2.2 s).
        let slack = lifetime * 1e-9 + 1e-6;
        if lifetime > 3.0 {
            prop_assert!(offset >= lifetime * 0.45 - slack, "{offset} of {lifetime}");
            prop_assert!(offset <= lifetime * 0.55 + slack, "{offset} of {lifetime}");
        }
    }

    #[test]
    fn retries_never_spin(
        policy in policy(),
        v in validity(),
        now in instant(),
        sample in fraction(),
        failures in 1u32..,
    ) {
        let spins_allowed = policy.backoff_base.is_zero() || policy.backoff_cap.is_zero();
        let schedule = RotationSchedule::new(policy);
        let wait = schedule.wait(v, now, sample, failures);
        // After a failure the task always sleeps, even past expiry...
        if !spins_allowed {
            prop_assert!(!wait.is_zero());
        }
        // ...for the backoff, or until notBefore when the clock is behind it.
        let until_valid = v.not_before.duration_since(now).unwrap_or_default();
        prop_assert!(wait <= schedule.backoff(failures).max(until_valid));
    }

    #[test]
    fn backoff_grows_monotonically_to_the_cap(policy in policy(), failures in 1u32..200) {
        let schedule = RotationSchedule::new(policy.clone());
        let this = schedule.backoff(failures);
        let next = schedule.backoff(failures + 1);
        prop_assert!(next >= this);
        prop_assert!(this <= policy.backoff_cap);
        prop_assert!(this >= policy.backoff_base.min(policy.backoff_cap));
    }
}
