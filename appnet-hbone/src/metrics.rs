//! Telemetry hooks: a tunnel reports opened/closed and bytes per
//! (source, destination) through [`Telemetry`]; [`IstioTcpMetrics`] exports
//! them with prometheus-client under Istio's TCP metric names and labels.

use std::fmt;

use appnet_identity::SpiffeId;

use crate::wire::Baggage;

/// Which side of the tunnel reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reporter {
    /// The client (source) side.
    Source,
    /// The server (destination) side.
    Destination,
}

impl Reporter {
    /// Istio's label value: `source` or `destination`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Destination => "destination",
        }
    }
}

const UNKNOWN: &str = "unknown";

/// Istio's standard TCP metric labels. Unknown values are `"unknown"`, as
/// Istio reports them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "prometheus",
    derive(prometheus_client::encoding::EncodeLabelSet)
)]
#[non_exhaustive]
pub struct ConnectionLabels {
    /// `source` or `destination`: which side reported.
    pub reporter: String,
    /// The source workload name (from its baggage).
    pub source_workload: String,
    /// The source canonical service.
    pub source_canonical_service: String,
    /// The source canonical revision.
    pub source_canonical_revision: String,
    /// The source namespace (baggage, else the SPIFFE ID).
    pub source_workload_namespace: String,
    /// The source SPIFFE ID.
    pub source_principal: String,
    /// The source app (its canonical service).
    pub source_app: String,
    /// The source version (its canonical revision).
    pub source_version: String,
    /// The source cluster.
    pub source_cluster: String,
    /// The destination service hostname.
    pub destination_service: String,
    /// The destination service namespace.
    pub destination_service_namespace: String,
    /// The destination service name.
    pub destination_service_name: String,
    /// The destination workload name (from its baggage).
    pub destination_workload: String,
    /// The destination canonical service.
    pub destination_canonical_service: String,
    /// The destination canonical revision.
    pub destination_canonical_revision: String,
    /// The destination namespace (baggage, else the SPIFFE ID).
    pub destination_workload_namespace: String,
    /// The destination SPIFFE ID.
    pub destination_principal: String,
    /// The destination app (its canonical service).
    pub destination_app: String,
    /// The destination version (its canonical revision).
    pub destination_version: String,
    /// The destination cluster.
    pub destination_cluster: String,
    /// Always `tcp` here.
    pub request_protocol: String,
    /// Envoy-style response flags; `-` for none.
    pub response_flags: String,
    /// Always `mutual_tls` here.
    pub connection_security_policy: String,
}

fn or_unknown(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| UNKNOWN.to_owned())
}

impl ConnectionLabels {
    /// Labels for a mutual-TLS TCP connection between two identities, the
    /// workload fields `"unknown"` until set from baggage.
    pub fn new(reporter: Reporter, source: &SpiffeId, destination: &SpiffeId) -> Self {
        let unknown = || UNKNOWN.to_owned();
        Self {
            reporter: reporter.as_str().to_owned(),
            source_workload: unknown(),
            source_canonical_service: unknown(),
            source_canonical_revision: unknown(),
            source_workload_namespace: source.ns().map_or_else(unknown, str::to_owned),
            source_principal: source.to_string(),
            source_app: unknown(),
            source_version: unknown(),
            source_cluster: unknown(),
            destination_service: unknown(),
            destination_service_namespace: unknown(),
            destination_service_name: unknown(),
            destination_workload: unknown(),
            destination_canonical_service: unknown(),
            destination_canonical_revision: unknown(),
            destination_workload_namespace: destination.ns().map_or_else(unknown, str::to_owned),
            destination_principal: destination.to_string(),
            destination_app: unknown(),
            destination_version: unknown(),
            destination_cluster: unknown(),
            request_protocol: "tcp".to_owned(),
            response_flags: "-".to_owned(),
            connection_security_policy: "mutual_tls".to_owned(),
        }
    }

    /// Fills the source workload fields from the source's baggage.
    pub fn with_source_baggage(mut self, b: &Baggage) -> Self {
        self.source_workload = or_unknown(&b.workload_name);
        self.source_canonical_service = or_unknown(&b.service_name);
        self.source_canonical_revision = or_unknown(&b.service_version);
        self.source_app = or_unknown(&b.service_name);
        self.source_version = or_unknown(&b.service_version);
        self.source_cluster = or_unknown(&b.cluster);
        if let Some(ns) = &b.namespace {
            self.source_workload_namespace = ns.clone();
        }
        self
    }

    /// Fills the destination workload fields from the destination's baggage.
    pub fn with_destination_baggage(mut self, b: &Baggage) -> Self {
        self.destination_workload = or_unknown(&b.workload_name);
        self.destination_canonical_service = or_unknown(&b.service_name);
        self.destination_canonical_revision = or_unknown(&b.service_version);
        self.destination_app = or_unknown(&b.service_name);
        self.destination_version = or_unknown(&b.service_version);
        self.destination_cluster = or_unknown(&b.cluster);
        if let Some(ns) = &b.namespace {
            self.destination_workload_namespace = ns.clone();
        }
        self
    }

    /// Sets the destination service: its hostname, name and namespace.
    pub fn with_destination_service(
        mut self,
        hostname: impl Into<String>,
        name: impl Into<String>,
        namespace: impl Into<String>,
    ) -> Self {
        self.destination_service = hostname.into();
        self.destination_service_name = name.into();
        self.destination_service_namespace = namespace.into();
        self
    }
}

/// Receives a tunnel's events. Implementations must be cheap: the byte
/// hooks run on every read and write.
pub trait Telemetry: Send + Sync + fmt::Debug {
    /// A tunnel opened; the returned recorder receives its bytes and its
    /// close.
    fn connection_opened(&self, labels: &ConnectionLabels) -> Box<dyn ConnectionRecorder>;
}

/// One tunnel's telemetry. Directions are Istio's: *received* bytes flow
/// from source to destination (the request), *sent* bytes from destination
/// to source (the response), whichever side reports.
pub trait ConnectionRecorder: Send + Sync {
    /// Bytes moved from source to destination.
    fn received_bytes(&self, bytes: u64);
    /// Bytes moved from destination to source.
    fn sent_bytes(&self, bytes: u64);
    /// The tunnel closed; called exactly once, last.
    fn closed(&self);
}

#[cfg(feature = "prometheus")]
mod prometheus;
#[cfg(feature = "prometheus")]
pub use prometheus::IstioTcpMetrics;
