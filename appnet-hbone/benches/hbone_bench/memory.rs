//! Figure 4: resident memory per idle tunnel, both ends counted, and what
//! comes back when they close.
//!
//! The client and the server each run in a child process of their own (this
//! bench binary, re-run with `--mem-server` / `--mem-client`): a fresh heap
//! that no earlier figure has left free memory in, one process's RSS per
//! end, and each end under the file-descriptor limit with 10k connections.
//! The parent reads each child's `VmRSS` from `/proc/<pid>/status`:
//! - *base*: after the server listens and the client has opened and closed
//!   one tunnel (TLS, HTTP/2 and the runtime warmed up; that connection
//!   stays pooled);
//! - *open*: with N idle tunnels open (the server's handler waits for EOF
//!   with a 64-byte buffer, so application buffers are not counted);
//! - *closed*: the tunnels dropped (RST_STREAM), their connections still
//!   pooled and idle;
//! - *re-opened*: N tunnels opened again (so RSS kept after the close is
//!   seen to be reused, not leaked);
//! - *conns closed*: those closed, the connector dropped, so every
//!   connection closed.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use appnet_hbone::{ConnectRequest, FlowControl, HboneConnector, HbonePeer};
use tokio::sync::watch;

use crate::common::{self, Args, Forward, Pki, TempDir, configs, rss_kib};

/// The goal per idle tunnel, both ends, KB.
const GOAL_KB: f64 = 8.0;

/// A child process driven by lines on stdin/stdout.
struct Driven {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Driven {
    fn spawn(args: &[String]) -> Self {
        let exe = std::env::current_exe().unwrap();
        let mut child = Command::new(exe)
            .args(args)
            // jemalloc (the bench's allocator): purge freed pages at once.
            .env("_RJEM_MALLOC_CONF", "dirty_decay_ms:0,muzzy_decay_ms:0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Self {
            child,
            stdin,
            stdout,
        }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    fn recv(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert!(!line.is_empty(), "memory child exited early");
        line.trim().to_owned()
    }

    fn ask(&mut self, line: &str) -> String {
        self.send(line);
        self.recv()
    }

    fn rss(&self) -> u64 {
        rss_kib(self.child.id())
    }
}

impl Drop for Driven {
    fn drop(&mut self) {
        // EOF on stdin ends the child.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// The server's live tunnel and connection counts.
fn server_stats(server: &mut Driven) -> (usize, usize) {
    let line = server.ask("stats");
    let mut it = line.split_whitespace().map(|v| v.parse().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

/// Asks the server until `cond` holds on its (tunnels, connections).
fn wait_server(server: &mut Driven, cond: impl Fn(usize, usize) -> bool) {
    for _ in 0..6000 {
        let (t, c) = server_stats(server);
        if cond(t, c) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the memory server never settled");
}

struct Rss {
    client: u64,
    server: u64,
}

fn rss(client: &Driven, server: &Driven) -> Rss {
    // Give the allocators a moment to hand freed pages back.
    std::thread::sleep(std::time::Duration::from_millis(300));
    Rss {
        client: client.rss(),
        server: server.rss(),
    }
}

/// One case: `n` tunnels, at most `per_connection` per connection.
fn case(dir: &Path, n: usize, per_connection: u32) {
    let mut server = Driven::spawn(&[
        "--mem-server".into(),
        dir.display().to_string(),
        "--bench".into(),
    ]);
    let addr = server.recv();
    let mut client = Driven::spawn(&[
        "--mem-client".into(),
        dir.display().to_string(),
        addr,
        per_connection.to_string(),
        "--bench".into(),
    ]);
    assert_eq!(client.recv(), "ready");
    wait_server(&mut server, |t, _| t == 0);
    let base = rss(&client, &server);
    let opened = client.ask(&format!("open {n}"));
    wait_server(&mut server, |t, _| t == n);
    let open = rss(&client, &server);
    assert_eq!(client.ask("close"), "closed");
    wait_server(&mut server, |t, _| t == 0);
    let closed = rss(&client, &server);
    client.ask(&format!("open {n}"));
    wait_server(&mut server, |t, _| t == n);
    let reopened = rss(&client, &server);
    assert_eq!(client.ask("close"), "closed");
    wait_server(&mut server, |t, _| t == 0);
    assert_eq!(client.ask("drop"), "dropped");
    wait_server(&mut server, |_, c| c == 0);
    let dropped = rss(&client, &server);

    let kb = |kib: u64| kib as f64 * 1024.0 / 1000.0;
    let per = |a: u64, b: u64| kb(b.saturating_sub(a)) / n as f64;
    let c = per(base.client, open.client);
    let s = per(base.server, open.server);
    let both = |r: &Rss| r.client + r.server;
    let grown = both(&open).saturating_sub(both(&base)).max(1) as f64;
    let mib = |r: &Rss| both(r) as f64 / 1024.0;
    println!("  {opened} ({per_connection} per connection at most):");
    let goal = if per_connection == 1 {
        "a connection each; the goal is for pooled tunnels".to_owned()
    } else {
        format!(
            "goal <= {GOAL_KB} KB: {}",
            if c + s <= GOAL_KB { "met" } else { "NOT met" }
        )
    };
    println!(
        "    per idle tunnel: client {c:.2} KB + server {s:.2} KB = {:.2} KB ({goal})",
        c + s,
    );
    println!(
        "    RSS MiB, both ends: base {:.1}, open {:.1}, tunnels closed {:.1}, re-opened {:.1}, all closed {:.1}",
        mib(&base),
        mib(&open),
        mib(&closed),
        mib(&reopened),
        mib(&dropped),
    );
    println!(
        "    back to the OS: {:.0}% of the growth once the tunnels closed (connections kept), {:.0}% once every connection closed; re-opening grew RSS by {:.0}% of the first opening",
        100.0 * both(&open).saturating_sub(both(&closed)) as f64 / grown,
        100.0 * both(&reopened).saturating_sub(both(&dropped)) as f64 / grown,
        100.0 * both(&reopened).saturating_sub(both(&closed)) as f64 / grown,
    );
}

/// Figure 4, printed.
pub(crate) fn run(pki: &Pki, args: &Args) {
    let dir = TempDir::new("memory");
    pki.save(&dir.0);
    println!("4. memory per idle tunnel (VmRSS delta of the client and server processes):");
    case(&dir.0, args.tunnels, 100);
    case(&dir.0, args.tunnels, 1);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn flow() -> FlowControl {
    FlowControl::default()
}

/// `--mem-server DIR`: prints its address, then answers `stats` with
/// "tunnels connections" until stdin closes.
pub(crate) fn server_child(dir: &Path) {
    let pki = Pki::load(dir);
    let rt = runtime();
    let (_release, rx) = watch::channel(false);
    let (_, config) = configs(flow());
    let handle = rt.block_on(common::start_hbone(
        pki.creds("server"),
        config,
        rx,
        Forward::Splice,
    ));
    println!("{}", handle.local_addr());
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line == "stats" {
            let s = handle.stats();
            println!("{} {}", s.tunnels, s.connections);
        }
    }
    std::process::exit(0);
}

/// `--mem-client DIR ADDR PER_CONNECTION`: opens and closes tunnels on
/// command (`open N`, `close`, `drop`) until stdin closes.
pub(crate) fn client_child(dir: &Path, addr: SocketAddr, per_connection: u32) {
    let pki = Pki::load(dir);
    let rt = runtime();
    let (mut config, _) = configs(flow());
    config.max_streams_per_connection = per_connection;
    let mut connector = Some(HboneConnector::new(config).unwrap());
    let creds = pki.creds("client");
    let peer = HbonePeer::new(addr, pki.id("server"));
    let idle = || ConnectRequest::new("idle.bench:9".parse().unwrap());
    let mut tunnels = Vec::new();
    rt.block_on(async {
        let c = connector.as_ref().unwrap();
        drop(c.connect(&creds, &peer, idle()).await.unwrap());
    });
    println!("ready");
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let mut words = line.split_whitespace();
        match words.next() {
            Some("open") => {
                let n: usize = words.next().unwrap().parse().unwrap();
                let c = connector.clone().unwrap();
                tunnels.reserve(n);
                tunnels.extend(rt.block_on(open_many(c, creds.clone(), peer.clone(), n)));
                let stats = connector.as_ref().unwrap().stats();
                println!(
                    "{} tunnels on {} connections",
                    stats.tunnels, stats.pooled_connections
                );
            }
            Some("close") => {
                // Keeps the Vec's capacity: a re-opening then measures the
                // library's memory, not a second Vec of handles.
                tunnels.clear();
                let c = connector.clone().unwrap();
                rt.block_on(settle(|| c.stats().tunnels == 0));
                println!("closed");
            }
            Some("drop") => {
                connector = None;
                println!("dropped");
            }
            _ => {}
        }
    }
    std::process::exit(0);
}

/// Opens `n` idle tunnels, 64 at a time.
async fn open_many(
    connector: HboneConnector,
    creds: appnet_identity::tls::CredentialsReceiver,
    peer: HbonePeer,
    n: usize,
) -> impl Iterator<Item = appnet_hbone::Tunnel> {
    let workers = 64.min(n.max(1));
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let (connector, creds, peer) = (connector.clone(), creds.clone(), peer.clone());
        let count = n / workers + usize::from(w < n % workers);
        tasks.spawn(async move {
            let mut mine = Vec::with_capacity(count);
            for _ in 0..count {
                let request = ConnectRequest::new("idle.bench:9".parse().unwrap());
                mine.push(connector.connect(&creds, &peer, request).await.unwrap());
            }
            mine
        });
    }
    let mut all = Vec::new();
    while let Some(mine) = tasks.join_next().await {
        all.push(mine.unwrap());
    }
    all.into_iter().flatten()
}

async fn settle(mut cond: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the memory client never settled");
}
