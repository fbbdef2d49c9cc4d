//! What every figure shares: arguments, the PKI, the bench servers (an
//! HBONE server whose behaviour is picked by the CONNECT authority, raw TCP
//! and mTLS sinks and echoes), RSS and percentiles.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use appnet_hbone::{
    Authority, ConnectorConfig, FlowControl, HboneServer, InboundDecision, InboundRequest,
    ServerConfig, ServerHandle, Tunnel,
};
use appnet_identity::tls::{self, AllowedPeers, Credentials, CredentialsReceiver};
use appnet_identity::{CertificateAuthority, PrivateKeyDer, SpiffeId, TrustBundle, TrustDomain};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Command line: `--mb N`, `--tunnels N`, `--samples N`, `--quick`,
/// `--only 1,2`.
#[derive(Debug, Clone)]
pub(crate) struct Args {
    /// MiB moved per bulk transfer.
    pub(crate) mb: u64,
    /// Idle tunnels held open for the memory figure.
    pub(crate) tunnels: usize,
    /// Round trips per latency figure (new-tunnel ones use a tenth).
    pub(crate) samples: usize,
    /// Smoke run: tiny sizes, every code path once.
    pub(crate) quick: bool,
    /// `--only 1,4`: just these figures.
    only: Option<Vec<u32>>,
}

impl Args {
    pub(crate) fn parse(argv: &[String]) -> Self {
        let value = |flag: &str| {
            argv.iter()
                .skip_while(|a| *a != flag)
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        };
        // `cargo bench` passes `--bench`; `cargo test --benches` does not, and
        // gets the smoke run.
        let quick = argv.iter().any(|a| a == "--quick") || !argv.iter().any(|a| a == "--bench");
        let (mb, tunnels, samples) = if quick {
            (8, 200, 200)
        } else {
            (256, 10_000, 10_000)
        };
        Self {
            mb: value("--mb").unwrap_or(mb),
            tunnels: value("--tunnels").map_or(tunnels, |v| v as usize),
            samples: value("--samples").map_or(samples, |v| v as usize).max(10),
            quick,
            only: argv
                .iter()
                .skip_while(|a| *a != "--only")
                .nth(1)
                .map(|v| v.split(',').filter_map(|f| f.parse().ok()).collect()),
        }
    }

    /// Whether figure `n` runs.
    pub(crate) fn runs(&self, n: u32) -> bool {
        self.only.as_ref().is_none_or(|o| o.contains(&n))
    }
}

/// A root CA for the whole run; children of the memory figure load it from
/// PEM files.
pub(crate) struct Pki {
    td: TrustDomain,
    ca: CertificateAuthority,
}

const TTL: Duration = Duration::from_secs(4 * 3600);

impl Pki {
    pub(crate) fn new() -> Self {
        let td: TrustDomain = "cluster.local".parse().unwrap();
        let now = SystemTime::now() - Duration::from_secs(60);
        let ca = CertificateAuthority::generate_root(td.clone(), now, 10 * TTL).unwrap();
        Self { td, ca }
    }

    pub(crate) fn save(&self, dir: &Path) {
        std::fs::write(dir.join("ca.pem"), self.ca.chain_pem()).unwrap();
        std::fs::write(dir.join("ca.key"), self.ca.key_pem()).unwrap();
    }

    pub(crate) fn load(dir: &Path) -> Self {
        let td: TrustDomain = "cluster.local".parse().unwrap();
        let chain = std::fs::read_to_string(dir.join("ca.pem")).unwrap();
        let key = std::fs::read_to_string(dir.join("ca.key")).unwrap();
        let ca = CertificateAuthority::from_pem(td.clone(), &chain, &key).unwrap();
        Self { td, ca }
    }

    pub(crate) fn id(&self, sa: &str) -> SpiffeId {
        SpiffeId::istio(self.td.clone(), "default", sa).unwrap()
    }

    pub(crate) fn creds(&self, sa: &str) -> CredentialsReceiver {
        let now = SystemTime::now() - Duration::from_secs(60);
        let svid = self.ca.issue_svid(&self.id(sa), now, TTL).unwrap();
        let bundle = TrustBundle::from(self.ca.bundle().unwrap());
        tls::fixed(Credentials::new(svid, bundle).unwrap())
    }

    /// `sa`'s chain, PKCS#8/SEC1 key and the root, as PEM files in `dir`
    /// (for Envoy).
    pub(crate) fn write_identity(&self, sa: &str, dir: &Path) -> [std::path::PathBuf; 3] {
        let now = SystemTime::now() - Duration::from_secs(60);
        let svid = self.ca.issue_svid(&self.id(sa), now, TTL).unwrap();
        let (tag, der) = match svid.key() {
            PrivateKeyDer::Pkcs8(k) => ("PRIVATE KEY", k.secret_pkcs8_der().to_vec()),
            PrivateKeyDer::Sec1(k) => ("EC PRIVATE KEY", k.secret_sec1_der().to_vec()),
            PrivateKeyDer::Pkcs1(k) => ("RSA PRIVATE KEY", k.secret_pkcs1_der().to_vec()),
            other => panic!("unexpected key form {other:?}"),
        };
        let paths = [
            dir.join(format!("{sa}-chain.pem")),
            dir.join(format!("{sa}-key.pem")),
            dir.join("root.pem"),
        ];
        std::fs::write(&paths[0], svid.chain_pem()).unwrap();
        std::fs::write(&paths[1], pem::encode(&pem::Pem::new(tag, der))).unwrap();
        std::fs::write(
            &paths[2],
            appnet_identity::pem_certs(std::slice::from_ref(self.ca.root())),
        )
        .unwrap();
        paths
    }
}

/// A fresh directory under the system temp dir, removed on drop.
pub(crate) struct TempDir(pub(crate) std::path::PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "appnet-hbone-bench-{tag}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Flow control on both sides of a bench pair.
pub(crate) fn configs(flow: FlowControl) -> (ConnectorConfig, ServerConfig) {
    let mut c = ConnectorConfig::default();
    c.flow_control = flow;
    let mut s = ServerConfig::default();
    s.flow_control = flow;
    // The memory figure opens one connection per tunnel too.
    s.max_connections = 100_000;
    (c, s)
}

pub(crate) const MIB: u32 = 1024 * 1024;

pub(crate) fn flow(stream: u32, connection: u32, frame: u32) -> FlowControl {
    let mut f = FlowControl::default();
    f.stream_window = stream;
    f.connection_window = connection;
    f.max_frame_size = frame;
    f
}

pub(crate) fn describe(f: &FlowControl) -> String {
    let size = |b: u32| {
        if b >= MIB && b.is_multiple_of(MIB) {
            format!("{}M", b / MIB)
        } else {
            format!("{}K", b / 1024)
        }
    };
    format!(
        "stream {} / conn {} / frame {}",
        size(f.stream_window),
        size(f.connection_window),
        size(f.max_frame_size)
    )
}

/// Reads to EOF, then half-closes (so the writer can time the round).
pub(crate) async fn sink<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) -> u64 {
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        match s.read(&mut buf).await {
            Ok(0) => break,
            Ok(k) => n += k as u64,
            Err(_) => return n,
        }
    }
    let _ = s.shutdown().await;
    n
}

/// Echoes until EOF (a 16 KiB buffer: latency only moves a byte).
pub(crate) async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if s.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = s.shutdown().await;
}

/// Waits for EOF holding no buffer of its own (the memory figure's
/// handler: what an idle tunnel costs, not what the application keeps).
async fn idle(mut t: Tunnel) {
    let mut small = [0u8; 64];
    while let Ok(n) = t.read(&mut small).await {
        if n == 0 {
            break;
        }
    }
    let _ = t.shutdown().await;
}

/// Copy buffer of the in-process proxies, each way (`tokio` copy).
pub(crate) const PROXY_BUF: usize = 128 * 1024;

/// How a proxy moves bytes between its TCP side and the tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Forward {
    /// `appnet_hbone::copy_bidirectional`: no buffer in the middle.
    Splice,
    /// `tokio::io::copy_bidirectional_with_sizes`, [`PROXY_BUF`] each way,
    /// through the tunnel's `AsyncRead`/`AsyncWrite`.
    TokioCopy,
}

/// Moves bytes both ways between `tcp` and `tunnel` until both ends finish.
pub(crate) async fn forward(how: Forward, tcp: &mut TcpStream, tunnel: &mut Tunnel) {
    let _ = match how {
        Forward::Splice => appnet_hbone::copy_bidirectional(tcp, tunnel).await,
        Forward::TokioCopy => {
            tokio::io::copy_bidirectional_with_sizes(tcp, tunnel, PROXY_BUF, PROXY_BUF).await
        }
    };
}

/// The bench's HBONE service, by authority: `sink.bench` reads to EOF,
/// `echo.bench` echoes, `idle.bench` waits for EOF, `stall.bench` never
/// reads until `release` turns true, `open.bench` closes at once, and an
/// `ip:port` is forwarded there over TCP (the node-proxy path).
pub(crate) async fn start_hbone(
    creds: CredentialsReceiver,
    config: ServerConfig,
    release: watch::Receiver<bool>,
    how: Forward,
) -> ServerHandle {
    let service = tower::service_fn(move |req: InboundRequest| {
        let mut release = release.clone();
        async move {
            let host = match req.authority() {
                Authority::Host { host, .. } => host.clone(),
                Authority::Addr(target) => {
                    let target = *target;
                    let Ok(mut upstream) = TcpStream::connect(target).await else {
                        return Ok(InboundDecision::upstream_unavailable());
                    };
                    let _ = upstream.set_nodelay(true);
                    return Ok::<_, Infallible>(InboundDecision::accept(move |mut t| async move {
                        forward(how, &mut upstream, &mut t).await;
                    }));
                }
            };
            let decision = match host.as_str() {
                "sink.bench" => InboundDecision::accept(|t| async move {
                    sink(t).await;
                }),
                "echo.bench" => InboundDecision::accept(echo),
                "idle.bench" => InboundDecision::accept(idle),
                "stall.bench" => InboundDecision::accept(move |t| async move {
                    let _ = release.wait_for(|r| *r).await;
                    drop(t);
                }),
                "open.bench" => InboundDecision::accept(|mut t| async move {
                    let _ = t.shutdown().await;
                }),
                _ => InboundDecision::deny(),
            };
            Ok(decision)
        }
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    HboneServer::new(creds, AllowedPeers::AnyTrusted, config, service)
        .unwrap()
        .serve(listener)
        .unwrap()
}

/// A TCP listener whose connections each run `f`.
pub(crate) async fn tcp_server<F, Fut>(f: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            tokio::spawn(f(tcp));
        }
    });
    addr
}

/// Bare mutual TLS: the same rustls configs as HBONE, no HTTP/2; each
/// connection runs `f`.
pub(crate) async fn tls_server<F, Fut>(pki: &Pki, f: F) -> SocketAddr
where
    F: Fn(tokio_rustls::server::TlsStream<TcpStream>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let config = tls::server_config(
        pki.creds("server"),
        AllowedPeers::AnyTrusted,
        vec![b"h2".to_vec()],
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let f = Arc::new(f);
    tcp_server(move |tcp| {
        let acceptor = acceptor.clone();
        let f = Arc::clone(&f);
        async move {
            if let Ok(s) = acceptor.accept(tcp).await {
                f(s).await;
            }
        }
    })
    .await
}

pub(crate) async fn tls_connect(
    pki: &Pki,
    creds: &CredentialsReceiver,
    addr: SocketAddr,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let config = tls::client_config(
        creds.clone(),
        AllowedPeers::Exactly(pki.id("server")),
        vec![b"h2".to_vec()],
    )
    .unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap()
}

pub(crate) async fn tcp_connect(addr: SocketAddr) -> TcpStream {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    tcp
}

/// Writes `total` bytes in 256 KiB writes, half-closes, and waits for the
/// far end's EOF: the time from first write to the sink having read it all.
pub(crate) async fn push<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, total: u64) -> Duration {
    let chunk = vec![0x5a_u8; 256 * 1024];
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < total {
        let n = (total - sent).min(chunk.len() as u64) as usize;
        s.write_all(&chunk[..n]).await.unwrap();
        sent += n as u64;
    }
    s.shutdown().await.unwrap();
    let mut rest = [0u8; 64];
    while let Ok(n) = s.read(&mut rest).await {
        if n == 0 {
            break;
        }
    }
    start.elapsed()
}

/// MB/s (10^6 bytes).
pub(crate) fn rate(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

/// VmRSS of a process, KiB.
pub(crate) fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Sorted samples' p50 and p99.
pub(crate) fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort_unstable();
    let at = |p: usize| samples[(samples.len() * p / 100).min(samples.len() - 1)];
    (at(50), at(99))
}

pub(crate) fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Whether `have` meets a goal of at least `want`, for the tables.
pub(crate) fn verdict(have: f64, want: f64) -> &'static str {
    if have >= want { "met" } else { "NOT met" }
}

/// CPU time the threads of process `pid` have run, in ns (from each
/// thread's `/proc/<pid>/task/<tid>/schedstat`; threads that have exited
/// are not counted, so measure across spans where the threads live).
pub(crate) fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// CPU time of this process and `others`, ns.
pub(crate) fn cpu_of(others: &[u32]) -> u64 {
    cpu_ns(std::process::id()) + others.iter().map(|&p| cpu_ns(p)).sum::<u64>()
}

/// Cores, CPU model and load average, for the record.
pub(crate) fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!(
        "machine: {cores} cores, CPU {model:?}, load average {}",
        load.join(" ")
    )
}
