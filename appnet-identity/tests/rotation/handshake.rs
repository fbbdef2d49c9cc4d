//! Rotation seen through real TLS: new handshakes present the new SVID and
//! connections made before carry on.
//!
//! rustls checks validity against the real clock, so certificates here are
//! issued at real time and the driver reads [`SystemClock`]; tokio's time is
//! still paused, so the driver's half-life sleep passes the moment the test
//! waits for a change.

use std::sync::Arc;
use std::time::Duration;

use appnet_identity::rotation::{
    CertificateSource, Clock, RefreshPolicy, Renewal, RotationHandle, SystemClock,
};
use appnet_identity::tls::{self, AllowedPeers};
use appnet_identity::{CaError, CertificateAuthority, CertificateDer, SpiffeId, TrustBundle};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_rustls::{TlsAcceptor, TlsConnector, client, server};

const DAY: Duration = Duration::from_secs(86400);

struct RealTimeCa {
    ca: Arc<CertificateAuthority>,
    id: SpiffeId,
}

impl CertificateSource for RealTimeCa {
    type Error = CaError;

    async fn fetch(&self) -> Result<Renewal, CaError> {
        Ok(self.ca.issue_svid(&self.id, SystemClock.now(), DAY)?.into())
    }
}

async fn connect(
    acceptor: &TlsAcceptor,
    connector: &TlsConnector,
) -> (
    client::TlsStream<DuplexStream>,
    server::TlsStream<DuplexStream>,
) {
    let (near, far) = tokio::io::duplex(64 * 1024);
    let name = ServerName::try_from("ignored.invalid").unwrap();
    let (c, s) = tokio::join!(connector.connect(name, near), acceptor.accept(far));
    (c.unwrap(), s.unwrap())
}

fn presented(conn: &client::TlsStream<DuplexStream>) -> CertificateDer<'static> {
    conn.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

async fn ping(
    c: &mut client::TlsStream<DuplexStream>,
    s: &mut server::TlsStream<DuplexStream>,
    msg: &[u8; 4],
) {
    c.write_all(msg).await.unwrap();
    c.flush().await.unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, msg);
}

#[tokio::test(start_paused = true)]
async fn new_handshakes_use_the_rotated_svid_and_live_connections_survive() {
    let now = SystemClock.now();
    let td = "cluster.local".parse().unwrap();
    let ca = Arc::new(CertificateAuthority::generate_root(td, now - DAY, 7 * DAY).unwrap());
    let bundle = TrustBundle::from(ca.bundle().unwrap());
    let client_id: SpiffeId = "spiffe://cluster.local/ns/a/sa/client".parse().unwrap();
    let client_svid = ca.issue_svid(&client_id, now, DAY).unwrap();
    let client_creds = tls::Credentials::new(client_svid, bundle.clone()).unwrap();

    let source = RealTimeCa {
        ca: Arc::clone(&ca),
        id: "spiffe://cluster.local/ns/b/sa/server".parse().unwrap(),
    };
    let mut policy = RefreshPolicy::default();
    policy.jitter = 0.0;
    let rotation = RotationHandle::start(source, bundle, SystemClock, policy).await;
    let mut rx = rotation.credentials();
    let server = tls::server_config(rx.clone(), AllowedPeers::AnyTrusted, vec![]).unwrap();
    let client =
        tls::client_config(tls::fixed(client_creds), AllowedPeers::AnyTrusted, vec![]).unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(server));
    let connector = TlsConnector::from(Arc::new(client));

    let (mut c1, mut s1) = connect(&acceptor, &connector).await;
    let first = rx.borrow_and_update().svid().chain()[0].clone();
    assert_eq!(presented(&c1), first);

    // Paused time jumps over the half-life sleep: a rotation.
    rx.changed().await.unwrap();
    let second = rx.borrow_and_update().svid().chain()[0].clone();
    assert_ne!(second, first);

    let (mut c2, mut s2) = connect(&acceptor, &connector).await;
    assert_eq!(presented(&c2), second);
    // The connection made before the rotation still works, on its old SVID.
    ping(&mut c1, &mut s1, b"old!").await;
    assert_eq!(presented(&c1), first);
    ping(&mut c2, &mut s2, b"new!").await;
    rotation.stop().await;
}
