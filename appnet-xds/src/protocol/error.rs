//! The protocol core's error type.

use std::time::Duration;

use super::Variant;

/// Why the protocol core refused a message or an operation.
///
/// None of these leave a stream in a broken state: the offending message is
/// dropped and everything accepted before it is kept. The shell decides
/// whether to log and carry on or to close the stream.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A request on an aggregated (ADS) stream named no `type_url`.
    #[error("request on an aggregated stream has an empty type_url")]
    MissingTypeUrl,
    /// A per-type stream received a request, or a client a response, for a
    /// type the stream is not for.
    #[error("type_url {got:?} on a stream for {expected:?}")]
    TypeMismatch {
        /// The type the stream serves.
        expected: String,
        /// The type the message named.
        got: String,
    },
    /// A state-of-the-world message on a delta stream or the reverse.
    #[error("message of the wrong protocol variant: this stream speaks {expected:?}")]
    WrongVariant {
        /// The variant the stream speaks.
        expected: Variant,
    },
    /// The first request of a stream carried no node, and the configuration
    /// requires one.
    #[error("the first request on a stream must identify its node")]
    MissingNode,
    /// A response would exceed the configured maximum message size. For a
    /// delta stream this names the one resource that alone is too large; for
    /// state of the world the whole response (which cannot be split).
    #[error("{type_url} response of {size} bytes exceeds the {limit}-byte limit{}", name.as_ref().map(|n| format!(" (resource {n:?})")).unwrap_or_default())]
    MessageTooLarge {
        /// The resource type.
        type_url: String,
        /// The resource that alone is too large (delta only).
        name: Option<String>,
        /// The encoded size that would have been sent.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A response stayed un-acknowledged for longer than the configured ACK
    /// timeout.
    #[error("{type_url} response {nonce:?} not acknowledged within {timeout:?}")]
    AckTimeout {
        /// The resource type.
        type_url: String,
        /// The nonce of the response still waiting.
        nonce: String,
        /// The configured timeout.
        timeout: Duration,
    },
    /// A resource handed to the store is unusable.
    #[error("invalid resource {name:?} of {type_url}: {reason}")]
    InvalidResource {
        /// The resource type.
        type_url: String,
        /// The resource name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A client received a response for a type it never subscribed to on
    /// this stream.
    #[error("response for {type_url}, which this client never subscribed to")]
    UnexpectedType {
        /// The type the response named.
        type_url: String,
    },
}
