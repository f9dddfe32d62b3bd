//! A small async HTTP/1.1 client on `async-net` and `httparse`.
//!
//! It serves heartbeats, liveness probes and plain client calls, so it is
//! built to be robust rather than complete: every response is bounded in size
//! ([`MAX_RESPONSE_HEAD`], [`MAX_RESPONSE_BODY`]), every exchange is bounded in
//! time ([`ClientConfig`]), and keep-alive connections are pooled per address
//! in a bounded pool. Nothing the network sends can make it panic.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_net::TcpStream;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::Timer;

use super::chunked::{ChunkedDecoder, ChunkedError};

/// Most bytes accepted for a response's status line and headers.
pub const MAX_RESPONSE_HEAD: usize = 16 * 1024;
/// Most header fields accepted in one response head.
pub const MAX_RESPONSE_HEADERS: usize = 64;
/// Most body bytes accepted (after de-chunking).
pub const MAX_RESPONSE_BODY: usize = 1024 * 1024;
/// Most idle keep-alive connections pooled per address.
pub const MAX_IDLE_PER_ADDR: usize = 8;
/// Most idle keep-alive connections pooled overall.
pub const MAX_IDLE_TOTAL: usize = 1024;
/// A pooled connection idle longer than this is dropped instead of reused,
/// since servers commonly close idle connections after a similar delay.
pub const IDLE_POOL_TIMEOUT: Duration = Duration::from_secs(30);

/// Most interim (1xx) responses skipped before the final response.
const MAX_INTERIM_RESPONSES: usize = 8;
/// Bytes requested from the socket per read.
const READ_CHUNK: usize = 8 * 1024;

/// Time limits for requests.
#[derive(Clone, Copy, Debug)]
pub struct ClientConfig {
    /// Limit for establishing a TCP connection.
    pub connect_timeout: Duration,
    /// Limit for the whole exchange: connect, write and read the response.
    pub request_timeout: Duration,
}

impl Default for ClientConfig {
    /// 2 seconds to connect, 5 seconds for the whole request.
    fn default() -> ClientConfig {
        ClientConfig {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// One request to send with [`Client::request`].
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// Method token, such as `GET` or `POST`.
    pub method: &'a str,
    /// Server address as `host:port`; also sent as the `Host` header.
    pub addr: &'a str,
    /// Request target, such as `/path?query`.
    pub target: &'a str,
    /// Extra header fields. `Host`, `Content-Length` and `Transfer-Encoding`
    /// are set by the client and rejected here.
    pub headers: &'a [(&'a str, &'a str)],
    /// Request body (may be empty).
    pub body: &'a [u8],
}

/// A complete response with its body fully read.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code, such as 200.
    pub status: u16,
    /// Header fields in the order received.
    pub headers: Vec<(String, String)>,
    /// Body, de-chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of the header `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text, with invalid UTF-8 replaced.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Why a request failed.
#[derive(Debug)]
pub enum ClientError {
    /// The address is not a valid `host:port`.
    InvalidAddress(String),
    /// The method, target or a header cannot be sent safely (for example it
    /// contains CR or LF, which would allow header injection).
    InvalidRequest(&'static str),
    /// The TCP connection could not be established.
    Connect(io::Error),
    /// Connecting took longer than [`ClientConfig::connect_timeout`].
    ConnectTimeout,
    /// The exchange took longer than [`ClientConfig::request_timeout`].
    Timeout,
    /// Reading or writing the connection failed.
    Io(io::Error),
    /// The peer closed the connection before a full response.
    Closed,
    /// The response violates HTTP/1.1.
    BadResponse(&'static str),
    /// The response exceeds one of the size limits.
    TooLarge(&'static str),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::InvalidAddress(a) => {
                write!(f, "invalid address {a:?}: expected host:port")
            }
            ClientError::InvalidRequest(why) => write!(f, "invalid request: {why}"),
            ClientError::Connect(e) => write!(f, "could not connect: {e}"),
            ClientError::ConnectTimeout => f.write_str("timed out while connecting"),
            ClientError::Timeout => f.write_str("timed out after the request timeout"),
            ClientError::Io(e) => write!(f, "connection error: {e}"),
            ClientError::Closed => f.write_str("connection closed before a full response"),
            ClientError::BadResponse(why) => write!(f, "bad response: {why}"),
            ClientError::TooLarge(what) => write!(f, "response too large: {what}"),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Connect(e) | ClientError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ChunkedError> for ClientError {
    fn from(e: ChunkedError) -> ClientError {
        match e {
            ChunkedError::BadSize | ChunkedError::BadFraming => {
                ClientError::BadResponse(e.message())
            }
            ChunkedError::LineTooLong | ChunkedError::TooLarge => {
                ClientError::TooLarge(e.message())
            }
        }
    }
}

impl ClientError {
    /// Whether this looks like a pooled connection the server had closed.
    fn is_stale(&self) -> bool {
        match self {
            ClientError::Closed => true,
            ClientError::Io(e) => matches!(
                e.kind(),
                io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
            ),
            _ => false,
        }
    }
}

/// An HTTP/1.1 client with a shared keep-alive connection pool.
///
/// Cloning is cheap and clones share the pool, so create one client and pass
/// clones around.
///
/// ```no_run
/// use mini::http::client::{Client, ClientConfig};
///
/// smol::block_on(async {
///     let client = Client::new(ClientConfig::default());
///     let resp = client.get("127.0.0.1:8080", "/aliveCheck").await?;
///     println!("{} {}", resp.status, resp.text());
///     Ok::<(), mini::http::client::ClientError>(())
/// })
/// .unwrap();
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    config: ClientConfig,
    pool: Pool,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// A failed attempt, and whether it may be retried on a fresh connection.
struct Failure {
    error: ClientError,
    stale: bool,
}

impl Client {
    /// Creates a client with an empty connection pool of at most [`MAX_IDLE_TOTAL`] connections.
    pub fn new(config: ClientConfig) -> Client {
        Client::with_pool_limit(config, MAX_IDLE_TOTAL)
    }

    /// Creates a client whose pool keeps up to `max_idle` idle connections in all: a registry's
    /// prober keeps one per instance, so that probing 10 000 instances does not reconnect each time.
    pub fn with_pool_limit(config: ClientConfig, max_idle: usize) -> Client {
        Client {
            inner: Arc::new(Inner {
                config,
                pool: Pool {
                    max_idle,
                    ..Pool::default()
                },
            }),
        }
    }

    /// Sends `GET target` to `addr` (`host:port`).
    pub async fn get(&self, addr: &str, target: &str) -> Result<Response, ClientError> {
        self.request(&simple("GET", addr, target, &[])).await
    }

    /// Sends `POST target` with `body` to `addr` (`host:port`).
    pub async fn post(
        &self,
        addr: &str,
        target: &str,
        body: &[u8],
    ) -> Result<Response, ClientError> {
        self.request(&simple("POST", addr, target, body)).await
    }

    /// Sends `METHOD target` with an empty body and, when given, an `Authorization` value: the shape of
    /// every heartbeat, deregistration and lookup the roles send.
    pub async fn call(
        &self,
        method: &str,
        addr: &str,
        target: &str,
        authorization: Option<&str>,
    ) -> Result<Response, ClientError> {
        let auth: Vec<(&str, &str)> = authorization
            .map(|v| ("Authorization", v))
            .into_iter()
            .collect();
        let req = Request {
            method,
            addr,
            target,
            headers: &auth,
            body: b"",
        };
        self.request(&req).await
    }

    /// Sends `req` and reads the whole response, within the request timeout.
    ///
    /// A pooled connection is reused when available; if the server had closed
    /// it before answering, the request is retried once on a new connection.
    pub async fn request(&self, req: &Request<'_>) -> Result<Response, ClientError> {
        let wire = encode_request(req)?;
        let limit = self.inner.config.request_timeout;
        smol::future::or(self.exchange(req, &wire), async {
            Timer::after(limit).await;
            Err(ClientError::Timeout)
        })
        .await
    }

    /// Tries a pooled connection first, then (once) a fresh one.
    async fn exchange(&self, req: &Request<'_>, wire: &[u8]) -> Result<Response, ClientError> {
        if let Some(stream) = self.inner.pool.take(req.addr, Instant::now()) {
            match self.round_trip(stream, req, wire).await {
                Err(Failure { stale: true, .. }) => {}
                other => return other.map_err(|f| f.error),
            }
        }
        let stream = self.connect(req.addr).await?;
        self.round_trip(stream, req, wire)
            .await
            .map_err(|f| f.error)
    }

    /// Connects to `addr` within the connect timeout.
    async fn connect(&self, addr: &str) -> Result<TcpStream, ClientError> {
        let limit = self.inner.config.connect_timeout;
        let stream = smol::future::or(
            async { TcpStream::connect(addr).await.map_err(ClientError::Connect) },
            async {
                Timer::after(limit).await;
                Err(ClientError::ConnectTimeout)
            },
        )
        .await?;
        stream.set_nodelay(true).map_err(ClientError::Connect)?;
        Ok(stream)
    }

    /// Writes the request, reads the response, and pools the connection
    /// if it can be reused.
    async fn round_trip(
        &self,
        stream: TcpStream,
        req: &Request<'_>,
        wire: &[u8],
    ) -> Result<Response, Failure> {
        let mut conn = Conn::new(stream);
        let result = match conn.stream.write_all(wire).await {
            Ok(()) => read_response(&mut conn, req).await,
            Err(e) => Err(ClientError::Io(e)),
        };
        match result {
            Ok((resp, reusable)) => {
                if reusable && conn.buf.is_empty() {
                    self.inner.pool.put(req.addr, conn.stream, Instant::now());
                }
                Ok(resp)
            }
            Err(error) => Err(Failure {
                stale: !conn.received && error.is_stale(),
                error,
            }),
        }
    }

    /// Sends `req` and returns the status and a [`BodyStream`] over the body as it arrives, for
    /// long-lived responses such as etcd's watch, which never end.
    ///
    /// Connecting, writing and reading the response head are bounded by the request timeout;
    /// reading the body is not (the caller bounds each wait), and lines are bounded by
    /// [`MAX_STREAM_LINE`]. The connection is fresh and never pooled: dropping the stream closes it.
    pub async fn stream(&self, req: &Request<'_>) -> Result<(u16, BodyStream), ClientError> {
        let wire = encode_request(req)?;
        let limit = self.inner.config.request_timeout;
        smol::future::or(
            async {
                let mut conn = Conn::new(self.connect(req.addr).await?);
                conn.stream
                    .write_all(&wire)
                    .await
                    .map_err(ClientError::Io)?;
                let head = read_final_head(&mut conn).await?;
                let body = match body_framing(req.method, &head)? {
                    Framing::Empty => StreamBody::Length(0),
                    Framing::Length(n) => StreamBody::Length(n),
                    Framing::Chunked => StreamBody::Chunked(ChunkedDecoder::new(usize::MAX)),
                    Framing::UntilEof => StreamBody::UntilEof,
                };
                Ok((
                    head.status,
                    BodyStream {
                        conn,
                        body,
                        decoded: Vec::new(),
                        scanned: 0,
                        line_limit: MAX_STREAM_LINE,
                        ended: false,
                    },
                ))
            },
            async {
                Timer::after(limit).await;
                Err(ClientError::Timeout)
            },
        )
        .await
    }
}

fn simple<'a>(method: &'a str, addr: &'a str, target: &'a str, body: &'a [u8]) -> Request<'a> {
    Request {
        method,
        addr,
        target,
        headers: &[],
        body,
    }
}

// ---------------------------------------------------------------------------
// Request encoding and validation

/// Validates `req` and serializes it (head and body) into one buffer.
fn encode_request(req: &Request<'_>) -> Result<Vec<u8>, ClientError> {
    validate_addr(req.addr)?;
    if !is_token(req.method) {
        return Err(ClientError::InvalidRequest("method is not a valid token"));
    }
    if req.target.is_empty() || !req.target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ClientError::InvalidRequest(
            "target is empty or has spaces or control characters",
        ));
    }
    let mut out = Vec::with_capacity(128 + req.body.len());
    push_line(&mut out, &[req.method, " ", req.target, " HTTP/1.1"]);
    push_line(&mut out, &["Host: ", req.addr]);
    if needs_content_length(req) {
        push_line(&mut out, &["Content-Length: ", &req.body.len().to_string()]);
    }
    for &(name, value) in req.headers {
        validate_header(name, value)?;
        push_line(&mut out, &[name, ": ", value]);
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(req.body);
    Ok(out)
}

fn push_line(out: &mut Vec<u8>, parts: &[&str]) {
    for part in parts {
        out.extend_from_slice(part.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// Content-Length is always sent for methods that carry a body.
fn needs_content_length(req: &Request<'_>) -> bool {
    !req.body.is_empty()
        || ["POST", "PUT", "PATCH"]
            .iter()
            .any(|m| req.method.eq_ignore_ascii_case(m))
}

/// Accepts `host:port` with a numeric port and no whitespace or delimiters.
fn validate_addr(addr: &str) -> Result<(), ClientError> {
    let invalid = || ClientError::InvalidAddress(addr.to_string());
    let (host, port) = addr.rsplit_once(':').ok_or_else(invalid)?;
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:[]%".contains(&b));
    if !host_ok || port.parse::<u16>().is_err() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    Ok(())
}

fn validate_header(name: &str, value: &str) -> Result<(), ClientError> {
    if !is_token(name) {
        return Err(ClientError::InvalidRequest(
            "header name is not a valid token",
        ));
    }
    if ["host", "content-length", "transfer-encoding"]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
    {
        return Err(ClientError::InvalidRequest(
            "header is set by the client itself",
        ));
    }
    if value
        .bytes()
        .any(|b| (b.is_ascii_control() && b != b'\t') || b == 0x7f)
    {
        return Err(ClientError::InvalidRequest(
            "header value has control characters",
        ));
    }
    Ok(())
}

/// RFC 9110 `token`: one or more `tchar`.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

// ---------------------------------------------------------------------------
// Response reading

/// A connection plus bytes read but not yet consumed.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Whether any response byte has arrived on this connection.
    received: bool,
}

impl Conn {
    fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            buf: Vec::new(),
            received: false,
        }
    }

    /// Reads up to `max` more bytes into `buf`; returns 0 at EOF.
    async fn read_more(&mut self, max: usize) -> Result<usize, ClientError> {
        let old = self.buf.len();
        self.buf.resize(old + max.clamp(1, READ_CHUNK), 0);
        let result = self.stream.read(&mut self.buf[old..]).await;
        let n = *result.as_ref().unwrap_or(&0);
        self.buf.truncate(old + n);
        self.received |= n > 0;
        result.map_err(ClientError::Io)
    }
}

/// A parsed response head.
struct Head {
    status: u16,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    minor: u8,
    headers: Vec<(String, String)>,
}

/// How the response body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(usize),
    Chunked,
    UntilEof,
}

/// Reads the final response; returns it and whether the connection is reusable.
async fn read_response(
    conn: &mut Conn,
    req: &Request<'_>,
) -> Result<(Response, bool), ClientError> {
    let head = read_final_head(conn).await?;
    let framing = body_framing(req.method, &head)?;
    let body = match framing {
        Framing::Empty => Vec::new(),
        Framing::Length(n) => read_length(conn, n).await?,
        Framing::Chunked => read_chunked(conn).await?,
        Framing::UntilEof => read_to_eof(conn).await?,
    };
    let reusable = framing != Framing::UntilEof
        && head.status != 101
        && keep_alive(&head)
        && !has_token(req.headers.iter().copied(), "connection", "close");
    let resp = Response {
        status: head.status,
        headers: head.headers,
        body,
    };
    Ok((resp, reusable))
}

/// Reads heads, skipping interim 1xx responses (except 101).
async fn read_final_head(conn: &mut Conn) -> Result<Head, ClientError> {
    for _ in 0..=MAX_INTERIM_RESPONSES {
        let head = read_head(conn).await?;
        if !(100..200).contains(&head.status) || head.status == 101 {
            return Ok(head);
        }
    }
    Err(ClientError::BadResponse("too many interim 1xx responses"))
}

/// Reads and parses one response head, consuming it from the buffer.
async fn read_head(conn: &mut Conn) -> Result<Head, ClientError> {
    let mut scanned = 0;
    loop {
        if let Some(end) = find_head_end(&conn.buf, scanned) {
            let head = parse_head(conn.buf.get(..end).unwrap_or_default())?;
            conn.buf.drain(..end);
            return Ok(head);
        }
        scanned = conn.buf.len();
        if scanned >= MAX_RESPONSE_HEAD {
            return Err(ClientError::TooLarge("response head"));
        }
        if conn.read_more(MAX_RESPONSE_HEAD - scanned).await? == 0 {
            return Err(ClientError::Closed);
        }
    }
}

/// Finds the end of the head (after the empty line), scanning from about
/// `from` so that byte-by-byte arrival stays linear.
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(3);
    let tail = buf.get(start..)?;
    let pos = tail.windows(2).position(|w| w == b"\n\n").map(|p| p + 2);
    let crlf = tail.windows(3).position(|w| w == b"\n\r\n").map(|p| p + 3);
    let end = match (pos, crlf) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b)?,
    };
    Some(start + end).filter(|&e| e <= MAX_RESPONSE_HEAD)
}

fn parse_head(bytes: &[u8]) -> Result<Head, ClientError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut parsed = httparse::Response::new(&mut fields);
    match parsed.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(ClientError::BadResponse("incomplete response head"))
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ClientError::TooLarge("too many response headers"))
        }
        Err(_) => return Err(ClientError::BadResponse("malformed response head")),
    }
    let status = parsed
        .code
        .ok_or(ClientError::BadResponse("missing status code"))?;
    let minor = parsed
        .version
        .ok_or(ClientError::BadResponse("missing HTTP version"))?;
    let headers = parsed
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    Ok(Head {
        status,
        minor,
        headers,
    })
}

/// Decides body framing per RFC 9112 §6.3.
fn body_framing(method: &str, head: &Head) -> Result<Framing, ClientError> {
    let no_body = method.eq_ignore_ascii_case("HEAD")
        || (100..200).contains(&head.status)
        || head.status == 204
        || head.status == 304;
    if no_body {
        return Ok(Framing::Empty);
    }
    if let Some(te) = header_values(&head.headers, "transfer-encoding").last() {
        let last = te.rsplit(',').next().unwrap_or("").trim();
        return Ok(if last.eq_ignore_ascii_case("chunked") {
            Framing::Chunked
        } else {
            Framing::UntilEof
        });
    }
    match content_length(&head.headers)? {
        Some(n) if n > MAX_RESPONSE_BODY => Err(ClientError::TooLarge("response body")),
        Some(0) => Ok(Framing::Empty),
        Some(n) => Ok(Framing::Length(n)),
        None => Ok(Framing::UntilEof),
    }
}

/// The Content-Length, requiring every value (even in lists) to agree.
fn content_length(headers: &[(String, String)]) -> Result<Option<usize>, ClientError> {
    let mut found: Option<u64> = None;
    for value in header_values(headers, "content-length").flat_map(|v| v.split(',')) {
        let value = value.trim();
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ClientError::BadResponse("invalid Content-Length"));
        }
        let n = value.parse::<u64>().unwrap_or(u64::MAX);
        if found.is_some_and(|f| f != n) {
            return Err(ClientError::BadResponse(
                "conflicting Content-Length values",
            ));
        }
        found = Some(n);
    }
    Ok(found.map(|n| usize::try_from(n).unwrap_or(usize::MAX)))
}

fn header_values<'h>(
    headers: &'h [(String, String)],
    name: &'h str,
) -> impl Iterator<Item = &'h str> + 'h {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Whether a comma-separated header `name` contains `token`.
fn has_token<'h>(
    mut headers: impl Iterator<Item = (&'h str, &'h str)>,
    name: &str,
    token: &str,
) -> bool {
    headers.any(|(n, v)| {
        n.eq_ignore_ascii_case(name) && v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))
    })
}

/// HTTP/1.1 is persistent unless `close`; HTTP/1.0 only with `keep-alive`.
fn keep_alive(head: &Head) -> bool {
    let fields = || head.headers.iter().map(|(n, v)| (n.as_str(), v.as_str()));
    if has_token(fields(), "connection", "close") {
        return false;
    }
    head.minor >= 1 || has_token(fields(), "connection", "keep-alive")
}

async fn read_length(conn: &mut Conn, len: usize) -> Result<Vec<u8>, ClientError> {
    while conn.buf.len() < len {
        if conn.read_more(len - conn.buf.len()).await? == 0 {
            return Err(ClientError::Closed);
        }
    }
    let rest = conn.buf.split_off(len);
    Ok(std::mem::replace(&mut conn.buf, rest))
}

async fn read_chunked(conn: &mut Conn) -> Result<Vec<u8>, ClientError> {
    let mut decoder = ChunkedDecoder::new(MAX_RESPONSE_BODY);
    let mut body = Vec::new();
    loop {
        let used = decoder.feed(&conn.buf, &mut body)?;
        conn.buf.drain(..used);
        if decoder.is_done() {
            return Ok(body);
        }
        if conn.read_more(READ_CHUNK).await? == 0 {
            return Err(ClientError::Closed);
        }
    }
}

async fn read_to_eof(conn: &mut Conn) -> Result<Vec<u8>, ClientError> {
    loop {
        if conn.buf.len() > MAX_RESPONSE_BODY {
            return Err(ClientError::TooLarge("response body"));
        }
        if conn.read_more(READ_CHUNK).await? == 0 {
            return Ok(std::mem::take(&mut conn.buf));
        }
    }
}

// ---------------------------------------------------------------------------
// Streaming responses

/// Longest line a [`BodyStream`] accepts before failing with [`ClientError::TooLarge`].
pub const MAX_STREAM_LINE: usize = 1024 * 1024;

/// How the rest of a streamed body is delimited.
enum StreamBody {
    Length(usize),
    Chunked(ChunkedDecoder),
    UntilEof,
}

/// The body of a response from [`Client::stream`], read as it arrives and split into lines.
pub struct BodyStream {
    conn: Conn,
    body: StreamBody,
    /// Decoded body bytes not yet returned.
    decoded: Vec<u8>,
    /// How much of `decoded` is known to hold no newline.
    scanned: usize,
    line_limit: usize,
    ended: bool,
}

impl fmt::Debug for BodyStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyStream")
            .field("buffered", &self.decoded.len())
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl BodyStream {
    /// Sets the longest accepted line (default [`MAX_STREAM_LINE`]).
    pub fn with_line_limit(mut self, limit: usize) -> BodyStream {
        self.line_limit = limit.max(1);
        self
    }

    /// The next line of the body without its `\n` (or `\r\n`); `Ok(None)` once the body ended.
    /// A last line without a newline is returned too. Waits as long as the server sends nothing:
    /// wrap the call in a timer to bound it.
    pub async fn next_line(&mut self) -> Result<Option<Vec<u8>>, ClientError> {
        loop {
            let rest = self.decoded.get(self.scanned..).unwrap_or_default();
            if let Some(pos) = rest.iter().position(|&b| b == b'\n') {
                let end = self.scanned + pos;
                let mut line: Vec<u8> = self.decoded.drain(..=end).collect();
                self.scanned = 0;
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(Some(line));
            }
            self.scanned = self.decoded.len();
            if self.decoded.len() > self.line_limit {
                return Err(ClientError::TooLarge("streamed line"));
            }
            if self.ended {
                self.scanned = 0;
                return Ok(Some(std::mem::take(&mut self.decoded)).filter(|l| !l.is_empty()));
            }
            self.fill().await?;
        }
    }

    /// Reads and decodes at least one more piece of the body, or notes its end.
    async fn fill(&mut self) -> Result<(), ClientError> {
        let conn = &mut self.conn;
        match &mut self.body {
            StreamBody::Length(0) => self.ended = true,
            StreamBody::Length(left) => {
                if conn.buf.is_empty() && conn.read_more(READ_CHUNK).await? == 0 {
                    return Err(ClientError::Closed);
                }
                let n = conn.buf.len().min(*left);
                self.decoded.extend(conn.buf.drain(..n));
                *left -= n;
            }
            StreamBody::Chunked(decoder) => loop {
                let before = self.decoded.len();
                let used = decoder.feed(&conn.buf, &mut self.decoded)?;
                conn.buf.drain(..used);
                if decoder.is_done() {
                    self.ended = true;
                    return Ok(());
                }
                if self.decoded.len() > before {
                    return Ok(());
                }
                if conn.read_more(READ_CHUNK).await? == 0 {
                    return Err(ClientError::Closed);
                }
            },
            StreamBody::UntilEof => {
                if conn.buf.is_empty() && conn.read_more(READ_CHUNK).await? == 0 {
                    self.ended = true;
                }
                self.decoded.append(&mut conn.buf);
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Connection pool

/// An idle keep-alive connection and when it became idle.
struct Idle {
    stream: TcpStream,
    since: Instant,
}

/// Idle connections by address, bounded per address and in total.
struct Pool {
    inner: Mutex<PoolInner>,
    max_idle: usize,
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            inner: Mutex::default(),
            max_idle: MAX_IDLE_TOTAL,
        }
    }
}

#[derive(Default)]
struct PoolInner {
    by_addr: HashMap<String, Vec<Idle>>,
    total: usize,
}

impl Pool {
    /// Locks the pool; a poisoned lock is still usable (the data is plain).
    fn lock(&self) -> MutexGuard<'_, PoolInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the most recently pooled live connection to `addr`, dropping
    /// any that idled past [`IDLE_POOL_TIMEOUT`].
    fn take(&self, addr: &str, now: Instant) -> Option<TcpStream> {
        let mut expired = Vec::new();
        let found = {
            let mut inner = self.lock();
            let found = inner.take(addr, now, &mut expired);
            let removed = expired.len() + usize::from(found.is_some());
            inner.total = inner.total.saturating_sub(removed);
            found
        };
        drop(expired); // closes sockets outside the lock
        found
    }

    /// Pools `stream` for reuse, unless the pool is full.
    fn put(&self, addr: &str, stream: TcpStream, now: Instant) {
        let mut dropped = Vec::new();
        {
            let mut inner = self.lock();
            if inner.total >= self.max_idle {
                inner.prune(now, &mut dropped);
            }
            let idle = Idle { stream, since: now };
            if inner.total >= self.max_idle {
                dropped.push(idle);
            } else {
                inner.push(addr, idle, &mut dropped);
            }
        }
        drop(dropped);
    }

    #[cfg(test)]
    fn idle_count(&self, addr: &str) -> usize {
        self.lock().by_addr.get(addr).map_or(0, Vec::len)
    }
}

impl PoolInner {
    /// Pops a live connection; moves expired ones (not counted) to `expired`.
    fn take(&mut self, addr: &str, now: Instant, expired: &mut Vec<Idle>) -> Option<TcpStream> {
        let list = self.by_addr.get_mut(addr)?;
        drain_expired(list, now, expired);
        let found = list.pop().map(|i| i.stream);
        if list.is_empty() {
            self.by_addr.remove(addr);
        }
        found
    }

    /// Adds `idle`, evicting the oldest connection of `addr` if it is full.
    fn push(&mut self, addr: &str, idle: Idle, dropped: &mut Vec<Idle>) {
        let list = self.by_addr.entry(addr.to_string()).or_default();
        if list.len() >= MAX_IDLE_PER_ADDR {
            dropped.push(list.remove(0));
            self.total = self.total.saturating_sub(1);
        }
        list.push(idle);
        self.total += 1;
    }

    /// Removes expired connections of every address.
    fn prune(&mut self, now: Instant, dropped: &mut Vec<Idle>) {
        for list in self.by_addr.values_mut() {
            drain_expired(list, now, dropped);
        }
        self.by_addr.retain(|_, list| !list.is_empty());
        self.total = self.by_addr.values().map(Vec::len).sum();
    }
}

/// Moves connections idle past [`IDLE_POOL_TIMEOUT`] (oldest first in
/// `list`) to `out`.
fn drain_expired(list: &mut Vec<Idle>, now: Instant, out: &mut Vec<Idle>) {
    let live_from = list
        .iter()
        .position(|i| now.saturating_duration_since(i.since) <= IDLE_POOL_TIMEOUT)
        .unwrap_or(list.len());
    out.extend(list.drain(..live_from));
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_net::TcpListener;
    use std::future::Future;
    use std::sync::atomic::{AtomicUsize, Ordering};

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

    async fn get_from(resp: &'static [u8]) -> Result<Response, ClientError> {
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
            let req = Request {
                method: "GET",
                addr: &server.addr,
                target: "/h",
                headers: &[("X-Id", "a b\tc")],
                body: b"",
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
            assert_eq!(c.inner.pool.idle_count(&server.addr), 0);
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
            assert_eq!(c.inner.pool.idle_count(&server.addr), 1);
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
            assert_eq!(c.inner.pool.idle_count(&server.addr), 1);
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
                serve(|s| answer_once(s, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"))
                    .await;
            let err = client().get(&server.addr, "/").await.unwrap_err();
            assert!(matches!(err, ClientError::Closed), "{err}");
        });
    }

    #[test]
    fn header_injection_is_rejected() {
        smol::block_on(async {
            let server = serve(echo).await;
            let c = client();
            let base = Request {
                method: "GET",
                addr: &server.addr,
                target: "/",
                headers: &[],
                body: b"",
            };
            let bad_requests = [
                Request {
                    method: "GET /x HTTP/1.1\r\nX-Evil: 1\r\n",
                    ..base
                },
                Request {
                    target: "/ HTTP/1.1\r\nX-Evil: 1",
                    ..base
                },
                Request {
                    target: "/a b",
                    ..base
                },
                Request {
                    headers: &[("X-A", "1\r\nX-Evil: 1")],
                    ..base
                },
                Request {
                    headers: &[("X-A\r\nX-Evil", "1")],
                    ..base
                },
                Request {
                    headers: &[("X-A", "1\nX-Evil: 1")],
                    ..base
                },
                Request {
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
                let err = c.request(&Request { addr, ..base }).await.unwrap_err();
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
            let head = Request {
                method: "HEAD",
                addr: &server.addr,
                target: "/",
                headers: &[],
                body: b"",
            };
            assert!(c.request(&head).await.unwrap().body.is_empty());
            assert!(c.get(&server.addr, "/").await.unwrap().body.is_empty());
            assert_eq!(server.accepted(), 1);
        });
    }

    #[test]
    fn pool_is_bounded_and_expires() {
        smol::block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap().to_string();
            let pool = Pool::default();
            let now = Instant::now();
            for _ in 0..MAX_IDLE_PER_ADDR + 3 {
                pool.put(&addr, TcpStream::connect(&*addr).await.unwrap(), now);
            }
            assert_eq!(pool.idle_count(&addr), MAX_IDLE_PER_ADDR);
            assert_eq!(pool.lock().total, MAX_IDLE_PER_ADDR);
            assert!(pool.take(&addr, now + IDLE_POOL_TIMEOUT).is_some());
            let later = now + IDLE_POOL_TIMEOUT + Duration::from_secs(1);
            assert!(pool.take(&addr, later).is_none());
            assert_eq!(pool.idle_count(&addr), 0);
            assert_eq!(pool.lock().total, 0);
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
            let req = simple("POST", &server.addr, "/v3/watch", b"{}");
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
            let req = simple("GET", &server.addr, "/", b"");
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
                serve(|s| answer_once(s, b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\na\nbc"))
                    .await;
            let req = simple("GET", &server.addr, "/", b"");
            let (_, mut body) = client().stream(&req).await.unwrap();
            assert_eq!(body.next_line().await.unwrap().unwrap(), b"a");
            assert_eq!(body.next_line().await.unwrap().unwrap(), b"bc");
            assert!(body.next_line().await.unwrap().is_none());
            let server = serve(|s| answer_once(s, b"HTTP/1.0 200 OK\r\n\r\nx\ny")).await;
            let req = simple("GET", &server.addr, "/", b"");
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
            let req = simple("GET", &server.addr, "/", b"");
            assert!(matches!(
                quick_client().stream(&req).await,
                Err(ClientError::Timeout)
            ));
        });
    }
}
