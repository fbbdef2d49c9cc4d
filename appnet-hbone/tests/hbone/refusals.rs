//! What the server turns away, and how the client learns of it.

use std::sync::Arc;

use appnet_hbone::{
    ConnectRequest, ConnectorConfig, HboneConnector, HboneError, Refusal, ServerConfig,
};
use appnet_identity::TrustBundle;
use appnet_identity::tls::{self, AllowedPeers, CredentialsReceiver};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::*;

/// A bare h2 client over appnet mTLS, to send what the connector never
/// would.
async fn raw_h2(
    addr: std::net::SocketAddr,
    creds: CredentialsReceiver,
    server: appnet_identity::SpiffeId,
) -> h2::client::SendRequest<Bytes> {
    let config =
        tls::client_config(creds, AllowedPeers::Exactly(server), vec![b"h2".to_vec()]).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    let (send, conn) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

async fn status_of(send: &mut h2::client::SendRequest<Bytes>, req: Request<()>) -> StatusCode {
    let mut ready = send.clone().ready().await.unwrap();
    let (resp, _stream) = ready.send_request(req, false).unwrap();
    resp.await.unwrap().status()
}

#[tokio::test]
async fn non_connect_is_405_and_bad_authority_is_400() {
    let d = Domain::new("cluster.local");
    let h = default_server(&d).await;
    let mut send = raw_h2(h.addr(), d.creds("client"), d.id("server")).await;

    let get = Request::builder()
        .method(Method::GET)
        .uri("https://10.0.0.1:80/")
        .body(())
        .unwrap();
    assert_eq!(
        status_of(&mut send, get).await,
        StatusCode::METHOD_NOT_ALLOWED
    );

    for bad in ["10.0.0.1", "10.0.0.1:0", "not_a host:80"] {
        let Ok(uri) = bad.parse::<http::Uri>() else {
            continue;
        };
        let mut req = Request::new(());
        *req.method_mut() = Method::CONNECT;
        *req.uri_mut() = uri;
        assert_eq!(
            status_of(&mut send, req).await,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
    // The connection is still good for a proper CONNECT.
    let mut req = Request::new(());
    *req.method_mut() = Method::CONNECT;
    *req.uri_mut() = "echo.test:80".parse().unwrap();
    assert_eq!(status_of(&mut send, req).await, StatusCode::OK);
    assert_eq!(h.handle.stats().connections, 1);
}

#[tokio::test]
async fn denied_and_upstream_failure_are_typed_errors() {
    let d = Domain::new("cluster.local");
    let h = default_server(&d).await;
    let connector = HboneConnector::new(ConnectorConfig::default()).unwrap();
    let creds = d.creds("client");
    let target = peer(h.addr(), d.id("server"));

    let err = connector
        .connect(&creds, &target, ConnectRequest::new(deny_target()))
        .await
        .unwrap_err();
    assert!(err.is_denied(), "{err}");
    assert_eq!(err.refusal(), Some(Refusal::Denied));

    // A port nothing listens on (bound, then released).
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let err = connector
        .connect(&creds, &target, ConnectRequest::new(closed.into()))
        .await
        .unwrap_err();
    assert!(err.is_upstream_unavailable(), "{err}");
    assert_eq!(
        Refusal::UpstreamUnavailable.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );

    // Refusals cost no connection: both went over the one pooled one, and
    // no tunnel is left behind on either side.
    assert_eq!(connector.stats().pooled_connections, 1);
    all_closed(&connector, &h.handle).await;
}

#[tokio::test]
async fn client_from_another_trust_domain_is_refused() {
    let home = Domain::new("cluster.local");
    let other = Domain::new("other.mesh");
    let both = TrustBundle::from_bundles([home.bundle(), other.bundle()]).unwrap();
    // The server trusts both roots but admits only its own trust domain.
    let h = start_server(
        home.creds_with("server", &both),
        AllowedPeers::TrustDomain(home.td.clone()),
        ServerConfig::default(),
        None,
    )
    .await;
    let connector = HboneConnector::new(ConnectorConfig::default()).unwrap();
    let err = connector
        .connect(
            &other.creds_with("guest", &both),
            &peer(h.addr(), home.id("server")),
            ConnectRequest::new(echo_target()),
        )
        .await
        .unwrap_err();
    // TLS 1.3: the client may finish its handshake before the server's
    // alert arrives, so the failure can surface in HTTP/2 setup.
    assert!(
        matches!(err, HboneError::Pooled(ref e) if matches!(**e, HboneError::Tls(_) | HboneError::Http2(_))),
        "{err:?}"
    );
    assert_eq!(h.handle.stats().tunnels, 0);
    settle("failed dial forgotten", || {
        connector.stats().pooled_connections == 0
    })
    .await;
    settle("server connection closed", || {
        h.handle.stats().connections == 0
    })
    .await;
}

#[tokio::test]
async fn server_from_another_trust_domain_is_refused_by_the_client() {
    let home = Domain::new("cluster.local");
    let other = Domain::new("other.mesh");
    let both = TrustBundle::from_bundles([home.bundle(), other.bundle()]).unwrap();
    let h = start_server(
        other.creds_with("server", &both),
        AllowedPeers::AnyTrusted,
        ServerConfig::default(),
        None,
    )
    .await;
    let connector = HboneConnector::new(ConnectorConfig::default()).unwrap();
    // The client expects its own trust domain's server identity.
    let err = connector
        .connect(
            &home.creds_with("client", &both),
            &peer(h.addr(), home.id("server")),
            ConnectRequest::new(echo_target()),
        )
        .await
        .unwrap_err();
    assert!(err.is_tls(), "{err:?}");
    assert_eq!(connector.stats(), Default::default());
    settle("server connection closed", || {
        h.handle.stats().connections == 0
    })
    .await;
}

#[derive(Debug)]
struct AcceptAnything;

impl rustls::client::danger::ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        tls::provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[tokio::test]
async fn tls_without_client_certificate_is_refused() {
    let d = Domain::new("cluster.local");
    let h = default_server(&d).await;
    let mut config = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnything))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(h.addr()).await.unwrap();
    let outcome = async {
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
            .await?;
        // The HTTP/2 preface; the server must answer nothing but an alert.
        tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await?;
        let mut buf = [0u8; 64];
        tls.read(&mut buf).await
    }
    .await;
    assert!(matches!(outcome, Ok(0) | Err(_)), "{outcome:?}");
    settle("server connection closed", || {
        h.handle.stats().connections == 0
    })
    .await;
    assert_eq!(h.handle.stats().tunnels, 0);
}

#[tokio::test]
async fn plain_http1_to_the_port_is_refused() {
    let d = Domain::new("cluster.local");
    let h = default_server(&d).await;
    let mut tcp = TcpStream::connect(h.addr()).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    // The server closes; whatever it sent is no HTTP response.
    let _ = tcp.read_to_end(&mut reply).await;
    assert!(!reply.starts_with(b"HTTP/"), "{reply:?}");
    settle("server connection closed", || {
        h.handle.stats().connections == 0
    })
    .await;

    // And the server is still serving.
    let connector = HboneConnector::new(ConnectorConfig::default()).unwrap();
    let mut t = connect_to(&connector, &d, h.addr(), echo_target()).await;
    t.write_all(b"ok").await.unwrap();
    t.shutdown().await.unwrap();
    let mut back = Vec::new();
    t.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, b"ok");
}

#[tokio::test]
async fn connections_over_the_limit_are_closed_and_others_unaffected() {
    let d = Domain::new("cluster.local");
    let mut config = ServerConfig::default();
    config.max_connections = 1;
    let h = start_server(d.creds("server"), AllowedPeers::AnyTrusted, config, None).await;
    let target = peer(h.addr(), d.id("server"));
    let first = HboneConnector::new(ConnectorConfig::default()).unwrap();
    let mut t = first
        .connect(
            &d.creds("client"),
            &target,
            ConnectRequest::new(echo_target()),
        )
        .await
        .unwrap();
    // A second connector needs a second connection: over the limit.
    let second = HboneConnector::new(ConnectorConfig::default()).unwrap();
    let err = second
        .connect(
            &d.creds("client"),
            &target,
            ConnectRequest::new(echo_target()),
        )
        .await
        .unwrap_err();
    assert!(err.refusal().is_none(), "{err}");
    assert_eq!(h.handle.stats().connections, 1);
    // The admitted connection is untouched.
    t.write_all(b"first").await.unwrap();
    let mut back = [0u8; 5];
    t.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"first");
    // Once it goes, a new one is admitted.
    drop(t);
    drop(first);
    settle("first connection closed", || {
        h.handle.stats().connections == 0
    })
    .await;
    let mut t = second
        .connect(
            &d.creds("client"),
            &target,
            ConnectRequest::new(echo_target()),
        )
        .await
        .unwrap();
    t.write_all(b"second").await.unwrap();
    let mut back = [0u8; 6];
    t.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"second");
}

#[tokio::test]
async fn a_boxed_non_sync_service_serves() {
    // `BoxCloneService` is `Send` but not `Sync`: the server clones the
    // service per connection and per stream instead of sharing it.
    let service: tower::util::BoxCloneService<
        appnet_hbone::InboundRequest,
        appnet_hbone::InboundDecision,
        std::convert::Infallible,
    > = tower::util::BoxCloneService::new(tower::service_fn(
        |_req: appnet_hbone::InboundRequest| async {
            Ok::<_, std::convert::Infallible>(appnet_hbone::InboundDecision::deny())
        },
    ));
    let d = Domain::new("cluster.local");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let handle = appnet_hbone::HboneServer::new(
        d.creds("server"),
        AllowedPeers::AnyTrusted,
        ServerConfig::default(),
        service,
    )
    .unwrap()
    .serve(listener)
    .unwrap();
    let connector = HboneConnector::new(ConnectorConfig::default()).unwrap();
    let err = connector
        .connect(
            &d.creds("client"),
            &peer(handle.local_addr(), d.id("server")),
            ConnectRequest::new(echo_target()),
        )
        .await
        .unwrap_err();
    assert!(err.is_denied(), "{err}");
}
