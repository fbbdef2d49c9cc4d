//! [`copy_bidirectional`]: a node proxy's inner loop, a TCP connection
//! spliced to an HBONE tunnel without the intermediate copies of
//! `tokio::io::copy_bidirectional`.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::tunnel::Tunnel;

/// The most one read from the plain side takes (and asks h2 to send at once).
const CHUNK: usize = 128 * 1024;

/// Copies bytes both ways between `io` (the application's connection) and
/// `tunnel` until both directions have ended; returns the bytes moved
/// `io` → tunnel and tunnel → `io`.
///
/// What `tokio::io::copy_bidirectional` does, without its buffer in the
/// middle: bytes read from `io` land in a buffer that goes to HTTP/2 as is
/// (a [`Tunnel`] written through `AsyncWrite` copies them once more), and
/// the chunks HTTP/2 delivers are written to `io` straight from where they
/// were received: two fewer copies of each byte through a proxy pair, a
/// few per cent of its CPU (benches/README.md, `hbone_bench`).
/// Cancelling the future drops what it holds in flight, as tokio's does.
///
/// - End of `io`'s input half-closes the tunnel (END_STREAM); the end of
///   the tunnel's input (END_STREAM or `RST_STREAM(NO_ERROR)`) shuts down
///   `io`'s write half. Either may come first; the other direction goes on.
/// - Flow control is unchanged: receive window goes back only as `io`
///   takes the bytes, and `io` is read only while the stream may send.
/// - Bytes already read into the tunnel's own buffer through `AsyncRead`
///   go first. The tunnel's byte counters and telemetry count as usual.
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
        chunk: tunnel.take_pending(),
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
    /// Read buffer; its allocation comes back once h2 has sent what was
    /// split off it.
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
        while !self.done {
            // Read only what the stream may send now, so a stalled peer
            // stalls this reader rather than filling h2's queue.
            let room = ready!(tunnel.poll_send_room(cx, CHUNK))?;
            self.buf.reserve(room);
            let mut limited = (&mut self.buf).limit(room);
            let n = ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut *io),
                cx,
                &mut limited
            ))?;
            if n == 0 {
                tunnel.finish_writing(cx)?;
                self.done = true;
            } else {
                tunnel.send_chunk(self.buf.split().freeze())?;
                self.moved += n as u64;
            }
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

/// Tunnel → `io`.
struct Downstream {
    /// What arrived and is not yet written to `io`.
    chunk: Bytes,
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
                DownState::Copying if !self.chunk.is_empty() => {
                    let n = ready!(Pin::new(&mut *io).poll_write(cx, &self.chunk))?;
                    if n == 0 {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    self.chunk.advance(n);
                    tunnel.consumed(n);
                    self.unflushed = true;
                    self.moved += n as u64;
                }
                DownState::Copying => match tunnel.poll_chunk(cx) {
                    Poll::Ready(Ok(Some(chunk))) => self.chunk = chunk,
                    Poll::Ready(Ok(None)) => self.state = DownState::ShuttingDown,
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
