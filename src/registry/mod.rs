//! The registry role: a lock-protected [`state::Registry`], the HTTP routes in front of it, and the
//! timers that probe instances and sweep expired leases.
//!
//! The state never sees a socket and the loops never hold the lock across an await: each loop takes a
//! snapshot or applies a result under the lock, and does all waiting outside it.
//!
//! [`Shared`] is the one driver of changes: it applies each [`state::Change`] to the state under one
//! lock, wakes the watchers of the services that moved once the lock is released, and writes the
//! change to the [`store`], which never sees the state. [`run`] stops on SIGINT or SIGTERM.

pub mod auth;
mod doors;
mod page;
mod probe;
pub mod routes;
mod serve;
pub mod state;
pub mod store;
pub mod watch;
mod weighted;

pub use serve::serve;

use crate::http::server::{self, ServerConfig};
use crate::log;
use crate::metrics::{Counter, Exposition, HttpCounts};
use crate::spec::Spec;
use async_net::TcpListener;
use async_signal::{Signal, Signals};
use smol::stream::StreamExt;
use state::{Applied, Change, Limits, Outcome, Registered, Registry, Standing, Target};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use store::{Feed, Store, StoreConfig, StoreError};

/// The address the original registry listened on; old nodes and clients expect it.
pub const DEFAULT_LISTEN: &str = crate::proto::DEFAULT_REGISTRY;
/// How often every instance is probed (the original design's 5 s).
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// How long one probe may take before it counts as failed.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Lease of a registration: three heartbeats of 5 s, so one lost beat never drops a live instance.
pub const DEFAULT_TTL: Duration = Duration::from_secs(15);
/// After a start, how long an empty lookup answers 503 (retry) instead of 400 (none): one beat of the
/// original design, the time every live instance needs to register again after a registry restart.
pub const DEFAULT_WARMUP: Duration = Duration::from_secs(5);
/// Longest TTL a caller may ask for with `?ttl=`.
pub const MAX_TTL: Duration = Duration::from_secs(3600);
/// Shortest etcd session lease: etcd 3.4 raises any shorter grant to its minimum lease TTL,
/// 1.5 election timeouts of its defaults (3 x 10 ticks / 2 x 100 ms = 1.5 s), rounded up to 2 s.
pub const SESSION_TTL_MIN: Duration = Duration::from_secs(2);

/// Everything `mini registry` is told on its command line.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen.
    pub listen: String,
    /// Time between probe rounds.
    pub probe_interval: Duration,
    /// Time one probe may take.
    pub probe_timeout: Duration,
    /// Lease given to registrations that do not ask for one.
    pub ttl: Duration,
    /// Time after start during which an empty lookup is a 503 to retry, not a 400.
    pub warmup: Duration,
    /// Size caps.
    pub limits: Limits,
    /// HTTP server timeouts and connection cap.
    pub server: ServerConfig,
    /// Who may register (and read).
    pub access: auth::Access,
    /// Where registrations live (`--store`): memory, or etcd shared by several registries.
    pub store: StoreConfig,
    /// The DNS door (`--dns`), off when `None`.
    pub dns: Option<crate::dns::DnsConfig>,
    /// The datacenter Consul's API reports (`--datacenter`).
    pub datacenter: String,
}

impl Config {
    /// The etcd session lease this registry's instance keys are attached to (`--store etcd`): the
    /// shorter of `--ttl` and the probe bound (`--probe-interval` + `--probe-timeout`), at least
    /// [`SESSION_TTL_MIN`]. A dead owner's keys outlive it by at most this, so an instance whose
    /// adder and owner both die is gone everywhere within its TTL plus the probe bound.
    ///
    /// ```
    /// let config = mini::registry::Config::default();
    /// assert_eq!(config.session_ttl(), std::time::Duration::from_secs(7));
    /// ```
    pub fn session_ttl(&self) -> Duration {
        let probe_bound = self.probe_interval.saturating_add(self.probe_timeout);
        self.ttl.min(probe_bound).max(SESSION_TTL_MIN)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN.to_string(),
            probe_interval: DEFAULT_PROBE_INTERVAL,
            probe_timeout: DEFAULT_PROBE_TIMEOUT,
            ttl: DEFAULT_TTL,
            warmup: DEFAULT_WARMUP,
            limits: Limits::default(),
            server: ServerConfig::default(),
            access: auth::Access::default(),
            store: StoreConfig::default(),
            dns: None,
            datacenter: crate::consul::DEFAULT_DATACENTER.to_string(),
        }
    }
}

/// What the routes and the loops share: the state behind its one lock, and the configuration.
#[derive(Debug)]
pub struct Shared {
    state: Mutex<Registry>,
    /// Watchers waiting for a service to change.
    pub watchers: Arc<watch::Watchers>,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// The configuration the registry started with.
    pub config: Config,
    /// Where writes go: the local state itself, or etcd (the local state is then its copy).
    pub store: Store,
}

impl Shared {
    /// Wraps a fresh, empty registry kept in memory.
    pub fn new(config: Config) -> Shared {
        Shared::with_store(config, Store::Memory)
    }

    /// Wraps a fresh, empty registry whose writes go to `store`.
    pub fn with_store(config: Config, store: Store) -> Shared {
        Shared {
            state: Mutex::new(Registry::new(config.limits)),
            watchers: Arc::default(),
            metrics: Metrics::default(),
            config,
            store,
        }
    }

    /// Locks the state for reading or picking. Callers keep the guard inside one synchronous block,
    /// never across an await, and take no other lock while they hold it; changes go through
    /// [`Shared::apply`] and the methods after it, which also wake watchers.
    pub fn state(&self) -> MutexGuard<'_, Registry> {
        crate::rt::lock(&self.state)
    }

    /// The `/metrics` page: counters, then per-service gauges read under the lock once.
    pub fn render_metrics(&self) -> String {
        let services = self.state().services();
        let m = &self.metrics;
        let mut page = Exposition::default();
        m.http.render(&mut page, "mini");
        page.single(
            "mini_heartbeats_total",
            "Registrations and renewals accepted.",
            "counter",
            m.heartbeats.get() as f64,
        );
        page.outcomes(
            "mini_probes_total",
            "Health probes, by result.",
            &m.probes_ok,
            &m.probes_failed,
        );
        page.single(
            "mini_expired_total",
            "Instances dropped because their lease expired.",
            "counter",
            m.expired.get() as f64,
        );
        page.family(
            "mini_picks_total",
            "Instances handed out by lookups, by service.",
            "counter",
        );
        for s in &services {
            page.sample("mini_picks_total", &[("service", &s.name)], s.picks as f64);
        }
        page.family(
            "mini_instances",
            "Registered instances, by service and health (healthy: pickable; excluded by a probe; draining).",
            "gauge",
        );
        for s in &services {
            let by_health = [
                (Standing::Healthy, s.live),
                (Standing::Excluded, s.excluded),
                (Standing::Draining, s.draining),
            ];
            for (standing, n) in by_health {
                let labels = [("service", s.name.as_str()), ("health", standing.word())];
                page.sample("mini_instances", &labels, n as f64);
            }
        }
        page.single(
            "mini_watchers",
            "Watch requests waiting for a change.",
            "gauge",
            self.watchers.count() as f64,
        );
        page.single(
            "mini_uptime_seconds",
            "Seconds since the registry started.",
            "gauge",
            m.started.elapsed().as_secs_f64(),
        );
        let mut page = page.finish();
        if self.config.dns.is_some() {
            m.dns.render(&mut page);
        }
        page
    }

    /// The one way changes reach the local state: locks it once, applies `changes` in order,
    /// releases it, then wakes the watchers of every service whose index moved.
    pub fn apply(&self, changes: &[Change<'_>]) -> Applied {
        let applied = self.state().apply(changes, Instant::now());
        self.notify(&applied.moved);
        applied
    }

    /// [`Shared::apply`] for one change, allocating nothing when nothing moved (a renewal).
    fn apply_one(&self, change: &Change<'_>) -> Outcome {
        self.apply_then(change, |_| ()).0
    }

    /// [`Shared::apply_one`], then `read` of the state under the same lock.
    fn apply_then<T>(
        &self,
        change: &Change<'_>,
        read: impl FnOnce(&Registry) -> T,
    ) -> (Outcome, T) {
        let mut moved = Vec::new();
        let (outcome, read) = {
            let mut state = self.state();
            let outcome = state.apply_one(change, Instant::now(), &mut moved);
            (outcome, read(&state))
        };
        self.notify(&moved);
        (outcome, read)
    }

    fn notify(&self, moved: &[String]) {
        for service in moved {
            self.watchers.notify(service);
        }
    }

    /// Registers or renews: in the local state at once (so this registry hands the instance out
    /// immediately), then in the store. `spec` is the instance's spec, or `None` to keep the one
    /// it has (`POST /registerList`). A refusal by the local limits writes nothing; a store failure
    /// undoes a new local registration or a spec change and is reported, never swallowed.
    pub async fn register(
        &self,
        service: &str,
        addr: &str,
        ttl: Duration,
        spec: Option<Arc<Spec>>,
    ) -> Result<Registered, StoreError> {
        // What a spec change replaces, to put it back if the store refuses the new one (so that the
        // next beat, finding the old spec, is a change again and is written).
        // Only a shared store's write can fail; with the memory store no copy is needed.
        let shared = self.store.is_shared();
        let before = (shared && spec.is_some())
            .then(|| self.state().record(service, addr))
            .flatten();
        let upsert = Change::Upsert {
            service: service.into(),
            addr: addr.into(),
            ttl,
            spec,
            draining: None,
        };
        // The record is what the store writes; the memory store writes nothing (a beat then looks
        // the instance up once, not three times).
        let (outcome, record) = self.apply_then(&upsert, |s| {
            shared.then(|| s.record(service, addr)).flatten()
        });
        let local = match outcome {
            Outcome::Registered(r) => r,
            Outcome::Refused(e) => return Err(StoreError::Refused(e)),
            _ => Registered::Renewed, // an upsert's outcome is one of the two above
        };
        if !shared {
            return Ok(local);
        }
        let record = record.unwrap_or_default();
        // A plain renewal only renews the lease; anything new is written (also a local New whose
        // key etcd still holds: its value may be older than this registration).
        let changed = local != Registered::Renewed;
        match self.store.put(service, addr, &record, changed).await {
            Ok(true) if local == Registered::Updated => Ok(local),
            Ok(true) => Ok(Registered::New),
            Ok(false) => Ok(local),
            Err(e) => {
                match (local, before) {
                    (Registered::New, _) => {
                        self.apply_one(&Change::remove(service, addr));
                    }
                    (Registered::Updated, Some(old)) => {
                        self.apply_one(&Change::upsert(service, addr, old.ttl).with_spec(old.spec));
                    }
                    _ => {}
                }
                Err(e)
            }
        }
    }

    /// Marks an instance draining (or not): locally at once (no pick returns it from here on), then
    /// in the store, for every registry. `Ok(None)` if it is not registered here; else whether the
    /// mark flipped. If the store cannot record it, the local flip is undone and the error reported.
    pub async fn drain(
        &self,
        service: &str,
        addr: &str,
        draining: bool,
    ) -> Result<Option<bool>, StoreError> {
        let change = Change::drain(service, addr, draining);
        let (outcome, record) = self.apply_then(&change, |s| s.record(service, addr));
        let (Outcome::Drained(Some(flipped)), Some(record)) = (outcome, record) else {
            return Ok(None);
        };
        if flipped {
            if let Err(e) = self.store.put(service, addr, &record, true).await {
                self.apply_one(&Change::drain(service, addr, !draining));
                return Err(e);
            }
        }
        Ok(Some(flipped))
    }

    /// Deregisters from the store, then locally; whether the instance was registered in either.
    pub async fn deregister(&self, service: &str, addr: &str) -> Result<bool, StoreError> {
        let stored = self.store.delete(service, addr).await?;
        let local = self.apply_one(&Change::remove(service, addr));
        Ok(stored || local.moved())
    }

    /// Records a probe result: locally, and when health flipped, in the store for every registry.
    /// Returns whether health flipped. If the store cannot record it, the local flip is undone so
    /// the next round tries again.
    pub async fn record_probe(&self, target: &Target, ok: bool) -> bool {
        let (service, addr) = (target.service.as_str(), &*target.addr);
        if !self.apply_one(&Change::health(service, addr, ok)).moved() {
            return false;
        }
        if self.store.write_health(service, addr, ok).await.is_err() {
            self.apply_one(&Change::health(service, addr, !ok));
            return false;
        }
        true
    }

    /// Drops expired leases and wakes the watchers of every service that lost one.
    pub fn expire(&self) -> Vec<Target> {
        let expired = self.state().expire(Instant::now());
        for t in &expired {
            self.metrics.expired.inc();
            self.watchers.notify(&t.service);
        }
        expired
    }
}

/// The registry's counters.
#[derive(Debug)]
pub struct Metrics {
    /// Requests by route and status.
    pub http: HttpCounts,
    /// Accepted registrations and renewals.
    pub heartbeats: Counter,
    /// Probes answered 200.
    pub probes_ok: Counter,
    /// Probes that failed.
    pub probes_failed: Counter,
    /// Leases that expired.
    pub expired: Counter,
    /// DNS queries and answers (when `--dns` is on).
    pub dns: Arc<crate::dns::DnsMetrics>,
    /// When the registry started.
    pub started: Instant,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            http: HttpCounts::new(routes::ROUTE_NAMES),
            heartbeats: Counter::default(),
            probes_ok: Counter::default(),
            probes_failed: Counter::default(),
            expired: Counter::default(),
            dns: Arc::default(),
            started: Instant::now(),
        }
    }
}

/// Runs the registry on an already bound listener (the HTTP server, the prober, the sweeper and the
/// store's feed) until SIGINT or SIGTERM: then it stops accepting, gives up leadership with `--store
/// etcd`, and returns, so the process can exit 0. The handlers are installed before the first
/// connection is accepted, also where the signals were inherited as ignored (a shell's background job).
///
/// ```no_run
/// mini::rt::block_on(async {
///     let listener = async_net::TcpListener::bind("127.0.0.1:0").await?;
///     mini::registry::run(listener, mini::registry::Config::default()).await;
///     Ok::<(), std::io::Error>(())
/// });
/// ```
pub async fn run(listener: TcpListener, config: Config) {
    let signals = Signals::new([Signal::Term, Signal::Int]);
    let stop = async move {
        let mut signals = match signals {
            Ok(signals) => signals,
            Err(e) => {
                log::line(
                    "registry",
                    format_args!("cannot handle SIGINT and SIGTERM ({e}); they will kill it"),
                );
                return smol::future::pending().await;
            }
        };
        while let Some(signal) = signals.next().await {
            let name = match signal {
                Ok(Signal::Int) => "SIGINT",
                Ok(_) => "SIGTERM",
                Err(_) => continue,
            };
            log::line("registry", format_args!("got {name}; stopping"));
            return;
        }
        smol::future::pending().await
    };
    run_until(listener, config, stop).await
}

/// [`run`], stopping when `stop` resolves.
async fn run_until(listener: TcpListener, mut config: Config, stop: impl Future<Output = ()>) {
    let id = match listener.local_addr() {
        Ok(addr) => {
            // What `/v1/status/leader` names: where this registry really listens.
            config.listen = addr.to_string();
            format!("{addr}/{:08x}", fastrand::u32(..))
        }
        Err(_) => format!("registry/{:08x}", fastrand::u32(..)),
    };
    let store = Store::open(&config.store, id, config.ttl, config.session_ttl());
    let shared = Arc::new(Shared::with_store(config, store));
    if let Some(dns) = shared.config.dns.clone() {
        match crate::dns::DnsServer::bind(&dns).await {
            Ok(server) => {
                log::line(
                    "registry",
                    format_args!(
                        "dns on {} (udp and tcp), domain {}",
                        server.local_addr(),
                        dns.domain
                    ),
                );
                crate::rt::spawn(server.run(shared.clone(), shared.metrics.dns.clone())).detach();
            }
            Err(e) => log::line(
                "registry",
                format_args!(
                    "cannot serve dns on {}: {e}; going on without it",
                    dns.listen
                ),
            ),
        }
    }
    if let Some(feed) = shared.store.start() {
        crate::rt::spawn(follow(shared.clone(), feed)).detach();
    }
    crate::rt::spawn(probe::probe_loop(shared.clone())).detach();
    if shared.store.sweeps() {
        crate::rt::spawn(probe::sweep_loop(shared.clone())).detach();
    }
    let server_config = shared.config.server;
    let routes = Arc::new(routes::Routes::new(shared.clone()));
    // Dropping the server's future drops the listener: nothing new is accepted from here on.
    smol::future::or(server::serve(listener, routes, server_config), stop).await;
    shared.store.stop().await;
    log::line("registry", format_args!("stopped"));
}

/// Applies what the store's feed brings (etcd's reads and watch events) to the local copy, forever.
async fn follow(shared: Arc<Shared>, mut feed: Feed) {
    loop {
        let batch = feed.next().await;
        let applied = shared.apply(&batch.changes);
        for _ in 0..batch.expired(&applied) {
            shared.metrics.expired.inc();
        }
        batch.log(&applied);
    }
}
