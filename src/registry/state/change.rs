//! Changes to the registry's state as values, and [`Registry::apply`].
//!
//! Every write to the local state is a [`Change`]: a route's registration, deregistration or drain
//! mark, a probe's result, an etcd watch event, or an etcd resync ([`Change::Reset`]). Applying returns what
//! each change did ([`Outcome`]) and which services' change indexes moved, so the caller, holding
//! no lock by then, wakes exactly those services' watchers. Like the rest of the state this does no
//! I/O and takes time as an argument.

use super::{RegisterError, Registered, Registry};
use crate::spec::Spec;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One change to the registry's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change<'a> {
    /// Register `addr` under `service` with a lease of `ttl`, or renew it (a heartbeat).
    Upsert {
        /// The service.
        service: Cow<'a, str>,
        /// The instance's `HOST:PORT`.
        addr: Cow<'a, str>,
        /// The lease.
        ttl: Duration,
        /// Its spec; `None` keeps the one it has (a new instance gets the default): what
        /// `POST /registerList` sends, so its renewal of an instance registered by `PUT` keeps the
        /// `PUT`'s check, tags, meta and weight.
        spec: Option<Arc<Spec>>,
        /// Its drain mark; `None` keeps it (a new instance is not draining). Routes send `None`
        /// (a heartbeat never undoes a drain); a store's record says it.
        draining: Option<bool>,
    },
    /// Remove `addr` from `service`: deregistered, or its lease expired in the store.
    Remove {
        /// The service.
        service: Cow<'a, str>,
        /// The instance's `HOST:PORT`.
        addr: Cow<'a, str>,
    },
    /// A probe result, or health recorded in the store: `ok == false` excludes the instance,
    /// `ok == true` restores it.
    Health {
        /// The service.
        service: Cow<'a, str>,
        /// The instance's `HOST:PORT`.
        addr: Cow<'a, str>,
        /// Whether the instance is healthy.
        ok: bool,
    },
    /// Mark `addr` draining or not (never creates it).
    Drain {
        /// The service.
        service: Cow<'a, str>,
        /// The instance's `HOST:PORT`.
        addr: Cow<'a, str>,
        /// Draining, or back in rotation.
        draining: bool,
    },
    /// Make the state hold exactly the snapshot's instances (an etcd resync).
    Reset(Snapshot),
}

impl<'a> Change<'a> {
    /// [`Change::Upsert`] that keeps the spec and the drain mark (see [`Change::with_spec`] and
    /// [`Change::with_draining`]).
    pub fn upsert(
        service: impl Into<Cow<'a, str>>,
        addr: impl Into<Cow<'a, str>>,
        ttl: Duration,
    ) -> Self {
        Change::Upsert {
            service: service.into(),
            addr: addr.into(),
            ttl,
            spec: None,
            draining: None,
        }
    }

    /// An upsert that sets the spec; other changes are returned as they are.
    pub fn with_spec(mut self, new: Arc<Spec>) -> Self {
        if let Change::Upsert { spec, .. } = &mut self {
            *spec = Some(new);
        }
        self
    }

    /// An upsert that sets the drain mark; other changes are returned as they are.
    pub fn with_draining(mut self, mark: bool) -> Self {
        if let Change::Upsert { draining, .. } = &mut self {
            *draining = Some(mark);
        }
        self
    }

    /// [`Change::Drain`].
    pub fn drain(
        service: impl Into<Cow<'a, str>>,
        addr: impl Into<Cow<'a, str>>,
        draining: bool,
    ) -> Self {
        Change::Drain {
            service: service.into(),
            addr: addr.into(),
            draining,
        }
    }

    /// [`Change::Remove`].
    pub fn remove(service: impl Into<Cow<'a, str>>, addr: impl Into<Cow<'a, str>>) -> Self {
        Change::Remove {
            service: service.into(),
            addr: addr.into(),
        }
    }

    /// [`Change::Health`].
    pub fn health(
        service: impl Into<Cow<'a, str>>,
        addr: impl Into<Cow<'a, str>>,
        ok: bool,
    ) -> Self {
        Change::Health {
            service: service.into(),
            addr: addr.into(),
            ok,
        }
    }

    /// The service and instance a change is about; `None` for a reset, which may touch any.
    pub fn instance(&self) -> Option<(&str, &str)> {
        match self {
            Change::Upsert { service, addr, .. }
            | Change::Remove { service, addr }
            | Change::Health { service, addr, .. }
            | Change::Drain { service, addr, .. } => Some((service, addr)),
            Change::Reset(_) => None,
        }
    }
}

/// Every instance a store holds at one moment (a full read).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The instances, in any order, each once.
    pub instances: Vec<Held>,
}

/// One instance of a [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The service.
    pub service: String,
    /// The instance's `HOST:PORT`.
    pub addr: String,
    /// The lease to register or renew it with; `None` keeps it as it is if the state has it and
    /// does not create it (a write newer than the snapshot, whose own event is still to come).
    pub ttl: Option<Duration>,
    /// Whether the store records it as excluded.
    pub excluded: bool,
    /// Its spec (applied with `ttl`, like `draining`).
    pub spec: Arc<Spec>,
    /// Whether the store records it as draining.
    pub draining: bool,
}

/// What a store keeps of one instance (etcd: the instance key's value): its lease, its spec and its
/// drain mark. A value written before specs existed reads as the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// The lease it was registered with.
    pub ttl: Duration,
    /// Its check, tags, meta and weight.
    pub spec: Arc<Spec>,
    /// Whether it is marked draining.
    pub draining: bool,
}

/// What one change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An upsert registered a new instance or renewed one.
    Registered(Registered),
    /// An upsert broke a rule or a limit; nothing changed.
    Refused(RegisterError),
    /// A removal: whether the instance was there.
    Removed(bool),
    /// A health change: whether the instance's health flipped.
    Health(bool),
    /// A drain mark: `None` if the instance is not registered, else whether the mark flipped.
    Drained(Option<bool>),
    /// A reset, and what it took.
    Reset(ResetReport),
}

impl Outcome {
    /// Whether the change's service's index moved (for a reset: whether anything changed).
    pub fn moved(&self) -> bool {
        match self {
            Outcome::Registered(r) => *r != Registered::Renewed,
            Outcome::Refused(_) => false,
            Outcome::Drained(changed) => *changed == Some(true),
            Outcome::Removed(changed) | Outcome::Health(changed) => *changed,
            Outcome::Reset(r) => r.changed,
        }
    }
}

/// What a [`Change::Reset`] took to make the state match its snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResetReport {
    /// Instances dropped because the snapshot does not hold them.
    pub removed: usize,
    /// Instances of the snapshot the local limits refused.
    pub refused: usize,
    /// Instances in the state afterwards.
    pub total: usize,
    /// Whether any service's index moved.
    pub changed: bool,
}

/// What [`Registry::apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// The services whose change index moved, each once, sorted: their watchers are to be woken.
    pub moved: Vec<String>,
    /// What each change did, in the order of the changes.
    pub outcomes: Vec<Outcome>,
}

/// Each touched service's index before a batch, to find the ones that moved after it.
#[derive(Debug, Default)]
struct Before(HashMap<String, u64>);

impl Before {
    fn note(&mut self, reg: &Registry, service: &str) {
        if !self.0.contains_key(service) {
            self.0.insert(service.to_string(), reg.index(service));
        }
    }

    fn note_reset(&mut self, reg: &Registry, snapshot: &Snapshot) {
        for name in reg.services.keys() {
            self.note(reg, name);
        }
        for held in &snapshot.instances {
            self.note(reg, &held.service);
        }
    }

    fn moved(self, reg: &Registry) -> Vec<String> {
        let mut moved: Vec<String> = (self.0.into_iter())
            .filter(|(s, i)| reg.index(s) != *i)
            .map(|(s, _)| s)
            .collect();
        moved.sort_unstable();
        moved
    }
}

impl Registry {
    /// Applies `changes` in order; returns what each did and the services whose index moved, so the
    /// caller wakes their watchers once it has released the state.
    ///
    /// ```
    /// use mini::registry::state::{Change, Limits, Outcome, Registered, Registry};
    /// use std::time::{Duration, Instant};
    ///
    /// let mut reg = Registry::new(Limits::default());
    /// let now = Instant::now();
    /// let ttl = Duration::from_secs(10);
    /// let applied = reg.apply(
    ///     &[Change::upsert("add", "127.0.0.1:9001", ttl), Change::upsert("mul", "127.0.0.1:9002", ttl)],
    ///     now,
    /// );
    /// assert_eq!(applied.moved, ["add", "mul"]);
    /// let renewed = reg.apply(&[Change::upsert("add", "127.0.0.1:9001", ttl)], now);
    /// assert_eq!(renewed.outcomes, [Outcome::Registered(Registered::Renewed)]);
    /// assert!(renewed.moved.is_empty()); // a renewal wakes no watcher
    /// ```
    pub fn apply(&mut self, changes: &[Change<'_>], now: Instant) -> Applied {
        let mut before = Before::default();
        let mut outcomes = Vec::with_capacity(changes.len());
        for change in changes {
            match change {
                Change::Reset(snapshot) => before.note_reset(self, snapshot),
                other => {
                    if let Some((service, _)) = other.instance() {
                        before.note(self, service);
                    }
                }
            }
            outcomes.push(self.change(change, now));
        }
        Applied {
            moved: before.moved(self),
            outcomes,
        }
    }

    /// Applies one change, appending the services whose index moved to `moved`. Allocates nothing
    /// when nothing moves (a heartbeat's renewal), unlike [`Registry::apply`].
    pub fn apply_one(
        &mut self,
        change: &Change<'_>,
        now: Instant,
        moved: &mut Vec<String>,
    ) -> Outcome {
        if let Change::Reset(snapshot) = change {
            let mut before = Before::default();
            before.note_reset(self, snapshot);
            let outcome = self.change(change, now);
            moved.extend(before.moved(self));
            return outcome;
        }
        let outcome = self.change(change, now);
        if let Some((service, _)) = change.instance().filter(|_| outcome.moved()) {
            moved.push(service.to_string());
        }
        outcome
    }

    fn change(&mut self, change: &Change<'_>, now: Instant) -> Outcome {
        match change {
            Change::Upsert {
                service,
                addr,
                ttl,
                spec,
                draining,
            } => match self.upsert(service, addr, *ttl, spec.as_ref(), *draining, now) {
                Ok(r) => Outcome::Registered(r),
                Err(e) => Outcome::Refused(e),
            },
            Change::Drain {
                service,
                addr,
                draining,
            } => Outcome::Drained(self.set_draining(service, addr, *draining)),
            Change::Remove { service, addr } => Outcome::Removed(self.deregister(service, addr)),
            Change::Health { service, addr, ok } => {
                Outcome::Health(self.mark_probe(service, addr, *ok, now))
            }
            Change::Reset(snapshot) => Outcome::Reset(self.reset(snapshot, now)),
        }
    }

    /// Drops the instances the snapshot does not hold, registers or renews those it holds with their
    /// spec and drain mark (limits apply to new ones), then sets each one's health as the snapshot
    /// records it.
    fn reset(&mut self, snapshot: &Snapshot, now: Instant) -> ResetReport {
        let counter = self.counter;
        let held: HashMap<(&str, &str), &Held> = (snapshot.instances.iter())
            .map(|h| ((h.service.as_str(), h.addr.as_str()), h))
            .collect();
        let mut gone: Vec<(String, Arc<str>)> = Vec::new();
        let mut report = ResetReport::default();
        for (name, svc) in &self.services {
            let dropped = svc
                .slots
                .iter()
                .filter(|i| !held.contains_key(&(name.as_str(), &*i.addr)));
            gone.extend(dropped.map(|i| (name.clone(), i.addr.clone())));
        }
        for (service, addr) in gone {
            report.removed += usize::from(self.deregister(&service, &addr));
        }
        for h in &snapshot.instances {
            if let Some(ttl) = h.ttl {
                let (spec, draining) = (Some(&h.spec), Some(h.draining));
                let done = self.upsert(&h.service, &h.addr, ttl, spec, draining, now);
                report.refused += usize::from(done.is_err());
            }
        }
        let mut flips: Vec<(String, Arc<str>, bool)> = Vec::new();
        for (name, svc) in &self.services {
            for inst in &svc.slots {
                let excluded = held
                    .get(&(name.as_str(), &*inst.addr))
                    .is_some_and(|h| h.excluded);
                if excluded == inst.healthy() {
                    flips.push((name.clone(), inst.addr.clone(), !excluded));
                }
            }
        }
        for (service, addr, ok) in flips {
            self.mark_probe(&service, &addr, ok, now);
        }
        report.total = self.total;
        report.changed = self.counter != counter;
        report
    }
}

#[cfg(test)]
mod tests;
