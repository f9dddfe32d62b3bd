//! [`BodyStream`]: the body of a long-lived response (etcd's watch) read as it arrives, split into
//! lines, on a connection of its own that is never pooled.

use super::conn::{Conn, READ_CHUNK};
use super::decode::Framing;
use super::ClientError;
use crate::http::chunked::ChunkedDecoder;
use std::fmt;

/// Longest line a [`BodyStream`] accepts before failing with [`ClientError::TooLarge`].
pub const MAX_STREAM_LINE: usize = 1024 * 1024;

/// How the rest of a streamed body is delimited.
enum StreamBody {
    Length(usize),
    Chunked(ChunkedDecoder),
    UntilEof,
}

/// The body of a response from [`super::Client::stream`], read as it arrives and split into lines.
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
                self.decoded.extend_from_slice(&conn.buf.filled()[..n]);
                conn.buf.consume(n);
                *left -= n;
            }
            StreamBody::Chunked(decoder) => loop {
                let before = self.decoded.len();
                let used = decoder.feed(conn.buf.filled(), &mut self.decoded)?;
                conn.buf.consume(used);
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
                self.decoded.extend_from_slice(conn.buf.filled());
                conn.buf.consume(conn.buf.len());
            }
        }
        Ok(())
    }
}

impl BodyStream {
    /// A stream over the body that follows a head with `framing`, on `conn`.
    pub(crate) fn new(conn: Conn, framing: Framing) -> BodyStream {
        let body = match framing {
            Framing::Empty => StreamBody::Length(0),
            Framing::Length(n) => StreamBody::Length(n),
            Framing::Chunked => StreamBody::Chunked(ChunkedDecoder::new(usize::MAX)),
            Framing::UntilEof => StreamBody::UntilEof,
        };
        BodyStream {
            conn,
            body,
            decoded: Vec::new(),
            scanned: 0,
            line_limit: MAX_STREAM_LINE,
            ended: false,
        }
    }
}
