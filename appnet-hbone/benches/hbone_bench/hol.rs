//! Figure 5: head-of-line blocking. Stream B's bulk throughput on a pooled
//! connection alone, then while 1 and then `connection_window /
//! stream_window` other streams on the same connection are stalled: their
//! writer has filled the stream window and the server side never reads.

use std::time::{Duration, Instant};

use appnet_hbone::{ConnectRequest, ConnectorConfig, HboneConnector, HbonePeer, ServerConfig};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use crate::common::{self, Args, Pki, push, rate};

/// Figure 5, printed.
pub(crate) async fn run(pki: &Pki, args: &Args) {
    let total = (args.mb / 4).max(4) * 1024 * 1024;
    // Bound on one B transfer: past this it counts as blocked.
    let patience = Duration::from_secs(if args.quick { 1 } else { 5 });
    let server_config = ServerConfig::default();
    let window = server_config.flow_control.stream_window;
    let per_connection = server_config.flow_control.connection_window / window;
    let (release, rx) = watch::channel(false);
    let server = common::start_hbone(pki.creds("server"), server_config, rx).await;
    let creds = pki.creds("client");
    let peer = HbonePeer::new(server.local_addr(), pki.id("server"));
    let connector = HboneConnector::new(ConnectorConfig::default()).unwrap();
    let sink = || ConnectRequest::new("sink.bench:9".parse().unwrap());

    println!(
        "5. head-of-line: stream B ({} MiB) on a connection with stalled streams (each holds a {} MiB stream window unread):",
        total / (1024 * 1024),
        window / (1024 * 1024)
    );
    let alone = push(
        connector.connect(&creds, &peer, sink()).await.unwrap(),
        total,
    )
    .await;
    println!("  B alone                {:8.1} MB/s", rate(total, alone));

    let mut stalled = Vec::new();
    let mut writers = Vec::new();
    for want in [1, per_connection] {
        while stalled.len() < want as usize {
            let t = connector
                .connect(
                    &creds,
                    &peer,
                    ConnectRequest::new("stall.bench:9".parse().unwrap()),
                )
                .await
                .unwrap();
            let counters = t.counters();
            // Writes until flow control stops it; never finishes.
            writers.push(tokio::spawn(async move {
                let mut t = t;
                let chunk = vec![0u8; 64 * 1024];
                while t.write_all(&chunk).await.is_ok() {}
            }));
            // Wait (bounded) until the stalled stream's window is full.
            let deadline = Instant::now() + patience;
            while counters.written() < u64::from(window) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            stalled.push(counters);
        }
        let t = connector.connect(&creds, &peer, sink()).await.unwrap();
        let counters = t.counters();
        let start = Instant::now();
        let label = format!("B with {want} stalled");
        match tokio::time::timeout(patience, push(t, total)).await {
            Ok(d) => println!(
                "  {label:<22} {:8.1} MB/s   ({:.2}x alone)",
                rate(total, d),
                alone.as_secs_f64() / d.as_secs_f64()
            ),
            Err(_) => println!(
                "  {label:<22} BLOCKED: {} of {} bytes sent in {:.1} s (connection window exhausted)",
                counters.written(),
                total,
                start.elapsed().as_secs_f64()
            ),
        }
    }
    println!(
        "  (pooled connections: {}, streams the client had open: {})",
        connector.stats().pooled_connections,
        connector.stats().tunnels
    );
    // Let the stalled handlers go and drop their tunnels.
    for w in &writers {
        w.abort();
    }
    for w in writers {
        let _ = w.await;
    }
    let _ = release.send(true);
    drop(connector);
    server.drain().await;
}
