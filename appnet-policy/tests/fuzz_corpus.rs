//! Replays the seed corpora of the policy fuzz targets
//! (`fuzz/corpus/route_match/`, `fuzz/corpus/authz_eval/`) through the entry point the target calls,
//! so the target never rots and every seed stays panic-free under a plain
//! `cargo test`.

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
fn route_match_corpus() {
    replay("route_match", appnet_policy::fuzzing::route_match);
}

#[test]
fn authz_eval_corpus() {
    replay("authz_eval", appnet_policy::fuzzing::authz_eval);
}
