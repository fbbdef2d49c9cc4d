//! Push cost of the appnet-xds tonic shells over loopback gRPC (delta ADS).
//!
//! ```text
//! cargo run --release -p appnet-benches --bin xds_push_bench [-- --workloads N] [--services M] [--clients C] [--rounds R] [--fanout-workloads F]
//! ```
//!
//! 1. Full push: an `XdsServer` holding N WDS workloads (default 100,000)
//!    and M services (default 20,000) as `istio.workload.Address`
//!    resources; one delta `XdsClient` subscribes to all of them. Prints the
//!    time from the client's start until it has accepted every resource,
//!    the payload bytes, and the client process's resident memory (VmRSS)
//!    before and after and its peak (VmHWM) from `/proc/self/status`. The
//!    server runs in a child process (this binary with `--serve-only`), so
//!    the memory figures are the client's alone: its accepted state, its
//!    published snapshot (sharing payloads) and the messages in flight.
//! 2. Fan-out: C delta clients (default 1,000) subscribed to a store of F
//!    workloads (default 1,000); R times (default 20) one workload changes
//!    and the time until every client has accepted it is recorded. Prints
//!    p50/p99 of that per-round time and of the per-client delivery time.
//!    The server's push debounce is zero here.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use appnet_benches::XdsBench;
use appnet_benches::fanout::{CpuMark, ServerRuntime, cpu_time, ms, percentile, until_all_arrived};
use appnet_xds::{
    Any, Backoff, Resource, Variant, XdsClient, XdsServer, XdsServerConfig, encode_any, type_url,
};
use tokio::net::TcpListener;
use tonic::transport::Endpoint;
use tonic::transport::server::TcpIncoming;

const USAGE: &str = "usage: xds_push_bench [--workloads N] [--services M] [--clients C] [--rounds R] [--fanout-workloads F] [--split-runtimes]";

#[derive(Debug)]
struct Args {
    workloads: usize,
    services: usize,
    clients: usize,
    rounds: usize,
    fanout_workloads: usize,
    /// Internal: run only the full-push server, in a child process.
    serve_only: bool,
    /// Fan-out: the server on a two-worker runtime of its own, so its CPU
    /// time is told apart from the clients'.
    split_runtimes: bool,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        workloads: 100_000,
        services: 20_000,
        clients: 1_000,
        rounds: 20,
        fanout_workloads: 1_000,
        serve_only: false,
        split_runtimes: false,
    };
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Err(String::new());
        }
        if flag == "--serve-only" {
            parsed.serve_only = true;
            continue;
        }
        if flag == "--split-runtimes" {
            parsed.split_runtimes = true;
            continue;
        }
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let n: usize = value
            .parse()
            .map_err(|_| format!("{flag}: {value:?} is not a count"))?;
        match flag.as_str() {
            "--workloads" => parsed.workloads = n,
            "--services" => parsed.services = n,
            "--clients" => parsed.clients = n,
            "--rounds" => parsed.rounds = n.max(1),
            "--fanout-workloads" => parsed.fanout_workloads = n.max(1),
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    Ok(parsed)
}

/// A `/proc/self/status` field in bytes (0 where unavailable).
fn proc_status_bytes(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn to_resources(bench: &XdsBench) -> Vec<(String, Any)> {
    bench
        .workloads
        .resources()
        .iter()
        .chain(bench.services.resources())
        .map(|r| {
            let any = encode_any(r);
            (
                r.name().into_owned(),
                Any {
                    type_url: any.type_url,
                    value: any.value,
                },
            )
        })
        .collect()
}

async fn serve(server: &XdsServer) -> Result<std::net::SocketAddr, String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("bind: {e}"))?;
    let addr = listener.local_addr().map_err(|e| format!("addr: {e}"))?;
    let svc = server.ads_service();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true))),
    );
    Ok(addr)
}

fn client(addr: std::net::SocketAddr) -> Result<XdsClient, String> {
    let endpoint =
        Endpoint::from_shared(format!("http://{addr}")).map_err(|e| format!("endpoint: {e}"))?;
    Ok(XdsClient::builder(endpoint, Variant::Delta)
        .backoff(Backoff::new(
            Duration::from_millis(10),
            Duration::from_millis(200),
        ))
        .subscribe_wildcard(type_url::ADDRESS)
        .start())
}

/// The child process of the full push: builds the resources, serves them,
/// prints `port P resources T bytes B`, and runs until stdin closes.
async fn serve_only(args: &Args) -> Result<(), String> {
    let bench = XdsBench::new(args.workloads, args.services);
    let resources = to_resources(&bench);
    drop(bench);
    let total = resources.len();
    let bytes: usize = resources.iter().map(|(_, a)| a.value.len()).sum();
    let server = XdsServer::new(XdsServerConfig::default());
    server
        .update(type_url::ADDRESS, resources)
        .map_err(|e| format!("store: {e}"))?;
    let addr = serve(&server).await?;
    println!("port {} resources {total} bytes {bytes}", addr.port());
    tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    })
    .await
    .map_err(|e| format!("stdin: {e}"))
}

async fn full_push(args: &Args) -> Result<(), String> {
    use std::io::BufRead;
    let exe = std::env::current_exe().map_err(|e| format!("current exe: {e}"))?;
    let mut child = std::process::Command::new(exe)
        .args([
            "--serve-only",
            "--workloads",
            &args.workloads.to_string(),
            "--services",
            &args.services.to_string(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn server: {e}"))?;
    let mut line = String::new();
    let stdout = child.stdout.take().ok_or("no child stdout")?;
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| format!("server: {e}"))?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (port, total, bytes) = match fields.as_slice() {
        ["port", p, "resources", t, "bytes", b] => (
            p.parse::<u16>().map_err(|e| e.to_string())?,
            t.parse::<usize>().map_err(|e| e.to_string())?,
            b.parse::<usize>().map_err(|e| e.to_string())?,
        ),
        _ => {
            let _ = child.kill();
            return Err(format!("server said {line:?}"));
        }
    };
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let rss_before = proc_status_bytes("VmRSS:");
    let server_pid = child.id().to_string();
    let (client_cpu0, server_cpu0) = (cpu_time("self"), cpu_time(&server_pid));
    let start = Instant::now();
    let client = client(addr)?;
    let mut rx = client.watch();
    let synced = tokio::time::timeout(
        Duration::from_secs(300),
        rx.wait_for(|s| s.len(type_url::ADDRESS) == total),
    )
    .await;
    let elapsed = start.elapsed();
    let client_cpu = cpu_time("self").saturating_sub(client_cpu0);
    let server_cpu = cpu_time(&server_pid).saturating_sub(server_cpu0);
    drop(child.stdin.take());
    let _ = child.wait();
    synced
        .map_err(|_| "full push timed out".to_owned())?
        .map_err(|_| "client stopped".to_owned())?;
    let rss_after = proc_status_bytes("VmRSS:");
    let hwm_after = proc_status_bytes("VmHWM:");
    let grew = rss_after.saturating_sub(rss_before);
    let peak_grew = hwm_after.saturating_sub(rss_before);
    let per_workload = |b: u64| (b as f64 - bytes as f64) / args.workloads.max(1) as f64;
    println!(
        "full delta push: {} workloads + {} services ({total} resources, {:.1} MB payload) in {:.1} ms",
        args.workloads,
        args.services,
        bytes as f64 / 1e6,
        ms(elapsed)
    );
    println!(
        "full delta push CPU: server {:.0} ms, client {:.0} ms (user + system, 10 ms ticks; less disturbed by other load than the wall time)",
        ms(server_cpu),
        ms(client_cpu),
    );
    println!(
        "full delta push memory (client process; the server runs in a child): RSS {:.1} MB before, {:.1} MB after (+{:.1} MB), peak {:.1} MB (+{:.1} MB)",
        rss_before as f64 / 1e6,
        rss_after as f64 / 1e6,
        grew as f64 / 1e6,
        hwm_after as f64 / 1e6,
        peak_grew as f64 / 1e6,
    );
    println!(
        "full delta push memory per workload beyond the payload: {:.0} B resident after, {:.0} B at peak",
        per_workload(grew),
        per_workload(peak_grew),
    );
    drop(client);
    Ok(())
}

async fn fan_out(args: &Args) -> Result<(), String> {
    let bench = XdsBench::new(args.fanout_workloads, 1);
    let resources = to_resources(&bench);
    let total = resources.len();
    let (name, base) = resources.first().cloned().ok_or("no resources generated")?;
    let mut config = XdsServerConfig::default();
    config.debounce = Duration::ZERO;
    let server = XdsServer::new(config);
    server
        .update(type_url::ADDRESS, resources)
        .map_err(|e| format!("store: {e}"))?;
    // With `--split-runtimes` the server's streams run on threads of their
    // own (its store is still changed from this task).
    let mut _server_runtime = None;
    let addr = if args.split_runtimes {
        let rt = ServerRuntime::new().map_err(|e| format!("server runtime: {e}"))?;
        let served = server.clone();
        let addr = rt
            .handle()
            .ok_or("server runtime gone")?
            .spawn(async move { serve(&served).await });
        _server_runtime = Some(rt);
        addr.await.map_err(|e| format!("server runtime: {e}"))??
    } else {
        serve(&server).await?
    };
    let mut clients = Vec::with_capacity(args.clients);
    for _ in 0..args.clients {
        clients.push(client(addr)?);
    }
    for c in &clients {
        let mut rx = c.watch();
        tokio::time::timeout(
            Duration::from_secs(120),
            rx.wait_for(|s| s.len(type_url::ADDRESS) == total),
        )
        .await
        .map_err(|_| "initial sync timed out".to_owned())?
        .map_err(|_| "client stopped".to_owned())?;
    }
    let rxs: Vec<_> = clients.iter().map(XdsClient::watch).collect();
    let mut per_round = Vec::new();
    let mut per_client = Vec::new();
    // CPU of this process (server, clients and the poller) from each
    // change until every client has it: steadier than the wall time on a
    // shared machine.
    let mut cpu = Duration::ZERO;
    let mut server_cpu = Duration::ZERO;
    for round in 0..args.rounds {
        // Let the previous round's ACKs (or the initial sync's) drain, so
        // each round measures one change on an idle server.
        let pause = if round == 0 { 500 } else { 20 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
        // A changed payload: the same workload with a trailing unknown
        // field (field 999, varint `round`), which a decoder skips.
        let mut value = base.value.clone();
        value.extend_from_slice(&[0xb8, 0x3e]);
        value.push(u8::try_from(round % 128).unwrap_or(0));
        let changed = Any {
            type_url: base.type_url.clone(),
            value,
        };
        let mark = CpuMark::now();
        let start = Instant::now();
        server
            .update(type_url::ADDRESS, [(name.clone(), changed)])
            .map_err(|e| format!("update: {e}"))?;
        let version = server
            .with_store_read(|s| {
                s.get(type_url::ADDRESS, &name)
                    .map(|r| r.version().to_owned())
            })
            .ok_or("changed resource missing")?;
        // A client has the change when its snapshot holds the new version;
        // `updated_at` says when it was published. (Polling each
        // millisecond took ~6 % of the CPU the clients and server share.)
        let arrived = until_all_arrived(rxs.len(), start, |i| {
            let s = rxs[i].borrow();
            // Cheap test first: nothing published since the change.
            let at = s.updated_at.filter(|at| *at >= start)?;
            s.get(type_url::ADDRESS, &name)
                .is_some_and(|r| r.version() == version)
                .then_some(at)
        })
        .await
        .ok_or("a client did not get the change within 60 s")?;
        let (round_cpu, round_server_cpu) = mark.since();
        cpu += round_cpu;
        server_cpu += round_server_cpu;
        let slowest = arrived.iter().copied().max().unwrap_or_default();
        per_client.extend(arrived);
        per_round.push(slowest);
    }
    let in_order: Vec<String> = per_round.iter().map(|d| format!("{:.0}", ms(*d))).collect();
    per_round.sort();
    per_client.sort();
    println!(
        "fan-out of one workload change to {} delta clients ({} rounds, {} workloads each): until all have it p50 {:.2} ms p99 {:.2} ms; per client p50 {:.2} ms p99 {:.2} ms",
        args.clients,
        args.rounds,
        args.fanout_workloads,
        ms(percentile(&per_round, 0.5)),
        ms(percentile(&per_round, 0.99)),
        ms(percentile(&per_client, 0.5)),
        ms(percentile(&per_client, 0.99)),
    );
    println!(
        "fan-out rounds in order, until all have it (ms): {}",
        in_order.join(" ")
    );
    println!(
        "fan-out CPU per round (server, clients and poller, user + system): {:.1} ms, {:.1} µs per client",
        ms(cpu) / args.rounds as f64,
        ms(cpu) * 1000.0 / (args.rounds * args.clients.max(1)) as f64,
    );
    if args.split_runtimes {
        let per_client = |d: Duration| ms(d) * 1000.0 / (args.rounds * args.clients.max(1)) as f64;
        let rest = cpu.saturating_sub(server_cpu);
        println!(
            "fan-out CPU per round, server runtime: {:.1} ms ({:.1} µs per client); clients and poller: {:.1} ms ({:.1} µs per client)",
            ms(server_cpu) / args.rounds as f64,
            per_client(server_cpu),
            ms(rest) / args.rounds as f64,
            per_client(rest),
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("{msg}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    // The full push (and its server child) on one worker thread, as a
    // node proxy runs its xDS client task; the fan-out's server and 1,000
    // clients share the default two-worker runtime.
    let runtime = |workers: Option<usize>| {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if let Some(n) = workers {
            b.worker_threads(n);
        }
        b.enable_all().build().map_err(|e| format!("runtime: {e}"))
    };
    let result = runtime(Some(1)).and_then(|rt| {
        rt.block_on(async {
            if args.serve_only {
                return serve_only(&args).await;
            }
            full_push(&args).await
        })
    });
    let result = result.and_then(|()| {
        if args.serve_only {
            return Ok(());
        }
        runtime(None).and_then(|rt| rt.block_on(fan_out(&args)))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
