//! DNS for the registry: `NAME.service.DOMAIN.` A/AAAA and `_NAME._tcp.service.DOMAIN.` SRV over
//! UDP and TCP on one port, on our own codec.
//!
//! The module does not know the registry: it asks a [`Source`] for a service's healthy targets, and
//! the registry implements it (under its lock; the call must be quick and must not block).
//!
//! # Implementation
//! - [`wire`]: header, types, classes, rcodes, names in wire form.
//! - [`decode`]: the strict, bounded query parser, and a general message parser for tests and fuzzing.
//! - [`encode`]: responses within a size limit, with compression pointers and the truncation rule
//!   (TC only when answers are left out, RFC 2181 §9).
//! - [`answer()`]: the protocol logic as a pure function; its module docs tabulate every case.
//! - [`DnsServer`]: UDP workers and a TCP accept loop (async-net, [`crate::rt`] tasks).
//! - [`DnsMetrics`]: counters for `/metrics`.
//!
//! Consul's DNS interface is the model (port 8600, TTL 0, answers shuffled, `<hex>.addr.` SRV
//! targets with their addresses in the additional section, NXDOMAIN with an SOA when nothing is
//! healthy), with one departure: Consul cuts UDP answers silently unless `enable_truncate`, and users
//! lost replicas to it (gitlab-org/gitlab-ee#8979), so here TC is always set when answers are cut.
//!
//! # Examples
//! ```no_run
//! use mini::dns::{DnsConfig, DnsMetrics, DnsServer, HostKind, Lookup, Source, Endpoint};
//! use std::sync::Arc;
//!
//! struct Static;
//! impl Source for Static {
//!     fn lookup(&self, service: &str, tag: Option<&str>, out: &mut Vec<Endpoint>) -> Lookup {
//!         if service != "add" || tag.is_some_and(|t| t != "v2") {
//!             return Lookup::Unknown;
//!         }
//!         out.push(Endpoint { host: HostKind::parse("127.0.0.1"), port: 1111, weight: 1 });
//!         Lookup::Found
//!     }
//! }
//!
//! mini::rt::block_on(async {
//!     let config = DnsConfig { listen: "127.0.0.1:8600".parse().unwrap(), ..DnsConfig::default() };
//!     let server = DnsServer::bind(&config).await?;
//!     // dig @127.0.0.1 -p 8600 add.service.mini  /  dig @127.0.0.1 -p 8600 _add._tcp.service.mini SRV
//!     server.run(Arc::new(Static), Arc::new(DnsMetrics::default())).await;
//!     Ok::<(), std::io::Error>(())
//! });
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

pub mod answer;
pub mod decode;
pub mod encode;
mod metrics;
mod server;
pub mod wire;

pub use answer::{answer, Reply, Transport, Zone};
pub use metrics::DnsMetrics;
pub use server::DnsServer;

/// The random generator [`answer()`] shuffles with (fastrand's; seed it for repeatable answers).
pub use fastrand::Rng;

/// The default domain (`NAME.service.mini.`).
pub const DEFAULT_DOMAIN: &str = "mini";
/// How long a TCP connection may wait for its next query (and its first). RFC 7766 §6.2.3: servers
/// may use idle timeouts "of the order of seconds"; BIND's `tcp-idle-timeout` and Unbound's
/// `tcp-idle-timeout` default to 30 s, and a registry's clients re-ask often, so 10 s.
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the rest of a query may take once its length has arrived (as the HTTP server's head
/// timeout: a slow sender holds a connection no longer than this per query).
pub const TCP_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a reply may take to be written before a peer that does not read is dropped.
pub const TCP_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Open TCP connections past which new ones are closed at once: BIND's `tcp-clients` default (150).
/// UDP carries nearly all queries; TCP is the fallback after TC.
pub const TCP_MAX_CONNECTIONS: usize = 150;
/// Longest query accepted over TCP; a longer length prefix closes the connection. A query is one
/// question (at most 255 + 4 bytes) and an OPT record; 4096 leaves room for EDNS options, as the
/// UDP payload we advertise does.
pub const TCP_MAX_QUERY: usize = encode::UDP_MAX_PAYLOAD;

/// Where an instance is reached.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HostKind {
    /// An IPv4 address: A records, and `<8 hex>.addr.DOMAIN.` SRV targets.
    Ipv4(Ipv4Addr),
    /// An IPv6 address: AAAA records, and `<32 hex>.addr.DOMAIN.` SRV targets.
    Ipv6(Ipv6Addr),
    /// A host name: only an SRV target (itself, with a trailing dot), never an A/AAAA answer.
    Name(String),
}

impl HostKind {
    /// An address when `host` is one (IPv6 with or without brackets), else a name.
    ///
    /// ```
    /// use mini::dns::HostKind;
    /// assert_eq!(HostKind::parse("10.0.0.1"), HostKind::Ipv4([10, 0, 0, 1].into()));
    /// assert_eq!(HostKind::parse("[::1]"), HostKind::Ipv6(std::net::Ipv6Addr::LOCALHOST));
    /// assert_eq!(HostKind::parse("db.example"), HostKind::Name("db.example".into()));
    /// ```
    pub fn parse(host: &str) -> HostKind {
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        match bare.parse::<IpAddr>() {
            Ok(IpAddr::V4(v4)) => HostKind::Ipv4(v4),
            Ok(IpAddr::V6(v6)) => HostKind::Ipv6(v6),
            Err(_) => HostKind::Name(host.to_string()),
        }
    }
}

/// One healthy, non-draining instance as DNS shows it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    /// Its address or host name.
    pub host: HostKind,
    /// Its port (SRV only).
    pub port: u16,
    /// Its weight, sent as the SRV weight (RFC 2782; HAProxy uses `(w + 255) / 256`).
    pub weight: u16,
}

/// Whether a service exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// No such service (NXDOMAIN).
    Unknown,
    /// The service exists; the targets pushed are its healthy ones (none is NXDOMAIN too, as
    /// Consul answers).
    Found,
}

/// What the registry implements to feed DNS answers.
///
/// `service` and `tag` arrive in ASCII lower case (DNS names are case-insensitive), so compare them
/// with `eq_ignore_ascii_case` when registered names may hold capitals. Push only healthy,
/// non-draining instances (with `tag` among their tags when given); duplicates are merged and the
/// order is shuffled here. The call runs on the executor's threads for every query: it must be
/// synchronous and quick (a lock, a copy).
///
/// ```
/// use mini::dns::{HostKind, Lookup, Source, Endpoint};
/// struct Fixed(Vec<Endpoint>);
/// impl Source for Fixed {
///     fn lookup(&self, service: &str, _tag: Option<&str>, out: &mut Vec<Endpoint>) -> Lookup {
///         if !service.eq_ignore_ascii_case("add") {
///             return Lookup::Unknown;
///         }
///         out.extend(self.0.iter().cloned());
///         Lookup::Found
///     }
/// }
/// ```
pub trait Source {
    /// Pushes the service's healthy targets (tag-filtered when `tag` is given) onto `out`.
    fn lookup(&self, service: &str, tag: Option<&str>, out: &mut Vec<Endpoint>) -> Lookup;
}

/// Timeouts and the connection cap of the TCP side; the defaults are the `TCP_*` constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpLimits {
    /// Wait for a connection's next query length.
    pub idle_timeout: Duration,
    /// Wait for the rest of a query.
    pub read_timeout: Duration,
    /// Wait for a reply to be written.
    pub write_timeout: Duration,
    /// Open connections past which new ones are closed at once.
    pub max_connections: usize,
}

impl Default for TcpLimits {
    fn default() -> Self {
        TcpLimits {
            idle_timeout: TCP_IDLE_TIMEOUT,
            read_timeout: TCP_READ_TIMEOUT,
            write_timeout: TCP_WRITE_TIMEOUT,
            max_connections: TCP_MAX_CONNECTIONS,
        }
    }
}

/// `--dns ADDR [--dns-domain D] [--dns-ttl T]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// Where UDP and TCP listen (default 127.0.0.1:8600, Consul's port; port 0: any free port, the
    /// same for both).
    pub listen: SocketAddr,
    /// The domain served (`mini`: `NAME.service.mini.`).
    pub domain: String,
    /// TTL of every record in seconds (0 as Consul: resolvers re-ask every time).
    pub ttl: u32,
    /// TCP timeouts and cap.
    pub limits: TcpLimits,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8600)),
            domain: DEFAULT_DOMAIN.to_string(),
            ttl: 0,
            limits: TcpLimits::default(),
        }
    }
}

#[cfg(test)]
mod tests;
