//! The xDS protocol as a sans-IO state machine.
//!
//! Nothing here owns a socket, a task or a clock: the caller feeds messages
//! and `now` in, and takes messages out, the way quinn-proto drives QUIC. A
//! tonic shell (or a test harness) owns the streams and moves the bytes.
//!
//! - [`ResourceStore`]: the server's versioned resources, per type URL, with a
//!   change log so streams can ask "what changed since generation `g`".
//! - [`ServerStream`]: one connected stream (state-of-the-world or delta, ADS
//!   or one type), fed with [`ServerStream::handle_request`] and polled with
//!   [`ServerStream::poll_response`] against a store.
//! - [`ClientStream`]: the client side: subscriptions, accepted state, ACK and
//!   NACK, reconnection with `initial_resource_versions`.
//!
//! Resources are opaque here: a name, a version string and a protobuf
//! [`Any`]. The core never decodes a payload; on the client side the caller's
//! [`Validator`] names and checks each one.

mod client;
mod error;
pub(crate) mod fuzzing;
mod message;
mod server;
mod store;
mod subscription;
mod types;

pub use client::{
    AcceptedResource, ClientConfig, ClientEvent, ClientStream, ClientTypeStatus, NameList,
    Rejection, ResourceMap, Validator,
};
pub use error::ProtocolError;
pub use message::{Request, Response, Variant};
pub use server::{
    AckState, Acked, DEFAULT_DELTA_CHUNK_SIZE, DEFAULT_DELTA_STEPS_IN_FLIGHT,
    DEFAULT_MAX_MESSAGE_SIZE, Nack, Outstanding, RequestOutcome, ServerConfig, ServerStream,
    StreamKind, SubscriptionChange, TypeStatus,
};
pub use store::{ResourceStore, StoredResource};
pub use types::{TypeRule, TypeTable, type_url};

/// The Envoy node identity sent on a stream's first request.
pub use envoy_types::pb::envoy::config::core::v3::Node;
/// The four xDS v3 discovery messages and the delta `Resource` wrapper.
pub use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
    Resource as DeltaResource,
};
/// The protobuf `Any` carried in xDS responses (envoy-types' own copy).
pub use envoy_types::pb::google::protobuf::Any;
/// The `google.rpc.Status` carried in a NACK's `error_detail`.
pub use envoy_types::pb::google::rpc::Status;

/// The wildcard resource name: subscribes to every resource of a type.
pub const WILDCARD: &str = "*";
