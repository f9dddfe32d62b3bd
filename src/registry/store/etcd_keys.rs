//! The registry's key layout in etcd, and the one codec of an instance key's value. No I/O.
//!
//! | key | value | lease |
//! |---|---|---|
//! | `/mini/services/{service}/{host:port}` | [`Record`], see [`instance_value`]: `{"ttl_ms":N}`, with `"check":C,"tags":[..],"meta":{..},"weight":N` when the spec is not the default and `"draining":true` when draining (a missing member reads as its default) | the session lease of the registry that owns it |
//! | `/mini/health/{service}/{host:port}` | `{"ok":false}`, present only while excluded | the instance key's lease |
//! | `/mini/deregistered` | the id of the registry that last deregistered | none; put in the txn of each deregistration |
//! | `/mini/leader` | the probing registry's id | that registry's election lease |
//!
//! An instance's value is written by [`instance_value`] and read by [`record_of`], and turned
//! into the local copy's terms by [`upsert_change`] and [`held`]: those four are the only places
//! that know what an instance key's value holds.

use crate::jsonread::{self, Value};
use crate::registry::state::{valid_service_name, Change, Held, Record};
use crate::spec::Spec;
use std::sync::{Arc, OnceLock};
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

/// The value of an instance key: the TTL it was registered with (its owner expires it this long
/// after its last beat there), its spec and its drain mark. [`record_of`] is its inverse. A beat
/// whose record differs from the stored one is a write; one that matches is absorbed locally.
///
/// Members at their default are left out (a default spec, `draining` false), so the value of a
/// plain instance is `{"ttl_ms":N}`: 16 bytes instead of 90 at issue 11's full form, which etcd
/// stores, logs in its WAL and encodes into every watcher's events (BENCH.md, etcd section).
pub fn instance_value(record: &Record) -> String {
    let mut o = crate::json::Object::new();
    o.num("ttl_ms", record.ttl.as_millis() as f64);
    if *record.spec != Spec::default() {
        record.spec.write_json(&mut o);
    }
    if record.draining {
        o.bool("draining", true);
    }
    o.finish()
}

/// One allocation of the default spec for every instance key that has it, as the local state
/// shares its own: 100 000 plain instances read from etcd hold one spec, not 100 000.
fn default_spec() -> Arc<Spec> {
    static DEFAULT: OnceLock<Arc<Spec>> = OnceLock::new();
    DEFAULT.get_or_init(Arc::default).clone()
}

/// What an instance key's value records; fields it lacks (a value written before issue 11, or by
/// something else) read as the defaults, and anything unreadable too (a key written by something
/// else still names an instance). [`instance_value`] is its inverse.
pub fn record_of(value: &[u8]) -> Record {
    let doc = jsonread::parse(value).ok();
    let field = |name: &str| doc.as_ref().and_then(|v| v.get(name));
    Record {
        ttl: (field("ttl_ms").and_then(Value::as_i64))
            .and_then(|ms| u64::try_from(ms).ok())
            .map_or(FALLBACK_TTL, Duration::from_millis),
        spec: match doc.as_ref().and_then(|v| Spec::read_json(v).ok()) {
            Some(spec) if spec != Spec::default() => Arc::new(spec),
            _ => default_spec(),
        },
        draining: field("draining").and_then(Value::as_bool).unwrap_or(false),
    }
}

/// The change that registers (or renews) the instance an instance key describes, with its spec
/// and drain mark.
pub fn upsert_change(service: &str, addr: &str, record: &Record) -> Change<'static> {
    Change::upsert(service.to_string(), addr.to_string(), record.ttl)
        .with_spec(record.spec.clone())
        .with_draining(record.draining)
}

/// The instance an instance key describes, in a snapshot; `record: None` keeps it as the local copy
/// has it (see [`Held::ttl`]).
pub fn held(service: &str, addr: &str, record: Option<&Record>, excluded: bool) -> Held {
    Held {
        service: service.to_string(),
        addr: addr.to_string(),
        ttl: record.map(|r| r.ttl),
        excluded,
        spec: record.map(|r| r.spec.clone()).unwrap_or_default(),
        draining: record.is_some_and(|r| r.draining),
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
        let ttl_of = |value: &[u8]| record_of(value).ttl;
        assert_eq!(ttl_of(br#"{"ttl_ms":2500}"#), Duration::from_millis(2500));
        assert_eq!(ttl_of(b"junk"), FALLBACK_TTL);
        assert_eq!(ttl_of(br#"{"ttl_ms":-1}"#), FALLBACK_TTL);
        let record = Record {
            ttl: Duration::from_millis(2500),
            ..Record::default()
        };
        assert_eq!(instance_value(&record), r#"{"ttl_ms":2500}"#);
        assert_eq!(record_of(instance_value(&record).as_bytes()), record);
        let (a, b) = (record_of(b"{\"ttl_ms\":1}"), record_of(b"junk"));
        assert!(Arc::ptr_eq(&a.spec, &b.spec), "one default spec shared");
        assert_eq!(
            upsert_change("add", "h:1", &record),
            Change::upsert("add", "h:1", record.ttl)
                .with_spec(Arc::default())
                .with_draining(false)
        );
    }

    #[test]
    fn a_value_carries_the_spec_and_drain_mark_and_an_old_one_reads_as_the_defaults() {
        let spec = Spec::parse(
            [
                ("check", "tcp"),
                ("tag", "v2"),
                ("meta", "zone:a"),
                ("weight", "5"),
            ],
            None,
        )
        .unwrap()
        .spec;
        let record = Record {
            ttl: Duration::from_secs(15),
            spec: Arc::new(spec),
            draining: true,
        };
        assert_eq!(
            instance_value(&record),
            r#"{"ttl_ms":15000,"check":"tcp","tags":["v2"],"meta":{"zone":"a"},"weight":5,"draining":true}"#
        );
        assert_eq!(record_of(instance_value(&record).as_bytes()), record);
        let old = record_of(br#"{"ttl_ms":2000}"#);
        assert_eq!((&*old.spec, old.draining), (&Spec::default(), false));
        let change = upsert_change("add", "h:1", &record);
        assert_eq!(
            change,
            Change::upsert("add", "h:1", record.ttl)
                .with_spec(record.spec.clone())
                .with_draining(true)
        );
        let h = held("add", "h:1", Some(&record), false);
        assert_eq!(
            (h.ttl, &h.spec, h.draining),
            (Some(record.ttl), &record.spec, true)
        );
    }

    #[test]
    fn rounds_leases_up() {
        assert_eq!(lease_secs(Duration::from_millis(2500)), 3);
        assert_eq!(lease_secs(Duration::from_millis(10)), 1);
        assert_eq!(lease_secs(Duration::from_secs(15)), 15);
    }
}
