//! The DNS query parser and answer logic over arbitrary bytes: nothing panics; the general message
//! parser takes any input without panicking; a dropped query is one without a header or with QR
//! set; every reply, over UDP and TCP, parses back with our own decoder, fits its size limit (512,
//! the EDNS0 payload within 512..=4096, or 65535), echoes the id and (when the query had a
//! readable question) the question as sent, and has TC exactly when the answer reports truncation.
//!
//! The first input byte sizes the source (0 to 1020 targets, so replies of every size are tried);
//! the rest is the query.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mini::dns::decode::{parse_message, parse_query};
use mini::dns::wire::flag;
use mini::dns::{answer, HostKind, Lookup, Rng, Source, Endpoint, Transport, Zone};

/// Every service except those starting with `u` exists, with `n` targets: IPv4, IPv6 and host
/// names (some invalid as DNS names), with repeats, so dedup, truncation and compression all run.
struct Many(usize);

impl Source for Many {
    fn lookup(&self, service: &str, tag: Option<&str>, out: &mut Vec<Endpoint>) -> Lookup {
        if service.starts_with('u') {
            return Lookup::Unknown;
        }
        let n = if tag.is_some() { self.0 / 2 } else { self.0 };
        for i in 0..n {
            let host = match i % 5 {
                0 | 1 => HostKind::Ipv4([10, 0, (i >> 8) as u8, i as u8].into()),
                2 => HostKind::Ipv6((i as u128 % 97).into()),
                3 => HostKind::Name(format!("{service}.{i}.example")),
                _ => HostKind::Ipv4([10, 0, 0, (i % 7) as u8].into()),
            };
            out.push(Endpoint {
                host,
                port: (i % 3) as u16,
                weight: i as u16,
            });
        }
        Lookup::Found
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&size, query)) = data.split_first() else {
        return;
    };
    let _ = parse_message(query);
    let source = Many(usize::from(size) * 4);
    let zone = Zone::new("mini", 0).expect("valid domain");
    let mut rng = Rng::with_seed(u64::from(size));
    let parsed = parse_query(query);
    for transport in [Transport::Udp, Transport::Tcp] {
        let Some(reply) = answer(query, &source, &zone, transport, &mut rng) else {
            let header = mini::dns::wire::Header::parse(query);
            assert!(header.is_none_or(|h| h.is_response()), "dropped a query");
            continue;
        };
        let limit = match (transport, &parsed) {
            (Transport::Tcp, _) => 65535,
            (Transport::Udp, Ok(q)) => q
                .edns
                .map_or(512, |e| usize::from(e.payload).clamp(512, 4096)),
            (Transport::Udp, Err(_)) => 512,
        };
        assert!(reply.bytes.len() <= limit, "{} > {limit}", reply.bytes.len());
        let msg = parse_message(&reply.bytes).expect("our reply does not parse");
        assert!(msg.header.is_response());
        assert_eq!(msg.header.id, u16::from_be_bytes([query[0], query[1]]));
        assert_eq!(msg.header.has(flag::TC), reply.truncated);
        if let Ok(q) = &parsed {
            assert_eq!(msg.questions.len(), 1);
            let echoed = &msg.questions[0];
            assert_eq!(
                (echoed.name.as_slice(), echoed.qtype, echoed.qclass),
                (q.name, q.qtype, q.qclass)
            );
            assert_eq!(msg.additional.iter().any(|r| r.rtype == 41), q.edns.is_some());
        }
    }
});
