//! Figure 5: head-of-line blocking. Stream B's bulk throughput on a pooled
//! connection alone, then while 1 and then `connection_window /
//! stream_window` other streams on the same connection are stalled: their
//! writer has filled the stream window and the server side never reads.
//! Unread data holds connection window too, so that many stalled streams
//! stop every stream of the connection; shown for Istio's windows and for a
//! larger connection window.

use std::time::{Duration, Instant};

use appnet_hbone::{ConnectRequest, FlowControl, HboneConnector, HbonePeer};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use crate::common::{self, Args, Forward, MIB, Pki, configs, describe, flow, push, rate};

/// Figure 5, printed.
pub(crate) async fn run(pki: &Pki, args: &Args) {
    let total = (args.mb / 4).max(4) * 1024 * 1024;
    println!(
        "5. head-of-line: stream B ({} MiB) on a connection whose other streams are stalled (written to, never read):",
        total / (1024 * 1024),
    );
    for f in [FlowControl::default(), flow(4 * MIB, 64 * MIB, MIB)] {
        one(pki, args, f, total).await;
    }
}

async fn one(pki: &Pki, args: &Args, flow_control: FlowControl, total: u64) {
    // Bound on one B transfer: past this it counts as blocked.
    let patience = Duration::from_secs(if args.quick { 1 } else { 5 });
    let (client_config, server_config) = configs(flow_control);
    let window = flow_control.stream_window;
    let per_connection = flow_control.connection_window / window;
    let (release, rx) = watch::channel(false);
    let server = common::start_hbone(pki.creds("server"), server_config, rx, Forward::Splice).await;
    let creds = pki.creds("client");
    let peer = HbonePeer::new(server.local_addr(), pki.id("server"));
    let connector = HboneConnector::new(client_config).unwrap();
    let sink = || ConnectRequest::new("sink.bench:9".parse().unwrap());
    println!(
        "  {}{}:",
        describe(&flow_control),
        if flow_control == FlowControl::default() {
            " (default)"
        } else {
            ""
        }
    );
    // Untimed first: the connection's TCP windows grow.
    push(
        connector.connect(&creds, &peer, sink()).await.unwrap(),
        total,
    )
    .await;
    let alone = push(
        connector.connect(&creds, &peer, sink()).await.unwrap(),
        total,
    )
    .await;
    println!("    B alone                {:8.1} MB/s", rate(total, alone));

    let mut stalled = Vec::new();
    let mut writers = Vec::new();
    let mut wants = vec![1, 4, per_connection];
    wants.dedup();
    for want in wants {
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
                "    {label:<22} {:8.1} MB/s   ({:.2}x alone)",
                rate(total, d),
                alone.as_secs_f64() / d.as_secs_f64()
            ),
            Err(_) => println!(
                "    {label:<22} BLOCKED: {} of {} bytes sent in {:.1} s (connection window exhausted)",
                counters.written(),
                total,
                start.elapsed().as_secs_f64()
            ),
        }
    }
    assert_eq!(
        connector.stats().pooled_connections,
        1,
        "all on one connection"
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
