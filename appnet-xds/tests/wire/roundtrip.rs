//! Type URLs, and domain → wire → `Any` → domain round trips.

use std::fmt::Debug;

use super::fixtures;
use appnet_xds::wire::google::protobuf::Any as EnvoyAny;
use appnet_xds::*;

/// `R::TYPE_URL` is the exact string, and the one prost derives from the
/// message's package and name.
fn type_url_is<R: Resource>(expected: &str) {
    assert_eq!(R::TYPE_URL, expected);
    assert_eq!(<R::Wire as prost::Name>::type_url(), expected);
}

#[test]
fn type_urls() {
    type_url_is::<Address>("type.googleapis.com/istio.workload.Address");
    type_url_is::<Authorization>("type.googleapis.com/istio.security.Authorization");
    type_url_is::<Cluster>("type.googleapis.com/envoy.config.cluster.v3.Cluster");
    type_url_is::<ClusterLoadAssignment>(
        "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
    );
    type_url_is::<Listener>("type.googleapis.com/envoy.config.listener.v3.Listener");
    type_url_is::<RouteConfiguration>(
        "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
    );
    type_url_is::<Secret>("type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret");
}

/// Through both kinds of `Any`: equal value, same name.
fn round_trips<R: Resource + PartialEq + Debug>(resource: R, name: &str) {
    assert_eq!(resource.name(), name);
    let any = encode_any(&resource);
    assert_eq!(any.type_url, R::TYPE_URL);
    let back: R = decode_any(&any).unwrap();
    assert_eq!(back, resource);
    let envoy_any: EnvoyAny = encode_any_as(&resource);
    assert_eq!(envoy_any.value, any.value);
    assert_eq!(decode_any::<R>(&envoy_any).unwrap(), resource);
}

#[test]
fn istio_resources_round_trip() {
    round_trips(
        Address::Workload(fixtures::workload()),
        "cluster1//Pod/default/web-0",
    );
    round_trips(
        Address::from(fixtures::service()),
        "default/web.default.svc.cluster.local",
    );
    round_trips(fixtures::authorization(), "default/allow-web");
    // A minimal workload: only the uid.
    round_trips(
        Address::from(Workload {
            uid: "vm-1".into(),
            ..Default::default()
        }),
        "vm-1",
    );
}

#[test]
fn envoy_resources_round_trip() {
    round_trips(
        Cluster::try_from(fixtures::cluster()).unwrap(),
        "outbound|80||web.default.svc.cluster.local",
    );
    round_trips(
        ClusterLoadAssignment::try_from(fixtures::load_assignment()).unwrap(),
        "outbound|80||web.default.svc.cluster.local",
    );
    round_trips(
        Listener::try_from(fixtures::listener()).unwrap(),
        "inbound_15006",
    );
    round_trips(
        RouteConfiguration::try_from(fixtures::route_configuration()).unwrap(),
        "80",
    );
    round_trips(Secret::try_from(fixtures::secret()).unwrap(), "default");
    let cluster = Cluster::try_from(fixtures::cluster()).unwrap();
    assert_eq!(cluster.wire(), &fixtures::cluster());
    assert_eq!(cluster.into_wire(), fixtures::cluster());
}

#[test]
fn service_key_and_namespaced_hostname_text() {
    let key = fixtures::service().key();
    assert_eq!(key.to_string(), "default/web.default.svc.cluster.local");
    assert_eq!(key.to_string().parse::<NamespacedHostname>(), Ok(key));
    assert_eq!(
        "a/b/c".parse::<NamespacedHostname>(),
        Ok(NamespacedHostname::new("a", "b/c"))
    );
}
