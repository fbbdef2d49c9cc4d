//! Envoy xDS and the Istio workload API for sidecar-less meshes.
//!
//! The xDS protocol core (sans-IO): [`ServerStream`], [`ClientStream`] and
//! [`ResourceStore`] implement state-of-the-world and incremental xDS (ADS
//! and per-type), with version/nonce bookkeeping, ACK/NACK, wildcard and
//! named subscriptions and make-before-break ordering, driven by messages and
//! `now` only; no tokio or tonic in them.

mod protocol;

pub use protocol::{
    AcceptedResource, AckState, Acked, Any, ClientConfig, ClientEvent, ClientStream,
    ClientTypeStatus, DEFAULT_MAX_MESSAGE_SIZE, DeltaDiscoveryRequest, DeltaDiscoveryResponse,
    DeltaResource, DiscoveryRequest, DiscoveryResponse, Nack, Node, Outstanding, ProtocolError,
    Rejection, Request, RequestOutcome, ResourceStore, Response, ServerConfig, ServerStream,
    Status, StoredResource, StreamKind, SubscriptionChange, TypeRule, TypeStatus, TypeTable,
    Validator, Variant, WILDCARD, type_url,
};

/// Fuzzing entry points for the protocol core. Not part of the stable API.
#[doc(hidden)]
pub mod fuzzing_protocol {
    pub use crate::protocol::fuzzing::server_requests;
}
