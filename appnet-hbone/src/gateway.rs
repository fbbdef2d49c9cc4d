//! The east-west gateway side of double HBONE: accept the outer CONNECT
//! (authority = the destination service's `hostname:port`), connect to the
//! HBONE port of a peer in this network, and forward the tunnel's bytes
//! opaquely: they are the client's inner mTLS session, which the gateway
//! cannot read.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::net::TcpStream;
use tower::Service;

use crate::error::Refusal;
use crate::server::{InboundDecision, InboundRequest};

type Route = dyn Fn(&InboundRequest) -> Result<SocketAddr, Refusal> + Send + Sync;

/// A tower `Service` for [`HboneServer`](crate::HboneServer) that makes it
/// an east-west gateway: `route` picks the in-network HBONE address for each
/// outer CONNECT (or refuses it), the gateway connects there (`503` if it
/// cannot) and splices the tunnel to that socket byte for byte.
///
/// ```no_run
/// use appnet_hbone::{GatewayForwarder, HboneServer, Refusal, ServerConfig};
/// use appnet_identity::tls::{AllowedPeers, CredentialsReceiver};
///
/// # async fn gw(creds: CredentialsReceiver) -> Result<(), Box<dyn std::error::Error>> {
/// let forwarder = GatewayForwarder::new(|req| match req.authority().to_string().as_str() {
///     "db.prod.svc.cluster.local:5432" => Ok("10.1.0.9:15008".parse().unwrap()),
///     _ => Err(Refusal::BadRequest),
/// });
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:15008").await?;
/// let handle = HboneServer::new(creds, AllowedPeers::AnyTrusted, ServerConfig::default(), forwarder)?
///     .serve(listener)?;
/// # drop(handle); Ok(()) }
/// ```
#[derive(Clone)]
pub struct GatewayForwarder {
    route: Arc<Route>,
}

impl fmt::Debug for GatewayForwarder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayForwarder").finish_non_exhaustive()
    }
}

impl GatewayForwarder {
    /// A forwarder routing with `route`.
    pub fn new(
        route: impl Fn(&InboundRequest) -> Result<SocketAddr, Refusal> + Send + Sync + 'static,
    ) -> Self {
        Self {
            route: Arc::new(route),
        }
    }
}

impl Service<InboundRequest> for GatewayForwarder {
    type Response = InboundDecision;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<InboundDecision, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: InboundRequest) -> Self::Future {
        let routed = (self.route)(&req);
        Box::pin(async move {
            let target = match routed {
                Ok(target) => target,
                Err(refusal) => return Ok(InboundDecision::refuse(refusal)),
            };
            let Ok(mut upstream) = TcpStream::connect(target).await else {
                return Ok(InboundDecision::upstream_unavailable());
            };
            let _ = upstream.set_nodelay(true);
            Ok(InboundDecision::accept(move |mut tunnel| async move {
                let _ = tokio::io::copy_bidirectional(&mut tunnel, &mut upstream).await;
            }))
        })
    }
}
