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
