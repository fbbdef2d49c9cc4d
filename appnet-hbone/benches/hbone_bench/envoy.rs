//! The Envoy pair: Envoy originating HBONE (tcp_proxy `tunneling_config`)
//! to Envoy terminating it (HTTP/2 CONNECT over mTLS), then plain TCP to
//! the bench's sink — the path our proxy pair runs, each Envoy with one
//! worker (`--concurrency 1`), HTTP/2 windows left at Envoy's defaults.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::{Pki, TempDir};

/// Both Envoys, killed on drop.
pub(crate) struct EnvoyPair {
    children: Vec<Child>,
    /// Where the application connects (the originating Envoy).
    pub(crate) entry: SocketAddr,
    _dir: TempDir,
}

impl Drop for EnvoyPair {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl EnvoyPair {
    /// The Envoys' process ids.
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }
}

/// `envoy` on PATH, if any.
pub(crate) fn binary() -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|p| p.join("envoy"))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// TLS 1.3, ALPN h2, our SVID, the peer's URI SAN checked against
/// `peer_prefix`; YAML indented by `indent`.
fn tls_context(files: &[PathBuf; 3], peer_prefix: &str, indent: usize) -> String {
    let [chain, key, ca] = files;
    let text = format!(
        r#"
common_tls_context:
  tls_params:
    tls_minimum_protocol_version: TLSv1_3
    tls_maximum_protocol_version: TLSv1_3
  alpn_protocols: ["h2"]
  tls_certificates:
  - certificate_chain: {{ filename: "{chain}" }}
    private_key: {{ filename: "{key}" }}
  validation_context:
    trusted_ca: {{ filename: "{ca}" }}
    match_typed_subject_alt_names:
    - san_type: URI
      matcher: {{ prefix: "{peer_prefix}" }}"#,
        chain = chain.display(),
        key = key.display(),
        ca = ca.display(),
    );
    text.lines()
        .map(|l| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{}{l}", " ".repeat(indent))
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn terminate_config(files: &[PathBuf; 3], listen: u16, sink: SocketAddr) -> String {
    let tls = tls_context(files, "spiffe://cluster.local/", 10);
    format!(
        r#"
static_resources:
  listeners:
  - name: hbone
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {listen} }} }}
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true{tls}
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: hbone
          codec_type: HTTP2
          http2_protocol_options: {{ allow_connect: true }}
          upgrade_configs: [{{ upgrade_type: CONNECT }}]
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ connect_matcher: {{}} }}
                route:
                  cluster: sink
                  upgrade_configs: [{{ upgrade_type: CONNECT, connect_config: {{}} }}]
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
  clusters:
  - name: sink
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: sink
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {sink_port} }} }} }}
"#,
        sink_port = sink.port(),
    )
}

fn originate_config(files: &[PathBuf; 3], listen: u16, hbone: u16, server_id: &str) -> String {
    let tls = tls_context(files, server_id, 8);
    format!(
        r#"
static_resources:
  listeners:
  - name: capture
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {listen} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: out
          cluster: hbone
          tunneling_config:
            hostname: "sink.bench:9"
  clusters:
  - name: hbone
    type: STATIC
    connect_timeout: 2s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{ http2_protocol_options: {{}} }}
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext{tls}
    load_assignment:
      cluster_name: hbone
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {hbone} }} }} }}
"#,
    )
}

fn spawn(bin: &Path, dir: &Path, tag: &str, config: &str, listen: u16) -> Child {
    let path = dir.join(format!("{tag}.yaml"));
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(bin)
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
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Readiness of an external process: probe its listener, bounded.
    let addr = SocketAddr::from(([127, 0, 0, 1], listen));
    for _ in 0..600 {
        if TcpStream::connect(addr).is_ok() {
            return child;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.join(format!("{tag}.log"))).unwrap_or_default();
            panic!("envoy {tag} exited with {status}: {log}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("envoy {tag} never listened on {addr}");
}

/// Starts the pair in front of `sink`; `None` when `envoy` is not on PATH.
pub(crate) fn start(pki: &Pki, sink: SocketAddr) -> Option<EnvoyPair> {
    let bin = binary()?;
    let dir = TempDir::new("envoy");
    let server_files = pki.write_identity("server", &dir.0);
    let client_files = pki.write_identity("client", &dir.0);
    let hbone = free_port();
    let entry = free_port();
    let terminate = spawn(
        &bin,
        &dir.0,
        "terminate",
        &terminate_config(&server_files, hbone, sink),
        hbone,
    );
    let mut pair = EnvoyPair {
        children: vec![terminate],
        entry: SocketAddr::from(([127, 0, 0, 1], entry)),
        _dir: dir,
    };
    let originate = spawn(
        &bin,
        &pair._dir.0,
        "originate",
        &originate_config(&client_files, entry, hbone, &pki.id("server").to_string()),
        entry,
    );
    pair.children.push(originate);
    Some(pair)
}
