//! `copy_bidirectional`: a TCP connection spliced to a tunnel, as a node
//! proxy runs it.

use std::io::ErrorKind;

use appnet_hbone::{ConnectorConfig, HboneConnector, copy_bidirectional};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::*;

/// Both ends of a loopback TCP connection: (the application's, the proxy's).
async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (proxy, _) = listener.accept().await.unwrap();
    (app, proxy)
}

#[tokio::test]
async fn splices_megabytes_both_ways_and_counts_them() {
    let d = Domain::new("cluster.local");
    let mut h = default_server(&d).await;
    let connector = HboneConnector::new(ConnectorConfig::default()).unwrap();
    let mut tunnel = connect_to(&connector, &d, h.addr(), handoff_target()).await;
    let mut server = h.tunnels.recv().await.unwrap();
    let (mut app, mut proxy) = tcp_pair().await;
    let counters = tunnel.counters();
    let copy = tokio::spawn(async move { copy_bidirectional(&mut proxy, &mut tunnel).await });

    let up = pattern(3 << 20);
    let down: Vec<u8> = pattern((2 << 20) + 7).into_iter().rev().collect();
    let expect_up = up.clone();
    let reply = down.clone();
    let peer = tokio::spawn(async move {
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert!(got == expect_up, "the server got what the app sent");
        server.write_all(&reply).await.unwrap();
        server.shutdown().await.unwrap();
    });
    let (mut app_read, mut app_write) = app.split();
    let send = async {
        app_write.write_all(&up).await.unwrap();
        app_write.shutdown().await.unwrap();
    };
    let mut back = Vec::new();
    let receive = app_read.read_to_end(&mut back);
    let ((), received) = tokio::join!(send, receive);
    received.unwrap();
    assert!(back == down, "the app got what the server sent");
    peer.await.unwrap();
    let moved = copy.await.unwrap().unwrap();
    assert_eq!(moved, (up.len() as u64, down.len() as u64));
    assert_eq!(counters.written(), up.len() as u64);
    assert_eq!(counters.read(), down.len() as u64);
    all_closed(&connector, &h.handle).await;
}

#[tokio::test]
async fn either_side_may_half_close_first() {
    let d = Domain::new("cluster.local");
    let mut h = default_server(&d).await;
    let connector = HboneConnector::new(ConnectorConfig::default()).unwrap();

    // The server finishes first; the app keeps talking afterwards.
    let mut tunnel = connect_to(&connector, &d, h.addr(), handoff_target()).await;
    let mut server = h.tunnels.recv().await.unwrap();
    let (mut app, mut proxy) = tcp_pair().await;
    let copy = tokio::spawn(async move { copy_bidirectional(&mut proxy, &mut tunnel).await });
    server.write_all(b"banner").await.unwrap();
    server.shutdown().await.unwrap();
    let mut got = Vec::new();
    // The proxy shut down the app's connection for writing: EOF.
    app.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"banner");
    app.write_all(b"still talking").await.unwrap();
    app.shutdown().await.unwrap();
    let mut back = Vec::new();
    server.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, b"still talking");
    assert_eq!(copy.await.unwrap().unwrap(), (13, 6));
    drop(server);

    // The app finishes first; the server answers after its EOF.
    let mut tunnel = connect_to(&connector, &d, h.addr(), handoff_target()).await;
    let mut server = h.tunnels.recv().await.unwrap();
    let (mut app, mut proxy) = tcp_pair().await;
    let copy = tokio::spawn(async move { copy_bidirectional(&mut proxy, &mut tunnel).await });
    app.write_all(b"request").await.unwrap();
    app.shutdown().await.unwrap();
    let mut got = Vec::new();
    server.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"request");
    server.write_all(b"response after EOF").await.unwrap();
    server.shutdown().await.unwrap();
    let mut back = Vec::new();
    app.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, b"response after EOF");
    assert_eq!(copy.await.unwrap().unwrap(), (7, 18));
    drop(server);
    all_closed(&connector, &h.handle).await;
}

#[tokio::test]
async fn bytes_already_read_into_the_tunnel_go_first() {
    let d = Domain::new("cluster.local");
    let mut h = default_server(&d).await;
    let connector = HboneConnector::new(ConnectorConfig::default()).unwrap();
    let mut tunnel = connect_to(&connector, &d, h.addr(), handoff_target()).await;
    let mut server = h.tunnels.recv().await.unwrap();
    server.write_all(b"hello, world").await.unwrap();
    server.shutdown().await.unwrap();
    // The application peeks at the first byte (the rest of the DATA frame
    // stays buffered in the tunnel), then splices.
    let mut first = [0u8; 1];
    tunnel.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"h");
    let (mut app, mut proxy) = tcp_pair().await;
    let copy = tokio::spawn(async move { copy_bidirectional(&mut proxy, &mut tunnel).await });
    let mut got = Vec::new();
    app.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"ello, world");
    app.shutdown().await.unwrap();
    assert_eq!(copy.await.unwrap().unwrap(), (0, 11));
    drop(server);
    all_closed(&connector, &h.handle).await;
}

#[tokio::test]
async fn a_reset_by_the_peer_ends_the_copy_with_an_error() {
    let d = Domain::new("cluster.local");
    let mut h = default_server(&d).await;
    let connector = HboneConnector::new(ConnectorConfig::default()).unwrap();
    let mut tunnel = connect_to(&connector, &d, h.addr(), handoff_target()).await;
    let mut server = h.tunnels.recv().await.unwrap();
    let (mut app, mut proxy) = tcp_pair().await;
    let copy = tokio::spawn(async move { copy_bidirectional(&mut proxy, &mut tunnel).await });
    app.write_all(b"partial").await.unwrap();
    let mut buf = [0u8; 7];
    server.read_exact(&mut buf).await.unwrap();
    // The server side goes away without ending the stream: RST_STREAM.
    drop(server);
    // Seen by whichever direction polls first: as a reset by the reader,
    // as a closed pipe by the writer (as `Tunnel` reports them).
    let err = copy.await.unwrap().unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
        ),
        "{err}"
    );
    all_closed(&connector, &h.handle).await;
}
