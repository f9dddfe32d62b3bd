//! The protocol logic: one query's bytes in, the response's bytes out (or nothing), as a pure function
//! of the query, the [`Source`], the [`Zone`], the transport and a random generator.
//!
//! | Query | Answer |
//! |---|---|
//! | shorter than 12 bytes, or QR set | dropped |
//! | opcode other than QUERY | NOTIMP, header only |
//! | malformed (QDCOUNT ≠ 1, bad name, pointer in the question, bad OPT, trailing bytes) | FORMERR, header only |
//! | EDNS version other than 0 | BADVERS (RFC 6891 §6.1.3) |
//! | class other than IN or ANY; type AXFR or IXFR | NOTIMP |
//! | type OPT (a pseudo-type, never asked for) | FORMERR |
//! | a name outside DOMAIN | REFUSED |
//! | `[TAG.]NAME.service.DOMAIN.` A, AAAA, ANY (both), SRV (as Consul) | the instances' addresses |
//! | `_NAME._TAG.service.DOMAIN.` SRV or ANY (`_tcp`: no tag filter) | SRV, addresses in additional |
//! | `<hex>.addr.DOMAIN.` A or AAAA (8 or 32 hex digits) | that address |
//! | `DOMAIN.` SOA or ANY | the SOA |
//! | unknown service, or none healthy; any other name | NXDOMAIN, SOA in authority |
//! | a known name with no record of the type | NOERROR, no answer, SOA in authority |
//!
//! Names match case-insensitively; the question is echoed as sent. In-domain answers are
//! authoritative (AA). Each distinct record appears once (RFC 2181 §5), in a fresh random order.

use super::decode::{parse_query, Query, QueryError};
use super::encode::{
    encode, DnsResponse, Rec, SrvTarget, TCP_MAX_MESSAGE, UDP_MAX_PAYLOAD, UDP_MIN_PAYLOAD,
};
use super::wire::{self, class, flag, labels, rcode, rtype, Header, MAX_NAME_LEN};
use super::{Endpoint, HostKind, Lookup, Source};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Longest domain in wire form: `<32 hex digits>.addr.DOMAIN.` must stay within 255 bytes.
pub const MAX_DOMAIN_LEN: usize = MAX_NAME_LEN - 33 - 5;

/// The settings [`answer`] needs: the domain (lower case, wire form) and the records' TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    domain: Vec<u8>,
    labels: usize,
    ttl: u32,
}

impl Zone {
    /// A zone for `domain` (`"mini"` or `"mini."`, case-insensitive) whose records have this TTL.
    ///
    /// ```
    /// let zone = mini::dns::Zone::new("Mini.", 0).unwrap();
    /// assert_eq!(zone.domain(), b"\x04mini\x00");
    /// assert!(mini::dns::Zone::new(".", 0).is_err());
    /// ```
    pub fn new(domain: &str, ttl: u32) -> io::Result<Zone> {
        let wire = wire::name_from_str(&domain.to_ascii_lowercase())
            .filter(|w| w.len() > 1 && w.len() <= MAX_DOMAIN_LEN)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("DNS domain {domain:?} is not a name of 1 to {MAX_DOMAIN_LEN} bytes with labels of 1 to 63"),
                )
            })?;
        Ok(Zone {
            labels: labels(&wire).count(),
            domain: wire,
            ttl,
        })
    }

    /// The domain in lower-case wire form.
    pub fn domain(&self) -> &[u8] {
        &self.domain
    }

    /// The TTL of every record.
    pub fn ttl(&self) -> u32 {
        self.ttl
    }
}

/// How the reply travels, which sets its size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// 512 bytes, or the query's EDNS0 payload size within 512..=4096.
    Udp,
    /// 65535 bytes.
    Tcp,
}

/// A response and what the metrics count of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The message to send.
    pub bytes: Vec<u8>,
    /// The question's type, when the query had a readable question.
    pub qtype: Option<u16>,
    /// The rcode sent (BADVERS is 16).
    pub rcode: u16,
    /// Whether TC is set.
    pub truncated: bool,
}

/// Answers one query, or `None` when it must be dropped (see the module table).
///
/// ```
/// use mini::dns::{answer, HostKind, Lookup, Source, Endpoint, Transport, Zone};
/// struct One;
/// impl Source for One {
///     fn lookup(&self, service: &str, _tag: Option<&str>, out: &mut Vec<Endpoint>) -> Lookup {
///         if service != "add" { return Lookup::Unknown }
///         out.push(Endpoint { host: HostKind::Ipv4([10, 0, 0, 1].into()), port: 1111, weight: 1 });
///         Lookup::Found
///     }
/// }
/// let mut q = vec![0, 9, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
/// q.extend_from_slice(b"\x03ADD\x07service\x04mini\x00\x00\x01\x00\x01");
/// let zone = Zone::new("mini", 0).unwrap();
/// let reply = answer(&q, &One, &zone, Transport::Udp, &mut fastrand::Rng::with_seed(1)).unwrap();
/// assert_eq!((reply.rcode, reply.truncated), (0, false));
/// assert!(reply.bytes.ends_with(&[0, 4, 10, 0, 0, 1]));
/// ```
pub fn answer<S: Source + ?Sized>(
    query: &[u8],
    source: &S,
    zone: &Zone,
    transport: Transport,
    rng: &mut fastrand::Rng,
) -> Option<Reply> {
    let q = match parse_query(query) {
        Ok(q) => q,
        Err(QueryError::Short | QueryError::DnsResponse) => return None,
        Err(QueryError::Opcode(h)) => return Some(bare(h, rcode::NOTIMP, zone)),
        Err(QueryError::Malformed(h, _)) => return Some(bare(h, rcode::FORMERR, zone)),
    };
    let limit = match transport {
        Transport::Udp => q.edns.map_or(UDP_MIN_PAYLOAD, |e| {
            usize::from(e.payload).clamp(UDP_MIN_PAYLOAD, UDP_MAX_PAYLOAD)
        }),
        Transport::Tcp => TCP_MAX_MESSAGE,
    };
    let outcome = decide(&q, source, zone, rng);
    // Authoritative: answers from the zone's data (NOERROR, NXDOMAIN); not errors or refusals.
    let authoritative = matches!(outcome.rcode, rcode::NOERROR | rcode::NXDOMAIN);
    let resp = DnsResponse {
        id: q.header.id,
        flags: flag::QR
            | (q.header.flags & (flag::RD | flag::CD))
            | if authoritative { flag::AA } else { 0 },
        rcode: outcome.rcode,
        question: Some((q.name, q.qtype, q.qclass)),
        answers: &outcome.answers,
        soa_authority: outcome.soa,
        edns: q.edns.is_some(),
        domain: &zone.domain,
        ttl: zone.ttl,
    };
    let encoded = encode(&resp, limit);
    Some(Reply {
        bytes: encoded.bytes,
        qtype: Some(q.qtype),
        rcode: outcome.rcode,
        truncated: encoded.truncated,
    })
}

/// A header-only reply (FORMERR, or NOTIMP for an opcode): id, opcode and RD echoed.
fn bare(h: Header, code: u16, zone: &Zone) -> Reply {
    let resp = DnsResponse {
        id: h.id,
        flags: flag::QR | (h.flags & (0x7800 | flag::RD)),
        rcode: code,
        question: None,
        answers: &[],
        soa_authority: false,
        edns: false,
        domain: &zone.domain,
        ttl: zone.ttl,
    };
    Reply {
        bytes: encode(&resp, UDP_MIN_PAYLOAD).bytes,
        qtype: None,
        rcode: code,
        truncated: false,
    }
}

/// The rcode, answers and whether the SOA goes in the authority section.
struct Outcome {
    rcode: u16,
    answers: Vec<Rec>,
    soa: bool,
}

impl Outcome {
    fn error(rcode: u16) -> Outcome {
        Outcome {
            rcode,
            answers: Vec::new(),
            soa: false,
        }
    }

    /// NXDOMAIN, or NOERROR without answers: both with the SOA (RFC 2308 §2.1, §2.2).
    fn negative(rcode: u16) -> Outcome {
        Outcome {
            rcode,
            answers: Vec::new(),
            soa: true,
        }
    }

    fn records(answers: Vec<Rec>) -> Outcome {
        if answers.is_empty() {
            return Outcome::negative(rcode::NOERROR);
        }
        Outcome {
            rcode: rcode::NOERROR,
            answers,
            soa: false,
        }
    }
}

fn decide<S: Source + ?Sized>(
    q: &Query<'_>,
    source: &S,
    zone: &Zone,
    rng: &mut fastrand::Rng,
) -> Outcome {
    if q.edns.is_some_and(|e| e.version != 0) {
        return Outcome::error(rcode::BADVERS);
    }
    if !matches!(q.qclass, class::IN | class::ANY) {
        return Outcome::error(rcode::NOTIMP);
    }
    match q.qtype {
        rtype::AXFR | rtype::IXFR => return Outcome::error(rcode::NOTIMP),
        rtype::OPT => return Outcome::error(rcode::FORMERR),
        _ => {}
    }
    let lower = q.name.to_ascii_lowercase();
    let all: Vec<&[u8]> = labels(&lower).collect();
    let Some(rel_len) = all.len().checked_sub(zone.labels) else {
        return Outcome::error(rcode::REFUSED);
    };
    if !all[rel_len..].iter().copied().eq(labels(&zone.domain)) {
        return Outcome::error(rcode::REFUSED);
    }
    let qtype = q.qtype;
    match &all[..rel_len] {
        [] if matches!(qtype, rtype::SOA | rtype::ANY) => Outcome::records(vec![Rec::Soa]),
        [] | [b"service"] | [b"addr"] => Outcome::negative(rcode::NOERROR),
        [hex, b"addr"] => match parse_hex(hex) {
            Some(ip) => Outcome::records(addresses(&[ip], qtype)),
            None => Outcome::negative(rcode::NXDOMAIN),
        },
        [name, b"service"] => service(source, name, None, false, qtype, rng),
        [name, tag, b"service"] if name.starts_with(b"_") && tag.starts_with(b"_") => {
            let tag = Some(&tag[1..]).filter(|t| *t != b"tcp");
            service(source, &name[1..], tag, true, qtype, rng)
        }
        [tag, name, b"service"] => service(source, name, Some(tag), false, qtype, rng),
        _ => Outcome::negative(rcode::NXDOMAIN),
    }
}

/// A service lookup: NXDOMAIN when unknown or empty, else its records of the asked type.
fn service<S: Source + ?Sized>(
    source: &S,
    name: &[u8],
    tag: Option<&[u8]>,
    srv_form: bool,
    qtype: u16,
    rng: &mut fastrand::Rng,
) -> Outcome {
    let (Ok(name), Ok(tag)) = (
        std::str::from_utf8(name),
        tag.map(std::str::from_utf8).transpose(),
    ) else {
        return Outcome::negative(rcode::NXDOMAIN);
    };
    let mut targets = Vec::new();
    if source.lookup(name, tag, &mut targets) == Lookup::Unknown || targets.is_empty() {
        return Outcome::negative(rcode::NXDOMAIN);
    }
    let mut recs = match (srv_form, qtype) {
        (_, rtype::SRV) | (true, rtype::ANY) => srv_records(&targets),
        (false, _) => {
            let ips: Vec<IpAddr> = targets.iter().filter_map(|t| ip_of(&t.host)).collect();
            addresses(&ips, qtype)
        }
        (true, _) => Vec::new(),
    };
    recs.sort_unstable();
    recs.dedup();
    rng.shuffle(&mut recs);
    Outcome::records(recs)
}

/// A, AAAA (or both for ANY) records of these addresses.
fn addresses(ips: &[IpAddr], qtype: u16) -> Vec<Rec> {
    ips.iter()
        .filter_map(|ip| match (ip, qtype) {
            (IpAddr::V4(v4), rtype::A | rtype::ANY) => Some(Rec::A(*v4)),
            (IpAddr::V6(v6), rtype::AAAA | rtype::ANY) => Some(Rec::Aaaa(*v6)),
            _ => None,
        })
        .collect()
}

/// SRV records; a host name that is not a valid DNS name (or is the root) is left out.
fn srv_records(targets: &[Endpoint]) -> Vec<Rec> {
    targets
        .iter()
        .filter_map(|t| {
            let target = match &t.host {
                HostKind::Ipv4(v4) => SrvTarget::Addr(IpAddr::V4(*v4)),
                HostKind::Ipv6(v6) => SrvTarget::Addr(IpAddr::V6(*v6)),
                HostKind::Name(host) => {
                    SrvTarget::Host(wire::name_from_str(host).filter(|w| w.len() > 1)?)
                }
            };
            Some(Rec::Srv {
                weight: t.weight,
                port: t.port,
                target,
            })
        })
        .collect()
}

fn ip_of(host: &HostKind) -> Option<IpAddr> {
    match host {
        HostKind::Ipv4(v4) => Some(IpAddr::V4(*v4)),
        HostKind::Ipv6(v6) => Some(IpAddr::V6(*v6)),
        HostKind::Name(_) => None,
    }
}

/// `7f000001` → 127.0.0.1; 32 hex digits → an IPv6 address; anything else → `None`.
fn parse_hex(label: &[u8]) -> Option<IpAddr> {
    let mut bytes = [0u8; 16];
    if !matches!(label.len(), 8 | 32) {
        return None;
    }
    for (i, pair) in label.chunks_exact(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16);
        bytes[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(if label.len() == 8 {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(bytes))
    })
}
