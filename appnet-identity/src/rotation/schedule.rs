//! The refresh schedule: a pure function of a certificate's validity, the
//! time, a jitter sample and the count of consecutive failures.

use std::time::{Duration, SystemTime};

use crate::Svid;

const NANOS_PER_UNIT: u128 = 1_000_000_000;

/// How eagerly certificates are refreshed and how failures back off.
///
/// The fields are public so a policy can be adjusted in place
/// (`let mut p = RefreshPolicy::default(); p.jitter = 0.0;`). Any value is
/// accepted: [`RotationSchedule`] clamps fractions into `[0, 1]`, treats a
/// NaN fraction as its default and a zero `backoff_factor` as 1. A zero
/// `backoff_base` or `backoff_cap` retries without waiting, which is only
/// sensible in tests.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RefreshPolicy {
    /// Where in the lifetime a certificate is refreshed, as a fraction of
    /// it from notBefore. Default `0.5`: at half life, which leaves the
    /// second half of the lifetime for retries.
    pub refresh_at: f64,
    /// How far a refresh may move away from `refresh_at`, as a fraction of
    /// the lifetime either way. Default `0.05`: with the default
    /// `refresh_at`, refreshes fall uniformly in `[0.45, 0.55)` of the
    /// lifetime (±10% around half life), so workloads started together
    /// do not all go to the CA at the same instant.
    pub jitter: f64,
    /// The wait after the first failure. Default 1 s.
    pub backoff_base: Duration,
    /// What each further consecutive failure multiplies the wait by.
    /// Default 2.
    pub backoff_factor: u32,
    /// The longest wait between two attempts. Default 5 minutes.
    pub backoff_cap: Duration,
    /// How long before notAfter the last attempt is made at the latest.
    /// Default 1 s.
    pub expiry_margin: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        Self {
            refresh_at: 0.5,
            jitter: 0.05,
            backoff_base: Duration::from_secs(1),
            backoff_factor: 2,
            backoff_cap: Duration::from_secs(5 * 60),
            expiry_margin: Duration::from_secs(1),
        }
    }
}

/// When a certificate may be used: its notBefore and notAfter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Validity {
    /// The first instant the certificate is valid.
    pub not_before: SystemTime,
    /// The last instant the certificate is valid (its expiry).
    pub not_after: SystemTime,
}

impl Validity {
    /// A validity period from notBefore to notAfter.
    pub fn new(not_before: SystemTime, not_after: SystemTime) -> Self {
        Self {
            not_before,
            not_after,
        }
    }

    /// notAfter − notBefore; zero when notAfter is not after notBefore.
    pub fn lifetime(&self) -> Duration {
        self.not_after
            .duration_since(self.not_before)
            .unwrap_or_default()
    }
}

impl From<&Svid> for Validity {
    fn from(svid: &Svid) -> Self {
        Self::new(svid.not_before(), svid.not_after())
    }
}

/// Decides when to refresh a certificate. Pure: it reads no clock, sleeps
/// never and draws no random numbers; `now` and the jitter sample are
/// inputs.
///
/// The rules, for a certificate valid from `nb` to `na` (lifetime `L`):
/// - with no failure since the certificate was obtained, refresh at
///   `nb + L × (refresh_at + jitter × (2s − 1))` for a jitter sample `s` in
///   `[0, 1]`;
/// - after `n ≥ 1` consecutive failures, retry at `now + backoff(n)`, where
///   `backoff(n) = min(cap, base × factor^(n−1))`;
/// - either way the result is clamped into `[nb, na − expiry_margin]` (or
///   to `nb` when the lifetime is shorter than the margin): never before
///   the certificate is valid, never after it expires.
///
/// The schedule never says to drop the current certificate: it only says
/// when to try for the next one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RotationSchedule {
    policy: RefreshPolicy,
}

impl RotationSchedule {
    /// A schedule following `policy`.
    pub fn new(policy: RefreshPolicy) -> Self {
        Self { policy }
    }

    /// The policy followed.
    pub fn policy(&self) -> &RefreshPolicy {
        &self.policy
    }

    /// The wait after `failures` consecutive failures: zero for none,
    /// `min(cap, base × factor^(failures−1))` otherwise.
    pub fn backoff(&self, failures: u32) -> Duration {
        let Some(exponent) = failures.checked_sub(1) else {
            return Duration::ZERO;
        };
        let factor = self.policy.backoff_factor.max(1);
        let multiplier = factor.saturating_pow(exponent);
        self.policy
            .backoff_base
            .saturating_mul(multiplier)
            .min(self.policy.backoff_cap)
    }

    /// The planned refresh of a certificate nobody has failed to renew
    /// yet: around `refresh_at` of its lifetime, moved by the jitter
    /// `sample` (in `[0, 1]`; out-of-range samples are clamped, NaN counts
    /// as 0.5, the centre), clamped into the validity as
    /// [`next_refresh`](Self::next_refresh) does.
    pub fn refresh_point(&self, validity: Validity, sample: f64) -> SystemTime {
        let fraction = self.fraction(sample);
        let offset = scale(validity.lifetime(), fraction);
        let planned = validity
            .not_before
            .checked_add(offset)
            .unwrap_or(validity.not_after);
        self.clamp(validity, planned)
    }

    /// When to try for the next certificate, given the current one's
    /// `validity`, the time `now`, a jitter `sample` drawn when the
    /// certificate was obtained, and how many attempts have failed in a
    /// row since.
    ///
    /// The result is never before `validity.not_before` and never after
    /// `validity.not_after` (for a validity whose notAfter is not after its
    /// notBefore, it is notBefore). It may be in the past: a certificate
    /// obtained late is due at once. Use [`wait`](Self::wait) for how long
    /// to sleep.
    pub fn next_refresh(
        &self,
        validity: Validity,
        now: SystemTime,
        sample: f64,
        failures: u32,
    ) -> SystemTime {
        if failures == 0 {
            return self.refresh_point(validity, sample);
        }
        let planned = now
            .checked_add(self.backoff(failures))
            .unwrap_or(validity.not_after);
        self.clamp(validity, planned)
    }

    /// How long to sleep from `now` before the next attempt, arguments as
    /// for [`next_refresh`](Self::next_refresh).
    ///
    /// The time until [`next_refresh`](Self::next_refresh) when that is
    /// ahead. When it is not: zero with no failures (the certificate is
    /// due), else [`backoff`](Self::backoff)`(failures)` — the certificate's
    /// window for retries has closed (it has expired, or is about to), so
    /// retries go on at the backoff pace rather than in a tight loop.
    pub fn wait(
        &self,
        validity: Validity,
        now: SystemTime,
        sample: f64,
        failures: u32,
    ) -> Duration {
        let at = self.next_refresh(validity, now, sample, failures);
        match at.duration_since(now) {
            Ok(ahead) if !ahead.is_zero() => ahead,
            _ if failures == 0 => Duration::ZERO,
            _ => self.backoff(failures),
        }
    }

    /// Whether a certificate with no failures behind it is already due for
    /// refresh at `now` (its [`refresh_point`](Self::refresh_point) is not
    /// ahead).
    pub fn is_due(&self, validity: Validity, now: SystemTime, sample: f64) -> bool {
        self.refresh_point(validity, sample) <= now
    }

    /// The fraction of the lifetime at which to refresh for a sample.
    fn fraction(&self, sample: f64) -> f64 {
        let defaults = RefreshPolicy::default();
        let centre = unit(self.policy.refresh_at, defaults.refresh_at);
        let spread = unit(self.policy.jitter, defaults.jitter);
        let sample = unit(sample, 0.5);
        unit(centre + spread * (2.0 * sample - 1.0), centre)
    }

    /// Clamps `at` into `[not_before, latest]`.
    fn clamp(&self, validity: Validity, at: SystemTime) -> SystemTime {
        let latest = validity
            .not_after
            .checked_sub(self.policy.expiry_margin)
            .unwrap_or(validity.not_before)
            .max(validity.not_before);
        at.max(validity.not_before).min(latest)
    }
}

/// `value` clamped into `[0, 1]`, or `fallback` when it is NaN.
fn unit(value: f64, fallback: f64) -> f64 {
    if value.is_nan() {
        fallback.clamp(0.0, 1.0)
    } else {
        value.clamp(0.0, 1.0)
    }
}

/// `duration × fraction` for a fraction in `[0, 1]`, in integer
/// nanoseconds so that no float rounding can exceed `duration`.
fn scale(duration: Duration, fraction: f64) -> Duration {
    // `as` saturates and maps NaN to 0; `fraction` is in [0, 1] anyway.
    let parts = ((fraction * NANOS_PER_UNIT as f64) as u128).min(NANOS_PER_UNIT);
    let nanos = duration.as_nanos().saturating_mul(parts) / NANOS_PER_UNIT;
    let secs = u64::try_from(nanos / NANOS_PER_UNIT).unwrap_or(u64::MAX);
    // The remainder is below 10^9, so it fits.
    let subsec = u32::try_from(nanos % NANOS_PER_UNIT).unwrap_or(0);
    Duration::new(secs, subsec).min(duration)
}
