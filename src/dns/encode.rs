//! Encoding a response within a size limit, with name compression and the truncation rule below.
//!
//! # Compression
//! Every answer is owned by the question's name, so its owner is a pointer to offset 12; the SOA's
//! owner and the `ns.`/`hostmaster.` names in its data point at the domain's suffix of the question.
//! SRV targets are written in full (RFC 2782: "name compression is not to be used for this field"),
//! and each additional A/AAAA record's owner points at the target it resolves (RFC 1035 §4.1.4
//! allows a pointer to any prior occurrence; offsets past 0x3FFF cannot be pointed to and are
//! written in full).
//!
//! # Truncation (RFC 2181 §9)
//! TC means "required records were left out", never "extra information could not be included":
//! 1. When everything fits, everything is sent.
//! 2. When every answer fits but not every additional record, the additional records that do not
//!    fit are left out (in order, so the first answers keep their addresses) and TC stays clear.
//! 3. When the answers do not all fit, TC is set and the message keeps the longest run of answers
//!    that fits *together with* their additional records: a client that uses a truncated SRV answer
//!    as it is (HAProxy ignores TC on SRV) gets targets it can reach without another lookup, and a
//!    client that honours TC retries over TCP and gets everything.

use super::wire::{class, flag, rtype, Header, HEADER_LEN, MAX_NAME_LEN};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The classic UDP limit when the query has no OPT record (RFC 1035 §4.2.1), and the least any
/// EDNS0 payload size is taken as (RFC 6891 §6.2.5: values below 512 are treated as 512).
pub const UDP_MIN_PAYLOAD: usize = 512;
/// The largest UDP payload used, and the one advertised in our OPT record: RFC 6891 §6.2.5 suggests
/// 4096 as a starting point, and larger datagrams fragment (DNS Flag Day 2020 advises 1232).
pub const UDP_MAX_PAYLOAD: usize = 4096;
/// The largest message over TCP, whose length prefix is two bytes (RFC 1035 §4.2.2, RFC 7766 §8).
pub const TCP_MAX_MESSAGE: usize = 65535;
/// The smallest answer record (an A: 2-byte pointer, 10 bytes of fields, 4 of address): no message
/// holds more than `limit / MIN_RECORD_LEN` answers.
pub const MIN_RECORD_LEN: usize = 16;
/// Bytes of an OPT record with no options.
const OPT_LEN: usize = 11;
/// The highest offset a compression pointer can hold (14 bits, RFC 1035 §4.1.4).
const MAX_POINTER: usize = 0x3FFF;
/// SOA fields (RFC 1035 §3.3.13). There are no secondaries to refresh, so refresh, retry and expire
/// are Consul's defaults (agent/config/default.go); only `minimum` (the negative-caching TTL,
/// RFC 2308 §4) matters, and it is the configured TTL.
const SOA_REFRESH: u32 = 3600;
/// See [`SOA_REFRESH`].
const SOA_RETRY: u32 = 600;
/// See [`SOA_REFRESH`].
const SOA_EXPIRE: u32 = 86400;
/// Zone serial: there are no zone transfers, so any constant does.
const SOA_SERIAL: u32 = 1;

/// An answer record; its owner is always the question's name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rec {
    /// An IPv4 address.
    A(Ipv4Addr),
    /// An IPv6 address.
    Aaaa(Ipv6Addr),
    /// A service location with priority 1 (RFC 2782).
    Srv {
        /// Weight.
        weight: u16,
        /// Port.
        port: u16,
        /// Target.
        target: SrvTarget,
    },
    /// The domain's SOA (the question must be the domain itself).
    Soa,
}

/// An SRV target.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SrvTarget {
    /// `<hex address>.addr.DOMAIN.`, with its A/AAAA record in the additional section.
    Addr(IpAddr),
    /// A host name in wire form, no additional record.
    Host(Vec<u8>),
}

/// What to encode.
#[derive(Debug, Clone)]
pub struct DnsResponse<'a> {
    /// The query's id.
    pub id: u16,
    /// Header flags (QR, opcode, AA, RD, CD); TC is added by the encoder.
    pub flags: u16,
    /// The rcode, up to 12 bits: the high 8 go in the OPT record (so need `edns`).
    pub rcode: u16,
    /// The question as sent: name in wire form (at most 255 bytes), type and class.
    pub question: Option<(&'a [u8], u16, u16)>,
    /// The answer records (ignored without a question).
    pub answers: &'a [Rec],
    /// Whether the authority section holds the domain's SOA (negative answers, RFC 2308 §3).
    pub soa_authority: bool,
    /// Whether to add an OPT record (the query had one).
    pub edns: bool,
    /// The domain in lower-case wire form; the question's name must end with it for SOA records.
    pub domain: &'a [u8],
    /// TTL of every record, and the SOA's minimum.
    pub ttl: u32,
}

/// An encoded response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The message.
    pub bytes: Vec<u8>,
    /// Whether answers were left out (TC set).
    pub truncated: bool,
}

/// Encodes `resp` in at most `limit` bytes (clamped to 512..=65535), by the rule in the module docs.
///
/// ```
/// use mini::dns::encode::{encode, Rec, DnsResponse};
/// let name = b"\x03add\x07service\x04mini\x00";
/// let answers = [Rec::A([10, 0, 0, 1].into())];
/// let resp = DnsResponse {
///     id: 7, flags: 0x8400, rcode: 0, question: Some((name, 1, 1)), answers: &answers,
///     soa_authority: false, edns: false, domain: b"\x04mini\x00", ttl: 0,
/// };
/// let out = encode(&resp, 512);
/// assert!(!out.truncated);
/// assert_eq!(out.bytes.len(), 12 + name.len() + 4 + 16);
/// ```
pub fn encode(resp: &DnsResponse<'_>, limit: usize) -> Encoded {
    let limit = limit.clamp(UDP_MIN_PAYLOAD, TCP_MAX_MESSAGE);
    let mut out = Vec::with_capacity(limit.min(UDP_MAX_PAYLOAD));
    out.resize(HEADER_LEN, 0);
    let mut apex = None;
    let mut answers: &[Rec] = &[];
    if let Some((name, qtype, qclass)) = resp.question {
        let name = &name[..name.len().min(MAX_NAME_LEN)];
        out.extend_from_slice(name);
        out.extend_from_slice(&qtype.to_be_bytes());
        out.extend_from_slice(&qclass.to_be_bytes());
        answers = resp.answers;
        if name.len() >= resp.domain.len()
            && name[name.len() - resp.domain.len()..].eq_ignore_ascii_case(resp.domain)
        {
            apex = Some(HEADER_LEN + name.len() - resp.domain.len());
        }
    }
    let names = Names {
        domain: resp.domain,
        apex,
    };
    let question_end = out.len();

    // Answers until one ends past the limit (none after it can be sent), with their end offsets
    // and the offsets of SRV address targets. At most `limit / MIN_RECORD_LEN` of them fit.
    let max_answers = answers.len().min(limit / MIN_RECORD_LEN + 1);
    let mut answer_ends = Vec::with_capacity(max_answers);
    let mut target_at = Vec::with_capacity(max_answers);
    for rec in &answers[..max_answers] {
        if out.len() > limit {
            break;
        }
        target_at.push(write_answer(&mut out, rec, &names, resp.ttl));
        answer_ends.push(out.len());
    }
    let mut authority = Vec::new();
    if resp.soa_authority {
        names.put_apex(&mut authority);
        put_fields(&mut authority, rtype::SOA, resp.ttl);
        put_soa_data(&mut authority, &names, resp.ttl);
    }
    // Additional records in answer order, one per distinct address: (owning answer, end offset).
    let mut extra = Vec::new();
    let mut extra_ends: Vec<(usize, usize)> = Vec::new();
    let mut seen = HashSet::new();
    for (i, (rec, at)) in answers.iter().zip(&target_at).enumerate() {
        if let (
            Rec::Srv {
                target: SrvTarget::Addr(ip),
                ..
            },
            Some(at),
        ) = (rec, at)
        {
            if seen.insert(*ip) {
                write_address(&mut extra, *ip, *at, &names, resp.ttl);
                extra_ends.push((i, extra.len()));
            }
        }
    }

    let fixed = question_end + authority.len() + if resp.edns { OPT_LEN } else { 0 };
    let answers_len = |k: usize| {
        k.checked_sub(1)
            .map_or(0, |i| answer_ends[i] - question_end)
    };
    let extras_len = |m: usize| m.checked_sub(1).map_or(0, |i| extra_ends[i].1);
    let all = answer_ends.len();
    let (kept, extras, truncated) = if fixed + answers_len(all) <= limit {
        // Rules 1 and 2: every answer written fits; then as many additional records as fit.
        let room = limit - fixed - answers_len(all);
        let m = extra_ends.partition_point(|&(_, end)| end <= room);
        (all, m, all < answers.len())
    } else {
        // Rule 3: the longest run of answers that fits with its additional records (sizes grow
        // with the run, so a binary search finds it).
        let with_extras = |k: usize| extra_ends.partition_point(|&(i, _)| i < k);
        let fits = |k: usize| fixed + answers_len(k) + extras_len(with_extras(k)) <= limit;
        let (mut lo, mut hi) = (0, all);
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if fits(mid) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        (lo, with_extras(lo), true)
    };

    out.truncate(question_end + answers_len(kept));
    out.extend_from_slice(&authority);
    out.extend_from_slice(&extra[..extras_len(extras)]);
    if resp.edns {
        out.push(0);
        put_u16(&mut out, rtype::OPT);
        put_u16(&mut out, UDP_MAX_PAYLOAD as u16);
        // Extended rcode (high 8 bits of 12), version 0, no flags (RFC 6891 §6.1.3).
        out.extend_from_slice(&[(resp.rcode >> 4) as u8, 0, 0, 0]);
        put_u16(&mut out, 0);
    }
    let header = Header {
        id: resp.id,
        flags: (resp.flags & !(flag::TC | 0xF))
            | if truncated { flag::TC } else { 0 }
            | (resp.rcode & 0xF),
        qdcount: u16::from(resp.question.is_some()),
        ancount: kept as u16,
        nscount: u16::from(resp.soa_authority),
        arcount: (extras + usize::from(resp.edns)) as u16,
    };
    out[..HEADER_LEN].copy_from_slice(&header.to_bytes());
    debug_assert!(out.len() <= limit, "{} > {limit}", out.len());
    Encoded {
        bytes: out,
        truncated,
    }
}

/// How the domain is written: a pointer to its place in the question when there is one.
struct Names<'a> {
    domain: &'a [u8],
    apex: Option<usize>,
}

impl Names<'_> {
    fn put_apex(&self, out: &mut Vec<u8>) {
        match self.apex {
            Some(at) if at <= MAX_POINTER => put_u16(out, 0xC000 | at as u16),
            _ => out.extend_from_slice(self.domain),
        }
    }
}

/// Writes one answer record; returns the offset of an SRV address target's name.
fn write_answer(out: &mut Vec<u8>, rec: &Rec, names: &Names<'_>, ttl: u32) -> Option<usize> {
    put_u16(out, 0xC000 | HEADER_LEN as u16);
    match rec {
        Rec::A(ip) => {
            put_fields(out, rtype::A, ttl);
            put_u16(out, 4);
            out.extend_from_slice(&ip.octets());
            None
        }
        Rec::Aaaa(ip) => {
            put_fields(out, rtype::AAAA, ttl);
            put_u16(out, 16);
            out.extend_from_slice(&ip.octets());
            None
        }
        Rec::Soa => {
            put_fields(out, rtype::SOA, ttl);
            put_soa_data(out, names, ttl);
            None
        }
        Rec::Srv {
            weight,
            port,
            target,
        } => {
            put_fields(out, rtype::SRV, ttl);
            let len_at = out.len();
            put_u16(out, 0);
            put_u16(out, 1);
            put_u16(out, *weight);
            put_u16(out, *port);
            let name_at = out.len();
            let at = match target {
                SrvTarget::Addr(ip) => {
                    put_addr_name(out, *ip, names.domain);
                    Some(name_at)
                }
                SrvTarget::Host(wire) => {
                    out.extend_from_slice(wire);
                    None
                }
            };
            let len = (out.len() - len_at - 2) as u16;
            out[len_at..len_at + 2].copy_from_slice(&len.to_be_bytes());
            at
        }
    }
}

/// Type, class IN and TTL (the owner is already written; the data length follows).
fn put_fields(out: &mut Vec<u8>, rtype: u16, ttl: u32) {
    put_u16(out, rtype);
    put_u16(out, class::IN);
    out.extend_from_slice(&ttl.to_be_bytes());
}

/// SOA data with its length: `ns.DOMAIN.`, `hostmaster.DOMAIN.` (Consul's names), the counters.
fn put_soa_data(out: &mut Vec<u8>, names: &Names<'_>, ttl: u32) {
    let len_at = out.len();
    put_u16(out, 0);
    out.extend_from_slice(b"\x02ns");
    names.put_apex(out);
    out.extend_from_slice(b"\x0ahostmaster");
    names.put_apex(out);
    for n in [SOA_SERIAL, SOA_REFRESH, SOA_RETRY, SOA_EXPIRE, ttl] {
        out.extend_from_slice(&n.to_be_bytes());
    }
    let len = (out.len() - len_at - 2) as u16;
    out[len_at..len_at + 2].copy_from_slice(&len.to_be_bytes());
}

/// An A or AAAA record for an SRV target's address, owned by the target name at `at`.
fn write_address(out: &mut Vec<u8>, ip: IpAddr, at: usize, names: &Names<'_>, ttl: u32) {
    if at <= MAX_POINTER {
        put_u16(out, 0xC000 | at as u16);
    } else {
        put_addr_name(out, ip, names.domain);
    }
    match ip {
        IpAddr::V4(v4) => {
            put_fields(out, rtype::A, ttl);
            put_u16(out, 4);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            put_fields(out, rtype::AAAA, ttl);
            put_u16(out, 16);
            out.extend_from_slice(&v6.octets());
        }
    }
}

/// `<hex>.addr.DOMAIN.` in full: 8 hex digits for IPv4, 32 for IPv6 (Consul's form).
fn put_addr_name(out: &mut Vec<u8>, ip: IpAddr, domain: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let (octets, n) = match ip {
        IpAddr::V4(v4) => {
            let mut o = [0; 16];
            o[..4].copy_from_slice(&v4.octets());
            (o, 4)
        }
        IpAddr::V6(v6) => (v6.octets(), 16),
    };
    out.push((n * 2) as u8);
    for b in &octets[..n] {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0xF)]);
    }
    out.extend_from_slice(b"\x04addr");
    out.extend_from_slice(domain);
}

fn put_u16(out: &mut Vec<u8>, n: u16) {
    out.extend_from_slice(&n.to_be_bytes());
}
