//! Helpers shared by the integration tests: raw TCP exchanges and a small, independent parser of
//! HTTP/1.1 responses (status, headers, `Content-Length` body).
//!
//! Every wait is bounded by [`DEADLINE`], a hang guard only: tests never assert that anything was fast.
#![allow(dead_code)]

pub mod doors;
pub mod etcd;
pub mod procs;

use async_net::TcpStream;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::Timer;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Longest any single wait in a test may take before the test fails instead of hanging.
pub const DEADLINE: Duration = Duration::from_secs(5);

/// Runs `fut`, panicking with `what` if it has not finished within [`DEADLINE`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    let out = smol::future::or(async { Some(fut.await) }, async {
        Timer::after(DEADLINE).await;
        None
    })
    .await;
    out.unwrap_or_else(|| panic!("{what}: not done within {DEADLINE:?}"))
}

/// One parsed response.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub version: String,
    /// The status code.
    pub status: u16,
    /// The reason phrase.
    pub reason: String,
    /// Header names and trimmed values, in order.
    pub headers: Vec<(String, String)>,
    /// The body, `Content-Length` bytes.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("body is not UTF-8")
    }
}

/// An error reply, as every server of ours sends one: `status`, plain text, one line ending in `\n`
/// with no CR and something before it; `what` names the case in a failure.
pub fn assert_error_reply(resp: &RawResponse, status: u16, what: &str) {
    assert_eq!(resp.status, status, "{what}: {resp:?}");
    assert_eq!(
        resp.header("Content-Type"),
        Some("text/plain; charset=utf-8"),
        "{what}: {resp:?}"
    );
    let text = resp.text();
    assert!(text.ends_with('\n'), "{what}: {text:?}");
    assert_eq!(text.matches('\n').count(), 1, "{what}: {text:?}");
    assert!(!text.contains('\r'), "{what}: {text:?}");
    assert!(!text.trim_end().is_empty(), "{what}: {text:?}");
}

/// Parses one response from the front of `buf`: `None` while incomplete, else the response and the
/// bytes it used. Panics on anything that is not an HTTP/1.x response with a `Content-Length`.
pub fn parse_response(buf: &[u8]) -> Option<(RawResponse, usize)> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..head_end - 4]).expect("response head is not UTF-8");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default().to_owned();
    assert!(
        version.starts_with("HTTP/1."),
        "not an HTTP/1.x status line: {status_line:?}"
    );
    let status = parts
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let reason = parts.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .map(|line| {
            let (name, value) = line
                .split_once(':')
                .unwrap_or_else(|| panic!("bad header line {line:?}"));
            (name.to_owned(), value.trim().to_owned())
        })
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no valid Content-Length in {head:?}"));
    let end = head_end + length;
    if buf.len() < end {
        return None;
    }
    let response = RawResponse {
        version,
        status,
        reason,
        headers,
        body: buf[head_end..end].to_vec(),
    };
    Some((response, end))
}

/// Splits a whole byte stream into responses; panics if bytes remain that are not a whole response.
pub fn parse_responses(mut buf: &[u8]) -> Vec<RawResponse> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let (resp, used) = parse_response(buf).unwrap_or_else(|| {
            panic!(
                "trailing bytes are not a whole response: {:?}",
                String::from_utf8_lossy(buf)
            )
        });
        out.push(resp);
        buf = &buf[used..];
    }
    out
}

/// A client connection reading responses through one buffer, so pipelined answers are not lost.
pub struct Client {
    /// The socket.
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    /// Connects to `addr` (with `TCP_NODELAY`, so small writes leave one by one).
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = within("connect", TcpStream::connect(addr))
            .await
            .expect("connect");
        stream.set_nodelay(true).expect("set_nodelay");
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    /// Writes all of `bytes`; panics on error.
    pub async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        within("write", self.stream.write_all(bytes.as_ref()))
            .await
            .expect("write");
    }

    /// Reads until one whole response is buffered and returns it; panics on EOF or at the deadline.
    pub async fn response(&mut self) -> RawResponse {
        within("read a response", async {
            loop {
                if let Some((resp, used)) = parse_response(&self.buf) {
                    self.buf.drain(..used);
                    return resp;
                }
                let mut chunk = [0u8; 4096];
                let n = self.stream.read(&mut chunk).await.expect("read");
                assert!(
                    n > 0,
                    "connection closed before a whole response; got {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
                self.buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await
    }

    /// Reads until the peer closes (EOF or reset) and returns every byte not yet returned as a
    /// response; panics at the deadline.
    pub async fn read_to_close(&mut self) -> Vec<u8> {
        within("read until the server closes", async {
            let mut chunk = [0u8; 4096];
            loop {
                match self.stream.read(&mut chunk).await {
                    Ok(0) => break,
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                    Err(e) if is_reset(&e) => break,
                    Err(e) => panic!("read: {e}"),
                }
            }
        })
        .await;
        std::mem::take(&mut self.buf)
    }
}

impl Client {
    /// Whether the peer closes within `limit` (EOF or reset) without sending a byte: `false` when
    /// it is still open at the end; panics if it sends anything.
    pub async fn closes_within(&mut self, limit: std::time::Duration) -> bool {
        let mut chunk = [0u8; 64];
        let read = async {
            match self.stream.read(&mut chunk).await {
                Ok(0) => true,
                Ok(n) => panic!("got {n} bytes from a connection expected silent"),
                Err(e) if is_reset(&e) => true,
                Err(e) => panic!("read: {e}"),
            }
        };
        smol::future::or(read, async {
            smol::Timer::after(limit).await;
            false
        })
        .await
    }
}

fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
    )
}

/// Connects, writes `bytes` (a write error is ignored: the server may close first) and returns
/// everything read until the server closes. Panics at the deadline.
pub async fn raw_exchange(addr: SocketAddr, bytes: impl AsRef<[u8]>) -> Vec<u8> {
    let mut client = Client::connect(addr).await;
    let _ = within("write", client.stream.write_all(bytes.as_ref())).await;
    client.read_to_close().await
}

/// Sends `raw` (a request that asks for `Connection: close`) on fresh connections until one is
/// answered instead of closed at once, as a server at its connection cap does until it has seen a
/// close and freed a slot; that one response. Panics after [`DEADLINE`].
pub async fn exchange_once_admitted(addr: SocketAddr, raw: &str) -> RawResponse {
    let give_up = Instant::now() + DEADLINE;
    loop {
        let reply = raw_exchange(addr, raw).await;
        if !reply.is_empty() {
            let mut responses = parse_responses(&reply);
            assert_eq!(responses.len(), 1, "{responses:?}");
            return responses.remove(0);
        }
        assert!(
            Instant::now() < give_up,
            "no slot freed within {DEADLINE:?}"
        );
        Timer::after(Duration::from_millis(10)).await;
    }
}
