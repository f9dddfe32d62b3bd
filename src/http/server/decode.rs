//! Request decoding: bytes in, a complete [`Request`] (or "need more", or an error) out.
//!
//! No I/O happens here, so every rule about framing and limits is tested on plain byte slices and the
//! server loop only moves bytes. Incomplete input is `Ok(None)`, as in httparse, never an error.
//!
//! A [`Request`] borrows the buffer it was decoded from, as httparse's types do: method, target,
//! header values and body are slices of it, and path segments and query values are decoded only when
//! asked for (borrowed unless they hold an escape). Decoding allocates nothing.

use crate::http::headers;
use crate::http::url::{self, PercentError, QueryPairs, Segments};
use crate::http::{MAX_BODY_BYTES, MAX_HEADERS, MAX_HEAD_BYTES};
use std::borrow::Cow;
use std::fmt;
use std::mem::MaybeUninit;

/// The HTTP version of a request; only 1.0 and 1.1 are spoken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0: closes after each response unless it asks for keep-alive.
    Http10,
    /// HTTP/1.1: keep-alive unless it says `Connection: close`.
    Http11,
}

/// A complete request, borrowing the bytes it was decoded from.
///
/// ```
/// let raw = b"GET /Add/5/%36?a=1 HTTP/1.1\r\nHost: x\r\n\r\n";
/// let (req, _) = mini::http::parse_request(raw).unwrap().unwrap();
/// assert_eq!((req.method(), req.path()), ("GET", "/Add/5/%36"));
/// assert_eq!(req.segments().collect::<Vec<_>>(), ["Add", "5", "6"]);
/// assert_eq!(req.query("a").as_deref(), Some("1"));
/// assert_eq!(req.header("host"), Some(&b"x"[..]));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Request<'buf> {
    method: &'buf str,
    target: &'buf str,
    /// `target` before its `?`, and after it (empty without one): split once, at parse time.
    path: &'buf str,
    query: &'buf str,
    version: Version,
    /// The header lines as sent (validated by httparse), read again by [`Request::header`].
    fields: &'buf [u8],
    body: &'buf [u8],
    keep_alive: bool,
    /// The peer's address, when the server knows it (set after decoding; `None` from the parser).
    peer: Option<std::net::SocketAddr>,
}

impl<'buf> Request<'buf> {
    /// The method token as sent (`GET`, `POST`, ...).
    pub fn method(&self) -> &'buf str {
        self.method
    }

    /// The raw request target (`/serviceAddr?queryParam=add`).
    pub fn target(&self) -> &'buf str {
        self.target
    }

    /// The path of the target, without its query, not decoded.
    pub fn path(&self) -> &'buf str {
        self.path
    }

    /// The query of the target (after `?`), not decoded; empty when there is none.
    pub fn raw_query(&self) -> &'buf str {
        self.query
    }

    /// The percent-decoded path segments (`/Add/5/6` gives `Add`, `5`, `6`).
    pub fn segments(&self) -> Segments<'buf> {
        Segments::new(self.path())
    }

    /// The percent-decoded query pairs, in order.
    pub fn query_pairs(&self) -> QueryPairs<'buf> {
        QueryPairs::new(self.raw_query())
    }

    /// The first query value named `name`, decoded (borrowed unless it held an escape or `+`).
    ///
    /// ```
    /// let (req, _) = mini::http::parse_request(b"GET /x?a=1&b=x+y HTTP/1.1\r\n\r\n").unwrap().unwrap();
    /// assert_eq!(req.query("a").as_deref(), Some("1"));
    /// assert_eq!(req.query("b").as_deref(), Some("x y"));
    /// ```
    pub fn query(&self, name: &str) -> Option<Cow<'buf, str>> {
        // What `query_pairs().find(..)` gives, without decoding every key and value on the way: a
        // key is compared as sent unless it holds an escape or `+`, and only the value found is
        // decoded. This runs on every lookup and heartbeat.
        let mut rest = self.query.as_bytes();
        let mut from = 0;
        while !rest.is_empty() {
            let len = rest.iter().position(|b| *b == b'&').unwrap_or(rest.len());
            let pair = &self.query[from..from + len];
            let (key, value) = match pair.as_bytes().iter().position(|b| *b == b'=') {
                Some(eq) => (&pair[..eq], &pair[eq + 1..]),
                None => (pair, ""),
            };
            let is_name = if key.bytes().any(|b| b == b'%' || b == b'+') {
                url::percent_decode(key, true).unwrap_or(Cow::Borrowed(key)) == name
            } else {
                key == name
            };
            if !pair.is_empty() && is_name {
                return Some(url::percent_decode(value, true).unwrap_or(Cow::Borrowed(value)));
            }
            let step = (len + 1).min(rest.len());
            rest = &rest[step..];
            from += step;
        }
        None
    }

    /// The protocol version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The first header named `name` (case-insensitive), raw.
    pub fn header(&self, name: &str) -> Option<&'buf [u8]> {
        self.headers()
            .find(|(k, _)| headers::is(k, name))
            .map(|(_, v)| v)
    }

    /// Every header, in order: names as sent with their raw values.
    pub fn headers(&self) -> Fields<'buf> {
        Fields { rest: self.fields }
    }

    /// The body (bounded by [`MAX_BODY_BYTES`]).
    pub fn body(&self) -> &'buf [u8] {
        self.body
    }

    /// Whether the connection stays open after the response.
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }

    /// The address of the peer that sent it, when the server knows it (the parser alone does not).
    ///
    /// ```
    /// let (req, _) = mini::http::parse_request(b"GET / HTTP/1.1\r\n\r\n").unwrap().unwrap();
    /// assert_eq!(req.peer(), None);
    /// ```
    pub fn peer(&self) -> Option<std::net::SocketAddr> {
        self.peer
    }

    /// The same request, known to come from `peer`.
    pub(crate) fn with_peer(self, peer: Option<std::net::SocketAddr>) -> Request<'buf> {
        Request { peer, ..self }
    }
}

/// The header fields of a [`Request`], read from the head httparse validated.
#[derive(Debug, Clone)]
pub struct Fields<'buf> {
    rest: &'buf [u8],
}

impl<'buf> Iterator for Fields<'buf> {
    type Item = (&'buf str, &'buf [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let end = self.rest.iter().position(|b| *b == b'\n')?;
            let line = &self.rest[..end];
            self.rest = &self.rest[end + 1..];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                self.rest = &[];
                return None;
            }
            // httparse accepted the head: a token, a colon, the value with optional whitespace.
            let Some(colon) = line.iter().position(|b| *b == b':') else {
                continue;
            };
            let Ok(name) = std::str::from_utf8(&line[..colon]) else {
                continue;
            };
            return Some((name, line[colon + 1..].trim_ascii()));
        }
    }
}

/// Why a request was refused; each maps to one status and one fixed line of text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
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
    Decode(PercentError),
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

impl RequestError {
    /// The status code this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            RequestError::TargetTooLong => 414,
            RequestError::HeadTooLarge | RequestError::TooManyHeaders => 431,
            RequestError::ChunkedBody => 411,
            RequestError::UnsupportedCoding => 501,
            RequestError::BodyTooLarge => 413,
            _ => 400,
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::Malformed(why) => write!(f, "malformed request: {why}"),
            RequestError::TargetTooLong => {
                write!(f, "request line longer than {MAX_HEAD_BYTES} bytes")
            }
            RequestError::HeadTooLarge => {
                write!(f, "request head larger than {MAX_HEAD_BYTES} bytes")
            }
            RequestError::TooManyHeaders => write!(f, "more than {MAX_HEADERS} header fields"),
            RequestError::BadTarget => f.write_str("request target must start with /"),
            RequestError::Decode(e) => e.fmt(f),
            RequestError::BadContentLength => f.write_str("invalid or conflicting Content-Length"),
            RequestError::ConflictingFraming => {
                f.write_str("both Content-Length and Transfer-Encoding: refused")
            }
            RequestError::ChunkedBody => {
                f.write_str("chunked request bodies are not accepted: send Content-Length")
            }
            RequestError::UnsupportedCoding => f.write_str("unsupported Transfer-Encoding"),
            RequestError::BodyTooLarge => {
                write!(f, "request body larger than {MAX_BODY_BYTES} bytes")
            }
        }
    }
}

impl std::error::Error for RequestError {}

/// Parses one request from the front of `buf`.
///
/// `Ok(None)` means more bytes are needed; `Ok(Some((request, used)))` gives the request and how many
/// bytes of `buf` it took, so pipelined requests behind it stay in the buffer.
///
/// ```
/// use mini::http::parse_request;
/// assert!(parse_request(b"GET / HTTP/1.1\r\n").unwrap().is_none());
/// let (req, used) = parse_request(b"GET /a HTTP/1.1\r\n\r\nGET /b").unwrap().unwrap();
/// assert_eq!((req.target(), used), ("/a", 19));
/// ```
pub fn parse_request(buf: &[u8]) -> Result<Option<(Request<'_>, usize)>, RequestError> {
    // Uninitialized slots: httparse writes only those it fills (3.2 KiB not zeroed per request).
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut head = httparse::Request::new(&mut []);
    let len = match head.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return partial(buf),
        Err(httparse::Error::TooManyHeaders) => return Err(RequestError::TooManyHeaders),
        Err(e) => return Err(RequestError::Malformed(malformed_reason(e))),
    };
    if len > MAX_HEAD_BYTES {
        return Err(too_long(buf));
    }
    let body_len = body_length(head.headers)?;
    let end = len + body_len;
    let Some(body) = buf.get(len..end) else {
        return Ok(None);
    };
    let target = head.path.unwrap_or_default();
    if !target.starts_with('/') {
        return Err(RequestError::BadTarget);
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    // Without a `%` nothing can fail to decode (`+` is a space): one scan instead of a check of
    // every segment and pair.
    if target.as_bytes().contains(&b'%') {
        url::check_path(path).map_err(RequestError::Decode)?;
        url::check_query(query).map_err(RequestError::Decode)?;
    }
    let minor = head.version.unwrap_or(1);
    let connection = head
        .headers
        .iter()
        .filter(|h| headers::is(h.name, "connection"))
        .map(|h| h.value);
    let keep_alive = headers::keep_alive(minor, connection);
    // The header lines run from the first name to the end of the head.
    let fields = match head.headers.first() {
        Some(first) => {
            let from = (first.name.as_ptr() as usize).saturating_sub(buf.as_ptr() as usize);
            buf.get(from..len).unwrap_or_default()
        }
        None => &[],
    };
    let request = Request {
        method: head.method.unwrap_or_default(),
        target,
        path,
        query,
        version: if minor == 0 {
            Version::Http10
        } else {
            Version::Http11
        },
        fields,
        body,
        keep_alive,
        peer: None,
    };
    Ok(Some((request, end)))
}

/// An incomplete head is fine until it outgrows the limit; then say which part was too long.
fn partial<T>(buf: &[u8]) -> Result<Option<T>, RequestError> {
    if buf.len() < MAX_HEAD_BYTES {
        Ok(None)
    } else {
        Err(too_long(buf))
    }
}

/// Which part of a head past the limit is too long: the request line alone (414) or the head (431).
fn too_long(buf: &[u8]) -> RequestError {
    if !buf[..MAX_HEAD_BYTES].contains(&b'\n') {
        RequestError::TargetTooLong
    } else {
        RequestError::HeadTooLarge
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

/// Works out the body length from the framing headers, in order, refusing every ambiguous
/// combination (the rules themselves are [`headers`]').
fn body_length(fields: &[httparse::Header<'_>]) -> Result<usize, RequestError> {
    let mut length: Option<u64> = None;
    let mut coding = false;
    for field in fields {
        if headers::is(field.name, "content-length") {
            headers::add_length(&mut length, field.value)
                .map_err(|_| RequestError::BadContentLength)?;
        } else if headers::is(field.name, "transfer-encoding") {
            coding = true;
            if !headers::is_chunked(field.value) {
                return Err(RequestError::UnsupportedCoding);
            }
        }
    }
    match (length, coding) {
        (Some(_), true) => Err(RequestError::ConflictingFraming),
        (None, true) => Err(RequestError::ChunkedBody),
        (Some(n), false) if n > MAX_BODY_BYTES as u64 => Err(RequestError::BodyTooLarge),
        (Some(n), false) => Ok(n as usize),
        (None, false) => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Option<(Request<'_>, usize)>, RequestError> {
        parse_request(raw.as_bytes())
    }

    fn full(raw: &str) -> Request<'_> {
        parse(raw).unwrap().unwrap().0
    }

    #[test]
    fn parses_the_original_heartbeat_with_empty_content_type() {
        let raw = "POST /registerList?ip=127.0.0.1:1111 HTTP/1.1\r\nHost: x\r\nContent-Type: \r\nContent-Length: 0\r\n\r\n";
        let req = full(raw);
        assert_eq!(req.method(), "POST");
        assert_eq!(req.query("ip").as_deref(), Some("127.0.0.1:1111"));
        assert_eq!(req.header("content-type"), Some(&b""[..]));
        assert!(req.body().is_empty());
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
        assert_eq!(req.body(), b"abcde");
        assert_eq!(used, 43);
    }

    #[test]
    fn keep_alive_rules_follow_the_version() {
        assert!(full("GET / HTTP/1.1\r\n\r\n").keep_alive());
        assert!(!full("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive());
        assert!(!full("GET / HTTP/1.0\r\n\r\n").keep_alive());
        assert!(full("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive());
    }

    #[test]
    fn decodes_path_segments_and_query() {
        let req = full("GET /Add/%2D5/6?a=1%2B1&b=x+y HTTP/1.1\r\n\r\n");
        assert_eq!(req.segments().collect::<Vec<_>>(), ["Add", "-5", "6"]);
        assert_eq!(req.query("a").as_deref(), Some("1+1"));
        assert_eq!(req.query("b").as_deref(), Some("x y"));
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
        assert_eq!(req.body(), b"ok");
    }

    #[test]
    fn oversized_heads_are_refused_by_part() {
        let long_target = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_HEAD_BYTES));
        assert_eq!(parse(&long_target).err(), Some(RequestError::TargetTooLong));
        let long_header = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(MAX_HEAD_BYTES));
        assert_eq!(parse(&long_header).err(), Some(RequestError::HeadTooLarge));
        // Whole heads too, whichever way the bytes were split into reads.
        let complete = format!("{long_target}Host: x\r\n\r\n");
        assert_eq!(parse(&complete).err(), Some(RequestError::TargetTooLong));
        let complete = format!("{long_header}\r\n");
        assert_eq!(parse(&complete).err(), Some(RequestError::HeadTooLarge));
        let many: String = (0..=MAX_HEADERS).map(|i| format!("H{i}: v\r\n")).collect();
        let raw = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(parse(&raw).err(), Some(RequestError::TooManyHeaders));
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

    #[test]
    fn headers_are_read_back_as_httparse_saw_them() {
        let raw = "GET / HTTP/1.1\r\nHost:  x \r\nAccept:\tapplication/json\r\nX-E:\r\nAuthorization: Bearer t\n\r\nbody";
        let req = full(raw);
        let fields: Vec<_> = req.headers().collect();
        assert_eq!(
            fields,
            [
                ("Host", &b"x"[..]),
                ("Accept", b"application/json"),
                ("X-E", b""),
                ("Authorization", b"Bearer t"),
            ]
        );
        assert_eq!(req.header("AUTHORIZATION"), Some(&b"Bearer t"[..]));
        assert_eq!(full("\r\nGET / HTTP/1.1\r\n\r\n").headers().count(), 0);
    }

    #[test]
    fn decoding_borrows_the_buffer() {
        let req = full("GET /a/b%20c?x=1&y=a+b HTTP/1.1\r\n\r\n");
        let segs: Vec<_> = req.segments().collect();
        assert!(matches!(segs[0], Cow::Borrowed("a")));
        assert!(matches!(segs[1], Cow::Owned(_)));
        assert!(matches!(req.query("x"), Some(Cow::Borrowed("1"))));
        assert_eq!(req.query("y").as_deref(), Some("a b"));
    }

    #[test]
    fn query_finds_what_the_pairs_find() {
        let queries = [
            "",
            "a",
            "a=",
            "=1",
            "a=1",
            "&&a=1&&",
            "b=2&a=1&a=3",
            "a%3D=1&a=2",
            "a+b=1&a%20b=2",
            "%61=x&a=y",
            "a=%41+%42",
            "x=1&&&a",
            "ab=1&a=2",
            "a=1=2",
            "&",
            "==",
            "a&a=1",
        ];
        for query in queries {
            let raw = format!("GET /p?{query} HTTP/1.1\r\n\r\n");
            let req = full(&raw);
            for name in ["a", "b", "a=", "a b", "", "ab", "x"] {
                let pairs = req.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v);
                assert_eq!(req.query(name), pairs, "{query:?} {name:?}");
            }
        }
        assert_eq!(full("GET /p HTTP/1.1\r\n\r\n").query("a"), None);
    }
}
