//! xDS resources for sidecar-less meshes: Envoy xDS v3 and Istio's workload
//! discovery API, as wire messages and as validated domain types.
//!
//! What this crate does:
//! - the wire messages ([`wire`]): Istio's `istio.workload` and
//!   `istio.security` packages, generated at build time from this crate's
//!   own `.proto` files (wire-compatible with Istio's; no `protoc` needed),
//!   and Envoy's xDS v3 API (clusters, endpoints, listeners, routes, secrets,
//!   the ADS and delta discovery services) re-exported from `envoy-types`;
//! - the [`Resource`] abstraction: a type URL, a name, and decoding from a
//!   `google.protobuf.Any` in two phases, [`decode_wire`] (type URL, size
//!   bound, protobuf) then [`validate`] (wire → domain through `TryFrom`),
//!   both in [`decode_any`]; [`encode_any`] goes back;
//! - validated domain types: [`Address`] (a [`Workload`] or a [`Service`]),
//!   [`Authorization`], and thin wrappers over Envoy's [`Cluster`],
//!   [`ClusterLoadAssignment`], [`Listener`], [`RouteConfiguration`] and
//!   [`Secret`];
//! - the xDS protocol core, sans-IO: [`ServerStream`], [`ClientStream`] and
//!   [`ResourceStore`] implement state-of-the-world and incremental (delta)
//!   xDS, ADS and per-type streams, with version/nonce bookkeeping,
//!   ACK/NACK, wildcard and named subscriptions, `initial_resource_versions`
//!   and make-before-break ordering, driven by messages and `now` only (no
//!   tokio or tonic in them). A shell calls `handle_request`/`poll_response`
//!   (server) or `poll_request`/`handle_response` (client).
//!
//! Bad input never panics: a wrong type URL, an oversized payload, bytes
//! that are not protobuf and a field that breaks a rule each give a
//! [`ResourceError`]; the last one names the resource and the field path,
//! e.g. `workload.addresses[1]: 5 bytes is not an IPv4 or IPv6 address`,
//! ready to send back as a NACK.
//!
//! - the tonic shells: [`XdsServer`] serves a shared store over ADS (state
//!   of the world and delta), one task per stream, pushing only what changed
//!   for each stream after a short debounce ([`XdsServerConfig::debounce`]),
//!   with a status view of every connected client ([`XdsServer::status`]:
//!   node id, per-type ACKed version, last NACK and its message);
//!   [`XdsClient`] subscribes (on demand too), judges resources with typed
//!   handlers (a rejection is NACKed with its reason, the last good version
//!   kept) and reconnects with [`Backoff`], resuming with
//!   `initial_resource_versions`. Both default to a 64 MiB gRPC message
//!   limit ([`DEFAULT_GRPC_MESSAGE_SIZE`]): tonic's 4 MiB default is too
//!   small for a full delta push on reconnect.
//!
//! Tested against a real Envoy (1.40) bootstrapped with ADS at an
//! [`XdsServer`], state of the world and delta.
//!
//! Besides ADS, the server offers the per-type CDS, EDS, LDS and RDS
//! services ([`XdsServer::cds_service`], ...) over the same store.
//!
//! What it does not do (yet): a per-type (non-ADS) client; deep validation
//! of Envoy resources (Envoy checks those itself).

//! # Features
//! None yet: the wire types and resources are always built.
//!
//! # Example: decode an `Any` into a validated `Address`
//! ```
//! use appnet_xds::{Address, Resource, ResourceError, Workload, decode_any, encode_any};
//!
//! // What a control plane sends: an Address resource in an Any.
//! let any = encode_any(&Address::from(Workload {
//!     uid: "cluster1//Pod/default/web-0".into(),
//!     namespace: "default".into(),
//!     addresses: vec!["10.0.0.7".parse()?],
//!     ..Default::default()
//! }));
//! assert_eq!(any.type_url, "type.googleapis.com/istio.workload.Address");
//!
//! // What a node proxy does with it.
//! let address: Address = decode_any(&any)?;
//! assert_eq!(address.name(), "cluster1//Pod/default/web-0");
//! let Address::Workload(workload) = address else { unreachable!() };
//! assert_eq!(workload.addresses[0].to_string(), "10.0.0.7");
//!
//! // A type mismatch is an error, not a panic.
//! let err = decode_any::<appnet_xds::Authorization>(&any).unwrap_err();
//! assert!(matches!(err, ResourceError::WrongTypeUrl { .. }));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Example: serve clusters over ADS
//! ```no_run
//! use appnet_xds::wire::envoy::config::cluster::v3::Cluster;
//! use appnet_xds::{Any, XdsServer, XdsServerConfig, type_url};
//! use prost::Message;
//!
//! # async fn serve() -> Result<(), Box<dyn std::error::Error>> {
//! let server = XdsServer::new(XdsServerConfig::default());
//! let cluster = Cluster { name: "web".into(), ..Default::default() };
//! server.update(
//!     type_url::CLUSTER,
//!     [("web".to_owned(), Any {
//!         type_url: type_url::CLUSTER.into(),
//!         value: cluster.encode_to_vec(),
//!     })],
//! )?;
//! // Every connected client: node id, ACKed versions, last NACK.
//! for client in server.status() {
//!     println!("{} {:?}", client.node_id, client.types);
//! }
//! tonic::transport::Server::builder()
//!     .add_service(server.ads_service())
//!     .serve("127.0.0.1:18000".parse()?)
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Example: a delta client with a typed handler
//! ```no_run
//! use appnet_xds::{Cluster, Node, Variant, XdsClient, type_url};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let endpoint = tonic::transport::Endpoint::from_static("http://127.0.0.1:18000");
//! let client = XdsClient::builder(endpoint, Variant::Delta)
//!     .node(Node { id: "node-1".into(), ..Default::default() })
//!     .subscribe_wildcard(type_url::CLUSTER)
//!     // Rejected clusters are NACKed with this reason; the last good stays.
//!     .on::<Cluster, _>(|c: &Cluster| {
//!         if c.wire().name.starts_with("forbidden-") {
//!             Err("forbidden cluster name".into())
//!         } else {
//!             Ok(())
//!         }
//!     })
//!     .start();
//! let mut state = client.watch();
//! state.wait_for(|s| s.get(type_url::CLUSTER, "web").is_some()).await?;
//! client.subscribe(type_url::ENDPOINT, ["web"])?; // on demand
//! # Ok(())
//! # }
//! ```

mod address;
mod authorization;
mod envoy;
mod protocol;
mod resource;
mod service;
mod shell;
mod validation;
mod workload;

#[doc(hidden)]
pub mod fuzzing;
/// Fuzzing entry points for the protocol core. Not part of the stable API.
#[doc(hidden)]
pub mod fuzzing_protocol {
    pub use crate::protocol::fuzzing::{client_responses, server_requests};
}
pub mod wire;

pub use address::Address;
pub use authorization::{
    Authorization, AuthorizationAction, AuthorizationScope, Clause, Match, Rule,
    ServiceAccountMatch, StringMatch,
};
pub use envoy::{Cluster, ClusterLoadAssignment, Listener, RouteConfiguration, Secret};
pub use protocol::{
    AcceptedResource, AckState, Acked, Any, ClientConfig, ClientEvent, ClientStream,
    ClientTypeStatus, DEFAULT_DELTA_CHUNK_SIZE, DEFAULT_DELTA_STEPS_IN_FLIGHT,
    DEFAULT_MAX_MESSAGE_SIZE, DeltaDiscoveryRequest, DeltaDiscoveryResponse, DeltaResource,
    DiscoveryRequest, DiscoveryResponse, Nack, NameList, Node, Outstanding, ProtocolError,
    Rejection, Request, RequestOutcome, ResourceMap, ResourceStore, Response, ServerConfig,
    ServerStream, Status, StoredResource, StreamKind, SubscriptionChange, TypeRule, TypeStatus,
    TypeTable, Validator, Variant, WILDCARD, type_url,
};

pub use resource::{
    AnyMessage, DEFAULT_MAX_RESOURCE_BYTES, DecodeLimits, Resource, ResourceError, decode_any,
    decode_any_with, decode_wire, encode_any, encode_any_as, validate,
};
pub use service::{
    DnsConnectStrategy, HealthPolicy, IpFamilies, LoadBalancing, LoadBalancingMode,
    LoadBalancingScope, Service,
};
pub use shell::{
    Backoff, ClientClosed, ClientSnapshot, ClientStatus, DEFAULT_CONNECTION_WINDOW,
    DEFAULT_DEBOUNCE, DEFAULT_GRPC_MESSAGE_SIZE, DEFAULT_STREAM_WINDOW, NoPerTypeService,
    ResourceHandler, XdsClient, XdsClientBuilder, XdsServer, XdsServerConfig,
};
pub use validation::{ValidationError, Violation};
pub use workload::{
    ApplicationTunnel, ApplicationTunnelProtocol, Extension, GatewayAddress, GatewayDestination,
    Locality, NamespacedHostname, NetworkAddress, NetworkMode, Port, TunnelProtocol, Workload,
    WorkloadStatus, WorkloadType,
};

/// Re-exported: the CIDR type of [`Match`]'s address ranges.
pub use ipnet::IpNet;
