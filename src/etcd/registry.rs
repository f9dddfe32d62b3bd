//! The registry's use of etcd: key layout, leases, the local copy fed by one watch, and health.
//!
//! | key | value | lease |
//! |---|---|---|
//! | `/mini/services/{service}/{host:port}` | `{"ttl_ms":N}` | the instance's own lease, TTL = its TTL |
//! | `/mini/health/{service}/{host:port}` | `{"ok":false}`, present only while excluded | the instance's lease |
//! | `/mini/leader` | the probing registry's id | that registry's session lease |
//!
//! - A registration grants a lease and puts the instance key on it; a heartbeat renews the lease with
//!   one keepalive (no write, no watch event), through whichever registry receives it, since every
//!   registry learns each key's lease from the watch. Deregistration deletes both keys in one txn and
//!   revokes the lease. An instance whose adder died disappears when etcd expires its lease, whether
//!   or not any registry is running.
//! - Each registry keeps [`crate::registry::state::Registry`] as its local copy: a full read of
//!   `/mini/` at revision R, then one watch from R+1. Picks and listings read only the local copy.
//!   After a broken stream or a compaction it reads and watches again, with backoff.
//! - Health: only the election's leader probes. When a probe flips an instance's health it writes
//!   (or deletes) the health key; every registry applies that event, so all exclude the same ones.
//!   The health key shares the instance's lease, so it can never outlive the instance.

use super::election::Election;
use super::watch::{Event, Message, Watch};
use super::{Etcd, EtcdError, Kv};
use crate::jsonread::{self, Value};
use crate::registry::state::{valid_service_name, Registered, Target};
use crate::registry::store::StoreError;
use crate::registry::Shared;
use crate::{json, log};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Every key `mini` writes lives under this prefix; the watch covers all of it.
pub const ROOT: &str = "/mini/";
/// Instance keys: `{SERVICES}{service}/{host:port}`.
pub const SERVICES: &str = "/mini/services/";
/// Health keys: `{HEALTH}{service}/{host:port}`, present while the instance is excluded.
pub const HEALTH: &str = "/mini/health/";
/// The election key of the probing registry.
pub const LEADER: &str = "/mini/leader";
/// First and longest wait between two attempts to reach etcd again.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));
/// TTL assumed for an instance key whose value does not say (written by something else).
const FALLBACK_TTL: Duration = Duration::from_secs(15);

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

fn instance_key(service: &str, addr: &str) -> String {
    format!("{SERVICES}{service}/{addr}")
}

fn health_key(service: &str, addr: &str) -> String {
    format!("{HEALTH}{service}/{addr}")
}

/// The TTL an instance key's value records.
fn ttl_of(value: &[u8]) -> Duration {
    jsonread::parse(value)
        .ok()
        .and_then(|v| v.get("ttl_ms").and_then(Value::as_i64))
        .and_then(|ms| u64::try_from(ms).ok())
        .map_or(FALLBACK_TTL, Duration::from_millis)
}

/// Whole seconds for an etcd lease: etcd's TTLs are seconds, rounded up here so a lease never runs
/// shorter than asked.
fn lease_secs(ttl: Duration) -> i64 {
    ttl.as_secs_f64().ceil().clamp(1.0, i64::MAX as f64) as i64
}

/// What this registry knows about an instance key beyond the local copy.
#[derive(Debug, Clone, Copy)]
struct Meta {
    lease: i64,
    ttl_secs: i64,
    /// Revision of the key's last known write: older watch events for it are stale.
    rev: i64,
}

/// Whether the local copy is following etcd.
#[derive(Debug)]
struct Link {
    synced: bool,
    since: Instant,
    why: String,
}

/// The etcd side of [`crate::registry::store::Store::Etcd`].
#[derive(Debug)]
pub struct Backend {
    etcd: Arc<Etcd>,
    election: Arc<Election>,
    meta: Mutex<HashMap<String, Meta>>,
    link: Mutex<Link>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Backend {
    /// A backend on the etcd members at `endpoints`; `id` names this registry in the election, whose
    /// lease lasts `ttl`.
    pub fn new(endpoints: Vec<String>, id: String, ttl: Duration) -> Backend {
        let etcd = Arc::new(Etcd::new(endpoints));
        Backend {
            election: Arc::new(Election::new(etcd.clone(), LEADER, id, ttl)),
            etcd,
            meta: Mutex::new(HashMap::new()),
            link: Mutex::new(Link {
                synced: false,
                since: Instant::now(),
                why: "not synced yet".into(),
            }),
        }
    }

    /// Starts the election and the sync loop (read, then watch) that feeds `shared`'s local copy.
    pub fn start(self: &Arc<Self>, shared: Arc<Shared>) {
        crate::rt::spawn(self.election.clone().run()).detach();
        crate::rt::spawn(self.clone().sync_loop(shared)).detach();
    }

    /// Whether this registry should probe: it leads the election and its copy follows etcd.
    pub fn is_leader(&self) -> bool {
        self.election.is_leader() && lock(&self.link).synced
    }

    /// Why lookups are answered from a copy that may be stale, if they are.
    pub fn degraded(&self) -> Option<String> {
        let link = lock(&self.link);
        (!link.synced).then(|| {
            format!(
                "etcd unreachable for {:.1}s ({}); answering from the local copy",
                link.since.elapsed().as_secs_f64(),
                link.why
            )
        })
    }

    fn set_link(&self, synced: bool, why: &str) {
        let changed = {
            let mut link = lock(&self.link);
            let changed = link.synced != synced;
            if changed {
                link.since = Instant::now();
            }
            link.synced = synced;
            link.why = why.chars().take(200).collect();
            changed
        };
        if changed {
            let endpoints = self.etcd.endpoints().join(",");
            match synced {
                true => log::line("registry", format_args!("etcd {endpoints}: {why}")),
                false => log::line(
                    "registry",
                    format_args!(
                        "etcd {endpoints}: {why}; answering from the local copy, retrying"
                    ),
                ),
            }
        }
    }

    /// Registers or renews in etcd (and in the local copy at once, so this registry can hand the
    /// instance out immediately). A refusal by the local limits writes nothing; an etcd failure
    /// undoes the local change and is reported, never swallowed.
    pub async fn register(
        &self,
        shared: &Shared,
        service: &str,
        addr: &str,
        ttl: Duration,
    ) -> Result<Registered, StoreError> {
        let local = shared
            .register(service, addr, ttl)
            .map_err(StoreError::Refused)?;
        match self.write_instance(service, addr, ttl).await {
            Ok(true) => Ok(Registered::New),
            Ok(false) => Ok(local),
            Err(e) => {
                if local == Registered::New {
                    shared.deregister(service, addr);
                }
                Err(StoreError::Unavailable(e.to_string()))
            }
        }
    }

    /// Renews the instance's lease if etcd still has it, else grants a lease and puts the key.
    /// Returns whether the key was (re)created.
    async fn write_instance(
        &self,
        service: &str,
        addr: &str,
        ttl: Duration,
    ) -> Result<bool, EtcdError> {
        let id = format!("{service}/{addr}");
        let secs = lease_secs(ttl);
        let known = lock(&self.meta).get(&id).copied();
        if let Some(meta) = known.filter(|m| m.ttl_secs == secs) {
            if self.etcd.keepalive(meta.lease).await?.is_some() {
                return Ok(false);
            }
        }
        let lease = self.etcd.grant(secs).await?;
        let value = json::Object::new()
            .num("ttl_ms", ttl.as_millis() as f64)
            .finish();
        let rev = self
            .etcd
            .put(
                instance_key(service, addr).as_bytes(),
                value.as_bytes(),
                lease.id,
            )
            .await?;
        let old = lock(&self.meta).insert(
            id,
            Meta {
                lease: lease.id,
                ttl_secs: secs,
                rev,
            },
        );
        if let Some(old) = old.filter(|o| o.lease != lease.id) {
            // A lease replaced (TTL changed or expired): free it rather than let it idle out.
            let _ = self.etcd.revoke(old.lease).await;
        }
        Ok(true)
    }

    /// Deregisters in etcd (instance and health keys in one txn, then the lease) and locally.
    pub async fn deregister(
        &self,
        shared: &Shared,
        service: &str,
        addr: &str,
    ) -> Result<bool, StoreError> {
        let (ik, hk) = (instance_key(service, addr), health_key(service, addr));
        let (_, deleted) = self
            .etcd
            .delete_all(&[ik.as_bytes(), hk.as_bytes()])
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let meta = lock(&self.meta).remove(&format!("{service}/{addr}"));
        let local = shared.deregister(service, addr);
        if let Some(meta) = meta {
            let _ = self.etcd.revoke(meta.lease).await;
        }
        Ok(deleted > 0 || local)
    }

    /// Records a probe result: locally, and when health flipped, in etcd for every registry.
    /// Returns whether health flipped. If etcd cannot record it, the local flip is undone so the
    /// next round tries again.
    pub async fn record_probe(&self, shared: &Shared, target: &Target, ok: bool) -> bool {
        let (service, addr) = (target.service.as_str(), &*target.addr);
        if !shared.mark_probe(service, addr, ok) {
            return false;
        }
        let hk = health_key(service, addr);
        let result = if ok {
            self.etcd.delete(hk.as_bytes()).await.map(drop)
        } else {
            let lease = lock(&self.meta)
                .get(&format!("{service}/{addr}"))
                .map(|m| m.lease);
            match lease {
                Some(lease) => self
                    .etcd
                    .put(hk.as_bytes(), br#"{"ok":false}"#, lease)
                    .await
                    .map(drop),
                None => Err(EtcdError::BadReply(format!(
                    "no lease known for {service} {addr}"
                ))),
            }
        };
        if let Err(e) = result {
            shared.mark_probe(service, addr, !ok);
            log::line(
                "registry",
                format_args!("{service} {addr}: health not recorded in etcd ({e}); will retry"),
            );
            return false;
        }
        true
    }

    /// Follows etcd forever: read everything, watch from there, and start over when that breaks.
    async fn sync_loop(self: Arc<Self>, shared: Arc<Shared>) {
        let mut backoff = BACKOFF.0;
        loop {
            let err = self.follow(&shared, &mut backoff).await;
            self.set_link(false, &err.to_string());
            let jitter = backoff.mul_f64(fastrand::f64() * 0.5);
            smol::Timer::after(backoff + jitter).await;
            backoff = (backoff * 2).min(BACKOFF.1);
        }
    }

    /// One read-then-watch; returns why it stopped.
    async fn follow(&self, shared: &Shared, backoff: &mut Duration) -> EtcdError {
        let (revision, kvs) = match self.etcd.range_prefix(ROOT.as_bytes()).await {
            Ok(read) => read,
            Err(e) => return e,
        };
        self.resync(shared, revision, &kvs);
        let mut watch = match Watch::open(&self.etcd, ROOT.as_bytes(), revision + 1).await {
            Ok(w) => w,
            Err(e) => return e,
        };
        self.set_link(true, &format!("synced at revision {revision}, watching"));
        *backoff = BACKOFF.0;
        loop {
            match watch.next().await {
                Ok(Message::Events { events, .. }) => self.apply(shared, &events),
                Ok(_) => {}
                Err(e) => return e,
            }
        }
    }

    /// Makes the local copy equal to a full read at `revision`, keeping local registrations newer
    /// than it (their watch events are still to come).
    fn resync(&self, shared: &Shared, revision: i64, kvs: &[Kv]) {
        let now = Instant::now();
        let mut fresh: HashMap<String, Meta> = HashMap::new();
        let mut wanted: Vec<(&str, &str, Duration)> = Vec::new();
        let mut excluded: HashSet<(&str, &str)> = HashSet::new();
        for kv in kvs {
            match parse_key(&kv.key) {
                Key::Instance(s, a) => {
                    let ttl = ttl_of(&kv.value);
                    let meta = Meta {
                        lease: kv.lease,
                        ttl_secs: lease_secs(ttl),
                        rev: kv.mod_revision,
                    };
                    fresh.insert(format!("{s}/{a}"), meta);
                    wanted.push((s, a, ttl));
                }
                Key::Health(s, a) => {
                    excluded.insert((s, a));
                }
                Key::Other => {}
            }
        }
        let known = shared.state().services();
        let names = known
            .iter()
            .map(|s| s.name.as_str())
            .chain(wanted.iter().map(|w| w.0));
        let before = shared.indexes(names);
        let mut meta = lock(&self.meta);
        let mut state = shared.state();
        for (id, m) in meta.iter().filter(|(_, m)| m.rev > revision) {
            fresh.entry(id.clone()).or_insert(*m);
        }
        let mut removed = 0;
        for summary in state.services() {
            for inst in state.instances(&summary.name).unwrap_or_default() {
                if !fresh.contains_key(&format!("{}/{}", summary.name, inst.addr)) {
                    removed += usize::from(state.deregister(&summary.name, &inst.addr));
                }
            }
        }
        let mut refused = 0;
        for &(s, a, ttl) in &wanted {
            refused += usize::from(state.register(s, a, ttl, now).is_err());
        }
        for summary in state.services() {
            for inst in state.instances(&summary.name).unwrap_or_default() {
                let bad = excluded.contains(&(summary.name.as_str(), &*inst.addr));
                if bad == inst.healthy() {
                    state.mark_probe(&summary.name, &inst.addr, !bad, now);
                }
            }
        }
        *meta = fresh;
        let total = state.len();
        drop(state);
        drop(meta);
        shared.notify_moved(before);
        log::line(
            "registry",
            format_args!(
                "etcd read at revision {revision}: {total} instances ({removed} dropped locally, {refused} over local limits)"
            ),
        );
    }

    /// Applies watch events to the local copy, in order.
    fn apply(&self, shared: &Shared, events: &[Event]) {
        let now = Instant::now();
        let mut lines = Vec::new();
        // A lease expiry deletes the health key with the instance key: not a restoration.
        let leaving: HashSet<&[u8]> = events
            .iter()
            .filter_map(|e| match e {
                Event::Delete(kv) => kv.key.strip_prefix(SERVICES.as_bytes()),
                Event::Put(_) => None,
            })
            .collect();
        let names = events.iter().filter_map(|e| match e {
            Event::Put(kv) | Event::Delete(kv) => match parse_key(&kv.key) {
                Key::Instance(s, _) | Key::Health(s, _) => Some(s),
                Key::Other => None,
            },
        });
        let before = shared.indexes(names);
        {
            let mut meta = lock(&self.meta);
            let mut state = shared.state();
            for event in events {
                let (kv, put) = match event {
                    Event::Put(kv) => (kv, true),
                    Event::Delete(kv) => (kv, false),
                };
                match parse_key(&kv.key) {
                    Key::Instance(s, a) => {
                        let id = format!("{s}/{a}");
                        if meta.get(&id).is_some_and(|m| m.rev > kv.mod_revision) {
                            continue; // older than our own write
                        }
                        if put {
                            let ttl = ttl_of(&kv.value);
                            match state.register(s, a, ttl, now) {
                                Ok(Registered::New) => {
                                    lines.push(format!("{s} {a} registered (via etcd)"))
                                }
                                Ok(Registered::Renewed) => {}
                                Err(e) => lines.push(format!("{s} {a} not kept locally: {e}")),
                            }
                            let m = Meta {
                                lease: kv.lease,
                                ttl_secs: lease_secs(ttl),
                                rev: kv.mod_revision,
                            };
                            meta.insert(id, m);
                        } else {
                            meta.remove(&id);
                            if state.deregister(s, a) {
                                lines.push(format!(
                                    "{s} {a} removed (deregistered or lease expired in etcd)"
                                ));
                            }
                        }
                    }
                    Key::Health(..)
                        if !put
                            && (kv.key.get(HEALTH.len()..))
                                .is_some_and(|k| leaving.contains(k)) => {}
                    Key::Health(s, a) => {
                        if state.mark_probe(s, a, !put, now) {
                            let what = if put { "excluded" } else { "restored" };
                            lines.push(format!("{s} {a} {what} (health from etcd)"));
                        }
                    }
                    Key::Other => {}
                }
            }
        }
        shared.notify_moved(before);
        for line in lines {
            log::line("registry", format_args!("{line}"));
        }
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
        assert_eq!(ttl_of(br#"{"ttl_ms":2500}"#), Duration::from_millis(2500));
        assert_eq!(ttl_of(b"junk"), FALLBACK_TTL);
        assert_eq!(ttl_of(br#"{"ttl_ms":-1}"#), FALLBACK_TTL);
        assert_eq!(lease_secs(Duration::from_millis(2500)), 3);
        assert_eq!(lease_secs(Duration::from_millis(10)), 1);
        assert_eq!(lease_secs(Duration::from_secs(15)), 15);
    }
}
