//! Fuzz entry point: bytes as a sequence of store changes, requests,
//! polls and reconnects against a [`ServerStream`], checking the stream's
//! invariants after each step. Not part of the stable API.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::{
    AckState, Any, DeltaDiscoveryRequest, DiscoveryRequest, ResourceStore, Response, ServerConfig,
    ServerStream, Status, StreamKind, Variant, WILDCARD, type_url,
};

const TYPES: [&str; 5] = [
    type_url::CLUSTER,
    type_url::ENDPOINT,
    type_url::LISTENER,
    type_url::ROUTE,
    "type.googleapis.com/fuzz.Unknown",
];

/// A byte cursor that yields zeros once exhausted.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn next(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The protocol variant a fuzz input's header byte picks (its low bit).
fn variant_of(header: u8) -> Variant {
    if header & 1 == 0 {
        Variant::Sotw
    } else {
        Variant::Delta
    }
}

fn name(i: u8) -> String {
    format!("r{}", i % 8)
}

/// Names from a bit mask; bit 8 of `extra` adds the wildcard.
fn names(mask: u8, star: bool) -> Vec<String> {
    let mut v: Vec<String> = (0..8).filter(|i| mask & (1 << i) != 0).map(name).collect();
    if star {
        v.push(WILDCARD.to_owned());
    }
    v
}

/// The harness's view of one stream.
struct Harness {
    stream: ServerStream,
    /// Every nonce this stream produced.
    nonces: BTreeSet<String>,
    /// Per type: the nonces of the responses not yet answered, oldest
    /// first.
    open: BTreeMap<String, Vec<String>>,
    /// How many may be un-answered per type.
    allowed: usize,
    /// Per type: the latest nonce received.
    latest: BTreeMap<String, String>,
    /// Per type: an older nonce, to replay as stale.
    older: BTreeMap<String, String>,
}

impl Harness {
    fn new(variant: Variant, config: ServerConfig, id: u64) -> Self {
        Self {
            stream: ServerStream::new(variant, StreamKind::Aggregated, config.clone(), id),
            nonces: BTreeSet::new(),
            open: BTreeMap::new(),
            allowed: match variant {
                Variant::Sotw => 1,
                Variant::Delta => config.delta_steps_in_flight.max(1),
            },
            latest: BTreeMap::new(),
            older: BTreeMap::new(),
        }
    }

    fn check_response(&mut self, response: &Response, limit: usize) {
        let type_url = response.type_url().to_owned();
        assert!(
            self.nonces.insert(response.nonce().to_owned()),
            "nonces are never reused"
        );
        let open = self.open.get(&type_url).map_or(0, Vec::len);
        assert!(
            open < self.allowed,
            "at most one un-answered response per type (delta: steps in flight)"
        );
        assert!(
            response.encoded_len() <= limit,
            "responses respect the size limit"
        );
        match response {
            Response::Sotw(r) => {
                let mut seen = BTreeSet::new();
                for any in &r.resources {
                    assert_eq!(any.type_url, type_url);
                    assert!(
                        seen.insert(any.value.first().copied()),
                        "no duplicate names"
                    );
                }
            }
            Response::Delta(r) => {
                let mut seen = BTreeSet::new();
                for res in &r.resources {
                    assert!(seen.insert(res.name.clone()), "no duplicate names");
                }
                for removed in &r.removed_resources {
                    assert!(!seen.contains(removed), "never both updated and removed");
                }
            }
        }
        if let Some(prev) = self
            .latest
            .insert(type_url.clone(), response.nonce().to_owned())
        {
            self.older.insert(type_url.clone(), prev);
        }
        self.open
            .entry(type_url)
            .or_default()
            .push(response.nonce().to_owned());
    }

    fn nonce(&self, type_url: &str, choice: u8) -> String {
        match choice % 4 {
            0 => String::new(),
            1 => self.latest.get(type_url).cloned().unwrap_or_default(),
            2 => self.older.get(type_url).cloned().unwrap_or_default(),
            _ => "garbage".to_owned(),
        }
    }

    fn after_request(&mut self, type_url: &str, nonce: &str, ack: &AckState) {
        let open = self.open.entry(type_url.to_owned()).or_default();
        let answered = open.iter().position(|n| n == nonce);
        let resolved = matches!(ack, AckState::Acked(_) | AckState::Nacked(_));
        assert_eq!(
            answered.is_some(),
            resolved,
            "ACK/NACK iff an open nonce is answered"
        );
        // It answers the ones before it too.
        if let Some(at) = answered {
            open.drain(..=at);
        }
    }
}

/// Interprets `data` as operations on a store and one server stream at a
/// time, asserting: nonces are unique; at most one response per type awaits
/// an answer (in delta, up to the steps allowed in flight); an answer
/// resolves exactly an open response and those before it; responses
/// respect the size limit and never name a resource twice; nothing panics.
pub fn server_requests(data: &[u8]) {
    let mut bytes = Bytes(data);
    let header = bytes.next();
    let variant = variant_of(header);
    let limit = 150 + usize::from(bytes.next()) * 8;
    let config = ServerConfig {
        max_message_size: limit,
        require_node: header & 2 != 0,
        delta_steps_in_flight: usize::from(1 + (header >> 2) % 4),
        ack_timeout: Some(Duration::from_secs(5)),
        ..ServerConfig::default()
    };
    let start = Instant::now();
    let mut now = start;
    let mut store = ResourceStore::with_tombstone_limit(usize::from(header >> 4));
    let mut id = 1;
    let mut h = Harness::new(variant, config.clone(), id);
    let mut steps = 0;
    while !bytes.is_empty() && steps < 512 {
        steps += 1;
        let op = bytes.next();
        let type_url = TYPES[usize::from(op >> 3) % TYPES.len()];
        match op % 8 {
            0 | 1 => {
                let (n, v, size) = (bytes.next(), bytes.next(), bytes.next());
                let mut value = vec![n % 8, v];
                value.resize(2 + usize::from(size) * usize::from(size % 4), v);
                let any = Any {
                    type_url: type_url.to_owned(),
                    value,
                };
                let _ = store.insert(type_url, &name(n), any);
            }
            2 => {
                store.remove(type_url, &name(bytes.next()));
            }
            3 | 4 => {
                let (mask, flags, choice) = (bytes.next(), bytes.next(), bytes.next());
                let nonce = h.nonce(type_url, choice);
                let error = (flags & 2 != 0).then(|| Status {
                    code: 3,
                    message: "rejected".to_owned(),
                    details: Vec::new(),
                });
                let node = (flags & 4 != 0).then(Default::default);
                let result = match variant {
                    Variant::Sotw => h.stream.handle_request(
                        DiscoveryRequest {
                            node,
                            type_url: if flags & 8 != 0 {
                                String::new()
                            } else {
                                type_url.to_owned()
                            },
                            resource_names: names(mask, flags & 1 != 0),
                            response_nonce: nonce.clone(),
                            error_detail: error,
                            ..Default::default()
                        },
                        now,
                    ),
                    Variant::Delta => {
                        let unsub = bytes.next();
                        let initial = names(bytes.next(), false)
                            .into_iter()
                            .map(|n| {
                                let version = store
                                    .get(type_url, &n)
                                    .map_or("stale".to_owned(), |r| r.version().to_owned());
                                (n, version)
                            })
                            .collect();
                        h.stream.handle_request(
                            DeltaDiscoveryRequest {
                                node,
                                type_url: type_url.to_owned(),
                                resource_names_subscribe: names(mask, flags & 1 != 0),
                                resource_names_unsubscribe: names(unsub, flags & 16 != 0),
                                initial_resource_versions: initial,
                                response_nonce: nonce.clone(),
                                error_detail: error,
                                ..Default::default()
                            },
                            now,
                        )
                    }
                };
                if let Ok(outcome) = result {
                    h.after_request(&outcome.type_url, &nonce, &outcome.ack);
                }
            }
            5 => {
                for _ in 0..64 {
                    match h.stream.poll_response(&store, now) {
                        Ok(Some(response)) => h.check_response(&response, limit),
                        Ok(None) => break,
                        Err(_) => {}
                    }
                }
                for status in h.stream.status() {
                    let oldest = h.open.get(&status.type_url).and_then(|o| o.first());
                    assert_eq!(status.outstanding.map(|o| o.nonce).as_ref(), oldest);
                }
            }
            6 => {
                now += Duration::from_millis(u64::from(bytes.next()) * 50);
                if let Some(deadline) = h.stream.poll_timeout() {
                    let timed_out = h.stream.handle_timeout(now).is_err();
                    assert_eq!(
                        timed_out,
                        now >= deadline,
                        "timeouts fire at their deadline"
                    );
                }
            }
            _ => {
                id += 1;
                h = Harness::new(variant, config.clone(), id);
            }
        }
    }
}

/// Names fuzz payloads by their first byte and refuses those that start
/// with `0xFF` (unnameable) or carry `0xEE` second (invalid).
struct FuzzValidator;

impl super::Validator for FuzzValidator {
    fn resource_name(&mut self, _type_url: &str, resource: &Any) -> Result<String, String> {
        match resource.value.first() {
            None | Some(0xFF) => Err("no name".to_owned()),
            Some(b) => Ok(name(*b)),
        }
    }

    fn validate(&mut self, _type_url: &str, _name: &str, resource: &Any) -> Result<(), String> {
        match resource.value.get(1) {
            Some(0xEE) => Err("invalid".to_owned()),
            _ => Ok(()),
        }
    }
}

/// A small payload from fuzz bytes: the name byte, a validity byte, then
/// `len` filler bytes.
fn payload(type_url: &str, n: u8, v: u8, len: u8) -> Any {
    let mut value = vec![n, v];
    value.resize(2 + usize::from(len % 16), v);
    Any {
        type_url: type_url.to_owned(),
        value,
    }
}

/// Interprets `data` as operations on one client stream: subscriptions,
/// unsubscriptions, reconnects, request polls, structured responses (right
/// or wrong type URL, duplicate, unnameable or invalid resources, removals)
/// and raw bytes decoded as responses. Asserts after each step that the
/// accepted state agrees with itself (counts, each resource under its own
/// name, the per-type status) and, at the end, that maps published earlier
/// were not changed by anything that came after. Nothing may panic.
pub fn client_responses(data: &[u8]) {
    use prost::Message;

    use super::{
        ClientConfig, ClientStream, DeltaDiscoveryResponse, DeltaResource, DiscoveryResponse, Node,
        ResourceMap,
    };

    let mut bytes = Bytes(data);
    let header = bytes.next();
    let variant = variant_of(header);
    let kind = if header & 2 == 0 {
        StreamKind::Aggregated
    } else {
        StreamKind::Single(TYPES[0].to_owned())
    };
    let mut client = ClientStream::new(
        variant,
        kind,
        Some(Node::default()),
        ClientConfig::default(),
    );
    let now = Instant::now();
    /// What a map held: (name, version, payload) in order.
    type Contents = Vec<(String, String, Vec<u8>)>;
    let mut published: Vec<(ResourceMap, Contents)> = Vec::new();
    let contents = |m: &ResourceMap| -> Contents {
        m.iter()
            .map(|(n, r)| (n.to_owned(), r.version().to_owned(), r.payload().to_vec()))
            .collect()
    };
    let mut steps = 0;
    while !bytes.is_empty() && steps < 256 {
        steps += 1;
        let op = bytes.next();
        let type_url = TYPES[usize::from(op >> 3) % TYPES.len()];
        match op % 8 {
            0 => {
                let (mask, star) = (bytes.next(), bytes.next() & 1 == 1);
                let _ = client.subscribe(type_url, names(mask, star));
            }
            1 => {
                let (mask, star) = (bytes.next(), bytes.next() & 1 == 1);
                let _ = client.unsubscribe(type_url, names(mask, star));
            }
            2 => client.reconnect(),
            3 => while client.poll_request().is_some() {},
            4 | 5 => {
                let (count, flags, nonce) = (bytes.next() % 5, bytes.next(), bytes.next());
                let url = if flags & 1 == 0 { type_url } else { TYPES[4] };
                let mut resources = Vec::new();
                for _ in 0..count {
                    let (n, v, len) = (bytes.next(), bytes.next(), bytes.next());
                    resources.push((n, payload(url, n, v, len)));
                }
                let response: super::Response = match variant {
                    Variant::Sotw => DiscoveryResponse {
                        version_info: format!("v{}", flags >> 4),
                        resources: resources.into_iter().map(|(_, a)| a).collect(),
                        type_url: url.to_owned(),
                        nonce: format!("n{nonce}"),
                        ..Default::default()
                    }
                    .into(),
                    Variant::Delta => DeltaDiscoveryResponse {
                        system_version_info: format!("v{}", flags >> 4),
                        resources: resources
                            .into_iter()
                            .map(|(n, a)| DeltaResource {
                                name: if flags & 2 != 0 {
                                    String::new()
                                } else {
                                    name(n)
                                },
                                version: format!("{}", a.value.len()),
                                resource: (flags & 4 == 0).then_some(a),
                                ..Default::default()
                            })
                            .collect(),
                        removed_resources: names(bytes.next(), false),
                        type_url: url.to_owned(),
                        nonce: format!("n{nonce}"),
                        ..Default::default()
                    }
                    .into(),
                };
                let _ = client.handle_response(response, now, &mut FuzzValidator);
            }
            6 => {
                let len = usize::from(bytes.next());
                let take = len.min(bytes.0.len());
                let (raw, rest) = bytes.0.split_at(take);
                bytes.0 = rest;
                let response: Option<super::Response> = match variant {
                    Variant::Sotw => DiscoveryResponse::decode(raw).ok().map(Into::into),
                    Variant::Delta => DeltaDiscoveryResponse::decode(raw).ok().map(Into::into),
                };
                if let Some(r) = response {
                    let _ = client.handle_response(r, now, &mut FuzzValidator);
                }
            }
            _ => {
                let map = client.resource_map(type_url);
                let seen = contents(&map);
                published.push((map, seen));
            }
        }
        for status in client.status() {
            let map = client.resource_map(&status.type_url);
            assert_eq!(status.resources, map.len(), "status and map disagree");
            assert_eq!(client.resources(&status.type_url).count(), map.len());
            for (n, r) in map.iter() {
                assert_eq!(n, r.name(), "a resource under another name");
                assert_eq!(map.get(n), Some(r), "lookup by its own name");
            }
        }
    }
    for (map, seen) in &published {
        assert_eq!(&contents(map), seen, "a published map changed afterwards");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn empty_and_small_inputs_do_not_panic() {
        super::server_requests(&[]);
        super::server_requests(&[1]);
        super::server_requests(&[0, 0, 3, 0, 1, 0, 5]);
    }
}
