//! What routing takes and gives: the request view and the outcome.

use super::model::{
    HeaderModifier, HttpBackendRef, HttpRoute, RequestMirror, RouteFilter, RouteRule,
};

/// The parts of an HTTP request routing looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteRequest {
    /// `http` or `https` (empty means `http`); used for redirects.
    pub scheme: String,
    /// The `Host` (or `:authority`); a `:port` is ignored for matching and
    /// case does not matter.
    pub host: String,
    /// The method, e.g. `GET` (matched case-sensitively).
    pub method: String,
    /// The path, optionally with `?query`, as received (not normalised).
    pub path: String,
    /// Request headers; names are compared case-insensitively, and a header
    /// condition holds when any value of the header satisfies it.
    pub headers: Vec<(String, String)>,
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteOutcome<'r> {
    /// Forward to a backend.
    Forward(Forward<'r>),
    /// Answer with a redirect.
    Redirect(Redirect<'r>),
    /// Answer directly with an error status.
    Direct(DirectResponse<'r>),
}

impl RouteOutcome<'_> {
    /// The status the proxy answers with itself (redirects and direct
    /// responses); `None` when the request is forwarded.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Forward(_) => None,
            Self::Redirect(r) => Some(r.status),
            Self::Direct(d) => Some(d.status),
        }
    }

    /// `namespace/name` of the route that matched, if one did.
    pub fn route_key(&self) -> Option<&str> {
        match self {
            Self::Forward(f) => Some(f.route_key),
            Self::Redirect(r) => Some(r.route_key),
            Self::Direct(d) => d.route_key,
        }
    }
}

/// A request to forward.
#[derive(Debug, Clone, PartialEq)]
pub struct Forward<'r> {
    /// The matched route.
    pub route: &'r HttpRoute,
    /// Its `namespace/name`.
    pub route_key: &'r str,
    /// Index of the matched rule in the route.
    pub rule_index: usize,
    /// The matched rule (its `timeouts` apply).
    pub rule: &'r RouteRule,
    /// Index of the chosen backend in the rule.
    pub backend_index: usize,
    /// The chosen backend.
    pub backend: &'r HttpBackendRef,
    /// The new `Host`, when a URLRewrite sets one.
    pub host: Option<String>,
    /// The new path (with the original query), when a URLRewrite changes it.
    pub path: Option<String>,
    /// Mirrors to send a copy to (already sampled, valid backends only);
    /// their responses are ignored.
    pub mirrors: Vec<&'r RequestMirror>,
}

impl<'r> Forward<'r> {
    /// Request header modifiers to apply: the rule's, then the backend's.
    pub fn request_header_modifiers(&self) -> impl Iterator<Item = &'r HeaderModifier> + 'r {
        let (rule, backend) = (self.rule, self.backend);
        rule.filters
            .iter()
            .chain(&backend.filters)
            .filter_map(|f| match f {
                RouteFilter::RequestHeaderModifier(m) => Some(m),
                _ => None,
            })
    }

    /// Response header modifiers to apply: the rule's, then the backend's.
    pub fn response_header_modifiers(&self) -> impl Iterator<Item = &'r HeaderModifier> + 'r {
        let (rule, backend) = (self.rule, self.backend);
        rule.filters
            .iter()
            .chain(&backend.filters)
            .filter_map(|f| match f {
                RouteFilter::ResponseHeaderModifier(m) => Some(m),
                _ => None,
            })
    }

    /// Applies every request header modifier to `headers`.
    pub fn apply_request_headers(&self, headers: &mut Vec<(String, String)>) {
        for m in self.request_header_modifiers() {
            m.apply(headers);
        }
    }

    /// Applies every response header modifier to `headers`.
    pub fn apply_response_headers(&self, headers: &mut Vec<(String, String)>) {
        for m in self.response_header_modifiers() {
            m.apply(headers);
        }
    }
}

/// A redirect to answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect<'r> {
    /// `namespace/name` of the matched route.
    pub route_key: &'r str,
    /// Index of the matched rule.
    pub rule_index: usize,
    /// 301, 302, 303, 307 or 308.
    pub status: u16,
    /// The `Location` header.
    pub location: String,
}

/// An error status the proxy answers with itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectResponse<'r> {
    /// 404 or 500.
    pub status: u16,
    /// Why.
    pub reason: DirectReason,
    /// The matched route, for 500s.
    pub route_key: Option<&'r str>,
    /// The matched rule, for 500s.
    pub rule_index: Option<usize>,
}

/// Why the proxy answers directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DirectReason {
    /// No rule matches the request (404).
    NoMatch,
    /// The rule has no backends, or every weight is 0 (500).
    NoBackend,
    /// The weighted draw chose an invalid backend (500 for its share).
    InvalidBackend,
}
