//! [`HboneConnector`]: opens HBONE tunnels over pooled mTLS HTTP/2
//! connections, or over any transport (double HBONE).

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use appnet_identity::SpiffeId;
use appnet_identity::tls::{self, AllowedPeers, CredentialsReceiver};
use bytes::Bytes;
use h2::client::{Connection, SendRequest};
use h2::{Ping, PingPong};
use http::StatusCode;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::config::ConnectorConfig;
use crate::error::{HboneError, Refusal};
use crate::keepalive::keepalive;
use crate::metrics::{ConnectionLabels, Reporter, Telemetry};
use crate::pool::{Checkout, ConnectionId, Pool};
use crate::tunnel::{OnDrop, Tunnel, TunnelParts};
use crate::wire::{ALPN_H2, BAGGAGE, Baggage, ConnectRequest};

/// Where a tunnel goes: the peer's HBONE address and the SPIFFE IDs it may
/// present (the TLS handshake fails for any other).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HbonePeer {
    /// The peer's HBONE socket address (port 15008 in a mesh).
    pub addr: SocketAddr,
    /// The identities the peer may prove; never empty.
    identities: Vec<SpiffeId>,
}

impl HbonePeer {
    /// A peer that must prove `identity`.
    pub fn new(addr: SocketAddr, identity: SpiffeId) -> Self {
        Self {
            addr,
            identities: vec![identity],
        }
    }

    /// A peer that may prove any of `identities`; `None` if there are none.
    pub fn any_of(addr: SocketAddr, mut identities: Vec<SpiffeId>) -> Option<Self> {
        if identities.is_empty() {
            return None;
        }
        identities.sort();
        identities.dedup();
        Some(Self { addr, identities })
    }

    /// The identities accepted.
    pub fn identities(&self) -> &[SpiffeId] {
        &self.identities
    }
}

/// What a connector holds now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectorStats {
    /// Pooled connections (dialling, ready or draining).
    pub pooled_connections: usize,
    /// Unpooled connections of [`HboneConnector::connect_over`].
    pub direct_connections: usize,
    /// Open tunnels.
    pub tunnels: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PoolKey {
    local: SpiffeId,
    peer: HbonePeer,
}

type DialOutcome = Option<Result<(), Arc<HboneError>>>;

enum Slot {
    Dialling(watch::Receiver<DialOutcome>),
    Ready {
        send: SendRequest<Bytes>,
        peer: SpiffeId,
        idle: Arc<Notify>,
    },
}

struct State {
    pool: Pool<PoolKey>,
    slots: HashMap<ConnectionId, Slot>,
}

struct Inner {
    config: ConnectorConfig,
    telemetry: Option<Arc<dyn Telemetry>>,
    state: Mutex<State>,
    tunnels: AtomicUsize,
    direct: AtomicUsize,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the pool half-updated in a way
        // that matters more than losing the pool, so carry on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn release(&self, id: ConnectionId) {
        let mut st = self.lock();
        if st.pool.release(id, Instant::now().into_std())
            && let Some(Slot::Ready { idle, .. }) = st.slots.get(&id)
        {
            idle.notify_one();
        }
    }

    fn forget(&self, id: ConnectionId) {
        let mut st = self.lock();
        st.pool.closed(id);
        st.slots.remove(&id);
    }
}

/// One stream slot on a pooled connection, given back on drop.
struct Lease {
    inner: Arc<Inner>,
    id: ConnectionId,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.inner.release(self.id);
    }
}

/// Forgets a connection whose dial did not complete (failed or cancelled).
struct DialGuard {
    inner: Arc<Inner>,
    id: ConnectionId,
    done: bool,
}

impl Drop for DialGuard {
    fn drop(&mut self) {
        if !self.done {
            let mut st = self.inner.lock();
            st.pool.dial_failed(self.id);
            st.slots.remove(&self.id);
        }
    }
}

/// A failed stream open, and whether the request never left (so another
/// connection may safely be tried).
struct OpenError {
    error: HboneError,
    unsent: bool,
}

/// The HBONE client: a pool of mTLS HTTP/2 connections keyed by (local
/// identity, expected peer identities, peer address), many CONNECT streams
/// each up to the peer's `SETTINGS_MAX_CONCURRENT_STREAMS` (capped by
/// [`ConnectorConfig::max_streams_per_connection`]), a new connection when
/// full, idle ones closed after [`ConnectorConfig::idle_timeout`], PING
/// keepalive. A failed connection fails only its own streams.
///
/// Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct HboneConnector {
    inner: Arc<Inner>,
}

impl fmt::Debug for HboneConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HboneConnector")
            .field("config", &self.inner.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

struct Established<IO> {
    send: SendRequest<Bytes>,
    conn: Connection<TlsStream<IO>, Bytes>,
    ping_pong: Option<PingPong>,
    peer: SpiffeId,
}

impl HboneConnector {
    /// A connector with `config`.
    ///
    /// # Errors
    /// [`HboneError::Config`] for an out-of-range setting.
    pub fn new(config: ConnectorConfig) -> Result<Self, HboneError> {
        config.validate()?;
        let pool = Pool::new(config.max_streams_per_connection, config.idle_timeout);
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                telemetry: None,
                state: Mutex::new(State {
                    pool,
                    slots: HashMap::new(),
                }),
                tunnels: AtomicUsize::new(0),
                direct: AtomicUsize::new(0),
            }),
        })
    }

    /// A connector that reports every tunnel to `telemetry` (reporter
    /// `source`).
    ///
    /// # Errors
    /// [`HboneError::Config`] for an out-of-range setting.
    pub fn with_telemetry(
        config: ConnectorConfig,
        telemetry: Arc<dyn Telemetry>,
    ) -> Result<Self, HboneError> {
        let mut me = Self::new(config)?;
        if let Some(inner) = Arc::get_mut(&mut me.inner) {
            inner.telemetry = Some(telemetry);
        }
        Ok(me)
    }

    /// What the connector holds now.
    pub fn stats(&self) -> ConnectorStats {
        ConnectorStats {
            pooled_connections: self.inner.lock().pool.stats().connections,
            direct_connections: self.inner.direct.load(Ordering::Relaxed),
            tunnels: self.inner.tunnels.load(Ordering::Relaxed),
        }
    }

    /// Opens a tunnel to `peer` as the workload whose credentials are
    /// `local`, over a pooled connection.
    ///
    /// # Errors
    /// Connection setup failures ([`HboneError::Connect`],
    /// [`HboneError::Tls`], [`HboneError::ConnectTimeout`], ...), stream
    /// failures ([`HboneError::Http2`]), and the peer's refusal
    /// ([`HboneError::Refused`]: `401` denied, `503` upstream unavailable,
    /// ...).
    pub async fn connect(
        &self,
        local: &CredentialsReceiver,
        peer: &HbonePeer,
        request: ConnectRequest,
    ) -> Result<Tunnel, HboneError> {
        // Reject a bad request before touching the network.
        request.to_http()?;
        let key = PoolKey {
            local: local.borrow().svid().id().clone(),
            peer: peer.clone(),
        };
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (lease, send, peer_id) = self.checkout(&key, local).await?;
            let id = lease.id;
            let opened = self
                .open_stream(
                    send,
                    peer_id,
                    &key.local,
                    &request,
                    OnDrop::new(move || drop(lease)),
                )
                .await;
            match opened {
                Err(e) if (e.unsent || e.error.is_retryable()) && attempts < 3 => {
                    // The connection failed before the request left, or
                    // the peer is going away or refused the stream
                    // unprocessed: no new streams there, try another.
                    self.inner.lock().pool.drain(id);
                }
                other => return other.map_err(|e| e.error),
            }
        }
    }

    /// Opens a tunnel over `io`, on a connection of its own (not pooled):
    /// mTLS with `local`'s credentials, the peer proving one of
    /// `peer_identities`, then HTTP/2 and one CONNECT. The connection closes
    /// when the tunnel does.
    ///
    /// This is the inner hop of double HBONE: `io` is the outer [`Tunnel`]
    /// to the east-west gateway, so the gateway forwards bytes it cannot
    /// read.
    ///
    /// # Errors
    /// As [`connect`](Self::connect), bar the TCP ones.
    pub async fn connect_over<IO>(
        &self,
        io: IO,
        local: &CredentialsReceiver,
        peer_identities: &[SpiffeId],
        request: ConnectRequest,
    ) -> Result<Tunnel, HboneError>
    where
        IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        request.to_http()?;
        let local_id = local.borrow().svid().id().clone();
        let server_name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::UNSPECIFIED).into());
        let established = tokio::time::timeout(
            self.inner.config.connect_timeout,
            establish(&self.inner.config, io, server_name, local, peer_identities),
        )
        .await
        .map_err(|_| HboneError::ConnectTimeout)??;
        let Established {
            send,
            conn,
            ping_pong,
            peer,
        } = established;
        self.inner.direct.fetch_add(1, Ordering::Relaxed);
        let inner = Arc::clone(&self.inner);
        let keepalive_config = self.inner.config.keepalive;
        tokio::spawn(async move {
            let alive = keepalive(ping_pong, keepalive_config);
            tokio::select! {
                _ = conn => {}
                () = alive => {}
            }
            inner.direct.fetch_sub(1, Ordering::Relaxed);
        });
        // `send` is dropped on return: once the tunnel ends, h2 closes the
        // connection, which ends the task above.
        self.open_stream(send, peer, &local_id, &request, OnDrop::new(|| {}))
            .await
            .map_err(|e| e.error)
    }

    /// Double HBONE, for a destination in another network: an outer
    /// tunnel to the east-west `gateway` (pooled; `outer`'s authority is
    /// the destination service's `hostname:port`), and inside it a second
    /// mTLS + HTTP/2 CONNECT (`inner`, typically with
    /// [`ConnectRequest::forwarded_network`]) to the final peer, which must
    /// prove one of `peer_identities`. Returns the inner tunnel: its peer
    /// identity is the final peer's, and the gateway only ever forwards its
    /// ciphertext.
    ///
    /// # Errors
    /// As [`connect`](Self::connect) for either hop.
    pub async fn connect_double(
        &self,
        local: &CredentialsReceiver,
        gateway: &HbonePeer,
        outer: ConnectRequest,
        peer_identities: &[SpiffeId],
        inner: ConnectRequest,
    ) -> Result<Tunnel, HboneError> {
        inner.to_http()?;
        let outer = self.connect(local, gateway, outer).await?;
        self.connect_over(outer, local, peer_identities, inner)
            .await
    }

    /// Takes a stream slot, dialling or waiting for a dial as the pool
    /// decides.
    async fn checkout(
        &self,
        key: &PoolKey,
        local: &CredentialsReceiver,
    ) -> Result<(Lease, SendRequest<Bytes>, SpiffeId), HboneError> {
        loop {
            let (decision, waiting) = {
                let mut st = self.inner.lock();
                let decision = st.pool.checkout(key);
                let waiting = match decision {
                    Checkout::Reuse(id) => match st.slots.get(&id) {
                        Some(Slot::Ready { send, peer, .. }) => {
                            let (send, peer) = (send.clone(), peer.clone());
                            st.pool.set_peer_limit(id, send.current_max_send_streams());
                            drop(st);
                            return Ok((self.lease(id), send, peer));
                        }
                        _ => None,
                    },
                    Checkout::Join(id) => match st.slots.get(&id) {
                        Some(Slot::Dialling(rx)) => Some(rx.clone()),
                        _ => None,
                    },
                    Checkout::Dial(_) => None,
                };
                (decision, waiting)
            };
            match decision {
                Checkout::Dial(id) => return self.dial(key, local, id).await,
                Checkout::Join(id) => {
                    let lease = self.lease(id);
                    let Some(mut rx) = waiting else { continue };
                    let outcome = rx.wait_for(Option::is_some).await.map(|v| v.clone());
                    match outcome {
                        Ok(Some(Err(e))) => return Err(HboneError::Pooled(e)),
                        Ok(_) => {
                            let st = self.inner.lock();
                            if let Some(Slot::Ready { send, peer, .. }) = st.slots.get(&id) {
                                let (send, peer) = (send.clone(), peer.clone());
                                drop(st);
                                return Ok((lease, send, peer));
                            }
                        }
                        // The dialler gave up (cancelled): try afresh.
                        Err(_) => {}
                    }
                }
                Checkout::Reuse(id) => {
                    // A slot without a live connection: forget it.
                    drop(self.lease(id));
                    self.inner.forget(id);
                }
            }
        }
    }

    fn lease(&self, id: ConnectionId) -> Lease {
        Lease {
            inner: Arc::clone(&self.inner),
            id,
        }
    }

    async fn dial(
        &self,
        key: &PoolKey,
        local: &CredentialsReceiver,
        id: ConnectionId,
    ) -> Result<(Lease, SendRequest<Bytes>, SpiffeId), HboneError> {
        let lease = self.lease(id);
        let (tx, rx) = watch::channel(None);
        self.inner.lock().slots.insert(id, Slot::Dialling(rx));
        let mut guard = DialGuard {
            inner: Arc::clone(&self.inner),
            id,
            done: false,
        };
        let config = &self.inner.config;
        let addr = key.peer.addr;
        let setup = async {
            let tcp = TcpStream::connect(addr)
                .await
                .map_err(|source| HboneError::Connect { addr, source })?;
            let _ = tcp.set_nodelay(true);
            // An IP server name: rustls sends no SNI, as HBONE expects.
            let name = ServerName::IpAddress(addr.ip().into());
            establish(config, tcp, name, local, key.peer.identities()).await
        };
        let established = match tokio::time::timeout(config.connect_timeout, setup).await {
            Ok(Ok(e)) => e,
            Ok(Err(e)) => {
                let e = Arc::new(e);
                let _ = tx.send(Some(Err(Arc::clone(&e))));
                return Err(HboneError::Pooled(e));
            }
            Err(_) => {
                let e = Arc::new(HboneError::ConnectTimeout);
                let _ = tx.send(Some(Err(Arc::clone(&e))));
                return Err(HboneError::Pooled(e));
            }
        };
        let Established {
            send,
            conn,
            ping_pong,
            peer,
        } = established;
        let idle = Arc::new(Notify::new());
        {
            let mut st = self.inner.lock();
            st.pool.connected(
                id,
                send.current_max_send_streams(),
                Instant::now().into_std(),
            );
            st.slots.insert(
                id,
                Slot::Ready {
                    send: send.clone(),
                    peer: peer.clone(),
                    idle: Arc::clone(&idle),
                },
            );
        }
        guard.done = true;
        tokio::spawn(drive(
            Arc::downgrade(&self.inner),
            id,
            conn,
            ping_pong,
            config.keepalive,
            idle,
        ));
        let _ = tx.send(Some(Ok(())));
        Ok((lease, send, peer))
    }

    async fn open_stream(
        &self,
        send: SendRequest<Bytes>,
        peer: SpiffeId,
        local: &SpiffeId,
        request: &ConnectRequest,
        release: OnDrop,
    ) -> Result<Tunnel, OpenError> {
        let sent = |error: HboneError| OpenError {
            error,
            unsent: false,
        };
        let unsent = |error: h2::Error| OpenError {
            error: error.into(),
            unsent: true,
        };
        let req = request.to_http().map_err(|e| sent(e.into()))?;
        let mut send = send.ready().await.map_err(unsent)?;
        let (response, stream) = send.send_request(req, false).map_err(unsent)?;
        let response = response.await.map_err(|e| sent(e.into()))?;
        let (parts, body) = response.into_parts();
        if parts.status != StatusCode::OK {
            return Err(sent(HboneError::Refused(Refusal::from_status(
                parts.status,
            ))));
        }
        let recorder = self.inner.telemetry.as_ref().map(|t| {
            let mut labels = ConnectionLabels::new(Reporter::Source, local, &peer);
            if let Some(b) = request.source_baggage() {
                labels = labels.with_source_baggage(b);
            }
            let dest: Option<Baggage> = parts
                .headers
                .get(BAGGAGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            if let Some(b) = &dest {
                labels = labels.with_destination_baggage(b);
            }
            t.connection_opened(&labels)
        });
        self.inner.tunnels.fetch_add(1, Ordering::Relaxed);
        let inner = Arc::clone(&self.inner);
        Ok(Tunnel::new(TunnelParts {
            send: stream,
            recv: body,
            peer,
            authority: request.authority().clone(),
            headers: parts.headers,
            side: Reporter::Source,
            recorder,
            release: OnDrop::new(move || {
                inner.tunnels.fetch_sub(1, Ordering::Relaxed);
                drop(release);
            }),
        }))
    }
}

/// TLS (ALPN `h2`, the peer proving one of `peers`), then the HTTP/2
/// handshake and one PING round trip, after which the peer's SETTINGS
/// (its stream limit) are known.
async fn establish<IO>(
    config: &ConnectorConfig,
    io: IO,
    name: ServerName<'static>,
    local: &CredentialsReceiver,
    peers: &[SpiffeId],
) -> Result<Established<IO>, HboneError>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let tls_config = tls::client_config(
        local.clone(),
        AllowedPeers::AnyOf(peers.to_vec()),
        vec![ALPN_H2.to_vec()],
    )?;
    let tls = TlsConnector::from(Arc::new(tls_config))
        .connect(name, io)
        .await
        .map_err(HboneError::Tls)?;
    let (_, session) = tls.get_ref();
    if session.alpn_protocol() != Some(ALPN_H2) {
        return Err(HboneError::NotH2);
    }
    let peer = tls::peer_identity(session).ok_or(HboneError::NoPeerIdentity)?;
    let (send, mut conn) = config.h2_builder().handshake(tls).await?;
    let mut ping_pong = conn.ping_pong();
    if let Some(pp) = ping_pong.as_mut() {
        // The server's SETTINGS come before its PONG.
        tokio::select! {
            ended = &mut conn => {
                ended?;
                return Err(HboneError::Http2(h2::Error::from(h2::Reason::CANCEL)));
            }
            pong = pp.ping(Ping::opaque()) => { pong?; }
        }
    }
    Ok(Established {
        send,
        conn,
        ping_pong,
        peer,
    })
}

/// Runs one pooled connection until it fails, the keepalive times out, or
/// the pool evicts it as idle; then forgets it.
async fn drive<IO>(
    inner: Weak<Inner>,
    id: ConnectionId,
    conn: Connection<TlsStream<IO>, Bytes>,
    ping_pong: Option<PingPong>,
    keepalive_config: Option<crate::config::Keepalive>,
    idle: Arc<Notify>,
) where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let alive = keepalive(ping_pong, keepalive_config);
    let evict = evict_when_idle(inner.clone(), id, idle);
    tokio::select! {
        ended = conn => {
            if let Err(e) = ended {
                tracing::debug!(error = %e, "HBONE connection failed");
            }
        }
        () = alive => tracing::debug!("HBONE keepalive timed out"),
        () = evict => {}
    }
    if let Some(inner) = inner.upgrade() {
        inner.forget(id);
    }
}

async fn evict_when_idle(inner: Weak<Inner>, id: ConnectionId, idle: Arc<Notify>) {
    loop {
        let deadline = {
            let Some(inner) = inner.upgrade() else {
                return std::future::pending().await;
            };
            let st = inner.lock();
            if !st.pool.contains(id) {
                return;
            }
            st.pool.idle_deadline(id)
        };
        let Some(deadline) = deadline else {
            idle.notified().await;
            continue;
        };
        tokio::select! {
            () = tokio::time::sleep_until(Instant::from_std(deadline)) => {}
            () = idle.notified() => continue,
        }
        let Some(inner) = inner.upgrade() else {
            return std::future::pending().await;
        };
        let mut st = inner.lock();
        if st.pool.evict_if_idle(id, Instant::now().into_std()) {
            st.slots.remove(&id);
            return;
        }
    }
}
