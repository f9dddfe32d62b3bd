//! The registry's routes over real sockets: the original wire routes byte for byte, our `/v1` API,
//! and lease expiry. Probing is slowed to a minute here so it never interferes.

mod common;

use common::procs::{eventually, exchange, get, listed, Proc};

const NO_PROBES: &[&str] = &["--probe-interval", "60s"];

/// The original adder's heartbeat: POST, empty body, empty `Content-Type:` header.
fn original_heartbeat(ip: &str) -> String {
    format!("POST /registerList?ip={ip} HTTP/1.1\r\nHost: 127.0.0.1:6666\r\nUser-Agent: Go-http-client/1.1\r\nContent-Length: 0\r\nContent-Type: \r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n")
}

#[test]
fn register_list_answers_like_the_original() {
    let reg = Proc::registry(NO_PROBES);
    let (status, body) = exchange(&reg.addr, &original_heartbeat("127.0.0.1:1111"));
    assert_eq!((status, body.as_str()), (200, "127.0.0.1:1111 registered"));
    // A renewal answers the same.
    let (status, body) = exchange(&reg.addr, &original_heartbeat("127.0.0.1:1111"));
    assert_eq!((status, body.as_str()), (200, "127.0.0.1:1111 registered"));
    assert_eq!(listed(&reg.addr), ["127.0.0.1:1111"]);
}

#[test]
fn service_addr_returns_the_bare_address_or_the_original_400() {
    let reg = Proc::registry(NO_PROBES);
    let (status, body) = get(&reg.addr, "/serviceAddr?queryParam=add");
    assert_eq!((status, body.as_str()), (400, "no service availble"));
    exchange(&reg.addr, &original_heartbeat("127.0.0.1:2222"));
    let (status, body) = get(&reg.addr, "/serviceAddr?queryParam=add");
    assert_eq!((status, body.as_str()), (200, "127.0.0.1:2222"));
    let (status, body) = get(&reg.addr, "/serviceAddr?queryParam=mul");
    assert_eq!((status, body.as_str()), (400, "no service availble"));
}

#[test]
fn picks_spread_over_every_registered_instance() {
    let reg = Proc::registry(NO_PROBES);
    for port in [1111, 2222, 3333] {
        exchange(&reg.addr, &original_heartbeat(&format!("127.0.0.1:{port}")));
    }
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..200 {
        let (status, body) = get(&reg.addr, "/serviceAddr?queryParam=add");
        assert_eq!(status, 200);
        seen.insert(body);
    }
    assert_eq!(seen.len(), 3, "picked only {seen:?}");
}

#[test]
fn malformed_ip_is_refused_with_a_reason() {
    let reg = Proc::registry(NO_PROBES);
    for (ip, reason) in [
        ("", "bad address"),
        ("127.0.0.1", "HOST:PORT"),
        ("127.0.0.1:0", "port"),
        ("127.0.0.1:70000", "port"),
        ("evil%0d%0a:80", "host"),
    ] {
        let (status, body) = exchange(&reg.addr, &original_heartbeat(ip));
        assert_eq!(status, 400, "{ip:?} accepted: {body}");
        assert!(body.contains(reason), "{ip:?}: {body:?}");
        assert!(
            body.ends_with('\n') && body.lines().count() == 1,
            "{body:?}"
        );
    }
    let (status, body) = exchange(
        &reg.addr,
        "POST /registerList HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!((status, body.as_str()), (400, "missing ip=HOST:PORT\n"));
    assert!(listed(&reg.addr).is_empty());
}

#[test]
fn a_named_service_is_kept_apart() {
    let reg = Proc::registry(NO_PROBES);
    exchange(&reg.addr, &original_heartbeat("127.0.0.1:7000&service=mul"));
    let (status, body) = get(&reg.addr, "/serviceAddr?queryParam=mul");
    assert_eq!((status, body.as_str()), (200, "127.0.0.1:7000"));
    let (status, _) = get(&reg.addr, "/serviceAddr?queryParam=add");
    assert_eq!(status, 400);
}

#[test]
fn v1_put_list_and_delete() {
    let reg = Proc::registry(NO_PROBES);
    let put = "PUT /v1/services/add/127.0.0.1:3333?ttl=30s HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    assert_eq!(exchange(&reg.addr, put).0, 200);
    let (status, body) = get(&reg.addr, "/v1/services");
    assert_eq!(status, 200);
    assert!(body.starts_with("add live=1 total=1 "), "{body:?}");
    let (_, json) = get(&reg.addr, "/v1/services/add?format=json");
    assert!(
        json.contains(r#""addr":"127.0.0.1:3333","health":"healthy""#),
        "{json}"
    );
    assert!(json.contains(r#""ttl_ms":30000"#), "{json}");
    let (_, json) = exchange(
        &reg.addr,
        "GET /v1/services HTTP/1.1\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
    );
    assert!(
        json.starts_with(r#"{"services":[{"name":"add","live":1,"total":1"#),
        "{json}"
    );
    let delete = "DELETE /v1/services/add/127.0.0.1:3333 HTTP/1.1\r\nConnection: close\r\n\r\n";
    assert_eq!(exchange(&reg.addr, delete).0, 200);
    assert_eq!(exchange(&reg.addr, delete).0, 404);
    assert!(listed(&reg.addr).is_empty());
    let bad_ttl = "PUT /v1/services/add/127.0.0.1:3333?ttl=forever HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    assert_eq!(exchange(&reg.addr, bad_ttl).0, 400);
}

#[test]
fn unknown_routes_and_methods_are_404_and_405() {
    let reg = Proc::registry(NO_PROBES);
    assert_eq!(get(&reg.addr, "/health"), (200, "ok\n".to_string()));
    assert_eq!(get(&reg.addr, "/nope").0, 404);
    let (status, _) = get(&reg.addr, "/registerList?ip=127.0.0.1:1");
    assert_eq!(status, 405);
    let raw = exchange(
        &reg.addr,
        "DELETE /health HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(raw.0, 405);
}

#[test]
fn an_expired_lease_is_dropped() {
    let reg = Proc::registry(&["--probe-interval", "60s", "--ttl", "300ms"]);
    exchange(&reg.addr, &original_heartbeat("127.0.0.1:4444"));
    assert_eq!(listed(&reg.addr), ["127.0.0.1:4444"]);
    eventually("the lease expires", || listed(&reg.addr).is_empty());
    assert_eq!(get(&reg.addr, "/serviceAddr?queryParam=add").0, 400);
    eventually("the log line", || reg.logged("127.0.0.1:4444 expired"));
}

#[test]
fn two_leases_expiring_in_one_sweep_leave_the_others() {
    let reg = Proc::registry(&["--probe-interval", "60s", "--ttl", "300ms"]);
    exchange(&reg.addr, &original_heartbeat("127.0.0.1:1"));
    exchange(&reg.addr, &original_heartbeat("127.0.0.1:2"));
    let long = "PUT /v1/services/add/127.0.0.1:3?ttl=60s HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    exchange(&reg.addr, long);
    eventually("both short leases expire", || {
        listed(&reg.addr) == ["127.0.0.1:3"]
    });
    assert_eq!(get(&reg.addr, "/health").0, 200);
}
