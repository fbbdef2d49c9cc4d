//! Real rustls mutual TLS over TCP on loopback with CA-issued SVIDs:
//! identities seen on both sides, a rotation mid-stream, and rejected peers.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use appnet_identity::tls::{self, AllowedPeers, Credentials, CredentialsReceiver};
use appnet_identity::{CertificateAuthority, SpiffeBundle, SpiffeId, TrustBundle, TrustDomain};
use rustls::HandshakeKind;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::{TlsAcceptor, TlsConnector};

const TTL: Duration = Duration::from_secs(3600);

struct Domain {
    td: TrustDomain,
    ca: CertificateAuthority,
}

impl Domain {
    fn new(name: &str) -> Self {
        let td: TrustDomain = name.parse().unwrap();
        let now = SystemTime::now() - Duration::from_secs(60);
        let root = CertificateAuthority::generate_root(td.clone(), now, 100 * TTL).unwrap();
        let ca = root.issue_intermediate("c1", now, 50 * TTL).unwrap();
        Self { td, ca }
    }

    fn id(&self, sa: &str) -> SpiffeId {
        SpiffeId::istio(self.td.clone(), "default", sa).unwrap()
    }

    fn creds(&self, sa: &str, bundle: &TrustBundle) -> Credentials {
        let now = SystemTime::now() - Duration::from_secs(60);
        let svid = self.ca.issue_svid(&self.id(sa), now, TTL).unwrap();
        Credentials::new(svid, bundle.clone()).unwrap()
    }

    fn bundle(&self) -> SpiffeBundle {
        self.ca.bundle().unwrap()
    }
}

/// An echo server: returns the peer identity it saw for each connection.
async fn echo_server(
    creds: CredentialsReceiver,
    allowed: AllowedPeers,
) -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<Result<SpiffeId, String>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = tls::server_config(creds, allowed, vec![b"h2".to_vec()]).unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match acceptor.accept(tcp).await {
                    Ok(mut stream) => {
                        let (_, conn) = stream.get_ref();
                        assert_eq!(conn.alpn_protocol(), Some(&b"h2"[..]));
                        let id = tls::peer_identity(conn).ok_or("no peer identity");
                        let _ = tx.send(id.map_err(str::to_owned));
                        let mut buf = [0u8; 1024];
                        loop {
                            match stream.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    if stream.write_all(&buf[..n]).await.is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                    }
                }
            });
        }
    });
    (addr, rx)
}

async fn dial(
    addr: std::net::SocketAddr,
    creds: CredentialsReceiver,
    allowed: AllowedPeers,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let config = tls::client_config(creds, allowed, vec![b"h2".to_vec()]).unwrap();
    let connector = TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await?;
    // The name is irrelevant: the SPIFFE ID decides.
    let name = ServerName::try_from("ignored.invalid").unwrap();
    connector.connect(name, tcp).await
}

async fn echo(stream: &mut tokio_rustls::client::TlsStream<TcpStream>, msg: &[u8]) -> Vec<u8> {
    stream.write_all(msg).await.unwrap();
    let mut buf = vec![0u8; msg.len()];
    stream.read_exact(&mut buf).await.unwrap();
    buf
}

#[tokio::test]
async fn mutual_identities_and_rotation_mid_stream() {
    let d = Domain::new("cluster.local");
    let bundle = TrustBundle::from(d.bundle());
    let (server_tx, server_rx) = watch::channel(Arc::new(d.creds("server", &bundle)));
    let client_creds = tls::fixed(d.creds("client", &bundle));
    let (addr, mut seen) = echo_server(server_rx, AllowedPeers::TrustDomain(d.td.clone())).await;

    let mut first = dial(
        addr,
        client_creds.clone(),
        AllowedPeers::Exactly(d.id("server")),
    )
    .await
    .unwrap();
    assert_eq!(seen.recv().await.unwrap().unwrap(), d.id("client"));
    let (_, conn) = first.get_ref();
    assert_eq!(tls::peer_identity(conn), Some(d.id("server")));
    assert_eq!(conn.handshake_kind(), Some(HandshakeKind::Full));
    let first_leaf = conn.peer_certificates().unwrap()[0].clone();
    assert_eq!(
        echo(&mut first, b"before rotation").await,
        b"before rotation"
    );

    // Rotate the server's certificate.
    let rotated = d.creds("server", &bundle);
    let rotated_leaf = rotated.svid().chain()[0].clone();
    assert_ne!(rotated_leaf, first_leaf);
    server_tx.send(Arc::new(rotated)).unwrap();

    // New connections get the new certificate, with a full handshake (no
    // resumption that could skip verification)...
    let mut second = dial(addr, client_creds, AllowedPeers::Exactly(d.id("server")))
        .await
        .unwrap();
    assert_eq!(seen.recv().await.unwrap().unwrap(), d.id("client"));
    let (_, conn) = second.get_ref();
    assert_eq!(conn.peer_certificates().unwrap()[0], rotated_leaf);
    assert_eq!(conn.handshake_kind(), Some(HandshakeKind::Full));
    assert_eq!(echo(&mut second, b"new").await, b"new");
    // ...and the old connection keeps working.
    assert_eq!(echo(&mut first, b"after rotation").await, b"after rotation");
}

#[tokio::test]
async fn peer_from_untrusted_trust_domain_is_rejected() {
    let home = Domain::new("cluster.local");
    let other = Domain::new("other.mesh");
    let home_bundle = TrustBundle::from(home.bundle());
    let (addr, mut seen) = echo_server(
        tls::fixed(home.creds("server", &home_bundle)),
        AllowedPeers::TrustDomain(home.td.clone()),
    )
    .await;
    // The stranger trusts us, but we don't know its trust domain.
    let both = TrustBundle::from_bundles([home.bundle(), other.bundle()]).unwrap();
    let stranger = tls::fixed(other.creds("intruder", &both));
    let res = dial(addr, stranger, AllowedPeers::AnyTrusted).await;
    let server_side = seen.recv().await.unwrap();
    let err = server_side.unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");
    // The client learns of it at the latest on first use.
    if let Ok(mut s) = res {
        let _ = s.write_all(b"x").await;
        let mut buf = [0u8; 1];
        assert!(matches!(s.read(&mut buf).await, Ok(0) | Err(_)));
    }
}

#[tokio::test]
async fn federated_peer_outside_allowed_set_is_rejected() {
    let home = Domain::new("cluster.local");
    let other = Domain::new("other.mesh");
    let both = TrustBundle::from_bundles([home.bundle(), other.bundle()]).unwrap();
    // The server trusts both roots but only admits its own trust domain.
    let (addr, mut seen) = echo_server(
        tls::fixed(home.creds("server", &both)),
        AllowedPeers::TrustDomain(home.td.clone()),
    )
    .await;
    let _ = dial(
        addr,
        tls::fixed(other.creds("guest", &both)),
        AllowedPeers::AnyTrusted,
    )
    .await;
    let err = seen.recv().await.unwrap().unwrap_err();
    assert!(
        err.contains("PeerNotAllowed") && err.contains("other.mesh"),
        "{err}"
    );

    // With AnyTrusted the same federated peer is let in.
    let (addr, mut seen) = echo_server(
        tls::fixed(home.creds("server", &both)),
        AllowedPeers::AnyTrusted,
    )
    .await;
    let mut ok = dial(
        addr,
        tls::fixed(other.creds("guest", &both)),
        AllowedPeers::AnyTrusted,
    )
    .await
    .unwrap();
    assert_eq!(seen.recv().await.unwrap().unwrap(), other.id("guest"));
    assert_eq!(echo(&mut ok, b"hi").await, b"hi");
}

#[tokio::test]
async fn client_rejects_unexpected_server_identity() {
    let d = Domain::new("cluster.local");
    let bundle = TrustBundle::from(d.bundle());
    let (addr, _seen) = echo_server(
        tls::fixed(d.creds("impostor", &bundle)),
        AllowedPeers::AnyTrusted,
    )
    .await;
    let err = dial(
        addr,
        tls::fixed(d.creds("client", &bundle)),
        AllowedPeers::AnyOf(vec![d.id("server"), d.id("server2")]),
    )
    .await
    .unwrap_err();
    // The typed reason survives through rustls and the io::Error.
    let rustls_err = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .expect("a rustls error");
    let rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) = rustls_err
    else {
        panic!("unexpected {rustls_err:?}");
    };
    let not_allowed = other.0.downcast_ref::<tls::PeerNotAllowed>().unwrap();
    assert_eq!(not_allowed.0, d.id("impostor"));
}

#[tokio::test]
async fn trust_bundle_update_takes_effect_for_new_handshakes() {
    // Root rotation seen by a server: first it trusts only the old root,
    // then old + new, then new only.
    let old = Domain::new("cluster.local");
    let new = Domain::new("cluster.local");
    let only_old = TrustBundle::from(old.bundle());
    let both = TrustBundle::from(
        SpiffeBundle::new(
            old.td.clone(),
            vec![old.ca.root().clone(), new.ca.root().clone()],
        )
        .unwrap(),
    );
    let only_new = TrustBundle::from(new.bundle());
    let server_svid = old.creds("server", &only_old);
    let (tx, rx) = watch::channel(Arc::new(server_svid));
    let (addr, mut seen) = echo_server(rx, AllowedPeers::AnyTrusted).await;
    let new_client = tls::fixed(new.creds("client", &both));

    let _ = dial(addr, new_client.clone(), AllowedPeers::AnyTrusted).await;
    assert!(
        seen.recv().await.unwrap().is_err(),
        "new root not trusted yet"
    );

    tx.send(Arc::new(
        Credentials::new(old.creds("server", &both).svid().clone(), both.clone()).unwrap(),
    ))
    .unwrap();
    let mut s = dial(addr, new_client.clone(), AllowedPeers::AnyTrusted)
        .await
        .unwrap();
    assert_eq!(seen.recv().await.unwrap().unwrap(), new.id("client"));
    assert_eq!(echo(&mut s, b"ok").await, b"ok");

    // Server moves to a new-root SVID and drops the old root.
    tx.send(Arc::new(new.creds("server", &only_new))).unwrap();
    let old_client = tls::fixed(old.creds("client", &both));
    let _ = dial(addr, old_client, AllowedPeers::AnyTrusted).await;
    assert!(
        seen.recv().await.unwrap().is_err(),
        "old root no longer trusted"
    );
    // The connection made before still works.
    assert_eq!(echo(&mut s, b"still").await, b"still");
}
