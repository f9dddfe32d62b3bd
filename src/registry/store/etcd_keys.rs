//! The registry's key layout in etcd, and the translation of what etcd sends (a full read, watch
//! events) into [`Change`]s for the local copy. No I/O: [`Known`] is plain state, tested without etcd.
//!
//! | key | value | lease |
//! |---|---|---|
//! | `/mini/services/{service}/{host:port}` | `{"ttl_ms":N,"check":C,"tags":[..],"meta":{..},"weight":N,"draining":B}` (only `ttl_ms` before issue 11: the rest then reads as the defaults) | the instance's own lease, TTL = its TTL |
//! | `/mini/health/{service}/{host:port}` | `{"ok":false}`, present only while excluded | the instance's lease |
//! | `/mini/leader` | the probing registry's id | that registry's session lease |

use crate::etcd::watch::Event;
use crate::etcd::Kv;
use crate::jsonread::{self, Value};
use crate::registry::state::{valid_service_name, Change, Held, Record, Snapshot};
use crate::spec::Spec;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// Every key `mini` writes lives under this prefix; the watch covers all of it.
pub const ROOT: &str = "/mini/";
/// Instance keys: `{SERVICES}{service}/{host:port}`.
pub const SERVICES: &str = "/mini/services/";
/// Health keys: `{HEALTH}{service}/{host:port}`, present while the instance is excluded.
pub const HEALTH: &str = "/mini/health/";
/// The election key of the probing registry.
pub const LEADER: &str = "/mini/leader";
/// TTL assumed for an instance key whose value does not say (written by something else).
const FALLBACK_TTL: Duration = Duration::from_secs(15);
/// The value of a health key.
pub const EXCLUDED: &[u8] = br#"{"ok":false}"#;

/// What a key under [`ROOT`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key<'a> {
    Instance(&'a str, &'a str),
    Health(&'a str, &'a str),
    Other,
}

fn parse_key(key: &[u8]) -> Key<'_> {
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

/// The value of an instance key: the TTL it was registered with, its spec and its drain mark.
pub fn instance_value(record: &Record) -> String {
    let mut o = crate::json::Object::new();
    o.num("ttl_ms", record.ttl.as_millis() as f64);
    record.spec.write_json(&mut o);
    o.bool("draining", record.draining).finish()
}

/// What an instance key's value records; fields it lacks (a value written before issue 11, or by
/// something else) read as the defaults.
fn record_of(value: &[u8]) -> Record {
    let doc = jsonread::parse(value).ok();
    let field = |name: &str| doc.as_ref().and_then(|v| v.get(name));
    Record {
        ttl: (field("ttl_ms").and_then(Value::as_i64))
            .and_then(|ms| u64::try_from(ms).ok())
            .map_or(FALLBACK_TTL, Duration::from_millis),
        spec: Arc::new((doc.as_ref().and_then(|v| Spec::read_json(v).ok())).unwrap_or_default()),
        draining: field("draining").and_then(Value::as_bool).unwrap_or(false),
    }
}

/// Whole seconds for an etcd lease: etcd's TTLs are seconds, rounded up here so a lease never runs
/// shorter than asked.
pub fn lease_secs(ttl: Duration) -> i64 {
    ttl.as_secs_f64().ceil().clamp(1.0, i64::MAX as f64) as i64
}

/// What this registry knows about one instance key beyond the local copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// The key's lease, which its health key shares and a heartbeat renews.
    pub lease: i64,
    /// That lease's TTL in whole seconds.
    pub ttl_secs: i64,
    /// Revision of the key's last known write: older watch events for it are stale.
    pub rev: i64,
}

/// The [`Meta`] of every instance key this registry knows, by `service/addr`.
#[derive(Debug, Default)]
pub struct Known {
    by_id: HashMap<String, Meta>,
}

fn id(service: &str, addr: &str) -> String {
    format!("{service}/{addr}")
}

impl Known {
    /// What is known of `addr` in `service`.
    pub fn get(&self, service: &str, addr: &str) -> Option<Meta> {
        self.by_id.get(&id(service, addr)).copied()
    }

    /// Records this registry's own write of the instance key; returns what it replaces.
    pub fn wrote(&mut self, service: &str, addr: &str, meta: Meta) -> Option<Meta> {
        self.by_id.insert(id(service, addr), meta)
    }

    /// Forgets the instance key (deleted); returns what was known.
    pub fn forget(&mut self, service: &str, addr: &str) -> Option<Meta> {
        self.by_id.remove(&id(service, addr))
    }

    /// The reset that makes the local copy equal to a full read of [`ROOT`] at `revision`. Keys this
    /// registry wrote after `revision` are kept as they are (their watch events are still to come).
    pub fn snapshot(&mut self, revision: i64, kvs: &[Kv]) -> Change<'static> {
        let mut fresh: HashMap<String, Meta> = HashMap::new();
        let mut wanted: Vec<(&str, &str, Record)> = Vec::new();
        let mut excluded: HashSet<(&str, &str)> = HashSet::new();
        for kv in kvs {
            match parse_key(&kv.key) {
                Key::Instance(s, a) => {
                    let record = record_of(&kv.value);
                    let meta = Meta {
                        lease: kv.lease,
                        ttl_secs: lease_secs(record.ttl),
                        rev: kv.mod_revision,
                    };
                    fresh.insert(id(s, a), meta);
                    wanted.push((s, a, record));
                }
                Key::Health(s, a) => {
                    excluded.insert((s, a));
                }
                Key::Other => {}
            }
        }
        let held = |s: &str, a: &str, r: Option<&Record>| Held {
            service: s.to_string(),
            addr: a.to_string(),
            ttl: r.map(|r| r.ttl),
            excluded: excluded.contains(&(s, a)),
            spec: r.map(|r| r.spec.clone()).unwrap_or_default(),
            draining: r.is_some_and(|r| r.draining),
        };
        let mut instances: Vec<Held> = wanted.iter().map(|(s, a, r)| held(s, a, Some(r))).collect();
        for (key, m) in self.by_id.iter().filter(|(_, m)| m.rev > revision) {
            if fresh.contains_key(key) {
                continue;
            }
            if let Some((s, a)) = key.split_once('/') {
                instances.push(held(s, a, None));
            }
            fresh.insert(key.clone(), *m);
        }
        self.by_id = fresh;
        Change::Reset(Snapshot { instances })
    }

    /// The changes a batch of watch events makes, in order. An event older than this registry's own
    /// write of the same key is dropped (its immediate local apply must not be undone by a late
    /// event), and so is the deletion of a health key whose instance key leaves in the same batch
    /// (a lease expiry deletes both: it is not a restoration).
    pub fn events(&mut self, events: &[Event]) -> Vec<Change<'static>> {
        let leaving: HashSet<&[u8]> = (events.iter())
            .filter_map(|e| match e {
                Event::Delete(kv) => kv.key.strip_prefix(SERVICES.as_bytes()),
                Event::Put(_) => None,
            })
            .collect();
        let mut changes = Vec::with_capacity(events.len());
        for event in events {
            let (kv, put) = match event {
                Event::Put(kv) => (kv, true),
                Event::Delete(kv) => (kv, false),
            };
            match parse_key(&kv.key) {
                Key::Instance(s, a) => {
                    let id = id(s, a);
                    if self.by_id.get(&id).is_some_and(|m| m.rev > kv.mod_revision) {
                        continue; // older than our own write
                    }
                    if put {
                        let r = record_of(&kv.value);
                        let meta = Meta {
                            lease: kv.lease,
                            ttl_secs: lease_secs(r.ttl),
                            rev: kv.mod_revision,
                        };
                        self.by_id.insert(id, meta);
                        let upsert = Change::upsert(s.to_string(), a.to_string(), r.ttl);
                        changes.push(upsert.with_spec(r.spec).with_draining(r.draining));
                    } else {
                        self.by_id.remove(&id);
                        changes.push(Change::remove(s.to_string(), a.to_string()));
                    }
                }
                Key::Health(..)
                    if !put
                        && (kv.key.get(HEALTH.len()..)).is_some_and(|k| leaving.contains(k)) => {}
                Key::Health(s, a) => {
                    changes.push(Change::health(s.to_string(), a.to_string(), !put))
                }
                Key::Other => {}
            }
        }
        changes
    }
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
        assert_eq!(parse_key(b"/mini/leader"), Key::Other);
        assert_eq!(parse_key(b"/mini/services/a b/127.0.0.1:1"), Key::Other);
        assert_eq!(parse_key(b"/mini/services/add/nope"), Key::Other);
        assert_eq!(parse_key(b"/mini/services/add"), Key::Other);
        assert_eq!(parse_key(b"/mini/services/\xff/h:1"), Key::Other);
    }

    #[test]
    fn reads_ttls_and_rounds_leases_up() {
        let ttl_of = |value: &[u8]| record_of(value).ttl;
        assert_eq!(ttl_of(br#"{"ttl_ms":2500}"#), Duration::from_millis(2500));
        assert_eq!(ttl_of(b"junk"), FALLBACK_TTL);
        assert_eq!(ttl_of(br#"{"ttl_ms":-1}"#), FALLBACK_TTL);
        assert_eq!(lease_secs(Duration::from_millis(2500)), 3);
        assert_eq!(lease_secs(Duration::from_millis(10)), 1);
        assert_eq!(lease_secs(Duration::from_secs(15)), 15);
        let record = Record {
            ttl: Duration::from_millis(2500),
            ..Record::default()
        };
        assert_eq!(ttl_of(instance_value(&record).as_bytes()), record.ttl);
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
    }

    fn kv(key: &str, value: &[u8], lease: i64, rev: i64) -> Kv {
        Kv {
            key: key.as_bytes().to_vec(),
            value: value.to_vec(),
            lease,
            mod_revision: rev,
        }
    }

    fn meta(lease: i64, rev: i64) -> Meta {
        Meta {
            lease,
            ttl_secs: 2,
            rev,
        }
    }

    #[test]
    fn a_read_becomes_one_reset_keeping_own_newer_writes() {
        let mut known = Known::default();
        known.wrote("add", "h:1", meta(7, 9)); // written after the read at 5
        known.wrote("add", "h:2", meta(8, 3)); // older than the read: the read decides
        let kvs = [
            kv("/mini/services/add/h:3", br#"{"ttl_ms":2000}"#, 11, 4),
            kv("/mini/health/add/h:3", EXCLUDED, 11, 5),
            kv("/mini/leader", b"r1", 12, 2),
            kv("/mini/services/bad name/h:4", b"{}", 13, 2),
        ];
        let Change::Reset(snapshot) = known.snapshot(5, &kvs) else {
            panic!("not a reset")
        };
        let held = |addr: &str, ttl, excluded| Held {
            service: "add".into(),
            addr: addr.into(),
            ttl,
            excluded,
            spec: Arc::default(),
            draining: false,
        };
        assert_eq!(
            snapshot.instances,
            [
                held("h:3", Some(Duration::from_secs(2)), true),
                held("h:1", None, false)
            ]
        );
        assert_eq!(known.get("add", "h:1"), Some(meta(7, 9)));
        assert_eq!(known.get("add", "h:2"), None);
        assert_eq!(
            known.get("add", "h:3").map(|m| (m.lease, m.rev)),
            Some((11, 4))
        );
    }

    #[test]
    fn events_become_changes_and_stale_ones_are_dropped() {
        let mut known = Known::default();
        known.wrote("add", "h:1", meta(7, 10));
        let events = [
            Event::Delete(kv("/mini/services/add/h:1", b"", 0, 8)), // older than our write at 10
            Event::Put(kv("/mini/services/add/h:2", br#"{"ttl_ms":3000}"#, 9, 11)),
            Event::Put(kv("/mini/health/add/h:2", EXCLUDED, 9, 12)),
            Event::Delete(kv("/mini/health/add/h:3", b"", 0, 13)),
            Event::Put(kv("/mini/leader", b"r2", 5, 14)),
        ];
        assert_eq!(
            known.events(&events),
            [
                Change::upsert("add", "h:2", Duration::from_secs(3))
                    .with_spec(Arc::default())
                    .with_draining(false),
                Change::health("add", "h:2", false),
                Change::health("add", "h:3", true),
            ]
        );
        assert_eq!(
            known
                .get("add", "h:2")
                .map(|m| (m.lease, m.ttl_secs, m.rev)),
            Some((9, 3, 11))
        );
        // A lease expiry deletes both keys: a removal, not a restoration.
        let expiry = [
            Event::Delete(kv("/mini/health/add/h:2", b"", 0, 15)),
            Event::Delete(kv("/mini/services/add/h:2", b"", 0, 15)),
        ];
        assert_eq!(known.events(&expiry), [Change::remove("add", "h:2")]);
        assert_eq!(known.get("add", "h:2"), None);
    }
}
