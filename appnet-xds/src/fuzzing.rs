//! Entry points for the fuzz targets in `fuzz/` and for the test that replays
//! their seed corpora under a normal `cargo test`. Each takes arbitrary bytes
//! as a resource payload, must never panic, and asserts what must hold for
//! what it accepts. Not part of the stable API.

use std::fmt::Debug;

use crate::{
    Address, Authorization, Cluster, ClusterLoadAssignment, Listener, Resource, RouteConfiguration,
    Secret, decode_any, encode_any,
};

fn any_of<R: Resource>(data: &[u8]) -> prost_types::Any {
    prost_types::Any {
        type_url: R::TYPE_URL.to_owned(),
        value: data.to_vec(),
    }
}

/// Decodes `data` as `R`; an accepted resource must encode, decode again
/// equal, and keep its name.
fn round_trip<R: Resource + PartialEq + Debug>(data: &[u8]) {
    if let Ok(resource) = decode_any::<R>(&any_of::<R>(data)) {
        let back = decode_any::<R>(&encode_any(&resource));
        assert_eq!(back.as_ref().ok(), Some(&resource), "must round-trip");
        if let Ok(back) = back {
            assert_eq!(back.name(), resource.name());
        }
    }
}

/// Decodes bytes as an `istio.workload.Address` payload.
pub fn decode_address(data: &[u8]) {
    round_trip::<Address>(data);
}

/// Decodes bytes as an `istio.security.Authorization` payload.
pub fn decode_authorization(data: &[u8]) {
    round_trip::<Authorization>(data);
}

/// Decodes `R`; an accepted resource must encode to something accepted
/// again. (Envoy messages hold floats and hash maps, so equality and byte
/// stability are not asserted.)
fn envoy<R: Resource>(data: &[u8]) {
    if let Ok(resource) = decode_any::<R>(&any_of::<R>(data)) {
        let again = decode_any::<R>(&encode_any(&resource));
        assert!(again.is_ok(), "a re-encoded Envoy resource must decode");
    }
}

/// The first byte picks an Envoy resource type (cluster, endpoints,
/// listener, routes, secret, by its value modulo 5); the rest is its payload.
pub fn decode_envoy(data: &[u8]) {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    match selector % 5 {
        0 => envoy::<Cluster>(payload),
        1 => envoy::<ClusterLoadAssignment>(payload),
        2 => envoy::<Listener>(payload),
        3 => envoy::<RouteConfiguration>(payload),
        _ => envoy::<Secret>(payload),
    }
}
