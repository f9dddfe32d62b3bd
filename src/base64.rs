//! Standard base64 (RFC 4648 §4, `+/` alphabet, `=` padding): etcd's JSON gateway carries every key
//! and value this way. Small enough to own rather than add a crate for.
//!
//! Decoding is strict (padding required, no whitespace, unused bits must be zero), so one value has
//! exactly one spelling, and it never panics on any input.

use std::fmt;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Encodes `data` with padding.
///
/// ```
/// assert_eq!(mini::base64::encode(b"foo"), "Zm9v");
/// assert_eq!(mini::base64::encode(b"/mini/"), "L21pbmkv");
/// ```
pub fn encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    encode_into(&mut out, data);
    out
}

/// Appends the encoding of `data` to `out` (no allocation beyond `out`'s growth).
///
/// ```
/// let mut out = String::from("key=");
/// mini::base64::encode_into(&mut out, b"foo");
/// assert_eq!(out, "key=Zm9v");
/// ```
pub fn encode_into(out: &mut String, data: &[u8]) {
    out.reserve(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
}

/// Why a base64 text was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base64Error {
    /// The length is not a multiple of four.
    BadLength,
    /// A byte outside the alphabet (or `=` before the end).
    BadByte(u8),
    /// Padding is malformed or the bits it hides are not zero.
    BadPadding,
}

impl fmt::Display for Base64Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Base64Error::BadLength => f.write_str("base64 length is not a multiple of 4"),
            Base64Error::BadByte(b) => write!(f, "byte 0x{b:02x} is not base64"),
            Base64Error::BadPadding => f.write_str("malformed base64 padding"),
        }
    }
}

impl std::error::Error for Base64Error {}

fn value(b: u8) -> Option<u32> {
    let v = match b {
        b'A'..=b'Z' => b - b'A',
        b'a'..=b'z' => b - b'a' + 26,
        b'0'..=b'9' => b - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

/// Decodes padded standard base64.
///
/// ```
/// assert_eq!(mini::base64::decode("Zm9vYg==").unwrap(), b"foob");
/// assert!(mini::base64::decode("Zm9").is_err());
/// ```
pub fn decode(text: &str) -> Result<Vec<u8>, Base64Error> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return Err(Base64Error::BadLength);
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    let quads = bytes.len() / 4;
    for (qi, quad) in bytes.chunks(4).enumerate() {
        let last = qi + 1 == quads;
        let pad = quad.iter().rev().take_while(|&&b| b == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return Err(Base64Error::BadPadding);
        }
        let mut n = 0u32;
        for &b in quad.iter().take(4 - pad) {
            n = (n << 6) | value(b).ok_or(Base64Error::BadByte(b))?;
        }
        n <<= 6 * pad as u32;
        let got = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        let keep = 3 - pad;
        if got.iter().skip(keep).any(|&b| b != 0) {
            return Err(Base64Error::BadPadding);
        }
        out.extend_from_slice(got.get(..keep).unwrap_or_default());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4648_vectors() {
        let cases: &[(&[u8], &str)] = &[
            (b"", ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"fooba", "Zm9vYmE="),
            (b"foobar", "Zm9vYmFy"),
        ];
        for (raw, enc) in cases {
            assert_eq!(encode(raw), *enc);
            assert_eq!(decode(enc).as_deref(), Ok(*raw));
        }
    }

    #[test]
    fn round_trips_every_byte_and_length() {
        let mut rng = fastrand::Rng::with_seed(3);
        for len in 0..200 {
            let data: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            assert_eq!(decode(&encode(&data)).unwrap(), data);
        }
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(decode(&encode(&all)).unwrap(), all);
    }

    #[test]
    fn refuses_malformed_text() {
        assert_eq!(decode("Zm9"), Err(Base64Error::BadLength));
        assert_eq!(decode("Zm9*"), Err(Base64Error::BadByte(b'*')));
        assert_eq!(decode("Z==="), Err(Base64Error::BadPadding));
        assert_eq!(decode("Zg==Zm9v"), Err(Base64Error::BadPadding));
        assert_eq!(decode("Zh=="), Err(Base64Error::BadPadding)); // non-zero hidden bits
        assert_eq!(decode("Zm 9"), Err(Base64Error::BadByte(b' ')));
        assert_eq!(decode("=Zm9"), Err(Base64Error::BadByte(b'=')));
    }

    #[test]
    fn never_panics_on_random_text() {
        let mut rng = fastrand::Rng::with_seed(9);
        let pool = b"AZaz09+/=-_ \n\x00\xff";
        for _ in 0..5000 {
            let len = rng.usize(0..24);
            let s: Vec<u8> = (0..len).map(|_| pool[rng.usize(..pool.len())]).collect();
            let _ = decode(&String::from_utf8_lossy(&s));
        }
    }
}
