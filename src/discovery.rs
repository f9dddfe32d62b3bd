//! Reading a service from the registry: one listing, or a watch that returns when it changes; the
//! instance events between two listings (what `mini watch` prints); and [`Discovery`], a watched local
//! copy that a long-running caller picks from without asking the registry per call.
//!
//! Listings are read in their JSON form ([`proto::decode_listing`]), the one the registry's routes
//! render with [`proto::encode_listing`]; the text form is for people. A draining instance is listed
//! but never offered to the balancer, and each instance's `weight` goes with it.

use crate::balance::{Balancer, Strategy, EJECT_AFTER};
use crate::http::client::{Client, ClientConfig, ClientError};
use crate::proto::{self, Listing, ListingError, ServiceName};
use crate::rt;
use crate::spec::Spec;
use smol::channel::{Receiver, Sender};
use smol::Timer;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::time::Instant;

/// One service's instances as the registry listed them, with the index of that listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The registry's change index for the service (also its `X-Mini-Index`).
    pub index: u64,
    /// Address → what the listing says of it.
    pub instances: BTreeMap<String, Seen>,
}

/// One instance of a [`Snapshot`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    /// Its probes pass (not excluded).
    pub healthy: bool,
    /// Marked draining: listed, not to be called.
    pub draining: bool,
    /// Its check, tags, meta and weight.
    pub spec: Spec,
}

impl Seen {
    /// A healthy instance, not draining, with the default spec.
    pub fn healthy() -> Seen {
        Seen {
            healthy: true,
            ..Seen::default()
        }
    }

    /// Whether it may be called: healthy and not draining.
    pub fn callable(&self) -> bool {
        self.healthy && !self.draining
    }
}

impl Snapshot {
    /// Callable addresses (healthy, not draining), in order.
    pub fn healthy(&self) -> Vec<String> {
        self.weighted().into_iter().map(|(a, _)| a).collect()
    }

    /// Callable addresses with their weights, in order.
    pub fn weighted(&self) -> Vec<(String, u32)> {
        (self.instances.iter())
            .filter(|(_, seen)| seen.callable())
            .map(|(a, seen)| (a.clone(), u32::from(seen.spec.weight)))
            .collect()
    }

    /// Reads the JSON form of a listing (the body of [`proto::listing_target`]).
    ///
    /// ```
    /// let body = br#"{"service":"add","index":7,"instances":[
    ///     {"addr":"127.0.0.1:1","health":"healthy","weight":3},{"addr":"127.0.0.1:2","health":"excluded"},
    ///     {"addr":"127.0.0.1:3","health":"healthy","draining":true}]}"#;
    /// let s = mini::discovery::Snapshot::read(body).unwrap();
    /// assert_eq!(s.weighted(), [("127.0.0.1:1".to_string(), 3)]);
    /// assert_eq!((s.index, s.instances.len()), (7, 3));
    /// ```
    pub fn read(body: &[u8]) -> Result<Snapshot, ListingError> {
        proto::decode_listing(body).map(Snapshot::from)
    }
}

impl From<Listing> for Snapshot {
    fn from(listing: Listing) -> Snapshot {
        let seen =
            (listing.instances.into_iter().zip(listing.specs)).map(|((addr, healthy), s)| {
                let seen = Seen {
                    healthy,
                    draining: s.draining,
                    spec: s.spec,
                };
                (addr, seen)
            });
        Snapshot {
            index: listing.index,
            instances: seen.collect(),
        }
    }
}

/// A change of one instance between two snapshots (what `mini watch` prints).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceEvent {
    /// A new instance, with what it is.
    Added(String, Seen),
    /// An instance that is gone (deregistered or expired).
    Removed(String),
    /// An instance whose health flipped.
    Health(String, bool),
    /// An instance marked draining (`true`) or back in rotation.
    Draining(String, bool),
    /// An instance that re-registered with another check, tags, meta or weight.
    Spec(String, Spec),
}

impl fmt::Display for InstanceEvent {
    /// `+ ADDR healthy[ draining] weight=N check=C[ tags=..][ meta=..]`, `- ADDR removed`,
    /// `~ ADDR healthy|excluded`, `~ ADDR draining|undrained`, `~ ADDR weight=N check=C ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = |ok: &bool| proto::health_word(*ok);
        match self {
            InstanceEvent::Added(a, seen) => {
                let draining = if seen.draining { " draining" } else { "" };
                let (health, spec) = (word(&seen.healthy), seen.spec.describe());
                write!(f, "+ {a} {health}{draining} {spec}")
            }
            InstanceEvent::Removed(a) => write!(f, "- {a} removed"),
            InstanceEvent::Health(a, ok) => write!(f, "~ {a} {}", word(ok)),
            InstanceEvent::Draining(a, true) => write!(f, "~ {a} draining"),
            InstanceEvent::Draining(a, false) => write!(f, "~ {a} undrained"),
            InstanceEvent::Spec(a, spec) => write!(f, "~ {a} {}", spec.describe()),
        }
    }
}

/// The events that turn `old` into `new`.
///
/// ```
/// use mini::discovery::{diff, InstanceEvent, Seen, Snapshot};
/// let (up, down) = (Seen::healthy(), Seen::default());
/// let old = Snapshot { index: 1, instances: [("a:1".into(), up.clone()), ("b:2".into(), up.clone())].into() };
/// let new = Snapshot { index: 2, instances: [("a:1".into(), down), ("c:3".into(), up.clone())].into() };
/// assert_eq!(diff(&old, &new), [
///     InstanceEvent::Health("a:1".into(), false),
///     InstanceEvent::Removed("b:2".into()),
///     InstanceEvent::Added("c:3".into(), up),
/// ]);
/// ```
pub fn diff(old: &Snapshot, new: &Snapshot) -> Vec<InstanceEvent> {
    let mut events = Vec::new();
    for (addr, was) in &old.instances {
        let Some(now) = new.instances.get(addr) else {
            events.push(InstanceEvent::Removed(addr.clone()));
            continue;
        };
        if now.spec != was.spec {
            events.push(InstanceEvent::Spec(addr.clone(), now.spec.clone()));
        }
        if now.draining != was.draining {
            events.push(InstanceEvent::Draining(addr.clone(), now.draining));
        }
        if now.healthy != was.healthy {
            events.push(InstanceEvent::Health(addr.clone(), now.healthy));
        }
    }
    for (addr, seen) in &new.instances {
        if !old.instances.contains_key(addr) {
            events.push(InstanceEvent::Added(addr.clone(), seen.clone()));
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
    /// It answered 200 with something that is not the JSON form of a listing.
    BadListing(String, ListingError),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Unreachable(addr, e) => write!(f, "registry {addr} unreachable: {e}"),
            FetchError::Status(status, body) => write!(f, "registry answered {status}: {body}"),
            FetchError::BadListing(addr, e) => write!(f, "registry {addr} answered {e}"),
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
    service: &ServiceName,
    after: Option<u64>,
    wait: Duration,
    bearer: &Option<String>,
) -> Result<Snapshot, FetchError> {
    let target = match after {
        None => proto::listing_target(service),
        Some(index) => proto::watch_target(service, index, wait),
    };
    let resp = http
        .call("GET", registry, &target, bearer.as_deref())
        .await
        .map_err(|e| FetchError::Unreachable(registry.to_string(), e))?;
    if resp.status != 200 {
        return Err(FetchError::Status(
            resp.status,
            resp.text().trim_end().to_string(),
        ));
    }
    Snapshot::read(&resp.body).map_err(|e| FetchError::BadListing(registry.to_string(), e))
}

/// How long each watch of a [`Discovery`] waits at the registry before it answers anyway.
pub const WATCH_WAIT: Duration = Duration::from_secs(30);
/// The HTTP client for watches: its request timeout outlasts [`WATCH_WAIT`] plus the registry's
/// jitter (up to 1/16 of the wait) with room to spare.
pub fn watch_client() -> Client {
    Client::new(ClientConfig {
        connect_timeout: Duration::from_secs(2),
        request_timeout: WATCH_WAIT + WATCH_WAIT / 8 + Duration::from_secs(5),
    })
}

/// Pause of a [`Discovery`]'s watch after a round in which every registry failed once.
pub const ALL_FAILED_PAUSE: Duration = Duration::from_millis(500);

/// A cached copy of one service's healthy instances, kept current by a watch on the registry (failing
/// over between registries), with a [`Balancer`] that picks among them locally.
///
/// A long-running caller asks the registry once and then only when something changes, not per call;
/// picks never wait on the network. Dropping it stops the watch.
///
/// ```no_run
/// use mini::balance::Strategy;
/// use mini::discovery::Discovery;
/// use mini::proto::ServiceName;
/// mini::rt::block_on(async {
///     let add = ServiceName::default();
///     let adders = Discovery::start(&["127.0.0.1:6666".to_string()], &add, Strategy::P2c, None);
///     if adders.ready(std::time::Duration::from_secs(2)).await {
///         println!("would call {:?}", adders.pick(&[]));
///     }
/// });
/// ```
#[derive(Debug)]
pub struct Discovery {
    shared: Arc<Watched>,
    ready: Receiver<()>,
    _watch: smol::Task<()>,
}

#[derive(Debug)]
struct Watched {
    service: ServiceName,
    balancer: Mutex<Balancer>,
    has_snapshot: AtomicBool,
}

impl Watched {
    fn balancer(&self) -> std::sync::MutexGuard<'_, Balancer> {
        rt::lock(&self.balancer)
    }
}

impl Discovery {
    /// Starts watching `service` through `registries` (tried in turn when one fails).
    pub fn start(
        registries: &[String],
        service: &ServiceName,
        strategy: Strategy,
        bearer: Option<String>,
    ) -> Discovery {
        let shared = Arc::new(Watched {
            service: service.clone(),
            balancer: Mutex::new(Balancer::new(strategy)),
            has_snapshot: AtomicBool::new(false),
        });
        let (tx, ready) = smol::channel::bounded(1);
        let watch = rt::spawn(keep_watching(
            shared.clone(),
            registries.to_vec(),
            bearer,
            tx,
        ));
        Discovery {
            shared,
            ready,
            _watch: watch,
        }
    }

    /// The service watched.
    pub fn service(&self) -> &ServiceName {
        &self.shared.service
    }

    /// Waits at most `limit` for the first listing; false if none arrived.
    pub async fn ready(&self, limit: Duration) -> bool {
        if self.shared.has_snapshot.load(Ordering::Acquire) {
            return true;
        }
        rt::timeout(limit, self.ready.recv()).await.is_some()
    }

    /// The callable instances known now (`examples/discovery.rs` prints them).
    pub fn instances(&self) -> Vec<String> {
        self.shared.balancer().instances().to_vec()
    }

    /// Picks an instance not in `exclude` (see [`Balancer::pick`]).
    pub fn pick(&self, exclude: &[String]) -> Option<String> {
        self.shared.balancer().pick(exclude, Instant::now())
    }

    /// Records that a call to `addr` starts.
    pub fn started(&self, addr: &str) {
        self.shared.balancer().start(addr, Instant::now());
    }

    /// Records how a call to `addr` ended (failures may eject it for a while).
    pub fn finished(&self, addr: &str, ok: bool) {
        if self.shared.balancer().finish(addr, ok, Instant::now()) {
            crate::log::line(
                "client",
                format_args!("{addr} ejected after {EJECT_AFTER} failures in a row"),
            );
        }
    }

    /// Takes a retry from the budget; false when the budget is spent.
    pub fn try_retry(&self) -> bool {
        self.shared.balancer().try_retry(Instant::now())
    }
}

async fn keep_watching(
    shared: Arc<Watched>,
    registries: Vec<String>,
    bearer: Option<String>,
    ready: Sender<()>,
) {
    let http = watch_client();
    let mut turn = 0;
    let mut after = None;
    let mut failures = 0;
    while !registries.is_empty() {
        let registry = &registries[turn % registries.len()];
        match fetch(&http, registry, &shared.service, after, WATCH_WAIT, &bearer).await {
            Ok(snapshot) => {
                shared.balancer().set_weighted(snapshot.weighted());
                shared.has_snapshot.store(true, Ordering::Release);
                let _ = ready.try_send(());
                after = Some(snapshot.index);
                failures = 0;
            }
            Err(e) => {
                crate::log::line("client", format_args!("watch: {e}"));
                turn += 1;
                after = None;
                failures += 1;
                if failures >= registries.len() {
                    Timer::after(ALL_FAILED_PAUSE).await;
                    failures = 0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(healthy: bool, draining: bool, pairs: &[(&str, &str)]) -> Seen {
        let spec = Spec::parse(pairs.iter().copied(), None).unwrap().spec;
        Seen {
            healthy,
            draining,
            spec,
        }
    }

    #[test]
    fn drains_and_spec_changes_are_events_and_print_on_one_line() {
        let snap = |a: Seen| Snapshot {
            index: 1,
            instances: [("h:1".to_string(), a)].into(),
        };
        let old = snap(seen(true, false, &[]));
        let new = snap(seen(false, true, &[("tag", "v2"), ("weight", "3")]));
        let events = diff(&old, &new);
        let lines: Vec<String> = events.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            lines,
            [
                "~ h:1 weight=3 check=http:/aliveCheck tags=v2",
                "~ h:1 draining",
                "~ h:1 excluded"
            ]
        );
        let added = diff(&Snapshot::default(), &new);
        assert_eq!(
            added[0].to_string(),
            "+ h:1 excluded draining weight=3 check=http:/aliveCheck tags=v2"
        );
        assert_eq!(diff(&new, &old)[1].to_string(), "~ h:1 undrained");
        // Neither draining nor excluded instances are offered; weights go with the others.
        let mut many = new.clone();
        many.instances
            .insert("h:2".into(), seen(true, false, &[("weight", "9")]));
        assert_eq!(many.weighted(), [("h:2".to_string(), 9)]);
    }
}
