//! An in-memory harness in the manner of quinn's `Pair`: one server store,
//! any number of (server stream, client stream) connections with message
//! queues between them, and simulated time.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use appnet_xds::{
    Any, ClientConfig, ClientEvent, ClientStream, Node, Request, RequestOutcome, ResourceStore,
    Response, ServerConfig, ServerStream, StreamKind, Validator, Variant,
};
use prost::Message;

/// The payload used in tests: a name (field 1, where Envoy's resources keep
/// theirs) and a body.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct TestResource {
    /// The resource name.
    #[prost(string, tag = "1")]
    pub(crate) name: String,
    /// Anything; a body containing "poison" is rejected by [`TestValidator`].
    #[prost(string, tag = "2")]
    pub(crate) body: String,
}

/// A payload of `type_url` named `name` with `body`.
pub(crate) fn any(type_url: &str, name: &str, body: &str) -> Any {
    Any {
        type_url: type_url.to_owned(),
        value: TestResource {
            name: name.to_owned(),
            body: body.to_owned(),
        }
        .encode_to_vec(),
    }
}

/// Decodes a test payload.
pub(crate) fn decode(any: &Any) -> TestResource {
    TestResource::decode(any.value.as_slice()).expect("test payloads decode")
}

/// Names test payloads and rejects poisoned ones.
#[derive(Debug, Default)]
pub(crate) struct TestValidator;

impl Validator for TestValidator {
    fn resource_name(&mut self, _type_url: &str, resource: &Any) -> Result<String, String> {
        TestResource::decode(resource.value.as_slice())
            .map(|r| r.name)
            .map_err(|e| e.to_string())
    }

    fn validate(&mut self, _type_url: &str, _name: &str, resource: &Any) -> Result<(), String> {
        let r = TestResource::decode(resource.value.as_slice()).map_err(|e| e.to_string())?;
        if r.body.contains("poison") {
            Err(format!("poisoned body {:?}", r.body))
        } else {
            Ok(())
        }
    }
}

/// One connection: a client stream, the server stream it talks to, and
/// everything that went over the wire.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) server: ServerStream,
    pub(crate) client: ClientStream,
    pub(crate) to_server: VecDeque<Request>,
    pub(crate) to_client: VecDeque<Response>,
    /// Every request the client sent, in order.
    pub(crate) requests: Vec<Request>,
    /// Every response the server sent, in order.
    pub(crate) responses: Vec<Response>,
    /// The server's verdict on each request.
    pub(crate) outcomes: Vec<RequestOutcome>,
    /// The client's verdict on each response.
    pub(crate) events: Vec<ClientEvent>,
    variant: Variant,
    kind: StreamKind,
    config: ServerConfig,
}

/// The harness.
#[derive(Debug)]
pub(crate) struct Pair {
    pub(crate) store: ResourceStore,
    pub(crate) now: Instant,
    pub(crate) conns: Vec<Conn>,
    next_stream_id: u64,
}

impl Default for Pair {
    fn default() -> Self {
        Self::new()
    }
}

impl Pair {
    pub(crate) fn new() -> Self {
        Self {
            store: ResourceStore::new(),
            now: Instant::now(),
            conns: Vec::new(),
            next_stream_id: 1,
        }
    }

    /// Adds a connection with default configs; returns its index.
    pub(crate) fn connect(&mut self, variant: Variant, kind: StreamKind) -> usize {
        self.connect_with(variant, kind, ServerConfig::default())
    }

    /// Adds a connection with a server config; returns its index.
    pub(crate) fn connect_with(
        &mut self,
        variant: Variant,
        kind: StreamKind,
        config: ServerConfig,
    ) -> usize {
        let node = Node {
            id: format!("node-{}", self.conns.len()),
            ..Default::default()
        };
        let mut client_config = ClientConfig::default();
        client_config.types = config.types.clone();
        let client = ClientStream::new(variant, kind.clone(), Some(node), client_config);
        let server = ServerStream::new(variant, kind.clone(), config.clone(), self.next_stream_id);
        self.next_stream_id += 1;
        self.conns.push(Conn {
            server,
            client,
            to_server: VecDeque::new(),
            to_client: VecDeque::new(),
            requests: Vec::new(),
            responses: Vec::new(),
            outcomes: Vec::new(),
            events: Vec::new(),
            variant,
            kind,
            config,
        });
        self.conns.len() - 1
    }

    pub(crate) fn insert(&mut self, type_url: &str, name: &str, body: &str) -> bool {
        self.store
            .insert(type_url, name, any(type_url, name, body))
            .expect("valid test resource")
    }

    pub(crate) fn remove(&mut self, type_url: &str, name: &str) -> bool {
        self.store.remove(type_url, name)
    }

    pub(crate) fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    /// Moves every queued client request to the server queue.
    pub(crate) fn client_send(&mut self, i: usize) -> usize {
        let c = &mut self.conns[i];
        let mut n = 0;
        while let Some(req) = c.client.poll_request() {
            c.requests.push(req.clone());
            c.to_server.push_back(req);
            n += 1;
        }
        n
    }

    /// The server handles every queued request.
    pub(crate) fn server_recv(&mut self, i: usize) -> usize {
        let now = self.now;
        let c = &mut self.conns[i];
        let mut n = 0;
        while let Some(req) = c.to_server.pop_front() {
            let outcome = c
                .server
                .handle_request(req, now)
                .expect("well-formed request");
            c.outcomes.push(outcome);
            n += 1;
        }
        n
    }

    /// The server sends every response it has.
    pub(crate) fn server_send(&mut self, i: usize) -> usize {
        let now = self.now;
        let c = &mut self.conns[i];
        let mut n = 0;
        while let Some(resp) = c.server.poll_response(&self.store, now).expect("sendable") {
            c.responses.push(resp.clone());
            c.to_client.push_back(resp);
            n += 1;
        }
        n
    }

    /// The client handles every queued response.
    pub(crate) fn client_recv(&mut self, i: usize) -> usize {
        let now = self.now;
        let c = &mut self.conns[i];
        let mut n = 0;
        while let Some(resp) = c.to_client.pop_front() {
            let ev = c
                .client
                .handle_response(resp, now, &mut TestValidator)
                .expect("expected response");
            c.events.push(ev);
            n += 1;
        }
        n
    }

    /// Runs every connection until no message moves; returns the number of
    /// messages moved. Panics if the system does not settle.
    pub(crate) fn drive(&mut self) -> usize {
        let mut total = 0;
        for _ in 0..10_000 {
            let mut moved = 0;
            for i in 0..self.conns.len() {
                moved += self.client_send(i);
                moved += self.server_recv(i);
                moved += self.server_send(i);
                moved += self.client_recv(i);
            }
            self.advance(Duration::from_millis(1));
            if moved == 0 {
                return total;
            }
            total += moved;
        }
        panic!("the connections never settled");
    }

    /// Drops connection `i`'s stream (and anything in flight) and opens a
    /// new one: a fresh server stream, the client reconnecting.
    pub(crate) fn reconnect(&mut self, i: usize) {
        let id = self.next_stream_id;
        self.next_stream_id += 1;
        let c = &mut self.conns[i];
        c.to_server.clear();
        c.to_client.clear();
        c.server = ServerStream::new(c.variant, c.kind.clone(), c.config.clone(), id);
        c.client.reconnect();
    }

    /// The client's accepted bodies of a type, by name.
    pub(crate) fn client_view(&self, i: usize, type_url: &str) -> BTreeMap<String, String> {
        self.conns[i]
            .client
            .resources(type_url)
            .map(|(n, r)| {
                let body = TestResource::decode(r.payload()).expect("test payloads decode");
                (n.to_owned(), body.body)
            })
            .collect()
    }

    /// The server's bodies of a type, by name.
    pub(crate) fn server_view(&self, type_url: &str) -> BTreeMap<String, String> {
        self.store
            .iter(type_url)
            .map(|(n, r)| (n.to_owned(), decode(r.resource()).body))
            .collect()
    }

    /// Responses sent on connection `i` since index `from`.
    pub(crate) fn responses_since(&self, i: usize, from: usize) -> &[Response] {
        &self.conns[i].responses[from..]
    }
}
