//! xDS resource throughput: encode and decode (+ validate) batches of
//! realistic WDS `Address` resources.
//!
//! The workloads look like what istiod sends for pods in an ambient mesh:
//! a uid of the `cluster//Pod/namespace/name` form, one IPv4 address (and
//! an IPv6 one for every fourth pod), HBONE, identity, node, telemetry
//! names, one or two services with ports, locality, and a waypoint for
//! every fifth. The services have a VIP or two, ports, and a waypoint or a
//! load-balancing policy on some.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use appnet_xds::{
    Address, DecodeLimits, GatewayAddress, GatewayDestination, HealthPolicy, LoadBalancing,
    LoadBalancingMode, LoadBalancingScope, Locality, NamespacedHostname, NetworkAddress, Port,
    Service, TunnelProtocol, Workload, WorkloadType, decode_any, decode_wire, encode_any,
};

use crate::BenchError;

/// Namespaces the generated resources spread over.
const NAMESPACES: usize = 40;

/// One kind of resource: the domain values and their encoded `Any`s.
#[derive(Debug)]
pub struct Batch {
    resources: Vec<Address>,
    encoded: Vec<prost_types::Any>,
    bytes: usize,
}

impl Batch {
    fn new(resources: Vec<Address>) -> Self {
        let encoded: Vec<_> = resources.iter().map(encode_any).collect();
        let bytes = encoded.iter().map(|a| a.value.len()).sum();
        Self {
            resources,
            encoded,
            bytes,
        }
    }

    /// How many resources one operation handles.
    pub fn len(&self) -> usize {
        self.resources.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }

    /// Total encoded size of the batch (resource payloads, not the `Any`
    /// type URLs), in bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The domain values.
    pub fn resources(&self) -> &[Address] {
        &self.resources
    }

    /// One operation: encode every resource (domain → wire → `Any` bytes).
    /// Returns the bytes written.
    pub fn encode(&self) -> usize {
        self.resources
            .iter()
            .map(|r| black_box(encode_any(r)).value.len())
            .sum()
    }

    /// One operation: decode and validate every resource (`decode_any`).
    /// Returns how many were decoded.
    ///
    /// # Errors
    /// [`BenchError::Xds`] if any resource is refused.
    pub fn decode(&self) -> Result<usize, BenchError> {
        for any in &self.encoded {
            black_box(decode_any::<Address>(any)?);
        }
        Ok(self.encoded.len())
    }

    /// One operation: phase 1 only (type URL check and prost decode, no
    /// validation), the floor under [`decode`](Self::decode).
    ///
    /// # Errors
    /// [`BenchError::Xds`] if any resource does not decode.
    pub fn decode_wire_only(&self) -> Result<usize, BenchError> {
        let limits = DecodeLimits::default();
        for any in &self.encoded {
            black_box(decode_wire::<Address>(any, &limits)?);
        }
        Ok(self.encoded.len())
    }
}

/// A batch of workloads and a batch of services, generated deterministically.
#[derive(Debug)]
pub struct XdsBench {
    /// `Address::Workload` resources.
    pub workloads: Batch,
    /// `Address::Service` resources.
    pub services: Batch,
}

impl XdsBench {
    /// Generates `workloads` distinct workloads and `services` distinct
    /// services (each workload is an endpoint of one or two of them).
    pub fn new(workloads: usize, services: usize) -> Self {
        let services = services.max(1);
        Self {
            workloads: Batch::new((0..workloads).map(|i| workload(i, services)).collect()),
            services: Batch::new((0..services).map(service).collect()),
        }
    }
}

fn namespace(i: usize) -> String {
    format!("team-{}", i % NAMESPACES)
}

fn service_host(s: usize) -> NamespacedHostname {
    let ns = namespace(s);
    NamespacedHostname::new(ns.clone(), format!("svc-{s}.{ns}.svc.cluster.local"))
}

fn v4(i: usize) -> IpAddr {
    let [_, b, c, d] = u32::try_from(i).unwrap_or(u32::MAX).to_be_bytes();
    IpAddr::V4(Ipv4Addr::new(10, b, c, d))
}

fn v6(i: usize) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(
        0xfd00,
        0,
        0,
        0,
        0,
        0,
        (i >> 16) as u16,
        i as u16,
    ))
}

fn waypoint(ns: &str) -> GatewayAddress {
    GatewayAddress {
        destination: GatewayDestination::Hostname(NamespacedHostname::new(
            ns,
            format!("waypoint.{ns}.svc.cluster.local"),
        )),
        hbone_mtls_port: 15008,
    }
}

fn workload(i: usize, services: usize) -> Address {
    let s = i % services;
    let ns = namespace(s);
    let app = format!("svc-{s}");
    let pod = format!("{app}-7d9f8c6b5-{i:05x}");
    let mut addresses = vec![v4(i)];
    if i.is_multiple_of(4) {
        addresses.push(v6(i));
    }
    let port = |p: u16| Port {
        service_port: p,
        target_port: 8000 + p % 1000,
    };
    let mut endpoints = BTreeMap::new();
    endpoints.insert(service_host(s), vec![port(80)]);
    if i.is_multiple_of(3) {
        endpoints.insert(
            service_host((s + 1) % services),
            vec![port(443), port(9090)],
        );
    }
    Address::Workload(Workload {
        uid: format!("cluster1//Pod/{ns}/{pod}"),
        name: pod,
        namespace: ns.clone(),
        addresses,
        network: "network1".into(),
        tunnel_protocol: TunnelProtocol::Hbone,
        trust_domain: "cluster.local".into(),
        service_account: app.clone(),
        waypoint: i.is_multiple_of(5).then(|| waypoint(&ns)),
        node: format!("node-{}", i % 100),
        canonical_name: app.clone(),
        canonical_revision: "v1".into(),
        workload_type: WorkloadType::Deployment,
        workload_name: app,
        services: endpoints,
        authorization_policies: if i.is_multiple_of(7) {
            vec![format!("{ns}/allow-frontend")]
        } else {
            Vec::new()
        },
        cluster_id: "cluster1".into(),
        locality: Some(Locality {
            region: "europe-west1".into(),
            zone: format!("europe-west1-{}", ["b", "c", "d"][i % 3]),
            subzone: String::new(),
        }),
        ..Workload::default()
    })
}

fn service(s: usize) -> Address {
    let key = service_host(s);
    let mut addresses = vec![NetworkAddress {
        network: "network1".into(),
        address: IpAddr::V4(Ipv4Addr::new(10, 96, (s >> 8) as u8, s as u8)),
    }];
    if s.is_multiple_of(4) {
        addresses.push(NetworkAddress {
            network: "network1".into(),
            address: v6(0x96_0000 + s),
        });
    }
    let ports = (0..1 + s % 3)
        .map(|k| Port {
            service_port: [80, 443, 9090][k],
            target_port: [8080, 8443, 9090][k],
        })
        .collect();
    Address::Service(Service {
        name: format!("svc-{s}"),
        namespace: key.namespace.clone(),
        hostname: key.hostname,
        addresses,
        ports,
        waypoint: s.is_multiple_of(5).then(|| waypoint(&key.namespace)),
        load_balancing: s.is_multiple_of(2).then(|| LoadBalancing {
            routing_preference: vec![LoadBalancingScope::Network, LoadBalancingScope::Zone],
            mode: LoadBalancingMode::Failover,
            health_policy: HealthPolicy::OnlyHealthy,
            ..LoadBalancing::default()
        }),
        ..Service::default()
    })
}
