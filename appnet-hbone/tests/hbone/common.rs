//! Shared test fixtures: CA-minted credentials, a test service with a few
//! behaviours chosen by the CONNECT authority, and small helpers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use appnet_hbone::{
    Authority, Baggage, HboneConnector, HbonePeer, HboneServer, InboundDecision, InboundRequest,
    ProxyHeader, ServerConfig, ServerHandle, TraceParent, Tunnel,
};
use appnet_identity::tls::{self, AllowedPeers, Credentials, CredentialsReceiver};
use appnet_identity::{CertificateAuthority, SpiffeBundle, SpiffeId, TrustBundle, TrustDomain};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const TTL: Duration = Duration::from_secs(3600);

/// A trust domain with a root and one cluster intermediate.
pub(crate) struct Domain {
    pub(crate) td: TrustDomain,
    ca: CertificateAuthority,
}

impl Domain {
    pub(crate) fn new(name: &str) -> Self {
        let td: TrustDomain = name.parse().unwrap();
        let now = SystemTime::now() - Duration::from_secs(60);
        let root = CertificateAuthority::generate_root(td.clone(), now, 100 * TTL).unwrap();
        let ca = root.issue_intermediate("c1", now, 50 * TTL).unwrap();
        Self { td, ca }
    }

    /// Writes the issuing CA (chain and key) to `dir`, for [`Self::load`]
    /// in another process.
    pub(crate) fn save(&self, dir: &std::path::Path) {
        std::fs::write(dir.join("ca.pem"), self.ca.chain_pem()).unwrap();
        std::fs::write(dir.join("ca.key"), self.ca.key_pem()).unwrap();
    }

    /// The domain [`Self::save`] wrote.
    pub(crate) fn load(name: &str, dir: &std::path::Path) -> Self {
        let td: TrustDomain = name.parse().unwrap();
        let chain = std::fs::read_to_string(dir.join("ca.pem")).unwrap();
        let key = std::fs::read_to_string(dir.join("ca.key")).unwrap();
        let ca = CertificateAuthority::from_pem(td.clone(), &chain, &key).unwrap();
        Self { td, ca }
    }

    pub(crate) fn id(&self, sa: &str) -> SpiffeId {
        SpiffeId::istio(self.td.clone(), "default", sa).unwrap()
    }

    pub(crate) fn bundle(&self) -> SpiffeBundle {
        self.ca.bundle().unwrap()
    }

    /// An SVID for `sa` (chain leaf → intermediate → root, and its key).
    pub(crate) fn svid(&self, sa: &str) -> appnet_identity::Svid {
        let now = SystemTime::now() - Duration::from_secs(60);
        self.ca.issue_svid(&self.id(sa), now, TTL).unwrap()
    }

    /// The root certificate, PEM.
    pub(crate) fn root_pem(&self) -> String {
        appnet_identity::pem_certs(std::slice::from_ref(self.ca.root()))
    }

    /// Credentials for `sa`, trusting `bundle`.
    pub(crate) fn creds_with(&self, sa: &str, bundle: &TrustBundle) -> CredentialsReceiver {
        let now = SystemTime::now() - Duration::from_secs(60);
        let svid = self.ca.issue_svid(&self.id(sa), now, TTL).unwrap();
        tls::fixed(Credentials::new(svid, bundle.clone()).unwrap())
    }

    /// Credentials for `sa`, trusting only this domain.
    pub(crate) fn creds(&self, sa: &str) -> CredentialsReceiver {
        self.creds_with(sa, &TrustBundle::from(self.bundle()))
    }
}

/// What the test service saw of a request.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) peer: SpiffeId,
    pub(crate) authority: Authority,
    pub(crate) baggage: Option<Baggage>,
    pub(crate) forwarded_for: Option<SocketAddr>,
    pub(crate) traceparent: Option<TraceParent>,
    pub(crate) network: Option<String>,
}

/// Authorities that select a behaviour (never dialled: the names are
/// labels for the test service).
pub(crate) fn echo_target() -> Authority {
    "echo.test:80".parse().unwrap()
}
pub(crate) fn handoff_target() -> Authority {
    "handoff.test:80".parse().unwrap()
}
pub(crate) fn deny_target() -> Authority {
    "deny.test:80".parse().unwrap()
}
/// Header asking the forwarding behaviour for a PROXY v2 header.
pub(crate) const SANDWICH: &str = "x-test-sandwich";

/// The test server's side channels.
pub(crate) struct Harness {
    pub(crate) handle: ServerHandle,
    pub(crate) seen: mpsc::UnboundedReceiver<Seen>,
    pub(crate) tunnels: mpsc::UnboundedReceiver<Tunnel>,
}

impl Harness {
    pub(crate) fn addr(&self) -> SocketAddr {
        self.handle.local_addr()
    }
}

/// Echoes until EOF, then half-closes.
pub(crate) async fn echo(mut t: Tunnel) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match t.read(&mut buf).await {
            Ok(0) => {
                let _ = t.shutdown().await;
                return;
            }
            Ok(n) => {
                if t.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

/// The test service: `echo.test` echoes, `handoff.test` hands the tunnel to
/// the test, `deny.test` is refused (401), an `ip:port` is forwarded to that
/// loopback address (503 if it cannot be reached), with a PROXY v2 header
/// first when the request carries [`SANDWICH`].
pub(crate) async fn start_server(
    creds: CredentialsReceiver,
    allowed: AllowedPeers,
    config: ServerConfig,
    telemetry: Option<Arc<dyn appnet_hbone::Telemetry>>,
) -> Harness {
    let (seen_tx, seen) = mpsc::unbounded_channel();
    let (tunnel_tx, tunnels) = mpsc::unbounded_channel();
    let service = tower::service_fn(move |req: InboundRequest| {
        let seen_tx = seen_tx.clone();
        let tunnel_tx = tunnel_tx.clone();
        async move {
            let _ = seen_tx.send(Seen {
                peer: req.peer_identity().clone(),
                authority: req.authority().clone(),
                baggage: req.baggage(),
                forwarded_for: req.forwarded_for(),
                traceparent: req.traceparent(),
                network: req.forwarded_network().map(str::to_owned),
            });
            let dest_baggage = Baggage {
                namespace: Some("server-ns".into()),
                workload_kind: Some("deployment".into()),
                workload_name: Some("server-v1".into()),
                service_name: Some("server".into()),
                ..Baggage::default()
            };
            let decision = match req.authority() {
                Authority::Host { host, .. } if host == "echo.test" => {
                    InboundDecision::accept(echo).with_baggage(dest_baggage)
                }
                Authority::Host { host, .. } if host == "handoff.test" => {
                    InboundDecision::accept(move |t| async move {
                        let _ = tunnel_tx.send(t);
                    })
                }
                Authority::Host { .. } => InboundDecision::deny(),
                Authority::Addr(target) => {
                    let target = *target;
                    match TcpStream::connect(target).await {
                        Err(_) => InboundDecision::upstream_unavailable(),
                        Ok(mut upstream) => {
                            let sandwich = req.headers().contains_key(SANDWICH).then(|| {
                                let src = req.forwarded_for().unwrap_or(req.peer_addr());
                                ProxyHeader::new(src, target)
                                    .with_peer_identity(req.peer_identity())
                            });
                            InboundDecision::accept(move |mut t| async move {
                                if let Some(h) = sandwich
                                    && h.write_to(&mut upstream).await.is_err()
                                {
                                    return;
                                }
                                let _ = tokio::io::copy_bidirectional(&mut t, &mut upstream).await;
                            })
                        }
                    }
                }
            };
            Ok::<_, Infallible>(decision)
        }
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut server = HboneServer::new(creds, allowed, config, service).unwrap();
    if let Some(t) = telemetry {
        server = server.with_telemetry(t);
    }
    let handle = server.serve(listener).unwrap();
    Harness {
        handle,
        seen,
        tunnels,
    }
}

pub(crate) fn peer(addr: SocketAddr, id: SpiffeId) -> HbonePeer {
    HbonePeer::new(addr, id)
}

/// Yields to the runtime (which polls its I/O driver in between) until
/// `cond` holds; panics after a generous bound.
pub(crate) async fn settle(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..200_000 {
        if cond() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("never settled: {what}");
}

/// Waits until the connector and the server hold nothing.
pub(crate) async fn all_closed(connector: &HboneConnector, handle: &ServerHandle) {
    settle("client tunnels closed", || connector.stats().tunnels == 0).await;
    settle("server tunnels closed", || handle.stats().tunnels == 0).await;
}

/// [`start_server`] with `d`'s `server` identity, trusting any peer of the
/// domain, default settings, no telemetry.
pub(crate) async fn default_server(d: &Domain) -> Harness {
    start_server(
        d.creds("server"),
        AllowedPeers::AnyTrusted,
        ServerConfig::default(),
        None,
    )
    .await
}

/// A tunnel from `d`'s `client` identity to the `server` identity at
/// `addr`, for `target` (one of the test service's behaviours).
pub(crate) async fn connect_to(
    connector: &HboneConnector,
    d: &Domain,
    addr: SocketAddr,
    target: Authority,
) -> Tunnel {
    connector
        .connect(
            &d.creds("client"),
            &peer(addr, d.id("server")),
            appnet_hbone::ConnectRequest::new(target),
        )
        .await
        .unwrap()
}

/// Writes `msg` to an echoing tunnel and checks it comes back.
pub(crate) async fn round_trip(t: &mut Tunnel, msg: &[u8]) {
    t.write_all(msg).await.unwrap();
    let mut back = vec![0u8; msg.len()];
    t.read_exact(&mut back).await.unwrap();
    assert_eq!(back, msg);
}

/// After a peer's connection died and every tunnel was dropped: the pool
/// held one live connection (to `healthy`), everything closes, and the only
/// tasks left are the healthy server's accept loop and connection task and
/// the client's driver of that connection.
pub(crate) async fn only_the_healthy_connection_left(
    connector: &HboneConnector,
    healthy: &ServerHandle,
) {
    all_closed(connector, healthy).await;
    assert_eq!(connector.stats().pooled_connections, 1);
    let tasks = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    settle("no leaked tasks", || tasks() == 3).await;
}

/// A deterministic byte pattern.
pub(crate) fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}
