//! The timers: probe every instance each interval, and sweep expired leases.
//!
//! Each instance is probed as its spec's check says: `http:/PATH` is a `GET PATH` answered with any
//! 2xx (the default spec's path is `/aliveCheck`, so an original adder is probed as it always was),
//! `tcp` is a TCP connect within the probe timeout, and `none` is never probed (the lease alone
//! decides). The interval and the timeout are the registry's, the same for every instance.
//!
//! Each probe interval is cut into [`PROBE_SLOTS`] slots and every instance has a fixed, randomly
//! keyed slot, so probes are spread over the interval and each instance is probed once per interval.
//! A slot snapshots its targets under the lock, probes them concurrently (at most
//! [`PROBE_CONCURRENCY`] in flight overall) with the lock released, and records each result the moment
//! it arrives, so a dead instance is excluded as soon as its probe fails.

use super::Shared;
use crate::http::client::{Client, ClientConfig};
use crate::log;
use crate::registry::state::Target;
use crate::spec::Check;
use smol::lock::Semaphore;
use smol::stream::StreamExt;
use smol::Timer;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::Duration;

/// Probes in flight at once, so a round over many instances stays a bounded use of sockets.
pub const PROBE_CONCURRENCY: usize = 256;
/// Idle probe connections kept for the next round: one per instance up to this many (each is a
/// descriptor; beyond it probes reconnect, which costs a handshake and a TIME_WAIT each).
pub const PROBE_POOL: usize = 16_384;
/// Shortest and longest time between two sweeps of expired leases (a quarter of the TTL in between).
const SWEEP_BOUNDS: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// Each probe interval is cut into this many slots; every instance has one fixed slot, so 10 000
/// instances are probed ~625 at a time instead of in one synchronized burst, yet each is still probed
/// exactly once per interval.
pub const PROBE_SLOTS: u32 = 16;
/// Slots are never shorter than this (short test intervals get fewer slots).
const MIN_SLOT: Duration = Duration::from_millis(10);

/// Probes every instance once per probe interval, forever, spread over the interval.
pub async fn probe_loop(shared: Arc<Shared>) {
    let timeout = shared.config.probe_timeout;
    let config = ClientConfig {
        connect_timeout: timeout,
        request_timeout: timeout,
    };
    let client = Prober {
        http: Client::with_pool_limit(config, PROBE_POOL),
        timeout,
    };
    let permits = Arc::new(Semaphore::new(PROBE_CONCURRENCY));
    let interval = shared.config.probe_interval;
    let slots = slot_count(interval);
    // A key drawn per process: each instance's slot is random, and two registries do not probe in step.
    let key = RandomState::new();
    let mut ticks = Timer::interval(interval / slots);
    let mut slot = 0;
    while ticks.next().await.is_some() {
        slot = (slot + 1) % slots;
        if !shared.store.probes() {
            continue;
        }
        let targets: Vec<Target> = shared
            .state()
            .probe_targets()
            .into_iter()
            .filter(|t| slot_of(&key, &t.addr, slots) == slot)
            .collect();
        let batch = probe_batch(shared.clone(), client.clone(), permits.clone(), targets);
        crate::rt::spawn(batch).detach();
    }
}

/// The slot of the interval in which `addr` is probed: fixed for the process, random across processes.
pub fn slot_of(key: &RandomState, addr: &str, slots: u32) -> u32 {
    (key.hash_one(addr) % u64::from(slots.max(1))) as u32
}

/// How many slots an interval is cut into.
pub fn slot_count(interval: Duration) -> u32 {
    let fit = interval.as_nanos() / MIN_SLOT.as_nanos();
    (fit.min(u128::from(PROBE_SLOTS)) as u32).max(1)
}

/// What probes with: the pooled HTTP client, and the timeout a TCP connect gets.
#[derive(Clone)]
struct Prober {
    http: Client,
    timeout: Duration,
}

/// Probes `targets` concurrently (bounded by the shared permits), recording each result as it comes.
async fn probe_batch(
    shared: Arc<Shared>,
    client: Prober,
    permits: Arc<Semaphore>,
    targets: Vec<Target>,
) {
    let mut tasks = Vec::with_capacity(targets.len());
    for target in targets {
        let (shared, client, permits) = (shared.clone(), client.clone(), permits.clone());
        tasks.push(crate::rt::spawn(async move {
            let _permit = permits.acquire().await;
            let outcome = probe(&client, &target.addr, &target.spec.check).await;
            record(&shared, &target, outcome).await;
        }));
    }
    for task in tasks {
        task.await;
    }
}

/// Probes one address with its check: `Ok` on a 2xx to `GET PATH`, or a TCP connect, within the
/// timeout; else why not. `check=none` and `ttl` are never probed (the targets leave them out) and pass.
async fn probe(client: &Prober, addr: &str, check: &Check) -> Result<(), String> {
    match check {
        Check::Http(path) => match client.http.get(addr, path).await {
            Ok(resp) if (200..300).contains(&resp.status) => Ok(()),
            Ok(resp) => Err(format!("answered {} to GET {path}", resp.status)),
            Err(e) => Err(e.to_string()),
        },
        Check::Tcp => {
            let connect = async_net::TcpStream::connect(addr);
            match crate::rt::timeout(client.timeout, connect).await {
                Some(Ok(_)) => Ok(()),
                Some(Err(e)) => Err(format!("TCP connect: {e}")),
                None => Err(format!(
                    "TCP connect timed out after {}",
                    crate::duration::show(client.timeout)
                )),
            }
        }
        Check::None | Check::Ttl => Ok(()),
    }
}

async fn record(shared: &Shared, target: &Target, outcome: Result<(), String>) {
    let counter = match outcome {
        Ok(()) => &shared.metrics.probes_ok,
        Err(_) => &shared.metrics.probes_failed,
    };
    counter.inc();
    let changed = shared.record_probe(target, outcome.is_ok()).await;
    if !changed {
        return;
    }
    match outcome {
        Ok(()) => log::line(
            "registry",
            format_args!("{} {} restored: probe ok", target.service, target.addr),
        ),
        Err(why) => log::line(
            "registry",
            format_args!(
                "{} {} excluded: probe failed: {why}",
                target.service, target.addr
            ),
        ),
    }
}

/// Time between two sweeps of expired leases for a registry whose `--ttl` is `ttl`: a quarter of
/// it, within [`SWEEP_BOUNDS`]. The etcd store's sweep keeps the same pace.
pub(crate) fn sweep_period(ttl: Duration) -> Duration {
    (ttl / 4).clamp(SWEEP_BOUNDS.0, SWEEP_BOUNDS.1)
}

/// Drops expired leases, checking a few times per TTL.
pub async fn sweep_loop(shared: Arc<Shared>) {
    let period = sweep_period(shared.config.ttl);
    let mut ticks = Timer::interval(period);
    while ticks.next().await.is_some() {
        let expired = shared.expire();
        for t in expired {
            log::line(
                "registry",
                format_args!(
                    "{} {} expired: no heartbeat within its lease",
                    t.service, t.addr
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_thousand_instances_spread_evenly_over_the_slots() {
        let key = RandomState::new();
        let mut counts = [0usize; PROBE_SLOTS as usize];
        for i in 0..10_000u32 {
            let addr = format!("127.0.{}.{}:{}", i / 250, i % 250, 1024 + i);
            counts[slot_of(&key, &addr, PROBE_SLOTS) as usize] += 1;
        }
        // 625 each on average: no slot is a burst, none is empty.
        for (slot, n) in counts.iter().enumerate() {
            assert!((500..=750).contains(n), "slot {slot} has {n}: {counts:?}");
        }
    }

    #[test]
    fn an_interval_is_cut_into_at_most_16_slots_and_at_least_one() {
        assert_eq!(slot_count(Duration::from_secs(5)), 16);
        assert_eq!(slot_count(Duration::from_millis(50)), 5);
        assert_eq!(slot_count(Duration::from_millis(1)), 1);
    }

    #[test]
    fn an_instance_keeps_its_slot_within_a_process() {
        let key = RandomState::new();
        let first = slot_of(&key, "127.0.0.1:1111", PROBE_SLOTS);
        assert!((0..10).all(|_| slot_of(&key, "127.0.0.1:1111", PROBE_SLOTS) == first));
        assert!(first < PROBE_SLOTS);
    }
}
