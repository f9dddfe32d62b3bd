//! Drain before stop, with real processes: an adder told to stop stays listed and answering for its
//! `--drain`, then deregisters and exits 0; a rolling restart of five adders loses no call.

mod common;

use common::procs::{
    eventually, exit_status, get, healthy, listed, mini, send_signal, tally, Proc,
};
use std::process::{ExitStatus, Stdio};

/// Fast timings: probes every 200 ms, a lease of 2 s.
const FAST: &[&str] = &[
    "--probe-interval",
    "200ms",
    "--probe-timeout",
    "500ms",
    "--ttl",
    "2s",
];

/// Sends SIGTERM to `proc` without waiting.
fn sigterm(proc: &Proc) {
    assert!(send_signal(proc.child.id(), "TERM"), "kill -TERM failed");
}

/// Waits for `proc` to exit, bounded by `procs::PROC_DEADLINE`.
fn wait(proc: &mut Proc) -> ExitStatus {
    exit_status(&mut proc.child).expect("it did not exit after SIGTERM")
}

/// `Some(draining)` for `addr` in the JSON listing of `add`, `None` when the listing lacks the field
/// (a registry older than issue 11).
fn draining(registry: &str, addr: &str) -> Option<bool> {
    let (_, body) = get(registry, "/v1/services/add?format=json");
    let doc = mini::jsonread::parse(body.as_bytes()).expect("JSON listing");
    let instances = doc.get("instances")?.as_array()?;
    let me = instances
        .iter()
        .find(|i| i.get("addr").and_then(|a| a.as_str()) == Some(addr))?;
    match me.get("draining")? {
        mini::jsonread::Value::Bool(b) => Some(*b),
        _ => None,
    }
}

#[test]
fn a_draining_adder_stays_listed_and_answering_then_deregisters_and_exits_0() {
    // Long lease: only the deregistration can remove it quickly.
    let reg = Proc::registry(&["--probe-interval", "200ms", "--ttl", "60s"]);
    let mut adder = Proc::adder_with(&reg.addr, &["--drain", "2s"]);
    let me = adder.addr.clone();
    eventually("registered", || healthy(&reg.addr) == [me.clone()]);
    sigterm(&adder);
    eventually("it drains", || adder.logged("draining for 2s"));
    // While it drains: still listed (healthy: probes still pass), still answering.
    assert_eq!(listed(&reg.addr), std::slice::from_ref(&me));
    assert_eq!(get(&me, "/Add/1/2"), (200, "3".to_string()));
    assert_eq!(
        draining(&reg.addr, &me),
        Some(true),
        "listed but not draining"
    );
    assert_eq!(
        get(&reg.addr, "/serviceAddr?queryParam=add").0,
        400,
        "a draining adder was picked"
    );
    assert!(
        adder.child.try_wait().expect("try_wait").is_none(),
        "the drain ended before the checks"
    );
    let status = wait(&mut adder);
    assert!(status.success(), "adder exited with {status}");
    assert!(listed(&reg.addr).is_empty());
    eventually("the log line", || reg.logged(&format!("{me} deregistered")));
}

#[test]
fn a_drain_of_zero_deregisters_at_once() {
    let reg = Proc::registry(&["--probe-interval", "60s", "--ttl", "60s"]);
    let mut adder = Proc::adder_with(&reg.addr, &["--drain", "0s"]);
    let me = adder.addr.clone();
    eventually("registered", || listed(&reg.addr) == [me.clone()]);
    let status = adder.terminate();
    assert!(status.success(), "adder exited with {status}");
    assert!(!adder.logged("draining"));
    assert!(listed(&reg.addr).is_empty());
}

#[test]
fn a_rolling_restart_of_five_adders_loses_no_call() {
    let reg = Proc::registry(FAST);
    // A 5 ms sum keeps calls in flight at every moment, so a stop that did not drain would cut some.
    let flags = ["--drain", "1s", "--delay", "5ms"];
    let mut adders: Vec<Proc> = (0..5)
        .map(|_| Proc::adder_with(&reg.addr, &flags))
        .collect();
    let addrs: Vec<String> = adders.iter().map(|a| a.addr.clone()).collect();
    eventually("all five registered", || healthy(&reg.addr).len() == 5);
    let restarts = {
        let registry = reg.addr.clone();
        std::thread::spawn(move || {
            for (i, addr) in addrs.iter().enumerate() {
                let status = adders[i].terminate();
                assert!(status.success(), "{addr} exited with {status}");
                let port = addr.rsplit_once(':').expect("HOST:PORT").1;
                let mut args = vec!["adder", port, "--registry", &registry, "--beat", "200ms"];
                args.extend(flags);
                adders[i] = Proc::start(&args);
                eventually("the restarted adder is back", || {
                    healthy(&registry).contains(addr)
                });
            }
            adders
        })
    };
    // Clients run back to back for as long as the restarts take (or until they fail).
    let mut runs = 0;
    while runs == 0 || !restarts.is_finished() {
        let out = mini()
            .args(["client", "1", "2", "--registry", &reg.addr])
            .args(["--repeat", "5000", "--concurrency", "4"])
            .stdout(Stdio::null())
            .output()
            .expect("run client");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let (served, failed) = tally(&stderr);
        assert_eq!(failed, 0, "{stderr}");
        assert_eq!(served.values().sum::<u64>(), 5000);
        // Not even a retry: no call reached an adder that had stopped.
        assert!(
            !stderr.contains("asking the registry again"),
            "a stopping adder was handed out: {stderr}"
        );
        runs += 1;
    }
    let adders = restarts.join().expect("restarts");
    assert_eq!(healthy(&reg.addr).len(), 5);
    drop(adders);
}
