//! The tonic server shell: a shared store, and per stream a response stream
//! the transport polls, which drives that stream's protocol core.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use std::task::{Context, Poll};

use tokio::sync::watch;
use tokio_stream::wrappers::WatchStream;
use tokio_stream::{Stream, StreamExt};

use crate::protocol::{
    Any, DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
    ProtocolError, Request, ResourceStore, Response, ServerConfig, ServerStream, StreamKind,
    TypeStatus, Variant,
};

/// Default gRPC message size limit of the shells: 64 MiB. tonic's own
/// default (4 MiB) is too small for a full delta push on reconnect.
pub const DEFAULT_GRPC_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// Default push debounce window: 50 ms.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(50);

/// Settings of an [`XdsServer`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct XdsServerConfig {
    /// Settings of each stream's protocol core. Its `max_message_size` is
    /// replaced by [`Self::max_message_size`].
    pub stream: ServerConfig,
    /// Changes arriving within this window after the first one are pushed
    /// together: a stream waits this long after the store changes before it
    /// computes its responses. Zero pushes at once.
    pub debounce: Duration,
    /// gRPC message size limit, both directions (default
    /// [`DEFAULT_GRPC_MESSAGE_SIZE`]).
    pub max_message_size: usize,
}

impl Default for XdsServerConfig {
    fn default() -> Self {
        Self {
            stream: ServerConfig::default(),
            debounce: DEFAULT_DEBOUNCE,
            max_message_size: DEFAULT_GRPC_MESSAGE_SIZE,
        }
    }
}

/// The status of one connected stream.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ClientStatus {
    /// The server-assigned stream id (also the prefix of its nonces).
    pub stream_id: u64,
    /// The node id from the stream's first request (empty if none).
    pub node_id: String,
    /// State of the world or delta.
    pub variant: Variant,
    /// Per type: subscription, last ACKed version, last NACK with its
    /// message, and counters.
    pub types: Vec<TypeStatus>,
    /// Responses sent on this stream.
    pub responses: u64,
    /// Resources carried by the responses sent on this stream (updates,
    /// not removals): what a push cost, unlike [`TypeStatus::resources_sent`]
    /// (what the client holds).
    pub resources_pushed: u64,
    /// The last protocol error the stream reported, if any.
    pub last_error: Option<String>,
}

#[derive(Debug)]
struct Shared {
    store: RwLock<ResourceStore>,
    generation: watch::Sender<u64>,
    clients: Mutex<BTreeMap<u64, Arc<Mutex<StreamState>>>>,
    next_stream: AtomicU64,
    config: XdsServerConfig,
}

/// An xDS management server: a shared [`ResourceStore`] served over ADS,
/// state-of-the-world and delta, to any number of streams.
///
/// Each stream drives a [`ServerStream`] as the transport polls it: requests
/// are handled as they arrive; store changes wake every stream, which waits
/// [`XdsServerConfig::debounce`] to coalesce a burst, then pushes only what
/// changed for its subscriptions. Cloning is cheap and shares the store.
#[derive(Clone, Debug)]
pub struct XdsServer {
    shared: Arc<Shared>,
}

impl Default for XdsServer {
    fn default() -> Self {
        Self::new(XdsServerConfig::default())
    }
}

impl XdsServer {
    /// A server with an empty store.
    pub fn new(config: XdsServerConfig) -> Self {
        Self::with_store(ResourceStore::new(), config)
    }

    /// A server over an existing store.
    pub fn with_store(store: ResourceStore, mut config: XdsServerConfig) -> Self {
        config.stream.max_message_size = config.max_message_size;
        let (generation, _) = watch::channel(store.generation());
        // Stream ids seed the nonces; start them from the clock (microseconds) so nonces of
        // an earlier server process are not reused.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| u64::try_from(d.as_micros()).unwrap_or(1));
        Self {
            shared: Arc::new(Shared {
                store: RwLock::new(store),
                generation,
                clients: Mutex::new(BTreeMap::new()),
                next_stream: AtomicU64::new(seed),
                config,
            }),
        }
    }

    /// Inserts or replaces resources of one type (content-hash versions) and
    /// wakes the streams. Returns whether anything changed.
    ///
    /// # Errors
    /// [`ProtocolError::InvalidResource`] for a bad name or a payload of
    /// another type; resources before it are applied.
    pub fn update<I>(&self, type_url: &str, resources: I) -> Result<bool, ProtocolError>
    where
        I: IntoIterator<Item = (String, Any)>,
    {
        self.mutate(|store| {
            let mut changed = false;
            for (name, any) in resources {
                changed |= store.insert(type_url, &name, any)?;
            }
            Ok(changed)
        })
    }

    /// Removes resources of one type by name and wakes the streams. Returns
    /// how many existed.
    pub fn remove<I, S>(&self, type_url: &str, names: I) -> usize
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.mutate(|store| {
            Ok::<_, ProtocolError>(
                names
                    .into_iter()
                    .filter(|n| store.remove(type_url, n.as_ref()))
                    .count(),
            )
        })
        .unwrap_or(0)
    }

    /// Makes `resources` the complete set of one type (see
    /// [`ResourceStore::replace_all`]).
    ///
    /// # Errors
    /// As [`ResourceStore::replace_all`]; nothing changes then.
    pub fn replace_all<I>(&self, type_url: &str, resources: I) -> Result<bool, ProtocolError>
    where
        I: IntoIterator<Item = (String, Any)>,
    {
        self.mutate(|store| store.replace_all(type_url, resources))
    }

    /// Runs `f` on the store under its lock, then wakes the streams if the
    /// generation moved.
    ///
    /// # Errors
    /// Whatever `f` returns.
    pub fn mutate<T, E>(&self, f: impl FnOnce(&mut ResourceStore) -> Result<T, E>) -> Result<T, E> {
        let (result, generation) = {
            let mut store = self
                .shared
                .store
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let r = f(&mut store);
            (r, store.generation())
        };
        self.shared.generation.send_if_modified(|g| {
            let moved = *g != generation;
            *g = generation;
            moved
        });
        result
    }

    /// Answers one state-of-the-world request from the store's current
    /// content (the per-type services' unary `Fetch*` methods).
    pub(super) fn fetch(
        &self,
        type_url: &str,
        request: DiscoveryRequest,
    ) -> Result<DiscoveryResponse, tonic::Status> {
        let id = self.shared.next_stream.fetch_add(1, Ordering::Relaxed);
        let mut core = ServerStream::new(
            Variant::Sotw,
            StreamKind::Single(type_url.to_owned()),
            self.shared.config.stream.clone(),
            id,
        );
        let now = Instant::now();
        core.handle_request(request, now)
            .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
        let store = self
            .shared
            .store
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        match core.poll_response(&store, now) {
            Ok(Some(r)) => r
                .into_sotw()
                .ok_or_else(|| tonic::Status::internal("not a state-of-the-world response")),
            Ok(None) => Err(tonic::Status::not_found("nothing to send")),
            Err(e) => Err(tonic::Status::resource_exhausted(e.to_string())),
        }
    }

    /// The message size limit of the gRPC services.
    pub(super) fn max_message_size(&self) -> usize {
        self.shared.config.max_message_size
    }

    /// Reads the store.
    pub fn with_store_read<T>(&self, f: impl FnOnce(&ResourceStore) -> T) -> T {
        f(&self
            .shared
            .store
            .read()
            .unwrap_or_else(PoisonError::into_inner))
    }

    /// Every connected stream's status, by stream id (streams that have
    /// sent at least one request). Computed on call: the streams publish
    /// nothing per response, so a fan-out to many clients does not pay for
    /// status nobody reads.
    pub fn status(&self) -> Vec<ClientStatus> {
        let streams: Vec<Arc<Mutex<StreamState>>> = self
            .shared
            .clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        streams
            .iter()
            .filter_map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).status())
            .collect()
    }

    /// The tonic service (ADS, both variants) with the configured message
    /// size limits, ready for `tonic::transport::Server::add_service`.
    pub fn ads_service(&self) -> AggregatedDiscoveryServiceServer<XdsServer> {
        let limit = self.shared.config.max_message_size;
        AggregatedDiscoveryServiceServer::new(self.clone())
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit)
    }

    /// Opens one stream: the returned stream of responses drives the
    /// protocol core itself (requests are read and pushes computed while the
    /// transport polls it), with no task or channel in between.
    pub(super) fn open_stream<S>(
        &self,
        variant: Variant,
        kind: StreamKind,
        inbound: S,
    ) -> ResponseStream
    where
        S: Stream<Item = Result<Request, tonic::Status>> + Send + Unpin + 'static,
    {
        let id = self.shared.next_stream.fetch_add(1, Ordering::Relaxed);
        let core = ServerStream::new(variant, kind, self.shared.config.stream.clone(), id);
        let state = Arc::new(Mutex::new(StreamState {
            core,
            id,
            requests: 0,
            last_error: None,
            pushed: 0,
            closed: false,
        }));
        self.shared
            .clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, state.clone());
        if let Some(timeout) = self.shared.config.stream.ack_timeout {
            tokio::spawn(watch_acks(
                self.shared.clone(),
                Arc::downgrade(&state),
                id,
                timeout,
            ));
        }
        ResponseStream {
            changes: WatchStream::from_changes(self.shared.generation.subscribe()),
            shared: self.shared.clone(),
            state,
            id,
            inbound: Box::pin(inbound),
            push_at: None,
            ack_timer: None,
            more: false,
            ended: false,
        }
    }
}

/// What a stream, its ACK watcher and [`XdsServer::status`] share.
#[derive(Debug)]
struct StreamState {
    core: ServerStream,
    id: u64,
    requests: u64,
    last_error: Option<String>,
    pushed: u64,
    /// An ACK timed out: the stream ends at its next poll.
    closed: bool,
}

impl StreamState {
    /// Checks the ACK deadlines; on a timeout records it and closes the
    /// stream. Returns whether the stream is closed.
    fn check_acks(&mut self, now: Instant) -> bool {
        if let Err(e) = self.core.handle_timeout(now) {
            self.last_error = Some(e.to_string());
            self.closed = true;
        }
        self.closed
    }

    fn status(&self) -> Option<ClientStatus> {
        if self.requests == 0 {
            return None;
        }
        let types = self.core.status();
        Some(ClientStatus {
            stream_id: self.id,
            node_id: self.core.node().map(|n| n.id.clone()).unwrap_or_default(),
            variant: self.core.variant(),
            responses: types.iter().map(|t| t.responses).sum(),
            resources_pushed: self.pushed,
            types,
            last_error: self.last_error.clone(),
        })
    }
}

type Inbound = Pin<Box<dyn Stream<Item = Result<Request, tonic::Status>> + Send>>;

/// The responses of one stream, computed as the transport asks for them: a
/// poll reads the requests that arrived, notices store changes and asks the
/// core for what is due, with no task, channel or per-response future in
/// between. Dropping it (the stream ended or the transport dropped it)
/// unregisters the stream.
pub(super) struct ResponseStream {
    shared: Arc<Shared>,
    state: Arc<Mutex<StreamState>>,
    id: u64,
    inbound: Inbound,
    /// Yields when the store's generation moves.
    changes: WatchStream<u64>,
    /// The debounce timer, armed by the first change of a burst.
    push_at: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The ACK deadline timer (only with an ACK timeout), kept across polls
    /// and reset when the deadline moves.
    ack_timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The core may have a response due: ask it before waiting.
    more: bool,
    /// The stream is over: every later poll ends it.
    ended: bool,
}

impl Drop for ResponseStream {
    fn drop(&mut self) {
        self.shared
            .clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

impl ResponseStream {
    fn state(&self) -> std::sync::MutexGuard<'_, StreamState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks the core for the next response due now. One at a time: each goes
    /// to the transport before the next is built, so a delta push in steps
    /// is built while the client applies the step before.
    fn fill(&mut self) -> Option<Response> {
        let store = self
            .shared
            .store
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match st.core.poll_response(&store, Instant::now()) {
            Ok(Some(resp)) => {
                let carried = match &resp {
                    Response::Sotw(r) => r.resources.len(),
                    Response::Delta(r) => r.resources.len(),
                };
                st.pushed += carried as u64;
                // Store changes wake the stream through `changes`: ask again
                // only for work the core already holds.
                self.more = st.core.may_have_more();
                Some(resp)
            }
            Ok(None) => {
                self.more = false;
                None
            }
            // Reported once; the core may go on.
            Err(e) => {
                st.last_error = Some(e.to_string());
                self.more = true;
                None
            }
        }
    }

    /// Polls the ACK deadline, if the core has one: whether it passed. The
    /// timer is allocated once and reset as the deadline moves.
    fn poll_ack_deadline(&mut self, cx: &mut Context<'_>) -> bool {
        if self.shared.config.stream.ack_timeout.is_none() {
            return false;
        }
        let Some(deadline) = self.state().core.poll_timeout() else {
            return false;
        };
        let at = tokio::time::Instant::from_std(deadline);
        let sleep = match &mut self.ack_timer {
            Some(sleep) => {
                if sleep.deadline() != at {
                    sleep.as_mut().reset(at);
                }
                sleep
            }
            None => self
                .ack_timer
                .insert(Box::pin(tokio::time::sleep_until(at))),
        };
        sleep.as_mut().poll(cx).is_ready()
    }

    /// Ends the stream: it leaves the status view at once (not when the
    /// transport drops it) and lets go of its timers and request stream's
    /// buffers; every later poll ends it again.
    fn end(&mut self) -> Poll<Option<Response>> {
        if !self.ended {
            self.ended = true;
            self.push_at = None;
            self.ack_timer = None;
            self.inbound = Box::pin(tokio_stream::empty());
            self.shared
                .clients
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&self.id);
        }
        Poll::Ready(None)
    }
}

impl Stream for ResponseStream {
    type Item = Response;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Response>> {
        let this = &mut *self;
        let debounce = this.shared.config.debounce;
        loop {
            if this.ended || this.state().closed {
                return this.end();
            }
            if this.more {
                if let Some(response) = this.fill() {
                    return Poll::Ready(Some(response));
                }
                continue;
            }
            match this.inbound.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(req))) => {
                    let mut st = this.state();
                    st.requests += 1;
                    if let Err(e) = st.core.handle_request(req, Instant::now()) {
                        st.last_error = Some(e.to_string());
                    }
                    drop(st);
                    this.more = true;
                    continue;
                }
                // The client left, or its stream broke.
                Poll::Ready(_) => return this.end(),
                Poll::Pending => {}
            }
            match Pin::new(&mut this.changes).poll_next(cx) {
                Poll::Ready(Some(_)) => {
                    if debounce.is_zero() {
                        // No timer round trip when pushes are not debounced.
                        this.more = true;
                    } else if this.push_at.is_none() {
                        this.push_at = Some(Box::pin(tokio::time::sleep(debounce)));
                    }
                    continue;
                }
                // The server is gone.
                Poll::Ready(None) => return this.end(),
                Poll::Pending => {}
            }
            if let Some(sleep) = this.push_at.as_mut()
                && sleep.as_mut().poll(cx).is_ready()
            {
                this.push_at = None;
                this.more = true;
                continue;
            }
            if this.poll_ack_deadline(cx) {
                if this.state().check_acks(Instant::now()) {
                    return this.end();
                }
                continue;
            }
            return Poll::Pending;
        }
    }
}

/// ACK deadlines of one stream, watched from a task of their own: the
/// response stream only runs while the transport polls it, and a transport
/// waiting for send window (a client that stopped reading) never does. On a
/// timeout the stream leaves the status view and ends at its next poll.
async fn watch_acks(
    shared: Arc<Shared>,
    state: std::sync::Weak<Mutex<StreamState>>,
    id: u64,
    timeout: Duration,
) {
    loop {
        let deadline = {
            let Some(state) = state.upgrade() else {
                return;
            };
            let st = state.lock().unwrap_or_else(PoisonError::into_inner);
            if st.closed {
                return;
            }
            st.core.poll_timeout()
        };
        match deadline {
            Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
            // Nothing awaits an ACK: look again within the timeout.
            None => tokio::time::sleep(timeout).await,
        }
        let Some(state) = state.upgrade() else {
            return;
        };
        let closed = state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .check_acks(Instant::now());
        if closed {
            shared
                .clients
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
            return;
        }
    }
}

pub(super) type BoxStream<T> =
    Pin<Box<dyn Stream<Item = Result<T, tonic::Status>> + Send + 'static>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for XdsServer {
    type StreamAggregatedResourcesStream = BoxStream<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = BoxStream<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        request: tonic::Request<tonic::Streaming<DiscoveryRequest>>,
    ) -> Result<tonic::Response<Self::StreamAggregatedResourcesStream>, tonic::Status> {
        let inbound = request.into_inner().map(|r| r.map(Request::Sotw));
        let responses = self.open_stream(Variant::Sotw, StreamKind::Aggregated, inbound);
        let out = responses.filter_map(|r| r.into_sotw().map(Ok));
        Ok(tonic::Response::new(Box::pin(out)))
    }

    async fn delta_aggregated_resources(
        &self,
        request: tonic::Request<tonic::Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<tonic::Response<Self::DeltaAggregatedResourcesStream>, tonic::Status> {
        let inbound = request.into_inner().map(|r| r.map(Request::Delta));
        let responses = self.open_stream(Variant::Delta, StreamKind::Aggregated, inbound);
        let out = responses.filter_map(|r| r.into_delta().map(Ok));
        Ok(tonic::Response::new(Box::pin(out)))
    }
}
