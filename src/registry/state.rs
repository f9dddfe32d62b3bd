//! Registration state: which instances are registered under which service, what each says about
//! itself (its [`Spec`]: check, tags, meta, weight), their leases, their health, whether they are
//! draining, and a per-service change index.
//!
//! This module is pure state, with no I/O, no async and no clock of its own:
//! every time-dependent method takes `now: Instant`. Like quinn-proto or h2,
//! keeping protocol state apart from I/O makes it deterministic and cheap to
//! test exhaustively (time is just an argument) and lets the async layer wrap
//! it in one `std::sync::Mutex` that is never held across an `.await`. For
//! that reason every method is quick: register, renew, deregister, drain,
//! probe marking and pick are O(1) or O(log n) (a pick is one weighted draw
//! down a Fenwick tree, see `state/service.rs`, or down a tag's own tree, see
//! `state/tags.rs`); only the periodic sweep, the listings and the fallback of
//! a pick filtered by several tags (over the rarest tag's instances) walk
//! instances.
//!
//! The async layer writes through [`Change`] values and [`Registry::apply`]
//! (in `state/change.rs`), which say what each change did and whose index
//! moved, so watchers are woken after the lock is released.
//!
//! Health follows the flapping protection of hashicorp/consul#868: a failed
//! probe excludes an instance at once, and only a later successful probe
//! restores it. A heartbeat (re-registration) renews the lease but never
//! resets health. An instance with `check=none` is never probed and never
//! excluded: its lease alone decides. Draining is an operator's mark, apart
//! from health: a draining instance stays listed and probed but is never
//! picked; deregistration removes it whatever its marks.

mod change;
mod service;
mod tags;

pub use change::{Applied, Change, Held, Outcome, Record, ResetReport, Snapshot};
pub use service::{Counts, Standing};
pub use tags::TAGGED_TRIES;

use crate::spec::{Check, Spec};
use service::Service;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Default cap on the number of distinct services, so that a client cannot
/// exhaust memory by inventing service names.
pub const DEFAULT_MAX_SERVICES: usize = 1_000;
/// Default cap on the instances of one service.
pub const DEFAULT_MAX_INSTANCES_PER_SERVICE: usize = 100_000;
/// Default cap on the instances of all services together.
pub const DEFAULT_MAX_INSTANCES_TOTAL: usize = 200_000;
/// Longest accepted service name, to bound memory and log lines.
pub const MAX_SERVICE_NAME: usize = crate::proto::MAX_SERVICE_NAME;

/// Lease used when `now + ttl` does not fit in an `Instant` (absurd TTLs).
const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Size caps that bound the registry's memory; they apply to new
/// registrations only, so a renewal always succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum number of distinct services.
    pub max_services: usize,
    /// Maximum number of instances in one service.
    pub max_instances_per_service: usize,
    /// Maximum number of instances in the whole registry.
    pub max_instances_total: usize,
}

impl Default for Limits {
    /// The `DEFAULT_*` constants: generous, yet bounded.
    fn default() -> Self {
        Limits {
            max_services: DEFAULT_MAX_SERVICES,
            max_instances_per_service: DEFAULT_MAX_INSTANCES_PER_SERVICE,
            max_instances_total: DEFAULT_MAX_INSTANCES_TOTAL,
        }
    }
}

/// Whether `name` is a valid service name (the rule of [`crate::proto::ServiceName`]).
pub fn valid_service_name(name: &str) -> bool {
    crate::proto::ServiceName::is_valid(name)
}

/// The outcome of one probe, kept so operators can see why an instance is
/// excluded and when it was last checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeRecord {
    /// When the probe finished.
    pub at: Instant,
    /// Whether the instance answered correctly.
    pub ok: bool,
}

/// One registered instance of a service: what it says about itself, its lease, its health.
#[derive(Debug, Clone)]
pub struct Instance {
    /// The instance's address, `HOST:PORT`, shared with the lookup map.
    pub addr: Arc<str>,
    /// Its check, tags, meta and weight; shared by instances registered alike, and kept (not
    /// reallocated) by a renewal that says the same.
    pub spec: Arc<Spec>,
    /// When the instance last registered or renewed.
    pub last_beat: Instant,
    /// The lease length asked for by the last heartbeat.
    pub ttl: Duration,
    /// When the lease runs out unless renewed.
    pub expires_at: Instant,
    /// The latest probe result, if any probe ran yet.
    pub last_probe: Option<ProbeRecord>,
    /// Whether a failed probe excluded the instance from picks.
    pub excluded: bool,
    /// Whether it is marked draining: listed and probed, never picked.
    pub draining: bool,
    /// How many times `pick` returned this instance.
    pub picks: u64,
}

impl Instance {
    /// Whether its probes pass: it is not excluded by a probe (it may still be draining).
    pub fn healthy(&self) -> bool {
        !self.excluded
    }

    /// Whether a pick may return it: not excluded and not draining.
    pub fn pickable(&self) -> bool {
        !self.excluded && !self.draining
    }

    /// How it counts in listings and metrics.
    pub fn standing(&self) -> Standing {
        if self.draining {
            Standing::Draining
        } else if self.excluded {
            Standing::Excluded
        } else {
            Standing::Healthy
        }
    }

    /// Its share of picks: the spec's weight while pickable, else 0.
    pub fn weight(&self) -> u32 {
        if self.pickable() {
            u32::from(self.spec.weight)
        } else {
            0
        }
    }
}

/// What a successful [`Registry::register`] did, so callers can log and
/// answer `201` versus `200`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    /// The instance was not registered before.
    New,
    /// The instance was registered; its lease was renewed and nothing else changed.
    Renewed,
    /// The instance was registered; its lease was renewed and its spec (or, from a store, its drain
    /// mark) changed: a change, which moves the index.
    Updated,
}

/// Why a registration was refused; each maps to a client error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterError {
    /// The service name fails [`valid_service_name`].
    BadServiceName,
    /// A new service would exceed [`Limits::max_services`].
    TooManyServices {
        /// The limit.
        max: usize,
    },
    /// The service already has [`Limits::max_instances_per_service`].
    ServiceFull {
        /// The limit.
        max: usize,
    },
    /// The registry already has [`Limits::max_instances_total`].
    RegistryFull {
        /// The limit.
        max: usize,
    },
}

impl fmt::Display for RegisterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegisterError::BadServiceName => write!(
                f,
                "bad service name (1 to {MAX_SERVICE_NAME} characters of A-Z a-z 0-9 . _ -)"
            ),
            RegisterError::TooManyServices { max } => write!(f, "too many services (max {max})"),
            RegisterError::ServiceFull { max } => write!(f, "service is full ({max} instances)"),
            RegisterError::RegistryFull { max } => {
                write!(f, "registry is full ({max} instances)")
            }
        }
    }
}

impl std::error::Error for RegisterError {}

/// A one-line view of a service for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSummary {
    /// The service name.
    pub name: String,
    /// Instances that may be picked (neither excluded nor draining).
    pub live: usize,
    /// All registered instances.
    pub total: usize,
    /// The service's change index.
    pub index: u64,
    /// Picks handed out for the service since it was created (a counter for metrics).
    pub picks: u64,
    /// Instances excluded by a probe (not draining).
    pub excluded: usize,
    /// Instances marked draining.
    pub draining: usize,
}

/// An instance to probe (or one that expired): enough to find it again with
/// [`Registry::mark_probe`] without holding the lock while probing, and how to check it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The service the instance is registered under.
    pub service: String,
    /// The instance's address.
    pub addr: Arc<str>,
    /// Its spec (the check to run).
    pub spec: Arc<Spec>,
}

/// `now + ttl`, without panicking on absurd TTLs.
pub(crate) fn deadline(now: Instant, ttl: Duration) -> Instant {
    now.checked_add(ttl)
        .or_else(|| now.checked_add(FAR_FUTURE))
        .unwrap_or(now)
}

/// The registry's registration state: services, their instances, leases,
/// health and change indexes. Pure data; the caller supplies time and
/// randomness, and does the I/O.
///
/// ```
/// use mini::registry::state::{Limits, Registry};
/// use std::time::{Duration, Instant};
///
/// let mut reg = Registry::new(Limits::default());
/// let now = Instant::now();
/// reg.register("add", "127.0.0.1:9001", Duration::from_secs(10), now)?;
/// let mut rng = fastrand::Rng::with_seed(7);
/// assert_eq!(reg.pick("add", &mut rng).as_deref(), Some("127.0.0.1:9001"));
/// assert!(reg.mark_probe("add", "127.0.0.1:9001", false, now)); // excluded
/// assert_eq!(reg.pick("add", &mut rng), None);
/// # Ok::<(), mini::registry::state::RegisterError>(())
/// ```
#[derive(Debug)]
pub struct Registry {
    limits: Limits,
    services: HashMap<String, Service>,
    total: usize,
    /// Registry-wide change counter: a service's index is set from it, so an
    /// index never goes back, even across removal and re-creation.
    counter: u64,
    /// The spec of every instance that gave none (`POST /registerList`): one allocation for all.
    default_spec: Arc<Spec>,
}

impl Registry {
    /// An empty registry bounded by `limits`.
    pub fn new(limits: Limits) -> Self {
        Registry {
            limits,
            services: HashMap::new(),
            total: 0,
            counter: 0,
            default_spec: Arc::default(),
        }
    }

    /// Registers `addr` under `service` with a lease of `ttl` from `now`, or
    /// renews it if present, keeping its spec (a new instance gets the
    /// default spec). A renewal updates `last_beat`, `ttl` and `expires_at`
    /// only: it keeps health (flapping protection), probe record, drain mark
    /// and pick count, does not bump the index, and ignores the limits.
    pub fn register(
        &mut self,
        service: &str,
        addr: &str,
        ttl: Duration,
        now: Instant,
    ) -> Result<Registered, RegisterError> {
        self.upsert(service, addr, ttl, None, None, now)
    }

    /// [`Registry::register`] that also sets the spec (when `Some`) and the drain mark (when
    /// `Some`). A renewal that changes either is [`Registered::Updated`] and bumps the index; one
    /// with an equal spec keeps the spec it holds (no new allocation is kept). Switching to
    /// `check=none` clears an exclusion, since no probe will ever restore it.
    pub fn upsert(
        &mut self,
        service: &str,
        addr: &str,
        ttl: Duration,
        spec: Option<&Arc<Spec>>,
        draining: Option<bool>,
        now: Instant,
    ) -> Result<Registered, RegisterError> {
        if !valid_service_name(service) {
            return Err(RegisterError::BadServiceName);
        }
        let expires_at = deadline(now, ttl);
        let default = &self.default_spec;
        if let Some(svc) = self.services.get_mut(service) {
            if let Some(i) = svc.position(addr) {
                let new_spec = spec
                    .filter(|s| svc.slots.get(i).is_some_and(|x| *x.spec != ***s))
                    .map(|s| svc.share(s, default));
                let mut changed = false;
                if let Some(spec) = new_spec {
                    changed = svc.set_spec(i, spec).is_some();
                }
                let changed = svc.edit(i, |inst| {
                    inst.last_beat = now;
                    inst.ttl = ttl;
                    inst.expires_at = expires_at;
                    if let Some(d) = draining.filter(|d| *d != inst.draining) {
                        inst.draining = d;
                        changed = true;
                    }
                    changed
                });
                if changed != Some(true) {
                    return Ok(Registered::Renewed);
                }
                self.counter += 1;
                svc.index = self.counter;
                return Ok(Registered::Updated);
            }
        }
        self.check_limits(service)?;
        if !self.services.contains_key(service) {
            self.services.insert(service.to_owned(), Service::default());
        }
        let Some(svc) = self.services.get_mut(service) else {
            return Ok(Registered::New); // inserted just above
        };
        let spec = svc.share(spec.unwrap_or(&self.default_spec), &self.default_spec);
        svc.push(Instance {
            addr: Arc::from(addr),
            spec,
            last_beat: now,
            ttl,
            expires_at,
            last_probe: None,
            excluded: false,
            draining: draining.unwrap_or(false),
            picks: 0,
        });
        self.counter += 1;
        svc.index = self.counter;
        self.total += 1;
        Ok(Registered::New)
    }

    fn check_limits(&self, service: &str) -> Result<(), RegisterError> {
        let l = &self.limits;
        let in_service = match self.services.get(service) {
            Some(s) => s.slots.len(),
            None if self.services.len() >= l.max_services => {
                return Err(RegisterError::TooManyServices {
                    max: l.max_services,
                })
            }
            None => 0,
        };
        if in_service >= l.max_instances_per_service {
            return Err(RegisterError::ServiceFull {
                max: l.max_instances_per_service,
            });
        }
        if self.total >= l.max_instances_total {
            return Err(RegisterError::RegistryFull {
                max: l.max_instances_total,
            });
        }
        Ok(())
    }

    /// Removes `addr` from `service`; returns whether it was registered.
    /// Drops the service entry when it becomes empty, so abandoned names do
    /// not count against [`Limits::max_services`].
    pub fn deregister(&mut self, service: &str, addr: &str) -> bool {
        let Some(svc) = self.services.get_mut(service) else {
            return false;
        };
        if svc.remove(addr).is_none() {
            return false;
        }
        self.counter += 1;
        svc.index = self.counter;
        self.total -= 1;
        if svc.slots.is_empty() {
            self.services.remove(service);
        }
        true
    }

    /// Marks `addr` draining (or not): `None` if it is not registered (a drain never creates an
    /// instance, so a deregistration always wins), else whether the mark flipped (and only then
    /// bumps the index). O(log n).
    pub fn set_draining(&mut self, service: &str, addr: &str, draining: bool) -> Option<bool> {
        let svc = self.services.get_mut(service)?;
        let i = svc.position(addr)?;
        let changed = svc.edit(i, |inst| {
            std::mem::replace(&mut inst.draining, draining) != draining
        })?;
        if changed {
            self.counter += 1;
            svc.index = self.counter;
        }
        Some(changed)
    }

    /// Removes every instance whose lease ran out (`expires_at <= now`) and
    /// returns them, for logging. Drops services left empty. O(instances),
    /// meant for a periodic sweep.
    pub fn expire(&mut self, now: Instant) -> Vec<Target> {
        let mut expired = Vec::new();
        let mut gone = Vec::new();
        for (name, svc) in &mut self.services {
            svc.expire(now, &mut gone);
            if gone.is_empty() {
                continue;
            }
            self.counter += 1;
            svc.index = self.counter;
            self.total -= gone.len();
            expired.extend(gone.drain(..).map(|inst| Target {
                service: name.clone(),
                addr: inst.addr,
                spec: inst.spec,
            }));
        }
        self.services.retain(|_, svc| !svc.slots.is_empty());
        expired
    }

    /// Every instance to probe, healthy or excluded (excluded ones must be probed too, since only a
    /// successful probe restores them), draining or not; not those with `check=none` or `ttl`.
    pub fn probe_targets(&self) -> Vec<Target> {
        let mut targets = Vec::with_capacity(self.total);
        for (name, svc) in &self.services {
            let probed =
                (svc.slots.iter()).filter(|i| !matches!(i.spec.check, Check::None | Check::Ttl));
            targets.extend(probed.map(|inst| Target {
                service: name.clone(),
                addr: inst.addr.clone(),
                spec: inst.spec.clone(),
            }));
        }
        targets
    }

    /// Records a probe result: `ok == false` excludes the instance from
    /// picks, `ok == true` restores it. Returns whether its health changed
    /// (and only then bumps the index). An unknown instance (deregistered
    /// while the probe ran) is ignored and yields `false`, and so is an
    /// instance with `check=none` (its lease alone decides).
    pub fn mark_probe(&mut self, service: &str, addr: &str, ok: bool, now: Instant) -> bool {
        let Some(svc) = self.services.get_mut(service) else {
            return false;
        };
        let Some(i) = svc.position(addr) else {
            return false;
        };
        let flipped = svc.edit(i, |inst| {
            if inst.spec.check == Check::None {
                return false;
            }
            inst.last_probe = Some(ProbeRecord { at: now, ok });
            let flips = inst.healthy() != ok;
            inst.excluded = !ok;
            flips
        });
        if flipped != Some(true) {
            return false;
        }
        self.counter += 1;
        svc.index = self.counter;
        true
    }

    /// A pickable instance of `service` (neither excluded nor draining), drawn with probability
    /// proportional to its weight (uniform when weights are equal), or `None` if there is none.
    /// Counts the pick on the instance. O(log n): one draw down the service's weight tree.
    pub fn pick(&mut self, service: &str, rng: &mut fastrand::Rng) -> Option<Arc<str>> {
        self.pick_tagged::<&str>(service, &[], rng)
    }

    /// [`Registry::pick`] among the instances carrying every tag in `tags` (all of them when `tags`
    /// is empty). One tag: one weighted draw among the instances carrying it, O(log m). Several: a
    /// few draws among those carrying the rarest, then a weighted scan of those as a fallback: see
    /// [`TAGGED_TRIES`] for how often it runs.
    pub fn pick_tagged<S: AsRef<str>>(
        &mut self,
        service: &str,
        tags: &[S],
        rng: &mut fastrand::Rng,
    ) -> Option<Arc<str>> {
        let svc = self.services.get_mut(service)?;
        let i = svc.pick_tagged(tags, rng)?;
        svc.picks = svc.picks.saturating_add(1);
        let inst = svc.slots.get_mut(i)?;
        inst.picks = inst.picks.saturating_add(1);
        Some(inst.addr.clone())
    }

    /// What a store keeps of `addr` in `service` (its lease, spec and drain mark), if registered.
    pub fn record(&self, service: &str, addr: &str) -> Option<Record> {
        let inst = self.services.get(service)?.get(addr)?;
        Some(Record {
            ttl: inst.ttl,
            spec: inst.spec.clone(),
            draining: inst.draining,
        })
    }

    /// The service holding `addr`, the first by name when several do: one hash lookup per service,
    /// so O(services) (at most [`Limits::max_services`]), whatever the number of instances.
    pub fn service_of(&self, addr: &str) -> Option<&str> {
        self.services
            .iter()
            .filter(|(_, svc)| svc.position(addr).is_some())
            .map(|(name, _)| name.as_str())
            .min()
    }

    /// A summary of every service, sorted by name, for listings.
    pub fn services(&self) -> Vec<ServiceSummary> {
        let mut out: Vec<ServiceSummary> = self
            .services
            .iter()
            .map(|(name, svc)| ServiceSummary {
                name: name.clone(),
                live: svc.counts.healthy,
                total: svc.slots.len(),
                index: svc.index,
                picks: svc.picks,
                excluded: svc.counts.excluded,
                draining: svc.counts.draining,
            })
            .collect();
        out.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// A snapshot of the instances of `service`, sorted by address, or `None`
    /// if the service is unknown.
    pub fn instances(&self, service: &str) -> Option<Vec<Instance>> {
        let mut out = self.services.get(service)?.slots.clone();
        out.sort_unstable_by(|a, b| a.addr.cmp(&b.addr));
        Some(out)
    }

    /// The instances of `service` as stored (unsorted) and its index, borrowed, for the doors that
    /// render them under the lock without copying.
    pub fn service_view(&self, service: &str) -> Option<(&[Instance], u64)> {
        self.services
            .get(service)
            .map(|s| (s.slots.as_slice(), s.index))
    }

    /// The service named `name` ignoring ASCII case (DNS names are case-insensitive): the exact
    /// name first, else a walk over the service names (at most [`Limits::max_services`]).
    pub fn service_view_ignore_case(&self, name: &str) -> Option<(&[Instance], u64)> {
        self.service_view(name).or_else(|| {
            self.services
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, s)| (s.slots.as_slice(), s.index))
        })
    }

    /// Every service's name, instances and index, unsorted and borrowed.
    pub fn each_service(&self) -> impl Iterator<Item = (&str, &[Instance], u64)> {
        self.services
            .iter()
            .map(|(n, s)| (n.as_str(), s.slots.as_slice(), s.index))
    }

    /// Every service's name and the tags its instances carry (each once, in no order), from the
    /// tag indexes: no instance is read.
    pub fn each_service_tags(&self) -> impl Iterator<Item = (&str, impl Iterator<Item = &str>)> {
        self.services
            .iter()
            .map(|(n, s)| (n.as_str(), s.tags.names()))
    }

    /// The registry-wide change counter: it moves with every service's index, and never goes back.
    pub fn global_index(&self) -> u64 {
        self.counter
    }

    /// The change index of `service` (0 if unknown). It grows on every
    /// addition, removal, health flip, drain flip or spec change, never on a
    /// plain renewal, so a watcher can block until it exceeds the value it
    /// last saw.
    pub fn index(&self, service: &str) -> u64 {
        self.services.get(service).map_or(0, |s| s.index)
    }

    /// The number of registered instances across all services.
    pub fn len(&self) -> usize {
        self.total
    }

    /// Whether no instance is registered.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

#[cfg(test)]
mod tests;
