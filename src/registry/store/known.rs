//! What this registry knows of each instance key beyond the local copy: which lease (which
//! registry's session) owns it, its last revision and value, until when the beats *this* registry
//! received keep it alive, and whether it is excluded. No I/O and no clock: time is an argument.
//!
//! The rules, in one place:
//! - A beat for a key this table knows, with the same value, is absorbed here: nothing is written.
//! - A key this registry owns (its session lease) whose beats stopped here is expired by the sweep:
//!   removed locally at once, deleted from etcd by a chore.
//! - A key deleted in etcd (its owner's lease ended, or its owner expired it) that still beats here
//!   stays in the local copy and is put back on this registry's lease (re-owned). A deletion in a
//!   revision that also puts [`DEREGISTERED`] is a deregistration: the instance is forgotten.
//! - A deletion leaves a tombstone at its revision until the next sweep, so a write of ours that
//!   etcd applied before it, and that we learn of after it, cannot bring the key back to life here.

use super::etcd_keys::{held, parse_key, record_of, upsert_change, Key};
use super::etcd_keys::{HEALTH, SERVICES};
use crate::etcd::watch::Event;
use crate::etcd::Kv;
use crate::registry::state::{Change, Held, Record, Snapshot};
use std::collections::{HashMap, HashSet};
use std::time::Instant;

/// One instance key as this registry knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The lease the key is on in etcd (its owner's session lease); `None` while it is absent from
    /// etcd (a tombstone, or a re-own on its way).
    pub lease: Option<i64>,
    /// Revision of the key's last known change: watch events up to it are stale.
    pub rev: i64,
    /// The value as etcd holds it (or as it is to be put back).
    pub value: Record,
    /// Until when the beats this registry received keep the instance alive; `None` if none did.
    pub alive_until: Option<Instant>,
    /// Whether its health key exists (the prober excluded it).
    pub excluded: bool,
    /// A chore for it is queued: the sweep does not queue another.
    pub busy: bool,
}

impl Entry {
    fn heard(&self, now: Instant) -> bool {
        self.alive_until.is_some_and(|t| t > now)
    }

    fn tombstone(rev: i64) -> Entry {
        Entry {
            lease: None,
            rev,
            value: Record::default(),
            alive_until: None,
            excluded: false,
            busy: false,
        }
    }
}

/// What a beat needs from etcd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    /// Nothing: the key is there with this value (or about to be put back).
    Absorbed,
    /// A write of the key: `new` when etcd does not have it, else its value changed.
    Write {
        /// Whether the key is absent from etcd.
        new: bool,
    },
}

/// A write this registry owes etcd that no request waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chore {
    /// Put the key back on this registry's lease: it left etcd but still beats here.
    ReOwn {
        /// The service.
        service: String,
        /// The instance.
        addr: String,
        /// Its value.
        value: Record,
        /// Whether its health key goes back too.
        excluded: bool,
    },
    /// Delete the key (and its health key): this registry owns it and its beats stopped.
    Expire {
        /// The service.
        service: String,
        /// The instance.
        addr: String,
        /// Whether it has a health key to delete too.
        excluded: bool,
    },
}

impl Chore {
    /// The service and instance the chore is about.
    pub fn instance(&self) -> (&str, &str) {
        match self {
            Chore::ReOwn { service, addr, .. } | Chore::Expire { service, addr, .. } => {
                (service, addr)
            }
        }
    }
}

/// What a sweep decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Removals for the local copy: instances expired here (or never put back), now gone.
    pub removed: Vec<Change<'static>>,
    /// Writes to queue.
    pub chores: Vec<Chore>,
}

/// The [`Entry`] of every instance key this registry knows, by service, then address.
#[derive(Debug, Default)]
pub struct Known {
    services: HashMap<String, HashMap<String, Entry>>,
}

impl Known {
    /// What is known of `addr` in `service`.
    pub fn get(&self, service: &str, addr: &str) -> Option<&Entry> {
        self.services.get(service)?.get(addr)
    }

    fn get_mut(&mut self, service: &str, addr: &str) -> Option<&mut Entry> {
        self.services.get_mut(service)?.get_mut(addr)
    }

    /// The entry of `addr` in `service`, made with `make` if there is none.
    fn entry(&mut self, service: &str, addr: &str, make: impl FnOnce() -> Entry) -> &mut Entry {
        (self.services.entry(service.to_string()).or_default())
            .entry(addr.to_string())
            .or_insert_with(make)
    }

    fn insert(&mut self, service: &str, addr: &str, e: Entry) {
        *self.entry(service, addr, || Entry::tombstone(0)) = e;
    }

    /// Instance keys known (tombstones included).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.services.values().map(HashMap::len).sum()
    }

    /// A beat received here at `now` for `addr` in `service` with `value` (what the local copy now
    /// holds; `changed` when its spec or drain mark just moved there): notes it and says whether
    /// etcd must hear of it. A key etcd has (or that is on its way there) with this value is
    /// absorbed; a changed value is written, even while a put of the old one is on its way (the
    /// lane keeps one key's writes in order). A new one is noted as heard and busy at once, so the
    /// sweep leaves it alone until its put is applied ([`Known::wrote`]) or failed
    /// ([`Known::abandon`]).
    pub fn beat(
        &mut self,
        service: &str,
        addr: &str,
        value: &Record,
        changed: bool,
        now: Instant,
    ) -> Beat {
        let until = deadline(now, value);
        if let Some(e) = self.get_mut(service, addr) {
            if e.lease.is_some() || e.heard(now) {
                e.alive_until = Some(until);
                return match changed || e.value != *value {
                    true => Beat::Write { new: false },
                    false => Beat::Absorbed, // in etcd, or on its way there
                };
            }
        }
        // New, or a tombstone (deleted, not being put back): a registration.
        let e = self.entry(service, addr, || Entry::tombstone(0));
        e.value = value.clone();
        e.alive_until = Some(until);
        e.busy = true;
        Beat::Write { new: true }
    }

    /// A registration's put failed: the instance is not registered (the caller undid it locally).
    pub fn abandon(&mut self, service: &str, addr: &str) {
        if let Some(e) = self.get_mut(service, addr) {
            e.busy = false;
            if e.lease.is_none() {
                e.alive_until = None; // a tombstone: the next sweep drops it
            }
        }
    }

    /// Whether `addr` in `service` has a health key.
    pub fn excluded(&self, service: &str, addr: &str) -> bool {
        self.get(service, addr).is_some_and(|e| e.excluded)
    }

    /// Records a put of ours at `rev` on `lease`; `alive_until` is set when a beat asked for it.
    /// Anything etcd changed after `rev` that this table already knows stays as it is. The write
    /// is no longer in flight: the sweep may act on the entry again.
    #[allow(clippy::too_many_arguments)]
    pub fn wrote(
        &mut self,
        service: &str,
        addr: &str,
        value: &Record,
        lease: i64,
        rev: i64,
        alive_until: Option<Instant>,
        excluded: bool,
    ) {
        let e = self.entry(service, addr, || Entry::tombstone(0));
        e.busy = false;
        if e.rev >= rev {
            // Its watch event came first (or a later put): the beat still counts. Deleted since:
            // not revived (its next beat registers it again).
            if e.lease.is_some() && alive_until.is_some() {
                e.alive_until = alive_until.max(e.alive_until);
            }
            return;
        }
        e.lease = Some(lease);
        e.rev = rev;
        e.value = value.clone();
        e.excluded = excluded;
        if alive_until.is_some() {
            e.alive_until = alive_until.max(e.alive_until);
        }
    }

    /// Records a deletion of ours at `rev`: a tombstone until the next sweep.
    pub fn deleted(&mut self, service: &str, addr: &str, rev: i64) {
        let e = self.entry(service, addr, || Entry::tombstone(rev));
        if e.rev <= rev {
            *e = Entry::tombstone(rev);
        }
    }

    /// A chore is done (or was dropped): the sweep may queue another.
    pub fn settle(&mut self, chore: &Chore) {
        let (service, addr) = chore.instance();
        if let Some(e) = self.get_mut(service, addr) {
            e.busy = false;
        }
    }

    /// Whether a queued chore still needs doing at `now`, with `session` as this registry's lease.
    pub fn wanted(&self, chore: &Chore, now: Instant, session: i64) -> bool {
        let (service, addr) = chore.instance();
        let Some(e) = self.get(service, addr) else {
            return false;
        };
        match chore {
            Chore::ReOwn { .. } => e.lease.is_none() && e.heard(now),
            Chore::Expire { .. } => e.lease == Some(session) && !e.heard(now),
        }
    }

    /// Expires what this registry owns and no longer hears, retries re-owns, and clears
    /// tombstones and re-owns whose beats stopped.
    pub fn sweep(&mut self, now: Instant, session: i64) -> Sweep {
        let mut out = Sweep::default();
        for (service, addrs) in &mut self.services {
            addrs.retain(|addr, e| {
                if e.busy {
                    return true;
                }
                let heard = e.heard(now);
                match e.lease {
                    Some(lease) if lease == session && !heard => {
                        e.busy = true;
                        out.removed
                            .push(Change::remove(service.clone(), addr.clone()));
                        out.chores.push(Chore::Expire {
                            service: service.clone(),
                            addr: addr.clone(),
                            excluded: e.excluded,
                        });
                    }
                    Some(_) if !heard => e.alive_until = None,
                    Some(_) => {}
                    None if heard => {
                        e.busy = true;
                        out.chores.push(reown(service, addr, e));
                    }
                    None => {
                        out.removed
                            .push(Change::remove(service.clone(), addr.clone()));
                        return false;
                    }
                }
                true
            });
        }
        self.services.retain(|_, addrs| !addrs.is_empty());
        out
    }

    /// The changes a batch of watch events makes, in order, and the re-owns they call for. Events
    /// up to this registry's last known revision of a key are dropped (its own writes were applied
    /// locally already), and so is the deletion of a health key whose instance key leaves in the
    /// same batch (a lease expiry deletes both: not a restoration).
    pub fn events(&mut self, events: &[Event], now: Instant) -> (Vec<Change<'static>>, Vec<Chore>) {
        let mut deregistrations = HashSet::new();
        let mut leaving: HashSet<&[u8]> = HashSet::new();
        for event in events {
            match event {
                Event::Put(kv) if parse_key(&kv.key) == Key::Deregistered => {
                    deregistrations.insert(kv.mod_revision);
                }
                Event::Delete(kv) => leaving.extend(kv.key.strip_prefix(SERVICES.as_bytes())),
                Event::Put(_) => {}
            }
        }
        let mut changes = Vec::with_capacity(events.len());
        let mut chores = Vec::new();
        for event in events {
            let (kv, put) = match event {
                Event::Put(kv) => (kv, true),
                Event::Delete(kv) => (kv, false),
            };
            let rev = kv.mod_revision;
            match parse_key(&kv.key) {
                Key::Instance(s, a) => {
                    if self.get(s, a).is_some_and(|e| e.rev >= rev) {
                        continue;
                    }
                    if put {
                        let value = record_of(&kv.value);
                        changes.push(upsert_change(s, a, &value));
                        let e = self.entry(s, a, || Entry::tombstone(rev));
                        e.lease = Some(kv.lease);
                        e.rev = rev;
                        e.value = value;
                        continue;
                    }
                    let keep = !deregistrations.contains(&rev);
                    match self.get_mut(s, a).filter(|e| keep && e.heard(now)) {
                        Some(e) => {
                            e.lease = None;
                            e.rev = rev;
                            if !e.busy {
                                e.busy = true;
                                chores.push(reown(s, a, e));
                            }
                        }
                        None => {
                            self.deleted(s, a, rev);
                            changes.push(Change::remove(s.to_string(), a.to_string()));
                        }
                    }
                }
                Key::Health(..)
                    if !put
                        && (kv.key.get(HEALTH.len()..)).is_some_and(|k| leaving.contains(k)) => {}
                Key::Health(s, a) => {
                    if let Some(e) = self.get_mut(s, a) {
                        e.excluded = put;
                    }
                    changes.push(Change::health(s.to_string(), a.to_string(), !put));
                }
                Key::Deregistered | Key::Other => {}
            }
        }
        (changes, chores)
    }

    /// The reset that makes the local copy equal to a full read of the root at `revision`, and the
    /// re-owns it calls for. Kept as they are: what this table learned after `revision` (own writes
    /// and deletions, whose events are still to come), and instances missing from the read that
    /// still beat here (they are put back).
    pub fn snapshot(
        &mut self,
        revision: i64,
        kvs: &[Kv],
        now: Instant,
    ) -> (Change<'static>, Vec<Chore>) {
        let excluded: HashSet<(&str, &str)> = (kvs.iter())
            .filter_map(|kv| match parse_key(&kv.key) {
                Key::Health(s, a) => Some((s, a)),
                _ => None,
            })
            .collect();
        let mut old = std::mem::take(&mut self.services);
        let mut instances: Vec<Held> = Vec::with_capacity(kvs.len());
        let mut chores = Vec::new();
        for kv in kvs {
            let Key::Instance(s, a) = parse_key(&kv.key) else {
                continue;
            };
            let before = old.get_mut(s).and_then(|addrs| addrs.remove(a));
            let before = match before {
                Some(e) if e.rev > kv.mod_revision => {
                    // Changed after the read: keep what we know, its events are still to come.
                    if e.lease.is_some() {
                        instances.push(held(s, a, None, e.excluded));
                    }
                    self.insert(s, a, e);
                    continue;
                }
                before => before,
            };
            let value = record_of(&kv.value);
            let is_excluded = excluded.contains(&(s, a));
            instances.push(held(s, a, Some(&value), is_excluded));
            let e = Entry {
                lease: Some(kv.lease),
                rev: kv.mod_revision,
                value,
                alive_until: before.as_ref().and_then(|e| e.alive_until),
                excluded: is_excluded,
                busy: before.is_some_and(|e| e.busy),
            };
            self.insert(s, a, e);
        }
        for (service, addrs) in old {
            for (addr, mut e) in addrs {
                if e.rev > revision {
                    if e.lease.is_some() {
                        instances.push(held(&service, &addr, None, e.excluded));
                    }
                } else if e.heard(now) {
                    instances.push(held(&service, &addr, None, e.excluded));
                    e.lease = None;
                    if !e.busy {
                        e.busy = true;
                        chores.push(reown(&service, &addr, &e));
                    }
                } else {
                    continue;
                }
                self.insert(&service, &addr, e);
            }
        }
        (Change::Reset(Snapshot { instances }), chores)
    }
}

fn reown(service: &str, addr: &str, e: &Entry) -> Chore {
    Chore::ReOwn {
        service: service.to_string(),
        addr: addr.to_string(),
        value: e.value.clone(),
        excluded: e.excluded,
    }
}

/// When a beat at `now` with `value` stops keeping the instance alive: the local state's own
/// deadline for its lease.
pub fn deadline(now: Instant, value: &Record) -> Instant {
    crate::registry::state::deadline(now, value.ttl)
}

#[cfg(test)]
mod tests;
