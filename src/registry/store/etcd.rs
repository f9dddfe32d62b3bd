//! The etcd store: writes go to etcd, and [`Feed`] turns etcd's full reads and watch events into
//! [`Change`]s for the local copy. Key layout and the translation are in [`super::etcd_keys`].
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
//!
//! This store never sees the registry's state: it returns changes, and the registry applies them.
//! Its two locks (`known`, `link`) are each taken alone, for a few map operations, never across an
//! await and never while another lock is held.

use super::etcd_keys::{self, Known, Meta, EXCLUDED, LEADER, ROOT};
use super::StoreError;
use crate::etcd::election::Election;
use crate::etcd::watch::{Message, Watch};
use crate::etcd::{Etcd, EtcdError};
use crate::log;
use crate::registry::state::{Applied, Change, Outcome, Record, Registered};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// First and longest wait between two attempts to reach etcd again.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));

/// Whether the local copy is following etcd.
#[derive(Debug)]
struct Link {
    synced: bool,
    since: Instant,
    why: String,
}

/// The etcd side of [`super::Store::Etcd`].
#[derive(Debug)]
pub struct EtcdStore {
    etcd: Arc<Etcd>,
    election: Arc<Election>,
    /// This registry's name in the election (the leader key's value while it leads).
    id: String,
    /// The task campaigning in the election, until [`EtcdStore::resign`] cancels it.
    campaign: Mutex<Option<smol::Task<()>>>,
    known: Mutex<Known>,
    link: Mutex<Link>,
}

use crate::rt::lock;

impl EtcdStore {
    /// A store on the etcd members at `endpoints`; `id` names this registry in the election, whose
    /// lease lasts `ttl`.
    pub fn new(endpoints: Vec<String>, id: String, ttl: Duration) -> EtcdStore {
        let etcd = Arc::new(Etcd::new(endpoints));
        EtcdStore {
            election: Arc::new(Election::new(etcd.clone(), LEADER, id.clone(), ttl)),
            etcd,
            id,
            campaign: Mutex::new(None),
            known: Mutex::new(Known::default()),
            link: Mutex::new(Link {
                synced: false,
                since: Instant::now(),
                why: "not synced yet".into(),
            }),
        }
    }

    /// Starts campaigning in the election; returns the feed of changes for the local copy.
    pub fn start(self: &Arc<Self>) -> Feed {
        let id = self.id.clone();
        let campaign = self.election.clone().run(move |leads, why| {
            let what = if leads { "became" } else { "is no longer" };
            log::line(
                "registry",
                format_args!("{id} {what} the probing leader ({why})"),
            );
        });
        *lock(&self.campaign) = Some(crate::rt::spawn(campaign));
        Feed {
            store: self.clone(),
            phase: Phase::Read,
            backoff: BACKOFF.0,
        }
    }

    /// Stops campaigning and gives up leadership at once (deletes the leader key, revokes the
    /// session lease), so another registry probes from its next election attempt on.
    pub async fn resign(&self) {
        let campaign = lock(&self.campaign).take();
        if let Some(task) = campaign {
            task.cancel().await;
        }
        match self.election.resign().await {
            Ok(true) => log::line(
                "registry",
                format_args!("{} is no longer the probing leader (resigned)", self.id),
            ),
            Ok(false) => {}
            Err(e) => log::line(
                "registry",
                format_args!(
                    "{}: leadership not released in etcd ({e}); it lapses with its lease",
                    self.id
                ),
            ),
        }
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

    /// Renews the instance's lease if etcd still has it (and, when `changed`, puts the record's new
    /// value on that lease), else grants a lease and puts the key. Returns whether the key was
    /// (re)created.
    pub async fn put(
        &self,
        service: &str,
        addr: &str,
        record: &Record,
        changed: bool,
    ) -> Result<bool, StoreError> {
        self.write_instance(service, addr, record, changed)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    async fn write_instance(
        &self,
        service: &str,
        addr: &str,
        record: &Record,
        changed: bool,
    ) -> Result<bool, EtcdError> {
        let secs = etcd_keys::lease_secs(record.ttl);
        let known = lock(&self.known).get(service, addr);
        let key = etcd_keys::instance_key(service, addr);
        if let Some(meta) = known.filter(|m| m.ttl_secs == secs) {
            if self.etcd.keepalive(meta.lease).await?.is_some() {
                if changed {
                    let value = etcd_keys::instance_value(record);
                    let rev = (self.etcd.put(key.as_bytes(), value.as_bytes(), meta.lease)).await?;
                    lock(&self.known).wrote(service, addr, Meta { rev, ..meta });
                }
                return Ok(false);
            }
        }
        let lease = self.etcd.grant(secs).await?;
        let value = etcd_keys::instance_value(record);
        let rev = self
            .etcd
            .put(key.as_bytes(), value.as_bytes(), lease)
            .await?;
        let meta = Meta {
            lease,
            ttl_secs: secs,
            rev,
        };
        let old = lock(&self.known).wrote(service, addr, meta);
        if let Some(old) = old.filter(|o| o.lease != lease) {
            // A lease replaced (TTL changed or expired): free it rather than let it idle out.
            let _ = self.etcd.revoke(old.lease).await;
        }
        Ok(true)
    }

    /// Deletes the instance and health keys in one txn, then revokes the lease; returns whether
    /// etcd had either key.
    pub async fn delete(&self, service: &str, addr: &str) -> Result<bool, StoreError> {
        let ik = etcd_keys::instance_key(service, addr);
        let hk = etcd_keys::health_key(service, addr);
        let (_, deleted) = self
            .etcd
            .delete_all(&[ik.as_bytes(), hk.as_bytes()])
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let meta = lock(&self.known).forget(service, addr);
        if let Some(meta) = meta {
            let _ = self.etcd.revoke(meta.lease).await;
        }
        Ok(deleted > 0)
    }

    /// Writes a health flip for every registry: the health key while excluded, on the instance's
    /// lease; no key once restored.
    pub async fn write_health(
        &self,
        service: &str,
        addr: &str,
        ok: bool,
    ) -> Result<(), StoreError> {
        let hk = etcd_keys::health_key(service, addr);
        let result = if ok {
            self.etcd.delete(hk.as_bytes()).await.map(drop)
        } else {
            let lease = lock(&self.known).get(service, addr).map(|m| m.lease);
            match lease {
                Some(lease) => self
                    .etcd
                    .put(hk.as_bytes(), EXCLUDED, lease)
                    .await
                    .map(drop),
                None => Err(EtcdError::BadReply(format!(
                    "no lease known for {service} {addr}"
                ))),
            }
        };
        result.map_err(|e| {
            log::line(
                "registry",
                format_args!("{service} {addr}: health not recorded in etcd ({e}); will retry"),
            );
            StoreError::Unavailable(e.to_string())
        })
    }
}

/// Where a [`Feed`] is in its read-then-watch cycle.
#[derive(Debug)]
enum Phase {
    /// Read everything next.
    Read,
    /// Read at this revision; open the watch from the next one.
    Open(i64),
    /// Following the watch.
    Watching(Box<Watch>),
}

/// The changes etcd brings, for the registry's driver to apply: a full read, then the watch's
/// events, and after a break a full read again (with backoff).
#[derive(Debug)]
pub struct Feed {
    store: Arc<EtcdStore>,
    phase: Phase,
    backoff: Duration,
}

/// One batch of changes from a [`Feed`].
#[derive(Debug)]
pub struct Batch {
    /// The changes, in order.
    pub changes: Vec<Change<'static>>,
    /// The revision of the full read this batch resets to, if it is one.
    read_at: Option<i64>,
}

impl Feed {
    /// The next batch: waits as long as etcd sends nothing, and never ends. Dropping the future
    /// mid-wait is harmless (the next call reads again).
    pub async fn next(&mut self) -> Batch {
        let store = self.store.clone();
        loop {
            let failed = match std::mem::replace(&mut self.phase, Phase::Read) {
                Phase::Read => match store.etcd.range_prefix(ROOT.as_bytes()).await {
                    Ok((revision, kvs)) => {
                        let reset = lock(&store.known).snapshot(revision, &kvs);
                        self.phase = Phase::Open(revision);
                        return Batch {
                            changes: vec![reset],
                            read_at: Some(revision),
                        };
                    }
                    Err(e) => e,
                },
                Phase::Open(revision) => {
                    match Watch::open(&store.etcd, ROOT.as_bytes(), revision + 1).await {
                        Ok(watch) => {
                            store.set_link(
                                true,
                                &format!("synced at revision {revision}, watching"),
                            );
                            self.backoff = BACKOFF.0;
                            self.phase = Phase::Watching(Box::new(watch));
                            continue;
                        }
                        Err(e) => e,
                    }
                }
                Phase::Watching(mut watch) => match watch.next().await {
                    Ok(Message::Events { events, .. }) => {
                        let changes = lock(&store.known).events(&events);
                        self.phase = Phase::Watching(watch);
                        if !changes.is_empty() {
                            return Batch {
                                changes,
                                read_at: None,
                            };
                        }
                        continue;
                    }
                    Ok(_) => {
                        self.phase = Phase::Watching(watch);
                        continue;
                    }
                    Err(e) => e,
                },
            };
            store.set_link(false, &failed.to_string());
            let jitter = self.backoff.mul_f64(fastrand::f64() * 0.5);
            smol::Timer::after(self.backoff + jitter).await;
            self.backoff = (self.backoff * 2).min(BACKOFF.1);
        }
    }
}

impl Batch {
    /// Logs what applying the batch did to the local copy.
    pub fn log(&self, applied: &Applied) {
        for (change, outcome) in self.changes.iter().zip(&applied.outcomes) {
            let line = match (change, outcome) {
                (Change::Reset(_), Outcome::Reset(r)) => format!(
                    "etcd read at revision {}: {} instances ({} dropped locally, {} over local limits)",
                    self.read_at.unwrap_or_default(),
                    r.total,
                    r.removed,
                    r.refused
                ),
                (Change::Upsert { service, addr, .. }, Outcome::Registered(Registered::New)) => {
                    format!("{service} {addr} registered (via etcd)")
                }
                (Change::Upsert { service, addr, .. }, Outcome::Refused(e)) => {
                    format!("{service} {addr} not kept locally: {e}")
                }
                (Change::Remove { service, addr }, Outcome::Removed(true)) => {
                    format!("{service} {addr} removed (deregistered or lease expired in etcd)")
                }
                (Change::Health { service, addr, ok }, Outcome::Health(true)) => {
                    let what = if *ok { "restored" } else { "excluded" };
                    format!("{service} {addr} {what} (health from etcd)")
                }
                _ => continue,
            };
            log::line("registry", format_args!("{line}"));
        }
    }
}
