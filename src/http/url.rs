//! Percent-decoding of request targets: path segments and query parameters.
//!
//! Decoding is strict: a `%` must be followed by two hex digits and the result must be UTF-8, so that
//! what a route sees is exactly what the caller meant and never a guess. The server checks a whole
//! target once, without allocating ([`check`]); the pieces are then decoded lazily, borrowing the
//! target unless they hold an escape (or a `+` in a query).

use std::borrow::Cow;
use std::fmt;

/// Why a request target could not be decoded; every variant becomes a 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PercentError {
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// The decoded bytes are not UTF-8.
    NotUtf8,
}

impl fmt::Display for PercentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PercentError::BadEscape => "bad percent-encoding in the request target",
            PercentError::NotUtf8 => "request target is not valid UTF-8 once decoded",
        })
    }
}

impl std::error::Error for PercentError {}

/// Decodes `%XX` escapes; with `plus_is_space`, `+` becomes a space (form encoding, used in queries).
/// Borrows `s` when there is nothing to decode.
///
/// ```
/// use mini::http::url::percent_decode;
/// assert_eq!(percent_decode("a%20b+c", true).unwrap(), "a b c");
/// assert!(matches!(percent_decode("plain", true), Ok(std::borrow::Cow::Borrowed("plain"))));
/// assert!(percent_decode("%zz", false).is_err());
/// ```
pub fn percent_decode(s: &str, plus_is_space: bool) -> Result<Cow<'_, str>, PercentError> {
    if !needs_decoding(s, plus_is_space) {
        return Ok(Cow::Borrowed(s));
    }
    let mut out = Vec::with_capacity(s.len());
    decode_into(s, plus_is_space, |b| out.push(b))?;
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| PercentError::NotUtf8)
}

/// Checks that `s` decodes (escapes well-formed, result UTF-8) without allocating.
///
/// ```
/// use mini::http::url::{check, PercentError};
/// assert_eq!(check("a%2Fb", false), Ok(()));
/// assert_eq!(check("%ff", false), Err(PercentError::NotUtf8));
/// ```
pub fn check(s: &str, plus_is_space: bool) -> Result<(), PercentError> {
    if !s.contains('%') {
        return Ok(()); // `s` is a str and `+` becomes an ASCII space: UTF-8 either way
    }
    let mut utf8 = Utf8::default();
    decode_into(s, plus_is_space, |b| utf8.push(b))?;
    if utf8.finish() {
        Ok(())
    } else {
        Err(PercentError::NotUtf8)
    }
}

fn needs_decoding(s: &str, plus_is_space: bool) -> bool {
    s.bytes().any(|b| b == b'%' || (plus_is_space && b == b'+'))
}

/// Feeds the decoded bytes of `s` to `out`; a bad escape stops at once.
fn decode_into(s: &str, plus_is_space: bool, mut out: impl FnMut(u8)) -> Result<(), PercentError> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = bytes.get(i + 1).and_then(|b| hex(*b));
                let lo = bytes.get(i + 2).and_then(|b| hex(*b));
                match (hi, lo) {
                    (Some(h), Some(l)) => out(h << 4 | l),
                    _ => return Err(PercentError::BadEscape),
                }
                i += 3;
            }
            b'+' if plus_is_space => {
                out(b' ');
                i += 1;
            }
            b => {
                out(b);
                i += 1;
            }
        }
    }
    Ok(())
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A UTF-8 validator fed one byte at a time (RFC 3629: no overlongs, surrogates or values past
/// U+10FFFF), so decoded bytes are checked without being stored.
#[derive(Default)]
struct Utf8 {
    /// Continuation bytes still expected.
    need: u8,
    /// Range of the next continuation byte (narrower only right after some lead bytes).
    lo: u8,
    hi: u8,
    bad: bool,
}

impl Utf8 {
    fn push(&mut self, b: u8) {
        if self.bad {
            return;
        }
        if self.need > 0 {
            if b < self.lo || b > self.hi {
                self.bad = true;
            }
            self.need -= 1;
            (self.lo, self.hi) = (0x80, 0xBF);
            return;
        }
        (self.need, self.lo, self.hi) = match b {
            0x00..=0x7F => (0, 0x80, 0xBF),
            0xC2..=0xDF => (1, 0x80, 0xBF),
            0xE0 => (2, 0xA0, 0xBF),
            0xE1..=0xEC | 0xEE..=0xEF => (2, 0x80, 0xBF),
            0xED => (2, 0x80, 0x9F),
            0xF0 => (3, 0x90, 0xBF),
            0xF1..=0xF3 => (3, 0x80, 0xBF),
            0xF4 => (3, 0x80, 0x8F),
            _ => {
                self.bad = true;
                (0, 0x80, 0xBF)
            }
        };
    }

    fn finish(&self) -> bool {
        !self.bad && self.need == 0
    }
}

/// Decodes a piece already [`check`]ed; borrows unless it holds something to decode.
fn decoded(s: &str, plus_is_space: bool) -> Cow<'_, str> {
    percent_decode(s, plus_is_space).unwrap_or(Cow::Borrowed(s))
}

/// The decoded segments of a path: `/Add/5/6` gives `Add`, `5`, `6`; `/` gives none.
///
/// ```
/// use mini::http::url::Segments;
/// let segs: Vec<_> = Segments::new("/v1/services/a%2Fb").collect();
/// assert_eq!(segs, ["v1", "services", "a/b"]);
/// assert_eq!(Segments::new("/").count(), 0);
/// ```
#[derive(Debug, Clone)]
pub struct Segments<'a> {
    rest: Option<std::str::Split<'a, char>>,
}

impl<'a> Segments<'a> {
    /// The segments of `path` (which should have been [`check_path`]ed: a bad escape is passed on
    /// undecoded).
    pub fn new(path: &'a str) -> Segments<'a> {
        let rest = path.strip_prefix('/').unwrap_or(path);
        Segments {
            rest: (!rest.is_empty()).then(|| rest.split('/')),
        }
    }
}

impl<'a> Iterator for Segments<'a> {
    type Item = Cow<'a, str>;

    fn next(&mut self) -> Option<Cow<'a, str>> {
        self.rest.as_mut()?.next().map(|s| decoded(s, false))
    }
}

/// The decoded pairs of a query: `a=1&b` gives `(a, 1)`, `(b, "")`; empty pieces are skipped.
///
/// ```
/// use mini::http::url::QueryPairs;
/// let q: Vec<_> = QueryPairs::new("ip=127.0.0.1%3A1111&&x").collect();
/// assert_eq!(q, [("ip".into(), "127.0.0.1:1111".into()), ("x".into(), "".into())]);
/// ```
#[derive(Debug, Clone)]
pub struct QueryPairs<'a> {
    rest: std::str::Split<'a, char>,
}

impl<'a> QueryPairs<'a> {
    /// The pairs of `query` (the part after `?`; [`check_query`] it first).
    pub fn new(query: &'a str) -> QueryPairs<'a> {
        QueryPairs {
            rest: query.split('&'),
        }
    }
}

impl<'a> Iterator for QueryPairs<'a> {
    type Item = (Cow<'a, str>, Cow<'a, str>);

    fn next(&mut self) -> Option<Self::Item> {
        let pair = self.rest.by_ref().find(|p| !p.is_empty())?;
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        Some((decoded(k, true), decoded(v, true)))
    }
}

/// Checks every segment of `path`, in order, without allocating.
pub fn check_path(path: &str) -> Result<(), PercentError> {
    let rest = path.strip_prefix('/').unwrap_or(path);
    rest.split('/').try_for_each(|s| check(s, false))
}

/// Checks every key and value of `query`, in order, without allocating.
pub fn check_query(query: &str) -> Result<(), PercentError> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .try_for_each(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            check(k, true)?;
            check(v, true)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes_and_plus() {
        assert_eq!(percent_decode("%41%2f%2F", false).unwrap(), "A//");
        assert_eq!(percent_decode("a+b", false).unwrap(), "a+b");
        assert_eq!(percent_decode("a+b", true).unwrap(), "a b");
    }

    #[test]
    fn rejects_truncated_and_non_hex_escapes() {
        assert_eq!(percent_decode("%", false), Err(PercentError::BadEscape));
        assert_eq!(percent_decode("%4", false), Err(PercentError::BadEscape));
        assert_eq!(percent_decode("%g0", false), Err(PercentError::BadEscape));
        assert_eq!(check("%ff%4", false), Err(PercentError::BadEscape));
    }

    #[test]
    fn rejects_non_utf8_and_keeps_nul_visible() {
        assert_eq!(percent_decode("%ff%fe", false), Err(PercentError::NotUtf8));
        assert_eq!(percent_decode("a%00b", true).unwrap(), "a\0b");
    }

    #[test]
    fn the_streaming_check_agrees_with_std_on_every_short_sequence() {
        let mut rng = fastrand::Rng::with_seed(11);
        let interesting = [
            0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0,
            0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF,
        ];
        for _ in 0..200_000 {
            let len = rng.usize(1..6);
            let bytes: Vec<u8> = (0..len)
                .map(|_| interesting[rng.usize(..interesting.len())])
                .collect();
            let escaped: String = bytes.iter().map(|b| format!("%{b:02X}")).collect();
            let std_ok = std::str::from_utf8(&bytes).is_ok();
            assert_eq!(check(&escaped, false).is_ok(), std_ok, "{bytes:02X?}");
            assert_eq!(percent_decode(&escaped, false).is_ok(), std_ok);
        }
    }

    #[test]
    fn splits_paths() {
        assert_eq!(Segments::new("/").count(), 0);
        let segs: Vec<_> = Segments::new("/Add/-5/6").collect();
        assert_eq!(segs, ["Add", "-5", "6"]);
        let segs: Vec<_> = Segments::new("/health/").collect();
        assert_eq!(segs, ["health", ""]);
        assert!(Segments::new("/a/b").all(|s| matches!(s, Cow::Borrowed(_))));
    }

    #[test]
    fn parses_queries() {
        let q: Vec<_> = QueryPairs::new("queryParam=add&&ttl=5s&flag").collect();
        assert_eq!(q.len(), 3);
        assert_eq!(q[0], ("queryParam".into(), "add".into()));
        assert_eq!(q[2], ("flag".into(), "".into()));
        assert!(check_query("a=%zz").is_err());
        assert!(check_path("/ok/%zz").is_err());
    }
}
