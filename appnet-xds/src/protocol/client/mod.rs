//! The client side of one xDS stream.

mod accepted;
mod apply;

pub use accepted::{AcceptedResource, NameList, ResourceMap};

use std::collections::BTreeMap;
use std::time::Instant;

use super::subscription::Subscription;
use super::{
    Any, DeltaDiscoveryRequest, DiscoveryRequest, Node, ProtocolError, Request, Response,
    StreamKind, TypeRule, TypeTable, Variant, WILDCARD,
};

/// The caller's judgement of received resources: the core never decodes a
/// payload itself.
pub trait Validator {
    /// The name of a state-of-the-world resource (SotW responses carry bare
    /// payloads whose names are inside them). Not called for delta, whose
    /// resources are named on the wire. `Err(reason)` rejects the whole
    /// response: without a name the client cannot apply it.
    ///
    /// # Errors
    /// A human-readable reason when the payload cannot be decoded.
    fn resource_name(&mut self, type_url: &str, resource: &Any) -> Result<String, String>;

    /// Checks one resource; `Err(reason)` rejects it (the client keeps the
    /// previous version, if any, and NACKs with the reason).
    ///
    /// # Errors
    /// A human-readable reason the resource is unacceptable.
    fn validate(&mut self, type_url: &str, name: &str, resource: &Any) -> Result<(), String>;
}

/// Settings for client streams.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Per-type rules: which state-of-the-world types are full-state
    /// (absence = deletion) and the order requests are sent in.
    pub types: TypeTable,
}

/// One resource (or a whole response) the client refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The resource, when known (`None`: the whole response).
    pub name: Option<String>,
    /// Why.
    pub reason: String,
}

/// What handling one response did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientEvent {
    /// The response's type URL.
    pub type_url: String,
    /// The response's version (`version_info` or `system_version_info`).
    pub version: String,
    /// The response's nonce.
    pub nonce: String,
    /// Resources added or changed.
    pub updated: NameList,
    /// Resources deleted.
    pub removed: NameList,
    /// Refused resources; non-empty means the response is NACKed.
    pub rejected: Vec<Rejection>,
    /// Whether the answer queued for the server is an ACK.
    pub acked: bool,
}

/// One type's state on a client stream.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientTypeStatus {
    /// The type URL.
    pub type_url: String,
    /// Whether the client wants every resource of the type.
    pub wildcard: bool,
    /// Names wanted explicitly.
    pub names: Vec<String>,
    /// The last accepted (ACKed) version.
    pub version: String,
    /// The latest response nonce.
    pub nonce: String,
    /// How many resources are held.
    pub resources: usize,
    /// The reasons of the last NACK sent, if any.
    pub last_nack: Option<String>,
    /// When the last response of this type arrived (the `now` given to
    /// [`ClientStream::handle_response`]).
    pub received_at: Option<Instant>,
}

/// Client-side state of one type.
#[derive(Clone, Debug)]
struct ClientType {
    type_url: String,
    rule: TypeRule,
    wanted: Subscription,
    /// What the server was told (delta: to compute diffs).
    announced: Subscription,
    /// Names went out on this stream: an empty SotW list now means nothing.
    names_sent: bool,
    /// The first request went out on this stream.
    started: bool,
    nonce: String,
    version: String,
    resources: ResourceMap,
    /// SotW only: valid resources of the latest response that the client no
    /// longer wants but the server may still think it does (its
    /// unsubscription may have been ignored as stale). Re-subscribing takes
    /// them from here, since the server will not resend what it believes the
    /// client has.
    shadow: BTreeMap<String, AcceptedResource>,
    request_due: bool,
    /// The subscription shrank since resources were last dropped: only
    /// then can an accepted resource be uncovered (saves a scan of every
    /// resource on each request).
    shrunk: bool,
    error: Option<super::Status>,
    last_nack: Option<String>,
    received_at: Option<Instant>,
}

impl ClientType {
    fn new(type_url: &str, rule: TypeRule) -> Self {
        Self {
            type_url: type_url.to_owned(),
            rule,
            wanted: Subscription::default(),
            announced: Subscription::default(),
            names_sent: false,
            started: false,
            nonce: String::new(),
            version: String::new(),
            resources: ResourceMap::default(),
            shadow: BTreeMap::new(),
            request_due: false,
            shrunk: false,
            error: None,
            last_nack: None,
            received_at: None,
        }
    }

    /// Whether a received resource is kept: the client wants it, or the
    /// server may still think so (an unsubscription not yet sent, after
    /// which it is dropped).
    fn tracks(&self, name: &str) -> bool {
        self.wanted.covers(name) || self.announced.covers(name)
    }

    /// Drops resources the subscription no longer covers (into the shadow
    /// in state of the world).
    fn forget_uncovered(&mut self, variant: Variant) {
        if !std::mem::take(&mut self.shrunk) {
            return;
        }
        let uncovered: Vec<String> = self
            .resources
            .iter()
            .map(|(n, _)| n)
            .filter(|n| !self.wanted.covers(n))
            .map(str::to_owned)
            .collect();
        for name in uncovered {
            if let Some(r) = self.resources.remove(&name)
                && variant == Variant::Sotw
            {
                self.shadow.insert(name, r);
            }
        }
    }

    /// Takes back shadowed resources the subscription covers again.
    fn restore_covered(&mut self) {
        let covered: Vec<String> = self
            .shadow
            .keys()
            .filter(|n| self.wanted.covers(n))
            .cloned()
            .collect();
        for name in covered {
            if let Some(r) = self.shadow.remove(&name) {
                self.resources.insert(r);
            }
        }
    }
}

/// The client side of one xDS stream: subscriptions, accepted state,
/// ACK/NACK, reconnection. Plain state: the shell sends what
/// [`Self::poll_request`] returns and feeds responses to
/// [`Self::handle_response`]; after a new stream is opened it calls
/// [`Self::reconnect`], which keeps subscriptions and accepted resources.
///
/// # Protocol choices
/// - Partial acceptance (as in gRPC's xDS client): valid resources of a
///   response are applied even when others are rejected; the rejected keep
///   their last accepted version, and the response is NACKed
///   (`INVALID_ARGUMENT`, every reason in the message). The reported
///   version stays at the last fully accepted one.
/// - A response that cannot be applied resource by resource (duplicate
///   names, an unnameable SotW payload, a payload of another type, a delta
///   name both updated and removed) is NACKed whole and changes nothing.
/// - State of the world: in full-state types a subscribed resource missing
///   from a response is deleted; a resource's version is the version of the
///   response that carried it. The wildcard alone is sent as the legacy empty
///   list on a stream's first request, `*` otherwise.
/// - Resources for names the client does not (or no longer) subscribe to
///   are ignored, except while an unsubscription has not been sent yet.
///   Unsubscribed resources are dropped when the change is sent.
/// - Each request carries everything due for its type at once: the ACK or
///   NACK and the subscription change.
#[derive(Clone, Debug)]
pub struct ClientStream {
    variant: Variant,
    kind: StreamKind,
    config: ClientConfig,
    node: Option<Node>,
    node_sent: bool,
    types: BTreeMap<String, ClientType>,
}

impl ClientStream {
    /// A client stream identifying itself as `node` on its first request.
    pub fn new(
        variant: Variant,
        kind: StreamKind,
        node: Option<Node>,
        config: ClientConfig,
    ) -> Self {
        Self {
            variant,
            kind,
            config,
            node,
            node_sent: false,
            types: BTreeMap::new(),
        }
    }

    /// The protocol variant.
    pub fn variant(&self) -> Variant {
        self.variant
    }

    fn check_type(&self, type_url: &str) -> Result<(), ProtocolError> {
        match &self.kind {
            StreamKind::Single(t) if t != type_url => Err(ProtocolError::TypeMismatch {
                expected: t.clone(),
                got: type_url.to_owned(),
            }),
            _ => Ok(()),
        }
    }

    fn entry(&mut self, type_url: &str) -> Result<&mut ClientType, ProtocolError> {
        self.check_type(type_url)?;
        let rule = self.config.types.rule(type_url);
        Ok(self
            .types
            .entry(type_url.to_owned())
            .or_insert_with(|| ClientType::new(type_url, rule)))
    }

    /// Subscribes to resources by name (names already wanted are no-ops).
    ///
    /// # Errors
    /// [`ProtocolError::TypeMismatch`] on a per-type stream for another type.
    pub fn subscribe<I, S>(&mut self, type_url: &str, names: I) -> Result<(), ProtocolError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let t = self.entry(type_url)?;
        for name in names {
            let name = name.into();
            if name == WILDCARD {
                t.request_due |= !t.wanted.wildcard;
                t.wanted.wildcard = true;
            } else if t.wanted.names.insert(name) {
                t.request_due = true;
            }
        }
        t.restore_covered();
        Ok(())
    }

    /// Subscribes to every resource of a type.
    ///
    /// # Errors
    /// [`ProtocolError::TypeMismatch`] on a per-type stream for another type.
    pub fn subscribe_wildcard(&mut self, type_url: &str) -> Result<(), ProtocolError> {
        self.subscribe(type_url, [WILDCARD])
    }

    /// Unsubscribes names (never-subscribed names are ignored). Resources no
    /// longer covered are dropped when the change is sent (so an unsubscribe
    /// undone before then loses nothing). Returns how many names were
    /// subscribed.
    ///
    /// # Errors
    /// [`ProtocolError::TypeMismatch`] on a per-type stream for another type.
    pub fn unsubscribe<I, S>(&mut self, type_url: &str, names: I) -> Result<usize, ProtocolError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.check_type(type_url)?;
        let Some(t) = self.types.get_mut(type_url) else {
            return Ok(0);
        };
        let mut count = 0;
        for name in names {
            let name = name.into();
            if name == WILDCARD {
                if t.wanted.wildcard {
                    t.wanted.wildcard = false;
                    count += 1;
                }
            } else if t.wanted.names.remove(&name) {
                count += 1;
            }
        }
        if count > 0 {
            t.request_due = true;
            t.shrunk = true;
        }
        Ok(count)
    }

    /// Drops the wildcard subscription of a type (explicit names stay).
    ///
    /// # Errors
    /// [`ProtocolError::TypeMismatch`] on a per-type stream for another type.
    pub fn unsubscribe_wildcard(&mut self, type_url: &str) -> Result<usize, ProtocolError> {
        self.unsubscribe(type_url, [WILDCARD])
    }

    /// Starts over on a new stream: the next requests are initial ones
    /// (with the node, the current subscriptions, the last accepted version
    /// in state of the world and `initial_resource_versions` in delta).
    /// Subscriptions and accepted resources are kept.
    pub fn reconnect(&mut self) {
        self.node_sent = false;
        for t in self.types.values_mut() {
            t.announced = Subscription::default();
            t.names_sent = false;
            t.started = false;
            t.nonce.clear();
            t.error = None;
            t.forget_uncovered(self.variant);
            t.shadow.clear();
            t.request_due = !t.wanted.is_empty();
        }
    }

    /// The next request to send, if any (one per type with something to
    /// say: a subscription change, an ACK or a NACK), in make order.
    pub fn poll_request(&mut self) -> Option<Request> {
        // The due type first in make-before-break order, each turn (this
        // runs after every response: no list of them is built).
        loop {
            let t = self
                .types
                .values_mut()
                .filter(|t| t.request_due)
                .min_by(|a, b| {
                    (a.rule.make_rank, &a.type_url).cmp(&(b.rule.make_rank, &b.type_url))
                })?;
            t.request_due = false;
            if !t.started && t.wanted.is_empty() && t.nonce.is_empty() {
                // Nothing to ask for, nothing to answer: an empty first
                // request would read as the legacy wildcard.
                t.forget_uncovered(self.variant);
                continue;
            }
            let node = if self.node_sent {
                None
            } else {
                self.node.clone()
            };
            let request = match self.variant {
                Variant::Sotw => Request::Sotw(sotw_request(t, node)),
                Variant::Delta => Request::Delta(delta_request(t, node)),
            };
            t.started = true;
            t.forget_uncovered(self.variant);
            self.node_sent = true;
            return Some(request);
        }
    }

    /// Handles one response: names and validates its resources through
    /// `validator`, applies what is acceptable, and queues the ACK or NACK.
    ///
    /// # Errors
    /// [`ProtocolError::WrongVariant`], [`ProtocolError::TypeMismatch`] or
    /// [`ProtocolError::UnexpectedType`]; nothing is changed then. Bad
    /// resources are not errors: they are NACKed (see [`ClientEvent`]).
    pub fn handle_response(
        &mut self,
        response: impl Into<Response>,
        now: Instant,
        validator: &mut dyn Validator,
    ) -> Result<ClientEvent, ProtocolError> {
        let response = response.into();
        if response.variant() != self.variant {
            return Err(ProtocolError::WrongVariant {
                expected: self.variant,
            });
        }
        let type_url = match (&self.kind, response.type_url()) {
            (StreamKind::Single(t), "") => t.as_str(),
            (_, url) => url,
        };
        self.check_type(type_url)?;
        let Some(t) = self.types.get_mut(type_url) else {
            return Err(ProtocolError::UnexpectedType {
                type_url: type_url.to_owned(),
            });
        };
        t.received_at = Some(now);
        Ok(match response {
            Response::Sotw(r) => apply::sotw(t, r, validator),
            Response::Delta(r) => apply::delta(t, r, validator),
        })
    }

    /// The accepted resources of a type, by name.
    pub fn resources<'a>(
        &'a self,
        type_url: &str,
    ) -> impl Iterator<Item = (&'a str, &'a AcceptedResource)> + 'a {
        self.types
            .get(type_url)
            .into_iter()
            .flat_map(|t| t.resources.iter())
    }

    /// The accepted resources of a type as a map that shares its entries
    /// with the client (O(1); empty for an unknown type).
    pub fn resource_map(&self, type_url: &str) -> ResourceMap {
        self.types
            .get(type_url)
            .map(|t| t.resources.clone())
            .unwrap_or_default()
    }

    /// One accepted resource.
    pub fn resource(&self, type_url: &str, name: &str) -> Option<&AcceptedResource> {
        self.types.get(type_url)?.resources.get(name)
    }

    /// Whether the subscription of a type covers `name`.
    pub fn is_subscribed(&self, type_url: &str, name: &str) -> bool {
        self.types
            .get(type_url)
            .is_some_and(|t| t.wanted.covers(name))
    }

    /// Per-type status, by type URL.
    pub fn status(&self) -> Vec<ClientTypeStatus> {
        let mut status = Vec::new();
        self.status_into(&mut status);
        status
    }

    /// [`Self::status`] written over `out`, reusing its strings: a shell
    /// refreshes its published status after every response.
    pub(crate) fn status_into(&self, out: &mut Vec<ClientTypeStatus>) {
        out.truncate(self.types.len());
        for (i, t) in self.types.values().enumerate() {
            let Some(s) = out.get_mut(i) else {
                out.push(ClientTypeStatus {
                    type_url: t.type_url.clone(),
                    wildcard: t.wanted.wildcard,
                    names: t.wanted.names.iter().cloned().collect(),
                    version: t.version.clone(),
                    nonce: t.nonce.clone(),
                    resources: t.resources.len(),
                    last_nack: t.last_nack.clone(),
                    received_at: t.received_at,
                });
                continue;
            };
            s.type_url.clone_from(&t.type_url);
            s.wildcard = t.wanted.wildcard;
            if !s.names.iter().eq(t.wanted.names.iter()) {
                s.names.clear();
                s.names.extend(t.wanted.names.iter().cloned());
            }
            s.version.clone_from(&t.version);
            s.nonce.clone_from(&t.nonce);
            s.resources = t.resources.len();
            s.last_nack.clone_from(&t.last_nack);
            s.received_at = t.received_at;
        }
    }
}

/// The names a SotW request lists: the legacy empty list for a wildcard-only
/// first subscription, else `*` plus explicit names.
fn sotw_names(t: &ClientType) -> Vec<String> {
    if t.wanted.wildcard && t.wanted.names.is_empty() && !t.names_sent {
        return Vec::new();
    }
    let star = t.wanted.wildcard.then(|| WILDCARD.to_owned());
    star.into_iter()
        .chain(t.wanted.names.iter().cloned())
        .collect()
}

fn sotw_request(t: &mut ClientType, node: Option<Node>) -> DiscoveryRequest {
    let resource_names = sotw_names(t);
    t.names_sent |= !resource_names.is_empty();
    t.announced = t.wanted.clone();
    DiscoveryRequest {
        version_info: t.version.clone(),
        node,
        resource_names,
        type_url: t.type_url.clone(),
        response_nonce: t.nonce.clone(),
        error_detail: t.error.take(),
        ..Default::default()
    }
}

fn delta_request(t: &mut ClientType, node: Option<Node>) -> DeltaDiscoveryRequest {
    let mut request = DeltaDiscoveryRequest {
        node,
        type_url: t.type_url.clone(),
        response_nonce: t.nonce.clone(),
        error_detail: t.error.take(),
        ..Default::default()
    };
    if !t.started {
        let legacy = t.wanted.wildcard && t.wanted.names.is_empty();
        if !legacy {
            let star = t.wanted.wildcard.then(|| WILDCARD.to_owned());
            request.resource_names_subscribe = star
                .into_iter()
                .chain(t.wanted.names.iter().cloned())
                .collect();
        }
        request.initial_resource_versions = t
            .resources
            .iter()
            .map(|(n, r)| (n.to_owned(), r.version().to_owned()))
            .collect();
    } else {
        let (old, new) = (&t.announced, &t.wanted);
        if new.wildcard && !old.wildcard {
            request.resource_names_subscribe.push(WILDCARD.to_owned());
        }
        if old.wildcard && !new.wildcard {
            request.resource_names_unsubscribe.push(WILDCARD.to_owned());
        }
        request
            .resource_names_subscribe
            .extend(new.names.difference(&old.names).cloned());
        request
            .resource_names_unsubscribe
            .extend(old.names.difference(&new.names).cloned());
    }
    t.announced = t.wanted.clone();
    request
}

#[cfg(test)]
mod tests {
    use super::{ClientConfig, ClientStream, ClientTypeStatus};
    use crate::protocol::{StreamKind, Variant, type_url};

    /// `status_into` over whatever a snapshot held before gives exactly
    /// what `status` builds from nothing, as types come and names change.
    #[test]
    fn status_written_in_place_equals_status_built_fresh() {
        let mut client = ClientStream::new(
            Variant::Delta,
            StreamKind::Aggregated,
            None,
            ClientConfig::default(),
        );
        let stale = ClientTypeStatus {
            type_url: "stale".into(),
            wildcard: true,
            names: vec!["x".into(), "y".into()],
            version: "v9".into(),
            nonce: "n9".into(),
            resources: 7,
            last_nack: Some("old".into()),
            received_at: Some(std::time::Instant::now()),
        };
        let mut published = vec![stale.clone(), stale.clone(), stale];
        let mut check = |client: &ClientStream| {
            client.status_into(&mut published);
            assert_eq!(published, client.status());
        };
        check(&client);
        client
            .subscribe(type_url::CLUSTER, ["a", "b"])
            .expect("aggregated streams take every type");
        check(&client);
        client
            .subscribe_wildcard(type_url::ADDRESS)
            .expect("aggregated streams take every type");
        client
            .subscribe(type_url::LISTENER, ["l"])
            .expect("aggregated streams take every type");
        check(&client);
        client
            .unsubscribe(type_url::CLUSTER, ["a"])
            .expect("aggregated streams take every type");
        check(&client);
        assert_eq!(published.len(), 3);
        assert_eq!(published[0].names, vec!["b".to_owned()]);
    }
}
