//! The validated HTTPRoute model: what a parsed, checked
//! `gateway.networking.k8s.io/v1` HTTPRoute says, with no YAML left in it.

use std::fmt;
use std::time::{Duration, SystemTime};

use regex::Regex;

/// The longest regular expression a route may use (bytes).
pub const MAX_REGEX_LEN: usize = 1024;
/// Compiled program size limit for one route regex (bytes).
pub const REGEX_SIZE_LIMIT: usize = 64 * 1024;
/// Lazy DFA cache limit for one route regex (bytes).
pub const REGEX_DFA_SIZE_LIMIT: usize = 256 * 1024;
/// Deepest nesting of groups/repetitions a route regex may use.
pub const REGEX_NEST_LIMIT: u32 = 32;

/// A Gateway API `HTTPRoute`.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRoute {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace` (`default` when absent).
    pub namespace: String,
    /// `metadata.creationTimestamp`; the oldest route wins precedence ties.
    /// A route without one counts as newer than every route with one.
    pub creation_timestamp: Option<SystemTime>,
    /// `spec.parentRefs`, kept for the caller (the router does not filter
    /// by parent).
    pub parent_refs: Vec<ParentRef>,
    /// `spec.hostnames`, lower-case, exact (`api.example.com`) or wildcard
    /// (`*.example.com`). Empty means every host.
    pub hostnames: Vec<String>,
    /// `spec.rules`, in order.
    pub rules: Vec<RouteRule>,
}

impl HttpRoute {
    /// `namespace/name`, the route's identity in errors and outcomes and
    /// its alphabetical precedence key.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// A `spec.parentRefs` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentRef {
    /// API group (default `gateway.networking.k8s.io`).
    pub group: String,
    /// Kind (default `Gateway`).
    pub kind: String,
    /// Namespace, when not the route's.
    pub namespace: Option<String>,
    /// Name of the parent.
    pub name: String,
    /// Listener (section) name.
    pub section_name: Option<String>,
    /// Listener port.
    pub port: Option<u16>,
}

/// A `spec.rules` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteRule {
    /// Optional rule name.
    pub name: Option<String>,
    /// Conditions, ORed; never empty (absent means PathPrefix `/`).
    pub matches: Vec<RouteMatch>,
    /// Filters applied to requests this rule matches, in order.
    pub filters: Vec<RouteFilter>,
    /// Where matching requests go.
    pub backend_refs: Vec<HttpBackendRef>,
    /// Request timeouts, when set.
    pub timeouts: Option<RouteTimeouts>,
    /// Retry policy, when set.
    pub retry: Option<RouteRetry>,
}

/// A `matches` entry: every condition must hold.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteMatch {
    /// Path condition.
    pub path: PathMatch,
    /// Header conditions (names lower-case, first of equivalent names kept).
    pub headers: Vec<HeaderMatch>,
    /// Query parameter conditions (first of equal names kept).
    pub query_params: Vec<QueryParamMatch>,
    /// Method condition.
    pub method: Option<Method>,
}

impl Default for RouteMatch {
    /// PathPrefix `/`: matches every request.
    fn default() -> Self {
        Self {
            path: PathMatch::PathPrefix("/".to_owned()),
            headers: Vec::new(),
            query_params: Vec::new(),
            method: None,
        }
    }
}

/// How the request path (without its query) is matched.
#[derive(Debug, Clone, PartialEq)]
pub enum PathMatch {
    /// The whole path, case-sensitive.
    Exact(String),
    /// Whole leading path segments, a trailing `/` ignored: `/abc` matches
    /// `/abc`, `/abc/` and `/abc/def`, not `/abcd`.
    PathPrefix(String),
    /// The whole path matches the expression.
    RegularExpression(RegexMatch),
}

/// A header condition.
#[derive(Debug, Clone, PartialEq)]
pub struct HeaderMatch {
    /// Header name, lower-case (matched case-insensitively).
    pub name: String,
    /// Value condition.
    pub value: ValueMatch,
}

/// A query parameter condition.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryParamMatch {
    /// Parameter name, matched exactly.
    pub name: String,
    /// Value condition (on the first occurrence of the parameter).
    pub value: ValueMatch,
}

/// How a header or query value is matched.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueMatch {
    /// Equal, case-sensitive.
    Exact(String),
    /// The whole value matches the expression.
    RegularExpression(RegexMatch),
}

impl ValueMatch {
    /// Whether `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Self::Exact(v) => v == value,
            Self::RegularExpression(r) => r.is_match(value),
        }
    }
}

/// A compiled, bounded, whole-input regular expression (RE2 syntax as the
/// `regex` crate reads it). Compares equal by its source text.
#[derive(Clone)]
pub struct RegexMatch {
    source: String,
    regex: Regex,
}

/// Why a route regular expression was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegexError {
    /// Longer than [`MAX_REGEX_LEN`].
    #[error("regex is {len} bytes; at most {limit} are allowed")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// Does not parse, or compiles beyond the size or nesting limits.
    #[error("invalid regex: {0}")]
    Invalid(String),
}

impl RegexMatch {
    /// Compiles `source` anchored at both ends, within [`MAX_REGEX_LEN`],
    /// [`REGEX_SIZE_LIMIT`], [`REGEX_DFA_SIZE_LIMIT`] and
    /// [`REGEX_NEST_LIMIT`].
    ///
    /// # Errors
    /// [`RegexError`] when the source is too long, does not parse or
    /// exceeds a limit.
    pub fn new(source: &str) -> Result<Self, RegexError> {
        if source.len() > MAX_REGEX_LEN {
            return Err(RegexError::TooLong {
                len: source.len(),
                limit: MAX_REGEX_LEN,
            });
        }
        let regex = regex::RegexBuilder::new(&format!("^(?:{source})$"))
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_DFA_SIZE_LIMIT)
            .nest_limit(REGEX_NEST_LIMIT)
            .build()
            .map_err(|e| RegexError::Invalid(e.to_string()))?;
        Ok(Self {
            source: source.to_owned(),
            regex,
        })
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the whole of `text` matches.
    pub fn is_match(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }
}

impl PartialEq for RegexMatch {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl fmt::Debug for RegexMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RegexMatch").field(&self.source).finish()
    }
}

/// An HTTP method a match can require.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    /// `GET`.
    Get,
    /// `HEAD`.
    Head,
    /// `POST`.
    Post,
    /// `PUT`.
    Put,
    /// `DELETE`.
    Delete,
    /// `CONNECT`.
    Connect,
    /// `OPTIONS`.
    Options,
    /// `TRACE`.
    Trace,
    /// `PATCH`.
    Patch,
}

impl Method {
    /// Every method, in declaration order.
    pub const ALL: [Self; 9] = [
        Self::Get,
        Self::Head,
        Self::Post,
        Self::Put,
        Self::Delete,
        Self::Connect,
        Self::Options,
        Self::Trace,
        Self::Patch,
    ];

    /// The upper-case token.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
            Self::Connect => "CONNECT",
            Self::Options => "OPTIONS",
            Self::Trace => "TRACE",
            Self::Patch => "PATCH",
        }
    }

    /// The method with this exact (upper-case) token.
    pub fn from_token(token: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == token)
    }
}

/// A filter of a rule or of a backend.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteFilter {
    /// Modify request headers before forwarding.
    RequestHeaderModifier(HeaderModifier),
    /// Modify response headers before returning them.
    ResponseHeaderModifier(HeaderModifier),
    /// Answer with a redirect instead of forwarding.
    RequestRedirect(RequestRedirect),
    /// Rewrite host and/or path while forwarding.
    UrlRewrite(UrlRewrite),
    /// Also send (a share of) requests to another backend, ignoring its
    /// response.
    RequestMirror(RequestMirror),
}

/// Header edits: `remove`, then `set` (replace every value), then `add`
/// (append). Names are lower-case and appear in one list at most.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderModifier {
    /// Headers to overwrite.
    pub set: Vec<(String, String)>,
    /// Headers to append.
    pub add: Vec<(String, String)>,
    /// Header names to drop.
    pub remove: Vec<String>,
}

impl HeaderModifier {
    /// Applies the edits to `headers` (names compared case-insensitively).
    pub fn apply(&self, headers: &mut Vec<(String, String)>) {
        headers.retain(|(n, _)| {
            !self.remove.iter().any(|r| r.eq_ignore_ascii_case(n))
                && !self.set.iter().any(|(s, _)| s.eq_ignore_ascii_case(n))
        });
        headers.extend(self.set.iter().cloned());
        headers.extend(self.add.iter().cloned());
    }
}

/// A redirect answered instead of forwarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRedirect {
    /// `http` or `https`; the request's scheme when `None`.
    pub scheme: Option<String>,
    /// Host for `Location`; the request's host when `None`.
    pub hostname: Option<String>,
    /// Path change; the request path when `None`.
    pub path: Option<PathModifier>,
    /// Port for `Location`. When `None`: the well-known port of `scheme`
    /// if it is set, else the port of the request's `Host`. A port that is
    /// the scheme's well-known one (80 for http, 443 for https) is left
    /// out of `Location`.
    pub port: Option<u16>,
    /// 301, 302, 303, 307 or 308 (default 302).
    pub status_code: u16,
}

/// A rewrite applied while forwarding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UrlRewrite {
    /// New `Host`.
    pub hostname: Option<String>,
    /// Path change.
    pub path: Option<PathModifier>,
}

/// How a redirect or rewrite changes the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathModifier {
    /// Replace the whole path.
    ReplaceFullPath(String),
    /// Replace the matched PathPrefix (whole segments), keeping the rest.
    ReplacePrefixMatch(String),
}

/// A mirror destination and the share of requests copied to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestMirror {
    /// Where copies go.
    pub backend: BackendRef,
    /// Share of requests copied: `numerator / denominator` (from `percent`
    /// as `p/100`; `100/100` when unset).
    pub fraction: Fraction,
}

/// A fraction of requests, `numerator <= denominator`, `denominator > 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fraction {
    /// Requests taken out of `denominator`.
    pub numerator: u32,
    /// Requests considered.
    pub denominator: u32,
}

/// A reference to a backend object.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackendRef {
    /// API group (`""` for core).
    pub group: String,
    /// Kind (default `Service`).
    pub kind: String,
    /// Object name.
    pub name: String,
    /// Namespace (the route's when not given).
    pub namespace: String,
    /// Port (required for a core Service).
    pub port: Option<u16>,
}

/// A weighted backend of a rule.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpBackendRef {
    /// The backend.
    pub backend: BackendRef,
    /// Relative weight, 0–1,000,000 (default 1; 0 receives no traffic).
    pub weight: u32,
    /// Filters applied only when this backend is chosen
    /// (RequestHeaderModifier, ResponseHeaderModifier, RequestMirror).
    pub filters: Vec<RouteFilter>,
}

/// `timeouts` of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RouteTimeouts {
    /// Whole request; zero disables.
    pub request: Option<Duration>,
    /// Each backend attempt; zero disables.
    pub backend_request: Option<Duration>,
}

/// `retry` of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteRetry {
    /// Response statuses (400–599) that are retried.
    pub codes: Vec<u16>,
    /// Retries after the first attempt; `Some(0)` disables retries.
    pub attempts: Option<u32>,
    /// Base interval between attempts.
    pub backoff: Option<Duration>,
}
