//! The pool's decisions, as a plain type: which connection a new stream
//! uses, when to open another, when an idle one goes. No I/O, no clock: the
//! caller passes `now`. [`HboneConnector`](crate::HboneConnector) drives it.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Names one pooled connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(u64);

/// Where a new stream should go. In every case one stream slot on the named
/// connection is now held by the caller; give it back with
/// [`Pool::release`] (or [`Pool::dial_failed`] after a failed dial).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkout {
    /// Open the stream on this established connection.
    Reuse(ConnectionId),
    /// This connection is being dialled by someone else: wait for it.
    Join(ConnectionId),
    /// Dial this new connection, then report [`Pool::connected`] or
    /// [`Pool::dial_failed`].
    Dial(ConnectionId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Dialling,
    Ready,
    /// Takes no new streams (peer GOAWAY, or a failure); goes when empty.
    Draining,
}

#[derive(Debug)]
struct Entry<K> {
    key: K,
    phase: Phase,
    limit: u32,
    streams: u32,
    idle_since: Option<Instant>,
}

/// Counts of what a pool holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections being dialled, established, or draining.
    pub connections: usize,
    /// Stream slots held (open or being opened).
    pub streams: usize,
}

/// Connections grouped by key (for HBONE: local identity, expected peer
/// identities, peer address), each carrying up to `limit` streams.
#[derive(Debug)]
pub struct Pool<K> {
    entries: HashMap<ConnectionId, Entry<K>>,
    by_key: HashMap<K, Vec<ConnectionId>>,
    next_id: u64,
    max_streams: u32,
    idle_timeout: Duration,
}

impl<K: Clone + Eq + Hash> Pool<K> {
    /// A pool that puts at most `max_streams` streams on a connection
    /// (fewer if the peer says so) and closes connections idle for
    /// `idle_timeout`.
    pub fn new(max_streams: u32, idle_timeout: Duration) -> Self {
        Self {
            entries: HashMap::new(),
            by_key: HashMap::new(),
            next_id: 0,
            max_streams: max_streams.max(1),
            idle_timeout,
        }
    }

    /// Takes a stream slot for `key`: on the oldest connection with room
    /// (established or being dialled), else on a new one to dial.
    pub fn checkout(&mut self, key: &K) -> Checkout {
        if let Some(ids) = self.by_key.get(key) {
            for id in ids {
                let Some(e) = self.entries.get_mut(id) else {
                    continue;
                };
                if e.phase == Phase::Draining || e.streams >= e.limit {
                    continue;
                }
                e.streams += 1;
                e.idle_since = None;
                return match e.phase {
                    Phase::Ready => Checkout::Reuse(*id),
                    _ => Checkout::Join(*id),
                };
            }
        }
        let id = ConnectionId(self.next_id);
        self.next_id += 1;
        self.entries.insert(
            id,
            Entry {
                key: key.clone(),
                phase: Phase::Dialling,
                limit: self.max_streams,
                streams: 1,
                idle_since: None,
            },
        );
        self.by_key.entry(key.clone()).or_default().push(id);
        Checkout::Dial(id)
    }

    /// The dial of `id` succeeded; the peer allows `peer_max_streams`
    /// concurrent streams.
    pub fn connected(&mut self, id: ConnectionId, peer_max_streams: usize, now: Instant) {
        if let Some(e) = self.entries.get_mut(&id) {
            if e.phase == Phase::Dialling {
                e.phase = Phase::Ready;
            }
            e.limit = self.max_streams.min(clamp_u32(peer_max_streams)).max(1);
            if e.streams == 0 {
                e.idle_since = Some(now);
            }
        }
    }

    /// The peer changed its stream limit (a later SETTINGS frame).
    pub fn set_peer_limit(&mut self, id: ConnectionId, peer_max_streams: usize) {
        if let Some(e) = self.entries.get_mut(&id) {
            e.limit = self.max_streams.min(clamp_u32(peer_max_streams)).max(1);
        }
    }

    /// The dial of `id` failed: the connection is forgotten, and every slot
    /// on it with it (waiters learn of the failure from the caller).
    pub fn dial_failed(&mut self, id: ConnectionId) {
        self.remove(id);
    }

    /// One stream slot on `id` is given back. Returns `true` when this left
    /// the connection idle (so its idle deadline starts now).
    pub fn release(&mut self, id: ConnectionId, now: Instant) -> bool {
        let Some(e) = self.entries.get_mut(&id) else {
            return false;
        };
        e.streams = e.streams.saturating_sub(1);
        if e.streams == 0 && e.phase != Phase::Dialling {
            e.idle_since = Some(now);
            return true;
        }
        false
    }

    /// `id` takes no new streams from now on (the peer sent GOAWAY, or a
    /// stream on it was refused).
    pub fn drain(&mut self, id: ConnectionId) {
        if let Some(e) = self.entries.get_mut(&id) {
            e.phase = Phase::Draining;
        }
    }

    /// `id` is closed; forget it.
    pub fn closed(&mut self, id: ConnectionId) {
        self.remove(id);
    }

    /// When `id` becomes evictable if nothing uses it meanwhile; `None`
    /// while it carries streams (or is unknown).
    pub fn idle_deadline(&self, id: ConnectionId) -> Option<Instant> {
        let e = self.entries.get(&id)?;
        e.idle_since.map(|since| since + self.idle_timeout)
    }

    /// Removes `id` if it has been idle for the whole idle timeout at
    /// `now`; returns whether it did (the caller then closes it).
    pub fn evict_if_idle(&mut self, id: ConnectionId, now: Instant) -> bool {
        match self.idle_deadline(id) {
            Some(deadline) if deadline <= now => {
                self.remove(id);
                true
            }
            _ => false,
        }
    }

    /// Whether the pool still knows `id`.
    pub fn contains(&self, id: ConnectionId) -> bool {
        self.entries.contains_key(&id)
    }

    /// Counts of connections and stream slots.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            connections: self.entries.len(),
            streams: self.entries.values().map(|e| e.streams as usize).sum(),
        }
    }

    fn remove(&mut self, id: ConnectionId) {
        let Some(e) = self.entries.remove(&id) else {
            return;
        };
        if let Some(ids) = self.by_key.get_mut(&e.key) {
            ids.retain(|other| *other != id);
            if ids.is_empty() {
                self.by_key.remove(&e.key);
            }
        }
    }
}

fn clamp_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests;
