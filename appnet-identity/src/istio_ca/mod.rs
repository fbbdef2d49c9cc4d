//! The Istio CSR API: `istio.v1.auth.IstioCertificateService/CreateCertificate`,
//! a tonic client and server (feature `istio-ca`).
//!
//! Wire-compatible with Istio: our client can be signed by istiod, and a real
//! ztunnel or sidecar can be signed by our server. The request carries a PEM
//! CSR, a lifetime in seconds and a `google.protobuf.Struct` of metadata; a
//! node proxy asks for one of its workloads' identities by putting that
//! workload's SPIFFE ID under [`IMPERSONATED_IDENTITY`]. The response is the
//! PEM chain, leaf first.
//!
//! - Client: [`IstioCaClient`] over any tonic [`Channel`](tonic::transport::Channel);
//!   [`connect_mtls`] builds one that speaks SPIFFE mutual TLS with a rustls
//!   config from [`tls::client_config`](crate::tls::client_config).
//! - Server: [`IstioCaServer`] signs with a [`CertificateAuthority`](crate::CertificateAuthority)
//!   for the caller an [`Authenticator`] names (the verified mTLS peer with
//!   [`MtlsPeer`], a bearer token with your own implementation, or
//!   [`StaticTokens`] in tests), impersonation allowed only by an
//!   [`Authorizer`] ([`SelfOnly`] by default, [`NodeAuthorizer`] for node
//!   proxies). The CSR contributes its public key and nothing else.
//! - [`serve_mtls`] runs any tonic routes over SPIFFE mTLS on a listener
//!   and hands each call the verified peer ([`MtlsConnectInfo`]).
//!
//! What it does not do: Kubernetes TokenReview or JWT validation (plug them
//! in as an [`Authenticator`]), CA key rotation, or reading the environment.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::{Duration, SystemTime};
//! use appnet_identity::istio_ca::{self, IstioCaClient, IstioCaServer, MtlsPeer, NodeAuthorizer};
//! use appnet_identity::tls::{self, AllowedPeers, Credentials};
//! use appnet_identity::{CertificateAuthority, SpiffeId, TrustBundle, WorkloadKey};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let now = SystemTime::now();
//! let ca = CertificateAuthority::generate_root("cluster.local".parse()?, now, Duration::from_secs(86400))?;
//! let bundle = TrustBundle::from(ca.bundle()?);
//!
//! // Server: the CA's own SVID for TLS, callers identified by their mTLS peer.
//! let istiod: SpiffeId = "spiffe://cluster.local/ns/istio-system/sa/istiod".parse()?;
//! let creds = Credentials::new(ca.issue_svid(&istiod, now, Duration::from_secs(3600))?, bundle.clone())?;
//! let server_tls = tls::server_config(tls::fixed(creds), AllowedPeers::AnyTrusted, vec![b"h2".to_vec()])?;
//! let nodes = NodeAuthorizer::new();
//! // The node proxy's own SVID, and the workload it may ask for.
//! let node: SpiffeId = "spiffe://cluster.local/ns/istio-system/sa/ztunnel".parse()?;
//! let workload: SpiffeId = "spiffe://cluster.local/ns/default/sa/web".parse()?;
//! nodes.allow(node.clone(), workload.clone());
//! let node_creds = Credentials::new(ca.issue_svid(&node, now, Duration::from_secs(3600))?, bundle)?;
//! let service = IstioCaServer::new(Arc::new(ca), MtlsPeer, nodes.clone()).into_service();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:15012").await?;
//! tokio::spawn(istio_ca::serve_mtls(
//!     listener,
//!     Arc::new(server_tls),
//!     tonic::service::Routes::new(service),
//!     std::future::pending(),
//! ));
//!
//! // Client: a node proxy asking for one of its workloads' certificates.
//! let client_tls = tls::client_config(tls::fixed(node_creds), AllowedPeers::Exactly(istiod), vec![b"h2".to_vec()])?;
//! let channel = istio_ca::connect_mtls("http://127.0.0.1:15012".parse()?, Arc::new(client_tls)).await?;
//! let mut client = IstioCaClient::new(channel);
//! let key = WorkloadKey::generate()?;
//! let chain = client
//!     .create_certificate(&key.csr(&workload)?, Duration::from_secs(86400), Some(&workload))
//!     .await?;
//! # let _ = chain; Ok(()) }
//! ```

mod auth;
mod client;
mod serve;
mod server;

pub use auth::{
    AnyOf, AuthError, Authenticator, Authorizer, CallerInfo, MtlsPeer, NodeAuthorizer, SelfOnly,
    StaticTokens, bearer_token,
};
pub use client::{IstioCaClient, IstioCaError, MtlsConnector, connect_mtls};
pub use serve::{HANDSHAKE_TIMEOUT, MtlsConnectInfo, MtlsStream, ServeError, serve_mtls};
pub use server::{DEFAULT_MAX_WORKLOAD_TTL, IssueError, IstioCaServer};

/// The metadata key under which a node proxy names the workload identity it
/// asks a certificate for (a string value holding a SPIFFE ID).
pub const IMPERSONATED_IDENTITY: &str = "ImpersonatedIdentity";

/// The gRPC wire types, generated from `proto/istio/v1/auth/ca.proto`
/// (package `istio.v1.auth`), for callers who need the raw messages, the
/// generated client or the service trait.
pub mod proto {
    #[allow(
        missing_docs,
        unreachable_pub,
        missing_debug_implementations,
        clippy::all,
        clippy::pedantic
    )]
    mod generated {
        tonic::include_proto!("istio.v1.auth");
    }

    pub use generated::istio_certificate_service_client::IstioCertificateServiceClient;
    pub use generated::istio_certificate_service_server::{
        IstioCertificateService, IstioCertificateServiceServer, SERVICE_NAME,
    };
    pub use generated::{IstioCertificateRequest, IstioCertificateResponse};
}
