//! The server's versioned resource store.

use std::collections::BTreeMap;

use super::{Any, ProtocolError, WILDCARD};

/// Tombstones kept per type before the oldest are forgotten (see
/// [`ResourceStore::with_tombstone_limit`]).
const DEFAULT_TOMBSTONE_LIMIT: usize = 4096;

/// One resource as the store holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredResource {
    version: String,
    resource: Any,
    generation: u64,
}

impl StoredResource {
    /// The resource's version string.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The resource payload.
    pub fn resource(&self) -> &Any {
        &self.resource
    }

    /// The store generation at which this version was written.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

/// What the store remembers of one type URL.
#[derive(Clone, Debug, Default)]
struct TypeEntries {
    /// Generation of the last change to this type.
    generation: u64,
    live: BTreeMap<String, StoredResource>,
    /// Removed resources: the generation of removal and the last version.
    tombstones: BTreeMap<String, (u64, StoredResource)>,
    /// Change log: generation → name, one entry per name (its last change).
    log: BTreeMap<u64, String>,
    /// Changes at or before this generation may be missing from the log
    /// (their tombstones were forgotten).
    horizon: u64,
}

/// Versioned resources per type URL: the server side's source of truth.
///
/// Every change bumps a store-wide *generation* counter ([`Self::generation`]);
/// a shell can watch it to debounce pushes, and a [`super::ServerStream`]
/// remembers the generation it last looked at, so it only examines what
/// changed since. Removed resources leave a tombstone (with their last
/// payload, so a state-of-the-world stream can keep them until removals are
/// due); only the newest `tombstone_limit` per type are kept, and a stream
/// that fell behind the forgotten ones re-examines the whole type.
///
/// Versions: [`Self::insert`] uses a content hash (the first 64 bits of
/// SHA-256 over the `Any`, in hex), so the same payload always has the same
/// version, across restarts too. That is what lets a reconnecting delta client
/// skip resources it already has via `initial_resource_versions`, and it makes
/// re-inserting identical content a no-op. [`Self::insert_versioned`] takes a
/// caller-chosen version instead.
///
/// Per-node views: keep one store per node group (for example per cluster or
/// per proxy type) and drive each stream against the store its node belongs to.
#[derive(Clone, Debug)]
pub struct ResourceStore {
    generation: u64,
    types: BTreeMap<String, TypeEntries>,
    tombstone_limit: usize,
}

impl Default for ResourceStore {
    fn default() -> Self {
        Self::new()
    }
}

/// The content version of a payload: 16 hex digits of SHA-256.
pub(crate) fn content_version(resource: &Any) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(resource.type_url.as_bytes());
    ctx.update(&[0]);
    ctx.update(&resource.value);
    hex16(ctx.finish().as_ref())
}

/// Hex of the first 8 bytes of a digest.
pub(crate) fn hex16(digest: &[u8]) -> String {
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

impl ResourceStore {
    /// An empty store at generation 0.
    pub fn new() -> Self {
        Self::with_tombstone_limit(DEFAULT_TOMBSTONE_LIMIT)
    }

    /// An empty store keeping at most `limit` tombstones per type.
    pub fn with_tombstone_limit(limit: usize) -> Self {
        Self {
            generation: 0,
            types: BTreeMap::new(),
            tombstone_limit: limit,
        }
    }

    /// The store-wide change counter: bumped by every change that alters a
    /// resource or removes one.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The generation of the last change to one type (0 if never changed).
    pub fn type_generation(&self, type_url: &str) -> u64 {
        self.types.get(type_url).map_or(0, |t| t.generation)
    }

    /// Inserts or replaces a resource, versioned by its content hash.
    /// Returns whether anything changed.
    ///
    /// # Errors
    /// [`ProtocolError::InvalidResource`] for an empty or `*` name, or a
    /// payload whose `type_url` is not `type_url`.
    pub fn insert(
        &mut self,
        type_url: &str,
        name: &str,
        resource: Any,
    ) -> Result<bool, ProtocolError> {
        let version = content_version(&resource);
        self.insert_versioned(type_url, name, version, resource)
    }

    /// Inserts or replaces a resource with a caller-chosen version. Returns
    /// whether anything changed (same version and payload: nothing).
    ///
    /// # Errors
    /// [`ProtocolError::InvalidResource`] as for [`Self::insert`], or for an
    /// empty version.
    pub fn insert_versioned(
        &mut self,
        type_url: &str,
        name: &str,
        version: String,
        resource: Any,
    ) -> Result<bool, ProtocolError> {
        check(type_url, name, &resource)?;
        if version.is_empty() {
            return Err(invalid(type_url, name, "empty version"));
        }
        let entries = self.types.entry(type_url.to_owned()).or_default();
        if let Some(old) = entries.live.get(name)
            && old.version == version
            && old.resource == resource
        {
            return Ok(false);
        }
        self.generation += 1;
        let generation = self.generation;
        let stored = StoredResource {
            version,
            resource,
            generation,
        };
        let previous = match entries.live.insert(name.to_owned(), stored) {
            Some(old) => Some(old.generation),
            None => entries.tombstones.remove(name).map(|(g, _)| g),
        };
        if let Some(g) = previous {
            entries.log.remove(&g);
        }
        entries.log.insert(generation, name.to_owned());
        entries.generation = generation;
        Ok(true)
    }

    /// Removes a resource. Returns whether it existed.
    pub fn remove(&mut self, type_url: &str, name: &str) -> bool {
        let Some(entries) = self.types.get_mut(type_url) else {
            return false;
        };
        let Some(old) = entries.live.remove(name) else {
            return false;
        };
        self.generation += 1;
        let generation = self.generation;
        entries.log.remove(&old.generation);
        entries.log.insert(generation, name.to_owned());
        entries
            .tombstones
            .insert(name.to_owned(), (generation, old));
        entries.generation = generation;
        while entries.tombstones.len() > self.tombstone_limit {
            let Some((oldest_gen, oldest)) = entries
                .tombstones
                .iter()
                .map(|(n, (g, _))| (*g, n.clone()))
                .min()
            else {
                break;
            };
            entries.tombstones.remove(&oldest);
            entries.log.remove(&oldest_gen);
            entries.horizon = entries.horizon.max(oldest_gen);
        }
        true
    }

    /// Makes `resources` the complete set of one type: inserts or updates
    /// each (content-hash versions) and removes every other resource of the
    /// type. Returns whether anything changed. Nothing is changed on error.
    ///
    /// # Errors
    /// [`ProtocolError::InvalidResource`] as for [`Self::insert`], or when a
    /// name appears twice.
    pub fn replace_all<I>(&mut self, type_url: &str, resources: I) -> Result<bool, ProtocolError>
    where
        I: IntoIterator<Item = (String, Any)>,
    {
        let mut wanted = BTreeMap::new();
        for (name, resource) in resources {
            check(type_url, &name, &resource)?;
            if wanted.contains_key(&name) {
                return Err(invalid(type_url, &name, "name given twice"));
            }
            wanted.insert(name, resource);
        }
        let stale: Vec<String> = self
            .iter(type_url)
            .filter(|(name, _)| !wanted.contains_key(*name))
            .map(|(name, _)| name.to_owned())
            .collect();
        let mut changed = false;
        for name in stale {
            changed |= self.remove(type_url, &name);
        }
        for (name, resource) in wanted {
            changed |= self.insert(type_url, &name, resource)?;
        }
        Ok(changed)
    }

    /// One resource, if present.
    pub fn get(&self, type_url: &str, name: &str) -> Option<&StoredResource> {
        self.types.get(type_url)?.live.get(name)
    }

    /// Every resource of a type, by name.
    pub fn iter<'a>(
        &'a self,
        type_url: &str,
    ) -> impl Iterator<Item = (&'a str, &'a StoredResource)> + 'a {
        self.types
            .get(type_url)
            .into_iter()
            .flat_map(|t| t.live.iter().map(|(n, r)| (n.as_str(), r)))
    }

    /// How many resources a type has.
    pub fn len(&self, type_url: &str) -> usize {
        self.types.get(type_url).map_or(0, |t| t.live.len())
    }

    /// Whether the store holds no resource at all.
    pub fn is_empty(&self) -> bool {
        self.types.values().all(|t| t.live.is_empty())
    }

    /// The type URLs that have (or had) resources.
    pub fn type_urls(&self) -> impl Iterator<Item = &str> {
        self.types.keys().map(String::as_str)
    }

    /// Names of one type changed after generation `since`, or `None` when
    /// the log no longer reaches back that far (examine everything).
    pub(crate) fn changed_since(
        &self,
        type_url: &str,
        since: u64,
    ) -> Option<impl Iterator<Item = &str>> {
        let log = match self.types.get(type_url) {
            Some(entries) if since < entries.horizon => return None,
            Some(entries) => Some(entries.log.range(since.saturating_add(1)..)),
            None => None,
        };
        Some(log.into_iter().flatten().map(|(_, n)| n.as_str()))
    }

    /// The last version of a removed resource, while its tombstone is kept.
    pub(crate) fn removed(&self, type_url: &str, name: &str) -> Option<&StoredResource> {
        self.types
            .get(type_url)?
            .tombstones
            .get(name)
            .map(|(_, r)| r)
    }
}

fn invalid(type_url: &str, name: &str, reason: &str) -> ProtocolError {
    ProtocolError::InvalidResource {
        type_url: type_url.to_owned(),
        name: name.to_owned(),
        reason: reason.to_owned(),
    }
}

fn check(type_url: &str, name: &str, resource: &Any) -> Result<(), ProtocolError> {
    if name.is_empty() || name == WILDCARD {
        return Err(invalid(type_url, name, "a resource needs a real name"));
    }
    if resource.type_url != type_url {
        return Err(invalid(
            type_url,
            name,
            &format!("payload is a {:?}", resource.type_url),
        ));
    }
    Ok(())
}
