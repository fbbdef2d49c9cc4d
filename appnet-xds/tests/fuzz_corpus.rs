//! Replays every xDS fuzz target's seed corpus (`fuzz/corpus/<target>/`)
//! through the same entry point the target calls, so the targets never rot
//! and every seed stays panic-free under a plain `cargo test`.

use std::path::PathBuf;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        run(&data);
        count += 1;
    }
    assert!(count > 0, "seed corpus for {target} is empty");
}

#[test]
fn decode_address_corpus() {
    replay("xds_decode_address", appnet_xds::fuzzing::decode_address);
}

#[test]
fn decode_authorization_corpus() {
    replay(
        "xds_decode_authorization",
        appnet_xds::fuzzing::decode_authorization,
    );
}

#[test]
fn decode_envoy_corpus() {
    replay("xds_decode_envoy", appnet_xds::fuzzing::decode_envoy);
}
