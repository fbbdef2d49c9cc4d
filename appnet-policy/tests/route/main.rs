//! HTTPRoute routing: one named test per routing rule and edge case of
//! POLICY.md, filters and weighted backends, bad input, and properties.

mod backends;
mod bad_input;
mod filters;
mod matching;
mod props;

use appnet_policy::{
    Forward, HttpRoute, Random, RouteOutcome, RouteRequest, Router, SeededRandom, parse_http_routes,
};

/// One HTTPRoute document. `spec` is the YAML under `spec:`, indented by
/// two spaces per level relative to `spec`.
pub(crate) fn doc(name: &str, ns: &str, spec: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n{}\n",
        indent(spec)
    )
}

/// Like [`doc`] with a `creationTimestamp`.
pub(crate) fn doc_at(name: &str, ns: &str, created: &str, spec: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: {name}\n  namespace: {ns}\n  creationTimestamp: \"{created}\"\nspec:\n{}\n",
        indent(spec)
    )
}

fn indent(s: &str) -> String {
    s.trim_matches('\n')
        .lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Parses, panicking with the error text.
pub(crate) fn routes(yaml: &str) -> Vec<HttpRoute> {
    parse_http_routes(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

/// A router over the `---`-joined documents.
pub(crate) fn router(docs: &[String]) -> Router {
    Router::new(routes(&docs.join("---\n")))
}

/// A GET request.
pub(crate) fn get(host: &str, path: &str) -> RouteRequest {
    RouteRequest {
        method: "GET".into(),
        host: host.into(),
        path: path.into(),
        ..RouteRequest::default()
    }
}

/// Routes with a fixed seed.
pub(crate) fn route<'r>(r: &'r Router, req: &RouteRequest) -> RouteOutcome<'r> {
    r.route(req, &mut SeededRandom::new(1))
}

/// The forward outcome, or a panic naming what came instead.
pub(crate) fn forward<'r>(r: &'r Router, req: &RouteRequest) -> Forward<'r> {
    match route(r, req) {
        RouteOutcome::Forward(f) => f,
        other => panic!("expected a forward for {req:?}, got {other:?}"),
    }
}

/// The chosen backend's name, or `"404"`/`"500"`/`"30x"` for answers.
pub(crate) fn pick(r: &Router, req: &RouteRequest) -> String {
    pick_with(r, req, &mut SeededRandom::new(1))
}

/// [`pick`] with a given generator.
pub(crate) fn pick_with(r: &Router, req: &RouteRequest, rng: &mut dyn Random) -> String {
    match r.route(req, rng) {
        RouteOutcome::Forward(f) => f.backend.backend.name.clone(),
        other => other.status().map(|s| s.to_string()).unwrap_or_default(),
    }
}

/// A rule with one matching block (YAML lines under `matches:`) sending to
/// Service `backend`.
pub(crate) fn rule(matches: &str, backend: &str) -> String {
    let mut out = String::from("- ");
    if matches.is_empty() {
        out.push_str("matches: []\n  ");
    } else {
        out.push_str("matches:\n");
        for l in matches.trim_matches('\n').lines() {
            out.push_str("  ");
            out.push_str(l);
            out.push('\n');
        }
        out.push_str("  ");
    }
    out.push_str(&format!("backendRefs: [{{name: {backend}, port: 80}}]\n"));
    out
}

/// A spec with `hostnames` (may be empty) and rules.
pub(crate) fn spec(hostnames: &[&str], rules: &[String]) -> String {
    let mut out = String::new();
    if !hostnames.is_empty() {
        out.push_str(&format!("hostnames: {hostnames:?}\n"));
    }
    out.push_str("rules:\n");
    for r in rules {
        out.push_str(r);
    }
    out
}
