//! Why a limiter could not be built, and why a request was not admitted.

use std::fmt;
use std::time::Duration;

use super::bucket::LimitUnit;

/// Why a limit, cost model or allow-list was rejected when building a
/// [`RateLimiter`](super::RateLimiter).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// A limit has an empty name (names appear in headers and statistics).
    #[error("a limit needs a non-empty name")]
    EmptyName,
    /// Two limits share a name.
    #[error("limit {limit}: the name is used twice")]
    DuplicateName {
        /// The name.
        limit: String,
    },
    /// A limit's capacity is zero, so it could admit nothing.
    #[error("limit {limit}: capacity must be at least 1")]
    ZeroCapacity {
        /// The limit (empty for a standalone bucket).
        limit: String,
    },
    /// A limit's refill period is zero (an infinite rate).
    #[error("limit {limit}: refill period must be longer than zero")]
    ZeroRefillPeriod {
        /// The limit (empty for a standalone bucket).
        limit: String,
    },
    /// A limit's refill period is longer than
    /// [`MAX_REFILL_PERIOD`](super::MAX_REFILL_PERIOD).
    #[error("limit {limit}: refill period is longer than {max:?}")]
    RefillPeriodTooLong {
        /// The limit (empty for a standalone bucket).
        limit: String,
        /// The longest period accepted.
        max: Duration,
    },
    /// More limits than [`MAX_LIMITS`](super::MAX_LIMITS).
    #[error("{count} limits configured; at most {max} are supported")]
    TooManyLimits {
        /// How many were given.
        count: usize,
        /// The most accepted.
        max: usize,
    },
    /// The per-limit key bound is zero.
    #[error("the number of keys per limit must be at least 1")]
    ZeroMaxKeys,
    /// A principal or model pattern is malformed.
    #[error("pattern {pattern:?}: {reason}")]
    InvalidPattern {
        /// The pattern as written.
        pattern: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Why [`RateLimiter::reserve`](super::RateLimiter::reserve) did not admit a
/// request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RateLimitError {
    /// An enforced limit does not have enough left; nothing was taken from
    /// any limit.
    #[error(transparent)]
    Limited(#[from] RateLimited),
    /// The principal may not use this model (checked before any limit).
    #[error("principal {principal:?} may not use model {model:?}")]
    ModelNotAllowed {
        /// The requesting principal.
        principal: String,
        /// The model it asked for.
        model: String,
    },
    /// A keyed limit already tracks its maximum number of keys and none of
    /// them is idle, so a new key cannot be admitted (fails closed).
    #[error("limit {limit}: too many active keys")]
    KeyTableFull {
        /// The limit whose table is full.
        limit: String,
    },
}

impl RateLimitError {
    /// The response headers that go with this error: those of
    /// [`RateLimited::headers`], `retry-after: 1` for a full key table, and
    /// none for a disallowed model.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::Limited(limited) => limited.headers(),
            Self::KeyTableFull { .. } => vec![("retry-after", "1".to_owned())],
            Self::ModelNotAllowed { .. } => Vec::new(),
        }
    }
}

/// A request that an enforced limit turned away, with what a `429` response
/// tells the client.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimited {
    /// The name of the limit that rejected (of several, the one that frees up
    /// last).
    pub limit: String,
    /// What that limit counts.
    pub unit: LimitUnit,
    /// How long until the request's reservation would fit.
    pub retry_after: Duration,
    /// The limit's capacity.
    pub limit_value: u64,
    /// Whole units left in the bucket now.
    pub remaining: u64,
    /// How long until the bucket is full again.
    pub reset: Duration,
}

/// Whole seconds, rounded up.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl RateLimited {
    /// `retry-after` in whole seconds: rounded up, and at least 1 (a client
    /// told to retry after 0 would spin).
    pub fn retry_after_secs(&self) -> u64 {
        ceil_secs(self.retry_after).max(1)
    }

    /// The headers of a `429` response, names in lower case:
    /// `retry-after` (see [`retry_after_secs`](Self::retry_after_secs)),
    /// `x-ratelimit-limit` (capacity), `x-ratelimit-remaining` (whole units
    /// left) and `x-ratelimit-reset` (seconds until full, rounded up).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        self.header_values()
            .iter()
            .map(|(name, value)| (*name, value.to_string()))
            .collect()
    }

    pub(crate) fn header_values(&self) -> [(&'static str, u64); 4] {
        [
            ("retry-after", self.retry_after_secs()),
            ("x-ratelimit-limit", self.limit_value),
            ("x-ratelimit-remaining", self.remaining),
            ("x-ratelimit-reset", ceil_secs(self.reset)),
        ]
    }
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rate limited by {}: {} of {} {} left, retry after {:?}",
            self.limit,
            self.remaining,
            self.limit_value,
            match self.unit {
                LimitUnit::Requests => "requests",
                LimitUnit::Tokens => "tokens",
            },
            self.retry_after
        )
    }
}

impl std::error::Error for RateLimited {}
