use super::*;

fn name(s: &str) -> ServiceName {
    ServiceName::try_from(s).unwrap()
}

#[test]
fn heartbeat_keeps_the_original_shape() {
    assert_eq!(
        register_list_target("127.0.0.1:1111", &name("add")),
        "/registerList?ip=127.0.0.1:1111"
    );
    assert_eq!(
        register_list_target("h:1", &name("mul")),
        "/registerList?ip=h:1&service=mul"
    );
}

#[test]
fn targets_of_every_request_the_roles_send() {
    let add = ServiceName::default();
    assert_eq!(service_addr_target(&add), "/serviceAddr?queryParam=add");
    assert_eq!(
        instance_path(&name("mul"), "127.0.0.1:2"),
        "/v1/services/mul/127.0.0.1:2"
    );
    assert_eq!(service_path(&add), "/v1/services/add");
    assert_eq!(
        watch_target(&add, 0, Duration::from_millis(1500)),
        "/v1/services/add?index=0&wait=1500ms&format=json"
    );
    assert_eq!(add_target(i64::MIN, 0), "/Add/-9223372036854775808/0");
}

#[test]
fn service_names_are_checked_once() {
    for bad in [
        "",
        "a b",
        "a/b",
        "a%2F",
        "é",
        &"x".repeat(MAX_SERVICE_NAME + 1),
    ] {
        assert!(ServiceName::try_from(bad).is_err(), "{bad:?}");
        assert!(ServiceName::try_from(bad.to_string()).is_err(), "{bad:?}");
    }
    for good in ["add", "A-1.b_c", &"x".repeat(MAX_SERVICE_NAME)] {
        assert_eq!(name(good).as_str(), good);
        assert_eq!(good.parse::<ServiceName>().unwrap().to_string(), good);
    }
    assert!(!BadServiceName.to_string().contains('\n'));
}

#[test]
fn a_listing_reads_back_what_was_written() {
    let probe = Some(ListedProbe {
        ok: true,
        ms_ago: 5,
    });
    let spec = Spec::parse([("tag", "v2"), ("weight", "4")], None)
        .unwrap()
        .spec;
    let a = ListedInstance {
        addr: "127.0.0.1:1",
        healthy: true,
        draining: true,
        spec: &spec,
        last_beat_ms_ago: 10,
        expires_in_ms: 14_990,
        ttl_ms: 15_000,
        picks: 3,
        last_probe: probe,
    };
    let plain = Spec::default();
    let b = ListedInstance {
        addr: "[::1]:2",
        healthy: false,
        draining: false,
        spec: &plain,
        last_probe: Some(ListedProbe {
            ok: false,
            ms_ago: 1,
        }),
        ..a
    };
    let body = encode_listing("add", 12, [a, b]);
    assert!(
        body.contains(r#""last_probe":{"ok":true,"ms_ago":5}"#),
        "{body}"
    );
    let read = decode_listing(body.as_bytes()).unwrap();
    assert_eq!(read.service, "add");
    assert_eq!(read.index, 12);
    assert_eq!(
        read.instances,
        [
            ("127.0.0.1:1".to_string(), true),
            ("[::1]:2".to_string(), false)
        ]
    );
    let (sa, sb) = (&read.specs[0], &read.specs[1]);
    assert_eq!((&sa.spec, sa.draining), (&spec, true));
    assert_eq!((&sb.spec, sb.draining), (&plain, false));
    // A listing from before issue 11 (no spec fields) reads as the defaults.
    let old = br#"{"service":"add","index":1,"instances":[{"addr":"h:1","health":"healthy"}]}"#;
    assert_eq!(decode_listing(old).unwrap().specs, [ListedSpec::default()]);
    let empty = decode_listing(encode_listing("mul", 0, []).as_bytes()).unwrap();
    assert_eq!((empty.index, empty.instances.len()), (0, 0));
}

#[test]
fn what_is_not_a_listing_is_refused() {
    for body in [
        &b""[..],
        b"# add index=1 live=0 total=0\n",
        b"{}",
        br#"{"service":"add","index":-1,"instances":[]}"#,
        br#"{"service":"add","index":1,"instances":[{"addr":"h:1"}]}"#,
        br#"{"service":"add","index":1,"instances":[{"health":"healthy"}]}"#,
    ] {
        assert!(
            decode_listing(body).is_err(),
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
}

mod register {
    use crate::proto::*;
    use crate::spec::{Check, Spec};

    #[test]
    fn a_registration_target_reads_back_as_the_same_spec() {
        let web = ServiceName::try_from("web").unwrap();
        let spec = Spec {
            check: Check::Http("/a?b=c&d#e%f+g".into()),
            tags: vec!["v 2".into(), "x=y&z".into(), "~!*'()".into()],
            meta: vec![("k".into(), "v+1 %2:x".into())],
            weight: 1000,
        };
        let target = register_target(&web, "[::1]:80", &spec, Duration::from_millis(1500));
        let (path, query) = target.split_once('?').unwrap();
        assert_eq!(path, "/v1/services/web/[::1]:80");
        let pairs: Vec<(String, String)> = query
            .split('&')
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap();
                let v = crate::http::url::percent_decode(v, true).unwrap();
                (k.to_string(), v.into_owned())
            })
            .collect();
        assert_eq!(pairs[0], ("ttl".to_string(), "1500ms".to_string()));
        assert_eq!(Spec::parse(pairs, None).unwrap().spec, spec);
        assert!(target.bytes().all(|b| b.is_ascii_graphic()), "{target}");
        let plain = register_target(&web, "h:1", &Spec::default(), Duration::from_secs(15));
        assert_eq!(
            plain,
            "/v1/services/web/h:1?ttl=15s&check=http:/aliveCheck&weight=1"
        );
        assert_eq!(drain_path(&web, "h:1"), "/v1/services/web/h:1/drain");
    }
}
