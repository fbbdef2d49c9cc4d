//! Fault injection: Istio `HTTPFaultInjection` parsing, validation and
//! sampling with injected randomness.

use std::time::Duration;

use appnet_policy::{
    AbortFault, AbortStatus, DelayFault, FaultError, FaultInjection, FaultInvalid, FaultOutcome,
    GrpcCode, MAX_INPUT_BYTES, Percentage, Random, SeededRandom,
};
use proptest::prelude::*;

fn parse(yaml: &str) -> FaultInjection {
    FaultInjection::from_yaml(yaml).unwrap_or_else(|e| panic!("{e}"))
}

fn invalid(yaml: &str) -> (String, FaultInvalid) {
    match FaultInjection::from_yaml(yaml) {
        Err(FaultError::Invalid { field, reason }) => (field, reason),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn parses_delay_and_abort() {
    let f = parse(
        "delay:\n  fixedDelay: 5s\n  percentage: {value: 10.5}\nabort:\n  httpStatus: 503\n  percentage: {value: 1}\n",
    );
    assert_eq!(
        f,
        FaultInjection {
            delay: Some(DelayFault {
                fixed_delay: Duration::from_secs(5),
                percentage: Percentage::from_percent(10.5),
            }),
            abort: Some(AbortFault {
                status: AbortStatus::Http(503),
                percentage: Percentage::from_percent(1.0),
            }),
        }
    );
    assert_eq!(f.delay.unwrap().percentage.unwrap().millionths(), 105_000);
}

#[test]
fn parses_grpc_status_names_and_go_durations() {
    let f = parse(
        "abort: {grpcStatus: UNAVAILABLE, percentage: {value: 100}}\ndelay: {fixedDelay: 1.5ms}",
    );
    assert_eq!(
        f.abort.unwrap().status,
        AbortStatus::Grpc(GrpcCode::Unavailable)
    );
    assert_eq!(GrpcCode::Unavailable.code(), 14);
    assert_eq!(GrpcCode::Unavailable.name(), "UNAVAILABLE");
    assert_eq!(GrpcCode::from_name("DATA_LOSS"), Some(GrpcCode::DataLoss));
    assert_eq!(f.delay.unwrap().fixed_delay, Duration::from_micros(1500));
    assert_eq!(
        parse("delay: {fixedDelay: 1h2m}")
            .delay
            .unwrap()
            .fixed_delay,
        Duration::from_secs(3720)
    );
}

#[test]
fn deprecated_integer_percent_is_read() {
    let f = parse("delay: {fixedDelay: 1s, percent: 25}");
    assert_eq!(f.delay.unwrap().percentage, Percentage::from_percent(25.0));
    assert_eq!(
        invalid("delay: {fixedDelay: 1s, percent: 5, percentage: {value: 5}}"),
        ("delay.percent".into(), FaultInvalid::PercentAndPercentage)
    );
}

#[test]
fn empty_input_is_no_fault() {
    assert_eq!(parse(""), FaultInjection::default());
    assert_eq!(parse("{}"), FaultInjection::default());
}

#[test]
fn percentages_outside_0_to_100_are_rejected() {
    for v in ["-1", "100.5", ".nan", "1e9"] {
        let (field, reason) = invalid(&format!(
            "abort: {{httpStatus: 500, percentage: {{value: {v}}}}}"
        ));
        assert_eq!(field, "abort.percentage.value");
        assert!(matches!(reason, FaultInvalid::Percentage(_)), "{v}");
    }
    assert!(matches!(
        invalid("delay: {fixedDelay: 1s, percent: 101}").1,
        FaultInvalid::Percentage(_)
    ));
}

#[test]
fn http_status_must_be_200_to_599() {
    for s in [199, 600, 0, -1] {
        assert_eq!(
            invalid(&format!("abort: {{httpStatus: {s}}}")),
            ("abort.httpStatus".into(), FaultInvalid::HttpStatus(s))
        );
    }
    for s in [200, 599] {
        assert_eq!(
            parse(&format!("abort: {{httpStatus: {s}}}"))
                .abort
                .unwrap()
                .status,
            AbortStatus::Http(s)
        );
    }
}

#[test]
fn abort_needs_exactly_one_status() {
    assert_eq!(
        invalid("abort: {percentage: {value: 1}}").1,
        FaultInvalid::AbortStatusCount
    );
    assert_eq!(
        invalid("abort: {httpStatus: 500, grpcStatus: INTERNAL}").1,
        FaultInvalid::AbortStatusCount
    );
    assert_eq!(
        invalid("abort: {grpcStatus: unavailable}"),
        (
            "abort.grpcStatus".into(),
            FaultInvalid::GrpcStatus("unavailable".into())
        )
    );
    assert_eq!(
        invalid("abort: {http2Error: x}").1,
        FaultInvalid::Unsupported("http2Error")
    );
}

#[test]
fn delay_needs_a_valid_fixed_delay() {
    assert_eq!(
        invalid("delay: {percentage: {value: 1}}").1,
        FaultInvalid::MissingDelay
    );
    for d in ["5", "-1s", "abc", "0s", "999us", ""] {
        assert_eq!(
            invalid(&format!("delay: {{fixedDelay: '{d}'}}")),
            ("delay.fixedDelay".into(), FaultInvalid::Duration(d.into())),
            "{d}"
        );
    }
    assert_eq!(
        invalid("delay: {exponentialDelay: 1s}").1,
        FaultInvalid::Unsupported("exponentialDelay")
    );
}

#[test]
fn unknown_fields_and_wrong_types_name_the_field() {
    match FaultInjection::from_yaml("delay: {fixedDelay: 1s, percentage: {valeu: 3}}") {
        Err(FaultError::Schema { field, .. }) => assert_eq!(field, "delay.percentage.valeu"),
        other => panic!("{other:?}"),
    }
    match FaultInjection::from_yaml("abort: {httpStatus: five}") {
        Err(FaultError::Schema { field, message }) => {
            assert_eq!(field, "abort.httpStatus");
            assert!(message.contains("invalid type"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        FaultInjection::from_yaml("fault: {}"),
        Err(FaultError::Schema { .. })
    ));
    assert!(matches!(
        FaultInjection::from_yaml("[unclosed"),
        Err(FaultError::Yaml { .. })
    ));
}

#[test]
fn huge_input_and_alias_bombs_are_refused() {
    let big = "#".repeat(MAX_INPUT_BYTES + 1);
    assert!(matches!(
        FaultInjection::from_yaml(&big),
        Err(FaultError::TooLarge { .. })
    ));
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 0..12 {
        let prev = if i == 0 {
            "a".to_owned()
        } else {
            format!("l{}", i - 1)
        };
        bomb.push_str(&format!(
            "l{i}: &l{i} [{}]\n",
            vec![format!("*{prev}"); 10].join(", ")
        ));
    }
    assert!(matches!(
        FaultInjection::from_yaml(&bomb),
        Err(FaultError::Yaml { .. })
    ));
}

/// Counts delays and aborts over 10,000 seeded samples.
fn counts(f: &FaultInjection, seed: u64) -> (u32, u32, u32) {
    let mut rng = SeededRandom::new(seed);
    let (mut delays, mut aborts, mut both) = (0, 0, 0);
    for _ in 0..10_000 {
        let o = f.sample(&mut rng);
        delays += u32::from(o.delay.is_some());
        aborts += u32::from(o.abort.is_some());
        both += u32::from(o.delay.is_some() && o.abort.is_some());
    }
    (delays, aborts, both)
}

#[test]
fn delay_and_abort_are_sampled_independently_by_percentage() {
    let f = parse(
        "delay: {fixedDelay: 1s, percentage: {value: 30}}\nabort: {httpStatus: 503, percentage: {value: 50}}",
    );
    for seed in [1, 2] {
        let (d, a, both) = counts(&f, seed);
        assert!((2_800..=3_200).contains(&d), "delays {d}");
        assert!((4_800..=5_200).contains(&a), "aborts {a}");
        // Independent: 30 % × 50 % = 15 % get both.
        assert!((1_300..=1_700).contains(&both), "both {both}");
    }
}

#[test]
fn unset_percentage_never_fires_and_draws_nothing() {
    struct NoDraw;
    impl Random for NoDraw {
        fn next_u64(&mut self) -> u64 {
            panic!("drew")
        }
    }
    let f = parse("delay: {fixedDelay: 1s}\nabort: {httpStatus: 503}");
    assert_eq!(f.sample(&mut NoDraw), FaultOutcome::default());
}

#[test]
fn zero_and_hundred_percent_are_exact() {
    let f = parse(
        "delay: {fixedDelay: 2s, percentage: {value: 100}}\nabort: {grpcStatus: INTERNAL, percentage: {value: 0}}",
    );
    let (d, a, _) = counts(&f, 3);
    assert_eq!((d, a), (10_000, 0));
    let o = f.sample(&mut SeededRandom::new(1));
    assert_eq!(o.delay, Some(Duration::from_secs(2)));
}

#[test]
fn delay_draws_before_abort() {
    /// Replays draws: the first decides the delay, the second the abort.
    struct Script(Vec<u64>);
    impl Random for Script {
        fn next_u64(&mut self) -> u64 {
            self.0.remove(0)
        }
    }
    let f = parse(
        "delay: {fixedDelay: 1s, percentage: {value: 50}}\nabort: {httpStatus: 500, percentage: {value: 50}}",
    );
    // A draw of 1 maps to 0 (< 500_000: hit); u64::MAX maps to 999_999 (miss).
    let o = f.sample(&mut Script(vec![1, u64::MAX]));
    assert_eq!((o.delay.is_some(), o.abort.is_some()), (true, false));
    let o = f.sample(&mut Script(vec![u64::MAX, 1]));
    assert_eq!((o.delay.is_some(), o.abort.is_some()), (false, true));
}

proptest! {
    /// Arbitrary text never panics the parser; whatever parses samples
    /// deterministically for a seed.
    #[test]
    fn parsing_and_sampling_never_panic(yaml in ".{0,200}", seed in any::<u64>()) {
        if let Ok(f) = FaultInjection::from_yaml(&yaml) {
            prop_assert_eq!(f.sample(&mut SeededRandom::new(seed)), f.sample(&mut SeededRandom::new(seed)));
        }
    }

    /// A percentage's hit rate over a full sweep of draws is exactly its
    /// millionths: draw `k * 2^64 / 1e6` for every k maps to k.
    #[test]
    fn percentage_maps_to_draws_exactly(millionths in 0u32..=1_000_000) {
        let p = Percentage::from_millionths(millionths).unwrap();
        // A draw inside bucket k (one past its first value, so the product's
        // low half is at least 1e6 and never in the rejected stretch).
        let at = |k: u64| ((u128::from(k) << 64).div_ceil(1_000_000)) as u64 + 1;
        struct One(u64);
        impl Random for One {
            fn next_u64(&mut self) -> u64 { self.0 }
        }
        if millionths > 0 {
            prop_assert!(One(at(u64::from(millionths) - 1)).chance(p));
        }
        if millionths < 1_000_000 {
            prop_assert!(!One(at(u64::from(millionths))).chance(p));
        }
    }
}
