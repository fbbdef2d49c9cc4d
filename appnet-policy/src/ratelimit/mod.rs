//! Rate limits for LLM traffic: token buckets, two-phase cost-aware limits,
//! model governance and `429` metadata.
//!
//! The core is sans-IO: every operation takes `now` (an [`Instant`] read from
//! an injected [`Clock`]) and nothing here sleeps, spawns or reads the system
//! time on its own. The optional `tower` feature adds a thin HTTP middleware
//! around it.
//!
//! How a request goes through a [`RateLimiter`]:
//! 1. **Governance.** The [`ModelAllowList`] is asked whether the principal
//!    may use the model; if not the request fails with
//!    [`RateLimitError::ModelNotAllowed`] before any bucket is touched.
//! 2. **Reserve.** Each [`LimitSpec`] prices the request (one request, or the
//!    weighted token estimate of the [`CostModel`]) and finds its bucket for
//!    the request's key. All buckets are locked in a fixed order, and either
//!    every enforced limit has enough and all are debited, or nothing is taken
//!    and the request fails with [`RateLimited`] (the limit that frees up
//!    last). Shadow limits never reject; they are reported on the [`Permit`].
//! 3. **Settle.** When the response ends, [`Permit::settle`] charges each
//!    bucket the actual cost minus the reserved one: a refund when it used
//!    less, an extra debit when it used more. A permit dropped unsettled (a
//!    cancelled stream) is settled once by its drop guard under the
//!    limiter's [`CancelPolicy`].

mod bucket;
mod cost;
mod error;
mod keys;
#[cfg(feature = "tower")]
mod layer;
mod limiter;
mod permit;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use bucket::{LimitUnit, MAX_REFILL_PERIOD, TokenBucket};
pub use cost::{CostModel, CostWeights, ModelAllowList, Usage};
pub use error::{RateLimitError, RateLimited, SpecError};
#[cfg(feature = "tower")]
pub use layer::{RateLimit, RateLimitBody, RateLimitLayer, RateLimitResponseFuture, UsageRecorder};
pub use limiter::{
    CancelPolicy, LimitKey, LimitRequest, LimitSpec, LimitStats, LimiterStats, MAX_LIMITS,
    RateLimiter, RateLimiterBuilder,
};
pub use permit::{Permit, Quota};

/// A monotonic time source for the rate limiter.
///
/// Time is a [`std::time::Instant`]: buckets only ever compare instants and
/// measure the [`Duration`] between them, so no wall clock is involved and
/// clock steps cannot refill or drain a bucket. An instant earlier than one a
/// bucket has already seen is treated as "no time passed".
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The process's monotonic clock ([`Instant::now`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that only moves when told to, for tests and simulations.
///
/// Clones share the same time: advancing one advances all of them, so a test
/// can keep a handle while the limiter owns another.
#[derive(Debug, Clone)]
pub struct ManualClock {
    start: Instant,
    offset_nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock standing at an arbitrary fixed instant.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            offset_nanos: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Moves time forward by `by` (saturating after about 584 years).
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        // fetch_update never fails with a closure that always returns Some.
        let _ = self
            .offset_nanos
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                Some(now.saturating_add(nanos))
            });
    }

    /// How far the clock has been advanced since it was created.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.offset_nanos.load(Ordering::Acquire))
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        // Past the platform's `Instant` range (centuries) time stops moving
        // instead of panicking.
        self.start.checked_add(self.elapsed()).unwrap_or(self.start)
    }
}

impl<C: Clock> Clock for Arc<C> {
    fn now(&self) -> Instant {
        (**self).now()
    }
}
