//! Responses and their encoding on the wire.

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
    pub body: Vec<u8>,
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
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: TEXT,
            headers: Vec::new(),
            body: body.into().into_bytes(),
        }
    }

    /// A one-line plain-text error: the reason followed by a newline.
    ///
    /// ```
    /// let r = mini::http::Response::error(404, "no route for /x");
    /// assert_eq!(r.body, b"no route for /x\n");
    /// ```
    pub fn error(status: u16, reason: impl std::fmt::Display) -> Response {
        Response::text(status, format!("{reason}\n"))
    }

    /// A JSON response from an already encoded document.
    pub fn json(status: u16, body: String) -> Response {
        Response {
            status,
            content_type: JSON,
            headers: Vec::new(),
            body: body.into_bytes(),
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
        out.extend_from_slice(self.status.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(reason(self.status).as_bytes());
        out.extend_from_slice(b"\r\nDate: ");
        date::append(out);
        out.extend_from_slice(b"\r\nContent-Type: ");
        out.extend_from_slice(self.content_type.as_bytes());
        out.extend_from_slice(b"\r\nContent-Length: ");
        out.extend_from_slice(self.body.len().to_string().as_bytes());
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
    use std::time::{SystemTime, UNIX_EPOCH};

    thread_local! {
        static CACHE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }

    /// Appends the current IMF-fixdate, e.g. `Wed, 25 Nov 2026 03:00:44 GMT`.
    pub fn append(out: &mut Vec<u8>) {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        CACHE.with(|cache| {
            let mut cache = cache.borrow_mut();
            if cache.0 != secs {
                *cache = (secs, format(secs));
            }
            out.extend_from_slice(cache.1.as_bytes());
        });
    }

    /// Formats seconds since the epoch as an IMF-fixdate.
    pub fn format(secs: u64) -> String {
        const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let days = secs / 86_400;
        let (y, m, d) = civil(days as i64);
        let t = secs % 86_400;
        format!(
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
