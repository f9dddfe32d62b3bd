//! Lease-based leader election: whoever creates the election key (in a txn that succeeds only if
//! the key is absent) leads while its lease lives.
//!
//! Each campaigner keeps one session lease of `ttl` alive, renewing it several times per TTL, and
//! tries the create at the same pace while it does not lead. When the leader dies its lease expires
//! after at most `ttl`, etcd deletes the key, and the next attempt of another campaigner (within one
//! period) takes over. A leader that cannot renew its lease stops calling itself leader before the
//! lease can have expired (after half a TTL without a successful renewal), so two leaders never act
//! at once as long as clocks run at similar speeds.

use super::Etcd;
use crate::log;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Shortest and longest time between two rounds (a quarter of the TTL in between).
const PERIOD_BOUNDS: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(1));

/// One campaigner for one election key.
#[derive(Debug)]
pub struct Election {
    etcd: Arc<Etcd>,
    key: Vec<u8>,
    id: String,
    ttl: Duration,
    leader: AtomicBool,
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
            renewed: Mutex::new(None),
        }
    }

    /// Whether this campaigner leads now: it won, and renewed its lease within half a TTL.
    pub fn is_leader(&self) -> bool {
        let fresh = self
            .renewed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|at| at.elapsed() < self.ttl / 2);
        self.leader.load(Ordering::Relaxed) && fresh
    }

    /// This campaigner's name, the election key's value while it leads.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn set_leader(&self, now_leader: bool, why: &str) {
        let was = self.leader.swap(now_leader, Ordering::Relaxed);
        if was != now_leader {
            let what = if now_leader { "became" } else { "is no longer" };
            log::line(
                "registry",
                format_args!("{} {what} the probing leader ({why})", self.id),
            );
        }
    }

    /// Campaigns forever.
    pub async fn run(self: Arc<Self>) {
        let period = (self.ttl / 4).clamp(PERIOD_BOUNDS.0, PERIOD_BOUNDS.1);
        let mut lease = 0;
        loop {
            match self.round(lease).await {
                Ok(l) => lease = l,
                Err(why) => {
                    self.set_leader(false, &why);
                    lease = 0;
                }
            }
            smol::Timer::after(period).await;
        }
    }

    /// One round: keep the session lease alive (or get a new one), then try to lead.
    async fn round(&self, lease: i64) -> Result<i64, String> {
        let ttl_secs = self.ttl.as_secs() as i64;
        let lease = match lease {
            0 => {
                self.etcd
                    .grant(ttl_secs)
                    .await
                    .map_err(|e| e.to_string())?
                    .id
            }
            id => match self.etcd.keepalive(id).await.map_err(|e| e.to_string())? {
                Some(_) => id,
                None => return Err("session lease expired".into()),
            },
        };
        *self.renewed.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        let (created, existing) = self
            .etcd
            .create_if_absent(&self.key, self.id.as_bytes(), lease)
            .await
            .map_err(|e| e.to_string())?;
        let mine = created
            || existing.is_some_and(|kv| kv.value == self.id.as_bytes() && kv.lease == lease);
        self.set_leader(
            mine,
            if created {
                "won the election"
            } else {
                "another registry leads"
            },
        );
        Ok(lease)
    }
}
