//! Heartbeat ingest: many distinct instances renewing their leases on one registry.
//!
//! The instances are fake (`127.0.X.Y:PORT`, nothing listens there), so run the registry with a probe
//! interval longer than the run. Every worker task owns one [`Client`] (so one keep-alive connection)
//! and a share of the instances; instance `i` of `n` beats at `start + round * period + period * i / n`,
//! so the offered rate is `n / period` beats per second, spread evenly. Latency is measured per beat
//! from the send to the full response; lateness is how far behind its schedule a beat was sent. The
//! beat loop is [`crate::common::beat_rounds`].

use crate::common::{
    beat_rounds, client_with, cpu_seconds, fake_addr, ms, parse_duration, percentile,
    register_each, rss_kib, Beats, BenchResult,
};
use argh::FromArgs;
use mini::http::client::Client;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// First fake port; later ports take the instances past [`crate::common::HOSTS_PER_PORT`].
const FIRST_PORT: usize = 10_000;
/// Lease asked for while registering, so early instances outlive the registration phase.
const REGISTER_TTL: &str = "5m";
/// Time given to the registry's allocator to settle before each RSS reading.
const SETTLE: Duration = Duration::from_millis(500);
/// Connect and request limits of the generator's clients: a beat slower than this counts as failed.
const BEAT_TIMEOUT: Duration = Duration::from_secs(2);

/// Register N fake instances, then renew them all every period; report RSS, latency and rate.
#[derive(FromArgs)]
#[argh(subcommand, name = "heartbeat")]
pub struct Args {
    /// registry HOST:PORT
    #[argh(option)]
    registry: String,
    /// registry process id, for RSS and CPU readings
    #[argh(option)]
    pid: u32,
    /// instance counts at which RSS is read, ascending; the last is the beat phase's size
    #[argh(option, default = "String::from(\"1000,10000,100000\")")]
    steps: String,
    /// time between two beats of one instance (default 5s)
    #[argh(
        option,
        default = "Duration::from_secs(5)",
        from_str_fn(parse_duration)
    )]
    period: Duration,
    /// length of the beat phase (default 15s)
    #[argh(
        option,
        default = "Duration::from_secs(15)",
        from_str_fn(parse_duration)
    )]
    duration: Duration,
    /// concurrent worker tasks, each with its own connection (default 64)
    #[argh(option, default = "64")]
    workers: usize,
    /// service to register under (default bench)
    #[argh(option, default = "String::from(\"bench\")")]
    service: String,
}

fn instance_addr(i: usize) -> String {
    fake_addr(FIRST_PORT, i)
}

fn client() -> Client {
    client_with(BEAT_TIMEOUT)
}

pub fn run(args: Args) -> BenchResult<()> {
    let steps: Vec<usize> = args
        .steps
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()?;
    let total = *steps.last().ok_or("--steps is empty")?;
    if args.workers == 0 || args.period.is_zero() {
        return Err("--workers and --period must be positive".into());
    }
    let args = Arc::new(args);
    std::thread::sleep(SETTLE);
    println!("rss_kib_empty={}", rss_kib(args.pid)?);

    let mut registered = 0;
    let mut registering = Duration::ZERO;
    for &step in &steps {
        let started = Instant::now();
        mini::rt::block_on(register_range(args.clone(), registered, step))?;
        registering += started.elapsed();
        registered = step;
        std::thread::sleep(SETTLE);
        println!("rss_kib_{step}={}", rss_kib(args.pid)?);
    }
    println!(
        "register_rate={:.0}",
        total as f64 / registering.as_secs_f64()
    );

    let cpu_before = (cpu_seconds(args.pid)?, cpu_seconds(std::process::id())?);
    let report = mini::rt::block_on(beat_phase(args.clone(), total));
    let cpu_after = (cpu_seconds(args.pid)?, cpu_seconds(std::process::id())?);
    let secs = report.elapsed.as_secs_f64();
    let mut latency = report.latency_us;
    let mut lateness = report.lateness_us;
    latency.sort_unstable();
    lateness.sort_unstable();
    println!("beat_instances={total}");
    println!("beat_workers={}", args.workers);
    println!(
        "beat_target_rate={:.0}",
        total as f64 / args.period.as_secs_f64()
    );
    println!("beat_rate={:.0}", latency.len() as f64 / secs);
    println!("beat_ok={}", latency.len());
    println!("beat_failed={}", report.failed);
    println!("beat_seconds={secs:.2}");
    println!("beat_p50_ms={}", ms(percentile(&latency, 50.0)));
    println!("beat_p99_ms={}", ms(percentile(&latency, 99.0)));
    println!("beat_max_ms={}", ms(percentile(&latency, 100.0)));
    println!("beat_late_p99_ms={}", ms(percentile(&lateness, 99.0)));
    println!("beat_late_max_ms={}", ms(percentile(&lateness, 100.0)));
    println!(
        "registry_cpu_pct={:.1}",
        100.0 * (cpu_after.0 - cpu_before.0) / secs
    );
    println!(
        "generator_cpu_pct={:.1}",
        100.0 * (cpu_after.1 - cpu_before.1) / secs
    );
    if let Some(e) = report.first_error {
        eprintln!("heartbeat: first failed beat: {e}");
    }
    std::thread::sleep(SETTLE);
    println!("rss_kib_after_beats={}", rss_kib(args.pid)?);
    Ok(())
}

/// Registers instances `from..to` with all workers at full speed.
async fn register_range(args: Arc<Args>, from: usize, to: usize) -> BenchResult<()> {
    let registry: Arc<str> = Arc::from(args.registry.as_str());
    let service = args.service.clone();
    let put = move |i| {
        let target = format!(
            "/v1/services/{service}/{}?ttl={REGISTER_TTL}",
            instance_addr(i)
        );
        (registry.clone(), target)
    };
    register_each(args.workers, from..to, client, put, "heartbeat").await
}

/// Renews every instance once per period for the phase's duration.
async fn beat_phase(args: Arc<Args>, total: usize) -> Beats {
    let rounds = (args.duration.as_secs_f64() / args.period.as_secs_f64()).round() as u32;
    let registry: Arc<str> = Arc::from(args.registry.as_str());
    let service = args.service.clone();
    let beat = move |i| {
        let target = format!("/v1/services/{service}/{}", instance_addr(i));
        (registry.clone(), target)
    };
    beat_rounds(args.workers, total, args.period, rounds, client, beat).await
}
