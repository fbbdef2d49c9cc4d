//! Validated services and their load-balancing policy.

use crate::validation::{
    Validated, ValidationError, Violation, each, enumeration, non_empty, optional,
};
use crate::wire::istio::workload as pb;
use crate::workload::{Extension, GatewayAddress, NamespacedHostname, NetworkAddress, Port};

pub use pb::IpFamilies;
pub use pb::load_balancing::{
    DnsConnectStrategy, HealthPolicy, Mode as LoadBalancingMode, Scope as LoadBalancingScope,
};

/// A service: a hostname, its virtual IPs and its ports. Named in WDS by
/// `namespace/hostname` (see [`Service::key`]).
///
/// Built from [`pb::Service`] by `TryFrom`, which checks that namespace and
/// hostname are set, addresses are 4 or 16 bytes, ports fit 16 bits and
/// enums hold known values.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Service {
    /// Short name, e.g. the Kubernetes Service name.
    pub name: String,
    /// Namespace (never empty once validated).
    pub namespace: String,
    /// Fully qualified hostname (never empty once validated).
    pub hostname: String,
    /// Virtual IPs, per network; empty for a headless service.
    pub addresses: Vec<NetworkAddress>,
    /// Service ports and the workload ports they map to.
    pub ports: Vec<Port>,
    /// Extra identities to accept from endpoints.
    pub subject_alt_names: Vec<String>,
    /// Waypoint that traffic to the service must go through.
    pub waypoint: Option<GatewayAddress>,
    /// Endpoint selection policy.
    pub load_balancing: Option<LoadBalancing>,
    /// IP families served.
    pub ip_families: IpFamilies,
    /// Opaque extra configuration, passed through unvalidated.
    pub extensions: Vec<Extension>,
    /// Preferred when the hostname is defined in several namespaces.
    pub canonical: bool,
}

impl Service {
    /// The service's namespace and hostname: its WDS name once written
    /// `namespace/hostname`.
    pub fn key(&self) -> NamespacedHostname {
        NamespacedHostname::new(self.namespace.clone(), self.hostname.clone())
    }
}

impl TryFrom<pb::Service> for Service {
    type Error = ValidationError;

    fn try_from(s: pb::Service) -> Validated<Self> {
        non_empty("namespace", &s.namespace)?;
        non_empty("hostname", &s.hostname)?;
        Ok(Self {
            name: s.name,
            namespace: s.namespace,
            hostname: s.hostname,
            addresses: each("addresses", s.addresses, NetworkAddress::try_from)?,
            ports: each("ports", s.ports, Port::try_from)?,
            subject_alt_names: s.subject_alt_names,
            waypoint: optional("waypoint", s.waypoint, GatewayAddress::try_from)?,
            load_balancing: optional("load_balancing", s.load_balancing, LoadBalancing::try_from)?,
            ip_families: enumeration("ip_families", s.ip_families)?,
            extensions: s.extensions,
            canonical: s.canonical,
        })
    }
}

impl From<&Service> for pb::Service {
    fn from(s: &Service) -> Self {
        Self {
            name: s.name.clone(),
            namespace: s.namespace.clone(),
            hostname: s.hostname.clone(),
            addresses: s.addresses.iter().map(Into::into).collect(),
            ports: s.ports.iter().map(Into::into).collect(),
            subject_alt_names: s.subject_alt_names.clone(),
            waypoint: s.waypoint.as_ref().map(Into::into),
            load_balancing: s.load_balancing.as_ref().map(Into::into),
            ip_families: s.ip_families.into(),
            extensions: s.extensions.clone(),
            canonical: s.canonical,
        }
    }
}

/// How endpoints of a service are chosen.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct LoadBalancing {
    /// Locality scopes to keep traffic within, most important first (never
    /// [`LoadBalancingScope::UnspecifiedScope`] once validated).
    pub routing_preference: Vec<LoadBalancingScope>,
    /// How the preferences apply.
    pub mode: LoadBalancingMode,
    /// Which endpoints are eligible by health.
    pub health_policy: HealthPolicy,
    /// How to connect to DNS-resolved endpoints.
    pub dns_connect_strategy: DnsConnectStrategy,
}

impl TryFrom<pb::LoadBalancing> for LoadBalancing {
    type Error = ValidationError;

    fn try_from(l: pb::LoadBalancing) -> Validated<Self> {
        let routing_preference = l
            .routing_preference
            .iter()
            .enumerate()
            .map(|(i, &scope)| {
                let violation = match LoadBalancingScope::try_from(scope) {
                    Ok(LoadBalancingScope::UnspecifiedScope) => Violation::Unspecified,
                    Ok(known) => return Ok(known),
                    Err(e) => Violation::UnknownEnum(e.0),
                };
                Err(ValidationError::new(
                    format!("routing_preference[{i}]"),
                    violation,
                ))
            })
            .collect::<Validated<_>>()?;
        Ok(Self {
            routing_preference,
            mode: enumeration("mode", l.mode)?,
            health_policy: enumeration("health_policy", l.health_policy)?,
            dns_connect_strategy: enumeration("dns_connect_strategy", l.dns_connect_strategy)?,
        })
    }
}

impl From<&LoadBalancing> for pb::LoadBalancing {
    fn from(l: &LoadBalancing) -> Self {
        Self {
            routing_preference: l.routing_preference.iter().map(|&s| s.into()).collect(),
            mode: l.mode.into(),
            health_policy: l.health_policy.into(),
            dns_connect_strategy: l.dns_connect_strategy.into(),
        }
    }
}
