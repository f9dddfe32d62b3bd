//! Watches: a blocking query returns on a real change (or when its wait ends), never on a renewal;
//! a watcher whose client goes away is freed; `mini watch` prints instance events.

mod common;

use common::procs::{eventually, exchange, get, Proc, PROC_DEADLINE};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;

fn put(addr: &str, instance: &str) -> u16 {
    let raw = format!("PUT /v1/services/add/{instance}?ttl=60s HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    exchange(addr, &raw).0
}

fn index_of(addr: &str) -> u64 {
    let (_, body) = get(addr, "/v1/services/add");
    let header = body.lines().next().unwrap_or_default();
    header
        .split(' ')
        .find_map(|w| w.strip_prefix("index="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no index in {header:?}"))
}

fn watchers(addr: &str) -> u64 {
    let (_, page) = get(addr, "/metrics");
    page.lines()
        .find_map(|l| l.strip_prefix("mini_watchers "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no mini_watchers in {page}"))
}

/// Starts a watch in a thread; the result arrives on the channel.
fn watch(addr: &str, index: u64, wait: &str) -> mpsc::Receiver<(u16, String)> {
    let (tx, rx) = mpsc::channel();
    let addr = addr.to_string();
    let target = format!("/v1/services/add?index={index}&wait={wait}");
    std::thread::spawn(move || {
        let _ = tx.send(get(&addr, &target));
    });
    rx
}

#[test]
fn a_watch_returns_when_an_instance_is_added() {
    let reg = Proc::registry(&["--probe-interval", "60s"]);
    assert_eq!(put(&reg.addr, "127.0.0.1:1"), 200);
    let before = index_of(&reg.addr);
    let rx = watch(&reg.addr, before, "60s");
    eventually("the watch is waiting", || watchers(&reg.addr) == 1);
    assert!(
        rx.try_recv().is_err(),
        "the watch returned with nothing changed"
    );
    assert_eq!(put(&reg.addr, "127.0.0.1:2"), 200);
    let (status, body) = rx
        .recv_timeout(PROC_DEADLINE)
        .expect("the watch returns after the change");
    assert_eq!(status, 200);
    assert!(body.contains("127.0.0.1:2 healthy"), "{body}");
    let after = index_of(&reg.addr);
    assert!(after > before);
    assert!(body.starts_with(&format!("# add index={after} ")), "{body}");
    assert_eq!(watchers(&reg.addr), 0);
}

#[test]
fn a_stale_index_returns_at_once_and_a_renewal_does_not_wake() {
    let reg = Proc::registry(&["--probe-interval", "60s"]);
    put(&reg.addr, "127.0.0.1:1");
    let now = index_of(&reg.addr);
    // A stale index answers without waiting, even with a long wait.
    let rx = watch(&reg.addr, now - 1, "600s");
    assert_eq!(rx.recv_timeout(PROC_DEADLINE).expect("immediate").0, 200);
    // A renewal is not a change: the watch runs to the end of its wait and reports the same index.
    let rx = watch(&reg.addr, now, "300ms");
    eventually("the watch is waiting", || watchers(&reg.addr) == 1);
    put(&reg.addr, "127.0.0.1:1");
    let (_, body) = rx
        .recv_timeout(PROC_DEADLINE)
        .expect("returns when the wait ends");
    assert!(body.starts_with(&format!("# add index={now} ")), "{body}");
}

#[test]
fn a_watcher_whose_client_leaves_is_freed() {
    let reg = Proc::registry(&["--probe-interval", "60s"]);
    put(&reg.addr, "127.0.0.1:1");
    let index = index_of(&reg.addr);
    let mut stream = std::net::TcpStream::connect(&reg.addr).expect("connect");
    let raw = format!("GET /v1/services/add?index={index}&wait=600s HTTP/1.1\r\n\r\n");
    std::io::Write::write_all(&mut stream, raw.as_bytes()).expect("write");
    eventually("the watch is waiting", || watchers(&reg.addr) == 1);
    drop(stream);
    eventually("the watcher is freed", || watchers(&reg.addr) == 0);
}

#[test]
fn bad_watch_parameters_are_400() {
    let reg = Proc::registry(&["--probe-interval", "60s"]);
    assert_eq!(get(&reg.addr, "/v1/services/add?index=-1").0, 400);
    assert_eq!(get(&reg.addr, "/v1/services/add?index=1&wait=soon").0, 400);
}

#[test]
fn mini_watch_prints_instance_events() {
    let reg = Proc::registry(&["--probe-interval", "100ms", "--probe-timeout", "500ms"]);
    let mut child = common::procs::mini()
        .args(["watch", "add", "--registry", &reg.addr])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mini watch");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let next = |want: &str| loop {
        let line = rx
            .recv_timeout(PROC_DEADLINE)
            .unwrap_or_else(|_| panic!("no line with {want:?}"));
        if line.contains(want) {
            return line;
        }
    };
    let mut adder = Proc::adder(&reg.addr);
    next(&format!("+ {} healthy", adder.addr));
    adder.kill();
    next(&format!("~ {} excluded", adder.addr));
    let _ = child.kill();
    let _ = child.wait();
}
