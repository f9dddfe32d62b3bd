//! The tag indexes against their model, a scan of the slots: picks by weight among the members,
//! never a draining or excluded one, and every index in step through random changes.

use super::super::tests::check_invariants;
use super::super::{Limits, Registry};
use super::*;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const TTL: Duration = Duration::from_secs(10);

fn spec(pairs: &[(&str, &str)]) -> Arc<Spec> {
    Arc::new(Spec::parse(pairs.iter().copied(), None).unwrap().spec)
}

fn reg() -> Registry {
    Registry::new(Limits::default())
}

/// Pearson's statistic of `seen` (counts by address) against shares proportional to `weights`.
fn chi_square(seen: &HashMap<String, u32>, weights: &[(&str, u32)]) -> f64 {
    let n: u32 = seen.values().sum();
    let total: u32 = weights.iter().map(|w| w.1).sum();
    (weights.iter())
        .map(|&(a, w)| {
            let want = f64::from(n) * f64::from(w) / f64::from(total);
            let got = f64::from(seen.get(a).copied().unwrap_or(0));
            (got - want).powi(2) / want
        })
        .sum()
}

/// The chi-square value a correct sampler exceeds with probability 0.001, for 1 to 4 degrees of
/// freedom (the classes less one): statistics tables.
const CHI_SQUARE_999: [f64; 4] = [10.83, 13.82, 16.27, 18.47];

fn tagged_counts(
    r: &mut Registry,
    tags: &[&str],
    rng: &mut fastrand::Rng,
    n: usize,
) -> HashMap<String, u32> {
    let mut seen = HashMap::new();
    for _ in 0..n {
        let a = r.pick_tagged("web", tags, rng).expect("a match");
        *seen.entry(a.to_string()).or_default() += 1;
    }
    seen
}

#[test]
fn tagged_picks_carry_every_tag_and_follow_the_weights() {
    let mut r = reg();
    let t0 = Instant::now();
    let v2eu = spec(&[("tag", "v2"), ("tag", "eu")]);
    let v2eu4 = spec(&[("tag", "v2"), ("tag", "eu"), ("weight", "4")]);
    let v2 = spec(&[("tag", "v2")]);
    r.upsert("web", "a", TTL, Some(&v2eu), None, t0).unwrap();
    r.upsert("web", "b", TTL, Some(&v2eu4), None, t0).unwrap();
    r.upsert("web", "c", TTL, Some(&v2), None, t0).unwrap();
    for i in 0..20 {
        r.register("web", &format!("plain:{i}"), TTL, t0).unwrap();
    }
    let mut rng = fastrand::Rng::with_seed(3);
    let mut seen: HashMap<String, u32> = HashMap::new();
    for _ in 0..10_000 {
        let a = r.pick_tagged("web", &["eu", "v2"], &mut rng).unwrap();
        *seen.entry(a.to_string()).or_default() += 1;
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!((1_800..=2_200).contains(&seen["a"]), "{seen:?}");
    assert_eq!(r.pick_tagged("web", &["v3"], &mut rng), None);
    assert_eq!(r.set_draining("web", "b", true), Some(true));
    assert_eq!(
        r.pick_tagged("web", &["eu"], &mut rng).as_deref(),
        Some("a")
    );
    assert!(r.mark_probe("web", "a", false, t0));
    assert_eq!(r.pick_tagged("web", &["eu"], &mut rng), None);
    assert!(r.pick_tagged::<&str>("web", &[], &mut rng).is_some());
}

#[test]
fn a_tagged_pick_finds_the_one_match_among_100k() {
    let mut r = reg();
    let t0 = Instant::now();
    let canary = spec(&[("tag", "canary")]);
    for i in 0..100_000 {
        let a = format!("h{i}:1");
        let s = (i == 54_321).then_some(&canary);
        r.upsert("add", &a, TTL, s, None, t0).unwrap();
    }
    let mut rng = fastrand::Rng::with_seed(8);
    for _ in 0..10 {
        assert_eq!(
            r.pick_tagged("add", &["canary"], &mut rng).as_deref(),
            Some("h54321:1")
        );
    }
}

#[test]
fn one_tag_draws_its_members_by_weight() {
    let mut r = reg();
    let t0 = Instant::now();
    let weights = [("c:1", 1), ("c:2", 2), ("c:3", 3), ("c:4", 4)];
    for (a, w) in weights {
        let s = spec(&[("tag", "canary"), ("weight", &w.to_string())]);
        r.upsert("web", a, TTL, Some(&s), None, t0).unwrap();
    }
    let heavy = spec(&[("weight", "1000")]);
    for i in 0..50 {
        r.upsert("web", &format!("p:{i}"), TTL, Some(&heavy), None, t0)
            .unwrap();
    }
    let mut rng = fastrand::Rng::with_seed(21);
    let seen = tagged_counts(&mut r, &["canary"], &mut rng, 20_000);
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert!(chi_square(&seen, &weights) < CHI_SQUARE_999[2], "{seen:?}");
    check_invariants(&r);
}

#[test]
fn several_tags_draw_by_weight_even_when_most_picks_fall_back_to_the_scan() {
    let mut r = reg();
    let t0 = Instant::now();
    // `eu` on 200 instances, `v2` on 400; both on three of them, holding 8 of the 205 weight of
    // `eu` (the rarer): a draw matches with probability 8/205, so 8 draws all miss 73 % of the time.
    let (eu, v2) = (spec(&[("tag", "eu")]), spec(&[("tag", "v2")]));
    for i in 0..197 {
        r.upsert("web", &format!("eu:{i}"), TTL, Some(&eu), None, t0)
            .unwrap();
    }
    for i in 0..397 {
        r.upsert("web", &format!("v2:{i}"), TTL, Some(&v2), None, t0)
            .unwrap();
    }
    let weights = [("both:1", 1), ("both:2", 2), ("both:5", 5)];
    for (a, w) in weights {
        let s = spec(&[("tag", "v2"), ("tag", "eu"), ("weight", &w.to_string())]);
        r.upsert("web", a, TTL, Some(&s), None, t0).unwrap();
    }
    let both = spec(&[("tag", "eu"), ("tag", "v2"), ("weight", "1000")]);
    r.upsert("web", "both:drained", TTL, Some(&both), Some(true), t0)
        .unwrap();
    let mut rng = fastrand::Rng::with_seed(22);
    let seen = tagged_counts(&mut r, &["v2", "eu"], &mut rng, 16_000);
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(chi_square(&seen, &weights) < CHI_SQUARE_999[1], "{seen:?}");
    let seen = tagged_counts(&mut r, &["eu", "v2", "eu"], &mut rng, 1_000);
    assert!(seen.keys().all(|a| a.starts_with("both:")), "{seen:?}");
    assert_eq!(r.pick_tagged("web", &["eu", "nobody"], &mut rng), None);
    check_invariants(&r);
}

#[test]
fn draining_and_excluded_members_are_never_drawn_and_come_back() {
    let mut r = reg();
    let t0 = Instant::now();
    let canary = spec(&[("tag", "canary")]);
    for a in ["c:1", "c:2", "c:3"] {
        r.upsert("web", a, TTL, Some(&canary), None, t0).unwrap();
    }
    r.register("web", "plain", TTL, t0).unwrap();
    let mut rng = fastrand::Rng::with_seed(23);
    assert_eq!(r.set_draining("web", "c:1", true), Some(true));
    assert!(r.mark_probe("web", "c:2", false, t0));
    let seen = tagged_counts(&mut r, &["canary"], &mut rng, 1_000);
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["c:3"]);
    assert_eq!(r.set_draining("web", "c:3", true), Some(true));
    assert_eq!(r.pick_tagged("web", &["canary"], &mut rng), None);
    assert!(r.pick("web", &mut rng).is_some(), "plain is still pickable");
    // Restored: undrained, probed well, or switched to check=none (which clears the exclusion).
    assert_eq!(r.set_draining("web", "c:1", false), Some(true));
    assert_eq!(
        r.pick_tagged("web", &["canary"], &mut rng).as_deref(),
        Some("c:1")
    );
    let none = spec(&[("tag", "canary"), ("check", "none")]);
    r.upsert("web", "c:2", TTL, Some(&none), None, t0).unwrap();
    let seen = tagged_counts(&mut r, &["canary"], &mut rng, 1_000);
    let mut got: Vec<_> = seen.keys().map(String::as_str).collect();
    got.sort_unstable();
    assert_eq!(got, ["c:1", "c:2"]);
    check_invariants(&r);
}

#[test]
fn a_rare_tag_among_100k_is_drawn_by_weight_from_an_index_of_its_own() {
    let mut r = reg();
    let t0 = Instant::now();
    let plain = spec(&[("tag", "v2")]);
    let canary: Vec<_> = (1..=4)
        .map(|w| spec(&[("tag", "canary"), ("weight", &w.to_string())]))
        .collect();
    for i in 0..100_000 {
        let s = if i % 100 == 0 {
            &canary[i / 100 % 4]
        } else {
            &plain
        };
        r.upsert("web", &format!("h{i}:1"), TTL, Some(s), None, t0)
            .unwrap();
    }
    // One canary of each weight drained: never drawn, and the shares stay 1:2:3:4.
    for i in [0, 100, 200, 300] {
        r.set_draining("web", &format!("h{i}:1"), true);
    }
    let svc = &r.services["web"];
    assert_eq!(svc.tags.members_of("canary", &svc.slots).len(), 1_000);
    assert_eq!(svc.tags.members_of("v2", &svc.slots).len(), 99_000);
    let weight_of = |a: &str| {
        let i: usize = a
            .trim_start_matches('h')
            .trim_end_matches(":1")
            .parse()
            .unwrap();
        assert_eq!(i % 100, 0, "{a} carries no canary");
        assert!(i >= 400, "{a} is draining");
        ["w1", "w2", "w3", "w4"][i / 100 % 4]
    };
    let mut rng = fastrand::Rng::with_seed(24);
    let mut seen: HashMap<String, u32> = HashMap::new();
    for _ in 0..20_000 {
        let a = r.pick_tagged("web", &["canary"], &mut rng).unwrap();
        *seen.entry(weight_of(&a).to_string()).or_default() += 1;
    }
    let weights = [("w1", 1), ("w2", 2), ("w3", 3), ("w4", 4)];
    assert!(chi_square(&seen, &weights) < CHI_SQUARE_999[2], "{seen:?}");
    check_invariants(&r);
}

#[test]
fn tags_nobody_carries_are_freed_and_a_tag_of_one_instance_has_no_tree() {
    let mut r = reg();
    let t0 = Instant::now();
    r.register("web", "plain", TTL, t0).unwrap();
    for i in 0..1_000 {
        let own = spec(&[("tag", &format!("own-{i}")), ("tag", "shared")]);
        r.upsert("web", &format!("h:{i}"), TTL, Some(&own), None, t0)
            .unwrap();
        if i > 0 {
            assert!(r.deregister("web", &format!("h:{}", i - 1)));
        }
    }
    let svc = &r.services["web"];
    let tags = &svc.tags;
    assert_eq!(tags.ids.len(), 2, "own-999 and shared");
    assert!(
        tags.members.len() <= 3,
        "{} indexes kept",
        tags.members.len()
    );
    assert_eq!(tags.members_of("own-999", &svc.slots).len(), 1);
    // A tag of one instance is its slot number alone: no tree, no position entry.
    assert!(matches!(tags.of("own-999"), Some(Members::One(_))));
    assert!(matches!(tags.of("shared"), Some(Members::Many(_))));
    assert_eq!(tags.at.len(), 1, "the one member of shared's tree");
    check_invariants(&r);
}

#[test]
fn random_changes_keep_every_tag_index_equal_to_a_scan() {
    // Tags from a small pool (shared by many) and tags of one instance; weights 1..=3 and one heavy.
    let pool = ["a", "b", "c", "d"];
    let mut rng = fastrand::Rng::with_seed(0x7a95);
    let mut r = reg();
    let t0 = Instant::now();
    let mut now = t0;
    let filters: Vec<Vec<String>> = vec![
        vec!["a".into()],
        vec!["b".into()],
        vec!["a".into(), "b".into()],
        vec!["c".into(), "d".into(), "a".into()],
        vec!["own-3".into()],
        vec!["own-3".into(), "a".into()],
        vec!["nobody".into()],
    ];
    for step in 0..20_000 {
        let a = format!("h:{}", rng.usize(..48));
        match rng.u8(..10) {
            0..=3 => {
                let mut pairs: Vec<(String, String)> = (pool.iter())
                    .filter(|_| rng.u8(..3) == 0)
                    .map(|t| ("tag".to_string(), t.to_string()))
                    .collect();
                if rng.u8(..4) == 0 {
                    pairs.push(("tag".into(), format!("own-{}", rng.usize(..8))));
                }
                let w = [1, 2, 3, 500][rng.usize(..4)];
                pairs.push(("weight".into(), w.to_string()));
                if rng.u8(..8) == 0 {
                    pairs.push(("check".into(), "none".into()));
                }
                let s = Arc::new(Spec::parse(pairs, None).unwrap().spec);
                let ttl = Duration::from_secs(rng.u64(1..30));
                r.upsert("web", &a, ttl, Some(&s), None, now).unwrap();
            }
            4 => {
                r.register("web", &a, Duration::from_secs(rng.u64(1..30)), now)
                    .unwrap();
            }
            5 => {
                r.deregister("web", &a);
            }
            6 => {
                r.mark_probe("web", &a, rng.bool(), now);
            }
            7 => {
                r.set_draining("web", &a, rng.bool());
            }
            8 => {
                now += Duration::from_secs(rng.u64(0..2));
                r.expire(now);
            }
            _ => {}
        }
        // The indexes against a scan of the slots (members, positions, weights, freed ids).
        check_invariants(&r);
        let filter = &filters[rng.usize(..filters.len())];
        let want: Vec<String> = (r.instances("web").unwrap_or_default().into_iter())
            .filter(|i| i.pickable() && i.spec.has_tags(filter))
            .map(|i| i.addr.to_string())
            .collect();
        match r.pick_tagged("web", filter, &mut rng) {
            Some(p) => assert!(
                want.contains(&p.to_string()),
                "step {step}: {p} not in {want:?}"
            ),
            None => assert!(want.is_empty(), "step {step}: none picked among {want:?}"),
        }
    }
}
