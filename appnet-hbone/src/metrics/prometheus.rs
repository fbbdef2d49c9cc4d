//! [`Telemetry`] exported with prometheus-client.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::{ConnectionLabels, ConnectionRecorder, Telemetry};

/// Istio's four TCP metrics, labelled with [`ConnectionLabels`]:
/// `istio_tcp_connections_opened_total`, `istio_tcp_connections_closed_total`,
/// `istio_tcp_sent_bytes_total` and `istio_tcp_received_bytes_total`.
///
/// ```
/// use std::sync::Arc;
/// use appnet_hbone::IstioTcpMetrics;
/// let mut registry = prometheus_client::registry::Registry::default();
/// let metrics = Arc::new(IstioTcpMetrics::register(&mut registry));
/// // Hand `metrics.clone()` to `HboneConnector::with_telemetry` or
/// // `HboneServer::with_telemetry`, then encode `registry` on /metrics.
/// # let _ = metrics;
/// ```
#[derive(Debug, Clone, Default)]
pub struct IstioTcpMetrics {
    opened: Family<ConnectionLabels, Counter>,
    closed: Family<ConnectionLabels, Counter>,
    sent: Family<ConnectionLabels, Counter>,
    received: Family<ConnectionLabels, Counter>,
}

impl IstioTcpMetrics {
    /// Creates the metrics and registers them in `registry` (which must not
    /// carry a prefix: the names already start with `istio_`).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "istio_tcp_connections_opened",
            "The total number of TCP connections opened",
            m.opened.clone(),
        );
        registry.register(
            "istio_tcp_connections_closed",
            "The total number of TCP connections closed",
            m.closed.clone(),
        );
        registry.register(
            "istio_tcp_sent_bytes",
            "The size of total bytes sent during response in case of a TCP connection",
            m.sent.clone(),
        );
        registry.register(
            "istio_tcp_received_bytes",
            "The size of total bytes received during request in case of a TCP connection",
            m.received.clone(),
        );
        m
    }
}

impl Telemetry for IstioTcpMetrics {
    fn connection_opened(&self, labels: &ConnectionLabels) -> Box<dyn ConnectionRecorder> {
        self.opened.get_or_create(labels).inc();
        // The counters are shared handles: resolved once here, so the byte
        // hooks are a single atomic add each.
        Box::new(Recorder {
            closed: self.closed.get_or_create_owned(labels),
            sent: self.sent.get_or_create_owned(labels),
            received: self.received.get_or_create_owned(labels),
        })
    }
}

struct Recorder {
    closed: Counter,
    sent: Counter,
    received: Counter,
}

impl ConnectionRecorder for Recorder {
    fn received_bytes(&self, bytes: u64) {
        self.received.inc_by(bytes);
    }

    fn sent_bytes(&self, bytes: u64) {
        self.sent.inc_by(bytes);
    }

    fn closed(&self) {
        self.closed.inc();
    }
}
