//! A small async HTTP/1.1 client on `async-net` and `httparse`.
//!
//! It serves heartbeats, liveness probes and plain client calls, so it is
//! built to be robust rather than complete: every response is bounded in size
//! ([`MAX_RESPONSE_HEAD`], [`MAX_RESPONSE_BODY`]), every exchange is bounded in
//! time ([`ClientConfig`]), and keep-alive connections are pooled per address
//! in a bounded pool. Nothing the network sends can make it panic.
//!
//! This file is the API and the round trip; its private parts are `encode` (request to bytes),
//! `decode` (response heads and framing, no I/O, tested on byte slices), `conn` (a socket with its
//! read buffer, and reading a response on it), `body` ([`BodyStream`]) and `pool` (keep-alive
//! connections, pooled with their buffers). Its socket tests are `tests/http_client.rs`.

mod body;
mod conn;
mod decode;
mod encode;
mod pool;

pub use body::{BodyStream, MAX_STREAM_LINE};

use self::conn::Conn;
use self::encode::encode_request;
use self::pool::Pool;
use super::chunked::ChunkedError;
use crate::rt;
use async_net::TcpStream;
use smol::io::AsyncWriteExt;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// A pooled connection whose read buffer grew past this gives the memory back.
const MAX_POOLED_BUFFER: usize = 8 * 1024;

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
///
/// ```
/// let req = mini::http::client::ClientRequest {
///     method: "PUT",
///     addr: "127.0.0.1:6666",
///     target: "/v1/services/add/127.0.0.1:1111",
///     headers: &[("Authorization", "Bearer s3cret")],
///     body: b"",
/// };
/// assert_eq!(req.method, "PUT");
/// ```
#[derive(Clone, Copy, Debug)]
pub struct ClientRequest<'a> {
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

impl<'a> ClientRequest<'a> {
    /// `METHOD target` to `addr`, with no extra headers and an empty body (give either with struct
    /// update syntax).
    ///
    /// ```
    /// use mini::http::client::ClientRequest;
    /// let get = ClientRequest::new("GET", "127.0.0.1:6666", "/v1/services");
    /// assert!(get.headers.is_empty() && get.body.is_empty());
    /// let post = ClientRequest {
    ///     body: b"{}",
    ///     ..ClientRequest::new("POST", "127.0.0.1:2379", "/v3/kv/put")
    /// };
    /// assert_eq!((post.method, post.body), ("POST", &b"{}"[..]));
    /// ```
    pub const fn new(method: &'a str, addr: &'a str, target: &'a str) -> ClientRequest<'a> {
        ClientRequest {
            method,
            addr,
            target,
            headers: &[],
            body: b"",
        }
    }
}

/// A complete response with its body fully read.
#[derive(Debug, Clone)]
pub struct ClientResponse {
    /// Status code, such as 200.
    pub status: u16,
    /// Header fields in the order received.
    pub headers: Vec<(String, String)>,
    /// Body, de-chunked.
    pub body: Vec<u8>,
}

impl ClientResponse {
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
    pool: Pool<Conn>,
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
                pool: Pool::new(max_idle),
            }),
        }
    }

    /// How many idle connections to `addr` are pooled now.
    pub fn idle_count(&self, addr: &str) -> usize {
        self.inner.pool.idle_count(addr)
    }

    /// Sends `GET target` to `addr` (`host:port`).
    pub async fn get(&self, addr: &str, target: &str) -> Result<ClientResponse, ClientError> {
        self.request(&ClientRequest::new("GET", addr, target)).await
    }

    /// Sends `POST target` with `body` to `addr` (`host:port`).
    pub async fn post(
        &self,
        addr: &str,
        target: &str,
        body: &[u8],
    ) -> Result<ClientResponse, ClientError> {
        let req = ClientRequest {
            body,
            ..ClientRequest::new("POST", addr, target)
        };
        self.request(&req).await
    }

    /// Sends `METHOD target` with an empty body and, when given, an `Authorization` value: the shape of
    /// every heartbeat, deregistration and lookup the roles send.
    pub async fn call(
        &self,
        method: &str,
        addr: &str,
        target: &str,
        authorization: Option<&str>,
    ) -> Result<ClientResponse, ClientError> {
        let auth: Vec<(&str, &str)> = authorization
            .map(|v| ("Authorization", v))
            .into_iter()
            .collect();
        let req = ClientRequest {
            headers: &auth,
            ..ClientRequest::new(method, addr, target)
        };
        self.request(&req).await
    }

    /// Sends `req` and reads the whole response, within the request timeout.
    ///
    /// A pooled connection is reused when available; if the server had closed
    /// it before answering, the request is retried once on a new connection.
    pub async fn request(&self, req: &ClientRequest<'_>) -> Result<ClientResponse, ClientError> {
        let wire = encode_request(req)?;
        let limit = self.inner.config.request_timeout;
        rt::timeout(limit, self.exchange(req, &wire))
            .await
            .unwrap_or(Err(ClientError::Timeout))
    }

    /// Tries a pooled connection first, then (once) a fresh one.
    async fn exchange(
        &self,
        req: &ClientRequest<'_>,
        wire: &[u8],
    ) -> Result<ClientResponse, ClientError> {
        if let Some(conn) = self.inner.pool.take(req.addr, Instant::now()) {
            match self.round_trip(conn, req, wire).await {
                Err(Failure { stale: true, .. }) => {}
                other => return other.map_err(|f| f.error),
            }
        }
        let conn = Conn::new(self.connect(req.addr).await?);
        self.round_trip(conn, req, wire).await.map_err(|f| f.error)
    }

    /// Connects to `addr` within the connect timeout.
    async fn connect(&self, addr: &str) -> Result<TcpStream, ClientError> {
        let limit = self.inner.config.connect_timeout;
        let stream = rt::timeout(limit, TcpStream::connect(addr))
            .await
            .ok_or(ClientError::ConnectTimeout)?
            .map_err(ClientError::Connect)?;
        stream.set_nodelay(true).map_err(ClientError::Connect)?;
        Ok(stream)
    }

    /// Writes the request, reads the response, and pools the connection (with its buffer) if it
    /// can be reused.
    async fn round_trip(
        &self,
        mut conn: Conn,
        req: &ClientRequest<'_>,
        wire: &[u8],
    ) -> Result<ClientResponse, Failure> {
        conn.received = false;
        let result = match conn.stream.write_all(wire).await {
            Ok(()) => conn::read_response(&mut conn, req).await,
            Err(e) => Err(ClientError::Io(e)),
        };
        match result {
            Ok((resp, reusable)) => {
                if reusable && conn.buf.is_empty() {
                    conn.buf.shrink(MAX_POOLED_BUFFER);
                    self.inner.pool.put(req.addr, conn, Instant::now());
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
    pub async fn stream(&self, req: &ClientRequest<'_>) -> Result<(u16, BodyStream), ClientError> {
        let wire = encode_request(req)?;
        let limit = self.inner.config.request_timeout;
        let open = async {
            let mut conn = Conn::new(self.connect(req.addr).await?);
            conn.stream
                .write_all(&wire)
                .await
                .map_err(ClientError::Io)?;
            let head = conn::read_final_head(&mut conn).await?;
            let framing = decode::body_framing(req.method, &head)?;
            Ok((head.status, BodyStream::new(conn, framing)))
        };
        rt::timeout(limit, open)
            .await
            .unwrap_or(Err(ClientError::Timeout))
    }
}
