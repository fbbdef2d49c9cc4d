//! Serving tonic routes over SPIFFE mutual TLS, with the verified peer
//! identity handed to every call.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic::transport::server::Connected;

use crate::SpiffeId;

/// How long [`serve_mtls`] waits for a client to finish its TLS handshake
/// before dropping the connection.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the accept loop pauses after `accept` fails (e.g. out of file
/// descriptors), so a persistent failure does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Handshaken connections waiting for tonic to take them.
const PENDING_CONNECTIONS: usize = 64;

/// What a call served by [`serve_mtls`] knows about its connection; tonic
/// puts it in the request extensions
/// (`request.extensions().get::<MtlsConnectInfo>()`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MtlsConnectInfo {
    /// The client's SPIFFE ID, verified during the handshake; `None` if
    /// the server config did not ask for a client certificate.
    pub peer: Option<SpiffeId>,
    /// The client's address.
    pub remote_addr: Option<SocketAddr>,
    /// The local address the client connected to.
    pub local_addr: Option<SocketAddr>,
}

/// A server-side TLS connection after a completed handshake, carrying its
/// [`MtlsConnectInfo`].
#[derive(Debug)]
pub struct MtlsStream {
    inner: tokio_rustls::server::TlsStream<TcpStream>,
    info: MtlsConnectInfo,
}

impl MtlsStream {
    /// Wraps a completed server handshake, reading the verified peer
    /// identity and the addresses from it.
    pub fn new(inner: tokio_rustls::server::TlsStream<TcpStream>) -> Self {
        let (tcp, conn) = inner.get_ref();
        let info = MtlsConnectInfo {
            peer: crate::tls::peer_identity(conn),
            remote_addr: tcp.peer_addr().ok(),
            local_addr: tcp.local_addr().ok(),
        };
        Self { inner, info }
    }

    /// The connection's peer and addresses.
    pub fn info(&self) -> &MtlsConnectInfo {
        &self.info
    }
}

impl Connected for MtlsStream {
    type ConnectInfo = MtlsConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for MtlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for MtlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Why [`serve_mtls`] stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The tonic server failed.
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves `routes` on `listener` over TLS with `config` (typically
/// [`tls::server_config`](crate::tls::server_config); its ALPN list is
/// replaced by `h2` if it says anything else) until `shutdown` completes,
/// then waits for open calls to finish.
///
/// Each accepted connection is handshaken on its own task, within
/// [`HANDSHAKE_TIMEOUT`]; a failed or slow handshake drops that connection
/// only. Calls see the verified peer as [`MtlsConnectInfo`] in their
/// request extensions, which [`MtlsPeer`](super::MtlsPeer) reads.
///
/// # Errors
/// [`ServeError::Transport`] if the tonic server fails.
pub async fn serve_mtls(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    routes: Routes,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let config = if config.alpn_protocols == [b"h2"] {
        config
    } else {
        let mut config = (*config).clone();
        config.alpn_protocols = vec![b"h2".to_vec()];
        Arc::new(config)
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let (tx, rx) = mpsc::channel(PENDING_CONNECTIONS);
    let accept = tokio::spawn(accept_loop(listener, acceptor, tx));
    let incoming = ReceiverStream::new(rx).map(Ok::<_, io::Error>);
    let served = Server::builder()
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    accept.abort();
    Ok(served?)
}

/// Accepts until the receiving side (tonic) is gone.
async fn accept_loop(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    tx: mpsc::Sender<MtlsStream>,
) {
    loop {
        let accepted = tokio::select! {
            () = tx.closed() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, remote)) => {
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            // Fails only when the server is shutting down.
                            let _ = tx.send(MtlsStream::new(stream)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%remote, error = %e, "TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}
