//! Matching and precedence: each POLICY.md routing rule, one named test.

use appnet_policy::{DirectReason, RouteOutcome, RouteRequest};

use crate::{doc, doc_at, get, pick, route, router, rule, spec};

/// One route on `h.com` with the given rules.
fn one(rules: &[String]) -> appnet_policy::Router {
    router(&[doc("r", "ns", &spec(&["h.com"], rules))])
}

fn expect(r: &appnet_policy::Router, cases: &[(&str, &str)]) {
    for (path, want) in cases {
        assert_eq!(pick(r, &get("h.com", path)), *want, "path {path}");
    }
}

// ---- paths ----

#[test]
fn exact_path_is_whole_and_case_sensitive() {
    let r = one(&[rule("- path: {type: Exact, value: /abc}", "a")]);
    expect(
        &r,
        &[
            ("/abc", "a"),
            ("/abc?x=1", "a"),
            ("/abc/", "404"),
            ("/Abc", "404"),
            ("/abcd", "404"),
            ("/ab", "404"),
        ],
    );
}

#[test]
fn path_prefix_matches_whole_segments() {
    let r = one(&[rule("- path: {type: PathPrefix, value: /abc}", "a")]);
    expect(
        &r,
        &[
            ("/abc", "a"),
            ("/abc/", "a"),
            ("/abc/def", "a"),
            ("/abc?q", "a"),
            ("/abcd", "404"),
            ("/ab", "404"),
            ("/ABC", "404"),
        ],
    );
}

#[test]
fn path_prefix_ignores_a_trailing_slash() {
    let r = one(&[rule("- path: {type: PathPrefix, value: /abc/}", "a")]);
    expect(
        &r,
        &[
            ("/abc", "a"),
            ("/abc/", "a"),
            ("/abc/d", "a"),
            ("/abcd", "404"),
        ],
    );
}

#[test]
fn path_type_defaults_to_prefix() {
    let r = one(&[rule("- path: {value: /abc}", "a")]);
    expect(&r, &[("/abc/x", "a"), ("/abcd", "404")]);
}

#[test]
fn regex_path_matches_the_whole_path() {
    let r = one(&[rule(
        "- path: {type: RegularExpression, value: '/v[0-9]+/.*'}",
        "a",
    )]);
    expect(
        &r,
        &[
            ("/v1/x", "a"),
            ("/v22/", "a"),
            ("/v1/x?q=1", "a"),
            ("/x/v1/x", "404"),
            ("/v1", "404"),
        ],
    );
}

#[test]
fn no_match_given_means_prefix_slash() {
    let r = router(&[doc(
        "r",
        "ns",
        "rules:\n- backendRefs: [{name: a, port: 80}]",
    )]);
    for path in ["/", "/anything/at/all", "/?q"] {
        assert_eq!(pick(&r, &get("any.host", path)), "a");
    }
    let r = one(&[rule("", "a")]);
    assert_eq!(pick(&r, &get("h.com", "/x")), "a");
}

// ---- headers, query, method ----

#[test]
fn header_names_are_case_insensitive() {
    let r = one(&[rule("- headers: [{name: X-Version, value: v2}]", "a")]);
    for name in ["x-version", "X-VERSION", "X-Version"] {
        let mut req = get("h.com", "/");
        req.headers.push((name.into(), "v2".into()));
        assert_eq!(pick(&r, &req), "a", "{name}");
    }
    assert_eq!(pick(&r, &get("h.com", "/")), "404");
}

#[test]
fn header_exact_values_are_case_sensitive() {
    let r = one(&[rule("- headers: [{name: x, value: v2}]", "a")]);
    let mut req = get("h.com", "/");
    req.headers.push(("x".into(), "V2".into()));
    assert_eq!(pick(&r, &req), "404");
    req.headers[0].1 = "v2 ".into();
    assert_eq!(pick(&r, &req), "404");
}

#[test]
fn header_regex_values_match_whole() {
    let r = one(&[rule(
        "- headers: [{type: RegularExpression, name: x, value: 'v[0-9]'}]",
        "a",
    )]);
    let with = |v: &str| {
        let mut req = get("h.com", "/");
        req.headers.push(("x".into(), v.into()));
        req
    };
    assert_eq!(pick(&r, &with("v7")), "a");
    assert_eq!(pick(&r, &with("v77")), "404");
    assert_eq!(pick(&r, &with("xv7")), "404");
}

#[test]
fn repeated_request_header_matches_on_any_value() {
    let r = one(&[rule("- headers: [{name: x, value: b}]", "a")]);
    let mut req = get("h.com", "/");
    req.headers.push(("x".into(), "a".into()));
    req.headers.push(("X".into(), "b".into()));
    assert_eq!(pick(&r, &req), "a");
}

#[test]
fn query_param_names_are_exact() {
    let r = one(&[rule("- queryParams: [{name: v, value: '2'}]", "a")]);
    expect(
        &r,
        &[
            ("/?v=2", "a"),
            ("/x?a=1&v=2", "a"),
            ("/?V=2", "404"),
            ("/?v=3", "404"),
            ("/?vv=2", "404"),
            ("/", "404"),
        ],
    );
}

#[test]
fn query_param_uses_the_first_occurrence() {
    let r = one(&[rule("- queryParams: [{name: v, value: '2'}]", "a")]);
    expect(&r, &[("/?v=2&v=3", "a"), ("/?v=3&v=2", "404")]);
}

#[test]
fn query_param_regex_and_empty_value() {
    let r = one(&[
        rule(
            "- queryParams: [{type: RegularExpression, name: id, value: '[0-9]+'}]",
            "a",
        ),
        rule(
            "- queryParams: [{type: RegularExpression, name: e, value: '.*'}]",
            "b",
        ),
    ]);
    expect(
        &r,
        &[
            ("/?id=42", "a"),
            ("/?id=4x", "404"),
            ("/?e", "b"),
            ("/?e=", "b"),
        ],
    );
}

#[test]
fn method_is_exact() {
    let r = one(&[rule("- method: POST", "a")]);
    let mut req = get("h.com", "/");
    assert_eq!(pick(&r, &req), "404");
    req.method = "post".into();
    assert_eq!(pick(&r, &req), "404");
    req.method = "POST".into();
    assert_eq!(pick(&r, &req), "a");
}

#[test]
fn conditions_in_one_match_are_anded() {
    let r = one(&[rule(
        "- path: {type: PathPrefix, value: /a}\n  method: GET\n  headers: [{name: x, value: '1'}]\n  queryParams: [{name: q, value: '1'}]",
        "a",
    )]);
    let mut req = get("h.com", "/a?q=1");
    req.headers.push(("x".into(), "1".into()));
    assert_eq!(pick(&r, &req), "a");
    for broken in 0..4 {
        let mut b = req.clone();
        match broken {
            0 => b.path = "/b?q=1".into(),
            1 => b.method = "PUT".into(),
            2 => b.headers.clear(),
            _ => b.path = "/a?q=2".into(),
        }
        assert_eq!(pick(&r, &b), "404", "breaking condition {broken}");
    }
}

#[test]
fn matches_in_a_rule_are_ored() {
    let r = one(&[rule(
        "- path: {type: Exact, value: /a}\n- headers: [{name: x, value: '1'}]",
        "a",
    )]);
    let mut with_header = get("h.com", "/zzz");
    with_header.headers.push(("x".into(), "1".into()));
    assert_eq!(pick(&r, &get("h.com", "/a")), "a");
    assert_eq!(pick(&r, &with_header), "a");
    assert_eq!(pick(&r, &get("h.com", "/zzz")), "404");
}

#[test]
fn no_rule_matches_gives_404() {
    let r = one(&[rule("- path: {type: Exact, value: /a}", "a")]);
    let out = route(&r, &get("h.com", "/b"));
    assert_eq!(out.status(), Some(404));
    match out {
        RouteOutcome::Direct(d) => {
            assert_eq!(d.reason, DirectReason::NoMatch);
            assert_eq!(d.route_key, None);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(pick(&r, &get("other.com", "/a")), "404");
}

// ---- hostnames ----

#[test]
fn hostname_match_ignores_port_and_case() {
    let r = one(&[rule("", "a")]);
    for host in ["h.com", "H.COM", "h.com:8080", "H.Com:443"] {
        assert_eq!(pick(&r, &get(host, "/")), "a", "{host}");
    }
    assert_eq!(pick(&r, &get("h.com.evil", "/")), "404");
    assert_eq!(pick(&r, &get("xh.com", "/")), "404");
}

#[test]
fn wildcard_matches_one_or_more_labels_not_the_apex() {
    let r = router(&[doc("w", "ns", &spec(&["*.example.com"], &[rule("", "w")]))]);
    for host in ["a.example.com", "a.b.example.com", "A.Example.Com:80"] {
        assert_eq!(pick(&r, &get(host, "/")), "w", "{host}");
    }
    for host in [
        "example.com",
        "aexample.com",
        ".example.com",
        "example.com.x",
    ] {
        assert_eq!(pick(&r, &get(host, "/")), "404", "{host}");
    }
}

#[test]
fn exact_hostname_beats_wildcard() {
    let r = router(&[
        doc("w", "ns", &spec(&["*.example.com"], &[rule("", "w")])),
        doc("e", "ns", &spec(&["api.example.com"], &[rule("", "e")])),
    ]);
    assert_eq!(pick(&r, &get("api.example.com", "/")), "e");
    assert_eq!(pick(&r, &get("web.example.com", "/")), "w");
}

#[test]
fn longer_wildcard_beats_shorter() {
    let r = router(&[
        doc("short", "ns", &spec(&["*.com"], &[rule("", "short")])),
        doc("long", "ns", &spec(&["*.example.com"], &[rule("", "long")])),
    ]);
    assert_eq!(pick(&r, &get("a.example.com", "/")), "long");
    assert_eq!(pick(&r, &get("a.other.com", "/")), "short");
}

#[test]
fn hostname_specificity_beats_path_specificity() {
    // A more specific host wins even with a less specific path.
    let r = router(&[
        doc(
            "w",
            "ns",
            &spec(
                &["*.example.com"],
                &[rule("- path: {type: Exact, value: /a}", "w")],
            ),
        ),
        doc("e", "ns", &spec(&["api.example.com"], &[rule("", "e")])),
        doc(
            "any",
            "ns",
            &spec(&[], &[rule("- path: {type: Exact, value: /a}", "any")]),
        ),
    ]);
    assert_eq!(pick(&r, &get("api.example.com", "/a")), "e");
    assert_eq!(pick(&r, &get("web.example.com", "/a")), "w");
    assert_eq!(pick(&r, &get("else.org", "/a")), "any");
}

#[test]
fn route_without_hostnames_matches_any_host_last() {
    let r = router(&[
        doc("any", "ns", &spec(&[], &[rule("", "any")])),
        doc("h", "ns", &spec(&["h.com"], &[rule("", "h")])),
    ]);
    assert_eq!(pick(&r, &get("h.com", "/")), "h");
    assert_eq!(pick(&r, &get("x.org", "/")), "any");
    assert_eq!(pick(&r, &get("", "/")), "any");
}

#[test]
fn a_host_group_without_a_matching_rule_falls_through() {
    let r = router(&[
        doc(
            "e",
            "ns",
            &spec(&["api.example.com"], &[rule("- path: {value: /only}", "e")]),
        ),
        doc("w", "ns", &spec(&["*.example.com"], &[rule("", "w")])),
    ]);
    assert_eq!(pick(&r, &get("api.example.com", "/only/x")), "e");
    assert_eq!(pick(&r, &get("api.example.com", "/other")), "w");
}

#[test]
fn a_route_with_several_hostnames_uses_its_best_match() {
    let r = router(&[
        doc(
            "both",
            "ns",
            &spec(&["*.example.com", "api.example.com"], &[rule("", "both")]),
        ),
        doc(
            "w",
            "ns",
            &spec(
                &["*.example.com"],
                &[rule("- path: {type: Exact, value: /x}", "w")],
            ),
        ),
    ]);
    // `both` names api.example.com exactly, so it beats `w`'s Exact path.
    assert_eq!(pick(&r, &get("api.example.com", "/x")), "both");
    // On another host both are wildcards: the Exact path wins.
    assert_eq!(pick(&r, &get("web.example.com", "/x")), "w");
}

// ---- precedence across rules ----

#[test]
fn exact_path_beats_longer_prefix() {
    let r = one(&[
        rule("- path: {type: PathPrefix, value: /abc/def/ghi}", "prefix"),
        rule("- path: {type: Exact, value: /abc/def/ghi}", "exact"),
    ]);
    assert_eq!(pick(&r, &get("h.com", "/abc/def/ghi")), "exact");
    assert_eq!(pick(&r, &get("h.com", "/abc/def/ghi/j")), "prefix");
}

#[test]
fn longest_prefix_wins() {
    let r = one(&[
        rule("- path: {value: /}", "root"),
        rule("- path: {value: /a}", "a"),
        rule("- path: {value: /a/b}", "ab"),
    ]);
    expect(
        &r,
        &[
            ("/a/b/c", "ab"),
            ("/a/b", "ab"),
            ("/a/bc", "a"),
            ("/a", "a"),
            ("/b", "root"),
        ],
    );
}

#[test]
fn prefix_beats_regex() {
    let r = one(&[
        rule("- path: {type: RegularExpression, value: '/a/.*'}", "regex"),
        rule("- path: {value: /}", "root"),
    ]);
    assert_eq!(pick(&r, &get("h.com", "/a/x")), "root");
    // Among regexes, the longer expression first.
    let r = one(&[
        rule("- path: {type: RegularExpression, value: '/.*'}", "short"),
        rule("- path: {type: RegularExpression, value: '/a/.*'}", "long"),
    ]);
    assert_eq!(pick(&r, &get("h.com", "/a/x")), "long");
    assert_eq!(pick(&r, &get("h.com", "/b/x")), "short");
}

#[test]
fn method_match_beats_no_method() {
    let r = one(&[
        rule("- path: {value: /a}", "plain"),
        rule("- path: {value: /a}\n  method: GET", "get"),
    ]);
    assert_eq!(pick(&r, &get("h.com", "/a")), "get");
    let mut put = get("h.com", "/a");
    put.method = "PUT".into();
    assert_eq!(pick(&r, &put), "plain");
}

#[test]
fn longer_prefix_beats_method() {
    let r = one(&[
        rule("- path: {value: /a}\n  method: GET", "get"),
        rule("- path: {value: /a/b}", "ab"),
    ]);
    assert_eq!(pick(&r, &get("h.com", "/a/b")), "ab");
}

#[test]
fn method_beats_more_headers() {
    let r = one(&[
        rule(
            "- headers: [{name: x, value: '1'}, {name: y, value: '1'}]",
            "headers",
        ),
        rule("- method: GET", "method"),
    ]);
    let mut req = get("h.com", "/");
    req.headers = vec![("x".into(), "1".into()), ("y".into(), "1".into())];
    assert_eq!(pick(&r, &req), "method");
}

#[test]
fn more_header_matches_win() {
    let r = one(&[
        rule("- headers: [{name: x, value: '1'}]", "one"),
        rule(
            "- headers: [{name: x, value: '1'}, {name: y, value: '1'}]",
            "two",
        ),
    ]);
    let mut req = get("h.com", "/");
    req.headers = vec![("x".into(), "1".into()), ("y".into(), "1".into())];
    assert_eq!(pick(&r, &req), "two");
    req.headers.pop();
    assert_eq!(pick(&r, &req), "one");
}

#[test]
fn more_headers_beat_more_query_params() {
    let r = one(&[
        rule(
            "- queryParams: [{name: a, value: '1'}, {name: b, value: '1'}]",
            "query",
        ),
        rule("- headers: [{name: x, value: '1'}]", "header"),
    ]);
    let mut req = get("h.com", "/?a=1&b=1");
    req.headers.push(("x".into(), "1".into()));
    assert_eq!(pick(&r, &req), "header");
}

#[test]
fn more_query_matches_win() {
    let r = one(&[
        rule("- queryParams: [{name: a, value: '1'}]", "one"),
        rule(
            "- queryParams: [{name: a, value: '1'}, {name: b, value: '1'}]",
            "two",
        ),
    ]);
    assert_eq!(pick(&r, &get("h.com", "/?a=1&b=1")), "two");
    assert_eq!(pick(&r, &get("h.com", "/?a=1")), "one");
}

#[test]
fn precedence_is_per_match_not_per_rule() {
    // Rule `weak` has one strong match (Exact /x) and one weak; rule `mid`
    // a prefix. The strong match of `weak` wins /x, `mid` wins the rest.
    let r = one(&[
        rule(
            "- path: {value: /}\n- path: {type: Exact, value: /x}",
            "weak",
        ),
        rule("- path: {value: /x}", "mid"),
    ]);
    assert_eq!(pick(&r, &get("h.com", "/x")), "weak");
    assert_eq!(pick(&r, &get("h.com", "/x/y")), "mid");
    assert_eq!(pick(&r, &get("h.com", "/z")), "weak");
}

// ---- ties ----

#[test]
fn tie_goes_to_the_oldest_route() {
    let same = spec(&["h.com"], &[rule("", "x")]);
    let young = doc_at(
        "a-young",
        "ns",
        "2024-06-01T00:00:00Z",
        &same.replace("name: x", "name: young"),
    );
    let old = doc_at(
        "z-old",
        "ns",
        "2023-01-01T00:00:00+02:00",
        &same.replace("name: x", "name: old"),
    );
    for docs in [[young.clone(), old.clone()], [old, young]] {
        assert_eq!(pick(&router(&docs), &get("h.com", "/")), "old");
    }
}

#[test]
fn tie_route_without_timestamp_counts_as_newest() {
    let same = spec(&["h.com"], &[rule("", "x")]);
    let none = doc("a-none", "ns", &same.replace("name: x", "name: none"));
    let dated = doc_at(
        "z-dated",
        "ns",
        "2030-01-01T00:00:00Z",
        &same.replace("name: x", "name: dated"),
    );
    assert_eq!(
        pick(&router(&[none.clone(), dated.clone()]), &get("h.com", "/")),
        "dated"
    );
    assert_eq!(pick(&router(&[dated, none]), &get("h.com", "/")), "dated");
}

#[test]
fn tie_then_namespace_slash_name_alphabetical() {
    let s = |b: &str| spec(&["h.com"], &[rule("", b)]);
    // Compared as one string: "a-b/c" < "a/z" because '-' < '/'.
    let docs = [
        doc("z", "a", &s("a-slash-z")),
        doc("c", "a-b", &s("a-b-slash-c")),
    ];
    assert_eq!(pick(&router(&docs), &get("h.com", "/")), "a-b-slash-c");
    let docs = [doc("b", "ns", &s("b")), doc("a", "ns", &s("a"))];
    assert_eq!(pick(&router(&docs), &get("h.com", "/")), "a");
}

#[test]
fn tie_then_rule_order() {
    let r = one(&[
        rule("- path: {value: /a}", "first"),
        rule("- path: {value: /a}", "second"),
    ]);
    assert_eq!(pick(&r, &get("h.com", "/a")), "first");
}

#[test]
fn outcome_names_route_and_rule() {
    let r = router(&[doc(
        "r",
        "shop",
        &spec(
            &["h.com"],
            &[rule("- path: {value: /a}", "a"), rule("", "b")],
        ),
    )]);
    let f = crate::forward(&r, &get("h.com", "/b"));
    assert_eq!(f.route_key, "shop/r");
    assert_eq!(f.rule_index, 1);
    assert_eq!(f.backend.backend.name, "b");
    let req = RouteRequest {
        method: "GET".into(),
        host: "h.com".into(),
        path: "/a".into(),
        ..RouteRequest::default()
    };
    assert_eq!(route(&r, &req).route_key(), Some("shop/r"));
}

#[test]
fn many_regexes_in_one_host_keep_precedence() {
    // Enough regex candidates on one host for the router to match them as
    // one set; precedence and the other conditions must hold as for a few.
    let mut rules = Vec::new();
    for i in 0..12 {
        rules.push(rule(
            &format!("- path: {{type: RegularExpression, value: '/r{i}/[a-z]+'}}"),
            &format!("r{i}"),
        ));
    }
    rules.push(rule(
        "- path: {type: RegularExpression, value: '/r1/[a-z]+|/r2/x'}",
        "longer",
    ));
    rules.push(rule(
        "- path: {type: RegularExpression, value: '/r3/[a-z]+'}\n  headers: [{name: x, value: '1'}]",
        "header",
    ));
    let docs: Vec<String> = rules
        .chunks(7)
        .enumerate()
        .map(|(i, c)| doc(&format!("r{i}"), "ns", &spec(&["h.com"], c)))
        .collect();
    let r = router(&docs);
    expect(
        &r,
        &[
            ("/r5/abc", "r5"),
            ("/r5/ABC", "404"),
            ("/r11/z", "r11"),
            ("/x/r5/abc", "404"),
        ],
    );
    // The longer expression wins where both match.
    expect(
        &r,
        &[("/r1/abc", "longer"), ("/r2/x", "longer"), ("/r2/y", "r2")],
    );
    let mut with = get("h.com", "/r3/abc");
    assert_eq!(pick(&r, &with), "r3");
    with.headers.push(("x".into(), "1".into()));
    assert_eq!(pick(&r, &with), "header");
}
