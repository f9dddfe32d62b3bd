//! Hostile input against each role's server: the registry and the adder, as real processes where the
//! default configuration is what is under test, and in-process (the real routes behind
//! `mini::http::server::serve`, real sockets on port 0) where a case needs short timeouts or a small
//! connection cap.
//!
//! Every case asserts the exact status (or the close) and that the server still answers `/health`
//! on a fresh connection afterwards. Waits are bounded by [`common::DEADLINE`] or
//! [`procs::PROC_DEADLINE`] as hang guards only; nothing here asserts speed.

mod common;

use async_net::{TcpListener, TcpStream};
use common::procs::{self, Proc};
use common::{
    assert_error_reply, exchange_once_admitted, parse_responses, raw_exchange, within, Client,
    RawResponse, DEADLINE,
};
use mini::http::server::serve;
use mini::http::ServerConfig;
use mini::{adder, registry, rt};
use smol::io::AsyncWriteExt;
use smol::Timer;
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Both roles serve `GET /health` with 200 `ok\n`.
const HEALTH: &str = "GET /health HTTP/1.1\r\nHost: t\r\n\r\n";
const HEALTH_CLOSE: &str = "GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

/// A registry (probing slowed to a minute, so it never interferes) and an adder beating to it.
fn both_roles() -> (Proc, Proc) {
    let registry = Proc::registry(&["--probe-interval", "60s"]);
    let adder = Proc::adder(&registry.addr);
    (registry, adder)
}

fn socket(proc: &Proc) -> SocketAddr {
    proc.addr.parse().expect("a role's address is IP:PORT")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Registry,
    Adder,
}

/// The role's real routes on an in-process server with `server`'s timeouts and cap.
async fn start_in_process(role: Role, server: ServerConfig) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    match role {
        Role::Registry => {
            let config = registry::Config {
                listen: addr.to_string(),
                probe_interval: Duration::from_secs(60),
                server,
                ..registry::Config::default()
            };
            rt::spawn(registry::run(listener, config)).detach();
        }
        Role::Adder => {
            let routes = Arc::new(adder::Routes::default());
            rt::spawn(serve(listener, routes, server)).detach();
        }
    }
    addr
}

fn assert_health(resp: &RawResponse, what: &str) {
    assert_eq!(
        (resp.status, resp.text()),
        (200, "ok\n"),
        "{what}: {resp:?}"
    );
}

/// A fresh connection still gets `/health` answered.
async fn assert_still_serves(addr: SocketAddr, what: &str) {
    let responses = parse_responses(&raw_exchange(addr, HEALTH_CLOSE).await);
    assert_eq!(responses.len(), 1, "after {what}: {responses:?}");
    assert_health(&responses[0], &format!("after {what}"));
}

/// What a case expects back.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Exactly one error reply with this status and `Connection: close`, then EOF: nothing that
    /// followed in the same write is answered.
    Refused(u16),
    /// One reply with this status, and the connection stays open for the next request.
    KeptOpen(u16),
}

struct Case {
    what: &'static str,
    raw: Vec<u8>,
    expect: Expect,
}

fn case(what: &'static str, raw: impl Into<Vec<u8>>, expect: Expect) -> Case {
    Case {
        what,
        raw: raw.into(),
        expect,
    }
}

/// The hostile requests every role gets, with the status each must get.
fn hostile_cases(role: Role) -> Vec<Case> {
    use Expect::{KeptOpen, Refused};
    let every_byte: Vec<u8> = (0..=255u8).chain(*b"\r\n\r\n").collect();
    let many_headers: String = (0..10_000).map(|i| format!("X-H{i}: v\r\n")).collect();
    let bad_query_utf8 = match role {
        Role::Registry => "GET /serviceAddr?queryParam=%ff%fe HTTP/1.1\r\n\r\n",
        Role::Adder => "GET /Add?a=%ff&b=1 HTTP/1.1\r\n\r\n",
    };
    vec![
        case(
            "a TLS ClientHello",
            *b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
            Refused(400),
        ),
        case("every byte value in a row", every_byte, Refused(400)),
        case(
            "10 000 headers",
            format!("GET /health HTTP/1.1\r\n{many_headers}\r\n"),
            Refused(431),
        ),
        case(
            "an absurd Content-Length",
            "POST /health HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            Refused(400),
        ),
        case(
            "a negative Content-Length",
            "POST /health HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            Refused(400),
        ),
        case(
            "a hexadecimal Content-Length",
            "POST /health HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n",
            Refused(400),
        ),
        case(
            "two different Content-Length headers",
            "POST /health HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            Refused(400),
        ),
        case(
            "one Content-Length with two values",
            "POST /health HTTP/1.1\r\nContent-Length: 1, 2\r\n\r\nab",
            Refused(400),
        ),
        case(
            "Content-Length and Transfer-Encoding, smuggling a second request",
            "POST /health HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n\
             0\r\n\r\nGET /health HTTP/1.1\r\n\r\n",
            Refused(400),
        ),
        case(
            "a 100 KiB request target",
            format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(100 * 1024)),
            Refused(414),
        ),
        case(
            "raw non-UTF-8 bytes in the target",
            *b"GET /health\xff\xfe HTTP/1.1\r\n\r\n",
            Refused(400),
        ),
        case(
            "a raw NUL in the target",
            *b"GET /hea\0lth HTTP/1.1\r\n\r\n",
            Refused(400),
        ),
        case(
            "percent-encoded non-UTF-8 in the query",
            bad_query_utf8,
            Refused(400),
        ),
        case(
            "a percent-encoded overlong UTF-8 slash in the path",
            "GET /health%C0%AF HTTP/1.1\r\n\r\n",
            Refused(400),
        ),
        case(
            "a NUL byte in a header value",
            *b"GET /health HTTP/1.1\r\nX: a\0b\r\n\r\n",
            Refused(400),
        ),
        case(
            "an obsolete folded header line",
            "GET /health HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
            Refused(400),
        ),
        case("an HTTP/0.9 request", "GET /\r\n", Refused(400)),
        case(
            "the HTTP/2 connection preface",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            Refused(400),
        ),
        case(
            "an unknown method on a known path",
            "BREW /health HTTP/1.1\r\n\r\n",
            KeptOpen(405),
        ),
        case(
            "an unknown method on an unknown path",
            "BREW /teapot HTTP/1.1\r\n\r\n",
            KeptOpen(404),
        ),
        // Accepted on purpose, as nginx does: bare LF is an RFC 9112 §2.2 MAY.
        case(
            "bare-LF line endings",
            "GET /health HTTP/1.1\nHost: t\n\n",
            KeptOpen(200),
        ),
    ]
}

/// Sends one case on a fresh connection and checks the reply, the close (or the kept connection)
/// and that a fresh connection is still served.
async fn check(addr: SocketAddr, role: Role, case: &Case) {
    let what = format!("{role:?}: {}", case.what);
    match case.expect {
        Expect::Refused(status) => {
            let responses = parse_responses(&raw_exchange(addr, &case.raw).await);
            assert_eq!(responses.len(), 1, "{what}: one reply, got {responses:?}");
            assert_error_reply(&responses[0], status, &what);
            assert_eq!(responses[0].header("Connection"), Some("close"), "{what}");
        }
        Expect::KeptOpen(status) => {
            let mut client = Client::connect(addr).await;
            client.send(&case.raw).await;
            let resp = client.response().await;
            if status == 200 {
                assert_health(&resp, &what);
            } else {
                assert_error_reply(&resp, status, &what);
            }
            if status == 405 {
                assert_eq!(resp.header("Allow"), Some("GET"), "{what}");
            }
            assert_eq!(resp.header("Connection"), None, "{what}: {resp:?}");
            client.send(HEALTH).await;
            assert_health(&client.response().await, &format!("{what}, then /health"));
        }
    }
    assert_still_serves(addr, &what).await;
}

#[test]
fn hostile_requests_get_their_statuses_from_both_real_roles() {
    let (registry, adder) = both_roles();
    rt::block_on(async {
        for (role, proc) in [(Role::Registry, &registry), (Role::Adder, &adder)] {
            for case in hostile_cases(role) {
                check(socket(proc), role, &case).await;
            }
        }
    });
}

#[test]
fn a_1_mib_header_line_is_431_after_the_first_16_kib() {
    let (registry, adder) = both_roles();
    let mut raw = b"GET /health HTTP/1.1\r\nX-Big: ".to_vec();
    raw.resize(1024 * 1024, b'a');
    rt::block_on(async {
        for proc in [&registry, &adder] {
            let addr = socket(proc);
            let mut client = Client::connect(addr).await;
            // The reply comes while 1 MiB - 16 KiB of the line is still unsent: the server decided at
            // its 8 KiB head limit instead of buffering the line.
            client.send(&raw[..16 * 1024]).await;
            let resp = client.response().await;
            assert_error_reply(&resp, 431, &proc.addr);
            assert_eq!(resp.header("Connection"), Some("close"));
            // The rest may be refused with a reset once the server stops draining: both are fine.
            let _ = within("write the rest", client.stream.write_all(&raw[16 * 1024..])).await;
            assert_eq!(client.read_to_close().await, b"", "a second reply");
            assert_still_serves(addr, "a 1 MiB header line").await;
        }
    });
}

#[test]
fn a_head_cut_off_by_eof_is_400() {
    let (registry, adder) = both_roles();
    rt::block_on(async {
        for proc in [&registry, &adder] {
            let addr = socket(proc);
            for raw in [
                "GET /health HTTP/1.1",
                "GET /health HTTP/1.1\r\nHost: t\r\n",
            ] {
                let mut client = Client::connect(addr).await;
                client.send(raw).await;
                client.stream.shutdown(Shutdown::Write).expect("shutdown");
                let responses = parse_responses(&client.read_to_close().await);
                assert_eq!(responses.len(), 1, "{raw:?}: {responses:?}");
                assert_error_reply(&responses[0], 400, raw);
                assert_still_serves(addr, raw).await;
            }
        }
    });
}

#[test]
fn the_registry_never_answers_or_applies_a_smuggled_registration() {
    let registry = Proc::registry(&["--probe-interval", "60s"]);
    rt::block_on(async {
        let addr = socket(&registry);
        let raw = "POST /registerList?ip=127.0.0.1:7001&service=front HTTP/1.1\r\n\
                   Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n\
                   POST /registerList?ip=127.0.0.1:7002&service=smuggled HTTP/1.1\r\n\
                   Content-Length: 0\r\n\r\n";
        let responses = parse_responses(&raw_exchange(addr, raw).await);
        assert_eq!(responses.len(), 1, "{responses:?}");
        assert_error_reply(&responses[0], 400, "CL+TE");
        assert_eq!(responses[0].header("Connection"), Some("close"));
    });
    let (status, body) = procs::get(&registry.addr, "/v1/services");
    assert_eq!((status, body.as_str()), (200, ""), "something registered");
}

#[test]
fn a_nul_in_the_registered_address_is_400_and_not_registered() {
    let registry = Proc::registry(&["--probe-interval", "60s"]);
    for ip in [
        "127.0.0.1%00:1111",
        "127.0.0.1:1111%00",
        "%00127.0.0.1:1111",
    ] {
        let raw = format!(
            "POST /registerList?ip={ip}&service=nul HTTP/1.1\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n"
        );
        let (status, body) = procs::exchange(&registry.addr, &raw);
        assert_eq!(status, 400, "{ip}: {body:?}");
        assert!(body.starts_with("bad address"), "{ip}: {body:?}");
        assert!(!body.contains('\0'), "{ip}: the NUL is echoed: {body:?}");
    }
    let (status, body) = procs::get(&registry.addr, "/v1/services");
    assert_eq!((status, body.as_str()), (200, ""), "something registered");
    assert_eq!(procs::get(&registry.addr, "/health").0, 200);
}

/// A registration's bad fields (issue 11): each one, in the query or in a JSON body, `(what, request
/// target, body, the reason the 400 must give)`.
fn bad_registration_fields() -> Vec<(&'static str, String, &'static str, &'static str)> {
    let put = |query: &str| format!("/v1/services/web/127.0.0.1:8000?{query}");
    let many = |pair: &dyn Fn(usize) -> String| -> String {
        (0..17).map(|i| format!("{}&", pair(i))).collect()
    };
    let bare = "/v1/services/web/127.0.0.1:8000".to_string();
    vec![
        ("an unknown check", put("check=grpc"), "", "bad check: use http:/PATH, tcp or none"),
        ("a check path without /", put("check=http:healthz"), "", "bad check path: must start with /"),
        ("a check path of 257 bytes", put(&format!("check=http:/{}", "a".repeat(256))), "", "bad check path: longer than 256 bytes"),
        ("a check path with a space", put("check=http:/a%20b"), "", "bad check path: not printable ASCII"),
        ("17 tags", put(&many(&|i| format!("tag=t{i}"))), "", "too many tags (max 16)"),
        ("an empty tag", put("tag="), "", "bad tag: 1 to 128 bytes of printable ASCII"),
        ("a tag of 129 bytes", put(&format!("tag={}", "x".repeat(129))), "", "bad tag: 1 to 128 bytes"),
        ("a control byte in a tag", put("tag=a%01"), "", "bad tag: 1 to 128 bytes"),
        ("a tag of non-ASCII UTF-8", put("tag=%C3%A9"), "", "bad tag: 1 to 128 bytes"),
        ("meta without a colon", put("meta=zone"), "", "bad meta: use KEY:VALUE"),
        ("meta with an empty key", put("meta=:a"), "", "bad meta key: 1 to 128 bytes"),
        ("meta with an empty value", put("meta=a:"), "", "bad meta value: 1 to 128 bytes"),
        ("17 meta pairs", put(&many(&|i| format!("meta=k{i}:v"))), "", "too many meta pairs (max 16)"),
        ("weight 0", put("weight=0"), "", "bad weight: an integer from 1 to 1000"),
        ("weight 1001", put("weight=1001"), "", "bad weight: an integer from 1 to 1000"),
        ("a negative weight", put("weight=-1"), "", "bad weight"),
        ("a weight of 2^64", put("weight=18446744073709551616"), "", "bad weight"),
        ("an empty weight", put("weight="), "", "bad weight"),
        ("a ttl that is no duration", put("ttl=forever"), "", "bad ttl"),
        ("a ttl over an hour", put("ttl=2h"), "", "ttl longer than 3600s"),
        ("a body that is not JSON", bare.clone(), "{\"check\":", "bad body: bad JSON at byte"),
        ("a body that is not an object", bare.clone(), "[1]", "bad body: not a JSON object"),
        ("a body nested too deeply", bare.clone(), "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", "bad body: bad JSON at byte"),
        ("tags that are a string", bare.clone(), r#"{"tags":"v2"}"#, "bad body: tags has the wrong type"),
        ("a tag that is a number", bare.clone(), r#"{"tags":[2]}"#, "bad body: tags has the wrong type"),
        ("meta that is an array", bare.clone(), r#"{"meta":["a"]}"#, "bad body: meta has the wrong type"),
        ("a meta value that is a number", bare.clone(), r#"{"meta":{"a":1}}"#, "bad body: meta has the wrong type"),
        ("a check that is a number", bare.clone(), r#"{"check":1}"#, "bad body: check has the wrong type"),
        ("a ttl that is a number", bare.clone(), r#"{"ttl":15}"#, "bad body: ttl has the wrong type"),
        ("a weight of 0 in the body", bare.clone(), r#"{"weight":0}"#, "bad weight"),
        ("a weight that is a float", bare.clone(), r#"{"weight":1.5}"#, "bad body: weight has the wrong type"),
        ("an unknown check in the body", bare.clone(), r#"{"check":"grpc"}"#, "bad check"),
        ("an empty tag in the body", bare.clone(), r#"{"tags":[""]}"#, "bad tag"),
        ("17 tags in the body", bare.clone(), r#"{"tags":["a","b","c","d","e","f","g","h","i","j","k","l","m","n","o","p","q"]}"#, "too many tags (max 16)"),
        ("a bad ttl in the body", bare.clone(), r#"{"ttl":"soon"}"#, "bad ttl"),
        // The query wins, and its bad field is refused even with a good body.
        ("a bad query field over a good body", put("weight=0"), r#"{"weight":5}"#, "bad weight"),
        ("a good query field over a bad body field", put("weight=5"), r#"{"weight":0}"#, "bad weight"),
    ]
}

/// Sends `PUT target` with the JSON `body` (the case `what`) on `client`: a one-line 400 whose text
/// starts with `reason`, and the connection stays open.
async fn assert_bad_put(client: &mut Client, what: &str, target: &str, body: &str, reason: &str) {
    let raw = format!(
        "PUT {target} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    client.send(&raw).await;
    let resp = client.response().await;
    assert_error_reply(&resp, 400, what);
    assert!(resp.text().starts_with(reason), "{what}: {:?}", resp.text());
    assert_eq!(resp.header("Connection"), None, "{what}: kept open");
}

/// Sends `METHOD target` without a body on `client`: an error reply with `status` whose text starts
/// with `reason`; the reply.
async fn assert_bad_request(
    client: &mut Client,
    method: &str,
    target: &str,
    status: u16,
    reason: &str,
) -> RawResponse {
    let what = format!("{method} {target}");
    client
        .send(format!("{method} {target} HTTP/1.1\r\nHost: t\r\n\r\n"))
        .await;
    let resp = client.response().await;
    assert_error_reply(&resp, status, &what);
    assert!(resp.text().starts_with(reason), "{what}: {:?}", resp.text());
    resp
}

#[test]
fn every_bad_registration_field_is_400_with_its_reason_and_registers_nothing() {
    let registry = Proc::registry(&["--probe-interval", "60s"]);
    rt::block_on(async {
        let addr = socket(&registry);
        let mut client = Client::connect(addr).await;
        for (what, target, body, reason) in bad_registration_fields() {
            assert_bad_put(&mut client, what, &target, body, reason).await;
        }
        // Lookups and listings with more tags than an instance may carry, and drains of nothing.
        for (method, target, status, reason) in [
            (
                "GET",
                format!("/serviceAddr?queryParam=web&{}", "tag=a&".repeat(17)),
                400,
                "too many tags (max 16)",
            ),
            (
                "GET",
                format!("/v1/services/web?{}", "tag=a&".repeat(17)),
                400,
                "too many tags (max 16)",
            ),
            (
                "POST",
                "/v1/services/web/127.0.0.1:8000/drain".to_string(),
                404,
                "127.0.0.1:8000 is not registered in web",
            ),
            (
                "DELETE",
                "/v1/services/web/127.0.0.1:8000/drain".to_string(),
                404,
                "127.0.0.1:8000 is not registered in web",
            ),
            (
                "GET",
                "/v1/services/web/127.0.0.1:8000/drain".to_string(),
                405,
                "method GET not allowed here",
            ),
        ] {
            assert_bad_request(&mut client, method, &target, status, reason).await;
        }
        assert_still_serves(addr, "bad registration fields").await;
    });
    let (status, body) = procs::get(&registry.addr, "/v1/services");
    assert_eq!((status, body.as_str()), (200, ""), "something registered");
}

/// Short timeouts: requests that never complete are cut off by the head timeout.
fn short_head_timeout(head_timeout: Duration) -> ServerConfig {
    ServerConfig {
        head_timeout,
        idle_timeout: Duration::from_secs(60),
        ..ServerConfig::default()
    }
}

#[test]
fn a_head_that_never_ends_is_408_at_the_head_timeout() {
    rt::block_on(async {
        for role in [Role::Registry, Role::Adder] {
            let addr = start_in_process(role, short_head_timeout(Duration::from_millis(300))).await;
            for raw in [
                "GET /health HTTP/1.1",
                "GET /health HTTP/1.1\r\nHost: t\r\n",
            ] {
                let what = format!("{role:?}: {raw:?} and no more");
                let mut client = Client::connect(addr).await;
                client.send(raw).await;
                let responses = parse_responses(&client.read_to_close().await);
                assert_eq!(responses.len(), 1, "{what}: {responses:?}");
                assert_error_reply(&responses[0], 408, &what);
                assert_eq!(responses[0].header("Connection"), Some("close"), "{what}");
                assert_still_serves(addr, &what).await;
            }
        }
    });
}

#[test]
fn a_slowloris_client_is_cut_off_at_the_head_timeout() {
    rt::block_on(async {
        let roles = [Role::Registry, Role::Adder].map(|role| async move {
            let addr = start_in_process(role, short_head_timeout(Duration::from_secs(1))).await;
            // One byte every 100 ms: the whole request would take over 20 s, far past both the 1 s
            // head timeout and the test's hang guard, so only a cut-off can end it in time.
            let request = format!(
                "GET /health HTTP/1.1\r\nX-Slow: {}\r\n\r\n",
                "s".repeat(200)
            );
            let total = request.len();
            let mut client = Client::connect(addr).await;
            let sent = Arc::new(AtomicUsize::new(0));
            let trickle = rt::spawn({
                let mut writer: TcpStream = client.stream.clone();
                let sent = sent.clone();
                async move {
                    for byte in request.bytes() {
                        if writer.write_all(&[byte]).await.is_err() {
                            return;
                        }
                        sent.fetch_add(1, Ordering::SeqCst);
                        Timer::after(Duration::from_millis(100)).await;
                    }
                }
            });
            let reply = client.read_to_close().await;
            let sent = sent.load(Ordering::SeqCst);
            drop(trickle);
            let what = format!("{role:?}: slowloris");
            let responses = parse_responses(&reply);
            assert_eq!(responses.len(), 1, "{what}: {responses:?}");
            assert_error_reply(&responses[0], 408, &what);
            assert_eq!(responses[0].header("Connection"), Some("close"), "{what}");
            assert!(sent < total, "{what}: the whole request got through");
            assert_still_serves(addr, &what).await;
        });
        let [registry, adder] = roles;
        smol::future::zip(registry, adder).await;
    });
}

#[test]
fn idle_connections_past_the_cap_are_closed_at_once_and_health_answers_after() {
    // Thousands when the open-file limit allows (client and server share this process's table);
    // a few hundred under a bare 1024 hard limit.
    let (cap, opened) = match rt::raise_fd_limit() {
        Some(limit) if limit >= 8_192 => (2_000, 3_000),
        _ => (200, 300),
    };
    rt::block_on(async {
        // Long timeouts, so every close seen here comes from the cap, not from a timer.
        let config = ServerConfig {
            head_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            max_connections: cap,
            ..ServerConfig::default()
        };
        let addr = start_in_process(Role::Registry, config).await;
        // Connected one after another; the server may accept them on several lanes at once, so
        // which ones get the `cap` slots is not fixed: exactly `opened - cap` are closed, silently.
        let mut opened_conns = Vec::with_capacity(opened);
        for _ in 0..opened {
            opened_conns.push(Client::connect(addr).await);
        }
        let watched: Vec<_> = opened_conns
            .into_iter()
            .map(|mut c| {
                rt::spawn(async move {
                    let closed = c.closes_within(Duration::from_secs(3)).await;
                    (c, closed)
                })
            })
            .collect();
        let mut idle = Vec::with_capacity(cap);
        let mut closed = 0;
        for task in watched {
            match task.await {
                (_, true) => closed += 1,
                (c, false) => idle.push(c),
            }
        }
        assert_eq!(
            closed,
            opened - cap,
            "connections past the cap closed at once, silently"
        );
        // The ones under the cap were held, idle, the whole time, and are served now.
        for client in &mut idle {
            client.send(HEALTH).await;
            assert_health(&client.response().await, "a held connection");
        }
        drop(idle);
        // Slots free as the server sees each close; a fresh connection is served once one has.
        let resp = exchange_once_admitted(addr, HEALTH_CLOSE).await;
        assert_health(&resp, "after releasing the connections");
    });
}

/// CPU time (user + system) a process has used so far, from `/proc/PID/stat`.
#[cfg(target_os = "linux")]
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let after_name = &stat[stat.rfind(')').expect("stat has (comm)") + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let per_sec = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(100);
    Duration::from_millis(ticks * 1000 / per_sec)
}

/// Out of descriptors, the accept loop backs off: the process stays up, serves the connections it
/// has, does not spin, and accepts again once descriptors free up.
#[cfg(target_os = "linux")]
#[test]
fn out_of_descriptors_the_registry_backs_off_and_recovers() {
    const FD_LIMIT: u32 = 64;
    const OPENED: usize = 100;
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(format!("ulimit -n {FD_LIMIT} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_mini"))
        .args([
            "registry",
            "--listen",
            "127.0.0.1:0",
            "--probe-interval",
            "60s",
        ]);
    let mut registry = Proc::spawn(cmd);
    let pid = registry.child.id();
    let addr = socket(&registry);
    rt::block_on(async {
        // Accepted and served before the flood: it must keep being served through it.
        let mut keeper = Client::connect(addr).await;
        keeper.send(HEALTH).await;
        assert_health(&keeper.response().await, "before the flood");

        // More connections than the process has descriptors: the rest wait in the listen backlog.
        let mut flood = Vec::with_capacity(OPENED);
        for _ in 0..OPENED {
            flood.push(Client::connect(addr).await);
        }
        procs::eventually("the registry hits EMFILE and says it backs off", || {
            registry.logged("accept failed") && registry.logged("backing off")
        });
        assert!(
            registry.child.try_wait().expect("try_wait").is_none(),
            "exited"
        );

        // Saturated for a second of wall time: a spinning accept loop would burn most of a core.
        let (wall0, cpu0) = (Instant::now(), cpu_time(pid));
        Timer::after(Duration::from_secs(1)).await;
        let (wall, cpu) = (wall0.elapsed(), cpu_time(pid) - cpu0);
        assert!(
            cpu < wall / 4,
            "used {cpu:?} of CPU in {wall:?} while out of descriptors: spinning"
        );

        keeper.send(HEALTH).await;
        assert_health(&keeper.response().await, "while out of descriptors");
        assert!(
            registry.child.try_wait().expect("try_wait").is_none(),
            "exited"
        );

        drop(flood);
        // Once the flood's descriptors are closed, a new connection is accepted and answered.
        assert_still_serves(addr, "running out of descriptors").await;
    });
    assert!(
        registry.child.try_wait().expect("try_wait").is_none(),
        "exited"
    );
}

/// Bad Consul registration bodies (issue 12): `(what, body, the reason the 400 must give)`.
#[rustfmt::skip]
fn bad_consul_registrations() -> Vec<(&'static str, String, &'static str)> {
    let with =
        |extra: &str| format!(r#"{{"Name":"web","Port":8000,"Address":"127.0.0.1"{extra}}}"#);
    let tags = |n: usize| {
        let list: Vec<String> = (0..n).map(|i| format!("\"t{i}\"")).collect();
        with(&format!(r#","Tags":[{}]"#, list.join(",")))
    };
    let meta = |n: usize| {
        let pairs: Vec<String> = (0..n).map(|i| format!("\"k{i}\":\"v\"")).collect();
        with(&format!(r#","Meta":{{{}}}"#, pairs.join(",")))
    };
    vec![
        ("an empty body", String::new(), "bad body: bad JSON at byte 0"),
        ("a body that is not JSON", "Name=web".into(), "bad body: bad JSON at byte 0"),
        ("a cut-off body", r#"{"Name":"web","Port":"#.into(), "bad body: bad JSON"),
        ("an unknown escape in a string", r#"{"Name":"w\xff","Port":8000,"Address":"127.0.0.1"}"#.into(), "bad body: bad JSON"),
        ("a body that is an array", r#"[{"Name":"web"}]"#.into(), "bad body: not a JSON object"),
        ("a body that is a string", r#""web""#.into(), "bad body: not a JSON object"),
        ("60 000 nested arrays", format!(r#"{{"Name":"web","Meta":{}"#, "[".repeat(60_000)), "bad body: bad JSON"),
        ("10 000 nested objects", format!(r#"{{"Name":"web","Meta":{}"#, "{\"a\":".repeat(10_000)), "bad body: bad JSON"),
        ("17 distinct tags", tags(17), "too many tags (max 16)"),
        ("5000 distinct tags", tags(5000), "too many tags (max 16)"),
        ("a tag of 129 bytes", with(&format!(r#","Tags":["{}"]"#, "x".repeat(129))), "bad tag"),
        ("a tag with a control byte", with(r#","Tags":["a\u0001"]"#), "bad tag"),
        ("17 meta pairs", meta(17), "too many meta pairs (max 16)"),
        ("no Name", r#"{"Port":8000,"Address":"127.0.0.1"}"#.into(), "missing Name"),
        ("a Name that is a number", r#"{"Name":7,"Port":8000,"Address":"127.0.0.1"}"#.into(), "bad Name: not a string"),
        ("a Name with a space", r#"{"Name":"a b","Port":8000,"Address":"127.0.0.1"}"#.into(), "bad Name"),
        ("an ID that is a number", with(r#","ID":7"#), "bad ID: not a string"),
        ("an ID with a space", with(r#","ID":"a b""#), "bad ID"),
        ("an ID of 129 bytes", with(&format!(r#","ID":"{}""#, "i".repeat(129))), "bad ID"),
        ("no Port", r#"{"Name":"web","Address":"127.0.0.1"}"#.into(), "missing Port"),
        ("a Port that is a string", r#"{"Name":"web","Port":"8000","Address":"127.0.0.1"}"#.into(), "bad Port: not a number"),
        ("a Port that is a float", r#"{"Name":"web","Port":80.5,"Address":"127.0.0.1"}"#.into(), "bad Port"),
        ("a Port of 0", r#"{"Name":"web","Port":0,"Address":"127.0.0.1"}"#.into(), "bad Port"),
        ("a Port of 2^64", r#"{"Name":"web","Port":18446744073709551616,"Address":"127.0.0.1"}"#.into(), "bad Port"),
        ("an Address that is a number", r#"{"Name":"web","Port":8000,"Address":2130706433}"#.into(), "bad Address: not a string"),
        ("an Address with a port", r#"{"Name":"web","Port":8000,"Address":"127.0.0.1:80"}"#.into(), "bad Address"),
        ("an Address with a NUL", r#"{"Name":"web","Port":8000,"Address":"127.0.0.1\u0000"}"#.into(), "bad Address"),
        ("Tags that are an object", with(r#","Tags":{"a":1}"#), "bad Tags: not an array"),
        ("a tag that is a number", with(r#","Tags":[1]"#), "bad Tags: not strings"),
        ("Meta that is an array", with(r#","Meta":["a"]"#), "bad Meta: not an object"),
        ("a Meta value that is a number", with(r#","Meta":{"a":1}"#), "bad Meta: values must be strings"),
        ("a weight that is a string", with(r#","Weights":{"Passing":"3"}"#), "bad weight"),
        ("a weight of 0", with(r#","Weights":{"Passing":0}"#), "bad weight"),
        ("a Check that is a string", with(r#","Check":"tcp""#), "bad Check"),
        ("Checks that are an object", with(r#","Checks":{"TCP":"127.0.0.1:8000"}"#), "bad Checks: not an array"),
        ("two Checks", with(r#","Checks":[{"TCP":"127.0.0.1:8000"},{"TTL":"5s"}]"#), "bad Checks: mini runs at most one check per service"),
        ("a gRPC check", with(r#","Check":{"GRPC":"127.0.0.1:8000"}"#), "bad Check: mini runs HTTP, TCP or TTL checks"),
        ("a TTL that is a number", with(r#","Check":{"TTL":15}"#), "bad TTL: not a string"),
        ("a TTL that is no duration", with(r#","Check":{"TTL":"soon"}"#), "bad TTL"),
        ("a TTL over an hour", with(r#","Check":{"TTL":"2h"}"#), "bad TTL: must be 1ms to 1h"),
        ("an HTTP check that is a number", with(r#","Check":{"HTTP":80}"#), "bad HTTP: not a string"),
        ("an HTTP check on another host", with(r#","Check":{"HTTP":"http://169.254.169.254:8000/latest/meta-data"}"#), "bad Check.HTTP: must be on the service's own Address and Port"),
        ("an HTTP check on another port", with(r#","Check":{"HTTP":"http://127.0.0.1:22/"}"#), "bad Check.HTTP: must be on the service's own Address and Port"),
        ("an HTTPS check", with(r#","Check":{"HTTP":"https://127.0.0.1:8000/"}"#), "bad Check.HTTP: mini probes http:// URLs only"),
        ("an HTTP check path with a space", with(r#","Check":{"HTTP":"http://127.0.0.1:8000/a b"}"#), "bad check path"),
    ]
}

#[test]
fn every_bad_consul_registration_is_400_with_one_line_and_registers_nothing() {
    let registry = Proc::registry(&["--probe-interval", "60s"]);
    rt::block_on(async {
        let addr = socket(&registry);
        let mut client = Client::connect(addr).await;
        for (what, body, reason) in bad_consul_registrations() {
            let target = "/v1/agent/service/register";
            assert_bad_put(&mut client, what, target, &body, reason).await;
        }
        // Raw bytes that are not UTF-8 inside a string.
        let body = b"{\"Name\":\"w\xff\xfe\",\"Port\":8000,\"Address\":\"127.0.0.1\"}";
        let head = format!(
            "PUT /v1/agent/service/register HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        client.send([head.as_bytes(), &body[..]].concat()).await;
        let resp = client.response().await;
        assert_error_reply(&resp, 400, "raw non-UTF-8 in a string");
        assert!(
            resp.text().starts_with("bad body: bad JSON"),
            "{:?}",
            resp.text()
        );
        // Over the body cap: 413, one line, before the body is read.
        let body = format!(r#"{{"Name":"web","Tags":[{}]}}"#, "\"t\",".repeat(40_000));
        let raw = format!(
            "PUT /v1/agent/service/register HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let responses = parse_responses(&raw_exchange(addr, raw).await);
        assert_eq!(responses.len(), 1, "{responses:?}");
        assert_error_reply(&responses[0], 413, "a 160 KB registration");
        // Check updates and deregistrations of nothing, and a maintenance without `enable`.
        for (method, target, status, reason) in [
            (
                "PUT",
                "/v1/agent/check/pass/service:nothing",
                404,
                "unknown service ID nothing",
            ),
            ("PUT", "/v1/agent/check/fail/web", 404, "unknown check web"),
            (
                "GET",
                "/v1/agent/check/warn/service:%00",
                404,
                "unknown service ID",
            ),
            (
                "PUT",
                "/v1/agent/service/deregister/nothing",
                404,
                "unknown service ID nothing",
            ),
            (
                "PUT",
                "/v1/agent/service/maintenance/nothing",
                400,
                "missing enable=true|false",
            ),
            (
                "PUT",
                "/v1/agent/service/maintenance/nothing?enable=yes",
                400,
                "missing enable=true|false",
            ),
            (
                "PUT",
                "/v1/agent/service/maintenance/nothing?enable=true",
                404,
                "unknown service ID nothing",
            ),
            (
                "GET",
                "/v1/health/service/web?index=1&wait=forever",
                400,
                "bad wait",
            ),
            ("GET", "/v1/health/service/web?index=-1", 400, "bad index"),
        ] {
            let resp = assert_bad_request(&mut client, method, target, status, reason).await;
            assert!(
                !resp.text().contains('\0'),
                "{method} {target}: a NUL echoed"
            );
        }
        assert_still_serves(addr, "bad Consul registrations").await;
    });
    let (status, body) = procs::get(&registry.addr, "/v1/services");
    assert_eq!((status, body.as_str()), (200, ""), "something registered");
    let (status, body) = procs::get(&registry.addr, "/v1/catalog/services");
    assert_eq!((status, body.as_str()), (200, "{}"), "something registered");
}

/// What a junk DNS packet must get: nothing, or a 12-byte answer with this rcode and the query's ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DnsExpect {
    Dropped,
    Rcode(u8),
}

/// A DNS message: ID 0x4242, `flags`, `qd` questions counted, and the question `name`/`qtype`/`class`.
fn dns_query(name: &str, qtype: u16, flags: u16, qd: u16, class: u16) -> Vec<u8> {
    let mut b = vec![0x42, 0x42];
    b.extend_from_slice(&flags.to_be_bytes());
    b.extend_from_slice(&qd.to_be_bytes());
    b.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        b.push(label.len() as u8);
        b.extend_from_slice(label.as_bytes());
    }
    b.push(0);
    b.extend_from_slice(&qtype.to_be_bytes());
    b.extend_from_slice(&class.to_be_bytes());
    b
}

/// Junk for the DNS door, with what each must get (RFC 1035 §4.1.1 rcodes: 1 FORMERR, 4 NOTIMP).
fn dns_junk() -> Vec<(&'static str, Vec<u8>, DnsExpect)> {
    use DnsExpect::{Dropped, Rcode};
    let header = |qd: u16| dns_query("", 1, 0x0100, qd, 1)[..12].to_vec();
    let good = dns_query("web.service.mini", 1, 0x0100, 1, 1);
    let mut rng = fastrand::Rng::with_seed(12);
    let noise: Vec<u8> = (0..1400).map(|_| rng.u8(..)).collect();
    vec![
        ("an empty datagram", Vec::new(), Dropped),
        ("one byte", vec![0x42], Dropped),
        ("eleven bytes: less than a header", vec![0x42; 11], Dropped),
        (
            "a response (QR set): never answered, so no loops",
            dns_query("web.service.mini", 1, 0x8100, 1, 1),
            Dropped,
        ),
        (
            "a header counting one question, with none",
            header(1),
            Rcode(1),
        ),
        ("a header with no question", header(0), Rcode(1)),
        (
            "two questions counted, one given",
            dns_query("web.service.mini", 1, 0x0100, 2, 1),
            Rcode(1),
        ),
        (
            "a compression pointer to itself",
            [header(1), vec![0xC0, 12, 0, 1, 0, 1]].concat(),
            Rcode(1),
        ),
        (
            "a pointer past the end",
            [header(1), vec![0xC0, 0xFF, 0, 1, 0, 1]].concat(),
            Rcode(1),
        ),
        (
            "a 64-byte label",
            [header(1), vec![64], vec![b'a'; 64], vec![0, 0, 1, 0, 1]].concat(),
            Rcode(1),
        ),
        (
            "a 320-byte name",
            [
                header(1),
                [vec![63], vec![b'a'; 63]].concat().repeat(5),
                vec![0, 0, 1, 0, 1],
            ]
            .concat(),
            Rcode(1),
        ),
        (
            "a question cut short",
            good[..good.len() - 3].to_vec(),
            Rcode(1),
        ),
        (
            "trailing bytes after the question",
            [good.clone(), vec![0xFF; 40]].concat(),
            Rcode(1),
        ),
        (
            "an additional record counted, none given",
            {
                let mut q = good.clone();
                q[11] = 1;
                q
            },
            Rcode(1),
        ),
        (
            "opcode UPDATE",
            dns_query("web.service.mini", 1, 0x2800, 1, 1),
            Rcode(4),
        ),
        (
            "class CHAOS",
            dns_query("web.service.mini", 1, 0x0100, 1, 3),
            Rcode(4),
        ),
        (
            "a zone transfer (AXFR)",
            dns_query("mini", 252, 0x0100, 1, 1),
            Rcode(4),
        ),
        (
            "1400 random bytes with a query's header",
            [good[..12].to_vec(), noise.clone()].concat(),
            Rcode(1),
        ),
    ]
}

#[test]
fn dns_junk_is_dropped_or_refused_in_a_header_and_the_door_still_answers() {
    let registry = Proc::registry(&["--probe-interval", "60s", "--dns", "127.0.0.1:0"]);
    procs::eventually("the DNS door is up", || registry.logged("dns on "));
    let port: u16 = {
        let log = registry.log.lock().unwrap();
        let line = log
            .iter()
            .find(|l| l.contains("dns on 127.0.0.1:"))
            .expect("dns line");
        let rest = line.split("dns on 127.0.0.1:").nth(1).unwrap();
        rest.split(' ').next().unwrap().parse().expect("a port")
    };
    let target = "/v1/services/web/127.0.0.1:8000?check=none&ttl=60s";
    let put = format!(
        "PUT {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    assert_eq!(procs::exchange(&registry.addr, &put).0, 200);
    let dns: SocketAddr = ([127, 0, 0, 1], port).into();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    udp.connect(dns).expect("connect");
    let valid = dns_query("web.service.mini", 1, 0x0100, 1, 1);
    let answered = |udp: &std::net::UdpSocket, what: &str| {
        udp.set_read_timeout(Some(DEADLINE)).unwrap();
        udp.send(&valid).unwrap();
        let mut buf = [0u8; 512];
        let n = udp
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("after {what}: no answer ({e})"));
        assert!(n >= 12, "after {what}: {:?}", &buf[..n]);
        assert_eq!(
            (buf[3] & 0x0F, u16::from_be_bytes([buf[6], buf[7]])),
            (0, 1),
            "after {what}"
        );
    };
    for (what, packet, expect) in dns_junk() {
        udp.send(&packet).expect("send");
        // A dropped packet gets nothing: the valid query right after it is the next answer.
        udp.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 4096];
        match (expect, udp.recv(&mut buf)) {
            (DnsExpect::Dropped, Err(_)) => {}
            (DnsExpect::Rcode(rcode), Ok(n)) => {
                let reply = &buf[..n];
                assert!(n >= 12, "{what}: {reply:?}");
                assert_eq!(&reply[..2], &packet[..2], "{what}: the ID");
                assert!(reply[2] & 0x80 != 0, "{what}: QR not set");
                assert_eq!(reply[3] & 0x0F, rcode, "{what}: {reply:?}");
                assert!(
                    n <= packet.len().max(12) + 64,
                    "{what}: {n} bytes for {}",
                    packet.len()
                );
            }
            (expect, got) => panic!(
                "{what}: expected {expect:?}, got {:?}",
                got.map(|n| &buf[..n])
            ),
        }
        answered(&udp, what);
    }
    // Over TCP, each junk frame followed by a valid query on the same connection: the junk gets an
    // error frame or nothing, and the query its answer, unless the server closed the connection
    // (then a fresh one is answered).
    use std::io::{Read, Write};
    let frame = |msg: &[u8]| [&(msg.len() as u16).to_be_bytes()[..], msg].concat();
    let read_frame = |s: &mut std::net::TcpStream| -> Option<Vec<u8>> {
        let mut len = [0u8; 2];
        s.read_exact(&mut len).ok()?;
        let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut msg).ok()?;
        Some(msg)
    };
    for (what, packet, _) in dns_junk() {
        let mut s = std::net::TcpStream::connect(dns).expect("connect");
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        let _ = s.write_all(&[frame(&packet), frame(&valid)].concat());
        let mut answered = false;
        while let Some(reply) = read_frame(&mut s) {
            assert!(
                reply.len() >= 12 && reply[2] & 0x80 != 0,
                "{what} over TCP: {reply:?}"
            );
            if reply[3] & 0x0F == 0 && reply[6..8] == [0, 1] {
                answered = true;
                break;
            }
        }
        if !answered {
            let mut fresh = std::net::TcpStream::connect(dns).expect("connect");
            fresh.set_read_timeout(Some(DEADLINE)).unwrap();
            fresh.write_all(&frame(&valid)).unwrap();
            let reply = read_frame(&mut fresh).unwrap_or_else(|| panic!("after {what} over TCP"));
            assert_eq!(reply[3] & 0x0F, 0, "after {what} over TCP");
        }
    }
    assert_eq!(procs::get(&registry.addr, "/health").0, 200);
}
