//! The precompiled router: hostname groups, each indexed by path, with
//! candidates pre-sorted by precedence so the first that matches wins.
//!
//! # Precedence
//! For a request host `h` the groups are tried in this order: routes naming
//! `h` exactly, then routes with a wildcard matching `h` from the longest
//! suffix to the shortest, then routes with no hostnames. Within a group:
//! Exact path, then PathPrefix by length (longest first), then
//! RegularExpression (implementation-specific in Gateway API; here after
//! every prefix, longer expressions first, as Istio orders them); then a
//! method condition, more header conditions, more query conditions; then
//! the oldest route (routes without a timestamp after those with one),
//! `namespace/name` alphabetically, position in the router's input, rule
//! order and match order. Each (route, rule, match) is one candidate.
//!
//! Lookups are by hash: the exact path, then each segment prefix of the
//! request path from the longest, so the cost depends on the request and on
//! the candidates that share its host and path, not on the number of routes.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::HashMap;
use std::time::SystemTime;

use regex::{RegexSet, RegexSetBuilder};

use super::filters::{location, modify_path, split_host_port};
use super::model::{
    BackendRef, HttpRoute, Method, PathMatch, REGEX_NEST_LIMIT, RegexMatch, RouteFilter, RouteRule,
    ValueMatch,
};
use super::outcome::{DirectReason, DirectResponse, Forward, Redirect, RouteOutcome, RouteRequest};
use crate::random::Random;

/// The per-rule data the router precomputes.
#[derive(Debug)]
struct CompiledRule {
    route: usize,
    rule: usize,
    /// Running weight totals: backend `i` owns draws in
    /// `[cumulative[i-1], cumulative[i])`.
    cumulative: Vec<u64>,
    backend_valid: Vec<bool>,
    /// The redirect filter, if any (index into the rule's filters).
    redirect: Option<usize>,
    /// The rewrite filter, if any.
    rewrite: Option<usize>,
    /// Valid mirror filters of the rule.
    mirrors: Vec<usize>,
    /// Valid mirror filters of each backend.
    backend_mirrors: Vec<Vec<usize>>,
}

/// One (route, rule, match) with its non-path conditions.
#[derive(Debug)]
struct Candidate {
    rule: usize,
    /// The matched PathPrefix without trailing `/`s, for ReplacePrefixMatch.
    prefix: Option<Box<str>>,
    regex: Option<RegexMatch>,
    method: Option<Method>,
    headers: Box<[(Box<str>, ValueMatch)]>,
    query: Box<[(Box<str>, ValueMatch)]>,
}

impl Candidate {
    fn conditions_hold(&self, req: &RouteRequest, query: Option<&str>) -> bool {
        if self.method.is_some_and(|m| req.method != m.as_str()) {
            return false;
        }
        for (name, value) in self.headers.iter() {
            let found = req
                .headers
                .iter()
                .any(|(n, v)| n.eq_ignore_ascii_case(name) && value.matches(v));
            if !found {
                return false;
            }
        }
        for (name, value) in self.query.iter() {
            match query.and_then(|q| first_query_value(q, name)) {
                Some(v) if value.matches(v) => {}
                _ => return false,
            }
        }
        true
    }
}

/// The value of the first `name=value` (or bare `name`) pair, undecoded.
fn first_query_value<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
        (n == name).then_some(v)
    })
}

/// Candidates of one hostname group, indexed by path.
#[derive(Debug, Default)]
struct PathIndex {
    exact: HashMap<Box<str>, Vec<usize>>,
    /// Keyed by the prefix without trailing `/`s (`/` is the empty key).
    prefix: HashMap<Box<str>, Vec<usize>>,
    regex: Vec<usize>,
    /// All of `regex` in one automaton (same order), when there are enough
    /// of them to be worth it and the set fits the size limits.
    regex_set: Option<RegexSet>,
}

/// Regex candidates in one group from which a [`RegexSet`] is built.
const REGEX_SET_MIN: usize = 8;
/// Compiled size limit of a group's [`RegexSet`] (bytes).
const REGEX_SET_SIZE_LIMIT: usize = 32 * 1024 * 1024;
/// Lazy DFA cache limit of a group's [`RegexSet`] (bytes).
const REGEX_SET_DFA_SIZE_LIMIT: usize = 16 * 1024 * 1024;

impl PathIndex {
    fn insert(&mut self, path: &PathMatch, id: usize) {
        match path {
            PathMatch::Exact(p) => self.exact.entry(p.as_str().into()).or_default().push(id),
            PathMatch::PathPrefix(p) => self
                .prefix
                .entry(p.trim_end_matches('/').into())
                .or_default()
                .push(id),
            PathMatch::RegularExpression(_) => self.regex.push(id),
        }
    }

    /// Orders every bucket by precedence, then builds the regex set.
    fn finish(&mut self, key: &impl Fn(&usize) -> SortKey, cands: &[Candidate]) {
        for ids in self.exact.values_mut().chain(self.prefix.values_mut()) {
            ids.sort_by_cached_key(key);
        }
        self.regex.sort_by_cached_key(key);
        if self.regex.len() >= REGEX_SET_MIN {
            let patterns = self.regex.iter().map(|&id| {
                let source = cands[id]
                    .regex
                    .as_ref()
                    .map_or("[^\\s\\S]", RegexMatch::as_str);
                format!("^(?:{source})$")
            });
            // Too large a set is no error: matching falls back to a scan.
            self.regex_set = RegexSetBuilder::new(patterns)
                .size_limit(REGEX_SET_SIZE_LIMIT)
                .dfa_size_limit(REGEX_SET_DFA_SIZE_LIMIT)
                .nest_limit(REGEX_NEST_LIMIT)
                .build()
                .ok();
        }
    }

    fn find(
        &self,
        cands: &[Candidate],
        req: &RouteRequest,
        path: &str,
        query: Option<&str>,
    ) -> Option<usize> {
        let first = |ids: &[usize]| {
            ids.iter()
                .copied()
                .find(|&id| cands[id].conditions_hold(req, query))
        };
        if let Some(id) = self.exact.get(path).and_then(|ids| first(ids)) {
            return Some(id);
        }
        if !self.prefix.is_empty() {
            // The whole path, then every prefix ending before a '/', longest
            // first: exactly the PathPrefix values that match, by length.
            let cuts = std::iter::once(path.len()).chain(
                path.bytes()
                    .enumerate()
                    .rev()
                    .filter(|(_, b)| *b == b'/')
                    .map(|(i, _)| i),
            );
            for cut in cuts {
                if let Some(id) = self.prefix.get(&path[..cut]).and_then(|ids| first(ids)) {
                    return Some(id);
                }
            }
        }
        if let Some(set) = &self.regex_set {
            // One pass finds every matching expression; most requests match
            // none, and `is_match` answers that without allocating.
            if !set.is_match(path) {
                return None;
            }
            return set
                .matches(path)
                .iter()
                .filter_map(|i| self.regex.get(i).copied())
                .find(|&id| cands[id].conditions_hold(req, query));
        }
        self.regex.iter().copied().find(|&id| {
            let c = &cands[id];
            c.regex.as_ref().is_some_and(|r| r.is_match(path)) && c.conditions_hold(req, query)
        })
    }
}

/// Everything after the path kind that orders candidates in one bucket.
type SortKey = (
    Reverse<usize>,
    Reverse<bool>,
    Reverse<usize>,
    Reverse<usize>,
    (bool, Option<SystemTime>),
    String,
    usize,
    usize,
    usize,
);

/// HTTPRoutes compiled for matching. Build once per configuration change,
/// share, and call [`route`](Router::route) per request.
///
/// Every route given is treated as attached: there is no Gateway or
/// listener model, so filter routes by `parentRefs` before building, and
/// decide cross-namespace references (ReferenceGrant) and backend existence
/// with [`with_backend_check`](Router::with_backend_check). Timeouts and
/// retry policy are carried on [`Forward::rule`] for the proxy to apply.
///
/// # Example
/// ```
/// use appnet_policy::{RouteOutcome, RouteRequest, Router, SeededRandom, parse_http_routes};
///
/// let yaml = r#"
/// apiVersion: gateway.networking.k8s.io/v1
/// kind: HTTPRoute
/// metadata: {name: shop, namespace: web}
/// spec:
///   hostnames: [shop.example.com]
///   rules:
///   - matches: [{path: {type: PathPrefix, value: /api}}]
///     backendRefs: [{name: api-v1, port: 80, weight: 90}, {name: api-v2, port: 80, weight: 10}]
/// "#;
/// let router = Router::new(parse_http_routes(yaml)?);
/// let req = RouteRequest {
///     host: "shop.example.com:443".into(),
///     method: "GET".into(),
///     path: "/api/cart?id=7".into(),
///     ..RouteRequest::default()
/// };
/// let mut rng = SeededRandom::new(7);
/// match router.route(&req, &mut rng) {
///     RouteOutcome::Forward(f) => assert!(f.backend.backend.name.starts_with("api-v")),
///     other => panic!("{other:?}"),
/// }
/// let miss = RouteRequest { path: "/apix".into(), ..req };
/// assert_eq!(router.route(&miss, &mut rng).status(), Some(404));
/// # Ok::<(), appnet_policy::RouteError>(())
/// ```
#[derive(Debug)]
pub struct Router {
    routes: Vec<HttpRoute>,
    keys: Vec<String>,
    rules: Vec<CompiledRule>,
    candidates: Vec<Candidate>,
    exact_hosts: HashMap<Box<str>, PathIndex>,
    /// Keyed by the suffix after `*.`.
    wildcard_hosts: HashMap<Box<str>, PathIndex>,
    any_host: PathIndex,
}

/// The backends [`Router::new`] can send to: a core `Service` with a port,
/// an Istio `networking.istio.io/Hostname` and a
/// `multicluster.x-k8s.io/ServiceImport`.
fn supported_backend(_route: &HttpRoute, b: &BackendRef) -> bool {
    match (b.group.as_str(), b.kind.as_str()) {
        ("", "Service") => b.port.is_some(),
        ("networking.istio.io", "Hostname") | ("multicluster.x-k8s.io", "ServiceImport") => true,
        _ => false,
    }
}

impl Router {
    /// Compiles `routes`, treating backends of unsupported kinds as invalid
    /// (their share of traffic gets a 500, mirrors to them are dropped).
    pub fn new(routes: Vec<HttpRoute>) -> Self {
        Self::with_backend_check(routes, supported_backend)
    }

    /// Compiles `routes`, asking `valid` about every backend and mirror
    /// reference (e.g. whether the Service exists or a ReferenceGrant allows
    /// a cross-namespace reference). An invalid backend's share of traffic
    /// gets a 500; an invalid mirror is dropped.
    pub fn with_backend_check(
        routes: Vec<HttpRoute>,
        valid: impl Fn(&HttpRoute, &BackendRef) -> bool,
    ) -> Self {
        let keys: Vec<String> = routes.iter().map(HttpRoute::key).collect();
        let mut rules = Vec::new();
        let mut candidates = Vec::new();
        let mut exact_hosts: HashMap<Box<str>, PathIndex> = HashMap::new();
        let mut wildcard_hosts: HashMap<Box<str>, PathIndex> = HashMap::new();
        let mut any_host = PathIndex::default();
        // For sorting: (route, rule, match) of each candidate.
        let mut origin = Vec::new();
        for (ri, route) in routes.iter().enumerate() {
            let first_candidate = candidates.len();
            for (ui, rule) in route.rules.iter().enumerate() {
                let rule_id = rules.len();
                rules.push(compile_rule(route, ri, ui, rule, &valid));
                for (mi, m) in rule.matches.iter().enumerate() {
                    origin.push((ri, ui, mi));
                    candidates.push(Candidate {
                        rule: rule_id,
                        prefix: match &m.path {
                            PathMatch::PathPrefix(p) => Some(p.trim_end_matches('/').into()),
                            _ => None,
                        },
                        regex: match &m.path {
                            PathMatch::RegularExpression(r) => Some(r.clone()),
                            _ => None,
                        },
                        method: m.method,
                        headers: m
                            .headers
                            .iter()
                            .map(|h| (h.name.to_ascii_lowercase().into(), h.value.clone()))
                            .collect(),
                        query: m
                            .query_params
                            .iter()
                            .map(|q| (q.name.as_str().into(), q.value.clone()))
                            .collect(),
                    });
                }
            }
            if route.hostnames.is_empty() {
                insert_route(&mut any_host, route, first_candidate);
            }
            // Each group at most once per route, even if names repeat.
            let mut exact_names: Vec<String> = Vec::new();
            let mut wildcard_names: Vec<String> = Vec::new();
            for h in &route.hostnames {
                let h = h.to_ascii_lowercase();
                match h.strip_prefix("*.") {
                    Some(suffix) if !wildcard_names.iter().any(|w| w == suffix) => {
                        wildcard_names.push(suffix.to_owned());
                    }
                    None if !exact_names.contains(&h) => exact_names.push(h),
                    _ => {}
                }
            }
            for h in exact_names {
                let index = exact_hosts.entry(h.into()).or_default();
                insert_route(index, route, first_candidate);
            }
            for h in wildcard_names {
                let index = wildcard_hosts.entry(h.into()).or_default();
                insert_route(index, route, first_candidate);
            }
        }
        let key = |&id: &usize| -> SortKey {
            let (ri, ui, mi) = origin[id];
            let route = &routes[ri];
            let m = &route.rules[ui].matches[mi];
            let path_len = match &m.path {
                PathMatch::Exact(p) | PathMatch::PathPrefix(p) => p.len(),
                PathMatch::RegularExpression(r) => r.as_str().len(),
            };
            (
                Reverse(path_len),
                Reverse(m.method.is_some()),
                Reverse(m.headers.len()),
                Reverse(m.query_params.len()),
                (route.creation_timestamp.is_none(), route.creation_timestamp),
                keys[ri].clone(),
                ri,
                ui,
                mi,
            )
        };
        for index in exact_hosts
            .values_mut()
            .chain(wildcard_hosts.values_mut())
            .chain(std::iter::once(&mut any_host))
        {
            index.finish(&key, &candidates);
        }
        Self {
            routes,
            keys,
            rules,
            candidates,
            exact_hosts,
            wildcard_hosts,
            any_host,
        }
    }

    /// The routes this router was built from, in input order.
    pub fn routes(&self) -> &[HttpRoute] {
        &self.routes
    }

    /// Routes one request: finds the first candidate by precedence (see the
    /// module doc), then answers the rule's redirect, or picks a backend by
    /// weight (one [`Random::below`] draw when the rule has two or more
    /// backends), applies the URL rewrite and samples each valid mirror (one
    /// draw per mirror whose fraction is strictly between 0 and 1), in
    /// filter order, rule filters before backend filters.
    pub fn route<'r>(&'r self, req: &RouteRequest, rng: &mut dyn Random) -> RouteOutcome<'r> {
        let (host, _) = split_host_port(&req.host);
        let host: Cow<'_, str> = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(host.to_ascii_lowercase())
        } else {
            Cow::Borrowed(host)
        };
        let (path, query) = match req.path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (req.path.as_str(), None),
        };
        match self.find(&host, req, path, query) {
            Some(id) => self.outcome(id, req, path, query, rng),
            None => RouteOutcome::Direct(DirectResponse {
                status: 404,
                reason: DirectReason::NoMatch,
                route_key: None,
                rule_index: None,
            }),
        }
    }

    fn find(
        &self,
        host: &str,
        req: &RouteRequest,
        path: &str,
        query: Option<&str>,
    ) -> Option<usize> {
        let cands = &self.candidates;
        if let Some(id) = self
            .exact_hosts
            .get(host)
            .and_then(|ix| ix.find(cands, req, path, query))
        {
            return Some(id);
        }
        if !self.wildcard_hosts.is_empty() {
            // `*.example.com` matches one or more labels before
            // `example.com`; trying suffixes left to right is longest first.
            for (i, b) in host.bytes().enumerate() {
                if b != b'.' || i == 0 {
                    continue;
                }
                if let Some(id) = self
                    .wildcard_hosts
                    .get(&host[i + 1..])
                    .and_then(|ix| ix.find(cands, req, path, query))
                {
                    return Some(id);
                }
            }
        }
        self.any_host.find(cands, req, path, query)
    }

    fn outcome<'r>(
        &'r self,
        id: usize,
        req: &RouteRequest,
        path: &str,
        query: Option<&str>,
        rng: &mut dyn Random,
    ) -> RouteOutcome<'r> {
        let cand = &self.candidates[id];
        let cr = &self.rules[cand.rule];
        let route = &self.routes[cr.route];
        let rule = &route.rules[cr.rule];
        let route_key = self.keys[cr.route].as_str();
        let prefix = cand.prefix.as_deref();
        if let Some(RouteFilter::RequestRedirect(rd)) = cr.redirect.map(|i| &rule.filters[i]) {
            return RouteOutcome::Redirect(Redirect {
                route_key,
                rule_index: cr.rule,
                status: rd.status_code,
                location: location(rd, &req.scheme, &req.host, path, query, prefix),
            });
        }
        let direct = |reason| {
            RouteOutcome::Direct(DirectResponse {
                status: 500,
                reason,
                route_key: Some(route_key),
                rule_index: Some(cr.rule),
            })
        };
        let total = cr.cumulative.last().copied().unwrap_or(0);
        if total == 0 {
            return direct(DirectReason::NoBackend);
        }
        let backend_index = if cr.cumulative.len() == 1 {
            0
        } else {
            let draw = rng.below(total);
            cr.cumulative.partition_point(|&c| c <= draw)
        };
        let (Some(backend), Some(true)) = (
            rule.backend_refs.get(backend_index),
            cr.backend_valid.get(backend_index).copied(),
        ) else {
            return direct(DirectReason::InvalidBackend);
        };
        let (host, new_path) = match cr.rewrite.map(|i| &rule.filters[i]) {
            Some(RouteFilter::UrlRewrite(rw)) => (
                rw.hostname.clone(),
                rw.path.as_ref().map(|m| {
                    let mut p = modify_path(m, path, prefix);
                    if let Some(q) = query {
                        p.push('?');
                        p.push_str(q);
                    }
                    p
                }),
            ),
            _ => (None, None),
        };
        let mut mirrors = Vec::new();
        let rule_mirrors = cr.mirrors.iter().map(|&i| &rule.filters[i]);
        let backend_mirrors = cr
            .backend_mirrors
            .get(backend_index)
            .into_iter()
            .flatten()
            .map(|&i| &backend.filters[i]);
        for f in rule_mirrors.chain(backend_mirrors) {
            if let RouteFilter::RequestMirror(m) = f {
                let (n, d) = (m.fraction.numerator, m.fraction.denominator);
                let hit = if n == 0 || d == 0 {
                    false
                } else if n >= d {
                    true
                } else {
                    rng.chance_fraction(u64::from(n), u64::from(d))
                };
                if hit {
                    mirrors.push(m);
                }
            }
        }
        RouteOutcome::Forward(Forward {
            route,
            route_key,
            rule_index: cr.rule,
            rule,
            backend_index,
            backend,
            host,
            path: new_path,
            mirrors,
        })
    }
}

/// Adds every candidate of `route` (numbered from `first`) to `index`.
fn insert_route(index: &mut PathIndex, route: &HttpRoute, first: usize) {
    let mut id = first;
    for rule in &route.rules {
        for m in &rule.matches {
            index.insert(&m.path, id);
            id += 1;
        }
    }
}

fn compile_rule(
    route: &HttpRoute,
    ri: usize,
    ui: usize,
    rule: &RouteRule,
    valid: &impl Fn(&HttpRoute, &BackendRef) -> bool,
) -> CompiledRule {
    let mut running = 0u64;
    let cumulative = rule
        .backend_refs
        .iter()
        .map(|b| {
            running += u64::from(b.weight);
            running
        })
        .collect();
    let valid_mirrors = |filters: &[RouteFilter]| -> Vec<usize> {
        filters
            .iter()
            .enumerate()
            .filter_map(|(i, f)| match f {
                RouteFilter::RequestMirror(m) if valid(route, &m.backend) => Some(i),
                _ => None,
            })
            .collect()
    };
    let position = |want: fn(&RouteFilter) -> bool| rule.filters.iter().position(want);
    CompiledRule {
        route: ri,
        rule: ui,
        cumulative,
        backend_valid: rule
            .backend_refs
            .iter()
            .map(|b| valid(route, &b.backend))
            .collect(),
        redirect: position(|f| matches!(f, RouteFilter::RequestRedirect(_))),
        rewrite: position(|f| matches!(f, RouteFilter::UrlRewrite(_))),
        mirrors: valid_mirrors(&rule.filters),
        backend_mirrors: rule
            .backend_refs
            .iter()
            .map(|b| valid_mirrors(&b.filters))
            .collect(),
    }
}
