//! The demo's promises with real processes: adders share calls, killed adders leave the rotation
//! within a probe interval, and the client never fails a call while a live adder remains.

mod common;

use common::procs::{client, eventually, get, healthy, listed, tally, Proc};

/// Fast timings so a test takes a second, not a minute.
const FAST: &[&str] = &[
    "--probe-interval",
    "200ms",
    "--probe-timeout",
    "500ms",
    "--ttl",
    "2s",
];

fn cluster(adders: usize, registry_flags: &[&str]) -> (Proc, Vec<Proc>) {
    let reg = Proc::registry(registry_flags);
    let adders: Vec<Proc> = (0..adders).map(|_| Proc::adder(&reg.addr)).collect();
    eventually("every adder is registered and healthy", || {
        healthy(&reg.addr).len() == adders.len()
    });
    (reg, adders)
}

#[test]
fn five_adders_share_two_hundred_calls() {
    let (reg, adders) = cluster(5, FAST);
    let out = client(&["5", "6", "--registry", &reg.addr, "--repeat", "200"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "11\n");
    let (served, failed) = tally(&stderr);
    assert_eq!(failed, 0);
    assert_eq!(served.values().sum::<u64>(), 200);
    assert!(served.len() >= 4, "only {served:?} served");
    for addr in served.keys() {
        assert!(
            adders.iter().any(|a| &a.addr == addr),
            "{addr} is not one of ours"
        );
    }
}

#[test]
fn killed_adders_leave_the_rotation_and_no_call_fails() {
    let (reg, mut adders) = cluster(5, FAST);
    let dead: Vec<String> = adders[..2].iter().map(|a| a.addr.clone()).collect();
    adders[0].kill();
    adders[1].kill();
    // Calls made right after the kill, before any probe, still all succeed (the client moves on).
    let out = client(&["5", "6", "--registry", &reg.addr, "--repeat", "100"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(tally(&stderr).1, 0);
    // After a probe interval the dead ones are excluded and no pick returns them.
    eventually("both dead adders are excluded", || {
        let h = healthy(&reg.addr);
        h.len() == 3 && dead.iter().all(|d| !h.contains(d))
    });
    for _ in 0..200 {
        let (status, addr) = get(&reg.addr, "/serviceAddr?queryParam=add");
        assert_eq!(status, 200);
        assert!(!dead.contains(&addr), "picked dead {addr}");
    }
    let out = client(&["5", "6", "--registry", &reg.addr, "--repeat", "100"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let (served, failed) = tally(&stderr);
    assert_eq!(failed, 0);
    assert_eq!(served.len(), 3, "{served:?}");
    assert!(
        !stderr.contains("asking the registry again"),
        "a dead adder was handed out: {stderr}"
    );
}

#[test]
fn an_adder_that_dies_after_the_lookup_is_retried_elsewhere() {
    // Probes every minute: the registry keeps handing out the dead adder, as in the window between a
    // lookup and the call in the original design.
    let (reg, mut adders) = cluster(2, &["--probe-interval", "60s"]);
    let dead = adders[0].addr.clone();
    let alive = adders[1].addr.clone();
    adders[0].kill();
    let out = client(&["2", "3", "--registry", &reg.addr, "--repeat", "40"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let (served, failed) = tally(&stderr);
    assert_eq!(failed, 0);
    assert_eq!(served.keys().collect::<Vec<_>>(), [&alive]);
    assert!(
        stderr.contains(&format!("{dead} failed")),
        "the dead adder was never tried: {stderr}"
    );
}

#[test]
fn all_adders_dead_is_a_clear_error() {
    let (reg, mut adders) = cluster(2, FAST);
    for a in &mut adders {
        a.kill();
    }
    eventually("both are excluded", || healthy(&reg.addr).is_empty());
    let out = client(&["5", "6", "--registry", &reg.addr]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no add instance available"), "{stderr}");
}

#[test]
fn all_adders_dead_but_still_listed_ends_with_a_clear_error() {
    let (reg, mut adders) = cluster(2, &["--probe-interval", "60s"]);
    for a in &mut adders {
        a.kill();
    }
    let out = client(&["5", "6", "--registry", &reg.addr]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no add instance answered"), "{stderr}");
}

#[test]
fn an_unreachable_registry_is_named() {
    let reg = Proc::registry(FAST);
    let addr = reg.addr.clone();
    drop(reg);
    let out = client(&["5", "6", "--registry", &addr]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("registry {addr} unreachable")),
        "{stderr}"
    );
}

#[test]
fn sigterm_deregisters_the_adder() {
    // Long lease and no probes: only the deregistration can remove it quickly.
    let (reg, mut adders) = cluster(2, &["--probe-interval", "60s", "--ttl", "60s"]);
    let leaving = adders[0].addr.clone();
    let status = adders[0].terminate();
    assert!(status.success(), "adder exited with {status}");
    assert!(!listed(&reg.addr).contains(&leaving));
    assert_eq!(listed(&reg.addr), [adders[1].addr.clone()]);
    eventually("the log line", || {
        reg.logged(&format!("{leaving} deregistered"))
    });
}

#[test]
fn sigterm_stops_the_registry_with_status_0() {
    let mut reg = Proc::registry(&[]);
    // Answering a request means the server runs, so the handlers are in place.
    assert_eq!(get(&reg.addr, "/health"), (200, "ok\n".into()));
    let status = reg.terminate();
    assert_eq!(status.code(), Some(0), "registry exited with {status}");
    eventually("the log line", || reg.logged("got SIGTERM; stopping"));
    assert!(std::net::TcpStream::connect(&reg.addr).is_err());
}

#[test]
fn sigint_stops_the_registry_with_status_0_also_as_a_background_job() {
    // A shell's background job inherits SIGINT as ignored; the registry must handle it anyway.
    let mut cmd = std::process::Command::new("sh");
    cmd.args([
        "-c",
        "trap '' INT; exec \"$0\" registry --listen 127.0.0.1:0 --warmup 0s",
        env!("CARGO_BIN_EXE_mini"),
    ]);
    let mut reg = Proc::spawn(cmd);
    assert_eq!(get(&reg.addr, "/health"), (200, "ok\n".into()));
    let status = reg.signal("INT");
    assert_eq!(status.code(), Some(0), "registry exited with {status}");
    eventually("the log line", || reg.logged("got SIGINT; stopping"));
}

#[test]
fn a_restarted_registry_knows_the_adders_again_within_a_beat_and_no_call_fails() {
    let mut reg = Proc::registry(FAST);
    let addr = reg.addr.clone();
    let adders: Vec<Proc> = (0..5).map(|_| Proc::adder(&addr)).collect();
    eventually("registered", || healthy(&addr).len() == 5);
    let calls = common::procs::mini()
        .args([
            "client",
            "5",
            "6",
            "--registry",
            &addr,
            "--repeat",
            "3000",
            "--concurrency",
            "2",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("client");
    reg.kill();
    // Warm-up of a beat or so: until then an empty lookup is a 503 that the client waits out.
    let _again = Proc::start(&[
        "registry",
        "--listen",
        &addr,
        "--probe-interval",
        "200ms",
        "--warmup",
        "1s",
    ]);
    eventually("all five beat into the new registry", || {
        healthy(&addr).len() == 5
    });
    let out = calls.wait_with_output().expect("client");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let (served, failed) = tally(&stderr);
    assert_eq!(failed, 0);
    assert_eq!(served.values().sum::<u64>(), 3000);
    drop(adders);
}

#[test]
fn a_warming_registry_answers_503_then_the_original_400() {
    let reg = Proc::registry(&["--probe-interval", "60s", "--warmup", "300ms"]);
    let (status, body) = get(&reg.addr, "/serviceAddr?queryParam=add");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("retry"), "{body}");
    eventually("the warm-up ends", || {
        get(&reg.addr, "/serviceAddr?queryParam=add").0 == 400
    });
}
