//! Bad input of every kind becomes a typed error that names the field.

use super::fixtures;
use super::handcoded::{Fields, any, authorization_fields, workload_fields};
use appnet_xds::wire::envoy::config::core::v3 as core;
use appnet_xds::*;

fn fields() -> Fields {
    Fields::default()
}

/// Decodes an Address whose workload is `workload_fields()` plus `extra`.
fn workload_with(extra: Fields) -> Result<Address, ResourceError> {
    let mut workload = workload_fields();
    workload.0.extend_from_slice(&extra.0);
    decode_any(&any(Address::TYPE_URL, fields().message(1, workload)))
}

/// The field path and violation of an `Invalid` error.
fn invalid(
    result: Result<impl std::fmt::Debug, ResourceError>,
) -> (Option<String>, String, Violation) {
    match result {
        Err(ResourceError::Invalid {
            resource,
            field,
            violation,
            ..
        }) => (resource, field, violation),
        other => panic!("expected an Invalid error, got {other:?}"),
    }
}

#[test]
fn garbage_bytes_are_a_decode_error() {
    for garbage in [
        &[0xff, 0xff, 0xff][..],
        &[0x0a, 0x05, 0x01],
        &[0x08],
        &[0x7f; 12],
    ] {
        let result = decode_any::<Address>(&prost_types::Any {
            type_url: Address::TYPE_URL.into(),
            value: garbage.to_vec(),
        });
        assert!(
            matches!(result, Err(ResourceError::Decode { type_url, .. }) if type_url == Address::TYPE_URL),
            "{garbage:?}: {result:?}"
        );
    }
    let err = decode_any::<Authorization>(&prost_types::Any {
        type_url: Authorization::TYPE_URL.into(),
        value: vec![0xff],
    })
    .unwrap_err();
    assert!(err.to_string().contains("does not decode"), "{err}");
}

#[test]
fn wrong_type_url_is_named() {
    let cluster = encode_any(&Cluster::try_from(fixtures::cluster()).unwrap());
    let err = decode_any::<Address>(&cluster).unwrap_err();
    assert_eq!(
        err,
        ResourceError::WrongTypeUrl {
            expected: Address::TYPE_URL,
            actual: Cluster::TYPE_URL.into(),
        }
    );
    // A type name without the `/` separator is not a type URL.
    let bare = any("istio.workload.Address", fields());
    assert!(matches!(
        decode_any::<Address>(&bare),
        Err(ResourceError::WrongTypeUrl { .. })
    ));
    // Another prefix before the last `/` names the same message.
    let other_host = any(
        "example.com/istio.workload.Address",
        fields().message(1, workload_fields()),
    );
    assert!(decode_any::<Address>(&other_host).is_ok());
}

#[test]
fn oversized_resources_are_refused_before_decoding() {
    let payload = any(Authorization::TYPE_URL, authorization_fields());
    let size = payload.value.len();
    let limits = DecodeLimits::new().with_max_resource_bytes(size - 1);
    assert_eq!(
        decode_any_with::<Authorization>(&payload, &limits),
        Err(ResourceError::TooLarge {
            type_url: Authorization::TYPE_URL,
            size,
            max: size - 1,
        })
    );
    let limits = DecodeLimits::new().with_max_resource_bytes(size);
    assert!(decode_any_with::<Authorization>(&payload, &limits).is_ok());
    assert_eq!(DecodeLimits::default().max_resource_bytes, 4 << 20);
}

#[test]
fn bad_ip_length_names_the_address() {
    let err = workload_with(fields().bytes(3, &[1, 2, 3, 4, 5])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid type.googleapis.com/istio.workload.Address resource \
         \"cluster1//Pod/default/web-0\": workload.addresses[2]: \
         5 bytes is not an IPv4 or IPv6 address"
    );
    let (resource, field, violation) = invalid(Err::<(), _>(err));
    assert_eq!(resource.as_deref(), Some("cluster1//Pod/default/web-0"));
    assert_eq!(field, "workload.addresses[2]");
    assert_eq!(violation, Violation::IpLength(5));

    let service = fields().message(
        2,
        fields()
            .string(2, "default")
            .string(3, "web")
            .message(4, fields().bytes(2, &[])),
    );
    let (_, field, violation) = invalid(decode_any::<Address>(&any(Address::TYPE_URL, service)));
    assert_eq!(field, "service.addresses[0].address");
    assert_eq!(violation, Violation::IpLength(0));
}

#[test]
fn bad_cidr_length_names_the_range() {
    for (ip, length, max) in [(&[10, 0, 0, 0][..], 33, 32), (&[0; 16][..], 129, 128)] {
        let matches = fields().message(5, fields().bytes(1, ip).uint32(2, length));
        let policy = fields()
            .string(1, "p")
            .string(2, "ns")
            .message(5, fields().message(1, fields().message(2, matches)));
        let (resource, field, violation) = invalid(decode_any::<Authorization>(&any(
            Authorization::TYPE_URL,
            policy,
        )));
        assert_eq!(resource.as_deref(), Some("ns/p"));
        assert_eq!(field, "rules[0].clauses[0].matches[0].source_ips[0].length");
        assert_eq!(violation, Violation::PrefixLength { length, max });
    }
    let matches = fields().message(8, fields().bytes(1, &[10, 0, 0]).uint32(2, 8));
    let policy = fields()
        .string(1, "p")
        .string(2, "ns")
        .message(5, fields().message(1, fields().message(2, matches)));
    let (_, field, _) = invalid(decode_any::<Authorization>(&any(
        Authorization::TYPE_URL,
        policy,
    )));
    assert_eq!(
        field,
        "rules[0].clauses[0].matches[0].not_destination_ips[0].address"
    );
}

#[test]
fn empty_names_are_refused() {
    // Workload without uid.
    let (resource, field, violation) = invalid(decode_any::<Address>(&any(
        Address::TYPE_URL,
        fields().message(1, fields().string(1, "web-0")),
    )));
    assert_eq!(
        (resource, field.as_str(), violation),
        (None, "workload.uid", Violation::Empty)
    );
    // Service without hostname.
    let (_, field, violation) = invalid(decode_any::<Address>(&any(
        Address::TYPE_URL,
        fields().message(2, fields().string(2, "default")),
    )));
    assert_eq!(
        (field.as_str(), violation),
        ("service.hostname", Violation::Empty)
    );
    // Address with neither.
    let (_, field, violation) = invalid(decode_any::<Address>(&any(Address::TYPE_URL, fields())));
    assert_eq!((field.as_str(), violation), ("type", Violation::Missing));
    // Authorization without a name.
    let (_, field, _) = invalid(decode_any::<Authorization>(&any(
        Authorization::TYPE_URL,
        fields().string(2, "default"),
    )));
    assert_eq!(field, "name");
    // Envoy resources without a name.
    for (url, field) in [
        (Cluster::TYPE_URL, "name"),
        (Listener::TYPE_URL, "name"),
        (RouteConfiguration::TYPE_URL, "name"),
        (Secret::TYPE_URL, "name"),
        (ClusterLoadAssignment::TYPE_URL, "cluster_name"),
    ] {
        let empty = any(url, fields());
        let got = match url {
            u if u == Cluster::TYPE_URL => invalid(decode_any::<Cluster>(&empty)),
            u if u == Listener::TYPE_URL => invalid(decode_any::<Listener>(&empty)),
            u if u == RouteConfiguration::TYPE_URL => {
                invalid(decode_any::<RouteConfiguration>(&empty))
            }
            u if u == Secret::TYPE_URL => invalid(decode_any::<Secret>(&empty)),
            _ => invalid(decode_any::<ClusterLoadAssignment>(&empty)),
        };
        assert_eq!((got.1.as_str(), got.2), (field, Violation::Empty), "{url}");
    }
}

#[test]
fn out_of_range_ports_are_refused() {
    let err = workload_with(fields().message(
        22,
        fields().string(1, "default/db").message(
            2,
            fields().message(1, fields().uint32(1, 5432).uint32(2, 70_000)),
        ),
    ));
    let (_, field, violation) = invalid(err);
    assert_eq!(
        field,
        r#"workload.services["default/db"].ports[0].target_port"#
    );
    assert_eq!(violation, Violation::Port(70_000));

    let matches = fields().packed_uint32(10, &[22, 65_536]);
    let policy = fields()
        .string(1, "p")
        .string(2, "ns")
        .message(5, fields().message(1, fields().message(2, matches)));
    let (_, field, violation) = invalid(decode_any::<Authorization>(&any(
        Authorization::TYPE_URL,
        policy,
    )));
    assert_eq!(
        field,
        "rules[0].clauses[0].matches[0].not_destination_ports[1]"
    );
    assert_eq!(violation, Violation::Port(65_536));

    let mut listener = fixtures::listener();
    listener.address = Some(core::Address {
        address: Some(core::address::Address::SocketAddress(core::SocketAddress {
            port_specifier: Some(core::socket_address::PortSpecifier::PortValue(99_999)),
            ..Default::default()
        })),
    });
    let err = Listener::try_from(listener).unwrap_err();
    assert_eq!(err.field, "address.socket_address.port_value");
}

#[test]
fn unknown_and_unspecified_enums_are_refused() {
    let (_, field, violation) = invalid(workload_with(fields().int32(5, 7)));
    assert_eq!(
        (field.as_str(), violation),
        ("workload.tunnel_protocol", Violation::UnknownEnum(7))
    );

    let service = fields()
        .string(2, "default")
        .string(3, "web")
        .message(8, fields().packed_int32(1, &[1, 0]));
    let (_, field, violation) = invalid(decode_any::<Address>(&any(
        Address::TYPE_URL,
        fields().message(2, service),
    )));
    assert_eq!(field, "service.load_balancing.routing_preference[1]");
    assert_eq!(violation, Violation::Unspecified);

    let policy = fields().string(1, "p").string(2, "ns").int32(4, 2);
    let (_, field, violation) = invalid(decode_any::<Authorization>(&any(
        Authorization::TYPE_URL,
        policy,
    )));
    assert_eq!(
        (field.as_str(), violation),
        ("action", Violation::UnknownEnum(2))
    );
}

#[test]
fn missing_oneofs_are_refused() {
    // A waypoint with neither hostname nor address.
    // (Appending to a full workload would merge into its waypoint.)
    let workload = fields()
        .string(20, "uid-1")
        .message(8, fields().uint32(3, 15008));
    let (_, field, violation) = invalid(decode_any::<Address>(&any(
        Address::TYPE_URL,
        fields().message(1, workload),
    )));
    assert_eq!(
        (field.as_str(), violation),
        ("workload.waypoint.destination", Violation::Missing)
    );
    // A string match that says nothing.
    let matches = fields().message(3, fields());
    let policy = fields()
        .string(1, "p")
        .string(2, "ns")
        .message(5, fields().message(1, fields().message(2, matches)));
    let (_, field, violation) = invalid(decode_any::<Authorization>(&any(
        Authorization::TYPE_URL,
        policy,
    )));
    assert_eq!(
        field,
        "rules[0].clauses[0].matches[0].principals[0].match_type"
    );
    assert_eq!(violation, Violation::Missing);
    // An Envoy endpoint that names no host, and a secret holding nothing.
    let mut cla = fixtures::load_assignment();
    cla.endpoints[0].lb_endpoints.push(Default::default());
    let err = ClusterLoadAssignment::try_from(cla).unwrap_err();
    assert_eq!(err.field, "endpoints[0].lb_endpoints[1].host_identifier");
    let mut secret = fixtures::secret();
    secret.r#type = None;
    assert_eq!(Secret::try_from(secret).unwrap_err().field, "type");
}

#[test]
fn services_keys_must_be_namespaced_hostnames() {
    for key in ["web.default.svc", "/web", "default/"] {
        let (_, field, violation) = invalid(workload_with(
            fields().message(22, fields().string(1, key).message(2, fields())),
        ));
        assert_eq!(field, format!("workload.services[{key:?}]"));
        assert_eq!(violation, Violation::NotNamespacedHostname(key.into()));
    }
}

#[test]
fn phases_can_run_apart() {
    // Phase 1 succeeds on a message that phase 2 refuses, so a client can
    // still name the resource it NACKs.
    let payload = any(
        Address::TYPE_URL,
        fields().message(
            2,
            fields().string(2, "default").string(3, "web").int32(9, 9),
        ),
    );
    let wire = decode_wire::<Address>(&payload, &DecodeLimits::default()).unwrap();
    assert_eq!(Address::wire_name(&wire).as_deref(), Some("default/web"));
    let (resource, field, violation) = invalid(validate::<Address>(wire));
    assert_eq!(resource.as_deref(), Some("default/web"));
    assert_eq!(
        (field.as_str(), violation),
        ("service.ip_families", Violation::UnknownEnum(9))
    );
}
