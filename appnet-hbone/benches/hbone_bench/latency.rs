//! Figures 2 and 3: request/response latency (a 1-byte echo) and the rates
//! of new tunnels and pooled streams.

use std::time::{Duration, Instant};

use appnet_hbone::{ConnectRequest, ConnectorConfig, HboneConnector, HbonePeer, ServerConfig};
use appnet_identity::tls::CredentialsReceiver;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use crate::common::{self, Args, Forward, Pki, percentiles, tcp_connect, tls_connect, us};

/// One byte there and back.
async fn ping<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) {
    s.write_all(b"x").await.unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await.unwrap();
}

/// `n` round trips on `s` after 100 untimed ones.
async fn ping_pong<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, n: usize) -> Vec<Duration> {
    for _ in 0..100 {
        ping(&mut s).await;
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        ping(&mut s).await;
        samples.push(start.elapsed());
    }
    samples
}

fn echo_request() -> ConnectRequest {
    ConnectRequest::new("echo.bench:9".parse().unwrap())
}

fn print_row(name: &str, samples: Vec<Duration>) {
    let n = samples.len();
    let (p50, p99) = percentiles(samples);
    println!(
        "  {name:<44} p50 {:8.1} us   p99 {:8.1} us   ({n} samples)",
        us(p50),
        us(p99)
    );
}

/// A CONNECT on a connector of its own: TCP + TLS + HTTP/2 handshake,
/// CONNECT, `200`.
async fn fresh_tunnel(
    creds: &CredentialsReceiver,
    peer: &HbonePeer,
    request: ConnectRequest,
) -> appnet_hbone::Tunnel {
    let connector = HboneConnector::new(ConnectorConfig::default()).unwrap();
    connector.connect(creds, peer, request).await.unwrap()
}

/// Figures 2 and 3, printed.
pub(crate) async fn run(pki: &Pki, args: &Args) {
    let n = args.samples;
    let fresh_n = (n / 10).max(10);
    let (_release, rx) = watch::channel(false);
    let server = common::start_hbone(
        pki.creds("server"),
        ServerConfig::default(),
        rx,
        Forward::Splice,
    )
    .await;
    let creds = pki.creds("client");
    let peer = HbonePeer::new(server.local_addr(), pki.id("server"));
    let connector = HboneConnector::new(ConnectorConfig::default()).unwrap();
    let tcp_echo = common::tcp_server(common::echo).await;
    let tls_echo = common::tls_server(pki, common::echo).await;

    println!("2. request/response latency, 1-byte echo:");
    print_row(
        "raw TCP, reused connection",
        ping_pong(tcp_connect(tcp_echo).await, n).await,
    );
    print_row(
        "rustls mTLS, reused connection",
        ping_pong(tls_connect(pki, &creds, tls_echo).await, n).await,
    );
    let tunnel = connector
        .connect(&creds, &peer, echo_request())
        .await
        .unwrap();
    print_row("HBONE, reused tunnel", ping_pong(tunnel, n).await);

    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let mut t = connector
            .connect(&creds, &peer, echo_request())
            .await
            .unwrap();
        ping(&mut t).await;
        samples.push(start.elapsed());
    }
    print_row("HBONE, new stream on the pooled connection", samples);

    let mut samples = Vec::with_capacity(fresh_n);
    for _ in 0..fresh_n {
        let start = Instant::now();
        let mut t = fresh_tunnel(&creds, &peer, echo_request()).await;
        ping(&mut t).await;
        samples.push(start.elapsed());
    }
    print_row("HBONE, new tunnel (TCP + mTLS + h2 + CONNECT)", samples);
    let mut samples = Vec::with_capacity(fresh_n);
    for _ in 0..fresh_n {
        let start = Instant::now();
        let mut s = tls_connect(pki, &creds, tls_echo).await;
        ping(&mut s).await;
        samples.push(start.elapsed());
    }
    print_row("rustls mTLS, new connection (reference)", samples);

    // 3. Rates.
    let open = || ConnectRequest::new("open.bench:9".parse().unwrap());
    println!("3. rates (CONNECT answered 200, tunnel dropped):");
    let tunnels = (n / 5).max(20);
    let start = Instant::now();
    for _ in 0..tunnels {
        drop(fresh_tunnel(&creds, &peer, open()).await);
    }
    let serial = start.elapsed();
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let in_flight = 16;
    for _ in 0..in_flight {
        let (creds, peer) = (creds.clone(), peer.clone());
        tasks.spawn(async move {
            for _ in 0..tunnels / in_flight {
                drop(fresh_tunnel(&creds, &peer, open()).await);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let parallel = start.elapsed();
    println!(
        "  new tunnel each (own connection)   one at a time {:8.0} /s   {in_flight} in flight {:8.0} /s   ({tunnels} tunnels)",
        tunnels as f64 / serial.as_secs_f64(),
        (tunnels / in_flight * in_flight) as f64 / parallel.as_secs_f64(),
    );

    let streams = n.max(100);
    let start = Instant::now();
    for _ in 0..streams {
        drop(connector.connect(&creds, &peer, open()).await.unwrap());
    }
    let serial = start.elapsed();
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let (connector, creds, peer) = (connector.clone(), creds.clone(), peer.clone());
        tasks.spawn(async move {
            for _ in 0..streams / 100 {
                drop(connector.connect(&creds, &peer, open()).await.unwrap());
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let parallel = start.elapsed();
    println!(
        "  streams on pooled connections      one at a time {:8.0} /s   100 in flight {:8.0} /s   ({streams} streams, {} connections)",
        streams as f64 / serial.as_secs_f64(),
        (streams / 100 * 100) as f64 / parallel.as_secs_f64(),
        connector.stats().pooled_connections
    );
    drop(connector);
    server.drain().await;
}
