//! Injected randomness for routing and fault injection.
//!
//! Everything in this crate that picks at random — a weighted backend, a
//! mirrored request, an injected delay or abort — draws from a [`Random`]
//! passed in by the caller, so tests fix the outcome with [`SeededRandom`]
//! and production code can plug in any generator.
//!
//! # How a percentage becomes a draw
//! A [`Percentage`] is kept as an integer number of millionths
//! (`round(percent × 10_000)`, so `10.5` % is `105_000`). [`Random::chance`]
//! draws one integer uniformly from `[0, 1_000_000)` and hits when the draw is
//! below that number. Over the whole range of draws the hit rate is therefore
//! exactly the stored number of millionths: `0` never hits, `100` always
//! hits, and precision finer than 0.0001 % is rounded away (the same
//! granularity Envoy's `FractionalPercent` with a `MILLION` denominator has).

/// A source of uniformly distributed 64-bit integers.
///
/// Only [`next_u64`](Random::next_u64) must be written; the other methods
/// derive unbiased draws from it. Implement it over a cryptographic or a fast
/// generator as the caller sees fit; the routing code never seeds or stores
/// one itself.
pub trait Random {
    /// The next 64 uniformly distributed bits.
    fn next_u64(&mut self) -> u64;

    /// A uniform integer in `[0, bound)`, without modulo bias (Lemire's
    /// multiply-and-reject method). Returns `0` when `bound` is `0` or `1`
    /// (and draws nothing when `bound` is `0`).
    fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            return 0;
        }
        let mut wide = u128::from(self.next_u64()) * u128::from(bound);
        // The low half decides whether this draw fell in the short, biased
        // stretch of the range; redraw only then.
        if (wide as u64) < bound {
            let threshold = bound.wrapping_neg() % bound;
            while (wide as u64) < threshold {
                wide = u128::from(self.next_u64()) * u128::from(bound);
            }
        }
        (wide >> 64) as u64
    }

    /// One draw in `[0, 1_000_000)`, a hit when it is below the percentage's
    /// millionths: exact for every representable percentage.
    fn chance(&mut self, p: Percentage) -> bool {
        self.below(u64::from(Percentage::SCALE)) < u64::from(p.millionths())
    }

    /// One draw in `[0, denominator)`, a hit when it is below `numerator`:
    /// probability exactly `numerator / denominator` (capped at 1). A zero
    /// denominator never hits.
    fn chance_fraction(&mut self, numerator: u64, denominator: u64) -> bool {
        if denominator == 0 {
            return false;
        }
        self.below(denominator) < numerator
    }
}

impl<R: Random + ?Sized> Random for &mut R {
    fn next_u64(&mut self) -> u64 {
        (**self).next_u64()
    }
}

/// A small, fast, deterministic generator (SplitMix64) for tests, fuzzing
/// and simulations. Not cryptographic: do not use it where an adversary
/// must not predict the draws.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeededRandom {
    state: u64,
}

impl SeededRandom {
    /// A generator whose whole sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }
}

impl Random for SeededRandom {
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A percentage in `[0, 100]`, stored exactly as millionths (see the module
/// doc for how it is drawn against).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Percentage {
    millionths: u32,
}

impl Percentage {
    /// Millionths in 100 %.
    pub const SCALE: u32 = 1_000_000;
    /// 0 %: never hits.
    pub const NEVER: Self = Self { millionths: 0 };
    /// 100 %: always hits.
    pub const ALWAYS: Self = Self {
        millionths: Self::SCALE,
    };

    /// `percent` (0–100, fractional allowed) rounded to the nearest
    /// millionth; `None` when it is NaN or outside `[0, 100]`.
    pub fn from_percent(percent: f64) -> Option<Self> {
        if !(0.0..=100.0).contains(&percent) {
            return None;
        }
        // In range, so the product is in [0, 1e6] and the cast is exact.
        let millionths = (percent * 10_000.0).round() as u32;
        Some(Self {
            millionths: millionths.min(Self::SCALE),
        })
    }

    /// `millionths` out of a million; `None` above [`SCALE`](Self::SCALE).
    pub fn from_millionths(millionths: u32) -> Option<Self> {
        (millionths <= Self::SCALE).then_some(Self { millionths })
    }

    /// The stored millionths (`0..=1_000_000`).
    pub fn millionths(self) -> u32 {
        self.millionths
    }

    /// The percentage as a float (for display).
    pub fn as_percent(self) -> f64 {
        f64::from(self.millionths) / 10_000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A generator that replays fixed values.
    struct Script(Vec<u64>);

    impl Random for Script {
        fn next_u64(&mut self) -> u64 {
            self.0.remove(0)
        }
    }

    #[test]
    fn below_maps_the_high_bits() {
        // bound 4: the top two bits pick the bucket.
        let mut r = Script(vec![0, u64::MAX, 1 << 63, 3 << 62]);
        assert_eq!(r.below(4), 0);
        assert_eq!(r.below(4), 3);
        assert_eq!(r.below(4), 2);
        assert_eq!(r.below(4), 3);
    }

    #[test]
    fn below_rejects_the_biased_stretch() {
        // bound 3: threshold = 2^64 mod 3 = 1, so a draw whose low product
        // half is 0 (x = 0) is rejected and the next one used.
        let mut r = Script(vec![0, u64::MAX]);
        assert_eq!(r.below(3), 2);
        assert!(r.0.is_empty());
    }

    #[test]
    fn below_zero_draws_nothing() {
        let mut r = Script(vec![]);
        assert_eq!(r.below(0), 0);
    }

    #[test]
    fn percentages_round_to_millionths() {
        assert_eq!(
            Percentage::from_percent(10.5).unwrap().millionths(),
            105_000
        );
        assert_eq!(Percentage::from_percent(0.29).unwrap().millionths(), 2_900);
        assert_eq!(Percentage::from_percent(100.0), Some(Percentage::ALWAYS));
        assert_eq!(Percentage::from_percent(0.0), Some(Percentage::NEVER));
        assert_eq!(Percentage::from_percent(-0.1), None);
        assert_eq!(Percentage::from_percent(100.01), None);
        assert_eq!(Percentage::from_percent(f64::NAN), None);
        assert_eq!(Percentage::from_millionths(1_000_001), None);
    }

    #[test]
    fn chance_is_exact_at_the_edges() {
        let mut r = SeededRandom::new(7);
        assert!((0..1000).all(|_| r.chance(Percentage::ALWAYS)));
        assert!((0..1000).all(|_| !r.chance(Percentage::NEVER)));
        // The largest draw (999_999) misses 99.9999 % and hits 100 %.
        let top = (999_999u128 << 64).div_ceil(1_000_000) as u64;
        let mut r = Script(vec![top, top]);
        assert!(!r.chance(Percentage::from_millionths(999_999).unwrap()));
        assert!(r.chance(Percentage::ALWAYS));
    }

    #[test]
    fn seeded_random_is_deterministic_and_spread() {
        let a: Vec<u64> = {
            let mut r = SeededRandom::new(42);
            (0..4).map(|_| r.next_u64()).collect()
        };
        let mut r = SeededRandom::new(42);
        assert_eq!(a, (0..4).map(|_| r.next_u64()).collect::<Vec<_>>());
        let mut counts = [0u32; 10];
        let mut r = SeededRandom::new(1);
        for _ in 0..100_000 {
            counts[r.below(10) as usize] += 1;
        }
        assert!(
            counts.iter().all(|c| (9_500..10_500).contains(c)),
            "{counts:?}"
        );
    }
}
