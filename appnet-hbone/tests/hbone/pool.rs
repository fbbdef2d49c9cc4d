//! The client pool against a real server: reuse, the peer's stream limit,
//! idle eviction, connection failures, drain, and many abandoned streams.

use std::time::Duration;

use appnet_hbone::{ConnectRequest, ConnectorConfig, HboneConnector, ServerConfig, Tunnel};
use appnet_identity::tls::AllowedPeers;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

#[tokio::test]
async fn streams_share_one_connection() {
    let d = Domain::new("cluster.local");
    let h = default_server(&d).await;
    let connector = HboneConnector::new(ConnectorConfig::default()).unwrap();
    let creds = d.creds("client");
    let target = peer(h.addr(), d.id("server"));
    // Opened concurrently: the first dials, the others join that dial.
    let opens =
        (0..20).map(|_| connector.connect(&creds, &target, ConnectRequest::new(echo_target())));
    let mut tunnels: Vec<Tunnel> = futures_join_all(opens).await;
    assert_eq!(connector.stats().pooled_connections, 1);
    assert_eq!(connector.stats().tunnels, 20);
    assert_eq!(h.handle.stats().connections, 1);
    for (i, t) in tunnels.iter_mut().enumerate() {
        round_trip(t, format!("stream {i}").as_bytes()).await;
    }
    drop(tunnels);
    all_closed(&connector, &h.handle).await;
    // The idle connection stays pooled for reuse.
    assert_eq!(connector.stats().pooled_connections, 1);
    let mut again = connector
        .connect(&creds, &target, ConnectRequest::new(echo_target()))
        .await
        .unwrap();
    round_trip(&mut again, b"reused").await;
    assert_eq!(h.handle.stats().connections, 1);
}

/// Awaits all futures concurrently on this task (no extra dependency).
async fn futures_join_all<F, T, E>(futs: impl Iterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = Result<T, E>>,
    E: std::fmt::Debug,
{
    let mut set = Vec::new();
    for f in futs {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<T>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_some() {
                continue;
            }
            match f.as_mut().poll(cx) {
                std::task::Poll::Ready(r) => out[i] = Some(r.unwrap()),
                std::task::Poll::Pending => pending = true,
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(Option::unwrap).collect()
}

#[tokio::test]
async fn a_new_connection_when_the_peer_limit_is_reached() {
    let d = Domain::new("cluster.local");
    let mut config = ServerConfig::default();
    config.max_concurrent_streams = 2;
    let h = start_server(d.creds("server"), AllowedPeers::AnyTrusted, config, None).await;
    let connector = HboneConnector::new(ConnectorConfig::default()).unwrap();
    let creds = d.creds("client");
    let target = peer(h.addr(), d.id("server"));
    let mut tunnels = Vec::new();
    for i in 0..5 {
        let mut t = connector
            .connect(&creds, &target, ConnectRequest::new(echo_target()))
            .await
            .unwrap();
        round_trip(&mut t, format!("t{i}").as_bytes()).await;
        tunnels.push(t);
    }
    // 2 + 2 + 1.
    assert_eq!(connector.stats().pooled_connections, 3);
    assert_eq!(h.handle.stats().connections, 3);
    // Our own cap applies when it is below the peer's.
    let mut small = ConnectorConfig::default();
    small.max_streams_per_connection = 1;
    let one_each = HboneConnector::new(small).unwrap();
    let a = one_each
        .connect(&creds, &target, ConnectRequest::new(echo_target()))
        .await
        .unwrap();
    let b = one_each
        .connect(&creds, &target, ConnectRequest::new(echo_target()))
        .await
        .unwrap();
    assert_eq!(one_each.stats().pooled_connections, 2);
    drop((a, b, tunnels));
    all_closed(&connector, &h.handle).await;
    all_closed(&one_each, &h.handle).await;
}

#[tokio::test]
async fn idle_connections_are_evicted_after_the_timeout() {
    let d = Domain::new("cluster.local");
    let mut server_config = ServerConfig::default();
    server_config.keepalive = None;
    let h = start_server(
        d.creds("server"),
        AllowedPeers::AnyTrusted,
        server_config,
        None,
    )
    .await;
    let mut config = ConnectorConfig::default();
    config.keepalive = None;
    let idle = config.idle_timeout;
    let connector = HboneConnector::new(config).unwrap();
    let mut t = connect_to(&connector, &d, h.addr(), echo_target()).await;
    round_trip(&mut t, b"x").await;
    drop(t);
    all_closed(&connector, &h.handle).await;

    tokio::time::pause();
    tokio::time::advance(idle - Duration::from_secs(1)).await;
    settle("nothing to do yet", || true).await;
    assert_eq!(connector.stats().pooled_connections, 1, "evicted too early");
    tokio::time::advance(Duration::from_secs(2)).await;
    settle("idle connection evicted", || {
        connector.stats().pooled_connections == 0
    })
    .await;
    tokio::time::resume();
    settle("server saw the close", || h.handle.stats().connections == 0).await;
}

#[tokio::test]
async fn a_failed_connection_fails_only_its_streams() {
    let d = Domain::new("cluster.local");
    let doomed = default_server(&d).await;
    let healthy = default_server(&d).await;
    let connector = HboneConnector::new(ConnectorConfig::default()).unwrap();
    let creds = d.creds("client");
    let mut lost = Vec::new();
    for _ in 0..3 {
        lost.push(
            connector
                .connect(
                    &creds,
                    &peer(doomed.addr(), d.id("server")),
                    ConnectRequest::new(echo_target()),
                )
                .await
                .unwrap(),
        );
    }
    let mut kept = connect_to(&connector, &d, healthy.addr(), echo_target()).await;
    round_trip(&mut kept, b"before").await;
    assert_eq!(connector.stats().pooled_connections, 2);

    // The peer vanishes mid-transfer.
    drop(doomed);
    for t in &mut lost {
        let mut buf = [0u8; 8];
        let r = t.read(&mut buf).await;
        assert!(r.is_err(), "stream on the dead connection must fail: {r:?}");
    }
    round_trip(&mut kept, b"after").await;
    settle("dead connection forgotten", || {
        connector.stats().pooled_connections == 1
    })
    .await;
    drop(lost);
    drop(kept);
    only_the_healthy_connection_left(&connector, &healthy.handle).await;
}

#[tokio::test]
async fn graceful_drain_lets_in_flight_streams_finish() {
    let d = Domain::new("cluster.local");
    let mut h = default_server(&d).await;
    let connector = HboneConnector::new(ConnectorConfig::default()).unwrap();
    let creds = d.creds("client");
    let target = peer(h.addr(), d.id("server"));
    let mut client = connector
        .connect(&creds, &target, ConnectRequest::new(handoff_target()))
        .await
        .unwrap();
    let mut server = h.tunnels.recv().await.unwrap();
    let stats_before = h.handle.stats();
    assert_eq!(stats_before.tunnels, 1);

    let drain = tokio::spawn(h.handle.drain());
    // The in-flight tunnel keeps working both ways during the drain.
    client.write_all(b"during drain").await.unwrap();
    let mut buf = [0u8; 12];
    server.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"during drain");
    server.write_all(b"reply").await.unwrap();
    let mut buf = [0u8; 5];
    client.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"reply");
    assert!(!drain.is_finished(), "drain must wait for the open stream");

    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
    let mut rest = Vec::new();
    server.read_to_end(&mut rest).await.unwrap();
    client.read_to_end(&mut rest).await.unwrap();
    drop((client, server));
    drain.await.unwrap();

    // Drained: nothing accepts any more, and the client's pool lets go.
    let err = connector
        .connect(&creds, &target, ConnectRequest::new(echo_target()))
        .await
        .unwrap_err();
    assert!(!err.is_denied(), "{err}");
    settle("client pool empty", || {
        connector.stats().pooled_connections == 0
    })
    .await;
    assert_eq!(connector.stats().tunnels, 0);
}

#[tokio::test]
async fn ten_thousand_abandoned_streams_leave_nothing_behind() {
    let d = Domain::new("cluster.local");
    let h = default_server(&d).await;
    let connector = HboneConnector::new(ConnectorConfig::default()).unwrap();
    let creds = d.creds("client");
    let target = peer(h.addr(), d.id("server"));
    // Batches of 100 open streams (the per-connection cap), each abandoned
    // without a byte: dropped, so reset.
    for _ in 0..100 {
        let opens = (0..100)
            .map(|_| connector.connect(&creds, &target, ConnectRequest::new(echo_target())));
        let batch = futures_join_all(opens).await;
        assert_eq!(batch.len(), 100);
        drop(batch);
    }
    all_closed(&connector, &h.handle).await;
    // No task left behind either: the server's accept loop and connection
    // task, and the client's connection driver.
    let tasks = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    settle("stream tasks reaped", || tasks() == 3).await;
    // Never more connections than the concurrency needed.
    assert_eq!(connector.stats().pooled_connections, 1);
    assert_eq!(h.handle.stats().connections, 1);
    // And the connection still works.
    let mut t = connector
        .connect(&creds, &target, ConnectRequest::new(echo_target()))
        .await
        .unwrap();
    round_trip(&mut t, b"alive").await;
}
