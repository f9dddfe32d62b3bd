//! Prometheus text exposition (format 0.0.4): counters kept in atomics, rendered on `GET /metrics`.
//!
//! Counting a request is one relaxed atomic add, so metrics cost the lookup path nothing measurable;
//! rendering walks the counters and the state once per scrape.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// The statuses counted one by one; any other is counted as `other`.
const STATUSES: [u16; 15] = [
    200, 400, 401, 404, 405, 408, 411, 413, 414, 429, 431, 500, 501, 503, 0,
];

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// The count so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Requests answered, by route (a fixed list of names) and status.
#[derive(Debug)]
pub struct HttpCounts {
    routes: &'static [&'static str],
    counts: Vec<[Counter; STATUSES.len()]>,
}

/// Lists of route names joined into one array of exactly `N` (their total length), at compile
/// time: a role's own routes and another's, say, for one [`HttpCounts`].
///
/// ```
/// const NAMES: [&str; 3] = mini::metrics::join_names(&[&["add", "alive"], &["unmatched"]]);
/// assert_eq!(NAMES, ["add", "alive", "unmatched"]);
/// ```
pub const fn join_names<const N: usize>(parts: &[&[&'static str]]) -> [&'static str; N] {
    let mut out = [""; N];
    let (mut n, mut p) = (0, 0);
    while p < parts.len() {
        let mut i = 0;
        while i < parts[p].len() {
            out[n] = parts[p][i];
            (n, i) = (n + 1, i + 1);
        }
        p += 1;
    }
    assert!(n == N, "N is not the total length of the parts");
    out
}

impl HttpCounts {
    /// Counters for these route names (index `i` in [`HttpCounts::record`] is `routes[i]`).
    pub fn new(routes: &'static [&'static str]) -> HttpCounts {
        let counts = routes.iter().map(|_| Default::default()).collect();
        HttpCounts { routes, counts }
    }

    /// Counts one answer; an unknown route index is ignored.
    pub fn record(&self, route: usize, status: u16) {
        let slot = STATUSES
            .iter()
            .position(|s| *s == status)
            .unwrap_or(STATUSES.len() - 1);
        if let Some(row) = self.counts.get(route) {
            row[slot].inc();
        }
    }

    /// Renders `PREFIX_http_requests_total`.
    pub fn render(&self, out: &mut Exposition, prefix: &str) {
        let name = format!("{prefix}_http_requests_total");
        out.family(
            &name,
            "HTTP requests answered by the routes, by route and status.",
            "counter",
        );
        for (route, row) in self.routes.iter().zip(&self.counts) {
            for (status, count) in STATUSES.iter().zip(row) {
                let n = count.get();
                if n == 0 {
                    continue;
                }
                let status = if *status == 0 {
                    "other".to_string()
                } else {
                    status.to_string()
                };
                out.sample(&name, &[("route", route), ("status", &status)], n as f64);
            }
        }
    }
}

/// A metrics page being written.
///
/// ```
/// let mut page = mini::metrics::Exposition::default();
/// page.family("mini_up", "Whether the process is up.", "gauge");
/// page.sample("mini_up", &[("role", "registry")], 1.0);
/// assert_eq!(page.finish(), "# HELP mini_up Whether the process is up.\n# TYPE mini_up gauge\nmini_up{role=\"registry\"} 1\n");
/// ```
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// Starts a metric family with its help text and type (`counter` or `gauge`).
    pub fn family(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample; label values are escaped as the format requires.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A family with one unlabelled sample.
    pub fn single(&mut self, name: &str, help: &str, kind: &str, value: f64) {
        self.family(name, help, kind);
        self.sample(name, &[], value);
    }

    /// A counter family split by `result="ok"` and `result="failed"`.
    pub fn outcomes(&mut self, name: &str, help: &str, ok: &Counter, failed: &Counter) {
        self.family(name, help, "counter");
        self.sample(name, &[("result", "ok")], ok.get() as f64);
        self.sample(name, &[("result", "failed")], failed.get() as f64);
    }

    /// The page.
    pub fn finish(self) -> String {
        self.out
    }
}

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_route_and_status_and_skips_zeroes() {
        let http = HttpCounts::new(&["a", "b"]);
        http.record(0, 200);
        http.record(0, 200);
        http.record(1, 418);
        http.record(9, 200);
        let mut page = Exposition::default();
        http.render(&mut page, "x");
        let text = page.finish();
        assert!(
            text.contains("x_http_requests_total{route=\"a\",status=\"200\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("x_http_requests_total{route=\"b\",status=\"other\"} 1\n"),
            "{text}"
        );
        assert_eq!(text.lines().filter(|l| !l.starts_with('#')).count(), 2);
    }

    #[test]
    fn label_values_are_escaped() {
        let mut page = Exposition::default();
        page.sample("m", &[("l", "a\"b\\c\nd")], 1.5);
        assert_eq!(page.finish(), "m{l=\"a\\\"b\\\\c\\nd\"} 1.5\n");
    }
}
