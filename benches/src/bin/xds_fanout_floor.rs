//! The floor under `xds_push_bench`'s fan-out: the same traffic over the
//! same stack (tonic, hyper, h2, prost, tokio, loopback TCP) with no xDS
//! logic on either side.
//!
//! ```text
//! cargo run --release -p appnet-benches --bin xds_fanout_floor [-- --clients C] [--rounds R] [--split-runtimes]
//! ```
//!
//! C clients (default 1,000) open a delta ADS stream each to a tonic server
//! whose streams keep no state: R times (default 20, as `xds_push_bench`) the server sends every
//! stream one `DeltaDiscoveryResponse` carrying one changed WDS workload
//! (the same bytes `xds_push_bench` pushes), each client publishes the
//! response's version to a `watch` channel (stamped like the real client's
//! snapshot) and answers with an ACK, which the server reads and drops.
//! Nothing is validated, stored, diffed or tracked. The time until every
//! client has published the round's version, and the CPU per round, are
//! what the transport alone costs: `xds_push_bench`'s figures minus these are
//! what appnet-xds adds.

use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use appnet_benches::XdsBench;
use appnet_benches::fanout::{CpuMark, ServerRuntime, ms, percentile, until_all_arrived};
use appnet_xds::{
    DEFAULT_CONNECTION_WINDOW, DEFAULT_STREAM_WINDOW, Resource, encode_any, type_url,
};
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
    Resource as WireResource,
};
use envoy_types::pb::google::protobuf::Any;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{UnboundedReceiverStream, WatchStream};
use tokio_stream::{Stream, StreamExt};
use tonic::transport::Endpoint;
use tonic::transport::server::TcpIncoming;

const USAGE: &str = "usage: xds_fanout_floor [--clients C] [--rounds R] [--split-runtimes]";

/// What every stream sends when the round moves: the round's response.
struct Floor {
    round: watch::Receiver<Arc<DeltaDiscoveryResponse>>,
    next_id: AtomicU64,
}

/// One stream: reads (and drops) what the client sends, and sends the
/// round's response when it changes. Polled by the transport, like the real
/// server's response stream: no task, channel or per-response future.
struct FloorStream {
    inbound: tonic::Streaming<DeltaDiscoveryRequest>,
    rounds: WatchStream<Arc<DeltaDiscoveryResponse>>,
    id: u64,
    nonce: u64,
}

impl Stream for FloorStream {
    type Item = Result<DeltaDiscoveryResponse, tonic::Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            match Pin::new(&mut this.inbound).poll_next(cx) {
                Poll::Ready(Some(Ok(_ack))) => continue,
                Poll::Ready(_) => return Poll::Ready(None),
                Poll::Pending => {}
            }
            return match Pin::new(&mut this.rounds).poll_next(cx) {
                Poll::Ready(Some(round)) => {
                    let mut response = DeltaDiscoveryResponse::clone(&round);
                    this.nonce += 1;
                    // The real server's nonce shape: stream id, then count.
                    response.nonce = format!("{:016x}-{}", this.id, this.nonce);
                    Poll::Ready(Some(Ok(response)))
                }
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            };
        }
    }
}

type Unimplemented =
    Pin<Box<dyn Stream<Item = Result<DiscoveryResponse, tonic::Status>> + Send + 'static>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for Floor {
    type StreamAggregatedResourcesStream = Unimplemented;
    type DeltaAggregatedResourcesStream = FloorStream;

    async fn stream_aggregated_resources(
        &self,
        _request: tonic::Request<tonic::Streaming<DiscoveryRequest>>,
    ) -> Result<tonic::Response<Self::StreamAggregatedResourcesStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("delta only"))
    }

    async fn delta_aggregated_resources(
        &self,
        request: tonic::Request<tonic::Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<tonic::Response<Self::DeltaAggregatedResourcesStream>, tonic::Status> {
        Ok(tonic::Response::new(FloorStream {
            inbound: request.into_inner(),
            rounds: WatchStream::from_changes(self.round.clone()),
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            nonce: 0,
        }))
    }
}

/// What a client publishes: the version it last received, and when.
type Seen = watch::Receiver<Option<(String, Instant)>>;

/// One client: subscribes (retrying, as a thousand connects at once can
/// overflow the listen backlog), then publishes each response's version and
/// ACKs it. Returns when the stream ends.
async fn run_client(endpoint: Endpoint, seen: watch::Sender<Option<(String, Instant)>>) {
    let (tx, mut inbound) = loop {
        if let Ok(channel) = endpoint.connect().await {
            let mut grpc = AggregatedDiscoveryServiceClient::new(channel);
            let (tx, rx) = mpsc::unbounded_channel();
            let _ = tx.send(DeltaDiscoveryRequest {
                type_url: type_url::ADDRESS.to_owned(),
                resource_names_subscribe: vec!["*".to_owned()],
                ..Default::default()
            });
            if let Ok(response) = grpc
                .delta_aggregated_resources(UnboundedReceiverStream::new(rx))
                .await
            {
                break (tx, response.into_inner());
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    while let Some(Ok(response)) = inbound.next().await {
        if let Some(r) = response.resources.first() {
            seen.send_replace(Some((r.version.clone(), Instant::now())));
        }
        let _ = tx.send(DeltaDiscoveryRequest {
            type_url: response.type_url,
            response_nonce: response.nonce,
            ..Default::default()
        });
    }
}

/// A round's resource version, as long as the real store's content hashes.
fn version_of(round: usize) -> String {
    format!("{round:016x}")
}

async fn run(clients: usize, rounds: usize, split: bool) -> Result<(), String> {
    // The workload `xds_push_bench` changes each round, with the same
    // trailing unknown field.
    let bench = XdsBench::new(1, 1);
    let workload = bench
        .workloads
        .resources()
        .first()
        .ok_or("no workload generated")?;
    let name = workload.name().into_owned();
    let base = encode_any(workload);
    let response_for = |round: usize| {
        let mut value = base.value.clone();
        value.extend_from_slice(&[0xb8, 0x3e]);
        value.push(u8::try_from(round % 128).unwrap_or(0));
        DeltaDiscoveryResponse {
            // As the real server: the store generation, and a 16-digit
            // content-hash-sized resource version.
            system_version_info: (round.wrapping_add(1000)).to_string(),
            type_url: type_url::ADDRESS.to_owned(),
            resources: vec![WireResource {
                name: name.clone(),
                version: version_of(round),
                resource: Some(Any {
                    type_url: base.type_url.clone(),
                    value,
                }),
                ..Default::default()
            }],
            ..Default::default()
        }
    };
    let (round_tx, round_rx) = watch::channel(Arc::new(response_for(usize::MAX)));
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("bind: {e}"))?;
    let addr = listener.local_addr().map_err(|e| format!("addr: {e}"))?;
    let serve = tonic::transport::Server::builder()
        .add_service(AggregatedDiscoveryServiceServer::new(Floor {
            round: round_rx,
            next_id: AtomicU64::new(0x1870_0000_0000),
        }))
        .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true)));
    // With `--split-runtimes` the server runs on threads of its own, so its
    // CPU time is told apart from the clients'.
    let server_runtime = if split {
        let rt = ServerRuntime::new().map_err(|e| format!("server runtime: {e}"))?;
        rt.handle().ok_or("server runtime gone")?.spawn(serve);
        Some(rt)
    } else {
        tokio::spawn(serve);
        None
    };
    // The real client's HTTP/2 windows.
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("endpoint: {e}"))?
        .initial_stream_window_size(DEFAULT_STREAM_WINDOW)
        .initial_connection_window_size(DEFAULT_CONNECTION_WINDOW);
    let mut seen: Vec<Seen> = Vec::with_capacity(clients);
    for _ in 0..clients {
        let (tx, rx) = watch::channel(None);
        tokio::spawn(run_client(endpoint.clone(), tx));
        seen.push(rx);
    }
    // Every stream open: the server counts receivers of the round channel
    // (one per stream, plus its own).
    let opened = Instant::now();
    while round_tx.receiver_count() < clients + 1 {
        if opened.elapsed() > Duration::from_secs(60) {
            return Err("the clients did not connect within 60 s".to_owned());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut per_round = Vec::new();
    let mut per_client = Vec::new();
    let mut cpu = Duration::ZERO;
    let mut server_cpu = Duration::ZERO;
    for round in 0..rounds {
        let pause = if round == 0 { 500 } else { 20 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let version = version_of(round);
        let response = Arc::new(response_for(round));
        let mark = CpuMark::now();
        let start = Instant::now();
        round_tx.send_replace(response);
        let arrived = until_all_arrived(seen.len(), start, |i| match &*seen[i].borrow() {
            Some((v, at)) if *v == version => Some(*at),
            _ => None,
        })
        .await
        .ok_or("a client did not get the round within 60 s")?;
        let (round_cpu, round_server_cpu) = mark.since();
        cpu += round_cpu;
        server_cpu += round_server_cpu;
        per_round.push(arrived.iter().copied().max().unwrap_or_default());
        per_client.extend(arrived);
    }
    per_round.sort();
    per_client.sort();
    println!(
        "floor fan-out to {clients} delta clients ({rounds} rounds, transport only): until all have it p50 {:.2} ms p99 {:.2} ms; per client p50 {:.2} ms p99 {:.2} ms",
        ms(percentile(&per_round, 0.5)),
        ms(percentile(&per_round, 0.99)),
        ms(percentile(&per_client, 0.5)),
        ms(percentile(&per_client, 0.99)),
    );
    println!(
        "floor fan-out CPU per round (server, clients and poller, user + system): {:.1} ms, {:.1} µs per client",
        ms(cpu) / rounds as f64,
        ms(cpu) * 1000.0 / (rounds * clients.max(1)) as f64,
    );
    if server_runtime.is_some() {
        let per_client = |d: Duration| ms(d) * 1000.0 / (rounds * clients.max(1)) as f64;
        let rest = cpu.saturating_sub(server_cpu);
        println!(
            "floor fan-out CPU per round, server runtime: {:.1} ms ({:.1} µs per client); clients and poller: {:.1} ms ({:.1} µs per client)",
            ms(server_cpu) / rounds as f64,
            per_client(server_cpu),
            ms(rest) / rounds as f64,
            per_client(rest),
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let mut clients = 1_000;
    let mut rounds = 20;
    let mut split = false;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--split-runtimes" {
            split = true;
            continue;
        }
        let value = args.next().and_then(|v| v.parse::<usize>().ok());
        match (flag.as_str(), value) {
            ("--clients", Some(n)) => clients = n.max(1),
            ("--rounds", Some(n)) => rounds = n.max(1),
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(clients, rounds, split)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
