//! One-line diagnostics on stderr, each stamped with the wall-clock time of day (UTC).

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// Prints `role: message` on stderr with a `HH:MM:SS.mmm` stamp.
pub fn line(role: &str, message: std::fmt::Arguments<'_>) {
    let line = format!("{} {role}: {message}\n", clock());
    // One write per line, so lines from concurrent tasks never interleave and a reader of the log
    // never sees half a line.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Lines for stderr written together: one stamp and one write per [`LINES_FLUSH`] bytes, so the
/// thousand lines of one batch of etcd events cost one system call, not a thousand.
/// (`Lines::new("registry")`, then `add(format_args!(..))` per line, then `flush()` or drop.)
#[derive(Debug)]
pub struct Lines {
    prefix: String,
    out: String,
}

/// Bytes a [`Lines`] buffers before it writes: a bound on its memory, well under a pipe's atomic
/// write size times the lines of a full batch.
pub const LINES_FLUSH: usize = 64 * 1024;

impl Lines {
    /// An empty set of lines for `role`, stamped now.
    pub fn new(role: &str) -> Lines {
        Lines {
            prefix: format!("{} {role}: ", clock()),
            out: String::new(),
        }
    }

    /// Adds one line.
    pub fn add(&mut self, message: std::fmt::Arguments<'_>) {
        use std::fmt::Write as _;
        self.out.push_str(&self.prefix);
        let _ = writeln!(self.out, "{message}");
        if self.out.len() >= LINES_FLUSH {
            self.write();
        }
    }

    fn write(&mut self) {
        if !self.out.is_empty() {
            let _ = std::io::stderr().lock().write_all(self.out.as_bytes());
            self.out.clear();
        }
    }

    /// Writes what is buffered (dropping it does too).
    pub fn flush(self) {}
}

impl Drop for Lines {
    fn drop(&mut self) {
        self.write();
    }
}

/// Prints `message` on stdout with the same stamp: output meant for people, such as `mini watch`.
pub fn stamped(message: std::fmt::Arguments<'_>) {
    let line = format!("{} {message}\n", clock());
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
}

fn clock() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() % 86_400_000);
    let (h, m, s, milli) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    format!("{h:02}:{m:02}:{s:02}.{milli:03}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_share_one_stamp_and_stay_buffered_until_written() {
        let mut lines = Lines::new("registry");
        lines.add(format_args!("a registered"));
        lines.add(format_args!("b {}", "registered"));
        let text = std::mem::take(&mut lines.out);
        let rows: Vec<&str> = text.lines().collect();
        assert_eq!(rows.len(), 2, "{text:?}");
        assert!(rows[0].ends_with(" registry: a registered"), "{text:?}");
        assert!(rows[1].ends_with(" registry: b registered"), "{text:?}");
        assert_eq!(
            rows[0].len() - "a registered".len(),
            rows[1].len() - "b registered".len()
        );
    }
}
