//! The Istio CSR API end to end: real gRPC over real SPIFFE mTLS on
//! loopback, signed by a real CA hierarchy.
#![cfg(feature = "istio-ca")]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use appnet_identity::istio_ca::proto::{
    IstioCertificateRequest, IstioCertificateResponse, IstioCertificateServiceClient, SERVICE_NAME,
};
use appnet_identity::istio_ca::{
    self, Authenticator, Authorizer, IMPERSONATED_IDENTITY, IstioCaClient, IstioCaError,
    IstioCaServer, MtlsPeer, NodeAuthorizer, SelfOnly, StaticTokens,
};
use appnet_identity::tls::{self, AllowedPeers, Credentials};
use appnet_identity::{
    CertificateAuthority, CertificateDer, CertificateSigningRequest, SpiffeId, Svid, TrustBundle,
    WorkloadKey, verify_svid,
};
use prost::{Message, Name};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tonic::Code;
use tonic::transport::Channel;

const HOUR: Duration = Duration::from_secs(3600);

fn id(s: &str) -> SpiffeId {
    s.parse().unwrap()
}

fn istiod() -> SpiffeId {
    id("spiffe://cluster.local/ns/istio-system/sa/istiod")
}

/// A root, and the per-cluster intermediate that signs workloads.
struct Pki {
    root: CertificateAuthority,
    cluster: Arc<CertificateAuthority>,
    bundle: TrustBundle,
}

impl Pki {
    fn new() -> Self {
        let now = SystemTime::now();
        let td = "cluster.local".parse().unwrap();
        let root = CertificateAuthority::generate_root(td, now, 48 * HOUR).unwrap();
        let cluster = root.issue_intermediate("east", now, 24 * HOUR).unwrap();
        let bundle = TrustBundle::from(root.bundle().unwrap());
        Self {
            root,
            cluster: Arc::new(cluster),
            bundle,
        }
    }

    fn credentials(&self, who: &SpiffeId) -> Credentials {
        let svid = self
            .cluster
            .issue_svid(who, SystemTime::now(), HOUR)
            .unwrap();
        Credentials::new(svid, self.bundle.clone()).unwrap()
    }
}

/// A running CA server on an ephemeral loopback port.
struct Running {
    addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), istio_ca::ServeError>>,
}

impl Running {
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.unwrap().unwrap();
    }
}

async fn start<A: Authenticator, Z: Authorizer>(pki: &Pki, server: IstioCaServer<A, Z>) -> Running {
    let config = tls::server_config(
        tls::fixed(pki.credentials(&istiod())),
        AllowedPeers::AnyTrusted,
        vec![b"h2".to_vec()],
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(istio_ca::serve_mtls(
        listener,
        Arc::new(config),
        tonic::service::Routes::new(server.into_service()),
        async move {
            let _ = stopped.await;
        },
    ));
    Running {
        addr,
        stop: Some(stop),
        task,
    }
}

async fn channel_as(pki: &Pki, running: &Running, who: &SpiffeId) -> Channel {
    let config = tls::client_config(
        tls::fixed(pki.credentials(who)),
        AllowedPeers::Exactly(istiod()),
        vec![b"h2".to_vec()],
    )
    .unwrap();
    let uri = format!("http://{}", running.addr);
    istio_ca::connect_mtls(uri.parse().unwrap(), Arc::new(config))
        .await
        .unwrap()
}

async fn client_as(pki: &Pki, running: &Running, who: &SpiffeId) -> IstioCaClient {
    IstioCaClient::new(channel_as(pki, running, who).await)
}

/// The leaf's SubjectPublicKeyInfo, DER.
fn leaf_spki(chain: &[CertificateDer<'_>]) -> Vec<u8> {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&chain[0]).unwrap();
    cert.public_key().raw.to_vec()
}

fn csr_spki(csr: &CertificateSigningRequest) -> Vec<u8> {
    use x509_parser::prelude::FromDer;
    let (_, req) =
        x509_parser::certification_request::X509CertificationRequest::from_der(csr.der()).unwrap();
    req.certification_request_info.subject_pki.raw.to_vec()
}

fn code(result: Result<Vec<CertificateDer<'static>>, IstioCaError>) -> Option<Code> {
    match result {
        Ok(_) => None,
        Err(e) => Some(e.code().unwrap_or_else(|| panic!("not a status: {e}"))),
    }
}

#[tokio::test]
async fn workload_gets_its_own_identity_whatever_the_csr_asks() {
    let pki = Pki::new();
    let running = start(
        &pki,
        IstioCaServer::new(pki.cluster.clone(), MtlsPeer, SelfOnly),
    )
    .await;
    let web = id("spiffe://cluster.local/ns/default/sa/web");
    let mut client = client_as(&pki, &running, &web).await;

    // The CSR asks for another identity; the certificate says the caller's.
    let key = WorkloadKey::generate().unwrap();
    let csr = key
        .csr(&id("spiffe://cluster.local/ns/kube-system/sa/admin"))
        .unwrap();
    let chain = client.create_certificate(&csr, HOUR, None).await.unwrap();

    assert_eq!(chain.len(), 3, "leaf, cluster intermediate, root");
    assert_eq!(&chain[1], pki.cluster.certificate());
    assert_eq!(&chain[2], pki.root.certificate());
    let verified = verify_svid(&chain, &pki.bundle, SystemTime::now()).unwrap();
    assert_eq!(verified.id, web);
    assert_eq!(leaf_spki(&chain), csr_spki(&csr), "signed the CSR's key");

    // Naming oneself as the impersonated identity needs no authorization.
    let chain = client
        .create_certificate(&key.csr(&web).unwrap(), HOUR, Some(&web))
        .await
        .unwrap();
    assert_eq!(
        verify_svid(&chain, &pki.bundle, SystemTime::now())
            .unwrap()
            .id,
        web
    );

    // Anyone else's identity is refused by the default authorizer.
    let other = id("spiffe://cluster.local/ns/default/sa/db");
    let refused = client
        .create_certificate(&key.csr(&other).unwrap(), HOUR, Some(&other))
        .await;
    assert_eq!(code(refused), Some(Code::PermissionDenied));
    running.stop().await;
}

#[tokio::test]
async fn node_impersonates_only_its_own_workloads() {
    let pki = Pki::new();
    let node_a = id("spiffe://cluster.local/ns/istio-system/sa/ztunnel-node-a");
    let node_b = id("spiffe://cluster.local/ns/istio-system/sa/ztunnel-node-b");
    let on_a = id("spiffe://cluster.local/ns/shop/sa/cart");
    let on_b = id("spiffe://cluster.local/ns/shop/sa/payments");
    let nodes = NodeAuthorizer::new();
    nodes.allow(node_a.clone(), on_a.clone());
    nodes.allow(node_b.clone(), on_b.clone());
    let running = start(
        &pki,
        IstioCaServer::new(pki.cluster.clone(), MtlsPeer, nodes.clone()),
    )
    .await;
    let mut client = client_as(&pki, &running, &node_a).await;
    let key = WorkloadKey::generate().unwrap();

    let chain = client
        .create_certificate(&key.csr(&on_a).unwrap(), HOUR, Some(&on_a))
        .await
        .unwrap();
    let verified = verify_svid(&chain, &pki.bundle, SystemTime::now()).unwrap();
    assert_eq!(verified.id, on_a);

    let refused = client
        .create_certificate(&key.csr(&on_b).unwrap(), HOUR, Some(&on_b))
        .await;
    assert_eq!(code(refused), Some(Code::PermissionDenied));

    // The table is live: once the workload moves away, node A loses it.
    nodes.revoke(&node_a, &on_a);
    let refused = client
        .create_certificate(&key.csr(&on_a).unwrap(), HOUR, Some(&on_a))
        .await;
    assert_eq!(code(refused), Some(Code::PermissionDenied));
    running.stop().await;
}

#[tokio::test]
async fn bearer_token_names_the_caller() {
    let pki = Pki::new();
    let web = id("spiffe://cluster.local/ns/default/sa/web");
    let tokens = StaticTokens::new().with("good-token", web.clone());
    let running = start(
        &pki,
        IstioCaServer::new(pki.cluster.clone(), tokens, SelfOnly),
    )
    .await;
    // The mTLS identity is a node's; only the token counts here.
    let node = id("spiffe://cluster.local/ns/istio-system/sa/ztunnel");
    let channel = channel_as(&pki, &running, &node).await;
    let key = WorkloadKey::generate().unwrap();
    let csr = key.csr(&node).unwrap();

    let mut anonymous = IstioCaClient::new(channel.clone());
    let missing = anonymous.create_certificate(&csr, HOUR, None).await;
    assert_eq!(code(missing), Some(Code::Unauthenticated));

    let mut wrong = IstioCaClient::new(channel.clone())
        .with_bearer_token("bad-token")
        .unwrap();
    let invalid = wrong.create_certificate(&csr, HOUR, None).await;
    assert_eq!(code(invalid), Some(Code::Unauthenticated));

    let mut good = IstioCaClient::new(channel)
        .with_bearer_token("good-token")
        .unwrap();
    let chain = good.create_certificate(&csr, HOUR, None).await.unwrap();
    let verified = verify_svid(&chain, &pki.bundle, SystemTime::now()).unwrap();
    assert_eq!(verified.id, web);

    assert!(matches!(
        IstioCaClient::new(Channel::from_static("http://127.0.0.1:1").connect_lazy())
            .with_bearer_token("line\nbreak"),
        Err(IstioCaError::InvalidToken)
    ));
    running.stop().await;
}

#[tokio::test]
async fn malformed_requests_are_invalid_arguments() {
    let pki = Pki::new();
    let running = start(
        &pki,
        IstioCaServer::new(pki.cluster.clone(), MtlsPeer, SelfOnly),
    )
    .await;
    let web = id("spiffe://cluster.local/ns/default/sa/web");
    let mut raw = IstioCertificateServiceClient::new(channel_as(&pki, &running, &web).await);
    let good_csr = WorkloadKey::generate().unwrap().csr(&web).unwrap().to_pem();
    let garbage_der = pem::encode(&pem::Pem::new(
        "CERTIFICATE REQUEST",
        vec![0x30, 0x03, 1, 2, 3],
    ));
    let number = prost_types::Struct {
        fields: [(
            IMPERSONATED_IDENTITY.to_owned(),
            prost_types::Value {
                kind: Some(prost_types::value::Kind::NumberValue(7.0)),
            },
        )]
        .into_iter()
        .collect(),
    };
    let not_an_id = prost_types::Struct {
        fields: [(
            IMPERSONATED_IDENTITY.to_owned(),
            prost_types::Value {
                kind: Some(prost_types::value::Kind::StringValue("web".into())),
            },
        )]
        .into_iter()
        .collect(),
    };
    let cases = [
        ("not PEM", "garbage".to_owned(), None),
        ("PEM of junk DER", garbage_der, None),
        ("empty", String::new(), None),
        ("numeric impersonation", good_csr.clone(), Some(number)),
        ("impersonation not an ID", good_csr.clone(), Some(not_an_id)),
    ];
    for (what, csr, metadata) in cases {
        let status = raw
            .create_certificate(IstioCertificateRequest {
                csr,
                validity_duration: 3600,
                metadata,
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
    }
    // The same connection still signs a good request.
    let response = raw
        .create_certificate(IstioCertificateRequest {
            csr: good_csr,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.cert_chain.len(), 3);
    assert!(
        response
            .cert_chain
            .iter()
            .all(|c| c.starts_with("-----BEGIN CERTIFICATE-----"))
    );
    running.stop().await;
}

#[tokio::test]
async fn validity_is_defaulted_and_clamped() {
    let pki = Pki::new();
    // A fixed clock in whole seconds, so the lifetimes read back exactly;
    // one second ahead, as the CA is not valid before its creation instant.
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(secs + 1);
    let server = IstioCaServer::new(pki.cluster.clone(), MtlsPeer, SelfOnly)
        .with_default_ttl(Duration::from_secs(1800))
        .with_max_ttl(2 * HOUR)
        .with_clock(move || now);
    let running = start(&pki, server).await;
    let web = id("spiffe://cluster.local/ns/default/sa/web");
    let mut client = client_as(&pki, &running, &web).await;
    let key = WorkloadKey::generate().unwrap();
    let csr = key.csr(&web).unwrap();

    for (asked, granted) in [
        (48 * HOUR, 2 * HOUR),
        (HOUR, HOUR),
        (Duration::ZERO, Duration::from_secs(1800)),
    ] {
        let chain = client.create_certificate(&csr, asked, None).await.unwrap();
        let svid = Svid::new(chain, key.private_key_der()).unwrap();
        assert_eq!(svid.not_before(), now);
        assert_eq!(
            svid.not_after().duration_since(now).unwrap(),
            granted,
            "asked for {asked:?}"
        );
    }
    running.stop().await;
}

#[tokio::test]
async fn failed_handshakes_do_not_stop_the_server() {
    let pki = Pki::new();
    let running = start(
        &pki,
        IstioCaServer::new(pki.cluster.clone(), MtlsPeer, SelfOnly),
    )
    .await;

    // Not TLS at all.
    let mut tcp = TcpStream::connect(running.addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    drop(tcp);

    // A client whose certificate comes from another CA.
    let stranger_ca = CertificateAuthority::generate_root(
        "cluster.local".parse().unwrap(),
        SystemTime::now(),
        HOUR,
    )
    .unwrap();
    let stranger = id("spiffe://cluster.local/ns/default/sa/web");
    let creds = Credentials::new(
        stranger_ca
            .issue_svid(&stranger, SystemTime::now(), HOUR)
            .unwrap(),
        pki.bundle.clone(),
    )
    .unwrap();
    let config = tls::client_config(
        tls::fixed(creds),
        AllowedPeers::Exactly(istiod()),
        vec![b"h2".to_vec()],
    )
    .unwrap();
    let uri = format!("http://{}", running.addr);
    let rejected = async {
        let channel = istio_ca::connect_mtls(uri.parse().unwrap(), Arc::new(config)).await?;
        let key = WorkloadKey::generate().unwrap();
        IstioCaClient::new(channel)
            .create_certificate(&key.csr(&stranger).unwrap(), HOUR, None)
            .await
    }
    .await;
    assert!(
        rejected.is_err(),
        "an untrusted client must not get a certificate"
    );

    // A client that does not accept the server's identity fails to connect.
    let web = id("spiffe://cluster.local/ns/default/sa/web");
    let picky = tls::client_config(
        tls::fixed(pki.credentials(&web)),
        AllowedPeers::Exactly(id("spiffe://cluster.local/ns/istio-system/sa/other")),
        vec![b"h2".to_vec()],
    )
    .unwrap();
    let refused = istio_ca::connect_mtls(uri.parse().unwrap(), Arc::new(picky)).await;
    assert!(matches!(refused, Err(IstioCaError::Connect(_))));

    // The server still serves a legitimate client.
    let mut client = client_as(&pki, &running, &web).await;
    let key = WorkloadKey::generate().unwrap();
    let chain = client
        .create_certificate(&key.csr(&web).unwrap(), HOUR, None)
        .await
        .unwrap();
    assert_eq!(
        verify_svid(&chain, &pki.bundle, SystemTime::now())
            .unwrap()
            .id,
        web
    );
    running.stop().await;
}

/// Appends a protobuf length-delimited field.
fn len_field(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    out.push(tag);
    prost::encoding::encode_varint(body.len() as u64, out);
    out.extend_from_slice(body);
}

#[test]
fn wire_format_matches_istio() {
    // google.protobuf.Value { string_value (3) }
    let mut value = Vec::new();
    len_field(&mut value, 0x1a, b"spiffe://cluster.local/ns/a/sa/b");
    // map<string, Value> entry { key (1), value (2) }
    let mut entry = Vec::new();
    len_field(&mut entry, 0x0a, IMPERSONATED_IDENTITY.as_bytes());
    len_field(&mut entry, 0x12, &value);
    // google.protobuf.Struct { fields (1) }
    let mut metadata = Vec::new();
    len_field(&mut metadata, 0x0a, &entry);
    // IstioCertificateRequest: csr = 1 (string), validity_duration = 3
    // (int64 varint), metadata = 4 (message).
    let mut request = Vec::new();
    len_field(&mut request, 0x0a, b"-----BEGIN CERTIFICATE REQUEST-----");
    request.push(0x18);
    prost::encoding::encode_varint(86400, &mut request);
    len_field(&mut request, 0x22, &metadata);

    let decoded = IstioCertificateRequest::decode(request.as_slice()).unwrap();
    assert_eq!(decoded.csr, "-----BEGIN CERTIFICATE REQUEST-----");
    assert_eq!(decoded.validity_duration, 86400);
    let fields = decoded.metadata.as_ref().unwrap().fields.clone();
    assert_eq!(
        fields[IMPERSONATED_IDENTITY].kind,
        Some(prost_types::value::Kind::StringValue(
            "spiffe://cluster.local/ns/a/sa/b".into()
        ))
    );
    assert_eq!(
        decoded.encode_to_vec(),
        request,
        "encodes back to the same bytes"
    );

    // int64 carries negative values as ten-byte varints, not zigzag.
    let negative = IstioCertificateRequest {
        validity_duration: -1,
        ..Default::default()
    };
    let mut expect = vec![0x18];
    expect.extend([0xff; 9]);
    expect.push(0x01);
    assert_eq!(negative.encode_to_vec(), expect);

    // IstioCertificateResponse: repeated string cert_chain = 1.
    let response = IstioCertificateResponse {
        cert_chain: vec!["leaf".into(), "root".into()],
    };
    assert_eq!(
        response.encode_to_vec(),
        [&[0x0a, 4][..], b"leaf", &[0x0a, 4], b"root"].concat()
    );

    assert_eq!(
        IstioCertificateRequest::full_name(),
        "istio.v1.auth.IstioCertificateRequest"
    );
    assert_eq!(
        IstioCertificateResponse::full_name(),
        "istio.v1.auth.IstioCertificateResponse"
    );
    assert_eq!(SERVICE_NAME, "istio.v1.auth.IstioCertificateService");
}
