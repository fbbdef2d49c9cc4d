//! What an admitted request holds until it is settled.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::bucket::{LimitUnit, Snapshot};
use super::cost::{CostWeights, Usage};
use super::error::ceil_secs;
use super::keys::{SharedBucket, lock};
use super::limiter::{CancelPolicy, Inner, MAX_LIMITS};

/// One limit's state as a permit or
/// [`RateLimiter::quota`](super::RateLimiter::quota) saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Quota<'a> {
    /// The limit's name.
    pub limit: &'a str,
    /// What it counts.
    pub unit: LimitUnit,
    /// Whether it is a shadow limit.
    pub shadow: bool,
    /// Its capacity.
    pub limit_value: u64,
    /// Whole units left (after the reservation, for a permit).
    pub remaining: u64,
    /// How long until its bucket is full again.
    pub reset: Duration,
    /// What the permit reserved on it (0 from
    /// [`RateLimiter::quota`](super::RateLimiter::quota)).
    pub reserved: u64,
}

impl Quota<'_> {
    /// `x-ratelimit-limit`, `x-ratelimit-remaining` and `x-ratelimit-reset`
    /// (seconds, rounded up) for a successful response.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        vec![
            ("x-ratelimit-limit", self.limit_value.to_string()),
            ("x-ratelimit-remaining", self.remaining.to_string()),
            ("x-ratelimit-reset", ceil_secs(self.reset).to_string()),
        ]
    }
}

/// One limit's part of a permit.
#[derive(Debug)]
pub(super) struct Held {
    /// `None` for a shadow limit that would have rejected: nothing was taken,
    /// so nothing is settled.
    pub(super) bucket: Option<SharedBucket>,
    pub(super) reserved: u64,
    /// The bucket right after the reservation.
    pub(super) after: Snapshot,
}

/// An admitted request's reservations, to be settled with its actual usage.
///
/// Settle it with [`settle`](Self::settle) when the response ends. A permit
/// dropped unsettled (for example because the client went away mid-stream)
/// is settled once, by its drop guard, under the limiter's [`CancelPolicy`].
pub struct Permit {
    inner: Arc<Inner>,
    held: [Option<Held>; MAX_LIMITS],
    weights: CostWeights,
    shadow_limited: u32,
    done: bool,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("quotas", &self.quotas().collect::<Vec<_>>())
            .field("weights", &self.weights)
            .field("shadow_limited", &self.shadow_limited().collect::<Vec<_>>())
            .field("settled", &self.done)
            .finish()
    }
}

impl Permit {
    pub(super) fn new(
        inner: Arc<Inner>,
        held: [Option<Held>; MAX_LIMITS],
        weights: CostWeights,
        shadow_limited: u32,
    ) -> Self {
        Self {
            inner,
            held,
            weights,
            shadow_limited,
            done: false,
        }
    }

    /// Every limit's state right after the reservation.
    pub fn quotas(&self) -> impl Iterator<Item = Quota<'_>> {
        self.inner
            .limits
            .iter()
            .zip(self.held.iter())
            .filter_map(|(limit, held)| {
                let held = held.as_ref()?;
                Some(Quota {
                    limit: &limit.spec.name,
                    unit: limit.spec.unit,
                    shadow: limit.spec.shadow,
                    limit_value: limit.spec.capacity,
                    remaining: held.after.remaining(limit.period_nanos),
                    reset: held
                        .after
                        .until_full(limit.spec.capacity, limit.period_nanos),
                    reserved: held.reserved,
                })
            })
    }

    /// The enforced limit with the smallest share left: the one a client
    /// should pace itself by.
    pub fn tightest(&self) -> Option<Quota<'_>> {
        self.quotas().filter(|q| !q.shadow).min_by(|a, b| {
            let left = |q: &Quota<'_>, other: &Quota<'_>| {
                u128::from(q.remaining) * u128::from(other.limit_value)
            };
            left(a, b).cmp(&left(b, a))
        })
    }

    /// The `x-ratelimit-*` headers of the [`tightest`](Self::tightest)
    /// limit, for a successful response (empty with no enforced limit).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        self.tightest().map_or_else(Vec::new, |q| q.headers())
    }

    /// Whether a shadow limit would have rejected this request.
    pub fn would_have_limited(&self) -> bool {
        self.shadow_limited != 0
    }

    /// The shadow limits that would have rejected this request.
    pub fn shadow_limited(&self) -> impl Iterator<Item = &str> {
        self.inner
            .limits
            .iter()
            .enumerate()
            .filter(|(i, _)| self.shadow_limited & (1 << i) != 0)
            .map(|(_, l)| l.spec.name.as_str())
    }

    /// Settles with the actual usage: each limit is charged the actual cost
    /// minus its reservation (a refund when lower, a debit — possibly into
    /// debt — when higher).
    pub fn settle(mut self, usage: Usage, now: Instant) {
        self.done = true;
        let tokens = self.weights.usage_cost(usage);
        for (limit, held) in self.inner.limits.iter().zip(self.held.iter()) {
            let Some(Held {
                bucket: Some(bucket),
                reserved,
                ..
            }) = held
            else {
                continue;
            };
            let actual = limit.price(tokens);
            if actual > *reserved {
                lock(bucket).debit(actual - reserved, now);
            } else if actual < *reserved {
                lock(bucket).refund(reserved - actual, now);
            }
        }
    }

    /// [`settle`](Self::settle) at the limiter's clock reading.
    pub fn settle_now(self, usage: Usage) {
        let now = self.inner.clock.now();
        self.settle(usage, now);
    }

    /// Settles with the reservation as the actual cost: no bucket changes.
    /// For a response that completed but reported no usage.
    pub fn settle_reserved(mut self) {
        self.done = true;
    }

    /// Ends the permit without usage, under the limiter's
    /// [`CancelPolicy`]; counted in
    /// [`LimiterStats::cancelled`](super::LimiterStats::cancelled). Dropping
    /// an unsettled permit does this at the clock's reading.
    pub fn cancel(mut self, now: Instant) {
        self.cancel_at(now);
    }

    fn cancel_at(&mut self, now: Instant) {
        if self.done {
            return;
        }
        self.done = true;
        self.inner.cancelled.fetch_add(1, Ordering::Relaxed);
        match self.inner.cancel {
            CancelPolicy::ChargeReservation => {}
            CancelPolicy::RefundTokens => {
                for (limit, held) in self.inner.limits.iter().zip(self.held.iter()) {
                    if let Some(Held {
                        bucket: Some(bucket),
                        reserved,
                        ..
                    }) = held
                        && limit.spec.unit == LimitUnit::Tokens
                    {
                        lock(bucket).refund(*reserved, now);
                    }
                }
            }
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.done {
            let now = self.inner.clock.now();
            self.cancel_at(now);
        }
    }
}
