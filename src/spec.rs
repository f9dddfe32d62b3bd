//! What an instance says about itself when it registers: how to check it, its tags, metadata and
//! weight. [`Spec::parse`] reads them from a registration's query pairs and optional JSON body; each
//! refusal is one [`SpecError`] with a one-line reason, answered as 400.
//!
//! ```
//! use mini::spec::{Check, Spec};
//! let spec = Spec::parse([("check", "tcp"), ("tag", "v2"), ("weight", "5")], None).unwrap().spec;
//! assert_eq!(spec.check, Check::Tcp);
//! assert_eq!(spec.tags, ["v2"]);
//! assert_eq!(spec.weight, 5);
//! ```

use crate::jsonread::Value;
use std::fmt;

/// Most tags on one instance (Consul sets no limit; Nacos and Eureka keep metadata small). 16 keeps
/// a listing line short and a tag filter a short scan.
pub const MAX_TAGS: usize = 16;
/// Most metadata pairs on one instance (Consul's agent allows 64; 16 is ample for version/zone).
pub const MAX_META: usize = 16;
/// Longest tag, meta key or meta value, in bytes (Consul: 128 for a meta key).
pub const MAX_FIELD: usize = 128;
/// Longest HTTP check path, in bytes.
pub const MAX_CHECK_PATH: usize = 256;
/// Largest weight: Consul's `Weights.Passing` and Envoy's load-balancing weights are small integers;
/// 1000 gives a tenth of a percent of resolution.
pub const MAX_WEIGHT: u16 = 1000;
/// The probe path of the original design, and the default check.
pub const DEFAULT_CHECK_PATH: &str = "/aliveCheck";

/// How the registry checks an instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Check {
    /// `GET PATH` on the instance; any 2xx is healthy.
    Http(String),
    /// A TCP connect is healthy.
    Tcp,
    /// No probe: the lease alone decides, so the instance must beat within its TTL.
    None,
    /// No probe: a Consul TTL check, whose health only `PUT /v1/agent/check/pass|warn|fail/service:ID`
    /// sets (it starts critical, as Consul's does); the lease is the check's TTL.
    Ttl,
}

impl Default for Check {
    fn default() -> Self {
        Check::Http(DEFAULT_CHECK_PATH.to_string())
    }
}

impl fmt::Display for Check {
    /// The form `check=` takes: `http:/PATH`, `tcp`, `none` (or `ttl`, a Consul TTL check).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Check::Http(path) => write!(f, "http:{path}"),
            Check::Tcp => f.write_str("tcp"),
            Check::None => f.write_str("none"),
            Check::Ttl => f.write_str("ttl"),
        }
    }
}

impl Check {
    /// Parses `http:/PATH`, `tcp`, `none` or `ttl` (so a Consul TTL registration's spec reads back
    /// from the etcd store; through mini's own routes `ttl` behaves as `none`, since only the Consul
    /// door's check updates set its health).
    ///
    /// ```
    /// use mini::spec::Check;
    /// assert_eq!(Check::parse("http:/healthz"), Ok(Check::Http("/healthz".into())));
    /// assert!(Check::parse("grpc").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Check, SpecError> {
        match text {
            "tcp" => Ok(Check::Tcp),
            "none" => Ok(Check::None),
            "ttl" => Ok(Check::Ttl),
            _ => match text.strip_prefix("http:") {
                Some(path) => Check::http(path),
                None => Err(SpecError::UnknownCheck),
            },
        }
    }

    /// An HTTP check of `path`, which must start with `/` and be printable ASCII.
    pub fn http(path: &str) -> Result<Check, SpecError> {
        if !path.starts_with('/') {
            return Err(SpecError::CheckPath("must start with /"));
        }
        if path.len() > MAX_CHECK_PATH {
            return Err(SpecError::CheckPath("longer than 256 bytes"));
        }
        if !path.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(SpecError::CheckPath("not printable ASCII"));
        }
        Ok(Check::Http(path.to_string()))
    }
}

/// An instance's check, tags, metadata and weight.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Spec {
    /// How it is checked.
    pub check: Check,
    /// Tags, in the order given, without duplicates.
    pub tags: Vec<String>,
    /// Metadata pairs, sorted by key, one value per key (the last given wins).
    pub meta: Vec<(String, String)>,
    /// Share of picks relative to the other instances, 1..=[`MAX_WEIGHT`].
    pub weight: u16,
}

impl Default for Spec {
    /// What `POST /registerList` registers: the `/aliveCheck` probe, no tags, weight 1.
    fn default() -> Self {
        Spec {
            check: Check::default(),
            tags: Vec::new(),
            meta: Vec::new(),
            weight: 1,
        }
    }
}

/// A parsed registration: the spec, and the `ttl` text if one was given (the caller parses it,
/// since it owns the TTL bounds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The instance's spec.
    pub spec: Spec,
    /// The `ttl` given, from the query or the body.
    pub ttl: Option<String>,
}

/// Why a registration's fields were refused (400, with this line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecError {
    /// `check=` is none of `http:/PATH`, `tcp`, `none`.
    UnknownCheck,
    /// The check path is unacceptable.
    CheckPath(&'static str),
    /// More than [`MAX_TAGS`] tags.
    TooManyTags,
    /// More than [`MAX_META`] metadata pairs.
    TooManyMeta,
    /// A tag, meta key or meta value is empty, too long or not printable ASCII.
    BadField(&'static str),
    /// `meta=` without a `KEY:VALUE` shape.
    MetaShape,
    /// `weight=` is not an integer in 1..=1000.
    BadWeight,
    /// The JSON body is not JSON, or a field has the wrong type.
    BadBody(String),
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecError::UnknownCheck => f.write_str("bad check: use http:/PATH, tcp or none"),
            SpecError::CheckPath(why) => write!(f, "bad check path: {why}"),
            SpecError::TooManyTags => write!(f, "too many tags (max {MAX_TAGS})"),
            SpecError::TooManyMeta => write!(f, "too many meta pairs (max {MAX_META})"),
            SpecError::BadField(what) => {
                write!(f, "bad {what}: 1 to {MAX_FIELD} bytes of printable ASCII")
            }
            SpecError::MetaShape => f.write_str("bad meta: use KEY:VALUE"),
            SpecError::BadWeight => write!(f, "bad weight: an integer from 1 to {MAX_WEIGHT}"),
            SpecError::BadBody(why) => write!(f, "bad body: {why}"),
        }
    }
}

impl std::error::Error for SpecError {}

/// A tag, meta key or meta value: 1..=128 bytes of printable ASCII (space allowed inside values).
pub(crate) fn field(text: &str, what: &'static str) -> Result<String, SpecError> {
    let printable = text.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
    if text.is_empty() || text.len() > MAX_FIELD || !printable {
        return Err(SpecError::BadField(what));
    }
    Ok(text.to_string())
}

fn weight(text: &str) -> Result<u16, SpecError> {
    match text.parse::<u16>() {
        Ok(w) if (1..=MAX_WEIGHT).contains(&w) => Ok(w),
        _ => Err(SpecError::BadWeight),
    }
}

/// Adds the tag `text` to `tags` once, checked as a [`field`]; past [`MAX_TAGS`] distinct tags, an
/// error.
pub(crate) fn add_tag(tags: &mut Vec<String>, text: &str) -> Result<(), SpecError> {
    let tag = field(text, "tag")?;
    if !tags.contains(&tag) {
        if tags.len() == MAX_TAGS {
            return Err(SpecError::TooManyTags);
        }
        tags.push(tag);
    }
    Ok(())
}

/// Fields gathered from one source (the query or the body), before the query wins over the body.
#[derive(Default)]
struct Fields {
    check: Option<Check>,
    tags: Option<Vec<String>>,
    meta: Option<Vec<(String, String)>>,
    weight: Option<u16>,
    ttl: Option<String>,
}

impl Fields {
    fn tag(&mut self, text: &str) -> Result<(), SpecError> {
        add_tag(self.tags.get_or_insert_with(Vec::new), text)
    }

    fn meta(&mut self, key: &str, value: &str) -> Result<(), SpecError> {
        let (key, value) = (field(key, "meta key")?, field(value, "meta value")?);
        let meta = self.meta.get_or_insert_with(Vec::new);
        if let Some(pair) = meta.iter_mut().find(|(k, _)| *k == key) {
            pair.1 = value;
        } else if meta.len() == MAX_META {
            return Err(SpecError::TooManyMeta);
        } else {
            meta.push((key, value));
        }
        Ok(())
    }

    fn from_query<K: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Fields, SpecError> {
        let mut f = Fields::default();
        for (k, v) in pairs {
            let v = v.as_ref();
            match k.as_ref() {
                "check" => f.check = Some(Check::parse(v)?),
                "tag" => f.tag(v)?,
                "meta" => {
                    let (key, value) = v.split_once(':').ok_or(SpecError::MetaShape)?;
                    f.meta(key, value)?;
                }
                "weight" => f.weight = Some(weight(v)?),
                "ttl" => f.ttl = Some(v.to_string()),
                _ => {}
            }
        }
        Ok(f)
    }

    fn from_json(body: &Value) -> Result<Fields, SpecError> {
        let bad = |what: &str| SpecError::BadBody(format!("{what} has the wrong type"));
        let Value::Object(members) = body else {
            return Err(SpecError::BadBody("not a JSON object".into()));
        };
        let mut f = Fields::default();
        for (key, value) in members {
            match key.as_str() {
                "check" => f.check = Some(Check::parse(value.as_str().ok_or(bad("check"))?)?),
                "tags" => {
                    f.tags = Some(Vec::new());
                    for tag in value.as_array().ok_or(bad("tags"))? {
                        f.tag(tag.as_str().ok_or(bad("tags"))?)?;
                    }
                }
                "meta" => {
                    let Value::Object(pairs) = value else {
                        return Err(bad("meta"));
                    };
                    f.meta = Some(Vec::new());
                    for (k, v) in pairs {
                        f.meta(k, v.as_str().ok_or(bad("meta"))?)?;
                    }
                }
                "weight" => {
                    let w = value.as_i64().ok_or(bad("weight"))?;
                    f.weight = Some(weight(&w.to_string())?);
                }
                "ttl" => f.ttl = Some(value.as_str().ok_or(bad("ttl"))?.to_string()),
                _ => {}
            }
        }
        Ok(f)
    }
}

impl Spec {
    /// Reads a registration's fields from its query pairs and optional JSON body; where both give a
    /// field, the query's wins (all of it: `tag=` in the query replaces the body's `tags`).
    pub fn parse<K: AsRef<str>, V: AsRef<str>>(
        query: impl IntoIterator<Item = (K, V)>,
        body: Option<&Value>,
    ) -> Result<Parsed, SpecError> {
        let q = Fields::from_query(query)?;
        let b = match body {
            Some(body) => Fields::from_json(body)?,
            None => Fields::default(),
        };
        let mut meta = q.meta.or(b.meta).unwrap_or_default();
        meta.sort_unstable();
        Ok(Parsed {
            spec: Spec {
                check: q.check.or(b.check).unwrap_or_default(),
                tags: q.tags.or(b.tags).unwrap_or_default(),
                meta,
                weight: q.weight.or(b.weight).unwrap_or(1),
            },
            ttl: q.ttl.or(b.ttl),
        })
    }

    /// Adds the spec's members to a JSON object, in the form a registration's body takes (and
    /// [`Spec::read_json`] reads back): `"check":"http:/aliveCheck","tags":[..],"meta":{..},"weight":N`.
    /// Listings and the etcd store's values carry it this way.
    ///
    /// ```
    /// use mini::spec::Spec;
    /// let spec = Spec::parse([("tag", "v2"), ("meta", "zone:a"), ("weight", "5")], None).unwrap().spec;
    /// let mut o = mini::json::Object::new();
    /// spec.write_json(&mut o);
    /// let text = o.finish();
    /// assert_eq!(text, r#"{"check":"http:/aliveCheck","tags":["v2"],"meta":{"zone":"a"},"weight":5}"#);
    /// assert_eq!(Spec::read_json(&mini::jsonread::parse(text.as_bytes()).unwrap()), Ok(spec));
    /// ```
    pub fn write_json(&self, o: &mut crate::json::Object) {
        o.str("check", &self.check.to_string())
            .raw("tags", &crate::json::strings(&self.tags))
            .raw("meta", &crate::json::pairs(&self.meta))
            .num("weight", self.weight);
    }

    /// Reads the members [`Spec::write_json`] writes from a JSON object, ignoring others; a missing
    /// member is the default (so `{}` is [`Spec::default`]). The same bounds apply as to a body.
    pub fn read_json(value: &Value) -> Result<Spec, SpecError> {
        Spec::parse(std::iter::empty::<(&str, &str)>(), Some(value)).map(|p| p.spec)
    }

    /// One line for people (listings, logs, `mini watch`): `weight=N check=C[ tags=A,B][ meta=K:V,K:V]`,
    /// with spaces, commas, colons and `%` inside a tag or meta field percent-encoded, so the line
    /// still splits on spaces.
    ///
    /// ```
    /// use mini::spec::Spec;
    /// let spec = Spec::parse([("tag", "v2"), ("tag", "eu west"), ("meta", "zone:a")], None).unwrap().spec;
    /// assert_eq!(spec.describe(), "weight=1 check=http:/aliveCheck tags=v2,eu%20west meta=zone:a");
    /// assert_eq!(Spec::default().describe(), "weight=1 check=http:/aliveCheck");
    /// ```
    pub fn describe(&self) -> String {
        fn push(out: &mut String, text: &str) {
            for c in text.chars() {
                match c {
                    ' ' | ',' | ':' | '%' => out.push_str(&format!("%{:02X}", u32::from(c))),
                    c => out.push(c),
                }
            }
        }
        let mut out = format!("weight={} check={}", self.weight, self.check);
        for (n, tag) in self.tags.iter().enumerate() {
            out.push_str(if n == 0 { " tags=" } else { "," });
            push(&mut out, tag);
        }
        for (n, (k, v)) in self.meta.iter().enumerate() {
            out.push_str(if n == 0 { " meta=" } else { "," });
            push(&mut out, k);
            out.push(':');
            push(&mut out, v);
        }
        out
    }

    /// Whether the instance carries every tag in `wanted`.
    pub fn has_tags<S: AsRef<str>>(&self, wanted: &[S]) -> bool {
        wanted
            .iter()
            .all(|w| self.tags.iter().any(|t| t == w.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Result<Spec, SpecError> {
        Spec::parse(pairs.iter().copied(), None).map(|p| p.spec)
    }

    #[test]
    fn no_fields_is_the_original_probe_with_weight_one() {
        assert_eq!(q(&[]).unwrap(), Spec::default());
        assert_eq!(Spec::default().check, Check::Http("/aliveCheck".into()));
    }

    #[test]
    fn checks_parse_and_print_back() {
        for text in ["http:/healthz", "http:/", "tcp", "none"] {
            assert_eq!(Check::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(Check::parse("grpc"), Err(SpecError::UnknownCheck));
        assert_eq!(
            Check::parse("http:healthz"),
            Err(SpecError::CheckPath("must start with /"))
        );
        let long = format!("http:/{}", "a".repeat(256));
        assert_eq!(
            Check::parse(&long),
            Err(SpecError::CheckPath("longer than 256 bytes"))
        );
        assert_eq!(
            Check::parse("http:/a b"),
            Err(SpecError::CheckPath("not printable ASCII"))
        );
    }

    #[test]
    fn tags_repeat_without_duplicates_and_are_bounded() {
        let s = q(&[("tag", "v2"), ("tag", "eu"), ("tag", "v2")]).unwrap();
        assert_eq!(s.tags, ["v2", "eu"]);
        let many: Vec<(&str, String)> = (0..17).map(|i| ("tag", format!("t{i}"))).collect();
        assert_eq!(Spec::parse(many, None).unwrap_err(), SpecError::TooManyTags);
        assert_eq!(q(&[("tag", "")]), Err(SpecError::BadField("tag")));
        assert_eq!(
            q(&[("tag", &"x".repeat(129))]),
            Err(SpecError::BadField("tag"))
        );
        assert_eq!(q(&[("tag", "a\u{1}")]), Err(SpecError::BadField("tag")));
    }

    #[test]
    fn meta_is_key_colon_value_sorted_and_bounded() {
        let s = q(&[
            ("meta", "zone:a"),
            ("meta", "version:1.2:rc"),
            ("meta", "zone:b"),
        ])
        .unwrap();
        assert_eq!(
            s.meta,
            [
                ("version".into(), "1.2:rc".into()),
                ("zone".into(), "b".into())
            ]
        );
        assert_eq!(q(&[("meta", "zone")]), Err(SpecError::MetaShape));
        assert_eq!(q(&[("meta", ":a")]), Err(SpecError::BadField("meta key")));
        let many: Vec<(&str, String)> = (0..17).map(|i| ("meta", format!("k{i}:v"))).collect();
        assert_eq!(Spec::parse(many, None).unwrap_err(), SpecError::TooManyMeta);
    }

    #[test]
    fn weight_is_one_to_a_thousand() {
        assert_eq!(q(&[("weight", "1000")]).unwrap().weight, 1000);
        for bad in ["0", "1001", "-1", "x", ""] {
            assert_eq!(q(&[("weight", bad)]), Err(SpecError::BadWeight), "{bad}");
        }
    }

    #[test]
    fn json_body_gives_the_same_fields_and_the_query_wins() {
        let body = crate::jsonread::parse(
            br#"{"check":"tcp","tags":["v2"],"meta":{"zone":"a"},"weight":5,"ttl":"15s"}"#,
        )
        .unwrap();
        let p = Spec::parse(Vec::<(&str, &str)>::new(), Some(&body)).unwrap();
        assert_eq!(p.spec.check, Check::Tcp);
        assert_eq!(p.spec.tags, ["v2"]);
        assert_eq!(p.spec.meta, [("zone".into(), "a".into())]);
        assert_eq!(p.spec.weight, 5);
        assert_eq!(p.ttl.as_deref(), Some("15s"));
        let p = Spec::parse([("weight", "7"), ("tag", "v3")], Some(&body)).unwrap();
        assert_eq!((p.spec.weight, p.spec.tags), (7, vec!["v3".to_string()]));
        assert_eq!(p.spec.check, Check::Tcp);
    }

    #[test]
    fn json_fields_of_the_wrong_type_are_refused() {
        for body in [
            &br#"{"tags":"v2"}"#[..],
            br#"{"weight":"x"}"#,
            br#"[1]"#,
            br#"{"meta":{"a":1}}"#,
        ] {
            let v = crate::jsonread::parse(body).unwrap();
            assert!(
                matches!(
                    Spec::parse(Vec::<(&str, &str)>::new(), Some(&v)),
                    Err(SpecError::BadBody(_) | SpecError::BadWeight)
                ),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn has_tags_needs_every_wanted_tag() {
        let s = q(&[("tag", "v2"), ("tag", "eu")]).unwrap();
        assert!(s.has_tags(&["eu", "v2"]));
        assert!(s.has_tags::<&str>(&[]));
        assert!(!s.has_tags(&["v2", "us"]));
    }
}
