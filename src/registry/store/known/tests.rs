use super::super::etcd_keys::EXCLUDED;
use super::*;
use std::time::Duration;

const MINE: i64 = 7;
const THEIRS: i64 = 9;

fn value(ms: u64) -> Record {
    Record {
        ttl: Duration::from_millis(ms),
        ..Record::default()
    }
}

fn kv(key: &str, value: &[u8], lease: i64, rev: i64) -> Kv {
    Kv {
        key: key.as_bytes().to_vec(),
        value: value.to_vec(),
        lease,
        mod_revision: rev,
    }
}

fn put(key: &str, lease: i64, rev: i64) -> Event {
    Event::Put(kv(key, br#"{"ttl_ms":2000}"#, lease, rev))
}

fn del(key: &str, rev: i64) -> Event {
    Event::Delete(kv(key, b"", 0, rev))
}

const KEY: &str = "/mini/services/add/h:1";
const HEALTH_KEY: &str = "/mini/health/add/h:1";

fn reown(excluded: bool) -> Chore {
    Chore::ReOwn {
        service: "add".into(),
        addr: "h:1".into(),
        value: value(2000),
        excluded,
    }
}

#[test]
fn beats_are_absorbed_once_etcd_has_the_key_with_that_value() {
    let mut k = Known::default();
    let t0 = Instant::now();
    let v = value(2000);
    assert_eq!(
        k.beat("add", "h:1", &v, false, t0),
        Beat::Write { new: true }
    );
    // While its put is on its way: absorbed, and the sweep leaves it alone, echo or not.
    assert_eq!(k.beat("add", "h:1", &v, false, t0), Beat::Absorbed);
    k.events(&[put(KEY, MINE, 5)], t0);
    let late = t0 + Duration::from_secs(3);
    assert_eq!(k.sweep(late, MINE), Sweep::default());
    k.wrote("add", "h:1", &v, MINE, 5, Some(deadline(t0, &v)), false);
    assert_eq!(
        k.sweep(late, MINE).chores.len(),
        1,
        "not expired once applied"
    );
    k.deleted("add", "h:1", 6);
    assert_eq!(
        k.beat("add", "h:1", &v, false, t0),
        Beat::Write { new: true }
    );
    k.wrote("add", "h:1", &v, MINE, 7, Some(deadline(t0, &v)), false);
    assert_eq!(k.beat("add", "h:1", &v, false, t0), Beat::Absorbed);
    assert_eq!(
        k.beat("add", "h:1", &value(3000), false, t0),
        Beat::Write { new: false }
    );
    // A drain mark or spec that differs is written, and so is any put flagged as a change.
    let drained = Record {
        draining: true,
        ..v.clone()
    };
    assert_eq!(
        k.beat("add", "h:1", &drained, false, t0),
        Beat::Write { new: false }
    );
    assert_eq!(
        k.beat("add", "h:1", &v, true, t0),
        Beat::Write { new: false }
    );
    // Someone else's key: absorbed too, and it counts as heard here.
    k.events(&[put("/mini/services/add/h:2", THEIRS, 6)], t0);
    assert_eq!(k.beat("add", "h:2", &v, false, t0), Beat::Absorbed);
    assert!(k.get("add", "h:2").is_some_and(|e| e.heard(t0)));
    // Deleted and not being put back: a new registration. If its put fails, it goes.
    k.events(&[del("/mini/services/add/h:3", 8)], t0);
    assert_eq!(
        k.beat("add", "h:3", &v, false, t0),
        Beat::Write { new: true }
    );
    k.abandon("add", "h:3");
    let swept = k.sweep(t0, MINE);
    assert_eq!(swept.removed, [Change::remove("add", "h:3")]);
    assert!(k.get("add", "h:3").is_none());
}

#[test]
fn own_echoes_and_older_events_are_dropped_and_a_late_write_does_not_revive_a_deleted_key() {
    let mut k = Known::default();
    let t0 = Instant::now();
    let v = value(2000);
    k.wrote("add", "h:1", &v, MINE, 10, Some(t0), false);
    let (changes, chores) = k.events(&[put(KEY, MINE, 10), del(KEY, 8)], t0);
    assert!(changes.is_empty() && chores.is_empty());
    // The echo of our put at 11 arrives before the txn's reply: the beat still keeps it alive.
    k.events(&[put("/mini/services/add/h:3", MINE, 11)], t0);
    k.wrote("add", "h:3", &v, MINE, 11, Some(deadline(t0, &v)), false);
    let swept = k.sweep(t0 + Duration::from_secs(1), MINE);
    assert!(
        swept.chores.iter().all(|c| c.instance() != ("add", "h:3")),
        "{swept:?}"
    );
    // etcd applied our put at 11, then someone's deregistration at 12, and we learn of the
    // deregistration before our own txn's reply.
    let marker = put("/mini/deregistered", 0, 12);
    let (changes, _) = k.events(&[del("/mini/services/add/h:2", 12), marker], t0);
    assert_eq!(changes, [Change::remove("add", "h:2")]);
    k.wrote("add", "h:2", &v, MINE, 11, Some(deadline(t0, &v)), false);
    assert_eq!(k.get("add", "h:2").and_then(|e| e.lease), None);
}

#[test]
fn a_deleted_key_that_still_beats_here_stays_and_is_re_owned_with_its_health() {
    let mut k = Known::default();
    let t0 = Instant::now();
    let v = value(2000);
    k.events(&[put(KEY, THEIRS, 3)], t0);
    k.events(&[Event::Put(kv(HEALTH_KEY, EXCLUDED, THEIRS, 4))], t0);
    k.beat("add", "h:1", &v, false, t0);
    // Their lease expires: both keys go in one revision. No removal, no restoration here.
    let expiry = [del(HEALTH_KEY, 5), del(KEY, 5)];
    let (changes, chores) = k.events(&expiry, t0 + Duration::from_secs(1));
    assert_eq!(changes, []);
    assert_eq!(chores, [reown(true)]);
    // Queued once: the sweep does not queue it again while it is busy.
    assert_eq!(k.sweep(t0, MINE), Sweep::default());
    assert!(k.wanted(&reown(true), t0, MINE));
    k.wrote("add", "h:1", &v, MINE, 6, None, true);
    k.settle(&reown(true));
    assert!(!k.wanted(&reown(true), t0, MINE));
    assert_eq!(k.get("add", "h:1").and_then(|e| e.lease), Some(MINE));
}

#[test]
fn deletions_of_what_does_not_beat_here_or_was_deregistered_remove_it() {
    let mut k = Known::default();
    let t0 = Instant::now();
    let v = value(2000);
    k.events(
        &[
            put(KEY, THEIRS, 3),
            put("/mini/services/add/h:2", THEIRS, 3),
        ],
        t0,
    );
    k.beat("add", "h:2", &v, false, t0);
    let (changes, chores) = k.events(&[del(KEY, 4), del(HEALTH_KEY, 4)], t0);
    assert_eq!(changes, [Change::remove("add", "h:1")]);
    assert!(chores.is_empty());
    // h:2 beats here, but this deletion is a deregistration.
    let dereg = [
        del("/mini/services/add/h:2", 5),
        put("/mini/deregistered", 0, 5),
    ];
    let (changes, chores) = k.events(&dereg, t0);
    assert_eq!(changes, [Change::remove("add", "h:2")]);
    assert!(chores.is_empty());
    // A lone health deletion is a restoration.
    let (changes, _) = k.events(&[del("/mini/health/add/h:9", 6)], t0);
    assert_eq!(changes, [Change::health("add", "h:9", true)]);
}

#[test]
fn the_sweep_expires_only_what_this_registry_owns_and_no_longer_hears() {
    let mut k = Known::default();
    let t0 = Instant::now();
    let v = value(2000);
    let later = t0 + Duration::from_secs(3);
    k.wrote("add", "h:1", &v, MINE, 5, Some(deadline(t0, &v)), false);
    k.events(&[put("/mini/services/add/h:2", THEIRS, 6)], t0);
    k.beat("add", "h:2", &v, false, t0);
    let swept = k.sweep(t0 + Duration::from_secs(1), MINE);
    assert!(
        swept.chores.iter().all(|c| c.instance() != ("add", "h:3")),
        "{swept:?}"
    );
    let swept = k.sweep(later, MINE);
    let expire = Chore::Expire {
        service: "add".into(),
        addr: "h:1".into(),
        excluded: false,
    };
    assert_eq!(swept.removed, [Change::remove("add", "h:1")]);
    assert_eq!(swept.chores, std::slice::from_ref(&expire));
    assert_eq!(k.sweep(later, MINE), Sweep::default(), "queued twice");
    // A beat came back before the chore was sent: not wanted any more.
    k.beat("add", "h:1", &v, false, later);
    assert!(!k.wanted(&expire, later, MINE));
    k.settle(&expire);
    // Theirs is theirs to expire; ours is deleted once its beats stop again.
    let much_later = later + Duration::from_secs(3);
    assert_eq!(
        k.sweep(much_later, MINE).chores,
        std::slice::from_ref(&expire)
    );
    k.deleted("add", "h:1", 7);
    k.settle(&expire);
    assert_eq!(k.len(), 2);
    // The tombstone goes at the next sweep.
    assert_eq!(
        k.sweep(much_later, MINE).removed,
        [Change::remove("add", "h:1")]
    );
    assert_eq!(k.len(), 1);
    assert_eq!(k.get("add", "h:2").and_then(|e| e.lease), Some(THEIRS));
}

#[test]
fn the_sweep_retries_re_owns_and_drops_those_whose_beats_stopped() {
    let mut k = Known::default();
    let t0 = Instant::now();
    let v = value(2000);
    k.events(&[put(KEY, THEIRS, 3)], t0);
    k.beat("add", "h:1", &v, false, t0);
    let (_, chores) = k.events(&[del(KEY, 4)], t0);
    assert_eq!(chores, [reown(false)]);
    k.settle(&reown(false)); // the put failed
    assert_eq!(k.sweep(t0, MINE).chores, [reown(false)]);
    k.settle(&reown(false)); // failed again; then the beats stop
    let swept = k.sweep(t0 + Duration::from_secs(3), MINE);
    assert_eq!(swept.removed, [Change::remove("add", "h:1")]);
    assert!(swept.chores.is_empty());
    assert_eq!(k.len(), 0);
}

#[test]
fn a_read_keeps_newer_own_writes_and_re_owns_what_still_beats_here() {
    let mut k = Known::default();
    let t0 = Instant::now();
    let v = value(2000);
    let alive = Some(deadline(t0, &v));
    k.wrote("add", "h:1", &v, MINE, 9, alive, false); // after the read at 5
    k.wrote("add", "h:2", &v, MINE, 3, None, false); // before it, not heard: the read decides
    k.wrote("add", "h:4", &v, MINE, 3, alive, true); // before it, heard, missing from it
    k.wrote("add", "h:5", &v, MINE, 8, alive, false); // newer than the read's copy of it
    let kvs = [
        kv("/mini/services/add/h:3", br#"{"ttl_ms":2000}"#, THEIRS, 4),
        kv("/mini/health/add/h:3", EXCLUDED, THEIRS, 5),
        kv("/mini/services/add/h:5", br#"{"ttl_ms":9}"#, THEIRS, 2),
        kv("/mini/leader", b"r1", 12, 2),
        kv("/mini/services/bad name/h:4", b"{}", 13, 2),
    ];
    let (reset, chores) = k.snapshot(5, &kvs, t0);
    let Change::Reset(snapshot) = reset else {
        panic!("not a reset")
    };
    let mut got = snapshot.instances;
    got.sort_by(|a, b| a.addr.cmp(&b.addr));
    assert_eq!(
        got,
        [
            held("add", "h:1", None, false),
            held("add", "h:3", Some(&v), true),
            held("add", "h:4", None, true),
            held("add", "h:5", None, false),
        ]
    );
    assert_eq!(
        chores,
        [Chore::ReOwn {
            service: "add".into(),
            addr: "h:4".into(),
            value: v.clone(),
            excluded: true
        }]
    );
    assert_eq!(k.get("add", "h:2"), None);
    assert_eq!(
        k.get("add", "h:5").map(|e| (e.lease, e.rev)),
        Some((Some(MINE), 8))
    );
    assert_eq!(
        k.get("add", "h:3").map(|e| (e.lease, e.excluded)),
        Some((Some(THEIRS), true))
    );
}
