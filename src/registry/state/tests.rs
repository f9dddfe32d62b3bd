//! The state's model tests: time and randomness are arguments, so every case is exact.

use super::*;
use std::collections::HashSet;

/// The lease the state tests register with.
pub(super) const TTL: Duration = Duration::from_secs(10);

pub(super) fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// An empty registry with the default limits.
pub(super) fn reg() -> Registry {
    Registry::new(Limits::default())
}

fn addr(i: usize) -> String {
    format!("127.0.0.1:{}", 10_000 + i)
}

/// Internal bookkeeping: positions, counts by standing, weights parallel to the slots, total.
pub(super) fn check_invariants(r: &Registry) {
    let mut total = 0;
    for svc in r.services.values() {
        assert!(!svc.slots.is_empty(), "empty service kept");
        assert_eq!(svc.pos.len(), svc.slots.len());
        assert_eq!(svc.weights.len(), svc.slots.len());
        let mut counts = Counts::default();
        let mut weight = 0;
        for (i, inst) in svc.slots.iter().enumerate() {
            assert_eq!(svc.pos.get(&inst.addr), Some(&i));
            assert_eq!(svc.weights.get(i), inst.weight(), "{inst:?}");
            assert_eq!(inst.weight() > 0, inst.pickable());
            assert!(
                !(inst.excluded && inst.spec.check == Check::None),
                "{inst:?}"
            );
            weight += u64::from(inst.weight());
            match inst.standing() {
                Standing::Healthy => counts.healthy += 1,
                Standing::Excluded => counts.excluded += 1,
                Standing::Draining => counts.draining += 1,
            }
        }
        assert_eq!(svc.counts, counts);
        svc.tags.check(&svc.slots, &svc.weights);
        assert_eq!(svc.weights.total(), weight);
        assert!(svc.index >= 1 && svc.index <= r.counter);
        total += svc.slots.len();
    }
    assert_eq!(r.total, total);
}

fn get(r: &Registry, service: &str, a: &str) -> Instance {
    let all = r.instances(service).expect("service");
    all.into_iter().find(|i| &*i.addr == a).expect("instance")
}

#[test]
fn register_new_then_renew() {
    let mut r = reg();
    let t0 = Instant::now();
    assert_eq!(r.register("add", "h:1", TTL, t0), Ok(Registered::New));
    assert_eq!(
        r.register("add", "h:1", TTL, t0 + secs(1)),
        Ok(Registered::Renewed)
    );
    assert_eq!(r.register("add", "h:2", TTL, t0), Ok(Registered::New));
    assert_eq!(r.register("other", "h:1", TTL, t0), Ok(Registered::New));
    assert_eq!(r.len(), 3);
    assert!(!r.is_empty());
    check_invariants(&r);
}

#[test]
fn renew_extends_expiry() {
    let mut r = reg();
    let t0 = Instant::now();
    r.register("add", "h:1", TTL, t0).unwrap();
    r.register("add", "h:1", secs(30), t0 + secs(5)).unwrap();
    let i = get(&r, "add", "h:1");
    assert_eq!(i.last_beat, t0 + secs(5));
    assert_eq!(i.ttl, secs(30));
    assert_eq!(i.expires_at, t0 + secs(35));
    assert!(r.expire(t0 + secs(20)).is_empty());
    assert_eq!(r.len(), 1);
    assert_eq!(r.expire(t0 + secs(35)).len(), 1);
    assert!(r.is_empty());
}

#[test]
fn expire_removes_exactly_the_expired() {
    let mut r = reg();
    let t0 = Instant::now();
    // Adjacent slots 1 and 2 expire in the same sweep, and so does the last.
    let ttls = [20, 5, 5, 30, 5];
    for (i, t) in ttls.iter().enumerate() {
        r.register("add", &addr(i), secs(*t), t0).unwrap();
    }
    r.register("b", "x:1", secs(5), t0).unwrap();
    r.register("c", "y:1", secs(50), t0).unwrap();
    assert!(r.expire(t0 + secs(4)).is_empty());
    let mut gone: Vec<(String, String)> = r
        .expire(t0 + secs(5))
        .into_iter()
        .map(|t| (t.service, t.addr.to_string()))
        .collect();
    gone.sort();
    let want = vec![
        ("add".to_string(), addr(1)),
        ("add".to_string(), addr(2)),
        ("add".to_string(), addr(4)),
        ("b".to_string(), "x:1".to_string()),
    ];
    assert_eq!(gone, want);
    let left: Vec<String> = r
        .instances("add")
        .unwrap()
        .iter()
        .map(|i| i.addr.to_string())
        .collect();
    assert_eq!(left, vec![addr(0), addr(3)]);
    assert!(r.instances("b").is_none());
    assert!(r.instances("c").is_some());
    assert_eq!(r.len(), 3);
    check_invariants(&r);
}

#[test]
fn deregister_removes_and_drops_empty_service() {
    let mut r = reg();
    let t0 = Instant::now();
    r.register("add", "h:1", TTL, t0).unwrap();
    r.register("add", "h:2", TTL, t0).unwrap();
    assert!(r.deregister("add", "h:1"));
    assert!(!r.deregister("add", "h:1"));
    assert!(!r.deregister("nope", "h:2"));
    assert_eq!(r.len(), 1);
    check_invariants(&r);
    assert!(r.deregister("add", "h:2"));
    assert!(r.instances("add").is_none());
    assert!(r.services().is_empty());
    assert!(r.is_empty());
}

#[test]
fn probe_fail_excludes_and_ok_restores() {
    let mut r = reg();
    let t0 = Instant::now();
    let mut rng = fastrand::Rng::with_seed(1);
    r.register("add", "h:1", TTL, t0).unwrap();
    r.register("add", "h:2", TTL, t0).unwrap();
    assert!(r.mark_probe("add", "h:1", false, t0 + secs(1)));
    let i = get(&r, "add", "h:1");
    assert!(i.excluded && !i.healthy());
    assert_eq!(
        i.last_probe,
        Some(ProbeRecord {
            at: t0 + secs(1),
            ok: false
        })
    );
    for _ in 0..500 {
        assert_eq!(r.pick("add", &mut rng).as_deref(), Some("h:2"));
    }
    assert!(!r.mark_probe("add", "h:1", false, t0 + secs(2)));
    assert!(r.mark_probe("add", "h:1", true, t0 + secs(3)));
    assert!(get(&r, "add", "h:1").healthy());
    let seen: HashSet<String> = (0..200)
        .filter_map(|_| r.pick("add", &mut rng))
        .map(|a| a.to_string())
        .collect();
    assert_eq!(seen.len(), 2);
    check_invariants(&r);
}

#[test]
fn mark_probe_unknown_is_ignored() {
    let mut r = reg();
    let t0 = Instant::now();
    assert!(!r.mark_probe("add", "h:1", false, t0));
    r.register("add", "h:1", TTL, t0).unwrap();
    assert!(!r.mark_probe("add", "h:9", false, t0));
    assert_eq!(r.len(), 1);
    assert!(r
        .instances("add")
        .unwrap()
        .iter()
        .all(|i| i.last_probe.is_none()));
}

#[test]
fn renew_does_not_restore_excluded() {
    let mut r = reg();
    let t0 = Instant::now();
    let mut rng = fastrand::Rng::with_seed(2);
    r.register("add", "h:1", TTL, t0).unwrap();
    r.mark_probe("add", "h:1", false, t0);
    assert_eq!(
        r.register("add", "h:1", TTL, t0 + secs(1)),
        Ok(Registered::Renewed)
    );
    assert!(get(&r, "add", "h:1").excluded);
    assert_eq!(r.pick("add", &mut rng), None);
    assert_eq!(r.services()[0].live, 0);
}

#[test]
fn pick_is_uniform_over_healthy() {
    let mut r = reg();
    let t0 = Instant::now();
    let mut rng = fastrand::Rng::with_seed(42);
    for i in 0..5 {
        r.register("add", &addr(i), TTL, t0).unwrap();
    }
    let mut counts: HashMap<String, u32> = HashMap::new();
    for _ in 0..10_000 {
        let a = r.pick("add", &mut rng).expect("healthy");
        *counts.entry(a.to_string()).or_default() += 1;
    }
    assert_eq!(counts.len(), 5);
    for (a, n) in &counts {
        assert!((1600..=2400).contains(n), "{a} picked {n} times");
        assert_eq!(get(&r, "add", a).picks, u64::from(*n));
    }
}

#[test]
fn pick_only_healthy_and_uniform() {
    let mut r = reg();
    let t0 = Instant::now();
    let mut rng = fastrand::Rng::with_seed(7);
    for i in 0..5 {
        r.register("add", &addr(i), TTL, t0).unwrap();
    }
    r.mark_probe("add", &addr(1), false, t0);
    r.mark_probe("add", &addr(3), false, t0);
    let mut counts: HashMap<String, u32> = HashMap::new();
    for _ in 0..9_000 {
        let a = r.pick("add", &mut rng).expect("healthy");
        *counts.entry(a.to_string()).or_default() += 1;
    }
    let keys: HashSet<&str> = counts.keys().map(String::as_str).collect();
    let want: HashSet<String> = [0, 2, 4].iter().map(|&i| addr(i)).collect();
    assert_eq!(keys, want.iter().map(String::as_str).collect());
    for n in counts.values() {
        assert!((2400..=3600).contains(n), "{n}");
    }
    assert_eq!(r.pick("nope", &mut rng), None);
}

#[test]
fn pick_finds_single_healthy_among_100k() {
    let mut r = reg();
    let t0 = Instant::now();
    let mut rng = fastrand::Rng::with_seed(9);
    for i in 0..100_000 {
        let a = format!("h{i}:1");
        r.register("add", &a, TTL, t0).unwrap();
        if i != 77_777 {
            r.mark_probe("add", &a, false, t0);
        }
    }
    for _ in 0..20 {
        assert_eq!(r.pick("add", &mut rng).as_deref(), Some("h77777:1"));
    }
    assert_eq!(r.services()[0].live, 1);
    assert_eq!(r.services()[0].total, 100_000);
}

#[test]
fn limits_refuse_new_but_allow_renewal() {
    let limits = Limits {
        max_services: 2,
        max_instances_per_service: 2,
        max_instances_total: 3,
    };
    let mut r = Registry::new(limits);
    let t0 = Instant::now();
    r.register("a", "h:1", TTL, t0).unwrap();
    r.register("a", "h:2", TTL, t0).unwrap();
    assert_eq!(
        r.register("a", "h:3", TTL, t0),
        Err(RegisterError::ServiceFull { max: 2 })
    );
    r.register("b", "h:1", TTL, t0).unwrap();
    assert_eq!(
        r.register("c", "h:1", TTL, t0),
        Err(RegisterError::TooManyServices { max: 2 })
    );
    assert_eq!(
        r.register("b", "h:2", TTL, t0),
        Err(RegisterError::RegistryFull { max: 3 })
    );
    for (s, a) in [("a", "h:1"), ("a", "h:2"), ("b", "h:1")] {
        assert_eq!(r.register(s, a, TTL, t0 + secs(1)), Ok(Registered::Renewed));
    }
    assert_eq!(r.len(), 3);
    assert!(r.deregister("b", "h:1"));
    assert_eq!(r.register("c", "h:1", TTL, t0), Ok(Registered::New));
}

#[test]
fn default_limits_and_error_messages() {
    let l = Limits::default();
    assert_eq!(l.max_services, 1_000);
    assert_eq!(l.max_instances_per_service, 100_000);
    assert_eq!(l.max_instances_total, 200_000);
    let e = RegisterError::ServiceFull { max: 100_000 };
    assert_eq!(e.to_string(), "service is full (100000 instances)");
    assert!(!RegisterError::BadServiceName.to_string().contains('\n'));
}

#[test]
fn bad_service_name() {
    let mut r = reg();
    let t0 = Instant::now();
    for bad in ["", "a b", "a/b", "é", &"x".repeat(65)] {
        assert!(!valid_service_name(bad), "{bad:?}");
        assert_eq!(
            r.register(bad, "h:1", TTL, t0),
            Err(RegisterError::BadServiceName)
        );
    }
    for good in ["add", "A.b_c-9", &"x".repeat(64)] {
        assert!(valid_service_name(good), "{good:?}");
    }
    assert!(r.is_empty());
}

#[test]
fn index_bumps_only_on_real_changes() {
    let mut r = reg();
    let t0 = Instant::now();
    assert_eq!(r.index("add"), 0);
    r.register("add", "h:1", TTL, t0).unwrap();
    let i1 = r.index("add");
    assert_eq!(i1, 1);
    r.register("add", "h:1", TTL, t0 + secs(1)).unwrap();
    assert_eq!(r.index("add"), i1, "renewal bumped");
    r.register("add", "h:2", TTL, t0).unwrap();
    let i2 = r.index("add");
    assert!(i2 > i1);
    r.mark_probe("add", "h:1", true, t0);
    assert_eq!(r.index("add"), i2, "unchanged probe bumped");
    r.mark_probe("add", "h:1", false, t0);
    let i3 = r.index("add");
    assert!(i3 > i2);
    r.mark_probe("add", "h:1", false, t0);
    assert_eq!(r.index("add"), i3);
    r.mark_probe("add", "h:1", true, t0);
    let i4 = r.index("add");
    assert!(i4 > i3);
    let mut rng = fastrand::Rng::with_seed(3);
    r.pick("add", &mut rng);
    assert_eq!(r.index("add"), i4, "pick bumped");
    r.deregister("add", "h:2");
    let i5 = r.index("add");
    assert!(i5 > i4);
    r.register("add", "h:3", secs(1), t0).unwrap();
    let i6 = r.index("add");
    r.expire(t0 + secs(1));
    assert!(r.index("add") > i6);
    assert_eq!(r.services()[0].index, r.index("add"));
}

#[test]
fn index_never_goes_back_after_recreate() {
    let mut r = reg();
    let t0 = Instant::now();
    r.register("add", "h:1", TTL, t0).unwrap();
    r.register("add", "h:2", TTL, t0).unwrap();
    r.mark_probe("add", "h:1", false, t0);
    let before = r.index("add");
    r.deregister("add", "h:1");
    r.deregister("add", "h:2");
    assert_eq!(r.index("add"), 0);
    r.register("add", "h:1", TTL, t0).unwrap();
    assert!(r.index("add") > before);
    let before = r.index("add");
    r.expire(t0 + TTL);
    r.register("add", "h:1", TTL, t0).unwrap();
    assert!(r.index("add") > before);
}

#[test]
fn absurd_ttl_does_not_panic() {
    let mut r = reg();
    let t0 = Instant::now();
    r.register("add", "h:1", Duration::MAX, t0).unwrap();
    assert!(r.expire(t0 + secs(3600)).is_empty());
}

#[test]
fn probe_targets_lists_all() {
    let mut r = reg();
    let t0 = Instant::now();
    r.register("a", "h:1", TTL, t0).unwrap();
    r.register("b", "h:2", TTL, t0).unwrap();
    r.mark_probe("a", "h:1", false, t0);
    let mut t: Vec<(String, String)> = r
        .probe_targets()
        .into_iter()
        .map(|t| (t.service, t.addr.to_string()))
        .collect();
    t.sort();
    assert_eq!(
        t,
        vec![("a".into(), "h:1".into()), ("b".into(), "h:2".into())]
    );
    let names: Vec<String> = r.services().into_iter().map(|s| s.name).collect();
    assert_eq!(names, vec!["a", "b"]);
}

/// The model: (service, addr) -> (expires_at, excluded).
type Model = HashMap<(String, String), (Instant, bool)>;

fn check_against_model(r: &Registry, m: &Model) {
    check_invariants(r);
    assert_eq!(r.len(), m.len());
    for s in ["s0", "s1", "s2"] {
        let mut want: Vec<(String, Instant, bool)> = m
            .iter()
            .filter(|((ms, _), _)| ms == s)
            .map(|((_, a), (e, x))| (a.clone(), *e, *x))
            .collect();
        want.sort();
        let got = r.instances(s).map(|v| {
            v.into_iter()
                .map(|i| (i.addr.to_string(), i.expires_at, i.excluded))
                .collect::<Vec<_>>()
        });
        if want.is_empty() {
            assert_eq!(got, None);
        } else {
            assert_eq!(got, Some(want));
        }
    }
}

#[test]
fn random_ops_match_model() {
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let mut r = reg();
    let mut m: Model = HashMap::new();
    let t0 = Instant::now();
    let mut now = t0;
    for _ in 0..5_000 {
        let s = format!("s{}", rng.usize(..3));
        let a = addr(rng.usize(..25));
        let key = (s.clone(), a.clone());
        let before = r.index(&s);
        match rng.u8(..10) {
            0..=3 => {
                let ttl = secs(rng.u64(1..20));
                let got = r.register(&s, &a, ttl, now).unwrap();
                let excluded = m.get(&key).is_some_and(|v| v.1);
                let was = m.insert(key, (now + ttl, excluded));
                assert_eq!(got == Registered::New, was.is_none());
                assert_eq!(r.index(&s) > before, was.is_none());
            }
            4 => {
                let was = m.remove(&key);
                assert_eq!(r.deregister(&s, &a), was.is_some());
                assert_eq!(r.index(&s) != before, was.is_some());
            }
            5..=6 => {
                let ok = rng.bool();
                let changed = match m.get_mut(&key) {
                    Some(v) if v.1 == ok => {
                        v.1 = !ok;
                        true
                    }
                    _ => false,
                };
                assert_eq!(r.mark_probe(&s, &a, ok, now), changed);
                assert_eq!(r.index(&s) > before, changed);
            }
            7 => {
                now += secs(rng.u64(0..4));
                let mut got: Vec<(String, String)> = r
                    .expire(now)
                    .into_iter()
                    .map(|t| (t.service, t.addr.to_string()))
                    .collect();
                got.sort();
                let mut want: Vec<(String, String)> = m
                    .iter()
                    .filter(|(_, v)| v.0 <= now)
                    .map(|(k, _)| k.clone())
                    .collect();
                want.sort();
                m.retain(|_, v| v.0 > now);
                assert_eq!(got, want);
            }
            _ => {
                let got = r.pick(&s, &mut rng).map(|a| a.to_string());
                match got {
                    Some(p) => assert_eq!(m.get(&(s.clone(), p)).map(|v| v.1), Some(false)),
                    None => assert!(!m.iter().any(|((ms, _), v)| *ms == s && !v.1)),
                }
            }
        }
        assert!(r.index(&s) >= before || r.index(&s) == 0);
        check_against_model(&r, &m);
    }
}
