//! Matching one rule, and one policy's scope, against a request: the
//! primitive checks both the indexed evaluator and its tests build on.

use std::collections::BTreeMap;

use crate::eval::{Attachment, Claim, Destination, Request};
use crate::model::{
    AuthorizationPolicy, Condition, ConditionKey, ConditionValues, Field, Operation, Rule, Scope,
    Source, StringMatch, ip_in,
};

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
        (Scope::Namespace, Attachment::Listed { .. }) => ns_ok,
        (Scope::Selector(_) | Scope::Named, Attachment::Listed { policies }) => {
            policies.contains(&policy.key())
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
