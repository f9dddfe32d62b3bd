//! Any service, not only the adder (issue 11), against a real registry process on port 0 with short
//! probe intervals: per-instance checks (`tcp`, `none`, `http:/PATH`), tag filters on both lookup
//! routes, weighted picks, drain, the JSON body, and what listings and `/metrics` show. Every wait
//! polls with a deadline ([`eventually`]); nothing sleeps to let time pass except where a lease must.

mod common;

use common::parse_response;
use common::procs::{eventually, get, Proc};
use mini::jsonread::{self, Value};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Probes every 100 ms with a 300 ms timeout.
const FAST: &[&str] = &["--probe-interval", "100ms", "--probe-timeout", "300ms"];

/// `METHOD target` with `body`, on a fresh connection: status and body.
fn call(registry: &str, method: &str, target: &str, body: &str) -> (u16, String) {
    let resp = common::doors::request(registry, method, target, "", body);
    (resp.status, resp.text().to_string())
}

/// `PUT /v1/services/SERVICE/ADDR?QUERY`, which must answer 200.
fn put(registry: &str, service: &str, addr: &str, query: &str) {
    let (status, body) = call(
        registry,
        "PUT",
        &format!("/v1/services/{service}/{addr}?{query}"),
        "",
    );
    assert_eq!(status, 200, "{query}: {body}");
}

/// The JSON listing's instance `addr` of `service`, if listed.
fn instance(registry: &str, service: &str, addr: &str) -> Option<Value> {
    let (status, body) = get(registry, &format!("/v1/services/{service}?format=json"));
    assert_eq!(status, 200, "{body}");
    let doc = jsonread::parse(body.as_bytes()).expect("a JSON listing");
    let items = doc.get("instances")?.as_array()?.to_vec();
    items
        .into_iter()
        .find(|i| i.get("addr").and_then(Value::as_str) == Some(addr))
}

fn field<'a>(v: &'a Value, name: &str) -> &'a Value {
    v.get(name).unwrap_or_else(|| panic!("no {name} in {v:?}"))
}

fn health(registry: &str, service: &str, addr: &str) -> Option<String> {
    instance(registry, service, addr).map(|i| field(&i, "health").as_str().unwrap().to_string())
}

/// Whether the instance's last probe passed (`None`: never probed or not listed).
fn probed_ok(registry: &str, service: &str, addr: &str) -> Option<bool> {
    let i = instance(registry, service, addr)?;
    field(&i, "last_probe").get("ok").and_then(Value::as_bool)
}

/// A free loopback address nothing listens on (bound, read, released).
fn nowhere() -> String {
    format!("127.0.0.1:{}", common::procs::free_port())
}

/// A loopback listener on its own thread handing each connection to `answer`; its address.
fn serve_each(answer: impl Fn(TcpStream) + Send + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    std::thread::spawn(move || listener.incoming().map_while(Result::ok).for_each(answer));
    addr
}

/// One kept-alive connection for many lookups.
struct KeepAlive {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl KeepAlive {
    fn open(addr: &str) -> KeepAlive {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        KeepAlive {
            stream,
            buf: Vec::new(),
        }
    }

    fn get(&mut self, target: &str) -> (u16, String) {
        let req = format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n");
        self.stream.write_all(req.as_bytes()).expect("write");
        loop {
            if let Some((resp, used)) = parse_response(&self.buf) {
                self.buf.drain(..used);
                return (
                    resp.status,
                    String::from_utf8_lossy(&resp.body).into_owned(),
                );
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).expect("read");
            assert!(n > 0, "the registry closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// How many of `n` lookups of `target` returned each address.
    fn tally(&mut self, target: &str, n: usize) -> HashMap<String, usize> {
        let mut seen = HashMap::new();
        for _ in 0..n {
            let (status, addr) = self.get(target);
            assert_eq!(status, 200, "{addr}");
            *seen.entry(addr).or_default() += 1;
        }
        seen
    }
}

#[test]
fn a_raw_tcp_listener_is_healthy_with_check_tcp_and_excluded_with_the_default_check() {
    let reg = Proc::registry(FAST);
    // Speaks no HTTP: accepts, writes a line that is no HTTP response, and closes.
    let raw = serve_each(|mut conn| {
        let _ = conn.write_all(b"SSH-2.0-not-http\r\n");
    });
    put(&reg.addr, "tcp", &raw, "check=tcp");
    put(&reg.addr, "plain", &raw, "");
    eventually("the tcp check passes and the HTTP probe fails", || {
        probed_ok(&reg.addr, "tcp", &raw) == Some(true)
            && health(&reg.addr, "plain", &raw).as_deref() == Some("excluded")
    });
    assert_eq!(health(&reg.addr, "tcp", &raw).as_deref(), Some("healthy"));
    let tcp = instance(&reg.addr, "tcp", &raw).unwrap();
    assert_eq!(field(&tcp, "check").as_str(), Some("tcp"));
    assert_eq!(
        get(&reg.addr, "/serviceAddr?queryParam=tcp"),
        (200, raw.clone())
    );
    assert_eq!(get(&reg.addr, "/serviceAddr?queryParam=plain").0, 400);
    // Nothing listening: a refused connect excludes it as well.
    let gone = nowhere();
    put(&reg.addr, "tcp", &gone, "check=tcp");
    eventually("a refused connect excludes", || {
        health(&reg.addr, "tcp", &gone).as_deref() == Some("excluded")
    });
    eventually("the log line", || {
        reg.logged(&format!("tcp {gone} excluded: probe failed: TCP connect"))
    });
}

#[test]
fn an_http_check_probes_its_path_and_any_2xx_is_healthy() {
    let reg = Proc::registry(FAST);
    // Answers 204 on /healthz and 404 elsewhere (so the default /aliveCheck fails).
    let web = serve_each(|mut conn| {
        let mut head = [0u8; 1024];
        let n = conn.read(&mut head).unwrap_or(0);
        let status = if head[..n].starts_with(b"GET /healthz?deep=1 ") {
            204
        } else {
            404
        };
        let reply =
            format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        let _ = conn.write_all(reply.as_bytes());
    });
    put(&reg.addr, "web", &web, "check=http:/healthz%3Fdeep=1");
    put(&reg.addr, "old", &web, "");
    eventually(
        "GET /healthz?deep=1 answered 204: healthy; /aliveCheck 404: excluded",
        || {
            probed_ok(&reg.addr, "web", &web) == Some(true)
                && health(&reg.addr, "old", &web).as_deref() == Some("excluded")
        },
    );
    eventually("the log line", || {
        reg.logged(&format!(
            "old {web} excluded: probe failed: answered 404 to GET /aliveCheck"
        ))
    });
}

#[test]
fn check_none_is_healthy_without_a_probe_and_gone_a_ttl_after_its_last_beat() {
    let reg = Proc::registry(FAST);
    let (quiet, control) = (nowhere(), nowhere());
    put(&reg.addr, "web", &quiet, "check=none&ttl=800ms");
    put(&reg.addr, "web", &control, "ttl=60s");
    // Probes run (the control, with nothing listening, is excluded by one) ...
    eventually("the control is probed and excluded", || {
        health(&reg.addr, "web", &control).as_deref() == Some("excluded")
    });
    // ... and the check=none instance, where nothing listens either, was never probed.
    let mut last_beat = Instant::now();
    for _ in 0..5 {
        let i = instance(&reg.addr, "web", &quiet).expect("still listed while it beats");
        assert_eq!(field(&i, "health").as_str(), Some("healthy"));
        assert_eq!(field(&i, "last_probe"), &Value::Null);
        assert_eq!(field(&i, "check").as_str(), Some("none"));
        assert_eq!(
            get(&reg.addr, "/serviceAddr?queryParam=web"),
            (200, quiet.clone())
        );
        put(&reg.addr, "web", &quiet, "check=none&ttl=800ms");
        last_beat = Instant::now();
        eventually("a probe round goes by", || {
            probed_ok(&reg.addr, "web", &control) == Some(false)
        });
    }
    // It stops beating: gone once its lease runs out, not before.
    eventually("the lease runs out", || {
        instance(&reg.addr, "web", &quiet).is_none()
    });
    assert!(
        last_beat.elapsed() >= Duration::from_millis(800),
        "gone before its TTL"
    );
    assert_eq!(get(&reg.addr, "/serviceAddr?queryParam=web").0, 400);
}

#[test]
fn tag_filters_pick_and_list_only_instances_carrying_every_tag() {
    let reg = Proc::registry(&["--probe-interval", "60s"]);
    let (a, b, c) = ("127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003");
    put(&reg.addr, "web", a, "tag=v2&tag=eu");
    put(&reg.addr, "web", b, "tag=v2");
    put(&reg.addr, "web", c, "");
    let mut conn = KeepAlive::open(&reg.addr);
    let only = |conn: &mut KeepAlive, target: &str| {
        let seen = conn.tally(target, 100);
        let mut addrs: Vec<String> = seen.into_keys().collect();
        addrs.sort();
        addrs
    };
    assert_eq!(only(&mut conn, "/serviceAddr?queryParam=web&tag=eu"), [a]);
    assert_eq!(
        only(&mut conn, "/serviceAddr?queryParam=web&tag=v2&tag=eu"),
        [a]
    );
    assert_eq!(
        only(&mut conn, "/serviceAddr?queryParam=web&tag=v2"),
        [a, b]
    );
    assert_eq!(only(&mut conn, "/serviceAddr?queryParam=web"), [a, b, c]);
    for none in ["tag=v3", "tag=eu&tag=v3", "tag="] {
        let target = format!("/serviceAddr?queryParam=web&{none}");
        assert_eq!(
            conn.get(&target),
            (400, "no service availble".to_string()),
            "{none}"
        );
    }
    let (status, text) = get(&reg.addr, "/v1/services/web?tag=v2");
    assert_eq!(status, 200);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].contains(" live=2 total=2 "), "{text}");
    assert!(lines[1].starts_with(a) && lines[2].starts_with(b), "{text}");
    assert!(
        lines[1].ends_with(" weight=1 check=http:/aliveCheck tags=v2,eu"),
        "{text}"
    );
    let (_, json) = get(&reg.addr, "/v1/services/web?tag=eu&format=json");
    let listing = mini::proto::decode_listing(json.as_bytes()).expect("listing");
    assert_eq!(listing.instances, [(a.to_string(), true)]);
    assert_eq!(listing.specs[0].spec.tags, ["v2", "eu"]);
    // None matching is what an empty service gets: an empty listing, index and all.
    let (status, text) = get(&reg.addr, "/v1/services/web?tag=v3");
    assert_eq!(status, 200);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains(" live=0 total=0 "), "{text}");
}

#[test]
fn weights_one_and_four_get_a_fifth_and_four_fifths_of_10_000_lookups() {
    let reg = Proc::registry(&["--probe-interval", "60s"]);
    let (light, heavy) = ("127.0.0.1:7101", "127.0.0.1:7104");
    put(&reg.addr, "web", light, "weight=1");
    put(&reg.addr, "web", heavy, "weight=4");
    let seen = KeepAlive::open(&reg.addr).tally("/serviceAddr?queryParam=web", 10_000);
    // 20 % ± 2 % and 80 % ± 2 %.
    assert!((1_800..=2_200).contains(&seen[light]), "{seen:?}");
    assert!((7_800..=8_200).contains(&seen[heavy]), "{seen:?}");
    let i = instance(&reg.addr, "web", heavy).unwrap();
    assert_eq!(field(&i, "weight").as_i64(), Some(4));
}

#[test]
fn a_drain_excludes_from_picks_at_once_keeps_the_instance_listed_and_delete_undoes_it() {
    let reg = Proc::registry(&["--probe-interval", "60s"]);
    let (a, b) = ("127.0.0.1:7201", "127.0.0.1:7202");
    put(&reg.addr, "web", a, "");
    put(&reg.addr, "web", b, "");
    let mut conn = KeepAlive::open(&reg.addr);
    assert_eq!(conn.tally("/serviceAddr?queryParam=web", 200).len(), 2);
    let drain = format!("/v1/services/web/{a}/drain");
    assert_eq!(
        call(&reg.addr, "POST", &drain, ""),
        (200, format!("{a} draining in web\n"))
    );
    // At once: the very next lookups never return it.
    let seen = conn.tally("/serviceAddr?queryParam=web", 500);
    assert_eq!(seen.keys().collect::<Vec<_>>(), [b], "{seen:?}");
    let i = instance(&reg.addr, "web", a).expect("still listed");
    assert_eq!(field(&i, "draining"), &Value::Bool(true));
    assert_eq!(field(&i, "health").as_str(), Some("healthy"));
    let (_, text) = get(&reg.addr, "/v1/services/web");
    assert!(text.contains(" live=1 total=2 draining=1\n"), "{text}");
    assert!(
        text.contains(&format!("{a} healthy ")) && text.contains(" draining=yes "),
        "{text}"
    );
    let (_, summary) = get(&reg.addr, "/v1/services");
    assert!(summary.starts_with("web live=1 total=2 index=") && summary.ends_with(" draining=1\n"));
    let (_, metrics) = get(&reg.addr, "/metrics");
    for line in [
        "mini_instances{service=\"web\",health=\"healthy\"} 1",
        "mini_instances{service=\"web\",health=\"excluded\"} 0",
        "mini_instances{service=\"web\",health=\"draining\"} 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in\n{metrics}"
        );
    }
    // A renewal does not undo it; draining both leaves nothing to pick.
    put(&reg.addr, "web", a, "");
    let drain_b = format!("/v1/services/web/{b}/drain");
    assert_eq!(conn.tally("/serviceAddr?queryParam=web", 100).len(), 1);
    assert_eq!(call(&reg.addr, "POST", &drain_b, "").0, 200);
    assert_eq!(
        conn.get("/serviceAddr?queryParam=web"),
        (400, "no service availble".to_string())
    );
    // DELETE on the drain path puts it back at once.
    assert_eq!(
        call(&reg.addr, "DELETE", &drain, ""),
        (200, format!("{a} back in rotation in web\n"))
    );
    assert_eq!(
        conn.get("/serviceAddr?queryParam=web"),
        (200, a.to_string())
    );
    eventually("the drain and undrain log lines", || {
        reg.logged(&format!("web {a} drained")) && reg.logged(&format!("web {a} undrained"))
    });
    // Deregistration wins: gone, and a drain cannot bring it back.
    assert_eq!(
        call(&reg.addr, "DELETE", &format!("/v1/services/web/{b}"), "").0,
        200
    );
    assert_eq!(call(&reg.addr, "POST", &drain_b, "").0, 404);
    assert!(instance(&reg.addr, "web", b).is_none());
}

#[test]
fn a_json_body_registers_the_same_fields_the_query_wins_and_a_spec_change_is_a_change() {
    let reg = Proc::registry(&["--probe-interval", "60s"]);
    let addr = "127.0.0.1:7301";
    let target = format!("/v1/services/web/{addr}");
    let body = r#"{"check":"tcp","tags":["v2"],"meta":{"zone":"a"},"weight":5,"ttl":"15s"}"#;
    assert_eq!(call(&reg.addr, "PUT", &target, body).0, 200);
    let i = instance(&reg.addr, "web", addr).unwrap();
    assert_eq!(field(&i, "check").as_str(), Some("tcp"));
    assert_eq!(
        field(&i, "tags"),
        &Value::Array(vec![Value::String("v2".into())])
    );
    assert_eq!(
        field(&i, "meta").get("zone").and_then(Value::as_str),
        Some("a")
    );
    assert_eq!(field(&i, "weight").as_i64(), Some(5));
    assert_eq!(field(&i, "ttl_ms").as_i64(), Some(15_000));
    let index = |reg: &str| {
        let (_, text) = get(reg, "/v1/services/web");
        let head = text.lines().next().unwrap_or_default().to_string();
        head.split(' ')
            .find_map(|w| w.strip_prefix("index=")?.parse::<u64>().ok())
            .unwrap()
    };
    let before = index(&reg.addr);
    // The same again: no change. The original heartbeat: a renewal that keeps the PUT's spec.
    assert_eq!(call(&reg.addr, "PUT", &target, body).0, 200);
    let beat = format!("/registerList?ip={addr}&service=web");
    assert_eq!(
        call(&reg.addr, "POST", &beat, ""),
        (200, format!("{addr} registered"))
    );
    assert_eq!(index(&reg.addr), before, "a renewal moved the index");
    assert_eq!(
        field(&instance(&reg.addr, "web", addr).unwrap(), "weight").as_i64(),
        Some(5)
    );
    // The query wins over the body: a new weight is a change, and a watcher wakes for it.
    let watch = {
        let (registry, before) = (reg.addr.clone(), before);
        std::thread::spawn(move || {
            get(
                &registry,
                &format!("/v1/services/web?index={before}&wait=60s"),
            )
        })
    };
    eventually("the watch is waiting", || {
        let (_, m) = get(&reg.addr, "/metrics");
        m.lines().any(|l| l == "mini_watchers 1")
    });
    assert_eq!(
        call(&reg.addr, "PUT", &format!("{target}?weight=7"), body).0,
        200
    );
    let (status, woken) = watch.join().expect("watch");
    assert_eq!(status, 200);
    assert!(
        woken.contains(" weight=7 check=tcp tags=v2 meta=zone:a"),
        "{woken}"
    );
    assert!(index(&reg.addr) > before);
    eventually("the log line", || {
        reg.logged(&format!(
            "web {addr} updated: weight=7 check=tcp tags=v2 meta=zone:a"
        ))
    });
}

#[test]
fn with_store_etcd_every_registry_sees_specs_weights_and_drains_and_an_old_value_reads_as_defaults()
{
    let Some(etcd) = common::etcd::Cluster::start(1) else {
        return;
    };
    let urls = etcd.urls();
    let flags = [
        "--store",
        "etcd",
        "--etcd",
        &urls,
        "--ttl",
        "2s",
        "--probe-interval",
        "60s",
    ];
    let (r1, r2) = (Proc::registry(&flags), Proc::registry(&flags));
    eventually("both registries follow etcd", || {
        get(&r1.addr, "/health").1 == "ok\n" && get(&r2.addr, "/health").1 == "ok\n"
    });
    let (light, heavy) = ("127.0.0.1:7401", "127.0.0.1:7404");
    let (status, body) = call(
        &r1.addr,
        "PUT",
        &format!("/v1/services/web/{light}?ttl=30s"),
        "",
    );
    assert_eq!(status, 200, "{body}");
    let spec = r#"{"tags":["v2"],"meta":{"zone":"a"},"weight":4,"check":"tcp","ttl":"30s"}"#;
    assert_eq!(
        call(&r1.addr, "PUT", &format!("/v1/services/web/{heavy}"), spec).0,
        200
    );
    eventually("r2 sees the spec written through r1", || {
        instance(&r2.addr, "web", heavy).is_some_and(|i| {
            field(&i, "weight").as_i64() == Some(4) && field(&i, "check").as_str() == Some("tcp")
        })
    });
    let i = instance(&r2.addr, "web", heavy).unwrap();
    assert_eq!(
        field(&i, "meta").get("zone").and_then(Value::as_str),
        Some("a")
    );
    assert_eq!(
        get(&r2.addr, "/serviceAddr?queryParam=web&tag=v2"),
        (200, heavy.to_string())
    );
    let seen = KeepAlive::open(&r2.addr).tally("/serviceAddr?queryParam=web", 2_000);
    assert!(
        (250..=550).contains(&seen[light]),
        "weights through r2: {seen:?}"
    );
    // A drain through r2 is seen by r1: never picked there either; undone the same way.
    let drain = format!("/v1/services/web/{heavy}/drain");
    assert_eq!(call(&r2.addr, "POST", &drain, "").0, 200);
    eventually("r1 sees the drain", || {
        instance(&r1.addr, "web", heavy)
            .is_some_and(|i| field(&i, "draining") == &Value::Bool(true))
    });
    let seen = KeepAlive::open(&r1.addr).tally("/serviceAddr?queryParam=web", 200);
    assert_eq!(seen.keys().collect::<Vec<_>>(), [light], "{seen:?}");
    assert_eq!(call(&r1.addr, "DELETE", &drain, "").0, 200);
    eventually("r2 sees it back in rotation", || {
        instance(&r2.addr, "web", heavy)
            .is_some_and(|i| field(&i, "draining") == &Value::Bool(false))
    });
    // A renewal through the original route keeps the spec in etcd too.
    let beat = format!("/registerList?ip={heavy}&service=web");
    assert_eq!(call(&r2.addr, "POST", &beat, "").0, 200);
    assert_eq!(
        field(&instance(&r1.addr, "web", heavy).unwrap(), "weight").as_i64(),
        Some(4)
    );
    // A value written before issue 11 (only the TTL) reads as the default spec, not draining.
    let b64 = mini::base64::encode;
    let key = b64(b"/mini/services/old/127.0.0.1:7409");
    let put = format!(
        r#"{{"key":"{key}","value":"{}"}}"#,
        b64(br#"{"ttl_ms":30000}"#)
    );
    let gateway = urls.trim_start_matches("http://");
    assert_eq!(call(gateway, "POST", "/v3/kv/put", &put).0, 200);
    for reg in [&r1, &r2] {
        eventually("the old value is read", || {
            instance(&reg.addr, "old", "127.0.0.1:7409").is_some()
        });
        let i = instance(&reg.addr, "old", "127.0.0.1:7409").unwrap();
        assert_eq!(field(&i, "check").as_str(), Some("http:/aliveCheck"));
        assert_eq!(field(&i, "weight").as_i64(), Some(1));
        assert_eq!(field(&i, "draining"), &Value::Bool(false));
        assert_eq!(field(&i, "tags"), &Value::Array(vec![]));
    }
}
