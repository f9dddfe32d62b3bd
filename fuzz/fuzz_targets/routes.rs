//! The parser, the router and both roles' handlers over arbitrary bytes: each input is a stream of
//! pipelined requests, answered in order by a fresh registry (so registrations made early in the
//! input are seen by later requests: specs from the query or a JSON body, drains, tag-filtered
//! lookups and listings, weighted picks; seeds in `seeds/http`, tokens in `http.dict`) and by an
//! adder. Every response has a status in 100..600,
//! encodes to a well-formed HTTP/1.1 response whose framing matches its body, and an error body is
//! one line ending in '\n' (except the original registry's no-newline "no service availble").
#![no_main]

use libfuzzer_sys::fuzz_target;
use mini::http::parse_request;
use mini::http::server::encode::TEXT;
use mini::http::Response;
use mini::proto::NO_SERVICE_BODY;
use mini::registry::routes::Routes;
use mini::registry::{Config, Shared};
use std::sync::Arc;

/// At most this many requests per input, so one input stays fast.
const MAX_REQUESTS: usize = 16;

fuzz_target!(|data: &[u8]| {
    let registry = Routes::new(Arc::new(Shared::new(Config::default())));
    let adder = mini::adder::Routes::default();
    let mut rest = data;
    for _ in 0..MAX_REQUESTS {
        let Ok(Some((req, used))) = parse_request(rest) else {
            break;
        };
        rest = &rest[used..];
        // With the memory store every route answers on its first poll; only a watch (`?index=`
        // naming the current index) would wait, and is dropped (unsubscribing) instead.
        if let Some(resp) = smol::block_on(smol::future::poll_once(registry.answer(&req))) {
            check(&resp);
        }
        check(&adder.answer(&req));
    }
});

fn check(resp: &Response) {
    assert!((100..600).contains(&resp.status), "{resp:?}");
    if resp.status >= 400 && resp.content_type == TEXT && resp.body != NO_SERVICE_BODY.as_bytes() {
        assert!(resp.body.ends_with(b"\n"), "{resp:?}");
        let lines = resp.body.iter().filter(|b| **b == b'\n').count();
        assert_eq!(lines, 1, "a multi-line error body: {resp:?}");
    }
    for keep_alive in [true, false] {
        let mut wire = Vec::new();
        resp.encode(keep_alive, false, &mut wire);
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut parsed = httparse::Response::new(&mut headers);
        let head = match parsed.parse(&wire) {
            Ok(httparse::Status::Complete(n)) => n,
            other => panic!("encoded response does not parse: {other:?}: {resp:?}"),
        };
        assert_eq!(parsed.code, Some(resp.status));
        let lengths: Vec<&[u8]> = parsed
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
            .map(|h| h.value)
            .collect();
        assert_eq!(
            lengths,
            [resp.body.len().to_string().as_bytes()],
            "{resp:?}"
        );
        assert_eq!(wire.len() - head, resp.body.len(), "{resp:?}");
        // Date, Content-Type and Content-Length, `Connection: close` when closing, then the extras.
        assert_eq!(
            parsed.headers.len(),
            3 + usize::from(!keep_alive) + resp.headers.len()
        );
        assert!(parsed.headers.iter().any(|h| h.name == "Date"));
    }
}
