//! The tonic client shell: one ADS stream, reconnected with backoff.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::pin::Pin;
use std::time::{Duration, Instant};

use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Endpoint;

use super::server::DEFAULT_GRPC_MESSAGE_SIZE;
use crate::protocol::{
    AcceptedResource, Any, ClientConfig, ClientEvent, ClientStream, ClientTypeStatus,
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse, Node,
    Request, ResourceMap, Response, StreamKind, Validator, Variant, WILDCARD,
};
use crate::resource::{Resource, decode_any};

/// Default HTTP/2 stream receive window of an [`XdsClient`]: 4 MiB (hyper's
/// client starts at 2 MiB), room for a few of a server's 1 MiB delta steps
/// and for single resources up to that size without waiting for window
/// updates.
pub const DEFAULT_STREAM_WINDOW: u32 = 4 * 1024 * 1024;

/// Default HTTP/2 connection receive window of an [`XdsClient`]: 8 MiB
/// (hyper's client starts at 5 MiB).
pub const DEFAULT_CONNECTION_WINDOW: u32 = 8 * 1024 * 1024;

/// Judges received resources of one type for an [`XdsClient`].
pub trait ResourceHandler: Send + 'static {
    /// The name of a state-of-the-world resource (delta names it on the
    /// wire). The default reads field 1 as a string, where Envoy's
    /// resources (and Istio's `Authorization`) keep their names.
    ///
    /// # Errors
    /// A reason when the payload cannot be named; the response is NACKed.
    fn resource_name(&mut self, resource: &Any) -> Result<String, String> {
        name_from_field_1(resource)
    }

    /// Checks one resource; `Err(reason)` rejects it: the client NACKs with
    /// the reason and keeps the last accepted version.
    ///
    /// # Errors
    /// The reason the resource is unacceptable.
    fn validate(&mut self, name: &str, resource: &Any) -> Result<(), String>;
}

/// A payload's field 1, as a string.
#[derive(Clone, PartialEq, prost::Message)]
struct NameOnly {
    #[prost(string, tag = "1")]
    name: String,
}

fn name_from_field_1(resource: &Any) -> Result<String, String> {
    NameOnly::decode(resource.value.as_slice())
        .map(|n| n.name)
        .map_err(|e| format!("cannot read the resource name: {e}"))
}

/// Accepts anything that names itself in field 1.
struct AcceptAll;

impl ResourceHandler for AcceptAll {
    fn validate(&mut self, _name: &str, _resource: &Any) -> Result<(), String> {
        Ok(())
    }
}

/// Decodes into `R` (its domain validation included), then asks `F`.
struct Typed<R, F> {
    check: F,
    _resource: PhantomData<fn() -> R>,
}

impl<R, F> ResourceHandler for Typed<R, F>
where
    R: Resource + 'static,
    F: FnMut(&R) -> Result<(), String> + Send + 'static,
{
    fn resource_name(&mut self, resource: &Any) -> Result<String, String> {
        let r: R = decode_any(resource).map_err(|e| e.to_string())?;
        Ok(r.name().into_owned())
    }

    fn validate(&mut self, _name: &str, resource: &Any) -> Result<(), String> {
        let r: R = decode_any(resource).map_err(|e| e.to_string())?;
        (self.check)(&r)
    }
}

/// Type URL → handler; the core's [`Validator`].
#[derive(Default)]
struct Handlers(BTreeMap<String, Box<dyn ResourceHandler>>);

impl Validator for Handlers {
    fn resource_name(&mut self, type_url: &str, resource: &Any) -> Result<String, String> {
        match self.0.get_mut(type_url) {
            Some(h) => h.resource_name(resource),
            // Istio's Address is a oneof: its name is inside.
            None if type_url == crate::protocol::type_url::ADDRESS => {
                decode_any::<crate::Address>(resource)
                    .map(|a| a.name().into_owned())
                    .map_err(|e| e.to_string())
            }
            None => AcceptAll.resource_name(resource),
        }
    }

    fn validate(&mut self, type_url: &str, name: &str, resource: &Any) -> Result<(), String> {
        match self.0.get_mut(type_url) {
            Some(h) => h.validate(name, resource),
            None => Ok(()),
        }
    }
}

/// Reconnection delays: `initial`, multiplied by `multiplier` after each
/// failed attempt, capped at `max`; back to `initial` once a stream got a
/// response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Backoff {
    /// The first delay.
    pub initial: Duration,
    /// The largest delay.
    pub max: Duration,
    /// Growth factor per failed attempt.
    pub multiplier: u32,
}

impl Backoff {
    /// A backoff from `initial` to `max`, doubling.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            multiplier: 2,
        }
    }
}

impl Default for Backoff {
    /// 100 ms doubling up to 30 s.
    fn default() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(30))
    }
}

/// What an [`XdsClient`] has accepted, published after every change.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ClientSnapshot {
    /// Whether a stream is open.
    pub connected: bool,
    /// How many streams were opened so far.
    pub streams: u64,
    /// Accepted resources: type URL → name → resource. The maps share
    /// their entries with the client and with earlier snapshots.
    pub resources: BTreeMap<String, ResourceMap>,
    /// Per-type status (version, nonce, last NACK).
    pub status: Vec<ClientTypeStatus>,
    /// The last response's outcome.
    pub last_event: Option<ClientEvent>,
    /// When the last response's outcome was published (set together with
    /// `last_event`): how long a change took to reach this client.
    pub updated_at: Option<Instant>,
}

impl ClientSnapshot {
    /// One accepted resource.
    pub fn get(&self, type_url: &str, name: &str) -> Option<&AcceptedResource> {
        self.resources.get(type_url)?.get(name)
    }

    /// How many resources of a type are accepted.
    pub fn len(&self, type_url: &str) -> usize {
        self.resources.get(type_url).map_or(0, |m| m.len())
    }
}

/// The client was shut down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the xDS client task has stopped")]
pub struct ClientClosed;

/// The per-type xDS services (the gRPC service of each type URL that has
/// one): state-of-the-world and delta methods.
fn per_type_service(type_url: &str) -> Option<(&'static str, &'static str, &'static str)> {
    use crate::protocol::type_url as t;
    Some(match type_url {
        t::CLUSTER => (
            "envoy.service.cluster.v3.ClusterDiscoveryService",
            "StreamClusters",
            "DeltaClusters",
        ),
        t::ENDPOINT => (
            "envoy.service.endpoint.v3.EndpointDiscoveryService",
            "StreamEndpoints",
            "DeltaEndpoints",
        ),
        t::LISTENER => (
            "envoy.service.listener.v3.ListenerDiscoveryService",
            "StreamListeners",
            "DeltaListeners",
        ),
        t::ROUTE => (
            "envoy.service.route.v3.RouteDiscoveryService",
            "StreamRoutes",
            "DeltaRoutes",
        ),
        _ => return None,
    })
}

/// The gRPC method a client stream opens.
fn method_path(kind: &StreamKind, variant: Variant) -> Option<PathAndQuery> {
    let (service, sotw, delta) = match kind {
        StreamKind::Aggregated => (
            "envoy.service.discovery.v3.AggregatedDiscoveryService",
            "StreamAggregatedResources",
            "DeltaAggregatedResources",
        ),
        StreamKind::Single(t) => per_type_service(t)?,
    };
    let method = match variant {
        Variant::Sotw => sotw,
        Variant::Delta => delta,
    };
    PathAndQuery::try_from(format!("/{service}/{method}")).ok()
}

/// [`XdsClientBuilder::per_type`] for a type without a per-type service.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no per-type xDS service carries {type_url:?} (use ADS)")]
pub struct NoPerTypeService {
    /// The type URL asked for.
    pub type_url: String,
}

enum Command {
    Subscribe(String, Vec<String>),
    Unsubscribe(String, Vec<String>),
}

/// Builds an [`XdsClient`].
pub struct XdsClientBuilder {
    endpoint: Endpoint,
    variant: Variant,
    kind: StreamKind,
    node: Option<Node>,
    handlers: Handlers,
    subscriptions: Vec<(String, Vec<String>)>,
    backoff: Backoff,
    max_message_size: usize,
    config: ClientConfig,
}

impl std::fmt::Debug for XdsClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdsClientBuilder")
            .field("endpoint", &self.endpoint.uri())
            .field("variant", &self.variant)
            .field("kind", &self.kind)
            .field("handlers", &self.handlers.0.keys().collect::<Vec<_>>())
            .field("subscriptions", &self.subscriptions)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

impl XdsClientBuilder {
    /// The node the client identifies as.
    pub fn node(mut self, node: Node) -> Self {
        self.node = Some(node);
        self
    }

    /// Speaks a per-type service (`StreamClusters` / `DeltaClusters` for
    /// CDS, and the EDS, LDS and RDS ones) instead of ADS: one stream for
    /// `type_url` alone, as an Envoy bootstrap without ADS does.
    /// Subscriptions to other types are ignored on such a client.
    ///
    /// # Errors
    /// [`NoPerTypeService`] for a type no per-type service carries (Istio's
    /// WDS types are served over ADS only).
    pub fn per_type(mut self, type_url: &str) -> Result<Self, NoPerTypeService> {
        if per_type_service(type_url).is_none() {
            return Err(NoPerTypeService {
                type_url: type_url.to_owned(),
            });
        }
        self.kind = StreamKind::Single(type_url.to_owned());
        Ok(self)
    }

    /// Subscribes to names of a type from the start (`*` for all).
    pub fn subscribe<I, S>(mut self, type_url: &str, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.subscriptions.push((
            type_url.to_owned(),
            names.into_iter().map(Into::into).collect(),
        ));
        self
    }

    /// Subscribes to every resource of a type from the start.
    pub fn subscribe_wildcard(self, type_url: &str) -> Self {
        self.subscribe(type_url, [WILDCARD])
    }

    /// Sets the handler of one type URL (resources of types without one are
    /// accepted as they are).
    pub fn handler(mut self, type_url: &str, handler: impl ResourceHandler) -> Self {
        self.handlers
            .0
            .insert(type_url.to_owned(), Box::new(handler));
        self
    }

    /// A typed handler: each resource of `R::TYPE_URL` is decoded and
    /// validated as `R`, then passed to `check`; a decoding error or
    /// `Err(reason)` rejects it.
    pub fn on<R, F>(self, check: F) -> Self
    where
        R: Resource + 'static,
        F: FnMut(&R) -> Result<(), String> + Send + 'static,
    {
        self.handler(
            R::TYPE_URL,
            Typed::<R, F> {
                check,
                _resource: PhantomData,
            },
        )
    }

    /// Reconnection delays (default [`Backoff::default`]).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// HTTP/2 receive windows of the stream and of the connection, in
    /// bytes (defaults [`DEFAULT_STREAM_WINDOW`] and
    /// [`DEFAULT_CONNECTION_WINDOW`]).
    pub fn windows(mut self, stream: u32, connection: u32) -> Self {
        self.endpoint = self
            .endpoint
            .initial_stream_window_size(stream)
            .initial_connection_window_size(connection);
        self
    }

    /// gRPC message size limit, both directions (default 64 MiB).
    pub fn max_message_size(mut self, limit: usize) -> Self {
        self.max_message_size = limit;
        self
    }

    /// Protocol settings of the client core.
    pub fn config(mut self, config: ClientConfig) -> Self {
        self.config = config;
        self
    }

    /// Starts the client task on the current tokio runtime. It connects,
    /// and reconnects with backoff, until the [`XdsClient`] is dropped.
    pub fn start(self) -> XdsClient {
        let mut core = ClientStream::new(self.variant, self.kind.clone(), self.node, self.config);
        for (type_url, names) in self.subscriptions {
            // Aggregated streams accept every type; a per-type stream
            // refuses others, which are documented as ignored.
            let _ = core.subscribe(&type_url, names);
        }
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (state_tx, state) = watch::channel(ClientSnapshot::default());
        let task = Task {
            endpoint: self.endpoint,
            variant: self.variant,
            kind: self.kind,
            core,
            handlers: self.handlers,
            backoff: self.backoff,
            max_message_size: self.max_message_size,
            commands: command_rx,
            state: state_tx,
        };
        let task = tokio::spawn(task.run());
        XdsClient {
            commands,
            state,
            task,
        }
    }
}

/// An xDS client over ADS (state of the world or delta): subscriptions that
/// can change while connected, handlers that accept or reject resources
/// (a rejection is NACKed with its reason and the last good version is
/// kept), and reconnection with backoff that resumes with the accepted
/// versions (`initial_resource_versions` in delta). Dropping it stops the
/// task.
#[derive(Debug)]
pub struct XdsClient {
    commands: mpsc::UnboundedSender<Command>,
    state: watch::Receiver<ClientSnapshot>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for XdsClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl XdsClient {
    /// A builder for a client of the server at `endpoint`.
    ///
    /// The endpoint's HTTP/2 receive windows are set to
    /// [`DEFAULT_STREAM_WINDOW`] and [`DEFAULT_CONNECTION_WINDOW`]
    /// (replacing any set on `endpoint`); [`XdsClientBuilder::windows`] sets
    /// others.
    pub fn builder(endpoint: Endpoint, variant: Variant) -> XdsClientBuilder {
        XdsClientBuilder {
            kind: StreamKind::Aggregated,
            endpoint: endpoint
                .initial_stream_window_size(DEFAULT_STREAM_WINDOW)
                .initial_connection_window_size(DEFAULT_CONNECTION_WINDOW),
            variant,
            node: None,
            handlers: Handlers::default(),
            subscriptions: Vec::new(),
            backoff: Backoff::default(),
            max_message_size: DEFAULT_GRPC_MESSAGE_SIZE,
            config: ClientConfig::default(),
        }
    }

    /// Subscribes to more names of a type (`*` for all), now.
    ///
    /// # Errors
    /// [`ClientClosed`] when the task has stopped.
    pub fn subscribe<I, S>(&self, type_url: &str, names: I) -> Result<(), ClientClosed>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let names = names.into_iter().map(Into::into).collect();
        self.commands
            .send(Command::Subscribe(type_url.to_owned(), names))
            .map_err(|_| ClientClosed)
    }

    /// Unsubscribes names of a type (`*` drops the wildcard); their
    /// resources are dropped.
    ///
    /// # Errors
    /// [`ClientClosed`] when the task has stopped.
    pub fn unsubscribe<I, S>(&self, type_url: &str, names: I) -> Result<(), ClientClosed>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let names = names.into_iter().map(Into::into).collect();
        self.commands
            .send(Command::Unsubscribe(type_url.to_owned(), names))
            .map_err(|_| ClientClosed)
    }

    /// A receiver of every published snapshot.
    pub fn watch(&self) -> watch::Receiver<ClientSnapshot> {
        self.state.clone()
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> ClientSnapshot {
        self.state.borrow().clone()
    }
}

type Inbound = Pin<Box<dyn Stream<Item = Result<Response, tonic::Status>> + Send>>;

enum Ended {
    Shutdown,
    Disconnected { got_response: bool },
}

struct Task {
    endpoint: Endpoint,
    variant: Variant,
    kind: StreamKind,
    core: ClientStream,
    handlers: Handlers,
    backoff: Backoff,
    max_message_size: usize,
    commands: mpsc::UnboundedReceiver<Command>,
    state: watch::Sender<ClientSnapshot>,
}

impl Task {
    async fn run(mut self) {
        let mut delay = self.backoff.initial;
        let mut first = true;
        loop {
            if !first {
                self.core.reconnect();
            }
            first = false;
            match self.session().await {
                Ended::Shutdown => return,
                Ended::Disconnected { got_response } => {
                    if got_response {
                        delay = self.backoff.initial;
                    }
                }
            }
            self.state.send_modify(|s| s.connected = false);
            let wake = tokio::time::sleep(delay);
            tokio::pin!(wake);
            delay = delay
                .saturating_mul(self.backoff.multiplier.max(1))
                .min(self.backoff.max);
            loop {
                tokio::select! {
                    () = &mut wake => break,
                    cmd = self.commands.recv() => match cmd {
                        Some(cmd) => self.apply(cmd),
                        None => return,
                    },
                }
            }
        }
    }

    fn apply(&mut self, cmd: Command) {
        // Aggregated streams accept every type: these cannot fail.
        match cmd {
            Command::Subscribe(t, names) => {
                let _ = self.core.subscribe(&t, names);
            }
            Command::Unsubscribe(t, names) => {
                let _ = self.core.unsubscribe(&t, names);
            }
        }
    }

    async fn session(&mut self) -> Ended {
        let Ok(channel) = self.endpoint.connect().await else {
            return Ended::Disconnected {
                got_response: false,
            };
        };
        let Some(path) = method_path(&self.kind, self.variant) else {
            return Ended::Shutdown;
        };
        let mut grpc = tonic::client::Grpc::new(channel)
            .max_decoding_message_size(self.max_message_size)
            .max_encoding_message_size(self.max_message_size);
        if grpc.ready().await.is_err() {
            return Ended::Disconnected {
                got_response: false,
            };
        }
        let (tx, rx) = mpsc::unbounded_channel::<Request>();
        self.flush(&tx);
        let outbound = UnboundedReceiverStream::new(rx);
        let opened: Result<Inbound, tonic::Status> = match self.variant {
            Variant::Sotw => {
                let codec =
                    tonic_prost::ProstCodec::<DiscoveryRequest, DiscoveryResponse>::default();
                let requests = tonic::Request::new(outbound.filter_map(Request::into_sotw));
                grpc.streaming(requests, path, codec)
                    .await
                    .map(|r| Box::pin(r.into_inner().map(|m| m.map(Response::Sotw))) as Inbound)
            }
            Variant::Delta => {
                let codec =
                    tonic_prost::ProstCodec::<DeltaDiscoveryRequest, DeltaDiscoveryResponse>::default();
                let requests = tonic::Request::new(outbound.filter_map(Request::into_delta));
                grpc.streaming(requests, path, codec)
                    .await
                    .map(|r| Box::pin(r.into_inner().map(|m| m.map(Response::Delta))) as Inbound)
            }
        };
        let Ok(mut inbound) = opened else {
            return Ended::Disconnected {
                got_response: false,
            };
        };
        self.state.send_modify(|s| {
            s.connected = true;
            s.streams += 1;
        });
        let mut got_response = false;
        loop {
            tokio::select! {
                msg = inbound.next() => match msg {
                    Some(Ok(resp)) => {
                        got_response = true;
                        // An error (a type never subscribed, a wrong
                        // variant) leaves nothing to apply or answer.
                        let handled =
                            self.core.handle_response(resp, Instant::now(), &mut self.handlers);
                        if let Ok(event) = handled {
                            self.flush(&tx);
                            self.publish(Some(event));
                        }
                    }
                    _ => return Ended::Disconnected { got_response },
                },
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => {
                        self.apply(cmd);
                        self.flush(&tx);
                        self.publish(None);
                    }
                    None => return Ended::Shutdown,
                },
            }
        }
    }

    fn flush(&mut self, tx: &mpsc::UnboundedSender<Request>) {
        while let Some(req) = self.core.poll_request() {
            if tx.send(req).is_err() {
                return;
            }
        }
    }

    /// Publishes the accepted state: the event's type (every type after a
    /// subscription change) as an O(1) clone of the core's persistent map,
    /// so a publish costs the same for ten resources or a million. The
    /// status is written over the last one's strings.
    fn publish(&self, event: Option<ClientEvent>) {
        let core = &self.core;
        self.state.send_modify(|s| {
            core.status_into(&mut s.status);
            let mut refresh = |type_url: &str| match s.resources.get_mut(type_url) {
                Some(map) => *map = core.resource_map(type_url),
                None => {
                    s.resources
                        .insert(type_url.to_owned(), core.resource_map(type_url));
                }
            };
            match &event {
                Some(e) => refresh(&e.type_url),
                None => s.status.iter().for_each(|t| refresh(&t.type_url)),
            }
            if event.is_some() {
                s.last_event = event;
                s.updated_at = Some(Instant::now());
            }
        });
    }
}
