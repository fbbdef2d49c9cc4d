//! What a client has accepted: each resource in one allocation, the
//! resources of a type in a persistent map its snapshots share, and the
//! names an event lists.

use std::sync::Arc;

/// A resource the client accepted: its name, its version and its encoded
/// payload (the `Any`'s value; the type URL is the type's), kept in one
/// shared allocation. Cloning is cheap.
#[derive(Clone, PartialEq, Eq)]
pub struct AcceptedResource {
    /// The name's and the version's lengths (4 bytes each, little endian),
    /// then the name, the version and the payload: one allocation per
    /// resource instead of three.
    data: Arc<[u8]>,
}

impl AcceptedResource {
    pub(crate) fn new(name: &str, version: &str, payload: &[u8]) -> Self {
        // Names and versions are short; one longer than 4 GiB cannot arrive
        // in a bounded gRPC message.
        let len = |s: &str| u32::try_from(s.len()).unwrap_or(u32::MAX).to_le_bytes();
        // Slices copied whole (an iterator chain collected into the `Arc`
        // copies byte by byte: 6 % of a fan-out's instructions).
        let mut data = Vec::with_capacity(8 + name.len() + version.len() + payload.len());
        data.extend_from_slice(&len(name));
        data.extend_from_slice(&len(version));
        data.extend_from_slice(name.as_bytes());
        data.extend_from_slice(version.as_bytes());
        data.extend_from_slice(payload);
        Self { data: data.into() }
    }

    /// (name, version, payload).
    fn parts(&self) -> (&[u8], &[u8], &[u8]) {
        let read = |at: usize| {
            self.data
                .get(at..at + 4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map_or(0, u32::from_le_bytes) as usize
        };
        let (name_len, version_len) = (read(0), read(4));
        let rest = self.data.get(8..).unwrap_or_default();
        let (name, rest) = rest.split_at_checked(name_len).unwrap_or((&[], rest));
        let (version, payload) = rest.split_at_checked(version_len).unwrap_or((&[], rest));
        (name, version, payload)
    }

    /// Its name.
    pub fn name(&self) -> &str {
        std::str::from_utf8(self.parts().0).unwrap_or_default()
    }

    /// Its version: the resource version (delta) or the version of the
    /// response that carried it (state of the world).
    pub fn version(&self) -> &str {
        std::str::from_utf8(self.parts().1).unwrap_or_default()
    }

    /// Its encoded payload (the protobuf message inside the `Any`).
    pub fn payload(&self) -> &[u8] {
        self.parts().2
    }
}

impl std::fmt::Debug for AcceptedResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcceptedResource")
            .field("name", &self.name())
            .field("version", &self.version())
            .field("payload_bytes", &self.payload().len())
            .finish()
    }
}

/// An [`AcceptedResource`] in a set, ordered and compared by its name.
#[derive(Clone)]
struct Keyed(AcceptedResource);

impl PartialEq for Keyed {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Keyed {}

impl PartialOrd for Keyed {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Keyed {
    // By the name's bytes: `str` orders by its UTF-8 bytes, so this is
    // name order, without a UTF-8 check per comparison (a lookup makes
    // about ten, each on a resource that is seldom in cache).
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(other.key())
    }
}

impl Keyed {
    fn key(&self) -> &[u8] {
        self.0.parts().0
    }
}

impl std::borrow::Borrow<[u8]> for Keyed {
    fn borrow(&self) -> &[u8] {
        self.key()
    }
}

/// The accepted resources of one type, by name: a persistent B+tree. A
/// clone is O(1) and shares every node; a change after a clone copies only
/// the nodes on its path, so the client publishes a snapshot per response
/// without copying its state, and a server's step of names in order copies
/// only the leaves it fills.
#[derive(Clone, Default)]
pub struct ResourceMap(imbl::OrdSet<Keyed>);

impl ResourceMap {
    /// One resource.
    pub fn get(&self, name: &str) -> Option<&AcceptedResource> {
        self.0.get(name.as_bytes()).map(|k| &k.0)
    }

    /// Whether a resource is held.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// How many resources are held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no resource is held.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The resources with their names, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &AcceptedResource)> {
        self.0.iter().map(|k| (k.0.name(), &k.0))
    }

    pub(super) fn insert(&mut self, resource: AcceptedResource) -> Option<AcceptedResource> {
        self.0.insert(Keyed(resource)).map(|k| k.0)
    }

    pub(super) fn remove(&mut self, name: &str) -> Option<AcceptedResource> {
        self.0.remove(name.as_bytes()).map(|k| k.0)
    }
}

impl PartialEq for ResourceMap {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for ResourceMap {}

impl std::fmt::Debug for ResourceMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Resource names held together: two allocations however many names, so
/// an event naming 100,000 resources is cheap to build, keep and drop.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct NameList {
    joined: String,
    ends: Vec<usize>,
}

impl NameList {
    /// How many names.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The `i`th name.
    pub fn get(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)?;
        let start = i.checked_sub(1).map_or(0, |p| self.ends[p]);
        self.joined.get(start..end)
    }

    /// The names in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    /// Whether `name` is listed.
    pub fn contains(&self, name: &str) -> bool {
        self.iter().any(|n| n == name)
    }

    /// Adds a name.
    pub fn push(&mut self, name: &str) {
        self.joined.push_str(name);
        self.ends.push(self.joined.len());
    }
}

impl<S: AsRef<str>> FromIterator<S> for NameList {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let mut list = Self::default();
        for name in iter {
            list.push(name.as_ref());
        }
        list
    }
}

impl<const N: usize> PartialEq<[&str; N]> for NameList {
    fn eq(&self, other: &[&str; N]) -> bool {
        self.len() == N && self.iter().zip(other).all(|(a, b)| a == *b)
    }
}

impl std::fmt::Debug for NameList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::{AcceptedResource, NameList, ResourceMap};

    #[test]
    fn name_list_keeps_names_apart() {
        let list: NameList = ["a", "", "bc"].into_iter().collect();
        assert_eq!(list.len(), 3);
        assert_eq!(list, ["a", "", "bc"]);
        assert_eq!(list.get(1), Some(""));
        assert_eq!(list.get(3), None);
        assert!(list.contains("bc") && !list.contains("b"));
        assert_ne!(list, ["a", "bc"]);
        assert_eq!(format!("{list:?}"), r#"["a", "", "bc"]"#);
    }

    #[test]
    fn accepted_resource_keeps_its_three_parts() {
        let r = AcceptedResource::new("ns/a", "v1", &[1, 2, 3]);
        assert_eq!(
            (r.name(), r.version(), r.payload()),
            ("ns/a", "v1", &[1, 2, 3][..])
        );
        let empty = AcceptedResource::new("", "", &[]);
        assert_eq!((empty.name(), empty.version()), ("", ""));
        assert!(empty.payload().is_empty());
    }

    #[test]
    fn a_clone_is_isolated_from_later_changes() {
        let mut map = ResourceMap::default();
        for i in 0..500 {
            map.insert(AcceptedResource::new(&format!("r{i}"), "v1", &[0]));
        }
        let published = map.clone();
        map.insert(AcceptedResource::new("r7", "v2", &[1]));
        map.insert(AcceptedResource::new("new", "v1", &[2]));
        assert!(map.remove("r9").is_some());
        assert!(map.remove("never").is_none());
        assert_eq!(published.len(), 500);
        assert_eq!(
            published.get("r7").map(AcceptedResource::version),
            Some("v1")
        );
        assert!(published.contains("r9") && !published.contains("new"));
        assert_eq!(map.len(), 500);
        assert_eq!(map.get("r7").map(AcceptedResource::payload), Some(&[1][..]));
        assert!(!map.contains("r9") && map.contains("new"));
        assert_ne!(map, published);
        assert_eq!(map.iter().count(), 500);
    }
}
