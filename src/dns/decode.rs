//! Decoding: the strict query parser the server uses ([`parse_query`]) and a general message parser
//! ([`parse_message`]) with bounded compression-pointer following, for tests, the fuzz target and
//! anyone checking what the encoder wrote.
//!
//! Both work on a complete message (UDP datagram or one TCP frame), never panic, and allocate at most
//! in proportion to their input: a record takes at least 11 bytes, a question 5, and a decompressed
//! name at most [`MAX_NAME_LEN`] bytes.

use super::wire::{rtype, Header, HEADER_LEN, MAX_LABEL_LEN, MAX_NAME_LEN, OPCODE_QUERY};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Most compression pointers followed in one name. Each must point before the previous one, which
/// alone ends every chain; this bounds the work per name further (a 255-byte name has at most 127
/// labels, so no honest chain is longer).
pub const MAX_POINTER_HOPS: usize = 127;

/// Why bytes are not a well-formed message (a small `Copy` enum with fixed texts, as in httparse).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsError {
    /// The message ends inside a field.
    Truncated,
    /// A length byte with the reserved top bits `01` or `10` (RFC 6891 §5 retired extended labels).
    LabelType,
    /// A name longer than 255 bytes.
    NameTooLong,
    /// A compression pointer in a query's question (queries have no earlier name to point to).
    PointerInQuestion,
    /// A compression pointer that does not point before the previous one (a loop or a forward jump).
    BadPointer,
    /// More than [`MAX_POINTER_HOPS`] pointers in one name.
    TooManyPointers,
    /// A query whose question count is not 1.
    QuestionCount,
    /// More than one OPT record (RFC 6891 §6.1.1).
    DuplicateOpt,
    /// An OPT record not owned by the root, or whose options overrun its data.
    BadOpt,
    /// Record data that does not match its type's layout or overruns its length.
    BadRdata,
    /// Bytes left after the last record.
    TrailingBytes,
}

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DnsError::Truncated => "message truncated",
            DnsError::LabelType => "unknown label type",
            DnsError::NameTooLong => "name longer than 255 bytes",
            DnsError::PointerInQuestion => "compression pointer in a query's question",
            DnsError::BadPointer => "compression pointer does not point backwards",
            DnsError::TooManyPointers => "too many compression pointers in a name",
            DnsError::QuestionCount => "query does not have exactly one question",
            DnsError::DuplicateOpt => "more than one OPT record",
            DnsError::BadOpt => "malformed OPT record",
            DnsError::BadRdata => "record data does not match its type",
            DnsError::TrailingBytes => "bytes after the last record",
        })
    }
}

impl std::error::Error for DnsError {}

/// The EDNS0 parameters of a query's OPT record (RFC 6891 §6.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    /// The requestor's UDP payload size (the OPT record's class).
    pub payload: u16,
    /// The EDNS version; only 0 exists.
    pub version: u8,
    /// The DNSSEC OK bit.
    pub dnssec_ok: bool,
}

/// A parsed query: its header, its one question (the name as sent, in wire form) and its EDNS0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query<'a> {
    /// The header as received.
    pub header: Header,
    /// The question's name in uncompressed wire form, exactly as sent (case kept).
    pub name: &'a [u8],
    /// The question's type.
    pub qtype: u16,
    /// The question's class.
    pub qclass: u16,
    /// The OPT record's parameters, when the query had one.
    pub edns: Option<Edns>,
}

/// Why a query is not answered normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryError {
    /// Shorter than the header: nothing to answer to; dropped.
    Short,
    /// QR is set: a response, never answered (that is how reflection loops start); dropped.
    DnsResponse,
    /// An opcode other than QUERY: answered NOTIMP with the header only.
    Opcode(Header),
    /// Malformed after the header: answered FORMERR with the header only.
    Malformed(Header, DnsError),
}

/// Parses a query strictly: one question whose name has no compression pointer, answer and authority
/// records skipped, at most one OPT among the additional records, nothing after the last record.
///
/// ```
/// use mini::dns::decode::{parse_query, QueryError};
/// let mut q = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
/// q.extend_from_slice(b"\x03add\x07service\x04mini\x00\x00\x01\x00\x01");
/// let query = parse_query(&q).unwrap();
/// assert_eq!((query.header.id, query.qtype, query.qclass), (0x1234, 1, 1));
/// assert_eq!(query.name, b"\x03add\x07service\x04mini\x00");
/// assert_eq!(parse_query(&q[..11]), Err(QueryError::Short));
/// ```
pub fn parse_query(bytes: &[u8]) -> Result<Query<'_>, QueryError> {
    let header = Header::parse(bytes).ok_or(QueryError::Short)?;
    if header.is_response() {
        return Err(QueryError::DnsResponse);
    }
    if header.opcode() != OPCODE_QUERY {
        return Err(QueryError::Opcode(header));
    }
    let malformed = |e| QueryError::Malformed(header, e);
    if header.qdcount != 1 {
        return Err(malformed(DnsError::QuestionCount));
    }
    let mut r = Reader::new(bytes, HEADER_LEN);
    let name = r.plain_name().map_err(malformed)?;
    let qtype = r.u16().map_err(malformed)?;
    let qclass = r.u16().map_err(malformed)?;
    for _ in 0..u32::from(header.ancount) + u32::from(header.nscount) {
        r.skip_record().map_err(malformed)?;
    }
    let mut edns = None;
    for _ in 0..header.arcount {
        if let Some(found) = r.skip_record().map_err(malformed)? {
            if edns.replace(found).is_some() {
                return Err(malformed(DnsError::DuplicateOpt));
            }
        }
    }
    if r.pos != bytes.len() {
        return Err(malformed(DnsError::TrailingBytes));
    }
    Ok(Query {
        header,
        name,
        qtype,
        qclass,
        edns,
    })
}

/// A whole message, names decompressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsMessage {
    /// The header.
    pub header: Header,
    /// The question section.
    pub questions: Vec<Question>,
    /// The answer section.
    pub answers: Vec<Record>,
    /// The authority section.
    pub authority: Vec<Record>,
    /// The additional section (an OPT record included).
    pub additional: Vec<Record>,
}

/// One question, its name decompressed to wire form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// Name in uncompressed wire form.
    pub name: Vec<u8>,
    /// Type.
    pub qtype: u16,
    /// Class.
    pub qclass: u16,
}

/// One resource record, its names decompressed to wire form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Owner name in uncompressed wire form.
    pub name: Vec<u8>,
    /// Type.
    pub rtype: u16,
    /// Class (for OPT: the UDP payload size).
    pub class: u16,
    /// Time to live (for OPT: extended rcode, version and flags).
    pub ttl: u32,
    /// The data, decoded for the types this module writes.
    pub data: RData,
}

/// Record data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RData {
    /// An IPv4 address.
    A(Ipv4Addr),
    /// An IPv6 address.
    Aaaa(Ipv6Addr),
    /// A service location (RFC 2782).
    Srv {
        /// Priority.
        priority: u16,
        /// Weight.
        weight: u16,
        /// Port.
        port: u16,
        /// Target name in wire form.
        target: Vec<u8>,
    },
    /// A start of authority.
    Soa {
        /// Primary name server.
        mname: Vec<u8>,
        /// Responsible mailbox.
        rname: Vec<u8>,
        /// Serial.
        serial: u32,
        /// Refresh interval.
        refresh: u32,
        /// Retry interval.
        retry: u32,
        /// Expiry.
        expire: u32,
        /// Negative-caching TTL (RFC 2308 §4).
        minimum: u32,
    },
    /// Any other type, as raw bytes (OPT included).
    Other(Vec<u8>),
}

/// Parses a whole message, following compression pointers (each strictly before the previous,
/// at most [`MAX_POINTER_HOPS`]) and checking A, AAAA, SRV, SOA and OPT data against their layouts.
///
/// ```
/// use mini::dns::decode::parse_message;
/// let mut m = vec![0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
/// m.extend_from_slice(b"\x01a\x00\x00\x01\x00\x01");
/// m.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 127, 0, 0, 1]);
/// let msg = parse_message(&m).unwrap();
/// assert_eq!(msg.answers[0].name, b"\x01a\x00");
/// assert_eq!(msg.answers[0].data, mini::dns::decode::RData::A([127, 0, 0, 1].into()));
/// ```
pub fn parse_message(bytes: &[u8]) -> Result<DnsMessage, DnsError> {
    let header = Header::parse(bytes).ok_or(DnsError::Truncated)?;
    let mut r = Reader::new(bytes, HEADER_LEN);
    let mut questions = Vec::new();
    for _ in 0..header.qdcount {
        let name = r.name()?;
        let qtype = r.u16()?;
        let qclass = r.u16()?;
        questions.push(Question {
            name,
            qtype,
            qclass,
        });
    }
    let mut sections = [Vec::new(), Vec::new(), Vec::new()];
    let mut opts = 0;
    for (section, count) in
        sections
            .iter_mut()
            .zip([header.ancount, header.nscount, header.arcount])
    {
        for _ in 0..count {
            let record = r.record()?;
            if record.rtype == rtype::OPT {
                opts += 1;
                if opts > 1 {
                    return Err(DnsError::DuplicateOpt);
                }
            }
            section.push(record);
        }
    }
    if r.pos != bytes.len() {
        return Err(DnsError::TrailingBytes);
    }
    let [answers, authority, additional] = sections;
    Ok(DnsMessage {
        header,
        questions,
        answers,
        authority,
        additional,
    })
}

/// A cursor over a message; every read checks the bounds.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], pos: usize) -> Self {
        Reader { buf, pos }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DnsError> {
        let end = self.pos.checked_add(n).ok_or(DnsError::Truncated)?;
        let bytes = self.buf.get(self.pos..end).ok_or(DnsError::Truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    fn u8(&mut self) -> Result<u8, DnsError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, DnsError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, DnsError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// An uncompressed name, returned as the slice it occupies.
    fn plain_name(&mut self) -> Result<&'a [u8], DnsError> {
        let start = self.pos;
        loop {
            let len = self.u8()?;
            match len & 0xC0 {
                0x00 => {}
                0xC0 => return Err(DnsError::PointerInQuestion),
                _ => return Err(DnsError::LabelType),
            }
            self.take(usize::from(len))?;
            if self.pos - start > MAX_NAME_LEN {
                return Err(DnsError::NameTooLong);
            }
            if len == 0 {
                return Ok(&self.buf[start..self.pos]);
            }
        }
    }

    /// Skips a name that may end in a pointer (its target is not needed, so not followed).
    fn skip_name(&mut self) -> Result<(), DnsError> {
        let start = self.pos;
        loop {
            let len = self.u8()?;
            match len & 0xC0 {
                0x00 => {}
                0xC0 => return self.take(1).map(drop),
                _ => return Err(DnsError::LabelType),
            }
            self.take(usize::from(len))?;
            if self.pos - start > MAX_NAME_LEN {
                return Err(DnsError::NameTooLong);
            }
            if len == 0 {
                return Ok(());
            }
        }
    }

    /// A name, pointers followed, as uncompressed wire bytes.
    fn name(&mut self) -> Result<Vec<u8>, DnsError> {
        let mut out = Vec::new();
        let mut at = self.pos;
        // Every pointer must land before this, and this moves back with each jump: no loops.
        let mut floor = self.pos;
        let mut hops = 0;
        let mut end = None;
        loop {
            let len = *self.buf.get(at).ok_or(DnsError::Truncated)?;
            match len & 0xC0 {
                0x00 => {}
                0xC0 => {
                    let low = *self.buf.get(at + 1).ok_or(DnsError::Truncated)?;
                    let target = usize::from(u16::from_be_bytes([len & 0x3F, low]));
                    end.get_or_insert(at + 2);
                    hops += 1;
                    if hops > MAX_POINTER_HOPS {
                        return Err(DnsError::TooManyPointers);
                    }
                    if target >= floor {
                        return Err(DnsError::BadPointer);
                    }
                    floor = target;
                    at = target;
                    continue;
                }
                _ => return Err(DnsError::LabelType),
            }
            let len = usize::from(len);
            let label = self.buf.get(at..at + 1 + len).ok_or(DnsError::Truncated)?;
            if out.len() + label.len() > MAX_NAME_LEN {
                return Err(DnsError::NameTooLong);
            }
            debug_assert!(len <= MAX_LABEL_LEN);
            out.extend_from_slice(label);
            at += 1 + len;
            if len == 0 {
                self.pos = end.unwrap_or(at);
                return Ok(out);
            }
        }
    }

    /// Skips one record; for an OPT record, returns its EDNS parameters after checking it.
    fn skip_record(&mut self) -> Result<Option<Edns>, DnsError> {
        let owner = self.pos;
        self.skip_name()?;
        let root_owner = self.pos == owner + 1 && self.buf[owner] == 0;
        let rtype = self.u16()?;
        let class = self.u16()?;
        let ttl = self.u32()?;
        let rdlen = usize::from(self.u16()?);
        let data = self.take(rdlen)?;
        if rtype != rtype::OPT {
            return Ok(None);
        }
        if !root_owner || !options_fit(data) {
            return Err(DnsError::BadOpt);
        }
        Ok(Some(Edns {
            payload: class,
            version: (ttl >> 16) as u8,
            dnssec_ok: ttl & 0x8000 != 0,
        }))
    }

    /// One record, its data decoded for the types written here.
    fn record(&mut self) -> Result<Record, DnsError> {
        let name = self.name()?;
        let rtype = self.u16()?;
        let class = self.u16()?;
        let ttl = self.u32()?;
        let rdlen = usize::from(self.u16()?);
        let start = self.pos;
        let end = start.checked_add(rdlen).ok_or(DnsError::Truncated)?;
        if end > self.buf.len() {
            return Err(DnsError::Truncated);
        }
        let data = match rtype {
            rtype::A => {
                let b: [u8; 4] = self
                    .take(rdlen)?
                    .try_into()
                    .map_err(|_| DnsError::BadRdata)?;
                RData::A(b.into())
            }
            rtype::AAAA => {
                let b: [u8; 16] = self
                    .take(rdlen)?
                    .try_into()
                    .map_err(|_| DnsError::BadRdata)?;
                RData::Aaaa(b.into())
            }
            rtype::SRV => RData::Srv {
                priority: self.u16()?,
                weight: self.u16()?,
                port: self.u16()?,
                target: self.name()?,
            },
            rtype::SOA => RData::Soa {
                mname: self.name()?,
                rname: self.name()?,
                serial: self.u32()?,
                refresh: self.u32()?,
                retry: self.u32()?,
                expire: self.u32()?,
                minimum: self.u32()?,
            },
            rtype::OPT => {
                let data = self.take(rdlen)?;
                if name != [0] || !options_fit(data) {
                    return Err(DnsError::BadOpt);
                }
                RData::Other(data.to_vec())
            }
            _ => RData::Other(self.take(rdlen)?.to_vec()),
        };
        if self.pos != end {
            return Err(DnsError::BadRdata);
        }
        Ok(Record {
            name,
            rtype,
            class,
            ttl,
            data,
        })
    }
}

/// Whether OPT data is a sequence of whole options (code, length, value; RFC 6891 §6.1.2).
fn options_fit(mut data: &[u8]) -> bool {
    while !data.is_empty() {
        let Some(&[_, _, hi, lo]) = data.get(..4) else {
            return false;
        };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        match data.get(4 + len..) {
            Some(rest) => data = rest,
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests;
