//! Aggregated streams: make-before-break ordering across types.

use appnet_xds::{Response, StreamKind, Variant, type_url};

use crate::pair::{Pair, decode};

const CDS: &str = type_url::CLUSTER;
const EDS: &str = type_url::ENDPOINT;
const LDS: &str = type_url::LISTENER;
const RDS: &str = type_url::ROUTE;

/// A client on an ADS stream with CDS/LDS wildcard and named EDS/RDS, in
/// sync with a store of one listener, route, cluster and endpoints.
fn setup(variant: Variant) -> (Pair, usize) {
    let mut p = Pair::new();
    p.insert(CDS, "old", "1");
    p.insert(EDS, "old", "1");
    p.insert(LDS, "l1", "to-old");
    p.insert(LDS, "l-old", "1");
    p.insert(RDS, "r1", "to-old");
    let c = p.connect(variant, StreamKind::Aggregated);
    let client = &mut p.conns[c].client;
    // Subscribed in the "wrong" order on purpose: the server orders.
    client.subscribe(RDS, ["r1"]).unwrap();
    client.subscribe_wildcard(LDS).unwrap();
    client.subscribe(EDS, ["old", "new"]).unwrap();
    client.subscribe_wildcard(CDS).unwrap();
    p.drive();
    (p, c)
}

/// Switches traffic from cluster "old" to "new" and drops listener "l-old".
fn switch(p: &mut Pair) {
    p.remove(LDS, "l-old");
    p.remove(CDS, "old");
    p.remove(EDS, "old");
    p.insert(RDS, "r1", "to-new");
    p.insert(LDS, "l1", "to-new");
    p.insert(EDS, "new", "1");
    p.insert(CDS, "new", "1");
}

fn short(t: &str) -> &str {
    t.rsplit('.').next().unwrap_or(t)
}

fn summary(r: &Response) -> (&str, Vec<String>, Vec<String>) {
    match r {
        Response::Sotw(r) => (
            short(&r.type_url),
            r.resources.iter().map(|a| decode(a).name).collect(),
            Vec::new(),
        ),
        Response::Delta(r) => (
            short(&r.type_url),
            r.resources.iter().map(|r| r.name.clone()).collect(),
            r.removed_resources.clone(),
        ),
    }
}

#[test]
fn initial_responses_follow_cds_eds_lds_rds() {
    for variant in [Variant::Sotw, Variant::Delta] {
        let (p, c) = setup(variant);
        let order: Vec<_> = p.conns[c].responses.iter().map(|r| summary(r).0).collect();
        assert_eq!(
            order,
            [
                "Cluster",
                "ClusterLoadAssignment",
                "Listener",
                "RouteConfiguration"
            ],
            "{variant:?}"
        );
    }
}

#[test]
fn delta_updates_go_make_before_break_with_removals_last() {
    let (mut p, c) = setup(Variant::Delta);
    let from = p.conns[c].responses.len();
    switch(&mut p);
    p.drive();
    let got: Vec<_> = p.responses_since(c, from).iter().map(summary).collect();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        got,
        [
            ("Cluster", s(&["new"]), s(&[])),
            ("ClusterLoadAssignment", s(&["new"]), s(&[])),
            ("Listener", s(&["l1"]), s(&[])),
            ("RouteConfiguration", s(&["r1"]), s(&[])),
            // Removals last, referrers first.
            ("Listener", s(&[]), s(&["l-old"])),
            ("Cluster", s(&[]), s(&["old"])),
            ("ClusterLoadAssignment", s(&[]), s(&["old"])),
        ]
    );
    assert_eq!(p.client_view(c, CDS).keys().collect::<Vec<_>>(), ["new"]);
    assert_eq!(p.client_view(c, LDS)["l1"], "to-new");
}

#[test]
fn sotw_keeps_removed_resources_until_additions_are_out() {
    let (mut p, c) = setup(Variant::Sotw);
    let from = p.conns[c].responses.len();
    switch(&mut p);
    p.drive();
    let got: Vec<_> = p.responses_since(c, from).iter().map(summary).collect();
    let names = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let types: Vec<&str> = got.iter().map(|g| g.0).collect();
    assert_eq!(
        types,
        [
            "Cluster",
            "ClusterLoadAssignment",
            "Listener",
            "RouteConfiguration",
            "Listener",
            "Cluster"
        ]
    );
    // Make: the new cluster joins while the old one stays.
    assert_eq!(got[0].1, names(&["new", "old"]));
    assert_eq!(got[2].1, names(&["l-old", "l1"]));
    // Break: the full sets without the removed ones.
    assert_eq!(got[4].1, names(&["l1"]));
    assert_eq!(got[5].1, names(&["new"]));
    assert_eq!(p.client_view(c, CDS).keys().collect::<Vec<_>>(), ["new"]);
    assert_eq!(p.client_view(c, LDS).keys().collect::<Vec<_>>(), ["l1"]);
}
