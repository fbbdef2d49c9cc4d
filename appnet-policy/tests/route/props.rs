//! Properties: the router agrees with a brute-force oracle of the
//! precedence rules, its choice does not depend on route or rule order
//! except on exact ties, and no request makes it panic.

use std::cmp::Reverse;
use std::time::{Duration, SystemTime};

use appnet_policy::{
    BackendRef, HeaderMatch, HttpBackendRef, HttpRoute, Method, PathMatch, QueryParamMatch,
    RegexMatch, RouteMatch, RouteOutcome, RouteRequest, RouteRule, Router, SeededRandom,
    ValueMatch,
};
use proptest::prelude::*;

// ---- generators over a small vocabulary, so routes overlap often ----

const HOSTS: [&str; 4] = [
    "a.example.com",
    "b.example.com",
    "x.a.example.com",
    "other.org",
];
const ROUTE_HOSTS: [&str; 5] = [
    "a.example.com",
    "*.example.com",
    "*.a.example.com",
    "other.org",
    "*.org",
];
const PATHS: [&str; 6] = ["/", "/a", "/a/", "/a/b", "/ab", "/a/b/c"];

fn arb_path_match() -> impl Strategy<Value = PathMatch> {
    prop_oneof![
        1 => prop::sample::select(&PATHS[..]).prop_map(|p| PathMatch::Exact(p.to_owned())),
        2 => prop::sample::select(&["/", "/a"][..]).prop_map(|p| PathMatch::PathPrefix(p.to_owned())),
        1 => prop::sample::select(&PATHS[..]).prop_map(|p| PathMatch::PathPrefix(p.to_owned())),
        1 => prop::sample::select(&["/a.*", "/.*", "/a/b"][..])
            .prop_map(|p| PathMatch::RegularExpression(RegexMatch::new(p).unwrap())),
    ]
}

fn arb_match() -> impl Strategy<Value = RouteMatch> {
    // Mostly bare matches, so that candidates often tie on everything but
    // the route tie-breaks.
    let sparse = |names: &'static [&'static str]| prop_oneof![3 => Just(Vec::new()), 1 => prop::sample::subsequence(names, 0..=2)];
    (
        arb_path_match(),
        prop_oneof![3 => Just(None), 1 => prop::sample::select(&[Method::Get, Method::Post][..]).prop_map(Some)],
        sparse(&["x", "y"]),
        sparse(&["p", "q"]),
    )
        .prop_map(|(path, method, headers, query)| RouteMatch {
            path,
            method,
            headers: headers
                .into_iter()
                .map(|n| HeaderMatch {
                    name: n.into(),
                    value: ValueMatch::Exact("1".into()),
                })
                .collect(),
            query_params: query
                .into_iter()
                .map(|n| QueryParamMatch {
                    name: n.into(),
                    value: ValueMatch::RegularExpression(RegexMatch::new("[0-9]").unwrap()),
                })
                .collect(),
        })
}

/// Routes named `r0`, `r1`, … (unique keys), each rule sending to a
/// backend named after its route and rule so it can be told apart.
fn arb_routes() -> impl Strategy<Value = Vec<HttpRoute>> {
    let route = (
        prop::sample::select(&["ns1", "ns2"][..]),
        prop::option::of(0u64..2),
        prop::sample::subsequence(&ROUTE_HOSTS[..], 0..=2),
        prop::collection::vec(prop::collection::vec(arb_match(), 1..=2), 1..=3),
    );
    prop::collection::vec(route, 1..=6).prop_map(|specs| {
        specs
            .into_iter()
            .enumerate()
            .map(|(i, (ns, ts, hosts, rules))| HttpRoute {
                name: format!("r{i}"),
                namespace: ns.into(),
                creation_timestamp: ts.map(|t| SystemTime::UNIX_EPOCH + Duration::from_secs(t)),
                parent_refs: Vec::new(),
                hostnames: hosts.into_iter().map(str::to_owned).collect(),
                rules: rules
                    .into_iter()
                    .enumerate()
                    .map(|(j, matches)| RouteRule {
                        name: None,
                        matches,
                        filters: Vec::new(),
                        backend_refs: vec![HttpBackendRef {
                            backend: BackendRef {
                                group: String::new(),
                                kind: "Service".into(),
                                name: format!("r{i}-{j}"),
                                namespace: ns.into(),
                                port: Some(80),
                            },
                            weight: 1,
                            filters: Vec::new(),
                        }],
                        timeouts: None,
                        retry: None,
                    })
                    .collect(),
            })
            .collect()
    })
}

fn arb_request() -> impl Strategy<Value = RouteRequest> {
    (
        prop::sample::select(&HOSTS[..]),
        prop::sample::select(&["GET", "POST"][..]),
        prop::sample::select(&PATHS[..]),
        prop::sample::select(&["", "?p=1", "?q=2&p=3", "?p=x"][..]),
        prop::sample::subsequence(&["x", "y"][..], 0..=2),
    )
        .prop_map(|(host, method, path, query, headers)| RouteRequest {
            scheme: String::new(),
            host: host.into(),
            method: method.into(),
            path: format!("{path}{query}"),
            headers: headers
                .into_iter()
                .map(|h| (h.into(), "1".into()))
                .collect(),
        })
}

// ---- the oracle: every (route, rule, match), filtered and ranked ----

/// Precedence key of a matching candidate, smaller wins; everything but
/// input order and rule order.
type Key = (
    (u8, Reverse<usize>),
    (Reverse<u8>, Reverse<usize>),
    Reverse<bool>,
    Reverse<usize>,
    Reverse<usize>,
    (bool, Option<SystemTime>),
    String,
);

fn host_rank(route: &HttpRoute, host: &str) -> Option<(u8, Reverse<usize>)> {
    if route.hostnames.is_empty() {
        return Some((2, Reverse(0)));
    }
    route
        .hostnames
        .iter()
        .filter_map(|h| match h.strip_prefix("*.") {
            Some(suffix) => host
                .strip_suffix(suffix)
                .and_then(|rest| rest.strip_suffix('.'))
                .filter(|label| !label.is_empty())
                .map(|_| (1, Reverse(h.len()))),
            None => (h == host).then_some((0, Reverse(h.len()))),
        })
        .min()
}

fn path_rank(p: &PathMatch, path: &str) -> Option<(Reverse<u8>, Reverse<usize>)> {
    match p {
        PathMatch::Exact(v) => (v == path).then_some((Reverse(3), Reverse(v.len()))),
        PathMatch::PathPrefix(v) => {
            let n = v.trim_end_matches('/');
            let ok =
                path.starts_with(n) && matches!(path.as_bytes().get(n.len()), None | Some(b'/'));
            ok.then_some((Reverse(2), Reverse(v.len())))
        }
        PathMatch::RegularExpression(r) => r
            .is_match(path)
            .then_some((Reverse(1), Reverse(r.as_str().len()))),
    }
}

/// Every matching (key, backend name), best first.
fn oracle(routes: &[HttpRoute], req: &RouteRequest) -> Vec<(Key, String)> {
    let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
    let mut out = Vec::new();
    for route in routes {
        let Some(host) = host_rank(route, &req.host) else {
            continue;
        };
        for rule in &route.rules {
            let best = rule
                .matches
                .iter()
                .filter(|m| m.method.is_none_or(|x| x.as_str() == req.method))
                .filter(|m| {
                    m.headers.iter().all(|h| {
                        req.headers
                            .iter()
                            .any(|(n, v)| n.eq_ignore_ascii_case(&h.name) && h.value.matches(v))
                    })
                })
                .filter(|m| {
                    m.query_params.iter().all(|q| {
                        let first = query
                            .split('&')
                            .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
                            .find(|(k, _)| *k == q.name);
                        first.is_some_and(|(_, v)| q.value.matches(v))
                    })
                })
                .filter_map(|m| {
                    Some((
                        host,
                        path_rank(&m.path, path)?,
                        Reverse(m.method.is_some()),
                        Reverse(m.headers.len()),
                        Reverse(m.query_params.len()),
                        (route.creation_timestamp.is_none(), route.creation_timestamp),
                        route.key(),
                    ))
                })
                .min();
            if let Some(key) = best {
                out.push((key, rule.backend_refs[0].backend.name.clone()));
            }
        }
    }
    out.sort();
    out
}

fn chosen(router: &Router, req: &RouteRequest) -> Option<String> {
    match router.route(req, &mut SeededRandom::new(0)) {
        RouteOutcome::Forward(f) => Some(f.backend.backend.name.clone()),
        RouteOutcome::Direct(d) if d.status == 404 => None,
        other => panic!("unexpected {other:?}"),
    }
}

/// The routes with their order and every route's rule order shuffled.
fn shuffled(routes: &[HttpRoute], seed: u64) -> Vec<HttpRoute> {
    let mut rng = SeededRandom::new(seed);
    let mut out = routes.to_vec();
    shuffle(&mut out, &mut rng);
    for r in &mut out {
        shuffle(&mut r.rules, &mut rng);
    }
    out
}

fn shuffle<T>(v: &mut [T], rng: &mut SeededRandom) {
    use appnet_policy::Random;
    for i in (1..v.len()).rev() {
        v.swap(i, rng.below(i as u64 + 1) as usize);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// The router picks a candidate with the oracle's best key, and
    /// reordering routes and rules changes the choice only when several
    /// rules share that exact key.
    #[test]
    fn choice_follows_precedence_and_ignores_order(
        routes in arb_routes(),
        reqs in prop::collection::vec(arb_request(), 1..8),
        seed in any::<u64>(),
    ) {
        let router = Router::new(routes.clone());
        let reordered = Router::new(shuffled(&routes, seed));
        for req in &reqs {
            let ranked = oracle(&routes, req);
            let got = chosen(&router, req);
            let again = chosen(&reordered, req);
            match ranked.first() {
                None => {
                    prop_assert_eq!(got, None);
                    prop_assert_eq!(again, None);
                }
                Some((best, _)) => {
                    let tied: Vec<&String> =
                        ranked.iter().filter(|(k, _)| k == best).map(|(_, b)| b).collect();
                    let got = got.expect("a match exists");
                    let again = again.expect("a match exists");
                    prop_assert!(tied.contains(&&got), "{got} not among {tied:?} for {req:?}");
                    prop_assert!(tied.contains(&&again), "{again} not among {tied:?} for {req:?}");
                    if tied.len() == 1 {
                        prop_assert_eq!(got, again);
                    }
                }
            }
        }
    }

    /// Reordering only the routes (no rule reordering) never changes the
    /// choice: route keys are unique, so routes never tie exactly.
    #[test]
    fn route_order_never_matters(routes in arb_routes(), req in arb_request(), seed in any::<u64>()) {
        let mut rng = SeededRandom::new(seed);
        let mut reordered = routes.clone();
        shuffle(&mut reordered, &mut rng);
        prop_assert_eq!(chosen(&Router::new(routes), &req), chosen(&Router::new(reordered), &req));
    }

    /// Arbitrary requests (any host, method, path, headers) never panic,
    /// and outcomes stay coherent.
    #[test]
    fn matching_never_panics(
        scheme in ".{0,8}",
        host in prop_oneof![".{0,40}", "[a-zA-Z0-9.:\\[\\]*-]{0,40}"],
        method in ".{0,10}",
        path in prop_oneof![".{0,80}", "[/a-z?&=%.#]{0,80}"],
        headers in prop::collection::vec((".{0,12}", ".{0,20}"), 0..6),
        seed in any::<u64>(),
    ) {
        let router = rich_router();
        let req = RouteRequest { scheme, host, method, path, headers };
        let out = router.route(&req, &mut SeededRandom::new(seed));
        if let Some(s) = out.status() {
            prop_assert!([301, 302, 404, 500].contains(&s), "{}", s);
        }
        let again = router.route(&req, &mut SeededRandom::new(seed));
        prop_assert_eq!(out, again);
    }
}

/// A router with every feature, built once.
fn rich_router() -> &'static Router {
    static ROUTER: std::sync::OnceLock<Router> = std::sync::OnceLock::new();
    ROUTER.get_or_init(|| {
        let yaml = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: rich, namespace: ns}
spec:
  hostnames: ["*.example.com", api.example.com]
  rules:
  - matches:
    - path: {type: RegularExpression, value: "/v[0-9]+/.*"}
      headers: [{type: RegularExpression, name: x-user, value: ".*admin.*"}]
    - path: {type: Exact, value: /exact}
      method: POST
    filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: m, port: 80}, fraction: {numerator: 1, denominator: 3}}
    backendRefs: [{name: a, port: 80, weight: 2}, {name: b, port: 80}, {name: c, kind: X, group: y}]
  - matches: [{path: {value: /old}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {scheme: https, path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}}
  - matches: [{path: {value: /rw}, queryParams: [{name: v, value: "1"}]}]
    filters:
    - type: URLRewrite
      urlRewrite: {hostname: in.svc, path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}
    backendRefs: [{name: rw, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: any, namespace: ns}
spec:
  rules:
  - matches: [{path: {value: /zero}}]
    backendRefs: [{name: z, port: 80, weight: 0}]
  - matches: [{path: {value: /x}}]
    backendRefs: [{name: x, port: 80}]
"#;
        Router::new(appnet_policy::parse_http_routes(yaml).unwrap())
    })
}
