//! Reading a service from the registry: one listing, or a watch that returns when it changes; the
//! instance events between two listings (what `mini watch` prints); and [`Discovery`], a watched local
//! copy that a long-running caller picks from without asking the registry per call.

use crate::balance::{Balancer, Strategy, EJECT_AFTER};
use crate::http::client::{Client, ClientConfig, ClientError};
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
    let index = resp
        .header("x-mini-index")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok(Snapshot::parse(index, &resp.text()))
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

/// Pause after every registry failed once in a row.
pub const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// A cached copy of one service's healthy instances, kept current by a watch on the registry (failing
/// over between registries), with a [`Balancer`] that picks among them locally.
///
/// A long-running caller asks the registry once and then only when something changes, not per call;
/// picks never wait on the network. Dropping it stops the watch.
///
/// ```no_run
/// use mini::balance::Strategy;
/// use mini::discovery::Discovery;
/// mini::rt::block_on(async {
///     let adders = Discovery::start(&["127.0.0.1:6666".to_string()], "add", Strategy::P2c, None);
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
    service: String,
    balancer: Mutex<Balancer>,
    has_snapshot: AtomicBool,
}

impl Watched {
    fn balancer(&self) -> std::sync::MutexGuard<'_, Balancer> {
        self.balancer.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Discovery {
    /// Starts watching `service` through `registries` (tried in turn when one fails).
    pub fn start(
        registries: &[String],
        service: &str,
        strategy: Strategy,
        bearer: Option<String>,
    ) -> Discovery {
        let shared = Arc::new(Watched {
            service: service.to_string(),
            balancer: Mutex::new(Balancer::new(strategy)),
            has_snapshot: AtomicBool::new(false),
        });
        let (tx, ready) = smol::channel::bounded(1);
        let watch = crate::rt::spawn(keep_watching(
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
    pub fn service(&self) -> &str {
        &self.shared.service
    }

    /// Waits at most `limit` for the first listing; false if none arrived.
    pub async fn ready(&self, limit: Duration) -> bool {
        if self.shared.has_snapshot.load(Ordering::Acquire) {
            return true;
        }
        crate::rt::timeout(limit, self.ready.recv()).await.is_some()
    }

    /// The healthy instances known now.
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
                shared.balancer().set_instances(snapshot.healthy());
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
                    Timer::after(RETRY_PAUSE).await;
                    failures = 0;
                }
            }
        }
    }
}
