//! Parsing `gateway.networking.k8s.io/v1` (and `v1beta1`) HTTPRoute YAML
//! into the validated model, with the Gateway API's own validation rules
//! (CRD schema and CEL) enforced here, since no API server checked the input.

use std::collections::HashSet;
use std::time::SystemTime;

use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::model::{
    HeaderMatch, HttpBackendRef, HttpRoute, Method, ParentRef, PathMatch, PathModifier,
    QueryParamMatch, RegexMatch, RouteFilter, RouteMatch, RouteRetry, RouteRule, RouteTimeouts,
    ValueMatch,
};
use super::parse_filter::{object_ref, parse_filters};
use super::wire;
use super::{RouteError, RouteInvalid};
use crate::duration;
use crate::parse::MAX_INPUT_BYTES;

const MAX_PARENT_REFS: usize = 32;
const MAX_HOSTNAMES: usize = 16;
const MAX_RULES: usize = 16;
const MAX_MATCHES: usize = 64;
const MAX_TOTAL_MATCHES: usize = 128;
pub(super) const MAX_CONDITIONS: usize = 16;
pub(super) const MAX_FILTERS: usize = 16;
const MAX_BACKENDS: usize = 16;
pub(super) const MAX_PATH_LEN: usize = 1024;
const MAX_NAME_LEN: usize = 256;
pub(super) const MAX_HEADER_VALUE_LEN: usize = 4096;
const MAX_QUERY_VALUE_LEN: usize = 1024;
const MAX_WEIGHT: i64 = 1_000_000;

/// Parses a YAML stream of HTTPRoutes (`---`-separated; empty documents are
/// skipped). A route without `metadata.namespace` is in `default`.
///
/// Matches default to PathPrefix `/`; a route without `rules` gets the
/// Gateway API default rule (PathPrefix `/`, no backends — every request
/// gets a 500). Header names are lower-cased; of several header or query
/// conditions with an equivalent name only the first is kept. Filters of
/// type `CORS`, `ExtensionRef` and `ExternalAuth`, redirects and rewrites
/// on a backend, and `sessionPersistence` are not implemented and are
/// rejected rather than ignored.
///
/// # Errors
/// The first [`RouteError`] met, naming the route and the field; nothing is
/// returned on error, so a caller keeps its last good route set. Inputs
/// over [`MAX_INPUT_BYTES`], YAML alias bombs and over-deep nesting are
/// refused before any allocation proportional to their expansion.
pub fn parse_http_routes(yaml: &str) -> Result<Vec<HttpRoute>, RouteError> {
    if yaml.len() > MAX_INPUT_BYTES {
        return Err(RouteError::TooLarge {
            size: yaml.len(),
            limit: MAX_INPUT_BYTES,
        });
    }
    let mut out = Vec::new();
    for (document, de) in serde_norway::Deserializer::from_str(yaml).enumerate() {
        let value = serde_norway::Value::deserialize(de).map_err(|e| RouteError::Yaml {
            document,
            message: e.to_string(),
        })?;
        if value.is_null() {
            continue;
        }
        let text = |key: &str| value.get(key).and_then(|v| v.as_str()).unwrap_or("");
        let (api_version, kind) = (text("apiVersion"), text("kind"));
        let group_ok = matches!(
            api_version,
            "gateway.networking.k8s.io/v1" | "gateway.networking.k8s.io/v1beta1"
        );
        if !group_ok || kind != "HTTPRoute" {
            return Err(RouteError::WrongKind {
                document,
                api_version: api_version.to_owned(),
                kind: kind.to_owned(),
            });
        }
        let label = route_label(&value).unwrap_or_else(|| format!("document {document}"));
        let doc: wire::Document =
            serde_path_to_error::deserialize(value).map_err(|e| RouteError::Schema {
                route: label,
                field: e.path().to_string(),
                message: e.inner().to_string(),
            })?;
        out.push(route(doc)?);
    }
    Ok(out)
}

/// `namespace/name` read loosely from a document that may not have the
/// right shape.
fn route_label(value: &serde_norway::Value) -> Option<String> {
    let meta = value.get("metadata")?;
    let name = meta.get("name")?.as_str()?;
    let ns = meta
        .get("namespace")
        .and_then(|n| n.as_str())
        .filter(|n| !n.is_empty())
        .unwrap_or("default");
    Some(format!("{ns}/{name}"))
}

pub(super) struct Ctx {
    pub(super) route: String,
    pub(super) namespace: String,
}

impl Ctx {
    pub(super) fn err(&self, field: impl Into<String>, reason: RouteInvalid) -> RouteError {
        RouteError::Invalid {
            route: self.route.clone(),
            field: field.into(),
            reason,
        }
    }

    pub(super) fn max<T>(&self, at: &str, list: &[T], limit: usize) -> Result<(), RouteError> {
        if list.len() > limit {
            return Err(self.err(
                at,
                RouteInvalid::TooMany {
                    len: list.len(),
                    limit,
                },
            ));
        }
        Ok(())
    }

    pub(super) fn port(&self, at: &str, p: i64) -> Result<u16, RouteError> {
        u16::try_from(p)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| self.err(at, RouteInvalid::BadPort(p)))
    }
}

fn route(doc: wire::Document) -> Result<HttpRoute, RouteError> {
    let namespace = doc
        .metadata
        .namespace
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".to_owned());
    let name = doc.metadata.name.unwrap_or_default();
    let ctx = Ctx {
        route: format!("{namespace}/{name}"),
        namespace: namespace.clone(),
    };
    if name.is_empty() {
        return Err(ctx.err("metadata.name", RouteInvalid::Required));
    }
    let creation_timestamp = doc
        .metadata
        .creation_timestamp
        .map(|t| {
            OffsetDateTime::parse(&t, &Rfc3339)
                .map(SystemTime::from)
                .map_err(|_| {
                    ctx.err(
                        "metadata.creationTimestamp",
                        RouteInvalid::BadTimestamp(t.clone()),
                    )
                })
        })
        .transpose()?;
    let spec = doc
        .spec
        .ok_or_else(|| ctx.err("spec", RouteInvalid::Required))?;

    let wire_parents = spec.parent_refs.unwrap_or_default();
    ctx.max("spec.parentRefs", &wire_parents, MAX_PARENT_REFS)?;
    let mut parent_refs = Vec::with_capacity(wire_parents.len());
    for (i, p) in wire_parents.into_iter().enumerate() {
        let at = format!("spec.parentRefs[{i}]");
        if p.name.is_empty() {
            return Err(ctx.err(format!("{at}.name"), RouteInvalid::Required));
        }
        parent_refs.push(ParentRef {
            group: p
                .group
                .unwrap_or_else(|| "gateway.networking.k8s.io".to_owned()),
            kind: p.kind.unwrap_or_else(|| "Gateway".to_owned()),
            namespace: p.namespace,
            name: p.name,
            section_name: p.section_name,
            port: p
                .port
                .map(|n| ctx.port(&format!("{at}.port"), n))
                .transpose()?,
        });
    }

    let wire_hosts = spec.hostnames.unwrap_or_default();
    ctx.max("spec.hostnames", &wire_hosts, MAX_HOSTNAMES)?;
    let mut hostnames: Vec<String> = Vec::with_capacity(wire_hosts.len());
    for (i, h) in wire_hosts.into_iter().enumerate() {
        if !valid_hostname(&h, true) {
            return Err(ctx.err(format!("spec.hostnames[{i}]"), RouteInvalid::BadHostname(h)));
        }
        if !hostnames.contains(&h) {
            hostnames.push(h);
        }
    }

    let rules = match spec.rules {
        None => vec![RouteRule {
            name: None,
            matches: vec![RouteMatch::default()],
            filters: Vec::new(),
            backend_refs: Vec::new(),
            timeouts: None,
            retry: None,
        }],
        Some(wire_rules) => {
            if wire_rules.is_empty() {
                return Err(ctx.err("spec.rules", RouteInvalid::EmptyList));
            }
            ctx.max("spec.rules", &wire_rules, MAX_RULES)?;
            let total: usize = wire_rules
                .iter()
                .map(|r| r.matches.as_ref().map_or(1, |m| m.len().max(1)))
                .sum();
            if total > MAX_TOTAL_MATCHES {
                return Err(ctx.err(
                    "spec.rules",
                    RouteInvalid::TooMany {
                        len: total,
                        limit: MAX_TOTAL_MATCHES,
                    },
                ));
            }
            let mut names = HashSet::new();
            let mut rules = Vec::with_capacity(wire_rules.len());
            for (i, r) in wire_rules.into_iter().enumerate() {
                let at = format!("spec.rules[{i}]");
                if let Some(n) = &r.name {
                    if n.is_empty() {
                        return Err(ctx.err(format!("{at}.name"), RouteInvalid::Required));
                    }
                    if !names.insert(n.clone()) {
                        return Err(ctx.err(
                            format!("{at}.name"),
                            RouteInvalid::DuplicateRuleName(n.clone()),
                        ));
                    }
                }
                rules.push(rule(&ctx, &at, r)?);
            }
            rules
        }
    };

    Ok(HttpRoute {
        name,
        namespace,
        creation_timestamp,
        parent_refs,
        hostnames,
        rules,
    })
}

/// A lower-case RFC 1123 hostname, optionally `*.`-prefixed when
/// `wildcard`, and not an IPv4 address.
pub(super) fn valid_hostname(h: &str, wildcard: bool) -> bool {
    let body = match h.strip_prefix("*.") {
        Some(rest) if wildcard => rest,
        _ => h,
    };
    if body.is_empty() || h.len() > 253 || body.parse::<std::net::Ipv4Addr>().is_ok() {
        return false;
    }
    body.split('.').all(|label| {
        let b = label.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
    })
}

fn rule(ctx: &Ctx, at: &str, r: wire::Rule) -> Result<RouteRule, RouteError> {
    let wire_matches = r.matches.unwrap_or_default();
    ctx.max(&format!("{at}.matches"), &wire_matches, MAX_MATCHES)?;
    let mut matches = Vec::with_capacity(wire_matches.len().max(1));
    for (i, m) in wire_matches.into_iter().enumerate() {
        matches.push(route_match(ctx, &format!("{at}.matches[{i}]"), m)?);
    }
    if matches.is_empty() {
        matches.push(RouteMatch::default());
    }
    let filters = parse_filters(ctx, &format!("{at}.filters"), r.filters, false)?;
    let single_prefix_match =
        matches.len() == 1 && matches!(matches[0].path, PathMatch::PathPrefix(_));
    for (i, f) in filters.iter().enumerate() {
        let path = match f {
            RouteFilter::RequestRedirect(rd) => rd.path.as_ref(),
            RouteFilter::UrlRewrite(rw) => rw.path.as_ref(),
            _ => None,
        };
        if matches!(path, Some(PathModifier::ReplacePrefixMatch(_))) && !single_prefix_match {
            return Err(ctx.err(
                format!("{at}.filters[{i}]"),
                RouteInvalid::PrefixRewriteWithoutPrefixMatch,
            ));
        }
    }

    let wire_backends = r.backend_refs.unwrap_or_default();
    let backends_at = format!("{at}.backendRefs");
    ctx.max(&backends_at, &wire_backends, MAX_BACKENDS)?;
    let redirect_at = filters
        .iter()
        .position(|f| matches!(f, RouteFilter::RequestRedirect(_)));
    if let (false, Some(i)) = (wire_backends.is_empty(), redirect_at) {
        return Err(ctx.err(
            format!("{at}.filters[{i}]"),
            RouteInvalid::RedirectWithBackends,
        ));
    }
    let mut backend_refs = Vec::with_capacity(wire_backends.len());
    for (i, b) in wire_backends.into_iter().enumerate() {
        let here = format!("{backends_at}[{i}]");
        let weight = match b.weight {
            None => 1,
            Some(w) if (0..=MAX_WEIGHT).contains(&w) => w as u32,
            Some(w) => return Err(ctx.err(format!("{here}.weight"), RouteInvalid::BadWeight(w))),
        };
        let backend = object_ref(
            ctx,
            &here,
            wire::ObjectRef {
                group: b.group,
                kind: b.kind,
                name: b.name,
                namespace: b.namespace,
                port: b.port,
            },
        )?;
        backend_refs.push(HttpBackendRef {
            backend,
            weight,
            filters: parse_filters(ctx, &format!("{here}.filters"), b.filters, true)?,
        });
    }

    let timeouts = r
        .timeouts
        .map(|t| timeouts(ctx, &format!("{at}.timeouts"), t))
        .transpose()?;
    Ok(RouteRule {
        name: r.name,
        matches,
        filters,
        backend_refs,
        timeouts,
        retry: r
            .retry
            .map(|t| retry(ctx, &format!("{at}.retry"), t))
            .transpose()?,
    })
}

fn retry(ctx: &Ctx, at: &str, r: wire::Retry) -> Result<RouteRetry, RouteError> {
    let mut codes = Vec::new();
    for (i, c) in r.codes.unwrap_or_default().into_iter().enumerate() {
        match u16::try_from(c) {
            Ok(code) if (400..=599).contains(&code) => {
                if !codes.contains(&code) {
                    codes.push(code);
                }
            }
            _ => {
                return Err(ctx.err(format!("{at}.codes[{i}]"), RouteInvalid::BadStatusCode(c)));
            }
        }
    }
    let attempts = r
        .attempts
        .map(|n| {
            u32::try_from(n)
                .map_err(|_| ctx.err(format!("{at}.attempts"), RouteInvalid::BadAttempts(n)))
        })
        .transpose()?;
    let backoff = r
        .backoff
        .map(|s| {
            duration::parse_gateway(&s)
                .ok_or_else(|| ctx.err(format!("{at}.backoff"), RouteInvalid::BadDuration(s)))
        })
        .transpose()?;
    Ok(RouteRetry {
        codes,
        attempts,
        backoff,
    })
}

fn timeouts(ctx: &Ctx, at: &str, t: wire::Timeouts) -> Result<RouteTimeouts, RouteError> {
    let parse = |name: &str, v: Option<String>| {
        v.map(|s| {
            duration::parse_gateway(&s)
                .ok_or_else(|| ctx.err(format!("{at}.{name}"), RouteInvalid::BadDuration(s)))
        })
        .transpose()
    };
    let out = RouteTimeouts {
        request: parse("request", t.request)?,
        backend_request: parse("backendRequest", t.backend_request)?,
    };
    if let (Some(req), Some(backend)) = (out.request, out.backend_request)
        && !req.is_zero()
        && backend > req
    {
        return Err(ctx.err(
            format!("{at}.backendRequest"),
            RouteInvalid::BackendTimeoutTooLong,
        ));
    }
    Ok(out)
}

fn route_match(ctx: &Ctx, at: &str, m: wire::Match) -> Result<RouteMatch, RouteError> {
    let path = match m.path {
        None => PathMatch::PathPrefix("/".to_owned()),
        Some(p) => {
            let here = format!("{at}.path");
            let value = p.value.unwrap_or_else(|| "/".to_owned());
            match p.kind.as_deref().unwrap_or("PathPrefix") {
                "Exact" => PathMatch::Exact(match_path(ctx, &format!("{here}.value"), value)?),
                "PathPrefix" => {
                    PathMatch::PathPrefix(match_path(ctx, &format!("{here}.value"), value)?)
                }
                "RegularExpression" => {
                    PathMatch::RegularExpression(regex(ctx, &format!("{here}.value"), &value)?)
                }
                other => {
                    return Err(ctx.err(
                        format!("{here}.type"),
                        RouteInvalid::UnsupportedValue(other.to_owned()),
                    ));
                }
            }
        }
    };
    let mut headers: Vec<HeaderMatch> = Vec::new();
    let wire_headers = m.headers.unwrap_or_default();
    ctx.max(&format!("{at}.headers"), &wire_headers, MAX_CONDITIONS)?;
    for (i, h) in wire_headers.into_iter().enumerate() {
        let here = format!("{at}.headers[{i}]");
        let name = token(ctx, &here, &h.name)?.to_ascii_lowercase();
        let value = value_match(ctx, &here, h.kind, h.value, MAX_HEADER_VALUE_LEN)?;
        if !headers.iter().any(|x| x.name == name) {
            headers.push(HeaderMatch { name, value });
        }
    }
    let mut query_params: Vec<QueryParamMatch> = Vec::new();
    let wire_query = m.query_params.unwrap_or_default();
    ctx.max(&format!("{at}.queryParams"), &wire_query, MAX_CONDITIONS)?;
    for (i, q) in wire_query.into_iter().enumerate() {
        let here = format!("{at}.queryParams[{i}]");
        let name = token(ctx, &here, &q.name)?.to_owned();
        let value = value_match(ctx, &here, q.kind, q.value, MAX_QUERY_VALUE_LEN)?;
        if !query_params.iter().any(|x| x.name == name) {
            query_params.push(QueryParamMatch { name, value });
        }
    }
    let method = m
        .method
        .map(|s| {
            Method::from_token(&s)
                .ok_or_else(|| ctx.err(format!("{at}.method"), RouteInvalid::BadMethod(s)))
        })
        .transpose()?;
    Ok(RouteMatch {
        path,
        headers,
        query_params,
        method,
    })
}

/// The Gateway API rules for Exact and PathPrefix values.
fn match_path(ctx: &Ctx, at: &str, value: String) -> Result<String, RouteError> {
    let why = if !value.starts_with('/') {
        Some("must start with '/'")
    } else if value.len() > MAX_PATH_LEN {
        Some("longer than 1024 bytes")
    } else if value.contains("//") {
        Some("must not contain '//'")
    } else if value.contains("/./") || value.ends_with("/.") {
        Some("must not contain a '.' segment")
    } else if value.contains("/../") || value.ends_with("/..") {
        Some("must not contain a '..' segment")
    } else if value.contains("%2f") || value.contains("%2F") {
        Some("must not contain an encoded '/'")
    } else if !valid_path_chars(&value) {
        Some("has a character outside RFC 3986 path characters")
    } else {
        None
    };
    match why {
        Some(why) => Err(ctx.err(at, RouteInvalid::BadPath { value, why })),
        None => Ok(value),
    }
}

/// `^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$`, by hand.
fn valid_path_chars(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            if !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            {
                return false;
            }
            i += 3;
            continue;
        }
        if !(c.is_ascii_alphanumeric() || b"-/._~!$&'()*+,;=:@".contains(&c)) {
            return false;
        }
        i += 1;
    }
    !b.is_empty()
}

fn regex(ctx: &Ctx, at: &str, source: &str) -> Result<RegexMatch, RouteError> {
    RegexMatch::new(source).map_err(|e| ctx.err(at, RouteInvalid::BadRegex(e)))
}

/// An HTTP token (RFC 7230) of at most 256 bytes.
pub(super) fn token<'a>(ctx: &Ctx, at: &str, name: &'a str) -> Result<&'a str, RouteError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c));
    if ok {
        Ok(name)
    } else {
        Err(ctx.err(format!("{at}.name"), RouteInvalid::BadName(name.to_owned())))
    }
}

/// Non-empty, bounded, no control characters (tab allowed).
pub(super) fn field_value(
    ctx: &Ctx,
    at: &str,
    value: String,
    limit: usize,
) -> Result<String, RouteError> {
    let ok = !value.is_empty()
        && value.len() <= limit
        && !value.chars().any(|c| c.is_control() && c != '\t');
    if ok {
        Ok(value)
    } else {
        Err(ctx.err(at, RouteInvalid::BadValue(value)))
    }
}

fn value_match(
    ctx: &Ctx,
    at: &str,
    kind: Option<String>,
    value: String,
    limit: usize,
) -> Result<ValueMatch, RouteError> {
    let here = format!("{at}.value");
    match kind.as_deref().unwrap_or("Exact") {
        "Exact" => Ok(ValueMatch::Exact(field_value(ctx, &here, value, limit)?)),
        "RegularExpression" => Ok(ValueMatch::RegularExpression(regex(ctx, &here, &value)?)),
        other => Err(ctx.err(
            format!("{at}.type"),
            RouteInvalid::UnsupportedValue(other.to_owned()),
        )),
    }
}
