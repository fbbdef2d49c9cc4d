//! Replays the `xds_server_requests` and `xds_client_responses` fuzz seed
//! corpora through the same entry points the fuzz targets call, so the
//! targets cannot rot.

use std::path::PathBuf;

#[test]
fn xds_server_requests_corpus() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/xds_server_requests");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        appnet_xds::fuzzing_protocol::server_requests(&data);
        count += 1;
    }
    assert!(count > 0, "the seed corpus is empty");
}

proptest::proptest! {
    /// A little fuzzing under plain `cargo test`: random byte strings
    /// through the same entry point (its assertions are the invariants).
    #[test]
    fn xds_server_requests_random_inputs(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
        appnet_xds::fuzzing_protocol::server_requests(&data);
    }
}

#[test]
fn xds_client_responses_corpus() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/xds_client_responses");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        appnet_xds::fuzzing_protocol::client_responses(&data);
        count += 1;
    }
    assert!(count > 0, "the seed corpus is empty");
}

proptest::proptest! {
    /// Random byte strings through the client entry point.
    #[test]
    fn xds_client_responses_random_inputs(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
        appnet_xds::fuzzing_protocol::client_responses(&data);
    }
}
