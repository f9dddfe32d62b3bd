//! Weighted random picks in O(log n): a Fenwick (binary indexed) tree over the instance slots of one
//! service, kept parallel to its dense `Vec`.
//!
//! Each slot holds the weight it may be picked with: the instance's `weight` while it is pickable, 0
//! while it is excluded by a probe or draining. A pick draws `u` uniformly in `0..total` and walks
//! the tree down to the slot whose cumulative range holds `u`, so slot `i` is returned with
//! probability `w[i] / total`: uniform when all weights are equal, never a slot of weight 0.
//! Setting a weight, pushing a slot and popping the last slot are O(log n), which matches the
//! `swap_remove` the service's `Vec` does on deregistration.
//!
//! ```text
//! weights   3 1 0 4        total 8:  u in 0..3 → slot 0, 3 → slot 1, 4..8 → slot 3
//! ```

/// Cumulative weights over slots `0..len`, 1-based inside as Fenwick trees are.
#[derive(Debug, Default, Clone)]
pub(crate) struct Weights {
    /// `tree[k]` (1-based, `tree[0]` unused) sums the weights of slots `k - lowbit(k) .. k`.
    tree: Vec<u64>,
    /// The weight of each slot, to answer `get` and to compute deltas.
    leaf: Vec<u32>,
    total: u64,
}

fn lowbit(k: usize) -> usize {
    k & k.wrapping_neg()
}

impl Weights {
    /// Number of slots.
    pub(crate) fn len(&self) -> usize {
        self.leaf.len()
    }

    /// Sum of all weights: 0 means nothing is pickable.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// The weight of slot `i`.
    pub(crate) fn get(&self, i: usize) -> u32 {
        self.leaf[i]
    }

    /// Sum of the weights of slots `0..n`.
    fn prefix(&self, n: usize) -> u64 {
        let (mut k, mut sum) = (n, 0);
        while k > 0 {
            sum += self.tree[k];
            k -= lowbit(k);
        }
        sum
    }

    /// Appends a slot with weight `w`.
    pub(crate) fn push(&mut self, w: u32) {
        if self.tree.is_empty() {
            self.tree.push(0);
        }
        let k = self.leaf.len() + 1;
        // Node k covers slots k - lowbit(k) .. k: the existing ones plus the new one.
        let covered = self.prefix(k - 1) - self.prefix(k - lowbit(k));
        self.tree.push(covered + u64::from(w));
        self.leaf.push(w);
        self.total += u64::from(w);
    }

    /// Removes the last slot.
    pub(crate) fn pop(&mut self) {
        let Some(last) = self.leaf.len().checked_sub(1) else {
            return;
        };
        // Only nodes at or after the last slot cover it, and those are removed with it.
        self.total -= u64::from(self.leaf[last]);
        self.leaf.pop();
        self.tree.pop();
    }

    /// Sets slot `i`'s weight to `w`.
    pub(crate) fn set(&mut self, i: usize, w: u32) {
        let old = self.leaf[i];
        if old == w {
            return;
        }
        self.leaf[i] = w;
        self.total = self.total - u64::from(old) + u64::from(w);
        let mut k = i + 1;
        while k < self.tree.len() {
            self.tree[k] = self.tree[k] - u64::from(old) + u64::from(w);
            k += lowbit(k);
        }
    }

    /// Mirrors `Vec::swap_remove(i)`: slot `i` takes the last slot's weight and the last goes.
    pub(crate) fn swap_remove(&mut self, i: usize) {
        let last = self.leaf.len() - 1;
        if i != last {
            let moved = self.leaf[last];
            self.set(i, moved);
        }
        self.pop();
    }

    /// The slot whose cumulative range holds `u` (which must be below [`Weights::total`]).
    pub(crate) fn find(&self, mut u: u64) -> usize {
        let n = self.leaf.len();
        let mut pos = 0;
        let mut step = if n == 0 { 0 } else { 1 << n.ilog2() };
        while step > 0 {
            let next = pos + step;
            if next <= n && self.tree[next] <= u {
                u -= self.tree[next];
                pos = next;
            }
            step >>= 1;
        }
        pos
    }

    /// A random slot, each with probability weight / total; `None` when the total is 0.
    pub(crate) fn pick(&self, rng: &mut fastrand::Rng) -> Option<usize> {
        if self.total == 0 {
            return None;
        }
        Some(self.find(rng.u64(..self.total)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The obvious model: a linear scan over plain weights.
    fn scan(w: &[u32], mut u: u64) -> usize {
        for (i, &x) in w.iter().enumerate() {
            if u < u64::from(x) {
                return i;
            }
            u -= u64::from(x);
        }
        unreachable!("u below total")
    }

    #[test]
    fn find_matches_a_linear_scan_for_every_draw() {
        let w = [3, 1, 0, 4, 0, 0, 7, 2, 1];
        let mut t = Weights::default();
        for &x in &w {
            t.push(x);
        }
        assert_eq!(t.total(), 18);
        for u in 0..18 {
            assert_eq!(t.find(u), scan(&w, u), "u = {u}");
        }
    }

    #[test]
    fn random_edits_keep_the_tree_equal_to_the_model() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut model: Vec<u32> = Vec::new();
        let mut t = Weights::default();
        for _ in 0..5_000 {
            match rng.u8(..4) {
                0 | 1 => {
                    let w = rng.u32(0..20);
                    model.push(w);
                    t.push(w);
                }
                2 if !model.is_empty() => {
                    let i = rng.usize(..model.len());
                    model.swap_remove(i);
                    t.swap_remove(i);
                }
                3 if !model.is_empty() => {
                    let i = rng.usize(..model.len());
                    let w = rng.u32(0..20);
                    model[i] = w;
                    t.set(i, w);
                }
                _ => {}
            }
            let total: u64 = model.iter().map(|&x| u64::from(x)).sum();
            assert_eq!(t.total(), total);
            assert_eq!(t.len(), model.len());
            if total > 0 {
                let u = rng.u64(..total);
                assert_eq!(t.find(u), scan(&model, u));
            }
        }
    }

    #[test]
    fn weights_one_and_four_split_picks_one_to_four() {
        let mut t = Weights::default();
        t.push(1);
        t.push(4);
        let mut rng = fastrand::Rng::with_seed(1);
        let mut counts = [0u32; 2];
        for _ in 0..10_000 {
            counts[t.pick(&mut rng).unwrap()] += 1;
        }
        assert!((1_800..=2_200).contains(&counts[0]), "{counts:?}");
    }

    #[test]
    fn zero_weights_are_never_picked_and_an_all_zero_tree_picks_none() {
        let mut t = Weights::default();
        for _ in 0..10 {
            t.push(0);
        }
        assert_eq!(t.pick(&mut fastrand::Rng::with_seed(3)), None);
        t.set(6, 5);
        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..100 {
            assert_eq!(t.pick(&mut rng), Some(6));
        }
    }
}
