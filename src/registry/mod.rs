//! The registry role: a lock-protected [`state::Registry`], the HTTP routes in front of it, and the
//! timers that probe instances and sweep expired leases.
//!
//! The state never sees a socket and the loops never hold the lock across an await: each loop takes a
//! snapshot or applies a result under the lock, and does all waiting outside it.

pub mod auth;
pub mod page;
pub mod probe;
pub mod routes;
mod serve;
pub mod state;
pub mod store;
pub mod watch;

pub use serve::serve;

use crate::http::server::{self, ServerConfig};
use crate::metrics::{Counter, Exposition, HttpCounts};
use async_net::TcpListener;
use state::{Limits, RegisterError, Registered, Registry, Target};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use store::{Store, StoreConfig};

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
    /// never across an await; changes go through the methods below, which also wake watchers.
    pub fn state(&self) -> MutexGuard<'_, Registry> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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
            "Registered instances, by service and health.",
            "gauge",
        );
        for s in &services {
            page.sample(
                "mini_instances",
                &[("service", &s.name), ("health", "healthy")],
                s.live as f64,
            );
            page.sample(
                "mini_instances",
                &[("service", &s.name), ("health", "excluded")],
                (s.total - s.live) as f64,
            );
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
        page.finish()
    }

    /// Registers or renews; a new instance wakes the service's watchers.
    pub fn register(
        &self,
        service: &str,
        addr: &str,
        ttl: Duration,
    ) -> Result<Registered, RegisterError> {
        let result = self.state().register(service, addr, ttl, Instant::now());
        if result == Ok(Registered::New) {
            self.watchers.notify(service);
        }
        result
    }

    /// Deregisters; true if the instance was there (and then watchers are woken).
    pub fn deregister(&self, service: &str, addr: &str) -> bool {
        let removed = self.state().deregister(service, addr);
        if removed {
            self.watchers.notify(service);
        }
        removed
    }

    /// Records a probe result; true if health flipped (and then watchers are woken).
    pub fn mark_probe(&self, service: &str, addr: &str, ok: bool) -> bool {
        let changed = self.state().mark_probe(service, addr, ok, Instant::now());
        if changed {
            self.watchers.notify(service);
        }
        changed
    }

    /// The change index of each named service now, to pass to [`Shared::notify_moved`] after a bulk
    /// update applied straight to the state (an etcd resync or a batch of watch events).
    pub fn indexes<'a>(&self, services: impl IntoIterator<Item = &'a str>) -> Vec<(String, u64)> {
        let state = self.state();
        services
            .into_iter()
            .map(|s| (s.to_string(), state.index(s)))
            .collect()
    }

    /// Wakes the watchers of each service whose index moved since `before`.
    pub fn notify_moved(&self, before: Vec<(String, u64)>) {
        let moved: Vec<String> = {
            let state = self.state();
            before
                .into_iter()
                .filter(|(s, i)| state.index(s) != *i)
                .map(|(s, _)| s)
                .collect()
        };
        for service in moved {
            self.watchers.notify(&service);
        }
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
            started: Instant::now(),
        }
    }
}

/// Runs the registry on an already bound listener: the HTTP server, the prober and the sweeper.
///
/// ```no_run
/// mini::rt::block_on(async {
///     let listener = async_net::TcpListener::bind("127.0.0.1:0").await?;
///     mini::registry::run(listener, mini::registry::Config::default()).await;
///     Ok::<(), std::io::Error>(())
/// });
/// ```
pub async fn run(listener: TcpListener, config: Config) {
    let id = match listener.local_addr() {
        Ok(addr) => format!("{addr}/{:08x}", fastrand::u32(..)),
        Err(_) => format!("registry/{:08x}", fastrand::u32(..)),
    };
    let store = Store::open(&config.store, id, config.ttl);
    let shared = Arc::new(Shared::with_store(config, store));
    shared.store.start(&shared);
    crate::rt::spawn(probe::probe_loop(shared.clone())).detach();
    if shared.store.sweeps() {
        crate::rt::spawn(probe::sweep_loop(shared.clone())).detach();
    }
    let server_config = shared.config.server;
    server::serve(
        listener,
        Arc::new(routes::Routes::new(shared)),
        server_config,
    )
    .await;
}
