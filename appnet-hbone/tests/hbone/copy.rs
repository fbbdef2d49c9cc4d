//! `copy_bidirectional`: a TCP connection spliced to a tunnel, as a node
//! proxy runs it.

use std::io::ErrorKind;
use std::time::Duration;

use appnet_hbone::{
    ByteCounters, ConnectorConfig, HboneConnector, ServerConfig, Tunnel, copy_bidirectional,
};
use appnet_identity::tls::AllowedPeers;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

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

/// A spliced tunnel, as a node proxy runs one.
struct Spliced {
    /// The application's end of its TCP connection to the proxy.
    app: TcpStream,
    /// The server's end of the tunnel.
    server: Tunnel,
    /// The proxy's copy: bytes app → server and server → app.
    copy: JoinHandle<std::io::Result<(u64, u64)>>,
    counters: ByteCounters,
}

/// Opens a tunnel to `h` and splices it to a new TCP connection from the
/// application; `before` runs on the tunnel first.
async fn splice(
    connector: &HboneConnector,
    d: &Domain,
    h: &mut Harness,
    before: impl AsyncFnOnce(&mut Tunnel, &mut Tunnel),
) -> Spliced {
    let mut tunnel = connect_to(connector, d, h.addr(), handoff_target()).await;
    let mut server = h.tunnels.recv().await.unwrap();
    before(&mut tunnel, &mut server).await;
    let (app, mut proxy) = tcp_pair().await;
    let counters = tunnel.counters();
    let copy = tokio::spawn(async move { copy_bidirectional(&mut proxy, &mut tunnel).await });
    Spliced {
        app,
        server,
        copy,
        counters,
    }
}

/// Nothing to do before splicing.
async fn nothing(_: &mut Tunnel, _: &mut Tunnel) {}

#[tokio::test]
async fn splices_megabytes_both_ways_and_counts_them() {
    let d = Domain::new("cluster.local");
    let mut h = default_server(&d).await;
    let connector = HboneConnector::new(ConnectorConfig::default()).unwrap();
    let Spliced {
        mut app,
        mut server,
        copy,
        counters,
    } = splice(&connector, &d, &mut h, nothing).await;

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

/// `first` says `hello` and half-closes; `second` reads it to EOF, then
/// answers `reply` and half-closes; `first` reads that to EOF.
async fn exchange<A, B>(first: &mut A, second: &mut B, hello: &[u8], reply: &[u8])
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    first.write_all(hello).await.unwrap();
    first.shutdown().await.unwrap();
    let mut got = Vec::new();
    second.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, hello);
    // The other direction is still open after the EOF.
    second.write_all(reply).await.unwrap();
    second.shutdown().await.unwrap();
    let mut back = Vec::new();
    first.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, reply);
}

#[tokio::test]
async fn either_side_may_half_close_first() {
    let d = Domain::new("cluster.local");
    let mut h = default_server(&d).await;
    let connector = HboneConnector::new(ConnectorConfig::default()).unwrap();
    for server_first in [true, false] {
        let Spliced {
            mut app,
            mut server,
            copy,
            ..
        } = splice(&connector, &d, &mut h, nothing).await;
        // The proxy shuts down the app's connection for writing when the
        // server half-closes, and half-closes the tunnel at the app's EOF.
        let moved = if server_first {
            exchange(&mut server, &mut app, b"banner", b"still talking").await;
            (13, 6)
        } else {
            exchange(&mut app, &mut server, b"request", b"response after EOF").await;
            (7, 18)
        };
        assert_eq!(copy.await.unwrap().unwrap(), moved);
        drop(server);
    }
    all_closed(&connector, &h.handle).await;
}

#[tokio::test]
async fn bytes_already_read_into_the_tunnel_go_first() {
    let d = Domain::new("cluster.local");
    let mut h = default_server(&d).await;
    let connector = HboneConnector::new(ConnectorConfig::default()).unwrap();
    // The application peeks at the first byte (the rest of the DATA frame
    // stays buffered in the tunnel), then splices.
    let peek = async |tunnel: &mut Tunnel, server: &mut Tunnel| {
        server.write_all(b"hello, world").await.unwrap();
        server.shutdown().await.unwrap();
        let mut first = [0u8; 1];
        tunnel.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"h");
    };
    let Spliced {
        mut app,
        server,
        copy,
        ..
    } = splice(&connector, &d, &mut h, peek).await;
    let mut got = Vec::new();
    app.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"ello, world");
    app.shutdown().await.unwrap();
    assert_eq!(copy.await.unwrap().unwrap(), (0, 11));
    drop(server);
    all_closed(&connector, &h.handle).await;
}

#[tokio::test]
async fn idle_spliced_tunnels_hold_none_of_the_connection_window() {
    let d = Domain::new("cluster.local");
    // Room for two 128 KiB reads in the whole connection window.
    let mut config = ServerConfig::default();
    config.flow_control.connection_window = 256 * 1024;
    config.flow_control.stream_window = 128 * 1024;
    let mut h = start_server(
        d.creds("server"),
        AllowedPeers::TrustDomain(d.td.clone()),
        config,
        None,
    )
    .await;
    let connector = HboneConnector::new(ConnectorConfig::default()).unwrap();
    // Idle tunnels on the connection: their apps send nothing.
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(splice(&connector, &d, &mut h, nothing).await);
    }
    let Spliced {
        mut app,
        mut server,
        copy,
        ..
    } = splice(&connector, &d, &mut h, nothing).await;
    assert_eq!(
        connector.stats().pooled_connections,
        1,
        "one shared connection"
    );
    let up = pattern(1 << 20);
    let sent = up.clone();
    let writer = tokio::spawn(async move {
        app.write_all(&sent).await.unwrap();
        app.shutdown().await.unwrap();
        app
    });
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), server.read_to_end(&mut got))
        .await
        .expect("the busy tunnel is not starved by the idle ones")
        .unwrap();
    assert!(got == up);
    server.shutdown().await.unwrap();
    drop(writer.await.unwrap());
    assert_eq!(copy.await.unwrap().unwrap(), (up.len() as u64, 0));
    drop((idle, server));
    all_closed(&connector, &h.handle).await;
}

#[tokio::test]
async fn how_the_peer_leaves_decides_how_the_copy_ends() {
    let d = Domain::new("cluster.local");
    let mut h = default_server(&d).await;
    let connector = HboneConnector::new(ConnectorConfig::default()).unwrap();
    for early_response in [true, false] {
        let Spliced {
            mut app,
            mut server,
            copy,
            ..
        } = splice(&connector, &d, &mut h, nothing).await;
        app.write_all(b"a request the server ").await.unwrap();
        let mut first = [0u8; 6];
        server.read_exact(&mut first).await.unwrap();
        if early_response {
            // The server answers and goes away without reading the rest:
            // h2 ends the stream with RST_STREAM(NO_ERROR).
            server.write_all(b"done early").await.unwrap();
            server.shutdown().await.unwrap();
            drop(server);
            // The app still gets the answer and its EOF, and the copy ends
            // without an error although the app never closed its side.
            let mut got = Vec::new();
            app.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"done early");
            let moved = tokio::time::timeout(Duration::from_secs(10), copy)
                .await
                .expect("the copy ends")
                .unwrap()
                .unwrap();
            assert_eq!(moved, (21, 10));
        } else {
            // The server goes away mid-stream: RST_STREAM(CANCEL), seen by
            // whichever direction polls first, as a reset by the reader or
            // as a closed pipe by the writer (as `Tunnel` reports them).
            drop(server);
            let err = copy.await.unwrap().unwrap_err();
            assert!(
                matches!(
                    err.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
                ),
                "{err}"
            );
        }
    }
    all_closed(&connector, &h.handle).await;
}

#[tokio::test]
async fn received_bytes_not_yet_written_stay_in_the_tunnel_when_cancelled() {
    let d = Domain::new("cluster.local");
    let mut h = default_server(&d).await;
    let connector = HboneConnector::new(ConnectorConfig::default()).unwrap();
    let mut tunnel = connect_to(&connector, &d, h.addr(), handoff_target()).await;
    let mut server = h.tunnels.recv().await.unwrap();
    server.write_all(b"0123456789abcdef").await.unwrap();
    server.shutdown().await.unwrap();
    // An application connection that takes 8 bytes and then stalls.
    let (mut near, mut far) = tokio::io::duplex(8);
    let stalled = tokio::time::timeout(
        Duration::from_millis(300),
        copy_bidirectional(&mut near, &mut tunnel),
    )
    .await;
    assert!(stalled.is_err(), "the copy stalls on the full connection");
    let mut taken = [0u8; 8];
    far.read_exact(&mut taken).await.unwrap();
    assert_eq!(&taken, b"01234567");
    // The rest is still the tunnel's to read.
    let mut rest = Vec::new();
    tunnel.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, b"89abcdef");
    assert_eq!(tunnel.counters().read(), 16);
    drop((tunnel, server));
    all_closed(&connector, &h.handle).await;
}
