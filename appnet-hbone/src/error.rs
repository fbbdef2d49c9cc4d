//! The crate's error types.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use http::StatusCode;

/// Why a peer (or this crate's server) refused a CONNECT, by the HTTP status
/// HBONE uses for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refusal {
    /// `400`: not a usable CONNECT (bad or missing authority).
    BadRequest,
    /// `401`: denied by policy.
    Denied,
    /// `405`: the request was not a CONNECT.
    MethodNotAllowed,
    /// `503`: the server could not reach the upstream.
    UpstreamUnavailable,
    /// Any other non-`200` status.
    Other(StatusCode),
}

impl Refusal {
    /// The HTTP status sent for this refusal.
    pub fn status(self) -> StatusCode {
        match self {
            Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::Denied => StatusCode::UNAUTHORIZED,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::UpstreamUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Other(status) => status,
        }
    }

    /// The refusal a (non-`200`) status stands for.
    pub fn from_status(status: StatusCode) -> Self {
        match status {
            StatusCode::BAD_REQUEST => Self::BadRequest,
            StatusCode::UNAUTHORIZED => Self::Denied,
            StatusCode::METHOD_NOT_ALLOWED => Self::MethodNotAllowed,
            StatusCode::SERVICE_UNAVAILABLE => Self::UpstreamUnavailable,
            other => Self::Other(other),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.status())
    }
}

/// A header or authority that is not valid HBONE wire data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The CONNECT authority is not `ip:port` or `hostname:port`.
    #[error("bad authority {value:?}: {reason}")]
    Authority {
        /// The text that was rejected.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A `baggage` member is malformed.
    #[error("bad baggage member {member:?}: {reason}")]
    Baggage {
        /// The member that was rejected.
        member: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A `traceparent` value is not the W3C `version-traceid-parentid-flags` form.
    #[error("bad traceparent {0:?}")]
    TraceParent(String),
    /// A `Forwarded` header carries no usable `for=` address.
    #[error("bad Forwarded header {0:?}")]
    Forwarded(String),
    /// A header value (named) cannot be sent as an HTTP header.
    #[error("header {header} has a value that cannot be sent")]
    HeaderValue {
        /// The header's name.
        header: &'static str,
    },
}

/// A configuration value out of the range HTTP/2 allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct ConfigError {
    /// The field (dotted path) that is out of range.
    pub field: &'static str,
    /// The allowed range.
    pub reason: &'static str,
}

/// Why an HBONE tunnel or server could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HboneError {
    /// The TCP connection to the peer's HBONE port failed.
    #[error("connecting to {addr}: {source}")]
    Connect {
        /// The peer address dialled.
        addr: SocketAddr,
        /// The socket error.
        source: io::Error,
    },
    /// TCP, TLS and HTTP/2 setup together took longer than the configured
    /// connect timeout.
    #[error("connection setup timed out")]
    ConnectTimeout,
    /// The TLS handshake failed: untrusted chain, a peer identity that is not
    /// allowed, no client certificate, or not TLS at all.
    #[error("TLS handshake: {0}")]
    Tls(io::Error),
    /// A TLS configuration could not be built from the credentials.
    #[error("TLS configuration: {0}")]
    TlsConfig(#[from] appnet_identity::tls::TlsError),
    /// The peer did not negotiate ALPN `h2`.
    #[error("peer did not negotiate ALPN h2")]
    NotH2,
    /// The peer completed TLS without a SPIFFE identity.
    #[error("peer presented no SPIFFE identity")]
    NoPeerIdentity,
    /// The HTTP/2 connection or stream failed.
    #[error("HTTP/2: {0}")]
    Http2(#[from] h2::Error),
    /// The peer answered the CONNECT with a status other than `200`.
    #[error("CONNECT refused with {0}")]
    Refused(Refusal),
    /// The request could not be encoded.
    #[error("request: {0}")]
    Wire(#[from] WireError),
    /// A configuration value is out of range.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The shared pooled connection this request waited for failed to set up.
    #[error("pooled connection setup failed: {0}")]
    Pooled(Arc<HboneError>),
}

impl HboneError {
    /// The refusal, if the peer answered the CONNECT with a non-`200` status.
    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            Self::Refused(r) => Some(*r),
            Self::Pooled(inner) => inner.refusal(),
            _ => None,
        }
    }

    /// Whether the peer denied the CONNECT by policy (`401`).
    pub fn is_denied(&self) -> bool {
        self.refusal() == Some(Refusal::Denied)
    }

    /// Whether the peer could not reach the upstream (`503`).
    pub fn is_upstream_unavailable(&self) -> bool {
        self.refusal() == Some(Refusal::UpstreamUnavailable)
    }

    /// Whether the failure happened in the TLS handshake.
    pub fn is_tls(&self) -> bool {
        match self {
            Self::Tls(_) => true,
            Self::Pooled(inner) => inner.is_tls(),
            _ => false,
        }
    }

    /// Whether the peer turned the stream away because its connection is
    /// going away (GOAWAY) or refused it unprocessed (`REFUSED_STREAM`), so
    /// retrying on another connection is safe.
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            Self::Http2(e) => e.is_go_away() || e.reason() == Some(h2::Reason::REFUSED_STREAM),
            _ => false,
        }
    }
}

/// Maps an HTTP/2 stream error to the I/O error a tunnel reports.
pub(crate) fn h2_to_io(e: h2::Error) -> io::Error {
    if e.is_io() {
        return e
            .into_io()
            .unwrap_or_else(|| io::Error::other("HTTP/2 I/O error"));
    }
    let kind = if e.is_reset() {
        io::ErrorKind::ConnectionReset
    } else if e.is_go_away() {
        io::ErrorKind::ConnectionAborted
    } else {
        io::ErrorKind::Other
    };
    io::Error::new(kind, e)
}
