//! An exact integer token bucket.
//!
//! A bucket holds at most `capacity` tokens and refills `capacity` tokens per
//! `refill_per`, continuously. To stay exact with any rate, the level is kept
//! in sub-units: one token is `refill_per` in nanoseconds sub-units, so `d`
//! nanoseconds refill exactly `d × capacity` sub-units and no rounding ever
//! happens inside the bucket. Token counts shown to callers round down
//! (available) or up (waits, debt).
//!
//! The level never goes below zero. A debit larger than what is left (usage
//! that came out higher than its reservation) empties the bucket and records
//! the rest as *debt*, capped at one full bucket; refills pay the debt before
//! the level grows again. So a client that overshoots pays for it with a
//! longer wait, but one bogus report cannot lock a key out for longer than one
//! refill period.

use std::time::{Duration, Instant};

use super::error::SpecError;

/// The longest refill period a bucket accepts (about 146 years), so that all
/// sub-unit arithmetic fits in `u128`.
pub const MAX_REFILL_PERIOD: Duration = Duration::from_nanos(1 << 62);

/// What a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitUnit {
    /// Requests: every request costs one, whatever its size.
    Requests,
    /// LLM tokens, weighted by the model's [`CostWeights`](super::CostWeights).
    Tokens,
}

/// A token bucket with integer, exact refill.
///
/// Every method takes `now`; an instant earlier than the latest one the
/// bucket has seen counts as no time passing.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: u64,
    period_nanos: u64,
    /// Sub-units available; `<= full`.
    level: u128,
    /// Sub-units owed; `<= full`; `level == 0 || debt == 0`.
    debt: u128,
    last: Instant,
}

/// A bucket's level and debt at one instant, kept so that a permit can
/// report them later without the lock (and without dividing on the hot
/// path).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Snapshot {
    level: u128,
    debt: u128,
}

impl Snapshot {
    /// Whole tokens available.
    pub(crate) fn remaining(&self, period_nanos: u64) -> u64 {
        u64::try_from(self.level / u128::from(period_nanos)).unwrap_or(u64::MAX)
    }

    /// How long until full, for a bucket of this shape.
    pub(crate) fn until_full(&self, capacity: u64, period_nanos: u64) -> Duration {
        let full = u128::from(capacity) * u128::from(period_nanos);
        time_for(full - self.level.min(full) + self.debt, capacity)
    }
}

/// The time `sub_units` take to refill at `capacity` sub-units per
/// nanosecond, rounded up.
fn time_for(sub_units: u128, capacity: u64) -> Duration {
    let nanos = sub_units.div_ceil(u128::from(capacity));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// Checks a bucket's shape, returning the period in nanoseconds.
pub(crate) fn check_shape(
    limit: &str,
    capacity: u64,
    refill_per: Duration,
) -> Result<u64, SpecError> {
    if capacity == 0 {
        return Err(SpecError::ZeroCapacity {
            limit: limit.to_owned(),
        });
    }
    if refill_per.is_zero() {
        return Err(SpecError::ZeroRefillPeriod {
            limit: limit.to_owned(),
        });
    }
    if refill_per > MAX_REFILL_PERIOD {
        return Err(SpecError::RefillPeriodTooLong {
            limit: limit.to_owned(),
            max: MAX_REFILL_PERIOD,
        });
    }
    // At most 2^62, checked just above.
    u64::try_from(refill_per.as_nanos()).map_err(|_| SpecError::RefillPeriodTooLong {
        limit: limit.to_owned(),
        max: MAX_REFILL_PERIOD,
    })
}

impl TokenBucket {
    /// A full bucket of `capacity` tokens that refills `capacity` tokens per
    /// `refill_per`.
    ///
    /// # Errors
    /// [`SpecError::ZeroCapacity`], [`SpecError::ZeroRefillPeriod`] or
    /// [`SpecError::RefillPeriodTooLong`] (with an empty limit name).
    pub fn new(capacity: u64, refill_per: Duration, now: Instant) -> Result<Self, SpecError> {
        let period_nanos = check_shape("", capacity, refill_per)?;
        Ok(Self::with_shape(capacity, period_nanos, now))
    }

    /// A full bucket of an already checked shape.
    pub(crate) fn with_shape(capacity: u64, period_nanos: u64, now: Instant) -> Self {
        let mut bucket = Self {
            capacity,
            period_nanos,
            level: 0,
            debt: 0,
            last: now,
        };
        bucket.level = bucket.full();
        bucket
    }

    /// The most tokens the bucket holds.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// How long an empty bucket takes to fill up.
    pub fn refill_per(&self) -> Duration {
        Duration::from_nanos(self.period_nanos)
    }

    fn full(&self) -> u128 {
        u128::from(self.capacity) * u128::from(self.period_nanos)
    }

    fn sub_units(&self, tokens: u64) -> u128 {
        u128::from(tokens) * u128::from(self.period_nanos)
    }

    /// Level and debt as they are at `now`, without changing the bucket.
    fn state_at(&self, now: Instant) -> (u128, u128) {
        let full = self.full();
        let elapsed = now.saturating_duration_since(self.last).as_nanos();
        // Two periods refill even a bucket that is a full bucket in debt.
        let elapsed = elapsed.min(2 * u128::from(self.period_nanos));
        let mut add = elapsed * u128::from(self.capacity);
        let mut debt = self.debt;
        let paid = add.min(debt);
        debt -= paid;
        add -= paid;
        ((self.level + add).min(full), debt)
    }

    /// Brings the bucket forward to `now`.
    pub(crate) fn refill(&mut self, now: Instant) {
        if now > self.last {
            (self.level, self.debt) = self.state_at(now);
            self.last = now;
        }
    }

    /// Takes `n` tokens if the bucket holds them (and owes nothing).
    pub fn try_take(&mut self, n: u64, now: Instant) -> bool {
        self.refill(now);
        let need = self.sub_units(n);
        if self.debt == 0 && self.level >= need {
            self.level -= need;
            true
        } else {
            false
        }
    }

    /// Reserves `n` tokens, clamped to the capacity so that an estimate larger
    /// than the whole bucket can still go through once the bucket is full
    /// (settling charges the rest if it is really used).
    ///
    /// # Errors
    /// How long until the clamped amount is available, when it is not now.
    pub fn reserve(&mut self, n: u64, now: Instant) -> Result<u64, Duration> {
        let n = n.min(self.capacity);
        if self.try_take(n, now) {
            Ok(n)
        } else {
            Err(self.retry_after(n, now).unwrap_or(Duration::MAX))
        }
    }

    /// Gives `n` tokens back: it pays debt first, and the level never goes
    /// above the capacity.
    pub fn refund(&mut self, n: u64, now: Instant) {
        self.refill(now);
        let mut add = self.sub_units(n);
        let paid = add.min(self.debt);
        self.debt -= paid;
        add -= paid;
        self.level = (self.level + add).min(self.full());
    }

    /// Takes `n` tokens whether or not they are there: the level stops at
    /// zero and the rest becomes debt (capped at one full bucket).
    pub fn debit(&mut self, n: u64, now: Instant) {
        self.refill(now);
        let need = self.sub_units(n);
        if self.level >= need {
            self.level -= need;
        } else {
            let rest = need - self.level;
            self.level = 0;
            self.debt = (self.debt + rest).min(self.full());
        }
    }

    /// How long until `n` tokens can be taken: zero when they can be now,
    /// `None` when `n` exceeds the capacity (never).
    pub fn retry_after(&self, n: u64, now: Instant) -> Option<Duration> {
        if n > self.capacity {
            return None;
        }
        let (level, debt) = self.state_at(now);
        let need = self.sub_units(n) + debt;
        Some(self.time_for(need.saturating_sub(level)))
    }

    /// Whole tokens available at `now`.
    pub fn available(&self, now: Instant) -> u64 {
        let (level, debt) = self.state_at(now);
        Snapshot { level, debt }.remaining(self.period_nanos)
    }

    /// Tokens owed at `now`, rounded up.
    pub fn debt(&self, now: Instant) -> u64 {
        let (_, debt) = self.state_at(now);
        let p = u128::from(self.period_nanos);
        u64::try_from(debt.div_ceil(p)).unwrap_or(u64::MAX)
    }

    /// How long until the bucket is full again (zero when it is).
    pub fn until_full(&self, now: Instant) -> Duration {
        let (level, debt) = self.state_at(now);
        Snapshot { level, debt }.until_full(self.capacity, self.period_nanos)
    }

    /// Whether the bucket is full and owes nothing at `now`: such a bucket is
    /// indistinguishable from a new one and can be forgotten.
    pub fn is_idle(&self, now: Instant) -> bool {
        let (level, debt) = self.state_at(now);
        debt == 0 && level == self.full()
    }

    /// Whether `n` tokens can be taken without refilling first (no division:
    /// this is the admission hot path).
    pub(crate) fn has(&self, n: u64) -> bool {
        self.debt == 0 && self.level >= self.sub_units(n)
    }

    /// The level and debt as of the latest refill.
    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot {
            level: self.level,
            debt: self.debt,
        }
    }

    /// The time `sub_units` take to refill.
    fn time_for(&self, sub_units: u128) -> Duration {
        time_for(sub_units, self.capacity)
    }

    /// Raw state for invariant checks: (level, debt, full) in sub-units.
    #[cfg(test)]
    pub(crate) fn raw(&self) -> (u128, u128, u128) {
        (self.level, self.debt, self.full())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_refill_with_an_awkward_rate() {
        let t0 = Instant::now();
        // 3 tokens per 10 s: one token every 3.333… s, no rounding drift.
        let mut b = TokenBucket::new(3, Duration::from_secs(10), t0).unwrap();
        assert!(b.try_take(3, t0));
        assert_eq!(b.available(t0 + Duration::from_millis(3333)), 0);
        assert_eq!(b.available(t0 + Duration::from_nanos(3_333_333_334)), 1);
        assert_eq!(b.available(t0 + Duration::from_secs(10)), 3);
        assert_eq!(
            b.retry_after(1, t0),
            Some(Duration::from_nanos(3_333_333_334))
        );
        let (level, debt, full) = b.raw();
        assert_eq!((level, debt), (0, 0));
        assert_eq!(full, 3 * 10_000_000_000);
    }

    #[test]
    fn debt_is_paid_before_the_level_grows() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, Duration::from_secs(10), t0).unwrap();
        b.debit(15, t0);
        assert_eq!((b.available(t0), b.debt(t0)), (0, 5));
        assert_eq!(b.retry_after(1, t0), Some(Duration::from_secs(6)));
        assert_eq!(b.until_full(t0), Duration::from_secs(15));
        let t5 = t0 + Duration::from_secs(5);
        assert!(!b.try_take(1, t5));
        assert_eq!((b.available(t5), b.debt(t5)), (0, 0));
        assert_eq!(b.retry_after(1, t5), Some(Duration::from_secs(1)));
        // An earlier instant is "no time passed", not a rewind.
        assert_eq!(b.retry_after(1, t0), Some(Duration::from_secs(1)));
        // Debt is capped at one bucket.
        b.debit(1_000, t5);
        assert_eq!(b.debt(t5), 10);
        assert_eq!(b.until_full(t5), Duration::from_secs(20));
    }

    proptest::proptest! {
        /// Whatever happens, the level stays within [0, capacity], debt
        /// within one bucket, and never both at once.
        #[test]
        fn raw_state_stays_in_bounds(
            capacity in 1u64..1_000,
            period_ms in 1u64..10_000,
            ops in proptest::collection::vec((0u8..5, 0u64..2_000, 0u64..20_000), 1..100),
        ) {
            let t0 = Instant::now();
            let mut b = TokenBucket::new(capacity, Duration::from_millis(period_ms), t0).unwrap();
            let mut now = t0;
            for (kind, n, millis) in ops {
                match kind {
                    0 => { b.try_take(n, now); }
                    1 => { let _ = b.reserve(n, now); }
                    2 => b.refund(n, now),
                    3 => b.debit(n, now),
                    _ => now += Duration::from_millis(millis),
                }
                let (level, debt, full) = b.raw();
                proptest::prop_assert!(level <= full && debt <= full);
                proptest::prop_assert!(level == 0 || debt == 0);
                proptest::prop_assert!(b.available(now) <= capacity);
                if let Some(wait) = b.retry_after(n.min(capacity), now) {
                    // After waiting that long, the tokens are there.
                    let mut later = b.clone();
                    proptest::prop_assert!(later.clone().try_take(n.min(capacity), now + wait));
                    // And not a nanosecond sooner.
                    if !wait.is_zero() {
                        let sooner = now + wait - Duration::from_nanos(1);
                        proptest::prop_assert!(!later.try_take(n.min(capacity), sooner));
                    }
                }
            }
        }
    }
}
