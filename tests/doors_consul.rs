//! The Consul door: Debian's python3-consul (`tests/doors/python_consul.py`, run with
//! `/usr/bin/python3`) against a real registry, and raw HTTP for what a client library hides: the
//! blocking-query headers, `index`/`wait` timing, `?passing`, maintenance, TTL checks, the token,
//! `/v1/health/state`, the empty KV, and one set of instances across every door.

mod common;

use common::doors::{dig, dns_registry, port_of, program, put, request, FAST_PROBES};
use common::procs::{eventually, free_port, get, Proc};
use mini::jsonread::{self, Value};
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

/// `PUT /v1/agent/service/register` with `body`.
fn register(registry: &str, body: &str) -> (u16, String) {
    put(registry, "/v1/agent/service/register", body)
}

/// `GET target`: the parsed JSON body and the `X-Consul-Index`, checking Consul's headers.
fn consul_get(registry: &str, target: &str) -> (Value, u64) {
    let resp = request(registry, "GET", target, "", "");
    assert_eq!(resp.status, 200, "{target}: {}", resp.text());
    assert_eq!(
        resp.header("Content-Type"),
        Some("application/json"),
        "{target}"
    );
    assert_eq!(
        resp.header("X-Consul-KnownLeader"),
        Some("true"),
        "{target}"
    );
    let index: u64 = resp
        .header("X-Consul-Index")
        .unwrap_or_else(|| panic!("{target}: no X-Consul-Index"))
        .parse()
        .unwrap_or_else(|_| panic!("{target}: X-Consul-Index is not a number"));
    assert!(index > 0, "{target}: X-Consul-Index 0");
    let body = jsonread::parse(&resp.body)
        .unwrap_or_else(|e| panic!("{target}: not JSON ({e}): {}", resp.text()));
    (body, index)
}

/// `(Service.ID, Service.Port, the checks' CheckID=Status)` of each entry of a health answer.
fn health_rows(body: &Value) -> Vec<(String, i64, Vec<String>)> {
    body.as_array()
        .expect("an array")
        .iter()
        .map(|e| {
            let id = e.path(&["Service", "ID"]).and_then(Value::as_str);
            let port = e.path(&["Service", "Port"]).and_then(Value::as_i64);
            let checks = (e
                .get("Checks")
                .and_then(Value::as_array)
                .unwrap_or(&[])
                .iter())
            .map(|c| {
                let get = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("?");
                format!("{}={}", get("CheckID"), get("Status"))
            })
            .collect();
            (
                id.expect("Service.ID").to_string(),
                port.expect("Service.Port"),
                checks,
            )
        })
        .collect()
}

fn ids(body: &Value) -> Vec<String> {
    health_rows(body).into_iter().map(|(id, _, _)| id).collect()
}

#[test]
fn python_consul_registers_reads_blocks_and_deregisters() {
    let python = std::path::Path::new("/usr/bin/python3");
    let has_consul = Command::new(python)
        .args(["-c", "import consul"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_consul {
        eprintln!(
            "skipped: /usr/bin/python3 has no consul module (apt-get install python3-consul)"
        );
        return;
    }
    let registry = Proc::registry(FAST_PROBES);
    // The TCP check's target listens for the whole run; the other two ports need nothing there.
    let service = TcpListener::bind("127.0.0.1:0").expect("bind");
    let service_port = service.local_addr().unwrap().port();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/doors/python_consul.py");
    let out = Command::new(python)
        .arg(script)
        .arg("127.0.0.1")
        .arg(port_of(&registry.addr).to_string())
        .arg(service_port.to_string())
        .arg(free_port().to_string())
        .arg(free_port().to_string())
        .output()
        .expect("run python_consul.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python_consul.py: {}\n{stdout}\n{stderr}",
        out.status
    );
    let steps: Vec<&str> = stdout
        .lines()
        .map(|l| l.split(" with index").next().unwrap_or(l))
        .map(|l| l.split(" after ").next().unwrap_or(l))
        .collect();
    assert_eq!(
        steps,
        [
            "agent.self ok",
            "registered web1",
            "passing",
            "catalog.services ok",
            "blocking query returned on the change",
            "maintenance ok",
            "health.state ok",
            "kv.get ok",
            "deregistered",
            "ttl check ok",
        ],
        "{stdout}"
    );
    eventually("the log line", || registry.logged("web 127.0.0.1:"));
    drop(service);
}

#[test]
fn every_read_carries_consul_headers_and_a_mini_adder_is_a_consul_service() {
    let registry = Proc::registry(FAST_PROBES);
    let adder = Proc::adder(&registry.addr);
    eventually("the adder is healthy", || {
        common::procs::healthy(&registry.addr).len() == 1
    });
    let (status, body) = register(
        &registry.addr,
        r#"{"Name":"web","ID":"web1","Address":"127.0.0.1","Port":18001,"Tags":["v1"]}"#,
    );
    assert_eq!((status, body.as_str()), (200, ""));
    for target in [
        "/v1/agent/self",
        "/v1/status/leader",
        "/v1/catalog/services",
        "/v1/catalog/service/add",
        "/v1/catalog/service/web",
        "/v1/catalog/service/nothing",
        "/v1/health/service/add",
        "/v1/health/service/add?passing",
        "/v1/health/service/web?tag=v1",
        "/v1/health/service/nothing",
    ] {
        consul_get(&registry.addr, target);
    }
    let (agent, _) = consul_get(&registry.addr, "/v1/agent/self");
    assert_eq!(
        agent
            .path(&["Config", "Datacenter"])
            .and_then(Value::as_str),
        Some("dc1")
    );
    let (leader, _) = consul_get(&registry.addr, "/v1/status/leader");
    assert_eq!(leader.as_str(), Some(registry.addr.as_str()));
    let (services, _) = consul_get(&registry.addr, "/v1/catalog/services");
    assert_eq!(
        services.get("web").and_then(Value::as_array),
        Some(&[Value::String("v1".into())][..])
    );
    assert_eq!(services.get("add").and_then(Value::as_array), Some(&[][..]));

    // The adder registered itself through mini's own route; Consul's view shows it under HOST:PORT.
    let (health, _) = consul_get(&registry.addr, "/v1/health/service/add?passing");
    let port = i64::from(port_of(&adder.addr));
    assert_eq!(
        health_rows(&health),
        [(
            adder.addr.clone(),
            port,
            vec![format!("service:{}=passing", adder.addr)]
        )]
    );
    let (catalog, _) = consul_get(&registry.addr, "/v1/catalog/service/add");
    let entry = &catalog.as_array().expect("an array")[0];
    for (key, want) in [
        ("ServiceID", adder.addr.as_str()),
        ("ServiceName", "add"),
        ("ServiceAddress", "127.0.0.1"),
        ("Node", "mini"),
    ] {
        assert_eq!(entry.get(key).and_then(Value::as_str), Some(want), "{key}");
    }
    assert_eq!(entry.get("ServicePort").and_then(Value::as_i64), Some(port));
}

#[test]
fn blocking_queries_wait_out_their_wait_or_return_on_a_change() {
    let registry = Proc::registry(FAST_PROBES);
    let (status, _) = register(
        &registry.addr,
        r#"{"Name":"web","ID":"web1","Address":"127.0.0.1","Port":18001}"#,
    );
    assert_eq!(status, 200);
    let (_, index) = consul_get(&registry.addr, "/v1/health/service/web");

    // No change: it answers when the wait is over (1 s, plus at most 1/16 of jitter).
    let started = Instant::now();
    let (body, same) = consul_get(
        &registry.addr,
        &format!("/v1/health/service/web?index={index}&wait=1s"),
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "returned after {took:?} without a change"
    );
    assert!(took < Duration::from_secs(6), "waited {took:?} for wait=1s");
    assert_eq!((same, ids(&body)), (index, vec!["web1".to_string()]));

    // A change wakes it long before its 20 s wait: registered once the query is waiting (the
    // registry's watcher gauge says so).
    for path in [
        "/v1/health/service/web",
        "/v1/catalog/services",
        "/v1/health/state/any",
    ] {
        let (_, index) = consul_get(&registry.addr, path);
        let target = format!("{path}?index={index}&wait=20000ms");
        let addr = registry.addr.clone();
        let blocked = std::thread::spawn(move || {
            let started = Instant::now();
            let (body, index) = consul_get(&addr, &target);
            (body, index, started.elapsed())
        });
        eventually("the blocking query is waiting", || {
            get(&registry.addr, "/metrics")
                .1
                .lines()
                .any(|l| l == "mini_watchers 1")
        });
        let port = free_port();
        let (status, _) = register(
            &registry.addr,
            &format!(r#"{{"Name":"web","ID":"web-{port}","Address":"127.0.0.1","Port":{port}}}"#),
        );
        assert_eq!(status, 200);
        let (body, new_index, took) = blocked.join().expect("the blocking query");
        assert!(new_index > index, "{new_index} after {index}");
        assert!(took < Duration::from_secs(10), "woke after {took:?}");
        // Health entries name the instance in `Service.ID`, state checks in `ServiceID`.
        if let Some(rows) = body.as_array() {
            let listed: Vec<&str> = rows
                .iter()
                .filter_map(|r| r.path(&["Service", "ID"]).or_else(|| r.get("ServiceID")))
                .filter_map(Value::as_str)
                .collect();
            assert!(
                listed.contains(&format!("web-{port}").as_str()),
                "{path}: {body:?}"
            );
        }
    }

    // A bad wait or index is refused.
    for target in [
        "/v1/health/service/web?index=1&wait=soon",
        "/v1/health/service/web?index=x",
    ] {
        let resp = request(&registry.addr, "GET", target, "", "");
        assert_eq!(resp.status, 400, "{target}: {}", resp.text());
    }
}

#[test]
fn passing_leaves_out_critical_maintenance_and_unpassed_ttl_instances() {
    let registry = Proc::registry(FAST_PROBES);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let up = listener.local_addr().unwrap().port();
    let closed = free_port();
    let idle = free_port();
    let ttl = free_port();
    for body in [
        format!(
            r#"{{"Name":"web","ID":"ok","Address":"127.0.0.1","Port":{up},"Check":{{"TCP":"127.0.0.1:{up}","Interval":"10s"}}}}"#
        ),
        format!(
            r#"{{"Name":"web","ID":"down","Address":"127.0.0.1","Port":{closed},"Check":{{"TCP":"127.0.0.1:{closed}","Interval":"10s"}}}}"#
        ),
        format!(r#"{{"Name":"web","ID":"maint","Address":"127.0.0.1","Port":{idle}}}"#),
        format!(
            r#"{{"Name":"web","ID":"beat","Address":"127.0.0.1","Port":{ttl},"Check":{{"TTL":"10s"}}}}"#
        ),
    ] {
        let (status, text) = register(&registry.addr, &body);
        assert_eq!(status, 200, "{body}: {text}");
    }
    let (status, text) = put(
        &registry.addr,
        "/v1/agent/service/maintenance/maint?enable=true&reason=test",
        "",
    );
    assert_eq!(status, 200, "{text}");
    eventually("the closed port's check is critical", || {
        let (body, _) = consul_get(&registry.addr, "/v1/health/service/web");
        health_rows(&body)
            .iter()
            .any(|(id, _, checks)| id == "down" && checks == &["service:down=critical"])
    });
    let (body, _) = consul_get(&registry.addr, "/v1/health/service/web");
    let mut rows = health_rows(&body);
    rows.sort();
    assert_eq!(
        rows,
        [
            (
                "beat".to_string(),
                i64::from(ttl),
                vec!["service:beat=critical".to_string()]
            ),
            (
                "down".to_string(),
                i64::from(closed),
                vec!["service:down=critical".to_string()]
            ),
            (
                "maint".to_string(),
                i64::from(idle),
                vec![
                    "service:maint=passing".to_string(),
                    "_service_maintenance:maint=critical".to_string()
                ]
            ),
            (
                "ok".to_string(),
                i64::from(up),
                vec!["service:ok=passing".to_string()]
            ),
        ]
    );
    let (body, _) = consul_get(&registry.addr, "/v1/health/service/web?passing");
    assert_eq!(ids(&body), ["ok"]);
    // mini's own lookup and listing agree: only `ok` is picked.
    for _ in 0..20 {
        assert_eq!(
            get(&registry.addr, "/serviceAddr?queryParam=web"),
            (200, format!("127.0.0.1:{up}"))
        );
    }

    // The TTL check's first pass and the end of maintenance bring both back.
    let (status, text) = put(&registry.addr, "/v1/agent/check/pass/service:beat", "");
    assert_eq!(status, 200, "{text}");
    let (status, text) = put(
        &registry.addr,
        "/v1/agent/service/maintenance/maint?enable=false",
        "",
    );
    assert_eq!(status, 200, "{text}");
    let (body, _) = consul_get(&registry.addr, "/v1/health/service/web?passing");
    assert_eq!(ids(&body), ["beat", "maint", "ok"]);
    // A failed TTL check leaves again at once.
    let (status, _) = put(&registry.addr, "/v1/agent/check/fail/service:beat", "");
    assert_eq!(status, 200);
    let (body, _) = consul_get(&registry.addr, "/v1/health/service/web?passing");
    assert_eq!(ids(&body), ["maint", "ok"]);
    drop(listener);
}

#[test]
fn a_consul_registration_is_seen_by_every_door() {
    let (registry, dns) = dns_registry(&[]);
    let port = free_port();
    let (status, _) = register(
        &registry.addr,
        &format!(
            r#"{{"Name":"pay","ID":"pay1","Address":"127.0.0.1","Port":{port},"Tags":["v2"],"Meta":{{"zone":"a"}},"Weights":{{"Passing":3}}}}"#
        ),
    );
    assert_eq!(status, 200);
    // mini's own lookup and listing.
    assert_eq!(
        get(&registry.addr, "/serviceAddr?queryParam=pay&tag=v2"),
        (200, format!("127.0.0.1:{port}"))
    );
    let (_, listing) = get(&registry.addr, "/v1/services/pay");
    assert!(
        listing.contains(&format!("127.0.0.1:{port} healthy")),
        "{listing}"
    );
    // Prometheus HTTP SD.
    let (status, sd) = get(&registry.addr, "/v1/sd/prometheus?service=pay&tag=v2");
    assert_eq!(status, 200);
    let sd = jsonread::parse(sd.as_bytes()).expect("JSON");
    let group = &sd.as_array().expect("an array")[0];
    assert_eq!(
        group.get("targets").and_then(Value::as_array),
        Some(&[Value::String(format!("127.0.0.1:{port}"))][..])
    );
    for (label, want) in [
        ("__meta_mini_id", "pay1"),
        ("__meta_mini_service", "pay"),
        ("__meta_mini_health", "healthy"),
        ("__meta_mini_tags", ",v2,"),
        ("__meta_mini_meta_zone", "a"),
        ("__meta_mini_weight", "3"),
    ] {
        assert_eq!(
            group.path(&["labels", label]).and_then(Value::as_str),
            Some(want),
            "{label}"
        );
    }
    // DNS, when dig is here.
    if program("dig", "bind9-dnsutils").is_some() {
        let d = dig(dns, &["_pay._v2.service.mini", "SRV"]);
        assert_eq!(
            d.answer,
            [format!(
                "_pay._v2.service.mini. 0 IN SRV 1 3 {port} 7f000001.addr.mini."
            )],
            "{}",
            d.text
        );
    }
    // Deregistered through Consul: gone from mini's lookup.
    let (status, _) = put(&registry.addr, "/v1/agent/service/deregister/pay1", "");
    assert_eq!(status, 200);
    assert_eq!(get(&registry.addr, "/serviceAddr?queryParam=pay").0, 400);
}

#[test]
fn the_token_is_taken_from_x_consul_token_or_the_query() {
    let registry = Proc::registry(&["--token", "s3cret", "--token-reads"]);
    let body = r#"{"Name":"web","ID":"web1","Address":"127.0.0.1","Port":18001}"#;
    let reg = |headers: &str, query: &str| {
        let target = format!("/v1/agent/service/register{query}");
        request(&registry.addr, "PUT", &target, headers, body).status
    };
    assert_eq!(reg("", ""), 401);
    assert_eq!(reg("X-Consul-Token: wrong\r\n", ""), 401);
    assert_eq!(reg("X-Consul-Token: s3cret\r\n", ""), 200);
    assert_eq!(reg("", "?token=s3cret"), 200);
    let read = |headers: &str, query: &str| {
        let target = format!("/v1/health/service/web{query}");
        request(&registry.addr, "GET", &target, headers, "").status
    };
    assert_eq!(read("", ""), 401);
    assert_eq!(read("X-Consul-Token: s3cret\r\n", ""), 200);
    assert_eq!(read("", "?token=s3cret"), 200);
    assert_eq!(read("", "?token=s3cret&passing"), 200);
}

#[test]
fn a_registration_without_address_takes_the_callers_address() {
    let reg = Proc::registry(FAST_PROBES);
    let (status, body) = register(&reg.addr, r#"{"Name":"nohost","ID":"n1","Port":8123}"#);
    assert_eq!(status, 200, "{body}");
    let (listing, _) = consul_get(&reg.addr, "/v1/catalog/service/nohost");
    let first = &listing.as_array().expect("an array")[0];
    assert_eq!(first.get("ServiceID").and_then(Value::as_str), Some("n1"));
    // The test connects over loopback, so the caller's address is 127.0.0.1.
    assert_eq!(
        first.get("ServiceAddress").and_then(Value::as_str),
        Some("127.0.0.1")
    );
    assert_eq!(first.get("ServicePort").and_then(Value::as_i64), Some(8123));
}

#[test]
fn health_state_lists_checks_and_kv_reads_block_on_an_empty_store() {
    let registry = Proc::registry(FAST_PROBES);
    for (id, port) in [("web1", 18011), ("web2", 18012)] {
        let body = format!(r#"{{"Name":"web","ID":"{id}","Address":"127.0.0.1","Port":{port}}}"#);
        assert_eq!(register(&registry.addr, &body).0, 200);
    }
    let (status, _) = put(
        &registry.addr,
        "/v1/agent/service/maintenance/web2?enable=true",
        "",
    );
    assert_eq!(status, 200);
    let checks = |state: &str| -> Vec<(String, String)> {
        let (body, _) = consul_get(&registry.addr, &format!("/v1/health/state/{state}"));
        let mut out: Vec<(String, String)> = body
            .as_array()
            .expect("an array")
            .iter()
            .map(|c| {
                let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                assert_eq!(s("ServiceName"), "web");
                (s("CheckID"), s("Status"))
            })
            .collect();
        out.sort();
        out
    };
    let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(
        checks("any"),
        [
            pair("_service_maintenance:web2", "critical"),
            pair("service:web1", "passing"),
            pair("service:web2", "passing"),
        ]
    );
    assert_eq!(
        checks("critical"),
        [pair("_service_maintenance:web2", "critical")]
    );
    assert_eq!(checks("warning"), []);
    let resp = request(&registry.addr, "GET", "/v1/health/state/bogus", "", "");
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert_eq!(
        resp.text(),
        "unknown check state bogus (one of any, passing, warning, critical)\n"
    );

    // A key is absent, with the store's index: at once without an index...
    let resp = request(&registry.addr, "GET", "/v1/kv/fabio/config", "", "");
    assert_eq!(resp.status, 404, "{}", resp.text());
    assert_eq!(resp.header("X-Consul-Index"), Some("1"));
    // ...and only when the wait is over with one, since the store never changes.
    let started = Instant::now();
    let resp = request(
        &registry.addr,
        "GET",
        "/v1/kv/fabio/config?recurse&index=1&wait=500ms",
        "",
        "",
    );
    let took = started.elapsed();
    assert_eq!(resp.status, 404);
    assert_eq!(resp.header("X-Consul-Index"), Some("1"));
    assert!(
        took >= Duration::from_millis(450),
        "answered after {took:?}"
    );
    let resp = request(&registry.addr, "PUT", "/v1/kv/fabio/config", "", "x");
    assert_eq!(resp.status, 501, "{}", resp.text());
    assert_eq!(
        resp.text(),
        "mini keeps no key/value store: KV writes are not supported\n"
    );
}
