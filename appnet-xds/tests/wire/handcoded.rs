//! Payloads written field by field with `prost::encoding` and the field
//! numbers of Istio's public schema, never through our generated messages:
//! if a number in our `.proto` files drifted, these would stop decoding to
//! the expected values.

use prost::encoding::{self, WireType, encode_key, encode_varint};

use super::fixtures;
use appnet_xds::*;

/// A byte buffer with one method per protobuf field kind.
#[derive(Default)]
pub(crate) struct Fields(pub(crate) Vec<u8>);

impl Fields {
    pub(crate) fn string(mut self, tag: u32, value: &str) -> Self {
        encoding::string::encode(tag, &value.to_owned(), &mut self.0);
        self
    }
    pub(crate) fn bytes(mut self, tag: u32, value: &[u8]) -> Self {
        encoding::bytes::encode(tag, &value.to_vec(), &mut self.0);
        self
    }
    pub(crate) fn uint32(mut self, tag: u32, value: u32) -> Self {
        encoding::uint32::encode(tag, &value, &mut self.0);
        self
    }
    pub(crate) fn int32(mut self, tag: u32, value: i32) -> Self {
        encoding::int32::encode(tag, &value, &mut self.0);
        self
    }
    pub(crate) fn bool(mut self, tag: u32, value: bool) -> Self {
        encoding::bool::encode(tag, &value, &mut self.0);
        self
    }
    pub(crate) fn packed_uint32(mut self, tag: u32, values: &[u32]) -> Self {
        encoding::uint32::encode_packed(tag, values, &mut self.0);
        self
    }
    pub(crate) fn packed_int32(mut self, tag: u32, values: &[i32]) -> Self {
        encoding::int32::encode_packed(tag, values, &mut self.0);
        self
    }
    /// A length-delimited sub-message.
    pub(crate) fn message(mut self, tag: u32, inner: Fields) -> Self {
        encode_key(tag, WireType::LengthDelimited, &mut self.0);
        encode_varint(inner.0.len() as u64, &mut self.0);
        self.0.extend_from_slice(&inner.0);
        self
    }
}

pub(crate) fn any(type_url: &str, value: Fields) -> prost_types::Any {
    prost_types::Any {
        type_url: type_url.into(),
        value: value.0,
    }
}

fn fields() -> Fields {
    Fields::default()
}

/// `istio.workload.Workload` as fixtures::workload(), by field number.
pub(crate) fn workload_fields() -> Fields {
    fields()
        .string(20, "cluster1//Pod/default/web-0")
        .string(1, "web-0")
        .string(2, "default")
        .bytes(3, &[10, 0, 0, 7])
        .bytes(
            3,
            &"fd00::7".parse::<std::net::Ipv6Addr>().unwrap().octets(),
        )
        .string(4, "net1")
        .int32(5, 1) // HBONE
        .string(6, "cluster.local")
        .string(7, "web")
        .message(
            8,
            fields()
                .message(2, fields().string(1, "net1").bytes(2, &[10, 0, 0, 9]))
                .uint32(3, 15008),
        )
        .message(
            19,
            fields()
                .message(
                    1,
                    fields()
                        .string(1, "istio-system")
                        .string(2, "eastwest.istio-system.svc.cluster.local"),
                )
                .uint32(3, 15008),
        )
        .string(9, "node-a")
        .string(10, "web")
        .string(11, "v1")
        .int32(12, 2) // POD
        .string(13, "web")
        .bool(14, true)
        .message(23, fields().int32(1, 1).uint32(2, 8443)) // PROXY
        .message(
            22,
            fields()
                .string(1, "default/web.default.svc.cluster.local")
                .message(
                    2,
                    fields().message(1, fields().uint32(1, 80).uint32(2, 8080)),
                ),
        )
        .string(16, "default/allow-web")
        .int32(17, 1) // UNHEALTHY
        .string(18, "cluster1")
        .message(
            24,
            fields()
                .string(1, "eu")
                .string(2, "eu-1a")
                .string(3, "rack7"),
        )
        .int32(25, 1) // HOST_NETWORK
        .message(
            26,
            fields().string(1, "ext").message(
                2,
                fields().string(1, "type.googleapis.com/google.protobuf.Empty"),
            ),
        )
        .message(27, fields().uint32(1, 3))
}

/// `istio.workload.Service` as fixtures::service(), by field number.
pub(crate) fn service_fields() -> Fields {
    fields()
        .string(1, "web")
        .string(2, "default")
        .string(3, "web.default.svc.cluster.local")
        .message(4, fields().string(1, "net1").bytes(2, &[10, 96, 0, 10]))
        .message(
            4,
            fields().string(1, "net1").bytes(
                2,
                &"fd00:96::10"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .octets(),
            ),
        )
        .message(5, fields().uint32(1, 80).uint32(2, 8080))
        .string(6, "spiffe://cluster.local/ns/default/sa/web")
        .message(
            7,
            fields()
                .message(
                    1,
                    fields()
                        .string(1, "default")
                        .string(2, "waypoint.default.svc.cluster.local"),
                )
                .uint32(3, 15008),
        )
        .message(
            8,
            fields()
                .packed_int32(1, &[6, 1]) // NETWORK, REGION
                .int32(2, 2) // FAILOVER
                .int32(3, 1) // ALLOW_ALL
                .int32(4, 1), // FIRST_HEALTHY_RACE
        )
        .int32(9, 3) // DUAL
        .bool(11, true)
}

/// `istio.security.Authorization` as fixtures::authorization().
pub(crate) fn authorization_fields() -> Fields {
    let cidr = |ip: &[u8], len: u32| fields().bytes(1, ip).uint32(2, len);
    let fd00 = "fd00::".parse::<std::net::Ipv6Addr>().unwrap().octets();
    let fd01 = "fd00::1".parse::<std::net::Ipv6Addr>().unwrap().octets();
    let matches = fields()
        .message(1, fields().string(1, "frontend"))
        .message(2, fields().string(2, "kube-"))
        .message(3, fields().string(3, "/sa/web"))
        .message(4, fields().message(4, fields())) // presence: Empty
        .message(5, cidr(&[10, 0, 0, 0], 8))
        .message(6, cidr(&[10, 1, 0, 0], 16))
        .message(7, cidr(&fd00, 64))
        .message(8, cidr(&fd01, 128))
        .packed_uint32(9, &[443, 8443])
        .packed_uint32(10, &[22])
        .message(11, fields().string(1, "frontend").string(2, "web"))
        .message(12, fields().string(1, "frontend").string(2, "debug"));
    fields()
        .string(1, "allow-web")
        .string(2, "default")
        .int32(3, 2) // WORKLOAD_SELECTOR
        .int32(4, 1) // DENY
        .message(5, fields().message(1, fields().message(2, matches)))
}

#[test]
fn workload_field_numbers_match_istio() {
    let payload = fields().message(1, workload_fields());
    let decoded: Address = decode_any(&any(Address::TYPE_URL, payload)).unwrap();
    assert_eq!(decoded, Address::Workload(fixtures::workload()));
    assert_eq!(decoded.name(), "cluster1//Pod/default/web-0");
}

#[test]
fn service_field_numbers_match_istio() {
    let payload = fields().message(2, service_fields());
    let decoded: Address = decode_any(&any(Address::TYPE_URL, payload)).unwrap();
    assert_eq!(decoded, Address::Service(fixtures::service()));
    assert_eq!(decoded.name(), "default/web.default.svc.cluster.local");
}

#[test]
fn authorization_field_numbers_match_istio() {
    let decoded: Authorization =
        decode_any(&any(Authorization::TYPE_URL, authorization_fields())).unwrap();
    assert_eq!(decoded, fixtures::authorization());
    assert_eq!(decoded.name(), "default/allow-web");
}

#[test]
fn unpacked_repeated_scalars_decode_too() {
    // proto3 writers pack repeated scalars, but readers must accept both.
    let payload = fields().message(
        2,
        fields()
            .string(2, "default")
            .string(3, "web")
            .message(8, fields().int32(1, 6).int32(1, 1)),
    );
    let Address::Service(service) = decode_any(&any(Address::TYPE_URL, payload)).unwrap() else {
        panic!("expected a service");
    };
    let lb = service.load_balancing.unwrap();
    assert_eq!(
        lb.routing_preference,
        [LoadBalancingScope::Network, LoadBalancingScope::Region]
    );
}

#[test]
fn our_encoding_is_byte_identical_to_the_hand_encoding() {
    // prost writes fields in field-number order and packs repeated scalars,
    // as the hand encodings above do for these two messages.
    assert_eq!(
        encode_any(&fixtures::authorization()).value,
        authorization_fields().0
    );
    assert_eq!(
        encode_any(&Address::Service(fixtures::service())).value,
        fields().message(2, service_fields()).0
    );
}
