//! One service's instances: a dense `Vec` of slots, a map from address to slot, the [`Weights`]
//! tree parallel to the slots, the tag indexes ([`Tags`]), and the counts of instances by
//! [`Standing`].
//!
//! Every change to a slot goes through [`Service::push`], [`Service::remove_at`], [`Service::edit`]
//! or [`Service::set_spec`], which keep the position map, the counts, the weights and the tag indexes
//! in step: a slot's weight is its instance's `spec.weight` while it is pickable (not excluded by a
//! probe, not draining), else 0, in the service's tree and in the index of each of its tags. So a
//! pick is one weighted draw in O(log n), a pick filtered by one tag one draw in O(log m) among the m
//! instances carrying it, never a scan, and a draining or excluded instance is never drawn.

use super::tags::Tags;
use super::Instance;
use crate::registry::weighted::Weights;
use crate::spec::{Check, Spec};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// How an instance counts in listings and metrics: each instance is exactly one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Pickable: not excluded, not draining.
    Healthy,
    /// Excluded by a failed probe (and not draining).
    Excluded,
    /// Marked draining (whatever its probes say): still listed and probed, never picked.
    Draining,
}

impl Standing {
    /// The word listings and metrics use: `healthy`, `excluded` or `draining`.
    pub fn word(self) -> &'static str {
        match self {
            Standing::Healthy => "healthy",
            Standing::Excluded => "excluded",
            Standing::Draining => "draining",
        }
    }
}

/// Instances of a service by [`Standing`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Pickable instances.
    pub healthy: usize,
    /// Instances excluded by a probe (not draining).
    pub excluded: usize,
    /// Draining instances.
    pub draining: usize,
}

impl Counts {
    fn slot(&mut self, standing: Standing) -> &mut usize {
        match standing {
            Standing::Healthy => &mut self.healthy,
            Standing::Excluded => &mut self.excluded,
            Standing::Draining => &mut self.draining,
        }
    }

    fn add(&mut self, standing: Standing) {
        *self.slot(standing) += 1;
    }

    fn sub(&mut self, standing: Standing) {
        let n = self.slot(standing);
        *n = n.saturating_sub(1);
    }
}

/// The instances of one service.
#[derive(Debug, Default)]
pub(super) struct Service {
    pub(super) index: u64,
    pub(super) picks: u64,
    pub(super) counts: Counts,
    pub(super) slots: Vec<Instance>,
    pub(super) pos: HashMap<Arc<str>, usize>,
    pub(super) weights: Weights,
    /// For each tag carried by some instance, the slots carrying it and their weights.
    pub(super) tags: Tags,
    /// The spec last given to a new instance: a fleet registered alike shares one allocation.
    last_spec: Option<Arc<Spec>>,
}

impl Service {
    pub(super) fn position(&self, addr: &str) -> Option<usize> {
        self.pos.get(addr).copied()
    }

    pub(super) fn get(&self, addr: &str) -> Option<&Instance> {
        self.slots.get(self.position(addr)?)
    }

    pub(super) fn push(&mut self, inst: Instance) {
        self.tags.join(
            self.slots.len(),
            &inst.spec.tags,
            inst.weight(),
            &self.weights,
        );
        self.pos.insert(inst.addr.clone(), self.slots.len());
        self.counts.add(inst.standing());
        self.weights.push(inst.weight());
        self.slots.push(inst);
        debug_assert_eq!(self.weights.len(), self.slots.len());
    }

    /// Removes the instance at `i`, moving the last one into its place (in the weights and the tag
    /// indexes too).
    pub(super) fn remove_at(&mut self, i: usize) -> Option<Instance> {
        let last = self.slots.len().checked_sub(1).filter(|&last| i <= last)?;
        let gone = self.slots.swap_remove(i);
        self.weights.swap_remove(i);
        self.tags.leave(i, &gone.spec.tags);
        self.pos.remove(&gone.addr);
        if let Some(moved) = self.slots.get(i) {
            if let Some(p) = self.pos.get_mut(&moved.addr) {
                *p = i;
            }
            self.tags.renumber(last, i, &moved.spec.tags);
        }
        self.counts.sub(gone.standing());
        Some(gone)
    }

    pub(super) fn remove(&mut self, addr: &str) -> Option<Instance> {
        self.remove_at(self.position(addr)?)
    }

    /// Changes the instance at `i` with `edit`, then brings its count and its weight up to date (an
    /// O(log n) update of the service's tree, and of each of its tags' trees, when the weight moved).
    /// `edit` must not replace the spec: [`Service::set_spec`] does. `None` if there is no slot `i`.
    pub(super) fn edit<R>(&mut self, i: usize, edit: impl FnOnce(&mut Instance) -> R) -> Option<R> {
        let inst = self.slots.get_mut(i)?;
        let (before, spec) = (inst.standing(), Arc::as_ptr(&inst.spec));
        let out = edit(inst);
        debug_assert!(std::ptr::eq(spec, Arc::as_ptr(&inst.spec)), "spec replaced");
        let (after, weight) = (inst.standing(), inst.weight());
        if before != after {
            self.counts.sub(before);
            self.counts.add(after);
        }
        if self.weights.get(i) != weight {
            self.weights.set(i, weight);
            self.tags.set_weight(i, &inst.spec.tags, weight);
        }
        Some(out)
    }

    /// Gives the instance at `i` the spec `spec`, moving it from the indexes of its old tags to those
    /// of the new ones, then brings its weight up to date as [`Service::edit`] does; `check=none`
    /// clears an exclusion, since no probe would ever restore it. `None` if there is no slot `i`.
    pub(super) fn set_spec(&mut self, i: usize, spec: Arc<Spec>) -> Option<()> {
        let inst = self.slots.get_mut(i)?;
        let old = std::mem::replace(&mut inst.spec, spec);
        self.tags.leave(i, &old.tags);
        self.tags
            .join(i, &inst.spec.tags, self.weights.get(i), &self.weights);
        self.edit(i, |inst| inst.excluded &= inst.spec.check != Check::None)
    }

    /// Removes every instance whose lease ran out, appending them to `out`.
    pub(super) fn expire(&mut self, now: Instant, out: &mut Vec<Instance>) {
        let mut i = 0;
        while let Some(inst) = self.slots.get(i) {
            if inst.expires_at > now {
                i += 1;
            } else if let Some(gone) = self.remove_at(i) {
                // Do not advance: slot `i` now holds the former last instance.
                out.push(gone);
            }
        }
    }

    /// An equal spec already held (the default, or the last new instance's), so that instances
    /// registered alike share one allocation; else a compact copy of `spec` (a clone holds no spare
    /// capacity, where a parsed `Vec` grown by push holds 4: 144 bytes saved per instance with tags
    /// and meta of its own).
    pub(super) fn share(&mut self, spec: &Arc<Spec>, default: &Arc<Spec>) -> Arc<Spec> {
        if Arc::ptr_eq(spec, default) || **spec == **default {
            return default.clone();
        }
        if let Some(last) = self.last_spec.as_ref().filter(|l| ***l == **spec) {
            return last.clone();
        }
        let kept = Arc::new((**spec).clone());
        self.last_spec = Some(kept.clone());
        kept
    }

    /// A pickable slot, each with probability weight / total weight: one draw down the tree, O(log n).
    pub(super) fn pick_index(&self, rng: &mut fastrand::Rng) -> Option<usize> {
        self.weights.pick(rng)
    }

    /// A pickable slot carrying every tag in `tags` (any pickable slot when `tags` is empty), each
    /// with probability weight / total weight of the matching ones: one draw from the service's tree,
    /// or see [`Tags::pick`] (one draw from the tag's index when there is one tag).
    pub(super) fn pick_tagged<S: AsRef<str>>(
        &self,
        tags: &[S],
        rng: &mut fastrand::Rng,
    ) -> Option<usize> {
        if tags.is_empty() {
            return self.pick_index(rng);
        }
        self.tags.pick(tags, &self.slots, rng)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{check_invariants, reg, TTL};
    use super::super::{Registered, Registry};
    use super::*;
    use crate::spec::Check;
    use std::collections::HashMap;
    use std::time::Duration;

    fn spec(pairs: &[(&str, &str)]) -> Arc<Spec> {
        Arc::new(Spec::parse(pairs.iter().copied(), None).unwrap().spec)
    }

    fn counts(
        r: &mut Registry,
        service: &str,
        rng: &mut fastrand::Rng,
        n: usize,
    ) -> HashMap<String, u32> {
        let mut seen = HashMap::new();
        for _ in 0..n {
            let a = r.pick(service, rng).expect("a pickable instance");
            *seen.entry(a.to_string()).or_default() += 1;
        }
        seen
    }

    #[test]
    fn weights_one_and_four_take_a_fifth_and_four_fifths_of_10_000_picks() {
        let mut r = reg();
        let t0 = Instant::now();
        let heavy = spec(&[("weight", "4")]);
        r.upsert("web", "h:1", TTL, None, None, t0).unwrap();
        r.upsert("web", "h:4", TTL, Some(&heavy), None, t0).unwrap();
        let mut rng = fastrand::Rng::with_seed(11);
        let seen = counts(&mut r, "web", &mut rng, 10_000);
        // 20 % ± 2 % and 80 % ± 2 %.
        assert!((1_800..=2_200).contains(&seen["h:1"]), "{seen:?}");
        assert!((7_800..=8_200).contains(&seen["h:4"]), "{seen:?}");
        check_invariants(&r);
    }

    #[test]
    fn draining_and_excluded_instances_are_never_picked_and_undrain_restores() {
        let mut r = reg();
        let t0 = Instant::now();
        for a in ["h:1", "h:2", "h:3"] {
            r.register("web", a, TTL, t0).unwrap();
        }
        let before = r.index("web");
        assert_eq!(r.set_draining("web", "h:1", true), Some(true));
        assert!(r.index("web") > before, "a drain is a change");
        let drained = r.index("web");
        assert_eq!(r.set_draining("web", "h:1", true), Some(false));
        assert_eq!(r.index("web"), drained, "a repeated drain is not");
        assert_eq!(r.set_draining("web", "h:9", true), None);
        assert_eq!(r.set_draining("nope", "h:1", true), None);
        assert!(r.mark_probe("web", "h:2", false, t0));
        let mut rng = fastrand::Rng::with_seed(5);
        let seen = counts(&mut r, "web", &mut rng, 2_000);
        assert_eq!(seen.keys().collect::<Vec<_>>(), ["h:3"]);
        let summary = &r.services()[0];
        assert_eq!(
            (summary.live, summary.excluded, summary.draining),
            (1, 1, 1)
        );
        // A renewal keeps the mark; a draining instance is still probed.
        assert_eq!(r.register("web", "h:1", TTL, t0), Ok(Registered::Renewed));
        assert!(r.probe_targets().iter().any(|t| &*t.addr == "h:1"));
        assert_eq!(r.set_draining("web", "h:3", true), Some(true));
        assert_eq!(r.pick("web", &mut rng), None);
        assert_eq!(r.set_draining("web", "h:1", false), Some(true));
        assert_eq!(r.pick("web", &mut rng).as_deref(), Some("h:1"));
        // Deregistration wins: a drained instance goes, and a drain does not bring it back.
        assert!(r.deregister("web", "h:3"));
        assert_eq!(r.set_draining("web", "h:3", false), None);
        check_invariants(&r);
    }

    #[test]
    fn a_spec_change_moves_the_index_and_an_equal_spec_keeps_the_one_held() {
        let mut r = reg();
        let t0 = Instant::now();
        let v2 = spec(&[("tag", "v2"), ("weight", "3")]);
        assert_eq!(
            r.upsert("web", "h:1", TTL, Some(&v2), None, t0),
            Ok(Registered::New)
        );
        let i1 = r.index("web");
        let held = r.record("web", "h:1").unwrap().spec;
        let same = spec(&[("tag", "v2"), ("weight", "3")]);
        assert_eq!(
            r.upsert("web", "h:1", TTL, Some(&same), None, t0),
            Ok(Registered::Renewed)
        );
        assert_eq!(r.index("web"), i1, "an equal spec is no change");
        assert!(
            Arc::ptr_eq(&r.record("web", "h:1").unwrap().spec, &held),
            "reallocated"
        );
        for change in [
            &[("tag", "v3")][..],
            &[("tag", "v3"), ("weight", "2")],
            &[("check", "tcp")],
        ] {
            let before = r.index("web");
            let new = spec(change);
            assert_eq!(
                r.upsert("web", "h:1", TTL, Some(&new), None, t0),
                Ok(Registered::Updated)
            );
            assert!(r.index("web") > before, "{change:?}");
            assert_eq!(*r.record("web", "h:1").unwrap().spec, *new);
        }
        // The original heartbeat keeps the spec a PUT gave.
        let before = r.index("web");
        assert_eq!(r.register("web", "h:1", TTL, t0), Ok(Registered::Renewed));
        assert_eq!(r.record("web", "h:1").unwrap().spec.check, Check::Tcp);
        assert_eq!(r.index("web"), before);
        check_invariants(&r);
    }

    #[test]
    fn instances_registered_alike_share_one_spec() {
        let mut r = reg();
        let t0 = Instant::now();
        for i in 0..3 {
            r.register("add", &format!("h:{i}"), TTL, t0).unwrap();
            r.upsert("add", &format!("d:{i}"), TTL, Some(&spec(&[])), None, t0)
                .unwrap();
            r.upsert(
                "web",
                &format!("w:{i}"),
                TTL,
                Some(&spec(&[("tag", "v2")])),
                None,
                t0,
            )
            .unwrap();
        }
        let specs = |s: &str| {
            r.instances(s)
                .unwrap()
                .into_iter()
                .map(|i| i.spec)
                .collect::<Vec<_>>()
        };
        let add = specs("add");
        assert!(add.iter().all(|s| Arc::ptr_eq(s, &r.default_spec)));
        let web = specs("web");
        assert!(web.iter().all(|s| Arc::ptr_eq(s, &web[0])));
    }

    #[test]
    fn check_none_is_never_probed_nor_excluded() {
        let mut r = reg();
        let t0 = Instant::now();
        let none = spec(&[("check", "none")]);
        r.upsert("web", "n:1", TTL, Some(&none), None, t0).unwrap();
        r.register("web", "h:1", TTL, t0).unwrap();
        let targets: Vec<String> = r
            .probe_targets()
            .iter()
            .map(|t| t.addr.to_string())
            .collect();
        assert_eq!(targets, ["h:1"]);
        assert!(!r.mark_probe("web", "n:1", false, t0));
        assert!(r.record("web", "n:1").is_some());
        assert_eq!(r.services()[0].live, 2);
        // Switching an excluded instance to check=none clears the exclusion: no probe would.
        assert!(r.mark_probe("web", "h:1", false, t0));
        assert_eq!(
            r.upsert("web", "h:1", TTL, Some(&none), None, t0),
            Ok(Registered::Updated)
        );
        assert_eq!(r.services()[0].live, 2);
        // Gone with its lease like any other.
        assert_eq!(r.expire(t0 + TTL).len(), 2);
        check_invariants(&r);
    }

    /// The model of one instance: (expires_at, excluded, draining, spec).
    type Model = HashMap<(String, String), (Instant, bool, bool, Spec)>;

    fn pickable(m: &Model, s: &str, tags: &[&str]) -> Vec<String> {
        (m.iter())
            .filter(|((ms, _), v)| ms == s && !v.1 && !v.2 && v.3.has_tags(tags))
            .map(|((_, a), _)| a.clone())
            .collect()
    }

    #[test]
    fn random_ops_keep_weights_counts_and_marks_equal_to_a_model() {
        let specs: Vec<Arc<Spec>> = vec![
            spec(&[]),
            spec(&[("weight", "3")]),
            spec(&[("tag", "v2")]),
            spec(&[("tag", "v2"), ("tag", "eu"), ("weight", "7")]),
            spec(&[("check", "none"), ("tag", "eu")]),
            spec(&[("check", "tcp"), ("weight", "1000")]),
        ];
        let mut rng = fastrand::Rng::with_seed(0xd1a1);
        let mut r = reg();
        let mut m = Model::new();
        let t0 = Instant::now();
        let mut now = t0;
        for _ in 0..6_000 {
            let s = format!("s{}", rng.usize(..2));
            let a = format!("h:{}", rng.usize(..16));
            let key = (s.clone(), a.clone());
            let before = r.index(&s);
            let moved = match rng.u8(..12) {
                0..=2 => {
                    let sp = &specs[rng.usize(..specs.len())];
                    let ttl = Duration::from_secs(rng.u64(1..20));
                    let got = r.upsert(&s, &a, ttl, Some(sp), None, now).unwrap();
                    let want = match m.get_mut(&key) {
                        Some(v) if v.3 == **sp => Registered::Renewed,
                        Some(v) => {
                            v.3 = (**sp).clone();
                            v.1 &= sp.check != Check::None;
                            Registered::Updated
                        }
                        None => {
                            m.insert(key.clone(), (now, false, false, (**sp).clone()));
                            Registered::New
                        }
                    };
                    if let Some(v) = m.get_mut(&key) {
                        v.0 = now + ttl;
                    }
                    assert_eq!(got, want);
                    want != Registered::Renewed
                }
                3 => {
                    let ttl = Duration::from_secs(rng.u64(1..20));
                    let got = r.register(&s, &a, ttl, now).unwrap();
                    let new = !m.contains_key(&key);
                    let v = m.entry(key).or_insert((now, false, false, Spec::default()));
                    v.0 = now + ttl;
                    assert_eq!(got == Registered::New, new);
                    new
                }
                4 => {
                    let was = m.remove(&key).is_some();
                    assert_eq!(r.deregister(&s, &a), was);
                    was
                }
                5..=6 => {
                    let ok = rng.bool();
                    let flips = match m.get_mut(&key) {
                        Some(v) if v.3.check != Check::None && v.1 == ok => {
                            v.1 = !ok;
                            true
                        }
                        _ => false,
                    };
                    assert_eq!(r.mark_probe(&s, &a, ok, now), flips);
                    flips
                }
                7..=8 => {
                    let d = rng.bool();
                    let want = m.get_mut(&key).map(|v| std::mem::replace(&mut v.2, d) != d);
                    assert_eq!(r.set_draining(&s, &a, d), want);
                    want == Some(true)
                }
                9 => {
                    now += Duration::from_secs(rng.u64(0..3));
                    let gone = r.expire(now).iter().filter(|t| t.service == s).count();
                    let want = m
                        .iter()
                        .filter(|((ms, _), v)| *ms == s && v.0 <= now)
                        .count();
                    m.retain(|_, v| v.0 > now);
                    assert_eq!(gone, want);
                    gone > 0
                }
                _ => {
                    let tags: &[&str] = [&[][..], &["v2"], &["eu"], &["v2", "eu"]][rng.usize(..4)];
                    let want = pickable(&m, &s, tags);
                    match r.pick_tagged(&s, tags, &mut rng) {
                        Some(p) => assert!(want.contains(&p.to_string()), "{p} not in {want:?}"),
                        None => assert!(want.is_empty(), "none picked among {want:?}"),
                    }
                    false
                }
            };
            assert_eq!(r.index(&s) > before, moved && r.index(&s) != 0);
            check_invariants(&r);
            for s in ["s0", "s1"] {
                let mut want: Vec<_> = (m.iter())
                    .filter(|((ms, _), _)| ms == s)
                    .map(|((_, a), v)| (a.clone(), v.0, v.1, v.2, v.3.clone()))
                    .collect();
                want.sort_by(|x, y| x.0.cmp(&y.0));
                let got: Vec<_> = (r.instances(s).unwrap_or_default().into_iter())
                    .map(|i| {
                        (
                            i.addr.to_string(),
                            i.expires_at,
                            i.excluded,
                            i.draining,
                            (*i.spec).clone(),
                        )
                    })
                    .collect();
                assert_eq!(got, want);
            }
        }
    }
}
