//! A small JSON reader (RFC 8259) into a [`Value`] tree: enough to read etcd's JSON gateway without a
//! serializer crate. [`crate::json`] is the writer.
//!
//! It reads untrusted bytes from the network, so it is bounded and total: the input size and the
//! nesting depth are capped ([`JsonLimits`]), every error is a [`ParseError`] with the byte offset, and no
//! input makes it panic (recursion stops at the depth limit, so the stack is bounded too).
//!
//! Numbers keep their source text: etcd sends int64 fields as strings, but a reader that turned
//! numbers into `f64` would silently round 64-bit lease ids, so [`Value::as_i64`] parses the text.

use std::fmt;

/// Default cap on input size, in bytes.
pub const DEFAULT_MAX_BYTES: usize = 4 * 1024 * 1024;
/// Default cap on nesting depth (arrays and objects).
pub const DEFAULT_MAX_DEPTH: usize = 64;

/// Size and depth caps for one parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonLimits {
    /// Longest accepted input, in bytes.
    pub max_bytes: usize,
    /// Deepest accepted nesting of arrays and objects.
    pub max_depth: usize,
}

impl Default for JsonLimits {
    fn default() -> Self {
        JsonLimits {
            max_bytes: DEFAULT_MAX_BYTES,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

/// A parsed JSON value. Objects keep their members in order (duplicates too; [`Value::get`] returns
/// the first).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`
    Null,
    /// `true` or `false`
    Bool(bool),
    /// A number, as its (validated) source text.
    Number(String),
    /// A string, unescaped.
    String(String),
    /// An array.
    Array(Vec<Value>),
    /// An object's members in source order.
    Object(Vec<(String, Value)>),
}

impl Value {
    /// The member `key` of an object (the first, if repeated); `None` for other values.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Follows object members `keys` in turn.
    ///
    /// ```
    /// let v = mini::jsonread::parse(br#"{"header":{"revision":"7"}}"#).unwrap();
    /// assert_eq!(v.path(&["header", "revision"]).and_then(|r| r.as_i64()), Some(7));
    /// ```
    pub fn path(&self, keys: &[&str]) -> Option<&Value> {
        keys.iter().try_fold(self, |v, k| v.get(k))
    }

    /// The text of a string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// A boolean value.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The elements of an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    /// An integer given as a JSON integer or as a decimal string (protobuf's JSON mapping of int64).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Number(text) | Value::String(text) => text.parse().ok(),
            _ => None,
        }
    }
}

/// Why a text is not acceptable JSON, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Byte offset where the problem was found.
    pub at: usize,
    /// What the problem is.
    pub kind: ErrorKind,
}

/// The kinds of [`ParseError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input is longer than [`JsonLimits::max_bytes`].
    TooLarge,
    /// Arrays and objects nest deeper than [`JsonLimits::max_depth`].
    TooDeep,
    /// The input ended inside a value.
    UnexpectedEnd,
    /// A byte that cannot start or continue a value here.
    Unexpected(u8),
    /// A malformed number.
    BadNumber,
    /// A bad escape, control character, invalid UTF-8 or lone surrogate in a string.
    BadString,
    /// Something other than whitespace after the value.
    TrailingData,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ErrorKind::TooLarge => "input too large".to_string(),
            ErrorKind::TooDeep => "nested too deeply".to_string(),
            ErrorKind::UnexpectedEnd => "unexpected end of input".to_string(),
            ErrorKind::Unexpected(b) => format!("unexpected byte 0x{b:02x}"),
            ErrorKind::BadNumber => "malformed number".to_string(),
            ErrorKind::BadString => "malformed string".to_string(),
            ErrorKind::TrailingData => "data after the value".to_string(),
        };
        write!(f, "bad JSON at byte {}: {what}", self.at)
    }
}

impl std::error::Error for ParseError {}

/// Parses one JSON value with the default [`JsonLimits`].
///
/// ```
/// use mini::jsonread::{parse, Value};
/// let v = parse(br#"{"a":[1,"x",true,null]}"#).unwrap();
/// assert_eq!(v.get("a").and_then(Value::as_array).map(<[_]>::len), Some(4));
/// assert!(parse(b"[1,]").is_err());
/// ```
pub fn parse(input: &[u8]) -> Result<Value, ParseError> {
    parse_with(input, JsonLimits::default())
}

/// Parses one JSON value (surrounded by optional whitespace) within `limits`.
pub fn parse_with(input: &[u8], limits: JsonLimits) -> Result<Value, ParseError> {
    if input.len() > limits.max_bytes {
        return Err(ParseError {
            at: limits.max_bytes,
            kind: ErrorKind::TooLarge,
        });
    }
    let mut p = Parser {
        s: input,
        i: 0,
        max_depth: limits.max_depth,
    };
    p.ws();
    let v = p.value(0)?;
    p.ws();
    if p.i < p.s.len() {
        return Err(p.err(ErrorKind::TrailingData));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    max_depth: usize,
}

impl Parser<'_> {
    fn err(&self, kind: ErrorKind) -> ParseError {
        ParseError { at: self.i, kind }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn next(&mut self) -> Result<u8, ParseError> {
        let b = self.peek().ok_or(self.err(ErrorKind::UnexpectedEnd))?;
        self.i += 1;
        Ok(b)
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn expect(&mut self, want: u8) -> Result<(), ParseError> {
        match self.next()? {
            b if b == want => Ok(()),
            b => {
                self.i -= 1;
                Err(self.err(ErrorKind::Unexpected(b)))
            }
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, ParseError> {
        match self.peek() {
            None => Err(self.err(ErrorKind::UnexpectedEnd)),
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string().map(Value::String),
            Some(b't') => self.literal(b"true", Value::Bool(true)),
            Some(b'f') => self.literal(b"false", Value::Bool(false)),
            Some(b'n') => self.literal(b"null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b) => Err(self.err(ErrorKind::Unexpected(b))),
        }
    }

    fn literal(&mut self, word: &[u8], v: Value) -> Result<Value, ParseError> {
        for &w in word {
            self.expect(w)?;
        }
        Ok(v)
    }

    fn enter(&self, depth: usize) -> Result<(), ParseError> {
        if depth > self.max_depth {
            return Err(self.err(ErrorKind::TooDeep));
        }
        Ok(())
    }

    fn array(&mut self, depth: usize) -> Result<Value, ParseError> {
        self.enter(depth)?;
        self.expect(b'[')?;
        let mut items = Vec::new();
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.ws();
            items.push(self.value(depth)?);
            self.ws();
            match self.next()? {
                b',' => continue,
                b']' => return Ok(Value::Array(items)),
                b => {
                    self.i -= 1;
                    return Err(self.err(ErrorKind::Unexpected(b)));
                }
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, ParseError> {
        self.enter(depth)?;
        self.expect(b'{')?;
        let mut members = Vec::new();
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(Value::Object(members));
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(match self.peek() {
                    Some(b) => self.err(ErrorKind::Unexpected(b)),
                    None => self.err(ErrorKind::UnexpectedEnd),
                });
            }
            let key = self.string()?;
            self.ws();
            self.expect(b':')?;
            self.ws();
            let v = self.value(depth)?;
            members.push((key, v));
            self.ws();
            match self.next()? {
                b',' => continue,
                b'}' => return Ok(Value::Object(members)),
                b => {
                    self.i -= 1;
                    return Err(self.err(ErrorKind::Unexpected(b)));
                }
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Result<Value, ParseError> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.err(ErrorKind::BadNumber)),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(self.err(ErrorKind::BadNumber));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(self.err(ErrorKind::BadNumber));
            }
        }
        let text = self.s.get(start..self.i).unwrap_or_default();
        // Only ASCII digits and signs were accepted above, so this is valid UTF-8.
        Ok(Value::Number(String::from_utf8_lossy(text).into_owned()))
    }

    fn hex4(&mut self) -> Result<u32, ParseError> {
        let mut n = 0;
        for _ in 0..4 {
            let b = self.next()?;
            let d = (b as char)
                .to_digit(16)
                .ok_or(self.err(ErrorKind::BadString))?;
            n = n * 16 + d;
        }
        Ok(n)
    }

    fn string(&mut self) -> Result<String, ParseError> {
        self.expect(b'"')?;
        // Most strings (etcd's base64 keys and values, member names) have no escape: find the
        // closing quote and copy the run in one allocation of the right size.
        let rest = self.s.get(self.i..).unwrap_or_default();
        let plain = rest
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20);
        let mut out: Vec<u8> = match plain {
            Some(n) if rest.get(n) == Some(&b'"') => {
                self.i += n + 1;
                let run = rest.get(..n).unwrap_or_default();
                let text = std::str::from_utf8(run).map_err(|_| self.err(ErrorKind::BadString))?;
                return Ok(text.to_owned());
            }
            Some(n) => {
                self.i += n;
                rest.get(..n).unwrap_or_default().to_vec()
            }
            None => Vec::new(),
        };
        loop {
            let b = self.next()?;
            match b {
                b'"' => break,
                b'\\' => {
                    let e = self.next()?;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return Err(self.err(ErrorKind::BadString)),
                    };
                    let mut buf = [0; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                0..=0x1f => return Err(self.err(ErrorKind::BadString)),
                _ => out.push(b),
            }
        }
        String::from_utf8(out).map_err(|_| self.err(ErrorKind::BadString))
    }

    /// After `\u`: one code point, joining a surrogate pair; lone surrogates are refused.
    fn unicode_escape(&mut self) -> Result<char, ParseError> {
        let hi = self.hex4()?;
        let code = match hi {
            0xD800..=0xDBFF => {
                self.expect(b'\\')
                    .map_err(|_| self.err(ErrorKind::BadString))?;
                self.expect(b'u')
                    .map_err(|_| self.err(ErrorKind::BadString))?;
                let lo = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&lo) {
                    return Err(self.err(ErrorKind::BadString));
                }
                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(self.err(ErrorKind::BadString)),
            c => c,
        };
        char::from_u32(code).ok_or(self.err(ErrorKind::BadString))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(input: &str) -> ErrorKind {
        parse(input.as_bytes()).expect_err(input).kind
    }

    #[test]
    fn reads_an_etcd_watch_line() {
        let line = br#"{"result":{"header":{"cluster_id":"324952591200643719","revision":"5"},"events":[{"kv":{"key":"L21pbmkvYQ==","create_revision":"5","value":"YmFy","lease":"2324035600315780626"}},{"type":"DELETE","kv":{"key":"eA==","mod_revision":"6"}}]}}"#;
        let v = parse(line).unwrap();
        let events = v.path(&["result", "events"]).and_then(Value::as_array);
        let events = events.unwrap();
        assert_eq!(events.len(), 2);
        let lease = events[0].path(&["kv", "lease"]).and_then(Value::as_i64);
        assert_eq!(lease, Some(2324035600315780626)); // exact, no f64 rounding
        assert_eq!(
            events[1].get("type").and_then(Value::as_str),
            Some("DELETE")
        );
        assert_eq!(events[0].get("type"), None);
    }

    #[test]
    fn reads_every_kind_of_value() {
        let v = parse(
            br#" [null, true, false, 0, -1.5e3, "a\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00", {}, []] "#,
        )
        .unwrap();
        assert_eq!(
            v,
            Value::Array(vec![
                Value::Null,
                Value::Bool(true),
                Value::Bool(false),
                Value::Number("0".into()),
                Value::Number("-1.5e3".into()),
                Value::String("a\"\\/\u{8}\u{c}\n\r\té😀".into()),
                Value::Object(vec![]),
                Value::Array(vec![]),
            ])
        );
        let o = parse(br#"{"k":1,"k":2}"#).unwrap();
        assert_eq!(o.get("k").and_then(Value::as_i64), Some(1));
        assert_eq!(parse("\"é\"".as_bytes()).unwrap().as_str(), Some("é"));
    }

    #[test]
    fn refuses_malformed_json() {
        assert_eq!(kind(""), ErrorKind::UnexpectedEnd);
        assert_eq!(kind("[1,]"), ErrorKind::Unexpected(b']'));
        assert_eq!(kind("{\"a\" 1}"), ErrorKind::Unexpected(b'1'));
        assert_eq!(kind("{a:1}"), ErrorKind::Unexpected(b'a'));
        assert_eq!(kind("01"), ErrorKind::TrailingData);
        assert_eq!(kind("1."), ErrorKind::BadNumber);
        assert_eq!(kind("-"), ErrorKind::BadNumber);
        assert_eq!(kind("1e"), ErrorKind::BadNumber);
        assert_eq!(kind("\"\\x\""), ErrorKind::BadString);
        assert_eq!(kind("\"\\ud800\""), ErrorKind::BadString);
        assert_eq!(kind("\"\\udc00\""), ErrorKind::BadString);
        assert_eq!(kind("\"a\nb\""), ErrorKind::BadString);
        assert_eq!(kind("\"abc"), ErrorKind::UnexpectedEnd);
        assert_eq!(kind("tru"), ErrorKind::UnexpectedEnd);
        assert_eq!(kind("nul1"), ErrorKind::Unexpected(b'1'));
        assert_eq!(kind("[1] x"), ErrorKind::TrailingData);
        assert_eq!(
            parse(b"\"\xff\"").unwrap_err().kind,
            ErrorKind::BadString,
            "invalid UTF-8"
        );
    }

    #[test]
    fn limits_depth_and_size() {
        let deep = "[".repeat(65) + &"]".repeat(65);
        assert_eq!(kind(&deep), ErrorKind::TooDeep);
        let ok = "[".repeat(64) + &"]".repeat(64);
        assert!(parse(ok.as_bytes()).is_ok());
        // Far deeper than any stack would survive, refused at the limit without recursion past it.
        let hostile = "{\"a\":".repeat(500_000);
        assert_eq!(kind(&hostile), ErrorKind::TooDeep);
        let limits = JsonLimits {
            max_bytes: 8,
            max_depth: 4,
        };
        assert_eq!(
            parse_with(b"\"123456789\"", limits).unwrap_err().kind,
            ErrorKind::TooLarge
        );
    }

    #[test]
    fn never_panics_on_random_or_truncated_input() {
        let mut rng = fastrand::Rng::with_seed(11);
        let pool = br#"{}[]",:\u0123456789abcdefnulltruefalse-+.eE "#;
        for _ in 0..20_000 {
            let len = rng.usize(0..40);
            let s: Vec<u8> = (0..len).map(|_| pool[rng.usize(..pool.len())]).collect();
            let _ = parse(&s);
        }
        let doc = br#"{"result":{"events":[{"kv":{"key":"YQ==","lease":"1"}}],"x":[1.5e-3,null,"\ud83d\ude00"]}}"#;
        for cut in 0..doc.len() {
            assert!(parse(&doc[..cut]).is_err());
        }
        assert!(parse(doc).is_ok());
    }

    #[test]
    fn int64_accessor_is_strict() {
        assert_eq!(
            parse(b"\"-9223372036854775808\"").unwrap().as_i64(),
            Some(i64::MIN)
        );
        assert_eq!(parse(b"\"9223372036854775808\"").unwrap().as_i64(), None);
        assert_eq!(parse(b"1.5").unwrap().as_i64(), None);
        assert_eq!(parse(b"\"12a\"").unwrap().as_i64(), None);
        assert_eq!(parse(b"true").unwrap().as_i64(), None);
    }
}
