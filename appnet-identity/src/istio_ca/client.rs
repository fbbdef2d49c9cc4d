//! The CSR client, and a tonic channel that speaks SPIFFE mutual TLS.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use prost_types::{Struct, Value, value::Kind};
use rustls::ClientConfig;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tonic::codegen::http::Uri;
use tonic::codegen::{Body, Bytes, Service, StdError};
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use super::IMPERSONATED_IDENTITY;
use super::proto::{IstioCertificateRequest, IstioCertificateServiceClient};
use crate::{CertificateSigningRequest, SpiffeId};

/// Why a certificate could not be obtained from a CA.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IstioCaError {
    /// The channel could not be established (TCP, TLS or HTTP/2).
    #[error("could not connect to the CA: {0}")]
    Connect(#[source] tonic::transport::Error),
    /// The CA answered with a gRPC error status; see
    /// [`code`](IstioCaError::code).
    #[error("the CA refused: {0}")]
    Status(#[source] Box<tonic::Status>),
    /// The CA answered with an empty chain.
    #[error("the CA returned no certificate")]
    EmptyChain,
    /// An entry of the returned chain is not a PEM certificate.
    #[error("certificate {index} of the returned chain is not PEM: {reason}")]
    BadChain {
        /// The position of the entry in `cert_chain`.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The bearer token cannot travel as a gRPC metadata value.
    #[error("the bearer token is not visible ASCII")]
    InvalidToken,
}

impl IstioCaError {
    /// The gRPC status code, when the CA answered with an error status.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            Self::Status(s) => Some(s.code()),
            _ => None,
        }
    }
}

impl From<tonic::Status> for IstioCaError {
    fn from(status: tonic::Status) -> Self {
        Self::Status(Box::new(status))
    }
}

/// A client of `istio.v1.auth.IstioCertificateService`, over a tonic
/// [`Channel`] (see [`connect_mtls`]) or any other gRPC transport.
#[derive(Clone)]
pub struct IstioCaClient<T = Channel> {
    inner: IstioCertificateServiceClient<T>,
    authorization: Option<AsciiMetadataValue>,
}

impl<T> fmt::Debug for IstioCaClient<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IstioCaClient")
            .field("bearer_token", &self.authorization.is_some())
            .finish_non_exhaustive()
    }
}

impl<T> IstioCaClient<T>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<StdError>,
    T::ResponseBody: Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as Body>::Error: Into<StdError> + Send,
{
    /// A client sending its requests over `transport`, typically a
    /// [`Channel`].
    pub fn new(transport: T) -> Self {
        Self {
            inner: IstioCertificateServiceClient::new(transport),
            authorization: None,
        }
    }

    /// Sends `authorization: Bearer <token>` with every request (e.g. a
    /// Kubernetes service-account token, as Istio's proxies do).
    ///
    /// # Errors
    /// [`IstioCaError::InvalidToken`] if the token is not visible ASCII.
    pub fn with_bearer_token(mut self, token: &str) -> Result<Self, IstioCaError> {
        let mut value: AsciiMetadataValue = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| IstioCaError::InvalidToken)?;
        value.set_sensitive(true);
        self.authorization = Some(value);
        Ok(self)
    }

    /// Asks the CA to sign `csr` for `ttl` (zero lets the CA choose; the CA
    /// may grant less), for the caller's own identity or, with
    /// `impersonate`, for a workload the caller acts for (a node proxy).
    /// Returns the chain, leaf first.
    ///
    /// # Errors
    /// [`IstioCaError::Status`] when the CA refuses (e.g.
    /// `UNAUTHENTICATED`, `PERMISSION_DENIED`, `INVALID_ARGUMENT`),
    /// [`IstioCaError::EmptyChain`] or [`IstioCaError::BadChain`] when its
    /// answer is unusable.
    pub async fn create_certificate(
        &mut self,
        csr: &CertificateSigningRequest,
        ttl: Duration,
        impersonate: Option<&SpiffeId>,
    ) -> Result<Vec<CertificateDer<'static>>, IstioCaError> {
        let metadata = impersonate.map(|id| Struct {
            fields: [(
                IMPERSONATED_IDENTITY.to_owned(),
                Value {
                    kind: Some(Kind::StringValue(id.to_string())),
                },
            )]
            .into_iter()
            .collect(),
        });
        let message = IstioCertificateRequest {
            csr: csr.to_pem(),
            validity_duration: i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX),
            metadata,
        };
        let mut request = tonic::Request::new(message);
        if let Some(value) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        let response = self.inner.create_certificate(request).await?.into_inner();
        parse_chain(&response.cert_chain)
    }
}

/// Reads the PEM chain of a response; an entry may hold several blocks.
fn parse_chain(entries: &[String]) -> Result<Vec<CertificateDer<'static>>, IstioCaError> {
    let mut chain = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let certs = crate::certs_from_pem(entry).map_err(|e| IstioCaError::BadChain {
            index,
            reason: e.to_string(),
        })?;
        if certs.is_empty() {
            return Err(IstioCaError::BadChain {
                index,
                reason: "no CERTIFICATE block".into(),
            });
        }
        chain.extend(certs);
    }
    if chain.is_empty() {
        return Err(IstioCaError::EmptyChain);
    }
    Ok(chain)
}

const H2: &[u8] = b"h2";

/// A tower connector for tonic: dials TCP to the URI's host and port, then
/// runs a rustls handshake with the given client config, ALPN `h2`.
///
/// With a config from [`tls::client_config`](crate::tls::client_config)
/// the server's SPIFFE ID is what is checked; the host name only picks the
/// address to dial. The URI's scheme is not looked at, so give the
/// [`Endpoint`] an `http://` URI: an `https://` one would make tonic try a
/// TLS layer of its own when its TLS features are on.
#[derive(Clone)]
pub struct MtlsConnector {
    tls: tokio_rustls::TlsConnector,
}

impl fmt::Debug for MtlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MtlsConnector").finish_non_exhaustive()
    }
}

impl MtlsConnector {
    /// A connector using `config`, whose ALPN list is replaced by `h2` if
    /// it says anything else (gRPC needs HTTP/2).
    pub fn new(config: Arc<ClientConfig>) -> Self {
        let config = if config.alpn_protocols == [H2] {
            config
        } else {
            let mut config = (*config).clone();
            config.alpn_protocols = vec![H2.to_vec()];
            Arc::new(config)
        };
        Self {
            tls: tokio_rustls::TlsConnector::from(config),
        }
    }
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.to_owned())
}

impl Service<Uri> for MtlsConnector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tls = self.tls.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| invalid("CA URI has no host"))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri
                .port_u16()
                .ok_or_else(|| invalid("CA URI has no port"))?;
            let name = ServerName::try_from(host.clone())
                .map_err(|_| invalid("CA URI host is not a DNS name or IP address"))?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let stream = tls.connect(name, tcp).await?;
            Ok(TokioIo::new(stream))
        })
    }
}

/// Connects a tonic [`Channel`] to `endpoint` over SPIFFE mutual TLS with
/// `config` (see [`MtlsConnector`]; give it an `http://host:port` URI).
/// Endpoint settings such as timeouts apply.
///
/// # Errors
/// [`IstioCaError::Connect`] if the first connection fails (TCP, the TLS
/// handshake, including a server whose SPIFFE ID `config` does not allow,
/// or HTTP/2).
pub async fn connect_mtls(
    endpoint: Endpoint,
    config: Arc<ClientConfig>,
) -> Result<Channel, IstioCaError> {
    endpoint
        .connect_with_connector(MtlsConnector::new(config))
        .await
        .map_err(IstioCaError::Connect)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_parsing() {
        assert!(matches!(parse_chain(&[]), Err(IstioCaError::EmptyChain)));
        assert!(matches!(
            parse_chain(&["not pem".into()]),
            Err(IstioCaError::BadChain { index: 0, .. })
        ));
        let pem = crate::pem_certs(&[CertificateDer::from(vec![1, 2, 3])]);
        let two = parse_chain(&[pem.clone(), pem.repeat(2)]).unwrap();
        assert_eq!(two.len(), 3);
    }
}
