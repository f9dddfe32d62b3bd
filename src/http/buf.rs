//! A read buffer that keeps its memory: bytes arrive at the end, are consumed from the front, and
//! the space is reused for the next read and the next message instead of being zero-filled again.
//!
//! Both the server's connections and the client's (pooled with their buffer) read through one.

/// Smallest size a buffer grows to on its first read.
const MIN_SIZE: usize = 1024;

/// Bytes read from a socket and not yet consumed.
#[derive(Debug, Default)]
pub(crate) struct ReadBuf {
    /// Always initialized; `start..end` holds the unconsumed bytes.
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl ReadBuf {
    /// An empty buffer; it allocates on its first read.
    pub(crate) const fn new() -> ReadBuf {
        ReadBuf {
            data: Vec::new(),
            start: 0,
            end: 0,
        }
    }

    /// The unconsumed bytes.
    pub(crate) fn filled(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    /// How many bytes are unconsumed.
    pub(crate) fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether every byte read has been consumed.
    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Consumes `n` bytes from the front (at most all of them).
    pub(crate) fn consume(&mut self, n: usize) {
        self.start += n.min(self.len());
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
    }

    /// Consumes `n` bytes from the front into a new `Vec`.
    pub(crate) fn take(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.len());
        let out = self.data[self.start..self.start + n].to_vec();
        self.consume(n);
        out
    }

    /// Gives the memory back when nothing is pending and more than `keep` bytes are held, so an
    /// idle connection holds little.
    pub(crate) fn shrink(&mut self, keep: usize) {
        if self.is_empty() && self.data.len() > keep {
            self.data = Vec::new();
        }
    }

    /// Room for the next read, at most `max` bytes (at least one): free space at the end, made by
    /// moving pending bytes to the front or by growing (doubling from 1 KiB, by at most `max` or 1 KiB).
    pub(crate) fn spare(&mut self, max: usize) -> &mut [u8] {
        let max = max.max(1);
        if self.data.len() - self.end < max && self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        if self.end == self.data.len() {
            let len = self.data.len();
            let grown = (len * 2).max(MIN_SIZE).min(len + max.max(MIN_SIZE));
            self.data.resize(grown, 0);
        }
        let stop = (self.end + max).min(self.data.len());
        &mut self.data[self.end..stop]
    }

    /// Marks `n` bytes of the last [`ReadBuf::spare`] as read.
    pub(crate) fn commit(&mut self, n: usize) {
        self.end = (self.end + n).min(self.data.len());
    }

    /// Appends bytes read elsewhere.
    pub(crate) fn extend(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let room = self.spare(rest.len());
            let n = room.len();
            room.copy_from_slice(&rest[..n]);
            self.commit(n);
            rest = &rest[n..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_consume_and_reuse_the_same_memory() {
        let mut buf = ReadBuf::new();
        assert_eq!(buf.spare(4096).len(), MIN_SIZE);
        buf.spare(3)[..3].copy_from_slice(b"abc");
        buf.commit(3);
        assert_eq!(buf.filled(), b"abc");
        buf.consume(1);
        assert_eq!(buf.filled(), b"bc");
        buf.consume(2);
        assert!(buf.is_empty());
        assert_eq!((buf.start, buf.end, buf.data.len()), (0, 0, MIN_SIZE));
    }

    #[test]
    fn a_full_buffer_compacts_then_grows() {
        let mut buf = ReadBuf::new();
        buf.extend(&[7; MIN_SIZE]);
        buf.consume(MIN_SIZE - 10);
        buf.extend(&[8; 100]);
        assert_eq!(buf.data.len(), MIN_SIZE, "moved to the front, not grown");
        assert_eq!(buf.len(), 110);
        buf.extend(&[9; MIN_SIZE]);
        assert_eq!(buf.len(), 110 + MIN_SIZE);
        assert_eq!(&buf.filled()[..10], &[7; 10]);
        assert_eq!(buf.filled()[110 + MIN_SIZE - 1], 9);
        assert_eq!(buf.take(10), [7; 10]);
        buf.consume(usize::MAX);
        buf.shrink(MIN_SIZE);
        assert_eq!(buf.data.len(), 0);
    }
}
