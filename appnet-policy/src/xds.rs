//! Conversions between the model and Istio's WDS `istio.security.Authorization`
//! (the form a node proxy is fed over xDS), so a node proxy fed over xDS
//! evaluates identically to one fed YAML.
//!
//! The public docs of [`from_wds`] (WDS → model, with ztunnel's semantics)
//! and [`to_wds`] (model → WDS, istiod's projection) say what maps to what.

use appnet_xds as wds;

use crate::matching::rule_uses_l7;
use crate::model::{
    Action, AuthorizationPolicy, Condition, ConditionKey, ConditionValues, Field, Operation, Rule,
    Scope, ServiceAccountRef, Source, StringMatch,
};

/// Why a policy could not be converted to or from WDS.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum XdsPolicyError {
    /// A construct the other form cannot represent exactly; refused rather
    /// than approximated.
    #[error("policy {policy}: {field}: {reason}")]
    Unsupported {
        /// `namespace/name`.
        policy: String,
        /// Path to the offending part, e.g. `rules[0].clauses[1]` (WDS) or
        /// `rules[0].when[2]` (model).
        field: String,
        /// What cannot be represented.
        reason: UnsupportedReason,
    },
    /// The policy has no WDS form at all.
    #[error("policy {policy}: no WDS form: {reason}")]
    NoWdsForm {
        /// `namespace/name`.
        policy: String,
        /// Why not.
        reason: NoWdsFormReason,
    },
}

/// What cannot be represented exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UnsupportedReason {
    /// An empty name or namespace, or one containing `/` (the
    /// `namespace/name` key would be ambiguous).
    #[error("must be non-empty and contain no '/'")]
    BadName,
    /// A clause of several matches mixing source and destination fields, or
    /// using destination IPs (neither `from` nor `to` can hold it).
    #[error(
        "a clause of several matches must use only source fields (becoming `from`) or only destination ports (becoming `to`)"
    )]
    MixedClause,
    /// A clause of several source matches after another one already became
    /// `from`.
    #[error("`from` is already taken by another clause of several source matches")]
    FromTaken,
    /// A clause of several port matches after another one already became
    /// `to`.
    #[error("`to` is already taken by another clause of several port matches")]
    ToTaken,
    /// A `GLOBAL` policy outside the root namespace: here it would apply to
    /// one namespace, to ztunnel to the whole mesh.
    #[error("GLOBAL scope outside the root namespace")]
    GlobalOutsideRoot,
    /// A `NAMESPACE` policy in the root namespace: here it would apply to
    /// the whole mesh, to ztunnel to the root namespace only.
    #[error("NAMESPACE scope in the root namespace")]
    NamespaceScopeInRoot,
    /// A model condition whose values do not have the type its key reads
    /// (the parser never makes one).
    #[error("condition values do not have the type its key reads")]
    ConditionValuesMismatch,
}

/// Why a policy has no WDS form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoWdsFormReason {
    /// AUDIT policies are not sent to node proxies.
    #[error("AUDIT policies are not sent to node proxies")]
    Audit,
    /// CUSTOM policies are not sent to node proxies.
    #[error("CUSTOM policies are not sent to node proxies")]
    Custom,
    /// A dry-run policy must not be enforced, and WDS cannot say so.
    #[error("a dry-run policy cannot be marked as such in WDS")]
    DryRun,
    /// `targetRefs` attach to waypoints, which are not fed WDS policies.
    #[error("targetRefs policies are enforced by waypoints only")]
    WaypointOnly,
}

// ---- WDS → model ----

impl TryFrom<&wds::Authorization> for AuthorizationPolicy {
    type Error = XdsPolicyError;

    /// Converts a WDS policy as [`from_wds`] does, without its root
    /// namespace check: a `GLOBAL` policy is trusted to be in the root
    /// namespace (istiod puts it there).
    ///
    /// # Errors
    /// [`XdsPolicyError::Unsupported`] naming the field when the policy
    /// cannot be represented exactly (see [`from_wds`]).
    fn try_from(a: &wds::Authorization) -> Result<Self, Self::Error> {
        let policy = format!("{}/{}", a.namespace, a.name);
        let err = |field: String, reason| XdsPolicyError::Unsupported {
            policy: policy.clone(),
            field,
            reason,
        };
        for (field, value) in [("name", &a.name), ("namespace", &a.namespace)] {
            if value.is_empty() || value.contains('/') {
                return Err(err(field.to_owned(), UnsupportedReason::BadName));
            }
        }
        let scope = match a.scope {
            wds::AuthorizationScope::Global | wds::AuthorizationScope::Namespace => {
                Scope::Namespace
            }
            wds::AuthorizationScope::WorkloadSelector => Scope::Named,
        };
        let action = match a.action {
            wds::AuthorizationAction::Allow => Action::Allow,
            wds::AuthorizationAction::Deny => Action::Deny,
        };
        let rules = a
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| rule_from_wds(r, &format!("rules[{i}]")).map_err(|(f, r)| err(f, r)))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            name: a.name.clone(),
            namespace: a.namespace.clone(),
            scope,
            action,
            provider: None,
            rules,
            dry_run: false,
        })
    }
}

impl TryFrom<wds::Authorization> for AuthorizationPolicy {
    type Error = XdsPolicyError;

    /// As the conversion from `&Authorization`.
    ///
    /// # Errors
    /// As the conversion from `&Authorization`.
    fn try_from(a: wds::Authorization) -> Result<Self, Self::Error> {
        Self::try_from(&a)
    }
}

/// Converts a WDS policy for a mesh whose root namespace is
/// `root_namespace`, so that it evaluates exactly as Istio's node proxy
/// (ztunnel) evaluates it.
///
/// # WDS semantics (what ztunnel does)
/// A WDS policy matches when any rule matches; a rule when all its clauses
/// match; a clause when any of its matches matches (a clause with no matches
/// never matches); a match when every non-empty field is satisfied — a
/// positive list needs some value to match, a `not_*` list needs none to
/// match, and an absent attribute fails a positive list but satisfies a
/// `not_*` one. Scope `GLOBAL` applies to every workload, `NAMESPACE` to the
/// workloads of the policy's namespace, `WORKLOAD_SELECTOR` to the workloads
/// whose WDS `authorization_policies` list the policy as `namespace/name`.
///
/// # Mapping
/// Scope: `GLOBAL` and `NAMESPACE` become [`Scope::Namespace`] (the policy
/// keeps its namespace: a `GLOBAL` policy is mesh-wide here because it is
/// in the root namespace, where istiod puts it — checked by this function,
/// trusted by the plain [`TryFrom`]), and `WORKLOAD_SELECTOR` becomes
/// [`Scope::Named`], which attaches only through
/// [`Attachment::Listed`](crate::Attachment::Listed). Name and namespace are
/// kept.
///
/// Each WDS rule becomes the model [`Rule`] with the same index (`from`:
/// any-of sources, `to`: any-of operations, `when`: all-of conditions):
/// - a clause of one match is the AND of that match's fields: each
///   non-empty field pair becomes a `when` [`Condition`] (`namespaces` →
///   `source.namespace`, `principals` → `source.principal`, `source_ips` →
///   `source.ip`, `destination_ips` → `destination.ip`, `destination_ports`
///   → `destination.port`; the positive list is `values`, the `not_*` list
///   `notValues`), except service accounts, which no L4 condition key
///   reads: they are ANDed into every `from` source (into a new one if
///   `from` is empty; positive lists of exact service accounts intersect
///   exactly, negative lists concatenate);
/// - a clause of several matches that use only source fields becomes
///   `from`; one whose matches use only destination ports becomes `to`;
/// - a clause with no matches becomes a condition that never matches (a
///   `destination.port` condition with an empty positive list); a clause
///   holding a match with no fields always matches and adds nothing.
///
/// Principals are compared as sent (without `spiffe://`); nothing is
/// stripped or normalised.
///
/// What cannot be represented exactly is refused, naming the clause, and
/// never approximated (fail closed): a clause of several matches that mixes
/// source and destination fields or uses destination IPs, and a second
/// clause of several matches wanting `from` or `to`. istiod never sends
/// these.
///
/// # Errors
/// [`XdsPolicyError::Unsupported`], with field `scope` when a `GLOBAL`
/// policy is outside the root namespace or a `NAMESPACE` one inside it (the
/// model makes every namespace policy of the root namespace mesh-wide), with
/// field `name`/`namespace` for an empty name or one containing `/`, and
/// with the clause's path (`rules[0].clauses[1]`) for a clause with no
/// exact model form.
pub fn from_wds(
    a: &wds::Authorization,
    root_namespace: &str,
) -> Result<AuthorizationPolicy, XdsPolicyError> {
    let in_root = a.namespace == root_namespace;
    let reason = match a.scope {
        wds::AuthorizationScope::Global if !in_root => Some(UnsupportedReason::GlobalOutsideRoot),
        wds::AuthorizationScope::Namespace if in_root => {
            Some(UnsupportedReason::NamespaceScopeInRoot)
        }
        _ => None,
    };
    if let Some(reason) = reason {
        return Err(XdsPolicyError::Unsupported {
            policy: format!("{}/{}", a.namespace, a.name),
            field: "scope".to_owned(),
            reason,
        });
    }
    AuthorizationPolicy::try_from(a)
}

type Unrepresentable = (String, UnsupportedReason);

fn is_empty_match(m: &wds::Match) -> bool {
    *m == wds::Match::default()
}

fn uses_destination(m: &wds::Match) -> bool {
    !(m.destination_ips.is_empty()
        && m.not_destination_ips.is_empty()
        && m.destination_ports.is_empty()
        && m.not_destination_ports.is_empty())
}

fn uses_source(m: &wds::Match) -> bool {
    !(m.namespaces.is_empty()
        && m.not_namespaces.is_empty()
        && m.principals.is_empty()
        && m.not_principals.is_empty()
        && m.source_ips.is_empty()
        && m.not_source_ips.is_empty()
        && m.service_accounts.is_empty()
        && m.not_service_accounts.is_empty())
}

/// A pair of WDS lists as a field (an empty list is an unset one).
fn field<W, T>(any: &[W], none: &[W], conv: impl Fn(&W) -> T) -> Field<T> {
    let list = |v: &[W]| (!v.is_empty()).then(|| v.iter().map(&conv).collect());
    Field {
        any: list(any),
        none: list(none),
    }
}

fn string_match(s: &wds::StringMatch) -> StringMatch {
    match s {
        wds::StringMatch::Exact(v) => StringMatch::Exact(v.clone()),
        wds::StringMatch::Prefix(v) => StringMatch::Prefix(v.clone()),
        wds::StringMatch::Suffix(v) => StringMatch::Suffix(v.clone()),
        wds::StringMatch::Presence => StringMatch::Presence,
    }
}

fn account(s: &wds::ServiceAccountMatch) -> ServiceAccountRef {
    ServiceAccountRef {
        namespace: s.namespace.clone(),
        name: s.service_account.clone(),
    }
}

fn source_from_wds(m: &wds::Match) -> Source {
    Source {
        principals: field(&m.principals, &m.not_principals, string_match),
        namespaces: field(&m.namespaces, &m.not_namespaces, string_match),
        service_accounts: field(&m.service_accounts, &m.not_service_accounts, account),
        ip_blocks: field(&m.source_ips, &m.not_source_ips, |n| *n),
        ..Source::default()
    }
}

/// A condition that never matches: a positive port list with no ports.
fn never() -> Condition {
    Condition {
        key: ConditionKey::DestinationPort,
        values: ConditionValues::Ports(Field {
            any: Some(Vec::new()),
            none: None,
        }),
    }
}

/// ANDs service account lists into every `from` source (a new source when
/// `from` is empty). Exact: accounts compare by equality, so two positive
/// lists intersect, and two negative lists concatenate.
fn and_service_accounts(from: &mut Vec<Source>, accounts: Field<ServiceAccountRef>) {
    if from.is_empty() {
        from.push(Source::default());
    }
    for s in from {
        let sa = &mut s.service_accounts;
        if let Some(new) = &accounts.any {
            sa.any = Some(match sa.any.take() {
                None => new.clone(),
                Some(old) => old.into_iter().filter(|a| new.contains(a)).collect(),
            });
        }
        if let Some(new) = &accounts.none {
            sa.none
                .get_or_insert_with(Vec::new)
                .extend(new.iter().cloned());
        }
    }
}

/// One match's fields as `when` conditions (service accounts go to `from`).
fn single_match(out: &mut Rule, m: &wds::Match) {
    let mut push = |key, values| out.when.push(Condition { key, values });
    let strings = |a: &[wds::StringMatch], n: &[wds::StringMatch]| {
        ConditionValues::Strings(field(a, n, string_match))
    };
    let ips = |a: &[wds::IpNet], n: &[wds::IpNet]| ConditionValues::Ips(field(a, n, |x| *x));
    if !m.namespaces.is_empty() || !m.not_namespaces.is_empty() {
        push(
            ConditionKey::SourceNamespace,
            strings(&m.namespaces, &m.not_namespaces),
        );
    }
    if !m.principals.is_empty() || !m.not_principals.is_empty() {
        push(
            ConditionKey::SourcePrincipal,
            strings(&m.principals, &m.not_principals),
        );
    }
    if !m.source_ips.is_empty() || !m.not_source_ips.is_empty() {
        push(
            ConditionKey::SourceIp,
            ips(&m.source_ips, &m.not_source_ips),
        );
    }
    if !m.destination_ips.is_empty() || !m.not_destination_ips.is_empty() {
        push(
            ConditionKey::DestinationIp,
            ips(&m.destination_ips, &m.not_destination_ips),
        );
    }
    if !m.destination_ports.is_empty() || !m.not_destination_ports.is_empty() {
        push(
            ConditionKey::DestinationPort,
            ConditionValues::Ports(field(&m.destination_ports, &m.not_destination_ports, |p| {
                *p
            })),
        );
    }
    if !m.service_accounts.is_empty() || !m.not_service_accounts.is_empty() {
        let accounts = field(&m.service_accounts, &m.not_service_accounts, account);
        and_service_accounts(&mut out.from, accounts);
    }
}

fn rule_from_wds(r: &wds::Rule, at: &str) -> Result<Rule, Unrepresentable> {
    let mut out = Rule::default();
    // First the clauses of several matches, which need `from` or `to` to
    // themselves; then the single-match ones, which AND into anything.
    for (i, c) in r.clauses.iter().enumerate() {
        if c.matches.len() < 2 || c.matches.iter().any(is_empty_match) {
            continue;
        }
        let here = || format!("{at}.clauses[{i}]");
        if c.matches.iter().all(|m| !uses_destination(m)) {
            if !out.from.is_empty() {
                return Err((here(), UnsupportedReason::FromTaken));
            }
            out.from = c.matches.iter().map(source_from_wds).collect();
        } else if c.matches.iter().all(|m| {
            !uses_source(m) && m.destination_ips.is_empty() && m.not_destination_ips.is_empty()
        }) {
            if !out.to.is_empty() {
                return Err((here(), UnsupportedReason::ToTaken));
            }
            out.to = c
                .matches
                .iter()
                .map(|m| Operation {
                    ports: field(&m.destination_ports, &m.not_destination_ports, |p| *p),
                    ..Operation::default()
                })
                .collect();
        } else {
            return Err((here(), UnsupportedReason::MixedClause));
        }
    }
    for c in &r.clauses {
        match c.matches.as_slice() {
            [] => out.when.push(never()),
            [m] => single_match(&mut out, m),
            _ => {}
        }
    }
    Ok(out)
}

// ---- model → WDS ----

fn wds_string(s: &StringMatch) -> wds::StringMatch {
    match s {
        StringMatch::Exact(v) => wds::StringMatch::Exact(v.clone()),
        StringMatch::Prefix(v) => wds::StringMatch::Prefix(v.clone()),
        StringMatch::Suffix(v) => wds::StringMatch::Suffix(v.clone()),
        StringMatch::Presence => wds::StringMatch::Presence,
    }
}

fn wds_account(a: &ServiceAccountRef) -> wds::ServiceAccountMatch {
    wds::ServiceAccountMatch {
        namespace: a.namespace.clone(),
        service_account: a.name.clone(),
    }
}

/// A positive list with no values: the field, and whatever holds it, never
/// matches.
fn never_matches<T>(f: &Field<T>) -> bool {
    f.any.as_ref().is_some_and(Vec::is_empty)
}

/// A field as a WDS list pair (unset and empty lists are both empty).
fn lists<T, W>(f: &Field<T>, conv: impl Fn(&T) -> W) -> (Vec<W>, Vec<W>) {
    let list = |v: &Option<Vec<T>>| v.iter().flatten().map(&conv).collect();
    (list(&f.any), list(&f.none))
}

/// The L4 part of a source as a match; `None` when it can never match.
fn source_to_wds(s: &Source) -> Option<wds::Match> {
    if never_matches(&s.principals)
        || never_matches(&s.namespaces)
        || never_matches(&s.service_accounts)
        || never_matches(&s.ip_blocks)
    {
        return None;
    }
    let (principals, not_principals) = lists(&s.principals, wds_string);
    let (namespaces, not_namespaces) = lists(&s.namespaces, wds_string);
    let (service_accounts, not_service_accounts) = lists(&s.service_accounts, wds_account);
    let (source_ips, not_source_ips) = lists(&s.ip_blocks, |n| *n);
    Some(wds::Match {
        namespaces,
        not_namespaces,
        principals,
        not_principals,
        source_ips,
        not_source_ips,
        service_accounts,
        not_service_accounts,
        ..wds::Match::default()
    })
}

/// The L4 part of an operation as a match; `None` when it can never match.
fn operation_to_wds(o: &Operation) -> Option<wds::Match> {
    if never_matches(&o.ports) {
        return None;
    }
    let (destination_ports, not_destination_ports) = lists(&o.ports, |p| *p);
    Some(wds::Match {
        destination_ports,
        not_destination_ports,
        ..wds::Match::default()
    })
}

/// The clause for an any-of list of entries, or `None` when one entry's L4
/// part is empty, so the list always matches. A list whose entries can
/// never match becomes a clause of no matches, which never matches.
fn any_of(matches: impl Iterator<Item = Option<wds::Match>>) -> Option<wds::Clause> {
    let mut clause = wds::Clause::default();
    for m in matches.flatten() {
        if is_empty_match(&m) {
            return None;
        }
        clause.matches.push(m);
    }
    Some(clause)
}

/// An L4 condition as a match (`None` when it always matches), or why it
/// cannot be one.
fn condition_to_wds(c: &Condition) -> Result<Option<wds::Clause>, UnsupportedReason> {
    let mut m = wds::Match::default();
    let never = match (&c.key, &c.values) {
        (ConditionKey::SourceNamespace, ConditionValues::Strings(f)) => {
            (m.namespaces, m.not_namespaces) = lists(f, wds_string);
            never_matches(f)
        }
        (ConditionKey::SourcePrincipal, ConditionValues::Strings(f)) => {
            (m.principals, m.not_principals) = lists(f, wds_string);
            never_matches(f)
        }
        (ConditionKey::SourceIp, ConditionValues::Ips(f)) => {
            (m.source_ips, m.not_source_ips) = lists(f, |n| *n);
            never_matches(f)
        }
        (ConditionKey::DestinationIp, ConditionValues::Ips(f)) => {
            (m.destination_ips, m.not_destination_ips) = lists(f, |n| *n);
            never_matches(f)
        }
        (ConditionKey::DestinationPort, ConditionValues::Ports(f)) => {
            (m.destination_ports, m.not_destination_ports) = lists(f, |p| *p);
            never_matches(f)
        }
        _ => return Err(UnsupportedReason::ConditionValuesMismatch),
    };
    Ok(if never {
        Some(wds::Clause::default())
    } else {
        (!is_empty_match(&m)).then(|| wds::Clause { matches: vec![m] })
    })
}

/// The L4 part of a rule, istiod's way: `to`, then `from`, then each L4
/// `when` condition.
fn rule_to_wds(r: &Rule, at: &str) -> Result<wds::Rule, Unrepresentable> {
    let mut out = wds::Rule::default();
    if !r.to.is_empty() {
        out.clauses
            .extend(any_of(r.to.iter().map(operation_to_wds)));
    }
    if !r.from.is_empty() {
        out.clauses.extend(any_of(r.from.iter().map(source_to_wds)));
    }
    for (i, c) in r.when.iter().enumerate() {
        if !c.key.is_l4() {
            continue;
        }
        let clause = condition_to_wds(c).map_err(|reason| (format!("{at}.when[{i}]"), reason))?;
        out.clauses.extend(clause);
    }
    Ok(out)
}

/// Projects `policy` to the WDS policy a control plane sends node proxies:
/// istiod's L4 projection, with POLICY.md's fail-closed rules.
///
/// Scope: `root_namespace` decides `GLOBAL` (a namespace-wide policy there)
/// from `NAMESPACE`; selector (and [`Scope::Named`]) policies become
/// `WORKLOAD_SELECTOR` — except an empty selector, which selects the whole
/// namespace and is sent as such. The workloads a selector picks must list
/// the policy's `namespace/name` in their WDS `authorization_policies`.
///
/// Rules: per rule, `to` becomes one clause of port matches, `from` one
/// clause of source matches, and each L4 `when` condition (`source.ip`,
/// `source.namespace`, `source.principal`, `destination.ip`,
/// `destination.port`) a clause of one match, `notValues` going to the
/// `not_*` list. An ALLOW rule using any attribute a node proxy cannot see
/// (HTTP fields, `remoteIpBlocks`, `requestPrincipals`, other condition
/// keys) is dropped — it matches nothing at L4 — and an ALLOW left with no
/// rules allows nothing; a DENY rule keeps its L4 part alone (more
/// restrictive). A `from`/`to` list with an entry whose L4 part is empty
/// always matches and is left out (no empty match is sent).
///
/// Converted back with [`from_wds`], the result evaluates exactly like the
/// model's [`View::L4`](crate::View::L4) evaluation of `policy` (same
/// decisions, same deciding policy); only rule indices shift where ALLOW
/// rules were dropped.
///
/// # Errors
/// [`XdsPolicyError::NoWdsForm`] for AUDIT, CUSTOM, dry-run and
/// `targetRefs` policies; [`XdsPolicyError::Unsupported`] for a condition
/// whose values do not fit its key (the parser never makes one).
pub fn to_wds(
    policy: &AuthorizationPolicy,
    root_namespace: &str,
) -> Result<wds::Authorization, XdsPolicyError> {
    let no_form = |reason| XdsPolicyError::NoWdsForm {
        policy: policy.key(),
        reason,
    };
    let action = match policy.action {
        Action::Allow => wds::AuthorizationAction::Allow,
        Action::Deny => wds::AuthorizationAction::Deny,
        Action::Audit => return Err(no_form(NoWdsFormReason::Audit)),
        Action::Custom => return Err(no_form(NoWdsFormReason::Custom)),
    };
    if policy.dry_run {
        return Err(no_form(NoWdsFormReason::DryRun));
    }
    let scope = match &policy.scope {
        Scope::TargetRefs(_) => return Err(no_form(NoWdsFormReason::WaypointOnly)),
        Scope::Named => wds::AuthorizationScope::WorkloadSelector,
        Scope::Selector(labels) if !labels.is_empty() => wds::AuthorizationScope::WorkloadSelector,
        Scope::Namespace | Scope::Selector(_) if policy.namespace == root_namespace => {
            wds::AuthorizationScope::Global
        }
        Scope::Namespace | Scope::Selector(_) => wds::AuthorizationScope::Namespace,
    };
    let mut rules = Vec::with_capacity(policy.rules.len());
    for (i, r) in policy.rules.iter().enumerate() {
        // At L4 such an ALLOW rule matches nothing: leaving it out is exact.
        if action == wds::AuthorizationAction::Allow && rule_uses_l7(r) {
            continue;
        }
        rules.push(
            rule_to_wds(r, &format!("rules[{i}]")).map_err(|(field, reason)| {
                XdsPolicyError::Unsupported {
                    policy: policy.key(),
                    field,
                    reason,
                }
            })?,
        );
    }
    Ok(wds::Authorization {
        name: policy.name.clone(),
        namespace: policy.namespace.clone(),
        scope,
        action,
        rules,
    })
}
