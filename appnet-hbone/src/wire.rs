//! HBONE wire vocabulary: header names, the CONNECT authority, W3C baggage
//! and traceparent, `Forwarded`, and the CONNECT request builder.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Uri};

use crate::error::{Refusal, WireError};

/// The port HBONE listens on.
pub const HBONE_PORT: u16 = 15008;
/// The ALPN protocol HBONE negotiates.
pub const ALPN_H2: &[u8] = b"h2";

/// W3C `baggage`: the sender's workload metadata.
pub const BAGGAGE: HeaderName = HeaderName::from_static("baggage");
/// `Forwarded` (RFC 7239): the original source address, `for="ip:port"`.
pub const FORWARDED: HeaderName = HeaderName::from_static("forwarded");
/// W3C `traceparent`.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// The origin network of a double-HBONE inner CONNECT.
pub const X_FORWARDED_NETWORK: HeaderName = HeaderName::from_static("x-forwarded-network");

/// The target of a CONNECT: the original destination `ip:port`, or a
/// `hostname:port` when going through a waypoint or gateway.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Authority {
    /// An address (the common, node-proxy case).
    Addr(SocketAddr),
    /// A service hostname and port.
    Host {
        /// The DNS name.
        host: String,
        /// The port, never 0.
        port: u16,
    },
}

impl Authority {
    /// The port.
    pub fn port(&self) -> u16 {
        match self {
            Self::Addr(a) => a.port(),
            Self::Host { port, .. } => *port,
        }
    }

    /// The address, when the authority is one.
    pub fn addr(&self) -> Option<SocketAddr> {
        match self {
            Self::Addr(a) => Some(*a),
            Self::Host { .. } => None,
        }
    }
}

impl From<SocketAddr> for Authority {
    fn from(addr: SocketAddr) -> Self {
        Self::Addr(addr)
    }
}

impl fmt::Display for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Addr(a) => write!(f, "{a}"),
            Self::Host { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

fn valid_hostname(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

impl FromStr for Authority {
    type Err = WireError;

    /// Parses `ip:port`, `[v6]:port` or `hostname:port`; the port must be
    /// present and non-zero.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason| WireError::Authority {
            value: s.to_owned(),
            reason,
        };
        if let Ok(addr) = s.parse::<SocketAddr>() {
            if addr.port() == 0 {
                return Err(bad("port 0"));
            }
            return Ok(Self::Addr(addr));
        }
        let (host, port) = s.rsplit_once(':').ok_or_else(|| bad("missing port"))?;
        let port: u16 = port.parse().map_err(|_| bad("port is not a number"))?;
        if port == 0 {
            return Err(bad("port 0"));
        }
        if host.starts_with('[') || host.contains(':') {
            return Err(bad("malformed IPv6 address"));
        }
        if host.parse::<IpAddr>().is_ok() {
            // Unreachable in practice (the SocketAddr parse took it), kept
            // so a v4-looking hostname never slips through as a name.
            return Err(bad("malformed address"));
        }
        if !valid_hostname(host) {
            return Err(bad("not a valid hostname"));
        }
        Ok(Self::Host {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

/// Workload metadata carried in the W3C `baggage` header, with the keys
/// Istio uses. Unknown keys are ignored when parsing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Baggage {
    /// `k8s.cluster.name`.
    pub cluster: Option<String>,
    /// `k8s.namespace.name`.
    pub namespace: Option<String>,
    /// The workload kind of `k8s.<kind>.name` (`deployment`, `pod`, ...).
    pub workload_kind: Option<String>,
    /// The value of `k8s.<kind>.name`.
    pub workload_name: Option<String>,
    /// `service.name` (canonical service).
    pub service_name: Option<String>,
    /// `service.version` (canonical revision).
    pub service_version: Option<String>,
    /// `cloud.region`.
    pub region: Option<String>,
    /// `cloud.availability_zone`.
    pub zone: Option<String>,
}

/// Whether a byte may appear unescaped in a baggage value (W3C
/// `baggage-octet`, minus `%` which starts an escape).
fn baggage_octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x24 | 0x26..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E)
}

fn percent_encode(value: &str, out: &mut String) {
    for b in value.bytes() {
        if baggage_octet(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = value.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl Baggage {
    /// Whether no field is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Encodes the set fields in Istio's order.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let mut push = |key: &str, value: &Option<String>| {
            if let Some(v) = value {
                if !out.is_empty() {
                    out.push(',');
                }
                out.push_str(key);
                out.push('=');
                percent_encode(v, &mut out);
            }
        };
        push("k8s.cluster.name", &self.cluster);
        push("k8s.namespace.name", &self.namespace);
        if let (Some(kind), Some(_)) = (&self.workload_kind, &self.workload_name) {
            push(&format!("k8s.{kind}.name"), &self.workload_name);
        }
        push("service.name", &self.service_name);
        push("service.version", &self.service_version);
        push("cloud.region", &self.region);
        push("cloud.availability_zone", &self.zone);
        out
    }
}

impl FromStr for Baggage {
    type Err = WireError;

    /// Parses a `baggage` header value: comma-separated `key=value`
    /// members, optional `;property` suffixes ignored, values
    /// percent-decoded, unknown keys ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = Self::default();
        for member in s.split(',') {
            let member = member.trim();
            if member.is_empty() {
                continue;
            }
            let bad = |reason| WireError::Baggage {
                member: member.to_owned(),
                reason,
            };
            let kv = member.split(';').next().unwrap_or_default();
            let (key, value) = kv.split_once('=').ok_or_else(|| bad("missing '='"))?;
            let key = key.trim();
            if key.is_empty() {
                return Err(bad("empty key"));
            }
            let value = percent_decode(value.trim()).ok_or_else(|| bad("bad percent-escape"))?;
            let slot = match key {
                "k8s.cluster.name" => &mut out.cluster,
                "k8s.namespace.name" => &mut out.namespace,
                "service.name" => &mut out.service_name,
                "service.version" => &mut out.service_version,
                "cloud.region" => &mut out.region,
                "cloud.availability_zone" => &mut out.zone,
                other => match other
                    .strip_prefix("k8s.")
                    .and_then(|rest| rest.strip_suffix(".name"))
                {
                    Some(kind) if !kind.is_empty() && !kind.contains('.') => {
                        out.workload_kind = Some(kind.to_owned());
                        &mut out.workload_name
                    }
                    _ => continue,
                },
            };
            *slot = Some(value);
        }
        Ok(out)
    }
}

/// A W3C `traceparent`: `version-traceid-parentid-flags`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    /// The version byte (`00` today).
    pub version: u8,
    /// The 16-byte trace ID (not all zero).
    pub trace_id: [u8; 16],
    /// The 8-byte parent span ID (not all zero).
    pub parent_id: [u8; 8],
    /// The trace flags (bit 0: sampled).
    pub flags: u8,
}

fn hex_bytes<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl FromStr for TraceParent {
    type Err = WireError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || WireError::TraceParent(s.to_owned());
        let mut parts = s.trim().split('-');
        let version = hex_bytes::<1>(parts.next().ok_or_else(bad)?).ok_or_else(bad)?[0];
        let trace_id = hex_bytes::<16>(parts.next().ok_or_else(bad)?).ok_or_else(bad)?;
        let parent_id = hex_bytes::<8>(parts.next().ok_or_else(bad)?).ok_or_else(bad)?;
        let flags = hex_bytes::<1>(parts.next().ok_or_else(bad)?).ok_or_else(bad)?[0];
        // Version 00 has exactly four fields; later versions may append more.
        if version == 0xff
            || (version == 0 && parts.next().is_some())
            || trace_id == [0; 16]
            || parent_id == [0; 8]
        {
            return Err(bad());
        }
        Ok(Self {
            version,
            trace_id,
            parent_id,
            flags,
        })
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}-", self.version)?;
        for b in self.trace_id {
            write!(f, "{b:02x}")?;
        }
        f.write_str("-")?;
        for b in self.parent_id {
            write!(f, "{b:02x}")?;
        }
        write!(f, "-{:02x}", self.flags)
    }
}

/// The `Forwarded` value naming the original source: `for="ip:port"`
/// (IPv6 in brackets, as RFC 7239 requires).
pub fn forwarded_for(source: SocketAddr) -> String {
    format!("for=\"{source}\"")
}

/// The `for=` address of the first element of a `Forwarded` value.
///
/// # Errors
/// [`WireError::Forwarded`] if there is no `for=` parameter holding an
/// `ip:port` or a bare IP (which yields port 0).
pub fn parse_forwarded_for(value: &str) -> Result<SocketAddr, WireError> {
    let bad = || WireError::Forwarded(value.to_owned());
    let first = value.split(',').next().ok_or_else(bad)?;
    for pair in first.split(';') {
        let Some((k, v)) = pair.trim().split_once('=') else {
            continue;
        };
        if !k.trim().eq_ignore_ascii_case("for") {
            continue;
        }
        let v = v.trim().trim_matches('"');
        if let Ok(addr) = v.parse::<SocketAddr>() {
            return Ok(addr);
        }
        let ip = v.trim_start_matches('[').trim_end_matches(']');
        return ip
            .parse::<IpAddr>()
            .map(|ip| SocketAddr::new(ip, 0))
            .map_err(|_| bad());
    }
    Err(bad())
}

/// An HBONE CONNECT request, built with the headers Istio sends.
///
/// ```
/// use appnet_hbone::{Baggage, ConnectRequest};
/// let mut baggage = Baggage::default();
/// baggage.namespace = Some("default".into());
/// let req = ConnectRequest::new("10.0.0.7:8080".parse()?)
///     .forwarded_for("10.0.0.3:41000".parse()?)
///     .baggage(baggage);
/// let http = req.to_http()?;
/// assert_eq!(http.method(), "CONNECT");
/// assert_eq!(http.uri(), "10.0.0.7:8080");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct ConnectRequest {
    authority: Authority,
    baggage: Option<Baggage>,
    forwarded_for: Option<SocketAddr>,
    traceparent: Option<TraceParent>,
    forwarded_network: Option<String>,
    extra: HeaderMap,
}

impl ConnectRequest {
    /// A CONNECT to `authority` with no optional headers.
    pub fn new(authority: Authority) -> Self {
        Self {
            authority,
            baggage: None,
            forwarded_for: None,
            traceparent: None,
            forwarded_network: None,
            extra: HeaderMap::new(),
        }
    }

    /// The target.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The source workload's `baggage`, if set.
    pub fn source_baggage(&self) -> Option<&Baggage> {
        self.baggage.as_ref()
    }

    /// Sets the source workload's `baggage`.
    pub fn baggage(mut self, baggage: Baggage) -> Self {
        self.baggage = Some(baggage);
        self
    }

    /// Sets `Forwarded: for="<source>"`.
    pub fn forwarded_for(mut self, source: SocketAddr) -> Self {
        self.forwarded_for = Some(source);
        self
    }

    /// Sets `traceparent`.
    pub fn traceparent(mut self, traceparent: TraceParent) -> Self {
        self.traceparent = Some(traceparent);
        self
    }

    /// Sets `x-forwarded-network` (the inner CONNECT of double HBONE).
    pub fn forwarded_network(mut self, network: impl Into<String>) -> Self {
        self.forwarded_network = Some(network.into());
        self
    }

    /// Adds another header, sent as is.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.extra.append(name, value);
        self
    }

    /// The `http::Request` h2 sends: method `CONNECT`, authority-form URI
    /// (so no `:scheme` or `:path`), and the headers set.
    ///
    /// # Errors
    /// [`WireError::HeaderValue`] if a value cannot be an HTTP header, and
    /// [`WireError::Authority`] if the authority is not a valid URI
    /// authority.
    pub fn to_http(&self) -> Result<Request<()>, WireError> {
        let authority = self.authority.to_string();
        let uri: Uri = authority.parse().map_err(|_| WireError::Authority {
            value: authority.clone(),
            reason: "not a URI authority",
        })?;
        let mut req = Request::new(());
        *req.method_mut() = Method::CONNECT;
        *req.uri_mut() = uri;
        let headers = req.headers_mut();
        let value = |header: &'static str, v: String| {
            HeaderValue::try_from(v).map_err(|_| WireError::HeaderValue { header })
        };
        if let Some(b) = self.baggage.as_ref().filter(|b| !b.is_empty()) {
            headers.insert(BAGGAGE, value("baggage", b.encode())?);
        }
        if let Some(src) = self.forwarded_for {
            headers.insert(FORWARDED, value("forwarded", forwarded_for(src))?);
        }
        if let Some(tp) = self.traceparent {
            headers.insert(TRACEPARENT, value("traceparent", tp.to_string())?);
        }
        if let Some(net) = &self.forwarded_network {
            headers.insert(
                X_FORWARDED_NETWORK,
                value("x-forwarded-network", net.clone())?,
            );
        }
        for (name, v) in &self.extra {
            headers.append(name, v.clone());
        }
        Ok(req)
    }
}

/// What the server reads from an accepted request's head.
#[derive(Debug)]
pub(crate) struct InboundHead {
    pub(crate) authority: Authority,
    pub(crate) headers: HeaderMap,
}

/// Checks an inbound request head: CONNECT only (else `405`), with an
/// `ip:port` or `hostname:port` authority (else `400`).
pub(crate) fn parse_inbound(parts: http::request::Parts) -> Result<InboundHead, Refusal> {
    if parts.method != Method::CONNECT {
        return Err(Refusal::MethodNotAllowed);
    }
    let authority = parts
        .uri
        .authority()
        .ok_or(Refusal::BadRequest)?
        .as_str()
        .parse::<Authority>()
        .map_err(|_| Refusal::BadRequest)?;
    Ok(InboundHead {
        authority,
        headers: parts.headers,
    })
}

#[cfg(test)]
mod tests;
