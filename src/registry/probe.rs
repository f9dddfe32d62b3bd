//! The timers: probe every instance each interval, and sweep expired leases.
//!
//! A probe round snapshots the targets under the lock, then probes them concurrently (at most
//! [`PROBE_CONCURRENCY`] at once) with the lock released, and records each result the moment it
//! arrives, so a dead instance is excluded as soon as its probe fails rather than at the end of a round.

use super::Shared;
use crate::http::client::{Client, ClientConfig};
use crate::log;
use crate::registry::state::Target;
use smol::lock::Semaphore;
use smol::stream::StreamExt;
use smol::Timer;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Probes in flight at once, so a round over many instances stays a bounded use of sockets.
pub const PROBE_CONCURRENCY: usize = 256;
/// The path every instance answers 200 on while it is alive (the original design's).
pub const ALIVE_PATH: &str = "/aliveCheck";
/// Shortest and longest time between two sweeps of expired leases (a quarter of the TTL in between).
const SWEEP_BOUNDS: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// Probes all instances every probe interval, forever.
pub async fn probe_loop(shared: Arc<Shared>) {
    let timeout = shared.config.probe_timeout;
    let client = Client::new(ClientConfig {
        connect_timeout: timeout,
        request_timeout: timeout,
    });
    let mut ticks = Timer::interval(shared.config.probe_interval);
    while ticks.next().await.is_some() {
        if shared.store.probes() {
            probe_round(&shared, &client).await;
        }
    }
}

/// One round: every instance probed once; returns when all probes have finished.
pub async fn probe_round(shared: &Arc<Shared>, client: &Client) {
    let targets = shared.state().probe_targets();
    let permits = Arc::new(Semaphore::new(PROBE_CONCURRENCY));
    let mut tasks = Vec::with_capacity(targets.len());
    for target in targets {
        let (shared, client, permits) = (shared.clone(), client.clone(), permits.clone());
        tasks.push(crate::rt::spawn(async move {
            let _permit = permits.acquire().await;
            let outcome = probe(&client, &target.addr).await;
            record(&shared, &target, outcome).await;
        }));
    }
    for task in tasks {
        task.await;
    }
}

/// Probes one address: `Ok` on a 200 within the timeout, else why not.
async fn probe(client: &Client, addr: &str) -> Result<(), String> {
    match client.get(addr, ALIVE_PATH).await {
        Ok(resp) if resp.status == 200 => Ok(()),
        Ok(resp) => Err(format!("answered {}", resp.status)),
        Err(e) => Err(e.to_string()),
    }
}

async fn record(shared: &Shared, target: &Target, outcome: Result<(), String>) {
    let changed = shared
        .store
        .record_probe(shared, target, outcome.is_ok())
        .await;
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

/// Drops expired leases, checking a few times per TTL.
pub async fn sweep_loop(shared: Arc<Shared>) {
    let period = (shared.config.ttl / 4).clamp(SWEEP_BOUNDS.0, SWEEP_BOUNDS.1);
    let mut ticks = Timer::interval(period);
    while ticks.next().await.is_some() {
        let expired = shared.state().expire(Instant::now());
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
