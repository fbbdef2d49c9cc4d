//! Parsing: what is kept, defaults, and every bad input as a typed error
//! naming the route and the field.

use std::time::{Duration, SystemTime};

use appnet_policy::{
    BackendRef, Fraction, MAX_INPUT_BYTES, Method, ParentRef, PathMatch, PathModifier, RegexError,
    RouteError, RouteFilter, RouteInvalid, UrlRewrite, ValueMatch, parse_http_routes,
};

use crate::doc;

/// The error for `spec`, asserting it names `ns/r` and `field`.
fn invalid(spec: &str, field: &str) -> RouteInvalid {
    match parse_http_routes(&doc("r", "ns", spec)) {
        Err(RouteError::Invalid {
            route,
            field: f,
            reason,
        }) => {
            assert_eq!(route, "ns/r");
            assert_eq!(f, field, "{reason}");
            reason
        }
        other => panic!("expected Invalid at {field}, got {other:?}"),
    }
}

/// A schema error for `spec`, asserting it names `ns/r` and `field`.
fn schema(spec: &str, field: &str) -> String {
    match parse_http_routes(&doc("r", "ns", spec)) {
        Err(RouteError::Schema {
            route,
            field: f,
            message,
        }) => {
            assert_eq!(route, "ns/r");
            assert_eq!(f, field, "{message}");
            message
        }
        other => panic!("expected Schema at {field}, got {other:?}"),
    }
}

const FULL: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: shop
  namespace: web
  creationTimestamp: "2024-01-02T03:04:05Z"
  labels: {app: shop}
  uid: 1234
spec:
  parentRefs:
  - name: waypoint
  - {group: "", kind: Service, name: shop, port: 8080, sectionName: http}
  hostnames: [shop.example.com, "*.shop.example.com"]
  rules:
  - name: api
    matches:
    - path: {type: Exact, value: /api}
      method: PATCH
      headers: [{name: X-A, value: "1"}, {name: x-a, value: ignored}]
      queryParams: [{type: RegularExpression, name: q, value: "[a-z]+"}]
    filters:
    - type: URLRewrite
      urlRewrite: {hostname: api.internal}
    backendRefs:
    - {name: api, port: 80, weight: 3}
    - {name: api-v2, namespace: other, port: 80}
    - {name: ext, group: networking.istio.io, kind: Hostname, port: 443}
    timeouts: {request: 10s, backendRequest: 2s}
status:
  parents: []
"#;

#[test]
fn parses_every_field_with_defaults() {
    let rs = parse_http_routes(FULL).unwrap();
    assert_eq!(rs.len(), 1);
    let r = &rs[0];
    assert_eq!((r.name.as_str(), r.namespace.as_str()), ("shop", "web"));
    assert_eq!(r.key(), "web/shop");
    assert_eq!(
        r.creation_timestamp,
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_164_645))
    );
    assert_eq!(
        r.parent_refs[0],
        ParentRef {
            group: "gateway.networking.k8s.io".into(),
            kind: "Gateway".into(),
            namespace: None,
            name: "waypoint".into(),
            section_name: None,
            port: None,
        }
    );
    assert_eq!(r.parent_refs[1].port, Some(8080));
    assert_eq!(r.parent_refs[1].kind, "Service");
    assert_eq!(r.hostnames, ["shop.example.com", "*.shop.example.com"]);
    let rule = &r.rules[0];
    assert_eq!(rule.name.as_deref(), Some("api"));
    let m = &rule.matches[0];
    assert_eq!(m.path, PathMatch::Exact("/api".into()));
    assert_eq!(m.method, Some(Method::Patch));
    assert_eq!(m.headers.len(), 1, "the first of equivalent names is kept");
    assert_eq!(m.headers[0].name, "x-a");
    assert_eq!(m.headers[0].value, ValueMatch::Exact("1".into()));
    assert!(
        matches!(&m.query_params[0].value, ValueMatch::RegularExpression(r) if r.as_str() == "[a-z]+")
    );
    assert_eq!(
        rule.filters,
        [RouteFilter::UrlRewrite(UrlRewrite {
            hostname: Some("api.internal".into()),
            path: None
        })]
    );
    let b = &rule.backend_refs;
    assert_eq!(b[0].weight, 3);
    assert_eq!(b[1].weight, 1);
    assert_eq!(
        b[1].backend,
        BackendRef {
            group: String::new(),
            kind: "Service".into(),
            name: "api-v2".into(),
            namespace: "other".into(),
            port: Some(80),
        }
    );
    assert_eq!(b[0].backend.namespace, "web");
    assert_eq!(b[2].backend.kind, "Hostname");
    let t = rule.timeouts.unwrap();
    assert_eq!(t.request, Some(Duration::from_secs(10)));
    assert_eq!(t.backend_request, Some(Duration::from_secs(2)));
}

#[test]
fn namespace_defaults_and_stream_skips_empty_documents() {
    let yaml = "---\n".to_owned()
        + &doc("a", "x", "rules: [{}]").replace("  namespace: x\n", "")
        + "---\n---\n"
        + &doc("b", "y", "rules: [{}]");
    let rs = parse_http_routes(&yaml).unwrap();
    assert_eq!(rs.len(), 2);
    assert_eq!(rs[0].key(), "default/a");
    assert_eq!(rs[1].key(), "y/b");
    assert_eq!(
        rs[0].rules[0].matches[0].path,
        PathMatch::PathPrefix("/".into())
    );
    assert!(parse_http_routes("").unwrap().is_empty());
}

#[test]
fn v1beta1_is_accepted_other_kinds_are_not() {
    let beta = doc("a", "x", "rules: [{}]").replace("/v1\n", "/v1beta1\n");
    assert_eq!(parse_http_routes(&beta).unwrap().len(), 1);
    let grpc = doc("a", "x", "rules: [{}]").replace("kind: HTTPRoute", "kind: GRPCRoute");
    assert!(matches!(
        parse_http_routes(&grpc),
        Err(RouteError::WrongKind { document: 0, kind, .. }) if kind == "GRPCRoute"
    ));
    let second = doc("a", "x", "rules: [{}]") + "---\napiVersion: v1\nkind: Service\n";
    assert!(matches!(
        parse_http_routes(&second),
        Err(RouteError::WrongKind { document: 1, .. })
    ));
}

#[test]
fn unknown_fields_name_route_and_field() {
    schema(
        "rules: [{backendRefs: [{name: a, port: 80, wieght: 2}]}]",
        "spec.rules[0].backendRefs[0].wieght",
    );
    schema("hostname: [a.com]", "spec.hostname");
    schema(
        "rules: [{matches: [{path: {value: /, kind: Exact}}]}]",
        "spec.rules[0].matches[0].path.kind",
    );
}

#[test]
fn wrong_types_name_route_and_field() {
    let m = schema(
        "rules: [{backendRefs: [{name: a, port: eighty}]}]",
        "spec.rules[0].backendRefs[0].port",
    );
    assert!(m.contains("invalid type"), "{m}");
    schema("hostnames: a.com", "spec.hostnames");
    schema(
        "rules: [{matches: [{headers: [{name: x, value: 1}]}]}]",
        "spec.rules[0].matches[0].headers[0].value",
    );
    // An unnamed document is named by position.
    let yaml = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nspec: 5\n";
    assert!(matches!(
        parse_http_routes(yaml),
        Err(RouteError::Schema { route, .. }) if route == "document 0"
    ));
}

#[test]
fn missing_name_spec_and_rules() {
    let no_name = doc("", "ns", "rules: [{}]");
    assert!(matches!(
        parse_http_routes(&no_name),
        Err(RouteError::Invalid { field, reason: RouteInvalid::Required, .. }) if field == "metadata.name"
    ));
    let no_spec = doc("r", "ns", "").replace("spec:\n", "");
    assert!(matches!(
        parse_http_routes(&no_spec),
        Err(RouteError::Invalid { field, .. }) if field == "spec"
    ));
    assert_eq!(invalid("rules: []", "spec.rules"), RouteInvalid::EmptyList);
}

#[test]
fn bad_regexes_are_rejected() {
    let r = invalid(
        "rules: [{matches: [{path: {type: RegularExpression, value: '/a(b'}}]}]",
        "spec.rules[0].matches[0].path.value",
    );
    assert!(matches!(r, RouteInvalid::BadRegex(RegexError::Invalid(_))));
    // Backreferences and look-around are not RE2.
    invalid(
        "rules: [{matches: [{headers: [{type: RegularExpression, name: x, value: '(a)\\1'}]}]}]",
        "spec.rules[0].matches[0].headers[0].value",
    );
}

#[test]
fn oversized_regexes_are_rejected() {
    let long = "a".repeat(appnet_policy::MAX_REGEX_LEN + 1);
    let r = invalid(
        &format!("rules: [{{matches: [{{path: {{type: RegularExpression, value: '{long}'}}}}]}}]"),
        "spec.rules[0].matches[0].path.value",
    );
    assert!(matches!(
        r,
        RouteInvalid::BadRegex(RegexError::TooLong { .. })
    ));
    // Short but explosive once compiled.
    let r = invalid(
        "rules: [{matches: [{queryParams: [{type: RegularExpression, name: q, value: '((a{100}){100}){100}'}]}]}]",
        "spec.rules[0].matches[0].queryParams[0].value",
    );
    assert!(
        matches!(r, RouteInvalid::BadRegex(RegexError::Invalid(_))),
        "{r:?}"
    );
    // Nesting beyond the limit.
    let deep = "(".repeat(40) + "a" + &")".repeat(40);
    invalid(
        &format!("rules: [{{matches: [{{path: {{type: RegularExpression, value: '{deep}'}}}}]}}]"),
        "spec.rules[0].matches[0].path.value",
    );
}

#[test]
fn ports_out_of_range_are_rejected() {
    for (port, want) in [("0", 0), ("70000", 70000), ("-1", -1)] {
        let r = invalid(
            &format!("rules: [{{backendRefs: [{{name: a, port: {port}}}]}}]"),
            "spec.rules[0].backendRefs[0].port",
        );
        assert_eq!(r, RouteInvalid::BadPort(want));
    }
    invalid(
        "parentRefs: [{name: g, port: 0}]",
        "spec.parentRefs[0].port",
    );
    invalid(
        "rules: [{filters: [{type: RequestRedirect, requestRedirect: {port: 65536}}]}]",
        "spec.rules[0].filters[0].requestRedirect.port",
    );
    assert_eq!(
        invalid(
            "rules: [{backendRefs: [{name: a}]}]",
            "spec.rules[0].backendRefs[0].port"
        ),
        RouteInvalid::MissingPort
    );
}

#[test]
fn weights_out_of_range_are_rejected() {
    for w in ["-1", "1000001"] {
        invalid(
            &format!("rules: [{{backendRefs: [{{name: a, port: 80, weight: {w}}}]}}]"),
            "spec.rules[0].backendRefs[0].weight",
        );
    }
}

#[test]
fn redirect_with_backend_refs_conflicts() {
    assert_eq!(
        invalid(
            "rules: [{filters: [{type: RequestRedirect, requestRedirect: {}}], backendRefs: [{name: a, port: 80}]}]",
            "spec.rules[0].filters[0]",
        ),
        RouteInvalid::RedirectWithBackends
    );
}

#[test]
fn redirect_with_rewrite_conflicts() {
    assert_eq!(
        invalid(
            "rules: [{filters: [{type: URLRewrite, urlRewrite: {}}, {type: RequestRedirect, requestRedirect: {}}]}]",
            "spec.rules[0].filters[1]",
        ),
        RouteInvalid::RedirectWithRewrite
    );
}

#[test]
fn prefix_rewrite_needs_exactly_one_prefix_match() {
    let f = "filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /x}}}]";
    for matches in [
        "[{path: {type: Exact, value: /a}}]",
        "[{path: {value: /a}}, {path: {value: /b}}]",
        "[{path: {type: RegularExpression, value: /a}}]",
    ] {
        assert_eq!(
            invalid(
                &format!("rules: [{{matches: {matches}, {f}}}]"),
                "spec.rules[0].filters[0]"
            ),
            RouteInvalid::PrefixRewriteWithoutPrefixMatch
        );
    }
    // Default match (PathPrefix /) is fine.
    assert!(parse_http_routes(&doc("r", "ns", &format!("rules: [{{{f}}}]"))).is_ok());
}

#[test]
fn filter_type_must_match_its_configuration() {
    let r = invalid(
        "rules: [{filters: [{type: RequestHeaderModifier, responseHeaderModifier: {}}]}]",
        "spec.rules[0].filters[0]",
    );
    assert_eq!(
        r,
        RouteInvalid::FilterConfigMismatch("RequestHeaderModifier".into())
    );
    invalid(
        "rules: [{filters: [{type: RequestMirror}]}]",
        "spec.rules[0].filters[0]",
    );
    assert_eq!(
        invalid(
            "rules: [{filters: [{type: Teleport}]}]",
            "spec.rules[0].filters[0].type"
        ),
        RouteInvalid::UnsupportedValue("Teleport".into())
    );
    assert_eq!(
        invalid(
            "rules: [{filters: [{type: ExtensionRef, extensionRef: {group: x, kind: y, name: z}}]}]",
            "spec.rules[0].filters[0].type"
        ),
        RouteInvalid::UnsupportedFilter("ExtensionRef".into())
    );
}

#[test]
fn filters_that_cannot_repeat() {
    let h = "{type: RequestHeaderModifier, requestHeaderModifier: {}}";
    assert_eq!(
        invalid(
            &format!("rules: [{{filters: [{h}, {h}]}}]"),
            "spec.rules[0].filters[1]"
        ),
        RouteInvalid::RepeatedFilter("RequestHeaderModifier".into())
    );
    assert!(matches!(
        invalid(
            "rules: [{backendRefs: [{name: a, port: 80, filters: [{type: RequestRedirect, requestRedirect: {}}]}]}]",
            "spec.rules[0].backendRefs[0].filters[0].type",
        ),
        RouteInvalid::UnsupportedFilter(_)
    ));
}

#[test]
fn header_modifier_names_take_one_action() {
    let r = invalid(
        "rules: [{filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X, value: a}], remove: [x]}}]}]",
        "spec.rules[0].filters[0].requestHeaderModifier.remove[0].name",
    );
    assert_eq!(r, RouteInvalid::DuplicateHeader("x".into()));
    invalid(
        "rules: [{filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {add: [{name: 'bad name', value: a}]}}]}]",
        "spec.rules[0].filters[0].responseHeaderModifier.add[0].name",
    );
}

#[test]
fn bad_hostnames_are_rejected() {
    for h in [
        "Upper.com",
        "10.0.0.1",
        "*",
        "a.*.com",
        "*.*.com",
        "-a.com",
        "a..com",
        "a.com:80",
        "a_b.com",
    ] {
        assert_eq!(
            invalid(&format!("hostnames: ['{h}']"), "spec.hostnames[0]"),
            RouteInvalid::BadHostname(h.into()),
        );
    }
    invalid(
        "rules: [{filters: [{type: RequestRedirect, requestRedirect: {hostname: '*.a.com'}}]}]",
        "spec.rules[0].filters[0].requestRedirect.hostname",
    );
}

#[test]
fn bad_match_paths_are_rejected() {
    for p in [
        "abc", "/a//b", "/a/../b", "/a/./b", "/a/..", "/a%2fb", "/a#b", "/a b", "/%zz",
    ] {
        assert!(
            matches!(
                invalid(
                    &format!("rules: [{{matches: [{{path: {{type: Exact, value: '{p}'}}}}]}}]"),
                    "spec.rules[0].matches[0].path.value",
                ),
                RouteInvalid::BadPath { .. }
            ),
            "{p}"
        );
    }
    assert_eq!(
        invalid(
            "rules: [{matches: [{path: {type: Prefix, value: /}}]}]",
            "spec.rules[0].matches[0].path.type"
        ),
        RouteInvalid::UnsupportedValue("Prefix".into())
    );
}

#[test]
fn bad_methods_names_and_values_are_rejected() {
    assert_eq!(
        invalid(
            "rules: [{matches: [{method: get}]}]",
            "spec.rules[0].matches[0].method"
        ),
        RouteInvalid::BadMethod("get".into())
    );
    invalid(
        "rules: [{matches: [{headers: [{name: 'a:b', value: x}]}]}]",
        "spec.rules[0].matches[0].headers[0].name",
    );
    invalid(
        "rules: [{matches: [{headers: [{name: a, value: ''}]}]}]",
        "spec.rules[0].matches[0].headers[0].value",
    );
    invalid(
        "rules: [{matches: [{queryParams: [{type: Prefix, name: a, value: x}]}]}]",
        "spec.rules[0].matches[0].queryParams[0].type",
    );
}

#[test]
fn redirect_and_mirror_values_are_checked() {
    invalid(
        "rules: [{filters: [{type: RequestRedirect, requestRedirect: {scheme: ftp}}]}]",
        "spec.rules[0].filters[0].requestRedirect.scheme",
    );
    assert_eq!(
        invalid(
            "rules: [{filters: [{type: RequestRedirect, requestRedirect: {statusCode: 404}}]}]",
            "spec.rules[0].filters[0].requestRedirect.statusCode",
        ),
        RouteInvalid::BadStatusCode(404)
    );
    invalid(
        "rules: [{filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplaceFullPath, replacePrefixMatch: /a}}}]}]",
        "spec.rules[0].filters[0].requestRedirect.path",
    );
    let m = |body: &str| {
        format!(
            "rules: [{{filters: [{{type: RequestMirror, requestMirror: {{backendRef: {{name: s, port: 80}}, {body}}}}}]}}]"
        )
    };
    assert_eq!(
        invalid(
            &m("percent: 101"),
            "spec.rules[0].filters[0].requestMirror.percent"
        ),
        RouteInvalid::BadPercent(101)
    );
    assert_eq!(
        invalid(
            &m("percent: 5, fraction: {numerator: 1}"),
            "spec.rules[0].filters[0].requestMirror"
        ),
        RouteInvalid::PercentAndFraction
    );
    for f in [
        "{numerator: 3, denominator: 2}",
        "{numerator: 1, denominator: 0}",
        "{numerator: -1}",
    ] {
        assert!(matches!(
            invalid(
                &m(&format!("fraction: {f}")),
                "spec.rules[0].filters[0].requestMirror.fraction"
            ),
            RouteInvalid::BadFraction { .. }
        ));
    }
    let rs = parse_http_routes(&doc("r", "ns", &m("fraction: {numerator: 1}"))).unwrap();
    match &rs[0].rules[0].filters[0] {
        RouteFilter::RequestMirror(mirror) => assert_eq!(
            mirror.fraction,
            Fraction {
                numerator: 1,
                denominator: 100
            }
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn path_modifiers_parse() {
    let rs = parse_http_routes(&doc(
        "r",
        "ns",
        "rules: [{filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplaceFullPath, replaceFullPath: /x}}}]}]",
    ))
    .unwrap();
    match &rs[0].rules[0].filters[0] {
        RouteFilter::RequestRedirect(r) => {
            assert_eq!(r.path, Some(PathModifier::ReplaceFullPath("/x".into())));
            assert_eq!(r.status_code, 302);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn timestamps_durations_and_rule_names_are_checked() {
    let bad_time = crate::doc_at("r", "ns", "yesterday", "rules: [{}]");
    assert!(matches!(
        parse_http_routes(&bad_time),
        Err(RouteError::Invalid {
            reason: RouteInvalid::BadTimestamp(_),
            ..
        })
    ));
    invalid(
        "rules: [{timeouts: {request: 1.5s}}]",
        "spec.rules[0].timeouts.request",
    );
    assert_eq!(
        invalid(
            "rules: [{timeouts: {request: 1s, backendRequest: 2s}}]",
            "spec.rules[0].timeouts.backendRequest"
        ),
        RouteInvalid::BackendTimeoutTooLong
    );
    assert!(
        parse_http_routes(&doc(
            "r",
            "ns",
            "rules: [{timeouts: {request: 0s, backendRequest: 2s}}]"
        ))
        .is_ok()
    );
    assert_eq!(
        invalid("rules: [{name: a}, {name: a}]", "spec.rules[1].name"),
        RouteInvalid::DuplicateRuleName("a".into())
    );
}

#[test]
fn retry_is_parsed_and_checked() {
    let rs = parse_http_routes(&doc(
        "r",
        "ns",
        "rules: [{retry: {codes: [503, 500, 503], attempts: 2, backoff: 100ms}}]",
    ))
    .unwrap();
    assert_eq!(
        rs[0].rules[0].retry,
        Some(appnet_policy::RouteRetry {
            codes: vec![503, 500],
            attempts: Some(2),
            backoff: Some(Duration::from_millis(100)),
        })
    );
    assert_eq!(
        invalid(
            "rules: [{retry: {codes: [200]}}]",
            "spec.rules[0].retry.codes[0]"
        ),
        RouteInvalid::BadStatusCode(200)
    );
    invalid(
        "rules: [{retry: {attempts: -1}}]",
        "spec.rules[0].retry.attempts",
    );
    invalid(
        "rules: [{retry: {backoff: 1.5s}}]",
        "spec.rules[0].retry.backoff",
    );
}

#[test]
fn lists_beyond_gateway_api_limits_are_rejected() {
    let rules = vec!["{}"; 17].join(", ");
    assert_eq!(
        invalid(&format!("rules: [{rules}]"), "spec.rules"),
        RouteInvalid::TooMany { len: 17, limit: 16 }
    );
    let hosts: Vec<String> = (0..17).map(|i| format!("h{i}.com")).collect();
    invalid(&format!("hostnames: {hosts:?}"), "spec.hostnames");
    // 16 rules x 9 matches = 144 > 128 in total.
    let matches = ["{}"; 9].join(", ");
    let rules = vec![format!("{{matches: [{matches}]}}"); 16].join(", ");
    invalid(&format!("rules: [{rules}]"), "spec.rules");
}

#[test]
fn yaml_alias_bomb_is_bounded() {
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 0..12 {
        let prev = if i == 0 {
            "a".to_owned()
        } else {
            format!("l{}", i - 1)
        };
        let refs = vec![format!("*{prev}"); 10].join(", ");
        bomb.push_str(&format!("l{i}: &l{i} [{refs}]\n"));
    }
    assert!(matches!(
        parse_http_routes(&bomb),
        Err(RouteError::Yaml { .. })
    ));
    // The same inside a route's spec.
    let spec_bomb = doc("r", "ns", "rules: []").replace("spec:\n  rules: []\n", "")
        + &bomb.replace("a:", "x-a:");
    assert!(parse_http_routes(&spec_bomb).is_err());
}

#[test]
fn deep_nesting_is_bounded() {
    let deep = "[".repeat(10_000) + &"]".repeat(10_000);
    assert!(matches!(
        parse_http_routes(&deep),
        Err(RouteError::Yaml { .. })
    ));
}

#[test]
fn input_over_the_limit_is_refused() {
    let big = "#".repeat(MAX_INPUT_BYTES + 1);
    assert_eq!(
        parse_http_routes(&big),
        Err(RouteError::TooLarge {
            size: MAX_INPUT_BYTES + 1,
            limit: MAX_INPUT_BYTES
        })
    );
}

#[test]
fn errors_print_route_and_field() {
    let e = parse_http_routes(&doc(
        "r",
        "ns",
        "rules: [{backendRefs: [{name: a, port: 0}]}]",
    ))
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "route ns/r: spec.rules[0].backendRefs[0].port: invalid port 0"
    );
}
