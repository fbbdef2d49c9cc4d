//! `copy_bidirectional`: a TCP connection spliced to a tunnel, as a node
//! proxy runs it.

use std::io::ErrorKind;

use appnet_hbone::{ByteCounters, ConnectorConfig, HboneConnector, Tunnel, copy_bidirectional};
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
async fn a_reset_by_the_peer_ends_the_copy_with_an_error() {
    let d = Domain::new("cluster.local");
    let mut h = default_server(&d).await;
    let connector = HboneConnector::new(ConnectorConfig::default()).unwrap();
    let Spliced {
        mut app,
        mut server,
        copy,
        ..
    } = splice(&connector, &d, &mut h, nothing).await;
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
