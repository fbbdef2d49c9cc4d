//! Our client against our server over real gRPC on loopback, for state of
//! the world and delta.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use appnet_xds::wire::envoy::config::cluster::v3::Cluster as WireCluster;
use appnet_xds::{
    Any, Backoff, ClientSnapshot, Cluster, Node, Variant, XdsClient, XdsServer, XdsServerConfig,
    type_url,
};
use prost::Message;
use tokio::sync::watch;

use support::Serving;
use tonic::transport::Endpoint;

const WAIT: Duration = Duration::from_secs(10);

fn cluster(name: &str, stat: &str) -> (String, Any) {
    let c = WireCluster {
        name: name.to_owned(),
        alt_stat_name: stat.to_owned(),
        ..Default::default()
    };
    (
        name.to_owned(),
        Any {
            type_url: type_url::CLUSTER.to_owned(),
            value: c.encode_to_vec(),
        },
    )
}

fn endpoint(addr: SocketAddr) -> Endpoint {
    Endpoint::from_shared(format!("http://{addr}")).expect("endpoint")
}

fn node(id: &str) -> Node {
    Node {
        id: id.to_owned(),
        ..Default::default()
    }
}

/// Waits until the snapshot satisfies `pred`.
async fn until(rx: &mut watch::Receiver<ClientSnapshot>, pred: impl Fn(&ClientSnapshot) -> bool) {
    tokio::time::timeout(WAIT, rx.wait_for(|s| pred(s)))
        .await
        .expect("timed out waiting for the client")
        .expect("client alive");
}

/// Waits until the server status satisfies `pred`.
async fn until_server(server: &XdsServer, pred: impl Fn(&[appnet_xds::ClientStatus]) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if pred(&server.status()) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for the server: {:#?}",
            server.status()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn fast_config() -> XdsServerConfig {
    let mut c = XdsServerConfig::default();
    c.debounce = Duration::from_millis(5);
    c
}

fn client(addr: SocketAddr, variant: Variant, id: &str) -> XdsClient {
    XdsClient::builder(endpoint(addr), variant)
        .node(node(id))
        .backoff(Backoff::new(
            Duration::from_millis(10),
            Duration::from_millis(100),
        ))
        .subscribe_wildcard(type_url::CLUSTER)
        .on::<Cluster, _>(|c: &Cluster| {
            if c.wire().alt_stat_name == "poison" {
                Err(format!("cluster {} is poisoned", c.wire().name))
            } else {
                Ok(())
            }
        })
        .start()
}

fn stat_of(s: &ClientSnapshot, name: &str) -> Option<String> {
    let r = s.get(type_url::CLUSTER, name)?;
    WireCluster::decode(r.payload())
        .ok()
        .map(|c| c.alt_stat_name)
}

async fn lifecycle(variant: Variant) {
    let server = XdsServer::new(fast_config());
    server
        .update(type_url::CLUSTER, [cluster("a", "a1"), cluster("b", "b1")])
        .expect("update");
    let serving = Serving::start(&server, "127.0.0.1:0".parse().expect("addr")).await;
    let client = client(serving.addr, variant, "node-1");
    let mut rx = client.watch();

    // Initial sync.
    until(&mut rx, |s| s.len(type_url::CLUSTER) == 2).await;
    until_server(&server, |st| {
        st.iter().any(|c| {
            c.node_id == "node-1"
                && c.types
                    .iter()
                    .any(|t| t.type_url == type_url::CLUSTER && t.acked.is_some())
        })
    })
    .await;

    // Update.
    server
        .update(type_url::CLUSTER, [cluster("a", "a2")])
        .expect("update");
    until(&mut rx, |s| stat_of(s, "a").as_deref() == Some("a2")).await;

    // Removal.
    assert_eq!(server.remove(type_url::CLUSTER, ["b"]), 1);
    until(&mut rx, |s| s.get(type_url::CLUSTER, "b").is_none()).await;
    assert_eq!(rx.borrow().len(type_url::CLUSTER), 1);

    // NACK: the handler rejects; the server records the reason; the client
    // keeps the last good version.
    server
        .update(type_url::CLUSTER, [cluster("a", "poison")])
        .expect("update");
    until_server(&server, |st| {
        st.iter().any(|c| {
            c.types.iter().any(|t| {
                t.last_nack
                    .as_ref()
                    .is_some_and(|n| n.message.contains("cluster a is poisoned"))
            })
        })
    })
    .await;
    assert_eq!(stat_of(&rx.borrow(), "a").as_deref(), Some("a2"));
    // A later valid version is accepted.
    server
        .update(type_url::CLUSTER, [cluster("a", "a3")])
        .expect("update");
    until(&mut rx, |s| stat_of(s, "a").as_deref() == Some("a3")).await;

    serving.stop().await;
}

#[tokio::test]
async fn sotw_lifecycle() {
    lifecycle(Variant::Sotw).await;
}

#[tokio::test]
async fn delta_lifecycle() {
    lifecycle(Variant::Delta).await;
}

async fn on_demand(variant: Variant) {
    let server = XdsServer::new(fast_config());
    server
        .update(
            type_url::ENDPOINT,
            [
                ("x".to_owned(), endpoint_any("x")),
                ("y".to_owned(), endpoint_any("y")),
            ],
        )
        .expect("update");
    let serving = Serving::start(&server, "127.0.0.1:0".parse().expect("addr")).await;
    let client = client(serving.addr, variant, "node-od");
    let mut rx = client.watch();
    until(&mut rx, |s| s.connected).await;
    client
        .subscribe(type_url::ENDPOINT, ["x"])
        .expect("subscribe");
    until(&mut rx, |s| s.get(type_url::ENDPOINT, "x").is_some()).await;
    assert!(rx.borrow().get(type_url::ENDPOINT, "y").is_none());
    client
        .subscribe(type_url::ENDPOINT, ["y"])
        .expect("subscribe");
    until(&mut rx, |s| s.len(type_url::ENDPOINT) == 2).await;
    client
        .unsubscribe(type_url::ENDPOINT, ["x"])
        .expect("unsubscribe");
    until(&mut rx, |s| s.get(type_url::ENDPOINT, "x").is_none()).await;
    until_server(&server, |st| {
        st.iter().any(|c| {
            c.types
                .iter()
                .any(|t| t.type_url == type_url::ENDPOINT && t.names == ["y".to_owned()])
        })
    })
    .await;
    serving.stop().await;
}

fn endpoint_any(name: &str) -> Any {
    use appnet_xds::wire::envoy::config::endpoint::v3::ClusterLoadAssignment as Cla;
    Any {
        type_url: type_url::ENDPOINT.to_owned(),
        value: Cla {
            cluster_name: name.to_owned(),
            ..Default::default()
        }
        .encode_to_vec(),
    }
}

#[tokio::test]
async fn sotw_on_demand() {
    on_demand(Variant::Sotw).await;
}

#[tokio::test]
async fn delta_on_demand() {
    on_demand(Variant::Delta).await;
}

/// The server restarts on the same port with the same content: the client
/// reconnects, keeps its resources throughout, and (delta) nothing is
/// resent because `initial_resource_versions` matched.
async fn restart(variant: Variant) {
    let resources = [cluster("a", "a1"), cluster("b", "b1")];
    let server = XdsServer::new(fast_config());
    server
        .update(type_url::CLUSTER, resources.clone())
        .expect("update");
    let serving = Serving::start(&server, "127.0.0.1:0".parse().expect("addr")).await;
    let addr = serving.addr;
    let client = client(addr, variant, "node-r");
    let mut rx = client.watch();
    until(&mut rx, |s| s.len(type_url::CLUSTER) == 2 && s.streams == 1).await;
    serving.stop().await;
    until(&mut rx, |s| !s.connected).await;
    assert_eq!(rx.borrow().len(type_url::CLUSTER), 2, "last good kept");

    let server2 = XdsServer::new(fast_config());
    server2
        .update(type_url::CLUSTER, resources)
        .expect("update");
    let serving2 = Serving::start(&server2, addr).await;
    until(&mut rx, |s| s.streams == 2 && s.connected).await;
    until_server(&server2, |st| {
        st.iter().any(|c| {
            c.node_id == "node-r"
                && c.types
                    .iter()
                    .any(|t| t.type_url == type_url::CLUSTER && t.acked.is_some())
        })
    })
    .await;
    let sent: u64 = server2.status().iter().map(|c| c.resources_pushed).sum();
    match variant {
        // Delta resumes: no unchanged resource is sent again.
        Variant::Delta => assert_eq!(sent, 0, "{:#?}", server2.status()),
        // State of the world always answers the first request in full.
        Variant::Sotw => assert_eq!(sent, 2),
    }
    assert_eq!(rx.borrow().len(type_url::CLUSTER), 2);

    // And the new server still pushes changes.
    server2
        .update(type_url::CLUSTER, [cluster("a", "a9")])
        .expect("update");
    until(&mut rx, |s| stat_of(s, "a").as_deref() == Some("a9")).await;
    serving2.stop().await;
}

#[tokio::test]
async fn sotw_restart() {
    restart(Variant::Sotw).await;
}

#[tokio::test]
async fn delta_restart() {
    restart(Variant::Delta).await;
}

/// The per-type services share the store: a unary CDS fetch, and a delta
/// EDS stream for one name that gets an update.
#[tokio::test]
async fn per_type_services() {
    use appnet_xds::wire::envoy::service::cluster::v3::cluster_discovery_service_client::ClusterDiscoveryServiceClient;
    use appnet_xds::wire::envoy::service::endpoint::v3::endpoint_discovery_service_client::EndpointDiscoveryServiceClient;
    use appnet_xds::{DeltaDiscoveryRequest, DiscoveryRequest};

    let server = XdsServer::new(fast_config());
    server
        .update(type_url::CLUSTER, [cluster("a", "a1"), cluster("b", "b1")])
        .expect("update");
    server
        .update(type_url::ENDPOINT, [("x".to_owned(), endpoint_any("x"))])
        .expect("update");
    let serving = Serving::start(&server, "127.0.0.1:0".parse().expect("addr")).await;
    let channel = endpoint(serving.addr).connect().await.expect("connect");

    let fetched = ClusterDiscoveryServiceClient::new(channel.clone())
        .fetch_clusters(DiscoveryRequest::default())
        .await
        .expect("fetch")
        .into_inner();
    assert_eq!(fetched.type_url, type_url::CLUSTER);
    assert_eq!(fetched.resources.len(), 2);

    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tx.send(DeltaDiscoveryRequest {
        node: Some(node("eds-only")),
        resource_names_subscribe: vec!["x".to_owned()],
        ..Default::default()
    })
    .expect("send");
    let mut inbound = EndpointDiscoveryServiceClient::new(channel)
        .delta_endpoints(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    let first = tokio::time::timeout(WAIT, inbound.message())
        .await
        .expect("in time")
        .expect("ok")
        .expect("a response");
    assert_eq!(first.type_url, type_url::ENDPOINT);
    assert_eq!(first.resources.len(), 1);
    assert_eq!(first.resources[0].name, "x");
    tx.send(DeltaDiscoveryRequest {
        response_nonce: first.nonce.clone(),
        ..Default::default()
    })
    .expect("ack");
    until_server(&server, |st| {
        st.iter()
            .any(|c| c.node_id == "eds-only" && c.types.iter().any(|t| t.acked.is_some()))
    })
    .await;
    serving.stop().await;
}

/// Changes arriving within the debounce window go out as one push; with no
/// window each goes out on its own.
#[tokio::test]
async fn debounce_coalesces_bursts() {
    for (debounce, expect_one) in [(Duration::from_secs(2), true), (Duration::ZERO, false)] {
        let mut config = XdsServerConfig::default();
        config.debounce = debounce;
        let server = XdsServer::new(config);
        server
            .update(type_url::CLUSTER, [cluster("a", "v0")])
            .expect("update");
        let serving = Serving::start(&server, "127.0.0.1:0".parse().expect("addr")).await;
        let client = client(serving.addr, Variant::Delta, "node-d");
        let mut rx = client.watch();
        until(&mut rx, |s| stat_of(s, "a").as_deref() == Some("v0")).await;
        until_server(&server, |st| {
            st.iter().any(|c| {
                c.types
                    .iter()
                    .any(|t| t.acked.is_some() && t.outstanding.is_none())
            })
        })
        .await;
        let before: u64 = server.status().iter().map(|c| c.responses).sum();
        for i in 1..=5 {
            server
                .update(type_url::CLUSTER, [cluster("a", &format!("v{i}"))])
                .expect("update");
            // Let the stream's task see each change (and, with no window,
            // push it and get the ACK) before the next one.
            let target = format!("v{i}");
            if expect_one {
                for _ in 0..20 {
                    tokio::task::yield_now().await;
                }
            } else {
                until(&mut rx, |s| {
                    stat_of(s, "a").as_deref() == Some(target.as_str())
                })
                .await;
            }
        }
        until(&mut rx, |s| stat_of(s, "a").as_deref() == Some("v5")).await;
        let after: u64 = server.status().iter().map(|c| c.responses).sum();
        if expect_one {
            assert_eq!(after - before, 1, "one push for the burst");
        } else {
            assert_eq!(after - before, 5, "one push per change");
        }
        drop(client);
        serving.stop().await;
    }
}

/// Waits until every cluster in `names` carries a stat name `len` long.
async fn until_all_big(rx: &mut watch::Receiver<ClientSnapshot>, names: &[String], len: usize) {
    until(rx, |s| {
        names
            .iter()
            .all(|n| stat_of(s, n).is_some_and(|v| v.len() == len))
    })
    .await;
}

/// A push larger than tonic's 4 MiB default goes through (six 1 MiB
/// clusters in one response): both shells default to a 64 MiB limit. Delta
/// packs them in one response only with a chunk size that large.
#[tokio::test]
async fn pushes_beyond_four_mebibytes() {
    let big = "x".repeat(1024 * 1024);
    let mut config = fast_config();
    config.stream.delta_chunk_size = 64 * 1024 * 1024;
    let server = XdsServer::new(config);
    let names: Vec<String> = (0..6).map(|i| format!("big-{i}")).collect();
    server
        .update(type_url::CLUSTER, names.iter().map(|n| cluster(n, &big)))
        .expect("update");
    let serving = Serving::start(&server, "127.0.0.1:0".parse().expect("addr")).await;
    for variant in [Variant::Sotw, Variant::Delta] {
        let client = client(serving.addr, variant, "node-big");
        let mut rx = client.watch();
        until_all_big(&mut rx, &names, big.len()).await;
        let event = rx.borrow().last_event.clone().expect("a response");
        assert_eq!(event.updated.len(), 6, "all in one response");
    }
    serving.stop().await;
}

/// With the default delta chunk size (1 MiB) the same six clusters arrive
/// as six responses, each ACKed before the next: the client never decodes
/// one 6 MiB message.
#[tokio::test]
async fn delta_pushes_are_chunked_by_default() {
    let big = "x".repeat(1024 * 1024);
    let server = XdsServer::new(fast_config());
    let names: Vec<String> = (0..6).map(|i| format!("big-{i}")).collect();
    server
        .update(type_url::CLUSTER, names.iter().map(|n| cluster(n, &big)))
        .expect("update");
    let serving = Serving::start(&server, "127.0.0.1:0".parse().expect("addr")).await;
    let client = client(serving.addr, Variant::Delta, "node-chunks");
    let mut rx = client.watch();
    until_all_big(&mut rx, &names, big.len()).await;
    let event = rx.borrow().last_event.clone().expect("a response");
    assert_eq!(event.updated.len(), 1, "one resource per 1 MiB step");
    let status = server.status();
    let mine = status
        .iter()
        .find(|c| c.node_id == "node-chunks")
        .expect("the client is connected");
    assert_eq!(mine.responses, 6, "six steps");
    assert_eq!(mine.resources_pushed, 6);
    serving.stop().await;
}

/// A client that goes away leaves the status view (its stream state is
/// dropped with the response stream), and the others stay.
#[tokio::test]
async fn departed_clients_leave_the_status_view() {
    let server = XdsServer::new(fast_config());
    server
        .update(type_url::CLUSTER, [cluster("c", "x")])
        .expect("update");
    let serving = Serving::start(&server, "127.0.0.1:0".parse().expect("addr")).await;
    let staying = client(serving.addr, Variant::Delta, "node-stays");
    let leaving = client(serving.addr, Variant::Sotw, "node-leaves");
    until_server(&server, |st| st.len() == 2).await;
    drop(leaving);
    until_server(&server, |st| st.len() == 1 && st[0].node_id == "node-stays").await;
    // The one left still gets pushes.
    server
        .update(type_url::CLUSTER, [cluster("c", "y")])
        .expect("update");
    let mut rx = staying.watch();
    until(&mut rx, |s| stat_of(s, "c").as_deref() == Some("y")).await;
    serving.stop().await;
}

/// A per-type client (CDS's own service instead of ADS), both variants,
/// against a server that serves CDS and nothing else: subscribes, validates
/// (a poisoned cluster is NACKed and the last good version kept), and
/// follows changes. WDS types have no per-type service.
#[tokio::test]
async fn per_type_clients() {
    let server = XdsServer::new(fast_config());
    server
        .update(type_url::CLUSTER, [cluster("a", "a1"), cluster("b", "b1")])
        .expect("update");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let serving = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(server.cds_service())
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    for (variant, id) in [(Variant::Sotw, "cds-sotw"), (Variant::Delta, "cds-delta")] {
        let client = XdsClient::builder(endpoint(addr), variant)
            .node(node(id))
            .per_type(type_url::CLUSTER)
            .expect("CDS has a service")
            .subscribe_wildcard(type_url::CLUSTER)
            .on::<Cluster, _>(|c: &Cluster| {
                if c.wire().alt_stat_name == "poison" {
                    Err("poisoned".to_owned())
                } else {
                    Ok(())
                }
            })
            .start();
        let mut rx = client.watch();
        until(&mut rx, |s| {
            stat_of(s, "a").as_deref() == Some("a1") && stat_of(s, "b").as_deref() == Some("b1")
        })
        .await;
        server
            .update(type_url::CLUSTER, [cluster("a", "poison")])
            .expect("update");
        until_server(&server, |st| {
            st.iter()
                .any(|c| c.node_id == id && c.types.iter().any(|t| t.last_nack.is_some()))
        })
        .await;
        assert_eq!(
            stat_of(&rx.borrow(), "a").as_deref(),
            Some("a1"),
            "last good kept"
        );
        server
            .update(type_url::CLUSTER, [cluster("a", "a2")])
            .expect("update");
        until(&mut rx, |s| stat_of(s, "a").as_deref() == Some("a2")).await;
        drop(client);
        server
            .update(type_url::CLUSTER, [cluster("a", "a1")])
            .expect("update");
    }
    let refused = XdsClient::builder(endpoint(addr), Variant::Delta)
        .per_type(type_url::ADDRESS)
        .expect_err("WDS is ADS-only");
    assert_eq!(refused.type_url, type_url::ADDRESS);
    serving.abort();
}

/// A client that stops reading stalls its stream on HTTP/2 flow control
/// (the transport then never polls the response stream); its ACK timeout
/// still fires, and the stream leaves the status view.
#[tokio::test]
async fn a_stalled_client_times_out() {
    use appnet_xds::DeltaDiscoveryRequest;
    use appnet_xds::wire::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;

    let mut config = fast_config();
    config.stream.ack_timeout = Some(Duration::from_millis(300));
    let server = XdsServer::new(config);
    let big = "x".repeat(512 * 1024);
    server
        .update(
            type_url::CLUSTER,
            (0..4).map(|i| cluster(&format!("big-{i}"), &big)),
        )
        .expect("update");
    let serving = Serving::start(&server, "127.0.0.1:0".parse().expect("addr")).await;
    // 64 KiB windows (HTTP/2's initial value; hyper's client would start
    // at 2 MiB), so the first 1 MiB step fills them; nothing is ever read.
    let channel = Endpoint::from_shared(format!("http://{}", serving.addr))
        .expect("endpoint")
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .connect()
        .await
        .expect("connect");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tx.send(DeltaDiscoveryRequest {
        node: Some(node("stalled")),
        type_url: type_url::CLUSTER.to_owned(),
        ..Default::default()
    })
    .expect("send");
    let _unread = AggregatedDiscoveryServiceClient::new(channel)
        .delta_aggregated_resources(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
        .await
        .expect("stream");
    until_server(&server, |st| st.iter().any(|c| c.node_id == "stalled")).await;
    until_server(&server, |st| st.iter().all(|c| c.node_id != "stalled")).await;
    drop(tx);
    serving.stop().await;
}
