//! The tag indexes of one service: for each tag some instance carries, the slots carrying it with a
//! [`Weights`] tree of their own, so that a tag-filtered pick is one weighted draw among the slots
//! carrying the tag, O(log m), never a scan of the service.
//!
//! The service keeps the indexes in step with its slots (see `service.rs`): a slot joins the index of
//! each of its tags when it is pushed or given a spec, leaves them when it goes or its spec changes,
//! is renumbered in them when `swap_remove` moves the last slot into a hole, and its weight in each is
//! always its weight in the service's tree (0 while excluded or draining). So an index never draws a
//! draining or excluded instance either.
//!
//! Memory is O(memberships), not O(tags × slots): per (tag, slot) a slot number and a position (in a
//! list and in one map shared by all tags), plus a leaf and a node of the tag's tree, about 35 bytes
//! (`mini_bench pick`); per distinct tag its name and an entry. A tag carried by one slot only (unique
//! to an instance) is that slot number alone, with no lists, tree nor position. An index is freed
//! with its last member and its id reused.
//!
//! ```text
//! slots      0:v2,eu  1:-  2:v2  3:eu        v2 → slots [0, 2], weights [w0, w2]
//!                                            eu → slots [0, 3], weights [w0, w3]
//! ```

use super::Instance;
use crate::registry::weighted::Weights;
use crate::spec::Spec;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Arc;

/// Weighted draws a filter of several tags makes from its rarest tag's index (the one with the least
/// pickable weight) before it falls back to a scan of that index's members. With the instances that
/// carry every tag holding a share `p` of the rarest tag's pickable weight, the scan runs with
/// probability `(1 - p)^8`: about once in 400 picks at `p = 1/2`, one pick in 2.3 at `p = 1/10`; and
/// it reads the rarest tag's members only. A filter of one tag never scans: every member matches.
pub const TAGGED_TRIES: usize = 8;

/// Slot numbers and positions are stored as `u32` (half the memory of `usize`): a service reaching
/// 2^32 instances would first need some 900 GB (over 200 bytes each, BENCH.md).
fn small(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

/// The slots carrying one tag. A tag carried by one slot (a tag unique to an instance: a host name,
/// a build id) is that slot number alone, its weight read from the slot: no lists, no tree, no
/// position entry. A second member turns it into [`Many`], kept until the last member leaves.
#[derive(Debug, Default)]
enum Members {
    /// None: the id is free.
    #[default]
    Empty,
    /// One slot.
    One(u32),
    /// Two or more slots (or fewer, after some left), with their tree.
    Many(Box<Many>),
}

/// The slots carrying a tag, and their weights.
#[derive(Debug, Default)]
struct Many {
    /// The member slots, in no particular order.
    slots: Vec<u32>,
    /// Their weights, parallel to `slots`.
    weights: Weights,
}

/// The weight of slot `s`: its instance's, 0 when not pickable.
fn weight_of(slots: &[Instance], s: u32) -> u32 {
    slots.get(s as usize).map_or(0, Instance::weight)
}

impl Members {
    /// Sum of the members' weights: 0 means none is pickable.
    fn total(&self, slots: &[Instance]) -> u64 {
        match self {
            Members::Empty => 0,
            Members::One(s) => u64::from(weight_of(slots, *s)),
            Members::Many(m) => m.weights.total(),
        }
    }

    /// A member slot, each with probability weight / total; `None` when the total is 0.
    fn pick(&self, slots: &[Instance], rng: &mut fastrand::Rng) -> Option<usize> {
        match self {
            Members::Empty => None,
            Members::One(s) => (weight_of(slots, *s) > 0).then_some(*s as usize),
            Members::Many(m) => {
                let p = m.weights.pick(rng)?;
                m.slots.get(p).map(|&s| s as usize)
            }
        }
    }

    /// Every member slot with its weight.
    fn each<'a>(&'a self, slots: &'a [Instance]) -> impl Iterator<Item = (usize, u32)> + 'a {
        let (one, many) = match self {
            Members::Empty => (None, None),
            Members::One(s) => (Some((*s as usize, weight_of(slots, *s))), None),
            Members::Many(m) => (None, Some(m)),
        };
        let many = many.into_iter().flat_map(|m| {
            (m.slots.iter().enumerate()).map(|(p, &s)| (s as usize, m.weights.get(p)))
        });
        one.into_iter().chain(many)
    }
}

/// Every tag index of one service.
#[derive(Debug, Default)]
pub(super) struct Tags {
    /// The id of each tag some slot carries.
    ids: HashMap<Box<str>, u32>,
    /// The members of each tag, by id; an id on `free` has none.
    members: Vec<Members>,
    /// Ids of tags no slot carries any more, for the next new tag.
    free: Vec<u32>,
    /// (tag id, slot) → the slot's position in that tag's [`Many`].
    at: HashMap<(u32, u32), u32>,
}

impl Tags {
    /// Every tag some slot carries, once each, in no order.
    pub(super) fn names(&self) -> impl Iterator<Item = &str> {
        self.ids.keys().map(|t| &**t)
    }

    fn of(&self, tag: &str) -> Option<&Members> {
        let id = *self.ids.get(tag)?;
        self.members.get(id as usize)
    }

    /// Adds `slot`, of weight `w`, to the index of each of `tags` (creating the ones no slot
    /// carried); `weights` gives the weight of a tag's single member when it gets a second.
    pub(super) fn join(&mut self, slot: usize, tags: &[String], w: u32, weights: &Weights) {
        let slot = small(slot);
        for tag in tags {
            let Some(&id) = self.ids.get(tag.as_str()) else {
                let id = self.free.pop().unwrap_or_else(|| {
                    self.members.push(Members::Empty);
                    small(self.members.len() - 1)
                });
                self.ids.insert(tag.as_str().into(), id);
                if let Some(m) = self.members.get_mut(id as usize) {
                    *m = Members::One(slot);
                }
                continue;
            };
            let Some(members) = self.members.get_mut(id as usize) else {
                continue;
            };
            match members {
                Members::One(s) if *s == slot => {}
                Members::One(s) => {
                    let first = *s;
                    let mut many = Box::<Many>::default();
                    many.slots.push(first);
                    many.weights.push(weights.get(first as usize));
                    self.at.insert((id, first), 0);
                    *members = Members::Many(many);
                }
                _ => {}
            }
            if let Members::Many(m) = members {
                if let Entry::Vacant(e) = self.at.entry((id, slot)) {
                    e.insert(small(m.slots.len()));
                    m.slots.push(slot);
                    m.weights.push(w);
                }
            }
        }
    }

    /// Removes `slot` from the index of each of `tags`, moving each index's last member into its
    /// place; an index left empty is freed.
    pub(super) fn leave(&mut self, slot: usize, tags: &[String]) {
        let slot = small(slot);
        for tag in tags {
            let Some(&id) = self.ids.get(tag.as_str()) else {
                continue;
            };
            let Some(members) = self.members.get_mut(id as usize) else {
                continue;
            };
            match members {
                Members::One(s) if *s == slot => *members = Members::Empty,
                Members::Many(m) => {
                    let Some(p) = self.at.remove(&(id, slot)) else {
                        continue;
                    };
                    let p = p as usize;
                    m.slots.swap_remove(p);
                    m.weights.swap_remove(p);
                    if let Some(&moved) = m.slots.get(p) {
                        self.at.insert((id, moved), small(p));
                    } else if m.slots.is_empty() {
                        *members = Members::Empty;
                    }
                }
                _ => {}
            }
            if matches!(members, Members::Empty) {
                self.ids.remove(tag.as_str());
                self.free.push(id);
            }
        }
    }

    /// Renumbers slot `from` as `to` in the index of each of `tags` (the service moved its last slot
    /// into the hole `to`); positions and weights stay.
    pub(super) fn renumber(&mut self, from: usize, to: usize, tags: &[String]) {
        let (from, to) = (small(from), small(to));
        for tag in tags {
            let Some(&id) = self.ids.get(tag.as_str()) else {
                continue;
            };
            match self.members.get_mut(id as usize) {
                Some(Members::One(s)) if *s == from => *s = to,
                Some(Members::Many(m)) => {
                    let Some(p) = self.at.remove(&(id, from)) else {
                        continue;
                    };
                    self.at.insert((id, to), p);
                    if let Some(s) = m.slots.get_mut(p as usize) {
                        *s = to;
                    }
                }
                _ => {}
            }
        }
    }

    /// Sets the weight of `slot` to `w` in the index of each of `tags` (a single member's weight is
    /// read from its slot: nothing to set).
    pub(super) fn set_weight(&mut self, slot: usize, tags: &[String], w: u32) {
        let slot = small(slot);
        for tag in tags {
            let Some(&id) = self.ids.get(tag.as_str()) else {
                continue;
            };
            if let (Some(&p), Some(Members::Many(m))) =
                (self.at.get(&(id, slot)), self.members.get_mut(id as usize))
            {
                m.weights.set(p as usize, w);
            }
        }
    }

    /// A pickable slot carrying every tag in `tags` (at least one), each with probability weight /
    /// total weight of the matching ones; `None` if a tag is carried by no slot or no match is
    /// pickable. One draw from the rarest tag's index, accepted if its slot carries the other tags;
    /// after [`TAGGED_TRIES`] refused draws, one pass over that index's members drawing among the
    /// matching ones by weighted reservoir sampling, exactly weighted too (instances sharing a spec
    /// allocation are matched by pointer after the first).
    pub(super) fn pick<S: AsRef<str>>(
        &self,
        tags: &[S],
        slots: &[Instance],
        rng: &mut fastrand::Rng,
    ) -> Option<usize> {
        let mut rarest: Option<(&Members, u64)> = None;
        for tag in tags {
            let m = self.of(tag.as_ref())?;
            let total = m.total(slots);
            if rarest.is_none_or(|(_, least)| total < least) {
                rarest = Some((m, total));
            }
        }
        let (m, _) = rarest?;
        if tags.len() == 1 {
            return m.pick(slots, rng);
        }
        for _ in 0..TAGGED_TRIES {
            let s = m.pick(slots, rng)?;
            if slots.get(s).is_some_and(|x| x.spec.has_tags(tags)) {
                return Some(s);
            }
        }
        let mut matcher = Matcher::default();
        let (mut total, mut chosen) = (0u64, None);
        for (s, w) in m.each(slots) {
            let w = u64::from(w);
            let Some(inst) = slots.get(s) else {
                continue;
            };
            if w == 0 || !matcher.matches(&inst.spec, tags) {
                continue;
            }
            // Keep slot s with probability w / (weight seen so far): in the end each matching
            // slot is the one kept with probability w / total.
            total += w;
            if rng.u64(..total) < w {
                chosen = Some(s);
            }
        }
        chosen
    }
}

/// Remembers whether specs matched a tag filter, in a small direct-mapped table keyed by the spec's
/// address, so instances sharing a spec allocation cost a pointer comparison each instead of string
/// comparisons.
struct Matcher {
    seen: [(*const Spec, bool); 64],
}

impl Default for Matcher {
    fn default() -> Self {
        Matcher {
            seen: [(std::ptr::null(), false); 64],
        }
    }
}

impl Matcher {
    fn matches<S: AsRef<str>>(&mut self, spec: &Arc<Spec>, tags: &[S]) -> bool {
        let ptr = Arc::as_ptr(spec);
        // Specs are at least 64 bytes apart: the bits above 6 tell them apart.
        let slot = &mut self.seen[(ptr as usize >> 6) % 64];
        if slot.0 != ptr {
            *slot = (ptr, spec.has_tags(tags));
        }
        slot.1
    }
}

#[cfg(test)]
impl Tags {
    /// The members of `tag` as sorted (slot, weight) pairs, weights read as a pick reads them.
    pub(super) fn members_of(&self, tag: &str, slots: &[Instance]) -> Vec<(usize, u32)> {
        let Some(m) = self.of(tag) else {
            return Vec::new();
        };
        let mut out: Vec<_> = m.each(slots).collect();
        out.sort_unstable();
        out
    }

    /// Asserts the indexes are exactly what a scan of `slots` gives, with the service's `weights`.
    pub(super) fn check(&self, slots: &[Instance], weights: &Weights) {
        let mut want: HashMap<&str, Vec<(usize, u32)>> = HashMap::new();
        for (i, inst) in slots.iter().enumerate() {
            for tag in &inst.spec.tags {
                want.entry(tag).or_default().push((i, weights.get(i)));
            }
        }
        assert_eq!(self.ids.len(), want.len(), "one index per tag carried");
        let mut positions = 0;
        for (tag, members) in &want {
            assert_eq!(&self.members_of(tag, slots), members, "tag {tag}");
            match self.of(tag).unwrap() {
                Members::Empty => panic!("tag {tag} has an empty index"),
                Members::One(_) => {}
                Members::Many(m) => {
                    assert_eq!(m.slots.len(), m.weights.len());
                    for (p, &s) in m.slots.iter().enumerate() {
                        assert_eq!(self.at.get(&(self.ids[*tag], s)), Some(&small(p)));
                    }
                    positions += m.slots.len();
                }
            }
        }
        assert_eq!(
            self.at.len(),
            positions,
            "positions of members of a Many only"
        );
        assert_eq!(self.ids.len() + self.free.len(), self.members.len());
        for &id in &self.free {
            assert!(
                matches!(self.members[id as usize], Members::Empty),
                "free id {id}"
            );
        }
    }
}

#[cfg(test)]
mod tests;
