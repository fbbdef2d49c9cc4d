//! Applying one response to a client type: name, validate, accept what is
//! acceptable, and queue the ACK or NACK.

use std::collections::BTreeSet;

use super::{AcceptedResource, ClientEvent, ClientType, NameList, Rejection, Validator};
use crate::protocol::{Any, DeltaDiscoveryResponse, DiscoveryResponse, Status};

/// `google.rpc.Code.INVALID_ARGUMENT`, the code of our NACKs.
const INVALID_ARGUMENT: i32 = 3;

fn event(t: &ClientType, version: String, nonce: String) -> ClientEvent {
    ClientEvent {
        type_url: t.type_url.clone(),
        version,
        nonce,
        updated: NameList::default(),
        removed: NameList::default(),
        rejected: Vec::new(),
        acked: false,
    }
}

/// Queues the answer: ACK (adopting `version`) or NACK with every reason.
fn answer(t: &mut ClientType, mut ev: ClientEvent) -> ClientEvent {
    // Into the buffers already there: this runs for every response.
    t.nonce.clone_from(&ev.nonce);
    t.request_due = true;
    if ev.rejected.is_empty() {
        t.version.clone_from(&ev.version);
        t.error = None;
        ev.acked = true;
    } else {
        let message = ev
            .rejected
            .iter()
            .map(|r| match &r.name {
                Some(name) => format!("{name}: {}", r.reason),
                None => r.reason.clone(),
            })
            .collect::<Vec<_>>()
            .join("; ");
        t.last_nack = Some(message.clone());
        t.error = Some(Status {
            code: INVALID_ARGUMENT,
            message,
            details: Vec::new(),
        });
        ev.acked = false;
    }
    ev
}

fn whole(reason: String) -> Vec<Rejection> {
    vec![Rejection { name: None, reason }]
}

/// Accepts one validated resource; returns whether it changed anything.
fn accept(t: &mut ClientType, name: &str, version: &str, resource: &Any) -> bool {
    // One walk down the tree: the insert hands back what it replaced.
    let replaced = t
        .resources
        .insert(AcceptedResource::new(name, version, &resource.value));
    replaced.is_none_or(|old| old.payload() != resource.value.as_slice())
}

/// A state-of-the-world response: resources are named by the validator;
/// duplicates or unnameable payloads reject the whole response; in
/// full-state types a subscribed resource missing from it is deleted.
pub(super) fn sotw(
    t: &mut ClientType,
    r: DiscoveryResponse,
    validator: &mut dyn Validator,
) -> ClientEvent {
    let mut ev = event(t, r.version_info, r.nonce);
    let mut named = Vec::with_capacity(r.resources.len());
    let mut seen = BTreeSet::new();
    for (i, any) in r.resources.into_iter().enumerate() {
        if any.type_url != t.type_url {
            ev.rejected = whole(format!("resource {i} is a {:?}", any.type_url));
            return answer(t, ev);
        }
        let name = match validator.resource_name(&t.type_url, &any) {
            Ok(name) => name,
            Err(reason) => {
                ev.rejected = whole(format!("resource {i}: {reason}"));
                return answer(t, ev);
            }
        };
        if !seen.insert(name.clone()) {
            ev.rejected = whole(format!("duplicate resource name {name:?}"));
            return answer(t, ev);
        }
        named.push((name, any));
    }
    t.shadow.clear();
    let version = ev.version.clone();
    for (name, any) in named {
        if !t.tracks(&name) {
            if validator.validate(&t.type_url, &name, &any).is_ok() {
                let kept = AcceptedResource::new(&name, &version, &any.value);
                t.shadow.insert(name, kept);
            }
            continue;
        }
        match validator.validate(&t.type_url, &name, &any) {
            Ok(()) => {
                if accept(t, &name, &version, &any) {
                    ev.updated.push(&name);
                }
            }
            Err(reason) => ev.rejected.push(Rejection {
                name: Some(name),
                reason,
            }),
        }
    }
    if t.rule.full_state {
        let gone: Vec<String> = t
            .resources
            .iter()
            .filter(|(n, _)| !seen.contains(*n))
            .map(|(n, _)| n.to_owned())
            .collect();
        for name in gone {
            if t.resources.remove(&name).is_some() {
                ev.removed.push(&name);
            }
        }
    }
    answer(t, ev)
}

/// An incremental response: malformed names (empty, duplicate, both added
/// and removed) reject the whole response; otherwise each resource is
/// validated on its own and `removed_resources` are deleted.
pub(super) fn delta(
    t: &mut ClientType,
    r: DeltaDiscoveryResponse,
    validator: &mut dyn Validator,
) -> ClientEvent {
    let mut ev = event(t, r.system_version_info, r.nonce);
    let mut seen = BTreeSet::new();
    for resource in &r.resources {
        if resource.name.is_empty() {
            ev.rejected = whole("a resource has no name".to_owned());
            return answer(t, ev);
        }
        if !seen.insert(resource.name.as_str()) {
            ev.rejected = whole(format!("duplicate resource name {:?}", resource.name));
            return answer(t, ev);
        }
    }
    if let Some(both) = r
        .removed_resources
        .iter()
        .find(|n| seen.contains(n.as_str()))
    {
        ev.rejected = whole(format!("{both:?} is both updated and removed"));
        return answer(t, ev);
    }
    for resource in r.resources {
        if !t.tracks(&resource.name) {
            continue;
        }
        let name = resource.name;
        let verdict = match resource.resource {
            None => Err("no resource payload".to_owned()),
            Some(any) if any.type_url != t.type_url => {
                Err(format!("payload is a {:?}", any.type_url))
            }
            Some(any) => validator.validate(&t.type_url, &name, &any).map(|()| any),
        };
        match verdict {
            Ok(any) => {
                if accept(t, &name, &resource.version, &any) {
                    ev.updated.push(&name);
                }
            }
            Err(reason) => ev.rejected.push(Rejection {
                name: Some(name),
                reason,
            }),
        }
    }
    for name in r.removed_resources {
        if t.resources.remove(&name).is_some() {
            ev.removed.push(&name);
        }
    }
    answer(t, ev)
}
