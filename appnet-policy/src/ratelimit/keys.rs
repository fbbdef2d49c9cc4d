//! A bounded, sharded table from a limit key to its bucket.
//!
//! Lookups hash the borrowed key parts once and allocate nothing when the key
//! is known; only a new key allocates its owned copy and bucket. A shard's
//! lock is held for one hash-table probe (and, rarely, a sweep); buckets have
//! locks of their own.
//!
//! Memory is bounded: the table never holds more than its `max_keys`. When a
//! shard is full, it forgets its idle buckets — full, owing nothing and held
//! by no permit, so forgetting one changes no outcome. If none is idle the new
//! key is refused (fail closed) and the shard does not sweep again until a
//! back-off has passed, so a full table cannot make every request pay for a
//! scan.

use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use hashbrown::HashTable;

use super::bucket::TokenBucket;

/// A bucket shared by the table and the permits that hold reservations on it.
pub(crate) type SharedBucket = Arc<Mutex<TokenBucket>>;

/// Locks a bucket. Bucket operations cannot leave a bucket half-updated, so a
/// poisoned lock (a panic elsewhere while it was held) is still sound to use.
pub(crate) fn lock(bucket: &Mutex<TokenBucket>) -> MutexGuard<'_, TokenBucket> {
    bucket.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A key borrowed from a request: one or two strings, depending on the
/// limit's [`LimitKey`](super::LimitKey) (the unused part is empty).
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyRef<'a> {
    pub(crate) first: &'a str,
    pub(crate) second: &'a str,
}

struct Entry {
    first: Box<str>,
    second: Box<str>,
    bucket: SharedBucket,
}

impl Entry {
    fn is(&self, key: KeyRef<'_>) -> bool {
        *self.first == *key.first && *self.second == *key.second
    }

    /// Idle and referenced only by the table. Called with the shard locked;
    /// new references are only made under that lock, so a count of one
    /// cannot grow behind our back.
    fn is_evictable(&self, now: Instant) -> bool {
        Arc::strong_count(&self.bucket) == 1 && lock(&self.bucket).is_idle(now)
    }
}

struct Shard {
    table: HashTable<Entry>,
    no_sweep_until: Option<Instant>,
}

/// The table is full and no bucket in the key's shard could be forgotten.
#[derive(Debug)]
pub(crate) struct TableFull;

pub(crate) struct KeyTable {
    hasher: RandomState,
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    sweep_backoff: Duration,
}

impl fmt::Debug for KeyTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyTable")
            .field("shards", &self.shards.len())
            .field("per_shard", &self.per_shard)
            .field("len", &self.len())
            .finish()
    }
}

impl KeyTable {
    /// A table for at most `max_keys` (≥ 1) keys.
    pub(crate) fn new(max_keys: usize, sweep_backoff: Duration) -> Self {
        // Small tables get one shard, so their bound is exact per key; large
        // ones up to 16, each with at least 256 keys.
        let wanted = (max_keys / 256).clamp(1, 16);
        let shards = 1 << wanted.ilog2();
        let per_shard = (max_keys / shards).max(1);
        Self {
            hasher: RandomState::new(),
            shards: (0..shards)
                .map(|_| {
                    Mutex::new(Shard {
                        table: HashTable::new(),
                        no_sweep_until: None,
                    })
                })
                .collect(),
            per_shard,
            sweep_backoff,
        }
    }

    fn hash(&self, first: &str, second: &str) -> u64 {
        self.hasher.hash_one((first, second))
    }

    fn shard(&self, hash: u64) -> MutexGuard<'_, Shard> {
        // hashbrown uses the low bits for the slot and the top 7 for its
        // tags; bits 40.. pick the shard without correlating with either.
        let index = (hash >> 40) as usize & (self.shards.len() - 1);
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The bucket of `key`, made with `make` when the key is new.
    pub(crate) fn get_or_insert(
        &self,
        key: KeyRef<'_>,
        now: Instant,
        make: impl FnOnce() -> TokenBucket,
    ) -> Result<SharedBucket, TableFull> {
        let hash = self.hash(key.first, key.second);
        let mut shard = self.shard(hash);
        if let Some(entry) = shard.table.find(hash, |e| e.is(key)) {
            return Ok(Arc::clone(&entry.bucket));
        }
        if shard.table.len() >= self.per_shard {
            if shard.no_sweep_until.is_some_and(|t| now < t) {
                return Err(TableFull);
            }
            shard.table.retain(|e| !e.is_evictable(now));
            if shard.table.len() >= self.per_shard {
                shard.no_sweep_until = now.checked_add(self.sweep_backoff);
                return Err(TableFull);
            }
            shard.no_sweep_until = None;
        }
        let bucket = Arc::new(Mutex::new(make()));
        let entry = Entry {
            first: key.first.into(),
            second: key.second.into(),
            bucket: Arc::clone(&bucket),
        };
        let hasher = &self.hasher;
        shard
            .table
            .insert_unique(hash, entry, |e| hasher.hash_one((&*e.first, &*e.second)));
        Ok(bucket)
    }

    /// The bucket of `key` if the table has it.
    pub(crate) fn get(&self, key: KeyRef<'_>) -> Option<SharedBucket> {
        let hash = self.hash(key.first, key.second);
        let shard = self.shard(hash);
        shard
            .table
            .find(hash, |e| e.is(key))
            .map(|e| Arc::clone(&e.bucket))
    }

    /// Forgets every idle bucket; returns how many.
    pub(crate) fn evict_idle(&self, now: Instant) -> usize {
        let mut evicted = 0;
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            let before = shard.table.len();
            shard.table.retain(|e| !e.is_evictable(now));
            evicted += before - shard.table.len();
            shard.no_sweep_until = None;
        }
        evicted
    }

    /// Keys held now.
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).table.len())
            .sum()
    }
}
