//! The async runtime: one shared smol executor driven by a small pool of threads.
//!
//! smol's global executor runs on one thread unless `SMOL_THREADS` says otherwise; a registry wants every
//! core for lookups, so `mini` keeps its own executor and decides the thread count itself.

use smol::Executor;
use std::future::Future;
use std::sync::Once;
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
    std::env::var("MINI_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
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

/// Runs `fut` for at most `limit`; `None` when time ran out (and `fut` is dropped).
///
/// ```
/// use std::time::Duration;
/// let slow = mini::rt::timeout(Duration::from_millis(10), smol::future::pending::<()>());
/// assert_eq!(mini::rt::block_on(slow), None);
/// let quick = mini::rt::timeout(Duration::from_secs(5), async { 7 });
/// assert_eq!(mini::rt::block_on(quick), Some(7));
/// ```
pub async fn timeout<T>(limit: Duration, fut: impl Future<Output = T>) -> Option<T> {
    smol::future::or(async { Some(fut.await) }, async {
        smol::Timer::after(limit).await;
        None
    })
    .await
}
