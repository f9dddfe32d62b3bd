//! The codec and the protocol logic on byte arrays: every case of the table in [`super::answer`].

use super::decode::{parse_message, DnsMessage, RData};
use super::wire::{flag, name_from_str, name_to_string, rcode, rtype, Header};
use super::*;
use std::collections::BTreeSet;

/// Services: `add` with the given targets (all tagged `v2` when their port is odd), `empty` known
/// with none healthy.
struct Fixed(Vec<Endpoint>);

impl Source for Fixed {
    fn lookup(&self, service: &str, tag: Option<&str>, out: &mut Vec<Endpoint>) -> Lookup {
        match service {
            "add" => {
                let tagged = |t: &&Endpoint| tag.is_none_or(|tag| tag == "v2" && t.port % 2 == 1);
                out.extend(self.0.iter().filter(tagged).cloned());
                Lookup::Found
            }
            "empty" => Lookup::Found,
            _ => Lookup::Unknown,
        }
    }
}

fn v4(last: u8, port: u16) -> Endpoint {
    Endpoint {
        host: HostKind::Ipv4([10, 0, 0, last].into()),
        port,
        weight: 10,
    }
}

fn many(n: u8) -> Fixed {
    Fixed((1..=n).map(|i| v4(i, 1000 + u16::from(i))).collect())
}

fn query(name: &str, qtype: u16, opt: Option<(u16, u8)>) -> Vec<u8> {
    let mut q = vec![
        0x12,
        0x34,
        0x01,
        0x00,
        0,
        1,
        0,
        0,
        0,
        0,
        0,
        u8::from(opt.is_some()),
    ];
    q.extend_from_slice(&name_from_str(name).unwrap());
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    if let Some((payload, version)) = opt {
        q.extend_from_slice(&[0, 0, 41]);
        q.extend_from_slice(&payload.to_be_bytes());
        q.extend_from_slice(&[0, version, 0, 0, 0, 0]);
    }
    q
}

fn zone() -> Zone {
    Zone::new("mini", 30).unwrap()
}

fn ask_with(source: &Fixed, q: &[u8], transport: Transport, seed: u64) -> (Reply, DnsMessage) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let reply = answer(q, source, &zone(), transport, &mut rng).expect("answered");
    let msg = parse_message(&reply.bytes).expect("reply parses");
    assert_eq!(msg.header.id, 0x1234);
    assert!(msg.header.is_response());
    assert_eq!(msg.header.has(flag::TC), reply.truncated);
    (reply, msg)
}

fn ask(source: &Fixed, name: &str, qtype: u16) -> (Reply, DnsMessage) {
    ask_with(source, &query(name, qtype, None), Transport::Udp, 1)
}

fn ips(msg: &DnsMessage) -> Vec<std::net::IpAddr> {
    msg.answers
        .iter()
        .map(|r| match r.data {
            RData::A(ip) => ip.into(),
            RData::Aaaa(ip) => ip.into(),
            ref other => panic!("{other:?}"),
        })
        .collect()
}

fn assert_soa_authority(msg: &DnsMessage) {
    assert_eq!(msg.authority.len(), 1, "{msg:?}");
    let soa = &msg.authority[0];
    assert_eq!(
        (name_to_string(&soa.name).as_str(), soa.rtype, soa.ttl),
        ("mini.", rtype::SOA, 30)
    );
    let RData::Soa {
        mname,
        rname,
        minimum,
        ..
    } = &soa.data
    else {
        panic!("{soa:?}")
    };
    assert_eq!(name_to_string(mname), "ns.mini.");
    assert_eq!(name_to_string(rname), "hostmaster.mini.");
    assert_eq!(*minimum, 30);
}

#[test]
fn a_answer_exact_bytes() {
    let (reply, _) = ask(&Fixed(vec![v4(1, 1111)]), "add.service.mini", rtype::A);
    let mut want = vec![0x12, 0x34, 0x85, 0x00, 0, 1, 0, 1, 0, 0, 0, 0];
    want.extend_from_slice(b"\x03add\x07service\x04mini\x00\x00\x01\x00\x01");
    want.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 10, 0, 0, 1]);
    assert_eq!(reply.bytes, want);
    assert_eq!(
        (reply.qtype, reply.rcode, reply.truncated),
        (Some(rtype::A), 0, false)
    );
}

#[test]
fn a_answer_has_each_distinct_address_once_in_a_fresh_order() {
    let mut targets: Vec<Endpoint> = (1..=8).map(|i| v4(i, 1000)).collect();
    targets.push(v4(1, 2000)); // same address, other port
    targets.push(Endpoint {
        host: HostKind::parse("::1"),
        port: 1,
        weight: 1,
    });
    targets.push(Endpoint {
        host: HostKind::parse("db.example"),
        port: 1,
        weight: 1,
    });
    let source = Fixed(targets);
    let q = query("add.service.mini", rtype::A, None);
    let orders: BTreeSet<Vec<_>> = (0..20)
        .map(|seed| ips(&ask_with(&source, &q, Transport::Udp, seed).1))
        .collect();
    assert!(orders.len() > 10, "{} orders in 20 answers", orders.len());
    for order in &orders {
        let set: BTreeSet<_> = order.iter().collect();
        assert_eq!((order.len(), set.len()), (8, 8), "{order:?}");
    }
    let again = |seed| ips(&ask_with(&source, &q, Transport::Udp, seed).1);
    assert_eq!(again(7), again(7), "same seed, same order");
    let (_, msg) = ask(&source, "add.service.mini", rtype::AAAA);
    assert_eq!(ips(&msg), [std::net::Ipv6Addr::LOCALHOST]);
    let (_, msg) = ask(&source, "add.service.mini", rtype::ANY);
    assert_eq!(msg.answers.len(), 9);
}

#[test]
fn names_match_case_insensitively_and_the_question_is_echoed_as_sent() {
    let (reply, msg) = ask(&Fixed(vec![v4(1, 1)]), "ADD.Service.MiNi.", rtype::A);
    assert_eq!(reply.rcode, rcode::NOERROR);
    assert_eq!(name_to_string(&msg.questions[0].name), "ADD.Service.MiNi.");
    assert_eq!(name_to_string(&msg.answers[0].name), "ADD.Service.MiNi.");
    assert!(msg.header.has(flag::AA) && msg.header.has(flag::RD) && !msg.header.has(flag::RA));
}

#[test]
fn srv_with_additional_exact_bytes() {
    let (reply, _) = ask(
        &Fixed(vec![v4(1, 1111)]),
        "_add._tcp.service.mini",
        rtype::SRV,
    );
    let mut want = vec![0x12, 0x34, 0x85, 0x00, 0, 1, 0, 1, 0, 0, 0, 1];
    want.extend_from_slice(b"\x04_add\x04_tcp\x07service\x04mini\x00\x00\x21\x00\x01");
    want.extend_from_slice(&[
        0xC0, 12, 0, 33, 0, 1, 0, 0, 0, 30, 0, 26, 0, 1, 0, 10, 0x04, 0x57,
    ]);
    let target_at = want.len() as u8;
    want.extend_from_slice(b"\x080a000001\x04addr\x04mini\x00");
    want.extend_from_slice(&[0xC0, target_at, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 10, 0, 0, 1]);
    assert_eq!(reply.bytes, want);
}

#[test]
fn srv_targets_addresses_and_host_names() {
    let mut targets = vec![v4(1, 1111), v4(1, 2222), v4(2, 3333)];
    targets.push(Endpoint {
        host: HostKind::parse("::1"),
        port: 4444,
        weight: 7,
    });
    targets.push(Endpoint {
        host: HostKind::parse("db.example"),
        port: 5555,
        weight: 1,
    });
    targets.push(Endpoint {
        host: HostKind::parse("bad..name"),
        port: 6666,
        weight: 1,
    });
    let (_, msg) = ask(&Fixed(targets), "_add._tcp.service.mini", rtype::SRV);
    let mut srv: Vec<(String, u16, u16)> = msg
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::Srv {
                priority: 1,
                weight,
                port,
                target,
            } => (name_to_string(target), *port, *weight),
            other => panic!("{other:?}"),
        })
        .collect();
    srv.sort();
    assert_eq!(
        srv,
        [
            (
                "00000000000000000000000000000001.addr.mini.".to_string(),
                4444,
                7
            ),
            ("0a000001.addr.mini.".to_string(), 1111, 10),
            ("0a000001.addr.mini.".to_string(), 2222, 10),
            ("0a000002.addr.mini.".to_string(), 3333, 10),
            ("db.example.".to_string(), 5555, 1),
        ]
    );
    // One additional record per distinct address, owned by its target name; none for db.example.
    let mut extra: Vec<(String, String)> = msg
        .additional
        .iter()
        .map(|r| (name_to_string(&r.name), format!("{:?}", r.data)))
        .collect();
    extra.sort();
    assert_eq!(extra.len(), 3, "{extra:?}");
    assert_eq!(extra[0].0, "00000000000000000000000000000001.addr.mini.");
    assert_eq!(
        extra[1],
        ("0a000001.addr.mini.".into(), "A(10.0.0.1)".into())
    );
    // The plain name answers SRV too (as Consul); the SRV name has no A records.
    assert_eq!(
        ask(&Fixed(vec![v4(1, 1)]), "add.service.mini", rtype::SRV)
            .1
            .answers
            .len(),
        1
    );
    let (reply, msg) = ask(&Fixed(vec![v4(1, 1)]), "_add._tcp.service.mini", rtype::A);
    assert_eq!((reply.rcode, msg.answers.len()), (rcode::NOERROR, 0));
    assert_soa_authority(&msg);
}

#[test]
fn tag_filters() {
    let source = Fixed(vec![v4(1, 1001), v4(2, 1002), v4(3, 1003)]);
    let (_, msg) = ask(&source, "v2.add.service.mini", rtype::A);
    let got: BTreeSet<_> = ips(&msg).into_iter().collect();
    assert_eq!(
        got,
        [[10, 0, 0, 1], [10, 0, 0, 3]]
            .map(std::net::IpAddr::from)
            .into()
    );
    let (_, msg) = ask(&source, "_add._v2.service.mini", rtype::SRV);
    assert_eq!((msg.answers.len(), msg.additional.len()), (2, 2));
    let (reply, msg) = ask(&source, "v9.add.service.mini", rtype::A);
    assert_eq!(reply.rcode, rcode::NXDOMAIN);
    assert_soa_authority(&msg);
}

#[test]
fn unknown_or_empty_service_is_nxdomain_with_soa() {
    for name in [
        "nope.service.mini",
        "empty.service.mini",
        "_nope._tcp.service.mini",
        "x.mini",
        "a.b.c.service.mini",
    ] {
        let (reply, msg) = ask(&Fixed(vec![]), name, rtype::A);
        assert_eq!(reply.rcode, rcode::NXDOMAIN, "{name}");
        assert!(msg.answers.is_empty() && msg.header.has(flag::AA));
        assert_soa_authority(&msg);
    }
}

#[test]
fn known_name_without_the_type_is_nodata_with_soa() {
    let source = Fixed(vec![v4(1, 1)]);
    for (name, qtype) in [
        ("add.service.mini", rtype::AAAA),
        ("add.service.mini", rtype::SOA),
        ("mini", rtype::A),
        ("service.mini", rtype::A),
        ("7f000001.addr.mini", rtype::AAAA),
    ] {
        let (reply, msg) = ask(&source, name, qtype);
        assert_eq!(
            (reply.rcode, msg.answers.len()),
            (rcode::NOERROR, 0),
            "{name}"
        );
        assert_soa_authority(&msg);
    }
    let (_, msg) = ask(&source, "mini.", rtype::SOA);
    assert_eq!((msg.answers[0].rtype, msg.authority.len()), (rtype::SOA, 0));
}

#[test]
fn addr_names() {
    let (_, msg) = ask(&Fixed(vec![]), "7F000001.addr.mini", rtype::A);
    assert_eq!(ips(&msg), [std::net::Ipv4Addr::LOCALHOST]);
    let (_, msg) = ask(
        &Fixed(vec![]),
        "20010db8000000000000000000000001.addr.mini",
        rtype::AAAA,
    );
    assert_eq!(
        ips(&msg),
        ["2001:db8::1".parse::<std::net::IpAddr>().unwrap()]
    );
    for bad in ["7f00001.addr.mini", "7g000001.addr.mini"] {
        assert_eq!(ask(&Fixed(vec![]), bad, rtype::A).0.rcode, rcode::NXDOMAIN);
    }
}

#[test]
fn seventy_instances_over_512_bytes_set_tc() {
    let source = many(70);
    let (reply, msg) = ask(&source, "add.service.mini", rtype::A);
    assert!(reply.truncated && reply.bytes.len() <= 512);
    // 12 + 22 of question, then 16 per A record: 29 fit.
    assert_eq!(msg.answers.len(), (512 - 34) / 16);
    let (reply, msg) = ask(&source, "_add._tcp.service.mini", rtype::SRV);
    assert!(reply.truncated && reply.bytes.len() <= 512);
    assert!(!msg.answers.is_empty());
    // Rule 3: the SRV answers kept come with their addresses.
    assert_eq!(msg.answers.len(), msg.additional.len());
    for (srv, a) in msg.answers.iter().zip(&msg.additional) {
        let RData::Srv { target, .. } = &srv.data else {
            panic!()
        };
        assert_eq!(target, &a.name);
    }
}

#[test]
fn edns_4096_fits_all_seventy() {
    let source = many(70);
    let q = query("_add._tcp.service.mini", rtype::SRV, Some((4096, 0)));
    let (reply, msg) = ask_with(&source, &q, Transport::Udp, 1);
    assert!(!reply.truncated && reply.bytes.len() <= 4096);
    assert_eq!(msg.answers.len(), 70);
    assert_eq!(msg.additional.len(), 71, "70 A and the OPT");
    let opt = msg.additional.last().unwrap();
    assert_eq!((opt.rtype, opt.class, opt.ttl), (rtype::OPT, 4096, 0));
    // A larger payload is capped at 4096, a smaller one raised to 512.
    let q = query("add.service.mini", rtype::A, Some((65000, 0)));
    assert!(ask_with(&many(255), &q, Transport::Udp, 1).0.bytes.len() <= 4096);
    let q = query("add.service.mini", rtype::A, Some((100, 0)));
    let (reply, msg) = ask_with(&source, &q, Transport::Udp, 1);
    assert!(reply.truncated && reply.bytes.len() <= 512 && msg.answers.len() > 20);
}

#[test]
fn additional_records_are_dropped_before_answers_without_tc() {
    // 10 SRV answers (38 bytes each) fit in 512 bytes, their 10 A records (16 each) do not all.
    let (reply, msg) = ask(&many(10), "_add._tcp.service.mini", rtype::SRV);
    assert!(!reply.truncated);
    assert_eq!(msg.answers.len(), 10);
    assert_eq!(msg.additional.len(), (512 - 12 - 28 - 380) / 16);
    for a in &msg.additional {
        assert!(msg
            .answers
            .iter()
            .any(|s| matches!(&s.data, RData::Srv { target, .. } if *target == a.name)));
    }
}

#[test]
fn tcp_fits_what_udp_cannot_and_cuts_at_64k() {
    let (reply, msg) = ask_with(
        &many(70),
        &query("_add._tcp.service.mini", rtype::SRV, None),
        Transport::Tcp,
        1,
    );
    assert!(!reply.truncated);
    assert_eq!((msg.answers.len(), msg.additional.len()), (70, 70));
    let huge = Fixed(
        (0..5000u32)
            .map(|i| Endpoint {
                host: HostKind::Ipv6((u128::from(i) + 1).into()),
                port: 1,
                weight: 1,
            })
            .collect(),
    );
    let (reply, msg) = ask_with(
        &huge,
        &query("_add._tcp.service.mini", rtype::SRV, None),
        Transport::Tcp,
        1,
    );
    assert!(reply.truncated && reply.bytes.len() <= 65535);
    assert_eq!(msg.answers.len(), msg.additional.len());
    let (reply, _) = ask_with(
        &huge,
        &query("add.service.mini", rtype::AAAA, None),
        Transport::Tcp,
        1,
    );
    assert!(reply.truncated && reply.bytes.len() <= 65535);
}

#[test]
fn formerr_header_only() {
    let mut two = query("add.service.mini", rtype::A, None);
    two[5] = 2;
    let mut pointer = vec![
        0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 1, 0, 1,
    ];
    let trailing = [query("add.service.mini", rtype::A, None), vec![0]].concat();
    for q in [
        two,
        pointer.clone(),
        trailing,
        query("add.service.mini", rtype::OPT, None),
    ] {
        let (reply, msg) = ask_with(&Fixed(vec![]), &q, Transport::Udp, 1);
        assert_eq!(reply.rcode, rcode::FORMERR);
        assert!(msg.answers.is_empty() && msg.header.has(flag::RD));
    }
    pointer.truncate(14);
    let (_, msg) = ask_with(&Fixed(vec![]), &pointer, Transport::Udp, 1);
    assert_eq!(
        (msg.header.rcode(), msg.header.qdcount),
        (rcode::FORMERR, 0)
    );
}

#[test]
fn notimp_for_opcodes_classes_and_transfers() {
    let mut status = query("add.service.mini", rtype::A, None);
    status[2] = 0x10; // opcode 2 (STATUS)
    let (reply, msg) = ask_with(&Fixed(vec![]), &status, Transport::Udp, 1);
    assert_eq!(
        (reply.rcode, msg.header.opcode(), msg.header.qdcount),
        (rcode::NOTIMP, 2, 0)
    );
    let mut chaos = query("version.bind", rtype::A, None);
    let at = chaos.len() - 1;
    chaos[at] = 3;
    let (reply, msg) = ask_with(&Fixed(vec![]), &chaos, Transport::Udp, 1);
    assert_eq!((reply.rcode, msg.questions.len()), (rcode::NOTIMP, 1));
    assert!(!msg.header.has(flag::AA));
    assert_eq!(
        ask(&Fixed(vec![]), "mini", rtype::AXFR).0.rcode,
        rcode::NOTIMP
    );
    let mut any_class = query("add.service.mini", rtype::A, None);
    let last = any_class.len() - 1;
    any_class[last] = 255;
    assert_eq!(
        ask_with(&Fixed(vec![v4(1, 1)]), &any_class, Transport::Udp, 1)
            .0
            .rcode,
        0
    );
}

#[test]
fn refused_outside_the_domain_and_badvers() {
    for name in ["example.com", ".", "mini.example", "xmini"] {
        let (reply, msg) = ask(&Fixed(vec![]), name, rtype::A);
        assert_eq!(reply.rcode, rcode::REFUSED, "{name}");
        assert!(!msg.header.has(flag::AA) && msg.authority.is_empty());
    }
    let q = query("add.service.mini", rtype::A, Some((1232, 1)));
    let (reply, msg) = ask_with(&Fixed(vec![v4(1, 1)]), &q, Transport::Udp, 1);
    assert_eq!(
        (reply.rcode, msg.header.rcode(), msg.answers.len()),
        (rcode::BADVERS, 0, 0)
    );
    assert_eq!(msg.additional[0].ttl >> 24, 1, "extended rcode 16 = 1 << 4");
}

#[test]
fn short_packets_and_responses_are_dropped() {
    let q = query("add.service.mini", rtype::A, None);
    let mut rng = fastrand::Rng::with_seed(1);
    for n in 0..12 {
        assert_eq!(
            answer(&q[..n], &Fixed(vec![]), &zone(), Transport::Udp, &mut rng),
            None
        );
    }
    let mut response = q.clone();
    response[2] |= 0x80;
    assert_eq!(
        answer(&response, &Fixed(vec![]), &zone(), Transport::Udp, &mut rng),
        None
    );
    // Twelve bytes is a header: answered (FORMERR: no question).
    let reply = answer(&q[..12], &Fixed(vec![]), &zone(), Transport::Udp, &mut rng).unwrap();
    assert_eq!(reply.rcode, rcode::FORMERR);
}

#[test]
fn arbitrary_and_mutated_queries_never_panic_and_answers_parse_back() {
    let source = many(40);
    let mut rng = fastrand::Rng::with_seed(42);
    let seeds = [
        query("add.service.mini", rtype::A, None),
        query("_add._v2.service.mini", rtype::SRV, Some((4096, 0))),
        query("7f000001.addr.mini", rtype::ANY, Some((512, 0))),
    ];
    for i in 0..30_000 {
        let mut input = if i % 3 == 0 {
            (0..rng.usize(0..64)).map(|_| rng.u8(..)).collect()
        } else {
            seeds[i % seeds.len()].clone()
        };
        for _ in 0..rng.usize(0..4) {
            if input.is_empty() {
                break;
            }
            let at = rng.usize(..input.len());
            match rng.u8(0..3) {
                0 => input[at] = rng.u8(..),
                1 => input.truncate(at),
                _ => input.insert(at, rng.u8(..)),
            }
        }
        for transport in [Transport::Udp, Transport::Tcp] {
            let Some(reply) = answer(&input, &source, &zone(), transport, &mut rng) else {
                let h = Header::parse(&input);
                assert!(h.is_none_or(|h| h.is_response()), "{input:?}");
                continue;
            };
            let limit = match (transport, super::decode::parse_query(&input)) {
                (Transport::Tcp, _) => 65535,
                (_, Ok(q)) => q
                    .edns
                    .map_or(512, |e| usize::from(e.payload).clamp(512, 4096)),
                _ => 512,
            };
            assert!(
                reply.bytes.len() <= limit,
                "{} > {limit}",
                reply.bytes.len()
            );
            let msg = parse_message(&reply.bytes).unwrap_or_else(|e| panic!("{e}: {input:?}"));
            assert_eq!(msg.header.id, Header::parse(&input).unwrap().id);
        }
    }
}
