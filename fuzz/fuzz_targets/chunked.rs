//! The chunked decoder over arbitrary bytes and arbitrary split points: feeding the input in pieces
//! gives exactly what feeding it at once gives (payload, bytes used, done, error), the payload
//! never exceeds the limit, and it never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mini::http::chunked::{ChunkedDecoder, ChunkedError};

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    used: usize,
    out: Vec<u8>,
    done: bool,
    error: Option<ChunkedError>,
}

/// Feeds `wire` in pieces of the given sizes (the last piece takes the rest), stopping at the end of
/// the body or at the first error, as a reader would.
fn decode(wire: &[u8], limit: usize, sizes: impl Iterator<Item = usize>) -> Outcome {
    let mut dec = ChunkedDecoder::new(limit);
    let mut outcome = Outcome {
        used: 0,
        out: Vec::new(),
        done: false,
        error: None,
    };
    let mut sizes = sizes;
    while outcome.used < wire.len() {
        let size = sizes.next().unwrap_or(usize::MAX).max(1);
        let piece = &wire[outcome.used..wire.len().min(outcome.used.saturating_add(size))];
        match dec.feed(piece, &mut outcome.out) {
            Ok(n) => {
                assert!(n <= piece.len());
                outcome.used += n;
                if n < piece.len() {
                    assert!(dec.is_done(), "stopped early without finishing");
                }
            }
            Err(e) => {
                // Where in the input the error came depends on the pieces; the rest must not.
                outcome.error = Some(e);
                outcome.used = 0;
                break;
            }
        }
        if dec.is_done() {
            break;
        }
    }
    outcome.done = dec.is_done();
    outcome
}

fuzz_target!(|data: &[u8]| {
    let [limit, seed, wire @ ..] = data else {
        return;
    };
    let limit = usize::from(*limit) * 4;
    let whole = decode(wire, limit, std::iter::once(usize::MAX));
    assert!(whole.out.len() <= limit);
    if whole.error.is_none() && !whole.done {
        assert_eq!(whole.used, wire.len());
    }
    // Split points from a small generator seeded by the input: pieces of 1 to 16 bytes.
    let mut state = u32::from(*seed) | 1;
    let sizes = std::iter::from_fn(|| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        Some((state % 16) as usize + 1)
    });
    assert_eq!(decode(wire, limit, sizes), whole);
    assert_eq!(decode(wire, limit, std::iter::repeat(1)), whole);
});
