use super::super::tests::{check_invariants, reg, secs, TTL};
use super::super::{Limits, RegisterError};
use super::*;
use std::collections::{BTreeSet, HashSet};

fn held(service: &str, addr: &str, ttl: Option<Duration>, excluded: bool) -> Held {
    Held {
        service: service.into(),
        addr: addr.into(),
        ttl,
        excluded,
        spec: Arc::default(),
        draining: false,
    }
}

/// (addr, expires_at, excluded) of each instance of `service`, sorted.
fn view(r: &Registry, service: &str) -> Vec<(String, Instant, bool)> {
    (r.instances(service).unwrap_or_default().into_iter())
        .map(|i| (i.addr.to_string(), i.expires_at, i.excluded))
        .collect()
}

#[test]
fn each_change_says_what_it_did_and_only_real_changes_move() {
    let mut r = reg();
    let t0 = Instant::now();
    let tcp = Spec::parse([("check", "tcp")], None).unwrap().spec;
    let cases: Vec<(Change, Outcome, bool)> = vec![
        (
            Change::upsert("add", "h:1", TTL),
            Outcome::Registered(Registered::New),
            true,
        ),
        (
            Change::upsert("add", "h:1", TTL),
            Outcome::Registered(Registered::Renewed),
            false,
        ),
        (
            Change::upsert("a b", "h:1", TTL),
            Outcome::Refused(RegisterError::BadServiceName),
            false,
        ),
        (
            Change::health("add", "h:1", true),
            Outcome::Health(false),
            false,
        ),
        (
            Change::health("add", "h:1", false),
            Outcome::Health(true),
            true,
        ),
        (
            Change::health("add", "h:9", false),
            Outcome::Health(false),
            false,
        ),
        (
            Change::upsert("add", "h:1", TTL).with_spec(Arc::new(tcp.clone())),
            Outcome::Registered(Registered::Updated),
            true,
        ),
        (
            Change::upsert("add", "h:1", TTL).with_spec(Arc::new(tcp)),
            Outcome::Registered(Registered::Renewed),
            false,
        ),
        (
            Change::drain("add", "h:1", true),
            Outcome::Drained(Some(true)),
            true,
        ),
        (
            Change::drain("add", "h:1", true),
            Outcome::Drained(Some(false)),
            false,
        ),
        (
            Change::upsert("add", "h:1", TTL).with_draining(false),
            Outcome::Registered(Registered::Updated),
            true,
        ),
        (
            Change::drain("add", "h:9", true),
            Outcome::Drained(None),
            false,
        ),
        (Change::remove("add", "h:9"), Outcome::Removed(false), false),
        (Change::remove("add", "h:1"), Outcome::Removed(true), true),
    ];
    for (i, (change, want, moves)) in cases.into_iter().enumerate() {
        let now = t0 + secs(i as u64);
        let before = r.index("add");
        let applied = r.apply(std::slice::from_ref(&change), now);
        assert_eq!(applied.outcomes, std::slice::from_ref(&want), "{change:?}");
        assert_eq!(want.moved(), moves, "{change:?}");
        let moved: &[&str] = if moves { &["add"] } else { &[] };
        assert_eq!(applied.moved, moved, "{change:?}");
        assert_eq!(r.index("add") != before, moves, "{change:?}");
        check_invariants(&r);
    }
    assert!(r.is_empty());
}

#[test]
fn apply_one_matches_apply_and_a_renewal_leaves_moved_untouched() {
    let (mut a, mut b) = (reg(), reg());
    let t0 = Instant::now();
    let changes = [
        Change::upsert("add", "h:1", TTL),
        Change::upsert("add", "h:1", secs(20)),
        Change::health("add", "h:1", false),
        Change::upsert("mul", "h:2", TTL),
        Change::remove("add", "h:1"),
    ];
    for change in &changes {
        let mut moved = Vec::new();
        let one = a.apply_one(change, t0, &mut moved);
        let all = b.apply(std::slice::from_ref(change), t0);
        assert_eq!(all.outcomes, [one]);
        assert_eq!(all.moved, moved);
    }
    let mut moved = Vec::new();
    a.apply_one(&Change::upsert("mul", "h:2", TTL), t0, &mut moved);
    assert_eq!(moved.capacity(), 0, "a renewal allocated");
    assert_eq!(view(&a, "mul"), view(&b, "mul"));
}

#[test]
fn a_batch_reports_each_moved_service_once_and_not_one_that_came_and_went() {
    let mut r = reg();
    let t0 = Instant::now();
    r.apply(&[Change::upsert("keep", "h:1", TTL)], t0);
    let applied = r.apply(
        &[
            Change::upsert("add", "h:1", TTL),
            Change::upsert("add", "h:2", TTL),
            Change::health("add", "h:1", false),
            Change::upsert("brief", "h:1", TTL),
            Change::remove("brief", "h:1"),
            Change::upsert("keep", "h:1", TTL),
        ],
        t0,
    );
    // "brief" was created and removed within the batch: its index is 0 before and after.
    assert_eq!(applied.moved, ["add"]);
    assert_eq!(applied.outcomes.len(), 6);
    check_invariants(&r);
}

#[test]
fn a_reset_makes_the_state_match_the_snapshot() {
    let limits = Limits {
        max_services: 10,
        max_instances_per_service: 10,
        max_instances_total: 4,
    };
    let mut r = Registry::new(limits);
    let t0 = Instant::now();
    r.apply(
        &[
            Change::upsert("add", "h:1", TTL), // renewed by the snapshot
            Change::upsert("add", "h:2", TTL), // not in it: dropped
            Change::upsert("add", "h:3", TTL), // newer than it: kept as is
            Change::health("add", "h:3", false),
            Change::upsert("same", "h:1", TTL), // in it unchanged: its index stays
        ],
        t0,
    );
    let same = r.index("same");
    let t1 = t0 + secs(5);
    let snapshot = Snapshot {
        instances: vec![
            held("add", "h:1", Some(secs(30)), true),
            held("add", "h:3", None, false),
            held("add", "h:4", None, false), // kept only if present: it is not
            held("same", "h:1", Some(TTL), false),
            held("mul", "h:1", Some(TTL), false),
            held("mul", "h:2", Some(TTL), false), // over the total of 4
        ],
    };
    let applied = r.apply(&[Change::Reset(snapshot)], t1);
    assert_eq!(
        applied.outcomes,
        [Outcome::Reset(ResetReport {
            removed: 1,
            refused: 1,
            total: 4,
            changed: true,
        })]
    );
    assert_eq!(applied.moved, ["add", "mul"]);
    assert_eq!(r.index("same"), same);
    assert_eq!(
        view(&r, "add"),
        [
            ("h:1".to_string(), t1 + secs(30), true),
            ("h:3".to_string(), t0 + TTL, false),
        ]
    );
    assert_eq!(view(&r, "same"), [("h:1".to_string(), t1 + TTL, false)]);
    assert_eq!(view(&r, "mul"), [("h:1".to_string(), t1 + TTL, false)]);
    check_invariants(&r);
    // The same snapshot again changes nothing and wakes no one.
    let again = Snapshot {
        instances: vec![
            held("add", "h:1", Some(secs(30)), true),
            held("add", "h:3", None, false),
            held("same", "h:1", Some(TTL), false),
            held("mul", "h:1", Some(TTL), false),
        ],
    };
    let applied = r.apply(&[Change::Reset(again)], t1);
    assert!(applied.moved.is_empty());
    assert!(!applied.outcomes[0].moved());
    // An empty snapshot empties the state.
    let mut moved = Vec::new();
    let outcome = r.apply_one(&Change::Reset(Snapshot::default()), t1, &mut moved);
    assert_eq!(moved, ["add", "mul", "same"]);
    assert!(matches!(
        outcome,
        Outcome::Reset(ResetReport {
            removed: 4,
            total: 0,
            ..
        })
    ));
    assert!(r.is_empty());
}

/// The model: (service, addr) -> (expires_at, excluded).
type Model = HashMap<(String, String), (Instant, bool)>;

fn apply_to_model(m: &mut Model, change: &Change, now: Instant) {
    match change {
        Change::Upsert {
            service, addr, ttl, ..
        } => {
            let key = (service.to_string(), addr.to_string());
            let excluded = m.get(&key).is_some_and(|v| v.1);
            m.insert(key, (now + *ttl, excluded));
        }
        Change::Remove { service, addr } => {
            m.remove(&(service.to_string(), addr.to_string()));
        }
        Change::Health { service, addr, ok } => {
            if let Some(v) = m.get_mut(&(service.to_string(), addr.to_string())) {
                v.1 = !ok;
            }
        }
        Change::Drain { .. } => {}
        Change::Reset(snapshot) => {
            let mut next = Model::new();
            for h in &snapshot.instances {
                let key = (h.service.clone(), h.addr.clone());
                match (h.ttl, m.get(&key)) {
                    (Some(ttl), _) => next.insert(key, (now + ttl, h.excluded)),
                    (None, Some(v)) => next.insert(key, (v.0, h.excluded)),
                    (None, None) => None,
                };
            }
            *m = next;
        }
    }
}

fn random_change(rng: &mut fastrand::Rng) -> Change<'static> {
    let pick = |rng: &mut fastrand::Rng| {
        (
            format!("s{}", rng.usize(..3)),
            format!("h:{}", rng.usize(..8)),
        )
    };
    let (s, a) = pick(rng);
    match rng.u8(..20) {
        0..=7 => Change::upsert(s, a, secs(rng.u64(1..20))),
        8..=10 => Change::remove(s, a),
        11..=18 => Change::health(s, a, rng.bool()),
        _ => {
            let mut seen = HashSet::new();
            let mut instances = Vec::new();
            for _ in 0..rng.usize(..12) {
                let (s, a) = pick(rng);
                if seen.insert((s.clone(), a.clone())) {
                    let ttl = rng.bool().then(|| secs(rng.u64(1..20)));
                    instances.push(held(&s, &a, ttl, rng.u8(..4) == 0));
                }
            }
            Change::Reset(Snapshot { instances })
        }
    }
}

#[test]
fn random_batches_match_the_model_and_report_exactly_the_moved_services() {
    let mut rng = fastrand::Rng::with_seed(0xc4a9);
    let mut r = reg();
    let mut m = Model::new();
    let t0 = Instant::now();
    let services = ["s0", "s1", "s2"];
    for round in 0..3_000u64 {
        let now = t0 + Duration::from_millis(round * 10);
        let changes: Vec<Change> = (0..rng.usize(1..6))
            .map(|_| random_change(&mut rng))
            .collect();
        let before: Vec<u64> = services.iter().map(|s| r.index(s)).collect();
        let applied = r.apply(&changes, now);
        for change in &changes {
            apply_to_model(&mut m, change, now);
        }
        assert_eq!(applied.outcomes.len(), changes.len());
        let moved: BTreeSet<&str> = (services.iter().zip(&before))
            .filter(|(s, i)| r.index(s) != **i)
            .map(|(s, _)| *s)
            .collect();
        assert_eq!(
            applied
                .moved
                .iter()
                .map(String::as_str)
                .collect::<BTreeSet<_>>(),
            moved
        );
        check_invariants(&r);
        assert_eq!(r.len(), m.len());
        for s in services {
            let mut want: Vec<(String, Instant, bool)> = (m.iter())
                .filter(|((ms, _), _)| ms == s)
                .map(|((_, a), (e, x))| (a.clone(), *e, *x))
                .collect();
            want.sort();
            assert_eq!(view(&r, s), want, "round {round}: {changes:?}");
        }
    }
}
