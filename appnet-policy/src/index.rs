//! Precompiled policies and the scope index that finds, for one destination,
//! the policies attached to it without looking at any other policy.
//!
//! A mesh holds policies for many namespaces, workloads and waypoints, but a
//! decision only needs those that attach to its destination. The index maps
//! each way of attaching (namespace, label selector, `targetRefs`, and for
//! WDS-listed workloads the `namespace/name` key) to the policies using it,
//! so the cost of a decision follows the number of policies attached to the
//! destination, not the number in the mesh.

use std::collections::HashMap;

use crate::eval::{Attachment, Destination, Diagnostic};
use crate::matching::{applies, rule_uses_l7};
use crate::model::{Action, AuthorizationPolicy, Scope};

/// How a rule is evaluated in the L4 view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum L4Mode {
    /// The rule uses only L4 attributes: evaluated as written.
    AsWritten,
    /// An ALLOW rule needing HTTP attributes: matches nothing at L4.
    Never,
    /// A DENY/AUDIT/CUSTOM rule needing HTTP attributes: enforced on its L4
    /// part alone.
    L4PartOnly,
}

/// A policy with what can be worked out before any request arrives.
#[derive(Debug, Clone)]
pub(crate) struct CompiledPolicy {
    /// The policy.
    pub(crate) policy: AuthorizationPolicy,
    /// `namespace/name`.
    pub(crate) key: String,
    /// Per rule, its L4 treatment.
    pub(crate) l4_modes: Vec<L4Mode>,
    /// The diagnostics the L4 view reports for this policy.
    pub(crate) l4_diagnostics: Vec<Diagnostic>,
}

impl CompiledPolicy {
    pub(crate) fn new(policy: AuthorizationPolicy) -> Self {
        let key = policy.key();
        let mut l4_modes = Vec::with_capacity(policy.rules.len());
        let mut l4_diagnostics = Vec::new();
        for (i, rule) in policy.rules.iter().enumerate() {
            if !rule_uses_l7(rule) {
                l4_modes.push(L4Mode::AsWritten);
                continue;
            }
            let (mode, message) = match policy.action {
                Action::Allow => (
                    L4Mode::Never,
                    "ALLOW rule uses HTTP attributes a node proxy cannot see: it matches nothing at L4"
                        .to_string(),
                ),
                other => (
                    L4Mode::L4PartOnly,
                    format!(
                        "{other:?} rule uses HTTP attributes a node proxy cannot see: enforced on its L4 part alone (more restrictive)"
                    ),
                ),
            };
            l4_modes.push(mode);
            l4_diagnostics.push(Diagnostic {
                policy: key.clone(),
                rule: i,
                message,
            });
        }
        Self {
            policy,
            key,
            l4_modes,
            l4_diagnostics,
        }
    }
}

/// Label-selector policies of one namespace, keyed by one of their labels.
#[derive(Debug, Clone, Default)]
struct SelectorIndex {
    /// Policies with an empty selector (every workload of the namespace).
    all: Vec<u32>,
    /// Policies keyed by the first label of their selector (key, then
    /// value); a workload only needs the buckets of its own labels.
    by_label: HashMap<String, HashMap<String, Vec<u32>>>,
}

/// Where each policy attaches.
#[derive(Debug, Clone, Default)]
pub(crate) struct ScopeIndex {
    /// `Scope::Namespace` policies by their namespace.
    namespace: HashMap<String, Vec<u32>>,
    /// `Scope::Selector` policies by their namespace.
    selector: HashMap<String, SelectorIndex>,
    /// `Scope::Selector` and `Scope::Named` policies by `namespace/name`
    /// (what an [`Attachment::Listed`] workload names).
    by_key: HashMap<String, Vec<u32>>,
    /// `Scope::TargetRefs` policies by their namespace, then by the name of
    /// each reference (kind and group are checked on lookup).
    target_refs: HashMap<String, HashMap<String, Vec<u32>>>,
}

impl ScopeIndex {
    pub(crate) fn build(policies: &[CompiledPolicy]) -> Self {
        let mut index = Self::default();
        for (i, compiled) in policies.iter().enumerate() {
            // A set larger than u32::MAX policies cannot be built in memory
            // anyway; saturate rather than wrap.
            let id = u32::try_from(i).unwrap_or(u32::MAX);
            let p = &compiled.policy;
            match &p.scope {
                Scope::Namespace => index
                    .namespace
                    .entry(p.namespace.clone())
                    .or_default()
                    .push(id),
                Scope::Named => index
                    .by_key
                    .entry(compiled.key.clone())
                    .or_default()
                    .push(id),
                Scope::Selector(labels) => {
                    index
                        .by_key
                        .entry(compiled.key.clone())
                        .or_default()
                        .push(id);
                    let sel = index.selector.entry(p.namespace.clone()).or_default();
                    match labels.iter().next() {
                        None => sel.all.push(id),
                        Some((k, v)) => sel
                            .by_label
                            .entry(k.clone())
                            .or_default()
                            .entry(v.clone())
                            .or_default()
                            .push(id),
                    }
                }
                Scope::TargetRefs(refs) => {
                    for r in refs {
                        let bucket = index
                            .target_refs
                            .entry(p.namespace.clone())
                            .or_default()
                            .entry(r.name.clone())
                            .or_default();
                        if bucket.last() != Some(&id) {
                            bucket.push(id);
                        }
                    }
                }
            }
        }
        index
    }

    /// The policies attached to `dest`, in their original order.
    pub(crate) fn attached(
        &self,
        policies: &[CompiledPolicy],
        dest: &Destination,
        root_namespace: &str,
    ) -> Vec<u32> {
        let mut out = Vec::new();
        let namespaces: &[&str] = if dest.namespace == root_namespace {
            &[root_namespace][..]
        } else {
            &[dest.namespace.as_str(), root_namespace][..]
        };
        match &dest.attachment {
            Attachment::Workload { labels } => {
                for ns in namespaces {
                    if let Some(ids) = self.namespace.get(*ns) {
                        out.extend_from_slice(ids);
                    }
                    if let Some(sel) = self.selector.get(*ns) {
                        out.extend_from_slice(&sel.all);
                        for (k, v) in labels {
                            if let Some(ids) = sel.by_label.get(k).and_then(|by| by.get(v)) {
                                out.extend_from_slice(ids);
                            }
                        }
                    }
                }
            }
            Attachment::Listed { policies: listed } => {
                for ns in namespaces {
                    if let Some(ids) = self.namespace.get(*ns) {
                        out.extend_from_slice(ids);
                    }
                }
                for key in listed {
                    if let Some(ids) = self.by_key.get(key) {
                        out.extend_from_slice(ids);
                    }
                }
            }
            Attachment::Waypoint { targets } => {
                for ns in namespaces {
                    let Some(by_name) = self.target_refs.get(*ns) else {
                        continue;
                    };
                    for t in targets {
                        if let Some(ids) = by_name.get(&t.name) {
                            out.extend_from_slice(ids);
                        }
                    }
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        // The buckets are a superset (a selector is keyed by one label, a
        // reference by its name only, and a root-namespace targetRefs policy
        // only attaches through GatewayClass): the full check keeps exactly
        // the attached ones.
        out.retain(|&id| {
            policies
                .get(id as usize)
                .is_some_and(|c| applies(&c.policy, dest, root_namespace))
        });
        out
    }
}
