//! Lease-based leader election: whoever creates the election key (in a txn that succeeds only if
//! the key is absent) leads while its lease lives.
//!
//! Each campaigner keeps one session lease of `ttl` alive, renewing it several times per TTL, and
//! tries the create at the same pace while it does not lead. When the leader dies its lease expires
//! after at most `ttl`, etcd deletes the key, and the next attempt of another campaigner (within one
//! period) takes over. A leader that stops on purpose [resigns](Election::resign): it deletes the key
//! and revokes its lease, so the next attempt of another campaigner takes over at once instead of
//! after one TTL. A leader that cannot renew its lease stops calling itself leader before the lease
//! can have expired (after half a TTL without a successful renewal), so two leaders never act at once
//! as long as clocks run at similar speeds.

use super::{Etcd, EtcdError};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Shortest and longest time between two rounds (a quarter of the TTL in between).
const PERIOD_BOUNDS: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(1));

/// One campaigner for one election key.
#[derive(Debug)]
pub struct Election {
    etcd: Arc<Etcd>,
    key: Vec<u8>,
    /// The key's value while this campaigner leads.
    id: String,
    ttl: Duration,
    leader: AtomicBool,
    /// The session lease (0: none yet, or lost).
    session: AtomicI64,
    /// When the session lease was last renewed (or granted).
    renewed: Mutex<Option<Instant>>,
}

impl Election {
    /// A campaigner named `id` for `key`, with leases of `ttl` (rounded up to whole seconds).
    pub fn new(etcd: Arc<Etcd>, key: &str, id: String, ttl: Duration) -> Election {
        Election {
            etcd,
            key: key.as_bytes().to_vec(),
            id,
            ttl: Duration::from_secs(ttl.as_secs_f64().ceil().max(1.0) as u64),
            leader: AtomicBool::new(false),
            session: AtomicI64::new(0),
            renewed: Mutex::new(None),
        }
    }

    /// Whether this campaigner leads now: it won, and renewed its lease within half a TTL.
    pub fn is_leader(&self) -> bool {
        let fresh = crate::rt::lock(&self.renewed).is_some_and(|at| at.elapsed() < self.ttl / 2);
        self.leader.load(Ordering::Relaxed) && fresh
    }

    /// The time between two rounds: a quarter of the TTL, within 100 ms and 1 s.
    fn period(&self) -> Duration {
        (self.ttl / 4).clamp(PERIOD_BOUNDS.0, PERIOD_BOUNDS.1)
    }

    fn set_leader(&self, now_leader: bool, why: &str, on_change: &impl Fn(bool, &str)) {
        if self.leader.swap(now_leader, Ordering::Relaxed) != now_leader {
            on_change(now_leader, why);
        }
    }

    /// Campaigns forever, one round per quarter TTL (between 100 ms and 1 s); `on_change` hears every change
    /// of leadership (whether this campaigner now leads, and why). Cancel the task running it before
    /// [`resign`](Election::resign)ing, or a later round may win again.
    pub async fn run(self: Arc<Self>, on_change: impl Fn(bool, &str) + Send) {
        loop {
            match self.round().await {
                Ok((mine, why)) => self.set_leader(mine, why, &on_change),
                Err(why) => {
                    self.set_leader(false, &why, &on_change);
                    self.session.store(0, Ordering::Relaxed);
                }
            }
            smol::Timer::after(self.period()).await;
        }
    }

    /// One round: keep the session lease alive (or get a new one), then try to lead. Returns
    /// whether this campaigner leads, and why.
    async fn round(&self) -> Result<(bool, &'static str), String> {
        let ttl_secs = self.ttl.as_secs() as i64;
        let lease = match self.session.load(Ordering::Relaxed) {
            0 => {
                let id = self.etcd.grant(ttl_secs).await.map_err(|e| e.to_string())?;
                // Known before the create, so a resign that cancels this round still revokes it.
                self.session.store(id, Ordering::Relaxed);
                id
            }
            id => match self.etcd.keepalive(id).await.map_err(|e| e.to_string())? {
                Some(_) => id,
                None => return Err("session lease expired".into()),
            },
        };
        *crate::rt::lock(&self.renewed) = Some(Instant::now());
        let (created, existing) = self
            .etcd
            .create_if_absent(&self.key, self.id.as_bytes(), lease)
            .await
            .map_err(|e| e.to_string())?;
        let mine = created
            || existing.is_some_and(|kv| kv.value == self.id.as_bytes() && kv.lease == lease);
        let why = match created {
            true => "won the election",
            false => "another registry leads",
        };
        Ok((mine, why))
    }

    /// Gives up at once: stops calling itself leader, deletes the election key if it holds this
    /// campaigner's id, and revokes the session lease. Returns whether it led just before.
    pub async fn resign(&self) -> Result<bool, EtcdError> {
        let led = self.leader.swap(false, Ordering::Relaxed);
        let lease = self.session.swap(0, Ordering::Relaxed);
        if lease == 0 {
            return Ok(led);
        }
        self.etcd
            .delete_if_value(&self.key, self.id.as_bytes())
            .await?;
        self.etcd.revoke(lease).await?;
        Ok(led)
    }
}
