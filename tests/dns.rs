//! The DNS server over real sockets: answers read by the real `dig` (Debian's bind9-dnsutils; the
//! dig tests print a skip and pass when it is not installed), and the TCP side's framing, several
//! queries per connection, timeouts and cap, checked with plain sockets and our own decoder.
//!
//! Timeout tests use short limits and only check that the outcome arrives; every wait is bounded by
//! a socket timeout, a hang guard only.

mod common;

use common::doors::{self, program, Dig};
use mini::dns::decode::{parse_message, RData};
use mini::dns::wire::{flag, name_from_str, rcode};
use mini::dns::{DnsConfig, DnsMetrics, DnsServer, Endpoint, HostKind, Lookup, Source, TcpLimits};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Longest any socket wait in these tests may take (a hang guard, not a speed assertion).
const DEADLINE: Duration = Duration::from_secs(5);

/// `add`: three local instances (ports 1111 and 3333 tagged `v2`); `big`: 70 instances; `named`:
/// one registered by host name; `gone`: known with none healthy.
struct Static;

impl Source for Static {
    fn lookup(&self, service: &str, tag: Option<&str>, out: &mut Vec<Endpoint>) -> Lookup {
        let target = |host: &str, port, weight| Endpoint {
            host: HostKind::parse(host),
            port,
            weight,
        };
        match service {
            "add" => {
                for (i, port) in [1111, 2222, 3333].into_iter().enumerate() {
                    if tag.is_none() || (tag == Some("v2") && port != 2222) {
                        out.push(target(&format!("127.0.0.{}", i + 1), port, 10));
                    }
                }
            }
            "big" => out.extend((0..70).map(|i| target(&format!("10.0.1.{i}"), 8000 + i, 1))),
            "named" => out.push(target("db.example", 5432, 5)),
            "gone" => {}
            _ => return Lookup::Unknown,
        }
        Lookup::Found
    }
}

/// Starts a server with these TCP limits on 127.0.0.1:0 (UDP and TCP on one port), on its own
/// thread for the rest of the test process.
fn start(limits: TcpLimits) -> (SocketAddr, Arc<DnsMetrics>) {
    let config = DnsConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        limits,
        ..DnsConfig::default()
    };
    let server = mini::rt::block_on(DnsServer::bind(&config)).expect("bind");
    let addr = server.local_addr();
    let metrics = Arc::new(DnsMetrics::default());
    let m = metrics.clone();
    std::thread::spawn(move || mini::rt::block_on(server.run(Arc::new(Static), m)));
    (addr, metrics)
}

/// The server the dig tests share.
fn shared() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| start(TcpLimits::default()).0)
}

/// Runs dig against the shared server; `None` (after printing a skip) when dig is not installed.
fn dig(args: &[&str]) -> Option<Dig> {
    program("dig", "bind9-dnsutils")?;
    Some(doors::dig(shared().port(), args))
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn dig_a_records() {
    let Some(d) = dig(&["add.service.mini", "A"]) else {
        return;
    };
    assert_eq!(d.status, "NOERROR", "{}", d.text);
    assert!(d.has_flag("aa"), "{}", d.text);
    assert_eq!(
        sorted(d.answer),
        [1, 2, 3].map(|i| format!("add.service.mini. 0 IN A 127.0.0.{i}")),
        "{}",
        d.text
    );
}

#[test]
fn dig_srv_with_addresses_in_additional() {
    let Some(d) = dig(&["_add._tcp.service.mini", "SRV"]) else {
        return;
    };
    assert_eq!(d.status, "NOERROR", "{}", d.text);
    assert_eq!(
        sorted(d.answer),
        [(1111, 1), (2222, 2), (3333, 3)].map(|(p, i)| format!(
            "_add._tcp.service.mini. 0 IN SRV 1 10 {p} 7f00000{i}.addr.mini."
        )),
        "{}",
        d.text
    );
    assert_eq!(
        sorted(d.additional),
        [1, 2, 3].map(|i| format!("7f00000{i}.addr.mini. 0 IN A 127.0.0.{i}")),
        "{}",
        d.text
    );
    // The target names answer A themselves.
    let Some(d) = dig(&["7f000002.addr.mini", "A"]) else {
        return;
    };
    assert_eq!(
        d.answer,
        ["7f000002.addr.mini. 0 IN A 127.0.0.2"],
        "{}",
        d.text
    );
}

#[test]
fn dig_hostname_target_has_no_additional_record() {
    let Some(d) = dig(&["_named._tcp.service.mini", "SRV"]) else {
        return;
    };
    assert_eq!(
        d.answer,
        ["_named._tcp.service.mini. 0 IN SRV 1 5 5432 db.example."],
        "{}",
        d.text
    );
    assert!(d.additional.is_empty(), "{}", d.text);
}

#[test]
fn dig_nxdomain_with_soa_and_nodata() {
    for name in ["nope.service.mini", "gone.service.mini"] {
        let Some(d) = dig(&[name, "A"]) else { return };
        assert_eq!(d.status, "NXDOMAIN", "{}", d.text);
        assert!(d.answer.is_empty(), "{}", d.text);
        assert_eq!(d.authority.len(), 1, "{}", d.text);
        assert!(
            d.authority[0]
                .starts_with("mini. 0 IN SOA ns.mini. hostmaster.mini. 1 3600 600 86400 0"),
            "{}",
            d.text
        );
    }
    let Some(d) = dig(&["add.service.mini", "AAAA"]) else {
        return;
    };
    assert_eq!(
        (d.status.as_str(), d.answer.len(), d.authority.len()),
        ("NOERROR", 0, 1),
        "{}",
        d.text
    );
    let Some(d) = dig(&["example.com", "A"]) else {
        return;
    };
    assert_eq!(d.status, "REFUSED", "{}", d.text);
}

#[test]
fn dig_tag_filters() {
    let Some(d) = dig(&["v2.add.service.mini", "A"]) else {
        return;
    };
    assert_eq!(
        sorted(d.answer),
        [1, 3].map(|i| format!("v2.add.service.mini. 0 IN A 127.0.0.{i}")),
        "{}",
        d.text
    );
    let Some(d) = dig(&["_add._v2.service.mini", "SRV"]) else {
        return;
    };
    assert_eq!((d.answer.len(), d.additional.len()), (2, 2), "{}", d.text);
}

#[test]
fn dig_over_tcp() {
    let Some(d) = dig(&["+tcp", "_add._tcp.service.mini", "SRV"]) else {
        return;
    };
    assert_eq!(
        (d.status.as_str(), d.answer.len(), d.additional.len()),
        ("NOERROR", 3, 3),
        "{}",
        d.text
    );
    assert!(d.text.contains("(TCP)"), "{}", d.text);
}

#[test]
fn dig_seventy_instances_truncate_without_edns_and_fit_in_4096() {
    let Some(d) = dig(&["+noedns", "+ignore", "big.service.mini", "A"]) else {
        return;
    };
    assert!(d.has_flag("tc"), "{}", d.text);
    assert!(!d.answer.is_empty() && d.answer.len() < 70, "{}", d.text);
    // Without +ignore, dig retries over TCP on TC and gets them all.
    let Some(d) = dig(&["+noedns", "big.service.mini", "A"]) else {
        return;
    };
    assert_eq!(d.answer.len(), 70, "{}", d.text);
    assert!(
        d.text.contains("Truncated, retrying in TCP mode"),
        "{}",
        d.text
    );
    // SRV with addresses: 70 × 54 bytes fit in 4096 over UDP.
    let Some(d) = dig(&["+bufsize=4096", "+ignore", "_big._tcp.service.mini", "SRV"]) else {
        return;
    };
    assert!(!d.has_flag("tc"), "{}", d.text);
    assert_eq!((d.answer.len(), d.additional.len()), (70, 70), "{}", d.text);
    assert!(d.text.contains("udp: 4096"), "{}", d.text);
}

/// A query as bytes: id 0x4242, RD, one question of type A (or `qtype`), class IN.
fn query(name: &str, qtype: u16) -> Vec<u8> {
    let mut q = vec![0x42, 0x42, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    q.extend_from_slice(&name_from_str(name).unwrap());
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    q
}

fn framed(q: &[u8]) -> Vec<u8> {
    [&(q.len() as u16).to_be_bytes()[..], q].concat()
}

fn read_frame(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0; 2];
    s.read_exact(&mut len)?;
    let mut msg = vec![0; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut msg)?;
    Ok(msg)
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s
}

/// Whether the server closed `s` (end of stream or reset) before the hang guard.
fn closed(s: &mut TcpStream) -> bool {
    match s.read(&mut [0; 16]) {
        Ok(n) => n == 0,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn tcp_answers_several_pipelined_queries_in_order_and_counts_them() {
    let (addr, metrics) = start(TcpLimits::default());
    let mut s = connect(addr);
    let names = ["add.service.mini", "nope.service.mini", "big.service.mini"];
    let burst: Vec<u8> = names.iter().flat_map(|n| framed(&query(n, 1))).collect();
    s.write_all(&burst).unwrap();
    let codes: Vec<(u16, usize)> = (0..3)
        .map(|_| {
            let msg = parse_message(&read_frame(&mut s).unwrap()).unwrap();
            assert!(!msg.header.has(flag::TC));
            (msg.header.rcode(), msg.answers.len())
        })
        .collect();
    assert_eq!(
        codes,
        [
            (rcode::NOERROR, 3),
            (rcode::NXDOMAIN, 0),
            (rcode::NOERROR, 70)
        ]
    );
    // A UDP query on the same port.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(DEADLINE)).unwrap();
    udp.send_to(&query("_add._tcp.service.mini", 33), addr)
        .unwrap();
    let mut buf = [0; 512];
    let n = udp.recv(&mut buf).unwrap();
    let msg = parse_message(&buf[..n]).unwrap();
    assert!(matches!(
        msg.answers[0].data,
        RData::Srv {
            priority: 1,
            weight: 10,
            ..
        }
    ));
    let mut page = String::new();
    metrics.render(&mut page);
    assert!(
        page.contains("mini_dns_queries_total{type=\"A\"} 3\n"),
        "{page}"
    );
    assert!(
        page.contains("mini_dns_queries_total{type=\"SRV\"} 1\n"),
        "{page}"
    );
    assert!(
        page.contains("mini_dns_responses_total{rcode=\"NXDOMAIN\"} 1\n"),
        "{page}"
    );
}

#[test]
fn tcp_closes_idle_slow_and_oversized() {
    let limits = TcpLimits {
        idle_timeout: Duration::from_millis(300),
        read_timeout: Duration::from_millis(300),
        ..TcpLimits::default()
    };
    let (addr, _) = start(limits);
    // Idle: closed once the idle timeout passes (well before the hang guard).
    let started = Instant::now();
    let mut idle = connect(addr);
    assert!(closed(&mut idle) && started.elapsed() < DEADLINE);
    // Half a query: closed after the read timeout.
    let mut half = connect(addr);
    half.write_all(&framed(&query("add.service.mini", 1))[..10])
        .unwrap();
    assert!(closed(&mut half));
    // A length no query has: closed at once.
    let mut big = connect(addr);
    big.write_all(&[0xFF, 0xFF]).unwrap();
    assert!(closed(&mut big));
}

#[test]
fn tcp_connections_past_the_cap_are_closed_and_counted() {
    let limits = TcpLimits {
        max_connections: 2,
        ..TcpLimits::default()
    };
    let (addr, metrics) = start(limits);
    // Accepted in order: the first two take the places, the third is closed at once.
    let mut held: Vec<TcpStream> = (0..2).map(|_| connect(addr)).collect();
    let mut third = connect(addr);
    assert!(closed(&mut third));
    for s in &mut held {
        s.write_all(&framed(&query("add.service.mini", 1))).unwrap();
        assert_eq!(
            parse_message(&read_frame(s).unwrap())
                .unwrap()
                .answers
                .len(),
            3
        );
    }
    let mut page = String::new();
    metrics.render(&mut page);
    assert!(page.contains("mini_dns_tcp_refused_total 1\n"), "{page}");
    // A place freed is taken again.
    drop(held.pop());
    let deadline = Instant::now() + DEADLINE;
    loop {
        let mut s = connect(addr);
        s.write_all(&framed(&query("add.service.mini", 1))).unwrap();
        if read_frame(&mut s).is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "no place freed");
        std::thread::sleep(Duration::from_millis(20));
    }
}
