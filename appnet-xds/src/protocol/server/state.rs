//! One type's state on a server stream, and how it turns store changes into
//! responses.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Instant;

use prost::Message;

use super::{Acked, Nack, Outstanding};
use crate::protocol::store::hex16;
use crate::protocol::subscription::{Diff, Subscription};
use crate::protocol::{
    Any, DeltaDiscoveryResponse, DeltaResource, DiscoveryResponse, ProtocolError, ResourceStore,
    TypeRule, Variant,
};

/// A version the client may hold but the server does not know: never equal
/// to a stored version (the store refuses empty ones).
const UNKNOWN_VERSION: &str = "";

/// What one dirty name needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    /// Nothing: the client has what it should.
    Clean,
    /// The client no longer wants it; forget it without telling.
    Forget,
    /// Send the current version.
    Update,
    /// Delta: tell the client an explicitly requested name does not exist.
    NotFound,
    /// The client has it and the server no longer does.
    Remove,
}

/// Which kind of pending work a type has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Work {
    /// Additions, updates, "does not exist" notices, or a due first reply.
    pub(super) make: bool,
    /// Removals (sent only after all additions on the stream).
    pub(super) removal: bool,
}

/// A response sent and not yet answered, with what it carried.
#[derive(Clone, Debug)]
pub(super) struct InFlight {
    pub(super) outstanding: Outstanding,
    /// When its ACK timeout starts: when it was sent, or, for a step sent
    /// while an earlier one was in flight, when that one was answered (the
    /// client applies steps in turn).
    due_from: Instant,
    /// Its place among the type's responses (1 for the first).
    seq: u64,
    /// Resources (name → version) it carried.
    names: Carried,
}

/// The resources one response carried, name → version, sorted by name: a
/// list rather than a tree, since it is built once per response (most
/// carry one resource) and looked up only when a subscription changes.
#[derive(Clone, Debug, Default)]
pub(super) struct Carried(Vec<(String, String)>);

impl Carried {
    fn new(mut pairs: Vec<(String, String)>) -> Self {
        if !pairs.is_sorted_by(|a, b| a.0 <= b.0) {
            pairs.sort_by(|a, b| a.0.cmp(&b.0));
        }
        Self(pairs)
    }

    fn get(&self, name: &str) -> Option<&String> {
        let at = self
            .0
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()?;
        self.0.get(at).map(|(_, v)| v)
    }

    fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// Server-side state of one type URL on one stream.
#[derive(Clone, Debug)]
pub(super) struct TypeState {
    pub(super) type_url: String,
    pub(super) rule: TypeRule,
    pub(super) sub: Subscription,
    /// Requests seen for this type.
    pub(super) requests: u64,
    /// A response is owed even if nothing differs (first request; SotW
    /// full-state names newly asked for).
    pub(super) must_respond: bool,
    /// What the client was last sent: name → version (`None`: told that the
    /// name does not exist, delta only).
    pub(super) sent: BTreeMap<String, Option<String>>,
    /// Names whose sent state may differ from the store, not yet
    /// classified.
    dirty: BTreeSet<String>,
    /// Classified names that need an update or a "does not exist" notice.
    /// Anything that could change a name's class puts it back in `dirty`,
    /// so settling costs what changed, not what is pending (a 120k-resource
    /// push sent in steps does not rescan 120k names per step).
    pending_make: BTreeSet<String>,
    /// Classified names that need a removal.
    pending_remove: BTreeSet<String>,
    /// Store generation examined so far (`None`: examine everything).
    seen: Option<u64>,
    /// Responses not yet answered, oldest first: at most one, except while
    /// a delta push continues in steps (see [`Self::continuing`]).
    pub(super) in_flight: VecDeque<InFlight>,
    /// The last response answered (its `seq`).
    answered_through: u64,
    /// The last delta response stopped because it was full, and more of the
    /// same push is pending in that phase (`true`: removals): its next step
    /// may go before the ACK. Cleared when the phase's pending set empties.
    pub(super) continuing: Option<bool>,
    /// Resources the client unsubscribed while a response carrying them was
    /// in flight: it may have taken them anyway if it subscribed again
    /// before the response arrived. Settled when that response (name →
    /// version and the response's `seq`) is answered.
    uncertain: BTreeMap<String, (String, u64)>,
    pub(super) latest_nonce: Option<String>,
    pub(super) acked: Option<Acked>,
    pub(super) last_nack: Option<Nack>,
    pub(super) responses: u64,
}

impl TypeState {
    pub(super) fn new(type_url: String, rule: TypeRule) -> Self {
        Self {
            type_url,
            rule,
            sub: Subscription::default(),
            requests: 0,
            must_respond: false,
            sent: BTreeMap::new(),
            dirty: BTreeSet::new(),
            pending_make: BTreeSet::new(),
            pending_remove: BTreeSet::new(),
            seen: None,
            in_flight: VecDeque::new(),
            answered_through: 0,
            continuing: None,
            uncertain: BTreeMap::new(),
            latest_nonce: None,
            acked: None,
            last_nack: None,
            responses: 0,
        }
    }

    /// Records a subscription change: `resend` names are sent again even if
    /// the client was sent them before; everything touched is re-examined.
    pub(super) fn note_diff(&mut self, diff: &Diff, resend: &[String], variant: Variant) {
        for name in resend {
            // Sent again if it exists. If the client may hold some version
            // of it (sent, or in a response still in flight), that is kept
            // in mind as an unknown version, so a resource gone from the
            // store meanwhile is removed, not forgotten while the client
            // keeps what the in-flight response brings.
            let held = matches!(self.sent.get(name), Some(Some(_)))
                || self.in_flight.iter().any(|f| f.names.contains(name));
            if held {
                self.sent
                    .insert(name.clone(), Some(UNKNOWN_VERSION.to_owned()));
            } else {
                self.sent.remove(name);
            }
            self.dirty.insert(name.clone());
        }
        // The client drops what it unsubscribed when it says so: forget it
        // now, so a later re-subscription is sent again.
        let gone: Vec<String> = if diff.wildcard_changed && !self.sub.wildcard {
            let uncovered = self.sent.keys().filter(|n| !self.sub.covers(n));
            uncovered.cloned().collect()
        } else {
            let uncovered = diff.removed.iter().filter(|n| !self.sub.covers(n));
            uncovered.cloned().collect()
        };
        for name in gone {
            self.sent.remove(&name);
            // Settled again, so it leaves any pending set it was in.
            self.dirty.insert(name.clone());
            // The newest response carrying it decides.
            let carried = self.in_flight.iter().rev().find_map(|f| {
                let v = f.names.get(&name)?;
                Some((v.clone(), f.seq))
            });
            if let Some(carried) = carried {
                self.uncertain.insert(name, carried);
            }
        }
        self.dirty.extend(diff.added.iter().cloned());
        self.dirty.extend(diff.removed.iter().cloned());
        if diff.wildcard_changed {
            self.seen = None;
        }
        if variant == Variant::Sotw && self.rule.full_state && !diff.added.is_empty() {
            self.must_respond = true;
        }
    }

    /// The uncertain names the subscription covers now (before a request's
    /// changes are applied).
    pub(super) fn uncertain_covered(&self) -> BTreeSet<String> {
        self.uncertain
            .keys()
            .filter(|n| self.sub.covers(n))
            .cloned()
            .collect()
    }

    /// The response with `nonce` was answered (and any sent before it,
    /// which an in-order client answered first): forget what they carried.
    /// Returns it; `None` if no unanswered response has that nonce.
    pub(super) fn answered(&mut self, nonce: &str, now: Instant) -> Option<Outstanding> {
        let at = self
            .in_flight
            .iter()
            .position(|f| f.outstanding.nonce == nonce)?;
        let last = self.in_flight.drain(..=at).next_back()?;
        self.answered_through = last.seq;
        // The next step's turn starts now.
        if let Some(next) = self.in_flight.front_mut() {
            next.due_from = next.due_from.max(now);
        }
        Some(last.outstanding)
    }

    /// When the oldest response in flight times out after `timeout`.
    pub(super) fn ack_deadline(&self, timeout: std::time::Duration) -> Option<Instant> {
        self.in_flight.front()?.due_from.checked_add(timeout)
    }

    /// Whether `nonce` is that of a response not yet answered.
    pub(super) fn is_in_flight(&self, nonce: &str) -> bool {
        self.in_flight.iter().any(|f| f.outstanding.nonce == nonce)
    }

    /// The oldest response not yet answered.
    pub(super) fn oldest_in_flight(&self) -> Option<&Outstanding> {
        self.in_flight.front().map(|f| &f.outstanding)
    }

    /// After the answer to the response that carried them: an uncertain
    /// resource the client covered when that response arrived
    /// (`covered_before`) and still covers was taken; one it covers only
    /// since this request may or may not have been taken (the request that
    /// widened the subscription may have been made before the response
    /// arrived, or after), so it is held at an unknown version: sent again
    /// if it exists, removed if it does not; the rest are gone.
    pub(super) fn settle_uncertain(&mut self, covered_before: &BTreeSet<String>) {
        if self.uncertain.is_empty() {
            return;
        }
        let answered = self.answered_through;
        let (due, later) = std::mem::take(&mut self.uncertain)
            .into_iter()
            .partition(|(_, (_, seq))| *seq <= answered);
        self.uncertain = later;
        for (name, (version, _)) in due {
            if !self.sub.covers(&name) {
                continue;
            }
            let held = if covered_before.contains(&name) {
                version
            } else {
                UNKNOWN_VERSION.to_owned()
            };
            self.sent.insert(name.clone(), Some(held));
            self.dirty.insert(name);
        }
    }

    /// Whether this type holds work it already knows of: names to examine
    /// or to send, or a response owed. Store changes it has not looked at
    /// yet are not counted.
    pub(super) fn has_known_work(&self) -> bool {
        self.must_respond
            || !self.dirty.is_empty()
            || !self.pending_make.is_empty()
            || !self.pending_remove.is_empty()
    }

    /// Seeds what a reconnecting delta client already has.
    pub(super) fn note_initial_versions(&mut self, versions: &BTreeMap<String, String>) {
        for (name, version) in versions {
            if self.sub.covers(name) {
                self.sent.insert(name.clone(), Some(version.clone()));
                self.dirty.insert(name.clone());
            }
        }
    }

    /// Pulls the store's changes since the last look into the dirty set.
    fn refresh(&mut self, store: &ResourceStore) {
        let generation = store.generation();
        let changed = match self.seen {
            Some(seen) if seen <= generation => store.changed_since(&self.type_url, seen),
            _ => None,
        };
        match changed {
            Some(names) => self.dirty.extend(names.map(str::to_owned)),
            None => {
                let all = store.iter(&self.type_url).map(|(n, _)| n.to_owned());
                self.dirty.extend(all);
                self.dirty.extend(self.sent.keys().cloned());
                self.dirty.extend(self.sub.names.iter().cloned());
            }
        }
        self.seen = Some(generation);
    }

    fn classify(&self, name: &str, store: &ResourceStore, variant: Variant) -> Change {
        self.classify_with(name, store, variant).0
    }

    /// [`Self::classify`], with the store's resource when there is one.
    fn classify_with<'s>(
        &self,
        name: &str,
        store: &'s ResourceStore,
        variant: Variant,
    ) -> (Change, Option<&'s crate::protocol::StoredResource>) {
        let found = store.get(&self.type_url, name);
        let change = self.classify_found(name, found, variant);
        (change, found.filter(|_| change == Change::Update))
    }

    fn classify_found(
        &self,
        name: &str,
        found: Option<&crate::protocol::StoredResource>,
        variant: Variant,
    ) -> Change {
        let have = self.sent.get(name);
        if !self.sub.covers(name) {
            return if have.is_some() {
                Change::Forget
            } else {
                Change::Clean
            };
        }
        match (found, have) {
            (Some(r), Some(Some(v))) if v == r.version() => Change::Clean,
            (Some(_), _) => Change::Update,
            (None, None) => {
                if variant == Variant::Delta && self.sub.names.contains(name) {
                    Change::NotFound
                } else {
                    Change::Clean
                }
            }
            (None, Some(None)) => Change::Clean,
            (None, Some(Some(_))) => {
                if variant == Variant::Delta || self.rule.full_state {
                    Change::Remove
                } else {
                    // SotW can't delete an EDS/RDS-like resource: forget it so
                    // it is sent again if it comes back.
                    Change::Forget
                }
            }
        }
    }

    /// Brings the dirty set up to date and says what work is pending.
    pub(super) fn settle(&mut self, store: &ResourceStore, variant: Variant) -> Work {
        self.refresh(store);
        let dirty = std::mem::take(&mut self.dirty);
        for name in dirty {
            self.pending_make.remove(&name);
            self.pending_remove.remove(&name);
            match self.classify(&name, store, variant) {
                Change::Clean => {}
                Change::Forget => {
                    self.sent.remove(&name);
                }
                Change::Update | Change::NotFound => {
                    self.pending_make.insert(name);
                }
                Change::Remove => {
                    self.pending_remove.insert(name);
                }
            }
        }
        let drained = match self.continuing {
            Some(true) => self.pending_remove.is_empty(),
            Some(false) => self.pending_make.is_empty(),
            None => false,
        };
        if drained {
            self.continuing = None;
        }
        Work {
            make: self.must_respond || !self.pending_make.is_empty(),
            removal: !self.pending_remove.is_empty(),
        }
    }

    fn mark_sent(&mut self, nonce: &str, version: String, now: Instant, names: Carried) {
        self.must_respond = false;
        self.responses += 1;
        // Reuses the last nonce's buffer: this runs for every response.
        match &mut self.latest_nonce {
            Some(latest) => nonce.clone_into(latest),
            None => self.latest_nonce = Some(nonce.to_owned()),
        }
        self.in_flight.push_back(InFlight {
            outstanding: Outstanding {
                nonce: nonce.to_owned(),
                version,
                sent_at: now,
            },
            due_from: now,
            seq: self.responses,
            names,
        });
    }

    /// Builds the state-of-the-world response: the whole subscribed set. In
    /// the make phase, resources removed from the store stay in the set (at
    /// the version the client has) until removals are due.
    pub(super) fn build_sotw(
        &mut self,
        store: &ResourceStore,
        removal_phase: bool,
        nonce: String,
        limit: usize,
        now: Instant,
    ) -> Result<DiscoveryResponse, ProtocolError> {
        let mut contents: BTreeMap<String, (String, Any)> = BTreeMap::new();
        fn add(contents: &mut BTreeMap<String, (String, Any)>, name: &str, v: &str, any: &Any) {
            contents.insert(name.to_owned(), (v.to_owned(), any.clone()));
        }
        if self.sub.wildcard {
            for (name, r) in store.iter(&self.type_url) {
                add(&mut contents, name, r.version(), r.resource());
            }
        } else {
            for name in &self.sub.names {
                if let Some(r) = store.get(&self.type_url, name) {
                    add(&mut contents, name, r.version(), r.resource());
                }
            }
        }
        if !removal_phase {
            for (name, have) in &self.sent {
                if contents.contains_key(name) {
                    continue;
                }
                if let (Some(v), Some(old)) = (have, store.removed(&self.type_url, name))
                    && old.version() == v
                {
                    add(&mut contents, name, v, old.resource());
                }
            }
        }
        let version = set_version(contents.iter().map(|(n, (v, _))| (n.as_str(), v.as_str())));
        self.sent = contents
            .iter()
            .map(|(n, (v, _))| (n.clone(), Some(v.clone())))
            .collect();
        // Everything is settled by a whole set, except what it kept only
        // until removals are due.
        self.pending_make.clear();
        self.pending_remove.clear();
        self.dirty = self
            .sent
            .keys()
            .filter(|n| store.get(&self.type_url, n).is_none())
            .cloned()
            .collect();
        let response = DiscoveryResponse {
            version_info: version.clone(),
            resources: contents.into_values().map(|(_, any)| any).collect(),
            type_url: self.type_url.clone(),
            nonce,
            ..Default::default()
        };
        let size = response.encoded_len();
        if size > limit {
            self.must_respond = false;
            return Err(ProtocolError::MessageTooLarge {
                type_url: self.type_url.clone(),
                name: None,
                size,
                limit,
            });
        }
        let in_flight = self
            .sent
            .iter()
            .filter_map(|(n, v)| Some((n.clone(), v.clone()?)))
            .collect();
        self.mark_sent(&response.nonce, version, now, Carried::new(in_flight));
        Ok(response)
    }

    /// What a delta response says of `name`: sent at `version`, or (`None`)
    /// removed or told it does not exist. It supersedes whatever an earlier
    /// step in flight brought: nothing left to settle. The version is
    /// written into the entry's existing string when there is one.
    fn record_sent(&mut self, name: String, version: Option<&str>) {
        self.uncertain.remove(&name);
        match version {
            Some(v) => match self.sent.entry(name) {
                Entry::Occupied(mut e) => match e.get_mut() {
                    Some(have) => v.clone_into(have),
                    none => *none = Some(v.to_owned()),
                },
                Entry::Vacant(e) => {
                    e.insert(Some(v.to_owned()));
                }
            },
            None if self.sub.names.contains(&name) => {
                self.sent.insert(name, None);
            }
            None => {
                self.sent.remove(&name);
            }
        }
    }

    /// Builds an incremental response from the dirty set: in the make phase
    /// updates and "does not exist" notices, in the removal phase removals;
    /// as many as fit in `chunk` bytes (at least one, up to `limit`; the rest
    /// stay pending). Resources too large to ever fit in `limit` are skipped
    /// and reported in `errors`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn build_delta(
        &mut self,
        store: &ResourceStore,
        removal_phase: bool,
        nonce: String,
        (chunk, limit): (usize, usize),
        now: Instant,
        errors: &mut Vec<ProtocolError>,
    ) -> Option<DeltaDiscoveryResponse> {
        let mut response = DeltaDiscoveryResponse {
            system_version_info: store.generation().to_string(),
            type_url: self.type_url.clone(),
            nonce,
            ..Default::default()
        };
        let base = response.encoded_len();
        let mut size = base;
        // Names are taken out of the pending set as they go (owned, so no
        // copies of them for the bookkeeping below), in name order.
        let mut pending = std::mem::take(if removal_phase {
            &mut self.pending_remove
        } else {
            &mut self.pending_make
        });
        // Recorded as sent after the loop: classifying the rest looks names
        // up in `sent`, cheaper while it has not grown.
        // A small reserve: most responses carry a change or two, and a
        // big step grows its vectors as usual.
        let expected = pending.len().min(16);
        let mut done: Vec<(String, Option<&str>)> = Vec::with_capacity(expected);
        if removal_phase {
            response.removed_resources.reserve(expected);
        } else {
            response.resources.reserve(expected);
        }
        let mut full = false;
        while let Some(name) = pending.pop_first() {
            let (entry, version) = match self.classify_with(&name, store, Variant::Delta) {
                (Change::Update, Some(r)) if !removal_phase => {
                    let resource = DeltaResource {
                        name: name.clone(),
                        version: r.version().to_owned(),
                        resource: Some(r.resource().clone()),
                        ..Default::default()
                    };
                    (Some(resource), Some(r.version()))
                }
                (Change::NotFound, _) if !removal_phase => (None, None),
                (Change::Remove, _) if removal_phase => (None, None),
                _ => {
                    // Settled into the wrong class: examine it again.
                    self.dirty.insert(name);
                    continue;
                }
            };
            let cost = match &entry {
                Some(resource) => field_cost(resource.encoded_len()),
                None => field_cost(name.len()),
            };
            if base + cost > limit {
                // Can never be sent: report once, do not retry this version.
                errors.push(ProtocolError::MessageTooLarge {
                    type_url: self.type_url.clone(),
                    name: Some(name.clone()),
                    size: base + cost,
                    limit,
                });
                done.push((name, version));
                continue;
            }
            let carrying = !response.resources.is_empty() || !response.removed_resources.is_empty();
            if carrying && size + cost > chunk {
                // Full: the rest goes in the next response.
                pending.insert(name);
                full = true;
                break;
            }
            size += cost;
            match entry {
                Some(resource) => response.resources.push(resource),
                None => response.removed_resources.push(name.clone()),
            }
            done.push((name, version));
        }
        *(if removal_phase {
            &mut self.pending_remove
        } else {
            &mut self.pending_make
        }) = pending;
        for (name, version) in done {
            self.record_sent(name, version);
        }
        let empty = response.resources.is_empty() && response.removed_resources.is_empty();
        self.continuing = full.then_some(removal_phase);
        if empty && !self.must_respond {
            return None;
        }
        let version = response.system_version_info.clone();
        let in_flight = response
            .resources
            .iter()
            .map(|r| (r.name.clone(), r.version.clone()))
            .collect();
        self.mark_sent(&response.nonce, version, now, Carried::new(in_flight));
        Some(response)
    }
}

/// Bytes a length-delimited field of `len` bytes adds to a message.
fn field_cost(len: usize) -> usize {
    1 + prost::length_delimiter_len(len) + len
}

/// A version for a whole state-of-the-world set: 16 hex digits of SHA-256
/// over its (name, version) pairs, so the same set always has the same
/// version.
fn set_version<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for (name, version) in pairs {
        ctx.update(name.as_bytes());
        ctx.update(&[0]);
        ctx.update(version.as_bytes());
        ctx.update(&[0]);
    }
    hex16(ctx.finish().as_ref())
}

#[cfg(test)]
mod tests {
    use super::Carried;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn carried_finds_every_name_in_order_or_not() {
        for list in [
            pairs(&[("a", "1"), ("b", "2"), ("c", "3")]),
            pairs(&[("c", "3"), ("a", "1"), ("b", "2")]),
        ] {
            let carried = Carried::new(list);
            assert_eq!(carried.get("a").map(String::as_str), Some("1"));
            assert_eq!(carried.get("b").map(String::as_str), Some("2"));
            assert_eq!(carried.get("c").map(String::as_str), Some("3"));
            assert!(!carried.contains("ab"));
            assert!(!carried.contains(""));
        }
        assert!(!Carried::default().contains("a"));
    }
}
