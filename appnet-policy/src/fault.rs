//! Fault injection with Istio VirtualService `HTTPFaultInjection` semantics.
//!
//! A [`FaultInjection`] is read from the YAML of a route's `fault:` section
//! ([`FaultInjection::from_yaml`]) and sampled per request with an injected
//! [`Random`] ([`FaultInjection::sample`]): the delay and the abort are drawn
//! independently, each by its own percentage, the delay first. A fault whose
//! percentage is unset never fires (POLICY.md; Istio documents the same).

use std::time::Duration;

use serde::Deserialize;

use crate::duration;
use crate::parse::MAX_INPUT_BYTES;
use crate::random::{Percentage, Random};

/// Delay and/or abort faults for the requests of one route.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultInjection {
    /// Hold matching requests before forwarding them.
    pub delay: Option<DelayFault>,
    /// Answer matching requests with an error instead of forwarding them.
    pub abort: Option<AbortFault>,
}

/// A fixed delay injected into a share of requests.
#[derive(Debug, Clone, PartialEq)]
pub struct DelayFault {
    /// How long to hold the request (at least 1 ms).
    pub fixed_delay: Duration,
    /// Share of requests delayed; `None` means none are.
    pub percentage: Option<Percentage>,
}

/// An error returned to a share of requests instead of forwarding them.
#[derive(Debug, Clone, PartialEq)]
pub struct AbortFault {
    /// The error to answer with.
    pub status: AbortStatus,
    /// Share of requests aborted; `None` means none are.
    pub percentage: Option<Percentage>,
}

/// The error an aborted request receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AbortStatus {
    /// An HTTP status (200–599).
    Http(u16),
    /// A gRPC status, answered with HTTP 200 and `grpc-status`.
    Grpc(GrpcCode),
}

/// gRPC status codes, by the names Istio's `grpcStatus` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GrpcCode {
    /// 0 `OK`.
    Ok,
    /// 1 `CANCELLED`.
    Cancelled,
    /// 2 `UNKNOWN`.
    Unknown,
    /// 3 `INVALID_ARGUMENT`.
    InvalidArgument,
    /// 4 `DEADLINE_EXCEEDED`.
    DeadlineExceeded,
    /// 5 `NOT_FOUND`.
    NotFound,
    /// 6 `ALREADY_EXISTS`.
    AlreadyExists,
    /// 7 `PERMISSION_DENIED`.
    PermissionDenied,
    /// 8 `RESOURCE_EXHAUSTED`.
    ResourceExhausted,
    /// 9 `FAILED_PRECONDITION`.
    FailedPrecondition,
    /// 10 `ABORTED`.
    Aborted,
    /// 11 `OUT_OF_RANGE`.
    OutOfRange,
    /// 12 `UNIMPLEMENTED`.
    Unimplemented,
    /// 13 `INTERNAL`.
    Internal,
    /// 14 `UNAVAILABLE`.
    Unavailable,
    /// 15 `DATA_LOSS`.
    DataLoss,
    /// 16 `UNAUTHENTICATED`.
    Unauthenticated,
}

const GRPC_NAMES: [(GrpcCode, &str); 17] = [
    (GrpcCode::Ok, "OK"),
    (GrpcCode::Cancelled, "CANCELLED"),
    (GrpcCode::Unknown, "UNKNOWN"),
    (GrpcCode::InvalidArgument, "INVALID_ARGUMENT"),
    (GrpcCode::DeadlineExceeded, "DEADLINE_EXCEEDED"),
    (GrpcCode::NotFound, "NOT_FOUND"),
    (GrpcCode::AlreadyExists, "ALREADY_EXISTS"),
    (GrpcCode::PermissionDenied, "PERMISSION_DENIED"),
    (GrpcCode::ResourceExhausted, "RESOURCE_EXHAUSTED"),
    (GrpcCode::FailedPrecondition, "FAILED_PRECONDITION"),
    (GrpcCode::Aborted, "ABORTED"),
    (GrpcCode::OutOfRange, "OUT_OF_RANGE"),
    (GrpcCode::Unimplemented, "UNIMPLEMENTED"),
    (GrpcCode::Internal, "INTERNAL"),
    (GrpcCode::Unavailable, "UNAVAILABLE"),
    (GrpcCode::DataLoss, "DATA_LOSS"),
    (GrpcCode::Unauthenticated, "UNAUTHENTICATED"),
];

impl GrpcCode {
    /// The numeric code sent in `grpc-status`.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The canonical upper-case name (`UNAVAILABLE`).
    pub fn name(self) -> &'static str {
        GRPC_NAMES[self as usize].1
    }

    /// The code with this canonical name, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        GRPC_NAMES.iter().find(|(_, n)| *n == name).map(|(c, _)| *c)
    }
}

/// What one request gets from a [`FaultInjection`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FaultOutcome {
    /// Hold the request this long first.
    pub delay: Option<Duration>,
    /// Then answer with this error instead of forwarding.
    pub abort: Option<AbortStatus>,
}

impl FaultInjection {
    /// Parses the YAML of an Istio `HTTPFaultInjection` (the mapping under a
    /// VirtualService route's `fault:` key), e.g.
    /// `{delay: {fixedDelay: 5s, percentage: {value: 10}}, abort: {httpStatus: 503, percentage: {value: 1.5}}}`.
    ///
    /// Accepted: `delay.fixedDelay` (Go duration syntax, at least 1 ms),
    /// `delay.percentage.value` or the deprecated integer `delay.percent`,
    /// `abort.httpStatus` (200–599) or `abort.grpcStatus` (a gRPC code name)
    /// and `abort.percentage.value`. Percentages are doubles in 0–100.
    ///
    /// # Errors
    /// [`FaultError`] naming the field for oversized input, invalid YAML,
    /// unknown fields or wrong types, and every invalid value (no delay
    /// duration, `exponentialDelay`, `http2Error`, both or neither of
    /// `httpStatus`/`grpcStatus`, out-of-range numbers).
    pub fn from_yaml(yaml: &str) -> Result<Self, FaultError> {
        if yaml.len() > MAX_INPUT_BYTES {
            return Err(FaultError::TooLarge {
                size: yaml.len(),
                limit: MAX_INPUT_BYTES,
            });
        }
        let value: serde_norway::Value =
            serde_norway::from_str(yaml).map_err(|e| FaultError::Yaml {
                message: e.to_string(),
            })?;
        if value.is_null() {
            return Ok(Self::default());
        }
        let wire: WireFault =
            serde_path_to_error::deserialize(value).map_err(|e| FaultError::Schema {
                field: e.path().to_string(),
                message: e.inner().to_string(),
            })?;
        let delay = wire.delay.map(delay).transpose()?;
        let abort = wire.abort.map(abort).transpose()?;
        Ok(Self { delay, abort })
    }

    /// Samples the faults for one request: the delay draws first (one
    /// [`Random::chance`] if it has a percentage), then the abort (likewise),
    /// independently. A fault with no percentage draws nothing and never
    /// fires.
    ///
    /// # Example
    /// ```
    /// use std::time::Duration;
    /// use appnet_policy::{AbortStatus, FaultInjection, SeededRandom};
    ///
    /// let fault = FaultInjection::from_yaml(
    ///     "delay: {fixedDelay: 2s, percentage: {value: 100}}\nabort: {httpStatus: 503}",
    /// )?;
    /// let out = fault.sample(&mut SeededRandom::new(1));
    /// assert_eq!(out.delay, Some(Duration::from_secs(2)));
    /// assert_eq!(out.abort, None); // no percentage: never
    /// # let _ = AbortStatus::Http(503);
    /// # Ok::<(), appnet_policy::FaultError>(())
    /// ```
    pub fn sample(&self, rng: &mut dyn Random) -> FaultOutcome {
        let delay = self.delay.as_ref().and_then(|d| {
            let p = d.percentage?;
            rng.chance(p).then_some(d.fixed_delay)
        });
        let abort = self.abort.as_ref().and_then(|a| {
            let p = a.percentage?;
            rng.chance(p).then_some(a.status)
        });
        FaultOutcome { delay, abort }
    }
}

/// Why fault injection YAML was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FaultError {
    /// The input exceeds [`MAX_INPUT_BYTES`].
    #[error("fault input is {size} bytes; at most {limit} are read")]
    TooLarge {
        /// Input size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Not valid YAML (including alias bombs and too-deep nesting).
    #[error("fault YAML: {message}")]
    Yaml {
        /// What the YAML parser said.
        message: String,
    },
    /// An unknown field or a value of the wrong type.
    #[error("fault {field}: {message}")]
    Schema {
        /// Path to the field, e.g. `abort.httpStatus`.
        field: String,
        /// What the deserializer said.
        message: String,
    },
    /// A field has an invalid value.
    #[error("fault {field}: {reason}")]
    Invalid {
        /// Path to the field, e.g. `delay.percentage.value`.
        field: String,
        /// What is wrong.
        reason: FaultInvalid,
    },
}

/// What is wrong with a fault field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FaultInvalid {
    /// A percentage outside 0–100 or not a number.
    #[error("percentage {0} is not within 0-100")]
    Percentage(f64),
    /// `percent` and `percentage` both set.
    #[error("percent and percentage are mutually exclusive")]
    PercentAndPercentage,
    /// A delay without `fixedDelay`.
    #[error("fixedDelay is required")]
    MissingDelay,
    /// `fixedDelay` that is not a duration or is below 1 ms.
    #[error("invalid duration {0:?} (want e.g. 5s or 100ms, at least 1ms)")]
    Duration(String),
    /// A field Istio defines but does not implement (`exponentialDelay`,
    /// `http2Error`).
    #[error("{0} is not supported")]
    Unsupported(&'static str),
    /// An abort with neither or both of `httpStatus` and `grpcStatus`.
    #[error("exactly one of httpStatus and grpcStatus is required")]
    AbortStatusCount,
    /// An HTTP status outside 200–599.
    #[error("HTTP status {0} is not within 200-599")]
    HttpStatus(i64),
    /// A gRPC status name that is not a gRPC code.
    #[error("unknown gRPC status {0:?}")]
    GrpcStatus(String),
}

// ---- wire shapes ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireFault {
    delay: Option<WireDelay>,
    abort: Option<WireAbort>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WireDelay {
    fixed_delay: Option<String>,
    exponential_delay: Option<serde::de::IgnoredAny>,
    percentage: Option<WirePercent>,
    percent: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WireAbort {
    http_status: Option<i64>,
    grpc_status: Option<String>,
    http2_error: Option<serde::de::IgnoredAny>,
    percentage: Option<WirePercent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WirePercent {
    #[serde(default)]
    value: f64,
}

fn invalid(field: &str, reason: FaultInvalid) -> FaultError {
    FaultError::Invalid {
        field: field.to_owned(),
        reason,
    }
}

fn percentage(field: &str, p: Option<WirePercent>) -> Result<Option<Percentage>, FaultError> {
    p.map(|p| {
        Percentage::from_percent(p.value)
            .ok_or_else(|| invalid(&format!("{field}.value"), FaultInvalid::Percentage(p.value)))
    })
    .transpose()
}

fn delay(w: WireDelay) -> Result<DelayFault, FaultError> {
    if w.exponential_delay.is_some() {
        return Err(invalid(
            "delay.exponentialDelay",
            FaultInvalid::Unsupported("exponentialDelay"),
        ));
    }
    let raw = w
        .fixed_delay
        .ok_or_else(|| invalid("delay.fixedDelay", FaultInvalid::MissingDelay))?;
    let fixed_delay = duration::parse_go(&raw)
        .filter(|d| *d >= Duration::from_millis(1))
        .ok_or_else(|| invalid("delay.fixedDelay", FaultInvalid::Duration(raw.clone())))?;
    let percentage = match (w.percentage, w.percent) {
        (Some(_), Some(_)) => {
            return Err(invalid("delay.percent", FaultInvalid::PercentAndPercentage));
        }
        (p @ Some(_), None) => percentage("delay.percentage", p)?,
        (None, Some(n)) => {
            let p = i32::try_from(n)
                .ok()
                .and_then(|n| Percentage::from_percent(f64::from(n)))
                .ok_or_else(|| invalid("delay.percent", FaultInvalid::Percentage(n as f64)))?;
            Some(p)
        }
        (None, None) => None,
    };
    Ok(DelayFault {
        fixed_delay,
        percentage,
    })
}

fn abort(w: WireAbort) -> Result<AbortFault, FaultError> {
    if w.http2_error.is_some() {
        return Err(invalid(
            "abort.http2Error",
            FaultInvalid::Unsupported("http2Error"),
        ));
    }
    let status = match (w.http_status, w.grpc_status) {
        (Some(code), None) => match u16::try_from(code) {
            Ok(c) if (200..=599).contains(&c) => AbortStatus::Http(c),
            _ => return Err(invalid("abort.httpStatus", FaultInvalid::HttpStatus(code))),
        },
        (None, Some(name)) => AbortStatus::Grpc(
            GrpcCode::from_name(&name)
                .ok_or_else(|| invalid("abort.grpcStatus", FaultInvalid::GrpcStatus(name)))?,
        ),
        _ => return Err(invalid("abort", FaultInvalid::AbortStatusCount)),
    };
    Ok(AbortFault {
        status,
        percentage: percentage("abort.percentage", w.percentage)?,
    })
}
