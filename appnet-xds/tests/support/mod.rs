//! Test support shared by the gRPC and Envoy test binaries.

use std::net::SocketAddr;

use appnet_xds::XdsServer;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_stream::wrappers::TcpListenerStream;

/// A served [`XdsServer`] on its own runtime and thread: stopping it drops
/// the runtime, which closes every connection (a real restart).
pub(crate) struct Serving {
    pub(crate) addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Serving {
    pub(crate) async fn start(server: &XdsServer, addr: SocketAddr) -> Self {
        let listener = std::net::TcpListener::bind(addr).expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let svc = server.ads_service();
        let cds = server.cds_service();
        let eds = server.eds_service();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("listener");
                let serve = tonic::transport::Server::builder()
                    .add_service(svc)
                    .add_service(cds)
                    .add_service(eds)
                    .serve_with_incoming(TcpListenerStream::new(listener));
                tokio::select! {
                    r = serve => r.expect("serve"),
                    _ = stopped => {}
                }
            });
            drop(rt);
        });
        Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub(crate) async fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().expect("server thread");
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.halt();
    }
}
