//! HBONE figures on loopback, printed (not asserted), in one run:
//! 1. one-stream bulk throughput: raw TCP, bare rustls mTLS, an HBONE
//!    tunnel, our proxy pair and the Envoy pair on the same path; then the
//!    HTTP/2 flow-control settings side by side;
//! 2. request/response latency p50/p99 over a reused tunnel, a new stream
//!    and a new tunnel;
//! 3. new tunnels (own connection each) and pooled streams per second;
//! 4. resident memory per idle tunnel at `--tunnels` open, both ends, and
//!    what comes back when they close;
//! 5. head-of-line: a stream's throughput while others on its connection
//!    are stalled by a reader that never reads.
//!
//! ```sh
//! PATH=<envoy dir>:$PATH cargo bench -p appnet-hbone --bench hbone_bench [-- --mb N --tunnels N --samples N]
//! cargo bench -p appnet-hbone --bench hbone_bench -- --quick   # smoke run
//! ```
//!
//! Without `--bench` on its command line (as under `cargo test`) it does
//! the smoke run. The Envoy figure is skipped, with a note, when `envoy` is
//! not on PATH. See benches/README.md ("hbone_bench") for what each figure
//! times.

mod bulk;
mod common;
mod envoy;
#[path = "../../tests/support/envoy_yaml.rs"]
mod envoy_yaml;
mod hol;
mod latency;
mod memory;

use std::path::Path;

/// jemalloc, as ztunnel's builds ship it (Envoy ships tcmalloc): a proxy
/// binary picks its allocator, the library does not. With `dirty_decay_ms`
/// and `muzzy_decay_ms` at 0 (set for the memory children) freed pages go
/// back to the OS at once; glibc malloc keeps the pages of closed tunnels.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    // The memory figure's child processes.
    if let Some(i) = argv.iter().position(|a| a == "--mem-server") {
        return memory::server_child(Path::new(&argv[i + 1]));
    }
    if let Some(i) = argv.iter().position(|a| a == "--mem-client") {
        return memory::client_child(
            Path::new(&argv[i + 1]),
            argv[i + 2].parse().unwrap(),
            argv[i + 3].parse().unwrap(),
        );
    }
    let args = common::Args::parse(&argv);
    let pki = common::Pki::new();
    if args.quick {
        println!("(smoke run: sizes cut down, figures not meaningful)");
    }
    println!("{}", common::machine());
    // First, while this process has not run anything yet (the children
    // are fresh processes anyway).
    if args.runs(4) {
        memory::run(&pki, &args);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        if args.runs(1) {
            bulk::run(&pki, &args).await;
        }
        if args.runs(2) || args.runs(3) {
            latency::run(&pki, &args).await;
        }
        if args.runs(5) {
            hol::run(&pki, &args).await;
        }
    });
    println!("end of run: {}", common::machine());
}
