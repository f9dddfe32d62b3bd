//! This registry's writes of instance keys: one session lease that every key it owns is attached
//! to, and lanes that batch writes into txns.
//!
//! - **Session.** One lease per registry process (`registry::Config::session_ttl`: the shorter of
//!   `--ttl` and the probe bound, 7 s by default), granted at start and kept alive every third of
//!   it ([`Core::keep_session`]): one request per registry per TTL/3, however many instances it
//!   owns. If etcd lets it lapse (this registry was cut off longer than a TTL), the next write gets
//!   a new one; the deletions of the old one's keys come back as watch events and the instances
//!   that still beat here are re-owned ([`super::known`]).
//! - **Lanes.** [`LANES`] tasks, each taking the writes of its share of the keys (by hash, so the
//!   writes of one key stay in order) and sending them as one txn: everything queued when the lane
//!   is free; while the txn is smaller than the lane's previous one, one sleep until [`LINGER`]
//!   after its first write and then what queued meanwhile; up to [`MAX_TXN_OPS`] operations and
//!   never one key twice. Registrations and deregistrations reply when their txn is applied; chores
//!   (re-owns, expiries) reply to no one and are checked again just before they are sent.

use super::etcd_keys::{self, instance_value, DEREGISTERED, EXCLUDED};
use super::known::{Chore, Known};
use crate::etcd::{Etcd, EtcdError, TxnOp, MAX_TXN_OPS};
use crate::log;
use crate::registry::state::Record;
use crate::rt::lock;
use smol::channel::{self, Receiver, Sender};
use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Write lanes per registry: txns in flight at once. Measured at 100 000 registrations through two
/// registries (ARCHITECTURE.md): one lane makes the largest txns and the least CPU per registration
/// but leaves etcd idle during each round trip; four make small txns that cost etcd more. Two.
pub const LANES: usize = 2;
/// Longest a lane waits to fill a txn up to the size of its previous one: under load txns stay
/// large, and a lone write (after a txn of one) waits not at all. It sleeps once for it rather than
/// waking for each write that arrives meanwhile (a timer and a wake-up per write before).
pub const LINGER: Duration = Duration::from_millis(2);
/// Longest wait before retrying a failed keepalive or grant of the session lease.
const SESSION_RETRY: Duration = Duration::from_millis(500);

/// What the store's tasks share: the etcd client, what is known of every instance key, and the
/// session lease.
#[derive(Debug)]
pub struct Core {
    /// The client.
    pub etcd: Arc<Etcd>,
    /// What is known of every instance key.
    pub known: Mutex<Known>,
    /// This registry's name (logs, the deregistration marker).
    pub id: String,
    /// TTL of the session lease, in whole seconds.
    ttl_secs: i64,
    /// The session lease (0: none yet, or lost).
    session: AtomicI64,
    /// Held while granting, so concurrent writers wait for one grant.
    granting: smol::lock::Mutex<()>,
}

impl Core {
    /// A core on `etcd`, named `id`, with a session lease of `ttl`.
    pub fn new(etcd: Arc<Etcd>, id: String, ttl: Duration) -> Core {
        Core {
            etcd,
            known: Mutex::default(),
            id,
            ttl_secs: etcd_keys::lease_secs(ttl),
            session: AtomicI64::new(0),
            granting: smol::lock::Mutex::new(()),
        }
    }

    /// The session lease as far as this registry knows (0: none).
    pub fn session(&self) -> i64 {
        self.session.load(Ordering::Relaxed)
    }

    /// The session lease, granting one if there is none.
    async fn lease(&self) -> Result<i64, EtcdError> {
        if let id @ 1.. = self.session() {
            return Ok(id);
        }
        let _one = self.granting.lock().await;
        if let id @ 1.. = self.session() {
            return Ok(id);
        }
        let id = self.etcd.grant(self.ttl_secs).await?;
        self.session.store(id, Ordering::Relaxed);
        log::line(
            "registry",
            format_args!(
                "{} owns the instances that beat to it under etcd session lease {id} (TTL {}s)",
                self.id, self.ttl_secs
            ),
        );
        Ok(id)
    }

    /// Forgets the session lease `id` (etcd no longer has it); the next write gets a new one.
    fn lost(&self, id: i64) {
        let _ = (self.session).compare_exchange(id, 0, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Keeps the session lease alive forever: a keepalive every TTL/3, a new lease when etcd lost it.
    pub async fn keep_session(self: Arc<Self>) {
        let period = Duration::from_secs(self.ttl_secs as u64) / 3;
        loop {
            let ok = match self.session() {
                0 => self.lease().await.is_ok(),
                id => match self.etcd.keepalive(id).await {
                    Ok(Some(_)) => true,
                    Ok(None) => {
                        log::line(
                            "registry",
                            format_args!("{}: etcd session lease {id} expired", self.id),
                        );
                        self.lost(id);
                        self.lease().await.is_ok()
                    }
                    Err(_) => false,
                },
            };
            smol::Timer::after(if ok {
                period
            } else {
                period.min(SESSION_RETRY)
            })
            .await;
        }
    }
}

/// One write for a lane.
#[derive(Debug)]
pub enum Write {
    /// A registration, or a beat whose value changed: put the key on this registry's lease, alive
    /// until `until`.
    Register {
        /// The service.
        service: String,
        /// The instance.
        addr: String,
        /// Its value.
        value: Record,
        /// Until when its beat keeps it alive.
        until: Instant,
        /// Whether its health key is put again (on the new lease).
        excluded: bool,
    },
    /// A deregistration: delete the key and its health key, and put [`DEREGISTERED`].
    Deregister {
        /// The service.
        service: String,
        /// The instance.
        addr: String,
    },
    /// A chore.
    Chore(Chore),
}

impl Write {
    fn instance(&self) -> (&str, &str) {
        match self {
            Write::Register { service, addr, .. } | Write::Deregister { service, addr } => {
                (service, addr)
            }
            Write::Chore(c) => c.instance(),
        }
    }

    /// Operations it takes in a txn.
    fn ops(&self) -> usize {
        match self {
            Write::Register { excluded, .. }
            | Write::Chore(Chore::ReOwn { excluded, .. } | Chore::Expire { excluded, .. }) => {
                1 + usize::from(*excluded)
            }
            Write::Deregister { .. } => 2,
        }
    }
}

/// A write and who waits for its result: keys deleted by the key's own operation.
#[derive(Debug)]
struct Job {
    write: Write,
    reply: Option<Sender<Result<i64, EtcdError>>>,
}

/// The lanes' queues.
#[derive(Debug)]
pub struct Writer {
    lanes: Vec<Sender<Job>>,
    hash: RandomState,
}

impl Writer {
    /// Starts the lanes on `core`.
    pub fn start(core: &Arc<Core>) -> Writer {
        let lanes = (0..LANES)
            .map(|_| {
                let (tx, rx) = channel::unbounded();
                crate::rt::spawn(lane(core.clone(), rx)).detach();
                tx
            })
            .collect();
        Writer {
            lanes,
            hash: RandomState::new(),
        }
    }

    fn queue(&self, job: Job) -> bool {
        let (service, addr) = job.write.instance();
        let i = self.hash.hash_one((service, addr)) as usize % self.lanes.len().max(1);
        self.lanes.get(i).is_some_and(|l| l.try_send(job).is_ok())
    }

    /// Sends `write` and waits until etcd applied it: keys its own deletion removed (0 for a put).
    pub async fn request(&self, write: Write) -> Result<i64, EtcdError> {
        let (tx, rx) = channel::bounded(1);
        let job = Job {
            write,
            reply: Some(tx),
        };
        if !self.queue(job) {
            return Err(EtcdError::Unreachable("the store's writer stopped".into()));
        }
        rx.recv()
            .await
            .unwrap_or_else(|_| Err(EtcdError::Unreachable("the store's writer stopped".into())))
    }

    /// Queues a chore; nobody waits for it.
    pub fn chore(&self, chore: Chore) {
        let _ = self.queue(Job {
            write: Write::Chore(chore),
            reply: None,
        });
    }
}

/// One lane: a txn at a time of what its queue holds.
async fn lane(core: Arc<Core>, queue: Receiver<Job>) {
    let mut carried: Option<Job> = None;
    let mut last = 1;
    loop {
        let first = match carried.take() {
            Some(job) => job,
            None => match queue.recv().await {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        let mut batch = Batch::default();
        batch.add(first);
        let linger_until = Instant::now() + LINGER;
        let mut lingered = false;
        while batch.ops < MAX_TXN_OPS {
            let job = match queue.try_recv() {
                Ok(job) => job,
                Err(_) if batch.ops >= last || lingered => break,
                Err(_) => {
                    // One sleep for the rest of the linger, then whatever queued meanwhile: one
                    // wake-up and one timer per txn, not one per job that arrives while it fills.
                    smol::Timer::at(linger_until).await;
                    lingered = true;
                    continue;
                }
            };
            if !batch.fits(&job) {
                carried = Some(job);
                break;
            }
            batch.add(job);
        }
        last = batch.ops;
        batch.send(&core).await;
    }
}

/// Jobs for one txn.
#[derive(Debug, Default)]
struct Batch {
    jobs: Vec<Job>,
    ops: usize,
    /// Hashes of the instances in `jobs`: a key is looked for among the jobs only on a match, so
    /// adding a job copies no string.
    keys: HashSet<u64>,
    hash: RandomState,
    deregisters: bool,
}

impl Batch {
    fn key_hash(&self, job: &Job) -> u64 {
        self.hash.hash_one(job.write.instance())
    }

    /// Whether `job` may join: room left, a key not in the batch yet, and deregistrations only
    /// with deregistrations (the marker says every deletion of its revision is one).
    fn fits(&self, job: &Job) -> bool {
        let deregisters = matches!(job.write, Write::Deregister { .. });
        let instance = job.write.instance();
        let held = self.keys.contains(&self.key_hash(job))
            && self.jobs.iter().any(|j| j.write.instance() == instance);
        self.ops + job.write.ops() + usize::from(deregisters) <= MAX_TXN_OPS
            && deregisters == self.deregisters
            && !held
    }

    fn add(&mut self, job: Job) {
        if self.jobs.is_empty() {
            self.deregisters = matches!(job.write, Write::Deregister { .. });
            self.ops = usize::from(self.deregisters);
        }
        self.keys.insert(self.key_hash(&job));
        self.ops += job.write.ops();
        self.jobs.push(job);
    }

    /// Sends the batch as one txn (again once on a new lease if etcd lost the session lease) and
    /// records and replies what it did.
    async fn send(self, core: &Core) {
        let mut jobs = self.jobs;
        let mut lease = core.lease().await;
        for attempt in 0..2 {
            let session = match lease {
                Ok(id) => id,
                Err(e) => return fail(core, jobs, &e),
            };
            jobs = drop_unwanted(core, jobs, session);
            if jobs.is_empty() {
                return;
            }
            let keys: Vec<(String, String, String)> = (jobs.iter())
                .map(|j| {
                    let (s, a) = j.write.instance();
                    let value = match &j.write {
                        Write::Register { value, .. }
                        | Write::Chore(Chore::ReOwn { value, .. }) => instance_value(value),
                        _ => String::new(),
                    };
                    let health = match j.write.ops() {
                        1 => String::new(), // the instance key alone
                        _ => etcd_keys::health_key(s, a),
                    };
                    (etcd_keys::instance_key(s, a), health, value)
                })
                .collect();
            let mut ops = Vec::with_capacity(jobs.len() * 2 + 1);
            let mut first_op = Vec::with_capacity(jobs.len());
            for (job, (ik, hk, value)) in jobs.iter().zip(&keys) {
                first_op.push(ops.len());
                push_ops(&mut ops, &job.write, ik, hk, value, session);
            }
            if self.deregisters {
                ops.push(TxnOp::Put {
                    key: DEREGISTERED.as_bytes(),
                    value: core.id.as_bytes(),
                    lease: 0,
                });
            }
            match core.etcd.txn(&ops).await {
                Ok(reply) => {
                    let deleted = |i: usize| first_op.get(i).and_then(|&op| reply.deleted.get(op));
                    let deleted: Vec<i64> = (0..jobs.len())
                        .map(|i| deleted(i).copied().unwrap_or(0))
                        .collect();
                    return applied(core, jobs, session, reply.revision, &deleted);
                }
                Err(e) if e.is_lease_not_found() && attempt == 0 => {
                    core.lost(session);
                    lease = core.lease().await;
                }
                Err(e) => return fail(core, jobs, &e),
            }
        }
    }
}

/// Appends the txn operations of one write.
fn push_ops<'a>(
    ops: &mut Vec<TxnOp<'a>>,
    write: &Write,
    ik: &'a str,
    hk: &'a str,
    value: &'a str,
    lease: i64,
) {
    let (ik, hk) = (ik.as_bytes(), hk.as_bytes());
    match write {
        Write::Register { excluded, .. } | Write::Chore(Chore::ReOwn { excluded, .. }) => {
            ops.push(TxnOp::Put {
                key: ik,
                value: value.as_bytes(),
                lease,
            });
            if *excluded {
                ops.push(TxnOp::Put {
                    key: hk,
                    value: EXCLUDED,
                    lease,
                });
            }
        }
        Write::Chore(Chore::Expire { excluded, .. }) => {
            ops.push(TxnOp::Delete { key: ik });
            if *excluded {
                ops.push(TxnOp::Delete { key: hk });
            }
        }
        Write::Deregister { .. } => {
            ops.push(TxnOp::Delete { key: ik });
            ops.push(TxnOp::Delete { key: hk });
        }
    }
}

/// Drops the chores that no longer need doing (a beat came back, someone re-owned first).
fn drop_unwanted(core: &Core, jobs: Vec<Job>, session: i64) -> Vec<Job> {
    let now = Instant::now();
    let mut known = lock(&core.known);
    (jobs.into_iter())
        .filter(|job| match &job.write {
            Write::Chore(c) if !known.wanted(c, now, session) => {
                known.settle(c);
                false
            }
            _ => true,
        })
        .collect()
}

/// Records a txn etcd applied at `rev` and replies to whoever waits.
fn applied(core: &Core, jobs: Vec<Job>, lease: i64, rev: i64, deleted: &[i64]) {
    let mut reowned = Vec::new();
    {
        let now = Instant::now();
        let mut known = lock(&core.known);
        for job in &jobs {
            let (s, a) = job.write.instance();
            match &job.write {
                Write::Register {
                    value,
                    until,
                    excluded,
                    ..
                } => known.wrote(s, a, value, lease, rev, Some(*until), *excluded),
                Write::Chore(
                    c @ Chore::ReOwn {
                        value, excluded, ..
                    },
                ) => {
                    known.wrote(s, a, value, lease, rev, None, *excluded);
                    known.settle(c);
                    reowned.push((s, a));
                }
                Write::Chore(c @ Chore::Expire { .. }) => {
                    // A beat that came back meanwhile: the deletion's event re-owns it.
                    if known.wanted(c, now, lease) {
                        known.deleted(s, a, rev);
                    }
                    known.settle(c);
                }
                Write::Deregister { .. } => known.deleted(s, a, rev),
            }
        }
    }
    for (s, a) in reowned {
        log::line(
            "registry",
            format_args!("{s} {a} re-owned: it left etcd but beats here (session lease {lease})"),
        );
    }
    for (job, n) in jobs.iter().zip(deleted) {
        if let Some(reply) = &job.reply {
            let _ = reply.try_send(Ok(*n));
        }
    }
}

/// A txn that failed: chores go back to the sweep, requests hear why.
fn fail(core: &Core, jobs: Vec<Job>, e: &EtcdError) {
    let mut replies = Vec::with_capacity(jobs.len());
    {
        let mut known = lock(&core.known);
        for job in jobs {
            match &job.write {
                Write::Chore(c) => known.settle(c),
                Write::Register { service, addr, .. } => known.abandon(service, addr),
                Write::Deregister { .. } => {}
            }
            replies.extend(job.reply);
        }
    }
    for reply in replies {
        let _ = reply.try_send(Err(e.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register(addr: &str, excluded: bool) -> Job {
        Job {
            write: Write::Register {
                service: "add".into(),
                addr: addr.into(),
                value: Record {
                    ttl: Duration::from_secs(2),
                    ..Record::default()
                },
                until: Instant::now(),
                excluded,
            },
            reply: None,
        }
    }

    fn deregister(addr: &str) -> Job {
        Job {
            write: Write::Deregister {
                service: "add".into(),
                addr: addr.into(),
            },
            reply: None,
        }
    }

    #[test]
    fn a_batch_stays_within_etcds_txn_limit_and_never_holds_a_key_twice() {
        let mut batch = Batch::default();
        batch.add(register("h:0", true)); // the instance key and its health key
        assert_eq!(batch.ops, 2);
        assert!(!batch.fits(&register("h:0", false)), "one key twice");
        assert!(
            !batch.fits(&deregister("h:1")),
            "a deregistration among puts"
        );
        for i in 1..MAX_TXN_OPS - 1 {
            assert!(batch.fits(&register(&format!("h:{i}"), false)));
            batch.add(register(&format!("h:{i}"), false));
        }
        assert_eq!(batch.ops, MAX_TXN_OPS);
        assert!(!batch.fits(&register("h:999", false)), "over the limit");
        // Deregistrations go together, with the marker counted once.
        let mut batch = Batch::default();
        batch.add(deregister("h:0"));
        assert_eq!(batch.ops, 3);
        assert!(batch.fits(&deregister("h:1")));
        assert!(!batch.fits(&register("h:2", false)));
    }
}
