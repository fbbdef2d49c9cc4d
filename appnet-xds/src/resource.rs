//! The [`Resource`] abstraction: a typed xDS resource decoded from a
//! `google.protobuf.Any` in two phases.
//!
//! 1. [`decode_wire`]: the type URL must name the resource's message, the
//!    payload must fit the [`DecodeLimits`], and it must decode as protobuf.
//! 2. [`validate`]: the decoded message converts to the validated domain
//!    type through its `TryFrom`, or fails naming the bad field.
//!
//! [`decode_any`] does both. A client NACKs with the error's text.

use std::borrow::Cow;

use prost::Message;

use crate::validation::{ValidationError, Violation};
use crate::wire;

/// The default bound on one resource's encoded size: 4 MiB.
pub const DEFAULT_MAX_RESOURCE_BYTES: usize = 4 * 1024 * 1024;

/// A typed xDS resource: a validated domain value with a wire message, a
/// type URL and a name.
///
/// Implementations convert wire → domain only through `TryFrom<Self::Wire>`
/// (which [`from_wire`](Self::from_wire) calls) and domain → wire through
/// `From<&Self> for Self::Wire` (which [`to_wire`](Self::to_wire) calls).
pub trait Resource: Sized {
    /// The protobuf message carried on the wire.
    type Wire: Message + prost::Name + Default;

    /// The type URL the resource travels under, e.g.
    /// `type.googleapis.com/istio.workload.Address`; the same string as
    /// `<Self::Wire as prost::Name>::type_url()`.
    const TYPE_URL: &'static str;

    /// The resource's xDS name (what subscriptions and removals refer to).
    fn name(&self) -> Cow<'_, str>;

    /// The name a wire message would have, if it has enough of one to say;
    /// used to name a resource that fails validation.
    fn wire_name(wire: &Self::Wire) -> Option<String>;

    /// Validates a decoded message (phase 2).
    ///
    /// # Errors
    /// A [`ValidationError`] naming the first bad field.
    fn from_wire(wire: Self::Wire) -> Result<Self, ValidationError>;

    /// The wire message for this value.
    fn to_wire(&self) -> Self::Wire;
}

/// A `google.protobuf.Any`, whichever crate generated it: [`prost_types::Any`]
/// (used by the Istio messages) or Envoy's [`wire::google::protobuf::Any`]
/// (used in `DiscoveryResponse`).
pub trait AnyMessage {
    /// The type URL.
    fn type_url(&self) -> &str;
    /// The encoded message.
    fn value(&self) -> &[u8];
    /// An `Any` holding `value` under `type_url`.
    fn from_parts(type_url: String, value: Vec<u8>) -> Self;
}

impl AnyMessage for prost_types::Any {
    fn type_url(&self) -> &str {
        &self.type_url
    }
    fn value(&self) -> &[u8] {
        &self.value
    }
    fn from_parts(type_url: String, value: Vec<u8>) -> Self {
        Self { type_url, value }
    }
}

impl AnyMessage for wire::google::protobuf::Any {
    fn type_url(&self) -> &str {
        &self.type_url
    }
    fn value(&self) -> &[u8] {
        &self.value
    }
    fn from_parts(type_url: String, value: Vec<u8>) -> Self {
        Self { type_url, value }
    }
}

/// Bounds applied while decoding untrusted resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DecodeLimits {
    /// Largest accepted encoded resource, in bytes
    /// (default [`DEFAULT_MAX_RESOURCE_BYTES`]).
    pub max_resource_bytes: usize,
}

impl DecodeLimits {
    /// The defaults.
    pub const fn new() -> Self {
        Self {
            max_resource_bytes: DEFAULT_MAX_RESOURCE_BYTES,
        }
    }

    /// The same limits with another per-resource size bound.
    #[must_use]
    pub const fn with_max_resource_bytes(mut self, max: usize) -> Self {
        self.max_resource_bytes = max;
        self
    }
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self::new()
    }
}

/// Why an `Any` did not become a resource.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResourceError {
    /// The `Any` holds another message type than the one expected.
    #[error("expected a {expected} resource, got type URL {actual:?}")]
    WrongTypeUrl {
        /// The expected type URL.
        expected: &'static str,
        /// The type URL found.
        actual: String,
    },
    /// The encoded resource is larger than [`DecodeLimits::max_resource_bytes`].
    #[error("{type_url} resource of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The resource's type URL.
        type_url: &'static str,
        /// Its encoded size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The payload is not a valid protobuf encoding of the message.
    #[error("{type_url} resource does not decode: {source}")]
    Decode {
        /// The resource's type URL.
        type_url: &'static str,
        /// What prost reported.
        source: prost::DecodeError,
    },
    /// The message decoded but a field is invalid.
    #[error("invalid {type_url} resource{}: {field}: {violation}", named(resource.as_deref()))]
    Invalid {
        /// The resource's type URL.
        type_url: &'static str,
        /// The resource's name, when the message carried one.
        resource: Option<String>,
        /// Path to the bad field (see [`ValidationError::field`]).
        field: String,
        /// What is wrong with it.
        violation: Violation,
    },
}

fn named(resource: Option<&str>) -> String {
    resource.map(|n| format!(" {n:?}")).unwrap_or_default()
}

/// Whether `actual` names the same message as `expected`: per the `Any`
/// rules, the part after the last `/` is the fully qualified message name
/// and the prefix before it is not significant.
fn same_type(actual: &str, expected: &str) -> bool {
    match (actual.rsplit_once('/'), expected.rsplit_once('/')) {
        (Some((_, a)), Some((_, e))) => a == e,
        _ => actual == expected,
    }
}

/// Phase 1: checks the type URL and size, then decodes the wire message.
///
/// As `Any` prescribes, only the type name after the last `/` of the type
/// URL is compared, so `example.com/istio.workload.Address` is accepted for
/// [`Address`](crate::Address); a URL without a `/` never is.
///
/// # Errors
/// [`ResourceError::WrongTypeUrl`], [`ResourceError::TooLarge`] or
/// [`ResourceError::Decode`].
pub fn decode_wire<R: Resource>(
    any: &impl AnyMessage,
    limits: &DecodeLimits,
) -> Result<R::Wire, ResourceError> {
    if !same_type(any.type_url(), R::TYPE_URL) {
        return Err(ResourceError::WrongTypeUrl {
            expected: R::TYPE_URL,
            actual: any.type_url().to_owned(),
        });
    }
    let value = any.value();
    if value.len() > limits.max_resource_bytes {
        return Err(ResourceError::TooLarge {
            type_url: R::TYPE_URL,
            size: value.len(),
            max: limits.max_resource_bytes,
        });
    }
    R::Wire::decode(value).map_err(|source| ResourceError::Decode {
        type_url: R::TYPE_URL,
        source,
    })
}

/// Phase 2: validates a decoded wire message into the domain type.
///
/// # Errors
/// [`ResourceError::Invalid`] naming the resource (when it has a name) and
/// the bad field.
pub fn validate<R: Resource>(wire: R::Wire) -> Result<R, ResourceError> {
    let name = R::wire_name(&wire);
    R::from_wire(wire).map_err(|e| invalid::<R>(name, e))
}

fn invalid<R: Resource>(resource: Option<String>, e: ValidationError) -> ResourceError {
    ResourceError::Invalid {
        type_url: R::TYPE_URL,
        resource,
        field: e.field,
        violation: e.violation,
    }
}

/// Decodes and validates an `Any` with the default [`DecodeLimits`].
///
/// # Errors
/// Any [`ResourceError`]: see [`decode_wire`] and [`validate`].
pub fn decode_any<R: Resource>(any: &impl AnyMessage) -> Result<R, ResourceError> {
    decode_any_with(any, &DecodeLimits::default())
}

/// Decodes and validates an `Any` under the given limits.
///
/// # Errors
/// Any [`ResourceError`]: see [`decode_wire`] and [`validate`].
pub fn decode_any_with<R: Resource>(
    any: &impl AnyMessage,
    limits: &DecodeLimits,
) -> Result<R, ResourceError> {
    let wire = decode_wire::<R>(any, limits)?;
    R::from_wire(wire).map_err(|e| {
        // Validation consumed the message; decode it again to name the
        // resource, so the common (valid) path never copies the name.
        let name = R::Wire::decode(any.value())
            .ok()
            .and_then(|w| R::wire_name(&w));
        invalid::<R>(name, e)
    })
}

/// Encodes a resource as a [`prost_types::Any`] under its type URL.
pub fn encode_any<R: Resource>(resource: &R) -> prost_types::Any {
    encode_any_as(resource)
}

/// Encodes a resource as any kind of `Any`, e.g. Envoy's
/// [`wire::google::protobuf::Any`] for a `DiscoveryResponse`.
pub fn encode_any_as<A: AnyMessage, R: Resource>(resource: &R) -> A {
    A::from_parts(R::TYPE_URL.to_owned(), resource.to_wire().encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::same_type;

    #[test]
    fn type_url_prefix_is_not_significant() {
        let t = "type.googleapis.com/istio.workload.Address";
        assert!(same_type(t, t));
        assert!(same_type("example.com/x/istio.workload.Address", t));
        assert!(same_type("/istio.workload.Address", t));
        assert!(!same_type("istio.workload.Address", t));
        assert!(!same_type("type.googleapis.com/istio.workload.Workload", t));
        assert!(!same_type("type.googleapis.com/istio.workload.Address ", t));
        assert!(!same_type("", t));
    }
}
