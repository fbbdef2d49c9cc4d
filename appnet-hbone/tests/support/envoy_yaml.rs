//! Envoy bootstrap YAML for HBONE, shared by the integration tests and the
//! bench (each includes this file with `#[path]`): Envoy terminating HBONE
//! (HTTP/2 `CONNECT` over mTLS → TCP) and Envoy originating it (`tcp_proxy`
//! `tunneling_config` → HTTP/2 over mTLS).

use std::path::Path;

/// A free port on 127.0.0.1 (bound, then released).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Certificate chain, key and trust bundle files of an Envoy's SVID.
pub(crate) struct TlsFiles<'a> {
    pub(crate) chain: &'a Path,
    pub(crate) key: &'a Path,
    pub(crate) ca: &'a Path,
}

/// TLS 1.3, ALPN h2, the SVID, the peer's URI SAN checked against
/// `peer_prefix`; YAML indented by `indent`.
fn tls_context(files: &TlsFiles<'_>, peer_prefix: &str, indent: usize) -> String {
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
        chain = files.chain.display(),
        key = files.key.display(),
        ca = files.ca.display(),
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

/// Envoy terminating HBONE on `listen`: mutual TLS (any peer of
/// `spiffe://cluster.local/`), `CONNECT` upgraded to TCP towards 127.0.0.1
/// port `upstream`.
pub(crate) fn terminate_config(files: &TlsFiles<'_>, listen: u16, upstream: u16) -> String {
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
                  cluster: upstream
                  upgrade_configs: [{{ upgrade_type: CONNECT, connect_config: {{}} }}]
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
  clusters:
  - name: upstream
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: upstream
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {upstream} }} }} }}
"#,
    )
}

/// Envoy originating HBONE: TCP accepted on `listen` is tunnelled as
/// `CONNECT hostname` over HTTP/2 and mutual TLS to 127.0.0.1 port `hbone`,
/// whose certificate must name `server_id`; `headers` are YAML list items
/// for `headers_to_add` (empty for none).
pub(crate) fn originate_config(
    files: &TlsFiles<'_>,
    listen: u16,
    hbone: u16,
    server_id: &str,
    hostname: &str,
    headers: &[&str],
) -> String {
    let tls = tls_context(files, server_id, 8);
    let headers = if headers.is_empty() {
        String::new()
    } else {
        let items: String = headers
            .iter()
            .map(|h| format!("\n            - {h}"))
            .collect();
        format!("\n            headers_to_add:{items}")
    };
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
            hostname: "{hostname}"{headers}
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
