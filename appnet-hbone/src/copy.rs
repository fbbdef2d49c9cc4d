//! [`copy_bidirectional`]: a node proxy's inner loop, a TCP connection
//! spliced to an HBONE tunnel without the intermediate copies of
//! `tokio::io::copy_bidirectional`.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::tunnel::Tunnel;

/// The most one read from the plain side takes.
const CHUNK: usize = 128 * 1024;

/// A read buffer with less room left than this gets a fresh allocation
/// (the old one stays with the chunks h2 still holds); small reads share
/// one allocation until then.
const FLOOR: usize = 8 * 1024;

/// Copies bytes both ways between `io` (the application's connection) and
/// `tunnel` until both directions have ended; returns the bytes moved
/// `io` → tunnel and tunnel → `io`.
///
/// What `tokio::io::copy_bidirectional` does, without its buffer in the
/// middle: bytes read from `io` land in a buffer that goes to HTTP/2 as is
/// (a [`Tunnel`] written through `AsyncWrite` copies them once more), and
/// the bytes HTTP/2 received are written to `io` straight from where they
/// arrived: two fewer copies of each byte through a proxy pair, a few per
/// cent of its CPU (benches/README.md, `hbone_bench`).
///
/// - End of `io`'s input half-closes the tunnel (END_STREAM); the end of
///   the tunnel's input (END_STREAM) shuts down `io`'s write half. Either
///   may come first; the other direction goes on.
/// - A peer that ends the stream with `RST_STREAM(NO_ERROR)` wants nothing
///   more: what `io` still sends is dropped, what the peer sent before is
///   still written to `io`, and the copy ends without an error.
/// - Flow control is unchanged: receive window goes back only as `io`
///   takes the bytes; send window is asked for only for bytes read from
///   `io` (an idle tunnel holds none of its connection's window), and `io`
///   is not read again until they are sent. At most 128 KiB is buffered.
/// - Bytes already read into the tunnel through `AsyncRead` go first;
///   received bytes not yet written to `io` stay in the tunnel if the copy
///   fails or is cancelled (bytes read from `io` and not yet sent are lost
///   then, as with tokio's copy). The tunnel's byte counters and telemetry
///   count as usual.
/// - The first error either way ends the copy and is returned.
///
/// ```no_run
/// # async fn example(
/// #     connector: appnet_hbone::HboneConnector,
/// #     creds: appnet_identity::tls::CredentialsReceiver,
/// #     peer: appnet_hbone::HbonePeer,
/// #     mut app: tokio::net::TcpStream,
/// # ) -> Result<(), Box<dyn std::error::Error>> {
/// use appnet_hbone::ConnectRequest;
///
/// let request = ConnectRequest::new("10.0.0.7:8080".parse()?);
/// let mut tunnel = connector.connect(&creds, &peer, request).await?;
/// let (sent, received) = appnet_hbone::copy_bidirectional(&mut app, &mut tunnel).await?;
/// # let _ = (sent, received);
/// # Ok(())
/// # }
/// ```
pub async fn copy_bidirectional<T>(io: &mut T, tunnel: &mut Tunnel) -> io::Result<(u64, u64)>
where
    T: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let mut up = Upstream {
        buf: BytesMut::new(),
        done: tunnel.write_done(),
        moved: 0,
    };
    let mut down = Downstream {
        state: DownState::Copying,
        unflushed: false,
        moved: 0,
    };
    poll_fn(|cx| {
        let up_ready = up.poll(cx, io, tunnel)?;
        let down_ready = down.poll(cx, io, tunnel)?;
        match (up_ready, down_ready) {
            (Poll::Ready(()), Poll::Ready(())) => Poll::Ready(Ok((up.moved, down.moved))),
            _ => Poll::Pending,
        }
    })
    .await
}

/// `io` → tunnel.
struct Upstream {
    /// Bytes read from `io` and not yet sent, in the allocation the next
    /// read fills; what was sent lives on in h2 until it is written.
    buf: BytesMut,
    done: bool,
    moved: u64,
}

impl Upstream {
    fn poll<T>(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut T,
        tunnel: &mut Tunnel,
    ) -> Poll<io::Result<()>>
    where
        T: AsyncRead + Unpin + ?Sized,
    {
        match self.step(cx, io, tunnel) {
            Poll::Ready(Err(_)) if tunnel.peer_stopped_reading(cx) => {
                // RST_STREAM(NO_ERROR): not a failure; nothing more goes.
                self.stop();
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }

    /// The peer wants no more: what was read and not sent is dropped.
    fn stop(&mut self) {
        self.done = true;
        self.buf = BytesMut::new();
    }

    fn step<T>(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut T,
        tunnel: &mut Tunnel,
    ) -> Poll<io::Result<()>>
    where
        T: AsyncRead + Unpin + ?Sized,
    {
        while !self.done {
            if self.buf.is_empty() {
                // A peer that has stopped reading gets nothing more: no
                // need to wait for `io`'s next bytes or its end.
                if tunnel.peer_stopped_reading(cx) {
                    self.stop();
                    break;
                }
                if self.buf.capacity() < FLOOR {
                    self.buf.reserve(CHUNK);
                }
                let room = self.buf.capacity() - self.buf.len();
                let mut limited = (&mut self.buf).limit(room.min(CHUNK));
                let n = ready!(tokio_util::io::poll_read_buf(
                    Pin::new(&mut *io),
                    cx,
                    &mut limited
                ))?;
                if n == 0 {
                    tunnel.finish_writing(cx)?;
                    self.done = true;
                    continue;
                }
            }
            // Send window for what was read, no more: capacity reserved and
            // not used would hold the connection's window from the others.
            let room = ready!(tunnel.poll_send_room(cx, self.buf.len()))?;
            let n = room.min(self.buf.len());
            tunnel.send_chunk(self.buf.split_to(n).freeze())?;
            self.moved += n as u64;
        }
        Poll::Ready(Ok(()))
    }
}

#[derive(PartialEq, Eq)]
enum DownState {
    Copying,
    ShuttingDown,
    Done,
}

/// Tunnel → `io`, written from the tunnel's own received bytes.
struct Downstream {
    state: DownState,
    /// Written to `io` since its last flush.
    unflushed: bool,
    moved: u64,
}

impl Downstream {
    fn poll<T>(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut T,
        tunnel: &mut Tunnel,
    ) -> Poll<io::Result<()>>
    where
        T: AsyncWrite + Unpin + ?Sized,
    {
        loop {
            match self.state {
                DownState::Done => return Poll::Ready(Ok(())),
                DownState::ShuttingDown => {
                    ready!(Pin::new(&mut *io).poll_shutdown(cx))?;
                    self.state = DownState::Done;
                }
                DownState::Copying => match tunnel.poll_fill(cx) {
                    Poll::Ready(Ok(true)) => {
                        let n = ready!(Pin::new(&mut *io).poll_write(cx, tunnel.pending()))?;
                        if n == 0 {
                            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                        }
                        tunnel.consume(n);
                        self.unflushed = true;
                        self.moved += n as u64;
                    }
                    Poll::Ready(Ok(false)) => self.state = DownState::ShuttingDown,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {
                        // Nothing more for now: push out what `io` buffers.
                        if self.unflushed {
                            ready!(Pin::new(&mut *io).poll_flush(cx))?;
                            self.unflushed = false;
                        }
                        return Poll::Pending;
                    }
                },
            }
        }
    }
}
