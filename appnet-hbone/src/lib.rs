//! HBONE: Istio ambient's tunnel, HTTP/2 `CONNECT` over SPIFFE mutual TLS.
//!
//! Speaks the protocol as Istio's ztunnel and waypoints do: TLS 1.3 only,
//! ALPN `h2`, no SNI, no session resumption, a client certificate always
//! required, the peer's SPIFFE ID checked on both sides; one HTTP/2
//! `CONNECT` stream per proxied TCP connection with `:authority` =
//! `ip:port` (or `hostname:port` through a waypoint or gateway), `baggage`,
//! `Forwarded: for="ip:port"` and `traceparent` headers; `200` then raw
//! bytes both ways, or `400`/`401`/`405`/`503`.
//!
//! What this crate does:
//! - [`HboneConnector`]: the client. Pooled connections keyed by (local
//!   identity, expected peer identities, peer address), many streams per
//!   connection up to the peer's limit, a new connection when full, idle
//!   eviction, PING keepalive; the pool's decisions are the plain
//!   [`Pool`] type. [`HboneConnector::connect_over`] runs a connection over
//!   any transport, and [`HboneConnector::connect_double`] is double HBONE
//!   (a CONNECT inside a CONNECT through an east-west gateway).
//! - [`HboneServer`]: the listener. Hands each CONNECT (with the verified
//!   peer identity, authority and headers) to a tower `Service` that answers
//!   with an [`InboundDecision`]; limits on streams and connections; graceful
//!   drain through [`ServerHandle`].
//! - [`GatewayForwarder`]: the east-west gateway side of double HBONE, which
//!   splices the outer tunnel to an in-network peer without reading it.
//! - [`Tunnel`]: the stream as tokio `AsyncRead + AsyncWrite`, with the
//!   peer identity, byte counters and half-close; [`copy_bidirectional`]
//!   splices it to the application's connection (a node proxy's inner
//!   loop) without the extra copies of tokio's.
//! - Wire vocabulary ([`ConnectRequest`], [`Authority`], [`Baggage`],
//!   [`TraceParent`]), PROXY protocol v2 ([`ProxyHeader`]) for the waypoint
//!   sandwich, and telemetry hooks ([`Telemetry`]) with Istio's TCP metrics
//!   ([`IstioTcpMetrics`]).
//!
//! HTTP/2 abuse is bounded by h2's limits as configured in [`ServerConfig`]
//! (rapid reset, oversized headers) and by backpressure (PING/SETTINGS
//! floods, readers that never read); the tests exercise each, and run
//! against a real Envoy in both roles. Defaults are Istio's (see
//! [`FlowControl`], [`ConnectorConfig`], [`ServerConfig`]).
//!
//! What it does not do: L7 processing (that is a waypoint's job), policy
//! decisions (the server's service makes them), service discovery (the
//! caller says where to connect), or reading the environment.
//!
//! # Features
//! - `prometheus` (default): [`IstioTcpMetrics`], the [`Telemetry`] hooks
//!   exported with prometheus-client.
//!
//! # Client
//! ```no_run
//! use appnet_hbone::{ConnectRequest, ConnectorConfig, HboneConnector, HbonePeer};
//! use appnet_identity::tls::CredentialsReceiver;
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # async fn client(credentials: CredentialsReceiver) -> Result<(), Box<dyn std::error::Error>> {
//! let connector = HboneConnector::new(ConnectorConfig::default())?;
//! // The peer node proxy, which must prove the destination's identity.
//! let peer = HbonePeer::new("10.0.0.2:15008".parse()?, "spiffe://cluster.local/ns/default/sa/db".parse()?);
//! let request = ConnectRequest::new("10.0.0.2:5432".parse()?)
//!     .forwarded_for("10.0.0.1:41234".parse()?);
//! let mut tunnel = connector.connect(&credentials, &peer, request).await?;
//! tunnel.write_all(b"hello").await?;
//! tunnel.shutdown().await?; // half-close: the server reads EOF
//! let mut reply = Vec::new();
//! tunnel.read_to_end(&mut reply).await?;
//! # Ok(()) }
//! ```
//!
//! # Server
//! ```no_run
//! use appnet_hbone::{HboneServer, InboundDecision, InboundRequest, ServerConfig};
//! use appnet_identity::tls::{AllowedPeers, CredentialsReceiver};
//! use appnet_identity::TrustDomain;
//!
//! # async fn server(credentials: CredentialsReceiver, td: TrustDomain) -> Result<(), Box<dyn std::error::Error>> {
//! // Decide per CONNECT: connect upstream first, so a failure is a 503.
//! let service = tower::service_fn(|req: InboundRequest| async move {
//!     let Some(target) = req.authority().addr() else {
//!         return Ok::<_, std::convert::Infallible>(InboundDecision::deny());
//!     };
//!     match tokio::net::TcpStream::connect(target).await {
//!         Ok(mut upstream) => Ok(InboundDecision::accept(move |mut tunnel| async move {
//!             let _ = appnet_hbone::copy_bidirectional(&mut upstream, &mut tunnel).await;
//!         })),
//!         Err(_) => Ok(InboundDecision::upstream_unavailable()),
//!     }
//! });
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:15008").await?;
//! let server = HboneServer::new(credentials, AllowedPeers::TrustDomain(td), ServerConfig::default(), service)?;
//! let handle = server.serve(listener)?;
//! // ... on shutdown: GOAWAY, let tunnels finish, close.
//! handle.drain().await;
//! # Ok(()) }
//! ```

mod client;
mod config;
mod copy;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod gateway;
mod keepalive;
mod metrics;
mod pool;
mod proxy_protocol;
mod server;
mod tunnel;
mod wire;

pub use client::{ConnectorStats, HboneConnector, HbonePeer};
pub use config::{ConnectorConfig, FlowControl, Keepalive, ServerConfig};
pub use copy::copy_bidirectional;
pub use error::{ConfigError, HboneError, Refusal, WireError};
pub use gateway::GatewayForwarder;
#[cfg(feature = "prometheus")]
pub use metrics::IstioTcpMetrics;
pub use metrics::{ConnectionLabels, ConnectionRecorder, Reporter, Telemetry};
pub use pool::{Checkout, ConnectionId, Pool, PoolStats};
pub use proxy_protocol::{ProxyHeader, ProxyHeaderError, SIGNATURE, TLV_PEER_IDENTITY};
pub use server::{HboneServer, InboundDecision, InboundRequest, ServerHandle, ServerStats};
pub use tunnel::{ByteCounters, Tunnel};
pub use wire::{
    ALPN_H2, Authority, BAGGAGE, Baggage, ConnectRequest, FORWARDED, HBONE_PORT, TRACEPARENT,
    TraceParent, X_FORWARDED_NETWORK, forwarded_for, parse_forwarded_for,
};
