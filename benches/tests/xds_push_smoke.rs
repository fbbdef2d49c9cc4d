//! Smoke tests for the fan-out benches (`xds_push_bench`,
//! `xds_fanout_floor`): a tiny run prints every figure, and a bad argument
//! exits with 2. No timing assertions.

use std::process::Command;

/// Runs `bin` with `args`, checks it succeeded and printed every needle.
fn prints(bin: &str, args: &[&str], needles: &[&str]) {
    let out = Command::new(bin)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {bin}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in needles {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
}

/// Runs `bin` with a bad argument: usage, exit code 2.
fn refuses(bin: &str, args: &[&str]) {
    let bad = Command::new(bin)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {bin}: {e}"));
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn push_bench_prints_every_figure() {
    let bin = env!("CARGO_BIN_EXE_xds_push_bench");
    prints(
        bin,
        &[
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
        ],
        &[
            "full delta push: 200 workloads + 20 services (220 resources",
            "full delta push memory (client process; the server runs in a child): RSS",
            "per workload beyond the payload",
            "fan-out of one workload change to 5 delta clients",
            "p99",
            "fan-out CPU per round, server runtime:",
        ],
    );
    refuses(bin, &["--clients", "many"]);
}

#[test]
fn floor_bench_prints_its_figures() {
    let bin = env!("CARGO_BIN_EXE_xds_fanout_floor");
    prints(
        bin,
        &["--clients", "5", "--rounds", "3", "--split-runtimes"],
        &[
            "floor fan-out to 5 delta clients (3 rounds, transport only): until all have it p50",
            "floor fan-out CPU per round",
            "floor fan-out CPU per round, server runtime:",
        ],
    );
    refuses(bin, &["--rounds", "some"]);
}
