//! The registry role: a lock-protected [`state::Registry`], the HTTP routes in front of it, and the
//! timers that probe instances and sweep expired leases.
//!
//! The state never sees a socket and the loops never hold the lock across an await: each loop takes a
//! snapshot or applies a result under the lock, and does all waiting outside it.

pub mod probe;
pub mod routes;
pub mod state;
pub mod store;

use crate::http::server::{self, ServerConfig};
use async_net::TcpListener;
use state::{Limits, Registry};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use store::{Store, StoreConfig};

/// The address the original registry listened on; old nodes and clients expect it.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:6666";
/// How often every instance is probed (the original design's 5 s).
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// How long one probe may take before it counts as failed.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Lease of a registration: three heartbeats of 5 s, so one lost beat never drops a live instance.
pub const DEFAULT_TTL: Duration = Duration::from_secs(15);
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
    /// Size caps.
    pub limits: Limits,
    /// HTTP server timeouts and connection cap.
    pub server: ServerConfig,
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
            limits: Limits::default(),
            server: ServerConfig::default(),
            store: StoreConfig::default(),
        }
    }
}

/// What the routes and the loops share: the state behind its one lock, and the configuration.
#[derive(Debug)]
pub struct Shared {
    state: Mutex<Registry>,
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
            config,
            store,
        }
    }

    /// Locks the state. Callers keep the guard inside one synchronous block, never across an await.
    pub fn state(&self) -> MutexGuard<'_, Registry> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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
