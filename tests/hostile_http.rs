//! Hostile input against each role's server: the registry and the adder, as real processes where the
//! default configuration is what is under test, and in-process (the real routes behind
//! `mini::http::server::serve`, real sockets on port 0) where a case needs short timeouts or a small
//! connection cap.
//!
//! Every case asserts the exact status (or the close) and that the server still answers `/health`
//! on a fresh connection afterwards. Waits are bounded by [`common::DEADLINE`] or
//! [`procs::PROC_DEADLINE`] as hang guards only; nothing here asserts speed.

mod common;
#[path = "hostile_http/dns.rs"]
mod dns;
#[path = "hostile_http/registration.rs"]
mod registration;

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
