//! Named limits over per-key buckets, reserved and settled in two phases.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::bucket::{LimitUnit, Snapshot, TokenBucket, check_shape};
use super::cost::{CostModel, ModelAllowList};
use super::error::{RateLimitError, RateLimited, SpecError};
use super::keys::{KeyRef, KeyTable, SharedBucket, TableFull, lock};
use super::permit::{Held, Permit, Quota};
use super::{Clock, SystemClock};

/// The most limits one [`RateLimiter`] holds (a permit keeps its per-limit
/// state inline, so reserving allocates nothing).
pub const MAX_LIMITS: usize = 8;

/// The default bound on keys per keyed limit.
const DEFAULT_MAX_KEYS: usize = 10_000;

/// The default pause between sweeps of a full key shard that freed nothing.
const DEFAULT_SWEEP_BACKOFF: Duration = Duration::from_millis(100);

/// What a limit keeps a separate bucket for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKey {
    /// One bucket for all traffic.
    Global,
    /// One bucket per principal.
    PerPrincipal,
    /// One bucket per model.
    PerModel,
    /// One bucket per (principal, model) pair.
    PerPrincipalModel,
}

/// One named limit: `capacity` units that refill fully over `refill_per`,
/// kept per `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitSpec {
    /// A unique, non-empty name (reported in `429`s and statistics).
    pub name: String,
    /// Requests or (weighted) tokens.
    pub unit: LimitUnit,
    /// The bucket size: the largest burst.
    pub capacity: u64,
    /// How long an empty bucket takes to refill; the rate is
    /// `capacity / refill_per`.
    pub refill_per: Duration,
    /// What gets its own bucket.
    pub key: LimitKey,
    /// A shadow limit is tracked but never rejects; a request it would have
    /// rejected is reported on the [`Permit`] and in [`LimitStats`].
    pub shadow: bool,
}

impl LimitSpec {
    /// An enforced limit.
    pub fn new(
        name: impl Into<String>,
        unit: LimitUnit,
        capacity: u64,
        refill_per: Duration,
        key: LimitKey,
    ) -> Self {
        Self {
            name: name.into(),
            unit,
            capacity,
            refill_per,
            key,
            shadow: false,
        }
    }

    /// The same limit in shadow mode.
    pub fn shadow_mode(mut self) -> Self {
        self.shadow = true;
        self
    }
}

/// What a request asks for, as the limiter sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct LimitRequest<'a> {
    /// Who is asking (e.g. a SPIFFE ID or an API key's owner).
    pub principal: Cow<'a, str>,
    /// The model asked for.
    pub model: Cow<'a, str>,
    /// Input tokens, counted by a tokenizer or estimated.
    pub estimated_input_tokens: u64,
    /// The most output tokens the response may have (the request's
    /// `max_tokens`, or a default the caller picks when it has none).
    pub max_output_tokens: u64,
}

impl<'a> LimitRequest<'a> {
    /// A request with no token estimate yet.
    pub fn new(principal: impl Into<Cow<'a, str>>, model: impl Into<Cow<'a, str>>) -> Self {
        Self {
            principal: principal.into(),
            model: model.into(),
            ..Self::default()
        }
    }

    /// The same request with a token estimate.
    pub fn with_tokens(mut self, estimated_input: u64, max_output: u64) -> Self {
        self.estimated_input_tokens = estimated_input;
        self.max_output_tokens = max_output;
        self
    }

    /// An owned copy (for request extensions and other `'static` homes).
    pub fn into_owned(self) -> LimitRequest<'static> {
        LimitRequest {
            principal: Cow::Owned(self.principal.into_owned()),
            model: Cow::Owned(self.model.into_owned()),
            estimated_input_tokens: self.estimated_input_tokens,
            max_output_tokens: self.max_output_tokens,
        }
    }
}

/// How a permit that ends without usage (a cancelled stream, a dropped
/// permit) is settled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum CancelPolicy {
    /// The reservation stands as the actual cost (safe when the upstream may
    /// have generated up to `max_tokens` before noticing).
    #[default]
    ChargeReservation,
    /// Token reservations are refunded in full; request counts stay charged.
    RefundTokens,
}

/// Builds a [`RateLimiter`].
#[derive(Debug)]
pub struct RateLimiterBuilder {
    limits: Vec<LimitSpec>,
    costs: CostModel,
    allow: ModelAllowList,
    max_keys: usize,
    sweep_backoff: Duration,
    cancel: CancelPolicy,
    clock: Arc<dyn Clock>,
}

impl RateLimiterBuilder {
    /// Adds a limit; every request is checked against all of them.
    pub fn limit(mut self, spec: LimitSpec) -> Self {
        self.limits.push(spec);
        self
    }

    /// The per-model token weights (default: every token costs one).
    pub fn cost_model(mut self, costs: CostModel) -> Self {
        self.costs = costs;
        self
    }

    /// The model governance list (default: everything allowed).
    pub fn allow_list(mut self, allow: ModelAllowList) -> Self {
        self.allow = allow;
        self
    }

    /// The most keys one keyed limit tracks (default 10,000). Idle buckets
    /// are forgotten to make room; when none is idle, new keys are refused
    /// with [`RateLimitError::KeyTableFull`].
    pub fn max_keys_per_limit(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// How long a full key shard whose sweep freed nothing waits before
    /// sweeping again (default 100 ms).
    pub fn sweep_backoff(mut self, backoff: Duration) -> Self {
        self.sweep_backoff = backoff;
        self
    }

    /// How unsettled permits are settled (default
    /// [`CancelPolicy::ChargeReservation`]).
    pub fn cancel_policy(mut self, policy: CancelPolicy) -> Self {
        self.cancel = policy;
        self
    }

    /// The clock used to create buckets and by permits' drop guards
    /// (default [`SystemClock`]). Use the same clock for the `now` you pass.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Checks the configuration and builds the limiter.
    ///
    /// # Errors
    /// A [`SpecError`] naming the first bad limit: empty or duplicate name,
    /// zero capacity or refill period, a period over
    /// [`MAX_REFILL_PERIOD`](super::MAX_REFILL_PERIOD), more than
    /// [`MAX_LIMITS`] limits, or a zero key bound.
    pub fn build(self) -> Result<RateLimiter, SpecError> {
        if self.limits.len() > MAX_LIMITS {
            return Err(SpecError::TooManyLimits {
                count: self.limits.len(),
                max: MAX_LIMITS,
            });
        }
        if self.max_keys == 0 {
            return Err(SpecError::ZeroMaxKeys);
        }
        let now = self.clock.now();
        let mut limits = Vec::with_capacity(self.limits.len());
        for (i, spec) in self.limits.into_iter().enumerate() {
            if spec.name.is_empty() {
                return Err(SpecError::EmptyName);
            }
            if limits
                .iter()
                .take(i)
                .any(|l: &Limit| l.spec.name == spec.name)
            {
                return Err(SpecError::DuplicateName { limit: spec.name });
            }
            let period_nanos = check_shape(&spec.name, spec.capacity, spec.refill_per)?;
            let buckets = match spec.key {
                LimitKey::Global => Buckets::Global(Arc::new(std::sync::Mutex::new(
                    TokenBucket::with_shape(spec.capacity, period_nanos, now),
                ))),
                _ => Buckets::Keyed(KeyTable::new(self.max_keys, self.sweep_backoff)),
            };
            limits.push(Limit {
                spec,
                period_nanos,
                buckets,
                rejected: AtomicU64::new(0),
                shadow_rejected: AtomicU64::new(0),
                table_full: AtomicU64::new(0),
            });
        }
        Ok(RateLimiter {
            inner: Arc::new(Inner {
                limits: limits.into_boxed_slice(),
                costs: self.costs,
                allow: self.allow,
                cancel: self.cancel,
                clock: self.clock,
                model_denied: AtomicU64::new(0),
                cancelled: AtomicU64::new(0),
            }),
        })
    }
}

#[derive(Debug)]
enum Buckets {
    Global(SharedBucket),
    Keyed(KeyTable),
}

#[derive(Debug)]
pub(super) struct Limit {
    pub(super) spec: LimitSpec,
    pub(super) period_nanos: u64,
    buckets: Buckets,
    rejected: AtomicU64,
    shadow_rejected: AtomicU64,
    table_full: AtomicU64,
}

impl Limit {
    fn key<'r>(&self, req: &'r LimitRequest<'_>) -> KeyRef<'r> {
        let (first, second): (&str, &str) = match self.spec.key {
            LimitKey::Global => ("", ""),
            LimitKey::PerPrincipal => (&req.principal, ""),
            LimitKey::PerModel => (&req.model, ""),
            LimitKey::PerPrincipalModel => (&req.principal, &req.model),
        };
        KeyRef { first, second }
    }

    fn bucket(&self, req: &LimitRequest<'_>, now: Instant) -> Result<SharedBucket, TableFull> {
        match &self.buckets {
            Buckets::Global(bucket) => Ok(Arc::clone(bucket)),
            Buckets::Keyed(table) => table.get_or_insert(self.key(req), now, || {
                TokenBucket::with_shape(self.spec.capacity, self.period_nanos, now)
            }),
        }
    }

    /// This limit's price for a request whose weighted token cost is `tokens`.
    pub(super) fn price(&self, tokens: u64) -> u64 {
        match self.spec.unit {
            LimitUnit::Requests => 1,
            LimitUnit::Tokens => tokens,
        }
    }
}

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) limits: Box<[Limit]>,
    costs: CostModel,
    allow: ModelAllowList,
    pub(super) cancel: CancelPolicy,
    pub(super) clock: Arc<dyn Clock>,
    model_denied: AtomicU64,
    pub(super) cancelled: AtomicU64,
}

/// Rate limits for LLM traffic: named token-bucket limits with per-key
/// buckets, a cost model, a model allow-list and two-phase reservations.
///
/// Cloning is cheap and clones share all state.
///
/// # Example
/// ```
/// use std::time::Duration;
/// use appnet_policy::{
///     Clock, LimitKey, LimitRequest, LimitSpec, LimitUnit, ManualClock, RateLimitError,
///     RateLimiter, Usage,
/// };
///
/// let clock = ManualClock::new();
/// let minute = Duration::from_secs(60);
/// let limiter = RateLimiter::builder()
///     .clock(clock.clone())
///     .limit(LimitSpec::new("tpm", LimitUnit::Tokens, 10_000, minute, LimitKey::PerPrincipal))
///     .limit(LimitSpec::new("rpm", LimitUnit::Requests, 60, minute, LimitKey::PerPrincipal))
///     .build()?;
///
/// // 1,200 prompt tokens, `max_tokens: 8000`: 9,200 reserved.
/// let req = LimitRequest::new("cluster.local/ns/shop/sa/web", "gpt-4o").with_tokens(1_200, 8_000);
/// let permit = limiter.reserve(&req, clock.now())?;
/// // Too little left for a second one: 429 material.
/// let Err(RateLimitError::Limited(limited)) = limiter.reserve(&req, clock.now()) else {
///     panic!("expected a 429");
/// };
/// assert_eq!(limited.limit, "tpm");
/// // The response used 310 output tokens: the rest is refunded.
/// permit.settle(Usage::new(1_200, 310), clock.now());
/// let left = limiter.quota("tpm", &req, clock.now()).map(|q| q.remaining);
/// assert_eq!(left, Some(10_000 - 1_510));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

/// Counters of one limit, from [`RateLimiter::stats`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LimitStats {
    /// The limit's name.
    pub name: String,
    /// Requests it rejected.
    pub rejected: u64,
    /// Requests it would have rejected (shadow mode).
    pub shadow_rejected: u64,
    /// Requests refused because its key table was full.
    pub key_table_full: u64,
    /// Keys it tracks now (1 for a global limit).
    pub keys: usize,
}

/// Counters of a limiter, from [`RateLimiter::stats`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LimiterStats {
    /// Per limit, in configuration order.
    pub limits: Vec<LimitStats>,
    /// Requests rejected by the model allow-list.
    pub model_denied: u64,
    /// Permits that ended without usage (explicit cancel or drop guard).
    pub cancelled: u64,
}

impl RateLimiter {
    /// A builder with no limits, unit costs, no governance, 10,000 keys per
    /// limit and the system clock.
    pub fn builder() -> RateLimiterBuilder {
        RateLimiterBuilder {
            limits: Vec::new(),
            costs: CostModel::default(),
            allow: ModelAllowList::default(),
            max_keys: DEFAULT_MAX_KEYS,
            sweep_backoff: DEFAULT_SWEEP_BACKOFF,
            cancel: CancelPolicy::default(),
            clock: Arc::new(SystemClock),
        }
    }

    /// The limiter's clock reading.
    pub fn now(&self) -> Instant {
        self.inner.clock.now()
    }

    /// The configured limits, in order.
    pub fn limits(&self) -> impl Iterator<Item = &LimitSpec> {
        self.inner.limits.iter().map(|l| &l.spec)
    }

    /// Reserves a request's estimated cost on every limit, all or nothing.
    ///
    /// Token limits reserve the model-weighted cost of
    /// `estimated_input_tokens + max_output_tokens`, request limits one; a
    /// reservation larger than a limit's capacity is clamped to it. Settle
    /// the returned [`Permit`] with the actual usage when the response ends.
    /// A zero estimate fits any bucket that is not in debt, so give an
    /// honest one (a default `max_output_tokens` when the request has none).
    ///
    /// # Errors
    /// - [`RateLimitError::ModelNotAllowed`] when the allow-list says no (no
    ///   bucket is touched);
    /// - [`RateLimitError::Limited`] when an enforced limit has too little
    ///   left (nothing is taken from any limit);
    /// - [`RateLimitError::KeyTableFull`] when a keyed limit cannot track a
    ///   new key.
    pub fn reserve(&self, req: &LimitRequest<'_>, now: Instant) -> Result<Permit, RateLimitError> {
        let inner = &*self.inner;
        if !inner.allow.allows(&req.principal, &req.model) {
            inner.model_denied.fetch_add(1, Ordering::Relaxed);
            return Err(RateLimitError::ModelNotAllowed {
                principal: req.principal.clone().into_owned(),
                model: req.model.clone().into_owned(),
            });
        }
        let weights = inner.costs.weights_for(&req.model);
        let tokens = weights.reservation_cost(req.estimated_input_tokens, req.max_output_tokens);

        let mut buckets: [Option<SharedBucket>; MAX_LIMITS] = Default::default();
        for (slot, limit) in buckets.iter_mut().zip(inner.limits.iter()) {
            match limit.bucket(req, now) {
                Ok(bucket) => *slot = Some(bucket),
                Err(TableFull) => {
                    limit.table_full.fetch_add(1, Ordering::Relaxed);
                    return Err(RateLimitError::KeyTableFull {
                        limit: limit.spec.name.clone(),
                    });
                }
            }
        }

        let mut amounts = [0u64; MAX_LIMITS];
        let mut after = [Snapshot::default(); MAX_LIMITS];
        let mut shadow_limited = 0u32;
        {
            // Locks in configuration order: every reserve takes them in the
            // same order, so holding several cannot deadlock.
            let mut guards: [Option<std::sync::MutexGuard<'_, TokenBucket>>; MAX_LIMITS] =
                Default::default();
            let mut worst: Option<(usize, Duration)> = None;
            for (i, limit) in inner.limits.iter().enumerate() {
                let Some(bucket) = &buckets[i] else { continue };
                let mut guard = lock(bucket);
                guard.refill(now);
                let amount = limit.price(tokens).min(limit.spec.capacity);
                amounts[i] = amount;
                if !guard.has(amount) {
                    // `amount` is at most the capacity, so there is an answer.
                    let wait = guard.retry_after(amount, now).unwrap_or(Duration::MAX);
                    if limit.spec.shadow {
                        shadow_limited |= 1 << i;
                        limit.shadow_rejected.fetch_add(1, Ordering::Relaxed);
                    } else if worst.is_none_or(|(_, w)| wait > w) {
                        worst = Some((i, wait));
                    }
                }
                guards[i] = Some(guard);
            }
            if let Some((i, wait)) = worst {
                let limit = &inner.limits[i];
                limit.rejected.fetch_add(1, Ordering::Relaxed);
                let (left, until_full) = guards[i].as_ref().map_or((0, Duration::ZERO), |g| {
                    (g.available(now), g.until_full(now))
                });
                return Err(RateLimitError::Limited(RateLimited {
                    limit: limit.spec.name.clone(),
                    unit: limit.spec.unit,
                    retry_after: wait,
                    limit_value: limit.spec.capacity,
                    remaining: left,
                    reset: until_full,
                }));
            }
            for (i, guard) in guards.iter_mut().enumerate() {
                let Some(guard) = guard else { continue };
                if shadow_limited & (1 << i) == 0 {
                    // Checked above under the same lock, so this succeeds.
                    let _taken = guard.try_take(amounts[i], now);
                }
                after[i] = guard.snapshot();
            }
        }

        let mut held: [Option<Held>; MAX_LIMITS] = Default::default();
        for (i, (slot, bucket)) in held.iter_mut().zip(buckets).enumerate() {
            if let Some(bucket) = bucket {
                let taken = shadow_limited & (1 << i) == 0;
                *slot = Some(Held {
                    bucket: taken.then_some(bucket),
                    reserved: if taken { amounts[i] } else { 0 },
                    after: after[i],
                });
            }
        }
        Ok(Permit::new(
            Arc::clone(&self.inner),
            held,
            weights,
            shadow_limited,
        ))
    }

    /// [`reserve`](Self::reserve) at the limiter's clock reading.
    ///
    /// # Errors
    /// As [`reserve`](Self::reserve).
    pub fn reserve_now(&self, req: &LimitRequest<'_>) -> Result<Permit, RateLimitError> {
        self.reserve(req, self.now())
    }

    /// The state of `limit`'s bucket for `req` at `now`, without creating it
    /// (a key with no bucket shows as full). `None` if no limit has that
    /// name.
    pub fn quota(&self, limit: &str, req: &LimitRequest<'_>, now: Instant) -> Option<Quota<'_>> {
        let l = self.inner.limits.iter().find(|l| l.spec.name == limit)?;
        let bucket = match &l.buckets {
            Buckets::Global(bucket) => Some(Arc::clone(bucket)),
            Buckets::Keyed(table) => table.get(l.key(req)),
        };
        let (remaining, reset) = bucket.map_or((l.spec.capacity, Duration::ZERO), |b| {
            let guard = lock(&b);
            (guard.available(now), guard.until_full(now))
        });
        Some(Quota {
            limit: &l.spec.name,
            unit: l.spec.unit,
            shadow: l.spec.shadow,
            limit_value: l.spec.capacity,
            remaining,
            reset,
            reserved: 0,
        })
    }

    /// Forgets every bucket that is full, owes nothing and is held by no
    /// permit (it would behave exactly like a new one); returns how many.
    /// Tables also do this by themselves when they fill up; call it
    /// periodically to return memory sooner.
    pub fn evict_idle(&self, now: Instant) -> usize {
        self.inner
            .limits
            .iter()
            .map(|l| match &l.buckets {
                Buckets::Global(_) => 0,
                Buckets::Keyed(table) => table.evict_idle(now),
            })
            .sum()
    }

    /// Buckets held now, over all limits.
    pub fn key_count(&self) -> usize {
        self.inner.limits.iter().map(Limit::key_count).sum()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> LimiterStats {
        LimiterStats {
            limits: self
                .inner
                .limits
                .iter()
                .map(|l| LimitStats {
                    name: l.spec.name.clone(),
                    rejected: l.rejected.load(Ordering::Relaxed),
                    shadow_rejected: l.shadow_rejected.load(Ordering::Relaxed),
                    key_table_full: l.table_full.load(Ordering::Relaxed),
                    keys: l.key_count(),
                })
                .collect(),
            model_denied: self.inner.model_denied.load(Ordering::Relaxed),
            cancelled: self.inner.cancelled.load(Ordering::Relaxed),
        }
    }
}

impl Limit {
    fn key_count(&self) -> usize {
        match &self.buckets {
            Buckets::Global(_) => 1,
            Buckets::Keyed(table) => table.len(),
        }
    }
}
