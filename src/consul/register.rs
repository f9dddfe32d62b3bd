//! `PUT /v1/agent/service/register`: Consul's registration body, read into what mini keeps.
//!
//! Keys match case-insensitively (python-consul sends `name`, `port`, `check`; the Go API sends
//! `Name`, `Port`, `Check`). Unknown keys are ignored, as Consul ignores fields it does not use.
//!
//! ```
//! use mini::consul::ConsulRegistration;
//! use mini::spec::Check;
//! let body = br#"{"Name":"web","Port":8080,"Tags":["v2"],"Check":{"HTTP":"http://10.0.0.5:8080/health","Interval":"10s"},"Address":"10.0.0.5"}"#;
//! let r = ConsulRegistration::parse(body).unwrap();
//! assert_eq!((r.id.as_str(), r.port), ("web", 8080));
//! assert_eq!(r.spec.check, Check::Http("/health".into()));
//! assert_eq!(r.spec.tags, ["v2"]);
//! ```

use crate::duration;
use crate::jsonread::{self, Value};
use crate::proto::ServiceName;
use crate::spec::{self, Check, Spec, SpecError, MAX_META, MAX_WEIGHT};
use std::fmt;
use std::time::Duration;

/// Longest service ID, as a service name's bound is for names (Consul has none; IDs appear in paths).
pub const MAX_ID: usize = 128;
/// Longest TTL check: the same hour as the longest lease `PUT /v1/services/...?ttl=` may ask for.
pub const MAX_CHECK_TTL: Duration = Duration::from_secs(3600);

/// A Consul service registration, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsulRegistration {
    /// `Name`.
    pub name: ServiceName,
    /// `ID` (defaults to `Name`).
    pub id: String,
    /// `Address`; `None` means the caller's address.
    pub address: Option<String>,
    /// `Port`.
    pub port: u16,
    /// What mini keeps: `Tags`, `Meta`, `Weights.Passing` (default 1), and as its check `Check` or
    /// the one element of `Checks` (none: [`Check::None`]; `HTTP`: the path, probed on the
    /// instance's own address; `TCP`; `TTL`: [`Check::Ttl`], its length in [`Self::ttl`]).
    pub spec: Spec,
    /// A `TTL` check's length: passing while `PUT /v1/agent/check/pass/service:ID` comes within it.
    pub ttl: Option<Duration>,
}

/// Why a Consul registration was refused (400, with this line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterBodyError {
    /// Not JSON, or not an object.
    NotJson(String),
    /// A required field is missing.
    Missing(&'static str),
    /// A field has the wrong type or value.
    Bad(&'static str, String),
    /// A tag, meta pair or weight is out of mini's bounds.
    Spec(SpecError),
}

impl fmt::Display for RegisterBodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegisterBodyError::NotJson(why) => write!(f, "bad body: {why}"),
            RegisterBodyError::Missing(what) => write!(f, "missing {what}"),
            RegisterBodyError::Bad(what, why) => write!(f, "bad {what}: {why}"),
            RegisterBodyError::Spec(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for RegisterBodyError {}

/// The member `key` of an object, matching the key case-insensitively.
pub fn member<'v>(value: &'v Value, key: &str) -> Option<&'v Value> {
    match value {
        Value::Object(members) => members
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v),
        _ => None,
    }
}

fn text<'v>(value: &'v Value, key: &'static str) -> Result<Option<&'v str>, RegisterBodyError> {
    match member(value, key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(RegisterBodyError::Bad(key, "not a string".into())),
    }
}

/// A tag, meta key or meta value, by the rules of mini's own ([`spec::field`]).
fn bounded(s: &str, what: &'static str) -> Result<String, RegisterBodyError> {
    spec::field(s, what).map_err(RegisterBodyError::Spec)
}

impl ConsulRegistration {
    /// Reads and checks a registration body.
    pub fn parse(body: &[u8]) -> Result<ConsulRegistration, RegisterBodyError> {
        let value = jsonread::parse(body).map_err(|e| RegisterBodyError::NotJson(e.to_string()))?;
        if !matches!(value, Value::Object(_)) {
            return Err(RegisterBodyError::NotJson("not a JSON object".into()));
        }
        let name = text(&value, "Name")?.ok_or(RegisterBodyError::Missing("Name"))?;
        let name = ServiceName::try_from(name)
            .map_err(|e| RegisterBodyError::Bad("Name", e.to_string()))?;
        let id = match text(&value, "ID")? {
            None | Some("") => name.as_str().to_string(),
            Some(id) if id.len() <= MAX_ID && id.bytes().all(|b| b.is_ascii_graphic()) => {
                id.to_string()
            }
            Some(_) => {
                return Err(RegisterBodyError::Bad(
                    "ID",
                    format!("1 to {MAX_ID} bytes of printable ASCII without spaces"),
                ))
            }
        };
        let address = match text(&value, "Address")? {
            None | Some("") => None,
            Some(a) => Some(a.to_string()),
        };
        // JSON integers only, as Consul's decoder takes them (`as_i64` alone would take "80" too).
        let port = match member(&value, "Port") {
            None | Some(Value::Null) => return Err(RegisterBodyError::Missing("Port")),
            Some(p @ Value::Number(_)) => match p.as_i64() {
                Some(p) if (1..=65535).contains(&p) => p as u16,
                _ => return Err(RegisterBodyError::Bad("Port", "not in 1..65535".into())),
            },
            Some(_) => return Err(RegisterBodyError::Bad("Port", "not a number".into())),
        };
        let mut tags = Vec::new();
        match member(&value, "Tags") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for item in items {
                    let tag = item
                        .as_str()
                        .ok_or(RegisterBodyError::Bad("Tags", "not strings".into()))?;
                    spec::add_tag(&mut tags, tag).map_err(RegisterBodyError::Spec)?;
                }
            }
            Some(_) => return Err(RegisterBodyError::Bad("Tags", "not an array".into())),
        }
        let mut meta = Vec::new();
        match member(&value, "Meta") {
            None | Some(Value::Null) => {}
            Some(Value::Object(pairs)) => {
                for (k, v) in pairs {
                    let v = v.as_str().ok_or(RegisterBodyError::Bad(
                        "Meta",
                        "values must be strings".into(),
                    ))?;
                    meta.retain(|(key, _): &(String, String)| key != k);
                    if meta.len() == MAX_META {
                        return Err(RegisterBodyError::Spec(SpecError::TooManyMeta));
                    }
                    meta.push((bounded(k, "meta key")?, bounded(v, "meta value")?));
                }
                meta.sort_unstable();
            }
            Some(_) => return Err(RegisterBodyError::Bad("Meta", "not an object".into())),
        }
        let weight = match member(&value, "Weights").and_then(|w| member(w, "Passing")) {
            None | Some(Value::Null) => 1,
            Some(w @ Value::Number(_)) => match w.as_i64() {
                Some(w) if (1..=i64::from(MAX_WEIGHT)).contains(&w) => w as u16,
                _ => return Err(RegisterBodyError::Spec(SpecError::BadWeight)),
            },
            Some(_) => return Err(RegisterBodyError::Spec(SpecError::BadWeight)),
        };
        let (check, ttl) = Self::check(&value, address.as_deref(), port)?;
        Ok(ConsulRegistration {
            name,
            id,
            address,
            port,
            spec: Spec {
                check,
                tags,
                meta,
                weight,
            },
            ttl,
        })
    }

    fn check(
        value: &Value,
        address: Option<&str>,
        port: u16,
    ) -> Result<(Check, Option<Duration>), RegisterBodyError> {
        let single = match (member(value, "Check"), member(value, "Checks")) {
            (Some(c), _) if !matches!(c, Value::Null) => Some(c),
            (_, Some(Value::Array(list))) if list.len() > 1 => {
                return Err(RegisterBodyError::Bad(
                    "Checks",
                    "mini runs at most one check per service".into(),
                ))
            }
            (_, Some(Value::Array(list))) => list.first(),
            (_, None | Some(Value::Null)) => None,
            // Checked before `Check` is known absent: `"Checks":{...}` would otherwise register an
            // instance that is never checked.
            (_, Some(_)) => return Err(RegisterBodyError::Bad("Checks", "not an array".into())),
        };
        let Some(check) = single else {
            return Ok((Check::None, None));
        };
        if let Some(url) = text(check, "HTTP")? {
            return http_check(url, address, port).map(|c| (c, None));
        }
        if text(check, "TCP")?.is_some() {
            return Ok((Check::Tcp, None));
        }
        if let Some(ttl) = text(check, "TTL")? {
            let ttl = duration::parse_go(ttl).map_err(|e| RegisterBodyError::Bad("TTL", e))?;
            if ttl.is_zero() || ttl > MAX_CHECK_TTL {
                return Err(RegisterBodyError::Bad("TTL", "must be 1ms to 1h".into()));
            }
            return Ok((Check::Ttl, Some(ttl)));
        }
        Err(RegisterBodyError::Bad(
            "Check",
            "mini runs HTTP, TCP or TTL checks".into(),
        ))
    }
}

/// The HTTP check of a check's URL (its path), which must point at the instance's own address
/// (mini probes the instance, not a third party).
fn http_check(url: &str, address: Option<&str>, port: u16) -> Result<Check, RegisterBodyError> {
    let bad = |why: &str| RegisterBodyError::Bad("Check.HTTP", why.to_string());
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| bad("mini probes http:// URLs only"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, url_port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad("bad port"))?),
        None => (authority, 80),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let own = address.is_none_or(|a| a.trim_start_matches('[').trim_end_matches(']') == host);
    if !own || url_port != port {
        return Err(bad(
            "must be on the service's own Address and Port (mini probes the instance itself)",
        ));
    }
    Check::http(path).map_err(RegisterBodyError::Spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<ConsulRegistration, RegisterBodyError> {
        ConsulRegistration::parse(body.as_bytes())
    }

    #[test]
    fn lower_case_keys_as_python_consul_sends_them() {
        let r = parse(r#"{"name":"web","id":"web1","port":5000,"address":"127.0.0.1","tags":["a"],"check":{"tcp":"127.0.0.1:5000","interval":"1s"}}"#).unwrap();
        assert_eq!(r.name.as_str(), "web");
        assert_eq!(r.id, "web1");
        assert_eq!(r.address.as_deref(), Some("127.0.0.1"));
        assert_eq!(r.spec.tags, ["a"]);
        assert_eq!((&r.spec.check, r.ttl), (&Check::Tcp, None));
    }

    #[test]
    fn defaults_id_to_name_and_no_check_to_none() {
        let r = parse(r#"{"Name":"db","Port":5432}"#).unwrap();
        assert_eq!(
            (r.id.as_str(), r.address.clone(), r.spec.weight),
            ("db", None, 1)
        );
        assert_eq!((&r.spec.check, r.ttl), (&Check::None, None));
    }

    #[test]
    fn ttl_checks_weights_and_meta() {
        let r = parse(r#"{"Name":"q","Port":1,"Meta":{"zone":"a"},"Weights":{"Passing":5,"Warning":1},"Checks":[{"TTL":"15s"}]}"#).unwrap();
        assert_eq!(r.ttl, Some(Duration::from_secs(15)));
        // Not probed, and not `none`: the door's pass/warn/fail set its health.
        assert_eq!(r.spec.check, Check::Ttl);
        assert_eq!(r.spec.meta, [("zone".into(), "a".into())]);
        assert_eq!(r.spec.weight, 5);
    }

    #[test]
    fn http_check_must_be_on_the_instance_itself() {
        let ok = r#"{"Name":"w","Port":80,"Address":"10.0.0.1","Check":{"HTTP":"http://10.0.0.1:80/h?x=1"}}"#;
        assert_eq!(parse(ok).unwrap().spec.check, Check::Http("/h?x=1".into()));
        let other = r#"{"Name":"w","Port":80,"Address":"10.0.0.1","Check":{"HTTP":"http://evil.example:80/h"}}"#;
        assert!(matches!(
            parse(other),
            Err(RegisterBodyError::Bad("Check.HTTP", _))
        ));
        let port = r#"{"Name":"w","Port":80,"Check":{"HTTP":"http://10.0.0.1:81/h"}}"#;
        assert!(matches!(
            parse(port),
            Err(RegisterBodyError::Bad("Check.HTTP", _))
        ));
        let https = r#"{"Name":"w","Port":443,"Check":{"HTTP":"https://10.0.0.1/h"}}"#;
        assert!(parse(https).is_err());
    }

    #[test]
    fn refusals_have_reasons() {
        for (body, reason) in [
            ("[]", "bad body: not a JSON object"),
            ("{", "bad body"),
            (r#"{"Port":1}"#, "missing Name"),
            (r#"{"Name":"a b","Port":1}"#, "bad Name"),
            (r#"{"Name":"a"}"#, "missing Port"),
            (r#"{"Name":"a","Port":70000}"#, "bad Port"),
            (r#"{"Name":"a","Port":"80"}"#, "bad Port: not a number"),
            (r#"{"Name":"a","Port":1.5}"#, "bad Port"),
            (
                r#"{"Name":"a","Port":1,"Checks":{"TCP":"x"}}"#,
                "bad Checks",
            ),
            (
                r#"{"Name":"a","Port":1,"Weights":{"Passing":"3"}}"#,
                "bad weight",
            ),
            (r#"{"Name":"a","Port":1,"Tags":"x"}"#, "bad Tags"),
            (
                r#"{"Name":"a","Port":1,"Weights":{"Passing":0}}"#,
                "bad weight",
            ),
            (r#"{"Name":"a","Port":1,"Check":{"GRPC":"x"}}"#, "bad Check"),
            (r#"{"Name":"a","Port":1,"Check":{"TTL":"soon"}}"#, "bad TTL"),
            (
                r#"{"Name":"a","Port":1,"Checks":[{"TCP":"x"},{"TTL":"1s"}]}"#,
                "bad Checks",
            ),
            (r#"{"Name":"a","ID":"has space","Port":1}"#, "bad ID"),
        ] {
            let e = parse(body).unwrap_err().to_string();
            assert!(e.starts_with(reason), "{body}: {e}");
            assert!(!e.contains('\n'));
        }
    }
}
