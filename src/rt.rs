//! The async runtime: one shared smol executor driven by a small pool of threads.
//!
//! smol's global executor runs on one thread unless `SMOL_THREADS` says otherwise; a registry wants every
//! core for lookups, so `mini` keeps its own executor and decides the thread count itself. Beside it, the
//! small helpers every role shares: binding a listener, a timeout, and a lock that survives poisoning.

use async_net::TcpListener;
use smol::{Executor, Timer};
use std::future::Future;
use std::io;
use std::sync::{Mutex, MutexGuard, Once};
use std::time::Duration;

static EXECUTOR: Executor<'static> = Executor::new();
static START: Once = Once::new();

/// Spawns a task on the shared executor.
///
/// ```
/// let task = mini::rt::spawn(async { 1 + 1 });
/// assert_eq!(mini::rt::block_on(task), 2);
/// ```
pub fn spawn<T: Send + 'static>(future: impl Future<Output = T> + Send + 'static) -> smol::Task<T> {
    EXECUTOR.spawn(future)
}

/// Runs `future` to completion on this thread while the executor's worker threads run spawned tasks.
///
/// The first call starts `threads() - 1` workers; this thread is the last one while it waits.
pub fn block_on<T>(future: impl Future<Output = T>) -> T {
    START.call_once(|| {
        for i in 1..threads() {
            let spawned = std::thread::Builder::new()
                .name(format!("mini-{i}"))
                .spawn(|| smol::block_on(EXECUTOR.run(smol::future::pending::<()>())));
            if let Err(e) = spawned {
                eprintln!("mini: could not start worker thread: {e}");
            }
        }
    });
    smol::block_on(EXECUTOR.run(future))
}

/// Worker threads: `MINI_THREADS` when set, else one per core.
pub fn threads() -> usize {
    crate::env::threads()
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Runs `fut` for at most `limit`; `None` when time ran out (and `fut` is dropped).
///
/// ```
/// use std::time::Duration;
/// let quick = mini::rt::block_on(mini::rt::timeout(Duration::from_secs(5), async { 7 }));
/// assert_eq!(quick, Some(7));
/// let never = std::future::pending::<()>();
/// assert_eq!(mini::rt::block_on(mini::rt::timeout(Duration::from_millis(1), never)), None);
/// ```
pub async fn timeout<T>(limit: Duration, fut: impl Future<Output = T>) -> Option<T> {
    smol::future::or(async { Some(fut.await) }, async {
        Timer::after(limit).await;
        None
    })
    .await
}

/// Locks `mutex`, recovering the data when a thread panicked while holding it.
///
/// Nothing guarded by a mutex here is left half-updated by a panic that matters more than serving on,
/// and with `panic = "abort"` in release builds a poisoned lock only happens in tests.
///
/// ```
/// let counter = std::sync::Mutex::new(1);
/// *mini::rt::lock(&counter) += 1;
/// assert_eq!(*mini::rt::lock(&counter), 2);
/// ```
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Binds a listener on `addr` (`HOST:PORT`); the error names it: `cannot listen on ADDR: why`.
pub async fn bind(addr: &str) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

/// Raises the soft limit on open files to the hard limit, as Go programs do at start, and returns it.
///
/// A registry holds one connection per adder between beats and one per probe; the usual soft limit
/// of 1024 would cap a fleet long before memory does. `None` when the limit could not be read or set.
pub fn raise_fd_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        setrlimit(Resource::Nofile, limit).ok()?;
    }
    getrlimit(Resource::Nofile).current
}
