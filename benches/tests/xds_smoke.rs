//! Smoke test for the xDS bench: the generated resources are distinct and
//! valid, every operation handles the whole batch, and the binary prints
//! its figures. No timing assertions: this only keeps the bench honest.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use appnet_benches::{XdsBench, run_for};
use appnet_xds::{Address, Resource, decode_any, encode_any};

#[test]
fn batches_are_distinct_valid_and_fully_processed() {
    let bench = XdsBench::new(200, 20);
    for (batch, len) in [(&bench.workloads, 200), (&bench.services, 20)] {
        assert_eq!(batch.len(), len);
        let names: BTreeSet<_> = batch.resources().iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), len, "every resource has its own name");
        assert_eq!(batch.decode().expect("decode"), len);
        assert_eq!(batch.decode_wire_only().expect("decode wire"), len);
        assert_eq!(batch.encode(), batch.bytes());
        for resource in batch.resources() {
            let back: Address = decode_any(&encode_any(resource)).expect("round trip");
            assert_eq!(&back, resource);
        }
    }
    assert!(
        bench
            .workloads
            .resources()
            .iter()
            .all(|r| matches!(r, Address::Workload(_)))
    );
    assert!(
        bench
            .services
            .resources()
            .iter()
            .all(|r| matches!(r, Address::Service(_)))
    );
    let t = run_for(Duration::from_millis(5), &mut || {
        bench.services.decode().map(drop)
    })
    .expect("timed decode");
    assert!(t.ops >= 1);
}

#[test]
fn binary_prints_every_figure() {
    let out = Command::new(env!("CARGO_BIN_EXE_xds_bench"))
        .args(["--seconds", "0.01", "--workloads", "50", "--services", "5"])
        .output()
        .expect("run xds_bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for kind in ["workloads", "services"] {
        for op in ["encode", "decode + validate", "decode only (no validation)"] {
            let label = format!("{op} {kind}");
            let line = stdout
                .lines()
                .find(|l| l.starts_with(&label))
                .unwrap_or_else(|| panic!("missing {label:?} in:\n{stdout}"));
            assert!(
                line.contains("resources/s") && line.contains("MB/s"),
                "{line}"
            );
        }
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_xds_bench"))
        .args(["--workloads", "many"])
        .output()
        .expect("run xds_bench");
    assert_eq!(bad.status.code(), Some(2));
}
