//! The validated authorization model: what a parsed, checked
//! AuthorizationPolicy says, with no YAML left in it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

/// What a policy does when one of its rules matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Allow matching requests (and, once any ALLOW applies, deny the rest).
    Allow,
    /// Deny matching requests.
    Deny,
    /// Mark matching requests for audit; never changes the decision.
    Audit,
    /// Ask an external authorizer about matching requests.
    Custom,
}

/// Which workloads a policy applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every workload of the policy's namespace (mesh-wide in the root
    /// namespace).
    Namespace,
    /// Workloads whose labels include all of these (in the root namespace:
    /// matching workloads of every namespace).
    Selector(BTreeMap<String, String>),
    /// Waypoint attachment: Gateway, GatewayClass, Service or ServiceEntry
    /// references.
    TargetRefs(Vec<TargetRef>),
    /// Applies only to workloads that list this policy by `namespace/name`
    /// ([`Attachment::Listed`](crate::Attachment::Listed)), never by labels:
    /// the WDS `WORKLOAD_SELECTOR` scope, where the control plane has already
    /// resolved the selector into each workload's `authorization_policies`.
    Named,
}

/// A `targetRefs` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRef {
    /// API group (empty for core).
    pub group: String,
    /// `Gateway`, `GatewayClass`, `Service` or `ServiceEntry`.
    pub kind: String,
    /// Object name.
    pub name: String,
}

/// A string pattern: `abc` exact, `abc*` prefix, `*abc` suffix, `*` any
/// non-empty value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StringMatch {
    /// The whole value.
    Exact(String),
    /// A prefix.
    Prefix(String),
    /// A suffix.
    Suffix(String),
    /// Present and non-empty.
    Presence,
}

impl StringMatch {
    /// Whether `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Self::Exact(s) => value == s,
            Self::Prefix(s) => value.starts_with(s.as_str()),
            Self::Suffix(s) => value.ends_with(s.as_str()),
            Self::Presence => !value.is_empty(),
        }
    }

    /// Case-insensitive match (for hosts).
    pub fn matches_ignore_case(&self, value: &str) -> bool {
        let v = value.to_ascii_lowercase();
        match self {
            Self::Exact(s) => v == s.to_ascii_lowercase(),
            Self::Prefix(s) => v.starts_with(&s.to_ascii_lowercase()),
            Self::Suffix(s) => v.ends_with(&s.to_ascii_lowercase()),
            Self::Presence => !v.is_empty(),
        }
    }
}

/// A positive list and a negative list of the same attribute: the positive
/// one (if set) needs any value to match, the negative one (if set) needs
/// none to match. `None` means the field was not written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field<T> {
    /// Values of which one must match.
    pub any: Option<Vec<T>>,
    /// Values of which none may match.
    pub none: Option<Vec<T>>,
}

impl<T> Default for Field<T> {
    fn default() -> Self {
        Self {
            any: None,
            none: None,
        }
    }
}

impl<T> Field<T> {
    /// Whether neither list was written.
    pub fn is_unset(&self) -> bool {
        self.any.is_none() && self.none.is_none()
    }

    /// Evaluates against an attribute that may be absent. An absent
    /// attribute fails a positive list and satisfies a negative one.
    pub fn eval<V: ?Sized>(&self, value: Option<&V>, matches: impl Fn(&T, &V) -> bool) -> bool {
        if let Some(any) = &self.any {
            match value {
                Some(v) if any.iter().any(|p| matches(p, v)) => {}
                _ => return false,
            }
        }
        if let (Some(none), Some(v)) = (&self.none, value)
            && none.iter().any(|p| matches(p, v))
        {
            return false;
        }
        true
    }
}

/// A service account reference: `ns/sa`, or `sa` in the policy's namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountRef {
    /// Namespace.
    pub namespace: String,
    /// Service account name.
    pub name: String,
}

/// A `from.source` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Source {
    /// Peer identities (without `spiffe://`).
    pub principals: Field<StringMatch>,
    /// JWT `iss/sub` principals (L7).
    pub request_principals: Field<StringMatch>,
    /// Peer namespaces.
    pub namespaces: Field<StringMatch>,
    /// Peer service accounts.
    pub service_accounts: Field<ServiceAccountRef>,
    /// Peer IPs.
    pub ip_blocks: Field<IpNet>,
    /// Original client IPs (from X-Forwarded-For; L7).
    pub remote_ip_blocks: Field<IpNet>,
}

/// A `to.operation` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Operation {
    /// HTTP hosts (case-insensitive; L7).
    pub hosts: Field<StringMatch>,
    /// Destination ports.
    pub ports: Field<u16>,
    /// HTTP methods (L7).
    pub methods: Field<StringMatch>,
    /// HTTP paths (L7).
    pub paths: Field<StringMatch>,
}

/// The attribute a `when` condition reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConditionKey {
    /// `request.headers[name]` (name lower-cased).
    RequestHeader(String),
    /// `source.ip`.
    SourceIp,
    /// `remote.ip`.
    RemoteIp,
    /// `source.namespace`.
    SourceNamespace,
    /// `source.serviceAccount`.
    SourceServiceAccount,
    /// `source.principal`.
    SourcePrincipal,
    /// `request.auth.principal`.
    RequestAuthPrincipal,
    /// `request.auth.audiences`.
    RequestAuthAudiences,
    /// `request.auth.presenter`.
    RequestAuthPresenter,
    /// `request.auth.claims[a][b]…`: the claim path.
    RequestAuthClaims(Vec<String>),
    /// `destination.ip`.
    DestinationIp,
    /// `destination.port`.
    DestinationPort,
    /// `connection.sni`.
    ConnectionSni,
}

impl ConditionKey {
    /// Whether a node proxy (L4) can see this attribute.
    pub fn is_l4(&self) -> bool {
        matches!(
            self,
            Self::SourceIp
                | Self::SourceNamespace
                | Self::SourcePrincipal
                | Self::DestinationIp
                | Self::DestinationPort
        )
    }
}

/// The values a `when` condition compares against, typed by its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConditionValues {
    /// String patterns.
    Strings(Field<StringMatch>),
    /// IPs/CIDRs.
    Ips(Field<IpNet>),
    /// Ports.
    Ports(Field<u16>),
}

/// A `when` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// What it reads.
    pub key: ConditionKey,
    /// What it compares with.
    pub values: ConditionValues,
}

/// One rule: from AND to AND every when.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rule {
    /// `from` entries (any may match); empty = not written.
    pub from: Vec<Source>,
    /// `to` entries (any may match); empty = not written.
    pub to: Vec<Operation>,
    /// `when` conditions (all must match).
    pub when: Vec<Condition>,
}

/// A validated AuthorizationPolicy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationPolicy {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// Which workloads it applies to.
    pub scope: Scope,
    /// What it does.
    pub action: Action,
    /// The CUSTOM provider name.
    pub provider: Option<String>,
    /// Its rules; for ALLOW/AUDIT, empty means "matches nothing".
    pub rules: Vec<Rule>,
    /// `istio.io/dry-run: "true"`: evaluated and reported, never enforced.
    pub dry_run: bool,
}

impl AuthorizationPolicy {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// An IP in a CIDR list.
pub(crate) fn ip_in(net: &IpNet, ip: &IpAddr) -> bool {
    net.contains(ip)
}
