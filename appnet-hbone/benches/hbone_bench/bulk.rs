//! Figure 1: one-stream bulk throughput, and the flow-control settings.
//!
//! Paths, each moving the same bytes from a writer to a sink in this
//! process (256 KiB writes, timed until the sink has read everything):
//! raw TCP; bare mutual TLS (rustls, the HBONE TLS configs, no HTTP/2); an
//! HBONE tunnel written directly (client and server in this process's
//! runtime); our proxy pair (TCP → HBONE client proxy → HBONE → server
//! proxy → TCP, each proxy one thread, as a node proxy would carry it); the
//! Envoy pair on the same path.
//!
//! The paths take turns, round after round, so a burst of load from
//! another process on this shared machine hits one round of every path
//! rather than all rounds of one. Each path reports its best and median
//! rate and the CPU time every process on the path spent per GB (this
//! process's threads, writer and sink included, plus the Envoys), which
//! load from elsewhere disturbs far less than wall time.

use std::net::SocketAddr;
use std::time::Duration;

use appnet_hbone::{ConnectRequest, FlowControl, HboneConnector, HbonePeer, ServerHandle};
use appnet_identity::tls::CredentialsReceiver;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

use crate::common::{
    self, Args, Forward, MIB, Pki, configs, cpu_of, describe, flow, push, rate, tcp_connect,
    tls_connect, verdict,
};
use crate::envoy;

/// A proxy on a thread of its own with a single-threaded runtime, like an
/// Envoy with `--concurrency 1`.
struct ProxyThread {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ProxyThread {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs `start` on a new single-threaded runtime; returns what it reports
/// once listening. What it keeps lives until the proxy is dropped, then the
/// runtime and its tasks end.
fn proxy_thread<T, F, Fut>(start: F) -> (ProxyThread, T)
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = (T, Box<dyn std::any::Any>)>,
{
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (report, keep) = start().await;
            let _ = ready_tx.send(report);
            let _ = stop_rx.await;
            drop(keep);
        });
    });
    let report = ready_rx.recv().unwrap();
    (
        ProxyThread {
            stop: Some(stop_tx),
            thread: Some(thread),
        },
        report,
    )
}

/// Our node-proxy pair in front of `sink`: returns the client proxy's
/// listening address.
struct OurPair {
    _client: ProxyThread,
    _server: ProxyThread,
    entry: SocketAddr,
}

fn our_pair(pki: &Pki, flow_control: FlowControl, sink: SocketAddr, how: Forward) -> OurPair {
    let (cc, sc) = configs(flow_control);
    let server_creds = pki.creds("server");
    let (server, server_addr) = proxy_thread(move || async move {
        let (release, rx) = watch::channel(false);
        let handle = common::start_hbone(server_creds, sc, rx, how).await;
        let addr = handle.local_addr();
        let keep: Box<dyn std::any::Any> = Box::new((release, handle));
        (addr, keep)
    });
    let creds = pki.creds("client");
    let peer = HbonePeer::new(server_addr, pki.id("server"));
    let (client, entry) = proxy_thread(move || async move {
        let connector = HboneConnector::new(cc).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Ends with the thread's runtime.
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let _ = tcp.set_nodelay(true);
                let connector = connector.clone();
                let creds = creds.clone();
                let peer = peer.clone();
                tokio::spawn(async move {
                    let request = ConnectRequest::new(sink.into());
                    let Ok(mut tunnel) = connector.connect(&creds, &peer, request).await else {
                        return;
                    };
                    common::forward(how, &mut tcp, &mut tunnel).await;
                });
            }
        });
        let keep: Box<dyn std::any::Any> = Box::new(());
        (addr, keep)
    });
    OurPair {
        _client: client,
        _server: server,
        entry,
    }
}

/// One way from the writer to a sink.
enum Path {
    Tcp(SocketAddr),
    Tls(SocketAddr),
    /// An HBONE tunnel written directly; the server lives as long as this.
    Direct {
        connector: HboneConnector,
        peer: HbonePeer,
        _server: ServerHandle,
    },
    /// The entry of a proxy pair, and the other processes it runs in.
    Proxy {
        entry: SocketAddr,
        pids: Vec<u32>,
    },
}

impl Path {
    async fn direct(pki: &Pki, flow_control: FlowControl) -> Self {
        let (cc, sc) = configs(flow_control);
        // The sink never waits for a release.
        let (_, rx) = watch::channel(false);
        let server = common::start_hbone(pki.creds("server"), sc, rx, Forward::Splice).await;
        Self::Direct {
            connector: HboneConnector::new(cc).unwrap(),
            peer: HbonePeer::new(server.local_addr(), pki.id("server")),
            _server: server,
        }
    }

    /// One transfer: its wall time and the CPU time spent on the path.
    async fn once(&self, pki: &Pki, creds: &CredentialsReceiver, total: u64) -> (Duration, u64) {
        let pids: &[u32] = match self {
            Self::Proxy { pids, .. } => pids,
            _ => &[],
        };
        let before = cpu_of(pids);
        let took = match self {
            Self::Tcp(addr) => push(tcp_connect(*addr).await, total).await,
            Self::Tls(addr) => push(tls_connect(pki, creds, *addr).await, total).await,
            Self::Direct {
                connector, peer, ..
            } => {
                let request = ConnectRequest::new("sink.bench:9".parse().unwrap());
                let t = connector.connect(creds, peer, request).await.unwrap();
                push(t, total).await
            }
            Self::Proxy { entry, .. } => push(tcp_connect(*entry).await, total).await,
        };
        (took, cpu_of(pids).saturating_sub(before))
    }
}

/// A path's rate (MB/s, best and median round) and CPU seconds per GB
/// (median round).
struct Figure {
    best: f64,
    median: f64,
    cpu: f64,
}

/// Runs every path once per round, in turn.
async fn measure(pki: &Pki, paths: &[&Path], rounds: usize, total: u64) -> Vec<Figure> {
    let creds = pki.creds("client");
    let mut samples = vec![(Vec::new(), Vec::new()); paths.len()];
    for _ in 0..rounds {
        for (path, (times, cpu)) in paths.iter().zip(&mut samples) {
            let (t, c) = path.once(pki, &creds, total).await;
            times.push(t);
            cpu.push(c);
        }
    }
    samples
        .into_iter()
        .map(|(mut times, mut cpu)| {
            times.sort_unstable();
            cpu.sort_unstable();
            Figure {
                best: rate(total, times[0]),
                median: rate(total, times[times.len() / 2]),
                cpu: cpu[cpu.len() / 2] as f64 / total as f64,
            }
        })
        .collect()
}

fn row(name: &str, f: &Figure) {
    println!("  {name:<36} {:9.1} {:9.1} {:9.2}", f.best, f.median, f.cpu);
}

/// Figure 1, printed.
pub(crate) async fn run(pki: &Pki, args: &Args) {
    let total = args.mb * 1024 * 1024;
    let rounds = if args.quick { 2 } else { 5 };
    let tcp_sink = common::tcp_server(|s| async move {
        common::sink(s).await;
    })
    .await;
    let tls_sink = common::tls_server(pki, |s| async move {
        common::sink(s).await;
    })
    .await;
    let istio = FlowControl::default();
    let pair = our_pair(pki, istio, tcp_sink, Forward::Splice);
    let tokio_pair = our_pair(pki, istio, tcp_sink, Forward::TokioCopy);
    let envoy_pair = envoy::start(pki, tcp_sink);
    let mut paths = vec![
        Path::Tcp(tcp_sink),
        Path::Tls(tls_sink),
        Path::direct(pki, istio).await,
        Path::Proxy {
            entry: pair.entry,
            pids: vec![],
        },
        Path::Proxy {
            entry: tokio_pair.entry,
            pids: vec![],
        },
    ];
    if let Some(e) = &envoy_pair {
        paths.push(Path::Proxy {
            entry: e.entry,
            pids: e.pids(),
        });
    }
    let figures = measure(pki, &paths.iter().collect::<Vec<_>>(), rounds, total).await;
    drop(paths);
    drop(envoy_pair);
    drop(pair);
    drop(tokio_pair);

    println!(
        "1. bulk, one stream, {} MiB per transfer, {rounds} rounds taking turns (HBONE: Istio's {}):",
        args.mb,
        describe(&istio)
    );
    println!(
        "  {:<36} {:>9} {:>9} {:>9}",
        "path", "best MB/s", "median", "CPU s/GB"
    );
    let names = [
        "raw TCP",
        "rustls mTLS",
        "HBONE tunnel (direct)",
        "HBONE proxy pair (TCP→HBONE→TCP)",
        "  same, tokio copy_bidirectional",
        "Envoy pair (TCP→HBONE→TCP)",
    ];
    for (name, f) in names.iter().zip(&figures) {
        row(name, f);
    }
    let [tcp, tls, direct, ours, tokio_copy] = [
        &figures[0],
        &figures[1],
        &figures[2],
        &figures[3],
        &figures[4],
    ];
    if figures.len() == 5 {
        println!("  Envoy pair: skipped, `envoy` is not on PATH");
    }
    println!(
        "  ratios (best MB/s): direct/TCP {:.2}, direct/mTLS {:.2}, pair/TCP {:.2} (goal >= 0.3: {})",
        direct.best / tcp.best,
        direct.best / tls.best,
        ours.best / tcp.best,
        verdict(ours.best / tcp.best, 0.3),
    );
    println!(
        "  pair with copy_bidirectional / with tokio's copy: {:.2} by best MB/s, {:.2} by median; CPU per GB {:.2}",
        ours.best / tokio_copy.best,
        ours.median / tokio_copy.median,
        ours.cpu / tokio_copy.cpu,
    );
    if let Some(e) = figures.get(5) {
        println!(
            "  pair/Envoy pair: {:.2} by best MB/s, {:.2} by median (goal >= 1.5: {}); Envoy pair CPU per GB / ours: {:.2}",
            ours.best / e.best,
            ours.median / e.median,
            verdict(ours.best / e.best, 1.5),
            e.cpu / ours.cpu,
        );
    }

    // Flow-control settings, both sides alike, same transfer.
    let variants = [
        flow(256 * 1024, MIB, 16 * 1024),
        flow(MIB, 4 * MIB, 16 * 1024),
        flow(4 * MIB, 16 * MIB, 16 * 1024),
        flow(4 * MIB, 16 * MIB, 128 * 1024),
        istio,
        flow(16 * MIB, 64 * MIB, MIB),
    ];
    let mut pairs = Vec::new();
    let mut paths = Vec::new();
    for v in variants {
        let pair = our_pair(pki, v, tcp_sink, Forward::Splice);
        paths.push(Path::direct(pki, v).await);
        paths.push(Path::Proxy {
            entry: pair.entry,
            pids: vec![],
        });
        pairs.push(pair);
    }
    let figures = measure(pki, &paths.iter().collect::<Vec<_>>(), rounds, total).await;
    drop(paths);
    drop(pairs);
    println!("1b. HTTP/2 flow control, both sides alike, {rounds} rounds taking turns:");
    println!(
        "  {:<36} {:>9} {:>9} {:>9}   {:>9} {:>9} {:>9}",
        "", "direct", "median", "CPU s/GB", "pair", "median", "CPU s/GB"
    );
    for (v, f) in variants.iter().zip(figures.chunks(2)) {
        println!(
            "  {:<36} {:9.1} {:9.1} {:9.2}   {:9.1} {:9.1} {:9.2}{}",
            describe(v),
            f[0].best,
            f[0].median,
            f[0].cpu,
            f[1].best,
            f[1].median,
            f[1].cpu,
            if *v == istio { "  (default)" } else { "" }
        );
    }
}
