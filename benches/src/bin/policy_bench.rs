//! Decision latency of appnet-policy's indexed evaluator against a naive
//! one, as the mesh grows.
//!
//! ```text
//! cargo run --release -p appnet-benches --bin policy_bench [-- --seconds S]
//! ```
//!
//! For meshes of 10, 1,000 and 10,000 AuthorizationPolicies it times one
//! decision for the same destination and request, in the L4 view (node
//! proxy) and the L7 view (waypoint), through `PolicySet::evaluate` and
//! through the naive reference evaluator of appnet-policy's tests (every
//! policy of the mesh looked at for every request). Each path is measured
//! for `S` seconds (default 1) in interleaved rounds after a warm-up of
//! `S/4`. Goal: the indexed decision at 10,000 policies costs at most 2× the
//! decision at 10.
//!
//! Before timing, every mesh is checked: both evaluators must agree on the
//! decision, and the request must be allowed by a selector policy (so the
//! timed work includes a real rule match, not an early exit).
//!
//! Figure 2 times one rate-limit reservation plus its settlement
//! (`RateLimiter::reserve` → `Permit::settle`) with three limits per request
//! (global requests, per-principal tokens, per-principal-and-model tokens)
//! over 1,000 principals, single thread.
//!
//! Figure 3 times `Router::route` over 1,000 HTTPRoutes, in two layouts:
//! each route on its own hostname (the common waypoint case), and all on one
//! hostname, told apart by path prefix, a header match and a regex rule (the
//! worst case for precedence). Each request is checked to reach the route
//! it was aimed at before timing.

#[path = "../../../appnet-policy/tests/reference/mod.rs"]
mod reference;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::hint::black_box;
use std::process::ExitCode;

use appnet_benches::{Budget, Comparison, budget_from_args, compare};
use std::time::Duration;

use appnet_policy::{
    Attachment, CostModel, CostWeights, Destination, HttpAttributes, LimitKey, LimitRequest,
    LimitSpec, LimitUnit, ManualClock, NoExternalAuthorizer, PolicySet, RateLimiter, Reason,
    Request, Usage, View, parse_policies,
};
use appnet_policy::{RouteOutcome, RouteRequest, Router, SeededRandom, parse_http_routes};

const USAGE: &str = "usage: policy_bench [--seconds S]

  --seconds S   measured wall time per path and figure, in seconds (default 1;
                warm-up is S/4). Use e.g. 0.05 for a quick smoke run.";

const ROOT: &str = "istio-system";
/// Policies per namespace in the synthetic mesh.
const PER_NAMESPACE: usize = 10;

/// The YAML of a mesh of `n` policies: two mesh-wide ones in the root
/// namespace, then namespaces of [`PER_NAMESPACE`] each — a namespace-wide
/// DENY, and ALLOWs selecting one app each by label, with principals, ports
/// and (for the L7 view) paths.
fn mesh_yaml(n: usize) -> String {
    let mut out = String::new();
    let mut push = |name: &str, ns: &str, spec: &str| {
        out.push_str(&format!(
            "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{spec}\n"
        ));
    };
    push(
        "mesh-deny-legacy",
        ROOT,
        "  action: DENY\n  rules:\n  - from: [{source: {namespaces: [legacy]}}]",
    );
    push(
        "mesh-audit",
        ROOT,
        "  action: AUDIT\n  rules:\n  - to: [{operation: {ports: [\"9090\"]}}]",
    );
    for i in 2..n {
        let ns = format!("ns-{}", i / PER_NAMESPACE);
        let j = i % PER_NAMESPACE;
        if j == 0 {
            push(
                &format!("deny-{i}"),
                &ns,
                "  action: DENY\n  rules:\n  - from: [{source: {notPrincipals: [\"cluster.local/*\"]}}]",
            );
        } else {
            push(
                &format!("allow-app-{j}"),
                &ns,
                &format!(
                    "  selector: {{matchLabels: {{app: app-{j}}}}}\n  action: ALLOW\n  rules:\n  - from: [{{source: {{principals: [\"cluster.local/ns/{ns}/sa/client-{j}\"]}}}}]\n    to: [{{operation: {{ports: [\"8080\"], paths: [\"/api/*\"]}}}}]\n  - from: [{{source: {{namespaces: [\"{ns}\"]}}}}]\n    to: [{{operation: {{ports: [\"8080\"]}}}}]"
                ),
            );
        }
    }
    out
}

/// One mesh, its destination and request.
struct Case {
    set: PolicySet,
    policies: Vec<appnet_policy::AuthorizationPolicy>,
    dest: Destination,
    req: Request,
}

impl Case {
    fn new(n: usize) -> Self {
        let policies = parse_policies(&mesh_yaml(n), "default")
            .unwrap_or_else(|e| panic!("synthetic mesh of {n} policies must parse: {e}"));
        assert_eq!(policies.len(), n.max(2), "mesh size");
        // Destination: app-3 in the first namespace (present at every size).
        let ns = "ns-0".to_string();
        let dest = Destination {
            namespace: ns.clone(),
            attachment: Attachment::Workload {
                labels: BTreeMap::from([
                    ("app".to_string(), "app-3".to_string()),
                    ("version".to_string(), "v1".to_string()),
                ]),
            },
        };
        let req = Request {
            source_principal: Some(format!("cluster.local/ns/{ns}/sa/client-3")),
            source_ip: "10.0.0.7".parse().ok(),
            destination_ip: "10.0.1.9".parse().ok(),
            destination_port: Some(8080),
            http: Some(HttpAttributes {
                method: Some("GET".into()),
                path: Some("/api/items".into()),
                host: Some("app-3.ns-0.svc.cluster.local".into()),
                ..HttpAttributes::default()
            }),
            ..Request::default()
        };
        Self {
            set: PolicySet::new(ROOT, policies.clone()),
            policies,
            dest,
            req,
        }
    }

    fn indexed(&self, view: View) -> bool {
        self.set
            .evaluate(&self.dest, &self.req, view, &NoExternalAuthorizer)
            .allowed
    }

    fn naive(&self, view: View) -> bool {
        reference::evaluate(
            ROOT,
            &self.policies,
            &self.dest,
            &self.req,
            view,
            &NoExternalAuthorizer,
        )
        .allowed
    }

    /// Both evaluators agree and the request is allowed by a rule match.
    fn check(&self, view: View) {
        let d = self
            .set
            .evaluate(&self.dest, &self.req, view, &NoExternalAuthorizer);
        let naive = reference::evaluate(
            ROOT,
            &self.policies,
            &self.dest,
            &self.req,
            view,
            &NoExternalAuthorizer,
        );
        assert_eq!(
            reference::Outcome::from(d.clone()),
            naive,
            "evaluators disagree"
        );
        assert!(
            matches!(d.reason, Reason::Allowed(_)),
            "the bench request must be allowed by a rule match, got {:?}",
            d.reason
        );
    }
}

fn ns_per_op(cmp_side: &appnet_benches::Throughput) -> f64 {
    cmp_side.mean().as_secs_f64() * 1e9
}

fn run(budget: &Budget) {
    println!("1. AuthorizationPolicy decision latency (one destination, one request)");
    let mut indexed_ns: BTreeMap<(usize, &str), f64> = BTreeMap::new();
    for n in [10usize, 1_000, 10_000] {
        let case = Case::new(n);
        for (view, label) in [(View::L4, "L4"), (View::L7, "L7")] {
            case.check(view);
            let cmp: Comparison = compare::<Infallible>(
                budget,
                || {
                    black_box(case.indexed(view));
                    Ok(())
                },
                || {
                    black_box(case.naive(view));
                    Ok(())
                },
            )
            .unwrap_or_else(|e| match e {});
            let (ours, naive) = (ns_per_op(&cmp.ours), ns_per_op(&cmp.reference));
            indexed_ns.insert((n, label), ours);
            println!(
                "  {n:>6} policies {label}: indexed {ours:>10.0} ns/decision   naive {naive:>12.0} ns/decision   naive/indexed {:>8.1}x",
                naive / ours.max(f64::MIN_POSITIVE),
            );
        }
    }
    for label in ["L4", "L7"] {
        let small = indexed_ns.get(&(10, label)).copied().unwrap_or(0.0);
        let big = indexed_ns.get(&(10_000, label)).copied().unwrap_or(0.0);
        let growth = big / small.max(f64::MIN_POSITIVE);
        println!(
            "  {label} indexed cost at 10,000 / at 10 policies: {growth:.2}x (goal <= 2.00x: {})",
            if growth <= 2.0 { "met" } else { "NOT met" }
        );
    }
    println!();
}

fn rate_limits(budget: &Budget) {
    println!("2. Rate limits: reserve + settle (3 limits per request, 1,000 principals)");
    let clock = ManualClock::new();
    let big = 1 << 50;
    let hour = Duration::from_secs(3600);
    let limiter = RateLimiter::builder()
        .clock(clock.clone())
        .limit(LimitSpec::new(
            "global-rps",
            LimitUnit::Requests,
            big,
            hour,
            LimitKey::Global,
        ))
        .limit(LimitSpec::new(
            "tokens-per-principal",
            LimitUnit::Tokens,
            big,
            hour,
            LimitKey::PerPrincipal,
        ))
        .limit(LimitSpec::new(
            "tokens-per-principal-model",
            LimitUnit::Tokens,
            big,
            hour,
            LimitKey::PerPrincipalModel,
        ))
        .cost_model(CostModel::new(CostWeights::per_mille(1000, 100, 4000)))
        .build()
        .unwrap_or_else(|e| panic!("bench limiter must build: {e}"));
    let principals: Vec<String> = (0..1000)
        .map(|i| format!("cluster.local/ns/team-{}/sa/app-{i}", i % 10))
        .collect();
    let mut i = 0usize;
    let now = appnet_policy::Clock::now(&clock);
    let mut op = || -> Result<(), appnet_policy::RateLimitError> {
        let principal = &principals[i % principals.len()];
        i = i.wrapping_add(1);
        let req = LimitRequest::new(principal.as_str(), "gpt-4o").with_tokens(500, 1000);
        let permit = limiter.reserve(&req, now)?;
        permit.settle(
            Usage {
                input: 500,
                cached_input: 100,
                output: 700,
            },
            now,
        );
        Ok(())
    };
    appnet_benches::run_for(budget.warm_up, &mut op)
        .unwrap_or_else(|e| panic!("bench limits never reject: {e}"));
    let t = appnet_benches::run_for(budget.measure, &mut op)
        .unwrap_or_else(|e| panic!("bench limits never reject: {e}"));
    println!(
        "  reserve+settle: {:>10.0} ops/s  ({:.0} ns/op, {} ops in {:.2} s)",
        t.per_second(),
        ns_per_op(&t),
        t.ops,
        t.elapsed.as_secs_f64()
    );
    println!();
}

/// 1,000 HTTPRoutes: on their own hostnames (`shared == false`) or all on
/// one hostname.
fn routes_yaml(shared: bool) -> String {
    let mut out = String::new();
    for i in 0..1000 {
        let host = if shared {
            "api.example.com".to_string()
        } else {
            format!("svc-{i}.example.com")
        };
        out.push_str(&format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r{i}, namespace: default}}\nspec:\n  hostnames: [\"{host}\"]\n  rules:\n  - matches:\n    - path: {{type: PathPrefix, value: /v1/svc-{i}}}\n      headers: [{{name: x-tenant, value: t{i}}}]\n    backendRefs: [{{name: svc-{i}-canary, port: 8080, weight: 10}}, {{name: svc-{i}, port: 8080, weight: 90}}]\n  - matches:\n    - path: {{type: PathPrefix, value: /v1/svc-{i}}}\n    - path: {{type: RegularExpression, value: \"/v2/svc-{i}/[a-z]+\"}}\n    backendRefs: [{{name: svc-{i}, port: 8080}}]\n"
        ));
    }
    out
}

fn routing(budget: &Budget) {
    println!("3. HTTPRoute matching with 1,000 routes");
    for (shared, layout) in [
        (false, "one hostname per route"),
        (true, "all on one hostname"),
    ] {
        let routes = parse_http_routes(&routes_yaml(shared))
            .unwrap_or_else(|e| panic!("bench routes must parse: {e}"));
        let router = Router::new(routes);
        let host = |i: usize| {
            if shared {
                "api.example.com".to_string()
            } else {
                format!("svc-{i}.example.com")
            }
        };
        let requests: Vec<(RouteRequest, String)> = [17usize, 500, 983]
            .iter()
            .flat_map(|&i| {
                [
                    (
                        RouteRequest {
                            scheme: "http".into(),
                            host: host(i),
                            method: "GET".into(),
                            path: format!("/v1/svc-{i}/items?page=2"),
                            headers: vec![("x-tenant".into(), format!("t{i}"))],
                        },
                        format!("default/r{i}"),
                    ),
                    (
                        RouteRequest {
                            scheme: "http".into(),
                            host: host(i),
                            method: "GET".into(),
                            path: format!("/v2/svc-{i}/items"),
                            headers: Vec::new(),
                        },
                        format!("default/r{i}"),
                    ),
                ]
            })
            .collect();
        let mut rng = SeededRandom::new(7);
        for (req, want) in &requests {
            match router.route(req, &mut rng) {
                RouteOutcome::Forward(f) => assert_eq!(&f.route.key(), want, "{req:?}"),
                other => panic!("bench request {req:?} must be forwarded, got {other:?}"),
            }
        }
        let mut i = 0usize;
        let mut op = || -> Result<(), Infallible> {
            let (req, _) = &requests[i % requests.len()];
            i = i.wrapping_add(1);
            black_box(router.route(req, &mut rng));
            Ok(())
        };
        let _ = appnet_benches::run_for(budget.warm_up, &mut op);
        let t = appnet_benches::run_for(budget.measure, &mut op).unwrap_or_else(|e| match e {});
        println!(
            "  {layout:<24} {:>10.0} routes/s  ({:.0} ns/request, {} requests in {:.2} s)",
            t.per_second(),
            ns_per_op(&t),
            t.ops,
            t.elapsed.as_secs_f64()
        );
    }
    println!();
}

fn main() -> ExitCode {
    let budget = match budget_from_args("policy_bench", USAGE, 1.0, std::env::args().skip(1)) {
        Ok(budget) => budget,
        Err(code) => return code,
    };
    println!(
        "appnet policy bench: {:.2} s measured per path ({} interleaved rounds) after {:.2} s warm-up; single thread",
        budget.measure.as_secs_f64(),
        budget.rounds,
        budget.warm_up.as_secs_f64(),
    );
    println!();
    run(&budget);
    rate_limits(&budget);
    routing(&budget);
    ExitCode::SUCCESS
}
