//! Figure 1: one-stream bulk throughput, and the flow-control settings.
//!
//! Paths, each moving the same bytes from a writer to a sink in this
//! process (256 KiB writes, timed until the sink has read everything):
//! raw TCP; bare mutual TLS (rustls, the HBONE TLS configs, no HTTP/2); an
//! HBONE tunnel written directly (client and server in this process's
//! runtime); our proxy pair (TCP → HBONE client proxy → HBONE → server
//! proxy → TCP, each proxy one thread, as a node proxy would carry it); the
//! Envoy pair on the same path.

use std::net::SocketAddr;
use std::time::Duration;

use appnet_hbone::{ConnectRequest, FlowControl, HboneConnector, HbonePeer};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

use crate::common::{
    self, Args, MIB, PROXY_BUF, Pki, configs, describe, flow, push, rate, tcp_connect, tls_connect,
    verdict,
};
use crate::envoy;

const ROUNDS: usize = 3;

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
/// once listening.
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

fn our_pair(pki: &Pki, flow_control: FlowControl, sink: SocketAddr) -> OurPair {
    let (cc, sc) = configs(flow_control);
    let server_creds = pki.creds("server");
    let (server, server_addr) = proxy_thread(move || async move {
        let (_tx, rx) = watch::channel(false);
        let handle = common::start_hbone(server_creds, sc, rx).await;
        let addr = handle.local_addr();
        let keep: Box<dyn std::any::Any> = Box::new((_tx, handle));
        (addr, keep)
    });
    let creds = pki.creds("client");
    let peer = HbonePeer::new(server_addr, pki.id("server"));
    let (client, entry) = proxy_thread(move || async move {
        let connector = HboneConnector::new(cc).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
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
                    let _ = tokio::io::copy_bidirectional_with_sizes(
                        &mut tcp,
                        &mut tunnel,
                        PROXY_BUF,
                        PROXY_BUF,
                    )
                    .await;
                });
            }
        });
        let keep: Box<dyn std::any::Any> = Box::new(AbortOnDrop(task));
        (addr, keep)
    });
    OurPair {
        _client: client,
        _server: server,
        entry,
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Best and median of `ROUNDS` timings, as MB/s.
struct Figure {
    best: f64,
    median: f64,
}

impl Figure {
    fn of(total: u64, mut times: Vec<Duration>) -> Self {
        times.sort_unstable();
        Self {
            best: rate(total, times[0]),
            median: rate(total, times[times.len() / 2]),
        }
    }
}

fn row(name: &str, f: &Figure) {
    println!(
        "  {name:<34} {:8.1} MB/s  (median {:8.1})",
        f.best, f.median
    );
}

/// Times one HBONE tunnel written directly, for `flow` on both sides.
async fn direct_hbone(pki: &Pki, flow_control: FlowControl, total: u64) -> Vec<Duration> {
    let (cc, sc) = configs(flow_control);
    let (_tx, rx) = watch::channel(false);
    let server = common::start_hbone(pki.creds("server"), sc, rx).await;
    let connector = HboneConnector::new(cc).unwrap();
    let creds = pki.creds("client");
    let peer = HbonePeer::new(server.local_addr(), pki.id("server"));
    let mut times = Vec::new();
    for _ in 0..ROUNDS {
        let t = connector
            .connect(
                &creds,
                &peer,
                ConnectRequest::new("sink.bench:9".parse().unwrap()),
            )
            .await
            .unwrap();
        times.push(push(t, total).await);
    }
    server.drain().await;
    times
}

/// Figure 1, printed.
pub(crate) async fn run(pki: &Pki, args: &Args) {
    let total = args.mb * 1024 * 1024;
    let tcp_sink = common::tcp_server(|s| async move {
        common::sink(s).await;
    })
    .await;
    let tls_sink = common::tls_server(pki, |s| async move {
        common::sink(s).await;
    })
    .await;
    let creds = pki.creds("client");
    let istio = FlowControl::default();
    let pair = our_pair(pki, istio, tcp_sink);
    let envoy_pair = envoy::start(pki, tcp_sink);

    let mut tcp = Vec::new();
    let mut tls = Vec::new();
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..ROUNDS {
        tcp.push(push(tcp_connect(tcp_sink).await, total).await);
        tls.push(push(tls_connect(pki, &creds, tls_sink).await, total).await);
        ours.push(push(tcp_connect(pair.entry).await, total).await);
        if let Some(e) = &envoy_pair {
            theirs.push(push(tcp_connect(e.entry).await, total).await);
        }
    }
    let direct = direct_hbone(pki, istio, total).await;
    drop(envoy_pair);
    drop(pair);

    let tcp = Figure::of(total, tcp);
    let tls = Figure::of(total, tls);
    let direct = Figure::of(total, direct);
    let ours = Figure::of(total, ours);
    println!(
        "1. bulk, one stream, {} MiB per transfer, best of {ROUNDS} (Istio windows: {}):",
        args.mb,
        describe(&istio)
    );
    row("raw TCP", &tcp);
    row("rustls mTLS", &tls);
    row("HBONE tunnel (direct)", &direct);
    row("HBONE proxy pair (TCP→HBONE→TCP)", &ours);
    let envoy = (!theirs.is_empty()).then(|| Figure::of(total, theirs));
    match &envoy {
        Some(e) => row("Envoy pair (TCP→HBONE→TCP)", e),
        None => println!("  Envoy pair: skipped, `envoy` is not on PATH"),
    }
    println!(
        "  ratios: direct/TCP {:.2}, direct/mTLS {:.2}, pair/TCP {:.2} (goal >= 0.3: {})",
        direct.best / tcp.best,
        direct.best / tls.best,
        ours.best / tcp.best,
        verdict(ours.best / tcp.best, 0.3),
    );
    if let Some(e) = &envoy {
        println!(
            "          pair/Envoy pair {:.2} (goal >= 1.5: {})",
            ours.best / e.best,
            verdict(ours.best / e.best, 1.5)
        );
    }

    // Flow-control settings, both sides alike, same transfer.
    println!("1b. flow control (HBONE direct, and proxy pair), best of {ROUNDS}:");
    let variants = [
        flow(256 * 1024, MIB, 16 * 1024),
        flow(MIB, 4 * MIB, 16 * 1024),
        flow(4 * MIB, 16 * MIB, 16 * 1024),
        istio,
        flow(16 * MIB, 64 * MIB, MIB),
    ];
    for v in variants {
        let direct = Figure::of(total, direct_hbone(pki, v, total).await);
        let pair = our_pair(pki, v, tcp_sink);
        let mut times = Vec::new();
        for _ in 0..ROUNDS {
            times.push(push(tcp_connect(pair.entry).await, total).await);
        }
        drop(pair);
        let pair = Figure::of(total, times);
        println!(
            "  {:<38} direct {:8.1} MB/s   pair {:8.1} MB/s{}",
            describe(&v),
            direct.best,
            pair.best,
            if v == istio { "   (default)" } else { "" }
        );
    }
}
