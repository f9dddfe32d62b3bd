//! The HTTP/1.1 server over real sockets: keep-alive, pipelining, framing limits, error replies,
//! timeouts and the connection cap.
//!
//! Timeout tests use a short server configuration and only check that the outcome arrives; the
//! [`common::DEADLINE`] behind every wait is a hang guard, never a speed assertion.

mod common;

use async_net::TcpListener;
use common::{
    assert_error_reply, exchange_once_admitted, parse_responses, raw_exchange, Client, RawResponse,
};
use mini::http::router::Router;
use mini::http::server::serve;
use mini::http::{Handler, Request, Response, ServerConfig};
use mini::http::{MAX_BODY_BYTES, MAX_HEADERS, MAX_HEAD_BYTES};
use mini::rt;
use smol::Timer;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
enum Route {
    Hello,
    Echo,
    Path,
    Query,
    Item,
}

/// Routes `GET /hello`, `POST /echo` (body back), `GET /path/{}/{}` (segments joined by `|`),
/// `GET /query` (decoded pairs, debug-printed) and `PUT`/`DELETE /item/{}`.
struct TestHandler {
    router: Router<Route>,
}

impl TestHandler {
    fn new() -> TestHandler {
        TestHandler {
            router: Router::new(&[
                ("GET", "/hello", Route::Hello),
                ("POST", "/echo", Route::Echo),
                ("GET", "/path/{}/{}", Route::Path),
                ("GET", "/query", Route::Query),
                ("PUT", "/item/{}", Route::Item),
                ("DELETE", "/item/{}", Route::Item),
            ]),
        }
    }
}

impl Handler for TestHandler {
    async fn handle(&self, req: &Request<'_>) -> Response {
        match self.router.find(req.method(), req.segments()) {
            Ok((Route::Hello, _)) => Response::text(200, "hello"),
            Ok((Route::Echo, _)) => Response::text(200, String::from_utf8_lossy(req.body())),
            Ok((Route::Path, params)) => Response::text(200, params.join("|")),
            Ok((Route::Query, _)) => {
                let pairs: Vec<_> = req.query_pairs().collect();
                Response::text(200, format!("{pairs:?}"))
            }
            Ok((Route::Item, params)) => Response::text(200, format!("item {}", params[0])),
            Err(miss) => miss.response(req.method(), req.path()),
        }
    }
}

/// Starts a server on an ephemeral port and returns its address.
async fn start(config: ServerConfig) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    rt::spawn(serve(listener, Arc::new(TestHandler::new()), config)).detach();
    addr
}

/// Short timeouts for the tests that wait for them.
fn short_timeouts() -> ServerConfig {
    ServerConfig {
        head_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    }
}

const HELLO: &str = "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n";
const HELLO_CLOSE: &str = "GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

fn echo(body: &str) -> String {
    format!(
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn assert_ok(resp: &RawResponse, body: &str) {
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.text(), body, "{resp:?}");
}

/// The server still answers a fresh connection.
async fn assert_still_serves(addr: SocketAddr) {
    let responses = parse_responses(&raw_exchange(addr, HELLO_CLOSE).await);
    assert_eq!(responses.len(), 1, "{responses:?}");
    assert_ok(&responses[0], "hello");
}

/// Sends `raw` (the case `what`) on a new connection and checks the server answers exactly one
/// error reply with `status`, says `Connection: close`, closes, and goes on serving other
/// connections.
async fn assert_refused(addr: SocketAddr, what: &str, raw: impl AsRef<[u8]>, status: u16) {
    let responses = parse_responses(&raw_exchange(addr, raw).await);
    assert_eq!(responses.len(), 1, "{what}: one reply, got {responses:?}");
    assert_error_reply(&responses[0], status, what);
    assert_eq!(responses[0].header("Connection"), Some("close"), "{what}");
    assert_still_serves(addr).await;
}

#[test]
fn http11_keeps_the_connection_alive_for_a_second_request() {
    rt::block_on(async {
        let addr = start(ServerConfig::default()).await;
        let mut client = Client::connect(addr).await;
        client.send(HELLO).await;
        let first = client.response().await;
        assert_ok(&first, "hello");
        assert_eq!(first.header("Connection"), None, "{first:?}");
        client.send(echo("second")).await;
        assert_ok(&client.response().await, "second");
    });
}

#[test]
fn connection_close_is_honoured_and_the_server_closes() {
    rt::block_on(async {
        let addr = start(ServerConfig::default()).await;
        let mut client = Client::connect(addr).await;
        client.send(HELLO_CLOSE).await;
        let resp = client.response().await;
        assert_ok(&resp, "hello");
        assert_eq!(resp.header("Connection"), Some("close"));
        assert_eq!(client.read_to_close().await, b"");
    });
}

#[test]
fn http10_closes_by_default() {
    rt::block_on(async {
        let addr = start(ServerConfig::default()).await;
        let responses = parse_responses(&raw_exchange(addr, "GET /hello HTTP/1.0\r\n\r\n").await);
        assert_eq!(responses.len(), 1, "{responses:?}");
        assert_ok(&responses[0], "hello");
        assert_eq!(responses[0].header("Connection"), Some("close"));
    });
}

#[test]
fn http10_with_keep_alive_stays_open_and_says_so() {
    rt::block_on(async {
        let addr = start(ServerConfig::default()).await;
        let mut client = Client::connect(addr).await;
        for _ in 0..2 {
            client
                .send("GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                .await;
            let resp = client.response().await;
            assert_ok(&resp, "hello");
            assert_eq!(resp.header("Connection"), Some("keep-alive"), "{resp:?}");
        }
        // Without the token, HTTP/1.0 closes again.
        client.send("GET /hello HTTP/1.0\r\n\r\n").await;
        assert_eq!(client.response().await.header("Connection"), Some("close"));
        assert_eq!(client.read_to_close().await, b"");
    });
}

#[test]
fn pipelined_requests_in_one_write_are_answered_in_order() {
    rt::block_on(async {
        let addr = start(ServerConfig::default()).await;
        let mut client = Client::connect(addr).await;
        let burst = format!(
            "{}{}GET /query?n=3 HTTP/1.1\r\nConnection: close\r\n\r\n",
            echo("one"),
            echo("two")
        );
        client.send(burst).await;
        let responses = parse_responses(&client.read_to_close().await);
        let bodies: Vec<&str> = responses.iter().map(RawResponse::text).collect();
        assert_eq!(bodies, ["one", "two", r#"[("n", "3")]"#]);
        assert!(responses.iter().all(|r| r.status == 200), "{responses:?}");
    });
}

#[test]
fn a_request_written_byte_by_byte_is_answered() {
    rt::block_on(async {
        let addr = start(ServerConfig::default()).await;
        let mut client = Client::connect(addr).await;
        for byte in echo("split into single bytes").bytes() {
            client.send([byte]).await;
            // Gives the server a chance to read each byte on its own; correctness does not rely on it.
            Timer::after(Duration::from_millis(1)).await;
        }
        assert_ok(&client.response().await, "split into single bytes");
    });
}

#[test]
fn percent_decoded_segments_and_query_reach_the_handler() {
    rt::block_on(async {
        let addr = start(ServerConfig::default()).await;
        let mut client = Client::connect(addr).await;
        client
            .send("GET /path/a%2Fb/%E2%9C%93%20x HTTP/1.1\r\n\r\n")
            .await;
        assert_ok(&client.response().await, "a/b|\u{2713} x");
        client
            .send("GET /query?ip=127.0.0.1%3A1111&sum=1%2B1&sp=a+b&amp=%26&flag HTTP/1.1\r\n\r\n")
            .await;
        assert_ok(
            &client.response().await,
            r#"[("ip", "127.0.0.1:1111"), ("sum", "1+1"), ("sp", "a b"), ("amp", "&"), ("flag", "")]"#,
        );
    });
}

#[test]
fn unknown_path_is_404_and_the_connection_stays_open() {
    rt::block_on(async {
        let addr = start(ServerConfig::default()).await;
        let mut client = Client::connect(addr).await;
        client.send("GET /nope HTTP/1.1\r\n\r\n").await;
        let resp = client.response().await;
        assert_error_reply(&resp, 404, "/nope");
        assert_eq!(resp.header("Allow"), None);
        client.send(HELLO).await;
        assert_ok(&client.response().await, "hello");
    });
}

#[test]
fn wrong_method_is_405_with_allow_listing_the_right_methods() {
    rt::block_on(async {
        let addr = start(ServerConfig::default()).await;
        let mut client = Client::connect(addr).await;
        client.send("GET /item/x HTTP/1.1\r\n\r\n").await;
        let resp = client.response().await;
        assert_error_reply(&resp, 405, "GET /item/x");
        assert_eq!(resp.header("Allow"), Some("PUT, DELETE"));
        client.send("POST /hello HTTP/1.1\r\n\r\n").await;
        let resp = client.response().await;
        assert_error_reply(&resp, 405, "POST /hello");
        assert_eq!(resp.header("Allow"), Some("GET"));
        client.send("DELETE /item/x HTTP/1.1\r\n\r\n").await;
        assert_ok(&client.response().await, "item x");
    });
}

/// Requests the server refuses before any handler runs, with their statuses: `(what, raw, status)`.
fn refused_requests() -> Vec<(&'static str, Vec<u8>, u16)> {
    let headers: String = (0..=MAX_HEADERS)
        .map(|i| format!("X-H{i}: v\r\n"))
        .collect();
    let too_many_headers = format!("GET /hello HTTP/1.1\r\n{headers}\r\n");
    assert!(
        too_many_headers.len() < MAX_HEAD_BYTES,
        "the count, not the size, must trip"
    );
    let big = "a".repeat(MAX_HEAD_BYTES);
    vec![
        (
            "more than MAX_HEADERS headers",
            too_many_headers.into(),
            431,
        ),
        (
            "a head over 8 KiB",
            format!("GET /hello HTTP/1.1\r\nX-Big: {big}\r\n\r\n").into(),
            431,
        ),
        (
            "a request line over 8 KiB",
            format!("GET /{big} HTTP/1.1\r\nHost: t\r\n\r\n").into(),
            414,
        ),
        (
            "a Content-Length over 64 KiB",
            format!(
                "POST /echo HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
                MAX_BODY_BYTES + 1
            )
            .into(),
            413,
        ),
        (
            "a chunked body",
            b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
                .to_vec(),
            411,
        ),
        (
            "gzip transfer coding",
            b"POST /echo HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec(),
            501,
        ),
        (
            "two different Content-Lengths",
            b"POST /echo HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".to_vec(),
            400,
        ),
        (
            "a Content-Length list of two values",
            b"POST /echo HTTP/1.1\r\nContent-Length: 1, 2\r\n\r\nab".to_vec(),
            400,
        ),
        (
            "a TLS ClientHello",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec(),
            400,
        ),
        (
            "a request line that is not HTTP",
            b"hello there\r\n\r\n".to_vec(),
            400,
        ),
    ]
}

#[test]
fn oversized_unsupported_and_malformed_requests_get_one_error_reply_and_a_close() {
    rt::block_on(async {
        let addr = start(ServerConfig::default()).await;
        for (what, raw, status) in refused_requests() {
            assert_refused(addr, what, raw, status).await;
        }
    });
}

#[test]
fn content_length_with_transfer_encoding_is_400_and_closes() {
    rt::block_on(async {
        let addr = start(ServerConfig::default()).await;
        // A smuggling shape: whatever follows must not be answered as a second request.
        let raw = "POST /echo HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n\
                   0\r\n\r\nGET /hello HTTP/1.1\r\n\r\n";
        assert_refused(addr, "CL+TE", raw, 400).await;
        // The same on a connection we keep: the reply is followed by EOF.
        let mut client = Client::connect(addr).await;
        client.send(raw).await;
        assert_error_reply(&client.response().await, 400, "CL+TE, kept");
        assert_eq!(client.read_to_close().await, b"");
    });
}

#[test]
fn incomplete_head_past_the_head_timeout_is_408() {
    rt::block_on(async {
        let addr = start(short_timeouts()).await;
        let mut client = Client::connect(addr).await;
        client.send("GET /hello HTTP/1.1\r\nHost: t\r\n").await;
        let responses = parse_responses(&client.read_to_close().await);
        assert_eq!(responses.len(), 1, "{responses:?}");
        assert_error_reply(&responses[0], 408, "cut off");
        assert_eq!(responses[0].header("Connection"), Some("close"));
        assert_still_serves(addr).await;
    });
}

#[test]
fn incomplete_body_past_the_head_timeout_is_408() {
    rt::block_on(async {
        let addr = start(short_timeouts()).await;
        let mut client = Client::connect(addr).await;
        client
            .send("POST /echo HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
            .await;
        let responses = parse_responses(&client.read_to_close().await);
        assert_eq!(responses.len(), 1, "{responses:?}");
        assert_error_reply(&responses[0], 408, "cut off");
    });
}

#[test]
fn incomplete_request_behind_a_pipelined_one_is_408() {
    rt::block_on(async {
        // A long idle timeout: the half-sent second request is held to the head timeout, not to it.
        let config = ServerConfig {
            idle_timeout: Duration::from_secs(60),
            ..short_timeouts()
        };
        let addr = start(config).await;
        let mut client = Client::connect(addr).await;
        client.send(format!("{HELLO}GET /hel")).await;
        assert_ok(&client.response().await, "hello");
        let responses = parse_responses(&client.read_to_close().await);
        assert_eq!(responses.len(), 1, "{responses:?}");
        assert_error_reply(&responses[0], 408, "cut off");
    });
}

#[test]
fn silent_new_connection_is_closed_without_a_reply_after_the_head_timeout() {
    rt::block_on(async {
        let addr = start(short_timeouts()).await;
        let mut client = Client::connect(addr).await;
        assert_eq!(client.read_to_close().await, b"");
        assert_still_serves(addr).await;
    });
}

#[test]
fn idle_kept_alive_connection_is_closed_without_a_reply_after_the_idle_timeout() {
    rt::block_on(async {
        let addr = start(short_timeouts()).await;
        let mut client = Client::connect(addr).await;
        client.send(HELLO).await;
        assert_ok(&client.response().await, "hello");
        assert_eq!(client.read_to_close().await, b"");
    });
}

#[test]
fn connections_past_the_cap_are_closed_at_once_until_a_slot_frees() {
    rt::block_on(async {
        // Long timeouts, so any close seen here comes from the cap, not from a timer.
        let addr = start(ServerConfig {
            head_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            max_connections: 2,
            ..ServerConfig::default()
        })
        .await;
        // Two connections that have sent nothing yet: counted (accepted in order before the third)
        // but not idle between requests, so the server cannot reclaim them.
        let first = Client::connect(addr).await;
        let mut second = Client::connect(addr).await;

        let mut third = Client::connect(addr).await;
        assert_eq!(third.read_to_close().await, b"", "third got a reply");

        drop(first);
        // The slot frees once the server task sees the close; retry until then.
        assert_ok(&exchange_once_admitted(addr, HELLO_CLOSE).await, "hello");

        // The surviving connection was never disturbed.
        second.send(HELLO).await;
        assert_ok(&second.response().await, "hello");
    });
}

#[test]
fn at_the_cap_an_idle_kept_alive_connection_makes_room() {
    rt::block_on(async {
        let addr = start(ServerConfig {
            head_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            max_connections: 2,
            ..ServerConfig::default()
        })
        .await;
        // One served connection now idle between requests, one fresh connection.
        let mut idle = Client::connect(addr).await;
        idle.send(HELLO).await;
        assert_ok(&idle.response().await, "hello");
        let mut fresh = Client::connect(addr).await;

        // A third connection is admitted; the idle one is closed for it, without a reply.
        let mut third = Client::connect(addr).await;
        third.send(HELLO).await;
        assert_ok(&third.response().await, "hello");
        assert_eq!(
            idle.read_to_close().await,
            b"",
            "the idle connection got a reply"
        );

        // The fresh one was not touched.
        fresh.send(HELLO).await;
        assert_ok(&fresh.response().await, "hello");
    });
}
