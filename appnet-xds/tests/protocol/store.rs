//! The versioned store.

use appnet_xds::{ProtocolError, ResourceStore, StreamKind, Variant, type_url};

use crate::pair::{Pair, any};

const CDS: &str = type_url::CLUSTER;

#[test]
fn versions_are_content_hashes_and_identical_inserts_change_nothing() {
    let mut s = ResourceStore::new();
    assert!(s.insert(CDS, "a", any(CDS, "a", "1")).unwrap());
    let v1 = s.get(CDS, "a").unwrap().version().to_owned();
    let g1 = s.generation();
    assert!(!s.insert(CDS, "a", any(CDS, "a", "1")).unwrap());
    assert_eq!(s.generation(), g1, "no change, no generation bump");
    assert_eq!(v1.len(), 16);
    // The same content has the same version in another store (restarts).
    let mut other = ResourceStore::new();
    other.insert(CDS, "a", any(CDS, "a", "1")).unwrap();
    assert_eq!(other.get(CDS, "a").unwrap().version(), v1);
    s.insert(CDS, "a", any(CDS, "a", "2")).unwrap();
    assert_ne!(s.get(CDS, "a").unwrap().version(), v1);
    assert_eq!(s.type_generation(CDS), s.generation());
}

#[test]
fn bad_resources_are_refused_without_side_effects() {
    let mut s = ResourceStore::new();
    for (name, payload) in [
        ("", any(CDS, "", "1")),
        ("*", any(CDS, "*", "1")),
        ("a", any(type_url::LISTENER, "a", "1")),
    ] {
        assert!(matches!(
            s.insert(CDS, name, payload),
            Err(ProtocolError::InvalidResource { .. })
        ));
    }
    assert!(s.is_empty() && s.generation() == 0);
    s.insert(CDS, "keep", any(CDS, "keep", "1")).unwrap();
    let dup = vec![
        ("x".to_owned(), any(CDS, "x", "1")),
        ("x".to_owned(), any(CDS, "x", "2")),
    ];
    assert!(s.replace_all(CDS, dup).is_err());
    assert_eq!(s.len(CDS), 1, "unchanged on error");
    assert!(
        s.replace_all(CDS, vec![("y".to_owned(), any(CDS, "y", "1"))])
            .unwrap()
    );
    assert_eq!(s.iter(CDS).map(|(n, _)| n).collect::<Vec<_>>(), ["y"]);
    assert!(!s.remove(CDS, "keep"));
}

#[test]
fn streams_behind_forgotten_tombstones_still_converge() {
    for variant in [Variant::Sotw, Variant::Delta] {
        let mut p = Pair::new();
        p.store = ResourceStore::with_tombstone_limit(1);
        for i in 0..10 {
            p.insert(CDS, &format!("c{i}"), "1");
        }
        let c = p.connect(variant, StreamKind::Aggregated);
        p.conns[c].client.subscribe_wildcard(CDS).unwrap();
        p.drive();
        for i in 0..8 {
            p.remove(CDS, &format!("c{i}"));
        }
        p.insert(CDS, "c9", "2");
        p.drive();
        assert_eq!(p.client_view(c, CDS), p.server_view(CDS), "{variant:?}");
    }
}
