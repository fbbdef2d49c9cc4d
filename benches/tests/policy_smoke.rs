//! Smoke test for policy_bench: a tiny run completes, checks its meshes
//! (both evaluators agree, the request is allowed by a rule) and prints
//! every figure. No timing assertions.

use std::process::Command;

#[test]
fn policy_bench_prints_every_figure() {
    let out = Command::new(env!("CARGO_BIN_EXE_policy_bench"))
        .args(["--seconds", "0.02"])
        .output()
        .expect("run policy_bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "policy_bench failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for n in ["10", "1000", "10000"] {
        for view in ["L4", "L7"] {
            let line = format!("{n:>6} policies {view}: indexed");
            assert!(stdout.contains(&line), "missing {line:?} in:\n{stdout}");
        }
    }
    assert_eq!(stdout.matches("indexed cost at 10,000 / at 10").count(), 2);
    assert!(stdout.contains("reserve+settle:"), "{stdout}");
    assert!(stdout.contains("one hostname per route"), "{stdout}");
    assert!(stdout.contains("all on one hostname"), "{stdout}");
}

#[test]
fn policy_bench_rejects_bad_arguments() {
    let out = Command::new(env!("CARGO_BIN_EXE_policy_bench"))
        .args(["--seconds", "zero"])
        .output()
        .expect("run policy_bench");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a number"));
}
