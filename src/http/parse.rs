//! Incremental request parsing: bytes in, a complete [`Request`] (or "need more", or an error) out.
//!
//! No I/O happens here, so every rule about framing and limits is tested on plain byte slices and the
//! server loop only moves bytes. Incomplete input is `Ok(None)`, as in httparse, never an error.

use super::url::{self, DecodeError};
use super::{MAX_BODY_BYTES, MAX_HEADERS, MAX_HEAD_BYTES};
use std::fmt;

/// The HTTP version of a request; only 1.0 and 1.1 are spoken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0: closes after each response unless it asks for keep-alive.
    Http10,
    /// HTTP/1.1: keep-alive unless it says `Connection: close`.
    Http11,
}

/// A complete, decoded request.
#[derive(Debug, Clone)]
pub struct Request {
    /// The method token as sent (`GET`, `POST`, ...).
    pub method: String,
    /// The raw request target (`/serviceAddr?queryParam=add`).
    pub target: String,
    /// Percent-decoded path segments (`/Add/5/6` gives `["Add", "5", "6"]`).
    pub segments: Vec<String>,
    /// Percent-decoded query pairs, in order.
    pub query: Vec<(String, String)>,
    /// The protocol version.
    pub version: Version,
    /// Header names as sent with their raw values.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body (bounded by [`MAX_BODY_BYTES`]).
    pub body: Vec<u8>,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
}

impl Request {
    /// The first query value named `name`.
    ///
    /// ```
    /// let req = mini::http::parse::parse_request(b"GET /x?a=1 HTTP/1.1\r\n\r\n").unwrap().unwrap().0;
    /// assert_eq!(req.query("a"), Some("1"));
    /// ```
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first header named `name` (case-insensitive), raw.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The path of the target, without its query.
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(p, _)| p)
    }
}

/// Why a request was refused; each maps to one status and one fixed line of text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// The head is not HTTP/1.x syntax (httparse's reason inside).
    Malformed(&'static str),
    /// The request line alone is longer than the head limit.
    TargetTooLong,
    /// The head is longer than [`MAX_HEAD_BYTES`].
    HeadTooLarge,
    /// More than [`MAX_HEADERS`] header fields.
    TooManyHeaders,
    /// The target is not origin-form (`/path?query`).
    BadTarget,
    /// The target does not percent-decode.
    Decode(DecodeError),
    /// `Content-Length` is not a number, or two values differ.
    BadContentLength,
    /// Both `Content-Length` and `Transfer-Encoding`: a request-smuggling shape.
    ConflictingFraming,
    /// A chunked body: refused, bodies here are small and must say their length.
    ChunkedBody,
    /// A transfer coding other than chunked.
    UnsupportedCoding,
    /// The body is longer than [`MAX_BODY_BYTES`].
    BodyTooLarge,
}

impl ParseError {
    /// The status code this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            ParseError::TargetTooLong => 414,
            ParseError::HeadTooLarge | ParseError::TooManyHeaders => 431,
            ParseError::ChunkedBody => 411,
            ParseError::UnsupportedCoding => 501,
            ParseError::BodyTooLarge => 413,
            _ => 400,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Malformed(why) => write!(f, "malformed request: {why}"),
            ParseError::TargetTooLong => {
                write!(f, "request line longer than {MAX_HEAD_BYTES} bytes")
            }
            ParseError::HeadTooLarge => {
                write!(f, "request head larger than {MAX_HEAD_BYTES} bytes")
            }
            ParseError::TooManyHeaders => write!(f, "more than {MAX_HEADERS} header fields"),
            ParseError::BadTarget => f.write_str("request target must start with /"),
            ParseError::Decode(e) => e.fmt(f),
            ParseError::BadContentLength => f.write_str("invalid or conflicting Content-Length"),
            ParseError::ConflictingFraming => {
                f.write_str("both Content-Length and Transfer-Encoding: refused")
            }
            ParseError::ChunkedBody => {
                f.write_str("chunked request bodies are not accepted: send Content-Length")
            }
            ParseError::UnsupportedCoding => f.write_str("unsupported Transfer-Encoding"),
            ParseError::BodyTooLarge => {
                write!(f, "request body larger than {MAX_BODY_BYTES} bytes")
            }
        }
    }
}

impl std::error::Error for ParseError {}

/// The head of a request, before its body.
struct Head {
    method: String,
    target: String,
    version: Version,
    headers: Vec<(String, Vec<u8>)>,
    len: usize,
}

/// Parses one request from the front of `buf`.
///
/// `Ok(None)` means more bytes are needed; `Ok(Some((request, used)))` gives the request and how many
/// bytes of `buf` it took, so pipelined requests behind it stay in the buffer.
///
/// ```
/// use mini::http::parse::parse_request;
/// assert!(parse_request(b"GET / HTTP/1.1\r\n").unwrap().is_none());
/// let (req, used) = parse_request(b"GET /a HTTP/1.1\r\n\r\nGET /b").unwrap().unwrap();
/// assert_eq!((req.target.as_str(), used), ("/a", 19));
/// ```
pub fn parse_request(buf: &[u8]) -> Result<Option<(Request, usize)>, ParseError> {
    let Some(head) = parse_head(buf)? else {
        return Ok(None);
    };
    let body_len = body_length(&head.headers)?;
    let end = head.len + body_len;
    if buf.len() < end {
        return Ok(None);
    }
    let body = buf[head.len..end].to_vec();
    Ok(Some((into_request(head, body)?, end)))
}

fn parse_head(buf: &[u8]) -> Result<Option<Head>, ParseError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return partial(buf),
        Err(httparse::Error::TooManyHeaders) => return Err(ParseError::TooManyHeaders),
        Err(e) => return Err(ParseError::Malformed(malformed_reason(e))),
    };
    if len > MAX_HEAD_BYTES {
        return Err(too_long(buf));
    }
    let version = match req.version {
        Some(0) => Version::Http10,
        _ => Version::Http11,
    };
    Ok(Some(Head {
        method: req.method.unwrap_or_default().to_owned(),
        target: req.path.unwrap_or_default().to_owned(),
        version,
        headers: req
            .headers
            .iter()
            .map(|h| (h.name.to_owned(), h.value.to_vec()))
            .collect(),
        len,
    }))
}

/// An incomplete head is fine until it outgrows the limit; then say which part was too long.
fn partial(buf: &[u8]) -> Result<Option<Head>, ParseError> {
    if buf.len() < MAX_HEAD_BYTES {
        Ok(None)
    } else {
        Err(too_long(buf))
    }
}

/// Which part of a head past the limit is too long: the request line alone (414) or the head (431).
fn too_long(buf: &[u8]) -> ParseError {
    if !buf[..MAX_HEAD_BYTES].contains(&b'\n') {
        ParseError::TargetTooLong
    } else {
        ParseError::HeadTooLarge
    }
}

fn malformed_reason(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid method or target",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "not an HTTP/1.x request",
    }
}

/// Works out the body length from the framing headers, refusing every ambiguous combination.
fn body_length(headers: &[(String, Vec<u8>)]) -> Result<usize, ParseError> {
    let mut length: Option<u64> = None;
    let mut coding = false;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("content-length") {
            for piece in value.split(|b| *b == b',') {
                let n = parse_length(piece)?;
                if length.is_some_and(|old| old != n) {
                    return Err(ParseError::BadContentLength);
                }
                length = Some(n);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            coding = true;
            if !is_chunked(value) {
                return Err(ParseError::UnsupportedCoding);
            }
        }
    }
    match (length, coding) {
        (Some(_), true) => Err(ParseError::ConflictingFraming),
        (None, true) => Err(ParseError::ChunkedBody),
        (Some(n), false) if n > MAX_BODY_BYTES as u64 => Err(ParseError::BodyTooLarge),
        (Some(n), false) => Ok(n as usize),
        (None, false) => Ok(0),
    }
}

fn parse_length(raw: &[u8]) -> Result<u64, ParseError> {
    let digits = raw.trim_ascii();
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(ParseError::BadContentLength);
    }
    Ok(digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

fn is_chunked(value: &[u8]) -> bool {
    value
        .rsplit(|b| *b == b',')
        .next()
        .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

fn into_request(head: Head, body: Vec<u8>) -> Result<Request, ParseError> {
    if !head.target.starts_with('/') {
        return Err(ParseError::BadTarget);
    }
    let (path, query) = head.target.split_once('?').unwrap_or((&head.target, ""));
    let segments = url::path_segments(path).map_err(ParseError::Decode)?;
    let query = url::parse_query(query).map_err(ParseError::Decode)?;
    let keep_alive = keep_alive(head.version, &head.headers);
    Ok(Request {
        method: head.method,
        target: head.target,
        segments,
        query,
        version: head.version,
        headers: head.headers,
        body,
        keep_alive,
    })
}

/// HTTP/1.1 stays open unless told `close`; HTTP/1.0 closes unless told `keep-alive`.
fn keep_alive(version: Version, headers: &[(String, Vec<u8>)]) -> bool {
    let has = |token: &[u8]| {
        headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("connection"))
            .flat_map(|(_, v)| v.split(|b| *b == b','))
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
    };
    match version {
        Version::Http11 => !has(b"close"),
        Version::Http10 => has(b"keep-alive"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Option<(Request, usize)>, ParseError> {
        parse_request(raw.as_bytes())
    }

    fn full(raw: &str) -> Request {
        parse(raw).unwrap().unwrap().0
    }

    #[test]
    fn parses_the_original_heartbeat_with_empty_content_type() {
        let raw = "POST /registerList?ip=127.0.0.1:1111 HTTP/1.1\r\nHost: x\r\nContent-Type: \r\nContent-Length: 0\r\n\r\n";
        let req = full(raw);
        assert_eq!(req.method, "POST");
        assert_eq!(req.query("ip"), Some("127.0.0.1:1111"));
        assert_eq!(req.header("content-type"), Some(&b""[..]));
        assert!(req.body.is_empty());
    }

    #[test]
    fn partial_head_and_partial_body_need_more() {
        assert!(parse("GET / HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
        assert!(parse("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab")
            .unwrap()
            .is_none());
        let (req, used) = parse("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcdeGET")
            .unwrap()
            .unwrap();
        assert_eq!(req.body, b"abcde");
        assert_eq!(used, 43);
    }

    #[test]
    fn keep_alive_rules_follow_the_version() {
        assert!(full("GET / HTTP/1.1\r\n\r\n").keep_alive);
        assert!(!full("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!full("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(full("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
    }

    #[test]
    fn decodes_path_segments_and_query() {
        let req = full("GET /Add/%2D5/6?a=1%2B1&b=x+y HTTP/1.1\r\n\r\n");
        assert_eq!(req.segments, ["Add", "-5", "6"]);
        assert_eq!(req.query("a"), Some("1+1"));
        assert_eq!(req.query("b"), Some("x y"));
        assert_eq!(req.path(), "/Add/%2D5/6");
    }

    #[test]
    fn framing_errors_have_their_statuses() {
        let cases = [
            ("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
            (
                "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
                400,
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                400,
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                400,
            ),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
            ("POST / HTTP/1.1\r\nContent-Length: 65537\r\n\r\n", 413),
            ("GET http://x/ HTTP/1.1\r\n\r\n", 400),
            ("GET /%zz HTTP/1.1\r\n\r\n", 400),
            ("GET /?q=%ff HTTP/1.1\r\n\r\n", 400),
            ("\x16\x03\x01\x02\x00 garbage\r\n\r\n", 400),
            ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
        ];
        for (raw, status) in cases {
            let err = parse(raw)
                .err()
                .unwrap_or_else(|| panic!("accepted {raw:?}"));
            assert_eq!(err.status(), status, "{raw:?}: {err}");
        }
    }

    #[test]
    fn equal_duplicate_lengths_are_one_length() {
        let req = full("POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok");
        assert_eq!(req.body, b"ok");
    }

    #[test]
    fn oversized_heads_are_refused_by_part() {
        let long_target = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_HEAD_BYTES));
        assert_eq!(parse(&long_target).err(), Some(ParseError::TargetTooLong));
        let long_header = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(MAX_HEAD_BYTES));
        assert_eq!(parse(&long_header).err(), Some(ParseError::HeadTooLarge));
        // Whole heads too, whichever way the bytes were split into reads.
        let complete = format!("{long_target}Host: x\r\n\r\n");
        assert_eq!(parse(&complete).err(), Some(ParseError::TargetTooLong));
        let complete = format!("{long_header}\r\n");
        assert_eq!(parse(&complete).err(), Some(ParseError::HeadTooLarge));
        let many: String = (0..=MAX_HEADERS).map(|i| format!("H{i}: v\r\n")).collect();
        let raw = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(parse(&raw).err(), Some(ParseError::TooManyHeaders));
    }

    #[test]
    fn every_prefix_of_a_valid_request_is_partial() {
        let raw = b"POST /registerList?ip=1.2.3.4:5 HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi";
        for end in 0..raw.len() {
            assert!(
                parse_request(&raw[..end]).unwrap().is_none(),
                "prefix {end}"
            );
        }
        assert!(parse_request(raw).unwrap().is_some());
    }
}
