//! The CSR service: authenticate, authorize impersonation, sign.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prost_types::value::Kind;
use rustls_pki_types::CertificateDer;

use super::IMPERSONATED_IDENTITY;
use super::auth::{AuthError, Authenticator, Authorizer, CallerInfo, SelfOnly};
use super::proto::{
    IstioCertificateRequest, IstioCertificateResponse, IstioCertificateService,
    IstioCertificateServiceServer,
};
use super::serve::MtlsConnectInfo;
use crate::{CaError, CertificateAuthority, CertificateSigningRequest, CsrError, SpiffeId};

/// The longest certificate lifetime a caller may ask for unless set with
/// [`IstioCaServer::with_max_ttl`]: 90 days, Istio's default maximum.
pub const DEFAULT_MAX_WORKLOAD_TTL: Duration = Duration::from_secs(90 * 24 * 60 * 60);

/// Why a CSR request was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// The caller is not authenticated (`UNAUTHENTICATED`) or may not have
    /// the identity it asked for (`PERMISSION_DENIED`).
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The CSR is not a PEM certificate request, or fails its checks
    /// (`INVALID_ARGUMENT`).
    #[error("bad CSR: {0}")]
    Csr(#[from] CsrError),
    /// The request metadata is malformed (`INVALID_ARGUMENT`).
    #[error("bad request metadata: {0}")]
    Metadata(String),
    /// The CA cannot issue the identity at all, e.g. it belongs to another
    /// trust domain (`PERMISSION_DENIED`).
    #[error("identity cannot be issued by this CA: {0}")]
    NotIssuable(CaError),
    /// The CA failed (`INTERNAL`).
    #[error("CA failure: {0}")]
    Ca(CaError),
}

impl From<CaError> for IssueError {
    fn from(e: CaError) -> Self {
        match e {
            CaError::Csr(csr) => Self::Csr(csr),
            e @ (CaError::WrongTrustDomain { .. } | CaError::RootId(_)) => Self::NotIssuable(e),
            e => Self::Ca(e),
        }
    }
}

impl IssueError {
    /// The gRPC status code this error is reported with.
    pub fn code(&self) -> tonic::Code {
        match self {
            Self::Auth(e) => e.code(),
            Self::Csr(_) | Self::Metadata(_) => tonic::Code::InvalidArgument,
            Self::NotIssuable(_) => tonic::Code::PermissionDenied,
            Self::Ca(_) => tonic::Code::Internal,
        }
    }
}

impl From<IssueError> for tonic::Status {
    fn from(e: IssueError) -> Self {
        let message = match &e {
            // The details stay in the server log, not with the caller.
            IssueError::Ca(_) => "certificate signing failed".to_owned(),
            other => other.to_string(),
        };
        tonic::Status::new(e.code(), message)
    }
}

/// The identity a request's metadata asks to impersonate, if any. An empty
/// string counts as none.
///
/// # Errors
/// [`IssueError::Metadata`] when the entry is not a string or not a SPIFFE ID.
fn impersonated(request: &IstioCertificateRequest) -> Result<Option<SpiffeId>, IssueError> {
    let Some(value) = request
        .metadata
        .as_ref()
        .and_then(|m| m.fields.get(IMPERSONATED_IDENTITY))
    else {
        return Ok(None);
    };
    match &value.kind {
        Some(Kind::StringValue(s)) if s.is_empty() => Ok(None),
        Some(Kind::StringValue(s)) => s.parse().map(Some).map_err(|e| {
            IssueError::Metadata(format!("{IMPERSONATED_IDENTITY} is not a SPIFFE ID: {e}"))
        }),
        _ => Err(IssueError::Metadata(format!(
            "{IMPERSONATED_IDENTITY} must be a string"
        ))),
    }
}

type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The Istio CSR service: signs each request's CSR with a
/// [`CertificateAuthority`] for the identity its [`Authenticator`] names,
/// or for the identity the request impersonates if its [`Authorizer`]
/// allows it. Nothing the CSR asks for besides its public key is used.
///
/// Lifetimes: a request's `validity_duration` of zero or less gets the
/// default TTL ([`DEFAULT_WORKLOAD_TTL`](crate::DEFAULT_WORKLOAD_TTL)
/// unless set), more than the maximum ([`DEFAULT_MAX_WORKLOAD_TTL`] unless
/// set) is cut to the maximum; the CA also never issues past its own expiry.
pub struct IstioCaServer<A, Z = SelfOnly> {
    ca: Arc<CertificateAuthority>,
    authenticator: A,
    authorizer: Z,
    default_ttl: Duration,
    max_ttl: Duration,
    clock: Clock,
}

impl<A, Z> fmt::Debug for IstioCaServer<A, Z> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IstioCaServer")
            .field("trust_domain", self.ca.trust_domain())
            .field("default_ttl", &self.default_ttl)
            .field("max_ttl", &self.max_ttl)
            .finish_non_exhaustive()
    }
}

impl<A: Authenticator, Z: Authorizer> IstioCaServer<A, Z> {
    /// A service signing with `ca`, identifying callers with
    /// `authenticator` and deciding impersonation with `authorizer`
    /// ([`SelfOnly`] to refuse it). Time is read from the system clock
    /// unless [`with_clock`](Self::with_clock) says otherwise.
    pub fn new(ca: Arc<CertificateAuthority>, authenticator: A, authorizer: Z) -> Self {
        Self {
            ca,
            authenticator,
            authorizer,
            default_ttl: crate::DEFAULT_WORKLOAD_TTL,
            max_ttl: DEFAULT_MAX_WORKLOAD_TTL,
            clock: Arc::new(SystemTime::now),
        }
    }

    /// Sets the lifetime given when a request asks for none.
    #[must_use]
    pub fn with_default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// Sets the longest lifetime a request may get.
    #[must_use]
    pub fn with_max_ttl(mut self, ttl: Duration) -> Self {
        self.max_ttl = ttl;
        self
    }

    /// Reads "now" from `clock` instead of the system clock.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The lifetime granted for a request's `validity_duration` (seconds):
    /// the default for zero or less, never more than the maximum.
    pub fn ttl_for(&self, validity_duration: i64) -> Duration {
        let asked = match u64::try_from(validity_duration) {
            Ok(secs) if secs > 0 => Duration::from_secs(secs),
            _ => self.default_ttl,
        };
        asked.min(self.max_ttl)
    }

    /// Handles one request without gRPC around it: authenticates the
    /// caller, decides the identity, signs. Returns the chain, leaf first.
    ///
    /// # Errors
    /// An [`IssueError`] whose [`code`](IssueError::code) is the gRPC status
    /// the service answers with.
    pub async fn issue(
        &self,
        caller: CallerInfo<'_>,
        request: &IstioCertificateRequest,
    ) -> Result<Vec<CertificateDer<'static>>, IssueError> {
        let authenticated = self.authenticator.authenticate(caller).await?;
        let identity = match impersonated(request)? {
            Some(requested) if requested != authenticated => {
                self.authorizer.authorize(&authenticated, &requested)?;
                requested
            }
            _ => authenticated.clone(),
        };
        let csr = CertificateSigningRequest::from_pem(&request.csr)?;
        let ttl = self.ttl_for(request.validity_duration);
        let chain = self.ca.issue(&csr, &identity, (self.clock)(), ttl)?;
        tracing::info!(
            caller = %authenticated,
            identity = %identity,
            ttl_secs = ttl.as_secs(),
            "issued workload certificate"
        );
        Ok(chain)
    }

    /// Wraps the service for tonic (`Server::add_service`, or
    /// `tonic::service::Routes::new` for [`serve_mtls`](super::serve_mtls)).
    pub fn into_service(self) -> IstioCertificateServiceServer<Self> {
        IstioCertificateServiceServer::new(self)
    }
}

#[tonic::async_trait]
impl<A: Authenticator, Z: Authorizer> IstioCertificateService for IstioCaServer<A, Z> {
    async fn create_certificate(
        &self,
        request: tonic::Request<IstioCertificateRequest>,
    ) -> Result<tonic::Response<IstioCertificateResponse>, tonic::Status> {
        let peer = request
            .extensions()
            .get::<MtlsConnectInfo>()
            .and_then(|info| info.peer.as_ref());
        let caller = CallerInfo::new(peer, request.metadata());
        match self.issue(caller, request.get_ref()).await {
            Ok(chain) => Ok(tonic::Response::new(IstioCertificateResponse {
                cert_chain: chain
                    .iter()
                    .map(|c| crate::pem_certs(std::slice::from_ref(c)))
                    .collect(),
            })),
            Err(e) => {
                tracing::warn!(peer = ?peer, error = %e, "refused certificate request");
                Err(e.into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_types::{Struct, Value};

    fn with_metadata(kind: Kind) -> IstioCertificateRequest {
        IstioCertificateRequest {
            metadata: Some(Struct {
                fields: [(IMPERSONATED_IDENTITY.to_owned(), Value { kind: Some(kind) })]
                    .into_iter()
                    .collect(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn impersonation_metadata() {
        assert!(
            impersonated(&IstioCertificateRequest::default())
                .unwrap()
                .is_none()
        );
        assert!(
            impersonated(&with_metadata(Kind::StringValue(String::new())))
                .unwrap()
                .is_none()
        );
        let id = "spiffe://td/ns/a/sa/w";
        assert_eq!(
            impersonated(&with_metadata(Kind::StringValue(id.into()))).unwrap(),
            Some(id.parse().unwrap())
        );
        for bad in [Kind::StringValue("td/ns/a".into()), Kind::NumberValue(1.0)] {
            let err = impersonated(&with_metadata(bad)).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument);
        }
    }

    #[test]
    fn ttl_policy() {
        let now = SystemTime::now();
        let ca = CertificateAuthority::generate_root(
            "td".parse().unwrap(),
            now,
            Duration::from_secs(3600),
        )
        .unwrap();
        let server = IstioCaServer::new(Arc::new(ca), super::super::MtlsPeer, SelfOnly)
            .with_default_ttl(Duration::from_secs(600))
            .with_max_ttl(Duration::from_secs(900));
        assert_eq!(server.ttl_for(0), Duration::from_secs(600));
        assert_eq!(server.ttl_for(-5), Duration::from_secs(600));
        assert_eq!(server.ttl_for(60), Duration::from_secs(60));
        assert_eq!(server.ttl_for(i64::MAX), Duration::from_secs(900));
    }

    #[test]
    fn status_codes() {
        let td: crate::TrustDomain = "td".parse().unwrap();
        let other: SpiffeId = "spiffe://other/ns/a/sa/b".parse().unwrap();
        let wrong = IssueError::from(CaError::WrongTrustDomain {
            ca: td,
            requested: other,
        });
        assert_eq!(wrong.code(), tonic::Code::PermissionDenied);
        let csr = IssueError::from(CaError::Csr(CsrError::BadSignature));
        assert_eq!(csr.code(), tonic::Code::InvalidArgument);
        let status = tonic::Status::from(IssueError::from(CaError::Sign("secret".into())));
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(!status.message().contains("secret"));
    }
}
