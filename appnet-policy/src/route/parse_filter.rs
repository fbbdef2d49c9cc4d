//! Parsing the filters of a rule or a backend, and object references.

use std::collections::HashSet;

use super::model::{
    BackendRef, Fraction, HeaderModifier, PathModifier, RequestMirror, RequestRedirect,
    RouteFilter, UrlRewrite,
};
use super::parse::{
    Ctx, MAX_CONDITIONS, MAX_FILTERS, MAX_HEADER_VALUE_LEN, MAX_PATH_LEN, field_value, token,
    valid_hostname,
};
use super::wire;
use super::{RouteError, RouteInvalid};

pub(super) fn object_ref(
    ctx: &Ctx,
    at: &str,
    r: wire::ObjectRef,
) -> Result<BackendRef, RouteError> {
    if r.name.is_empty() {
        return Err(ctx.err(format!("{at}.name"), RouteInvalid::Required));
    }
    let group = r.group.unwrap_or_default();
    let kind = r.kind.unwrap_or_else(|| "Service".to_owned());
    let port = r
        .port
        .map(|p| ctx.port(&format!("{at}.port"), p))
        .transpose()?;
    if group.is_empty() && kind == "Service" && port.is_none() {
        return Err(ctx.err(format!("{at}.port"), RouteInvalid::MissingPort));
    }
    Ok(BackendRef {
        group,
        kind,
        name: r.name,
        namespace: r
            .namespace
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| ctx.namespace.clone()),
        port,
    })
}

/// Filters of a rule (`on_backend == false`) or of a backend.
pub(super) fn parse_filters(
    ctx: &Ctx,
    at: &str,
    wire_filters: Option<Vec<wire::Filter>>,
    on_backend: bool,
) -> Result<Vec<RouteFilter>, RouteError> {
    let wire_filters = wire_filters.unwrap_or_default();
    ctx.max(at, &wire_filters, MAX_FILTERS)?;
    let mut out: Vec<RouteFilter> = Vec::with_capacity(wire_filters.len());
    for (i, f) in wire_filters.into_iter().enumerate() {
        let here = format!("{at}[{i}]");
        let kind = f.kind.clone();
        let filter = filter(ctx, &here, f)?;
        if on_backend
            && matches!(
                filter,
                RouteFilter::RequestRedirect(_) | RouteFilter::UrlRewrite(_)
            )
        {
            return Err(ctx.err(
                format!("{here}.type"),
                RouteInvalid::UnsupportedFilter(kind),
            ));
        }
        let repeatable = matches!(filter, RouteFilter::RequestMirror(_));
        let same = |o: &RouteFilter| std::mem::discriminant(o) == std::mem::discriminant(&filter);
        if !repeatable && out.iter().any(same) {
            return Err(ctx.err(&here, RouteInvalid::RepeatedFilter(kind)));
        }
        let redirect = |o: &RouteFilter| matches!(o, RouteFilter::RequestRedirect(_));
        let rewrite = |o: &RouteFilter| matches!(o, RouteFilter::UrlRewrite(_));
        if (redirect(&filter) && out.iter().any(rewrite))
            || (rewrite(&filter) && out.iter().any(redirect))
        {
            return Err(ctx.err(&here, RouteInvalid::RedirectWithRewrite));
        }
        out.push(filter);
    }
    Ok(out)
}

fn filter(ctx: &Ctx, at: &str, f: wire::Filter) -> Result<RouteFilter, RouteError> {
    let set = [
        f.request_header_modifier.is_some(),
        f.response_header_modifier.is_some(),
        f.request_redirect.is_some(),
        f.url_rewrite.is_some(),
        f.request_mirror.is_some(),
        f.extension_ref.is_some(),
        f.cors.is_some(),
        f.external_auth.is_some(),
    ];
    let index = match f.kind.as_str() {
        "RequestHeaderModifier" => 0,
        "ResponseHeaderModifier" => 1,
        "RequestRedirect" => 2,
        "URLRewrite" => 3,
        "RequestMirror" => 4,
        "ExtensionRef" | "CORS" | "ExternalAuth" => {
            return Err(ctx.err(
                format!("{at}.type"),
                RouteInvalid::UnsupportedFilter(f.kind),
            ));
        }
        _ => {
            return Err(ctx.err(format!("{at}.type"), RouteInvalid::UnsupportedValue(f.kind)));
        }
    };
    let own_only = set
        .iter()
        .enumerate()
        .all(|(i, is_set)| *is_set == (i == index));
    if !own_only {
        return Err(ctx.err(at, RouteInvalid::FilterConfigMismatch(f.kind)));
    }
    Ok(
        match (
            f.request_header_modifier,
            f.response_header_modifier,
            f.request_redirect,
            f.url_rewrite,
            f.request_mirror,
        ) {
            (Some(h), ..) => RouteFilter::RequestHeaderModifier(header_modifier(
                ctx,
                &format!("{at}.requestHeaderModifier"),
                h,
            )?),
            (_, Some(h), ..) => RouteFilter::ResponseHeaderModifier(header_modifier(
                ctx,
                &format!("{at}.responseHeaderModifier"),
                h,
            )?),
            (_, _, Some(r), ..) => {
                RouteFilter::RequestRedirect(redirect(ctx, &format!("{at}.requestRedirect"), r)?)
            }
            (_, _, _, Some(r), _) => {
                let here = format!("{at}.urlRewrite");
                RouteFilter::UrlRewrite(UrlRewrite {
                    hostname: r
                        .hostname
                        .map(|h| precise_hostname(ctx, &format!("{here}.hostname"), h))
                        .transpose()?,
                    path: r
                        .path
                        .map(|p| path_modifier(ctx, &format!("{here}.path"), p))
                        .transpose()?,
                })
            }
            (_, _, _, _, Some(m)) => {
                RouteFilter::RequestMirror(mirror(ctx, &format!("{at}.requestMirror"), m)?)
            }
            // `own_only` above guarantees the configuration for `index` is set.
            _ => return Err(ctx.err(at, RouteInvalid::FilterConfigMismatch(f.kind))),
        },
    )
}

fn header_modifier(
    ctx: &Ctx,
    at: &str,
    h: wire::HeaderFilter,
) -> Result<HeaderModifier, RouteError> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut once = |here: &str, name: &str| -> Result<String, RouteError> {
        let lower = token(ctx, here, name)?.to_ascii_lowercase();
        if !seen.insert(lower.clone()) {
            return Err(ctx.err(format!("{here}.name"), RouteInvalid::DuplicateHeader(lower)));
        }
        Ok(lower)
    };
    let mut out = HeaderModifier::default();
    for (list_name, list, dest) in [
        ("set", h.set.unwrap_or_default(), &mut out.set),
        ("add", h.add.unwrap_or_default(), &mut out.add),
    ] {
        ctx.max(&format!("{at}.{list_name}"), &list, MAX_CONDITIONS)?;
        for (i, header) in list.into_iter().enumerate() {
            let here = format!("{at}.{list_name}[{i}]");
            let name = once(&here, &header.name)?;
            let value = field_value(
                ctx,
                &format!("{here}.value"),
                header.value,
                MAX_HEADER_VALUE_LEN,
            )?;
            dest.push((name, value));
        }
    }
    let remove = h.remove.unwrap_or_default();
    ctx.max(&format!("{at}.remove"), &remove, MAX_CONDITIONS)?;
    for (i, name) in remove.iter().enumerate() {
        let here = format!("{at}.remove[{i}]");
        out.remove.push(once(&here, name)?);
    }
    Ok(out)
}

fn precise_hostname(ctx: &Ctx, at: &str, h: String) -> Result<String, RouteError> {
    if valid_hostname(&h, false) {
        Ok(h)
    } else {
        Err(ctx.err(at, RouteInvalid::BadHostname(h)))
    }
}

fn redirect(ctx: &Ctx, at: &str, r: wire::Redirect) -> Result<RequestRedirect, RouteError> {
    let scheme = match r.scheme {
        Some(s) if s == "http" || s == "https" => Some(s),
        Some(s) => return Err(ctx.err(format!("{at}.scheme"), RouteInvalid::BadScheme(s))),
        None => None,
    };
    let status_code = match r.status_code {
        None => 302,
        Some(c @ (301 | 302 | 303 | 307 | 308)) => c as u16,
        Some(c) => {
            return Err(ctx.err(format!("{at}.statusCode"), RouteInvalid::BadStatusCode(c)));
        }
    };
    Ok(RequestRedirect {
        scheme,
        hostname: r
            .hostname
            .map(|h| precise_hostname(ctx, &format!("{at}.hostname"), h))
            .transpose()?,
        path: r
            .path
            .map(|p| path_modifier(ctx, &format!("{at}.path"), p))
            .transpose()?,
        port: r
            .port
            .map(|p| ctx.port(&format!("{at}.port"), p))
            .transpose()?,
        status_code,
    })
}

fn path_modifier(ctx: &Ctx, at: &str, p: wire::PathModifier) -> Result<PathModifier, RouteError> {
    let (value, field, full) = match (p.kind.as_str(), p.replace_full_path, p.replace_prefix_match)
    {
        ("ReplaceFullPath", Some(v), None) => (v, "replaceFullPath", true),
        ("ReplacePrefixMatch", None, Some(v)) => (v, "replacePrefixMatch", false),
        ("ReplaceFullPath" | "ReplacePrefixMatch", ..) => {
            return Err(ctx.err(at, RouteInvalid::PathModifierMismatch(p.kind)));
        }
        _ => {
            return Err(ctx.err(format!("{at}.type"), RouteInvalid::UnsupportedValue(p.kind)));
        }
    };
    let why = if value.len() > MAX_PATH_LEN {
        Some("longer than 1024 bytes")
    } else if (full || !value.is_empty()) && !value.starts_with('/') {
        Some("must start with '/'")
    } else if value.contains(['?', '#']) || value.chars().any(|c| c.is_control() || c == ' ') {
        Some("must not contain '?', '#', spaces or control characters")
    } else {
        None
    };
    if let Some(why) = why {
        return Err(ctx.err(
            format!("{at}.{field}"),
            RouteInvalid::BadPath { value, why },
        ));
    }
    Ok(if full {
        PathModifier::ReplaceFullPath(value)
    } else {
        PathModifier::ReplacePrefixMatch(value)
    })
}

fn mirror(ctx: &Ctx, at: &str, m: wire::Mirror) -> Result<RequestMirror, RouteError> {
    let backend = object_ref(ctx, &format!("{at}.backendRef"), m.backend_ref)?;
    let fraction = match (m.percent, m.fraction) {
        (Some(_), Some(_)) => return Err(ctx.err(at, RouteInvalid::PercentAndFraction)),
        (Some(p), None) => match u32::try_from(p) {
            Ok(p) if p <= 100 => Fraction {
                numerator: p,
                denominator: 100,
            },
            _ => return Err(ctx.err(format!("{at}.percent"), RouteInvalid::BadPercent(p))),
        },
        (None, Some(f)) => {
            let denominator = f.denominator.unwrap_or(100);
            let bad = || {
                ctx.err(
                    format!("{at}.fraction"),
                    RouteInvalid::BadFraction {
                        numerator: f.numerator,
                        denominator,
                    },
                )
            };
            let d = u32::try_from(denominator)
                .ok()
                .filter(|d| *d > 0 && i64::from(*d) <= i64::from(i32::MAX))
                .ok_or_else(bad)?;
            let n = u32::try_from(f.numerator)
                .ok()
                .filter(|n| *n <= d)
                .ok_or_else(bad)?;
            Fraction {
                numerator: n,
                denominator: d,
            }
        }
        (None, None) => Fraction {
            numerator: 100,
            denominator: 100,
        },
    };
    Ok(RequestMirror { backend, fraction })
}
