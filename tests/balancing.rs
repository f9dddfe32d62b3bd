//! Client-side balancing through the real binary: p2c steers away from a slow adder, ejection stops
//! calls to a dead adder before the registry notices, and a client with two registries loses no call
//! when one of them dies.

mod common;

use common::procs::{client, eventually, healthy, tally, Proc};
use std::collections::BTreeMap;

fn run(args: &[&str]) -> (BTreeMap<String, u64>, u64, String) {
    let out = client(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let (served, failed) = tally(&stderr);
    (served, failed, stderr)
}

#[test]
fn p2c_sends_less_traffic_to_a_slow_adder_than_random() {
    let reg = Proc::registry(&["--probe-interval", "60s"]);
    let fast: Vec<Proc> = (0..2).map(|_| Proc::adder(&reg.addr)).collect();
    let slow = Proc::adder_with(&reg.addr, &["--delay", "40ms"]);
    eventually("three adders", || healthy(&reg.addr).len() == 3);
    let common = [
        "1",
        "2",
        "--registry",
        &reg.addr,
        "--repeat",
        "300",
        "--concurrency",
        "6",
    ];
    let share = |lb: &str| {
        let mut args = common.to_vec();
        args.extend(["--lb", lb]);
        let (served, failed, _) = run(&args);
        assert_eq!(failed, 0);
        assert_eq!(served.values().sum::<u64>(), 300);
        served.get(&slow.addr).copied().unwrap_or(0)
    };
    let random = share("random");
    let p2c = share("p2c");
    eprintln!("slow adder served {random}/300 with random, {p2c}/300 with p2c");
    assert!(
        random >= 60,
        "random should give the slow adder about a third: {random}"
    );
    assert!(
        p2c * 2 < random,
        "p2c gave the slow adder {p2c}, random {random}"
    );
    drop(fast);
}

#[test]
fn ejection_stops_calls_to_a_dead_adder_before_the_registry_notices() {
    // No probes: only the client can notice.
    let reg = Proc::registry(&["--probe-interval", "60s"]);
    let mut adders: Vec<Proc> = (0..3).map(|_| Proc::adder(&reg.addr)).collect();
    eventually("three adders", || healthy(&reg.addr).len() == 3);
    let dead = adders[0].addr.clone();
    adders[0].kill();
    let (served, failed, stderr) = run(&[
        "1",
        "2",
        "--registry",
        &reg.addr,
        "--repeat",
        "300",
        "--lb",
        "random",
    ]);
    assert_eq!(failed, 0);
    assert!(!served.contains_key(&dead));
    let tries = stderr.matches(&format!("{dead} failed")).count();
    assert_eq!(
        tries, 3,
        "the dead adder was tried {tries} times:\n{stderr}"
    );
    assert!(stderr.contains(&format!("{dead} ejected")), "{stderr}");
    assert_eq!(
        healthy(&reg.addr).len(),
        3,
        "the registry noticed after all"
    );
}

#[test]
fn round_robin_spreads_evenly() {
    let reg = Proc::registry(&["--probe-interval", "60s"]);
    let _adders: Vec<Proc> = (0..3).map(|_| Proc::adder(&reg.addr)).collect();
    eventually("three adders", || healthy(&reg.addr).len() == 3);
    let (served, failed, _) = run(&[
        "1",
        "2",
        "--registry",
        &reg.addr,
        "--repeat",
        "99",
        "--lb",
        "round-robin",
    ]);
    assert_eq!(failed, 0);
    assert_eq!(served.values().copied().collect::<Vec<_>>(), [33, 33, 33]);
}

#[test]
fn a_client_with_two_registries_loses_no_call_when_one_dies() {
    let mut first = Proc::registry(&["--probe-interval", "200ms"]);
    let second = Proc::registry(&["--probe-interval", "200ms"]);
    let both = format!("{},{}", first.addr, second.addr);
    let _adders: Vec<Proc> = (0..3).map(|_| Proc::adder(&both)).collect();
    eventually("each registry knows all three", || {
        healthy(&first.addr).len() == 3 && healthy(&second.addr).len() == 3
    });
    for lb in [None, Some("p2c")] {
        let mut args = vec![
            "1",
            "2",
            "--registry",
            &both,
            "--repeat",
            "2000",
            "--concurrency",
            "4",
        ];
        if let Some(lb) = lb {
            args.extend(["--lb", lb]);
        }
        let child = common::procs::mini()
            .arg("client")
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("client");
        if lb.is_none() {
            // Kill the first registry while the per-call client is using it.
            std::thread::sleep(std::time::Duration::from_millis(50));
            first.kill();
        }
        let out = child.wait_with_output().expect("client");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{lb:?}: {stderr}");
        let (served, failed) = tally(&stderr);
        assert_eq!(failed, 0, "{lb:?}");
        assert_eq!(served.values().sum::<u64>(), 2000);
    }
}
