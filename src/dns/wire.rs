//! The wire format's fixed parts (RFC 1035 §4.1): the header, record types, classes, rcodes, and
//! names in their uncompressed wire form (length-prefixed labels ending in a zero byte).

use std::fmt::Write;

/// Bytes in the fixed message header (RFC 1035 §4.1.1).
pub const HEADER_LEN: usize = 12;
/// Longest name in wire form, length bytes and the root's zero included (RFC 1035 §2.3.4).
pub const MAX_NAME_LEN: usize = 255;
/// Longest label (RFC 1035 §2.3.4); the two top bits of a length byte mark pointers (§4.1.4).
pub const MAX_LABEL_LEN: usize = 63;

/// Record and query types used here (RFC 1035 §3.2.2, §3.2.3; RFC 3596; RFC 2782; RFC 6891).
pub mod rtype {
    /// IPv4 address.
    pub const A: u16 = 1;
    /// Name server.
    pub const NS: u16 = 2;
    /// Start of authority.
    pub const SOA: u16 = 6;
    /// IPv6 address (RFC 3596).
    pub const AAAA: u16 = 28;
    /// Service location (RFC 2782).
    pub const SRV: u16 = 33;
    /// EDNS0 pseudo-record (RFC 6891).
    pub const OPT: u16 = 41;
    /// Incremental zone transfer (RFC 1995).
    pub const IXFR: u16 = 251;
    /// Zone transfer.
    pub const AXFR: u16 = 252;
    /// Any type (`*`).
    pub const ANY: u16 = 255;
}

/// Classes (RFC 1035 §3.2.4, §3.2.5).
pub mod class {
    /// The Internet.
    pub const IN: u16 = 1;
    /// Any class (`*`), accepted in questions as IN.
    pub const ANY: u16 = 255;
}

/// Response codes (RFC 1035 §4.1.1; BADVERS from RFC 6891 §6.1.3, carried partly in the OPT record).
pub mod rcode {
    /// No error.
    pub const NOERROR: u16 = 0;
    /// The query could not be interpreted.
    pub const FORMERR: u16 = 1;
    /// Server failure.
    pub const SERVFAIL: u16 = 2;
    /// The name does not exist.
    pub const NXDOMAIN: u16 = 3;
    /// The kind of query is not implemented.
    pub const NOTIMP: u16 = 4;
    /// Refused (here: a name outside the domain).
    pub const REFUSED: u16 = 5;
    /// The EDNS version is not implemented (extended rcode 16).
    pub const BADVERS: u16 = 16;
}

/// Header flag bits (RFC 1035 §4.1.1; AD and CD from RFC 4035 §3.2).
pub mod flag {
    /// A response (not a query).
    pub const QR: u16 = 0x8000;
    /// Authoritative answer.
    pub const AA: u16 = 0x0400;
    /// Truncated.
    pub const TC: u16 = 0x0200;
    /// Recursion desired.
    pub const RD: u16 = 0x0100;
    /// Recursion available.
    pub const RA: u16 = 0x0080;
    /// Authentic data.
    pub const AD: u16 = 0x0020;
    /// Checking disabled.
    pub const CD: u16 = 0x0010;
}

/// The standard query opcode; every other is answered NOTIMP.
pub const OPCODE_QUERY: u8 = 0;

/// The 12-byte message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// Query id, echoed in the response.
    pub id: u16,
    /// QR, opcode, AA, TC, RD, RA, Z, AD, CD and the low four rcode bits.
    pub flags: u16,
    /// Questions.
    pub qdcount: u16,
    /// Answer records.
    pub ancount: u16,
    /// Authority records.
    pub nscount: u16,
    /// Additional records.
    pub arcount: u16,
}

impl Header {
    /// Reads a header; `None` when fewer than 12 bytes.
    ///
    /// ```
    /// use mini::dns::wire::Header;
    /// let h = Header::parse(&[0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]).unwrap();
    /// assert_eq!((h.id, h.qdcount, h.opcode(), h.is_response()), (7, 1, 0, false));
    /// assert!(Header::parse(&[0; 11]).is_none());
    /// ```
    pub fn parse(bytes: &[u8]) -> Option<Header> {
        let b = bytes.get(..HEADER_LEN)?;
        let word = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        Some(Header {
            id: word(0),
            flags: word(2),
            qdcount: word(4),
            ancount: word(6),
            nscount: word(8),
            arcount: word(10),
        })
    }

    /// The header's 12 bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0; HEADER_LEN];
        let words = [
            self.id,
            self.flags,
            self.qdcount,
            self.ancount,
            self.nscount,
            self.arcount,
        ];
        for (chunk, word) in out.chunks_exact_mut(2).zip(words) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        out
    }

    /// Whether QR is set.
    pub fn is_response(&self) -> bool {
        self.flags & flag::QR != 0
    }

    /// The four opcode bits.
    pub fn opcode(&self) -> u8 {
        ((self.flags >> 11) & 0xF) as u8
    }

    /// The low four rcode bits.
    pub fn rcode(&self) -> u16 {
        self.flags & 0xF
    }

    /// Whether the given flag bit (see [`flag`]) is set.
    pub fn has(&self, bit: u16) -> bool {
        self.flags & bit != 0
    }
}

/// Iterates the labels of a valid uncompressed wire name (the root's empty label excluded).
pub fn labels(wire: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = wire;
    std::iter::from_fn(move || {
        let (&len, tail) = rest.split_first()?;
        let len = usize::from(len);
        if len == 0 || len > MAX_LABEL_LEN || tail.len() < len {
            return None;
        }
        let (label, tail) = tail.split_at(len);
        rest = tail;
        Some(label)
    })
}

/// The wire form of a dotted name (`"a.b"` or `"a.b."`; `"."` or `""` is the root), or `None` when a
/// label is empty or longer than 63 bytes or the name longer than 255.
///
/// ```
/// use mini::dns::wire::{name_from_str, name_to_string};
/// let wire = name_from_str("Db1.Example.").unwrap();
/// assert_eq!(wire, b"\x03Db1\x07Example\x00");
/// assert_eq!(name_to_string(&wire), "Db1.Example.");
/// assert!(name_from_str("a..b").is_none());
/// ```
pub fn name_from_str(name: &str) -> Option<Vec<u8>> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let mut wire = Vec::with_capacity(name.len() + 2);
    if !name.is_empty() {
        for label in name.split('.') {
            if label.is_empty() || label.len() > MAX_LABEL_LEN {
                return None;
            }
            wire.push(label.len() as u8);
            wire.extend_from_slice(label.as_bytes());
        }
    }
    wire.push(0);
    (wire.len() <= MAX_NAME_LEN).then_some(wire)
}

/// A wire name in presentation form with a trailing dot; bytes outside printable ASCII and the
/// characters `.` and `\` are escaped as `\DDD` (RFC 1035 §5.1).
pub fn name_to_string(wire: &[u8]) -> String {
    let mut out = String::new();
    for label in labels(wire) {
        for &b in label {
            if b.is_ascii_graphic() && b != b'.' && b != b'\\' {
                out.push(b as char);
            } else {
                let _ = write!(out, "\\{b:03}");
            }
        }
        out.push('.');
    }
    if out.is_empty() {
        out.push('.');
    }
    out
}

/// The mnemonic of a type for metrics and messages (`"other"` when not one of [`rtype`]).
pub fn rtype_name(rtype: u16) -> &'static str {
    match rtype {
        rtype::A => "A",
        rtype::NS => "NS",
        rtype::SOA => "SOA",
        rtype::AAAA => "AAAA",
        rtype::SRV => "SRV",
        rtype::OPT => "OPT",
        rtype::IXFR => "IXFR",
        rtype::AXFR => "AXFR",
        rtype::ANY => "ANY",
        _ => "other",
    }
}

/// The mnemonic of an rcode (`"other"` when not one of [`rcode`]).
pub fn rcode_name(code: u16) -> &'static str {
    match code {
        rcode::NOERROR => "NOERROR",
        rcode::FORMERR => "FORMERR",
        rcode::SERVFAIL => "SERVFAIL",
        rcode::NXDOMAIN => "NXDOMAIN",
        rcode::NOTIMP => "NOTIMP",
        rcode::REFUSED => "REFUSED",
        rcode::BADVERS => "BADVERS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let h = Header {
            id: 0xBEEF,
            flags: flag::QR | flag::AA | 3,
            qdcount: 1,
            ancount: 2,
            nscount: 3,
            arcount: 4,
        };
        assert_eq!(Header::parse(&h.to_bytes()), Some(h));
        assert_eq!(h.rcode(), rcode::NXDOMAIN);
        assert!(h.is_response() && h.has(flag::AA) && !h.has(flag::TC));
    }

    #[test]
    fn names_convert_and_refuse_bad_labels() {
        assert_eq!(name_from_str(".").unwrap(), b"\0");
        assert_eq!(name_from_str("").unwrap(), b"\0");
        assert_eq!(name_to_string(b"\0"), ".");
        assert!(name_from_str(&"a".repeat(64)).is_none());
        let long = ["a".repeat(63).as_str(); 4].join(".");
        assert_eq!(name_from_str(&long).map(|w| w.len()), None, "256 bytes");
        assert_eq!(name_to_string(b"\x03a.b\x01\\\x00"), "a\\046b.\\092.");
        let wire = name_from_str("x.y.z").unwrap();
        let got: Vec<&[u8]> = labels(&wire).collect();
        assert_eq!(got, [b"x", b"y", b"z"]);
    }
}
