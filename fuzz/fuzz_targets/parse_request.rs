//! `parse_request` over arbitrary bytes: it never panics, what it reports using is within the
//! input, "need more" stays within the limits (so the server's buffer is bounded), every prefix of
//! a complete request is "need more" (so a request split across reads parses the same), and every
//! error maps to a status and a one-line reason.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mini::http::parse_request;
use mini::http::{MAX_BODY_BYTES, MAX_HEADERS, MAX_HEAD_BYTES};

fuzz_target!(|data: &[u8]| {
    match parse_request(data) {
        Ok(Some((req, used))) => {
            assert!(
                used > 0 && used <= data.len(),
                "used {used} of {}",
                data.len()
            );
            assert!(req.body().len() <= MAX_BODY_BYTES);
            assert!(used <= MAX_HEAD_BYTES + MAX_BODY_BYTES);
            assert!(req.headers().count() <= MAX_HEADERS);
            assert!(req.target().starts_with('/'));
            // The same request parses from exactly its own bytes.
            let (again, used_again) = parse_request(&data[..used])
                .expect("its own bytes are refused")
                .expect("its own bytes are incomplete");
            assert_eq!(used_again, used);
            assert_eq!((again.target(), again.body()), (req.target(), req.body()));
            // Decoding the pieces never fails once the request was accepted.
            let _ = (req.segments().count(), req.query_pairs().count());
            // Any read may end anywhere: a prefix must ask for more, never fail or parse.
            let cuts: Vec<usize> = if used <= 256 {
                (0..used).collect()
            } else {
                vec![0, 1, used / 2, used - 2, used - 1]
            };
            for cut in cuts {
                assert!(
                    matches!(parse_request(&data[..cut]), Ok(None)),
                    "prefix {cut} of a {used}-byte request: {:?}",
                    parse_request(&data[..cut]).map(|r| r.map(|(_, n)| n))
                );
            }
        }
        Ok(None) => assert!(data.len() < MAX_HEAD_BYTES + MAX_BODY_BYTES),
        Err(e) => {
            assert!(
                matches!(e.status(), 400 | 411 | 413 | 414 | 431 | 501),
                "{e:?}"
            );
            let text = e.to_string();
            assert!(!text.is_empty() && !text.contains(['\r', '\n']), "{text:?}");
        }
    }
});
