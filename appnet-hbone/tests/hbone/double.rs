//! Double HBONE through an east-west gateway that must not see plaintext.

use appnet_hbone::{
    ConnectRequest, ConnectorConfig, GatewayForwarder, HboneConnector, HbonePeer, HboneServer,
    Refusal, ServerConfig,
};
use appnet_identity::tls::AllowedPeers;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use crate::common::*;

/// A TCP relay to `to` that reports every byte it carried toward `to`.
async fn tap(to: std::net::SocketAddr) -> (std::net::SocketAddr, oneshot::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let (inbound, _) = listener.accept().await.unwrap();
        let outbound = TcpStream::connect(to).await.unwrap();
        let (mut in_rd, mut in_wr) = inbound.into_split();
        let (mut out_rd, mut out_wr) = outbound.into_split();
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut out_rd, &mut in_wr).await;
        });
        let mut seen = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match in_rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    seen.extend_from_slice(&buf[..n]);
                    if out_wr.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = tx.send(seen);
    });
    (addr, rx)
}

#[tokio::test]
async fn inner_mtls_runs_end_to_end_through_the_gateway() {
    let d = Domain::new("cluster.local");
    let mut dest = start_server(
        d.creds("server"),
        AllowedPeers::TrustDomain(d.td.clone()),
        ServerConfig::default(),
        None,
    )
    .await;
    let (tap_addr, carried) = tap(dest.addr()).await;
    let forwarder = GatewayForwarder::new(move |req| {
        if req.authority().to_string() == "db.prod.svc.cluster.local:5432" {
            Ok(tap_addr)
        } else {
            Err(Refusal::BadRequest)
        }
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = HboneServer::new(
        d.creds("gateway"),
        AllowedPeers::TrustDomain(d.td.clone()),
        ServerConfig::default(),
        forwarder,
    )
    .unwrap()
    .serve(listener)
    .unwrap();
    let gw_peer = HbonePeer::new(gateway.local_addr(), d.id("gateway"));

    let connector = HboneConnector::new(ConnectorConfig::default()).unwrap();
    let client = d.creds("client");
    let mut t = connector
        .connect_double(
            &client,
            &gw_peer,
            ConnectRequest::new("db.prod.svc.cluster.local:5432".parse().unwrap()),
            &[d.id("server")],
            ConnectRequest::new(echo_target()).forwarded_network("network-west"),
        )
        .await
        .unwrap();
    // The inner session is with the final peer, which sees the client
    // itself (not the gateway) and the origin network.
    assert_eq!(t.peer_identity(), &d.id("server"));
    let seen = dest.seen.recv().await.unwrap();
    assert_eq!(seen.peer, d.id("client"));
    assert_eq!(seen.network.as_deref(), Some("network-west"));
    assert_eq!(seen.authority, echo_target());

    let secret: Vec<u8> = b"plaintext the gateway must never see; "
        .iter()
        .copied()
        .cycle()
        .take(200_000)
        .collect();
    t.write_all(&secret).await.unwrap();
    t.shutdown().await.unwrap();
    let mut back = Vec::new();
    t.read_to_end(&mut back).await.unwrap();
    assert!(back == secret);
    drop(t);

    let carried = carried.await.unwrap();
    assert!(
        carried.len() > secret.len(),
        "all of it went through the gateway"
    );
    assert_eq!(carried[0], 0x16, "a TLS handshake record starts the flow");
    let needle = &secret[..32];
    assert!(
        !carried.windows(needle.len()).any(|w| w == needle),
        "plaintext leaked through the gateway"
    );

    // An unknown service is refused by the gateway's route.
    let err = connector
        .connect_double(
            &client,
            &gw_peer,
            ConnectRequest::new("unknown.svc:80".parse().unwrap()),
            &[d.id("server")],
            ConnectRequest::new(echo_target()),
        )
        .await
        .unwrap_err();
    assert_eq!(err.refusal(), Some(Refusal::BadRequest));

    settle("inner connection closed", || {
        connector.stats().direct_connections == 0
    })
    .await;
    all_closed(&connector, &gateway).await;
    settle("destination tunnels closed", || {
        dest.handle.stats().tunnels == 0
    })
    .await;
}
