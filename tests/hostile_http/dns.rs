//! Junk for the DNS door: dropped, or refused in a 12-byte header with the query's ID, and the door
//! still answers.

use super::*;

/// What a junk DNS packet must get: nothing, or a 12-byte answer with this rcode and the query's ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DnsExpect {
    Dropped,
    Rcode(u8),
}

/// A DNS message: ID 0x4242, `flags`, `qd` questions counted, and the question `name`/`qtype`/`class`.
fn dns_query(name: &str, qtype: u16, flags: u16, qd: u16, class: u16) -> Vec<u8> {
    let mut b = vec![0x42, 0x42];
    b.extend_from_slice(&flags.to_be_bytes());
    b.extend_from_slice(&qd.to_be_bytes());
    b.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        b.push(label.len() as u8);
        b.extend_from_slice(label.as_bytes());
    }
    b.push(0);
    b.extend_from_slice(&qtype.to_be_bytes());
    b.extend_from_slice(&class.to_be_bytes());
    b
}

/// Junk for the DNS door, with what each must get (RFC 1035 §4.1.1 rcodes: 1 FORMERR, 4 NOTIMP).
fn dns_junk() -> Vec<(&'static str, Vec<u8>, DnsExpect)> {
    use DnsExpect::{Dropped, Rcode};
    let header = |qd: u16| dns_query("", 1, 0x0100, qd, 1)[..12].to_vec();
    let good = dns_query("web.service.mini", 1, 0x0100, 1, 1);
    let mut rng = fastrand::Rng::with_seed(12);
    let noise: Vec<u8> = (0..1400).map(|_| rng.u8(..)).collect();
    vec![
        ("an empty datagram", Vec::new(), Dropped),
        ("one byte", vec![0x42], Dropped),
        ("eleven bytes: less than a header", vec![0x42; 11], Dropped),
        (
            "a response (QR set): never answered, so no loops",
            dns_query("web.service.mini", 1, 0x8100, 1, 1),
            Dropped,
        ),
        (
            "a header counting one question, with none",
            header(1),
            Rcode(1),
        ),
        ("a header with no question", header(0), Rcode(1)),
        (
            "two questions counted, one given",
            dns_query("web.service.mini", 1, 0x0100, 2, 1),
            Rcode(1),
        ),
        (
            "a compression pointer to itself",
            [header(1), vec![0xC0, 12, 0, 1, 0, 1]].concat(),
            Rcode(1),
        ),
        (
            "a pointer past the end",
            [header(1), vec![0xC0, 0xFF, 0, 1, 0, 1]].concat(),
            Rcode(1),
        ),
        (
            "a 64-byte label",
            [header(1), vec![64], vec![b'a'; 64], vec![0, 0, 1, 0, 1]].concat(),
            Rcode(1),
        ),
        (
            "a 320-byte name",
            [
                header(1),
                [vec![63], vec![b'a'; 63]].concat().repeat(5),
                vec![0, 0, 1, 0, 1],
            ]
            .concat(),
            Rcode(1),
        ),
        (
            "a question cut short",
            good[..good.len() - 3].to_vec(),
            Rcode(1),
        ),
        (
            "trailing bytes after the question",
            [good.clone(), vec![0xFF; 40]].concat(),
            Rcode(1),
        ),
        (
            "an additional record counted, none given",
            {
                let mut q = good.clone();
                q[11] = 1;
                q
            },
            Rcode(1),
        ),
        (
            "opcode UPDATE",
            dns_query("web.service.mini", 1, 0x2800, 1, 1),
            Rcode(4),
        ),
        (
            "class CHAOS",
            dns_query("web.service.mini", 1, 0x0100, 1, 3),
            Rcode(4),
        ),
        (
            "a zone transfer (AXFR)",
            dns_query("mini", 252, 0x0100, 1, 1),
            Rcode(4),
        ),
        (
            "1400 random bytes with a query's header",
            [good[..12].to_vec(), noise.clone()].concat(),
            Rcode(1),
        ),
    ]
}

#[test]
fn dns_junk_is_dropped_or_refused_in_a_header_and_the_door_still_answers() {
    let registry = Proc::registry(&["--probe-interval", "60s", "--dns", "127.0.0.1:0"]);
    let port = common::doors::dns_port(&registry);
    let target = "/v1/services/web/127.0.0.1:8000?check=none&ttl=60s";
    assert_eq!(common::doors::put(&registry.addr, target, "").0, 200);
    let dns: SocketAddr = ([127, 0, 0, 1], port).into();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    udp.connect(dns).expect("connect");
    let valid = dns_query("web.service.mini", 1, 0x0100, 1, 1);
    let answered = |udp: &std::net::UdpSocket, what: &str| {
        udp.set_read_timeout(Some(DEADLINE)).unwrap();
        udp.send(&valid).unwrap();
        let mut buf = [0u8; 512];
        let n = udp
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("after {what}: no answer ({e})"));
        assert!(n >= 12, "after {what}: {:?}", &buf[..n]);
        assert_eq!(
            (buf[3] & 0x0F, u16::from_be_bytes([buf[6], buf[7]])),
            (0, 1),
            "after {what}"
        );
    };
    for (what, packet, expect) in dns_junk() {
        udp.send(&packet).expect("send");
        // A dropped packet gets nothing: the valid query right after it is the next answer.
        udp.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 4096];
        match (expect, udp.recv(&mut buf)) {
            (DnsExpect::Dropped, Err(_)) => {}
            (DnsExpect::Rcode(rcode), Ok(n)) => {
                let reply = &buf[..n];
                assert!(n >= 12, "{what}: {reply:?}");
                assert_eq!(&reply[..2], &packet[..2], "{what}: the ID");
                assert!(reply[2] & 0x80 != 0, "{what}: QR not set");
                assert_eq!(reply[3] & 0x0F, rcode, "{what}: {reply:?}");
                assert!(
                    n <= packet.len().max(12) + 64,
                    "{what}: {n} bytes for {}",
                    packet.len()
                );
            }
            (expect, got) => panic!(
                "{what}: expected {expect:?}, got {:?}",
                got.map(|n| &buf[..n])
            ),
        }
        answered(&udp, what);
    }
    // Over TCP, each junk frame followed by a valid query on the same connection: the junk gets an
    // error frame or nothing, and the query its answer, unless the server closed the connection
    // (then a fresh one is answered).
    use std::io::{Read, Write};
    let frame = |msg: &[u8]| [&(msg.len() as u16).to_be_bytes()[..], msg].concat();
    let read_frame = |s: &mut std::net::TcpStream| -> Option<Vec<u8>> {
        let mut len = [0u8; 2];
        s.read_exact(&mut len).ok()?;
        let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut msg).ok()?;
        Some(msg)
    };
    for (what, packet, _) in dns_junk() {
        let mut s = std::net::TcpStream::connect(dns).expect("connect");
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        let _ = s.write_all(&[frame(&packet), frame(&valid)].concat());
        let mut answered = false;
        while let Some(reply) = read_frame(&mut s) {
            assert!(
                reply.len() >= 12 && reply[2] & 0x80 != 0,
                "{what} over TCP: {reply:?}"
            );
            if reply[3] & 0x0F == 0 && reply[6..8] == [0, 1] {
                answered = true;
                break;
            }
        }
        if !answered {
            let mut fresh = std::net::TcpStream::connect(dns).expect("connect");
            fresh.set_read_timeout(Some(DEADLINE)).unwrap();
            fresh.write_all(&frame(&valid)).unwrap();
            let reply = read_frame(&mut fresh).unwrap_or_else(|| panic!("after {what} over TCP"));
            assert_eq!(reply[3] & 0x0F, 0, "after {what} over TCP");
        }
    }
    assert_eq!(procs::get(&registry.addr, "/health").0, 200);
}
