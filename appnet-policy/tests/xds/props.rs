//! Proptests: a node proxy fed WDS (istiod's projection of the YAML
//! policies, workloads attached by their listed policy keys) decides as one
//! fed the YAML (workloads attached by labels) in the L4 view; a converted
//! WDS policy decides as ztunnel's semantics say (a naive WDS evaluator
//! written here); and no WDS input panics the conversions.

use std::fmt::Debug;
use std::net::IpAddr;

use appnet_policy::{HttpAttributes, RequestAuth, RuleMatch};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

use super::*;

const NAMESPACES: &[&str] = &["istio-system", "shop", "bank"];
const LABELS: &[(&str, &str)] = &[("app", "web"), ("app", "db"), ("tier", "front")];
const PRINCIPALS: &[&str] = &[
    "cluster.local/ns/shop/sa/web",
    "cluster.local/ns/bank/sa/api",
    "other.td/ns/shop/sa/web",
    "not-istio-form",
];
const NETS: &[&str] = &["10.0.0.0/8", "10.1.2.3/32", "192.168.0.0/16", "fd00::/8"];
const IPS: &[&str] = &["10.1.2.3", "192.168.1.1", "8.8.8.8", "fd00::1"];
const PORTS: &[u16] = &[80, 8080, 9090];
const ACCOUNTS: &[(&str, &str)] = &[("shop", "web"), ("bank", "api")];

fn pick<T: Clone + Debug + 'static>(items: &'static [T]) -> impl Strategy<Value = T> + Clone {
    select(items)
}

fn arb_net() -> impl Strategy<Value = IpNet> + Clone {
    pick(NETS).prop_map(|s| s.parse().unwrap())
}

fn arb_account() -> impl Strategy<Value = (String, String)> + Clone {
    pick(ACCOUNTS).prop_map(|(ns, sa)| (ns.to_owned(), sa.to_owned()))
}

fn arb_string_match() -> impl Strategy<Value = StringMatch> + Clone {
    let words = [
        "cluster.local/ns/shop/sa/web",
        "shop",
        "bank",
        "other.td/ns/bank/sa/api",
    ];
    (0..4usize, select(words.to_vec())).prop_map(|(k, w)| match k {
        0 => StringMatch::Exact(w.to_owned()),
        1 => StringMatch::Prefix(w[..w.len().min(5)].to_owned()),
        2 => StringMatch::Suffix(w[w.len().saturating_sub(3)..].to_owned()),
        _ => StringMatch::Presence,
    })
}

/// A list: usually one or two values, rarely none (a positive list with no
/// values never matches).
fn arb_list<T: Debug + Clone>(
    item: impl Strategy<Value = T> + Clone,
) -> impl Strategy<Value = Vec<T>> + Clone {
    prop_oneof![9 => vec(item, 1..3), 1 => Just(Vec::new())]
}

fn arb_field<T: Debug + Clone>(
    item: impl Strategy<Value = T> + Clone,
) -> impl Strategy<Value = Field<T>> {
    (
        proptest::option::weighted(0.35, arb_list(item.clone())),
        proptest::option::weighted(0.15, arb_list(item)),
    )
        .prop_map(|(any, none)| Field { any, none })
}

/// An HTTP-only field: mostly unset.
fn arb_l7_field<T: Debug + Clone>(
    item: impl Strategy<Value = T> + Clone,
) -> impl Strategy<Value = Field<T>> {
    proptest::option::weighted(0.1, arb_list(item)).prop_map(|any| Field { any, none: None })
}

fn arb_source() -> impl Strategy<Value = Source> {
    let sa = arb_account().prop_map(|(namespace, name)| ServiceAccountRef { namespace, name });
    (
        arb_field(arb_string_match()),
        arb_field(arb_string_match()),
        arb_field(sa),
        arb_field(arb_net()),
        arb_l7_field(arb_string_match()),
        arb_l7_field(arb_net()),
    )
        .prop_map(
            |(principals, namespaces, service_accounts, ip_blocks, rp, remote)| Source {
                principals,
                request_principals: rp,
                namespaces,
                service_accounts,
                ip_blocks,
                remote_ip_blocks: remote,
            },
        )
}

fn arb_operation() -> impl Strategy<Value = Operation> {
    (arb_field(pick(PORTS)), arb_l7_field(arb_string_match())).prop_map(|(ports, methods)| {
        Operation {
            ports,
            methods,
            ..Operation::default()
        }
    })
}

fn arb_condition() -> impl Strategy<Value = Condition> {
    let strings = |key: ConditionKey| {
        arb_field(arb_string_match()).prop_map(move |f| Condition {
            key: key.clone(),
            values: ConditionValues::Strings(f),
        })
    };
    let ips = |key: ConditionKey| {
        arb_field(arb_net()).prop_map(move |f| Condition {
            key: key.clone(),
            values: ConditionValues::Ips(f),
        })
    };
    prop_oneof![
        3 => strings(ConditionKey::SourceNamespace),
        3 => strings(ConditionKey::SourcePrincipal),
        3 => ips(ConditionKey::SourceIp),
        3 => ips(ConditionKey::DestinationIp),
        3 => arb_field(pick(PORTS)).prop_map(|f| Condition {
            key: ConditionKey::DestinationPort,
            values: ConditionValues::Ports(f),
        }),
        1 => strings(ConditionKey::RequestHeader("x-user".into())),
        1 => strings(ConditionKey::SourceServiceAccount),
        1 => ips(ConditionKey::RemoteIp),
    ]
}

fn arb_rule() -> impl Strategy<Value = Rule> {
    (
        vec(arb_source(), 0..3),
        vec(arb_operation(), 0..3),
        vec(arb_condition(), 0..3),
    )
        .prop_map(|(from, to, when)| Rule { from, to, when })
}

/// ALLOW and DENY policies (the ones with a WDS form), plus some AUDIT and
/// dry-run ones, which never change a decision and are not sent.
fn arb_policy(i: usize) -> impl Strategy<Value = AuthorizationPolicy> {
    let scope = prop_oneof![
        Just(Scope::Namespace),
        proptest::collection::btree_map(
            pick(&["app", "tier"]).prop_map(String::from),
            pick(&["web", "db", "front"]).prop_map(String::from),
            0..3
        )
        .prop_map(Scope::Selector),
    ];
    let action =
        prop_oneof![4 => Just(Action::Allow), 4 => Just(Action::Deny), 1 => Just(Action::Audit)];
    (
        pick(NAMESPACES),
        scope,
        action,
        vec(arb_rule(), 0..3),
        proptest::bool::weighted(0.1),
    )
        .prop_map(
            move |(ns, scope, action, rules, dry_run)| AuthorizationPolicy {
                name: format!("p{i}"),
                namespace: ns.into(),
                scope,
                action,
                provider: None,
                rules,
                dry_run,
            },
        )
}

fn arb_policies() -> impl Strategy<Value = Vec<AuthorizationPolicy>> {
    (0..8usize).prop_flat_map(|n| (0..n).map(arb_policy).collect::<Vec<_>>())
}

fn arb_ip() -> impl Strategy<Value = Option<IpAddr>> {
    proptest::option::of(pick(IPS).prop_map(|s| s.parse().unwrap()))
}

fn arb_request() -> impl Strategy<Value = Request> {
    // HTTP attributes are there to show they change nothing at L4.
    let http = (
        proptest::option::of(pick(&["GET", "POST"]).prop_map(String::from)),
        proptest::option::of(pick(&["alice", "bob"]).prop_map(String::from)),
    )
        .prop_map(|(method, user)| HttpAttributes {
            method,
            headers: user.map(|u| ("x-user".to_owned(), u)).into_iter().collect(),
            auth: Some(RequestAuth {
                principal: Some("iss/alice".into()),
                ..RequestAuth::default()
            }),
            ..HttpAttributes::default()
        });
    (
        proptest::option::weighted(0.8, pick(PRINCIPALS).prop_map(String::from)),
        arb_ip(),
        arb_ip(),
        proptest::option::weighted(0.9, pick(PORTS)),
        proptest::option::of(http),
    )
        .prop_map(
            |(source_principal, source_ip, destination_ip, destination_port, http)| Request {
                source_principal,
                source_ip,
                destination_ip,
                destination_port,
                http,
                ..Request::default()
            },
        )
}

/// What decided: the verdict, and the deciding policy (with the rule for a
/// DENY, whose rules are never dropped).
fn decider(reason: &Reason) -> String {
    match reason {
        Reason::Denied(RuleMatch { policy, rule }) => format!("denied by {policy} rule {rule}"),
        Reason::Allowed(m) => format!("allowed by {}", m.policy),
        other => format!("{other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// A node proxy fed over xDS evaluates identically to one fed YAML.
    #[test]
    fn wds_fed_and_yaml_fed_node_proxies_decide_alike(
        policies in arb_policies(),
        ns in pick(NAMESPACES),
        labels in proptest::sample::subsequence(LABELS.to_vec(), 0..=2),
        req in arb_request(),
    ) {
        let labels: BTreeMap<String, String> =
            labels.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        let mut sent = Vec::new();
        for p in &policies {
            match to_wds(p, ROOT) {
                Ok(w) => {
                    // What is sent is valid WDS, byte for byte.
                    let back = decode_any::<Authorization>(&encode_any(&w));
                    prop_assert_eq!(back.as_ref().ok(), Some(&w));
                    sent.push(from_wds(&w, ROOT).map_err(|e| TestCaseError::fail(e.to_string()))?);
                }
                Err(XdsPolicyError::NoWdsForm {
                    reason: NoWdsFormReason::Audit | NoWdsFormReason::DryRun,
                    ..
                }) => {}
                Err(e) => prop_assert!(false, "unexpected {}", e),
            }
        }
        // What istiod lists on the workload: the selector policies selecting it.
        let listed: BTreeSet<String> = policies
            .iter()
            .filter(|p| match &p.scope {
                Scope::Selector(sel) => {
                    (p.namespace == ns || p.namespace == ROOT)
                        && sel.iter().all(|(k, v)| labels.get(k) == Some(v))
                }
                _ => false,
            })
            .map(AuthorizationPolicy::key)
            .collect();
        let yaml_fed = PolicySet::new(ROOT, policies).evaluate(
            &Destination { namespace: ns.into(), attachment: Attachment::Workload { labels } },
            &req,
            View::L4,
            &NoExternalAuthorizer,
        );
        let wds_fed = PolicySet::new(ROOT, sent).evaluate(
            &Destination { namespace: ns.into(), attachment: Attachment::Listed { policies: listed } },
            &req,
            View::L4,
            &NoExternalAuthorizer,
        );
        prop_assert_eq!(yaml_fed.allowed, wds_fed.allowed);
        prop_assert_eq!(decider(&yaml_fed.reason), decider(&wds_fed.reason));
        // Nothing needs downgrading once projected.
        prop_assert!(wds_fed.diagnostics.is_empty());
    }
}

// ---- WDS policies against a naive ztunnel-semantics evaluator ----

fn wds_string() -> impl Strategy<Value = appnet_xds::StringMatch> + Clone {
    arb_string_match().prop_map(|s| match s {
        StringMatch::Exact(v) => appnet_xds::StringMatch::Exact(v),
        StringMatch::Prefix(v) => appnet_xds::StringMatch::Prefix(v),
        StringMatch::Suffix(v) => appnet_xds::StringMatch::Suffix(v),
        StringMatch::Presence => appnet_xds::StringMatch::Presence,
    })
}

/// A WDS list: mostly empty (unset).
fn wds_list<T: Debug + Clone>(
    item: impl Strategy<Value = T> + Clone,
) -> impl Strategy<Value = Vec<T>> {
    prop_oneof![5 => Just(Vec::new()), 1 => vec(item, 1..3)]
}

fn wds_match() -> impl Strategy<Value = Match> {
    let sa = arb_account().prop_map(|(namespace, service_account)| ServiceAccountMatch {
        namespace,
        service_account,
    });
    (
        (
            wds_list(wds_string()),
            wds_list(wds_string()),
            wds_list(wds_string()),
            wds_list(wds_string()),
        ),
        (
            wds_list(arb_net()),
            wds_list(arb_net()),
            wds_list(arb_net()),
            wds_list(arb_net()),
        ),
        (
            wds_list(pick(PORTS)),
            wds_list(pick(PORTS)),
            wds_list(sa.clone()),
            wds_list(sa),
        ),
    )
        .prop_map(
            |((ns, nns, p, np), (si, nsi, di, ndi), (dp, ndp, sa, nsa))| Match {
                namespaces: ns,
                not_namespaces: nns,
                principals: p,
                not_principals: np,
                source_ips: si,
                not_source_ips: nsi,
                destination_ips: di,
                not_destination_ips: ndi,
                destination_ports: dp,
                not_destination_ports: ndp,
                service_accounts: sa,
                not_service_accounts: nsa,
            },
        )
}

/// Matches shaped like istiod's (source fields only, ports only) more often
/// than not, so that clauses of several matches convert.
fn shaped_match() -> impl Strategy<Value = Match> {
    prop_oneof![
        2 => wds_match().prop_map(|m| Match {
            destination_ips: Vec::new(),
            not_destination_ips: Vec::new(),
            destination_ports: Vec::new(),
            not_destination_ports: Vec::new(),
            ..m
        }),
        1 => wds_match().prop_map(|m| Match {
            destination_ports: m.destination_ports,
            not_destination_ports: m.not_destination_ports,
            ..Match::default()
        }),
        1 => wds_match(),
    ]
}

fn wds_authorization() -> impl Strategy<Value = Authorization> {
    let clause = vec(shaped_match(), 0..4).prop_map(|matches| Clause { matches });
    let sa = || {
        arb_account().prop_map(|(namespace, service_account)| ServiceAccountMatch {
            namespace,
            service_account,
        })
    };
    // Service accounts of single-match clauses ANDed into a `from` that has
    // its own: the intersection case.
    let accounts_and_from = (vec(sa(), 1..3), vec(sa(), 0..2), vec(vec(sa(), 0..3), 2..4))
        .prop_map(|(any, none, from)| {
            let single = Match {
                service_accounts: any,
                not_service_accounts: none,
                ..Match::default()
            };
            let from = from
                .into_iter()
                .map(|service_accounts| Match {
                    service_accounts,
                    ..Match::default()
                })
                .collect();
            vec![
                Clause {
                    matches: vec![single],
                },
                Clause { matches: from },
            ]
        });
    let rule = prop_oneof![
        3 => vec(clause, 0..4),
        1 => accounts_and_from,
    ]
    .prop_map(|clauses| appnet_xds::Rule { clauses });
    (
        select(vec![
            AuthorizationScope::Global,
            AuthorizationScope::Namespace,
            AuthorizationScope::WorkloadSelector,
        ]),
        select(vec![AuthorizationAction::Allow, AuthorizationAction::Deny]),
        vec(rule, 0..4),
    )
        .prop_map(|(scope, action, rules)| Authorization {
            name: "p".into(),
            namespace: "shop".into(),
            scope,
            action,
            rules,
        })
}

/// `td/ns/<ns>/sa/<sa>` → (ns, sa), as ztunnel reads a SPIFFE identity.
fn identity(r: &Request) -> Option<(&str, &str)> {
    let parts: Vec<&str> = r.source_principal.as_deref()?.split('/').collect();
    match parts.as_slice() {
        [_, "ns", ns, "sa", sa] => Some((ns, sa)),
        _ => None,
    }
}

fn str_is(p: &appnet_xds::StringMatch, v: &str) -> bool {
    match p {
        appnet_xds::StringMatch::Exact(s) => v == s,
        appnet_xds::StringMatch::Prefix(s) => v.starts_with(s.as_str()),
        appnet_xds::StringMatch::Suffix(s) => v.ends_with(s.as_str()),
        appnet_xds::StringMatch::Presence => !v.is_empty(),
    }
}

/// A positive list and its `not_*` list against an attribute that may be
/// absent.
fn pair<T, V: Copy>(pos: &[T], neg: &[T], v: Option<V>, f: impl Fn(&T, V) -> bool) -> bool {
    let hit = |list: &[T]| v.is_some_and(|v| list.iter().any(|p| f(p, v)));
    (pos.is_empty() || hit(pos)) && !hit(neg)
}

fn ztunnel_match(m: &Match, r: &Request) -> bool {
    let id = identity(r);
    let account = |s: &ServiceAccountMatch, (ns, sa): (&str, &str)| {
        s.namespace == ns && s.service_account == sa
    };
    pair(
        &m.namespaces,
        &m.not_namespaces,
        id.map(|(ns, _)| ns),
        str_is,
    ) && pair(
        &m.principals,
        &m.not_principals,
        r.source_principal.as_deref(),
        str_is,
    ) && pair(&m.source_ips, &m.not_source_ips, r.source_ip, |n, ip| {
        n.contains(&ip)
    }) && pair(
        &m.destination_ips,
        &m.not_destination_ips,
        r.destination_ip,
        |n, ip| n.contains(&ip),
    ) && pair(
        &m.destination_ports,
        &m.not_destination_ports,
        r.destination_port,
        |p, v| *p == v,
    ) && pair(&m.service_accounts, &m.not_service_accounts, id, account)
}

/// The first rule of `a` ztunnel finds matching `r`.
fn ztunnel_rule(a: &Authorization, r: &Request) -> Option<usize> {
    a.rules.iter().position(|rule| {
        rule.clauses
            .iter()
            .all(|c| c.matches.iter().any(|m| ztunnel_match(m, r)))
    })
}

fn decide(p: AuthorizationPolicy, r: &Request) -> Reason {
    let dest = listed(&["shop/p"]);
    PolicySet::new(ROOT, vec![p])
        .evaluate(&dest, r, View::L4, &NoExternalAuthorizer)
        .reason
}

/// Arbitrary text, ports and CIDRs: nothing a conversion must choke on.
fn wild_authorization() -> impl Strategy<Value = (Authorization, String)> {
    let text = ".{0,12}";
    let string = prop_oneof![
        text.prop_map(appnet_xds::StringMatch::Exact),
        text.prop_map(appnet_xds::StringMatch::Prefix),
        text.prop_map(appnet_xds::StringMatch::Suffix),
        Just(appnet_xds::StringMatch::Presence),
    ];
    let cidr = prop_oneof![
        (any::<[u8; 4]>(), 0..=32u8).prop_map(|(a, l)| IpNet::new(IpAddr::from(a), l).unwrap()),
        (any::<[u8; 16]>(), 0..=128u8).prop_map(|(a, l)| IpNet::new(IpAddr::from(a), l).unwrap()),
    ];
    let sa = (text, text).prop_map(|(namespace, service_account)| ServiceAccountMatch {
        namespace,
        service_account,
    });
    let m = (
        vec(string.clone(), 0..2),
        vec(string, 0..2),
        vec(cidr.clone(), 0..2),
        vec(cidr, 0..2),
        vec(any::<u16>(), 0..2),
        vec(sa, 0..2),
    )
        .prop_map(
            |(namespaces, not_principals, source_ips, not_destination_ips, ports, sa)| Match {
                namespaces,
                not_principals,
                source_ips,
                not_destination_ips,
                destination_ports: ports,
                not_service_accounts: sa,
                ..Match::default()
            },
        );
    let clause = vec(m, 0..3).prop_map(|matches| Clause { matches });
    let rule = vec(clause, 0..3).prop_map(|clauses| appnet_xds::Rule { clauses });
    (
        text,
        text,
        text,
        any::<u8>(),
        any::<bool>(),
        vec(rule, 0..3),
    )
        .prop_map(|(name, namespace, root, scope, deny, rules)| {
            let scope = match scope % 3 {
                0 => AuthorizationScope::Global,
                1 => AuthorizationScope::Namespace,
                _ => AuthorizationScope::WorkloadSelector,
            };
            let action = if deny {
                AuthorizationAction::Deny
            } else {
                AuthorizationAction::Allow
            };
            (
                Authorization {
                    name,
                    namespace,
                    scope,
                    action,
                    rules,
                },
                root,
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Whatever converts evaluates as ztunnel's semantics say, rule for
    /// rule; and it projects back to WDS that evaluates the same again.
    #[test]
    fn converted_wds_policies_evaluate_as_ztunnel(a in wds_authorization(), req in arb_request()) {
        let Ok(p) = AuthorizationPolicy::try_from(&a) else {
            return Ok(());
        };
        let want = match (a.action, ztunnel_rule(&a, &req)) {
            (AuthorizationAction::Allow, Some(rule)) => {
                Reason::Allowed(RuleMatch { policy: "shop/p".into(), rule })
            }
            (AuthorizationAction::Allow, None) => Reason::NoAllowMatched,
            (AuthorizationAction::Deny, Some(rule)) => {
                Reason::Denied(RuleMatch { policy: "shop/p".into(), rule })
            }
            (AuthorizationAction::Deny, None) => Reason::NoAllowPolicy,
        };
        prop_assert_eq!(decide(p.clone(), &req), want.clone());
        let again = to_wds(&p, ROOT).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let again = AuthorizationPolicy::try_from(&again).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(decide(again, &req), want);
    }

    /// Arbitrary WDS never panics a conversion; what converts has a WDS form.
    #[test]
    fn arbitrary_wds_never_panics((a, root) in wild_authorization(), req in arb_request()) {
        let _ = from_wds(&a, &root);
        if let Ok(p) = AuthorizationPolicy::try_from(a) {
            prop_assert!(to_wds(&p, &root).is_ok());
            let _ = decide(p, &req);
        }
    }
}
