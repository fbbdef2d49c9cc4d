//! Throughput of appnet-xds resource encoding and decoding.
//!
//! ```text
//! cargo run --release -p appnet-benches --bin xds_bench [-- --seconds S] [--workloads N] [--services M]
//! ```
//!
//! Generates N distinct WDS workloads (default 10,000) and M services
//! (default 1,000) as `istio.workload.Address` resources, then times, for
//! each kind, one operation = the whole batch:
//! - encode: domain value → wire message → `Any` bytes (`encode_any`);
//! - decode + validate: `Any` → prost decode → `TryFrom` validation
//!   (`decode_any`), the path a node proxy takes on every push;
//! - decode only: phase 1 alone (`decode_wire`), the floor under the above.
//!
//! Each figure runs `S/4` seconds untimed, then `S` seconds (default 2)
//! measured, and prints one line: resources/s and MB/s (10^6 bytes of
//! resource payload per second). Single thread. A refused resource exits
//! with status 1.

use std::process::ExitCode;
use std::time::Duration;

use appnet_benches::{Batch, BenchError, Budget, Throughput, XdsBench, run_for};

const USAGE: &str = "usage: xds_bench [--seconds S] [--workloads N] [--services M]

  --seconds S     measured wall time per figure, in seconds (default 2;
                  warm-up is S/4). Use e.g. 0.2 for a quick smoke run.
  --workloads N   distinct workloads in the batch (default 10000)
  --services M    distinct services in the batch (default 1000)";

/// What the command line asked for.
#[derive(Debug)]
struct Args {
    seconds: f64,
    workloads: usize,
    services: usize,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        seconds: 2.0,
        workloads: 10_000,
        services: 1_000,
    };
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
            None => (arg, None),
        };
        if flag == "-h" || flag == "--help" {
            return Err(String::new());
        }
        if !matches!(flag.as_str(), "--seconds" | "--workloads" | "--services") {
            return Err(format!("unknown argument {flag:?}"));
        }
        let value = match inline {
            Some(v) => v,
            None => args.next().ok_or(format!("{flag} needs a value"))?,
        };
        let bad = || format!("{flag}: {value:?} is not a number");
        match flag.as_str() {
            "--seconds" => parsed.seconds = value.parse().map_err(|_| bad())?,
            "--workloads" => parsed.workloads = value.parse().map_err(|_| bad())?,
            _ => parsed.services = value.parse().map_err(|_| bad())?,
        }
    }
    Ok(parsed)
}

/// Warms up, then measures `op` (one batch per call) for the budget.
fn measure(
    budget: &Budget,
    mut op: impl FnMut() -> Result<(), BenchError>,
) -> Result<Throughput, BenchError> {
    run_for(budget.warm_up, &mut op)?;
    run_for(budget.measure, &mut op)
}

fn print_figure(label: &str, batch: &Batch, t: &Throughput) {
    let batches = t.ops as f64;
    let seconds = t.elapsed.max(Duration::from_nanos(1)).as_secs_f64();
    let resources = batches * batch.len() as f64 / seconds;
    let megabytes = batches * batch.bytes() as f64 / seconds / 1e6;
    println!(
        "{label:<38} {resources:>12.0} resources/s {megabytes:>8.1} MB/s  ({} batches of {} in {seconds:.2} s)",
        t.ops,
        batch.len(),
    );
}

fn run(budget: &Budget, bench: &XdsBench) -> Result<(), BenchError> {
    for (kind, batch) in [
        ("workloads", &bench.workloads),
        ("services", &bench.services),
    ] {
        let t = measure(budget, || {
            batch.encode();
            Ok(())
        })?;
        print_figure(&format!("encode {kind}"), batch, &t);
        let t = measure(budget, || batch.decode().map(drop))?;
        print_figure(&format!("decode + validate {kind}"), batch, &t);
        let t = measure(budget, || batch.decode_wire_only().map(drop))?;
        print_figure(&format!("decode only (no validation) {kind}"), batch, &t);
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("xds_bench: {message}");
            }
            eprintln!("{USAGE}");
            return if message.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    let Some(budget) = Budget::from_secs_f64(args.seconds) else {
        eprintln!("xds_bench: --seconds must be positive\n{USAGE}");
        return ExitCode::from(2);
    };
    let bench = XdsBench::new(args.workloads, args.services);
    println!(
        "appnet xds bench: {} workloads ({} B encoded, {:.0} B mean), {} services ({} B, {:.0} B mean); \
         {:.2} s measured per figure after {:.2} s warm-up; single thread",
        bench.workloads.len(),
        bench.workloads.bytes(),
        bench.workloads.bytes() as f64 / bench.workloads.len().max(1) as f64,
        bench.services.len(),
        bench.services.bytes(),
        bench.services.bytes() as f64 / bench.services.len().max(1) as f64,
        budget.measure.as_secs_f64(),
        budget.warm_up.as_secs_f64(),
    );
    match run(&budget, &bench) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xds_bench: an operation failed mid-run: {e}");
            ExitCode::FAILURE
        }
    }
}
