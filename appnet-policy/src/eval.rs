//! Evaluating a request against the policies that apply to its destination,
//! in Istio's order (CUSTOM → DENY → ALLOW), with the L4 downgrade rules of
//! a node proxy.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::index::{CompiledPolicy, L4Mode, ScopeIndex};
use crate::matching::rule_matches;
use crate::model::{Action, AuthorizationPolicy, TargetRef};

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
    /// A workload described by WDS (node proxy fed over xDS): namespace-wide
    /// and mesh-wide policies apply by namespace as for
    /// [`Attachment::Workload`], and a [`Scope::Selector`] or
    /// [`Scope::Named`] policy applies iff its `namespace/name` is listed
    /// (the control plane lists exactly the selector policies that select
    /// the workload; labels are not consulted).
    ///
    /// [`Scope::Selector`]: crate::Scope::Selector
    /// [`Scope::Named`]: crate::Scope::Named
    Listed {
        /// The WDS `Workload.authorization_policies`: policy keys
        /// (`namespace/name`).
        policies: BTreeSet<String>,
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
    pub(crate) fn ns_sa(&self) -> Option<(&str, &str)> {
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

/// The first rule of `policy` matching `req` in `view`.
fn first_match(compiled: &CompiledPolicy, req: &Request, view: View) -> Option<usize> {
    compiled
        .policy
        .rules
        .iter()
        .zip(&compiled.l4_modes)
        .position(|(rule, mode)| match (view, mode) {
            (View::L7, _) | (View::L4, L4Mode::AsWritten) => rule_matches(rule, req, false),
            (View::L4, L4Mode::Never) => false,
            (View::L4, L4Mode::L4PartOnly) => rule_matches(rule, req, true),
        })
}

/// A set of policies, indexed by where they attach, and the mesh root
/// namespace.
///
/// Building the set precompiles every policy (its L4 treatment and
/// diagnostics) and indexes it by namespace, label selector, `targetRefs`
/// and `namespace/name` (for [`Attachment::Listed`] workloads);
/// [`PolicySet::evaluate`] then only looks at the policies attached to the
/// destination.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    root_namespace: String,
    policies: Vec<CompiledPolicy>,
    index: ScopeIndex,
}

/// Istio's default root namespace.
pub const DEFAULT_ROOT_NAMESPACE: &str = "istio-system";

impl PolicySet {
    /// Compiles and indexes `policies` for a mesh whose root namespace is
    /// `root_namespace` (Istio's default is [`DEFAULT_ROOT_NAMESPACE`]).
    pub fn new(root_namespace: impl Into<String>, policies: Vec<AuthorizationPolicy>) -> Self {
        let policies: Vec<CompiledPolicy> = policies.into_iter().map(CompiledPolicy::new).collect();
        let index = ScopeIndex::build(&policies);
        Self {
            root_namespace: root_namespace.into(),
            policies,
            index,
        }
    }

    /// The root namespace.
    pub fn root_namespace(&self) -> &str {
        &self.root_namespace
    }

    /// The policies, in the order given.
    pub fn policies(&self) -> impl ExactSizeIterator<Item = &AuthorizationPolicy> {
        self.policies.iter().map(|c| &c.policy)
    }

    /// The policies attached to `dest`, in the order given.
    pub fn attached(&self, dest: &Destination) -> impl Iterator<Item = &AuthorizationPolicy> {
        self.index
            .attached(&self.policies, dest, &self.root_namespace)
            .into_iter()
            .filter_map(|id| self.policies.get(id as usize).map(|c| &c.policy))
    }

    /// Evaluates `req` for `dest` as seen in `view`; CUSTOM policies ask
    /// `external`.
    ///
    /// Policies are visited in the order given; the first matching rule of
    /// each is what a [`RuleMatch`] reports, and the first matching policy
    /// of each action decides.
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
        let mut custom_deny = None;
        let mut deny = None;
        let mut allow = None;
        let mut any_allow = false;
        for id in self
            .index
            .attached(&self.policies, dest, &self.root_namespace)
        {
            let Some(c) = self.policies.get(id as usize) else {
                continue;
            };
            let p = &c.policy;
            if view == View::L4 {
                d.diagnostics.extend_from_slice(&c.l4_diagnostics);
            }
            if p.dry_run {
                d.dry_run.push(DryRunOutcome {
                    policy: c.key.clone(),
                    action: p.action,
                    matched: first_match(c, req, view),
                });
                continue;
            }
            // Skip the rule scan when its outcome cannot change anything.
            let needed = match p.action {
                Action::Audit => true,
                Action::Custom => custom_deny.is_none(),
                Action::Deny => deny.is_none(),
                Action::Allow => {
                    any_allow = true;
                    allow.is_none()
                }
            };
            if !needed {
                continue;
            }
            let Some(rule) = first_match(c, req, view) else {
                continue;
            };
            let hit = RuleMatch {
                policy: c.key.clone(),
                rule,
            };
            match p.action {
                Action::Audit => d.audit.push(hit),
                Action::Custom => {
                    let provider = p.provider.clone().unwrap_or_default();
                    if !external.check(&provider, req) {
                        custom_deny = Some(Reason::CustomDenied { by: hit, provider });
                    }
                }
                Action::Deny => deny = Some(hit),
                Action::Allow => allow = Some(hit),
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
