//! HBONE figures on loopback, printed (not asserted):
//! 1. bulk throughput of one tunnel vs the same bytes over bare mTLS TCP
//!    (tokio-rustls with the same appnet-identity configs);
//! 2. CONNECTs per second on a warm pooled connection, one at a time and
//!    100 in flight.
//!
//! `cargo bench -p appnet-hbone --bench hbone_bench [-- --mb N]`

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use appnet_hbone::{
    Authority, ConnectRequest, ConnectorConfig, HboneConnector, HbonePeer, HboneServer,
    InboundDecision, InboundRequest, ServerConfig,
};
use appnet_identity::tls::{self, AllowedPeers, Credentials, CredentialsReceiver};
use appnet_identity::{CertificateAuthority, SpiffeId, TrustBundle, TrustDomain};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Pki {
    td: TrustDomain,
    ca: CertificateAuthority,
}

impl Pki {
    fn new() -> Self {
        let td: TrustDomain = "cluster.local".parse().unwrap();
        let now = SystemTime::now() - Duration::from_secs(60);
        let ttl = Duration::from_secs(3600);
        let ca = CertificateAuthority::generate_root(td.clone(), now, 10 * ttl).unwrap();
        Self { td, ca }
    }

    fn id(&self, sa: &str) -> SpiffeId {
        SpiffeId::istio(self.td.clone(), "default", sa).unwrap()
    }

    fn creds(&self, sa: &str) -> CredentialsReceiver {
        let now = SystemTime::now() - Duration::from_secs(60);
        let svid = self
            .ca
            .issue_svid(&self.id(sa), now, Duration::from_secs(3600))
            .unwrap();
        let bundle = TrustBundle::from(self.ca.bundle().unwrap());
        tls::fixed(Credentials::new(svid, bundle).unwrap())
    }
}

async fn sink(mut r: impl tokio::io::AsyncRead + Unpin) -> u64 {
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return n,
            Ok(k) => n += k as u64,
        }
    }
}

async fn hbone_server(pki: &Pki) -> appnet_hbone::ServerHandle {
    let service = tower::service_fn(|req: InboundRequest| async move {
        let decision = match req.authority() {
            Authority::Host { host, .. } if host == "sink.bench" => {
                InboundDecision::accept(|mut t| async move {
                    sink(&mut t).await;
                    let _ = t.shutdown().await;
                })
            }
            _ => InboundDecision::accept(|mut t| async move {
                let _ = t.shutdown().await;
            }),
        };
        Ok::<_, Infallible>(decision)
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    HboneServer::new(
        pki.creds("server"),
        AllowedPeers::AnyTrusted,
        ServerConfig::default(),
        service,
    )
    .unwrap()
    .serve(listener)
    .unwrap()
}

/// Bare mTLS: the same rustls configs, no HTTP/2.
async fn tls_sink_server(pki: &Pki) -> SocketAddr {
    let config = tls::server_config(
        pki.creds("server"),
        AllowedPeers::AnyTrusted,
        vec![b"h2".to_vec()],
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut s) = acceptor.accept(tcp).await {
                    sink(&mut s).await;
                    let _ = s.shutdown().await;
                }
            });
        }
    });
    addr
}

fn rate(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

fn main() {
    let mb: u64 = std::env::args()
        .skip_while(|a| a != "--mb")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let pki = Pki::new();
        let server = hbone_server(&pki).await;
        let tls_addr = tls_sink_server(&pki).await;
        let connector = HboneConnector::new(ConnectorConfig::default()).unwrap();
        let creds = pki.creds("client");
        let peer = HbonePeer::new(server.local_addr(), pki.id("server"));
        let chunk = vec![0x5a_u8; 256 * 1024];
        let total = mb * 1024 * 1024;

        // 1. Bulk throughput.
        let sink_target: Authority = "sink.bench:9".parse().unwrap();
        let mut hbone_best = Duration::MAX;
        let mut tls_best = Duration::MAX;
        for _ in 0..3 {
            let mut t = connector
                .connect(&creds, &peer, ConnectRequest::new(sink_target.clone()))
                .await
                .unwrap();
            let start = Instant::now();
            let mut sent = 0;
            while sent < total {
                t.write_all(&chunk).await.unwrap();
                sent += chunk.len() as u64;
            }
            t.shutdown().await.unwrap();
            let mut rest = Vec::new();
            t.read_to_end(&mut rest).await.unwrap();
            hbone_best = hbone_best.min(start.elapsed());

            let config = tls::client_config(
                creds.clone(),
                AllowedPeers::Exactly(pki.id("server")),
                vec![b"h2".to_vec()],
            )
            .unwrap();
            let tcp = TcpStream::connect(tls_addr).await.unwrap();
            tcp.set_nodelay(true).unwrap();
            let mut s = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
                .await
                .unwrap();
            let start = Instant::now();
            let mut sent = 0;
            while sent < total {
                s.write_all(&chunk).await.unwrap();
                sent += chunk.len() as u64;
            }
            s.shutdown().await.unwrap();
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest).await;
            tls_best = tls_best.min(start.elapsed());
        }
        println!("bulk, one stream, {mb} MiB, best of 3:");
        println!("  HBONE tunnel   {:8.1} MB/s", rate(total, hbone_best));
        println!("  bare mTLS TCP  {:8.1} MB/s", rate(total, tls_best));
        println!(
            "  ratio HBONE / bare: {:.2}",
            tls_best.as_secs_f64() / hbone_best.as_secs_f64()
        );

        // 2. CONNECT rate on the warm pooled connection.
        let target: Authority = "open.bench:9".parse().unwrap();
        let n = 5_000;
        let start = Instant::now();
        for _ in 0..n {
            let t = connector
                .connect(&creds, &peer, ConnectRequest::new(target.clone()))
                .await
                .unwrap();
            drop(t);
        }
        let serial = start.elapsed();
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..100 {
            let connector = connector.clone();
            let creds = creds.clone();
            let peer = peer.clone();
            let target = target.clone();
            tasks.spawn(async move {
                for _ in 0..n / 100 {
                    let t = connector
                        .connect(&creds, &peer, ConnectRequest::new(target.clone()))
                        .await
                        .unwrap();
                    drop(t);
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        let parallel = start.elapsed();
        println!("CONNECT + 200 + reset on a warm pooled connection, {n} streams:");
        println!(
            "  one at a time   {:8.0} /s",
            f64::from(n) / serial.as_secs_f64()
        );
        println!(
            "  100 in flight   {:8.0} /s  ({} pooled connections)",
            f64::from(n) / parallel.as_secs_f64(),
            connector.stats().pooled_connections
        );
        server.drain().await;
    });
}
