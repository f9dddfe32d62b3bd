//! Who may register: an optional shared token for writes (and, if asked, reads).
//!
//! In the original design anyone who could reach the registry could register any address and so steer
//! every client's traffic, and make the registry probe arbitrary hosts. With `--token`, registering,
//! renewing and deregistering need it, as `Authorization: Bearer TOKEN` or, for the original
//! `/registerList` route that old nodes call, a `token=` query parameter. Reads stay open unless
//! `--token-reads`; `/health` is always open.

use crate::http::{Request, Response};
use std::borrow::Cow;

/// The registry's access rule.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// The shared token; `None` leaves the registry open, as the original was.
    pub token: Option<String>,
    /// Whether lookups and listings need the token too.
    pub reads: bool,
}

/// What a route does, for the access check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Changes registrations.
    Write,
    /// Looks them up.
    Read,
}

impl Access {
    /// `Ok` when the request may proceed, else the 401 to send.
    ///
    /// ```
    /// use mini::registry::auth::{Access, Kind};
    /// let access = Access { token: Some("s3cret".into()), reads: false };
    /// let req = mini::http::parse_request(b"GET /x?token=s3cret HTTP/1.1\r\n\r\n").unwrap().unwrap().0;
    /// assert!(access.check(&req, Kind::Write).is_ok());
    /// let req = mini::http::parse_request(b"GET /x HTTP/1.1\r\n\r\n").unwrap().unwrap().0;
    /// assert_eq!(access.check(&req, Kind::Write).unwrap_err().status, 401);
    /// assert!(access.check(&req, Kind::Read).is_ok());
    /// ```
    pub fn check(&self, req: &Request<'_>, kind: Kind) -> Result<(), Response> {
        let Some(token) = &self.token else {
            return Ok(());
        };
        if kind == Kind::Read && !self.reads {
            return Ok(());
        }
        if presented(req).is_some_and(|given| constant_time_eq(&given, token.as_bytes())) {
            return Ok(());
        }
        Err(Response::error(401, "missing or wrong token")
            .with_header("WWW-Authenticate", "Bearer"))
    }
}

/// The token a request carries: the bearer header first, then Consul's `X-Consul-Token`, else the
/// `token` query parameter (the original route's, and Consul's `?token=`).
fn presented<'r>(req: &Request<'r>) -> Option<Cow<'r, [u8]>> {
    let bearer = req.header("authorization").and_then(|v| {
        let scheme = v.get(..7)?;
        scheme
            .eq_ignore_ascii_case(b"bearer ")
            .then(|| Cow::Borrowed(v[7..].trim_ascii()))
    });
    let consul = || {
        req.header(crate::consul::TOKEN_HEADER)
            .map(|v| Cow::Borrowed(v.trim_ascii()))
    };
    bearer
        .or_else(consul)
        .or_else(|| match req.query("token")? {
            Cow::Borrowed(t) => Some(Cow::Borrowed(t.as_bytes())),
            Cow::Owned(t) => Some(Cow::Owned(t.into_bytes())),
        })
}

/// Compares without an early exit, so the time taken does not tell how much of a guess was right.
///
/// ```
/// use mini::registry::auth::constant_time_eq;
/// assert!(constant_time_eq(b"abc", b"abc"));
/// assert!(!constant_time_eq(b"abc", b"abd"));
/// assert!(!constant_time_eq(b"abc", b"abcd"));
/// ```
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let len = a.len().max(b.len());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..len {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse_request;

    fn req(raw: &str) -> Request<'_> {
        parse_request(raw.as_bytes()).unwrap().unwrap().0
    }

    fn locked(reads: bool) -> Access {
        Access {
            token: Some("t0k".into()),
            reads,
        }
    }

    #[test]
    fn open_registry_lets_everything_through() {
        let r = req("POST /registerList?ip=a:1 HTTP/1.1\r\n\r\n");
        assert!(Access::default().check(&r, Kind::Write).is_ok());
    }

    #[test]
    fn bearer_header_or_query_token_is_accepted() {
        let a = locked(false);
        assert!(a
            .check(
                &req("PUT /x HTTP/1.1\r\nAuthorization: Bearer t0k\r\n\r\n"),
                Kind::Write
            )
            .is_ok());
        assert!(a
            .check(
                &req("PUT /x HTTP/1.1\r\nauthorization: bearer  t0k \r\n\r\n"),
                Kind::Write
            )
            .is_ok());
        assert!(a
            .check(
                &req("POST /registerList?ip=a:1&token=t0k HTTP/1.1\r\n\r\n"),
                Kind::Write
            )
            .is_ok());
    }

    #[test]
    fn wrong_or_missing_token_is_401_with_a_challenge() {
        let a = locked(false);
        for raw in [
            "PUT /x HTTP/1.1\r\n\r\n",
            "PUT /x HTTP/1.1\r\nAuthorization: Bearer t0k2\r\n\r\n",
            "PUT /x HTTP/1.1\r\nAuthorization: Basic t0k\r\n\r\n",
            "PUT /x?token=t0 HTTP/1.1\r\n\r\n",
        ] {
            let resp = a.check(&req(raw), Kind::Write).unwrap_err();
            assert_eq!(resp.status, 401, "{raw:?}");
            assert_eq!(
                resp.headers,
                vec![("WWW-Authenticate", "Bearer".to_string())]
            );
        }
    }

    #[test]
    fn reads_need_the_token_only_when_asked() {
        let r = req("GET /serviceAddr?queryParam=add HTTP/1.1\r\n\r\n");
        assert!(locked(false).check(&r, Kind::Read).is_ok());
        assert_eq!(locked(true).check(&r, Kind::Read).unwrap_err().status, 401);
    }
}
