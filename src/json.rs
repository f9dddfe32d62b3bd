//! A tiny JSON writer: just enough to render listings without a serializer crate.
//!
//! Strings are escaped per RFC 8259 (quote, backslash, control characters), so any instance address or
//! service name, however hostile, stays inside its string.

use std::fmt::Write;

/// Appends `s` to `out` as a JSON string literal, quotes included.
///
/// ```
/// let mut out = String::new();
/// mini::json::string(&mut out, "a\"b\n");
/// assert_eq!(out, r#""a\"b\n""#);
/// ```
pub fn string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Builds one JSON object field by field: `"key":value` pairs separated by commas.
///
/// ```
/// let mut o = mini::json::Object::new();
/// o.str("name", "add").num("live", 3).bool("ok", true);
/// assert_eq!(o.finish(), r#"{"name":"add","live":3,"ok":true}"#);
/// ```
#[derive(Debug, Default)]
pub struct Object {
    out: String,
}

impl Object {
    /// An empty object.
    pub fn new() -> Object {
        Object {
            out: String::from("{"),
        }
    }

    fn key(&mut self, key: &str) -> &mut String {
        if self.out.len() > 1 {
            self.out.push(',');
        }
        string(&mut self.out, key);
        self.out.push(':');
        &mut self.out
    }

    /// A string field.
    pub fn str(&mut self, key: &str, value: &str) -> &mut Object {
        string(self.key(key), value);
        self
    }

    /// A number field.
    pub fn num(&mut self, key: &str, value: impl Into<f64> + std::fmt::Display) -> &mut Object {
        let _ = write!(self.key(key), "{value}");
        self
    }

    /// A boolean field.
    pub fn bool(&mut self, key: &str, value: bool) -> &mut Object {
        self.key(key).push_str(if value { "true" } else { "false" });
        self
    }

    /// A field whose value is already JSON (an array or object).
    pub fn raw(&mut self, key: &str, json: &str) -> &mut Object {
        self.key(key).push_str(json);
        self
    }

    /// A `null` field.
    pub fn null(&mut self, key: &str) -> &mut Object {
        self.key(key).push_str("null");
        self
    }

    /// Closes the object.
    pub fn finish(&mut self) -> String {
        let mut out = std::mem::take(&mut self.out);
        out.push('}');
        out
    }
}

/// Joins already encoded values into a JSON array.
///
/// ```
/// assert_eq!(mini::json::array(["1".to_string(), "2".to_string()]), "[1,2]");
/// ```
pub fn array(items: impl IntoIterator<Item = String>) -> String {
    let mut out = String::from("[");
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&item);
    }
    out.push(']');
    out
}

/// A JSON array of strings.
///
/// ```
/// assert_eq!(mini::json::strings(&["v2".to_string(), "a\"b".to_string()]), r#"["v2","a\"b"]"#);
/// ```
pub fn strings(items: &[String]) -> String {
    array(items.iter().map(|t| {
        let mut s = String::new();
        string(&mut s, t);
        s
    }))
}

/// A JSON object of string pairs, in their order.
///
/// ```
/// assert_eq!(mini::json::pairs(&[("zone".into(), "a".into())]), r#"{"zone":"a"}"#);
/// ```
pub fn pairs(items: &[(String, String)]) -> String {
    let mut o = Object::new();
    for (k, v) in items {
        o.str(k, v);
    }
    o.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_control_characters() {
        let mut out = String::new();
        string(&mut out, "\u{0}\u{1f}\\é");
        assert_eq!(out, "\"\\u0000\\u001f\\\\é\"");
    }

    #[test]
    fn builds_nested_documents() {
        let inner = Object::new().num("n", 1u32).null("p").finish();
        let doc = Object::new().raw("items", &array([inner])).finish();
        assert_eq!(doc, r#"{"items":[{"n":1,"p":null}]}"#);
    }
}
