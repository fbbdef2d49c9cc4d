//! What filters do to a request: host normalisation, path rewriting and the
//! `Location` of a redirect.

use super::model::{PathModifier, RequestRedirect};

/// Splits `host[:port]` (also `[v6]:port`); the port is returned only when
/// it is all digits.
pub(super) fn split_host_port(host: &str) -> (&str, Option<&str>) {
    if host.starts_with('[') {
        if let Some(end) = host.find(']') {
            let (h, rest) = host.split_at(end + 1);
            return (h, rest.strip_prefix(':').filter(|p| all_digits(p)));
        }
        return (host, None);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && all_digits(p) => (h, Some(p)),
        _ => (host, None),
    }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// The path a modifier makes of `path` (no query). `prefix` is the matched
/// PathPrefix with trailing `/`s removed, when the match was a prefix.
pub(super) fn modify_path(m: &PathModifier, path: &str, prefix: Option<&str>) -> String {
    match m {
        PathModifier::ReplaceFullPath(v) => v.clone(),
        PathModifier::ReplacePrefixMatch(r) => {
            let r = r.trim_end_matches('/');
            // The prefix matched whole segments, so the rest is empty or
            // starts with '/'. Without a prefix match (a hand-built route),
            // the replacement stands for the whole path.
            let rest = prefix.and_then(|p| path.get(p.len()..)).unwrap_or("");
            let mut out = String::with_capacity(r.len() + rest.len());
            out.push_str(r);
            out.push_str(rest);
            if out.is_empty() {
                out.push('/');
            }
            out
        }
    }
}

/// The well-known port of a scheme.
fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// The `Location` of a redirect, by the Gateway API rules: scheme, host and
/// path default to the request's; the port is the filter's, else the
/// well-known port of a scheme the filter sets, else the request's; it is
/// left out when it is the scheme's well-known port. The query is kept.
pub(super) fn location(
    rd: &RequestRedirect,
    request_scheme: &str,
    request_host: &str,
    path: &str,
    query: Option<&str>,
    prefix: Option<&str>,
) -> String {
    let scheme = rd
        .scheme
        .as_deref()
        .unwrap_or(if request_scheme.is_empty() {
            "http"
        } else {
            request_scheme
        });
    let (req_host, req_port) = split_host_port(request_host);
    let host = rd.hostname.as_deref().unwrap_or(req_host);
    let port = rd.port.or_else(|| {
        if rd.scheme.is_some() {
            default_port(scheme)
        } else {
            req_port.and_then(|p| p.parse().ok())
        }
    });
    let new_path = match &rd.path {
        Some(m) => modify_path(m, path, prefix),
        None => path.to_owned(),
    };
    let mut out = String::with_capacity(
        scheme.len() + host.len() + new_path.len() + query.map_or(0, str::len) + 10,
    );
    out.push_str(scheme);
    out.push_str("://");
    out.push_str(host);
    if let Some(p) = port.filter(|p| Some(*p) != default_port(scheme)) {
        out.push(':');
        out.push_str(&p.to_string());
    }
    out.push_str(&new_path);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port() {
        assert_eq!(split_host_port("a.com:8080"), ("a.com", Some("8080")));
        assert_eq!(split_host_port("a.com"), ("a.com", None));
        assert_eq!(split_host_port("a.com:"), ("a.com:", None));
        assert_eq!(split_host_port("[::1]:80"), ("[::1]", Some("80")));
        assert_eq!(split_host_port("[::1]"), ("[::1]", None));
        assert_eq!(split_host_port("::1"), ("::1", None));
        assert_eq!(split_host_port("[::1"), ("[::1", None));
    }

    /// The table in the Gateway API's `ReplacePrefixMatch` documentation.
    #[test]
    fn replace_prefix_match_table() {
        let cases = [
            ("/foo/bar", "/foo", "/xyz", "/xyz/bar"),
            ("/foo/bar", "/foo", "/xyz/", "/xyz/bar"),
            ("/foo/bar", "/foo/", "/xyz", "/xyz/bar"),
            ("/foo/bar", "/foo/", "/xyz/", "/xyz/bar"),
            ("/foo", "/foo", "/xyz", "/xyz"),
            ("/foo/", "/foo", "/xyz", "/xyz/"),
            ("/foo/bar", "/foo", "", "/bar"),
            ("/foo/", "/foo", "", "/"),
            ("/foo", "/foo", "", "/"),
            ("/foo/", "/foo", "/", "/"),
            ("/foo", "/foo", "/", "/"),
        ];
        for (path, prefix, replacement, want) in cases {
            let m = PathModifier::ReplacePrefixMatch(replacement.to_owned());
            let prefix = prefix.trim_end_matches('/');
            assert_eq!(
                modify_path(&m, path, Some(prefix)),
                want,
                "{path} {prefix} {replacement}"
            );
        }
    }
}
