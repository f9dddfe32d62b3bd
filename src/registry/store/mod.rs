//! Where registrations live: the registry's own memory (the default) or etcd, shared by a fleet of
//! registries. [`crate::registry::Shared`] is the one driver: it applies every change to the local
//! state and writes it here; routes and the prober never learn which store is in use.
//!
//! In both modes [`super::state::Registry`] is the local copy that picks and listings read, so a
//! lookup never waits on the network. What differs is where writes go and who expires leases:
//!
//! | | memory | etcd |
//! |---|---|---|
//! | register / deregister | applied to the local state only | applied locally at once and written to etcd in a batched txn; the watch brings other registries' writes |
//! | renew (a beat) | the local state | the local state only, whichever registry owns the key: etcd hears of changes, not beats |
//! | lease expiry | the local sweeper | the sweep of the registry that owns the key (deletes it); a dead owner's keys go with its session lease, and a registry that still hears the instance re-owns it |
//! | probing | this registry | only the election's leader, which writes health into etcd |
//!
//! A store never sees the state or [`crate::registry::Shared`]: its writes return results, and
//! what etcd sends comes out of a [`Feed`] as [`super::state::Change`]s for the driver to apply.
//! Imports go one way: `crate::etcd` ← `registry::store` ← `registry`.

mod etcd;
mod etcd_keys;
mod known;
mod writer;

pub use etcd::{Batch, EtcdStore, Feed};

use super::state::{Record, RegisterError};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Longest a stopping registry waits for etcd to take its resignation; past it the leadership
/// lapses with its lease instead.
pub const RESIGN_TIMEOUT: Duration = Duration::from_secs(3);

/// Which store a registry was told to use (`--store`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StoreConfig {
    /// This registry's memory only.
    #[default]
    Memory,
    /// etcd, at these member `host:port` addresses.
    Etcd(Vec<String>),
}

/// The store in use.
#[derive(Debug)]
pub enum Store {
    /// The local state is the store.
    Memory,
    /// etcd is the store; the local state is a copy fed by a watch.
    Etcd(Arc<EtcdStore>),
}

/// Why a write was not done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The registration breaks a rule or a limit (400 or 429).
    Refused(RegisterError),
    /// The store cannot take writes now (503): etcd is unreachable or failed.
    Unavailable(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Refused(e) => e.fmt(f),
            StoreError::Unavailable(why) => write!(f, "store unavailable, not recorded: {why}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl Store {
    /// Opens the configured store; `id` names this registry in etcd, `ttl` is its election lease
    /// (a dead leader is replaced within about one `ttl`) and `session` its session lease (its keys
    /// outlive it by at most that; see `Config::session_ttl`).
    pub fn open(config: &StoreConfig, id: String, ttl: Duration, session: Duration) -> Store {
        match config {
            StoreConfig::Memory => Store::Memory,
            StoreConfig::Etcd(endpoints) => Store::Etcd(Arc::new(EtcdStore::new(
                endpoints.clone(),
                id,
                ttl,
                session,
            ))),
        }
    }

    /// Starts the store's background work (etcd: the election) and returns the feed of changes the
    /// driver must apply to the local copy (etcd: its reads and watch), if the store has one.
    pub fn start(&self) -> Option<Feed> {
        match self {
            Store::Memory => None,
            Store::Etcd(store) => Some(store.start()),
        }
    }

    /// Whether writes go anywhere beyond the local state (etcd): only then does [`Store::put`] need
    /// the record it is given.
    pub fn is_shared(&self) -> bool {
        matches!(self, Store::Etcd(_))
    }

    /// Writes a registration, renewal or drain mark of `addr` under `service`, already applied
    /// locally: `record` is what the local state now holds, `changed` whether its spec or drain mark
    /// moved (etcd: a plain renewal of a key it has writes nothing and answers without waiting; a
    /// change is written even for a known key). Returns whether the store created the key (memory:
    /// nothing to write).
    pub async fn put(
        &self,
        service: &str,
        addr: &str,
        record: &Record,
        changed: bool,
    ) -> Result<bool, StoreError> {
        match self {
            Store::Memory => Ok(false),
            Store::Etcd(store) => store.put(service, addr, record, changed).await,
        }
    }

    /// Deletes `addr` from `service`; returns whether the store had it (memory: nothing to delete).
    pub async fn delete(&self, service: &str, addr: &str) -> Result<bool, StoreError> {
        match self {
            Store::Memory => Ok(false),
            Store::Etcd(store) => store.delete(service, addr).await,
        }
    }

    /// Records a health flip already applied locally, for every registry that shares the store.
    pub async fn write_health(
        &self,
        service: &str,
        addr: &str,
        ok: bool,
    ) -> Result<(), StoreError> {
        match self {
            Store::Memory => Ok(()),
            Store::Etcd(store) => store.write_health(service, addr, ok).await,
        }
    }

    /// Whether this registry should run probe rounds now (etcd: only the elected one).
    pub fn probes(&self) -> bool {
        match self {
            Store::Memory => true,
            Store::Etcd(store) => store.is_leader(),
        }
    }

    /// Whether the registry's own sweep loop expires leases (in etcd mode the store's sweep does,
    /// for the keys this registry owns).
    pub fn sweeps(&self) -> bool {
        matches!(self, Store::Memory)
    }

    /// Why answers may be stale right now (etcd unreachable), if they may.
    pub fn degraded(&self) -> Option<String> {
        match self {
            Store::Memory => None,
            Store::Etcd(store) => store.degraded(),
        }
    }

    /// Stops the store's background work; with etcd, gives up leadership at once (within
    /// [`RESIGN_TIMEOUT`]) so another registry takes over probing at its next election attempt.
    pub async fn stop(&self) {
        if let Store::Etcd(store) = self {
            crate::rt::timeout(RESIGN_TIMEOUT, store.resign()).await;
        }
    }
}
