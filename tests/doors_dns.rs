//! The DNS door (`mini registry --dns`) read by real programs: Debian's `dig` (bind9-dnsutils) and
//! HAProxy's `resolvers` with `server-template`, against a real registry and real adders. Each test
//! prints a skip line and passes when its program is not installed (CI installs them).
//!
//! tests/dns.rs checks the DNS server against a fixed record source; here the records come from the
//! registry's own state: adders beating, instances registered with `PUT`, a killed adder leaving.

mod common;

use common::doors::{
    adds_served, dig, dns_registry, http_get, port_of, program, put, start_with_port, TempDir,
};
use common::procs::{eventually, Proc, PROC_DEADLINE};
use std::process::Command;
use std::time::Instant;

/// Registers `count` instances of `service` on 127.0.0.1 ports from `first` with `check=none`, so
/// they are healthy without anything listening.
fn put_instances(registry: &str, service: &str, first: u16, count: u16, query: &str) {
    for port in first..first + count {
        let target = format!("/v1/services/{service}/127.0.0.1:{port}?check=none&ttl=30s{query}");
        let (status, body) = put(registry, &target, "");
        assert_eq!(status, 200, "{target}: {body}");
    }
}

#[test]
fn dig_reads_a_live_registry() {
    if program("dig", "bind9-dnsutils").is_none() {
        return;
    }
    let (registry, dns) = dns_registry(&[]);
    let adders: Vec<Proc> = (0..3).map(|_| Proc::adder(&registry.addr)).collect();
    let mut ports: Vec<u16> = adders.iter().map(|a| port_of(&a.addr)).collect();
    ports.sort_unstable();
    eventually("three adders answer SRV", || {
        dig(dns, &["_add._tcp.service.mini", "SRV"]).srv_ports() == ports
    });

    // A: the three adders share 127.0.0.1, which is answered once (RFC 2181 §5: a set of distinct records).
    let d = dig(dns, &["add.service.mini", "A"]);
    assert_eq!(d.status, "NOERROR", "{}", d.text);
    assert!(d.has_flag("aa"), "{}", d.text);
    assert_eq!(
        d.answer,
        ["add.service.mini. 0 IN A 127.0.0.1"],
        "{}",
        d.text
    );

    // SRV: one record per adder with its port, the target answered in the additional section.
    let d = dig(dns, &["_add._tcp.service.mini", "SRV"]);
    assert_eq!(d.srv_ports(), ports, "{}", d.text);
    for rec in &d.answer {
        assert!(
            rec.starts_with("_add._tcp.service.mini. 0 IN SRV 1 1 ")
                && rec.ends_with(" 7f000001.addr.mini."),
            "{rec}\n{}",
            d.text
        );
    }
    assert_eq!(
        d.additional,
        ["7f000001.addr.mini. 0 IN A 127.0.0.1"],
        "{}",
        d.text
    );

    // Over TCP: the same answer.
    let d = dig(dns, &["+tcp", "_add._tcp.service.mini", "SRV"]);
    assert_eq!(d.srv_ports(), ports, "{}", d.text);
    assert!(d.text.contains("(TCP)"), "{}", d.text);

    // A tag filter on an instance registered with PUT.
    put_instances(&registry.addr, "web", 18080, 1, "&tag=v2");
    put_instances(&registry.addr, "web", 18081, 1, "&tag=v1");
    let d = dig(dns, &["v2.web.service.mini", "A"]);
    assert_eq!(
        d.answer,
        ["v2.web.service.mini. 0 IN A 127.0.0.1"],
        "{}",
        d.text
    );
    let d = dig(dns, &["_web._v2.service.mini", "SRV"]);
    assert_eq!(d.srv_ports(), [18080], "{}", d.text);
    let d = dig(dns, &["_web._tcp.service.mini", "SRV"]);
    assert_eq!(d.srv_ports(), [18080, 18081], "{}", d.text);
    let d = dig(dns, &["_web._v3.service.mini", "SRV"]);
    assert_eq!(d.status, "NXDOMAIN", "no instance carries v3: {}", d.text);

    // NXDOMAIN for an unknown name, with the zone's SOA in the authority section.
    let d = dig(dns, &["nope.service.mini", "A"]);
    assert_eq!(d.status, "NXDOMAIN", "{}", d.text);
    assert!(d.text.contains("status: NXDOMAIN"), "{}", d.text);
    assert!(d.answer.is_empty(), "{}", d.text);
    assert_eq!(d.authority.len(), 1, "{}", d.text);
    assert!(
        d.authority[0].starts_with("mini. 0 IN SOA ns.mini. hostmaster.mini. "),
        "{}",
        d.text
    );

    // 70 instances: cut at 512 bytes without EDNS (TC set), all 70 with a 4096-byte buffer. A
    // answers collapse to one address, so the count is taken on SRV.
    put_instances(&registry.addr, "big", 20000, 70, "");
    let d = dig(
        dns,
        &["+noedns", "+ignore", "_big._tcp.service.mini", "SRV"],
    );
    assert!(d.has_flag("tc"), "{}", d.text);
    assert!(
        !d.answer.is_empty() && d.answer.len() < 70,
        "{} records in 512 bytes:\n{}",
        d.answer.len(),
        d.text
    );
    let d = dig(
        dns,
        &["+bufsize=4096", "+ignore", "_big._tcp.service.mini", "SRV"],
    );
    assert!(!d.has_flag("tc"), "{}", d.text);
    assert_eq!(
        d.srv_ports(),
        (20000..20070).collect::<Vec<_>>(),
        "{}",
        d.text
    );
    assert_eq!(
        d.additional,
        ["7f000001.addr.mini. 0 IN A 127.0.0.1"],
        "{}",
        d.text
    );
    // Without +ignore, dig retries a truncated answer over TCP and gets all 70 there too.
    let d = dig(dns, &["+noedns", "_big._tcp.service.mini", "SRV"]);
    assert_eq!(d.srv_ports().len(), 70, "{}", d.text);

    // The queries were counted.
    let (_, metrics) = common::procs::get(&registry.addr, "/metrics");
    assert!(
        metrics.contains("mini_dns_queries_total{type=\"SRV\"}"),
        "{metrics}"
    );
}

/// HAProxy's configuration: mini's DNS as the resolver, eight server slots filled from the SRV
/// answer, short hold times and checks so a killed adder leaves quickly. `allow-dup-ip`: the three
/// adders share 127.0.0.1, and HAProxy by default gives one address to one server of a backend
/// only (without it, the third slot never gets an address). No retries: a call HAProxy sends to the
/// killed adder fails, so the 200 calls after the kill show it is out of HAProxy's servers.
fn haproxy_config(dns: u16, front: u16) -> String {
    format!(
        "global
    log stderr format raw local0 warning
defaults
    mode http
    log global
    timeout connect 1s
    timeout client 5s
    timeout server 5s
    retries 0
resolvers mini
    nameserver m 127.0.0.1:{dns}
    accepted_payload_size 8192
    resolve_retries 2
    timeout resolve 200ms
    timeout retry 200ms
    hold valid 200ms
    hold nx 200ms
    hold obsolete 200ms
    hold other 200ms
    hold refused 200ms
    hold timeout 200ms
frontend calls
    bind 127.0.0.1:{front}
    default_backend adders
backend adders
    balance roundrobin
    option httpchk GET /aliveCheck
    server-template add 1-8 _add._tcp.service.mini resolvers mini resolve-prefer ipv4 resolve-opts allow-dup-ip init-addr none check inter 200ms fall 1 rise 1
"
    )
}

/// One call through HAProxy: whether it answered 200 with `3`.
fn call(front: &str) -> bool {
    http_get(front, "/Add/1/2").is_some_and(|(status, body)| status == 200 && body == "3")
}

#[test]
fn haproxy_spreads_calls_over_the_srv_answer_and_drops_a_killed_adder() {
    let Some(haproxy) = program("haproxy", "haproxy") else {
        return;
    };
    if program("dig", "bind9-dnsutils").is_none() {
        return;
    }
    let (registry, dns) = dns_registry(&[]);
    let mut adders: Vec<Proc> = (0..3).map(|_| Proc::adder(&registry.addr)).collect();
    let ports: Vec<u16> = adders.iter().map(|a| port_of(&a.addr)).collect();
    eventually("three adders answer SRV", || {
        dig(dns, &["_add._tcp.service.mini", "SRV"])
            .srv_ports()
            .len()
            == 3
    });

    let dir = TempDir::new("haproxy");
    let log = dir.join("haproxy.log");
    let (_haproxy, front) = start_with_port(
        "haproxy",
        &log,
        |port| {
            let cfg = dir.write("haproxy.cfg", &haproxy_config(dns, port));
            let mut cmd = Command::new(&haproxy);
            cmd.arg("-f").arg(cfg).arg("-db");
            cmd
        },
        |port| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
    );
    let front = format!("127.0.0.1:{front}");

    // Calls spread over all three adders once HAProxy has resolved and checked them.
    eventually("every adder served calls through HAProxy", || {
        for _ in 0..6 {
            call(&front);
        }
        adders.iter().all(|a| adds_served(&a.addr) > 0)
    });

    // Kill one: it leaves the registry's DNS answer, then HAProxy's servers.
    adders[0].kill();
    let survivors = {
        let mut p = ports[1..].to_vec();
        p.sort_unstable();
        p
    };
    eventually("the killed adder leaves the SRV answer", || {
        dig(dns, &["_add._tcp.service.mini", "SRV"]).srv_ports() == survivors
    });
    // HAProxy's hold times and check have passed once 50 calls in a row succeed.
    let deadline = Instant::now() + PROC_DEADLINE;
    let (mut in_a_row, mut failed_while_settling) = (0, 0);
    let killed_at = Instant::now();
    while in_a_row < 50 {
        in_a_row = if call(&front) {
            in_a_row + 1
        } else {
            failed_while_settling += 1;
            0
        };
        assert!(
            Instant::now() < deadline,
            "calls through HAProxy still fail after the kill:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    eprintln!(
        "HAProxy settled {:?} after the kill left DNS ({failed_while_settling} calls failed meanwhile)",
        killed_at.elapsed()
    );
    let before: Vec<u64> = adders[1..].iter().map(|a| adds_served(&a.addr)).collect();
    let failed = (0..200).filter(|_| !call(&front)).count();
    assert_eq!(failed, 0, "of 200 calls through HAProxy after the kill");
    let after: Vec<u64> = adders[1..].iter().map(|a| adds_served(&a.addr)).collect();
    let served: u64 = after.iter().zip(&before).map(|(a, b)| a - b).sum();
    assert_eq!(served, 200, "the two survivors served every call");
    assert!(
        after.iter().zip(&before).all(|(a, b)| a > b),
        "both survivors served: {before:?} -> {after:?}"
    );
}
