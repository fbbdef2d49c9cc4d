//! Replays every fuzz target's seed corpus (`fuzz/corpus/<target>/`) through
//! the same entry point the target calls, so the targets never rot and every
//! seed stays panic-free under a plain `cargo test`.

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
fn spiffe_id_corpus() {
    replay("spiffe_id", appnet_identity::fuzzing::spiffe_id);
}

#[test]
fn verify_chain_corpus() {
    replay("verify_chain", appnet_identity::fuzzing::verify_chain);
}

#[test]
fn bundle_json_corpus() {
    replay("bundle_json", appnet_identity::fuzzing::bundle_json);
}

#[test]
fn csr_corpus() {
    replay("csr", appnet_identity::fuzzing::csr);
}
