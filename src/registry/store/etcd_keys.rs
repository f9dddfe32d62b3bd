//! The registry's key layout in etcd, and the one codec of an instance key's value. No I/O.
//!
//! | key | value | lease |
//! |---|---|---|
//! | `/mini/services/{service}/{host:port}` | [`InstanceValue`], see [`encode_instance`] | the session lease of the registry that owns it |
//! | `/mini/health/{service}/{host:port}` | `{"ok":false}`, present only while excluded | the instance key's lease |
//! | `/mini/deregistered` | the id of the registry that last deregistered | none; put in the txn of each deregistration |
//! | `/mini/leader` | the probing registry's id | that registry's election lease |
//!
//! An instance's value is written by [`encode_instance`] and read by [`decode_instance`], and turned
//! into the local copy's terms by [`upsert_change`] and [`held`]: those four are the only places
//! that know what an instance key's value holds.

use crate::registry::state::{valid_service_name, Change, Held};
use std::time::Duration;

/// Every key `mini` writes lives under this prefix; the watch covers all of it.
pub const ROOT: &str = "/mini/";
/// Instance keys: `{SERVICES}{service}/{host:port}`.
pub const SERVICES: &str = "/mini/services/";
/// Health keys: `{HEALTH}{service}/{host:port}`, present while the instance is excluded.
pub const HEALTH: &str = "/mini/health/";
/// Put in the same txn as deregistrations, so every registry tells a deregistration (forget the
/// instance) from an expiry (re-own it if it still beats here): both are deletions.
pub const DEREGISTERED: &str = "/mini/deregistered";
/// The election key of the probing registry.
pub const LEADER: &str = "/mini/leader";
/// TTL assumed for an instance key whose value does not say (written by something else).
const FALLBACK_TTL: Duration = Duration::from_secs(15);
/// The value of a health key.
pub const EXCLUDED: &[u8] = br#"{"ok":false}"#;

/// What a key under [`ROOT`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key<'a> {
    /// An instance key: service and address.
    Instance(&'a str, &'a str),
    /// A health key: service and address.
    Health(&'a str, &'a str),
    /// [`DEREGISTERED`].
    Deregistered,
    /// Anything else (the leader key, keys written by something else).
    Other,
}

/// What `key` names.
pub fn parse_key(key: &[u8]) -> Key<'_> {
    fn split(rest: &str) -> Option<(&str, &str)> {
        rest.split_once('/')
            .filter(|(s, a)| valid_service_name(s) && crate::addr::check(a).is_ok())
    }
    let Ok(key) = std::str::from_utf8(key) else {
        return Key::Other;
    };
    if let Some((s, a)) = key.strip_prefix(SERVICES).and_then(split) {
        Key::Instance(s, a)
    } else if let Some((s, a)) = key.strip_prefix(HEALTH).and_then(split) {
        Key::Health(s, a)
    } else if key == DEREGISTERED {
        Key::Deregistered
    } else {
        Key::Other
    }
}

/// The instance key of `addr` in `service`.
pub fn instance_key(service: &str, addr: &str) -> String {
    format!("{SERVICES}{service}/{addr}")
}

/// The health key of `addr` in `service`.
pub fn health_key(service: &str, addr: &str) -> String {
    format!("{HEALTH}{service}/{addr}")
}

/// What an instance key's value says about the instance: what it registered with. A beat whose
/// value differs from the stored one is a write; one that matches is absorbed locally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceValue {
    /// The lease it asked for. Its owner expires it this long after its last beat there.
    pub ttl: Duration,
}

/// The value of an instance key: `{"ttl_ms":N}`. [`decode_instance`] is its inverse.
pub fn encode_instance(value: &InstanceValue) -> String {
    crate::json::Object::new()
        .num("ttl_ms", value.ttl.as_millis() as f64)
        .finish()
}

/// Reads an instance key's value; anything unreadable gets defaults (a key written by something
/// else still names an instance). [`encode_instance`] is its inverse.
pub fn decode_instance(bytes: &[u8]) -> InstanceValue {
    use crate::jsonread::{self, Value};
    let ttl = jsonread::parse(bytes)
        .ok()
        .and_then(|v| v.get("ttl_ms").and_then(Value::as_i64))
        .and_then(|ms| u64::try_from(ms).ok())
        .map_or(FALLBACK_TTL, Duration::from_millis);
    InstanceValue { ttl }
}

/// The change that registers (or renews) the instance an instance key describes.
pub fn upsert_change(service: &str, addr: &str, value: &InstanceValue) -> Change<'static> {
    Change::upsert(service.to_string(), addr.to_string(), value.ttl)
}

/// The instance an instance key describes, in a snapshot; `value: None` keeps it as the local copy
/// has it (see [`Held::ttl`]).
pub fn held(service: &str, addr: &str, value: Option<&InstanceValue>, excluded: bool) -> Held {
    Held {
        service: service.to_string(),
        addr: addr.to_string(),
        ttl: value.map(|v| v.ttl),
        excluded,
    }
}

/// Whole seconds for an etcd lease: etcd's TTLs are seconds, rounded up here so a lease never runs
/// shorter than asked.
pub fn lease_secs(ttl: Duration) -> i64 {
    ttl.as_secs_f64().ceil().clamp(1.0, i64::MAX as f64) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keys() {
        assert_eq!(
            parse_key(b"/mini/services/add/127.0.0.1:1111"),
            Key::Instance("add", "127.0.0.1:1111")
        );
        assert_eq!(
            parse_key(b"/mini/health/add/[::1]:80"),
            Key::Health("add", "[::1]:80")
        );
        assert_eq!(parse_key(b"/mini/deregistered"), Key::Deregistered);
        assert_eq!(parse_key(b"/mini/leader"), Key::Other);
        assert_eq!(parse_key(b"/mini/services/a b/127.0.0.1:1"), Key::Other);
        assert_eq!(parse_key(b"/mini/services/add/nope"), Key::Other);
        assert_eq!(parse_key(b"/mini/services/add"), Key::Other);
        assert_eq!(parse_key(b"/mini/services/\xff/h:1"), Key::Other);
    }

    #[test]
    fn the_value_codec_round_trips_and_tolerates_junk() {
        let v = InstanceValue {
            ttl: Duration::from_millis(2500),
        };
        assert_eq!(encode_instance(&v), r#"{"ttl_ms":2500}"#);
        assert_eq!(decode_instance(encode_instance(&v).as_bytes()), v);
        assert_eq!(decode_instance(b"junk").ttl, FALLBACK_TTL);
        assert_eq!(decode_instance(br#"{"ttl_ms":-1}"#).ttl, FALLBACK_TTL);
        assert_eq!(
            upsert_change("add", "h:1", &v),
            Change::upsert("add", "h:1", v.ttl)
        );
    }

    #[test]
    fn rounds_leases_up() {
        assert_eq!(lease_secs(Duration::from_millis(2500)), 3);
        assert_eq!(lease_secs(Duration::from_millis(10)), 1);
        assert_eq!(lease_secs(Duration::from_secs(15)), 15);
    }
}
