//! Throughput of appnet-identity against the plain libraries it builds on.
//!
//! ```text
//! cargo run --release -p appnet-benches --bin identity_bench [-- --seconds S]
//! ```
//!
//! Prints three figures, each path measured for `S` seconds (default 2) in
//! interleaved rounds of ~100 ms after a warm-up of `S/4`; a ratio is the
//! median of the per-round ratios (robust to load bursts from elsewhere),
//! with the overall ratio alongside:
//! 1. CSR → signed leaf: `CertificateAuthority::issue` vs x509-parser + rcgen;
//! 2. chain verification: `verify_svid` vs `webpki` `verify_for_usage`;
//! 3. in-memory mutual-TLS 1.3 handshakes: appnet configs vs plain rustls.
//!
//! Setup failures panic with a message; a failing operation mid-run is
//! reported and the process exits with status 1.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::SystemTime;

use appnet_benches::{
    BenchError, Budget, Comparison, HandshakeBench, IssueBench, VerifyBench, budget_from_args,
    compare,
};

const USAGE: &str = "usage: identity_bench [--seconds S]

  --seconds S   measured wall time per path and figure, in seconds (default 2;
                warm-up is S/4). Use e.g. 0.2 for a quick smoke run.";

/// Whether a ratio meets a goal, as printed.
fn verdict(ratio: f64, goal: f64) -> &'static str {
    if ratio >= goal { "met" } else { "NOT met" }
}

fn print_figure(title: &str, ours: &str, reference: &str, cmp: &Comparison, goal: Option<f64>) {
    println!("{title}");
    for (name, t) in [(ours, &cmp.ours), (reference, &cmp.reference)] {
        println!(
            "  {name:<34} {:>10.0} ops/s  ({:>8.1} µs/op, {} ops in {:.2} s)",
            t.per_second(),
            t.mean().as_secs_f64() * 1e6,
            t.ops,
            t.elapsed.as_secs_f64(),
        );
    }
    let ratios = cmp.round_ratios();
    let (lo, hi) = match (ratios.first(), ratios.last()) {
        (Some(lo), Some(hi)) => (*lo, *hi),
        _ => (0.0, 0.0),
    };
    let median = cmp.median_ratio();
    println!(
        "  ratio {median:.3}x median of {} paired rounds (range {lo:.3}..{hi:.3}; {:.3}x overall)",
        ratios.len(),
        cmp.ratio(),
    );
    match goal {
        Some(goal) => println!("  goal >= {goal:.2}x: {}", verdict(median, goal)),
        None => println!("  reference only, no goal"),
    }
    println!();
}

fn run(budget: &Budget) -> Result<(), BenchError> {
    let now = SystemTime::now();

    let issue = IssueBench::new(now).expect("set up figure 1 (CA, CSR)");
    let cmp = compare(
        budget,
        || issue.through_crate().map(|c| drop(black_box(c))),
        || issue.raw().map(|c| drop(black_box(c))),
    )?;
    print_figure(
        "1. CSR -> signed leaf (ECDSA P-256, CSR signature verified each time)",
        "appnet CertificateAuthority::issue",
        "x509-parser + rcgen signed_by",
        &cmp,
        Some(0.9),
    );

    let verify = VerifyBench::new(now).expect("set up figure 2 (chain, bundle)");
    let cmp = compare(
        budget,
        || verify.through_crate().map(|v| drop(black_box(v))),
        || verify.raw().map(black_box),
    )?;
    print_figure(
        "2. Chain verify (leaf + intermediate -> root)",
        "appnet verify_svid",
        "webpki verify_for_usage",
        &cmp,
        None,
    );

    let handshake = HandshakeBench::new(now).expect("set up figure 3 (TLS configs)");
    let mut scratch = Vec::with_capacity(16 * 1024);
    let mut scratch_plain = Vec::with_capacity(16 * 1024);
    let cmp = compare(
        budget,
        || {
            handshake
                .ours()
                .handshake(&mut scratch)
                .map(|e| drop(black_box(e)))
        },
        || {
            handshake
                .plain()
                .handshake(&mut scratch_plain)
                .map(|e| drop(black_box(e)))
        },
    )?;
    print_figure(
        "3. Mutual TLS 1.3 handshakes in memory (full, no resumption)",
        "appnet tls::{client,server}_config",
        "rustls WebPKI verifiers",
        &cmp,
        Some(0.9),
    );
    Ok(())
}

fn main() -> ExitCode {
    let budget = match budget_from_args("identity_bench", USAGE, 2.0, std::env::args().skip(1)) {
        Ok(budget) => budget,
        Err(code) => return code,
    };
    println!(
        "appnet identity bench: {:.2} s measured per path ({} interleaved rounds) after {:.2} s warm-up; single thread",
        budget.measure.as_secs_f64(),
        budget.rounds,
        budget.warm_up.as_secs_f64(),
    );
    println!();
    match run(&budget) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("identity_bench: an operation failed mid-run: {e}");
            ExitCode::FAILURE
        }
    }
}
