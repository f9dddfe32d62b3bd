//! Percent-decoding of request targets: path segments and query parameters.
//!
//! Decoding is strict: a `%` must be followed by two hex digits and the result must be UTF-8, so that
//! what a route sees is exactly what the caller meant and never a guess.

use std::fmt;

/// Why a request target could not be decoded; every variant becomes a 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// The decoded bytes are not UTF-8.
    NotUtf8,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DecodeError::BadEscape => "bad percent-encoding in the request target",
            DecodeError::NotUtf8 => "request target is not valid UTF-8 once decoded",
        })
    }
}

impl std::error::Error for DecodeError {}

/// Decodes `%XX` escapes; with `plus_is_space`, `+` becomes a space (form encoding, used in queries).
///
/// ```
/// use mini::http::url::percent_decode;
/// assert_eq!(percent_decode("a%20b+c", true).unwrap(), "a b c");
/// assert!(percent_decode("%zz", false).is_err());
/// ```
pub fn percent_decode(s: &str, plus_is_space: bool) -> Result<String, DecodeError> {
    if !s.bytes().any(|b| b == b'%' || (plus_is_space && b == b'+')) {
        return Ok(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = bytes.get(i + 1).and_then(|b| hex(*b));
                let lo = bytes.get(i + 2).and_then(|b| hex(*b));
                match (hi, lo) {
                    (Some(h), Some(l)) => out.push(h << 4 | l),
                    _ => return Err(DecodeError::BadEscape),
                }
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| DecodeError::NotUtf8)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Splits a path into decoded segments: `/Add/5/6` gives `["Add", "5", "6"]`, `/` gives `[]`.
///
/// ```
/// use mini::http::url::path_segments;
/// assert_eq!(path_segments("/v1/services/a%2Fb").unwrap(), ["v1", "services", "a/b"]);
/// ```
pub fn path_segments(path: &str) -> Result<Vec<String>, DecodeError> {
    let rest = path.strip_prefix('/').unwrap_or(path);
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    rest.split('/').map(|s| percent_decode(s, false)).collect()
}

/// Parses `a=1&b=two` into decoded pairs; a key without `=` gets an empty value, empty pieces are skipped.
///
/// ```
/// use mini::http::url::parse_query;
/// let q = parse_query("ip=127.0.0.1%3A1111&x").unwrap();
/// assert_eq!(q, [("ip".to_string(), "127.0.0.1:1111".to_string()), ("x".to_string(), String::new())]);
/// ```
pub fn parse_query(query: &str) -> Result<Vec<(String, String)>, DecodeError> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((percent_decode(k, true)?, percent_decode(v, true)?))
        })
        .collect()
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
        assert_eq!(percent_decode("%", false), Err(DecodeError::BadEscape));
        assert_eq!(percent_decode("%4", false), Err(DecodeError::BadEscape));
        assert_eq!(percent_decode("%g0", false), Err(DecodeError::BadEscape));
    }

    #[test]
    fn rejects_non_utf8_and_keeps_nul_visible() {
        assert_eq!(percent_decode("%ff%fe", false), Err(DecodeError::NotUtf8));
        assert_eq!(percent_decode("a%00b", true).unwrap(), "a\0b");
    }

    #[test]
    fn splits_paths() {
        assert!(path_segments("/").unwrap().is_empty());
        assert_eq!(path_segments("/Add/-5/6").unwrap(), ["Add", "-5", "6"]);
        assert_eq!(path_segments("/health/").unwrap(), ["health", ""]);
    }

    #[test]
    fn parses_queries() {
        let q = parse_query("queryParam=add&&ttl=5s&flag").unwrap();
        assert_eq!(q.len(), 3);
        assert_eq!(q[0], ("queryParam".into(), "add".into()));
        assert_eq!(q[2], ("flag".into(), "".into()));
        assert!(parse_query("a=%zz").is_err());
    }
}
