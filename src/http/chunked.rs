//! Incremental decoder for `Transfer-Encoding: chunked` bodies (RFC 9112 §7.1).
//!
//! The decoder is push-based: feed it whatever bytes arrived from the network,
//! in any split, and it appends the de-chunked payload to an output buffer.
//! Every line and the total body size are bounded, so a hostile peer cannot
//! make it grow without limit, and it never panics on any input.

use std::fmt;

/// Longest chunk-size line (size plus extensions) that is accepted.
pub const MAX_CHUNK_LINE: usize = 4096;

/// Most trailer bytes (all trailer lines together) that are accepted.
pub const MAX_TRAILERS: usize = 16 * 1024;

/// Why a chunked body was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkedError {
    /// A chunk size is missing, not hexadecimal, or overflows.
    BadSize,
    /// CR/LF delimiters or chunk extensions are malformed.
    BadFraming,
    /// A chunk-size line or the trailer section exceeds its limit.
    LineTooLong,
    /// The de-chunked body exceeds the decoder's limit.
    TooLarge,
}

impl ChunkedError {
    /// A short, static description of the error.
    pub fn message(self) -> &'static str {
        match self {
            ChunkedError::BadSize => "invalid chunk size",
            ChunkedError::BadFraming => "malformed chunked framing",
            ChunkedError::LineTooLong => "chunk line or trailers too long",
            ChunkedError::TooLarge => "chunked body exceeds the limit",
        }
    }
}

impl fmt::Display for ChunkedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for ChunkedError {}

/// Where the decoder is within the chunked framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size; `digits` counts them.
    Size { size: u64, digits: u8 },
    /// After the digits: optional whitespace, then `;extensions`.
    Ext { size: u64, in_ext: bool },
    /// Saw the CR ending a size line; expecting LF.
    SizeLf { size: u64 },
    /// Copying chunk payload; `left` bytes remain.
    Data { left: u64 },
    /// Expecting the CR after chunk payload.
    DataCr,
    /// Expecting the LF after chunk payload.
    DataLf,
    /// At the start of a trailer line, or of the final empty line.
    TrailerStart,
    /// Inside a trailer field line (discarded).
    Trailer,
    /// Saw a CR in the trailer section; `last` if the line was empty.
    TrailerLf { last: bool },
    /// The terminating empty line has been read.
    Done,
}

/// Push-based chunked-body decoder with a body size limit.
///
/// Trailer fields are validated for size and framing, then discarded.
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
    limit: u64,
    total: u64,
    line: usize,
    trailers: usize,
}

impl ChunkedDecoder {
    /// Creates a decoder that rejects bodies longer than `limit` bytes.
    pub fn new(limit: usize) -> ChunkedDecoder {
        ChunkedDecoder {
            state: State::Size { size: 0, digits: 0 },
            limit: u64::try_from(limit).unwrap_or(u64::MAX),
            total: 0,
            line: 0,
            trailers: 0,
        }
    }

    /// Whether the whole body, including trailers, has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from `input`, appending payload bytes to `out`.
    ///
    /// Returns how many input bytes were consumed: all of them, unless the
    /// body ended inside `input` (the rest then belongs to whatever follows).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, ChunkedError> {
        let mut used = 0;
        while let Some(rest) = input.get(used..).filter(|r| !r.is_empty()) {
            match self.state {
                State::Done => break,
                State::Data { left } => used += self.copy_data(left, rest, out),
                _ => {
                    self.step(rest[0])?;
                    used += 1;
                }
            }
        }
        Ok(used)
    }

    /// Copies up to `left` payload bytes from `rest`; returns how many.
    fn copy_data(&mut self, left: u64, rest: &[u8], out: &mut Vec<u8>) -> usize {
        let n = rest.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        out.extend_from_slice(rest.get(..n).unwrap_or_default());
        let left = left.saturating_sub(n as u64);
        self.state = if left == 0 {
            State::DataCr
        } else {
            State::Data { left }
        };
        n
    }

    /// Advances the framing state machine by one byte.
    fn step(&mut self, b: u8) -> Result<(), ChunkedError> {
        self.state = match self.state {
            State::Size { size, digits } => self.size_byte(size, digits, b)?,
            State::Ext { size, in_ext } => self.ext_byte(size, in_ext, b)?,
            State::SizeLf { size } if b == b'\n' => self.start_chunk(size)?,
            State::DataCr if b == b'\r' => State::DataLf,
            State::DataLf if b == b'\n' => {
                self.line = 0;
                State::Size { size: 0, digits: 0 }
            }
            State::TrailerStart | State::Trailer => self.trailer_byte(b)?,
            State::TrailerLf { last: true } if b == b'\n' => State::Done,
            State::TrailerLf { last: false } if b == b'\n' => State::TrailerStart,
            _ => return Err(ChunkedError::BadFraming),
        };
        Ok(())
    }

    /// Counts one byte of the current size line against its limit.
    fn count_line(&mut self) -> Result<(), ChunkedError> {
        self.line += 1;
        if self.line > MAX_CHUNK_LINE {
            return Err(ChunkedError::LineTooLong);
        }
        Ok(())
    }

    fn size_byte(&mut self, size: u64, digits: u8, b: u8) -> Result<State, ChunkedError> {
        self.count_line()?;
        match (b as char).to_digit(16) {
            Some(d) => {
                if size >> 60 != 0 {
                    return Err(ChunkedError::BadSize);
                }
                let digits = digits.saturating_add(1);
                Ok(State::Size {
                    size: size << 4 | u64::from(d),
                    digits,
                })
            }
            None if digits == 0 => Err(ChunkedError::BadSize),
            None => self.ext_byte(size, false, b),
        }
    }

    fn ext_byte(&mut self, size: u64, in_ext: bool, b: u8) -> Result<State, ChunkedError> {
        self.count_line()?;
        match b {
            b'\r' => Ok(State::SizeLf { size }),
            b'\n' => Err(ChunkedError::BadFraming),
            b' ' | b'\t' => Ok(State::Ext { size, in_ext }),
            b';' => Ok(State::Ext { size, in_ext: true }),
            _ if !in_ext => Err(ChunkedError::BadSize),
            _ if b.is_ascii_control() => Err(ChunkedError::BadFraming),
            _ => Ok(State::Ext { size, in_ext }),
        }
    }

    fn start_chunk(&mut self, size: u64) -> Result<State, ChunkedError> {
        if size == 0 {
            return Ok(State::TrailerStart);
        }
        if size > self.limit.saturating_sub(self.total) {
            return Err(ChunkedError::TooLarge);
        }
        self.total += size;
        Ok(State::Data { left: size })
    }

    fn trailer_byte(&mut self, b: u8) -> Result<State, ChunkedError> {
        let at_start = self.state == State::TrailerStart;
        self.trailers += 1;
        if self.trailers > MAX_TRAILERS {
            return Err(ChunkedError::LineTooLong);
        }
        match b {
            b'\r' => Ok(State::TrailerLf { last: at_start }),
            b'\t' => Ok(State::Trailer),
            _ if b.is_ascii_control() => Err(ChunkedError::BadFraming),
            _ => Ok(State::Trailer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(input: &[u8], piece: usize, limit: usize) -> Result<Vec<u8>, ChunkedError> {
        let mut dec = ChunkedDecoder::new(limit);
        let mut out = Vec::new();
        for part in input.chunks(piece) {
            let used = dec.feed(part, &mut out)?;
            assert_eq!(used, part.len(), "decoder stopped early");
        }
        assert!(dec.is_done(), "body not finished");
        Ok(out)
    }

    const WIRE: &[u8] = b"5;name=val\r\nhello\r\n1A \t;x\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-T: 1\r\nY: 2\r\n\r\n";

    #[test]
    fn decodes_with_every_split() {
        let want = b"helloabcdefghijklmnopqrstuvwxyz".to_vec();
        for piece in 1..=WIRE.len() {
            assert_eq!(decode_in_pieces(WIRE, piece, 1024).unwrap(), want);
        }
    }

    #[test]
    fn stops_at_end_of_body() {
        let mut dec = ChunkedDecoder::new(64);
        let mut out = Vec::new();
        let used = dec.feed(b"2\r\nok\r\n0\r\n\r\nEXTRA", &mut out).unwrap();
        assert_eq!(used, 12);
        assert!(dec.is_done());
        assert_eq!(out, b"ok");
    }

    #[test]
    fn rejects_bad_input() {
        let bad = |wire: &[u8]| decode_in_pieces(wire, 3, 64).unwrap_err();
        assert_eq!(bad(b"zz\r\n"), ChunkedError::BadSize);
        assert_eq!(bad(b"\r\n"), ChunkedError::BadSize);
        assert_eq!(bad(b"5 x\r\n"), ChunkedError::BadSize);
        assert_eq!(bad(b"2\nok"), ChunkedError::BadFraming);
        assert_eq!(bad(b"2\r\nokX"), ChunkedError::BadFraming);
        assert_eq!(bad(b"0\r\nA\0\r\n"), ChunkedError::BadFraming);
        assert_eq!(bad(b"11111111111111111\r\n"), ChunkedError::BadSize);
        assert_eq!(bad(b"41\r\n"), ChunkedError::TooLarge);
    }

    #[test]
    fn limits_lines_and_total() {
        let mut long = b"1;".to_vec();
        long.resize(MAX_CHUNK_LINE + 10, b'a');
        assert_eq!(
            decode_in_pieces(&long, 100, 64).unwrap_err(),
            ChunkedError::LineTooLong
        );
        let mut wire = Vec::new();
        for _ in 0..3 {
            wire.extend_from_slice(b"20\r\n");
            wire.extend_from_slice(&[b'x'; 32]);
            wire.extend_from_slice(b"\r\n");
        }
        assert_eq!(
            decode_in_pieces(&wire, 7, 64).unwrap_err(),
            ChunkedError::TooLarge
        );
    }
}
