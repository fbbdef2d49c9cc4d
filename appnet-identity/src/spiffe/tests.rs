use super::*;
use proptest::prelude::*;

fn err(s: &str) -> SpiffeIdError {
    match SpiffeId::new(s) {
        Ok(id) => panic!("{s:?} parsed as {id}"),
        Err(e) => e,
    }
}

#[test]
fn valid_ids_round_trip() {
    for s in [
        "spiffe://trustdomain",
        "spiffe://trustdomain/path",
        "spiffe://trustdomain/path1/path2",
        "spiffe://a-b_c.d0/Upper/CASE.in-path_ok",
        "spiffe://cluster.local/ns/default/sa/web",
        "spiffe://td/...", // three dots is an ordinary segment
        "spiffe://td/.a",
    ] {
        let id = SpiffeId::new(s).unwrap();
        assert_eq!(id.to_string(), s);
        assert_eq!(id.to_string().parse::<SpiffeId>().unwrap(), id);
    }
}

#[test]
fn accessors() {
    let id = SpiffeId::new("spiffe://example.org/ns/prod/sa/api").unwrap();
    assert_eq!(id.trust_domain(), &TrustDomain::new("example.org").unwrap());
    assert_eq!(id.path(), "/ns/prod/sa/api");
    assert_eq!(id.ns(), Some("prod"));
    assert_eq!(id.sa(), Some("api"));
    assert_eq!(id.principal(), "example.org/ns/prod/sa/api");
    assert!(!id.is_root());
    let other = SpiffeId::new("spiffe://example.org/ns/prod/sa/api/extra").unwrap();
    assert_eq!((other.ns(), other.sa()), (None, None));
    let root = SpiffeId::new("spiffe://example.org").unwrap();
    assert!(root.is_root());
    assert_eq!(root.path(), "");
    assert_eq!(root.segments().count(), 0);
    assert_eq!(root, root.trust_domain().id());
}

#[test]
fn istio_constructor() {
    let td = TrustDomain::new("cluster.local").unwrap();
    let id = SpiffeId::istio(td.clone(), "default", "bookinfo-productpage").unwrap();
    assert_eq!(
        id.to_string(),
        "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"
    );
    assert_eq!(
        SpiffeId::istio(td.clone(), "a/b", "c"),
        Err(SpiffeIdError::PathChar { ch: '/', at: 5 })
    );
    assert_eq!(
        SpiffeId::istio(td.clone(), "a", "b/c"),
        Err(SpiffeIdError::PathChar { ch: '/', at: 10 })
    );
    assert!(matches!(
        SpiffeId::istio(td.clone(), "", "c"),
        Err(SpiffeIdError::EmptySegment { at: 4 })
    ));
    assert!(matches!(
        SpiffeId::istio(td, "ns", "s a"),
        Err(SpiffeIdError::PathChar { ch: ' ', .. })
    ));
}

#[test]
fn scheme_rules() {
    assert_eq!(err(""), SpiffeIdError::Empty);
    assert_eq!(err("http://td/path"), SpiffeIdError::WrongScheme);
    assert_eq!(err("SPIFFE://td/path"), SpiffeIdError::WrongScheme);
    assert_eq!(err("spiffe:/td/path"), SpiffeIdError::WrongScheme);
    assert_eq!(err("spiffe:td"), SpiffeIdError::WrongScheme);
    assert_eq!(err("td/path"), SpiffeIdError::WrongScheme);
    assert_eq!(err("spiffe://"), SpiffeIdError::MissingTrustDomain);
    assert_eq!(err("spiffe:///path"), SpiffeIdError::MissingTrustDomain);
}

#[test]
fn trust_domain_rules() {
    assert_eq!(
        err("spiffe://Td/path"),
        SpiffeIdError::TrustDomainChar { ch: 'T', at: 9 }
    );
    assert_eq!(err("spiffe://td:8080/p"), SpiffeIdError::Port { at: 11 });
    assert_eq!(
        err("spiffe://user@td/p"),
        SpiffeIdError::UserInfo { at: 13 }
    );
    assert_eq!(
        err("spiffe://user:pass@td/p"),
        SpiffeIdError::Port { at: 13 }
    );
    assert_eq!(
        err("spiffe://t%41d/p"),
        SpiffeIdError::PercentEncoded { at: 10 }
    );
    assert_eq!(err("spiffe://td?x=1"), SpiffeIdError::Query { at: 11 });
    assert_eq!(err("spiffe://td#frag"), SpiffeIdError::Fragment { at: 11 });
    assert_eq!(
        err("spiffe://t d/p"),
        SpiffeIdError::TrustDomainChar { ch: ' ', at: 10 }
    );
    assert_eq!(
        err("spiffe://tä/p"),
        SpiffeIdError::TrustDomainChar { ch: 'ä', at: 10 }
    );
    let long = "a".repeat(256);
    assert_eq!(
        err(&format!("spiffe://{long}/p")),
        SpiffeIdError::TrustDomainTooLong { len: 256 }
    );
    let ok = "a".repeat(255);
    assert!(SpiffeId::new(&format!("spiffe://{ok}/p")).is_ok());
}

#[test]
fn path_rules() {
    assert_eq!(err("spiffe://td/"), SpiffeIdError::TrailingSlash);
    assert_eq!(err("spiffe://td/path/"), SpiffeIdError::TrailingSlash);
    assert_eq!(
        err("spiffe://td//path"),
        SpiffeIdError::EmptySegment { at: 12 }
    );
    assert_eq!(
        err("spiffe://td/a//b"),
        SpiffeIdError::EmptySegment { at: 14 }
    );
    assert_eq!(
        err("spiffe://td/./a"),
        SpiffeIdError::DotSegment {
            segment: ".",
            at: 12
        }
    );
    assert_eq!(
        err("spiffe://td/a/.."),
        SpiffeIdError::DotSegment {
            segment: "..",
            at: 14
        }
    );
    assert_eq!(
        err("spiffe://td/p%20q"),
        SpiffeIdError::PercentEncoded { at: 13 }
    );
    assert_eq!(err("spiffe://td/p?q=1"), SpiffeIdError::Query { at: 13 });
    assert_eq!(err("spiffe://td/p#f"), SpiffeIdError::Fragment { at: 13 });
    assert_eq!(
        err("spiffe://td/p$q"),
        SpiffeIdError::PathChar { ch: '$', at: 13 }
    );
    assert_eq!(
        err("spiffe://td/p q"),
        SpiffeIdError::PathChar { ch: ' ', at: 13 }
    );
    assert_eq!(
        err("spiffe://td/\u{1F600}"),
        SpiffeIdError::PathChar {
            ch: '\u{1F600}',
            at: 12
        }
    );
}

#[test]
fn length_limit() {
    let prefix = "spiffe://td/";
    let at_limit = format!("{prefix}{}", "a".repeat(MAX_SPIFFE_ID_LEN - prefix.len()));
    assert_eq!(at_limit.len(), MAX_SPIFFE_ID_LEN);
    assert!(SpiffeId::new(&at_limit).is_ok());
    let over = format!("{at_limit}a");
    assert_eq!(err(&over), SpiffeIdError::TooLong { len: 2049 });
    let td = TrustDomain::new("td").unwrap();
    assert!(matches!(
        SpiffeId::from_parts(td, &format!("/{}", "a".repeat(2100))),
        Err(SpiffeIdError::TooLong { .. })
    ));
}

#[test]
fn trust_domain_parse() {
    assert_eq!(
        TrustDomain::new("cluster.local").unwrap().as_str(),
        "cluster.local"
    );
    assert_eq!(
        TrustDomain::new("").unwrap_err(),
        SpiffeIdError::MissingTrustDomain
    );
    assert_eq!(
        TrustDomain::new("spiffe://td").unwrap_err(),
        SpiffeIdError::Port { at: 6 }
    );
    assert_eq!(
        TrustDomain::new("Cluster").unwrap_err(),
        SpiffeIdError::TrustDomainChar { ch: 'C', at: 0 }
    );
    assert_eq!(
        TrustDomain::new("a/b").unwrap_err(),
        SpiffeIdError::TrustDomainChar { ch: '/', at: 1 }
    );
}

#[test]
fn errors_say_what_and_where() {
    let msg = err("spiffe://td/p$q").to_string();
    assert!(msg.contains("'$'") && msg.contains("13"), "{msg}");
}

#[test]
fn serde_round_trip() {
    let id = SpiffeId::new("spiffe://td/a/b").unwrap();
    let json = serde_json::to_string(&id).unwrap();
    assert_eq!(json, "\"spiffe://td/a/b\"");
    assert_eq!(serde_json::from_str::<SpiffeId>(&json).unwrap(), id);
    assert!(serde_json::from_str::<SpiffeId>("\"spiffe://td/\"").is_err());
}

fn segment() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._-]{1,12}".prop_filter("dot segments are invalid", |s| s != "." && s != "..")
}

prop_compose! {
    fn valid_id()(td in "[a-z0-9._-]{1,40}", segs in prop::collection::vec(segment(), 0..6)) -> String {
        let mut s = format!("spiffe://{td}");
        for seg in segs { s.push('/'); s.push_str(&seg); }
        s
    }
}

proptest! {
    #[test]
    fn parse_display_round_trip(s in valid_id()) {
        let id = SpiffeId::new(&s).unwrap();
        prop_assert_eq!(id.to_string(), s.clone());
        prop_assert_eq!(SpiffeId::new(&id.to_string()).unwrap(), id);
    }

    #[test]
    fn arbitrary_strings_never_panic(s in ".{0,300}") {
        if let Ok(id) = SpiffeId::new(&s) {
            prop_assert_eq!(id.to_string(), s.clone());
        }
        let _ = TrustDomain::new(&s);
    }

    #[test]
    fn spiffe_like_strings_never_panic(tail in "[a-zA-Z0-9./%:@?#_ -]{0,80}") {
        let s = format!("spiffe://{tail}");
        if let Ok(id) = SpiffeId::new(&s) {
            prop_assert_eq!(id.to_string(), s);
        }
    }
}
