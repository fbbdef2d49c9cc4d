//! WDS `istio.security.Authorization` ↔ model conversions: one named test
//! per mapping rule and error (WDS → model here, model → WDS in `to_wds`),
//! a hand-built istiod-style policy evaluated as ztunnel would (table, in
//! `to_wds`), and the proptests (`props`): a node proxy fed over xDS
//! decides as one fed YAML, and no WDS input panics the conversion.

#![cfg(feature = "xds")]

mod props;
mod to_wds;

use std::collections::{BTreeMap, BTreeSet};

use appnet_policy::{
    Action, Attachment, AuthorizationPolicy, Condition, ConditionKey, ConditionValues, Destination,
    Field, NoExternalAuthorizer, NoWdsFormReason, Operation, PolicySet, Reason, Request, Rule,
    Scope, ServiceAccountRef, Source, StringMatch, UnsupportedReason, View, XdsPolicyError,
    from_wds, parse_policies, to_wds,
};
use appnet_xds::{
    Authorization, AuthorizationAction, AuthorizationScope, Clause, IpNet, Match,
    ServiceAccountMatch, decode_any, encode_any,
};

const ROOT: &str = "istio-system";
const WEB: &str = "cluster.local/ns/shop/sa/web";

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn exact(s: &str) -> appnet_xds::StringMatch {
    appnet_xds::StringMatch::Exact(s.into())
}

fn auth(
    scope: AuthorizationScope,
    action: AuthorizationAction,
    rules: Vec<Vec<Vec<Match>>>,
) -> Authorization {
    Authorization {
        name: "p".into(),
        namespace: "shop".into(),
        scope,
        action,
        rules: rules
            .into_iter()
            .map(|clauses| appnet_xds::Rule {
                clauses: clauses
                    .into_iter()
                    .map(|matches| Clause { matches })
                    .collect(),
            })
            .collect(),
    }
}

fn allow(rules: Vec<Vec<Vec<Match>>>) -> Authorization {
    auth(
        AuthorizationScope::Namespace,
        AuthorizationAction::Allow,
        rules,
    )
}

fn convert(a: &Authorization) -> AuthorizationPolicy {
    AuthorizationPolicy::try_from(a).unwrap()
}

fn only_rule(a: &Authorization) -> Rule {
    let p = convert(a);
    assert_eq!(p.rules.len(), 1);
    p.rules[0].clone()
}

fn unsupported(a: &Authorization) -> (String, UnsupportedReason) {
    match AuthorizationPolicy::try_from(a) {
        Err(XdsPolicyError::Unsupported { field, reason, .. }) => (field, reason),
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

fn listed(keys: &[&str]) -> Destination {
    Destination {
        namespace: "shop".into(),
        attachment: Attachment::Listed {
            policies: keys.iter().map(|k| (*k).to_owned()).collect(),
        },
    }
}

fn req(principal: Option<&str>, src: &str, dst: &str, port: u16) -> Request {
    Request {
        source_principal: principal.map(str::to_owned),
        source_ip: Some(src.parse().unwrap()),
        destination_ip: Some(dst.parse().unwrap()),
        destination_port: Some(port),
        ..Request::default()
    }
}

fn web(port: u16) -> Request {
    req(Some(WEB), "10.0.0.1", "10.0.0.2", port)
}

/// Whether the policies allow `r` at a WDS workload in `shop` listing `keys`.
fn allowed(policies: Vec<AuthorizationPolicy>, keys: &[&str], r: &Request) -> bool {
    PolicySet::new(ROOT, policies)
        .evaluate(&listed(keys), r, View::L4, &NoExternalAuthorizer)
        .allowed
}

// ---- WDS → model: scope, action, names ----

#[test]
fn global_scope_becomes_namespace_scope_keeping_the_namespace() {
    let mut a = allow(vec![vec![]]);
    a.scope = AuthorizationScope::Global;
    a.namespace = ROOT.into();
    let p = convert(&a);
    assert_eq!((p.scope, p.namespace.as_str()), (Scope::Namespace, ROOT));
    // In the root namespace it is mesh-wide: it applies in `shop`.
    assert_eq!(from_wds(&a, ROOT).unwrap(), convert(&a));
    let set = PolicySet::new(ROOT, vec![convert(&a)]);
    assert_eq!(set.attached(&listed(&[])).count(), 1);
}

#[test]
fn namespace_scope_becomes_namespace_scope() {
    let p = convert(&allow(vec![]));
    assert_eq!(p.scope, Scope::Namespace);
    assert_eq!(p.key(), "shop/p");
    let set = PolicySet::new(ROOT, vec![p]);
    let bank = Destination {
        namespace: "bank".into(),
        ..listed(&[])
    };
    assert_eq!(set.attached(&listed(&[])).count(), 1);
    assert_eq!(set.attached(&bank).count(), 0);
}

#[test]
fn workload_selector_scope_becomes_named_and_attaches_only_when_listed() {
    let a = auth(
        AuthorizationScope::WorkloadSelector,
        AuthorizationAction::Allow,
        vec![],
    );
    let p = convert(&a);
    assert_eq!(p.scope, Scope::Named);
    let set = PolicySet::new(ROOT, vec![p]);
    assert_eq!(set.attached(&listed(&["shop/p"])).count(), 1);
    assert_eq!(set.attached(&listed(&["shop/q", "bank/p"])).count(), 0);
    // Never through labels.
    let labelled = Destination {
        namespace: "shop".into(),
        attachment: Attachment::Workload {
            labels: BTreeMap::from([("app".into(), "web".into())]),
        },
    };
    assert_eq!(set.attached(&labelled).count(), 0);
}

#[test]
fn yaml_selector_policy_attaches_to_a_listed_workload_iff_listed() {
    let yaml = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: sel, namespace: shop}\nspec: {selector: {matchLabels: {app: web}}}\n";
    let set = PolicySet::new(ROOT, parse_policies(yaml, "default").unwrap());
    assert_eq!(set.attached(&listed(&["shop/sel"])).count(), 1);
    assert_eq!(set.attached(&listed(&[])).count(), 0);
}

#[test]
fn actions_map_one_to_one() {
    let deny = auth(
        AuthorizationScope::Namespace,
        AuthorizationAction::Deny,
        vec![vec![]],
    );
    assert_eq!(convert(&deny).action, Action::Deny);
    assert_eq!(convert(&allow(vec![])).action, Action::Allow);
    let p = convert(&deny);
    assert!(!p.dry_run && p.provider.is_none());
}

#[test]
fn by_value_conversion_equals_by_reference() {
    let a = allow(vec![vec![vec![Match {
        destination_ports: vec![80],
        ..Match::default()
    }]]]);
    assert_eq!(
        AuthorizationPolicy::try_from(a.clone()),
        AuthorizationPolicy::try_from(&a)
    );
}

#[test]
fn empty_or_slashed_names_are_refused() {
    let mut a = allow(vec![]);
    a.name = String::new();
    assert_eq!(unsupported(&a), ("name".into(), UnsupportedReason::BadName));
    let mut a = allow(vec![]);
    a.namespace = "a/b".into();
    assert_eq!(
        unsupported(&a),
        ("namespace".into(), UnsupportedReason::BadName)
    );
}

#[test]
fn from_wds_refuses_global_outside_root_and_namespace_scope_inside_it() {
    let mut a = allow(vec![]);
    a.scope = AuthorizationScope::Global;
    let err = from_wds(&a, ROOT).unwrap_err();
    assert_eq!(
        err,
        XdsPolicyError::Unsupported {
            policy: "shop/p".into(),
            field: "scope".into(),
            reason: UnsupportedReason::GlobalOutsideRoot,
        }
    );
    let mut a = allow(vec![]);
    a.namespace = ROOT.into();
    assert!(matches!(
        from_wds(&a, ROOT),
        Err(XdsPolicyError::Unsupported {
            reason: UnsupportedReason::NamespaceScopeInRoot,
            ..
        })
    ));
    a.scope = AuthorizationScope::WorkloadSelector;
    assert_eq!(from_wds(&a, ROOT).unwrap().scope, Scope::Named);
}

// ---- WDS → model: clauses ----

#[test]
fn a_single_match_clause_becomes_one_when_condition_per_field() {
    let m = Match {
        namespaces: vec![exact("shop")],
        not_namespaces: vec![exact("bank")],
        principals: vec![appnet_xds::StringMatch::Prefix("cluster.local/".into())],
        not_principals: vec![appnet_xds::StringMatch::Presence],
        source_ips: vec![net("10.0.0.0/8")],
        not_source_ips: vec![net("10.9.0.0/16")],
        destination_ips: vec![net("10.0.0.2/32")],
        not_destination_ips: vec![],
        destination_ports: vec![80],
        not_destination_ports: vec![81, 82],
        ..Match::default()
    };
    let rule = only_rule(&allow(vec![vec![vec![m]]]));
    let strings =
        |any: Option<Vec<StringMatch>>, none| ConditionValues::Strings(Field { any, none });
    let expected = vec![
        Condition {
            key: ConditionKey::SourceNamespace,
            values: strings(
                Some(vec![StringMatch::Exact("shop".into())]),
                Some(vec![StringMatch::Exact("bank".into())]),
            ),
        },
        Condition {
            key: ConditionKey::SourcePrincipal,
            values: strings(
                Some(vec![StringMatch::Prefix("cluster.local/".into())]),
                Some(vec![StringMatch::Presence]),
            ),
        },
        Condition {
            key: ConditionKey::SourceIp,
            values: ConditionValues::Ips(Field {
                any: Some(vec![net("10.0.0.0/8")]),
                none: Some(vec![net("10.9.0.0/16")]),
            }),
        },
        Condition {
            key: ConditionKey::DestinationIp,
            values: ConditionValues::Ips(Field {
                any: Some(vec![net("10.0.0.2/32")]),
                none: None,
            }),
        },
        Condition {
            key: ConditionKey::DestinationPort,
            values: ConditionValues::Ports(Field {
                any: Some(vec![80]),
                none: Some(vec![81, 82]),
            }),
        },
    ];
    assert_eq!(rule.when, expected);
    assert!(rule.from.is_empty() && rule.to.is_empty());
}

#[test]
fn single_match_service_accounts_become_a_from_source() {
    let sa = |ns: &str, name: &str| ServiceAccountMatch {
        namespace: ns.into(),
        service_account: name.into(),
    };
    let m = Match {
        service_accounts: vec![sa("shop", "web")],
        not_service_accounts: vec![sa("shop", "old")],
        ..Match::default()
    };
    let a = allow(vec![vec![vec![m]]]);
    let rule = only_rule(&a);
    assert_eq!(
        rule.from,
        vec![Source {
            service_accounts: Field {
                any: Some(vec![ServiceAccountRef {
                    namespace: "shop".into(),
                    name: "web".into(),
                }]),
                none: Some(vec![ServiceAccountRef {
                    namespace: "shop".into(),
                    name: "old".into(),
                }]),
            },
            ..Source::default()
        }]
    );
    // And it is an L4 rule: it allows the web service account at L4.
    assert!(allowed(vec![convert(&a)], &[], &web(80)));
    let api = req(
        Some("cluster.local/ns/shop/sa/api"),
        "10.0.0.1",
        "10.0.0.2",
        80,
    );
    assert!(!allowed(vec![convert(&a)], &[], &api));
}

#[test]
fn single_match_service_accounts_are_anded_into_every_from_source() {
    let sa = |name: &str| ServiceAccountMatch {
        namespace: "shop".into(),
        service_account: name.into(),
    };
    let from = vec![
        Match {
            service_accounts: vec![sa("web"), sa("api")],
            ..Match::default()
        },
        Match {
            source_ips: vec![net("10.0.0.0/8")],
            ..Match::default()
        },
    ];
    let only_web = Match {
        service_accounts: vec![sa("web"), sa("cron")],
        ..Match::default()
    };
    let a = allow(vec![vec![vec![only_web], from]]);
    let rule = only_rule(&a);
    let names = |s: &Source| {
        s.service_accounts
            .any
            .as_ref()
            .map(|v| v.iter().map(|r| r.name.clone()).collect::<Vec<_>>())
    };
    // {web, api} ∩ {web, cron} = {web}; the IP source gains {web, cron}.
    assert_eq!(names(&rule.from[0]), Some(vec!["web".to_owned()]));
    assert_eq!(
        names(&rule.from[1]),
        Some(vec!["web".to_owned(), "cron".to_owned()])
    );
    let set = vec![convert(&a)];
    assert!(allowed(set.clone(), &[], &web(80)));
    let api = req(
        Some("cluster.local/ns/shop/sa/api"),
        "10.0.0.1",
        "10.0.0.2",
        80,
    );
    let cron = req(
        Some("cluster.local/ns/shop/sa/cron"),
        "10.0.0.1",
        "10.0.0.2",
        80,
    );
    let cron_outside = req(
        Some("cluster.local/ns/shop/sa/cron"),
        "192.168.0.1",
        "10.0.0.2",
        80,
    );
    assert!(!allowed(set.clone(), &[], &api));
    assert!(allowed(set.clone(), &[], &cron));
    assert!(!allowed(set, &[], &cron_outside));
}

#[test]
fn a_clause_of_several_source_matches_becomes_from() {
    let from = vec![
        Match {
            principals: vec![exact(WEB)],
            ..Match::default()
        },
        Match {
            namespaces: vec![exact("bank")],
            not_source_ips: vec![net("10.0.0.0/8")],
            ..Match::default()
        },
    ];
    let rule = only_rule(&allow(vec![vec![from]]));
    assert_eq!(rule.from.len(), 2);
    assert_eq!(
        rule.from[0].principals.any,
        Some(vec![StringMatch::Exact(WEB.into())])
    );
    assert_eq!(rule.from[1].ip_blocks.none, Some(vec![net("10.0.0.0/8")]));
    assert!(rule.when.is_empty() && rule.to.is_empty());
}

#[test]
fn a_clause_of_several_port_matches_becomes_to() {
    let ports = |p: u16| Match {
        destination_ports: vec![p],
        ..Match::default()
    };
    let rule = only_rule(&allow(vec![vec![vec![ports(80), ports(8080)]]]));
    assert_eq!(
        rule.to,
        vec![
            Operation {
                ports: Field {
                    any: Some(vec![80]),
                    none: None
                },
                ..Operation::default()
            },
            Operation {
                ports: Field {
                    any: Some(vec![8080]),
                    none: None
                },
                ..Operation::default()
            },
        ]
    );
}

#[test]
fn a_clause_with_no_matches_never_matches() {
    let a = allow(vec![
        vec![vec![]],
        vec![vec![Match {
            destination_ports: vec![9090],
            ..Match::default()
        }]],
    ]);
    let p = convert(&a);
    assert!(!allowed(vec![p.clone()], &[], &web(80)));
    let d = PolicySet::new(ROOT, vec![p]).evaluate(
        &listed(&[]),
        &web(9090),
        View::L4,
        &NoExternalAuthorizer,
    );
    // Rule indices are kept: rule 1 matched, rule 0 never does.
    assert!(matches!(d.reason, Reason::Allowed(m) if m.rule == 1));
    let deny = auth(
        AuthorizationScope::Namespace,
        AuthorizationAction::Deny,
        vec![vec![vec![]]],
    );
    assert!(allowed(vec![convert(&deny)], &[], &web(80)));
}

#[test]
fn a_clause_holding_an_empty_match_always_matches() {
    let any_port = vec![
        Match {
            destination_ports: vec![9090],
            ..Match::default()
        },
        Match::default(),
    ];
    let rule = only_rule(&allow(vec![vec![any_port, vec![Match::default()]]]));
    assert_eq!(rule, Rule::default());
}

#[test]
fn no_rules_match_nothing_and_an_empty_rule_matches_everything() {
    assert!(!allowed(vec![convert(&allow(vec![]))], &[], &web(80)));
    assert!(allowed(
        vec![convert(&allow(vec![vec![]]))],
        &[],
        &Request::default()
    ));
}

#[test]
fn clauses_without_an_exact_model_form_are_refused_by_path() {
    let src = Match {
        namespaces: vec![exact("shop")],
        ..Match::default()
    };
    let port = Match {
        destination_ports: vec![80],
        ..Match::default()
    };
    let dst_ip = Match {
        destination_ips: vec![net("10.0.0.2/32")],
        ..Match::default()
    };
    let mixed = allow(vec![
        vec![],
        vec![vec![port.clone()], vec![src.clone(), port.clone()]],
    ]);
    assert_eq!(
        unsupported(&mixed),
        ("rules[1].clauses[1]".into(), UnsupportedReason::MixedClause)
    );
    let ips = allow(vec![vec![vec![dst_ip.clone(), dst_ip]]]);
    assert_eq!(unsupported(&ips).1, UnsupportedReason::MixedClause);
    let two_from = allow(vec![vec![
        vec![src.clone(), src.clone()],
        vec![src.clone(), src],
    ]]);
    assert_eq!(
        unsupported(&two_from),
        ("rules[0].clauses[1]".into(), UnsupportedReason::FromTaken)
    );
    let two_to = allow(vec![vec![
        vec![port.clone(), port.clone()],
        vec![port.clone(), port],
    ]]);
    assert_eq!(unsupported(&two_to).1, UnsupportedReason::ToTaken);
    let message = AuthorizationPolicy::try_from(&two_to)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("shop/p") && message.contains("rules[0].clauses[1]"),
        "{message}"
    );
}
