//! [`Tunnel`]: one HBONE CONNECT stream as a tokio byte stream.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use appnet_identity::SpiffeId;
use bytes::{Buf, Bytes, BytesMut};
use h2::{RecvStream, SendStream};
use http::HeaderMap;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::h2_to_io;
use crate::metrics::{ConnectionRecorder, Reporter};
use crate::wire::Authority;

/// The most send capacity one write asks for.
const MAX_RESERVE: usize = 16 * 1024 * 1024;

/// Bytes a tunnel has moved, readable while the tunnel is in use elsewhere
/// (say inside `tokio::io::copy_bidirectional`).
#[derive(Debug, Clone, Default)]
pub struct ByteCounters(Arc<Counts>);

#[derive(Debug, Default)]
struct Counts {
    written: AtomicU64,
    read: AtomicU64,
}

impl ByteCounters {
    /// Bytes this side wrote into the tunnel.
    pub fn written(&self) -> u64 {
        self.0.written.load(Ordering::Relaxed)
    }

    /// Bytes this side read out of the tunnel.
    pub fn read(&self) -> u64 {
        self.0.read.load(Ordering::Relaxed)
    }
}

/// Runs a closure once, when dropped: how a tunnel gives back its pool slot
/// and its place in the open-tunnel counts.
pub(crate) struct OnDrop(Option<Box<dyn FnOnce() + Send + Sync>>);

impl OnDrop {
    pub(crate) fn new(f: impl FnOnce() + Send + Sync + 'static) -> Self {
        Self(Some(Box::new(f)))
    }
}

impl Drop for OnDrop {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

/// One HBONE tunnel: the bytes of a CONNECT stream after the `200`, both
/// ways, as tokio [`AsyncRead`] + [`AsyncWrite`].
///
/// - Reads end (`Ok(0)`) when the peer half-closes (END_STREAM); writes
///   go on until [`AsyncWriteExt::shutdown`](tokio::io::AsyncWriteExt::shutdown),
///   which half-closes this direction.
/// - HTTP/2 flow control follows the reader: receive window is given back
///   only as the application reads, so a slow reader slows its own stream,
///   not the others on the connection.
/// - A stream reset by the peer reads and writes as
///   [`io::ErrorKind::ConnectionReset`]; a lost connection as an error too.
/// - Dropping the tunnel before both directions ended resets the stream
///   (`RST_STREAM(CANCEL)`).
/// - Writes are copied into a buffer that is reused from one write to the
///   next and released by [`poll_flush`](AsyncWrite::poll_flush) (which
///   `tokio::io::copy` calls whenever its reader pauses) and by shutdown.
///   A tunnel that has never written, or has flushed, holds no write
///   buffer. [`copy_bidirectional`](crate::copy_bidirectional) skips that
///   copy (and the one out of received chunks) when splicing a tunnel to a
///   connection.
pub struct Tunnel {
    send: SendStream<Bytes>,
    recv: RecvStream,
    pending: Bytes,
    /// Write buffer, reused across writes until a flush or shutdown.
    written: BytesMut,
    read_done: bool,
    write_done: bool,
    peer: SpiffeId,
    authority: Authority,
    headers: HeaderMap,
    side: Reporter,
    counters: ByteCounters,
    recorder: Option<Box<dyn ConnectionRecorder>>,
    // Declared last: runs after the streams above are dropped.
    _release: OnDrop,
}

impl fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tunnel")
            .field("peer", &self.peer)
            .field("authority", &self.authority)
            .field("side", &self.side)
            .field("read_done", &self.read_done)
            .field("write_done", &self.write_done)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

pub(crate) struct TunnelParts {
    pub(crate) send: SendStream<Bytes>,
    pub(crate) recv: RecvStream,
    pub(crate) peer: SpiffeId,
    pub(crate) authority: Authority,
    pub(crate) headers: HeaderMap,
    pub(crate) side: Reporter,
    pub(crate) recorder: Option<Box<dyn ConnectionRecorder>>,
    pub(crate) release: OnDrop,
}

impl Tunnel {
    pub(crate) fn new(p: TunnelParts) -> Self {
        Self {
            send: p.send,
            recv: p.recv,
            pending: Bytes::new(),
            written: BytesMut::new(),
            read_done: false,
            write_done: false,
            peer: p.peer,
            authority: p.authority,
            headers: p.headers,
            side: p.side,
            counters: ByteCounters::default(),
            recorder: p.recorder,
            _release: p.release,
        }
    }

    /// The peer's SPIFFE ID, verified in the TLS handshake.
    pub fn peer_identity(&self) -> &SpiffeId {
        &self.peer
    }

    /// The CONNECT target.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The headers the peer sent: the CONNECT request's on the server side,
    /// the `200` response's (say, the destination's `baggage`) on the
    /// client side.
    pub fn peer_headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// Which side of the tunnel this is.
    pub fn side(&self) -> Reporter {
        self.side
    }

    /// Live byte counts, shareable.
    pub fn counters(&self) -> ByteCounters {
        self.counters.clone()
    }

    fn count_read(&self, n: usize) {
        let n = n as u64;
        self.counters.0.read.fetch_add(n, Ordering::Relaxed);
        if let Some(r) = &self.recorder {
            match self.side {
                Reporter::Source => r.sent_bytes(n),
                Reporter::Destination => r.received_bytes(n),
            }
        }
    }

    fn count_written(&self, n: usize) {
        let n = n as u64;
        self.counters.0.written.fetch_add(n, Ordering::Relaxed);
        if let Some(r) = &self.recorder {
            match self.side {
                Reporter::Source => r.received_bytes(n),
                Reporter::Destination => r.sent_bytes(n),
            }
        }
    }

    /// Whether this side has half-closed (or the tunnel was shut down).
    pub(crate) fn write_done(&self) -> bool {
        self.write_done
    }

    /// Waits until received bytes are at hand ([`Self::pending`]); `false`
    /// once the peer has finished (END_STREAM or `RST_STREAM(NO_ERROR)`)
    /// and all were taken.
    pub(crate) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        loop {
            if !self.pending.is_empty() {
                return Poll::Ready(Ok(true));
            }
            if self.read_done {
                return Poll::Ready(Ok(false));
            }
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(chunk)) => self.pending = chunk,
                Some(Err(e)) if e.reason() == Some(h2::Reason::NO_ERROR) && e.is_remote() => {
                    // RST_STREAM(NO_ERROR): the peer is done; nothing more
                    // will arrive.
                    self.read_done = true;
                }
                Some(Err(e)) => return Poll::Ready(Err(h2_to_io(e))),
                None => self.read_done = true,
            }
        }
    }

    /// Received bytes not yet taken.
    pub(crate) fn pending(&self) -> &[u8] {
        &self.pending
    }

    /// The first `n` pending bytes were taken by the application: their
    /// window goes back to the peer (only now, so the peer cannot outrun a
    /// slow reader by more than a window) and they are counted.
    pub(crate) fn consume(&mut self, n: usize) {
        self.pending.advance(n);
        // An error means the stream is already gone; the next poll_data
        // says how.
        let _ = self.recv.flow_control().release_capacity(n);
        self.count_read(n);
    }

    /// Whether the peer ended the stream with `RST_STREAM(NO_ERROR)`: it
    /// wants no more of what this side sends, and that is not a failure.
    pub(crate) fn peer_stopped_reading(&mut self, cx: &mut Context<'_>) -> bool {
        matches!(
            self.send.poll_reset(cx),
            Poll::Ready(Ok(h2::Reason::NO_ERROR))
        )
    }

    /// Waits until the stream may send; returns how much (at most `want`).
    pub(crate) fn poll_send_room(
        &mut self,
        cx: &mut Context<'_>,
        want: usize,
    ) -> Poll<io::Result<usize>> {
        if self.write_done {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "HBONE tunnel already shut down for writing",
            )));
        }
        // h2 takes the reservation as a u32: bound it (a write may be
        // partial anyway).
        self.send.reserve_capacity(want.min(MAX_RESERVE));
        loop {
            let available = self.send.capacity();
            if available > 0 {
                return Poll::Ready(Ok(available.min(want)));
            }
            match ready!(self.send.poll_capacity(cx)) {
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Poll::Ready(Err(h2_to_io(e))),
                None => return Poll::Ready(Err(self.closed_error(cx))),
            }
        }
    }

    /// Hands bytes to HTTP/2 as they are (within the room
    /// [`Self::poll_send_room`] gave) and counts them.
    pub(crate) fn send_chunk(&mut self, chunk: Bytes) -> io::Result<()> {
        let n = chunk.len();
        self.send.send_data(chunk, false).map_err(h2_to_io)?;
        self.count_written(n);
        Ok(())
    }

    /// Half-closes this direction (END_STREAM).
    pub(crate) fn finish_writing(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        self.write_done = true;
        self.written = BytesMut::new();
        // Nothing more will be written: give back any reservation.
        self.send.reserve_capacity(0);
        match self.send.send_data(Bytes::new(), true) {
            Ok(()) => Ok(()),
            Err(_) => Err(self.closed_error(cx)),
        }
    }

    /// The error for a write on a stream that no longer sends.
    fn closed_error(&mut self, cx: &mut Context<'_>) -> io::Error {
        match self.send.poll_reset(cx) {
            Poll::Ready(Ok(reason)) => io::Error::new(
                if reason == h2::Reason::NO_ERROR || reason == h2::Reason::CANCEL {
                    io::ErrorKind::BrokenPipe
                } else {
                    io::ErrorKind::ConnectionReset
                },
                h2::Error::from(reason),
            ),
            Poll::Ready(Err(e)) => h2_to_io(e),
            Poll::Pending => io::Error::new(io::ErrorKind::BrokenPipe, "HBONE stream closed"),
        }
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        if let Some(r) = self.recorder.take() {
            r.closed();
        }
    }
}

impl AsyncRead for Tunnel {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 || !ready!(this.poll_fill(cx))? {
            return Poll::Ready(Ok(()));
        }
        let n = this.pending.len().min(buf.remaining());
        buf.put_slice(&this.pending[..n]);
        this.consume(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Tunnel {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = ready!(this.poll_send_room(cx, buf.len()))?;
        // Copied into the write buffer, whose allocation comes back for
        // later writes once h2 has sent the bytes: no fresh allocation (and
        // page faults) per write in a bulk transfer.
        this.written.reserve(n);
        this.written.extend_from_slice(&buf[..n]);
        let chunk = this.written.split().freeze();
        this.send_chunk(chunk)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Data handed to h2 is written by the connection task. A flush
        // says the writer paused: give the write buffer back, so an idle
        // tunnel holds none.
        self.get_mut().written = BytesMut::new();
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.write_done {
            return Poll::Ready(Ok(()));
        }
        Poll::Ready(this.finish_writing(cx))
    }
}
