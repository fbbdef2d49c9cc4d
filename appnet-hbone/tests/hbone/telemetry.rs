//! Istio TCP metrics from both ends of real tunnels.

use std::sync::Arc;

use appnet_hbone::{
    Baggage, ConnectRequest, ConnectorConfig, HboneConnector, IstioTcpMetrics, ServerConfig,
};
use appnet_identity::tls::AllowedPeers;
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

/// The value of the one sample of `metric` whose labels contain all of
/// `labels` (as `name="value"` strings).
fn sample(text: &str, metric: &str, labels: &[&str]) -> Option<u64> {
    let mut found = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(metric) else {
            continue;
        };
        if !rest.starts_with('{') || !labels.iter().all(|l| rest.contains(l)) {
            continue;
        }
        assert!(
            found.is_none(),
            "more than one sample of {metric} {labels:?}"
        );
        found = rest.rsplit(' ').next().and_then(|v| v.parse().ok());
    }
    found
}

#[tokio::test]
async fn both_sides_count_connections_and_bytes_under_istio_names() {
    let d = Domain::new("cluster.local");
    let mut registry = Registry::default();
    let metrics = Arc::new(IstioTcpMetrics::register(&mut registry));
    let h = start_server(
        d.creds("server"),
        AllowedPeers::AnyTrusted,
        ServerConfig::default(),
        Some(metrics.clone()),
    )
    .await;
    let connector =
        HboneConnector::with_telemetry(ConnectorConfig::default(), metrics.clone()).unwrap();
    let source_baggage = Baggage {
        namespace: Some("client-ns".into()),
        workload_kind: Some("deployment".into()),
        workload_name: Some("client-v1".into()),
        service_name: Some("client".into()),
        service_version: Some("v1".into()),
        cluster: Some("east".into()),
        ..Baggage::default()
    };
    let request = ConnectRequest::new(echo_target()).baggage(source_baggage);
    let mut t = connector
        .connect(&d.creds("client"), &peer(h.addr(), d.id("server")), request)
        .await
        .unwrap();
    let sent = pattern(300_000);
    t.write_all(&sent).await.unwrap();
    t.shutdown().await.unwrap();
    let mut back = Vec::new();
    t.read_to_end(&mut back).await.unwrap();
    assert_eq!(back.len(), sent.len());

    // Open: counted once per side, nothing closed yet on the client.
    let mut text = String::new();
    encode(&mut text, &registry).unwrap();
    let src = "reporter=\"source\"";
    assert_eq!(
        sample(&text, "istio_tcp_connections_opened_total", &[src]),
        Some(1)
    );
    assert_eq!(
        sample(&text, "istio_tcp_connections_closed_total", &[src]),
        Some(0)
    );

    drop(t);
    all_closed(&connector, &h.handle).await;
    let mut text = String::new();
    encode(&mut text, &registry).unwrap();
    let client_id = format!("source_principal=\"{}\"", d.id("client"));
    let server_id = format!("destination_principal=\"{}\"", d.id("server"));
    let n = sent.len() as u64;
    for reporter in ["reporter=\"source\"", "reporter=\"destination\""] {
        let labels = [
            reporter,
            &client_id,
            &server_id,
            "source_workload=\"client-v1\"",
            "source_workload_namespace=\"client-ns\"",
            "source_canonical_service=\"client\"",
            "source_cluster=\"east\"",
            "destination_workload=\"server-v1\"",
            "destination_workload_namespace=\"server-ns\"",
            "request_protocol=\"tcp\"",
            "connection_security_policy=\"mutual_tls\"",
        ];
        assert_eq!(
            sample(&text, "istio_tcp_connections_opened_total", &labels),
            Some(1),
            "{reporter}\n{text}"
        );
        assert_eq!(
            sample(&text, "istio_tcp_connections_closed_total", &labels),
            Some(1),
            "{reporter}"
        );
        // Istio's directions: received = request (source → destination),
        // sent = response, whichever side reports.
        assert_eq!(
            sample(&text, "istio_tcp_received_bytes_total", &labels),
            Some(n),
            "{reporter}"
        );
        assert_eq!(
            sample(&text, "istio_tcp_sent_bytes_total", &labels),
            Some(n),
            "{reporter}"
        );
    }
}
