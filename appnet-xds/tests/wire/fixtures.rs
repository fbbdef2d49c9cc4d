//! Realistic resources, one of each kind, with every field set.

use std::collections::BTreeMap;

use appnet_xds::wire::envoy::config::core::v3 as core;
use appnet_xds::wire::envoy::config::{cluster, endpoint, listener, route};
use appnet_xds::wire::envoy::extensions::transport_sockets::tls;
use appnet_xds::wire::google::protobuf::Duration;
use appnet_xds::*;

pub(crate) fn workload() -> Workload {
    let mut services = BTreeMap::new();
    services.insert(
        NamespacedHostname::new("default", "web.default.svc.cluster.local"),
        vec![Port {
            service_port: 80,
            target_port: 8080,
        }],
    );
    Workload {
        uid: "cluster1//Pod/default/web-0".into(),
        name: "web-0".into(),
        namespace: "default".into(),
        addresses: vec!["10.0.0.7".parse().unwrap(), "fd00::7".parse().unwrap()],
        hostname: String::new(),
        network: "net1".into(),
        tunnel_protocol: TunnelProtocol::Hbone,
        trust_domain: "cluster.local".into(),
        service_account: "web".into(),
        waypoint: Some(GatewayAddress {
            destination: GatewayDestination::Address(NetworkAddress {
                network: "net1".into(),
                address: "10.0.0.9".parse().unwrap(),
            }),
            hbone_mtls_port: 15008,
        }),
        network_gateway: Some(GatewayAddress {
            destination: GatewayDestination::Hostname(NamespacedHostname::new(
                "istio-system",
                "eastwest.istio-system.svc.cluster.local",
            )),
            hbone_mtls_port: 15008,
        }),
        node: "node-a".into(),
        canonical_name: "web".into(),
        canonical_revision: "v1".into(),
        workload_type: WorkloadType::Pod,
        workload_name: "web".into(),
        native_tunnel: true,
        application_tunnel: Some(ApplicationTunnel {
            protocol: ApplicationTunnelProtocol::Proxy,
            port: 8443,
        }),
        services,
        authorization_policies: vec!["default/allow-web".into()],
        status: WorkloadStatus::Unhealthy,
        cluster_id: "cluster1".into(),
        locality: Some(Locality {
            region: "eu".into(),
            zone: "eu-1a".into(),
            subzone: "rack7".into(),
        }),
        network_mode: NetworkMode::HostNetwork,
        extensions: vec![Extension {
            name: "ext".into(),
            config: Some(prost_types::Any {
                type_url: "type.googleapis.com/google.protobuf.Empty".into(),
                value: Vec::new(),
            }),
        }],
        capacity: Some(3),
    }
}

pub(crate) fn service() -> Service {
    Service {
        name: "web".into(),
        namespace: "default".into(),
        hostname: "web.default.svc.cluster.local".into(),
        addresses: vec![
            NetworkAddress {
                network: "net1".into(),
                address: "10.96.0.10".parse().unwrap(),
            },
            NetworkAddress {
                network: "net1".into(),
                address: "fd00:96::10".parse().unwrap(),
            },
        ],
        ports: vec![Port {
            service_port: 80,
            target_port: 8080,
        }],
        subject_alt_names: vec!["spiffe://cluster.local/ns/default/sa/web".into()],
        waypoint: Some(GatewayAddress {
            destination: GatewayDestination::Hostname(NamespacedHostname::new(
                "default",
                "waypoint.default.svc.cluster.local",
            )),
            hbone_mtls_port: 15008,
        }),
        load_balancing: Some(LoadBalancing {
            routing_preference: vec![LoadBalancingScope::Network, LoadBalancingScope::Region],
            mode: LoadBalancingMode::Failover,
            health_policy: HealthPolicy::AllowAll,
            dns_connect_strategy: DnsConnectStrategy::FirstHealthyRace,
        }),
        ip_families: IpFamilies::Dual,
        extensions: Vec::new(),
        canonical: true,
    }
}

pub(crate) fn authorization() -> Authorization {
    Authorization {
        name: "allow-web".into(),
        namespace: "default".into(),
        scope: AuthorizationScope::WorkloadSelector,
        action: AuthorizationAction::Deny,
        rules: vec![Rule {
            clauses: vec![Clause {
                matches: vec![Match {
                    namespaces: vec![StringMatch::Exact("frontend".into())],
                    not_namespaces: vec![StringMatch::Prefix("kube-".into())],
                    principals: vec![StringMatch::Suffix("/sa/web".into())],
                    not_principals: vec![StringMatch::Presence],
                    source_ips: vec!["10.0.0.0/8".parse().unwrap()],
                    not_source_ips: vec!["10.1.0.0/16".parse().unwrap()],
                    destination_ips: vec!["fd00::/64".parse().unwrap()],
                    not_destination_ips: vec!["fd00::1/128".parse().unwrap()],
                    destination_ports: vec![443, 8443],
                    not_destination_ports: vec![22],
                    service_accounts: vec![ServiceAccountMatch {
                        namespace: "frontend".into(),
                        service_account: "web".into(),
                    }],
                    not_service_accounts: vec![ServiceAccountMatch {
                        namespace: "frontend".into(),
                        service_account: "debug".into(),
                    }],
                }],
            }],
        }],
    }
}

fn socket(ip: &str, port: u32) -> core::Address {
    core::Address {
        address: Some(core::address::Address::SocketAddress(core::SocketAddress {
            address: ip.into(),
            port_specifier: Some(core::socket_address::PortSpecifier::PortValue(port)),
            ..Default::default()
        })),
    }
}

pub(crate) fn cluster() -> cluster::v3::Cluster {
    cluster::v3::Cluster {
        name: "outbound|80||web.default.svc.cluster.local".into(),
        connect_timeout: Some(Duration {
            seconds: 10,
            nanos: 0,
        }),
        cluster_discovery_type: Some(cluster::v3::cluster::ClusterDiscoveryType::Type(
            cluster::v3::cluster::DiscoveryType::Eds.into(),
        )),
        ..Default::default()
    }
}

pub(crate) fn load_assignment() -> endpoint::v3::ClusterLoadAssignment {
    endpoint::v3::ClusterLoadAssignment {
        cluster_name: "outbound|80||web.default.svc.cluster.local".into(),
        endpoints: vec![endpoint::v3::LocalityLbEndpoints {
            lb_endpoints: vec![endpoint::v3::LbEndpoint {
                host_identifier: Some(endpoint::v3::lb_endpoint::HostIdentifier::Endpoint(
                    endpoint::v3::Endpoint {
                        address: Some(socket("10.0.0.7", 8080)),
                        ..Default::default()
                    },
                )),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub(crate) fn listener() -> listener::v3::Listener {
    listener::v3::Listener {
        name: "inbound_15006".into(),
        address: Some(socket("0.0.0.0", 15006)),
        ..Default::default()
    }
}

pub(crate) fn route_configuration() -> route::v3::RouteConfiguration {
    route::v3::RouteConfiguration {
        name: "80".into(),
        virtual_hosts: vec![route::v3::VirtualHost {
            name: "web.default.svc.cluster.local:80".into(),
            domains: vec!["web.default.svc.cluster.local".into()],
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub(crate) fn secret() -> tls::v3::Secret {
    let inline = |s: &str| core::DataSource {
        specifier: Some(core::data_source::Specifier::InlineString(s.into())),
        ..Default::default()
    };
    tls::v3::Secret {
        name: "default".into(),
        r#type: Some(tls::v3::secret::Type::TlsCertificate(
            tls::v3::TlsCertificate {
                certificate_chain: Some(inline("-----BEGIN CERTIFICATE-----")),
                private_key: Some(inline("-----BEGIN PRIVATE KEY-----")),
                ..Default::default()
            },
        )),
    }
}
