//! The header rules both directions share: the server reading requests and the client reading
//! responses (and checking what it sends) decide framing and persistence here, in one place.
//!
//! Everything works on raw header bytes as httparse hands them over, so no rule depends on how a
//! caller stores its headers, and nothing here allocates.

/// Why a `Content-Length` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthError {
    /// Not a non-empty run of ASCII digits (after trimming), or two values differ.
    Invalid,
    /// Digits, but more than fit in a `u64` (twenty or more): larger than any limit.
    Overflow,
}

/// Parses one `Content-Length` value (one piece of a comma list): ASCII digits, spaces around.
///
/// ```
/// use mini::http::headers::{parse_length, LengthError};
/// assert_eq!(parse_length(b" 42 "), Ok(42));
/// assert_eq!(parse_length(b"-1"), Err(LengthError::Invalid));
/// assert_eq!(parse_length(b"99999999999999999999"), Err(LengthError::Overflow));
/// ```
pub fn parse_length(raw: &[u8]) -> Result<u64, LengthError> {
    let digits = raw.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(LengthError::Invalid);
    }
    if digits.len() > 19 {
        return Err(LengthError::Overflow);
    }
    Ok(digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// The length that every `Content-Length` value says, lists included (`2, 2` is 2); `None` when
/// there is none. Differing values are [`LengthError::Invalid`]: a request-smuggling shape.
///
/// ```
/// use mini::http::headers::content_length;
/// assert_eq!(content_length([&b"2"[..], b"2, 2"]), Ok(Some(2)));
/// assert!(content_length([&b"1"[..], b"2"]).is_err());
/// assert_eq!(content_length(std::iter::empty()), Ok(None));
/// ```
pub fn content_length<'v>(
    values: impl IntoIterator<Item = &'v [u8]>,
) -> Result<Option<u64>, LengthError> {
    let mut found = None;
    for value in values {
        add_length(&mut found, value)?;
    }
    Ok(found)
}

/// Adds one `Content-Length` value to what earlier ones said, for a caller that must meet the
/// headers in order (the server answers the first framing error it meets).
///
/// ```
/// let mut found = None;
/// mini::http::headers::add_length(&mut found, b"5").unwrap();
/// assert!(mini::http::headers::add_length(&mut found, b"6").is_err());
/// ```
pub fn add_length(found: &mut Option<u64>, value: &[u8]) -> Result<(), LengthError> {
    for piece in value.split(|b| *b == b',') {
        let n = parse_length(piece)?;
        if found.is_some_and(|old| old != n) {
            return Err(LengthError::Invalid);
        }
        *found = Some(n);
    }
    Ok(())
}

/// Whether a `Transfer-Encoding` value ends in `chunked` (the last coding decides the framing).
///
/// ```
/// assert!(mini::http::headers::is_chunked(b"gzip, Chunked"));
/// assert!(!mini::http::headers::is_chunked(b"chunked, gzip"));
/// ```
pub fn is_chunked(value: &[u8]) -> bool {
    value
        .rsplit(|b| *b == b',')
        .next()
        .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// Whether a comma-separated header value holds `token` (case-insensitive), as in `Connection`.
///
/// ```
/// assert!(mini::http::headers::has_token(b"Keep-Alive, Upgrade", b"upgrade"));
/// ```
pub fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Whether a message persists after it (RFC 9112 §9.3): `close` in any `Connection` value ends
/// it; otherwise HTTP/1.1 (`minor >= 1`) persists and HTTP/1.0 persists only with `keep-alive`.
///
/// ```
/// use mini::http::headers::keep_alive;
/// assert!(keep_alive(1, [&b"upgrade"[..]]));
/// assert!(!keep_alive(1, [&b"close"[..]]));
/// assert!(!keep_alive(0, std::iter::empty()));
/// assert!(keep_alive(0, [&b"Keep-Alive"[..]]));
/// ```
pub fn keep_alive<'v>(minor: u8, connection: impl IntoIterator<Item = &'v [u8]>) -> bool {
    let mut keep = false;
    for value in connection {
        if has_token(value, b"close") {
            return false;
        }
        keep |= has_token(value, b"keep-alive");
    }
    minor >= 1 || keep
}

/// RFC 9110 `token` (methods, header names): one or more `tchar`.
///
/// ```
/// assert!(mini::http::headers::is_token(b"X-Mini-Index"));
/// assert!(!mini::http::headers::is_token(b"GET /x"));
/// ```
pub fn is_token(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b))
}

/// Whether a header value may be sent as is: no control byte but horizontal tab, no DEL.
///
/// ```
/// assert!(mini::http::headers::is_field_value(b"a b\tc"));
/// assert!(!mini::http::headers::is_field_value(b"1\r\nX-Evil: 1"));
/// ```
pub fn is_field_value(value: &[u8]) -> bool {
    !value
        .iter()
        .any(|&b| (b.is_ascii_control() && b != b'\t') || b == 0x7f)
}

/// Appends `n` in decimal, without a temporary `String` (a `Content-Length` value, a status code).
///
/// ```
/// let mut out = b"n=".to_vec();
/// mini::http::headers::push_decimal(&mut out, 18_446_744_073_709_551_615);
/// assert_eq!(out, b"n=18446744073709551615");
/// ```
pub fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Whether `name` is `want`, ASCII case-insensitively (header names).
pub fn is(name: &str, want: &str) -> bool {
    name.eq_ignore_ascii_case(want)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_digits_only_and_lists_must_agree() {
        for bad in [&b""[..], b" ", b"+1", b"0x10", b"1 2", b"1.0"] {
            assert_eq!(parse_length(bad), Err(LengthError::Invalid), "{bad:?}");
        }
        assert_eq!(
            parse_length(b"9999999999999999999"),
            Ok(9_999_999_999_999_999_999)
        );
        assert_eq!(content_length([&b"3, 3"[..]]), Ok(Some(3)));
        assert_eq!(content_length([&b"2, 3"[..]]), Err(LengthError::Invalid));
        assert_eq!(content_length([&b"2,"[..]]), Err(LengthError::Invalid));
    }

    #[test]
    fn close_wins_over_keep_alive() {
        assert!(!keep_alive(0, [&b"keep-alive"[..], b"close"]));
        assert!(!keep_alive(1, [&b"keep-alive, close"[..]]));
        assert!(keep_alive(1, std::iter::empty()));
    }
}
