//! Adders that fail in the ways real ones do: one that accepts and never answers, one that answers
//! 500, one that closes mid-response. Probes must exclude them and the client must move on.
//! The faulty adders are raw sockets in this test process; the registry and a good adder are real.

mod common;

use common::procs::{client, eventually, exchange, healthy, listed, Proc};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;

/// How a fake adder misbehaves.
#[derive(Clone, Copy)]
enum Fault {
    /// Accepts, reads, never answers (holds the socket open).
    Silent,
    /// Answers every request with a 500.
    ServerError,
    /// Sends half a response, then closes.
    Truncated,
}

/// Starts a fake adder on a free port and returns its address.
fn fake(fault: Fault) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().map_while(Result::ok) {
            match fault {
                Fault::Silent => held.push(stream),
                Fault::ServerError => {
                    thread::spawn(move || {
                        answer(
                            stream,
                            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops",
                        )
                    });
                }
                Fault::Truncated => {
                    thread::spawn(move || {
                        answer(stream, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12")
                    });
                }
            }
        }
    });
    addr
}

/// Reads one request head, writes `reply`, closes.
fn answer(mut stream: TcpStream, reply: &[u8]) {
    let mut buf = [0u8; 2048];
    let mut seen = Vec::new();
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    let _ = stream.write_all(reply);
}

fn register(registry: &str, addr: &str) {
    let raw = format!("PUT /v1/services/add/{addr}?ttl=60s HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    assert_eq!(exchange(registry, &raw).0, 200);
}

#[test]
fn probes_exclude_silent_failing_and_truncating_adders() {
    let reg = Proc::registry(&["--probe-interval", "200ms", "--probe-timeout", "300ms"]);
    let good = Proc::adder(&reg.addr);
    let bad: Vec<String> = [Fault::Silent, Fault::ServerError, Fault::Truncated]
        .map(fake)
        .to_vec();
    for addr in &bad {
        register(&reg.addr, addr);
    }
    eventually("only the good adder stays healthy", || {
        healthy(&reg.addr) == [good.addr.clone()]
    });
    assert_eq!(
        listed(&reg.addr).len(),
        4,
        "excluded, not removed: their leases still run"
    );
    eventually("the log line", || {
        reg.logged(&format!("{} excluded: probe failed: timed out", bad[0]))
    });
    eventually("the log line", || {
        reg.logged(&format!("{} excluded: probe failed: answered 500", bad[1]))
    });
}

#[test]
fn the_client_moves_on_from_every_kind_of_failing_adder() {
    // No probes: the registry keeps handing the faulty adders out, only the client can cope.
    let reg = Proc::registry(&["--probe-interval", "60s"]);
    let good = Proc::adder(&reg.addr);
    eventually("the good adder is registered", || {
        healthy(&reg.addr).len() == 1
    });
    let server_error = fake(Fault::ServerError);
    let truncated = fake(Fault::Truncated);
    register(&reg.addr, &server_error);
    register(&reg.addr, &truncated);
    let out = client(&["1", "2", "--registry", &reg.addr, "--repeat", "60"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("{} served 60", good.addr)),
        "{stderr}"
    );
    assert!(stderr.contains("failed calls: 0"));
    assert!(
        stderr.contains(&format!("{server_error} failed (answered 500)")),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("{truncated} failed")), "{stderr}");
}

#[test]
fn a_call_to_a_silent_adder_times_out_and_moves_on() {
    let reg = Proc::registry(&["--probe-interval", "60s"]);
    let good = Proc::adder(&reg.addr);
    eventually("the good adder is registered", || {
        healthy(&reg.addr).len() == 1
    });
    let silent = fake(Fault::Silent);
    register(&reg.addr, &silent);
    // Each call picks the silent adder first half of the time; stop at the first call that did.
    for _ in 0..16 {
        let out = client(&["1", "2", "--registry", &reg.addr]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "3\n");
        if stderr.contains(&format!("{silent} failed (timed out")) {
            assert!(
                stderr.contains(&format!("{} answered", good.addr)),
                "{stderr}"
            );
            return;
        }
    }
    panic!("16 calls never picked the silent adder first");
}

#[test]
fn a_client_offered_only_failing_adders_gives_up_naming_them() {
    let reg = Proc::registry(&["--probe-interval", "60s"]);
    let bad = [fake(Fault::ServerError), fake(Fault::Truncated)];
    for addr in &bad {
        register(&reg.addr, addr);
    }
    let out = client(&["1", "2", "--registry", &reg.addr]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("every one the registry offered in up to 64 lookups failed"),
        "{stderr}"
    );
    for addr in &bad {
        assert!(stderr.contains(&format!("{addr} failed")), "{stderr}");
    }
}
