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
        out.extend_from_slice(status_line(self.status).as_bytes());
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

/// The status code with its reason phrase.
pub fn status_line(status: u16) -> &'static str {
    match status {
        200 => "200 OK",
        201 => "201 Created",
        204 => "204 No Content",
        400 => "400 Bad Request",
        401 => "401 Unauthorized",
        403 => "403 Forbidden",
        404 => "404 Not Found",
        405 => "405 Method Not Allowed",
        408 => "408 Request Timeout",
        409 => "409 Conflict",
        411 => "411 Length Required",
        413 => "413 Content Too Large",
        414 => "414 URI Too Long",
        429 => "429 Too Many Requests",
        431 => "431 Request Header Fields Too Large",
        500 => "500 Internal Server Error",
        501 => "501 Not Implemented",
        502 => "502 Bad Gateway",
        503 => "503 Service Unavailable",
        _ => "500 Internal Server Error",
    }
}
