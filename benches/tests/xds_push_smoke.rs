//! Smoke test for `xds_push_bench`: a tiny run prints every figure. No
//! timing assertions.

use std::process::Command;

#[test]
fn push_bench_prints_every_figure() {
    let out = Command::new(env!("CARGO_BIN_EXE_xds_push_bench"))
        .args([
            "--workloads",
            "200",
            "--services",
            "20",
            "--clients",
            "5",
            "--rounds",
            "3",
            "--fanout-workloads",
            "10",
            "--split-runtimes",
        ])
        .output()
        .expect("run xds_push_bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "full delta push: 200 workloads + 20 services (220 resources",
        "full delta push memory (client process; the server runs in a child): RSS",
        "per workload beyond the payload",
        "fan-out of one workload change to 5 delta clients",
        "p99",
        "fan-out CPU per round, server runtime:",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_xds_push_bench"))
        .args(["--clients", "many"])
        .output()
        .expect("run xds_push_bench");
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn floor_bench_prints_its_figures() {
    let out = Command::new(env!("CARGO_BIN_EXE_xds_fanout_floor"))
        .args(["--clients", "5", "--rounds", "3", "--split-runtimes"])
        .output()
        .expect("run xds_fanout_floor");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "floor fan-out to 5 delta clients (3 rounds, transport only): until all have it p50",
        "floor fan-out CPU per round",
        "floor fan-out CPU per round, server runtime:",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_xds_fanout_floor"))
        .args(["--rounds", "some"])
        .output()
        .expect("run xds_fanout_floor");
    assert_eq!(bad.status.code(), Some(2));
}
