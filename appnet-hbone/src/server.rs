//! [`HboneServer`]: the mTLS HTTP/2 listener that accepts CONNECT streams
//! and asks a tower `Service` what to do with each.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use appnet_identity::SpiffeId;
use appnet_identity::tls::{self, AllowedPeers, CredentialsReceiver};
use bytes::Bytes;
use h2::RecvStream;
use h2::server::SendResponse;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tower::Service;

use crate::config::ServerConfig;
use crate::error::{HboneError, Refusal};
use crate::keepalive::keepalive;
use crate::metrics::{ConnectionLabels, Reporter, Telemetry};
use crate::tunnel::{OnDrop, Tunnel, TunnelParts};
use crate::wire::{
    self, ALPN_H2, Authority, BAGGAGE, Baggage, FORWARDED, TRACEPARENT, TraceParent,
    X_FORWARDED_NETWORK,
};

/// A CONNECT the server accepted at the HTTP/2 level, for the service to
/// decide on.
#[derive(Debug)]
pub struct InboundRequest {
    peer_identity: SpiffeId,
    peer_addr: SocketAddr,
    local_addr: SocketAddr,
    authority: Authority,
    headers: HeaderMap,
}

impl InboundRequest {
    /// The client's SPIFFE ID, verified in the TLS handshake.
    pub fn peer_identity(&self) -> &SpiffeId {
        &self.peer_identity
    }

    /// The client's socket address (the peer node proxy, not the original
    /// source: see [`forwarded_for`](Self::forwarded_for)).
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// The local address the connection arrived on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The CONNECT target.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// All request headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The source's `baggage`, if present and well-formed.
    pub fn baggage(&self) -> Option<Baggage> {
        self.header_str(&BAGGAGE)?.parse().ok()
    }

    /// The original source address from `Forwarded: for=`, if present and
    /// well-formed.
    pub fn forwarded_for(&self) -> Option<SocketAddr> {
        wire::parse_forwarded_for(self.header_str(&FORWARDED)?).ok()
    }

    /// The `traceparent`, if present and well-formed.
    pub fn traceparent(&self) -> Option<TraceParent> {
        self.header_str(&TRACEPARENT)?.parse().ok()
    }

    /// The origin network of a double-HBONE inner CONNECT.
    pub fn forwarded_network(&self) -> Option<&str> {
        self.header_str(&X_FORWARDED_NETWORK)
    }

    fn header_str(&self, name: &http::HeaderName) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }
}

type ForwardFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
type Forward = Box<dyn FnOnce(Tunnel) -> ForwardFuture + Send>;

/// The service's answer to an [`InboundRequest`].
pub struct InboundDecision(Decision);

enum Decision {
    Accept {
        baggage: Option<Box<Baggage>>,
        forward: Forward,
    },
    Refuse(Refusal),
}

impl fmt::Debug for InboundDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Decision::Accept { baggage, .. } => f
                .debug_struct("Accept")
                .field("baggage", baggage)
                .finish_non_exhaustive(),
            Decision::Refuse(r) => f.debug_tuple("Refuse").field(r).finish(),
        }
    }
}

impl InboundDecision {
    /// Accept: the server answers `200` and runs `forward` with the tunnel
    /// (typically: copy it to an upstream socket the service already
    /// connected, so a failed connect can still be a `503`).
    pub fn accept<F, Fut>(forward: F) -> Self
    where
        F: FnOnce(Tunnel) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self(Decision::Accept {
            baggage: None,
            forward: Box::new(move |t| Box::pin(forward(t))),
        })
    }

    /// Adds the destination's `baggage` to the `200` (no effect on a
    /// refusal).
    pub fn with_baggage(mut self, b: Baggage) -> Self {
        if let Decision::Accept { baggage, .. } = &mut self.0 {
            *baggage = Some(Box::new(b));
        }
        self
    }

    /// Refuse with the status of `refusal`.
    pub fn refuse(refusal: Refusal) -> Self {
        Self(Decision::Refuse(refusal))
    }

    /// Refuse by policy: `401`.
    pub fn deny() -> Self {
        Self::refuse(Refusal::Denied)
    }

    /// The upstream could not be reached: `503`.
    pub fn upstream_unavailable() -> Self {
        Self::refuse(Refusal::UpstreamUnavailable)
    }
}

/// Live counts of what a server holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Accepted connections not yet closed (including handshakes).
    pub connections: usize,
    /// Tunnels (accepted CONNECT streams) not yet closed.
    pub tunnels: usize,
}

#[derive(Debug, Default)]
struct Gauges {
    connections: AtomicUsize,
    tunnels: AtomicUsize,
}

fn hold(gauge: &Arc<Gauges>, pick: fn(&Gauges) -> &AtomicUsize) -> OnDrop {
    pick(gauge).fetch_add(1, Ordering::Relaxed);
    let gauge = Arc::clone(gauge);
    OnDrop::new(move || {
        pick(&gauge).fetch_sub(1, Ordering::Relaxed);
    })
}

/// The HBONE server: mutual TLS 1.3 with ALPN `h2`, HTTP/2 CONNECT only.
///
/// Each CONNECT becomes an [`InboundRequest`] for the service `S`, which
/// answers with an [`InboundDecision`]. A request that is not CONNECT gets
/// `405`, one whose authority is not `host:port` gets `400`, and a service
/// error `503`, all without calling (or after failing) the service.
pub struct HboneServer<S> {
    acceptor: TlsAcceptor,
    credentials: CredentialsReceiver,
    config: ServerConfig,
    service: S,
    telemetry: Option<Arc<dyn Telemetry>>,
}

impl<S> fmt::Debug for HboneServer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HboneServer")
            .field("config", &self.config)
            .field("telemetry", &self.telemetry)
            .finish_non_exhaustive()
    }
}

/// What every connection task shares; the service is cloned into each
/// task instead, so it need not be `Sync`.
struct Shared {
    acceptor: TlsAcceptor,
    credentials: CredentialsReceiver,
    config: ServerConfig,
    telemetry: Option<Arc<dyn Telemetry>>,
    gauges: Arc<Gauges>,
}

impl<S> HboneServer<S>
where
    S: Service<InboundRequest, Response = InboundDecision> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    /// A server presenting the SVID in `credentials` and accepting clients
    /// `allowed` lets through (Istio: the same trust domain,
    /// `AllowedPeers::TrustDomain`).
    ///
    /// # Errors
    /// [`HboneError::Config`] for an out-of-range setting,
    /// [`HboneError::TlsConfig`] if rustls refuses the TLS config.
    pub fn new(
        credentials: CredentialsReceiver,
        allowed: AllowedPeers,
        config: ServerConfig,
        service: S,
    ) -> Result<Self, HboneError> {
        config.validate()?;
        let tls = tls::server_config(credentials.clone(), allowed, vec![ALPN_H2.to_vec()])?;
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(tls)),
            credentials,
            config,
            service,
            telemetry: None,
        })
    }

    /// Reports every tunnel to `telemetry` (reporter `destination`).
    pub fn with_telemetry(mut self, telemetry: Arc<dyn Telemetry>) -> Self {
        self.telemetry = Some(telemetry);
        self
    }

    /// Serves on `listener` in a spawned task until drained or the handle is
    /// dropped. Must be called within a tokio runtime.
    ///
    /// # Errors
    /// The listener's local address cannot be read.
    pub fn serve(self, listener: TcpListener) -> io::Result<ServerHandle> {
        let local_addr = listener.local_addr()?;
        let gauges = Arc::new(Gauges::default());
        let shared = Arc::new(Shared {
            acceptor: self.acceptor,
            credentials: self.credentials,
            config: self.config,
            telemetry: self.telemetry,
            gauges: Arc::clone(&gauges),
        });
        let (drain_tx, drain_rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, shared, self.service, drain_rx));
        Ok(ServerHandle {
            local_addr,
            drain: drain_tx,
            gauges,
            task: Some(task),
        })
    }
}

/// A running server. Dropping it stops the server at once (every
/// connection and tunnel task is aborted); [`drain`](Self::drain) stops it
/// gracefully.
#[derive(Debug)]
pub struct ServerHandle {
    local_addr: SocketAddr,
    drain: watch::Sender<bool>,
    gauges: Arc<Gauges>,
    task: Option<JoinHandle<()>>,
}

impl ServerHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// What the server holds now.
    pub fn stats(&self) -> ServerStats {
        ServerStats {
            connections: self.gauges.connections.load(Ordering::Relaxed),
            tunnels: self.gauges.tunnels.load(Ordering::Relaxed),
        }
    }

    /// Graceful drain: stop accepting connections, send GOAWAY on every
    /// connection, let in-flight tunnels finish, then close. Returns when
    /// all are closed.
    pub async fn drain(mut self) {
        let _ = self.drain.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// [`drain`](Self::drain), but tunnels still open after `grace` are
    /// cut. Returns whether everything finished within `grace`.
    pub async fn drain_within(mut self, grace: Duration) -> bool {
        let _ = self.drain.send(true);
        let Some(mut task) = self.task.take() else {
            return true;
        };
        match tokio::time::timeout(grace, &mut task).await {
            Ok(_) => true,
            Err(_) => {
                task.abort();
                let _ = task.await;
                false
            }
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn drain_signal(rx: &mut watch::Receiver<bool>) {
    // A closed channel (handle gone) counts as a drain.
    let _ = rx.wait_for(|d| *d).await;
}

async fn accept_loop<S>(
    listener: TcpListener,
    shared: Arc<Shared>,
    service: S,
    mut drain_rx: watch::Receiver<bool>,
) where
    S: Service<InboundRequest, Response = InboundDecision> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let limit = Arc::new(Semaphore::new(shared.config.max_connections));
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = drain_signal(&mut drain_rx) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer_addr)) => {
                    let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
                        tracing::debug!(%peer_addr, "connection limit reached; closing");
                        continue;
                    };
                    let shared = Arc::clone(&shared);
                    let service = service.clone();
                    let drain_rx = drain_rx.clone();
                    connections.spawn(async move {
                        serve_connection(shared, service, tcp, peer_addr, drain_rx).await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    // Out of descriptors and the like: back off briefly
                    // rather than spin.
                    tracing::warn!(error = %e, "HBONE accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

async fn serve_connection<S>(
    shared: Arc<Shared>,
    service: S,
    tcp: TcpStream,
    peer_addr: SocketAddr,
    mut drain_rx: watch::Receiver<bool>,
) where
    S: Service<InboundRequest, Response = InboundDecision> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let _connection = hold(&shared.gauges, |g| &g.connections);
    let Ok(local_addr) = tcp.local_addr() else {
        return;
    };
    // Small frames (WINDOW_UPDATE, PING, response HEADERS) must not wait
    // behind Nagle for the peer's delayed ACK.
    let _ = tcp.set_nodelay(true);
    let handshake = async {
        let tls = shared.acceptor.accept(tcp).await.map_err(HboneError::Tls)?;
        let (_, conn) = tls.get_ref();
        if conn.alpn_protocol() != Some(ALPN_H2) {
            return Err(HboneError::NotH2);
        }
        let peer = tls::peer_identity(conn).ok_or(HboneError::NoPeerIdentity)?;
        let h2 = shared.config.h2_builder().handshake(tls).await?;
        Ok::<_, HboneError>((peer, h2))
    };
    let (peer, mut conn) =
        match tokio::time::timeout(shared.config.handshake_timeout, handshake).await {
            Ok(Ok(ok)) => ok,
            Ok(Err(e)) => {
                tracing::debug!(%peer_addr, error = %e, "HBONE handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer_addr, "HBONE handshake timed out");
                return;
            }
        };
    let alive = keepalive(conn.ping_pong(), shared.config.keepalive);
    tokio::pin!(alive);
    let mut streams = JoinSet::new();
    let mut draining = false;
    loop {
        tokio::select! {
            accepted = conn.accept() => match accepted {
                Some(Ok((req, respond))) => {
                    streams.spawn(serve_stream(Box::new(StreamStart {
                        shared: Arc::clone(&shared),
                        service: service.clone(),
                        req,
                        respond,
                        peer: peer.clone(),
                        peer_addr,
                        local_addr,
                    })));
                }
                Some(Err(e)) => {
                    tracing::debug!(%peer_addr, error = %e, "HBONE connection error");
                    break;
                }
                None => break,
            },
            Some(_) = streams.join_next(), if !streams.is_empty() => {}
            () = drain_signal(&mut drain_rx), if !draining => {
                draining = true;
                conn.graceful_shutdown();
            }
            () = &mut alive => {
                tracing::debug!(%peer_addr, "HBONE keepalive timed out");
                break;
            }
        }
    }
    // Closing the connection fails whatever streams remain; their tasks
    // then end on their own.
    drop(conn);
    while streams.join_next().await.is_some() {}
}

fn respond_status(respond: &mut SendResponse<Bytes>, status: StatusCode) {
    let mut resp = Response::new(());
    *resp.status_mut() = status;
    let _ = respond.send_response(resp, true);
}

/// What a stream's task starts from. Boxed, so that the task itself holds
/// a pointer rather than the request while its tunnel is forwarded.
struct StreamStart<S> {
    shared: Arc<Shared>,
    service: S,
    req: Request<RecvStream>,
    respond: SendResponse<Bytes>,
    peer: SpiffeId,
    peer_addr: SocketAddr,
    local_addr: SocketAddr,
}

/// One CONNECT stream's task. The decision (request parsing, the service's
/// future, the response) runs in a box of its own that is freed before the
/// tunnel is forwarded: an idle tunnel's task is then a few hundred bytes
/// plus the forwarding future, not the largest state of the decision
/// (about 2 KB less per tunnel, as the bench measures).
async fn serve_stream<S>(start: Box<StreamStart<S>>)
where
    S: Service<InboundRequest, Response = InboundDecision> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    if let Some(forwarding) = Box::pin(decide(start)).await {
        forwarding.await;
    }
}

/// Answers the CONNECT as the service decides; the forwarding future of an
/// accepted tunnel.
async fn decide<S>(start: Box<StreamStart<S>>) -> Option<ForwardFuture>
where
    S: Service<InboundRequest, Response = InboundDecision> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let StreamStart {
        shared,
        mut service,
        req,
        mut respond,
        peer,
        peer_addr,
        local_addr,
    } = *start;
    let (parts, body) = req.into_parts();
    let head = match wire::parse_inbound(parts) {
        Ok(head) => head,
        Err(refusal) => {
            respond_status(&mut respond, refusal.status());
            return None;
        }
    };
    let request = InboundRequest {
        peer_identity: peer.clone(),
        peer_addr,
        local_addr,
        authority: head.authority.clone(),
        headers: head.headers.clone(),
    };
    let source_baggage = request.baggage();
    let decided = async {
        std::future::poll_fn(|cx| service.poll_ready(cx))
            .await
            .map_err(Into::into)?;
        service.call(request).await.map_err(Into::into)
    };
    // A client that resets the stream while the service decides (rapid
    // reset) cancels the decision: no upstream connect for nobody.
    let decided = tokio::select! {
        d = decided => d,
        _ = std::future::poll_fn(|cx| respond.poll_reset(cx)) => return None,
    };
    let decision = match decided {
        Ok(d) => d,
        Err(e) => {
            let e: Box<dyn StdError + Send + Sync> = e;
            tracing::debug!(error = %e, "HBONE service failed");
            respond_status(&mut respond, StatusCode::SERVICE_UNAVAILABLE);
            return None;
        }
    };
    let (baggage, forward) = match decision.0 {
        Decision::Refuse(r) => {
            respond_status(&mut respond, r.status());
            return None;
        }
        Decision::Accept { baggage, forward } => (baggage, forward),
    };
    let mut resp = Response::new(());
    if let Some(b) = baggage.as_ref().filter(|b| !b.is_empty())
        && let Ok(v) = HeaderValue::try_from(b.encode())
    {
        resp.headers_mut().insert(BAGGAGE, v);
    }
    let send = respond.send_response(resp, false).ok()?;
    let recorder = shared.telemetry.as_ref().map(|t| {
        let local = shared.credentials.borrow().svid().id().clone();
        let mut labels = ConnectionLabels::new(Reporter::Destination, &peer, &local);
        if let Some(b) = &source_baggage {
            labels = labels.with_source_baggage(b);
        }
        if let Some(b) = &baggage {
            labels = labels.with_destination_baggage(b);
        }
        t.connection_opened(&labels)
    });
    let tunnel = Tunnel::new(TunnelParts {
        send,
        recv: body,
        peer,
        authority: head.authority,
        headers: head.headers,
        side: Reporter::Destination,
        recorder,
        release: hold(&shared.gauges, |g| &g.tunnels),
    });
    Some(forward(tunnel))
}
