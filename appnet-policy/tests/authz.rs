//! POLICY.md, one named test per rule and edge case.

use std::collections::BTreeMap;
use std::net::IpAddr;

use appnet_policy::{
    Action, Attachment, Claim, Destination, ExternalAuthorizer, HttpAttributes, InvalidReason,
    NoExternalAuthorizer, PolicyError, PolicySet, Reason, Request, RequestAuth, TargetRef, View,
    parse_policies,
};
use proptest::prelude::*;

const WEB: &str = "cluster.local/ns/shop/sa/web";

fn policy(name: &str, ns: &str, spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n{}\n---\n",
        spec.lines()
            .map(|l| format!("  {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    )
}

fn set(yaml: &str) -> PolicySet {
    PolicySet::new("istio-system", parse_policies(yaml, "default").unwrap())
}

fn dest(ns: &str, labels: &[(&str, &str)]) -> Destination {
    Destination {
        namespace: ns.into(),
        attachment: Attachment::Workload {
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
        },
    }
}

fn req(principal: Option<&str>, port: u16) -> Request {
    Request {
        source_principal: principal.map(str::to_owned),
        source_ip: Some("10.0.0.1".parse().unwrap()),
        destination_ip: Some("10.0.0.2".parse().unwrap()),
        destination_port: Some(port),
        ..Request::default()
    }
}

fn http(mut r: Request, method: &str, path: &str) -> Request {
    r.http = Some(HttpAttributes {
        host: Some("shop.example.com".into()),
        method: Some(method.into()),
        path: Some(path.into()),
        headers: vec![("x-user".into(), "alice".into())],
        auth: None,
    });
    r
}

fn allowed(s: &PolicySet, r: &Request, view: View) -> bool {
    s.evaluate(
        &dest("shop", &[("app", "cart")]),
        r,
        view,
        &NoExternalAuthorizer,
    )
    .allowed
}

fn invalid(yaml: &str) -> InvalidReason {
    match parse_policies(yaml, "default") {
        Err(PolicyError::Invalid { reason, .. }) => reason,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

// ---- evaluation order ----

#[test]
fn no_policies_allows() {
    let s = set("");
    let d = s.evaluate(
        &dest("shop", &[]),
        &req(None, 80),
        View::L4,
        &NoExternalAuthorizer,
    );
    assert!(d.allowed);
    assert_eq!(d.reason, Reason::NoAllowPolicy);
}

#[test]
fn allow_without_rules_denies_everything() {
    let s = set(&policy("p", "shop", "action: ALLOW"));
    assert!(!allowed(&s, &req(Some(WEB), 80), View::L4));
    let s = set(&policy("p", "shop", "{}"));
    assert!(!allowed(&s, &req(Some(WEB), 80), View::L7));
}

#[test]
fn empty_rule_matches_everything() {
    let s = set(&policy("p", "shop", "rules:\n- {}"));
    assert!(allowed(&s, &req(None, 80), View::L4));
}

#[test]
fn deny_wins_over_allow() {
    let yaml = policy("a", "shop", "rules:\n- {}")
        + &policy(
            "d",
            "shop",
            "action: DENY\nrules:\n- to: [{operation: {ports: [\"9000\"]}}]",
        );
    let s = set(&yaml);
    assert!(allowed(&s, &req(Some(WEB), 80), View::L4));
    let d = s.evaluate(
        &dest("shop", &[]),
        &req(Some(WEB), 9000),
        View::L4,
        &NoExternalAuthorizer,
    );
    assert!(!d.allowed);
    assert!(matches!(d.reason, Reason::Denied(m) if m.policy == "shop/d" && m.rule == 0));
}

#[test]
fn allow_applies_then_unmatched_is_denied() {
    let s = set(&policy(
        "a",
        "shop",
        "rules:\n- from: [{source: {principals: [\"cluster.local/ns/shop/sa/web\"]}}]",
    ));
    assert!(allowed(&s, &req(Some(WEB), 80), View::L4));
    let d = s.evaluate(
        &dest("shop", &[]),
        &req(Some("cluster.local/ns/x/sa/y"), 80),
        View::L4,
        &NoExternalAuthorizer,
    );
    assert!(!d.allowed);
    assert_eq!(d.reason, Reason::NoAllowMatched);
}

struct Provider(bool);
impl ExternalAuthorizer for Provider {
    fn check(&self, provider: &str, _r: &Request) -> bool {
        assert_eq!(provider, "ext-authz");
        self.0
    }
}

#[test]
fn custom_runs_first_and_its_deny_denies() {
    let yaml = policy(
        "c",
        "shop",
        "action: CUSTOM\nprovider: {name: ext-authz}\nrules:\n- to: [{operation: {paths: [\"/admin*\"]}}]",
    ) + &policy("a", "shop", "rules:\n- {}");
    let s = set(&yaml);
    let r = http(req(Some(WEB), 80), "GET", "/admin/x");
    let d = s.evaluate(&dest("shop", &[]), &r, View::L7, &Provider(false));
    assert!(
        matches!(d.reason, Reason::CustomDenied { ref provider, .. } if provider == "ext-authz")
    );
    assert!(!d.allowed);
    assert!(
        s.evaluate(&dest("shop", &[]), &r, View::L7, &Provider(true))
            .allowed
    );
    // A path CUSTOM does not cover never reaches the provider.
    let other = http(req(Some(WEB), 80), "GET", "/shop");
    assert!(
        s.evaluate(&dest("shop", &[]), &other, View::L7, &Provider(false))
            .allowed
    );
}

#[test]
fn audit_marks_without_deciding() {
    let yaml = policy("au", "shop", "action: AUDIT\nrules:\n- {}");
    let s = set(&yaml);
    let d = s.evaluate(
        &dest("shop", &[]),
        &req(None, 80),
        View::L4,
        &NoExternalAuthorizer,
    );
    assert!(d.allowed);
    assert_eq!(d.audit.len(), 1);
    assert_eq!(d.audit[0].policy, "shop/au");
}

#[test]
fn dry_run_is_reported_not_enforced() {
    let yaml = "apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata:\n  name: dr\n  namespace: shop\n  annotations:\n    istio.io/dry-run: \"true\"\nspec:\n  action: DENY\n  rules:\n  - {}\n";
    let s = set(yaml);
    let d = s.evaluate(
        &dest("shop", &[]),
        &req(None, 80),
        View::L4,
        &NoExternalAuthorizer,
    );
    assert!(d.allowed);
    assert_eq!(d.dry_run.len(), 1);
    assert_eq!(d.dry_run[0].action, Action::Deny);
    assert_eq!(d.dry_run[0].matched, Some(0));
}

// ---- scope ----

#[test]
fn namespace_scope() {
    let s = set(&policy("d", "other", "action: DENY\nrules:\n- {}"));
    assert!(
        allowed(&s, &req(None, 80), View::L4),
        "other namespace's policy does not apply"
    );
}

#[test]
fn root_namespace_without_selector_is_mesh_wide() {
    let s = set(&policy("d", "istio-system", "action: DENY\nrules:\n- {}"));
    assert!(!allowed(&s, &req(None, 80), View::L4));
}

#[test]
fn selector_scopes_to_labels_and_root_selector_spans_namespaces() {
    let sel = "selector: {matchLabels: {app: cart}}\naction: DENY\nrules:\n- {}";
    let s = set(&policy("d", "shop", sel));
    assert!(!allowed(&s, &req(None, 80), View::L4));
    let d = s.evaluate(
        &dest("shop", &[("app", "web")]),
        &req(None, 80),
        View::L4,
        &NoExternalAuthorizer,
    );
    assert!(d.allowed);
    let s = set(&policy("d", "istio-system", sel));
    let d = s.evaluate(
        &dest("elsewhere", &[("app", "cart")]),
        &req(None, 80),
        View::L4,
        &NoExternalAuthorizer,
    );
    assert!(!d.allowed);
}

#[test]
fn target_refs_attach_to_waypoints_only() {
    let spec =
        "targetRefs:\n- {kind: Service, group: \"\", name: cart}\naction: DENY\nrules:\n- {}";
    let s = set(&policy("d", "shop", spec));
    let waypoint = Destination {
        namespace: "shop".into(),
        attachment: Attachment::Waypoint {
            targets: vec![TargetRef {
                group: String::new(),
                kind: "Service".into(),
                name: "cart".into(),
            }],
        },
    };
    assert!(
        !s.evaluate(&waypoint, &req(None, 80), View::L7, &NoExternalAuthorizer)
            .allowed
    );
    // The node proxy of the same workload does not enforce it.
    assert!(allowed(&s, &req(None, 80), View::L4));
}

// ---- matching ----

#[test]
fn string_patterns() {
    let s = set(&policy(
        "a",
        "shop",
        "rules:\n- to: [{operation: {paths: [\"/exact\", \"/pre*\", \"*.json\"]}}]",
    ));
    let r = |p: &str| http(req(Some(WEB), 80), "GET", p);
    assert!(allowed(&s, &r("/exact"), View::L7));
    assert!(!allowed(&s, &r("/exact/more"), View::L7));
    assert!(allowed(&s, &r("/prefix/x"), View::L7));
    assert!(allowed(&s, &r("/a/b.json"), View::L7));
    assert!(!allowed(&s, &r("/other"), View::L7));
    let presence = set(&policy(
        "a",
        "shop",
        "rules:\n- from: [{source: {principals: [\"*\"]}}]",
    ));
    assert!(allowed(&presence, &req(Some(WEB), 80), View::L4));
    assert!(
        !allowed(&presence, &req(None, 80), View::L4),
        "* needs an identity"
    );
}

#[test]
fn principals_compare_without_spiffe_prefix() {
    let s = set(&policy(
        "a",
        "shop",
        "rules:\n- from: [{source: {principals: [\"spiffe://cluster.local/ns/shop/sa/web\"]}}]",
    ));
    assert!(allowed(&s, &req(Some(WEB), 80), View::L4));
}

#[test]
fn not_fields_and_absent_attributes() {
    // Plaintext (no principal) satisfies notPrincipals.
    let s = set(&policy(
        "a",
        "shop",
        "rules:\n- from: [{source: {notPrincipals: [\"cluster.local/ns/bad/sa/x\"]}}]",
    ));
    assert!(allowed(&s, &req(None, 80), View::L4));
    assert!(allowed(&s, &req(Some(WEB), 80), View::L4));
    assert!(!allowed(
        &s,
        &req(Some("cluster.local/ns/bad/sa/x"), 80),
        View::L4
    ));
    // Positive and negative combine with AND.
    let s = set(&policy(
        "a",
        "shop",
        "rules:\n- to: [{operation: {paths: [\"/api*\"], notPaths: [\"/api/admin*\"]}}]",
    ));
    assert!(allowed(&s, &http(req(None, 80), "GET", "/api/x"), View::L7));
    assert!(!allowed(
        &s,
        &http(req(None, 80), "GET", "/api/admin/x"),
        View::L7
    ));
}

#[test]
fn rule_is_from_and_to_and_when() {
    let s = set(&policy(
        "a",
        "shop",
        "rules:\n- from: [{source: {namespaces: [shop]}}]\n  to: [{operation: {ports: [\"8080\"]}}]\n  when:\n  - key: source.ip\n    values: [\"10.0.0.0/8\"]",
    ));
    assert!(allowed(&s, &req(Some(WEB), 8080), View::L4));
    assert!(!allowed(&s, &req(Some(WEB), 9090), View::L4));
    assert!(!allowed(
        &s,
        &req(Some("cluster.local/ns/x/sa/web"), 8080),
        View::L4
    ));
    let mut outside = req(Some(WEB), 8080);
    outside.source_ip = Some("192.168.1.1".parse().unwrap());
    assert!(!allowed(&s, &outside, View::L4));
}

#[test]
fn service_accounts_short_form_is_policy_namespace() {
    let s = set(&policy(
        "a",
        "shop",
        "rules:\n- from: [{source: {serviceAccounts: [web, \"ops/admin\"]}}]",
    ));
    assert!(allowed(&s, &req(Some(WEB), 80), View::L4));
    assert!(allowed(
        &s,
        &req(Some("cluster.local/ns/ops/sa/admin"), 80),
        View::L4
    ));
    assert!(!allowed(
        &s,
        &req(Some("cluster.local/ns/ops/sa/web"), 80),
        View::L4
    ));
}

#[test]
fn ip_blocks_v4_and_v6() {
    let s = set(&policy(
        "a",
        "shop",
        "rules:\n- from: [{source: {ipBlocks: [\"10.0.0.1\", \"fd00::/8\"]}}]",
    ));
    assert!(allowed(&s, &req(None, 80), View::L4));
    let mut v6 = req(None, 80);
    v6.source_ip = Some("fd12::1".parse::<IpAddr>().unwrap());
    assert!(allowed(&s, &v6, View::L4));
    let mut other = req(None, 80);
    other.source_ip = Some("10.0.0.9".parse().unwrap());
    assert!(!allowed(&s, &other, View::L4));
}

#[test]
fn hosts_are_case_insensitive() {
    let s = set(&policy(
        "a",
        "shop",
        "rules:\n- to: [{operation: {hosts: [\"SHOP.example.com\"]}}]",
    ));
    assert!(allowed(&s, &http(req(None, 80), "GET", "/"), View::L7));
}

#[test]
fn conditions_on_headers_and_claims() {
    let s = set(&policy(
        "a",
        "shop",
        "rules:\n- when:\n  - key: request.headers[X-User]\n    values: [alice]\n  - key: request.auth.claims[groups]\n    values: [admins]",
    ));
    let mut r = http(req(None, 80), "GET", "/");
    assert!(!allowed(&s, &r, View::L7), "no JWT");
    if let Some(h) = r.http.as_mut() {
        h.auth = Some(RequestAuth {
            claims: BTreeMap::from([(
                "groups".to_owned(),
                Claim::List(vec!["dev".into(), "admins".into()]),
            )]),
            ..RequestAuth::default()
        });
    }
    assert!(allowed(&s, &r, View::L7));
}

// ---- L4 view ----

#[test]
fn l4_allow_rule_with_http_attributes_matches_nothing() {
    let s = set(&policy(
        "a",
        "shop",
        "rules:\n- to: [{operation: {methods: [GET]}}]",
    ));
    let d = s.evaluate(
        &dest("shop", &[]),
        &req(Some(WEB), 80),
        View::L4,
        &NoExternalAuthorizer,
    );
    assert!(!d.allowed, "fail closed");
    assert_eq!(d.diagnostics.len(), 1);
    // At L7 the same policy allows GET.
    assert!(allowed(&s, &http(req(Some(WEB), 80), "GET", "/"), View::L7));
}

#[test]
fn l4_deny_with_http_attributes_never_fails_open() {
    // istio/istio#61126: Istio's node proxy ignores this DENY. appnet
    // enforces its L4 part (port 8080) alone.
    let s = set(&policy(
        "d",
        "shop",
        "action: DENY\nrules:\n- to: [{operation: {ports: [\"8080\"], methods: [POST]}}]",
    ));
    let d = s.evaluate(
        &dest("shop", &[]),
        &req(Some(WEB), 8080),
        View::L4,
        &NoExternalAuthorizer,
    );
    assert!(!d.allowed);
    assert!(!d.diagnostics.is_empty());
    assert!(allowed(&s, &req(Some(WEB), 9090), View::L4));
    // Only HTTP attributes: the whole entry is L7, so at L4 it denies all.
    let s = set(&policy(
        "d",
        "shop",
        "action: DENY\nrules:\n- to: [{operation: {paths: [\"/admin\"]}}]",
    ));
    assert!(!allowed(&s, &req(Some(WEB), 80), View::L4));
    // At L7 it is precise.
    assert!(allowed(
        &s,
        &http(req(Some(WEB), 80), "GET", "/public"),
        View::L7
    ));
    assert!(!allowed(
        &s,
        &http(req(Some(WEB), 80), "GET", "/admin"),
        View::L7
    ));
}

// ---- invalid policies ----

#[test]
fn deny_and_custom_need_rules() {
    assert_eq!(
        invalid(&policy("d", "ns", "action: DENY")),
        InvalidReason::NoRules(Action::Deny)
    );
    assert_eq!(
        invalid(&policy("c", "ns", "action: CUSTOM\nprovider: {name: x}")),
        InvalidReason::NoRules(Action::Custom)
    );
}

#[test]
fn empty_source_operation_and_lists() {
    assert_eq!(
        invalid(&policy("p", "ns", "rules:\n- from: []")),
        InvalidReason::EmptyList
    );
    assert_eq!(
        invalid(&policy("p", "ns", "rules:\n- to: []")),
        InvalidReason::EmptyList
    );
    assert_eq!(
        invalid(&policy("p", "ns", "rules:\n- from: [{source: {}}]")),
        InvalidReason::EmptySource
    );
    assert_eq!(
        invalid(&policy("p", "ns", "rules:\n- from: [{}]")),
        InvalidReason::EmptySource
    );
    assert_eq!(
        invalid(&policy("p", "ns", "rules:\n- to: [{operation: {}}]")),
        InvalidReason::EmptyOperation
    );
}

#[test]
fn conditions_need_values_and_known_keys() {
    assert_eq!(
        invalid(&policy("p", "ns", "rules:\n- when: [{key: source.ip}]")),
        InvalidReason::ConditionWithoutValues
    );
    assert_eq!(
        invalid(&policy(
            "p",
            "ns",
            "rules:\n- when: [{key: source.color, values: [red]}]"
        )),
        InvalidReason::UnknownConditionKey("source.color".into())
    );
}

#[test]
fn provider_only_with_custom() {
    assert_eq!(
        invalid(&policy(
            "p",
            "ns",
            "action: DENY\nprovider: {name: x}\nrules:\n- {}"
        )),
        InvalidReason::ProviderWithoutCustom
    );
    assert_eq!(
        invalid(&policy("p", "ns", "action: CUSTOM\nrules:\n- {}")),
        InvalidReason::CustomWithoutProvider
    );
}

#[test]
fn bad_ips_ports_and_patterns_are_never_dropped() {
    assert_eq!(
        invalid(&policy(
            "p",
            "ns",
            "rules:\n- from: [{source: {ipBlocks: [\"10.0.0.0/33\"]}}]"
        )),
        InvalidReason::BadIp("10.0.0.0/33".into())
    );
    assert_eq!(
        invalid(&policy(
            "p",
            "ns",
            "rules:\n- to: [{operation: {ports: [\"70000\"]}}]"
        )),
        InvalidReason::BadPort("70000".into())
    );
    assert_eq!(
        invalid(&policy(
            "p",
            "ns",
            "rules:\n- to: [{operation: {ports: [0]}}]"
        )),
        InvalidReason::BadPort("0".into())
    );
    assert_eq!(
        invalid(&policy(
            "p",
            "ns",
            "rules:\n- to: [{operation: {paths: [\"/a*b\"]}}]"
        )),
        InvalidReason::BadPattern("/a*b".into())
    );
}

#[test]
fn selector_and_target_refs_are_exclusive() {
    assert_eq!(
        invalid(&policy(
            "p",
            "ns",
            "selector: {matchLabels: {a: b}}\ntargetRefs: [{kind: Gateway, name: g}]"
        )),
        InvalidReason::SelectorAndTargetRefs
    );
}

#[test]
fn service_accounts_not_with_principals() {
    assert_eq!(
        invalid(&policy(
            "p",
            "ns",
            "rules:\n- from: [{source: {serviceAccounts: [a], principals: [x]}}]"
        )),
        InvalidReason::ServiceAccountsCombined
    );
}

#[test]
fn errors_name_policy_and_field() {
    let err = parse_policies(
        &policy(
            "web-allow",
            "shop",
            "rules:\n- from: [{source: {ipBlocks: [\"nope\"]}}]",
        ),
        "default",
    )
    .unwrap_err();
    let PolicyError::Invalid { policy, field, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(policy, "shop/web-allow");
    assert_eq!(field, "spec.rules[0].from[0].source.ipBlocks[0]");
}

#[test]
fn unknown_fields_wrong_types_and_kinds() {
    assert!(matches!(
        parse_policies(
            &policy("p", "ns", "rules:\n- from: [{source: {principal: [x]}}]"),
            "d"
        ),
        Err(PolicyError::Yaml { .. })
    ));
    assert!(matches!(
        parse_policies(&policy("p", "ns", "rules: 5"), "d"),
        Err(PolicyError::Yaml { .. })
    ));
    assert!(matches!(
        parse_policies(&policy("p", "ns", "action: MAYBE"), "d"),
        Err(PolicyError::Yaml { .. })
    ));
    assert!(matches!(
        parse_policies(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
            "d"
        ),
        Err(PolicyError::WrongKind { .. })
    ));
    assert!(matches!(
        parse_policies("key: [unclosed", "d"),
        Err(PolicyError::Yaml { .. })
    ));
}

#[test]
fn huge_documents_and_yaml_bombs_are_bounded() {
    let big = "#".repeat(appnet_policy::MAX_INPUT_BYTES + 1);
    assert!(matches!(
        parse_policies(&big, "d"),
        Err(PolicyError::TooLarge { .. })
    ));
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 0..12 {
        let prev = if i == 0 {
            "a".to_owned()
        } else {
            format!("l{}", i - 1)
        };
        bomb.push_str(&format!(
            "l{i}: &l{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
        ));
    }
    assert!(matches!(
        parse_policies(&bomb, "d"),
        Err(PolicyError::Yaml { .. })
    ));
}

#[test]
fn multi_document_stream() {
    let yaml = policy("a", "shop", "rules:\n- {}")
        + "---\n"
        + &policy("b", "shop", "action: DENY\nrules:\n- {}");
    let ps = parse_policies(&yaml, "default").unwrap();
    assert_eq!(ps.len(), 2);
    assert_eq!(ps[1].action, Action::Deny);
}

// ---- properties ----

fn arb_spec() -> impl Strategy<Value = String> {
    let action = prop_oneof![Just("ALLOW"), Just("DENY"), Just("AUDIT")];
    let from = prop_oneof![
        Just(String::new()),
        Just("\n  from: [{source: {principals: [\"cluster.local/ns/shop/sa/web\"]}}]".to_owned()),
        Just("\n  from: [{source: {notNamespaces: [shop]}}]".to_owned()),
        Just("\n  from: [{source: {ipBlocks: [\"10.0.0.0/24\"]}}]".to_owned()),
    ];
    let to = prop_oneof![
        Just(String::new()),
        Just("\n  to: [{operation: {ports: [\"80\"]}}]".to_owned()),
        Just("\n  to: [{operation: {methods: [GET], paths: [\"/a*\"]}}]".to_owned()),
        Just("\n  to: [{operation: {notPorts: [\"443\"]}}]".to_owned()),
    ];
    (action, from, to).prop_map(|(a, f, t)| {
        format!("action: {a}\nrules:\n- {{}}{f}{t}").replace("- {}\n  ", "- ")
    })
}

fn arb_request() -> impl Strategy<Value = Request> {
    (
        prop::option::of(prop_oneof![Just(WEB), Just("cluster.local/ns/x/sa/y")]),
        prop_oneof![Just(80u16), Just(443), Just(8080)],
        any::<bool>(),
        prop_oneof![Just("/a/b"), Just("/z")],
    )
        .prop_map(|(p, port, with_http, path)| {
            let r = req(p, port);
            if with_http { http(r, "GET", path) } else { r }
        })
}

proptest! {
    #[test]
    fn adding_a_deny_never_turns_deny_into_allow(
        specs in prop::collection::vec(arb_spec(), 0..5),
        extra_to in prop_oneof![Just("ports: [\"80\"]"), Just("paths: [\"/a*\"]"), Just("methods: [GET]")],
        r in arb_request(),
        l4 in any::<bool>(),
    ) {
        let view = if l4 { View::L4 } else { View::L7 };
        let mut yaml = String::new();
        for (i, s) in specs.iter().enumerate() {
            yaml.push_str(&policy(&format!("p{i}"), "shop", s));
        }
        let before = set(&yaml);
        yaml.push_str(&policy("extra", "shop", &format!("action: DENY\nrules:\n- to: [{{operation: {{{extra_to}}}}}]")));
        let after = set(&yaml);
        let b = allowed(&before, &r, view);
        let a = allowed(&after, &r, view);
        prop_assert!(b || !a, "a DENY turned deny into allow");
    }

    #[test]
    fn arbitrary_yaml_never_panics(s in ".{0,400}") {
        if let Ok(ps) = parse_policies(&s, "default") {
            let set = PolicySet::new("istio-system", ps);
            let _ = set.evaluate(&dest("shop", &[]), &req(Some(WEB), 80), View::L4, &NoExternalAuthorizer);
        }
    }
}
