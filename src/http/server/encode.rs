//! Responses and their encoding on the wire.
//!
//! A [`Response`] is a status, a content type, rare extra headers and a [`Body`] that is usually
//! static or short enough to live inline; [`Response::encode`] writes the whole reply straight into
//! the connection's output buffer (numbers formatted by hand, the `Date` value cached per second),
//! so answering a lookup or a heartbeat allocates nothing.

use crate::http::headers::push_decimal;
use std::fmt::{self, Write as _};

/// A response to write: status, content type, extra headers and a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The `Content-Type` value.
    pub content_type: &'static str,
    /// Extra headers (`Allow`, `X-Mini-Index`, ...).
    pub headers: Vec<(&'static str, String)>,
    /// The body; its length becomes `Content-Length`.
    pub body: Body,
}

/// Plain text, the default for every body here.
pub const TEXT: &str = "text/plain; charset=utf-8";
/// JSON, for callers that ask with `Accept: application/json` or `?format=json`.
pub const JSON: &str = "application/json";

impl Response {
    /// A plain-text response with exactly these bytes (the wire routes need byte-exact bodies).
    ///
    /// ```
    /// let r = mini::http::Response::text(200, "127.0.0.1:1111");
    /// assert_eq!(r.body, b"127.0.0.1:1111");
    /// ```
    pub fn text(status: u16, body: impl Into<Body>) -> Response {
        Response {
            status,
            content_type: TEXT,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// A one-line plain-text error: the reason followed by a newline.
    ///
    /// ```
    /// let r = mini::http::Response::error(404, "no route for /x");
    /// assert_eq!(r.body, b"no route for /x\n");
    /// ```
    pub fn error(status: u16, reason: impl fmt::Display) -> Response {
        Response::text(status, Body::display(format_args!("{reason}\n")))
    }

    /// A JSON response from an already encoded document.
    pub fn json(status: u16, body: String) -> Response {
        Response {
            status,
            content_type: JSON,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// Appends the encoded response to `out`; `keep_alive` decides the `Connection` header.
    ///
    /// ```
    /// let mut out = Vec::new();
    /// mini::http::Response::text(200, "ok").encode(true, false, &mut out);
    /// assert!(out.starts_with(b"HTTP/1.1 200 OK\r\n"));
    /// assert!(out.ends_with(b"\r\n\r\nok"));
    /// ```
    pub fn encode(&self, keep_alive: bool, http10: bool, out: &mut Vec<u8>) {
        out.extend_from_slice(b"HTTP/1.1 ");
        push_decimal(out, u64::from(self.status));
        out.push(b' ');
        out.extend_from_slice(reason(self.status).as_bytes());
        out.extend_from_slice(b"\r\nDate: ");
        date::append(out);
        out.extend_from_slice(b"\r\nContent-Type: ");
        out.extend_from_slice(self.content_type.as_bytes());
        out.extend_from_slice(b"\r\nContent-Length: ");
        push_decimal(out, self.body.len() as u64);
        if !keep_alive {
            out.extend_from_slice(b"\r\nConnection: close");
        } else if http10 {
            out.extend_from_slice(b"\r\nConnection: keep-alive");
        }
        for (name, value) in &self.headers {
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
        }
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(&self.body);
    }
}

/// Bytes a [`Body`] holds inline, without a heap allocation (a picked address, `HOST:PORT
/// registered`, a one-line error); as many as keep a [`Response`] under 128 bytes.
pub const INLINE_BODY: usize = 70;

/// A response body: static bytes, a short inline buffer, or an owned buffer for the rest.
///
/// It reads as a byte slice (`&body[..]`, `body.len()`) and compares with byte strings.
///
/// ```
/// use mini::http::server::encode::Body;
/// let body = Body::display(format_args!("{} registered", "127.0.0.1:1111"));
/// assert_eq!(body, b"127.0.0.1:1111 registered");
/// assert!(body.is_inline());
/// assert_eq!(Body::from_static(b"ok").len(), 2);
/// ```
#[derive(Clone)]
pub struct Body(Repr);

#[derive(Clone)]
enum Repr {
    Static(&'static [u8]),
    Inline { len: u8, bytes: [u8; INLINE_BODY] },
    Heap(Vec<u8>),
}

impl Body {
    /// An empty body.
    pub const fn empty() -> Body {
        Body(Repr::Static(b""))
    }

    /// A body of static bytes, never copied.
    pub const fn from_static(bytes: &'static [u8]) -> Body {
        Body(Repr::Static(bytes))
    }

    /// A body formatted from `value`: inline when it fits in [`INLINE_BODY`] bytes.
    pub fn display(value: impl fmt::Display) -> Body {
        let mut body = Body(Repr::Inline {
            len: 0,
            bytes: [0; INLINE_BODY],
        });
        let _ = write!(body, "{value}");
        body
    }

    /// Whether the bytes are held inline (no heap allocation).
    pub fn is_inline(&self) -> bool {
        matches!(self.0, Repr::Inline { .. })
    }

    /// Appends bytes, moving to the heap when they no longer fit inline.
    pub fn push(&mut self, more: &[u8]) {
        match &mut self.0 {
            Repr::Inline { len, bytes } if usize::from(*len) + more.len() <= INLINE_BODY => {
                let at = usize::from(*len);
                bytes[at..at + more.len()].copy_from_slice(more);
                *len += more.len() as u8;
            }
            Repr::Heap(v) => v.extend_from_slice(more),
            _ => {
                let mut v = Vec::with_capacity(self.len() + more.len());
                v.extend_from_slice(self);
                v.extend_from_slice(more);
                self.0 = Repr::Heap(v);
            }
        }
    }

    fn bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Static(b) => b,
            Repr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Repr::Heap(v) => v,
        }
    }
}

impl Default for Body {
    fn default() -> Body {
        Body::empty()
    }
}

impl fmt::Write for Body {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

impl std::ops::Deref for Body {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.bytes()
    }
}

impl AsRef<[u8]> for Body {
    fn as_ref(&self) -> &[u8] {
        self.bytes()
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&String::from_utf8_lossy(self.bytes()), f)
    }
}

impl PartialEq for Body {
    fn eq(&self, other: &Body) -> bool {
        self.bytes() == other.bytes()
    }
}

impl Eq for Body {}

impl PartialEq<[u8]> for Body {
    fn eq(&self, other: &[u8]) -> bool {
        self.bytes() == other
    }
}

impl PartialEq<&[u8]> for Body {
    fn eq(&self, other: &&[u8]) -> bool {
        self.bytes() == *other
    }
}

impl<const N: usize> PartialEq<&[u8; N]> for Body {
    fn eq(&self, other: &&[u8; N]) -> bool {
        self.bytes() == &other[..]
    }
}

impl<const N: usize> PartialEq<[u8; N]> for Body {
    fn eq(&self, other: &[u8; N]) -> bool {
        self.bytes() == &other[..]
    }
}

impl PartialEq<Vec<u8>> for Body {
    fn eq(&self, other: &Vec<u8>) -> bool {
        self.bytes() == &other[..]
    }
}

/// Copies a short text inline, a long one to the heap.
impl From<&str> for Body {
    fn from(s: &str) -> Body {
        let mut body = Body(Repr::Inline {
            len: 0,
            bytes: [0; INLINE_BODY],
        });
        body.push(s.as_bytes());
        body
    }
}

impl From<&String> for Body {
    fn from(s: &String) -> Body {
        Body::from(s.as_str())
    }
}

impl From<String> for Body {
    fn from(s: String) -> Body {
        Body(Repr::Heap(s.into_bytes()))
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Body {
        Body(Repr::Heap(v))
    }
}

impl From<std::borrow::Cow<'_, str>> for Body {
    fn from(s: std::borrow::Cow<'_, str>) -> Body {
        match s {
            std::borrow::Cow::Borrowed(s) => Body::from(s),
            std::borrow::Cow::Owned(s) => Body::from(s),
        }
    }
}

/// The reason phrase of a status code ("Unknown" for codes this crate never sends).
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// `Date` header values, formatted once per second per thread (RFC 9110 asks origin servers with a
/// clock to send one; formatting it per response would cost more than the rest of a lookup).
mod date {
    use std::cell::RefCell;
    use std::fmt;

    /// An IMF-fixdate is this long (until the year 9999).
    const LEN: usize = 29;

    thread_local! {
        static CACHE: RefCell<(u64, [u8; LEN])> = const { RefCell::new((u64::MAX, [0; LEN])) };
    }

    /// Appends the current IMF-fixdate, e.g. `Wed, 25 Nov 2026 03:00:44 GMT`.
    pub fn append(out: &mut Vec<u8>) {
        // On a lane, the second it last woke in (read once per wake, as nginx caches its time).
        let secs = super::super::lane::unix_secs();
        CACHE.with(|cache| {
            let mut cache = cache.borrow_mut();
            if cache.0 != secs {
                let mut fixed = Fixed {
                    bytes: [0; LEN],
                    len: 0,
                };
                if write(&mut fixed, secs).is_err() || fixed.len != LEN {
                    // Past the year 9999: not cached, still correct.
                    return out.extend_from_slice(format(secs).as_bytes());
                }
                *cache = (secs, fixed.bytes);
            }
            out.extend_from_slice(&cache.1);
        });
    }

    /// A fixed buffer to format into without allocating.
    struct Fixed {
        bytes: [u8; LEN],
        len: usize,
    }

    impl fmt::Write for Fixed {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let end = self.len + s.len();
            self.bytes
                .get_mut(self.len..end)
                .ok_or(fmt::Error)?
                .copy_from_slice(s.as_bytes());
            self.len = end;
            Ok(())
        }
    }

    /// Formats seconds since the epoch as an IMF-fixdate.
    pub fn format(secs: u64) -> String {
        let mut out = String::new();
        let _ = write(&mut out, secs);
        out
    }

    fn write(out: &mut impl fmt::Write, secs: u64) -> fmt::Result {
        const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let days = secs / 86_400;
        let (y, m, d) = civil(days as i64);
        let t = secs % 86_400;
        write!(
            out,
            "{}, {d:02} {} {y} {:02}:{:02}:{:02} GMT",
            DAYS[(days % 7) as usize],
            MONTHS[(m - 1) as usize],
            t / 3600,
            t / 60 % 60,
            t % 60
        )
    }

    /// Days since 1970-01-01 to (year, month, day), Howard Hinnant's civil-from-days.
    fn civil(z: i64) -> (i64, i64, i64) {
        let z = z + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        (yoe + era * 400 + i64::from(m <= 2), m, d)
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn a_response_stays_small_and_short_bodies_stay_inline() {
            use crate::http::{Body, Response};
            assert!(std::mem::size_of::<Response>() < 128);
            let addr = "[2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]:65535";
            assert!(Body::display(format_args!("{addr} registered")).is_inline());
            let long = "x".repeat(super::super::INLINE_BODY + 1);
            let body = Body::display(&long);
            assert!(!body.is_inline());
            assert_eq!(body, long.as_bytes());
        }

        #[test]
        fn formats_known_instants() {
            assert_eq!(super::format(0), "Thu, 01 Jan 1970 00:00:00 GMT");
            assert_eq!(super::format(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
            assert_eq!(
                super::format(1_795_575_644),
                "Wed, 25 Nov 2026 03:00:44 GMT"
            );
        }
    }
}
