//! `--store etcd` with a real etcd on loopback: registries share one registry state, one of them
//! probes, and lookups survive etcd and registry failures. Each test starts its own etcd (one member,
//! or three for the fault test) on free ports with a temporary data directory, and skips with a
//! message only if etcd is neither installed nor installable.

mod common;

use common::etcd::Cluster;
use common::procs::{client, eventually, exchange, free_port, get, healthy, listed, Proc};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A registry in etcd mode with short timings: 2 s leases and election, probes every `probe`.
fn registry(etcd: &Cluster, probe: &str) -> Proc {
    registry_with_ttl(etcd, probe, "2s")
}

/// [`registry`] with leases and election of `ttl`.
fn registry_with_ttl(etcd: &Cluster, probe: &str, ttl: &str) -> Proc {
    let urls = etcd.urls();
    Proc::registry(&[
        "--store",
        "etcd",
        "--etcd",
        &urls,
        "--ttl",
        ttl,
        "--probe-interval",
        probe,
        "--probe-timeout",
        "500ms",
    ])
}

fn request(addr: &str, method: &str, target: &str) -> (u16, String) {
    exchange(
        addr,
        &format!("{method} {target} HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    )
}

/// The registry that logged winning the election, waiting for one to.
fn leader<'a>(regs: &'a [&'a Proc]) -> usize {
    let mut found = None;
    eventually("a registry becomes the probing leader", || {
        found = regs
            .iter()
            .position(|r| r.logged("became the probing leader"));
        found.is_some()
    });
    found.unwrap_or(0)
}

/// Parses the failed-calls line of `mini client --repeat`.
fn failed_calls(stderr: &str) -> u64 {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("failed calls: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no failed-calls line in {stderr}"))
}

#[test]
fn registered_through_one_registry_pickable_through_another_and_back() {
    let Some(etcd) = Cluster::start(1) else {
        return;
    };
    // No probes here: the addresses are not real instances.
    let (r1, r2) = (registry(&etcd, "60s"), registry(&etcd, "60s"));
    eventually("both registries follow etcd", || {
        get(&r1.addr, "/health").1 == "ok\n" && get(&r2.addr, "/health").1 == "ok\n"
    });
    // Propagation: register through r1, poll r2 until it hands the address out.
    let mut times = Vec::new();
    for port in 40001..40021 {
        let addr = format!("127.0.0.1:{port}");
        let start = Instant::now();
        let (status, _) = request(
            &r1.addr,
            "PUT",
            &format!("/v1/services/prop/{addr}?ttl=30s"),
        );
        assert_eq!(status, 200);
        while !get(&r2.addr, "/v1/services/prop").1.contains(&addr) {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "{addr} never reached r2"
            );
        }
        times.push(start.elapsed());
    }
    times.sort();
    eprintln!(
        "cross-registry propagation (PUT via r1 → listed by r2), 20 registrations: min {:?}, median {:?}, max {:?}",
        times[0], times[10], times[19]
    );
    assert!(
        times[10] < Duration::from_millis(100),
        "median {:?}",
        times[10]
    );
    // A pick through r2 returns what r1 registered.
    request(&r1.addr, "PUT", "/v1/services/add/127.0.0.1:41111");
    eventually("r2 picks it", || {
        get(&r2.addr, "/serviceAddr?queryParam=add") == (200, "127.0.0.1:41111".into())
    });
    // Deregister through r2: gone from r1.
    let (status, _) = request(&r2.addr, "DELETE", "/v1/services/add/127.0.0.1:41111");
    assert_eq!(status, 200);
    eventually("gone from r1", || listed(&r1.addr).is_empty());
    assert_eq!(get(&r1.addr, "/serviceAddr?queryParam=add").0, 400);
    let (status, _) = request(&r1.addr, "DELETE", "/v1/services/add/127.0.0.1:41111");
    assert_eq!(status, 404);
}

#[test]
fn another_registry_takes_over_probing_when_the_leader_dies() {
    let Some(etcd) = Cluster::start(1) else {
        return;
    };
    let mut regs = [registry(&etcd, "200ms"), registry(&etcd, "200ms")];
    let lead = leader(&[&regs[0], &regs[1]]);
    let other = 1 - lead;
    let survivor = regs[other].addr.clone();
    // Adders beat to the registry that will survive; both registries see them.
    let mut adders = [Proc::adder(&survivor), Proc::adder(&survivor)];
    for r in &regs {
        eventually("both adders healthy everywhere", || {
            healthy(&r.addr).len() == 2
        });
    }
    // A killed adder is excluded by the leader's probe, on every registry.
    regs[lead].kill();
    eventually("the other registry takes over", || {
        regs[other].logged("became the probing leader")
    });
    let dead = adders[0].addr.clone();
    adders[0].kill();
    eventually("the new leader excludes the dead adder", || {
        regs[other].logged(&format!("{dead} excluded: probe failed"))
    });
    assert_eq!(healthy(&survivor), [adders[1].addr.clone()]);
    for _ in 0..50 {
        assert_eq!(
            get(&survivor, "/serviceAddr?queryParam=add"),
            (200, adders[1].addr.clone())
        );
    }
    // Its lease expires in etcd: gone, not just excluded.
    eventually("the dead adder's lease expires", || {
        !listed(&survivor).contains(&dead)
    });
}

#[test]
fn a_leader_stopped_by_sigterm_hands_over_probing_at_once_not_after_its_ttl() {
    let Some(etcd) = Cluster::start(1) else {
        return;
    };
    // A 10 s TTL: the election tries every second, so a handover by resignation takes about one
    // attempt, while one by lease expiry could not happen before ~9 s.
    let ttl = Duration::from_secs(10);
    let mut regs = [
        registry_with_ttl(&etcd, "200ms", "10s"),
        registry_with_ttl(&etcd, "200ms", "10s"),
    ];
    let lead = leader(&[&regs[0], &regs[1]]);
    let other = 1 - lead;
    let survivor = regs[other].addr.clone();
    let mut adders = [Proc::adder(&survivor), Proc::adder(&survivor)];
    eventually("both adders healthy on the survivor", || {
        healthy(&survivor).len() == 2
    });
    let stopped = Instant::now();
    let status = regs[lead].terminate();
    assert_eq!(status.code(), Some(0), "the leader exited with {status}");
    eventually("the log line", || {
        regs[lead].logged("is no longer the probing leader (resigned)")
    });
    eventually("the survivor takes over", || {
        regs[other].logged("became the probing leader")
    });
    let took_over = stopped.elapsed();
    eprintln!("SIGTERM to the leader → the other registry leads: {took_over:?} (TTL {ttl:?})");
    assert!(took_over < ttl / 2, "took over after {took_over:?}");
    // And it probes: a killed adder is excluded long before the old leader's lease could lapse.
    let dead = adders[0].addr.clone();
    adders[0].kill();
    eventually("the survivor excludes the dead adder", || {
        healthy(&survivor) == [adders[1].addr.clone()]
    });
    let excluded = stopped.elapsed();
    assert!(excluded < ttl / 2, "excluded after {excluded:?}");
    // The line follows the health write to etcd, which the listing does not wait for.
    eventually("the survivor logs why", || {
        regs[other].logged(&format!("{dead} excluded: probe failed"))
    });
}

#[test]
fn three_member_etcd_two_registries_no_failed_call_while_one_of_each_dies() {
    let Some(mut etcd) = Cluster::start(3) else {
        return;
    };
    let stays = registry(&etcd, "200ms");
    let mut dies = registry(&etcd, "200ms");
    let mut adders: Vec<Proc> = (0..3).map(|_| Proc::adder(&stays.addr)).collect();
    adders.extend((0..2).map(|_| Proc::adder(&dies.addr)));
    eventually("all five healthy through the surviving registry", || {
        healthy(&stays.addr).len() == 5
    });
    let run = std::thread::spawn({
        let addr = stays.addr.clone();
        move || client(&["5", "6", "--registry", &addr, "--repeat", "2000"])
    });
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    dies.kill();
    etcd.kill(0); // the first endpoint, which every registry prefers at first
    assert!(!run.is_finished(), "the client finished before the kills");
    let out = run.join().expect("client thread");
    eprintln!(
        "2000 calls; the rest of the run after the kills took {:?}",
        started.elapsed()
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(failed_calls(&stderr), 0, "{stderr}");
    // The two adders that beat to the dead registry leave once their leases expire.
    let orphans = [adders[3].addr.clone(), adders[4].addr.clone()];
    eventually("orphaned adders expire", || {
        let l = listed(&stays.addr);
        l.len() == 3 && orphans.iter().all(|o| !l.contains(o))
    });
    assert_eq!(get(&stays.addr, "/health").1, "ok\n");
}

#[test]
fn etcd_down_answers_from_the_copy_and_converges_when_back() {
    let Some(mut etcd) = Cluster::start(1) else {
        return;
    };
    let (r1, r2) = (registry(&etcd, "200ms"), registry(&etcd, "200ms"));
    let adders = [Proc::adder(&r1.addr), Proc::adder(&r1.addr)];
    eventually("both adders healthy on r2", || healthy(&r2.addr).len() == 2);
    etcd.kill(0);
    eventually("r2 says degraded", || {
        get(&r2.addr, "/health")
            .1
            .starts_with("degraded: etcd unreachable")
    });
    let (_, services) = get(&r2.addr, "/v1/services");
    assert!(
        services.contains("add live=2 total=2") && services.contains("degraded"),
        "{services}"
    );
    // Lookups still answer from the local copy, on both registries.
    for r in [&r1, &r2] {
        let (status, addr) = get(&r.addr, "/serviceAddr?queryParam=add");
        assert_eq!(status, 200);
        assert!(adders.iter().any(|a| a.addr == addr));
    }
    let out = client(&["5", "6", "--registry", &r2.addr, "--repeat", "20"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A registration cannot be recorded: 503 with the reason, not silently lost.
    let (status, body) = request(&r1.addr, "PUT", "/v1/services/add/127.0.0.1:42222");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("etcd unreachable"), "{body}");
    etcd.restart(0);
    for r in [&r1, &r2] {
        eventually("healthy again and converged", || {
            get(&r.addr, "/health").1 == "ok\n" && healthy(&r.addr).len() == 2
        });
    }
    request(&r2.addr, "PUT", "/v1/services/mul/127.0.0.1:42223?ttl=30s");
    eventually("new writes flow again", || {
        get(&r1.addr, "/v1/services/mul")
            .1
            .contains("127.0.0.1:42223")
    });
}

#[test]
fn an_adder_killed_while_every_registry_is_down_is_gone_once_they_are_back() {
    let Some(etcd) = Cluster::start(1) else {
        return;
    };
    let r1 = registry(&etcd, "200ms");
    let addr = r1.addr.clone();
    let mut adders = [Proc::adder(&addr), Proc::adder(&addr)];
    eventually("both registered", || healthy(&addr).len() == 2);
    drop(r1);
    let dead = adders[0].addr.clone();
    adders[0].kill();
    // Back on the same address (no probes, so only the lease can remove the dead one).
    let urls = etcd.urls();
    let again = Proc::start(&[
        "registry",
        "--listen",
        &addr,
        "--store",
        "etcd",
        "--etcd",
        &urls,
        "--ttl",
        "2s",
        "--probe-interval",
        "60s",
    ]);
    eventually(
        "the dead adder's lease expired; the live one beats in",
        || listed(&again.addr) == [adders[1].addr.clone()],
    );
    assert!(!listed(&again.addr).contains(&dead));
}

/// Adders on ports chosen here, first registered through `owner` (so it owns their keys in etcd),
/// then beating every 200 ms to every registry in `beat_to`. Returns once `other` lists them all.
fn owned_adders(owner: &Proc, other: &Proc, beat_to: &str, n: usize) -> Vec<Proc> {
    let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    for port in &ports {
        // No ?ttl: the adder's beats carry the registry's --ttl, the same value, so they are
        // absorbed on both registries and the key stays the owner's.
        let (status, body) = request(
            &owner.addr,
            "PUT",
            &format!("/v1/services/add/127.0.0.1:{port}"),
        );
        assert_eq!(status, 200, "{body}");
    }
    eventually("the other registry lists them", || {
        listed(&other.addr).len() == n
    });
    let adders: Vec<Proc> = (ports.iter())
        .map(|p| {
            let port = p.to_string();
            Proc::start(&["adder", &port, "--registry", beat_to, "--beat", "200ms"])
        })
        .collect();
    eventually("all healthy on the other registry", || {
        healthy(&other.addr).len() == n
    });
    adders
}

#[test]
fn a_registry_killed_owning_instances_that_also_beat_elsewhere_leaves_no_gap_on_the_survivor() {
    let Some(etcd) = Cluster::start(1) else {
        return;
    };
    let mut owner = registry(&etcd, "200ms");
    let survivor = registry(&etcd, "200ms");
    let both = format!("{},{}", owner.addr, survivor.addr);
    let adders = owned_adders(&owner, &survivor, &both, 2);
    let addrs: Vec<String> = adders.iter().map(|a| a.addr.clone()).collect();
    // Lookups and listings on the survivor, as fast as they come, from before the kill until the
    // dead owner's lease has expired and the survivor has put both keys back on its own lease.
    let stop = Arc::new(AtomicBool::new(false));
    let poller = std::thread::spawn({
        let (stop, at, addrs) = (stop.clone(), survivor.addr.clone(), addrs.clone());
        move || {
            let (mut polls, mut failures) = (0u64, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let (status, picked) = get(&at, "/serviceAddr?queryParam=add");
                if status != 200 || !addrs.contains(&picked) {
                    failures.push(format!("pick: {status} {picked}"));
                }
                let l = listed(&at);
                if !addrs.iter().all(|a| l.contains(a)) {
                    failures.push(format!("listing: {l:?}"));
                }
                polls += 1;
            }
            (polls, failures)
        }
    });
    let calls = std::thread::spawn({
        let both = both.clone();
        move || client(&["5", "6", "--registry", &both, "--repeat", "5000"])
    });
    std::thread::sleep(Duration::from_millis(200));
    let killed = Instant::now();
    owner.kill();
    assert!(!calls.is_finished(), "the client finished before the kill");
    eventually("the survivor re-owns both instances", || {
        addrs
            .iter()
            .all(|a| survivor.logged(&format!("add {a} re-owned")))
    });
    let reowned = killed.elapsed();
    // A few more rounds of polls after the re-own, then the tallies.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let (polls, failures) = poller.join().expect("poller");
    eprintln!("SIGKILL to the owner → both re-owned by the survivor: {reowned:?} (TTL 2s); {polls} polls of the survivor, {} failed", failures.len());
    assert!(failures.is_empty(), "{failures:?}");
    assert!(polls >= 20, "only {polls} polls");
    let out = calls.join().expect("client thread");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(failed_calls(&stderr), 0, "{stderr}");
    // Still there a TTL later: the survivor owns them now and their beats keep them.
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(healthy(&survivor.addr).len(), 2);
}

#[test]
fn a_registry_killed_owning_instances_that_beat_only_to_it_keeps_them_listed_until_its_lease_expires(
) {
    let Some(etcd) = Cluster::start(1) else {
        return;
    };
    let mut owner = registry(&etcd, "60s");
    let survivor = registry(&etcd, "60s");
    let adders = [Proc::adder(&owner.addr), Proc::adder(&owner.addr)];
    eventually("both listed on the survivor", || {
        listed(&survivor.addr).len() == 2
    });
    let killed = Instant::now();
    owner.kill();
    // Right after the kill, well before its session lease (2 s, renewed every ~0.7 s) can expire:
    // the instances are alive, only their registry died.
    let mut l = listed(&survivor.addr);
    l.sort();
    let mut want: Vec<String> = adders.iter().map(|a| a.addr.clone()).collect();
    want.sort();
    assert_eq!(l, want, "dropped {:?} after the kill", killed.elapsed());
    assert_eq!(get(&survivor.addr, "/serviceAddr?queryParam=add").0, 200);
    eventually("gone once the dead registry's lease expired", || {
        listed(&survivor.addr).is_empty()
    });
    let gone = killed.elapsed();
    eprintln!("SIGKILL to the only registry they beat to → gone from the survivor: {gone:?} (its session lease: 2s)");
    eventually("the survivor logs the removal", || {
        survivor.logged("removed (deregistered, or expired by or with its owner")
    });
}

#[test]
fn an_adder_dying_with_its_owner_is_gone_within_its_ttl_plus_the_probe_bound() {
    let Some(etcd) = Cluster::start(1) else {
        return;
    };
    // A 30 s TTL and a probe bound of 1.5 s: the owner's session lease is the shorter of the two,
    // raised to etcd's 2 s minimum, not the 30 s of --ttl it was before.
    let mut owner = registry_with_ttl(&etcd, "1s", "30s");
    let survivor = registry_with_ttl(&etcd, "1s", "30s");
    let mut adder = Proc::adder(&owner.addr);
    eventually("listed on the survivor", || {
        listed(&survivor.addr) == [adder.addr.clone()]
    });
    assert!(
        owner.logged("under etcd session lease") && owner.logged("(TTL 2s)"),
        "the owner's session lease is not 2 s"
    );
    let killed = Instant::now();
    adder.kill();
    owner.kill();
    // Nothing can renew the key now: no registry hears the adder. It must go with the owner's
    // session lease, well inside the instance's own TTL of 30 s (PROC_DEADLINE is shorter).
    eventually(
        "gone from the survivor with the owner's session lease",
        || listed(&survivor.addr).is_empty(),
    );
    eprintln!(
        "SIGKILL to an adder and its owner → gone from the survivor: {:?} (TTL 30s, session 2s)",
        killed.elapsed()
    );
}
