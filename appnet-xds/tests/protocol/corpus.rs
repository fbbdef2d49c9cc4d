//! Replays the `xds_server_requests` and `xds_client_responses` fuzz seed
//! corpora through the same entry points the fuzz targets call, so the
//! targets cannot rot.

use std::path::PathBuf;

/// Runs every seed of `fuzz/corpus/<target>` through `entry`.
fn replay(target: &str, entry: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut count = 0;
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        entry(&std::fs::read(e.unwrap().path()).unwrap());
        count += 1;
    }
    assert!(count > 0, "the {target} seed corpus is empty");
}

#[test]
fn xds_server_requests_corpus() {
    replay(
        "xds_server_requests",
        appnet_xds::fuzzing_protocol::server_requests,
    );
}

#[test]
fn xds_client_responses_corpus() {
    replay(
        "xds_client_responses",
        appnet_xds::fuzzing_protocol::client_responses,
    );
}

proptest::proptest! {
    /// A little fuzzing under plain `cargo test`: random byte strings
    /// through the same entry point (its assertions are the invariants).
    #[test]
    fn xds_server_requests_random_inputs(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
        appnet_xds::fuzzing_protocol::server_requests(&data);
    }
}

proptest::proptest! {
    /// Random byte strings through the client entry point.
    #[test]
    fn xds_client_responses_random_inputs(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
        appnet_xds::fuzzing_protocol::client_responses(&data);
    }
}
