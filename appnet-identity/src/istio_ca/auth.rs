//! Who is calling ([`Authenticator`]) and which identities it may have a
//! certificate for ([`Authorizer`]).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};

use tonic::metadata::MetadataMap;

use crate::SpiffeId;

/// Why a caller was not identified, or may not have the identity it asked
/// for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The call carried no credential the authenticator understands
    /// (gRPC `UNAUTHENTICATED`).
    #[error("no credentials: {0}")]
    MissingCredentials(String),
    /// A credential was present but is not valid (gRPC `UNAUTHENTICATED`).
    #[error("invalid credentials: {0}")]
    InvalidCredentials(String),
    /// The caller may not obtain a certificate for the identity it asked
    /// for (gRPC `PERMISSION_DENIED`).
    #[error("{caller} may not obtain a certificate for {requested}")]
    NotAllowed {
        /// The authenticated caller.
        caller: SpiffeId,
        /// The identity it asked for.
        requested: SpiffeId,
    },
}

impl AuthError {
    /// The gRPC status code this error is reported with.
    pub fn code(&self) -> tonic::Code {
        match self {
            Self::MissingCredentials(_) | Self::InvalidCredentials(_) => {
                tonic::Code::Unauthenticated
            }
            Self::NotAllowed { .. } => tonic::Code::PermissionDenied,
        }
    }
}

/// What an [`Authenticator`] may look at: the verified mTLS peer, if the
/// call came over [`serve_mtls`](super::serve_mtls), and the call's gRPC
/// metadata (HTTP/2 headers such as `authorization`).
#[derive(Debug, Clone, Copy)]
pub struct CallerInfo<'a> {
    peer: Option<&'a SpiffeId>,
    metadata: &'a MetadataMap,
}

impl<'a> CallerInfo<'a> {
    /// Describes a call; the server builds this for each request, tests of
    /// an authenticator may build their own.
    pub fn new(peer: Option<&'a SpiffeId>, metadata: &'a MetadataMap) -> Self {
        Self { peer, metadata }
    }

    /// The SPIFFE ID of the mTLS peer, verified during the handshake.
    pub fn peer(&self) -> Option<&'a SpiffeId> {
        self.peer
    }

    /// The call's gRPC metadata.
    pub fn metadata(&self) -> &'a MetadataMap {
        self.metadata
    }

    /// The bearer token of the `authorization` metadata; see
    /// [`bearer_token`].
    ///
    /// # Errors
    /// As [`bearer_token`].
    pub fn bearer_token(&self) -> Result<Option<&'a str>, AuthError> {
        bearer_token(self.metadata)
    }
}

/// Reads `authorization: Bearer <token>` from gRPC metadata. `Ok(None)`
/// when there is no `authorization` entry.
///
/// # Errors
/// [`AuthError::InvalidCredentials`] when the entry is not visible ASCII,
/// not of the `Bearer` scheme, or has an empty token.
pub fn bearer_token(metadata: &MetadataMap) -> Result<Option<&str>, AuthError> {
    let Some(value) = metadata.get("authorization") else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| AuthError::InvalidCredentials("authorization is not visible ASCII".into()))?;
    let (scheme, token) = value.split_once(' ').ok_or_else(|| {
        AuthError::InvalidCredentials("authorization is not \"Bearer <token>\"".into())
    })?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::InvalidCredentials(
            "authorization scheme is not Bearer".into(),
        ));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::InvalidCredentials("empty bearer token".into()));
    }
    Ok(Some(token))
}

/// Names the caller of a CSR request. The identity it returns is the one
/// written into the certificate (unless an [`Authorizer`] lets the caller
/// impersonate another).
///
/// Implement it for your token scheme (Kubernetes TokenReview, JWT, …):
/// read [`CallerInfo::bearer_token`], validate it, map it to a SPIFFE ID.
pub trait Authenticator: Send + Sync + 'static {
    /// Identifies the caller.
    ///
    /// # Errors
    /// [`AuthError::MissingCredentials`] when the call carries nothing this
    /// authenticator reads, [`AuthError::InvalidCredentials`] when what it
    /// carries does not hold.
    fn authenticate(
        &self,
        caller: CallerInfo<'_>,
    ) -> impl Future<Output = Result<SpiffeId, AuthError>> + Send;
}

/// Authenticates the caller as the SPIFFE ID of its verified mTLS client
/// certificate.
#[derive(Debug, Clone, Copy, Default)]
pub struct MtlsPeer;

impl Authenticator for MtlsPeer {
    async fn authenticate(&self, caller: CallerInfo<'_>) -> Result<SpiffeId, AuthError> {
        caller
            .peer()
            .cloned()
            .ok_or_else(|| AuthError::MissingCredentials("no verified client certificate".into()))
    }
}

/// Authenticates bearer tokens from a fixed table, for tests and examples.
/// Tokens are compared by hash-map lookup (not in constant time) and never
/// printed by `Debug`.
#[derive(Clone, Default)]
pub struct StaticTokens {
    tokens: HashMap<String, SpiffeId>,
}

impl fmt::Debug for StaticTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticTokens")
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

impl StaticTokens {
    /// An empty table: every token is invalid.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `token`, which authenticates as `identity`.
    #[must_use]
    pub fn with(mut self, token: impl Into<String>, identity: SpiffeId) -> Self {
        self.tokens.insert(token.into(), identity);
        self
    }
}

impl Authenticator for StaticTokens {
    async fn authenticate(&self, caller: CallerInfo<'_>) -> Result<SpiffeId, AuthError> {
        let token = caller
            .bearer_token()?
            .ok_or_else(|| AuthError::MissingCredentials("no bearer token".into()))?;
        self.tokens
            .get(token)
            .cloned()
            .ok_or_else(|| AuthError::InvalidCredentials("unknown bearer token".into()))
    }
}

/// Tries the first authenticator, then the second. When both fail, the
/// more telling error is returned: invalid credentials over missing ones,
/// the first authenticator's on a tie.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnyOf<A, B>(pub A, pub B);

impl<A: Authenticator, B: Authenticator> Authenticator for AnyOf<A, B> {
    async fn authenticate(&self, caller: CallerInfo<'_>) -> Result<SpiffeId, AuthError> {
        let first = match self.0.authenticate(caller).await {
            Ok(id) => return Ok(id),
            Err(e) => e,
        };
        match self.1.authenticate(caller).await {
            Ok(id) => Ok(id),
            Err(second) => match (&first, &second) {
                (AuthError::MissingCredentials(_), AuthError::InvalidCredentials(_)) => Err(second),
                _ => Err(first),
            },
        }
    }
}

/// Decides whether an authenticated caller may have a certificate for
/// *another* identity than its own (Istio's `ImpersonatedIdentity`). A
/// caller asking for its own identity is never asked about.
///
/// Any `Fn(&SpiffeId, &SpiffeId) -> bool` (caller, requested) is an
/// authorizer too.
pub trait Authorizer: Send + Sync + 'static {
    /// Allows `caller` to obtain a certificate for `requested`, or not.
    ///
    /// # Errors
    /// [`AuthError::NotAllowed`] (or any [`AuthError`]) to refuse.
    fn authorize(&self, caller: &SpiffeId, requested: &SpiffeId) -> Result<(), AuthError>;
}

fn not_allowed(caller: &SpiffeId, requested: &SpiffeId) -> AuthError {
    AuthError::NotAllowed {
        caller: caller.clone(),
        requested: requested.clone(),
    }
}

impl<F> Authorizer for F
where
    F: Fn(&SpiffeId, &SpiffeId) -> bool + Send + Sync + 'static,
{
    fn authorize(&self, caller: &SpiffeId, requested: &SpiffeId) -> Result<(), AuthError> {
        if self(caller, requested) {
            Ok(())
        } else {
            Err(not_allowed(caller, requested))
        }
    }
}

/// The default: a caller may have its own identity only.
#[derive(Debug, Clone, Copy, Default)]
pub struct SelfOnly;

impl Authorizer for SelfOnly {
    fn authorize(&self, caller: &SpiffeId, requested: &SpiffeId) -> Result<(), AuthError> {
        Err(not_allowed(caller, requested))
    }
}

type NodeTable = HashMap<SpiffeId, HashSet<SpiffeId>>;

/// Lets a node proxy obtain the identities of the workloads on its own
/// node, and nothing else: a table node identity → workload identities.
///
/// Clones share the table, so the discovery side can keep it current
/// (workloads come and go) while the server reads it.
#[derive(Clone, Default)]
pub struct NodeAuthorizer {
    nodes: Arc<RwLock<NodeTable>>,
}

impl fmt::Debug for NodeAuthorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes = self.nodes.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("NodeAuthorizer")
            .field("nodes", &nodes.len())
            .finish()
    }
}

impl NodeAuthorizer {
    /// An empty table: no node may impersonate anyone yet.
    pub fn new() -> Self {
        Self::default()
    }

    // A panic while holding the lock cannot leave the table half-updated
    // (every update is one insert or remove), so poisoning is ignored.
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, NodeTable> {
        self.nodes.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Lets `node` obtain certificates for `workload`.
    pub fn allow(&self, node: SpiffeId, workload: SpiffeId) {
        self.write().entry(node).or_default().insert(workload);
    }

    /// Withdraws what [`allow`](Self::allow) granted; whether it was granted.
    pub fn revoke(&self, node: &SpiffeId, workload: &SpiffeId) -> bool {
        let mut nodes = self.write();
        let Some(set) = nodes.get_mut(node) else {
            return false;
        };
        let removed = set.remove(workload);
        if set.is_empty() {
            nodes.remove(node);
        }
        removed
    }

    /// Replaces the workloads `node` may obtain certificates for.
    pub fn set_workloads(&self, node: SpiffeId, workloads: impl IntoIterator<Item = SpiffeId>) {
        let set: HashSet<SpiffeId> = workloads.into_iter().collect();
        let mut nodes = self.write();
        if set.is_empty() {
            nodes.remove(&node);
        } else {
            nodes.insert(node, set);
        }
    }

    /// Whether `node` may obtain certificates for `workload`.
    pub fn allows(&self, node: &SpiffeId, workload: &SpiffeId) -> bool {
        self.nodes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(node)
            .is_some_and(|set| set.contains(workload))
    }
}

impl Authorizer for NodeAuthorizer {
    fn authorize(&self, caller: &SpiffeId, requested: &SpiffeId) -> Result<(), AuthError> {
        if self.allows(caller, requested) {
            Ok(())
        } else {
            Err(not_allowed(caller, requested))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SpiffeId {
        s.parse().unwrap()
    }

    #[test]
    fn bearer_token_forms() {
        let mut md = MetadataMap::new();
        assert_eq!(bearer_token(&md), Ok(None));
        md.insert("authorization", "Bearer abc".parse().unwrap());
        assert_eq!(bearer_token(&md), Ok(Some("abc")));
        md.insert("authorization", "bearer  abc ".parse().unwrap());
        assert_eq!(bearer_token(&md), Ok(Some("abc")));
        md.insert("authorization", "Basic abc".parse().unwrap());
        assert!(matches!(
            bearer_token(&md),
            Err(AuthError::InvalidCredentials(_))
        ));
        md.insert("authorization", "Bearer ".parse().unwrap());
        assert!(matches!(
            bearer_token(&md),
            Err(AuthError::InvalidCredentials(_))
        ));
    }

    #[test]
    fn node_table_updates() {
        let nodes = NodeAuthorizer::new();
        let (n, w) = (
            id("spiffe://td/ns/n/sa/ztunnel"),
            id("spiffe://td/ns/a/sa/w"),
        );
        assert!(nodes.authorize(&n, &w).is_err());
        nodes.allow(n.clone(), w.clone());
        assert!(nodes.clone().authorize(&n, &w).is_ok());
        assert!(nodes.authorize(&w, &n).is_err());
        assert!(nodes.revoke(&n, &w));
        assert!(!nodes.allows(&n, &w));
        nodes.set_workloads(n.clone(), [w.clone()]);
        assert!(nodes.allows(&n, &w));
        nodes.set_workloads(n.clone(), []);
        assert!(!nodes.allows(&n, &w));
    }

    #[test]
    fn closures_authorize() {
        let same_ns = |c: &SpiffeId, r: &SpiffeId| c.ns() == r.ns();
        let (a, b, c) = (
            id("spiffe://td/ns/a/sa/x"),
            id("spiffe://td/ns/a/sa/y"),
            id("spiffe://td/ns/b/sa/y"),
        );
        assert!(same_ns.authorize(&a, &b).is_ok());
        assert_eq!(
            same_ns.authorize(&a, &c).map_err(|e| e.code()),
            Err(tonic::Code::PermissionDenied)
        );
        assert!(SelfOnly.authorize(&a, &b).is_err());
    }

    #[tokio::test]
    async fn any_of_prefers_invalid_over_missing() {
        let w = id("spiffe://td/ns/a/sa/w");
        let auth = AnyOf(MtlsPeer, StaticTokens::new().with("t", w.clone()));
        let mut md = MetadataMap::new();
        let err = auth.authenticate(CallerInfo::new(None, &md)).await;
        assert!(matches!(err, Err(AuthError::MissingCredentials(_))));
        md.insert("authorization", "Bearer nope".parse().unwrap());
        let err = auth.authenticate(CallerInfo::new(None, &md)).await;
        assert!(matches!(err, Err(AuthError::InvalidCredentials(_))));
        md.insert("authorization", "Bearer t".parse().unwrap());
        assert_eq!(auth.authenticate(CallerInfo::new(None, &md)).await, Ok(w));
        let peer = id("spiffe://td/ns/n/sa/peer");
        assert_eq!(
            auth.authenticate(CallerInfo::new(Some(&peer), &md)).await,
            Ok(peer)
        );
    }
}
