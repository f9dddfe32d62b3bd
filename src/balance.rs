//! Client-side balancing, kept apart from I/O: pick strategies, outlier ejection and a retry budget.
//!
//! - `random` is the original design's pick; `round-robin` spreads evenly; `p2c` (power of two
//!   choices, Envoy's least-request) draws two distinct instances and takes the one with fewer calls in flight,
//!   which steers traffic away from a slow instance without any measurement of latency.
//! - Weights (an instance's `weight` in the registry's listing) shape all three: `random` draws with
//!   probability weight / total, `round-robin` is nginx's smooth weighted round-robin (weights 5, 1, 1
//!   give `a a b a c a a`, not `a a a a a b c`), and `p2c` draws its two candidates by weight and
//!   compares calls in flight per unit of weight (a tie goes to the first draw, so with nothing in
//!   flight the split is the weights'). With equal weights each is its unweighted self.
//! - Outlier ejection: after [`EJECT_AFTER`] consecutive failures an instance is skipped for
//!   [`EJECT_BASE`] times the number of its ejections, capped at [`EJECT_MAX`] (Envoy's defaults, with
//!   3 failures instead of 5 because a refused connection is already certain); at most half of the
//!   instances are ejected at once and at least one is always callable.
//! - Retry budget (Finagle, Linkerd): retries may add [`BUDGET_RATIO`] of the calls, plus a floor of
//!   [`BUDGET_FLOOR_PER_SEC`] per second, so a dying service is not hammered by retries.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// Consecutive failures that eject an instance.
pub const EJECT_AFTER: u32 = 3;
/// First ejection; each further ejection of the same instance lasts this much longer.
pub const EJECT_BASE: Duration = Duration::from_secs(30);
/// Longest ejection.
pub const EJECT_MAX: Duration = Duration::from_secs(300);
/// Retries may add this fraction of the calls made.
pub const BUDGET_RATIO: f64 = 0.2;
/// Retries always allowed per second, however few calls were made.
pub const BUDGET_FLOOR_PER_SEC: f64 = 10.0;
/// Most retry tokens saved up.
const BUDGET_CAP: f64 = 100.0;

/// How to pick among healthy instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Uniformly at random (the original design).
    #[default]
    Random,
    /// In turn.
    RoundRobin,
    /// Power of two choices on calls in flight.
    P2c,
}

impl FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "random" => Ok(Strategy::Random),
            "round-robin" => Ok(Strategy::RoundRobin),
            "p2c" => Ok(Strategy::P2c),
            _ => Err(format!(
                "{s:?} is not a strategy (random, round-robin or p2c)"
            )),
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Strategy::Random => "random",
            Strategy::RoundRobin => "round-robin",
            Strategy::P2c => "p2c",
        })
    }
}

#[derive(Debug, Default, Clone)]
struct Stats {
    /// Smooth weighted round-robin's running score (nginx's `current_weight`).
    current: i64,
    in_flight: usize,
    failures: u32,
    ejections: u32,
    ejected_until: Option<Instant>,
}

/// The balancer's view of a service: the instances the registry lists, and what calls taught it.
///
/// ```
/// use mini::balance::{Balancer, Strategy};
/// use std::time::Instant;
/// let mut b = Balancer::new(Strategy::RoundRobin);
/// b.set_instances(vec!["a:1".into(), "b:2".into()]);
/// let now = Instant::now();
/// let first = b.pick(&[], now).unwrap();
/// let second = b.pick(&[], now).unwrap();
/// assert_ne!(first, second);
/// ```
#[derive(Debug)]
pub struct Balancer {
    strategy: Strategy,
    instances: Vec<String>,
    /// Weight of each of `instances`, at least 1.
    weights: Vec<u32>,
    stats: HashMap<String, Stats>,
    rng: fastrand::Rng,
    budget: f64,
    budget_at: Option<Instant>,
}

impl Balancer {
    /// An empty balancer.
    pub fn new(strategy: Strategy) -> Balancer {
        Balancer {
            strategy,
            instances: Vec::new(),
            weights: Vec::new(),
            stats: HashMap::new(),
            rng: fastrand::Rng::new(),
            budget: BUDGET_FLOOR_PER_SEC,
            budget_at: None,
        }
    }

    /// Replaces the instance list (from the registry), all of weight 1; what was learned about kept
    /// instances stays.
    pub fn set_instances(&mut self, instances: Vec<String>) {
        self.set_weighted(instances.into_iter().map(|a| (a, 1)).collect());
    }

    /// Replaces the instance list with weighted instances (a weight of 0 counts as 1: an instance
    /// the registry lists as callable is callable).
    pub fn set_weighted(&mut self, instances: Vec<(String, u32)>) {
        self.stats
            .retain(|addr, _| instances.iter().any(|(a, _)| a == addr));
        (self.instances, self.weights) =
            (instances.into_iter()).map(|(a, w)| (a, w.max(1))).unzip();
    }

    /// The instances known now.
    pub fn instances(&self) -> &[String] {
        &self.instances
    }

    /// Picks an instance not in `exclude`, skipping ejected ones while others remain.
    pub fn pick(&mut self, exclude: &[String], now: Instant) -> Option<String> {
        let open: Vec<usize> = (0..self.instances.len())
            .filter(|&i| !exclude.contains(&self.instances[i]))
            .collect();
        let callable: Vec<usize> = open
            .iter()
            .copied()
            .filter(|&i| !self.ejected(i, now))
            .collect();
        let pool = if callable.is_empty() {
            &open
        } else {
            &callable
        };
        let i = self.choose(pool)?;
        Some(self.instances[i].clone())
    }

    fn ejected(&self, i: usize, now: Instant) -> bool {
        self.stats
            .get(&self.instances[i])
            .and_then(|s| s.ejected_until)
            .is_some_and(|until| until > now)
    }

    fn choose(&mut self, pool: &[usize]) -> Option<usize> {
        if pool.is_empty() {
            return None;
        }
        let pos = match self.strategy {
            Strategy::Random => self.weighted_draw(pool, None),
            Strategy::RoundRobin => self.smooth_round_robin(pool),
            Strategy::P2c if pool.len() == 1 => 0,
            Strategy::P2c => {
                // Two distinct instances: with replacement (as Envoy draws) a slow instance would
                // still get 1/n² of the calls, 11 % in a three-adder fleet.
                let a = self.weighted_draw(pool, None);
                let b = self.weighted_draw(pool, Some(a));
                // Fewer calls in flight per unit of weight wins (f_b / w_b < f_a / w_a); a tie goes
                // to the first draw, so with nothing in flight the split is the weights'.
                let load = |i: usize, other: usize| {
                    self.in_flight(pool[i]) as u64 * u64::from(self.weights[pool[other]])
                };
                if load(b, a) < load(a, b) {
                    b
                } else {
                    a
                }
            }
        };
        pool.get(pos).copied()
    }

    /// A position in `pool` drawn with probability weight / total, skipping `except`.
    fn weighted_draw(&mut self, pool: &[usize], except: Option<usize>) -> usize {
        let weight = |pos: usize| {
            if Some(pos) == except {
                0
            } else {
                u64::from(self.weights[pool[pos]])
            }
        };
        let total: u64 = (0..pool.len()).map(weight).sum();
        let mut u = self.rng.u64(..total.max(1));
        for pos in 0..pool.len() {
            let w = weight(pos);
            if u < w {
                return pos;
            }
            u -= w;
        }
        0
    }

    /// nginx's smooth weighted round-robin over `pool`: every candidate's score grows by its weight,
    /// the highest score is picked and loses the total; equal weights visit each in turn.
    fn smooth_round_robin(&mut self, pool: &[usize]) -> usize {
        let mut total = 0i64;
        let mut best: Option<(usize, i64)> = None;
        for (pos, &i) in pool.iter().enumerate() {
            let w = i64::from(self.weights[i]);
            total += w;
            let stats = self.stats.entry(self.instances[i].clone()).or_default();
            stats.current += w;
            if best.is_none_or(|(_, score)| stats.current > score) {
                best = Some((pos, stats.current));
            }
        }
        let pos = best.map_or(0, |(pos, _)| pos);
        if let Some(stats) = self.stats.get_mut(&self.instances[pool[pos]]) {
            stats.current -= total;
        }
        pos
    }

    fn in_flight(&self, i: usize) -> usize {
        self.stats
            .get(&self.instances[i])
            .map_or(0, |s| s.in_flight)
    }

    /// A call to `addr` starts; also deposits its share of retry budget.
    pub fn start(&mut self, addr: &str, now: Instant) {
        self.stats.entry(addr.to_string()).or_default().in_flight += 1;
        self.refill(now);
        self.budget = (self.budget + BUDGET_RATIO).min(BUDGET_CAP);
    }

    /// A call to `addr` ended; a failure may eject it. Returns true if this ejected it.
    pub fn finish(&mut self, addr: &str, ok: bool, now: Instant) -> bool {
        let ejectable = self.ejectable(now);
        let Some(s) = self.stats.get_mut(addr) else {
            return false;
        };
        s.in_flight = s.in_flight.saturating_sub(1);
        if ok {
            s.failures = 0;
            return false;
        }
        s.failures += 1;
        if s.failures < EJECT_AFTER || s.ejected_until.is_some_and(|u| u > now) || !ejectable {
            return false;
        }
        s.ejections += 1;
        s.failures = 0;
        let span = EJECT_BASE.saturating_mul(s.ejections).min(EJECT_MAX);
        s.ejected_until = Some(now + span);
        true
    }

    /// Whether one more instance may be ejected: at most half, and one always stays callable.
    fn ejectable(&self, now: Instant) -> bool {
        let ejected = (0..self.instances.len())
            .filter(|&i| self.ejected(i, now))
            .count();
        ejected < self.instances.len() / 2
    }

    /// Takes one retry from the budget; false when retries would exceed it.
    pub fn try_retry(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.budget >= 1.0 {
            self.budget -= 1.0;
            true
        } else {
            false
        }
    }

    fn refill(&mut self, now: Instant) {
        if let Some(then) = self.budget_at {
            let secs = now.saturating_duration_since(then).as_secs_f64();
            self.budget = (self.budget + secs * BUDGET_FLOOR_PER_SEC).min(BUDGET_CAP);
        }
        self.budget_at = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three(strategy: Strategy) -> Balancer {
        let mut b = Balancer::new(strategy);
        b.set_instances(vec!["a:1".into(), "b:2".into(), "c:3".into()]);
        b
    }

    #[test]
    fn round_robin_visits_each_in_turn() {
        let mut b = three(Strategy::RoundRobin);
        let now = Instant::now();
        let picks: Vec<String> = (0..6).map(|_| b.pick(&[], now).unwrap()).collect();
        for addr in ["a:1", "b:2", "c:3"] {
            assert_eq!(picks.iter().filter(|p| *p == addr).count(), 2, "{picks:?}");
        }
    }

    #[test]
    fn p2c_avoids_the_instance_with_calls_in_flight() {
        let mut b = three(Strategy::P2c);
        let now = Instant::now();
        for _ in 0..5 {
            b.start("a:1", now);
        }
        let a_picks = (0..3000)
            .filter(|_| b.pick(&[], now).unwrap() == "a:1")
            .count();
        // Two distinct draws always include an instance less busy than a: it is never chosen.
        assert_eq!(a_picks, 0);
    }

    #[test]
    fn three_failures_eject_and_success_resets() {
        let mut b = three(Strategy::Random);
        let now = Instant::now();
        for _ in 0..2 {
            b.start("a:1", now);
            assert!(!b.finish("a:1", false, now));
        }
        b.start("a:1", now);
        assert!(!b.finish("a:1", true, now));
        for _ in 0..2 {
            b.start("a:1", now);
            assert!(!b.finish("a:1", false, now));
        }
        b.start("a:1", now);
        assert!(b.finish("a:1", false, now));
        assert!((0..300).all(|_| b.pick(&[], now).unwrap() != "a:1"));
        let later = now + EJECT_BASE + Duration::from_millis(1);
        assert!((0..300).any(|_| b.pick(&[], later).unwrap() == "a:1"));
    }

    #[test]
    fn at_most_half_ejected_and_one_always_callable() {
        let mut b = three(Strategy::Random);
        let now = Instant::now();
        for addr in ["a:1", "b:2"] {
            for _ in 0..EJECT_AFTER {
                b.start(addr, now);
                b.finish(addr, false, now);
            }
        }
        // Only one of three may be ejected (half, rounded down).
        let seen: std::collections::HashSet<String> =
            (0..300).map(|_| b.pick(&[], now).unwrap()).collect();
        assert_eq!(seen.len(), 2, "{seen:?}");
        // Excluding everything callable still leaves the ejected one rather than nothing.
        assert!(b.pick(&["b:2".into(), "c:3".into()], now).is_some());
    }

    #[test]
    fn ejections_grow_and_are_capped() {
        let mut b = three(Strategy::Random);
        let mut now = Instant::now();
        for round in 1..=12u32 {
            for _ in 0..EJECT_AFTER {
                b.start("a:1", now);
                b.finish("a:1", false, now);
            }
            let until = b.stats["a:1"].ejected_until.unwrap();
            assert_eq!(until - now, (EJECT_BASE * round).min(EJECT_MAX));
            now = until + Duration::from_millis(1);
        }
    }

    #[test]
    fn the_retry_budget_is_a_fifth_of_calls_plus_a_floor() {
        let mut b = three(Strategy::Random);
        let now = Instant::now();
        let mut granted = 0;
        for _ in 0..1000 {
            b.start("a:1", now);
            b.finish("a:1", true, now);
            if b.try_retry(now) {
                granted += 1;
            }
        }
        // The initial floor (10) plus 20 % of 1000 calls.
        assert!((200..=211).contains(&granted), "{granted}");
        assert!(!b.try_retry(now));
        assert!(b.try_retry(now + Duration::from_millis(150)));
    }

    fn weighted(strategy: Strategy) -> Balancer {
        let mut b = Balancer::new(strategy);
        b.set_weighted(vec![
            ("a:1".into(), 5),
            ("b:2".into(), 1),
            ("c:3".into(), 1),
        ]);
        b
    }

    fn shares(b: &mut Balancer, n: usize) -> HashMap<String, usize> {
        let now = Instant::now();
        let mut seen = HashMap::new();
        for _ in 0..n {
            *seen.entry(b.pick(&[], now).unwrap()).or_default() += 1;
        }
        seen
    }

    #[test]
    fn random_draws_by_weight() {
        let seen = shares(&mut weighted(Strategy::Random), 7_000);
        // 5/7, 1/7, 1/7 of 7000: 5000, 1000, 1000.
        assert!((4_700..=5_300).contains(&seen["a:1"]), "{seen:?}");
        assert!((850..=1_150).contains(&seen["b:2"]), "{seen:?}");
    }

    #[test]
    fn round_robin_is_smooth_and_weighted_like_nginx() {
        let mut b = weighted(Strategy::RoundRobin);
        let now = Instant::now();
        let picks: Vec<String> = (0..7).map(|_| b.pick(&[], now).unwrap()).collect();
        // nginx's example: weights 5, 1, 1 give a a b a c a a.
        assert_eq!(picks, ["a:1", "a:1", "b:2", "a:1", "c:3", "a:1", "a:1"]);
        assert_eq!(shares(&mut b, 700)["a:1"], 500);
    }

    #[test]
    fn p2c_draws_by_weight_and_weighs_calls_in_flight() {
        let seen = shares(&mut weighted(Strategy::P2c), 7_000);
        // Nothing in flight: the first weighted draw wins, so the split follows the weights.
        assert!((4_700..=5_300).contains(&seen["a:1"]), "{seen:?}");
        let mut b = weighted(Strategy::P2c);
        let now = Instant::now();
        // Four calls in flight on a (weight 5) is less load per weight than one on b (weight 1).
        for _ in 0..4 {
            b.start("a:1", now);
        }
        b.start("b:2", now);
        b.start("c:3", now);
        let a = (0..3000)
            .filter(|_| b.pick(&[], now).unwrap() == "a:1")
            .count();
        assert!(a > 2_000, "a picked {a} of 3000");
    }

    #[test]
    fn strategies_parse() {
        assert_eq!("p2c".parse::<Strategy>(), Ok(Strategy::P2c));
        assert!("fastest".parse::<Strategy>().is_err());
    }
}
