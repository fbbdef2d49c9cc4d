//! Parsing `security.istio.io/v1` and `v1beta1` AuthorizationPolicy YAML
//! (single documents and `---` streams) into the validated model.
//!
//! Unknown fields are rejected (a typo must not silently widen a rule), as is
//! every invalid form listed in POLICY.md. Input size is capped and YAML
//! alias expansion is bounded by the parser (billion-laughs documents fail
//! with an error instead of exhausting memory).

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::Deserialize;

use crate::model::{
    Action, AuthorizationPolicy, Condition, ConditionKey, ConditionValues, Field, Operation, Rule,
    Scope, ServiceAccountRef, Source, StringMatch, TargetRef,
};

/// The largest YAML input [`parse_policies`] reads.
pub const MAX_INPUT_BYTES: usize = 4 * 1024 * 1024;

/// Why policy YAML was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The input exceeds [`MAX_INPUT_BYTES`].
    #[error("policy input is {size} bytes; at most {limit} are read")]
    TooLarge {
        /// Input size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A document is not valid YAML or does not have the expected shape
    /// (including unknown fields and wrong types).
    #[error("document {document}: {message}")]
    Yaml {
        /// Position of the document in the stream (0-based).
        document: usize,
        /// What the YAML parser said.
        message: String,
    },
    /// A document is not an AuthorizationPolicy of a supported version.
    #[error(
        "document {document}: expected security.istio.io/v1 or v1beta1 AuthorizationPolicy, found {api_version}/{kind}"
    )]
    WrongKind {
        /// Position of the document in the stream.
        document: usize,
        /// Its apiVersion.
        api_version: String,
        /// Its kind.
        kind: String,
    },
    /// A policy parsed but breaks a rule.
    #[error("policy {policy}: {field}: {reason}")]
    Invalid {
        /// `namespace/name`.
        policy: String,
        /// Path to the offending field, e.g. `spec.rules[0].from[1].source.ipBlocks[2]`.
        field: String,
        /// What is wrong.
        reason: InvalidReason,
    },
}

/// What is wrong with a field of a policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidReason {
    /// `metadata.name` is missing or empty.
    #[error("a name is required")]
    MissingName,
    /// A DENY or CUSTOM policy has no rules (it would match nothing while
    /// looking like it denies).
    #[error("a {0:?} policy needs at least one rule")]
    NoRules(Action),
    /// `from: []` or `to: []`.
    #[error("must not be an empty list")]
    EmptyList,
    /// A `from` entry without `source`, or a `source` with no field set.
    #[error("source must set at least one field")]
    EmptySource,
    /// A `to` entry without `operation`, or an `operation` with no field set.
    #[error("operation must set at least one field")]
    EmptyOperation,
    /// A condition with neither `values` nor `notValues`.
    #[error("condition needs values or notValues")]
    ConditionWithoutValues,
    /// A condition key Istio does not define.
    #[error("unknown condition key {0:?}")]
    UnknownConditionKey(String),
    /// `provider` on a non-CUSTOM policy.
    #[error("provider is only allowed with action CUSTOM")]
    ProviderWithoutCustom,
    /// CUSTOM without `provider.name`.
    #[error("action CUSTOM needs provider.name")]
    CustomWithoutProvider,
    /// `selector` together with `targetRef(s)`.
    #[error("selector and targetRefs are mutually exclusive")]
    SelectorAndTargetRefs,
    /// `serviceAccounts` together with `principals` or `namespaces`.
    #[error("serviceAccounts cannot be combined with principals or namespaces")]
    ServiceAccountsCombined,
    /// A malformed service account reference.
    #[error("invalid service account {0:?} (want ns/sa or sa)")]
    BadServiceAccount(String),
    /// An IP or CIDR that does not parse.
    #[error("invalid IP or CIDR {0:?}")]
    BadIp(String),
    /// A port that is not 1–65535.
    #[error("invalid port {0:?}")]
    BadPort(String),
    /// `*` somewhere other than the start or the end, or an empty string.
    #[error("invalid pattern {0:?}: '*' may only stand at the start or the end")]
    BadPattern(String),
    /// A `targetRefs` kind a policy cannot attach to.
    #[error("targetRefs kind {0:?} is not Gateway, GatewayClass, Service or ServiceEntry")]
    BadTargetKind(String),
}

// ---- wire shapes (what users write) ----

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    api_version: String,
    kind: String,
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    spec: Spec,
}

#[derive(Deserialize, Default)]
struct Metadata {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Spec {
    selector: Option<Selector>,
    target_ref: Option<WireTargetRef>,
    target_refs: Option<Vec<WireTargetRef>>,
    action: Option<WireAction>,
    provider: Option<Provider>,
    rules: Option<Vec<WireRule>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Selector {
    #[serde(default)]
    match_labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireTargetRef {
    #[serde(default)]
    group: String,
    kind: String,
    name: String,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "UPPERCASE")]
enum WireAction {
    Allow,
    Deny,
    Audit,
    Custom,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Provider {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireRule {
    from: Option<Vec<From>>,
    to: Option<Vec<To>>,
    when: Option<Vec<When>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct From {
    source: Option<WireSource>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct To {
    operation: Option<WireOperation>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WireSource {
    principals: Option<Vec<String>>,
    not_principals: Option<Vec<String>>,
    request_principals: Option<Vec<String>>,
    not_request_principals: Option<Vec<String>>,
    namespaces: Option<Vec<String>>,
    not_namespaces: Option<Vec<String>>,
    service_accounts: Option<Vec<String>>,
    not_service_accounts: Option<Vec<String>>,
    ip_blocks: Option<Vec<String>>,
    not_ip_blocks: Option<Vec<String>>,
    remote_ip_blocks: Option<Vec<String>>,
    not_remote_ip_blocks: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WireOperation {
    hosts: Option<Vec<String>>,
    not_hosts: Option<Vec<String>>,
    ports: Option<Vec<PortValue>>,
    not_ports: Option<Vec<PortValue>>,
    methods: Option<Vec<String>>,
    not_methods: Option<Vec<String>>,
    paths: Option<Vec<String>>,
    not_paths: Option<Vec<String>>,
}

/// Istio types ports as strings; YAML users often write numbers.
#[derive(Deserialize)]
#[serde(untagged)]
enum PortValue {
    Number(i64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct When {
    key: String,
    values: Option<Vec<String>>,
    not_values: Option<Vec<String>>,
}

// ---- parsing ----

/// Parses a YAML stream of AuthorizationPolicies. Documents that are empty
/// are skipped. `default_namespace` is used when `metadata.namespace` is
/// absent.
///
/// # Errors
/// The first [`PolicyError`] met; nothing is returned on error, so a caller
/// keeps its last good policy set.
pub fn parse_policies(
    yaml: &str,
    default_namespace: &str,
) -> Result<Vec<AuthorizationPolicy>, PolicyError> {
    if yaml.len() > MAX_INPUT_BYTES {
        return Err(PolicyError::TooLarge {
            size: yaml.len(),
            limit: MAX_INPUT_BYTES,
        });
    }
    let mut out = Vec::new();
    for (document, de) in serde_norway::Deserializer::from_str(yaml).enumerate() {
        let value = serde_norway::Value::deserialize(de).map_err(|e| PolicyError::Yaml {
            document,
            message: e.to_string(),
        })?;
        if value.is_null() {
            continue;
        }
        let doc: Document = serde_norway::from_value(value).map_err(|e| PolicyError::Yaml {
            document,
            message: e.to_string(),
        })?;
        let group_ok = matches!(
            doc.api_version.as_str(),
            "security.istio.io/v1" | "security.istio.io/v1beta1"
        );
        if !group_ok || doc.kind != "AuthorizationPolicy" {
            return Err(PolicyError::WrongKind {
                document,
                api_version: doc.api_version,
                kind: doc.kind,
            });
        }
        out.push(validate(doc, default_namespace)?);
    }
    Ok(out)
}

struct Ctx {
    policy: String,
}

impl Ctx {
    fn err(&self, field: impl Into<String>, reason: InvalidReason) -> PolicyError {
        PolicyError::Invalid {
            policy: self.policy.clone(),
            field: field.into(),
            reason,
        }
    }
}

fn validate(doc: Document, default_namespace: &str) -> Result<AuthorizationPolicy, PolicyError> {
    let namespace = doc
        .metadata
        .namespace
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| default_namespace.to_owned());
    let ctx = Ctx {
        policy: format!("{namespace}/{}", doc.metadata.name),
    };
    if doc.metadata.name.is_empty() {
        return Err(ctx.err("metadata.name", InvalidReason::MissingName));
    }
    let spec = doc.spec;
    let action = match spec.action.unwrap_or(WireAction::Allow) {
        WireAction::Allow => Action::Allow,
        WireAction::Deny => Action::Deny,
        WireAction::Audit => Action::Audit,
        WireAction::Custom => Action::Custom,
    };
    let provider = match (&spec.provider, action) {
        (Some(_), a) if a != Action::Custom => {
            return Err(ctx.err("spec.provider", InvalidReason::ProviderWithoutCustom));
        }
        (Some(p), _) if !p.name.is_empty() => Some(p.name.clone()),
        (_, Action::Custom) => {
            return Err(ctx.err("spec.provider.name", InvalidReason::CustomWithoutProvider));
        }
        _ => None,
    };
    let mut refs = spec.target_refs.unwrap_or_default();
    refs.extend(spec.target_ref);
    let scope = match (spec.selector, refs.is_empty()) {
        (Some(_), false) => {
            return Err(ctx.err("spec.selector", InvalidReason::SelectorAndTargetRefs));
        }
        (Some(sel), true) => Scope::Selector(sel.match_labels),
        (None, true) => Scope::Namespace,
        (None, false) => {
            let mut out = Vec::with_capacity(refs.len());
            for (i, r) in refs.into_iter().enumerate() {
                if !matches!(
                    r.kind.as_str(),
                    "Gateway" | "GatewayClass" | "Service" | "ServiceEntry"
                ) {
                    return Err(ctx.err(
                        format!("spec.targetRefs[{i}].kind"),
                        InvalidReason::BadTargetKind(r.kind),
                    ));
                }
                let _ = r.namespace;
                out.push(TargetRef {
                    group: r.group,
                    kind: r.kind,
                    name: r.name,
                });
            }
            Scope::TargetRefs(out)
        }
    };
    let wire_rules = spec.rules.unwrap_or_default();
    if wire_rules.is_empty() && matches!(action, Action::Deny | Action::Custom) {
        return Err(ctx.err("spec.rules", InvalidReason::NoRules(action)));
    }
    let mut rules = Vec::with_capacity(wire_rules.len());
    for (i, r) in wire_rules.into_iter().enumerate() {
        rules.push(rule(&ctx, &format!("spec.rules[{i}]"), r, &namespace)?);
    }
    let dry_run = doc
        .metadata
        .annotations
        .get("istio.io/dry-run")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    Ok(AuthorizationPolicy {
        name: doc.metadata.name,
        namespace,
        scope,
        action,
        provider,
        rules,
        dry_run,
    })
}

fn rule(ctx: &Ctx, at: &str, r: WireRule, policy_ns: &str) -> Result<Rule, PolicyError> {
    let mut out = Rule::default();
    if let Some(from) = r.from {
        if from.is_empty() {
            return Err(ctx.err(format!("{at}.from"), InvalidReason::EmptyList));
        }
        for (i, f) in from.into_iter().enumerate() {
            let here = format!("{at}.from[{i}].source");
            let s = f
                .source
                .ok_or_else(|| ctx.err(&here, InvalidReason::EmptySource))?;
            out.from.push(source(ctx, &here, s, policy_ns)?);
        }
    }
    if let Some(to) = r.to {
        if to.is_empty() {
            return Err(ctx.err(format!("{at}.to"), InvalidReason::EmptyList));
        }
        for (i, t) in to.into_iter().enumerate() {
            let here = format!("{at}.to[{i}].operation");
            let o = t
                .operation
                .ok_or_else(|| ctx.err(&here, InvalidReason::EmptyOperation))?;
            out.to.push(operation(ctx, &here, o)?);
        }
    }
    for (i, w) in r.when.unwrap_or_default().into_iter().enumerate() {
        out.when
            .push(condition(ctx, &format!("{at}.when[{i}]"), w)?);
    }
    Ok(out)
}

fn pattern(ctx: &Ctx, at: &str, s: &str) -> Result<StringMatch, PolicyError> {
    let bad = || ctx.err(at, InvalidReason::BadPattern(s.to_owned()));
    if s.is_empty() {
        return Err(bad());
    }
    if s == "*" {
        return Ok(StringMatch::Presence);
    }
    let m = if let Some(rest) = s.strip_prefix('*') {
        StringMatch::Suffix(rest.to_owned())
    } else if let Some(rest) = s.strip_suffix('*') {
        StringMatch::Prefix(rest.to_owned())
    } else {
        StringMatch::Exact(s.to_owned())
    };
    let inner = match &m {
        StringMatch::Exact(x) | StringMatch::Prefix(x) | StringMatch::Suffix(x) => x,
        StringMatch::Presence => return Ok(m),
    };
    if inner.contains('*') {
        return Err(bad());
    }
    Ok(m)
}

fn patterns(
    ctx: &Ctx,
    at: &str,
    name: &str,
    values: Option<Vec<String>>,
    strip_spiffe: bool,
) -> Result<Option<Vec<StringMatch>>, PolicyError> {
    values
        .map(|vs| {
            vs.iter()
                .enumerate()
                .map(|(i, v)| {
                    let v = if strip_spiffe {
                        v.strip_prefix("spiffe://").unwrap_or(v)
                    } else {
                        v
                    };
                    pattern(ctx, &format!("{at}.{name}[{i}]"), v)
                })
                .collect()
        })
        .transpose()
}

fn string_field(
    ctx: &Ctx,
    at: &str,
    (name, any): (&str, Option<Vec<String>>),
    (not_name, none): (&str, Option<Vec<String>>),
    strip_spiffe: bool,
) -> Result<Field<StringMatch>, PolicyError> {
    Ok(Field {
        any: patterns(ctx, at, name, any, strip_spiffe)?,
        none: patterns(ctx, at, not_name, none, strip_spiffe)?,
    })
}

fn ip(ctx: &Ctx, at: &str, s: &str) -> Result<IpNet, PolicyError> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| ctx.err(at, InvalidReason::BadIp(s.to_owned())))
}

fn ips(
    ctx: &Ctx,
    at: &str,
    name: &str,
    v: Option<Vec<String>>,
) -> Result<Option<Vec<IpNet>>, PolicyError> {
    v.map(|vs| {
        vs.iter()
            .enumerate()
            .map(|(i, s)| ip(ctx, &format!("{at}.{name}[{i}]"), s))
            .collect()
    })
    .transpose()
}

fn port_text(ctx: &Ctx, at: &str, s: &str) -> Result<u16, PolicyError> {
    match s.trim().parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(ctx.err(at, InvalidReason::BadPort(s.to_owned()))),
    }
}

fn ports(
    ctx: &Ctx,
    at: &str,
    name: &str,
    v: Option<Vec<PortValue>>,
) -> Result<Option<Vec<u16>>, PolicyError> {
    v.map(|vs| {
        vs.iter()
            .enumerate()
            .map(|(i, p)| {
                let here = format!("{at}.{name}[{i}]");
                match p {
                    PortValue::Number(n) => u16::try_from(*n)
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or_else(|| ctx.err(&here, InvalidReason::BadPort(n.to_string()))),
                    PortValue::Text(s) => port_text(ctx, &here, s),
                }
            })
            .collect()
    })
    .transpose()
}

fn service_accounts(
    ctx: &Ctx,
    at: &str,
    name: &str,
    v: Option<Vec<String>>,
    policy_ns: &str,
) -> Result<Option<Vec<ServiceAccountRef>>, PolicyError> {
    v.map(|vs| {
        vs.iter()
            .enumerate()
            .map(|(i, s)| {
                let bad = || {
                    ctx.err(
                        format!("{at}.{name}[{i}]"),
                        InvalidReason::BadServiceAccount(s.clone()),
                    )
                };
                let (ns, sa) = match s.split_once('/') {
                    Some((ns, sa)) => (ns, sa),
                    None => (policy_ns, s.as_str()),
                };
                if ns.is_empty() || sa.is_empty() || sa.contains('/') || s.contains('*') {
                    return Err(bad());
                }
                Ok(ServiceAccountRef {
                    namespace: ns.to_owned(),
                    name: sa.to_owned(),
                })
            })
            .collect()
    })
    .transpose()
}

fn source(ctx: &Ctx, at: &str, s: WireSource, policy_ns: &str) -> Result<Source, PolicyError> {
    let sa_set = s.service_accounts.is_some() || s.not_service_accounts.is_some();
    let combined = s.principals.is_some()
        || s.not_principals.is_some()
        || s.namespaces.is_some()
        || s.not_namespaces.is_some();
    if sa_set && combined {
        return Err(ctx.err(
            format!("{at}.serviceAccounts"),
            InvalidReason::ServiceAccountsCombined,
        ));
    }
    let out = Source {
        principals: string_field(
            ctx,
            at,
            ("principals", s.principals),
            ("notPrincipals", s.not_principals),
            true,
        )?,
        request_principals: string_field(
            ctx,
            at,
            ("requestPrincipals", s.request_principals),
            ("notRequestPrincipals", s.not_request_principals),
            false,
        )?,
        namespaces: string_field(
            ctx,
            at,
            ("namespaces", s.namespaces),
            ("notNamespaces", s.not_namespaces),
            false,
        )?,
        service_accounts: Field {
            any: service_accounts(ctx, at, "serviceAccounts", s.service_accounts, policy_ns)?,
            none: service_accounts(
                ctx,
                at,
                "notServiceAccounts",
                s.not_service_accounts,
                policy_ns,
            )?,
        },
        ip_blocks: Field {
            any: ips(ctx, at, "ipBlocks", s.ip_blocks)?,
            none: ips(ctx, at, "notIpBlocks", s.not_ip_blocks)?,
        },
        remote_ip_blocks: Field {
            any: ips(ctx, at, "remoteIpBlocks", s.remote_ip_blocks)?,
            none: ips(ctx, at, "notRemoteIpBlocks", s.not_remote_ip_blocks)?,
        },
    };
    if out == Source::default() {
        return Err(ctx.err(at, InvalidReason::EmptySource));
    }
    Ok(out)
}

fn operation(ctx: &Ctx, at: &str, o: WireOperation) -> Result<Operation, PolicyError> {
    let out = Operation {
        hosts: string_field(
            ctx,
            at,
            ("hosts", o.hosts),
            ("notHosts", o.not_hosts),
            false,
        )?,
        ports: Field {
            any: ports(ctx, at, "ports", o.ports)?,
            none: ports(ctx, at, "notPorts", o.not_ports)?,
        },
        methods: string_field(
            ctx,
            at,
            ("methods", o.methods),
            ("notMethods", o.not_methods),
            false,
        )?,
        paths: string_field(
            ctx,
            at,
            ("paths", o.paths),
            ("notPaths", o.not_paths),
            false,
        )?,
    };
    if out == Operation::default() {
        return Err(ctx.err(at, InvalidReason::EmptyOperation));
    }
    Ok(out)
}

fn condition_key(key: &str) -> Option<ConditionKey> {
    Some(match key {
        "source.ip" => ConditionKey::SourceIp,
        "remote.ip" => ConditionKey::RemoteIp,
        "source.namespace" => ConditionKey::SourceNamespace,
        "source.serviceAccount" => ConditionKey::SourceServiceAccount,
        "source.principal" => ConditionKey::SourcePrincipal,
        "request.auth.principal" => ConditionKey::RequestAuthPrincipal,
        "request.auth.audiences" => ConditionKey::RequestAuthAudiences,
        "request.auth.presenter" => ConditionKey::RequestAuthPresenter,
        "destination.ip" => ConditionKey::DestinationIp,
        "destination.port" => ConditionKey::DestinationPort,
        "connection.sni" => ConditionKey::ConnectionSni,
        _ => {
            if let Some(rest) = key.strip_prefix("request.headers[") {
                let name = rest.strip_suffix(']')?;
                if name.is_empty() || name.contains(['[', ']']) {
                    return None;
                }
                return Some(ConditionKey::RequestHeader(name.to_ascii_lowercase()));
            }
            let rest = key.strip_prefix("request.auth.claims")?;
            // One or more `[segment]`s.
            let mut path = Vec::new();
            let mut rest = rest;
            while let Some(r) = rest.strip_prefix('[') {
                let end = r.find(']')?;
                let seg = &r[..end];
                if seg.is_empty() || seg.contains('[') {
                    return None;
                }
                path.push(seg.to_owned());
                rest = &r[end + 1..];
            }
            if path.is_empty() || !rest.is_empty() {
                return None;
            }
            ConditionKey::RequestAuthClaims(path)
        }
    })
}

fn condition(ctx: &Ctx, at: &str, w: When) -> Result<Condition, PolicyError> {
    let key = condition_key(&w.key).ok_or_else(|| {
        ctx.err(
            format!("{at}.key"),
            InvalidReason::UnknownConditionKey(w.key.clone()),
        )
    })?;
    if w.values.is_none() && w.not_values.is_none() {
        return Err(ctx.err(at, InvalidReason::ConditionWithoutValues));
    }
    let values = match key {
        ConditionKey::SourceIp | ConditionKey::RemoteIp | ConditionKey::DestinationIp => {
            ConditionValues::Ips(Field {
                any: ips(ctx, at, "values", w.values)?,
                none: ips(ctx, at, "notValues", w.not_values)?,
            })
        }
        ConditionKey::DestinationPort => {
            let conv = |name: &str, v: Option<Vec<String>>| {
                v.map(|vs| {
                    vs.iter()
                        .enumerate()
                        .map(|(i, s)| port_text(ctx, &format!("{at}.{name}[{i}]"), s))
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()
            };
            ConditionValues::Ports(Field {
                any: conv("values", w.values)?,
                none: conv("notValues", w.not_values)?,
            })
        }
        ConditionKey::SourcePrincipal => ConditionValues::Strings(string_field(
            ctx,
            at,
            ("values", w.values),
            ("notValues", w.not_values),
            true,
        )?),
        _ => ConditionValues::Strings(string_field(
            ctx,
            at,
            ("values", w.values),
            ("notValues", w.not_values),
            false,
        )?),
    };
    Ok(Condition { key, values })
}
