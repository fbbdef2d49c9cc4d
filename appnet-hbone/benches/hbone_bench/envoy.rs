//! The Envoy pair: Envoy originating HBONE (tcp_proxy `tunneling_config`)
//! to Envoy terminating it (HTTP/2 CONNECT over mTLS), then plain TCP to
//! the bench's sink — the path our proxy pair runs, each Envoy with one
//! worker (`--concurrency 1`), HTTP/2 windows left at Envoy's defaults.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::{Pki, TempDir};
use crate::envoy_yaml::{TlsFiles, free_port, originate_config, terminate_config};

/// The files `Pki::write_identity` wrote, as Envoy's TLS config names them.
fn tls_files(files: &[PathBuf; 3]) -> TlsFiles<'_> {
    let [chain, key, ca] = files;
    TlsFiles { chain, key, ca }
}

/// Both Envoys, killed on drop.
pub(crate) struct EnvoyPair {
    children: Vec<Child>,
    /// Where the application connects (the originating Envoy).
    pub(crate) entry: SocketAddr,
    _dir: TempDir,
}

impl Drop for EnvoyPair {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl EnvoyPair {
    /// The Envoys' process ids.
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }
}

/// `envoy` on PATH, if any.
pub(crate) fn binary() -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|p| p.join("envoy"))
        .find(|p| p.is_file())
}

fn spawn(bin: &Path, dir: &Path, tag: &str, config: &str, listen: u16) -> Child {
    let path = dir.join(format!("{tag}.yaml"));
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(bin)
        .arg("-c")
        .arg(&path)
        .args([
            "--disable-hot-restart",
            "-l",
            "warning",
            "--concurrency",
            "1",
        ])
        .arg("--log-path")
        .arg(dir.join(format!("{tag}.log")))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Readiness of an external process: probe its listener, bounded.
    let addr = SocketAddr::from(([127, 0, 0, 1], listen));
    for _ in 0..600 {
        if TcpStream::connect(addr).is_ok() {
            return child;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.join(format!("{tag}.log"))).unwrap_or_default();
            panic!("envoy {tag} exited with {status}: {log}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("envoy {tag} never listened on {addr}");
}

/// Starts the pair in front of `sink`; `None` when `envoy` is not on PATH.
pub(crate) fn start(pki: &Pki, sink: SocketAddr) -> Option<EnvoyPair> {
    let bin = binary()?;
    let dir = TempDir::new("envoy");
    let server_files = pki.write_identity("server", &dir.0);
    let client_files = pki.write_identity("client", &dir.0);
    let hbone = free_port();
    let entry = free_port();
    let terminate = spawn(
        &bin,
        &dir.0,
        "terminate",
        &terminate_config(&tls_files(&server_files), hbone, sink.port()),
        hbone,
    );
    let mut pair = EnvoyPair {
        children: vec![terminate],
        entry: SocketAddr::from(([127, 0, 0, 1], entry)),
        _dir: dir,
    };
    let originate = spawn(
        &bin,
        &pair._dir.0,
        "originate",
        &originate_config(
            &tls_files(&client_files),
            entry,
            hbone,
            &pki.id("server").to_string(),
            "sink.bench:9",
            &[],
        ),
        entry,
    );
    pair.children.push(originate);
    Some(pair)
}
