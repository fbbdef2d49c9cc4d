//! Evaluating a request against the policies that apply to its destination,
//! in Istio's order (CUSTOM → DENY → ALLOW), with the L4 downgrade rules of
//! a node proxy.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::model::{
    Action, AuthorizationPolicy, Condition, ConditionKey, ConditionValues, Field, Operation, Rule,
    Scope, Source, StringMatch, TargetRef, ip_in,
};

/// What the enforcing proxy can see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum View {
    /// A node proxy: connection attributes only.
    L4,
    /// A waypoint: connection and HTTP attributes.
    L7,
}

/// How the destination is reached, which decides which policies attach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attachment {
    /// A workload (node proxy): namespace-wide, mesh-wide and selector
    /// policies apply.
    Workload {
        /// The workload's labels.
        labels: BTreeMap<String, String>,
    },
    /// A waypoint serving these targets: `targetRefs` policies naming one of
    /// them apply.
    Waypoint {
        /// The Gateway, GatewayClass, Service or ServiceEntry being served.
        targets: Vec<TargetRef>,
    },
}

/// The destination a request is evaluated for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// Its namespace.
    pub namespace: String,
    /// How policies attach to it.
    pub attachment: Attachment,
}

/// A JWT claim value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// A string claim.
    String(String),
    /// A list of strings (matches if any element matches).
    List(Vec<String>),
    /// A nested object.
    Object(BTreeMap<String, Claim>),
}

/// What a validated JWT says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestAuth {
    /// `iss/sub`.
    pub principal: Option<String>,
    /// `aud`.
    pub audiences: Vec<String>,
    /// `azp`.
    pub presenter: Option<String>,
    /// All claims.
    pub claims: BTreeMap<String, Claim>,
}

/// HTTP attributes, seen only at L7.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpAttributes {
    /// `:authority` / Host.
    pub host: Option<String>,
    /// Method.
    pub method: Option<String>,
    /// Path, without the query.
    pub path: Option<String>,
    /// Headers, names lower case.
    pub headers: Vec<(String, String)>,
    /// The validated JWT, if any.
    pub auth: Option<RequestAuth>,
}

/// The attributes of one request or connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// The peer's SPIFFE ID without `spiffe://` (`td/ns/x/sa/y`); `None` for
    /// plaintext.
    pub source_principal: Option<String>,
    /// Peer IP.
    pub source_ip: Option<IpAddr>,
    /// Original client IP (X-Forwarded-For); defaults to `source_ip`.
    pub remote_ip: Option<IpAddr>,
    /// Destination IP.
    pub destination_ip: Option<IpAddr>,
    /// Destination port.
    pub destination_port: Option<u16>,
    /// TLS SNI.
    pub sni: Option<String>,
    /// HTTP attributes (ignored in the L4 view).
    pub http: Option<HttpAttributes>,
}

impl Request {
    /// Namespace and service account from an Istio-form principal.
    fn ns_sa(&self) -> Option<(&str, &str)> {
        let p = self.source_principal.as_deref()?;
        let mut it = p.split('/');
        let _td = it.next()?;
        match (it.next(), it.next(), it.next(), it.next(), it.next()) {
            (Some("ns"), Some(ns), Some("sa"), Some(sa), None) => Some((ns, sa)),
            _ => None,
        }
    }
}

/// Answers CUSTOM policies.
pub trait ExternalAuthorizer {
    /// Whether `provider` allows `request`.
    fn check(&self, provider: &str, request: &Request) -> bool;
}

/// Used when no external authorizer is configured: denies (fail closed).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoExternalAuthorizer;

impl ExternalAuthorizer for NoExternalAuthorizer {
    fn check(&self, _provider: &str, _request: &Request) -> bool {
        false
    }
}

/// A policy rule that matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleMatch {
    /// `namespace/name` of the policy.
    pub policy: String,
    /// Index of the rule in `spec.rules`.
    pub rule: usize,
}

/// Why a decision came out as it did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// No ALLOW policy applies and nothing denied: allowed.
    NoAllowPolicy,
    /// A CUSTOM policy matched and its provider denied.
    CustomDenied {
        /// The match.
        by: RuleMatch,
        /// The provider.
        provider: String,
    },
    /// A DENY policy matched.
    Denied(RuleMatch),
    /// An ALLOW policy matched.
    Allowed(RuleMatch),
    /// ALLOW policies apply but none matched.
    NoAllowMatched,
}

/// What a dry-run policy would have done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DryRunOutcome {
    /// `namespace/name`.
    pub policy: String,
    /// Its action.
    pub action: Action,
    /// The rule that matched, if any.
    pub matched: Option<usize>,
}

/// A note about how a policy was applied (L4 downgrades).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// `namespace/name`.
    pub policy: String,
    /// Rule index.
    pub rule: usize,
    /// What happened.
    pub message: String,
}

/// The outcome of an evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// Why.
    pub reason: Reason,
    /// AUDIT policies that matched.
    pub audit: Vec<RuleMatch>,
    /// What dry-run policies would have done.
    pub dry_run: Vec<DryRunOutcome>,
    /// L4 downgrades applied.
    pub diagnostics: Vec<Diagnostic>,
}

/// Whether a rule uses attributes a node proxy cannot see.
pub(crate) fn rule_uses_l7(rule: &Rule) -> bool {
    rule.from
        .iter()
        .any(|s| !s.request_principals.is_unset() || !s.remote_ip_blocks.is_unset())
        || rule
            .to
            .iter()
            .any(|o| !o.hosts.is_unset() || !o.methods.is_unset() || !o.paths.is_unset())
        || rule.when.iter().any(|c| !c.key.is_l4())
}

fn eval_many<'v, T, V: ?Sized + 'v>(
    field: &Field<T>,
    values: impl Iterator<Item = &'v V> + Clone,
    matches: impl Fn(&T, &V) -> bool,
) -> bool {
    if let Some(any) = &field.any
        && !values.clone().any(|v| any.iter().any(|p| matches(p, v)))
    {
        return false;
    }
    if let Some(none) = &field.none
        && values.clone().any(|v| none.iter().any(|p| matches(p, v)))
    {
        return false;
    }
    true
}

fn sm(p: &StringMatch, v: &str) -> bool {
    p.matches(v)
}

/// `strip_l7`: treat HTTP-only fields as absent (the L4 view of a DENY).
fn source_matches(s: &Source, req: &Request, strip_l7: bool) -> bool {
    let ns_sa = req.ns_sa();
    let auth = req.http.as_ref().and_then(|h| h.auth.as_ref());
    s.principals.eval(req.source_principal.as_deref(), sm)
        && s.namespaces.eval(ns_sa.map(|(ns, _)| ns), sm)
        && s.service_accounts.eval(ns_sa.as_ref(), |r, (ns, sa)| {
            r.namespace == *ns && r.name == *sa
        })
        && s.ip_blocks.eval(req.source_ip.as_ref(), ip_in)
        && (strip_l7
            || (s
                .request_principals
                .eval(auth.and_then(|a| a.principal.as_deref()), sm)
                && s.remote_ip_blocks
                    .eval(req.remote_ip.or(req.source_ip).as_ref(), ip_in)))
}

fn operation_matches(o: &Operation, req: &Request, strip_l7: bool) -> bool {
    let http = req.http.as_ref();
    o.ports.eval(req.destination_port.as_ref(), |p, v| p == v)
        && (strip_l7
            || (o.hosts.eval(http.and_then(|h| h.host.as_deref()), |p, v| {
                p.matches_ignore_case(v)
            }) && o.methods.eval(http.and_then(|h| h.method.as_deref()), sm)
                && o.paths.eval(http.and_then(|h| h.path.as_deref()), sm)))
}

fn claim_values<'a>(claims: &'a BTreeMap<String, Claim>, path: &[String]) -> Vec<&'a str> {
    let mut cur = claims;
    for (i, seg) in path.iter().enumerate() {
        match cur.get(seg) {
            Some(Claim::Object(o)) if i + 1 < path.len() => cur = o,
            Some(Claim::String(s)) if i + 1 == path.len() => return vec![s.as_str()],
            Some(Claim::List(l)) if i + 1 == path.len() => {
                return l.iter().map(String::as_str).collect();
            }
            _ => return Vec::new(),
        }
    }
    Vec::new()
}

fn condition_matches(c: &Condition, req: &Request) -> bool {
    let http = req.http.as_ref();
    let auth = http.and_then(|h| h.auth.as_ref());
    match &c.values {
        ConditionValues::Ips(f) => {
            let ip = match c.key {
                ConditionKey::SourceIp => req.source_ip,
                ConditionKey::RemoteIp => req.remote_ip.or(req.source_ip),
                _ => req.destination_ip,
            };
            f.eval(ip.as_ref(), ip_in)
        }
        ConditionValues::Ports(f) => f.eval(req.destination_port.as_ref(), |p, v| p == v),
        ConditionValues::Strings(f) => {
            let sa_joined = req.ns_sa().map(|(ns, sa)| format!("{ns}/{sa}"));
            let values: Vec<&str> = match &c.key {
                ConditionKey::RequestHeader(name) => http
                    .map(|h| {
                        h.headers
                            .iter()
                            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                            .map(|(_, v)| v.as_str())
                            .collect()
                    })
                    .unwrap_or_default(),
                ConditionKey::SourceNamespace => {
                    req.ns_sa().map(|(ns, _)| ns).into_iter().collect()
                }
                ConditionKey::SourceServiceAccount => sa_joined.as_deref().into_iter().collect(),
                ConditionKey::SourcePrincipal => {
                    req.source_principal.as_deref().into_iter().collect()
                }
                ConditionKey::RequestAuthPrincipal => auth
                    .and_then(|a| a.principal.as_deref())
                    .into_iter()
                    .collect(),
                ConditionKey::RequestAuthAudiences => auth
                    .map(|a| a.audiences.iter().map(String::as_str).collect())
                    .unwrap_or_default(),
                ConditionKey::RequestAuthPresenter => auth
                    .and_then(|a| a.presenter.as_deref())
                    .into_iter()
                    .collect(),
                ConditionKey::RequestAuthClaims(path) => auth
                    .map(|a| claim_values(&a.claims, path))
                    .unwrap_or_default(),
                ConditionKey::ConnectionSni => req.sni.as_deref().into_iter().collect(),
                ConditionKey::SourceIp
                | ConditionKey::RemoteIp
                | ConditionKey::DestinationIp
                | ConditionKey::DestinationPort => Vec::new(),
            };
            eval_many(f, values.iter().copied(), sm)
        }
    }
}

/// Whether `rule` matches `req`; `strip_l7` drops HTTP-only parts.
pub(crate) fn rule_matches(rule: &Rule, req: &Request, strip_l7: bool) -> bool {
    (rule.from.is_empty() || rule.from.iter().any(|s| source_matches(s, req, strip_l7)))
        && (rule.to.is_empty() || rule.to.iter().any(|o| operation_matches(o, req, strip_l7)))
        && rule
            .when
            .iter()
            .all(|c| (strip_l7 && !c.key.is_l4()) || condition_matches(c, req))
}

/// Whether `policy` attaches to `dest`.
pub(crate) fn applies(
    policy: &AuthorizationPolicy,
    dest: &Destination,
    root_namespace: &str,
) -> bool {
    let ns_ok = policy.namespace == dest.namespace || policy.namespace == root_namespace;
    match (&policy.scope, &dest.attachment) {
        (Scope::Namespace, Attachment::Workload { .. }) => ns_ok,
        (Scope::Selector(sel), Attachment::Workload { labels }) => {
            ns_ok && sel.iter().all(|(k, v)| labels.get(k) == Some(v))
        }
        (Scope::TargetRefs(refs), Attachment::Waypoint { targets }) => {
            (policy.namespace == dest.namespace
                || refs.iter().all(|r| r.kind == "GatewayClass")
                    && policy.namespace == root_namespace)
                && refs.iter().any(|r| {
                    targets
                        .iter()
                        .any(|t| t.kind == r.kind && t.name == r.name && t.group == r.group)
                })
        }
        _ => false,
    }
}

/// The first rule of `policy` matching `req` in `view`, with the L4
/// downgrade diagnostics.
pub(crate) fn first_match(
    policy: &AuthorizationPolicy,
    req: &Request,
    view: View,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<usize> {
    let mut found = None;
    for (i, rule) in policy.rules.iter().enumerate() {
        let l7 = view == View::L4 && rule_uses_l7(rule);
        let matched = if l7 {
            match policy.action {
                Action::Allow => {
                    diagnostics.push(Diagnostic {
                        policy: policy.key(),
                        rule: i,
                        message: "ALLOW rule uses HTTP attributes a node proxy cannot see: it matches nothing at L4".into(),
                    });
                    false
                }
                _ => {
                    diagnostics.push(Diagnostic {
                        policy: policy.key(),
                        rule: i,
                        message: format!(
                            "{:?} rule uses HTTP attributes a node proxy cannot see: enforced on its L4 part alone (more restrictive)",
                            policy.action
                        ),
                    });
                    rule_matches(rule, req, true)
                }
            }
        } else {
            rule_matches(rule, req, false)
        };
        if matched && found.is_none() {
            found = Some(i);
        }
    }
    found
}

/// A set of policies and the mesh root namespace.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    root_namespace: String,
    policies: Vec<AuthorizationPolicy>,
}

/// Istio's default root namespace.
pub const DEFAULT_ROOT_NAMESPACE: &str = "istio-system";

impl PolicySet {
    /// A set with the given root namespace.
    pub fn new(root_namespace: impl Into<String>, policies: Vec<AuthorizationPolicy>) -> Self {
        Self {
            root_namespace: root_namespace.into(),
            policies,
        }
    }

    /// The policies.
    pub fn policies(&self) -> &[AuthorizationPolicy] {
        &self.policies
    }

    /// Evaluates `req` for `dest` as seen in `view`; CUSTOM policies ask
    /// `external`.
    pub fn evaluate(
        &self,
        dest: &Destination,
        req: &Request,
        view: View,
        external: &dyn ExternalAuthorizer,
    ) -> Decision {
        let mut d = Decision {
            allowed: true,
            reason: Reason::NoAllowPolicy,
            audit: Vec::new(),
            dry_run: Vec::new(),
            diagnostics: Vec::new(),
        };
        let applicable: Vec<&AuthorizationPolicy> = self
            .policies
            .iter()
            .filter(|p| applies(p, dest, &self.root_namespace))
            .collect();
        let mut custom_deny = None;
        let mut deny = None;
        let mut allow = None;
        let mut any_allow = false;
        for p in &applicable {
            let m = first_match(p, req, view, &mut d.diagnostics);
            if p.dry_run {
                d.dry_run.push(DryRunOutcome {
                    policy: p.key(),
                    action: p.action,
                    matched: m,
                });
                continue;
            }
            let hit = m.map(|rule| RuleMatch {
                policy: p.key(),
                rule,
            });
            match p.action {
                Action::Audit => d.audit.extend(hit),
                Action::Custom => {
                    if let Some(by) = hit
                        && custom_deny.is_none()
                    {
                        let provider = p.provider.clone().unwrap_or_default();
                        if !external.check(&provider, req) {
                            custom_deny = Some(Reason::CustomDenied { by, provider });
                        }
                    }
                }
                Action::Deny => {
                    if deny.is_none() {
                        deny = hit;
                    }
                }
                Action::Allow => {
                    any_allow = true;
                    if allow.is_none() {
                        allow = hit;
                    }
                }
            }
        }
        (d.allowed, d.reason) = if let Some(r) = custom_deny {
            (false, r)
        } else if let Some(m) = deny {
            (false, Reason::Denied(m))
        } else if !any_allow {
            (true, Reason::NoAllowPolicy)
        } else if let Some(m) = allow {
            (true, Reason::Allowed(m))
        } else {
            (false, Reason::NoAllowMatched)
        };
        d
    }
}
