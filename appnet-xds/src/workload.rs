//! Validated workloads and the small types they share with services.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::validation::{
    Validated, ValidationError, Violation, each, enumeration, ip_from_bytes, ip_to_bytes,
    non_empty, optional, port,
};
use crate::wire::istio::workload as pb;

pub use pb::application_tunnel::Protocol as ApplicationTunnelProtocol;
pub use pb::{Extension, NetworkMode, TunnelProtocol, WorkloadStatus, WorkloadType};

/// A workload: one endpoint of the mesh (a pod, a VM, a workload entry), as
/// a node proxy needs to know it. Named in WDS by its [`uid`](Self::uid).
///
/// Built from [`pb::Workload`] by `TryFrom`, which checks that the uid is
/// set, every address is 4 or 16 bytes, ports fit 16 bits, enums hold known
/// values and `services` keys are `namespace/hostname`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Workload {
    /// Mesh-wide unique, opaque identifier (never empty once validated).
    pub uid: String,
    /// Name, e.g. the pod name (informational).
    pub name: String,
    /// Namespace; part of the workload's SPIFFE identity.
    pub namespace: String,
    /// IP addresses the workload is reached at.
    pub addresses: Vec<IpAddr>,
    /// A hostname to resolve instead of (or besides) the addresses.
    pub hostname: String,
    /// Network the workload is on; empty for the default network.
    pub network: String,
    /// How to carry traffic to the workload.
    pub tunnel_protocol: TunnelProtocol,
    /// Trust domain of its identity; empty means the mesh default.
    pub trust_domain: String,
    /// Service account of its identity; empty means `default`.
    pub service_account: String,
    /// Waypoint that traffic to the workload must go through.
    pub waypoint: Option<GatewayAddress>,
    /// East-west gateway through which other networks reach the workload.
    pub network_gateway: Option<GatewayAddress>,
    /// Node the workload runs on.
    pub node: String,
    /// Canonical service name (telemetry).
    pub canonical_name: String,
    /// Canonical revision (telemetry).
    pub canonical_revision: String,
    /// Kind of owning controller (telemetry).
    pub workload_type: WorkloadType,
    /// Name of the owning controller (telemetry).
    pub workload_name: String,
    /// Whether the workload speaks the tunnel protocol itself.
    pub native_tunnel: bool,
    /// How the workload wants tunnelled traffic delivered.
    pub application_tunnel: Option<ApplicationTunnel>,
    /// Services this workload is an endpoint of, with its ports for each.
    pub services: BTreeMap<NamespacedHostname, Vec<Port>>,
    /// Selector-scoped authorization policies (`namespace/name`) that apply.
    pub authorization_policies: Vec<String>,
    /// Health.
    pub status: WorkloadStatus,
    /// Cluster the workload belongs to.
    pub cluster_id: String,
    /// Where the workload runs.
    pub locality: Option<Locality>,
    /// Whether the addresses are the workload's own or the node's.
    pub network_mode: NetworkMode,
    /// Opaque extra configuration, passed through unvalidated.
    pub extensions: Vec<Extension>,
    /// Relative traffic weight; `None` means 1.
    pub capacity: Option<u32>,
}

impl TryFrom<pb::Workload> for Workload {
    type Error = ValidationError;

    fn try_from(w: pb::Workload) -> Validated<Self> {
        non_empty("uid", &w.uid)?;
        let addresses = w
            .addresses
            .iter()
            .enumerate()
            .map(|(i, bytes)| {
                ip_from_bytes(bytes).map_err(|v| ValidationError::new(format!("addresses[{i}]"), v))
            })
            .collect::<Validated<_>>()?;
        let services = w
            .services
            .into_iter()
            .map(|(key, list)| {
                let service = key
                    .parse::<NamespacedHostname>()
                    .map_err(|v| ValidationError::new(format!("services[{key:?}]"), v))?;
                let ports = each("ports", list.ports, Port::try_from)
                    .map_err(|e| e.under(format_args!("services[{key:?}]")))?;
                Ok((service, ports))
            })
            .collect::<Validated<_>>()?;
        Ok(Self {
            uid: w.uid,
            name: w.name,
            namespace: w.namespace,
            addresses,
            hostname: w.hostname,
            network: w.network,
            tunnel_protocol: enumeration("tunnel_protocol", w.tunnel_protocol)?,
            trust_domain: w.trust_domain,
            service_account: w.service_account,
            waypoint: optional("waypoint", w.waypoint, GatewayAddress::try_from)?,
            network_gateway: optional(
                "network_gateway",
                w.network_gateway,
                GatewayAddress::try_from,
            )?,
            node: w.node,
            canonical_name: w.canonical_name,
            canonical_revision: w.canonical_revision,
            workload_type: enumeration("workload_type", w.workload_type)?,
            workload_name: w.workload_name,
            native_tunnel: w.native_tunnel,
            application_tunnel: optional(
                "application_tunnel",
                w.application_tunnel,
                ApplicationTunnel::try_from,
            )?,
            services,
            authorization_policies: w.authorization_policies,
            status: enumeration("status", w.status)?,
            cluster_id: w.cluster_id,
            locality: w.locality.map(Locality::from),
            network_mode: enumeration("network_mode", w.network_mode)?,
            extensions: w.extensions,
            capacity: w.capacity,
        })
    }
}

impl From<&Workload> for pb::Workload {
    fn from(w: &Workload) -> Self {
        Self {
            uid: w.uid.clone(),
            name: w.name.clone(),
            namespace: w.namespace.clone(),
            addresses: w.addresses.iter().copied().map(ip_to_bytes).collect(),
            hostname: w.hostname.clone(),
            network: w.network.clone(),
            tunnel_protocol: w.tunnel_protocol.into(),
            trust_domain: w.trust_domain.clone(),
            service_account: w.service_account.clone(),
            waypoint: w.waypoint.as_ref().map(Into::into),
            network_gateway: w.network_gateway.as_ref().map(Into::into),
            node: w.node.clone(),
            canonical_name: w.canonical_name.clone(),
            canonical_revision: w.canonical_revision.clone(),
            workload_type: w.workload_type.into(),
            workload_name: w.workload_name.clone(),
            native_tunnel: w.native_tunnel,
            application_tunnel: w.application_tunnel.as_ref().map(Into::into),
            services: w
                .services
                .iter()
                .map(|(service, ports)| {
                    let ports = ports.iter().map(Into::into).collect();
                    (service.to_string(), pb::PortList { ports })
                })
                .collect(),
            authorization_policies: w.authorization_policies.clone(),
            status: w.status.into(),
            cluster_id: w.cluster_id.clone(),
            locality: w.locality.as_ref().map(Into::into),
            network_mode: w.network_mode.into(),
            extensions: w.extensions.clone(),
            capacity: w.capacity,
        }
    }
}

/// A service named by namespace and hostname; written `namespace/hostname`
/// (the WDS name of a service, and the key of [`Workload::services`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct NamespacedHostname {
    /// Namespace of the service.
    pub namespace: String,
    /// Hostname of the service.
    pub hostname: String,
}

impl NamespacedHostname {
    /// A namespaced hostname from its parts.
    pub fn new(namespace: impl Into<String>, hostname: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            hostname: hostname.into(),
        }
    }
}

impl fmt::Display for NamespacedHostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.hostname)
    }
}

impl FromStr for NamespacedHostname {
    type Err = Violation;

    /// Parses `namespace/hostname`, both parts non-empty.
    fn from_str(s: &str) -> Result<Self, Violation> {
        match s.split_once('/') {
            Some((namespace, hostname)) if !namespace.is_empty() && !hostname.is_empty() => {
                Ok(Self::new(namespace, hostname))
            }
            _ => Err(Violation::NotNamespacedHostname(s.to_owned())),
        }
    }
}

impl TryFrom<pb::NamespacedHostname> for NamespacedHostname {
    type Error = ValidationError;

    fn try_from(n: pb::NamespacedHostname) -> Validated<Self> {
        non_empty("namespace", &n.namespace)?;
        non_empty("hostname", &n.hostname)?;
        Ok(Self {
            namespace: n.namespace,
            hostname: n.hostname,
        })
    }
}

impl From<&NamespacedHostname> for pb::NamespacedHostname {
    fn from(n: &NamespacedHostname) -> Self {
        Self {
            namespace: n.namespace.clone(),
            hostname: n.hostname.clone(),
        }
    }
}

/// An IP address on a network.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NetworkAddress {
    /// Network name; empty for the default network.
    pub network: String,
    /// The address.
    pub address: IpAddr,
}

impl TryFrom<pb::NetworkAddress> for NetworkAddress {
    type Error = ValidationError;

    fn try_from(n: pb::NetworkAddress) -> Validated<Self> {
        let address = ip_from_bytes(&n.address).map_err(|v| ValidationError::new("address", v))?;
        Ok(Self {
            network: n.network,
            address,
        })
    }
}

impl From<&NetworkAddress> for pb::NetworkAddress {
    fn from(n: &NetworkAddress) -> Self {
        Self {
            network: n.network.clone(),
            address: ip_to_bytes(n.address),
        }
    }
}

/// Where a waypoint or an east-west gateway is reached.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GatewayAddress {
    /// The gateway, by service or by address.
    pub destination: GatewayDestination,
    /// Port for mutual-TLS HBONE connections (Istio uses 15008).
    pub hbone_mtls_port: u16,
}

/// A gateway's identity: a service to look up, or an address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GatewayDestination {
    /// A service, by namespace and hostname.
    Hostname(NamespacedHostname),
    /// An IP address on a network.
    Address(NetworkAddress),
}

impl TryFrom<pb::GatewayAddress> for GatewayAddress {
    type Error = ValidationError;

    fn try_from(g: pb::GatewayAddress) -> Validated<Self> {
        use pb::gateway_address::Destination;
        let destination = match g.destination {
            Some(Destination::Hostname(h)) => GatewayDestination::Hostname(
                NamespacedHostname::try_from(h).map_err(|e| e.under("hostname"))?,
            ),
            Some(Destination::Address(a)) => GatewayDestination::Address(
                NetworkAddress::try_from(a).map_err(|e| e.under("address"))?,
            ),
            None => return Err(ValidationError::new("destination", Violation::Missing)),
        };
        Ok(Self {
            destination,
            hbone_mtls_port: port("hbone_mtls_port", g.hbone_mtls_port)?,
        })
    }
}

impl From<&GatewayAddress> for pb::GatewayAddress {
    fn from(g: &GatewayAddress) -> Self {
        use pb::gateway_address::Destination;
        Self {
            destination: Some(match &g.destination {
                GatewayDestination::Hostname(h) => Destination::Hostname(h.into()),
                GatewayDestination::Address(a) => Destination::Address(a.into()),
            }),
            hbone_mtls_port: u32::from(g.hbone_mtls_port),
        }
    }
}

/// Region, zone and subzone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Locality {
    /// Region.
    pub region: String,
    /// Zone within the region.
    pub zone: String,
    /// Subzone within the zone.
    pub subzone: String,
}

impl From<pb::Locality> for Locality {
    fn from(l: pb::Locality) -> Self {
        Self {
            region: l.region,
            zone: l.zone,
            subzone: l.subzone,
        }
    }
}

impl From<&Locality> for pb::Locality {
    fn from(l: &Locality) -> Self {
        Self {
            region: l.region.clone(),
            zone: l.zone.clone(),
            subzone: l.subzone.clone(),
        }
    }
}

/// A service port and the workload port behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Port {
    /// Port clients connect to.
    pub service_port: u16,
    /// Port on the workload (0: Istio leaves it to the service's definition).
    pub target_port: u16,
}

impl TryFrom<pb::Port> for Port {
    type Error = ValidationError;

    fn try_from(p: pb::Port) -> Validated<Self> {
        Ok(Self {
            service_port: port("service_port", p.service_port)?,
            target_port: port("target_port", p.target_port)?,
        })
    }
}

impl From<&Port> for pb::Port {
    fn from(p: &Port) -> Self {
        Self {
            service_port: u32::from(p.service_port),
            target_port: u32::from(p.target_port),
        }
    }
}

/// How a workload wants tunnelled traffic delivered to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ApplicationTunnel {
    /// Delivery format.
    pub protocol: ApplicationTunnelProtocol,
    /// Port to deliver to; 0 keeps the original port.
    pub port: u16,
}

impl TryFrom<pb::ApplicationTunnel> for ApplicationTunnel {
    type Error = ValidationError;

    fn try_from(a: pb::ApplicationTunnel) -> Validated<Self> {
        Ok(Self {
            protocol: enumeration("protocol", a.protocol)?,
            port: port("port", a.port)?,
        })
    }
}

impl From<&ApplicationTunnel> for pb::ApplicationTunnel {
    fn from(a: &ApplicationTunnel) -> Self {
        Self {
            protocol: a.protocol.into(),
            port: u32::from(a.port),
        }
    }
}
