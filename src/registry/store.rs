//! Where registrations live: the registry's own memory (the default) or etcd, shared by a fleet of
//! registries. Routes and the prober go through [`Store`] and never learn which is in use.
//!
//! In both modes [`super::state::Registry`] is the local copy that picks and listings read, so a
//! lookup never waits on the network. What differs is where writes go and who expires leases:
//!
//! | | memory | etcd |
//! |---|---|---|
//! | register / renew / deregister | applied to the local state | written to etcd (and applied locally at once); the watch brings other registries' writes |
//! | lease expiry | the local sweeper | etcd's lease; the watch brings the deletion |
//! | probing | this registry | only the election's leader, which writes health into etcd |

use super::state::{RegisterError, Registered, Target};
use super::Shared;
use crate::etcd::registry::Backend;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

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
    Etcd(Arc<Backend>),
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
    /// Opens the configured store; `id` names this registry in etcd's election, `ttl` is the
    /// election lease (a dead leader is replaced within about one `ttl`).
    pub fn open(config: &StoreConfig, id: String, ttl: Duration) -> Store {
        match config {
            StoreConfig::Memory => Store::Memory,
            StoreConfig::Etcd(endpoints) => {
                Store::Etcd(Arc::new(Backend::new(endpoints.clone(), id, ttl)))
            }
        }
    }

    /// Starts the store's background work (etcd: the watch and the election).
    pub fn start(&self, shared: &Arc<Shared>) {
        if let Store::Etcd(backend) = self {
            backend.start(shared.clone());
        }
    }

    /// `memory` or `etcd`.
    pub fn name(&self) -> &'static str {
        match self {
            Store::Memory => "memory",
            Store::Etcd(_) => "etcd",
        }
    }

    /// Registers or renews `addr` under `service` with a lease of `ttl`.
    pub async fn register(
        &self,
        shared: &Shared,
        service: &str,
        addr: &str,
        ttl: Duration,
    ) -> Result<Registered, StoreError> {
        match self {
            Store::Memory => shared
                .register(service, addr, ttl)
                .map_err(StoreError::Refused),
            Store::Etcd(b) => b.register(shared, service, addr, ttl).await,
        }
    }

    /// Deregisters `addr` from `service`; whether it was registered.
    pub async fn deregister(
        &self,
        shared: &Shared,
        service: &str,
        addr: &str,
    ) -> Result<bool, StoreError> {
        match self {
            Store::Memory => Ok(shared.deregister(service, addr)),
            Store::Etcd(b) => b.deregister(shared, service, addr).await,
        }
    }

    /// Records one probe result; whether the instance's health flipped.
    pub async fn record_probe(&self, shared: &Shared, target: &Target, ok: bool) -> bool {
        match self {
            Store::Memory => shared.mark_probe(&target.service, &target.addr, ok),
            Store::Etcd(b) => b.record_probe(shared, target, ok).await,
        }
    }

    /// Whether this registry should run probe rounds now (etcd: only the elected one).
    pub fn probes(&self) -> bool {
        match self {
            Store::Memory => true,
            Store::Etcd(b) => b.is_leader(),
        }
    }

    /// Whether this registry expires leases itself (etcd expires them in etcd mode).
    pub fn sweeps(&self) -> bool {
        matches!(self, Store::Memory)
    }

    /// Why answers may be stale right now (etcd unreachable), if they may.
    pub fn degraded(&self) -> Option<String> {
        match self {
            Store::Memory => None,
            Store::Etcd(b) => b.degraded(),
        }
    }
}
