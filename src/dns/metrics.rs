//! DNS counters: queries by question type, responses by rcode, dropped queries, truncated answers and
//! refused TCP connections, as relaxed atomics rendered in the Prometheus text format.

use super::answer::Reply;
use super::wire::{rcode, rcode_name, rtype, rtype_name};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// The question types counted one by one; the last slot counts every other type.
const TYPES: [u16; 7] = [
    rtype::A,
    rtype::AAAA,
    rtype::SRV,
    rtype::SOA,
    rtype::NS,
    rtype::ANY,
    0,
];
/// The rcodes sent here; the last slot counts any other.
const RCODES: [u16; 8] = [
    rcode::NOERROR,
    rcode::FORMERR,
    rcode::SERVFAIL,
    rcode::NXDOMAIN,
    rcode::NOTIMP,
    rcode::REFUSED,
    rcode::BADVERS,
    u16::MAX,
];

/// Counters of one DNS server (shared by its UDP and TCP sides).
///
/// ```
/// let m = mini::dns::DnsMetrics::default();
/// m.record(None);
/// let mut page = String::new();
/// m.render(&mut page);
/// assert!(page.contains("mini_dns_dropped_total 1\n"));
/// assert!(page.contains("mini_dns_queries_total{type=\"A\"} 0\n"));
/// ```
#[derive(Debug, Default)]
pub struct DnsMetrics {
    by_type: [AtomicU64; TYPES.len() + 1],
    by_rcode: [AtomicU64; RCODES.len()],
    dropped: AtomicU64,
    truncated: AtomicU64,
    tcp_refused: AtomicU64,
}

impl DnsMetrics {
    /// Counts one query by what [`answer`](super::answer()) made of it (`None`: dropped).
    pub fn record(&self, reply: Option<&Reply>) {
        let Some(reply) = reply else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let t = match reply.qtype {
            None => TYPES.len(),
            Some(t) => TYPES[..TYPES.len() - 1]
                .iter()
                .position(|x| *x == t)
                .unwrap_or(TYPES.len() - 1),
        };
        self.by_type[t].fetch_add(1, Ordering::Relaxed);
        let r = RCODES
            .iter()
            .position(|x| *x == reply.rcode)
            .unwrap_or(RCODES.len() - 1);
        self.by_rcode[r].fetch_add(1, Ordering::Relaxed);
        if reply.truncated {
            self.truncated.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a TCP connection closed at once because the server was at its cap.
    pub fn tcp_refused(&self) {
        self.tcp_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Appends the `mini_dns_*` families (every label value, zeros included) to a metrics page.
    pub fn render(&self, out: &mut String) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        family(
            out,
            "mini_dns_queries_total",
            "DNS queries answered, by question type (none: no readable question).",
        );
        for (i, count) in self.by_type.iter().enumerate() {
            let label = match TYPES.get(i) {
                Some(0) => "other",
                Some(t) => rtype_name(*t),
                None => "none",
            };
            let _ = writeln!(
                out,
                "mini_dns_queries_total{{type=\"{label}\"}} {}",
                get(count)
            );
        }
        family(
            out,
            "mini_dns_responses_total",
            "DNS responses sent, by rcode.",
        );
        for (code, count) in RCODES.iter().zip(&self.by_rcode) {
            let label = rcode_name(*code);
            let _ = writeln!(
                out,
                "mini_dns_responses_total{{rcode=\"{label}\"}} {}",
                get(count)
            );
        }
        for (name, help, count) in [
            (
                "mini_dns_dropped_total",
                "DNS messages dropped unanswered (shorter than a header, or responses).",
                &self.dropped,
            ),
            (
                "mini_dns_truncated_total",
                "DNS responses sent with TC set (answers left out).",
                &self.truncated,
            ),
            (
                "mini_dns_tcp_refused_total",
                "DNS TCP connections closed at once at the connection cap.",
                &self.tcp_refused,
            ),
        ] {
            family(out, name, help);
            let _ = writeln!(out, "{name} {}", get(count));
        }
    }
}

fn family(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(qtype: Option<u16>, rcode: u16, truncated: bool) -> Reply {
        Reply {
            bytes: Vec::new(),
            qtype,
            rcode,
            truncated,
        }
    }

    #[test]
    fn counts_by_type_and_rcode() {
        let m = DnsMetrics::default();
        m.record(Some(&reply(Some(rtype::A), rcode::NOERROR, false)));
        m.record(Some(&reply(Some(rtype::A), rcode::NXDOMAIN, true)));
        m.record(Some(&reply(Some(99), 9, false)));
        m.record(Some(&reply(None, rcode::FORMERR, false)));
        m.tcp_refused();
        let mut page = String::new();
        m.render(&mut page);
        for line in [
            "mini_dns_queries_total{type=\"A\"} 2\n",
            "mini_dns_queries_total{type=\"other\"} 1\n",
            "mini_dns_queries_total{type=\"none\"} 1\n",
            "mini_dns_responses_total{rcode=\"NOERROR\"} 1\n",
            "mini_dns_responses_total{rcode=\"NXDOMAIN\"} 1\n",
            "mini_dns_responses_total{rcode=\"FORMERR\"} 1\n",
            "mini_dns_responses_total{rcode=\"other\"} 1\n",
            "mini_dns_truncated_total 1\n",
            "mini_dns_tcp_refused_total 1\n",
            "# TYPE mini_dns_dropped_total counter\n",
        ] {
            assert!(page.contains(line), "{line:?} not in\n{page}");
        }
    }
}
