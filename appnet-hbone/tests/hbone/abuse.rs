//! HTTP/2 abuse against the server, with hand-written frames over real
//! mTLS: rapid reset, PING and SETTINGS floods, oversized headers, and a
//! client that never reads. Each must stay bounded and leave other
//! connections alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use appnet_hbone::{ConnectRequest, ConnectorConfig, HboneConnector};
use appnet_identity::tls::{self, AllowedPeers, CredentialsReceiver};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::common::*;

const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;
const ENHANCE_YOUR_CALM: u32 = 0xb;
const CANCEL: u32 = 0x8;

fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap();
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.push(ty);
    f.push(flags);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK integer with a 7-bit prefix (string lengths, no Huffman).
fn hpack_len(n: usize, out: &mut Vec<u8>) {
    if n < 127 {
        out.push(u8::try_from(n).unwrap());
        return;
    }
    out.push(127);
    let mut rest = n - 127;
    while rest >= 128 {
        out.push(u8::try_from(rest % 128).unwrap() | 0x80);
        rest /= 128;
    }
    out.push(u8::try_from(rest).unwrap());
}

/// HPACK "literal header field without indexing, new name".
fn literal(name: &str, value: &[u8], out: &mut Vec<u8>) {
    out.push(0x00);
    hpack_len(name.len(), out);
    out.extend_from_slice(name.as_bytes());
    hpack_len(value.len(), out);
    out.extend_from_slice(value);
}

fn connect_block(authority: &str) -> Vec<u8> {
    let mut b = Vec::new();
    literal(":method", b"CONNECT", &mut b);
    literal(":authority", authority.as_bytes(), &mut b);
    b
}

/// mTLS with ALPN h2, then the client preface and an empty SETTINGS.
async fn raw_client(
    addr: std::net::SocketAddr,
    creds: CredentialsReceiver,
    server: appnet_identity::SpiffeId,
) -> TlsStream<TcpStream> {
    let config =
        tls::client_config(creds, AllowedPeers::Exactly(server), vec![b"h2".to_vec()]).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    tls.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    tls
}

struct Frame {
    ty: u8,
    stream: u32,
    payload: Vec<u8>,
}

/// Reads frames until `stop` says so, or the connection ends.
async fn read_frames(
    tls: &mut TlsStream<TcpStream>,
    mut stop: impl FnMut(&Frame) -> bool,
) -> Vec<Frame> {
    let mut buf = Vec::new();
    let mut frames = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        while buf.len() >= 9 {
            let len = usize::from(buf[0]) << 16 | usize::from(buf[1]) << 8 | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            let f = Frame {
                ty: buf[3],
                stream: u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff,
                payload: buf[9..9 + len].to_vec(),
            };
            buf.drain(..9 + len);
            let done = stop(&f);
            frames.push(f);
            if done {
                return frames;
            }
        }
        match tls.read(&mut chunk).await {
            Ok(0) | Err(_) => return frames,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn legit_round_trip(connector: &HboneConnector, d: &Domain, addr: std::net::SocketAddr) {
    let mut t = connector
        .connect(
            &d.creds("client"),
            &peer(addr, d.id("server")),
            ConnectRequest::new(echo_target()),
        )
        .await
        .unwrap();
    t.write_all(b"unaffected").await.unwrap();
    let mut back = [0u8; 10];
    t.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"unaffected");
}

#[tokio::test]
async fn rapid_reset_burst_is_cut_off_with_enhance_your_calm() {
    let d = Domain::new("cluster.local");
    let mut h = default_server(&d).await;
    let mut tls = raw_client(h.addr(), d.creds("client"), d.id("server")).await;
    // 5000 CONNECTs, each cancelled right after it is sent (CVE-2023-44487).
    let mut burst = Vec::new();
    let block = connect_block("echo.test:80");
    for i in 0..5000u32 {
        let id = 2 * i + 1;
        burst.extend(frame(HEADERS, END_HEADERS, id, &block));
        burst.extend(frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes()));
    }
    // The server may close before taking it all.
    let _ = tls.write_all(&burst).await;
    let frames = read_frames(&mut tls, |f| f.ty == GOAWAY).await;
    let goaway = frames.iter().find(|f| f.ty == GOAWAY).expect("a GOAWAY");
    let code = u32::from_be_bytes(goaway.payload[4..8].try_into().unwrap());
    assert_eq!(code, ENHANCE_YOUR_CALM);
    drop(tls);
    settle("abusive connection closed", || {
        h.handle.stats() == Default::default()
    })
    .await;
    // Only a small part of the burst ever reached the service.
    let mut calls = 0;
    while h.seen.try_recv().is_ok() {
        calls += 1;
    }
    assert!(calls < 500, "{calls} service calls for a reset burst");
    let connector = HboneConnector::new(ConnectorConfig::default()).unwrap();
    legit_round_trip(&connector, &d, h.addr()).await;
}

/// Sends a CONNECT carrying a `pad`-byte header on stream 1, in 16 KiB
/// frames as the default SETTINGS_MAX_FRAME_SIZE requires, then a proper
/// CONNECT on stream 3.
async fn send_oversized(tls: &mut TlsStream<TcpStream>, pad: usize) {
    let mut block = connect_block("echo.test:80");
    literal("x-padding", &vec![b'a'; pad], &mut block);
    let chunks: Vec<&[u8]> = block.chunks(16 * 1024).collect();
    for (i, c) in chunks.iter().enumerate() {
        let ty = if i == 0 { HEADERS } else { CONTINUATION };
        let flags = if i + 1 == chunks.len() {
            END_HEADERS
        } else {
            0
        };
        tls.write_all(&frame(ty, flags, 1, c)).await.unwrap();
    }
    let _ = tls
        .write_all(&frame(
            HEADERS,
            END_HEADERS,
            3,
            &connect_block("echo.test:80"),
        ))
        .await;
}

#[tokio::test]
async fn oversized_headers_are_refused_without_calling_the_service() {
    let d = Domain::new("cluster.local");
    let mut h = default_server(&d).await;

    // Over the 16 KiB limit: that stream is refused, the connection lives.
    let mut tls = raw_client(h.addr(), d.creds("client"), d.id("server")).await;
    send_oversized(&mut tls, 24 * 1024).await;
    let frames = read_frames(&mut tls, |f| f.ty == HEADERS && f.stream == 3).await;
    assert!(
        frames
            .iter()
            .any(|f| f.stream == 1 && (f.ty == HEADERS || f.ty == RST_STREAM)),
        "stream 1 must be answered with 431 or reset"
    );
    let ok = frames
        .iter()
        .find(|f| f.ty == HEADERS && f.stream == 3)
        .expect("stream 3 answered");
    // HPACK static index 8 is `:status: 200`.
    assert_eq!(ok.payload.first(), Some(&0x88));
    let seen = h.seen.recv().await.unwrap();
    assert_eq!(seen.authority, echo_target());
    assert!(
        h.seen.try_recv().is_err(),
        "the oversized request reached the service"
    );
    drop(tls);

    // Far over it: the whole connection is closed before decoding more.
    let mut tls = raw_client(h.addr(), d.creds("client"), d.id("server")).await;
    send_oversized(&mut tls, 100 * 1024).await;
    let frames = read_frames(&mut tls, |f| f.ty == GOAWAY).await;
    let goaway = frames.iter().find(|f| f.ty == GOAWAY).expect("a GOAWAY");
    let code = u32::from_be_bytes(goaway.payload[4..8].try_into().unwrap());
    assert_eq!(code, ENHANCE_YOUR_CALM);
    drop(tls);
    settle("connections closed", || {
        h.handle.stats() == Default::default()
    })
    .await;
    assert!(
        h.seen.try_recv().is_err(),
        "the oversized request reached the service"
    );
}

/// Floods one connection with `unit` frames without reading a byte back,
/// and checks the server stops reading (so buffers nothing unbounded)
/// while serving other connections.
async fn flood(unit: Vec<u8>) {
    let d = Domain::new("cluster.local");
    let h = default_server(&d).await;
    let tls = raw_client(h.addr(), d.creds("client"), d.id("server")).await;
    let (mut rd, mut wr) = tokio::io::split(tls);
    let written = Arc::new(AtomicUsize::new(0));
    let total = 64 * 1024 * 1024;
    let batch: Vec<u8> = unit
        .iter()
        .copied()
        .cycle()
        .take(unit.len() * 4096)
        .collect();
    let counter = Arc::clone(&written);
    let writer = tokio::spawn(async move {
        while counter.load(Ordering::Relaxed) < total {
            if wr.write_all(&batch).await.is_err() {
                return;
            }
            counter.fetch_add(batch.len(), Ordering::Relaxed);
        }
    });
    // Wait until the writer makes no progress across many runtime turns
    // (each of which polls the I/O driver): both ends are then blocked.
    let mut last = usize::MAX;
    let mut still = 0;
    settle("flood writer blocked", || {
        let now = written.load(Ordering::Relaxed);
        if now == last {
            still += 1
        } else {
            still = 0;
            last = now
        }
        still > 5_000 || writer.is_finished()
    })
    .await;
    assert!(
        !writer.is_finished(),
        "the server swallowed the whole flood"
    );
    let stalled_at = written.load(Ordering::Relaxed);
    assert!(stalled_at < total / 2, "{stalled_at} bytes accepted");

    // Other connections are served meanwhile.
    let connector = HboneConnector::new(ConnectorConfig::default()).unwrap();
    legit_round_trip(&connector, &d, h.addr()).await;

    // Reading again lets the flood move on: the server was pacing it.
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = rd.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    });
    settle("flood resumed", || {
        written.load(Ordering::Relaxed) > stalled_at + 1024 * 1024
    })
    .await;
    writer.abort();
    reader.abort();
    // Dropping the connector closes its idle pooled connection too.
    drop(connector);
    settle("flood connection closed", || {
        h.handle.stats().connections == 0
    })
    .await;
}

#[tokio::test]
async fn ping_flood_is_paced_not_buffered() {
    flood(frame(PING, 0, 0, &[7; 8])).await;
}

#[tokio::test]
async fn settings_flood_is_paced_not_buffered() {
    flood(frame(SETTINGS, 0, 0, &[])).await;
}

#[tokio::test]
async fn a_client_that_never_reads_holds_bounded_buffers() {
    let d = Domain::new("cluster.local");
    let h = default_server(&d).await;
    let connector = HboneConnector::new(ConnectorConfig::default()).unwrap();
    let t = connect_to(&connector, &d, h.addr(), echo_target()).await;
    let counters = t.counters();
    let (mut rd, mut wr) = tokio::io::split(t);
    let total = 24 * 1024 * 1024;
    let writer = tokio::spawn(async move {
        let chunk = pattern(256 * 1024);
        let mut sent = 0;
        while sent < total {
            wr.write_all(&chunk).await.unwrap();
            sent += chunk.len();
        }
        wr.shutdown().await.unwrap();
        wr
    });
    // The echo fills the client's receive window, then stops reading; the
    // client's writes stall. Nothing in between grows past the windows.
    let mut last = u64::MAX;
    let mut still = 0;
    settle("echo stalled", || {
        let now = counters.written();
        if now == last {
            still += 1
        } else {
            still = 0;
            last = now
        }
        still > 5_000 || writer.is_finished()
    })
    .await;
    assert!(!writer.is_finished());
    let bound = 2 * (4 + 1) * 1024 * 1024 + 1024 * 1024; // windows + send buffers + slack
    assert!(
        counters.written() <= bound,
        "{} bytes in flight",
        counters.written()
    );
    // Reading drains it all, in order.
    let mut got = 0usize;
    let mut buf = vec![0u8; 256 * 1024];
    let want = pattern(256 * 1024);
    loop {
        let n = rd.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        for (i, b) in buf[..n].iter().enumerate() {
            assert_eq!(*b, want[(got + i) % want.len()]);
        }
        got += n;
    }
    assert_eq!(got, total);
    drop(rd.unsplit(writer.await.unwrap()));
    all_closed(&connector, &h.handle).await;
}
