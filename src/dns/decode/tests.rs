use super::*;

fn query(name: &[u8], extra: &[u8], arcount: u16) -> Vec<u8> {
    let mut q = vec![0xAB, 0xCD, 0x01, 0x00, 0, 1, 0, 0, 0, 0];
    q.extend_from_slice(&arcount.to_be_bytes());
    q.extend_from_slice(name);
    q.extend_from_slice(&[0, 1, 0, 1]);
    q.extend_from_slice(extra);
    q
}

const OPT_4096: [u8; 11] = [0, 0, 41, 0x10, 0, 0, 0, 0x80, 0, 0, 0];

#[test]
fn query_with_edns() {
    let q = query(b"\x01a\x00", &OPT_4096, 1);
    let parsed = parse_query(&q).unwrap();
    let edns = parsed.edns.unwrap();
    assert_eq!(
        (edns.payload, edns.version, edns.dnssec_ok),
        (4096, 0, true)
    );
}

#[test]
fn malformed_queries() {
    let bad = |q: &[u8]| match parse_query(q) {
        Err(QueryError::Malformed(h, e)) => {
            assert_eq!(h.id, 0xABCD);
            e
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(
        bad(&query(b"\xC0\x0C", &[], 0)),
        DnsError::PointerInQuestion
    );
    assert_eq!(bad(&query(b"\x41a\x00", &[], 0)), DnsError::LabelType);
    assert_eq!(bad(&query(b"\x05ab", &[], 0)), DnsError::Truncated);
    let long: Vec<u8> = [[63u8; 1].as_slice(), &[b'a'; 63]].concat().repeat(4);
    assert_eq!(
        bad(&query(&[long, vec![0]].concat(), &[], 0)),
        DnsError::NameTooLong
    );
    assert_eq!(bad(&query(b"\x00", &[9], 0)), DnsError::TrailingBytes);
    let two = [OPT_4096, OPT_4096].concat();
    assert_eq!(bad(&query(b"\x00", &two, 2)), DnsError::DuplicateOpt);
    let mut not_root = vec![1, b'x'];
    not_root.extend_from_slice(&OPT_4096);
    assert_eq!(bad(&query(b"\x00", &not_root, 1)), DnsError::BadOpt);
    let mut overrun = OPT_4096.to_vec();
    overrun[10] = 4;
    overrun.extend_from_slice(&[0, 10, 0, 9]);
    assert_eq!(bad(&query(b"\x00", &overrun, 1)), DnsError::BadOpt);
    let mut two_q = query(b"\x00", &[], 0);
    two_q[5] = 2;
    assert_eq!(bad(&two_q), DnsError::QuestionCount);
}

#[test]
fn responses_short_packets_and_opcodes() {
    assert_eq!(parse_query(&[]), Err(QueryError::Short));
    let mut q = query(b"\x00", &[], 0);
    q[2] |= 0x80;
    assert_eq!(parse_query(&q), Err(QueryError::DnsResponse));
    q[2] = 0x28; // UPDATE
    assert!(matches!(parse_query(&q), Err(QueryError::Opcode(h)) if h.opcode() == 5));
}

#[test]
fn pointers_are_followed_backwards_only() {
    // Header, question "a.", then an answer owned by a pointer to itself (a loop).
    let mut m = vec![0, 1, 0x80, 0, 0, 1, 0, 1, 0, 0, 0, 0];
    m.extend_from_slice(b"\x01a\x00\x00\x01\x00\x01");
    let looped = [m.clone(), vec![0xC0, 19, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0]].concat();
    assert_eq!(parse_message(&looped), Err(DnsError::BadPointer));
    // A label then a pointer back to the question: "b.a.".
    let chained = [
        m,
        b"\x01b\xC0\x0C\x00\x01\x00\x01\0\0\0\0\0\x04\x01\x02\x03\x04".to_vec(),
    ];
    let msg = parse_message(&chained.concat()).unwrap();
    assert_eq!(msg.answers[0].name, b"\x01b\x01a\x00");
    assert_eq!(msg.answers[0].data, RData::A([1, 2, 3, 4].into()));
}

#[test]
fn rdata_must_match_its_type() {
    let mut m = vec![0, 1, 0x80, 0, 0, 0, 0, 1, 0, 0, 0, 0];
    m.extend_from_slice(&[0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 3, 1, 2, 3]);
    assert_eq!(parse_message(&m), Err(DnsError::BadRdata));
    let mut srv = vec![0, 1, 0x80, 0, 0, 0, 0, 1, 0, 0, 0, 0];
    srv.extend_from_slice(&[0, 0, 33, 0, 1, 0, 0, 0, 0, 0, 8, 0, 1, 0, 1, 0, 80, 0, 0]);
    assert_eq!(parse_message(&srv), Err(DnsError::BadRdata));
}
