//! The HTTP client over real sockets, through its public API: a test server of its own (plain
//! `async-net`, written response bytes) checks framing, keep-alive and its pool, the stale-retry,
//! timeouts, size limits, malformed responses, header injection and streamed bodies.

use async_net::{TcpListener, TcpStream};
use mini::http::client::{
    Client, ClientConfig, ClientError, ClientRequest, ClientResponse, MAX_RESPONSE_BODY,
    MAX_RESPONSE_HEAD, MAX_RESPONSE_HEADERS,
};
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::Timer;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A test server on 127.0.0.1 that counts accepted connections.
struct Server {
    addr: String,
    accepted: Arc<AtomicUsize>,
    _task: smol::Task<()>,
}

impl Server {
    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Starts a server running `handler` on every accepted connection.
async fn serve<F, Fut>(handler: F) -> Server
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let task = smol::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            smol::spawn(handler(stream)).detach();
        }
    });
    Server {
        addr,
        accepted,
        _task: task,
    }
}

/// Reads one request (head plus Content-Length body); `None` at EOF.
async fn read_request(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut req = Vec::new();
    let mut byte = [0u8; 1];
    while !req.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        req.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&req).to_ascii_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |v| v.trim().parse::<usize>().unwrap());
    let mut body = vec![0; len];
    stream.read_exact(&mut body).await.ok()?;
    req.extend_from_slice(&body);
    Some(req)
}

/// Answers every request on the connection with `resp`.
async fn answer_each(mut stream: TcpStream, resp: &'static [u8]) {
    while read_request(&mut stream).await.is_some() {
        if stream.write_all(resp).await.is_err() {
            return;
        }
    }
}

/// Answers one request with `resp`, then closes the connection.
async fn answer_once(mut stream: TcpStream, resp: &'static [u8]) {
    if read_request(&mut stream).await.is_some() {
        let _ = stream.write_all(resp).await;
    }
}

/// Answers every request with `resp` written in `piece`-byte writes.
async fn answer_slowly(mut stream: TcpStream, resp: &'static [u8], piece: usize) {
    stream.set_nodelay(true).unwrap();
    while read_request(&mut stream).await.is_some() {
        for part in resp.chunks(piece) {
            if stream.write_all(part).await.is_err() {
                return;
            }
            Timer::after(Duration::from_millis(1)).await;
        }
    }
}

/// Echoes each request back as a Content-Length body.
async fn echo(mut stream: TcpStream) {
    while let Some(req) = read_request(&mut stream).await {
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", req.len());
        let mut resp = head.into_bytes();
        resp.extend_from_slice(&req);
        if stream.write_all(&resp).await.is_err() {
            return;
        }
    }
}

fn client() -> Client {
    Client::new(ClientConfig::default())
}

fn quick_client() -> Client {
    Client::new(ClientConfig {
        connect_timeout: Duration::from_millis(200),
        request_timeout: Duration::from_millis(200),
    })
}

async fn get_from(resp: &'static [u8]) -> Result<ClientResponse, ClientError> {
    let server = serve(move |s| answer_each(s, resp)).await;
    client().get(&server.addr, "/").await
}

const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
    5\r\nhello\r\n1;ext=1;other\r\n \r\n5 \r\nworld\r\n0\r\nX-Trailer: yes\r\n\r\n";

#[test]
fn content_length_body() {
    smol::block_on(async {
        let resp = get_from(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
        )
        .await
        .unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.text(), "hello");
        assert_eq!(resp.header("content-type"), Some("text/plain"));
        assert_eq!(resp.header("CONTENT-LENGTH"), Some("5"));
        assert_eq!(resp.header("missing"), None);
    });
}

#[test]
fn post_sends_host_length_and_body() {
    smol::block_on(async {
        let server = serve(echo).await;
        let c = client();
        let resp = c
            .post(&server.addr, "/heartbeat?x=1", b"ping")
            .await
            .unwrap();
        let want = format!(
            "POST /heartbeat?x=1 HTTP/1.1\r\nHost: {}\r\nContent-Length: 4\r\n\r\nping",
            server.addr
        );
        assert_eq!(resp.text(), want);
        let resp = c.post(&server.addr, "/empty", b"").await.unwrap();
        assert!(resp.text().contains("Content-Length: 0\r\n"));
        let resp = c.get(&server.addr, "/get").await.unwrap();
        assert!(!resp.text().to_ascii_lowercase().contains("content-length"));
        let req = ClientRequest {
            headers: &[("X-Id", "a b\tc")],
            ..ClientRequest::new("GET", &server.addr, "/h")
        };
        let resp = c.request(&req).await.unwrap();
        assert!(resp.text().contains("\r\nX-Id: a b\tc\r\n"));
        assert_eq!(server.accepted(), 1);
    });
}

#[test]
fn chunked_with_extensions_and_trailers() {
    smol::block_on(async {
        let resp = get_from(CHUNKED).await.unwrap();
        assert_eq!(resp.text(), "hello world");
    });
}

#[test]
fn chunked_split_across_writes() {
    smol::block_on(async {
        for piece in [1, 2, 3, 7, 16] {
            let server = serve(move |s| answer_slowly(s, CHUNKED, piece)).await;
            let c = client();
            for _ in 0..2 {
                let resp = c.get(&server.addr, "/").await.unwrap();
                assert_eq!(resp.text(), "hello world", "piece size {piece}");
            }
            assert_eq!(
                server.accepted(),
                1,
                "chunked response keeps the connection"
            );
        }
    });
}

#[test]
fn head_split_byte_by_byte() {
    smol::block_on(async {
        let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
        let server = serve(move |s| answer_slowly(s, resp, 1)).await;
        let resp = client().get(&server.addr, "/").await.unwrap();
        assert_eq!(resp.text(), "abc");
    });
}

#[test]
fn read_to_eof_body_is_not_reused() {
    smol::block_on(async {
        let server = serve(|s| answer_once(s, b"HTTP/1.1 200 OK\r\n\r\nuntil the end")).await;
        let c = client();
        for _ in 0..2 {
            let resp = c.get(&server.addr, "/").await.unwrap();
            assert_eq!(resp.text(), "until the end");
        }
        assert_eq!(server.accepted(), 2);
        assert_eq!(c.idle_count(&server.addr), 0);
    });
}

#[test]
fn connection_is_reused() {
    smol::block_on(async {
        let server =
            serve(|s| answer_each(s, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")).await;
        let c = client();
        let clone = c.clone();
        assert_eq!(c.get(&server.addr, "/a").await.unwrap().text(), "ok");
        assert_eq!(clone.get(&server.addr, "/b").await.unwrap().text(), "ok");
        assert_eq!(server.accepted(), 1);
        assert_eq!(c.idle_count(&server.addr), 1);
    });
}

#[test]
fn connection_close_and_http10_are_not_reused() {
    smol::block_on(async {
        let responses: [&'static [u8]; 2] = [
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
            b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
        ];
        for resp in responses {
            let server = serve(move |s| answer_each(s, resp)).await;
            let c = client();
            for _ in 0..2 {
                assert_eq!(c.get(&server.addr, "/").await.unwrap().text(), "ok");
            }
            assert_eq!(server.accepted(), 2);
        }
    });
}

#[test]
fn stale_pooled_connection_is_retried_once() {
    smol::block_on(async {
        let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let server = serve(move |s| answer_once(s, resp)).await;
        let c = client();
        assert_eq!(c.get(&server.addr, "/1").await.unwrap().text(), "ok");
        assert_eq!(c.idle_count(&server.addr), 1);
        assert_eq!(c.post(&server.addr, "/2", b"x").await.unwrap().text(), "ok");
        assert_eq!(server.accepted(), 2);
    });
}

#[test]
fn fresh_connection_failure_is_not_retried() {
    smol::block_on(async {
        let server = serve(|s| answer_once(s, b"")).await;
        let err = client().get(&server.addr, "/").await.unwrap_err();
        assert!(
            matches!(err, ClientError::Closed | ClientError::Io(_)),
            "{err}"
        );
        assert_eq!(server.accepted(), 1);
    });
}

#[test]
fn connect_refused() {
    smol::block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        match client().get(&addr, "/").await {
            Err(ClientError::Connect(e)) => {
                assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused)
            }
            other => panic!("expected a connect error, got {other:?}"),
        }
    });
}

#[test]
fn silent_server_times_out() {
    smol::block_on(async {
        let server = serve(|mut s| async move {
            let _req = read_request(&mut s).await;
            smol::future::pending::<()>().await;
        })
        .await;
        let start = Instant::now();
        let err = quick_client().get(&server.addr, "/").await.unwrap_err();
        let took = start.elapsed();
        assert!(matches!(err, ClientError::Timeout), "{err}");
        assert!(took >= Duration::from_millis(190), "{took:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
        assert_eq!(err.to_string(), "timed out after the request timeout");
    });
}

#[test]
fn oversized_head() {
    smol::block_on(async {
        let big: &'static [u8] = {
            let mut r = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
            r.resize(MAX_RESPONSE_HEAD + 100, b'a');
            r.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
            r.leak()
        };
        let err = get_from(big).await.unwrap_err();
        assert!(matches!(err, ClientError::TooLarge(_)), "{err}");
        let many: &'static [u8] = {
            let mut r = b"HTTP/1.1 200 OK\r\n".to_vec();
            for i in 0..=MAX_RESPONSE_HEADERS {
                r.extend_from_slice(format!("X-{i}: 1\r\n").as_bytes());
            }
            r.extend_from_slice(b"Content-Length: 0\r\n\r\n");
            r.leak()
        };
        let err = get_from(many).await.unwrap_err();
        assert!(matches!(err, ClientError::TooLarge(_)), "{err}");
    });
}

#[test]
fn oversized_body() {
    smol::block_on(async {
        let too_long = b"HTTP/1.1 200 OK\r\nContent-Length: 1048577\r\n\r\n";
        let err = get_from(too_long).await.unwrap_err();
        assert!(matches!(err, ClientError::TooLarge(_)), "{err}");
        let huge_chunk = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n100001\r\n";
        let err = get_from(huge_chunk).await.unwrap_err();
        assert!(matches!(err, ClientError::TooLarge(_)), "{err}");
        let until_eof: &'static [u8] = {
            let mut r = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
            r.resize(r.len() + MAX_RESPONSE_BODY + 1, b'x');
            r.leak()
        };
        let err = get_from(until_eof).await.unwrap_err();
        assert!(matches!(err, ClientError::TooLarge(_)), "{err}");
    });
}

#[test]
fn malformed_responses() {
    smol::block_on(async {
        let cases: [&'static [u8]; 5] = [
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nabc",
            b"SMTP ready\r\n\r\n",
        ];
        for resp in cases {
            let err = get_from(resp).await.unwrap_err();
            assert!(matches!(err, ClientError::BadResponse(_)), "{err}");
        }
        let same = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2, 2\r\n\r\nab";
        assert_eq!(get_from(same).await.unwrap().text(), "ab");
    });
}

#[test]
fn truncated_body_is_closed() {
    smol::block_on(async {
        let server =
            serve(|s| answer_once(s, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")).await;
        let err = client().get(&server.addr, "/").await.unwrap_err();
        assert!(matches!(err, ClientError::Closed), "{err}");
    });
}

#[test]
fn header_injection_is_rejected() {
    smol::block_on(async {
        let server = serve(echo).await;
        let c = client();
        let base = ClientRequest::new("GET", &server.addr, "/");
        let bad_requests = [
            ClientRequest {
                method: "GET /x HTTP/1.1\r\nX-Evil: 1\r\n",
                ..base
            },
            ClientRequest {
                target: "/ HTTP/1.1\r\nX-Evil: 1",
                ..base
            },
            ClientRequest {
                target: "/a b",
                ..base
            },
            ClientRequest {
                headers: &[("X-A", "1\r\nX-Evil: 1")],
                ..base
            },
            ClientRequest {
                headers: &[("X-A\r\nX-Evil", "1")],
                ..base
            },
            ClientRequest {
                headers: &[("X-A", "1\nX-Evil: 1")],
                ..base
            },
            ClientRequest {
                headers: &[("Content-Length", "5")],
                ..base
            },
        ];
        for req in &bad_requests {
            let err = c.request(req).await.unwrap_err();
            assert!(matches!(err, ClientError::InvalidRequest(_)), "{err}");
        }
        for addr in [
            "",
            "nohost",
            "127.0.0.1:80\r\nX-Evil: 1",
            "a b:80",
            "h:99999",
            "h:+80",
            "h/x:80",
        ] {
            let err = c
                .request(&ClientRequest { addr, ..base })
                .await
                .unwrap_err();
            assert!(
                matches!(err, ClientError::InvalidAddress(_)),
                "{addr:?}: {err}"
            );
        }
        assert_eq!(server.accepted(), 0, "nothing may reach the network");
        let resp = c.request(&base).await.unwrap();
        assert!(!resp.text().contains("Evil"));
    });
}

#[test]
fn interim_continue_is_skipped() {
    smol::block_on(async {
        let resp = get_from(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\
              HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        )
        .await
        .unwrap();
        assert_eq!((resp.status, resp.text().as_str()), (200, "ok"));
    });
}

#[test]
fn no_body_for_head_and_204() {
    smol::block_on(async {
        let server =
            serve(|s| answer_each(s, b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"))
                .await;
        let c = client();
        let head = ClientRequest::new("HEAD", &server.addr, "/");
        assert!(c.request(&head).await.unwrap().body.is_empty());
        assert!(c.get(&server.addr, "/").await.unwrap().body.is_empty());
        assert_eq!(server.accepted(), 1);
    });
}

#[test]
fn streams_chunked_lines_as_they_arrive() {
    smol::block_on(async {
        let (tx, rx) = smol::channel::unbounded::<&'static [u8]>();
        let server = serve(move |mut s| {
            let rx = rx.clone();
            async move {
                if read_request(&mut s).await.is_none() {
                    return;
                }
                let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
                let _ = s.write_all(head).await;
                while let Ok(piece) = rx.recv().await {
                    let _ = s.write_all(piece).await;
                }
            }
        })
        .await;
        let req = ClientRequest {
            body: b"{}",
            ..ClientRequest::new("POST", &server.addr, "/v3/watch")
        };
        let (status, mut body) = client().stream(&req).await.unwrap();
        assert_eq!(status, 200);
        tx.send(b"6\r\n{\"a\":1\r\n").await.unwrap();
        tx.send(b"2\r\n}\n\r\n").await.unwrap();
        assert_eq!(body.next_line().await.unwrap().unwrap(), b"{\"a\":1}");
        // Two lines in one chunk, then one split over three chunks, with CRLF.
        tx.send(b"4\r\nx\ny\n\r\n3\r\nab\r\r\n1\r\n\n\r\n")
            .await
            .unwrap();
        assert_eq!(body.next_line().await.unwrap().unwrap(), b"x");
        assert_eq!(body.next_line().await.unwrap().unwrap(), b"y");
        assert_eq!(body.next_line().await.unwrap().unwrap(), b"ab");
        tx.send(b"1\r\nz\r\n0\r\n\r\n").await.unwrap();
        assert_eq!(body.next_line().await.unwrap().unwrap(), b"z");
        assert!(body.next_line().await.unwrap().is_none());
    });
}

#[test]
fn streamed_lines_are_bounded_and_a_closed_stream_is_an_error() {
    smol::block_on(async {
        let server = serve(|s| {
            answer_once(
                s,
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n",
            )
        })
        .await;
        let req = ClientRequest::new("GET", &server.addr, "/");
        let (_, body) = client().stream(&req).await.unwrap();
        let mut body = body.with_line_limit(8);
        assert!(matches!(
            body.next_line().await,
            Err(ClientError::TooLarge(_))
        ));
        let (_, mut body) = client().stream(&req).await.unwrap();
        assert!(matches!(body.next_line().await, Err(ClientError::Closed)));
    });
}

#[test]
fn streams_length_and_eof_bodies() {
    smol::block_on(async {
        let server =
            serve(|s| answer_once(s, b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\na\nbc")).await;
        let req = ClientRequest::new("GET", &server.addr, "/");
        let (_, mut body) = client().stream(&req).await.unwrap();
        assert_eq!(body.next_line().await.unwrap().unwrap(), b"a");
        assert_eq!(body.next_line().await.unwrap().unwrap(), b"bc");
        assert!(body.next_line().await.unwrap().is_none());
        let server = serve(|s| answer_once(s, b"HTTP/1.0 200 OK\r\n\r\nx\ny")).await;
        let req = ClientRequest::new("GET", &server.addr, "/");
        let (_, mut body) = client().stream(&req).await.unwrap();
        assert_eq!(body.next_line().await.unwrap().unwrap(), b"x");
        assert_eq!(body.next_line().await.unwrap().unwrap(), b"y");
        assert!(body.next_line().await.unwrap().is_none());
    });
}

#[test]
fn stream_head_is_bounded_by_the_request_timeout() {
    smol::block_on(async {
        let server = serve(|mut s| async move {
            let _ = read_request(&mut s).await;
            Timer::after(Duration::from_secs(5)).await;
        })
        .await;
        let req = ClientRequest::new("GET", &server.addr, "/");
        assert!(matches!(
            quick_client().stream(&req).await,
            Err(ClientError::Timeout)
        ));
    });
}
