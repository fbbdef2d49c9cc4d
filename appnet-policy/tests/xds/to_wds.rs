//! Model → WDS: istiod's L4 projection with POLICY.md's fail-closed rules;
//! and an istiod-style WDS policy evaluated as ztunnel would.

use super::*;

// ---- model → WDS ----

fn yaml(spec: &str) -> AuthorizationPolicy {
    yaml_in("shop", spec)
}

fn yaml_in(ns: &str, spec: &str) -> AuthorizationPolicy {
    let doc = format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: p, namespace: {ns}}}\nspec: {spec}\n"
    );
    parse_policies(&doc, "default").unwrap().remove(0)
}

fn no_form(p: &AuthorizationPolicy) -> NoWdsFormReason {
    match to_wds(p, ROOT) {
        Err(XdsPolicyError::NoWdsForm { reason, .. }) => reason,
        other => panic!("expected NoWdsForm, got {other:?}"),
    }
}

#[test]
fn audit_custom_dry_run_and_target_refs_have_no_wds_form() {
    assert_eq!(
        no_form(&yaml("{action: AUDIT, rules: [{}]}")),
        NoWdsFormReason::Audit
    );
    assert_eq!(
        no_form(&yaml(
            "{action: CUSTOM, provider: {name: ext}, rules: [{}]}"
        )),
        NoWdsFormReason::Custom
    );
    let mut dry = yaml("{action: DENY, rules: [{}]}");
    dry.dry_run = true;
    assert_eq!(no_form(&dry), NoWdsFormReason::DryRun);
    let refs = yaml("{targetRefs: [{kind: Service, group: '', name: web}], rules: [{}]}");
    assert_eq!(no_form(&refs), NoWdsFormReason::WaypointOnly);
    let err = to_wds(&refs, ROOT).unwrap_err().to_string();
    assert!(err.contains("shop/p") && err.contains("waypoint"), "{err}");
}

#[test]
fn scopes_project_like_istiod() {
    let scope = |p: AuthorizationPolicy| to_wds(&p, ROOT).unwrap().scope;
    assert_eq!(scope(yaml("{}")), AuthorizationScope::Namespace);
    assert_eq!(scope(yaml_in(ROOT, "{}")), AuthorizationScope::Global);
    let sel = "{selector: {matchLabels: {app: web}}}";
    assert_eq!(scope(yaml(sel)), AuthorizationScope::WorkloadSelector);
    assert_eq!(
        scope(yaml_in(ROOT, sel)),
        AuthorizationScope::WorkloadSelector
    );
    // An empty selector selects the whole namespace, as istiod sends it.
    assert_eq!(scope(yaml("{selector: {}}")), AuthorizationScope::Namespace);
    let mut named = yaml("{}");
    named.scope = Scope::Named;
    assert_eq!(scope(named), AuthorizationScope::WorkloadSelector);
}

#[test]
fn a_yaml_policy_projects_to_what_istiod_sends() {
    let p = yaml(
        "{action: DENY, rules: [{from: [{source: {principals: ['spiffe://cluster.local/ns/a/sa/b'], notNamespaces: [bank]}}, {source: {serviceAccounts: [web], ipBlocks: [10.0.0.0/8]}}], to: [{operation: {ports: ['80']}}, {operation: {notPorts: ['9090']}}], when: [{key: source.ip, notValues: [10.1.0.0/16]}, {key: destination.port, values: ['80']}]}]}",
    );
    let expected = Authorization {
        name: "p".into(),
        namespace: "shop".into(),
        scope: AuthorizationScope::Namespace,
        action: AuthorizationAction::Deny,
        rules: vec![appnet_xds::Rule {
            clauses: vec![
                Clause {
                    matches: vec![
                        Match {
                            destination_ports: vec![80],
                            ..Match::default()
                        },
                        Match {
                            not_destination_ports: vec![9090],
                            ..Match::default()
                        },
                    ],
                },
                Clause {
                    matches: vec![
                        Match {
                            principals: vec![exact("cluster.local/ns/a/sa/b")],
                            not_namespaces: vec![exact("bank")],
                            ..Match::default()
                        },
                        Match {
                            service_accounts: vec![ServiceAccountMatch {
                                namespace: "shop".into(),
                                service_account: "web".into(),
                            }],
                            source_ips: vec![net("10.0.0.0/8")],
                            ..Match::default()
                        },
                    ],
                },
                Clause {
                    matches: vec![Match {
                        not_source_ips: vec![net("10.1.0.0/16")],
                        ..Match::default()
                    }],
                },
                Clause {
                    matches: vec![Match {
                        destination_ports: vec![80],
                        ..Match::default()
                    }],
                },
            ],
        }],
    };
    let wds = to_wds(&p, ROOT).unwrap();
    assert_eq!(wds, expected);
    // It is valid WDS: it survives the wire.
    assert_eq!(decode_any::<Authorization>(&encode_any(&wds)).unwrap(), wds);
}

#[test]
fn an_allow_rule_using_http_attributes_is_dropped() {
    let p = yaml(
        "{rules: [{to: [{operation: {methods: [GET]}}]}, {to: [{operation: {ports: ['80']}}]}, {when: [{key: 'request.headers[x-user]', values: [a]}]}]}",
    );
    let wds = to_wds(&p, ROOT).unwrap();
    assert_eq!(wds.rules.len(), 1);
    assert_eq!(
        wds.rules[0].clauses[0].matches[0].destination_ports,
        vec![80]
    );
    // Everything dropped: the ALLOW stays with no rules and allows nothing.
    let all_l7 = yaml("{rules: [{from: [{source: {requestPrincipals: ['*']}}]}]}");
    let wds = to_wds(&all_l7, ROOT).unwrap();
    assert!(wds.rules.is_empty());
    assert!(!allowed(vec![from_wds(&wds, ROOT).unwrap()], &[], &web(80)));
}

#[test]
fn a_deny_rule_using_http_attributes_keeps_its_l4_part() {
    let p = yaml(
        "{action: DENY, rules: [{from: [{source: {namespaces: [shop], requestPrincipals: ['*']}}], to: [{operation: {methods: [POST]}}], when: [{key: 'request.auth.claims[iss]', values: [x]}, {key: destination.port, values: ['80']}]}]}",
    );
    let wds = to_wds(&p, ROOT).unwrap();
    // `to` has no L4 part left (always matches, so no clause); `from` keeps
    // its namespace; only the L4 condition stays.
    let clauses = &wds.rules[0].clauses;
    assert_eq!(clauses.len(), 2);
    assert_eq!(clauses[0].matches[0].namespaces, vec![exact("shop")]);
    assert_eq!(clauses[1].matches[0].destination_ports, vec![80]);
    let back = vec![from_wds(&wds, ROOT).unwrap()];
    assert!(!allowed(back.clone(), &[], &web(80)));
    assert!(allowed(back, &[], &web(8080)));
}

#[test]
fn fields_that_never_match_stay_never_matching() {
    let mut p = yaml(
        "{rules: [{from: [{source: {namespaces: [x]}}], when: [{key: source.ip, values: [10.0.0.0/8]}]}]}",
    );
    p.rules[0].from[0].namespaces.any = Some(Vec::new());
    let wds = to_wds(&p, ROOT).unwrap();
    assert_eq!(wds.rules[0].clauses[0], Clause::default());
    let mut q = yaml("{rules: [{when: [{key: destination.port, values: ['80']}]}]}");
    q.rules[0].when[0].values = ConditionValues::Ports(Field {
        any: Some(Vec::new()),
        none: None,
    });
    let wds_q = to_wds(&q, ROOT).unwrap();
    assert_eq!(wds_q.rules[0].clauses, vec![Clause::default()]);
    for w in [wds, wds_q] {
        assert!(!allowed(vec![from_wds(&w, ROOT).unwrap()], &[], &web(80)));
    }
}

#[test]
fn a_condition_whose_values_do_not_fit_its_key_is_refused() {
    let mut p =
        yaml("{action: DENY, rules: [{}, {when: [{key: source.ip, values: [10.0.0.0/8]}]}]}");
    p.rules[1].when[0].values = ConditionValues::Ports(Field {
        any: Some(vec![80]),
        none: None,
    });
    assert_eq!(
        to_wds(&p, ROOT),
        Err(XdsPolicyError::Unsupported {
            policy: "shop/p".into(),
            field: "rules[1].when[0]".into(),
            reason: UnsupportedReason::ConditionValuesMismatch,
        })
    );
}

// ---- an istiod-style policy, evaluated as ztunnel would ----

#[test]
fn an_istiod_style_policy_evaluates_as_ztunnel_would() {
    // What istiod sends for a selector ALLOW in `shop`:
    //   from: [{source: {principals: [cluster.local/ns/shop/sa/web]}},
    //          {source: {namespaces: [bank], notPrincipals: [*/sa/legacy]}}]
    //   to: [{operation: {ports: [8080]}}, {operation: {ports: [9090]}}]
    //   when: [{key: source.ip, notValues: [10.66.0.0/16]}]
    // plus a second rule allowing anything to port 15020.
    let a = auth(
        AuthorizationScope::WorkloadSelector,
        AuthorizationAction::Allow,
        vec![
            vec![
                vec![
                    Match {
                        destination_ports: vec![8080],
                        ..Match::default()
                    },
                    Match {
                        destination_ports: vec![9090],
                        ..Match::default()
                    },
                ],
                vec![
                    Match {
                        principals: vec![exact(WEB)],
                        ..Match::default()
                    },
                    Match {
                        namespaces: vec![exact("bank")],
                        not_principals: vec![appnet_xds::StringMatch::Suffix("/sa/legacy".into())],
                        ..Match::default()
                    },
                ],
                vec![Match {
                    not_source_ips: vec![net("10.66.0.0/16")],
                    ..Match::default()
                }],
            ],
            vec![vec![Match {
                destination_ports: vec![15020],
                ..Match::default()
            }]],
        ],
    );
    let policies = vec![from_wds(&a, ROOT).unwrap()];
    let bank_api = Some("cluster.local/ns/bank/sa/api");
    let bank_legacy = Some("cluster.local/ns/bank/sa/legacy");
    // (principal, source ip, port, listed, ztunnel's verdict)
    let table: &[(Option<&str>, &str, u16, bool, bool)] = &[
        (Some(WEB), "10.0.0.1", 8080, true, true),
        (Some(WEB), "10.0.0.1", 9090, true, true),
        (Some(WEB), "10.0.0.1", 80, true, false),
        (Some(WEB), "10.66.1.1", 8080, true, false),
        (bank_api, "10.0.0.1", 9090, true, true),
        (bank_legacy, "10.0.0.1", 9090, true, false),
        (
            Some("cluster.local/ns/shop/sa/db"),
            "10.0.0.1",
            8080,
            true,
            false,
        ),
        (None, "10.0.0.1", 8080, true, false),
        (None, "10.66.1.1", 15020, true, true),
        // Not listed: the policy does not apply, and nothing else does.
        (None, "10.0.0.1", 80, false, true),
    ];
    for &(principal, src, port, is_listed, verdict) in table {
        let keys: &[&str] = if is_listed { &["shop/p"] } else { &[] };
        let r = req(principal, src, "10.0.0.2", port);
        assert_eq!(
            allowed(policies.clone(), keys, &r),
            verdict,
            "{principal:?} {src} :{port} listed={is_listed}"
        );
    }
    let listed_keys: BTreeSet<String> = BTreeSet::from(["shop/p".to_owned()]);
    assert!(matches!(
        PolicySet::new(ROOT, policies)
            .evaluate(
                &Destination {
                    namespace: "shop".into(),
                    attachment: Attachment::Listed { policies: listed_keys },
                },
                &req(None, "10.0.0.1", "10.0.0.2", 15020),
                View::L4,
                &NoExternalAuthorizer,
            )
            .reason,
        Reason::Allowed(m) if m.policy == "shop/p" && m.rule == 1
    ));
}
