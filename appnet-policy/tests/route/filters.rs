//! Filters: header modifiers, redirects, rewrites, mirrors.

use appnet_policy::{RouteOutcome, RouteRequest, Router, SeededRandom};

use crate::{doc, forward, get, route, router};

fn with_filters(matches: &str, filters: &str, backends: &str) -> Router {
    router(&[doc(
        "r",
        "ns",
        &format!(
            "hostnames: [h.com]\nrules:\n- matches: {matches}\n  filters:\n{filters}\n  backendRefs: {backends}"
        ),
    )])
}

fn redirect(r: &Router, req: &RouteRequest) -> (u16, String) {
    match route(r, req) {
        RouteOutcome::Redirect(rd) => (rd.status, rd.location),
        other => panic!("expected a redirect, got {other:?}"),
    }
}

#[test]
fn request_header_modifier_removes_sets_adds() {
    let r = with_filters(
        "[]",
        "  - type: RequestHeaderModifier\n    requestHeaderModifier:\n      set: [{name: X-Set, value: new}]\n      add: [{name: x-add, value: more}]\n      remove: [X-Gone]",
        "[{name: a, port: 80}]",
    );
    let f = forward(&r, &get("h.com", "/"));
    let mut headers = vec![
        ("x-set".to_owned(), "old1".to_owned()),
        ("X-SET".to_owned(), "old2".to_owned()),
        ("x-add".to_owned(), "first".to_owned()),
        ("x-gone".to_owned(), "bye".to_owned()),
        ("keep".to_owned(), "1".to_owned()),
    ];
    f.apply_request_headers(&mut headers);
    headers.sort();
    assert_eq!(
        headers,
        vec![
            ("keep".to_owned(), "1".to_owned()),
            ("x-add".to_owned(), "first".to_owned()),
            ("x-add".to_owned(), "more".to_owned()),
            ("x-set".to_owned(), "new".to_owned()),
        ]
    );
    assert_eq!(f.request_header_modifiers().count(), 1);
    assert_eq!(f.response_header_modifiers().count(), 0);
}

#[test]
fn response_and_backend_header_modifiers() {
    let r = router(&[doc(
        "r",
        "ns",
        "rules:\n- filters:\n  - type: ResponseHeaderModifier\n    responseHeaderModifier: {set: [{name: x-rule, value: '1'}]}\n  backendRefs:\n  - name: a\n    port: 80\n    filters:\n    - type: ResponseHeaderModifier\n      responseHeaderModifier: {add: [{name: x-backend, value: '1'}]}\n    - type: RequestHeaderModifier\n      requestHeaderModifier: {remove: [cookie]}",
    )]);
    let f = forward(&r, &get("any", "/"));
    let mut resp = Vec::new();
    f.apply_response_headers(&mut resp);
    assert_eq!(
        resp,
        vec![
            ("x-rule".to_owned(), "1".to_owned()),
            ("x-backend".to_owned(), "1".to_owned())
        ]
    );
    let mut req = vec![("Cookie".to_owned(), "c".to_owned())];
    f.apply_request_headers(&mut req);
    assert!(req.is_empty());
}

#[test]
fn redirect_defaults_to_302_and_the_request() {
    let r = with_filters(
        "[]",
        "  - type: RequestRedirect\n    requestRedirect: {}",
        "[]",
    );
    assert_eq!(
        redirect(&r, &get("h.com", "/a?b=1")),
        (302, "http://h.com/a?b=1".to_owned())
    );
}

#[test]
fn redirect_to_https_uses_the_well_known_port() {
    let r = with_filters(
        "[]",
        "  - type: RequestRedirect\n    requestRedirect: {scheme: https, statusCode: 301}",
        "[]",
    );
    assert_eq!(
        redirect(&r, &get("h.com:8080", "/x")),
        (301, "https://h.com/x".to_owned())
    );
}

#[test]
fn redirect_without_scheme_keeps_the_request_port() {
    let r = with_filters(
        "[]",
        "  - type: RequestRedirect\n    requestRedirect: {hostname: other.com}",
        "[]",
    );
    assert_eq!(
        redirect(&r, &get("h.com:8080", "/")).1,
        "http://other.com:8080/"
    );
    assert_eq!(redirect(&r, &get("h.com:80", "/")).1, "http://other.com/");
    let mut tls = get("h.com:443", "/");
    tls.scheme = "https".into();
    assert_eq!(redirect(&r, &tls).1, "https://other.com/");
}

#[test]
fn redirect_explicit_port_is_shown_unless_well_known() {
    let r = with_filters(
        "[]",
        "  - type: RequestRedirect\n    requestRedirect: {scheme: https, port: 8443}",
        "[]",
    );
    assert_eq!(redirect(&r, &get("h.com", "/")).1, "https://h.com:8443/");
    let r = with_filters(
        "[]",
        "  - type: RequestRedirect\n    requestRedirect: {scheme: https, port: 443}",
        "[]",
    );
    assert_eq!(redirect(&r, &get("h.com", "/")).1, "https://h.com/");
}

#[test]
fn redirect_replaces_full_path_or_prefix() {
    let r = with_filters(
        "[]",
        "  - type: RequestRedirect\n    requestRedirect: {path: {type: ReplaceFullPath, replaceFullPath: /new}}",
        "[]",
    );
    assert_eq!(
        redirect(&r, &get("h.com", "/old/x?q=1")).1,
        "http://h.com/new?q=1"
    );
    let r = with_filters(
        "[{path: {type: PathPrefix, value: /old}}]",
        "  - type: RequestRedirect\n    requestRedirect: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}}",
        "[]",
    );
    assert_eq!(
        redirect(&r, &get("h.com", "/old/x")).1,
        "http://h.com/new/x"
    );
    assert_eq!(redirect(&r, &get("h.com", "/old")).1, "http://h.com/new");
}

#[test]
fn rewrite_sets_host_and_full_path() {
    let r = with_filters(
        "[]",
        "  - type: URLRewrite\n    urlRewrite: {hostname: internal.svc, path: {type: ReplaceFullPath, replaceFullPath: /v2}}",
        "[{name: a, port: 80}]",
    );
    let f = forward(&r, &get("h.com", "/v1/x?q=1"));
    assert_eq!(f.host.as_deref(), Some("internal.svc"));
    assert_eq!(f.path.as_deref(), Some("/v2?q=1"));
}

#[test]
fn rewrite_replaces_the_matched_prefix() {
    let r = with_filters(
        "[{path: {value: /api/}}]",
        "  - type: URLRewrite\n    urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}",
        "[{name: a, port: 80}]",
    );
    for (from, to) in [
        ("/api/users", "/users"),
        ("/api", "/"),
        ("/api/", "/"),
        ("/api/a/b?x", "/a/b?x"),
    ] {
        let f = forward(&r, &get("h.com", from));
        assert_eq!(f.path.as_deref(), Some(to), "{from}");
        assert_eq!(f.host, None);
    }
}

#[test]
fn no_rewrite_leaves_host_and_path() {
    let r = with_filters(
        "[]",
        "  - type: RequestHeaderModifier\n    requestHeaderModifier: {}",
        "[{name: a, port: 80}]",
    );
    let f = forward(&r, &get("h.com", "/x"));
    assert_eq!((f.host, f.path), (None, None));
}

#[test]
fn mirror_defaults_to_every_request() {
    let r = with_filters(
        "[]",
        "  - type: RequestMirror\n    requestMirror: {backendRef: {name: shadow, port: 80}}",
        "[{name: a, port: 80}]",
    );
    let f = forward(&r, &get("h.com", "/"));
    assert_eq!(f.mirrors.len(), 1);
    assert_eq!(f.mirrors[0].backend.name, "shadow");
    assert_eq!(f.mirrors[0].backend.namespace, "ns");
}

fn mirrored_share(r: &Router) -> f64 {
    let mut rng = SeededRandom::new(11);
    let hits = (0..10_000)
        .filter(|_| match r.route(&get("h.com", "/"), &mut rng) {
            RouteOutcome::Forward(f) => !f.mirrors.is_empty(),
            other => panic!("{other:?}"),
        })
        .count();
    hits as f64 / 100.0
}

#[test]
fn mirror_percent_and_fraction_sample_their_share() {
    let r = with_filters(
        "[]",
        "  - type: RequestMirror\n    requestMirror: {backendRef: {name: s, port: 80}, percent: 30}",
        "[{name: a, port: 80}]",
    );
    assert!((mirrored_share(&r) - 30.0).abs() <= 2.0);
    let r = with_filters(
        "[]",
        "  - type: RequestMirror\n    requestMirror: {backendRef: {name: s, port: 80}, fraction: {numerator: 1, denominator: 8}}",
        "[{name: a, port: 80}]",
    );
    assert!((mirrored_share(&r) - 12.5).abs() <= 2.0);
    let r = with_filters(
        "[]",
        "  - type: RequestMirror\n    requestMirror: {backendRef: {name: s, port: 80}, percent: 0}",
        "[{name: a, port: 80}]",
    );
    assert_eq!(mirrored_share(&r), 0.0);
}

#[test]
fn mirrors_repeat_and_invalid_ones_are_dropped() {
    let r = with_filters(
        "[]",
        "  - type: RequestMirror\n    requestMirror: {backendRef: {name: s1, port: 80}}\n  - type: RequestMirror\n    requestMirror: {backendRef: {name: s2, kind: Unknown, group: x.io}}\n  - type: RequestMirror\n    requestMirror: {backendRef: {name: s3, port: 81}}",
        "[{name: a, port: 80}]",
    );
    let f = forward(&r, &get("h.com", "/"));
    let names: Vec<&str> = f.mirrors.iter().map(|m| m.backend.name.as_str()).collect();
    assert_eq!(names, ["s1", "s3"]);
}
