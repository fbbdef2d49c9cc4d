use super::*;

#[test]
fn authority_forms() {
    assert_eq!(
        "10.0.0.1:80".parse::<Authority>().unwrap(),
        Authority::Addr("10.0.0.1:80".parse().unwrap())
    );
    let v6: Authority = "[fd00::1]:443".parse().unwrap();
    assert_eq!(v6.to_string(), "[fd00::1]:443");
    assert_eq!(
        "Reviews.Default.svc.cluster.local:9080"
            .parse::<Authority>()
            .unwrap(),
        Authority::Host {
            host: "reviews.default.svc.cluster.local".into(),
            port: 9080
        }
    );
    for bad in [
        "",
        "10.0.0.1",
        "10.0.0.1:0",
        "10.0.0.1:99999",
        "host",
        "host:",
        ":80",
        "fd00::1:80",
        "[fd00::1:80",
        "bad host:80",
        "-x.example:80",
        "a..b:80",
        "user@host:80",
    ] {
        let err = bad.parse::<Authority>().unwrap_err();
        assert!(matches!(err, WireError::Authority { .. }), "{bad:?}: {err}");
    }
}

#[test]
fn baggage_round_trip_in_istio_order() {
    let b = Baggage {
        cluster: Some("c1".into()),
        namespace: Some("default".into()),
        workload_kind: Some("deployment".into()),
        workload_name: Some("web-v1".into()),
        service_name: Some("web".into()),
        service_version: Some("v1".into()),
        region: Some("eu-west1".into()),
        zone: Some("eu-west1-b".into()),
    };
    let text = b.encode();
    assert_eq!(
        text,
        "k8s.cluster.name=c1,k8s.namespace.name=default,k8s.deployment.name=web-v1,\
         service.name=web,service.version=v1,cloud.region=eu-west1,\
         cloud.availability_zone=eu-west1-b"
    );
    assert_eq!(text.parse::<Baggage>().unwrap(), b);
}

#[test]
fn baggage_escapes_and_tolerates() {
    let b = Baggage {
        service_name: Some("a b,c;d%".into()),
        ..Baggage::default()
    };
    let text = b.encode();
    assert_eq!(text, "service.name=a%20b%2Cc%3Bd%25");
    assert_eq!(text.parse::<Baggage>().unwrap(), b);
    // Whitespace, properties and unknown keys are fine.
    let parsed: Baggage = " k8s.pod.name = p1 ;prop=1 , other.key=x,,k8s.cluster.name=c"
        .parse()
        .unwrap();
    assert_eq!(parsed.workload_kind.as_deref(), Some("pod"));
    assert_eq!(parsed.workload_name.as_deref(), Some("p1"));
    assert_eq!(parsed.cluster.as_deref(), Some("c"));
    for bad in ["novalue", "=x", "service.name=%zz", "service.name=%f"] {
        assert!(
            matches!(bad.parse::<Baggage>(), Err(WireError::Baggage { .. })),
            "{bad}"
        );
    }
    assert!(Baggage::default().is_empty());
}

#[test]
fn traceparent_round_trip_and_rejects() {
    let s = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let tp: TraceParent = s.parse().unwrap();
    assert_eq!(tp.flags, 1);
    assert_eq!(tp.to_string(), s);
    for bad in [
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
    ] {
        assert!(bad.parse::<TraceParent>().is_err(), "{bad:?}");
    }
}

#[test]
fn forwarded_for_forms() {
    let v4: SocketAddr = "10.1.2.3:4000".parse().unwrap();
    let v6: SocketAddr = "[fd00::7]:80".parse().unwrap();
    assert_eq!(forwarded_for(v4), "for=\"10.1.2.3:4000\"");
    assert_eq!(forwarded_for(v6), "for=\"[fd00::7]:80\"");
    assert_eq!(parse_forwarded_for(&forwarded_for(v4)).unwrap(), v4);
    assert_eq!(parse_forwarded_for(&forwarded_for(v6)).unwrap(), v6);
    assert_eq!(
        parse_forwarded_for("proto=https;For=10.0.0.9, for=1.1.1.1").unwrap(),
        "10.0.0.9:0".parse::<SocketAddr>().unwrap()
    );
    assert!(parse_forwarded_for("by=1.2.3.4").is_err());
    assert!(parse_forwarded_for("for=unknown").is_err());
}

#[test]
fn connect_request_headers() {
    let tp: TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        .parse()
        .unwrap();
    let req = ConnectRequest::new("svc.ns.svc.cluster.local:80".parse().unwrap())
        .baggage(Baggage {
            namespace: Some("ns".into()),
            ..Baggage::default()
        })
        .forwarded_for("10.0.0.3:5555".parse().unwrap())
        .traceparent(tp)
        .forwarded_network("net-a")
        .to_http()
        .unwrap();
    assert_eq!(req.method(), Method::CONNECT);
    assert_eq!(
        req.uri().authority().unwrap(),
        "svc.ns.svc.cluster.local:80"
    );
    assert_eq!(req.uri().scheme(), None);
    let h = req.headers();
    assert_eq!(h[&BAGGAGE], "k8s.namespace.name=ns");
    assert_eq!(h[&FORWARDED], "for=\"10.0.0.3:5555\"");
    assert_eq!(h[&TRACEPARENT], tp.to_string().as_str());
    assert_eq!(h[&X_FORWARDED_NETWORK], "net-a");
    let bad = ConnectRequest::new("1.2.3.4:5".parse().unwrap())
        .forwarded_network("line\nbreak")
        .to_http();
    assert_eq!(
        bad.unwrap_err(),
        WireError::HeaderValue {
            header: "x-forwarded-network"
        }
    );
}

#[test]
fn inbound_head_checks() {
    let parts = |method: Method, uri: &str| {
        let mut r = Request::new(());
        *r.method_mut() = method;
        *r.uri_mut() = uri.parse().unwrap();
        r.into_parts().0
    };
    assert_eq!(
        parse_inbound(parts(Method::GET, "http://1.2.3.4:80/")).unwrap_err(),
        Refusal::MethodNotAllowed
    );
    assert_eq!(
        parse_inbound(parts(Method::CONNECT, "1.2.3.4")).unwrap_err(),
        Refusal::BadRequest
    );
    assert_eq!(
        parse_inbound(parts(Method::CONNECT, "1.2.3.4:0")).unwrap_err(),
        Refusal::BadRequest
    );
    let ok = parse_inbound(parts(Method::CONNECT, "1.2.3.4:80")).unwrap();
    assert_eq!(ok.authority.port(), 80);
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn baggage_values_round_trip(v in "\\PC{0,40}") {
            let b = Baggage { service_name: Some(v), ..Baggage::default() };
            let text = b.encode();
            prop_assert!(HeaderValue::try_from(text.as_str()).is_ok());
            prop_assert_eq!(text.parse::<Baggage>().unwrap(), b);
        }

        #[test]
        fn parsers_never_panic(s in "\\PC{0,80}") {
            let _ = s.parse::<Authority>();
            let _ = s.parse::<Baggage>();
            let _ = s.parse::<TraceParent>();
            let _ = parse_forwarded_for(&s);
        }
    }
}
