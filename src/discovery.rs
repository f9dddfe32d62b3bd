//! Reading a service from the registry: one listing, or a watch that returns when it changes, and
//! the instance events between two listings (what `mini watch` prints).

use crate::http::client::{Client, ClientError, Request};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// One service's instances as the registry listed them, with the index of that listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The registry's change index for the service (`X-Mini-Index`).
    pub index: u64,
    /// Address → healthy.
    pub instances: BTreeMap<String, bool>,
}

impl Snapshot {
    /// Healthy addresses, in order.
    pub fn healthy(&self) -> Vec<String> {
        self.instances
            .iter()
            .filter(|(_, ok)| **ok)
            .map(|(a, _)| a.clone())
            .collect()
    }

    /// Parses the registry's plain-text listing (`ADDR healthy|excluded ...` lines after a `#` line).
    ///
    /// ```
    /// let s = mini::discovery::Snapshot::parse(7, "# add index=7\n127.0.0.1:1 healthy beat=1ms-ago\n127.0.0.1:2 excluded x\n");
    /// assert_eq!(s.healthy(), ["127.0.0.1:1"]);
    /// assert_eq!(s.instances.len(), 2);
    /// ```
    pub fn parse(index: u64, body: &str) -> Snapshot {
        let instances = body
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let mut words = l.split(' ');
                let addr = words.next().filter(|a| !a.is_empty())?;
                Some((addr.to_string(), words.next() == Some("healthy")))
            })
            .collect();
        Snapshot { index, instances }
    }
}

/// A change between two snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new instance, with its health.
    Added(String, bool),
    /// An instance that is gone (deregistered or expired).
    Removed(String),
    /// An instance whose health flipped.
    Health(String, bool),
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = |ok: &bool| if *ok { "healthy" } else { "excluded" };
        match self {
            Event::Added(a, ok) => write!(f, "+ {a} {}", word(ok)),
            Event::Removed(a) => write!(f, "- {a} removed"),
            Event::Health(a, ok) => write!(f, "~ {a} {}", word(ok)),
        }
    }
}

/// The events that turn `old` into `new`.
///
/// ```
/// use mini::discovery::{diff, Event, Snapshot};
/// let old = Snapshot::parse(1, "a:1 healthy\nb:2 healthy\n");
/// let new = Snapshot::parse(2, "a:1 excluded\nc:3 healthy\n");
/// assert_eq!(diff(&old, &new), [
///     Event::Health("a:1".into(), false),
///     Event::Removed("b:2".into()),
///     Event::Added("c:3".into(), true),
/// ]);
/// ```
pub fn diff(old: &Snapshot, new: &Snapshot) -> Vec<Event> {
    let mut events = Vec::new();
    for (addr, ok) in &old.instances {
        match new.instances.get(addr) {
            None => events.push(Event::Removed(addr.clone())),
            Some(now) if now != ok => events.push(Event::Health(addr.clone(), *now)),
            Some(_) => {}
        }
    }
    for (addr, ok) in &new.instances {
        if !old.instances.contains_key(addr) {
            events.push(Event::Added(addr.clone(), *ok));
        }
    }
    events
}

/// Why a listing could not be read.
#[derive(Debug)]
pub enum FetchError {
    /// The registry could not be reached.
    Unreachable(String, ClientError),
    /// It answered something other than 200.
    Status(u16, String),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Unreachable(addr, e) => write!(f, "registry {addr} unreachable: {e}"),
            FetchError::Status(status, body) => write!(f, "registry answered {status}: {body}"),
        }
    }
}

impl std::error::Error for FetchError {}

/// Lists `service` now (`after == None`), or once its index moves past `after` or `wait` runs out.
///
/// The HTTP client's request timeout must exceed `wait` (plus the registry's jitter of up to 1/16).
pub async fn fetch(
    http: &Client,
    registry: &str,
    service: &str,
    after: Option<u64>,
    wait: Duration,
    bearer: &Option<String>,
) -> Result<Snapshot, FetchError> {
    let target = match after {
        None => format!("/v1/services/{service}"),
        Some(index) => format!(
            "/v1/services/{service}?index={index}&wait={}ms",
            wait.as_millis()
        ),
    };
    let headers = crate::adder::auth_headers(bearer);
    let req = Request {
        method: "GET",
        addr: registry,
        target: &target,
        headers: &headers,
        body: b"",
    };
    let resp = http
        .request(&req)
        .await
        .map_err(|e| FetchError::Unreachable(registry.to_string(), e))?;
    if resp.status != 200 {
        return Err(FetchError::Status(
            resp.status,
            resp.text().trim_end().to_string(),
        ));
    }
    let index = resp
        .header("x-mini-index")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok(Snapshot::parse(index, &resp.text()))
}
