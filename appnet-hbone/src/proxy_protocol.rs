//! PROXY protocol v2 headers, as an HBONE server writes them toward the
//! application in the waypoint "sandwich": source, target, and the source's
//! SPIFFE ID in a TLV of type [`TLV_PEER_IDENTITY`] (`0xD0`).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use appnet_identity::SpiffeId;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// The 12-byte PROXY v2 signature.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The TLV type Istio uses for the source's SPIFFE ID.
pub const TLV_PEER_IDENTITY: u8 = 0xD0;

const VERSION_PROXY: u8 = 0x21;
const VERSION_LOCAL: u8 = 0x20;
const TCP4: u8 = 0x11;
const TCP6: u8 = 0x21;
const UNSPEC: u8 = 0x00;

/// A malformed or unsupported PROXY v2 header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyHeaderError {
    /// More bytes are needed; at least this many in total.
    #[error("incomplete header: {needed} bytes needed")]
    Incomplete {
        /// Total bytes needed to go on.
        needed: usize,
    },
    /// The bytes do not start with the v2 signature.
    #[error("not a PROXY v2 header")]
    BadSignature,
    /// Version/command byte is not v2 PROXY or LOCAL.
    #[error("unsupported version/command byte {0:#04x}")]
    BadVersion(u8),
    /// Family/protocol byte is not TCP over IPv4 or IPv6 (or UNSPEC).
    #[error("unsupported family/protocol byte {0:#04x}")]
    BadFamily(u8),
    /// The declared length is too short for the addresses, or a TLV
    /// overruns it.
    #[error("bad length in {0}")]
    BadLength(&'static str),
    /// The header would exceed the 65535-byte limit of its length field.
    #[error("header too long")]
    TooLong,
}

/// A PROXY v2 `PROXY` header over TCP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyHeader {
    /// The original source.
    pub source: SocketAddr,
    /// The original destination.
    pub destination: SocketAddr,
    /// TLVs as (type, value), in order.
    pub tlvs: Vec<(u8, Vec<u8>)>,
}

fn to_v6(addr: SocketAddr) -> (Ipv6Addr, u16) {
    match addr.ip() {
        IpAddr::V4(v4) => (v4.to_ipv6_mapped(), addr.port()),
        IpAddr::V6(v6) => (v6, addr.port()),
    }
}

impl ProxyHeader {
    /// A header for `source` → `destination`, no TLVs.
    pub fn new(source: SocketAddr, destination: SocketAddr) -> Self {
        Self {
            source,
            destination,
            tlvs: Vec::new(),
        }
    }

    /// Adds the source identity TLV (`0xD0`, the SPIFFE ID as text).
    pub fn with_peer_identity(mut self, id: &SpiffeId) -> Self {
        self.tlvs
            .push((TLV_PEER_IDENTITY, id.to_string().into_bytes()));
        self
    }

    /// The source identity TLV, if present and UTF-8.
    pub fn peer_identity(&self) -> Option<&str> {
        self.tlvs
            .iter()
            .find(|(t, _)| *t == TLV_PEER_IDENTITY)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The header bytes. Both addresses IPv4 → family TCP4; otherwise
    /// TCP6, IPv4 addresses written as IPv4-mapped IPv6.
    ///
    /// # Errors
    /// [`ProxyHeaderError::TooLong`] if the TLVs push the header past 65535
    /// bytes.
    pub fn encode(&self) -> Result<Vec<u8>, ProxyHeaderError> {
        let mut body = Vec::new();
        let family = match (self.source, self.destination) {
            (SocketAddr::V4(s), SocketAddr::V4(d)) => {
                body.extend_from_slice(&s.ip().octets());
                body.extend_from_slice(&d.ip().octets());
                body.extend_from_slice(&s.port().to_be_bytes());
                body.extend_from_slice(&d.port().to_be_bytes());
                TCP4
            }
            (s, d) => {
                let (s, sp) = to_v6(s);
                let (d, dp) = to_v6(d);
                body.extend_from_slice(&s.octets());
                body.extend_from_slice(&d.octets());
                body.extend_from_slice(&sp.to_be_bytes());
                body.extend_from_slice(&dp.to_be_bytes());
                TCP6
            }
        };
        for (t, v) in &self.tlvs {
            let len = u16::try_from(v.len()).map_err(|_| ProxyHeaderError::TooLong)?;
            body.push(*t);
            body.extend_from_slice(&len.to_be_bytes());
            body.extend_from_slice(v);
        }
        let len = u16::try_from(body.len()).map_err(|_| ProxyHeaderError::TooLong)?;
        let mut out = Vec::with_capacity(16 + body.len());
        out.extend_from_slice(&SIGNATURE);
        out.push(VERSION_PROXY);
        out.push(family);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Writes the header to `io` (before any application byte).
    ///
    /// # Errors
    /// The encoding error (as `InvalidInput`) or the write error.
    pub async fn write_to<W: AsyncWrite + Unpin>(&self, io: &mut W) -> std::io::Result<()> {
        let bytes = self
            .encode()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        io.write_all(&bytes).await
    }

    /// Parses a header at the start of `buf`. Returns the header (`None`
    /// for a `LOCAL` command or an `UNSPEC` family, which carry no
    /// addresses) and the bytes it took.
    ///
    /// # Errors
    /// [`ProxyHeaderError::Incomplete`] if `buf` is too short, and the
    /// other variants for malformed headers.
    pub fn parse(buf: &[u8]) -> Result<(Option<Self>, usize), ProxyHeaderError> {
        let fixed = buf
            .get(..16)
            .ok_or(ProxyHeaderError::Incomplete { needed: 16 })?;
        if fixed[..12] != SIGNATURE {
            return Err(ProxyHeaderError::BadSignature);
        }
        let version = fixed[12];
        if version != VERSION_PROXY && version != VERSION_LOCAL {
            return Err(ProxyHeaderError::BadVersion(version));
        }
        let family = fixed[13];
        let len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
        let total = 16 + len;
        let body = buf
            .get(16..total)
            .ok_or(ProxyHeaderError::Incomplete { needed: total })?;
        if version == VERSION_LOCAL || family == UNSPEC {
            return Ok((None, total));
        }
        let (source, destination, rest) = match family {
            TCP4 => {
                let a = body
                    .get(..12)
                    .ok_or(ProxyHeaderError::BadLength("addresses"))?;
                let ip = |o: usize| IpAddr::from([a[o], a[o + 1], a[o + 2], a[o + 3]]);
                let port = |o: usize| u16::from_be_bytes([a[o], a[o + 1]]);
                (
                    SocketAddr::new(ip(0), port(8)),
                    SocketAddr::new(ip(4), port(10)),
                    &body[12..],
                )
            }
            TCP6 => {
                let a = body
                    .get(..36)
                    .ok_or(ProxyHeaderError::BadLength("addresses"))?;
                let ip = |o: usize| {
                    let mut b = [0u8; 16];
                    b.copy_from_slice(&a[o..o + 16]);
                    IpAddr::from(b)
                };
                let port = |o: usize| u16::from_be_bytes([a[o], a[o + 1]]);
                (
                    SocketAddr::new(ip(0), port(32)),
                    SocketAddr::new(ip(16), port(34)),
                    &body[36..],
                )
            }
            other => return Err(ProxyHeaderError::BadFamily(other)),
        };
        let mut tlvs = Vec::new();
        let mut rest = rest;
        while !rest.is_empty() {
            let head = rest.get(..3).ok_or(ProxyHeaderError::BadLength("TLV"))?;
            let vlen = usize::from(u16::from_be_bytes([head[1], head[2]]));
            let value = rest
                .get(3..3 + vlen)
                .ok_or(ProxyHeaderError::BadLength("TLV"))?;
            tlvs.push((head[0], value.to_vec()));
            rest = &rest[3 + vlen..];
        }
        Ok((
            Some(Self {
                source,
                destination,
                tlvs,
            }),
            total,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_bytes_are_exact() {
        let id: SpiffeId = "spiffe://td/ns/a/sa/b".parse().unwrap();
        let h = ProxyHeader::new(
            "10.0.0.1:40000".parse().unwrap(),
            "10.0.0.2:8080".parse().unwrap(),
        )
        .with_peer_identity(&id);
        let bytes = h.encode().unwrap();
        let mut want = Vec::new();
        want.extend_from_slice(b"\r\n\r\n\0\r\nQUIT\n");
        want.extend_from_slice(&[0x21, 0x11]);
        let tlv_len = "spiffe://td/ns/a/sa/b".len();
        want.extend_from_slice(&u16::try_from(12 + 3 + tlv_len).unwrap().to_be_bytes());
        want.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        want.extend_from_slice(&40000u16.to_be_bytes());
        want.extend_from_slice(&8080u16.to_be_bytes());
        want.push(0xD0);
        want.extend_from_slice(&u16::try_from(tlv_len).unwrap().to_be_bytes());
        want.extend_from_slice(b"spiffe://td/ns/a/sa/b");
        assert_eq!(bytes, want);
        let (parsed, used) = ProxyHeader::parse(&bytes).unwrap();
        assert_eq!(used, bytes.len());
        let parsed = parsed.unwrap();
        assert_eq!(parsed, h);
        assert_eq!(parsed.peer_identity(), Some("spiffe://td/ns/a/sa/b"));
    }

    #[test]
    fn mixed_families_use_mapped_ipv6() {
        let h = ProxyHeader::new(
            "10.0.0.1:1".parse().unwrap(),
            "[fd00::2]:2".parse().unwrap(),
        );
        let bytes = h.encode().unwrap();
        assert_eq!(bytes[13], 0x21);
        assert_eq!(&bytes[14..16], &36u16.to_be_bytes());
        let (parsed, _) = ProxyHeader::parse(&bytes).unwrap();
        let parsed = parsed.unwrap();
        assert_eq!(
            parsed.source,
            "[::ffff:10.0.0.1]:1".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(parsed.destination, h.destination);
    }

    #[test]
    fn parse_rejects_and_waits() {
        let h = ProxyHeader::new("1.2.3.4:5".parse().unwrap(), "5.6.7.8:9".parse().unwrap());
        let bytes = h.encode().unwrap();
        assert_eq!(
            ProxyHeader::parse(&bytes[..10]),
            Err(ProxyHeaderError::Incomplete { needed: 16 })
        );
        assert_eq!(
            ProxyHeader::parse(&bytes[..20]),
            Err(ProxyHeaderError::Incomplete { needed: 28 })
        );
        let mut bad = bytes.clone();
        bad[0] = b'G';
        assert_eq!(
            ProxyHeader::parse(&bad),
            Err(ProxyHeaderError::BadSignature)
        );
        let mut bad = bytes.clone();
        bad[12] = 0x11;
        assert_eq!(
            ProxyHeader::parse(&bad),
            Err(ProxyHeaderError::BadVersion(0x11))
        );
        let mut bad = bytes.clone();
        bad[13] = 0x31;
        assert_eq!(
            ProxyHeader::parse(&bad),
            Err(ProxyHeaderError::BadFamily(0x31))
        );
        // A TLV claiming more bytes than the header holds.
        let mut bad = bytes.clone();
        bad.extend_from_slice(&[0xD0, 0x00, 0x09, b'x']);
        let len = u16::try_from(bad.len() - 16).unwrap();
        bad[14..16].copy_from_slice(&len.to_be_bytes());
        assert_eq!(
            ProxyHeader::parse(&bad),
            Err(ProxyHeaderError::BadLength("TLV"))
        );
        // LOCAL carries nothing.
        let mut local = bytes;
        local[12] = 0x20;
        assert_eq!(ProxyHeader::parse(&local).unwrap().0, None);
    }

    #[test]
    fn oversized_tlv_is_an_error_not_a_truncation() {
        let mut h = ProxyHeader::new("1.2.3.4:5".parse().unwrap(), "5.6.7.8:9".parse().unwrap());
        h.tlvs.push((0xE0, vec![0; 70_000]));
        assert_eq!(h.encode(), Err(ProxyHeaderError::TooLong));
    }
}
