//! Bytes, identities, headers, half-close and resets on single tunnels.

use std::io::ErrorKind;

use appnet_hbone::{
    BAGGAGE, Baggage, ConnectRequest, ConnectorConfig, HboneConnector, ProxyHeader, Reporter,
    ServerConfig, TraceParent,
};
use appnet_identity::tls::AllowedPeers;
use http::HeaderValue;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::common::*;

#[tokio::test]
async fn megabytes_both_ways_with_identities_on_both_sides() {
    let d = Domain::new("cluster.local");
    let mut h = start_server(
        d.creds("server"),
        AllowedPeers::TrustDomain(d.td.clone()),
        ServerConfig::default(),
        None,
    )
    .await;
    let connector = HboneConnector::new(ConnectorConfig::default()).unwrap();
    let client = d.creds("client");
    let tunnel = connector
        .connect(
            &client,
            &peer(h.addr(), d.id("server")),
            ConnectRequest::new(echo_target()),
        )
        .await
        .unwrap();
    assert_eq!(tunnel.peer_identity(), &d.id("server"));
    assert_eq!(tunnel.side(), Reporter::Source);
    assert_eq!(h.seen.recv().await.unwrap().peer, d.id("client"));
    let counters = tunnel.counters();

    // 5 MB: more than one stream window (4 MiB) each way, written while
    // the echo is read back concurrently.
    let data = pattern(5_000_000);
    let (mut rd, mut wr) = tokio::io::split(tunnel);
    let to_send = data.clone();
    let writer = tokio::spawn(async move {
        wr.write_all(&to_send).await.unwrap();
        wr.shutdown().await.unwrap();
        wr
    });
    let mut back = Vec::new();
    rd.read_to_end(&mut back).await.unwrap();
    let wr = writer.await.unwrap();
    assert!(back == data, "echoed bytes differ");
    assert_eq!(counters.written(), data.len() as u64);
    assert_eq!(counters.read(), data.len() as u64);
    drop(rd.unsplit(wr));
    all_closed(&connector, &h.handle).await;
}

/// Writes of many sizes, some flushed in between (which releases the
/// tunnel's reused write buffer), arrive whole and in order.
#[tokio::test]
async fn writes_of_mixed_sizes_across_flushes_arrive_in_order() {
    let d = Domain::new("cluster.local");
    let h = start_server(
        d.creds("server"),
        AllowedPeers::TrustDomain(d.td.clone()),
        ServerConfig::default(),
        None,
    )
    .await;
    let connector = HboneConnector::new(ConnectorConfig::default()).unwrap();
    let tunnel = connect_to(&connector, &d, h.addr(), echo_target()).await;
    let data = pattern(3_000_000);
    let (mut rd, mut wr) = tokio::io::split(tunnel);
    let to_send = data.clone();
    let writer = tokio::spawn(async move {
        let sizes = [1, 7, 16_384, 100_000, 1, 300_000, 65_535];
        let (mut at, mut i) = (0, 0);
        while at < to_send.len() {
            let end = (at + sizes[i % sizes.len()]).min(to_send.len());
            wr.write_all(&to_send[at..end]).await.unwrap();
            if i % 3 == 0 {
                wr.flush().await.unwrap();
            }
            at = end;
            i += 1;
        }
        wr.shutdown().await.unwrap();
        wr
    });
    let mut back = Vec::new();
    rd.read_to_end(&mut back).await.unwrap();
    let wr = writer.await.unwrap();
    assert!(back == data, "echoed bytes differ");
    drop(rd.unsplit(wr));
    all_closed(&connector, &h.handle).await;
}

#[tokio::test]
async fn request_headers_reach_the_server_and_response_baggage_the_client() {
    let d = Domain::new("cluster.local");
    let mut h = start_server(
        d.creds("server"),
        AllowedPeers::TrustDomain(d.td.clone()),
        ServerConfig::default(),
        None,
    )
    .await;
    let connector = HboneConnector::new(ConnectorConfig::default()).unwrap();
    let tp: TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        .parse()
        .unwrap();
    let baggage = Baggage {
        cluster: Some("east".into()),
        namespace: Some("default".into()),
        workload_kind: Some("deployment".into()),
        workload_name: Some("client-v1".into()),
        service_name: Some("client".into()),
        service_version: Some("v1".into()),
        region: Some("r1".into()),
        zone: Some("z1".into()),
    };
    let request = ConnectRequest::new(echo_target())
        .baggage(baggage.clone())
        .forwarded_for("10.1.2.3:45678".parse().unwrap())
        .traceparent(tp)
        .forwarded_network("network-a");
    let mut tunnel = connector
        .connect(&d.creds("client"), &peer(h.addr(), d.id("server")), request)
        .await
        .unwrap();
    let seen = h.seen.recv().await.unwrap();
    assert_eq!(seen.authority, echo_target());
    assert_eq!(seen.baggage, Some(baggage));
    assert_eq!(seen.forwarded_for, Some("10.1.2.3:45678".parse().unwrap()));
    assert_eq!(seen.traceparent, Some(tp));
    assert_eq!(seen.network.as_deref(), Some("network-a"));
    let dest: Baggage = tunnel.peer_headers()[BAGGAGE]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(dest.workload_name.as_deref(), Some("server-v1"));
    tunnel.shutdown().await.unwrap();
    let mut rest = Vec::new();
    tunnel.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
}

#[tokio::test]
async fn half_close_client_first() {
    let d = Domain::new("cluster.local");
    let mut h = default_server(&d).await;
    let connector = HboneConnector::new(ConnectorConfig::default()).unwrap();
    let mut client = connect_to(&connector, &d, h.addr(), handoff_target()).await;
    let mut server = h.tunnels.recv().await.unwrap();
    assert_eq!(server.peer_identity(), &d.id("client"));
    assert_eq!(server.side(), Reporter::Destination);

    client.write_all(b"request").await.unwrap();
    client.shutdown().await.unwrap();
    // Writing after shutdown is refused locally.
    assert_eq!(
        client.write_all(b"more").await.unwrap_err().kind(),
        ErrorKind::BrokenPipe
    );
    let mut got = Vec::new();
    server.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"request");
    // The other direction is still open after the client's EOF.
    server.write_all(b"response after EOF").await.unwrap();
    server.shutdown().await.unwrap();
    let mut back = Vec::new();
    client.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, b"response after EOF");
    drop((client, server));
    all_closed(&connector, &h.handle).await;
}

#[tokio::test]
async fn half_close_server_first() {
    let d = Domain::new("cluster.local");
    let mut h = default_server(&d).await;
    let connector = HboneConnector::new(ConnectorConfig::default()).unwrap();
    let mut client = connect_to(&connector, &d, h.addr(), handoff_target()).await;
    let mut server = h.tunnels.recv().await.unwrap();
    server.write_all(b"banner").await.unwrap();
    server.shutdown().await.unwrap();
    let mut got = Vec::new();
    client.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"banner");
    client.write_all(b"still talking").await.unwrap();
    client.shutdown().await.unwrap();
    let mut back = Vec::new();
    server.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, b"still talking");
    drop((client, server));
    all_closed(&connector, &h.handle).await;
}

#[tokio::test]
async fn peer_reset_mid_stream_fails_only_that_stream() {
    let d = Domain::new("cluster.local");
    let mut h = default_server(&d).await;
    let connector = HboneConnector::new(ConnectorConfig::default()).unwrap();
    let client_creds = d.creds("client");
    let target = peer(h.addr(), d.id("server"));
    let mut victim = connector
        .connect(
            &client_creds,
            &target,
            ConnectRequest::new(handoff_target()),
        )
        .await
        .unwrap();
    let mut bystander = connector
        .connect(&client_creds, &target, ConnectRequest::new(echo_target()))
        .await
        .unwrap();
    let mut server = h.tunnels.recv().await.unwrap();
    victim.write_all(b"partial").await.unwrap();
    let mut buf = [0u8; 7];
    server.read_exact(&mut buf).await.unwrap();
    // The server side goes away without ending the stream: RST_STREAM.
    drop(server);
    let mut rest = Vec::new();
    let err = victim.read_to_end(&mut rest).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");

    // The client resetting is seen by the server likewise.
    let mut victim2 = connector
        .connect(
            &client_creds,
            &target,
            ConnectRequest::new(handoff_target()),
        )
        .await
        .unwrap();
    let mut server2 = h.tunnels.recv().await.unwrap();
    victim2.write_all(b"x").await.unwrap();
    let mut one = [0u8; 1];
    server2.read_exact(&mut one).await.unwrap();
    drop(victim2);
    let err = server2.read_to_end(&mut rest).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    drop(server2);

    // Same connection, other stream: unaffected.
    assert_eq!(connector.stats().pooled_connections, 1);
    bystander.write_all(b"still fine").await.unwrap();
    bystander.shutdown().await.unwrap();
    let mut back = Vec::new();
    bystander.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, b"still fine");
    drop((victim, bystander));
    all_closed(&connector, &h.handle).await;
}

#[tokio::test]
async fn forwards_to_upstream_with_exact_proxy_v2_header() {
    let d = Domain::new("cluster.local");
    let mut h = default_server(&d).await;
    let app = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_addr = app.local_addr().unwrap();
    let source = "10.9.8.7:34567".parse().unwrap();
    let connector = HboneConnector::new(ConnectorConfig::default()).unwrap();
    let request = ConnectRequest::new(app_addr.into())
        .forwarded_for(source)
        .header(
            http::HeaderName::from_static(SANDWICH),
            HeaderValue::from_static("1"),
        );
    let mut tunnel = connector
        .connect(&d.creds("client"), &peer(h.addr(), d.id("server")), request)
        .await
        .unwrap();
    let (mut upstream, _) = app.accept().await.unwrap();
    tunnel.write_all(b"app bytes").await.unwrap();
    tunnel.shutdown().await.unwrap();

    let mut got = Vec::new();
    upstream.read_to_end(&mut got).await.unwrap();
    let want = ProxyHeader::new(source, app_addr)
        .with_peer_identity(&d.id("client"))
        .encode()
        .unwrap();
    assert!(got.starts_with(&want), "header bytes differ: {got:02x?}");
    let (parsed, used) = ProxyHeader::parse(&got).unwrap();
    assert_eq!(used, want.len());
    let parsed = parsed.unwrap();
    assert_eq!(
        parsed.peer_identity(),
        Some(d.id("client").to_string().as_str())
    );
    assert_eq!(&got[used..], b"app bytes");
    upstream.write_all(b"app reply").await.unwrap();
    upstream.shutdown().await.unwrap();
    let mut back = Vec::new();
    tunnel.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, b"app reply");
    assert_eq!(h.seen.recv().await.unwrap().forwarded_for, Some(source));
    drop(tunnel);
    all_closed(&connector, &h.handle).await;
}

#[tokio::test]
async fn slow_stream_does_not_stall_others_on_the_connection() {
    let d = Domain::new("cluster.local");
    let mut h = default_server(&d).await;
    let connector = HboneConnector::new(ConnectorConfig::default()).unwrap();
    let creds = d.creds("client");
    let target = peer(h.addr(), d.id("server"));
    let slow = connector
        .connect(&creds, &target, ConnectRequest::new(handoff_target()))
        .await
        .unwrap();
    let mut slow_server = h.tunnels.recv().await.unwrap();
    // Fill the slow stream well past its window; its reader reads nothing.
    let big = pattern(6 * 1024 * 1024);
    let to_send = big.clone();
    let writer = tokio::spawn(async move {
        let mut slow = slow;
        slow.write_all(&to_send).await.unwrap();
        slow.shutdown().await.unwrap();
        slow
    });

    // Meanwhile a second stream on the same connection moves 2 MB.
    let mut fast = connector
        .connect(&creds, &target, ConnectRequest::new(echo_target()))
        .await
        .unwrap();
    assert_eq!(connector.stats().pooled_connections, 1);
    let data = pattern(2_000_000);
    let (mut rd, mut wr) = tokio::io::split(&mut fast);
    let (_, back) = tokio::join!(
        async {
            wr.write_all(&data).await.unwrap();
            wr.shutdown().await.unwrap();
        },
        async {
            let mut back = Vec::new();
            rd.read_to_end(&mut back).await.unwrap();
            back
        }
    );
    assert!(back == data);
    assert!(
        !writer.is_finished(),
        "the slow writer should still be blocked"
    );

    // Now the slow reader catches up and everything arrives.
    let mut got = Vec::new();
    slow_server.read_to_end(&mut got).await.unwrap();
    assert!(got == big);
    drop(writer.await.unwrap());
    drop((fast, slow_server));
    all_closed(&connector, &h.handle).await;
}
