//! Envoy xDS v3 resources: the wire messages from `envoy-types`, wrapped
//! after a light validation (names set, ports in range, required oneofs
//! present). Envoy itself validates the rest when it applies them.

use std::borrow::Cow;

use crate::Resource;
use crate::validation::{Validated, ValidationError, Violation, each, non_empty, port};
use crate::wire::envoy::config::core::v3 as core;
use crate::wire::envoy::config::{cluster, endpoint, listener, route};
use crate::wire::envoy::extensions::transport_sockets::tls;

/// Defines a wrapper around an Envoy message: accessors, conversions both
/// ways (wire → wrapper through `check`) and the [`Resource`] impl.
macro_rules! envoy_resource {
    (
        $(#[$doc:meta])*
        $name:ident($wire:ty), $url:literal, name: $field:ident, check: $check:path
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name($wire);

        impl $name {
            /// The wire message.
            pub fn wire(&self) -> &$wire {
                &self.0
            }

            /// Unwraps the wire message.
            pub fn into_wire(self) -> $wire {
                self.0
            }
        }

        impl TryFrom<$wire> for $name {
            type Error = ValidationError;

            fn try_from(wire: $wire) -> Validated<Self> {
                non_empty(stringify!($field), &wire.$field)?;
                $check(&wire)?;
                Ok(Self(wire))
            }
        }

        impl From<&$name> for $wire {
            fn from(resource: &$name) -> Self {
                resource.0.clone()
            }
        }

        impl Resource for $name {
            type Wire = $wire;
            const TYPE_URL: &'static str = $url;

            fn name(&self) -> Cow<'_, str> {
                Cow::Borrowed(&self.0.$field)
            }

            fn wire_name(wire: &$wire) -> Option<String> {
                (!wire.$field.is_empty()).then(|| wire.$field.clone())
            }

            fn from_wire(wire: $wire) -> Validated<Self> {
                Self::try_from(wire)
            }

            fn to_wire(&self) -> $wire {
                self.into()
            }
        }
    };
}

envoy_resource! {
    /// An Envoy cluster (CDS), type URL
    /// `type.googleapis.com/envoy.config.cluster.v3.Cluster`, named by its
    /// `name`.
    Cluster(cluster::v3::Cluster),
    "type.googleapis.com/envoy.config.cluster.v3.Cluster",
    name: name,
    check: check_cluster
}

envoy_resource! {
    /// An Envoy cluster's endpoints (EDS), type URL
    /// `type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment`,
    /// named by its `cluster_name`. Every endpoint must say which host it is,
    /// and socket ports must fit 16 bits.
    ClusterLoadAssignment(endpoint::v3::ClusterLoadAssignment),
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
    name: cluster_name,
    check: check_load_assignment
}

envoy_resource! {
    /// An Envoy listener (LDS), type URL
    /// `type.googleapis.com/envoy.config.listener.v3.Listener`, named by its
    /// `name`. A socket port, when given, must fit 16 bits.
    Listener(listener::v3::Listener),
    "type.googleapis.com/envoy.config.listener.v3.Listener",
    name: name,
    check: check_listener
}

envoy_resource! {
    /// An Envoy route table (RDS), type URL
    /// `type.googleapis.com/envoy.config.route.v3.RouteConfiguration`, named
    /// by its `name`. Every virtual host must be named.
    RouteConfiguration(route::v3::RouteConfiguration),
    "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
    name: name,
    check: check_route_configuration
}

envoy_resource! {
    /// An Envoy secret (SDS), type URL
    /// `type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret`,
    /// named by its `name`. It must hold some kind of secret.
    Secret(tls::v3::Secret),
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
    name: name,
    check: check_secret
}

fn check_cluster(_: &cluster::v3::Cluster) -> Validated<()> {
    Ok(())
}

/// A socket address's port, when numeric, must fit 16 bits.
fn check_address(address: &core::Address) -> Validated<()> {
    use core::address::Address as Kind;
    use core::socket_address::PortSpecifier;
    if let Some(Kind::SocketAddress(socket)) = &address.address
        && let Some(PortSpecifier::PortValue(value)) = socket.port_specifier
    {
        port("port_value", value).map_err(|e| e.under("socket_address"))?;
    }
    Ok(())
}

fn check_load_assignment(cla: &endpoint::v3::ClusterLoadAssignment) -> Validated<()> {
    use endpoint::v3::lb_endpoint::HostIdentifier;
    each("endpoints", &cla.endpoints, |locality| {
        each("lb_endpoints", &locality.lb_endpoints, |lb| {
            match &lb.host_identifier {
                None => Err(ValidationError::new("host_identifier", Violation::Missing)),
                Some(HostIdentifier::Endpoint(e)) => match &e.address {
                    Some(a) => check_address(a).map_err(|err| err.under("endpoint.address")),
                    None => Ok(()),
                },
                Some(HostIdentifier::EndpointName(_)) => Ok(()),
            }
        })
        .map(drop)
    })
    .map(drop)
}

fn check_listener(l: &listener::v3::Listener) -> Validated<()> {
    match &l.address {
        Some(a) => check_address(a).map_err(|e| e.under("address")),
        None => Ok(()),
    }
}

fn check_route_configuration(r: &route::v3::RouteConfiguration) -> Validated<()> {
    each("virtual_hosts", &r.virtual_hosts, |vh| {
        non_empty("name", &vh.name)
    })
    .map(drop)
}

fn check_secret(s: &tls::v3::Secret) -> Validated<()> {
    if s.r#type.is_none() {
        return Err(ValidationError::new("type", Violation::Missing));
    }
    Ok(())
}
