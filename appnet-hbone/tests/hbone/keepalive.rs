//! PING keepalive on both sides, in paused time: a peer that stops
//! answering is dropped after interval + timeout, and its streams fail.

use std::sync::Arc;
use std::time::Duration;

use appnet_hbone::{ConnectRequest, ConnectorConfig, HboneConnector};
use appnet_identity::tls::{self, AllowedPeers};
use http::{Method, Request, Response};
use rustls::pki_types::ServerName;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::common::*;

#[tokio::test]
async fn client_drops_a_peer_that_stops_answering_pings() {
    let d = Domain::new("cluster.local");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = tls::server_config(
        d.creds("server"),
        AllowedPeers::AnyTrusted,
        vec![b"h2".to_vec()],
    )
    .unwrap();
    let (got_200_tx, got_200) = oneshot::channel::<()>();
    let (silent_tx, silent) = oneshot::channel();
    let (_hold_tx, hold) = oneshot::channel::<()>();
    // A peer that serves one CONNECT, then never polls its connection again
    // (so never answers a PING), keeping the socket open.
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let tls = tokio_rustls::TlsAcceptor::from(Arc::new(config))
            .accept(tcp)
            .await
            .unwrap();
        let mut conn = h2::server::handshake(tls).await.unwrap();
        let (_req, mut respond) = conn.accept().await.unwrap().unwrap();
        let stream = respond.send_response(Response::new(()), false).unwrap();
        // Drive the connection until the client has the 200, then go
        // silent.
        tokio::select! {
            _ = conn.accept() => panic!("unexpected second stream or close"),
            _ = got_200 => {}
        }
        let _ = silent_tx.send(());
        let _ = hold.await;
        drop((stream, conn));
    });

    let connector = HboneConnector::new(ConnectorConfig::default()).unwrap();
    let mut t = connector
        .connect(
            &d.creds("client"),
            &peer(addr, d.id("server")),
            ConnectRequest::new(echo_target()),
        )
        .await
        .unwrap();
    got_200_tx.send(()).unwrap();
    silent.await.unwrap();

    tokio::time::pause();
    let start = Instant::now();
    let mut buf = [0u8; 1];
    let r = t.read(&mut buf).await;
    assert!(
        r.is_err(),
        "stream must fail when keepalive gives up: {r:?}"
    );
    let waited = start.elapsed();
    // First PING after 10 s, no PONG within 20 s.
    assert!(
        waited >= Duration::from_secs(30) && waited < Duration::from_secs(31),
        "{waited:?}"
    );
    settle("connection forgotten", || {
        connector.stats().pooled_connections == 0
    })
    .await;
}

#[tokio::test]
async fn server_drops_a_client_that_stops_answering_pings() {
    let d = Domain::new("cluster.local");
    let h = default_server(&d).await;
    let config = tls::client_config(
        d.creds("client"),
        AllowedPeers::Exactly(d.id("server")),
        vec![b"h2".to_vec()],
    )
    .unwrap();
    let tcp = TcpStream::connect(h.addr()).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    let (send, mut conn) = h2::client::handshake(tls).await.unwrap();
    let mut req = Request::new(());
    *req.method_mut() = Method::CONNECT;
    *req.uri_mut() = "echo.test:80".parse().unwrap();
    let mut send = send.ready().await.unwrap();
    let (resp, _stream) = send.send_request(req, false).unwrap();
    // Drive the connection only until the 200 arrives; then never again.
    let resp = tokio::select! {
        r = resp => r.unwrap(),
        r = &mut conn => panic!("connection ended early: {r:?}"),
    };
    assert_eq!(resp.status(), 200);
    settle("tunnel open", || h.handle.stats().tunnels == 1).await;

    tokio::time::pause();
    tokio::time::sleep(Duration::from_secs(31)).await;
    tokio::time::resume();
    settle("silent client dropped", || {
        h.handle.stats() == Default::default()
    })
    .await;
    drop((send, conn));
}
