//! Request encoding: checks what is sent (no header injection, no framing headers from the caller)
//! and serializes head and body into one buffer. No I/O.

use super::{ClientError, ClientRequest};
use crate::http::headers::{self, push_decimal};

/// Validates `req` and serializes it (head and body) into one buffer.
pub(crate) fn encode_request(req: &ClientRequest<'_>) -> Result<Vec<u8>, ClientError> {
    crate::addr::check(req.addr).map_err(|_| ClientError::InvalidAddress(req.addr.to_string()))?;
    if !headers::is_token(req.method.as_bytes()) {
        return Err(ClientError::InvalidRequest("method is not a valid token"));
    }
    if req.target.is_empty() || !req.target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ClientError::InvalidRequest(
            "target is empty or has spaces or control characters",
        ));
    }
    let mut out = Vec::with_capacity(128 + req.body.len());
    push_line(&mut out, &[req.method, " ", req.target, " HTTP/1.1"]);
    push_line(&mut out, &["Host: ", req.addr]);
    if needs_content_length(req) {
        out.extend_from_slice(b"Content-Length: ");
        push_decimal(&mut out, req.body.len() as u64);
        out.extend_from_slice(b"\r\n");
    }
    for &(name, value) in req.headers {
        validate_header(name, value)?;
        push_line(&mut out, &[name, ": ", value]);
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(req.body);
    Ok(out)
}

fn push_line(out: &mut Vec<u8>, parts: &[&str]) {
    for part in parts {
        out.extend_from_slice(part.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// Content-Length is always sent for methods that carry a body.
fn needs_content_length(req: &ClientRequest<'_>) -> bool {
    !req.body.is_empty()
        || ["POST", "PUT", "PATCH"]
            .iter()
            .any(|m| req.method.eq_ignore_ascii_case(m))
}

fn validate_header(name: &str, value: &str) -> Result<(), ClientError> {
    if !headers::is_token(name.as_bytes()) {
        return Err(ClientError::InvalidRequest(
            "header name is not a valid token",
        ));
    }
    if ["host", "content-length", "transfer-encoding"]
        .iter()
        .any(|h| headers::is(name, h))
    {
        return Err(ClientError::InvalidRequest(
            "header is set by the client itself",
        ));
    }
    if !headers::is_field_value(value.as_bytes()) {
        return Err(ClientError::InvalidRequest(
            "header value has control characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(method: &'a str, target: &'a str, body: &'a [u8]) -> ClientRequest<'a> {
        ClientRequest {
            body,
            ..ClientRequest::new(method, "127.0.0.1:8080", target)
        }
    }

    #[test]
    fn encodes_host_length_headers_and_body() {
        let wire = encode_request(&req("POST", "/beat?x=1", b"ping")).unwrap();
        assert_eq!(
            wire,
            b"POST /beat?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Length: 4\r\n\r\nping"
        );
        let wire = encode_request(&req("GET", "/", b"")).unwrap();
        assert_eq!(wire, b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n");
        let with = ClientRequest {
            headers: &[("Authorization", "Bearer t")],
            ..req("PUT", "/v1/x", b"")
        };
        assert!(encode_request(&with)
            .unwrap()
            .ends_with(b"Content-Length: 0\r\nAuthorization: Bearer t\r\n\r\n"));
    }

    #[test]
    fn addresses_follow_addr_check() {
        for addr in ["127.0.0.1:0", "h%1:80", "[::1%eth0]:80", "h:99999", ""] {
            let r = ClientRequest {
                addr,
                ..req("GET", "/", b"")
            };
            assert!(
                matches!(encode_request(&r), Err(ClientError::InvalidAddress(_))),
                "{addr:?}"
            );
        }
    }
}
