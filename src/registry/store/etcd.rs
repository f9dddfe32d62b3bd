//! The etcd store: etcd hears about changes, not heartbeats. Key layout and the value codec are in
//! [`super::etcd_keys`], the rules of ownership in [`super::known`], batched writes and the
//! session lease in [`super::writer`].
//!
//! - Each registry owns the keys of the instances that registered through it, all on its one
//!   session lease. A beat for a key it knows with an unchanged value is absorbed in memory: it
//!   waits on nothing and costs etcd nothing, whichever registry owns the key. A new registration
//!   (or a changed value) is a put in a batched txn, answered once etcd applied it.
//! - The owner expires its instances itself: its sweep removes one locally once its beats stopped
//!   for its TTL, and deletes the key. A registry that dies takes its session lease with it: etcd
//!   deletes its keys one lease TTL later. A registry that receives beats for such a key keeps the
//!   instance in its copy and puts the key back on its own lease (re-owns it); the others drop it.
//! - Each registry keeps [`crate::registry::state::Registry`] as its local copy: a full read of
//!   `/mini/` at revision R, then one watch from R+1. Picks and listings read only the local copy.
//!   After a broken stream or a compaction it reads and watches again, with backoff.
//! - Health: only the election's leader probes. When a probe flips an instance's health it writes
//!   (or deletes) the health key, on the instance key's lease; every registry applies that event.
//!
//! This store never sees the registry's state: it returns changes, and the registry applies them.
//! Its locks (`known`, `link`, `campaign`) are each taken alone, for a few map operations, never
//! across an await and never while another lock is held.

use super::etcd_keys::{self, EXCLUDED, LEADER, ROOT};
use super::known::{deadline, Beat};
use super::writer::{Core, Write, Writer};
use super::StoreError;
use crate::etcd::election::Election;
use crate::etcd::watch::{Message, Watch};
use crate::etcd::{Etcd, EtcdError};
use crate::log;
use crate::registry::state::{Applied, Change, Outcome, Record, Registered};
use crate::rt::lock;
use smol::channel::{self, Receiver, Sender};
use smol::stream::StreamExt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// First and longest wait between two attempts to reach etcd again.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));
/// Watch messages buffered between the stream's reader and the feed.
const WATCH_BUFFER: usize = 64;

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
    core: Arc<Core>,
    /// The write lanes, from [`EtcdStore::start`] on.
    writer: OnceLock<Arc<Writer>>,
    election: Arc<Election>,
    /// The task campaigning in the election, until [`EtcdStore::resign`] cancels it.
    campaign: Mutex<Option<smol::Task<()>>>,
    link: Mutex<Link>,
    /// The registry's `--ttl`: the election lease and the sweep's pace.
    ttl: Duration,
}

impl EtcdStore {
    /// A store on the etcd members at `endpoints`; `id` names this registry, whose election
    /// lease lasts `ttl` and whose session lease (the one its instance keys are on) `session`.
    pub fn new(endpoints: Vec<String>, id: String, ttl: Duration, session: Duration) -> EtcdStore {
        let etcd = Arc::new(Etcd::new(endpoints));
        EtcdStore {
            election: Arc::new(Election::new(etcd.clone(), LEADER, id.clone(), ttl)),
            core: Arc::new(Core::new(etcd, id, session)),
            writer: OnceLock::new(),
            campaign: Mutex::new(None),
            link: Mutex::new(Link {
                synced: false,
                since: Instant::now(),
                why: "not synced yet".into(),
            }),
            ttl,
        }
    }

    /// Starts the session lease, the write lanes, the sweep and the election; returns the feed of
    /// changes for the local copy.
    pub fn start(self: &Arc<Self>) -> Feed {
        let id = self.core.id.clone();
        let campaign = self.election.clone().run(move |leads, why| {
            let what = if leads { "became" } else { "is no longer" };
            log::line(
                "registry",
                format_args!("{id} {what} the probing leader ({why})"),
            );
        });
        *lock(&self.campaign) = Some(crate::rt::spawn(campaign));
        crate::rt::spawn(self.core.clone().keep_session()).detach();
        let writer = self
            .writer
            .get_or_init(|| Arc::new(Writer::start(&self.core)));
        let (local, changes) = channel::unbounded();
        let period = crate::registry::probe::sweep_period(self.ttl);
        crate::rt::spawn(sweep(self.core.clone(), writer.clone(), local, period)).detach();
        Feed {
            store: self.clone(),
            writer: writer.clone(),
            local: changes,
            phase: Phase::Read,
            backoff: BACKOFF.0,
        }
    }

    fn writer(&self) -> Result<&Writer, StoreError> {
        (self.writer.get().map(|w| &**w))
            .ok_or_else(|| StoreError::Unavailable("the etcd store is not started".into()))
    }

    /// Stops campaigning and gives up leadership at once (deletes the leader key, revokes the
    /// election lease), so another registry probes from its next election attempt on. The session
    /// lease is left to lapse: instances that also beat elsewhere are re-owned there when it does.
    pub async fn resign(&self) {
        let campaign = lock(&self.campaign).take();
        if let Some(task) = campaign {
            task.cancel().await;
        }
        let id = &self.core.id;
        match self.election.resign().await {
            Ok(true) => log::line(
                "registry",
                format_args!("{id} is no longer the probing leader (resigned)"),
            ),
            Ok(false) => {}
            Err(e) => log::line(
                "registry",
                format_args!(
                    "{id}: leadership not released in etcd ({e}); it lapses with its lease"
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
            let endpoints = self.core.etcd.endpoints().join(",");
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

    /// A registration, beat or drain mark, already applied locally: `record` is what the local copy
    /// now holds, `changed` whether its spec or drain mark just moved. A key etcd has with this
    /// value and no change: nothing to write, whichever registry owns it. Else (a new key, or a
    /// changed value even of a known key, so that other registries see it) the key goes on this
    /// registry's lease in the next txn, and this waits for it. Returns whether etcd did not have
    /// the key.
    pub async fn put(
        &self,
        service: &str,
        addr: &str,
        record: &Record,
        changed: bool,
    ) -> Result<bool, StoreError> {
        let now = Instant::now();
        let (beat, excluded) = {
            let mut known = lock(&self.core.known);
            let beat = known.beat(service, addr, record, changed, now);
            // Only a write puts the health key again; an absorbed beat looks nothing else up.
            let excluded = beat != Beat::Absorbed && known.excluded(service, addr);
            (beat, excluded)
        };
        let Beat::Write { new } = beat else {
            return Ok(false);
        };
        let write = Write::Register {
            service: service.to_string(),
            addr: addr.to_string(),
            until: deadline(now, record),
            value: record.clone(),
            excluded,
        };
        self.writer()?.request(write).await.map_err(unavailable)?;
        Ok(new)
    }

    /// Deletes the instance and health keys in one txn that also marks it a deregistration (so no
    /// other registry re-owns it); returns whether etcd had the instance key.
    pub async fn delete(&self, service: &str, addr: &str) -> Result<bool, StoreError> {
        let write = Write::Deregister {
            service: service.to_string(),
            addr: addr.to_string(),
        };
        let deleted = self.writer()?.request(write).await.map_err(unavailable)?;
        Ok(deleted > 0)
    }

    /// Writes a health flip for every registry: the health key while excluded, on the instance
    /// key's lease; no key once restored.
    pub async fn write_health(
        &self,
        service: &str,
        addr: &str,
        ok: bool,
    ) -> Result<(), StoreError> {
        let hk = etcd_keys::health_key(service, addr);
        let etcd = &self.core.etcd;
        let result = if ok {
            etcd.delete(hk.as_bytes()).await.map(drop)
        } else {
            let lease = lock(&self.core.known)
                .get(service, addr)
                .and_then(|e| e.lease);
            match lease {
                Some(lease) => etcd.put(hk.as_bytes(), EXCLUDED, lease).await.map(drop),
                None => Err(EtcdError::BadReply(format!(
                    "{service} {addr} is not in etcd right now"
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

fn unavailable(e: EtcdError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Expires what this registry owns and no longer hears, every `period`: the removals go to the
/// feed at once, the deletions to the writer.
async fn sweep(
    core: Arc<Core>,
    writer: Arc<Writer>,
    local: Sender<Vec<Change<'static>>>,
    period: Duration,
) {
    let mut ticks = smol::Timer::interval(period);
    while ticks.next().await.is_some() {
        let swept = lock(&core.known).sweep(Instant::now(), core.session());
        for chore in swept.chores {
            writer.chore(chore);
        }
        if !swept.removed.is_empty() && local.send(swept.removed).await.is_err() {
            return;
        }
    }
}

/// An open watch, read by its own task so the feed can wait on it and on the sweep at once.
#[derive(Debug)]
struct Watching {
    messages: Receiver<Result<Message, EtcdError>>,
    _reader: smol::Task<()>,
}

impl Watching {
    fn spawn(mut watch: Watch) -> Watching {
        let (tx, messages) = channel::bounded(WATCH_BUFFER);
        let reader = crate::rt::spawn(async move {
            loop {
                let message = watch.next().await;
                let end = message.is_err();
                if tx.send(message).await.is_err() || end {
                    return;
                }
            }
        });
        Watching {
            messages,
            _reader: reader,
        }
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
    Watching(Watching),
    /// etcd failed: read again from this time on.
    Wait(Instant),
}

/// The changes for the local copy, for the registry's driver to apply: a full read, then the
/// watch's events, and after a break a full read again (with backoff); meanwhile the sweep's
/// removals of instances this registry expired.
#[derive(Debug)]
pub struct Feed {
    store: Arc<EtcdStore>,
    writer: Arc<Writer>,
    local: Receiver<Vec<Change<'static>>>,
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
    /// Whether these are this registry's own expiries (from its sweep).
    swept: bool,
}

impl Batch {
    fn etcd(changes: Vec<Change<'static>>, read_at: Option<i64>) -> Batch {
        Batch {
            changes,
            read_at,
            swept: false,
        }
    }
}

/// The sweep's next removals; never, if the sweep stopped.
async fn swept(local: &Receiver<Vec<Change<'static>>>) -> Vec<Change<'static>> {
    match local.recv().await {
        Ok(changes) => changes,
        Err(_) => std::future::pending().await,
    }
}

impl Feed {
    /// The next batch: waits as long as nothing changes, and never ends. Dropping the future
    /// mid-wait is harmless (the next call reads again).
    pub async fn next(&mut self) -> Batch {
        let store = self.store.clone();
        let etcd = store.core.etcd.clone();
        loop {
            let failed = match std::mem::replace(&mut self.phase, Phase::Read) {
                Phase::Wait(until) => {
                    let left = until.saturating_duration_since(Instant::now());
                    if let Some(changes) = crate::rt::timeout(left, swept(&self.local)).await {
                        self.phase = Phase::Wait(until);
                        return Batch {
                            changes,
                            read_at: None,
                            swept: true,
                        };
                    }
                    continue;
                }
                Phase::Read => match etcd.range_prefix(ROOT.as_bytes()).await {
                    Ok((revision, kvs)) => {
                        let now = Instant::now();
                        let (reset, chores) = lock(&store.core.known).snapshot(revision, &kvs, now);
                        for chore in chores {
                            self.writer.chore(chore);
                        }
                        self.phase = Phase::Open(revision);
                        return Batch::etcd(vec![reset], Some(revision));
                    }
                    Err(e) => e,
                },
                Phase::Open(revision) => {
                    match Watch::open(&etcd, ROOT.as_bytes(), revision + 1).await {
                        Ok(watch) => {
                            store.set_link(
                                true,
                                &format!("synced at revision {revision}, watching"),
                            );
                            self.backoff = BACKOFF.0;
                            self.phase = Phase::Watching(Watching::spawn(watch));
                            continue;
                        }
                        Err(e) => e,
                    }
                }
                Phase::Watching(watching) => {
                    let local = async { Err(swept(&self.local).await) };
                    let message = async { Ok(watching.messages.recv().await) };
                    match smol::future::or(local, message).await {
                        Err(changes) => {
                            self.phase = Phase::Watching(watching);
                            return Batch {
                                changes,
                                read_at: None,
                                swept: true,
                            };
                        }
                        Ok(Ok(Ok(Message::Events { events, .. }))) => {
                            let now = Instant::now();
                            let (changes, chores) = lock(&store.core.known).events(&events, now);
                            for chore in chores {
                                self.writer.chore(chore);
                            }
                            self.phase = Phase::Watching(watching);
                            if !changes.is_empty() {
                                return Batch::etcd(changes, None);
                            }
                            continue;
                        }
                        Ok(Ok(Ok(_))) => {
                            self.phase = Phase::Watching(watching);
                            continue;
                        }
                        Ok(Ok(Err(e))) => e,
                        Ok(Err(_)) => EtcdError::Unreachable("watch reader stopped".into()),
                    }
                }
            };
            store.set_link(false, &failed.to_string());
            let jitter = self.backoff.mul_f64(fastrand::f64() * 0.5);
            self.phase = Phase::Wait(Instant::now() + self.backoff + jitter);
            self.backoff = (self.backoff * 2).min(BACKOFF.1);
        }
    }
}

impl Batch {
    /// How many instances applying the batch expired here (for `mini_expired_total`).
    pub fn expired(&self, applied: &Applied) -> usize {
        let removed = |o: &&Outcome| **o == Outcome::Removed(true);
        match self.swept {
            true => applied.outcomes.iter().filter(removed).count(),
            false => 0,
        }
    }

    /// Logs what applying the batch did to the local copy.
    pub fn log(&self, applied: &Applied) {
        let mut lines = log::Lines::new("registry");
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
                (Change::Remove { service, addr }, Outcome::Removed(true)) if self.swept => {
                    format!("{service} {addr} expired: no heartbeat within its lease")
                }
                (Change::Remove { service, addr }, Outcome::Removed(true)) => format!(
                    "{service} {addr} removed (deregistered, or expired by or with its owner in etcd)"
                ),
                (Change::Health { service, addr, ok }, Outcome::Health(true)) => {
                    let what = if *ok { "restored" } else { "excluded" };
                    format!("{service} {addr} {what} (health from etcd)")
                }
                _ => continue,
            };
            lines.add(format_args!("{line}"));
        }
        lines.flush();
    }
}
