//! `mini client` against the original Go registry: with no instance its `/serviceAddr` answers 400
//! with `当前没有可用服务`, and in the original protocol any 400 there means "none available". The
//! registry here is a tiny fake on a std `TcpListener` on port 0; the client is the real binary.

mod common;

use common::procs::client;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// The original registry's body when it has no instance of the service.
const ORIGINAL_NONE: &str = "当前没有可用服务";

/// A fake registry answering every request `400` with `body`, as Go's `net/http` frames it; returns
/// its address and the request targets it received.
fn fake_registry(body: &'static str) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let targets = Arc::new(Mutex::new(Vec::new()));
    let seen = targets.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                // One request per connection: read its head, answer, close.
                while !head.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let target = head.split(' ').nth(1).unwrap_or_default().to_string();
                seen.lock().unwrap().push(target);
                let reply = format!(
                    "HTTP/1.1 400 Bad Request\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\n\
                     Content-Length: {}\r\nContent-Type: text/plain; charset=utf-8\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes());
            });
        }
    });
    (addr, targets)
}

#[test]
fn the_original_registrys_400_means_none_available() {
    let (registry, targets) = fake_registry(ORIGINAL_NONE);
    let out = client(&["1", "1", "--registry", &registry]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("mini: no add instance available (registry said: 当前没有可用服务)\n"),
        "{stderr}"
    );
    assert_eq!(
        *targets.lock().unwrap(),
        ["/serviceAddr?queryParam=add"],
        "one lookup, no retry"
    );
}

#[test]
fn the_service_asked_for_is_named() {
    let (registry, _) = fake_registry(ORIGINAL_NONE);
    let out = client(&["1", "1", "--registry", &registry, "--service", "mul"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("mini: no mul instance available (registry said: 当前没有可用服务)\n"),
        "{stderr}"
    );
}

#[test]
fn our_own_none_body_keeps_the_short_message() {
    let (registry, _) = fake_registry(mini::proto::NO_SERVICE_BODY);
    let out = client(&["1", "1", "--registry", &registry]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.ends_with("mini: no add instance available\n"),
        "{stderr}"
    );
}
