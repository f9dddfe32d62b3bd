//! `--token`: who may register, renew and deregister, and (with `--token-reads`) who may look up.

mod common;

use common::procs::{client, eventually, exchange, get, healthy, listed, mini, Proc};

const TOKEN: &str = "s3cret-t0ken";

fn heartbeat(ip: &str, extra: &str) -> String {
    format!("POST /registerList?ip={ip}{extra} HTTP/1.1\r\nContent-Length: 0\r\nContent-Type: \r\nConnection: close\r\n\r\n")
}

#[test]
fn writes_need_the_token_by_query_or_bearer() {
    let reg = Proc::registry(&["--probe-interval", "60s", "--token", TOKEN]);
    let (status, body) = exchange(&reg.addr, &heartbeat("127.0.0.1:1111", ""));
    assert_eq!((status, body.as_str()), (401, "missing or wrong token\n"));
    assert_eq!(
        exchange(&reg.addr, &heartbeat("127.0.0.1:1111", "&token=wrong")).0,
        401
    );
    assert!(listed(&reg.addr).is_empty());
    let (status, body) = exchange(
        &reg.addr,
        &heartbeat("127.0.0.1:1111", &format!("&token={TOKEN}")),
    );
    assert_eq!((status, body.as_str()), (200, "127.0.0.1:1111 registered"));
    let delete = |auth: &str| {
        format!(
            "DELETE /v1/services/add/127.0.0.1:1111 HTTP/1.1\r\n{auth}Connection: close\r\n\r\n"
        )
    };
    assert_eq!(exchange(&reg.addr, &delete("")).0, 401);
    assert_eq!(
        exchange(
            &reg.addr,
            &delete(&format!("Authorization: Bearer {TOKEN}\r\n"))
        )
        .0,
        200
    );
    assert!(listed(&reg.addr).is_empty());
}

#[test]
fn reads_stay_open_unless_token_reads() {
    let reg = Proc::registry(&["--probe-interval", "60s", "--token", TOKEN]);
    assert_eq!(get(&reg.addr, "/serviceAddr?queryParam=add").0, 400);
    let locked = Proc::registry(&["--probe-interval", "60s", "--token", TOKEN, "--token-reads"]);
    assert_eq!(get(&locked.addr, "/serviceAddr?queryParam=add").0, 401);
    assert_eq!(get(&locked.addr, "/v1/services").0, 401);
    assert_eq!(get(&locked.addr, "/health").0, 200);
}

#[test]
fn adder_and_client_carry_the_token() {
    let reg = Proc::registry(&[
        "--probe-interval",
        "200ms",
        "--token",
        TOKEN,
        "--token-reads",
    ]);
    let _with = Proc::adder_with(&reg.addr, &["--token", TOKEN]);
    let without = Proc::adder(&reg.addr);
    let listing = format!("GET /v1/services/add HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n");
    eventually("the tokened adder is healthy", || {
        exchange(&reg.addr, &listing).1.contains(" healthy ")
    });
    eventually("the adder without a token logs the refusal", || {
        without.logged("401")
    });
    let out = client(&["5", "6", "--registry", &reg.addr, "--token", TOKEN]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "11\n");
    let out = client(&["5", "6", "--registry", &reg.addr]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
}

#[test]
fn mini_token_environment_variable_works_like_the_flag() {
    let mut child = mini()
        .args([
            "registry",
            "--listen",
            "127.0.0.1:0",
            "--probe-interval",
            "60s",
        ])
        .env("MINI_TOKEN", TOKEN)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let first = lines.next().expect("a line").expect("utf-8");
    let addr = first
        .split("listening on ")
        .nth(1)
        .expect("listening line")
        .trim()
        .to_string();
    assert_eq!(exchange(&addr, &heartbeat("127.0.0.1:2", "")).0, 401);
    assert_eq!(
        exchange(&addr, &heartbeat("127.0.0.1:2", &format!("&token={TOKEN}"))).0,
        200
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn listening_beyond_loopback_without_a_token_warns() {
    let reg = Proc::start(&[
        "registry",
        "--listen",
        "0.0.0.0:0",
        "--probe-interval",
        "60s",
    ]);
    eventually("the warning is logged", || {
        reg.logged("WARNING: listening beyond loopback with no --token")
    });
    let quiet = Proc::registry(&["--probe-interval", "60s"]);
    assert!(!quiet.logged("WARNING"));
}

#[test]
fn healthy_listing_with_token_shows_only_the_tokened_adder() {
    let reg = Proc::registry(&["--probe-interval", "200ms", "--token", TOKEN]);
    let with = Proc::adder_with(&reg.addr, &["--token", TOKEN]);
    let without = Proc::adder(&reg.addr);
    eventually("the tokened adder is healthy", || {
        healthy(&reg.addr) == [with.addr.clone()]
    });
    eventually("the other was refused", || without.logged("401"));
    assert_eq!(healthy(&reg.addr), std::slice::from_ref(&with.addr));
}
