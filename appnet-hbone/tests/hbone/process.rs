//! A peer that really vanishes: the HBONE server runs in a child process
//! (this test binary, re-run for the ignored `child_server` test) and is
//! killed with SIGKILL in the middle of a transfer.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use appnet_hbone::{ConnectRequest, ConnectorConfig, HboneConnector};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{
    Domain, connect_to, default_server, echo_target, only_the_healthy_connection_left, pattern,
    peer, round_trip, settle,
};

/// Where the child finds the CA; set only for the child.
const CHILD_DIR: &str = "APPNET_HBONE_TEST_CHILD_DIR";

/// The child's side: an echo server until it is killed. Ignored, so a
/// normal run skips it; the parent runs it with `--ignored --exact`.
#[test]
#[ignore = "the server process of a_killed_peer_fails_only_its_streams"]
fn child_server() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let d = Domain::load("cluster.local", &PathBuf::from(dir));
        let h = default_server(&d).await;
        println!("listening {}", h.addr());
        std::future::pending::<()>().await;
    });
}

/// Kills the child on drop, whatever the test did.
struct ServerProcess {
    child: Child,
    dir: PathBuf,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts the child server on `d`'s CA; returns it and its address.
fn spawn_server(d: &Domain) -> (ServerProcess, SocketAddr) {
    let dir = std::env::temp_dir().join(format!("appnet-hbone-child-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    d.save(&dir);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "process::child_server",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_DIR, &dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let process = ServerProcess { child, dir };
    let addr = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("listening ").map(|a| a.parse().unwrap()))
        .expect("the child server did not start");
    (process, addr)
}

#[tokio::test]
async fn a_killed_peer_fails_only_its_streams() {
    let d = Domain::new("cluster.local");
    let (mut process, remote) = spawn_server(&d);
    let healthy = default_server(&d).await;
    let connector = HboneConnector::new(ConnectorConfig::default()).unwrap();
    let creds = d.creds("client");
    let to_remote = peer(remote, d.id("server"));
    let mut idle = connector
        .connect(&creds, &to_remote, ConnectRequest::new(echo_target()))
        .await
        .unwrap();
    let busy = connector
        .connect(&creds, &to_remote, ConnectRequest::new(echo_target()))
        .await
        .unwrap();
    let mut kept = connect_to(&connector, &d, healthy.addr(), echo_target()).await;
    assert_eq!(connector.stats().pooled_connections, 2);

    // A transfer in flight through the child: write without end, read the
    // echo, until the connection dies.
    let (mut rd, mut wr) = tokio::io::split(busy);
    let writer = tokio::spawn(async move {
        let chunk = pattern(64 * 1024);
        loop {
            if let Err(e) = wr.write_all(&chunk).await {
                return e;
            }
        }
    });
    let (echoed_tx, mut echoed) = tokio::sync::watch::channel(0usize);
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0;
        loop {
            match rd.read(&mut buf).await {
                Ok(0) => return Ok(total),
                Ok(n) => {
                    total += n;
                    echoed_tx.send_replace(total);
                }
                Err(e) => return Err(e),
            }
        }
    });
    // Mid-transfer: some megabytes have come back.
    tokio::time::timeout(Duration::from_secs(20), echoed.wait_for(|n| *n >= 4 << 20))
        .await
        .expect("the transfer never got going")
        .unwrap();

    process.child.kill().unwrap();
    process.child.wait().unwrap();

    let bound = Duration::from_secs(20);
    let write_err = tokio::time::timeout(bound, writer)
        .await
        .expect("writer hung")
        .unwrap();
    let read = tokio::time::timeout(bound, reader)
        .await
        .expect("reader hung")
        .unwrap();
    assert!(
        read.is_err(),
        "the reader must see the loss, got {read:?} ({write_err})"
    );
    let mut buf = [0u8; 8];
    let idle_read = tokio::time::timeout(bound, idle.read(&mut buf))
        .await
        .expect("idle tunnel hung");
    assert!(
        idle_read.is_err(),
        "idle stream on the dead connection: {idle_read:?}"
    );

    // The other connection is untouched.
    round_trip(&mut kept, b"still here").await;
    settle("dead connection forgotten", || {
        connector.stats().pooled_connections == 1
    })
    .await;
    drop(idle);
    drop(kept);
    only_the_healthy_connection_left(&connector, &healthy.handle).await;
}
