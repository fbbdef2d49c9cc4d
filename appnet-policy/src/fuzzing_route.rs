//! Fuzz entry point for HTTPRoute parsing and matching (re-exported from
//! `appnet_policy::fuzzing`). Not part of the stable API.

use crate::random::SeededRandom;
use crate::route::{RouteOutcome, RouteRequest, Router, parse_http_routes};

/// Splits `data` at its first NUL byte into HTTPRoute YAML and a request
/// (first line `METHOD HOST PATH [SCHEME]`, then `name: value` header
/// lines), parses the routes, builds a [`Router`] and routes the request
/// twice with the same seed. Asserts that routing is deterministic and
/// that every outcome is coherent (the chosen rule and backend belong to the
/// reported route, statuses are the documented ones).
pub fn route_match(data: &[u8]) {
    let split = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    let yaml = String::from_utf8_lossy(&data[..split]);
    let rest = data.get(split + 1..).unwrap_or(&[]);
    let Ok(routes) = parse_http_routes(&yaml) else {
        return;
    };
    let req = request(&String::from_utf8_lossy(rest));
    let seed = data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    let router = Router::new(routes);
    let first = router.route(&req, &mut SeededRandom::new(seed));
    let again = router.route(&req, &mut SeededRandom::new(seed));
    assert_eq!(first, again, "routing must be deterministic");
    check(&router, &first);
}

fn request(text: &str) -> RouteRequest {
    let mut lines = text.lines();
    let mut first = lines.next().unwrap_or("").split(' ');
    let mut req = RouteRequest {
        method: first.next().unwrap_or("").to_owned(),
        host: first.next().unwrap_or("").to_owned(),
        path: first.next().unwrap_or("").to_owned(),
        scheme: first.next().unwrap_or("").to_owned(),
        headers: Vec::new(),
    };
    for line in lines {
        let (n, v) = line.split_once(':').unwrap_or((line, ""));
        req.headers.push((n.to_owned(), v.trim_start().to_owned()));
    }
    req
}

fn check(router: &Router, outcome: &RouteOutcome<'_>) {
    match outcome {
        RouteOutcome::Forward(f) => {
            assert_eq!(f.route.key(), f.route_key);
            assert!(router.routes().iter().any(|r| std::ptr::eq(r, f.route)));
            assert!(std::ptr::eq(&f.route.rules[f.rule_index], f.rule));
            assert!(std::ptr::eq(
                &f.rule.backend_refs[f.backend_index],
                f.backend
            ));
            assert!(f.backend.weight > 0, "a weight-0 backend got traffic");
            for m in &f.mirrors {
                assert!(m.fraction.numerator > 0);
            }
        }
        RouteOutcome::Redirect(r) => {
            assert!([301, 302, 303, 307, 308].contains(&r.status));
            assert!(r.location.contains("://"));
        }
        RouteOutcome::Direct(d) => match d.status {
            404 => assert!(d.route_key.is_none() && d.rule_index.is_none()),
            500 => assert!(d.route_key.is_some() && d.rule_index.is_some()),
            other => panic!("unexpected direct status {other}"),
        },
    }
}
