//! A deliberately naive AuthorizationPolicy evaluator, written straight from
//! POLICY.md with no index and no precompilation: every policy in the mesh is
//! looked at for every request. The differential tests (and the policy
//! benchmark) compare the crate's indexed evaluator against it.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::net::IpAddr;

use appnet_policy::{
    Action, Attachment, AuthorizationPolicy, Claim, Condition, ConditionKey, ConditionValues,
    Destination, DryRunOutcome, ExternalAuthorizer, Field, Operation, Reason, Request, Rule,
    RuleMatch, Scope, Source, StringMatch, View,
};
use ipnet::IpNet;

/// The parts of a decision the reference computes: everything but the
/// diagnostics' wording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub allowed: bool,
    pub reason: Reason,
    pub audit: Vec<RuleMatch>,
    pub dry_run: Vec<DryRunOutcome>,
    /// `(policy, rule)` of each L4 downgrade.
    pub downgrades: Vec<(String, usize)>,
}

impl From<appnet_policy::Decision> for Outcome {
    fn from(d: appnet_policy::Decision) -> Self {
        Self {
            allowed: d.allowed,
            reason: d.reason,
            audit: d.audit,
            dry_run: d.dry_run,
            downgrades: d
                .diagnostics
                .into_iter()
                .map(|x| (x.policy, x.rule))
                .collect(),
        }
    }
}

fn key(p: &AuthorizationPolicy) -> String {
    format!("{}/{}", p.namespace, p.name)
}

fn attaches(p: &AuthorizationPolicy, dest: &Destination, root: &str) -> bool {
    let same_or_root = p.namespace == dest.namespace || p.namespace == root;
    match (&p.scope, &dest.attachment) {
        (Scope::Namespace, Attachment::Workload { .. }) => same_or_root,
        (Scope::Selector(sel), Attachment::Workload { labels }) => {
            same_or_root && sel.iter().all(|(k, v)| labels.get(k) == Some(v))
        }
        // A WDS workload: namespace and mesh policies by namespace; selector
        // and named policies only when the workload lists them.
        (Scope::Namespace, Attachment::Listed { .. }) => same_or_root,
        (Scope::Selector(_) | Scope::Named, Attachment::Listed { policies }) => {
            policies.iter().any(|listed| *listed == key(p))
        }
        (Scope::TargetRefs(refs), Attachment::Waypoint { targets }) => {
            let ns_ok = p.namespace == dest.namespace
                || (p.namespace == root && refs.iter().all(|r| r.kind == "GatewayClass"));
            ns_ok && refs.iter().any(|r| targets.contains(r))
        }
        _ => false,
    }
}

fn str_match(p: &StringMatch, v: &str, ignore_case: bool) -> bool {
    let (p, v) = if ignore_case {
        (lower(p), v.to_ascii_lowercase())
    } else {
        (p.clone(), v.to_string())
    };
    match p {
        StringMatch::Exact(s) => v == s,
        StringMatch::Prefix(s) => v.starts_with(&s),
        StringMatch::Suffix(s) => v.ends_with(&s),
        StringMatch::Presence => !v.is_empty(),
    }
}

fn lower(p: &StringMatch) -> StringMatch {
    match p {
        StringMatch::Exact(s) => StringMatch::Exact(s.to_ascii_lowercase()),
        StringMatch::Prefix(s) => StringMatch::Prefix(s.to_ascii_lowercase()),
        StringMatch::Suffix(s) => StringMatch::Suffix(s.to_ascii_lowercase()),
        StringMatch::Presence => StringMatch::Presence,
    }
}

/// A field against a list of attribute values (empty = absent): the positive
/// list needs some value to match some pattern, the negative list needs no
/// value to match any pattern.
fn field<T, V>(f: &Field<T>, values: &[V], m: impl Fn(&T, &V) -> bool) -> bool {
    let pos = match &f.any {
        None => true,
        Some(ps) => values.iter().any(|v| ps.iter().any(|p| m(p, v))),
    };
    let neg = match &f.none {
        None => true,
        Some(ps) => !values.iter().any(|v| ps.iter().any(|p| m(p, v))),
    };
    pos && neg
}

fn opt<T: Clone>(v: Option<T>) -> Vec<T> {
    v.into_iter().collect()
}

fn ns_sa(req: &Request) -> Option<(String, String)> {
    let parts: Vec<&str> = req.source_principal.as_deref()?.split('/').collect();
    if parts.len() == 5 && parts[1] == "ns" && parts[3] == "sa" {
        Some((parts[2].to_string(), parts[4].to_string()))
    } else {
        None
    }
}

fn net(n: &IpNet, ip: &IpAddr) -> bool {
    n.contains(ip)
}

fn source(s: &Source, req: &Request, l4_only: bool) -> bool {
    let id = ns_sa(req);
    let mut ok = field(&s.principals, &opt(req.source_principal.clone()), |p, v| {
        str_match(p, v, false)
    }) && field(&s.namespaces, &opt(id.clone().map(|x| x.0)), |p, v| {
        str_match(p, v, false)
    }) && field(&s.service_accounts, &opt(id), |r, (ns, sa)| {
        &r.namespace == ns && &r.name == sa
    }) && field(&s.ip_blocks, &opt(req.source_ip), net);
    if !l4_only {
        let auth_principal = req
            .http
            .as_ref()
            .and_then(|h| h.auth.as_ref())
            .and_then(|a| a.principal.clone());
        ok =
            ok && field(&s.request_principals, &opt(auth_principal), |p, v| {
                str_match(p, v, false)
            }) && field(
                &s.remote_ip_blocks,
                &opt(req.remote_ip.or(req.source_ip)),
                net,
            );
    }
    ok
}

fn operation(o: &Operation, req: &Request, l4_only: bool) -> bool {
    let mut ok = field(&o.ports, &opt(req.destination_port), |p, v| p == v);
    if !l4_only {
        let h = req.http.clone().unwrap_or_default();
        ok = ok
            && field(&o.hosts, &opt(h.host), |p, v| str_match(p, v, true))
            && field(&o.methods, &opt(h.method), |p, v| str_match(p, v, false))
            && field(&o.paths, &opt(h.path), |p, v| str_match(p, v, false));
    }
    ok
}

fn claim(claims: &BTreeMap<String, Claim>, path: &[String]) -> Vec<String> {
    let Some((first, rest)) = path.split_first() else {
        return Vec::new();
    };
    match (claims.get(first), rest.is_empty()) {
        (Some(Claim::String(s)), true) => vec![s.clone()],
        (Some(Claim::List(l)), true) => l.clone(),
        (Some(Claim::Object(o)), false) => claim(o, rest),
        _ => Vec::new(),
    }
}

fn l4_key(k: &ConditionKey) -> bool {
    matches!(
        k,
        ConditionKey::SourceIp
            | ConditionKey::SourceNamespace
            | ConditionKey::SourcePrincipal
            | ConditionKey::DestinationIp
            | ConditionKey::DestinationPort
    )
}

fn condition(c: &Condition, req: &Request) -> bool {
    let auth = req
        .http
        .as_ref()
        .and_then(|h| h.auth.clone())
        .unwrap_or_default();
    let has_auth = req.http.as_ref().is_some_and(|h| h.auth.is_some());
    match &c.values {
        ConditionValues::Ips(f) => {
            let ip = match c.key {
                ConditionKey::SourceIp => req.source_ip,
                ConditionKey::RemoteIp => req.remote_ip.or(req.source_ip),
                _ => req.destination_ip,
            };
            field(f, &opt(ip), net)
        }
        ConditionValues::Ports(f) => field(f, &opt(req.destination_port), |p, v| p == v),
        ConditionValues::Strings(f) => {
            let values: Vec<String> = match &c.key {
                ConditionKey::RequestHeader(name) => req
                    .http
                    .iter()
                    .flat_map(|h| h.headers.iter())
                    .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
                    .collect(),
                ConditionKey::SourceNamespace => opt(ns_sa(req).map(|x| x.0)),
                ConditionKey::SourceServiceAccount => opt(ns_sa(req).map(|(n, s)| n + "/" + &s)),
                ConditionKey::SourcePrincipal => opt(req.source_principal.clone()),
                ConditionKey::RequestAuthPrincipal => opt(auth.principal.clone()),
                ConditionKey::RequestAuthAudiences => {
                    if has_auth {
                        auth.audiences.clone()
                    } else {
                        Vec::new()
                    }
                }
                ConditionKey::RequestAuthPresenter => opt(auth.presenter.clone()),
                ConditionKey::RequestAuthClaims(path) => claim(&auth.claims, path),
                ConditionKey::ConnectionSni => opt(req.sni.clone()),
                _ => Vec::new(),
            };
            field(f, &values, |p, v| str_match(p, v, false))
        }
    }
}

fn uses_http(r: &Rule) -> bool {
    r.from
        .iter()
        .any(|s| !s.request_principals.is_unset() || !s.remote_ip_blocks.is_unset())
        || r.to
            .iter()
            .any(|o| !o.hosts.is_unset() || !o.methods.is_unset() || !o.paths.is_unset())
        || r.when.iter().any(|c| !l4_key(&c.key))
}

fn rule(r: &Rule, req: &Request, l4_only: bool) -> bool {
    (r.from.is_empty() || r.from.iter().any(|s| source(s, req, l4_only)))
        && (r.to.is_empty() || r.to.iter().any(|o| operation(o, req, l4_only)))
        && r.when
            .iter()
            .all(|c| (l4_only && !l4_key(&c.key)) || condition(c, req))
}

/// First matching rule of `p` in `view`, and the downgrades it reports.
fn policy(
    p: &AuthorizationPolicy,
    req: &Request,
    view: View,
) -> (Option<usize>, Vec<(String, usize)>) {
    let mut first = None;
    let mut downgrades = Vec::new();
    for (i, r) in p.rules.iter().enumerate() {
        let hit = if view == View::L4 && uses_http(r) {
            downgrades.push((key(p), i));
            p.action != Action::Allow && rule(r, req, true)
        } else {
            rule(r, req, false)
        };
        if hit && first.is_none() {
            first = Some(i);
        }
    }
    (first, downgrades)
}

/// Evaluates by looking at every policy of the mesh.
pub fn evaluate(
    root: &str,
    policies: &[AuthorizationPolicy],
    dest: &Destination,
    req: &Request,
    view: View,
    ext: &dyn ExternalAuthorizer,
) -> Outcome {
    let mut out = Outcome {
        allowed: true,
        reason: Reason::NoAllowPolicy,
        audit: Vec::new(),
        dry_run: Vec::new(),
        downgrades: Vec::new(),
    };
    let mut customs = Vec::new();
    let mut denies = Vec::new();
    let mut allows = Vec::new();
    let mut any_allow = false;
    for p in policies.iter().filter(|p| attaches(p, dest, root)) {
        let (first, downgrades) = policy(p, req, view);
        out.downgrades.extend(downgrades);
        if p.dry_run {
            out.dry_run.push(DryRunOutcome {
                policy: key(p),
                action: p.action,
                matched: first,
            });
            continue;
        }
        any_allow |= p.action == Action::Allow;
        let Some(rule) = first else { continue };
        let m = RuleMatch {
            policy: key(p),
            rule,
        };
        match p.action {
            Action::Audit => out.audit.push(m),
            Action::Custom => customs.push((m, p.provider.clone().unwrap_or_default())),
            Action::Deny => denies.push(m),
            Action::Allow => allows.push(m),
        }
    }
    let custom_deny = customs
        .into_iter()
        .find(|(_, provider)| !ext.check(provider, req));
    (out.allowed, out.reason) = if let Some((by, provider)) = custom_deny {
        (false, Reason::CustomDenied { by, provider })
    } else if let Some(m) = denies.into_iter().next() {
        (false, Reason::Denied(m))
    } else if !any_allow {
        (true, Reason::NoAllowPolicy)
    } else if let Some(m) = allows.into_iter().next() {
        (true, Reason::Allowed(m))
    } else {
        (false, Reason::NoAllowMatched)
    };
    out
}
