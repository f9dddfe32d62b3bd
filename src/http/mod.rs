//! Our HTTP/1.1 layer on httparse: a server and a client, each split into a codec (decode and
//! encode, no I/O, tested on byte slices) and the I/O around it.
//!
//! | module | job |
//! |---|---|
//! | [`headers`] | the header rules both directions share: lengths, chunked, keep-alive, tokens |
//! | [`url`] | strict percent-decoding of targets, lazy and borrowing |
//! | [`server`] | accept loop and connections; [`server::decode`] (bytes to a borrowed [`Request`]), [`server::encode`] ([`Response`] to bytes), [`server::idle`] (reclaim at the cap) |
//! | [`router`] | `(method, pattern)` to a route value; 404 and 405 |
//! | [`client`] | the client: API and round trips; `encode`, `decode`, `body` and `pool` under it |
//! | [`chunked`] | the chunked-body decoder the client reads with |
//!
//! Limits follow what trusted servers do (nginx, hyper, async-h1; see ARCHITECTURE.md) and are named
//! here so a reader finds each in one look.

use std::time::Duration;

mod buf;
pub mod chunked;
pub mod client;
pub mod headers;
pub mod router;
pub mod server;
pub mod url;

pub use server::decode::{parse_request, Request, RequestError, Version};
pub use server::encode::{Body, Response};
pub use server::{Handler, ServerConfig};

/// Largest request head (request line and headers); larger is 431 (or 414 for the line alone).
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Most header fields in one request; more is 431.
pub const MAX_HEADERS: usize = 100;
/// Largest request body; larger is 413. Registry bodies are empty or tiny.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Time for a request to arrive once its first byte has (and for a new connection's first request).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a kept-alive connection may sit idle between requests.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Time a reply may take to be written before the peer is dropped as not reading.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Open connections per server past which new ones are closed at once (descriptors stay available).
pub const MAX_CONNECTIONS: usize = 10_000;
