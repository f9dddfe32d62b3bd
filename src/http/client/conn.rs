//! One client connection and the reading of a response on it: the socket together with its read
//! buffer (pooled together), heads read until [`super::decode`] finds them whole, bodies read as
//! their framing says.

use super::decode::{self, Framing, ResponseHead};
use super::{ClientError, ClientRequest, ClientResponse, MAX_RESPONSE_BODY, MAX_RESPONSE_HEAD};
use crate::http::buf::ReadBuf;
use crate::http::chunked::ChunkedDecoder;
use crate::http::headers;
use async_net::TcpStream;
use smol::io::AsyncReadExt;

/// Most interim (1xx) responses skipped before the final response.
const MAX_INTERIM_RESPONSES: usize = 8;
/// Bytes requested from the socket per read, at most.
pub(crate) const READ_CHUNK: usize = 8 * 1024;

/// A connection plus bytes read but not yet consumed.
pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    pub(crate) buf: ReadBuf,
    /// Whether any response byte has arrived in this round trip.
    pub(crate) received: bool,
}

impl Conn {
    pub(crate) fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            buf: ReadBuf::new(),
            received: false,
        }
    }

    /// Reads up to `max` more bytes into the buffer; returns 0 at EOF.
    pub(crate) async fn read_more(&mut self, max: usize) -> Result<usize, ClientError> {
        let room = self.buf.spare(max.clamp(1, READ_CHUNK));
        let result = self.stream.read(room).await;
        let n = *result.as_ref().unwrap_or(&0);
        self.buf.commit(n);
        self.received |= n > 0;
        result.map_err(ClientError::Io)
    }
}

/// Reads the final response; returns it and whether the connection is reusable.
pub(crate) async fn read_response(
    conn: &mut Conn,
    req: &ClientRequest<'_>,
) -> Result<(ClientResponse, bool), ClientError> {
    let head = read_final_head(conn).await?;
    let framing = decode::body_framing(req.method, &head)?;
    let body = match framing {
        Framing::Empty => Vec::new(),
        Framing::Length(n) => read_length(conn, n).await?,
        Framing::Chunked => read_chunked(conn).await?,
        Framing::UntilEof => read_to_eof(conn).await?,
    };
    let asked_close = req
        .headers
        .iter()
        .any(|(n, v)| headers::is(n, "connection") && headers::has_token(v.as_bytes(), b"close"));
    let reusable =
        framing != Framing::UntilEof && head.status != 101 && head.keep_alive && !asked_close;
    let resp = ClientResponse {
        status: head.status,
        headers: head.headers,
        body,
    };
    Ok((resp, reusable))
}

/// Reads heads, skipping interim 1xx responses (except 101).
pub(crate) async fn read_final_head(conn: &mut Conn) -> Result<ResponseHead, ClientError> {
    for _ in 0..=MAX_INTERIM_RESPONSES {
        let head = read_head(conn).await?;
        if !decode::is_interim(head.status) {
            return Ok(head);
        }
    }
    Err(ClientError::BadResponse("too many interim 1xx responses"))
}

/// Reads and parses one response head, consuming it from the buffer.
async fn read_head(conn: &mut Conn) -> Result<ResponseHead, ClientError> {
    let mut scanned = 0;
    loop {
        if let Some(end) = decode::find_head_end(conn.buf.filled(), scanned) {
            let head = decode::parse_head(&conn.buf.filled()[..end])?;
            conn.buf.consume(end);
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

async fn read_length(conn: &mut Conn, len: usize) -> Result<Vec<u8>, ClientError> {
    while conn.buf.len() < len {
        if conn.read_more(len - conn.buf.len()).await? == 0 {
            return Err(ClientError::Closed);
        }
    }
    Ok(conn.buf.take(len))
}

async fn read_chunked(conn: &mut Conn) -> Result<Vec<u8>, ClientError> {
    let mut decoder = ChunkedDecoder::new(MAX_RESPONSE_BODY);
    let mut body = Vec::new();
    loop {
        let used = decoder.feed(conn.buf.filled(), &mut body)?;
        conn.buf.consume(used);
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
            return Ok(conn.buf.take(conn.buf.len()));
        }
    }
}
