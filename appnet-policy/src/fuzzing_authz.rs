//! Fuzz entry point for AuthorizationPolicy parsing and evaluation
//! (re-exported from `appnet_policy::fuzzing`). Not part of the stable API.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use crate::eval::{
    Attachment, Destination, ExternalAuthorizer, HttpAttributes, PolicySet, Reason, Request, View,
};
use crate::model::{Action, TargetRef};
use crate::parse::parse_policies;

/// Allows providers whose name has an even length: deterministic, and both
/// outcomes reachable.
struct EvenProviders;

impl ExternalAuthorizer for EvenProviders {
    fn check(&self, provider: &str, _request: &Request) -> bool {
        provider.len().is_multiple_of(2)
    }
}

/// Splits `data` at its first NUL byte into policy YAML and request bytes,
/// parses the policies and, when they parse, evaluates a request derived
/// from the bytes for a workload and a waypoint destination in both views.
/// Asserts that evaluation is deterministic and that every decision is
/// coherent: the reason names a policy of the right action that attaches,
/// and `allowed` agrees with the reason.
pub fn authz_eval(data: &[u8]) {
    let split = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    let yaml = String::from_utf8_lossy(&data[..split]);
    let rest = data.get(split + 1..).unwrap_or(&[]);
    let Ok(policies) = parse_policies(&yaml, "default") else {
        return;
    };
    let set = PolicySet::new("istio-system", policies);
    let req = request(rest);
    let ns = word(rest, 7, &["default", "istio-system", "shop", "ns"]);
    let dests = [
        Destination {
            namespace: ns.into(),
            attachment: Attachment::Workload {
                labels: BTreeMap::from([
                    ("app".to_string(), word(rest, 8, &["web", "db", "a"]).into()),
                    ("version".to_string(), "v1".to_string()),
                ]),
            },
        },
        Destination {
            namespace: ns.into(),
            attachment: Attachment::Waypoint {
                targets: vec![TargetRef {
                    group: "gateway.networking.k8s.io".into(),
                    kind: "Gateway".into(),
                    name: word(rest, 9, &["waypoint", "gw", "a"]).into(),
                }],
            },
        },
    ];
    for dest in &dests {
        let attached: Vec<_> = set.attached(dest).map(|p| (p.key(), p.action)).collect();
        for view in [View::L4, View::L7] {
            let d = set.evaluate(dest, &req, view, &EvenProviders);
            assert_eq!(d, set.evaluate(dest, &req, view, &EvenProviders));
            let decided =
                |key: &str, action: Action| attached.iter().any(|(k, a)| k == key && *a == action);
            match &d.reason {
                Reason::NoAllowPolicy => {
                    assert!(d.allowed);
                    assert!(
                        !attached.iter().any(|(_, a)| *a == Action::Allow)
                            || attached_dry_run(&set, dest)
                    );
                }
                Reason::CustomDenied { by, .. } => {
                    assert!(!d.allowed && decided(&by.policy, Action::Custom));
                }
                Reason::Denied(m) => assert!(!d.allowed && decided(&m.policy, Action::Deny)),
                Reason::Allowed(m) => assert!(d.allowed && decided(&m.policy, Action::Allow)),
                Reason::NoAllowMatched => assert!(!d.allowed),
            }
        }
    }
}

/// Whether every ALLOW attached to `dest` is dry-run (so none counts).
fn attached_dry_run(set: &PolicySet, dest: &Destination) -> bool {
    set.attached(dest)
        .filter(|p| p.action == Action::Allow)
        .all(|p| p.dry_run)
}

fn word<'a>(bytes: &[u8], at: usize, choices: &[&'a str]) -> &'a str {
    let i = bytes.get(at).copied().unwrap_or(0) as usize;
    choices.get(i % choices.len().max(1)).copied().unwrap_or("")
}

fn request(b: &[u8]) -> Request {
    let byte = |i: usize| b.get(i).copied().unwrap_or(0);
    let principal = match byte(0) % 4 {
        0 => None,
        1 => Some("cluster.local/ns/default/sa/web".to_string()),
        2 => Some("cluster.local/ns/shop/sa/api".to_string()),
        _ => Some(String::from_utf8_lossy(b.get(10..).unwrap_or(&[])).into_owned()),
    };
    let ip = |i: usize| IpAddr::V4(Ipv4Addr::new(10, byte(i), byte(i + 1), 1));
    Request {
        source_principal: principal,
        source_ip: (byte(1) % 2 == 0).then(|| ip(2)),
        remote_ip: None,
        destination_ip: Some(ip(3)),
        destination_port: (byte(4) % 3 != 0).then(|| u16::from_le_bytes([byte(5), byte(6)])),
        sni: None,
        http: (byte(1) % 3 != 0).then(|| HttpAttributes {
            host: Some("web.default.svc.cluster.local".into()),
            method: Some(word(b, 5, &["GET", "POST", "DELETE"]).into()),
            path: Some(word(b, 6, &["/", "/api/items", "/admin"]).into()),
            headers: vec![("x-user".into(), word(b, 7, &["alice", "bob"]).into())],
            auth: None,
        }),
    }
}
