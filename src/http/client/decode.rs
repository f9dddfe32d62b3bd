//! Response decoding: finding and parsing a response head, and deciding how its body is framed.
//!
//! No I/O: everything here works on byte slices, and the reading in [`super::conn`] only moves
//! bytes. The framing and persistence rules are the ones the server uses ([`crate::http::headers`]).

use super::{ClientError, MAX_RESPONSE_BODY, MAX_RESPONSE_HEAD, MAX_RESPONSE_HEADERS};
use crate::http::headers::{self, LengthError};

/// A parsed response head, with what its framing headers said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResponseHead {
    /// The status code.
    pub status: u16,
    /// Header fields in the order received (values with invalid UTF-8 replaced).
    pub headers: Vec<(String, String)>,
    /// Whether the connection persists after this response (RFC 9112 §9.3).
    pub keep_alive: bool,
    /// The last `Transfer-Encoding` value, if any: whether it ends in `chunked`.
    chunked: Option<bool>,
    /// What the `Content-Length` values said together.
    length: Result<Option<u64>, LengthError>,
}

/// How a response body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the server closes the connection.
    UntilEof,
}

/// Whether `status` is an interim (1xx) response that a final one follows; 101 is final.
pub(crate) fn is_interim(status: u16) -> bool {
    (100..200).contains(&status) && status != 101
}

/// Finds the end of the head (after the empty line) in `buf`, scanning from about `from` (what an
/// earlier call already scanned) so that byte-by-byte arrival stays linear. `None` until the head
/// is complete, or when it ends past [`MAX_RESPONSE_HEAD`].
pub(crate) fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(3);
    let tail = buf.get(start..)?;
    let lf = tail.windows(2).position(|w| w == b"\n\n").map(|p| p + 2);
    let crlf = tail.windows(3).position(|w| w == b"\n\r\n").map(|p| p + 3);
    let end = match (lf, crlf) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b)?,
    };
    Some(start + end).filter(|&e| e <= MAX_RESPONSE_HEAD)
}

/// Parses one complete head (the bytes up to [`find_head_end`]).
pub(crate) fn parse_head(bytes: &[u8]) -> Result<ResponseHead, ClientError> {
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
    let named = |name: &'static str| {
        parsed
            .headers
            .iter()
            .filter(move |h| headers::is(h.name, name))
            .map(|h| h.value)
    };
    let keep_alive = headers::keep_alive(minor, named("connection"));
    let chunked = named("transfer-encoding")
        .next_back()
        .map(headers::is_chunked);
    let length = headers::content_length(named("content-length"));
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
    Ok(ResponseHead {
        status,
        headers,
        keep_alive,
        chunked,
        length,
    })
}

/// Decides body framing per RFC 9112 §6.3 for a response to `method`.
pub(crate) fn body_framing(method: &str, head: &ResponseHead) -> Result<Framing, ClientError> {
    let no_body = method.eq_ignore_ascii_case("HEAD")
        || (100..200).contains(&head.status)
        || head.status == 204
        || head.status == 304;
    if no_body {
        return Ok(Framing::Empty);
    }
    match head.chunked {
        Some(true) => return Ok(Framing::Chunked),
        Some(false) => return Ok(Framing::UntilEof),
        None => {}
    }
    match head.length {
        Err(LengthError::Overflow) => Err(ClientError::TooLarge("response body")),
        Err(LengthError::Invalid) => Err(ClientError::BadResponse("invalid Content-Length")),
        Ok(Some(n)) if n > MAX_RESPONSE_BODY as u64 => Err(ClientError::TooLarge("response body")),
        Ok(Some(0)) => Ok(Framing::Empty),
        Ok(Some(n)) => Ok(Framing::Length(n as usize)),
        Ok(None) => Ok(Framing::UntilEof),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &[u8]) -> ResponseHead {
        let end = find_head_end(raw, 0).expect("a whole head");
        parse_head(&raw[..end]).unwrap()
    }

    fn framing(method: &str, raw: &[u8]) -> Result<Framing, ClientError> {
        body_framing(method, &head(raw))
    }

    #[test]
    fn heads_end_at_the_empty_line_with_or_without_cr() {
        assert_eq!(find_head_end(b"HTTP/1.1 200 OK\r\n\r\nbody", 0), Some(19));
        assert_eq!(find_head_end(b"HTTP/1.1 200 OK\n\nbody", 0), Some(17));
        assert_eq!(find_head_end(b"HTTP/1.1 200 OK\r\n", 0), None);
        // Scanning again from where the last scan stopped finds an end split across reads.
        assert_eq!(find_head_end(b"HTTP/1.1 200 OK\r\n\r\n", 17), Some(19));
        let mut big = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        big.resize(MAX_RESPONSE_HEAD, b'a');
        big.extend_from_slice(b"\r\n\r\n");
        assert_eq!(find_head_end(&big, 0), None);
    }

    #[test]
    fn parses_status_headers_and_persistence() {
        let h = head(b"HTTP/1.1 201 Created\r\nX-A: 1\r\nX-B: caf\xc3\xa9\r\n\r\n");
        assert_eq!(h.status, 201);
        assert_eq!(h.headers[1], ("X-B".to_string(), "café".to_string()));
        assert!(h.keep_alive);
        assert!(!head(b"HTTP/1.0 200 OK\r\n\r\n").keep_alive);
        assert!(head(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n").keep_alive);
        assert!(!head(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(matches!(
            parse_head(b"SMTP ready\r\n\r\n"),
            Err(ClientError::BadResponse(_))
        ));
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..=MAX_RESPONSE_HEADERS {
            many.extend_from_slice(format!("X-{i}: 1\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert!(matches!(parse_head(&many), Err(ClientError::TooLarge(_))));
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let cl = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(framing("GET", cl).unwrap(), Framing::Length(5));
        assert_eq!(framing("HEAD", cl).unwrap(), Framing::Empty);
        let no_content = b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(framing("GET", no_content).unwrap(), Framing::Empty);
        let zero = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(framing("GET", zero).unwrap(), Framing::Empty);
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
        assert_eq!(framing("GET", chunked).unwrap(), Framing::Chunked);
        let gzip =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n";
        assert_eq!(framing("GET", gzip).unwrap(), Framing::UntilEof);
        let neither = b"HTTP/1.0 200 OK\r\n\r\n";
        assert_eq!(framing("GET", neither).unwrap(), Framing::UntilEof);
        let same = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2, 2\r\n\r\n";
        assert_eq!(framing("GET", same).unwrap(), Framing::Length(2));
    }

    #[test]
    fn bad_and_oversized_lengths_are_refused() {
        for raw in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\n",
        ] {
            assert!(matches!(
                framing("GET", raw),
                Err(ClientError::BadResponse(_))
            ));
        }
        for raw in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 1048577\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
        ] {
            assert!(matches!(framing("GET", raw), Err(ClientError::TooLarge(_))));
        }
    }

    #[test]
    fn only_1xx_but_101_is_interim() {
        assert!(is_interim(100) && is_interim(103));
        assert!(!is_interim(101) && !is_interim(200));
    }
}
