//! Properties: arbitrary bytes never panic the decoder; arbitrary valid
//! domain values round-trip.

use std::net::IpAddr;

use appnet_xds::*;
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
    ]
}

fn text() -> impl Strategy<Value = String> {
    "[a-z0-9.-]{0,12}"
}

fn name() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9./-]{0,20}"
}

fn namespaced_hostname() -> impl Strategy<Value = NamespacedHostname> {
    ("[a-z][a-z0-9-]{0,8}", "[a-z][a-z0-9.]{0,16}")
        .prop_map(|(ns, host)| NamespacedHostname::new(ns, host))
}

fn network_address() -> impl Strategy<Value = NetworkAddress> {
    (text(), ip()).prop_map(|(network, address)| NetworkAddress { network, address })
}

fn gateway() -> impl Strategy<Value = GatewayAddress> {
    let destination = prop_oneof![
        namespaced_hostname().prop_map(GatewayDestination::Hostname),
        network_address().prop_map(GatewayDestination::Address),
    ];
    (destination, any::<u16>()).prop_map(|(destination, hbone_mtls_port)| GatewayAddress {
        destination,
        hbone_mtls_port,
    })
}

fn port() -> impl Strategy<Value = Port> {
    (any::<u16>(), any::<u16>()).prop_map(|(service_port, target_port)| Port {
        service_port,
        target_port,
    })
}

fn locality() -> impl Strategy<Value = Locality> {
    (text(), text(), text()).prop_map(|(region, zone, subzone)| Locality {
        region,
        zone,
        subzone,
    })
}

fn extension() -> impl Strategy<Value = Extension> {
    (text(), option::of((name(), vec(any::<u8>(), 0..8)))).prop_map(|(name, config)| Extension {
        name,
        config: config.map(|(t, value)| prost_types::Any {
            type_url: format!("type.googleapis.com/{t}"),
            value,
        }),
    })
}

fn workload() -> impl Strategy<Value = Workload> {
    let identity = (
        name(),
        text(),
        text(),
        vec(ip(), 0..4),
        text(),
        text(),
        select(vec![TunnelProtocol::None, TunnelProtocol::Hbone]),
        text(),
        text(),
        option::of(gateway()),
        option::of(gateway()),
    );
    let rest = (
        (text(), text(), text(), text()),
        select(vec![
            WorkloadType::Deployment,
            WorkloadType::Cronjob,
            WorkloadType::Pod,
            WorkloadType::Job,
        ]),
        any::<bool>(),
        option::of(
            (
                select(vec![
                    ApplicationTunnelProtocol::None,
                    ApplicationTunnelProtocol::Proxy,
                ]),
                any::<u16>(),
            )
                .prop_map(|(protocol, port)| ApplicationTunnel { protocol, port }),
        ),
        btree_map(namespaced_hostname(), vec(port(), 0..3), 0..3),
        vec(name(), 0..3),
        select(vec![WorkloadStatus::Healthy, WorkloadStatus::Unhealthy]),
        option::of(locality()),
        select(vec![NetworkMode::Standard, NetworkMode::HostNetwork]),
        vec(extension(), 0..2),
        option::of(any::<u32>()),
    );
    (identity, rest).prop_map(|(i, r)| Workload {
        uid: i.0,
        name: i.1,
        namespace: i.2,
        addresses: i.3,
        hostname: i.4,
        network: i.5,
        tunnel_protocol: i.6,
        trust_domain: i.7,
        service_account: i.8,
        waypoint: i.9,
        network_gateway: i.10,
        node: r.0.0,
        canonical_name: r.0.1,
        canonical_revision: r.0.2,
        workload_name: r.0.3,
        workload_type: r.1,
        native_tunnel: r.2,
        application_tunnel: r.3,
        services: r.4,
        authorization_policies: r.5,
        status: r.6,
        cluster_id: String::new(),
        locality: r.7,
        network_mode: r.8,
        extensions: r.9,
        capacity: r.10,
    })
}

fn load_balancing() -> impl Strategy<Value = LoadBalancing> {
    use LoadBalancingScope as S;
    (
        vec(
            select(vec![
                S::Region,
                S::Zone,
                S::Subzone,
                S::Node,
                S::Cluster,
                S::Network,
            ]),
            0..4,
        ),
        select(vec![
            LoadBalancingMode::UnspecifiedMode,
            LoadBalancingMode::Strict,
            LoadBalancingMode::Failover,
            LoadBalancingMode::Passthrough,
        ]),
        select(vec![HealthPolicy::OnlyHealthy, HealthPolicy::AllowAll]),
        select(vec![
            DnsConnectStrategy::Default,
            DnsConnectStrategy::FirstHealthyRace,
        ]),
    )
        .prop_map(
            |(routing_preference, mode, health_policy, dns_connect_strategy)| LoadBalancing {
                routing_preference,
                mode,
                health_policy,
                dns_connect_strategy,
            },
        )
}

fn service() -> impl Strategy<Value = Service> {
    (
        (text(), namespaced_hostname()),
        vec(network_address(), 0..3),
        vec(port(), 0..3),
        vec(text(), 0..2),
        option::of(gateway()),
        option::of(load_balancing()),
        select(vec![
            IpFamilies::Automatic,
            IpFamilies::Ipv4Only,
            IpFamilies::Ipv6Only,
            IpFamilies::Dual,
        ]),
        vec(extension(), 0..2),
        any::<bool>(),
    )
        .prop_map(
            |(
                (name, key),
                addresses,
                ports,
                sans,
                waypoint,
                lb,
                ip_families,
                extensions,
                canonical,
            )| {
                Service {
                    name,
                    namespace: key.namespace,
                    hostname: key.hostname,
                    addresses,
                    ports,
                    subject_alt_names: sans,
                    waypoint,
                    load_balancing: lb,
                    ip_families,
                    extensions,
                    canonical,
                }
            },
        )
}

fn cidr() -> impl Strategy<Value = IpNet> {
    prop_oneof![
        (any::<[u8; 4]>(), 0u8..=32).prop_map(|(a, l)| IpNet::new(IpAddr::from(a), l).unwrap()),
        (any::<[u8; 16]>(), 0u8..=128).prop_map(|(a, l)| IpNet::new(IpAddr::from(a), l).unwrap()),
    ]
}

fn string_match() -> impl Strategy<Value = StringMatch> {
    prop_oneof![
        text().prop_map(StringMatch::Exact),
        text().prop_map(StringMatch::Prefix),
        text().prop_map(StringMatch::Suffix),
        Just(StringMatch::Presence),
    ]
}

fn account() -> impl Strategy<Value = ServiceAccountMatch> {
    ("[a-z]{1,8}", "[a-z]{1,8}").prop_map(|(namespace, service_account)| ServiceAccountMatch {
        namespace,
        service_account,
    })
}

fn matcher() -> impl Strategy<Value = Match> {
    let strings = || vec(string_match(), 0..2);
    let cidrs = || vec(cidr(), 0..2);
    (
        (strings(), strings(), strings(), strings()),
        (cidrs(), cidrs(), cidrs(), cidrs()),
        (vec(any::<u16>(), 0..3), vec(any::<u16>(), 0..3)),
        (vec(account(), 0..2), vec(account(), 0..2)),
    )
        .prop_map(|(s, c, p, a)| Match {
            namespaces: s.0,
            not_namespaces: s.1,
            principals: s.2,
            not_principals: s.3,
            source_ips: c.0,
            not_source_ips: c.1,
            destination_ips: c.2,
            not_destination_ips: c.3,
            destination_ports: p.0,
            not_destination_ports: p.1,
            service_accounts: a.0,
            not_service_accounts: a.1,
        })
}

fn authorization() -> impl Strategy<Value = Authorization> {
    let clause = vec(matcher(), 0..3).prop_map(|matches| Clause { matches });
    let rule = vec(clause, 0..3).prop_map(|clauses| Rule { clauses });
    (
        "[a-z][a-z0-9-]{0,10}",
        "[a-z][a-z0-9-]{0,10}",
        select(vec![
            AuthorizationScope::Global,
            AuthorizationScope::Namespace,
            AuthorizationScope::WorkloadSelector,
        ]),
        select(vec![AuthorizationAction::Allow, AuthorizationAction::Deny]),
        vec(rule, 0..3),
    )
        .prop_map(|(name, namespace, scope, action, rules)| Authorization {
            name,
            namespace,
            scope,
            action,
            rules,
        })
}

proptest! {
    #[test]
    fn workloads_round_trip(w in workload()) {
        let address = Address::Workload(w);
        let back: Address = decode_any(&encode_any(&address)).unwrap();
        prop_assert_eq!(back, address);
    }

    #[test]
    fn services_round_trip(s in service()) {
        let address = Address::Service(s);
        let back: Address = decode_any(&encode_any(&address)).unwrap();
        prop_assert_eq!(back.name(), address.name());
        prop_assert_eq!(back, address);
    }

    #[test]
    fn authorizations_round_trip(a in authorization()) {
        let back: Authorization = decode_any(&encode_any(&a)).unwrap();
        prop_assert_eq!(back, a);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..512), url in 0usize..8) {
        let urls = [
            Address::TYPE_URL,
            Authorization::TYPE_URL,
            Cluster::TYPE_URL,
            ClusterLoadAssignment::TYPE_URL,
            Listener::TYPE_URL,
            RouteConfiguration::TYPE_URL,
            Secret::TYPE_URL,
            "type.googleapis.com/nonsense",
        ];
        let any = prost_types::Any { type_url: urls[url].into(), value: bytes.clone() };
        // Each decoder either accepts or returns a typed error; the fuzz
        // entry points also check what they accept round-trips.
        let _ = decode_any::<Address>(&any);
        let _ = decode_any::<Authorization>(&any);
        let _ = decode_any::<Cluster>(&any);
        let _ = decode_any::<ClusterLoadAssignment>(&any);
        let _ = decode_any::<Listener>(&any);
        let _ = decode_any::<RouteConfiguration>(&any);
        let _ = decode_any::<Secret>(&any);
        appnet_xds::fuzzing::decode_address(&bytes);
        appnet_xds::fuzzing::decode_authorization(&bytes);
        appnet_xds::fuzzing::decode_envoy(&bytes);
    }

    #[test]
    fn mutated_valid_payloads_never_panic(
        pick in 0usize..3,
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        // Random bytes rarely get past the first tag; flipping bytes of a
        // valid payload reaches validation far more often.
        let mut bytes = match pick {
            0 => encode_any(&Address::Workload(super::fixtures::workload())).value,
            1 => encode_any(&Address::Service(super::fixtures::service())).value,
            _ => encode_any(&super::fixtures::authorization()).value,
        };
        for (index, value) in flips {
            let i = index.index(bytes.len());
            bytes[i] ^= value;
        }
        appnet_xds::fuzzing::decode_address(&bytes);
        appnet_xds::fuzzing::decode_authorization(&bytes);
    }
}
