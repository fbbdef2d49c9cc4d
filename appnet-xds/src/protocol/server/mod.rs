//! The server side of one xDS stream.

mod state;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use state::TypeState;

use super::subscription::Diff;
use super::{
    DeltaDiscoveryRequest, DiscoveryRequest, Node, ProtocolError, Request, ResourceStore, Response,
    Status, TypeTable, Variant, WILDCARD,
};

/// Default maximum encoded response size: 4 MiB, gRPC's default limit.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;

/// Default [`ServerConfig::delta_chunk_size`]: 1 MiB.
pub const DEFAULT_DELTA_CHUNK_SIZE: usize = 1024 * 1024;

/// Default [`ServerConfig::delta_steps_in_flight`]: 2.
pub const DEFAULT_DELTA_STEPS_IN_FLIGHT: usize = 2;

/// Settings for server streams.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Largest encoded response the stream may produce. Delta responses are
    /// split to fit (the rest follows in further steps); a state-of-the-world
    /// response cannot be split and is refused with
    /// [`ProtocolError::MessageTooLarge`], as is a single delta resource
    /// larger than the limit.
    pub max_message_size: usize,
    /// Target size of one delta response: resources are packed up to this
    /// many encoded bytes (a single larger resource still goes alone, up to
    /// `max_message_size`), and the rest follows in further steps. Small
    /// responses bound the client's transient memory while it applies a
    /// large initial state (a 33 MB push arrives as ~1 MiB steps, never as
    /// one 33 MB message decoded in one piece).
    pub delta_chunk_size: usize,
    /// How many steps of one delta push may be un-acknowledged at once
    /// (at least 1). With 1 each step waits for the previous step's ACK,
    /// and server and client take turns; with 2 the next step may go while
    /// the client applies the last (the tonic server builds it then). Only
    /// the steps of a push that did not fit one response overlap, within
    /// one phase (updates, then removals); changes arriving during the push
    /// join its remaining steps, and any other change still waits for the
    /// type's ACKs and goes out coalesced. The ACK timeout of a step sent
    /// early runs from the answer to the step before it.
    pub delta_steps_in_flight: usize,
    /// Per-type rules: full-state types and ADS ordering.
    pub types: TypeTable,
    /// Refuse a stream whose first request carries no node.
    pub require_node: bool,
    /// How long a response may stay un-acknowledged before
    /// [`ServerStream::handle_timeout`] reports it (`None`: forever).
    pub ack_timeout: Option<Duration>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            delta_chunk_size: DEFAULT_DELTA_CHUNK_SIZE,
            delta_steps_in_flight: DEFAULT_DELTA_STEPS_IN_FLIGHT,
            types: TypeTable::default(),
            require_node: false,
            ack_timeout: None,
        }
    }
}

/// What a stream carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamKind {
    /// Aggregated discovery (ADS): any number of types on one stream, which
    /// the server orders make-before-break.
    Aggregated,
    /// A per-type service (`StreamClusters`, `DeltaListeners`, ...) for this
    /// type URL; requests may leave `type_url` empty.
    Single(String),
}

/// A response sent and not yet answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outstanding {
    /// Its nonce.
    pub nonce: String,
    /// Its version (`version_info` or `system_version_info`).
    pub version: String,
    /// When it was produced.
    pub sent_at: Instant,
}

/// An acknowledged response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acked {
    /// The version the client accepted.
    pub version: String,
    /// The nonce of the acknowledged response.
    pub nonce: String,
    /// When the ACK arrived.
    pub at: Instant,
}

/// A rejected response (the request carried `error_detail`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nack {
    /// The nonce of the rejected response.
    pub nonce: String,
    /// The version the server sent and the client rejected.
    pub rejected_version: String,
    /// The version the client reports it still runs (its last accepted).
    pub client_version: String,
    /// `error_detail.code`.
    pub code: i32,
    /// `error_detail.message`: the client's reasons.
    pub message: String,
    /// When the NACK arrived.
    pub at: Instant,
}

/// How a request relates to the responses sent so far.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AckState {
    /// No response of this type was answered: an initial request, or one
    /// sent before any response arrived.
    Initial,
    /// The request acknowledged a response in flight: the latest, or (delta)
    /// a step of a push, which answers the steps before it too.
    Acked(Acked),
    /// The request rejected a response in flight, as for [`Self::Acked`].
    /// The server will not send the same content again; it sends again when
    /// a resource changes.
    Nacked(Nack),
    /// The request names the latest nonce, which was already answered: a
    /// pure subscription change.
    Repeat,
    /// The request names an older nonce. In state of the world the whole
    /// request is ignored (a newer response is on its way); in delta only
    /// its ACK/NACK is, and subscription changes still apply.
    Stale {
        /// The stale nonce.
        nonce: String,
    },
}

/// What a request changed in the subscription.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscriptionChange {
    /// Names newly subscribed.
    pub added: Vec<String>,
    /// Names unsubscribed.
    pub removed: Vec<String>,
    /// The new wildcard flag, if it changed.
    pub wildcard: Option<bool>,
    /// Names the client unsubscribed without ever having subscribed: a no-op.
    pub not_subscribed: Vec<String>,
}

/// The result of handling one request.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestOutcome {
    /// The request's type (filled in on per-type streams).
    pub type_url: String,
    /// ACK, NACK, initial or stale.
    pub ack: AckState,
    /// Subscription changes applied.
    pub subscription: SubscriptionChange,
}

/// One type's state on a stream, for status pages and logs.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TypeStatus {
    /// The type URL.
    pub type_url: String,
    /// Whether the client subscribes to every resource of the type.
    pub wildcard: bool,
    /// Names subscribed explicitly.
    pub names: Vec<String>,
    /// The last acknowledged response.
    pub acked: Option<Acked>,
    /// The last rejected response.
    pub last_nack: Option<Nack>,
    /// The oldest response waiting for an ACK or NACK.
    pub outstanding: Option<Outstanding>,
    /// Responses sent for this type.
    pub responses: u64,
    /// Resources the client was last sent (by name).
    pub resources_sent: usize,
}

/// The server side of one xDS stream (state of the world or delta; ADS or
/// per-type), as a plain state machine.
///
/// The shell calls [`Self::handle_request`] for each request received and
/// [`Self::poll_response`] (against the same [`ResourceStore`] each time)
/// whenever a request arrived or the store's generation moved, sending each
/// response it returns until it returns `Ok(None)`.
///
/// Per type, at most one response is outstanding: further changes wait for
/// its ACK or NACK and are then sent coalesced, so a client that never
/// answers costs one pending response, not a queue. The exception is a
/// delta push too large for one response: up to
/// [`ServerConfig::delta_steps_in_flight`] of its steps may be
/// un-acknowledged at once, each ACK answering its own step and those sent
/// before it. A rejected (NACKed)
/// content is never re-sent; the next change is. Across types (ADS), updates
/// go out make-before-break: in [`TypeTable`] order (CDS → EDS → LDS → RDS by
/// default), and removals only after every pending update, referrers first.
/// The order is strict: while a type waits for its ACK, nothing behind it
/// is sent (a type with endless churn can therefore delay removals).
///
/// # Protocol choices
/// - State of the world: every response carries the whole subscribed set,
///   for every type; its `version_info` is a hash of the (name, version)
///   pairs, so equal sets have equal versions. For full-state types
///   ([`TypeTable`]) a resource removed from the store is kept in the
///   update-phase response and dropped in the removal phase; for other
///   types removals cannot be expressed (absence means "unchanged").
/// - Delta: `system_version_info` is the store generation; removed
///   resources and explicitly subscribed names that do not exist go in
///   `removed_resources` (each "does not exist" once);
///   `initial_resource_versions` (first request of a type only) seeds what
///   the client has, so unchanged resources are not resent.
/// - The first request of each type is always answered, even with an empty
///   response (Envoy waits for it). Names a request newly subscribes are
///   (re)sent, even ones the client was sent before.
/// - Nonces: a request naming a nonce other than the latest one (or, in
///   delta, than one of the steps still in flight) is stale. In state of
///   the world it is ignored whole; in delta only its ACK/NACK is. Before
///   any response of a type was sent, any nonce is accepted.
/// - The node is taken from the stream's first request only.
/// - Unsubscribed resources are forgotten when the request arrives; one the
///   client unsubscribes while a response carrying it is in flight is
///   settled when that response is answered (the client may have taken it
///   if it subscribed again meanwhile).
/// - `xdstp://` resource locators and dynamic parameters are not
///   interpreted.
///
/// # Example: a server and a client stream wired together in memory
/// ```
/// use std::time::Instant;
/// use appnet_xds::{
///     Any, ClientConfig, ClientStream, ResourceStore, ServerConfig, ServerStream, StreamKind,
///     Validator, Variant, type_url,
/// };
///
/// /// Accepts everything (a real one decodes and checks the payload).
/// struct AcceptAll;
/// impl Validator for AcceptAll {
///     fn resource_name(&mut self, _: &str, _: &Any) -> Result<String, String> {
///         Err("only needed for state of the world".into())
///     }
///     fn validate(&mut self, _: &str, _: &str, _: &Any) -> Result<(), String> {
///         Ok(())
///     }
/// }
///
/// let mut store = ResourceStore::new();
/// let payload = Any { type_url: type_url::CLUSTER.into(), value: vec![10, 3, b'w', b'e', b'b'] };
/// store.insert(type_url::CLUSTER, "web", payload)?;
///
/// let now = Instant::now();
/// let kind = StreamKind::Aggregated;
/// let mut server = ServerStream::new(Variant::Delta, kind.clone(), ServerConfig::default(), 1);
/// let mut client = ClientStream::new(Variant::Delta, kind, None, ClientConfig::default());
/// client.subscribe_wildcard(type_url::CLUSTER)?;
///
/// // What a shell does with its gRPC stream, minus the network:
/// while let Some(request) = client.poll_request() {
///     server.handle_request(request, now)?;
/// }
/// while let Some(response) = server.poll_response(&store, now)? {
///     let event = client.handle_response(response, now, &mut AcceptAll)?;
///     assert!(event.acked);
///     let ack = client.poll_request().expect("an ACK");
///     server.handle_request(ack, now)?;
/// }
/// assert!(client.resource(type_url::CLUSTER, "web").is_some());
/// assert!(server.type_status(type_url::CLUSTER).unwrap().acked.is_some());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct ServerStream {
    variant: Variant,
    kind: StreamKind,
    config: ServerConfig,
    stream_id: u64,
    nonces: u64,
    node: Option<Node>,
    first_seen: bool,
    types: BTreeMap<String, TypeState>,
    errors: Vec<ProtocolError>,
}

impl ServerStream {
    /// A new stream. `stream_id` makes its nonces unique across the server's
    /// streams (nonces are `<stream_id in hex>-<counter>`), so a nonce from
    /// an earlier connection is never mistaken for a current one.
    pub fn new(variant: Variant, kind: StreamKind, config: ServerConfig, stream_id: u64) -> Self {
        Self {
            variant,
            kind,
            config,
            stream_id,
            nonces: 0,
            node: None,
            first_seen: false,
            types: BTreeMap::new(),
            errors: Vec::new(),
        }
    }

    /// The protocol variant.
    pub fn variant(&self) -> Variant {
        self.variant
    }

    /// ADS or per-type.
    pub fn kind(&self) -> &StreamKind {
        &self.kind
    }

    /// The node from the stream's first request; later ones are ignored.
    pub fn node(&self) -> Option<&Node> {
        self.node.as_ref()
    }

    /// Handles one request.
    ///
    /// # Errors
    /// [`ProtocolError::WrongVariant`], [`ProtocolError::MissingTypeUrl`],
    /// [`ProtocolError::TypeMismatch`] or [`ProtocolError::MissingNode`]; the
    /// request is then ignored and the stream's state is unchanged.
    pub fn handle_request(
        &mut self,
        request: impl Into<Request>,
        now: Instant,
    ) -> Result<RequestOutcome, ProtocolError> {
        match (request.into(), self.variant) {
            (Request::Sotw(r), Variant::Sotw) => self.handle_sotw(r, now),
            (Request::Delta(r), Variant::Delta) => self.handle_delta(r, now),
            _ => Err(ProtocolError::WrongVariant {
                expected: self.variant,
            }),
        }
    }

    fn resolve_type(&self, type_url: &str) -> Result<String, ProtocolError> {
        match &self.kind {
            StreamKind::Aggregated if type_url.is_empty() => Err(ProtocolError::MissingTypeUrl),
            StreamKind::Aggregated => Ok(type_url.to_owned()),
            StreamKind::Single(t) if type_url.is_empty() || type_url == t => Ok(t.clone()),
            StreamKind::Single(t) => Err(ProtocolError::TypeMismatch {
                expected: t.clone(),
                got: type_url.to_owned(),
            }),
        }
    }

    fn take_node(&mut self, node: Option<Node>) -> Result<(), ProtocolError> {
        if self.first_seen {
            return Ok(());
        }
        if node.is_none() && self.config.require_node {
            return Err(ProtocolError::MissingNode);
        }
        self.first_seen = true;
        self.node = node;
        Ok(())
    }

    fn type_state(&mut self, type_url: &str) -> &mut TypeState {
        // Every request (each ACK) comes here: the type's rule is looked up
        // only for its first.
        let rules = &self.config.types;
        self.types
            .entry(type_url.to_owned())
            .or_insert_with(|| TypeState::new(type_url.to_owned(), rules.rule(type_url)))
    }

    fn handle_sotw(
        &mut self,
        req: DiscoveryRequest,
        now: Instant,
    ) -> Result<RequestOutcome, ProtocolError> {
        let type_url = self.resolve_type(&req.type_url)?;
        self.take_node(req.node)?;
        let t = self.type_state(&type_url);
        if is_stale(t, &req.response_nonce) {
            return Ok(RequestOutcome {
                type_url,
                ack: AckState::Stale {
                    nonce: req.response_nonce,
                },
                subscription: SubscriptionChange::default(),
            });
        }
        t.requests += 1;
        let ack = resolve(
            t,
            &req.response_nonce,
            &req.version_info,
            req.error_detail,
            now,
        );
        let before = t.uncertain_covered();
        let diff = t.sub.apply_sotw(&req.resource_names);
        t.note_diff(&diff, &diff.added, Variant::Sotw);
        if matches!(ack, AckState::Acked(_) | AckState::Nacked(_)) {
            t.settle_uncertain(&before);
        }
        if t.requests == 1 {
            t.must_respond = true;
        }
        Ok(outcome(type_url, ack, diff, t.sub.wildcard))
    }

    fn handle_delta(
        &mut self,
        req: DeltaDiscoveryRequest,
        now: Instant,
    ) -> Result<RequestOutcome, ProtocolError> {
        let type_url = self.resolve_type(&req.type_url)?;
        self.take_node(req.node)?;
        let t = self.type_state(&type_url);
        let first = t.requests == 0;
        t.requests += 1;
        let ack = if is_stale(t, &req.response_nonce) {
            AckState::Stale {
                nonce: req.response_nonce,
            }
        } else {
            resolve(t, &req.response_nonce, "", req.error_detail, now)
        };
        // Every name subscribed is (re)sent, even one the wildcard already
        // covered: the client may have dropped it while its view of the
        // subscription and ours differed.
        let newly: Vec<String> = req
            .resource_names_subscribe
            .iter()
            .filter(|n| n.as_str() != WILDCARD)
            .cloned()
            .collect();
        let before = t.uncertain_covered();
        let diff = t.sub.apply_delta(
            &req.resource_names_subscribe,
            &req.resource_names_unsubscribe,
            first,
        );
        t.note_diff(&diff, &newly, Variant::Delta);
        if matches!(ack, AckState::Acked(_) | AckState::Nacked(_)) {
            t.settle_uncertain(&before);
        }
        if first {
            let initial = req.initial_resource_versions.into_iter().collect();
            t.note_initial_versions(&initial);
            t.must_respond = true;
        }
        Ok(outcome(type_url, ack, diff, t.sub.wildcard))
    }

    /// The next response to send, if any, computed from `store` (which must
    /// be the same store on every call).
    ///
    /// # Errors
    /// [`ProtocolError::MessageTooLarge`] once for content that cannot be
    /// sent within [`ServerConfig::max_message_size`]; that content is
    /// skipped until it changes, and polling may continue.
    pub fn poll_response(
        &mut self,
        store: &ResourceStore,
        now: Instant,
    ) -> Result<Option<Response>, ProtocolError> {
        // Each round either sends, reports, or marks unsendable content
        // done, so this terminates well within the bound.
        for _ in 0..=2 * self.types.len() + 2 {
            if let Some(e) = self.errors.pop() {
                return Err(e);
            }
            let Some((at, removal_phase)) = self.next_due(store) else {
                return Ok(None);
            };
            self.nonces += 1;
            let nonce = make_nonce(self.stream_id, self.nonces);
            let limit = self.config.max_message_size;
            let Some(t) = self.types.values_mut().nth(at) else {
                return Ok(None);
            };
            match self.variant {
                Variant::Sotw => {
                    return t
                        .build_sotw(store, removal_phase, nonce, limit, now)
                        .map(|r| Some(Response::Sotw(r)));
                }
                Variant::Delta => {
                    let limits = (self.config.delta_chunk_size.min(limit), limit);
                    let built =
                        t.build_delta(store, removal_phase, nonce, limits, now, &mut self.errors);
                    if let Some(r) = built {
                        return Ok(Some(Response::Delta(r)));
                    }
                }
            }
        }
        Ok(None)
    }

    /// The type whose response goes next (its place in `self.types`), and
    /// whether it is a removal phase; `None` when nothing is due or the next
    /// in order waits for its ACK (nothing overtakes it).
    fn next_due(&mut self, store: &ResourceStore) -> Option<(usize, bool)> {
        // One pass: settle each type and keep the first in make order with
        // updates and the first in break order with removals, by reference
        // (this runs on every request and push).
        let variant = self.variant;
        let steps = self.config.delta_steps_in_flight;
        fn make_key(t: &TypeState) -> (u32, &str) {
            (t.rule.make_rank, &t.type_url)
        }
        fn break_key(t: &TypeState) -> (u32, &str) {
            (t.rule.break_rank, &t.type_url)
        }
        let mut make: Option<(usize, &TypeState)> = None;
        let mut removal: Option<(usize, &TypeState)> = None;
        for (i, t) in self.types.values_mut().enumerate() {
            if t.requests == 0 {
                continue;
            }
            let work = t.settle(store, variant);
            let t = &*t;
            if work.make && make.is_none_or(|(_, m)| make_key(t) < make_key(m)) {
                make = Some((i, t));
            }
            if work.removal && removal.is_none_or(|(_, r)| break_key(t) < break_key(r)) {
                removal = Some((i, t));
            }
        }
        let pick = make
            .map(|(i, t)| (i, t, false))
            .or(removal.map(|(i, t)| (i, t, true)));
        match pick {
            Some((i, t, removal)) if may_send(t, removal, variant, steps) => Some((i, removal)),
            _ => None,
        }
    }

    /// Whether [`Self::poll_response`] may have more to give before the
    /// store changes again or a request arrives: an error to report, or a
    /// type with work it already knows of (the rest of a push in steps,
    /// removals after updates). A shell that is told of every store change
    /// may skip asking when this is `false`.
    pub(crate) fn may_have_more(&self) -> bool {
        !self.errors.is_empty() || self.types.values().any(TypeState::has_known_work)
    }

    /// When [`Self::handle_timeout`] should next be called (the earliest
    /// ACK deadline), if an ACK timeout is configured and a response waits.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timeout = self.config.ack_timeout?;
        self.types
            .values()
            .filter_map(|t| t.ack_deadline(timeout))
            .min()
    }

    /// Checks ACK deadlines. The stream's state is not changed.
    ///
    /// # Errors
    /// [`ProtocolError::AckTimeout`] for a response un-acknowledged past
    /// [`ServerConfig::ack_timeout`]; the shell should close the stream.
    pub fn handle_timeout(&self, now: Instant) -> Result<(), ProtocolError> {
        let Some(timeout) = self.config.ack_timeout else {
            return Ok(());
        };
        for t in self.types.values() {
            if let (Some(o), Some(deadline)) = (t.oldest_in_flight(), t.ack_deadline(timeout))
                && now >= deadline
            {
                return Err(ProtocolError::AckTimeout {
                    type_url: t.type_url.clone(),
                    nonce: o.nonce.clone(),
                    timeout,
                });
            }
        }
        Ok(())
    }

    /// Per-type status, by type URL.
    pub fn status(&self) -> Vec<TypeStatus> {
        self.types
            .values()
            .map(|t| TypeStatus {
                type_url: t.type_url.clone(),
                wildcard: t.sub.wildcard,
                names: t.sub.names.iter().cloned().collect(),
                acked: t.acked.clone(),
                last_nack: t.last_nack.clone(),
                outstanding: t.oldest_in_flight().cloned(),
                responses: t.responses,
                resources_sent: t.sent.values().filter(|v| v.is_some()).count(),
            })
            .collect()
    }

    /// The status of one type, if the client ever asked for it.
    pub fn type_status(&self, type_url: &str) -> Option<TypeStatus> {
        self.status().into_iter().find(|s| s.type_url == type_url)
    }
}

/// A response nonce, `{stream:x}-{n}`: unique per stream and across the
/// server's streams. Written digit by digit, as `format!` costs several
/// times more and this runs for every response.
fn make_nonce(stream: u64, n: u64) -> String {
    let mut nonce = String::with_capacity(24);
    push_digits(&mut nonce, stream, 16);
    nonce.push('-');
    push_digits(&mut nonce, n, 10);
    nonce
}

/// Appends `v` in base `radix` (at most 16), most significant digit first.
fn push_digits(out: &mut String, mut v: u64, radix: u64) {
    let mut unit = 1;
    while v / unit >= radix {
        unit *= radix;
    }
    loop {
        let digit = u32::try_from(v / unit).unwrap_or(0);
        out.push(char::from_digit(digit, radix as u32).unwrap_or('0'));
        v %= unit;
        if unit == 1 {
            return;
        }
        unit /= radix;
    }
}

/// Whether `t` may send now (in the removal phase or not): when nothing of
/// it is in flight, or, in delta, for the next step of a push in the same
/// phase while fewer than `steps` are.
fn may_send(t: &TypeState, removal: bool, variant: Variant, steps: usize) -> bool {
    let limit = match variant {
        Variant::Delta if t.continuing == Some(removal) => steps.max(1),
        _ => 1,
    };
    t.in_flight.len() < limit
}

/// A non-empty nonce that is neither the latest sent for the type nor one
/// still in flight. Before any response was sent every nonce is accepted (a
/// client may carry one over from an earlier connection).
fn is_stale(t: &TypeState, nonce: &str) -> bool {
    match &t.latest_nonce {
        Some(latest) => !nonce.is_empty() && nonce != latest && !t.is_in_flight(nonce),
        None => false,
    }
}

fn resolve(
    t: &mut TypeState,
    nonce: &str,
    client_version: &str,
    error: Option<Status>,
    now: Instant,
) -> AckState {
    if nonce.is_empty() || t.latest_nonce.is_none() {
        return AckState::Initial;
    }
    let Some(sent) = t.answered(nonce, now) else {
        return AckState::Repeat;
    };
    match error {
        Some(status) => {
            let nack = Nack {
                nonce: sent.nonce,
                rejected_version: sent.version,
                client_version: client_version.to_owned(),
                code: status.code,
                message: status.message,
                at: now,
            };
            t.last_nack = Some(nack.clone());
            AckState::Nacked(nack)
        }
        None => {
            // Kept in the buffers of the last ACK: one per response.
            match &mut t.acked {
                Some(last) => {
                    last.version.clone_from(&sent.version);
                    last.nonce.clone_from(&sent.nonce);
                    last.at = now;
                }
                none => {
                    *none = Some(Acked {
                        version: sent.version.clone(),
                        nonce: sent.nonce.clone(),
                        at: now,
                    });
                }
            }
            AckState::Acked(Acked {
                version: sent.version,
                nonce: sent.nonce,
                at: now,
            })
        }
    }
}

fn outcome(type_url: String, ack: AckState, diff: Diff, wildcard_now: bool) -> RequestOutcome {
    RequestOutcome {
        type_url,
        ack,
        subscription: SubscriptionChange {
            added: diff.added,
            removed: diff.removed,
            wildcard: diff.wildcard_changed.then_some(wildcard_now),
            not_subscribed: diff.not_subscribed,
        },
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::make_nonce;

    #[test]
    fn nonces_at_the_edges_read_as_format_writes_them() {
        for (stream, n) in [(0, 0), (1, 9), (15, 10), (16, 99), (u64::MAX, u64::MAX)] {
            assert_eq!(make_nonce(stream, n), format!("{stream:x}-{n}"));
        }
    }

    proptest! {
        #[test]
        fn nonces_read_as_format_writes_them(stream: u64, n: u64) {
            prop_assert_eq!(make_nonce(stream, n), format!("{stream:x}-{n}"));
        }
    }
}
