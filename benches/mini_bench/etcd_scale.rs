//! The etcd store at fleet scale: N fake instances beating through two `--store etcd` registries on
//! one etcd member, against the same load on one `--store memory` registry in the same run.
//!
//! 1. Memory: registers N instances on the memory registry, then renews each once per
//!    period for the beat phase; beat latency is send to full response.
//! 2. etcd: registers N instances, instance `i` through registry `i % 2`, as fast as the workers go
//!    (each registration answers once its batched txn is applied). Meanwhile a sampler registers an
//!    instance of service `vis` through one registry every [`SAMPLE_GAP`] and times, from the start of
//!    that `PUT`, until a blocking query on the other registry answers listing it (visibility).
//! 3. Once both registries list all N, the same beat phase, instance `i` to registry `i % 2`, with
//!    etcd's own request counters (`grpc_server_started_total`, one per unary call or stream, from its
//!    `/metrics`) read before and after: nothing is added or removed meanwhile, so that is the steady
//!    state. CPU of the registries and etcd over the phase, RSS after it.
//!
//! 4. etcd alone, for reference: the same number of puts in txns of 128 from two writers (as two
//!    registries with one write lane each), with two watchers of their prefix reading every event
//!    (as the two registries do), without mini: etcd's own ceiling for this load on this machine.
//!
//! Registrations and beats ask for the same lease (`--ttl`), so a beat never changes an instance's
//! value: the instances are fake (nothing listens), so the registries must not probe during the run.

use crate::common::{
    beat_rounds, client_with, cpu_seconds, fake_addr, ms, parse_duration, percentile,
    register_each, request_ok, rss_kib, Beats, BenchResult,
};
use argh::FromArgs;
use mini::etcd::watch::{Message, Watch};
use mini::etcd::{Etcd, TxnOp, MAX_TXN_OPS};
use mini::http::client::Client;
use smol::Timer;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// First fake port of the bench instances.
const FIRST_PORT: usize = 20_000;
/// First fake port of the visibility samples (`127.0.3.X`).
const SAMPLE_PORT: usize = 40_000;
/// Time between two visibility samples.
const SAMPLE_GAP: Duration = Duration::from_millis(20);
/// Connect and request limits: a call slower than this counts as failed.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Time given to allocators to settle before RSS readings.
const SETTLE: Duration = Duration::from_millis(500);
/// Longest wait for both registries to list every instance.
const CONVERGE: Duration = Duration::from_secs(60);

/// N instances through two etcd-backed registries versus one in-memory registry.
#[derive(FromArgs)]
#[argh(subcommand, name = "etcd-scale")]
pub struct Args {
    /// the --store memory registry HOST:PORT
    #[argh(option)]
    memory: String,
    /// its process id
    #[argh(option)]
    memory_pid: u32,
    /// the two --store etcd registries, HOST:PORT,HOST:PORT
    #[argh(option)]
    registries: String,
    /// their process ids, PID,PID
    #[argh(option)]
    registry_pids: String,
    /// the etcd member's client HOST:PORT
    #[argh(option)]
    etcd: String,
    /// its process id
    #[argh(option)]
    etcd_pid: u32,
    /// instances (default 100000)
    #[argh(option, default = "100_000")]
    instances: usize,
    /// time between two beats of one instance (default 5s)
    #[argh(
        option,
        default = "Duration::from_secs(5)",
        from_str_fn(parse_duration)
    )]
    period: Duration,
    /// length of each beat phase (default 15s)
    #[argh(
        option,
        default = "Duration::from_secs(15)",
        from_str_fn(parse_duration)
    )]
    duration: Duration,
    /// lease asked for by registrations and beats (default 60s)
    #[argh(option, default = "String::from(\"60s\")")]
    ttl: String,
    /// concurrent beating tasks, one connection each (default 64)
    #[argh(option, default = "64")]
    workers: usize,
    /// concurrent registering tasks, one connection each: adders registering at once (default 256)
    #[argh(option, default = "256")]
    register_workers: usize,
}

fn instance_addr(i: usize) -> String {
    fake_addr(FIRST_PORT, i)
}

fn client() -> Client {
    client_with(TIMEOUT)
}

pub fn run(args: Args) -> BenchResult<()> {
    let regs: Vec<String> = args.registries.split(',').map(str::to_string).collect();
    let pids: Vec<u32> = (args.registry_pids.split(','))
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    if regs.len() != 2 || pids.len() != 2 || args.workers == 0 || args.period.is_zero() {
        return Err("need two registries, two pids, workers > 0 and a period".into());
    }
    let args = Arc::new(args);
    let n = args.instances;
    println!("scale_instances={n}");
    println!("scale_workers={}", args.workers);
    println!("scale_register_workers={}", args.register_workers);

    // 1. The in-memory reference.
    let memory = vec![args.memory.clone()];
    let rate = register(&args, &memory, n)?;
    println!("memory_register_rate={rate:.0}");
    let cpu0 = cpu_seconds(args.memory_pid)?;
    let report = mini::rt::block_on(beats(args.clone(), memory));
    let cpu = cpu_seconds(args.memory_pid)? - cpu0;
    let secs = report.elapsed.as_secs_f64();
    print_beats(report, "memory");
    println!("memory_registry_cpu_pct={:.1}", 100.0 * cpu / secs);
    println!("memory_rss_kib={}", rss_kib(args.memory_pid)?);

    // 2. Registrations through the two etcd-backed registries, and their visibility.
    let cpus =
        |pids: &[u32]| -> BenchResult<Vec<f64>> { pids.iter().map(|&p| cpu_seconds(p)).collect() };
    let m0 = etcd_counters(&args.etcd)?;
    let reg_cpu0 = (
        cpus(&pids)?,
        cpu_seconds(args.etcd_pid)?,
        cpu_seconds(std::process::id())?,
    );
    let started = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (regs, done) = (regs.clone(), done.clone());
        std::thread::spawn(move || mini::rt::block_on(visibility(regs, done)))
    };
    let rate = register(&args, &regs, n);
    done.store(true, Ordering::Relaxed);
    let (mut seen, mut answered) = sampler.join().map_err(|_| "sampler panicked")?;
    let rate = rate?;
    let m1 = etcd_counters(&args.etcd)?;
    let secs = started.elapsed().as_secs_f64();
    let reg_cpu1 = (
        cpus(&pids)?,
        cpu_seconds(args.etcd_pid)?,
        cpu_seconds(std::process::id())?,
    );
    let pct = |a: f64, b: f64| format!("{:.0}", 100.0 * (b - a) / secs);
    let used: f64 = (reg_cpu1
        .0
        .iter()
        .zip(&reg_cpu0.0)
        .map(|(b, a)| b - a)
        .sum::<f64>())
        + (reg_cpu1.1 - reg_cpu0.1)
        + (reg_cpu1.2 - reg_cpu0.2);
    println!(
        "etcd_register_cpu_us_each={:.0} (etcd {:.0})",
        1e6 * used / n as f64,
        1e6 * (reg_cpu1.1 - reg_cpu0.1) / n as f64
    );
    println!(
        "etcd_register_cpu_pct=registries {} and {} %, etcd {} %, generator {} %",
        pct(reg_cpu0.0[0], reg_cpu1.0[0]),
        pct(reg_cpu0.0[1], reg_cpu1.0[1]),
        pct(reg_cpu0.1, reg_cpu1.1),
        pct(reg_cpu0.2, reg_cpu1.2)
    );
    println!("etcd_register_rate={rate:.0}");
    println!(
        "etcd_register_seconds={:.2}",
        started.elapsed().as_secs_f64()
    );
    let txns = m1.started("Txn") - m0.started("Txn");
    let fsyncs = m1.wal_fsyncs - m0.wal_fsyncs;
    let fsync_s = m1.wal_fsync_seconds - m0.wal_fsync_seconds;
    println!("etcd_register_wal_fsyncs={fsyncs:.0}");
    println!(
        "etcd_register_wal_fsync_mean_ms={:.2}",
        1000.0 * fsync_s / fsyncs.max(1.0)
    );
    println!("etcd_register_txns={txns:.0}");
    seen.sort_unstable();
    println!("visibility_samples={}", seen.len());
    println!("visibility_p50_ms={}", ms(percentile(&seen, 50.0)));
    println!("visibility_p99_ms={}", ms(percentile(&seen, 99.0)));
    println!("visibility_max_ms={}", ms(percentile(&seen, 100.0)));
    answered.sort_unstable();
    println!("visibility_put_p50_ms={}", ms(percentile(&answered, 50.0)));
    println!("visibility_put_p99_ms={}", ms(percentile(&answered, 99.0)));
    let converged = converge(&regs, n)?;
    println!("converged_after_ms={}", converged.as_millis());

    // 3. The beat phase through both, with etcd's counters around it.
    let before = etcd_counters(&args.etcd)?;
    let cpu0 = (cpus(&pids)?, cpu_seconds(args.etcd_pid)?);
    let window = Instant::now();
    let report = mini::rt::block_on(beats(args.clone(), regs.clone()));
    let secs = window.elapsed().as_secs_f64();
    let cpu1 = (cpus(&pids)?, cpu_seconds(args.etcd_pid)?);
    let after = etcd_counters(&args.etcd)?;
    print_beats(report, "etcd");
    let steady = after.requests() - before.requests();
    println!("steady_etcd_requests={steady:.0}");
    println!("steady_window_seconds={secs:.2}");
    println!("steady_etcd_requests_per_s={:.1}", steady / secs);
    let by_method: Vec<String> = (after.started.iter())
        .map(|(m, v)| (m, v - before.started(m)))
        .filter(|(_, d)| *d > 0.0)
        .map(|(m, d)| format!("{m} {d:.0}"))
        .collect();
    println!("steady_etcd_by_method={}", by_method.join(", "));
    for (i, (a, b)) in cpu0.0.iter().zip(&cpu1.0).enumerate() {
        println!(
            "etcd_registry{}_cpu_pct={:.1}",
            i + 1,
            100.0 * (b - a) / secs
        );
    }
    println!(
        "etcd_member_cpu_pct={:.1}",
        100.0 * (cpu1.1 - cpu0.1) / secs
    );
    std::thread::sleep(SETTLE);
    for (i, pid) in pids.iter().enumerate() {
        println!("etcd_registry{}_rss_kib={}", i + 1, rss_kib(*pid)?);
    }
    println!("etcd_member_rss_kib={}", rss_kib(args.etcd_pid)?);

    // 4. etcd alone, after every reading above (its keys add to etcd's RSS).
    let cpu0 = cpu_seconds(args.etcd_pid)? + cpu_seconds(std::process::id())?;
    let rate = mini::rt::block_on(etcd_alone(&args.etcd, n))?;
    let cpu1 = cpu_seconds(args.etcd_pid)? + cpu_seconds(std::process::id())?;
    println!("etcd_alone_put_rate={rate:.0}");
    println!(
        "etcd_alone_cpu_us_each={:.0}",
        1e6 * (cpu1 - cpu0) / n as f64
    );
    Ok(())
}

/// `n` puts into etcd in txns of [`MAX_TXN_OPS`] from two writers, with two watchers of the prefix
/// reading every event: puts per second until both watchers have seen them all. Revokes the lease
/// (deleting the keys) afterwards.
async fn etcd_alone(addr: &str, n: usize) -> BenchResult<f64> {
    const PREFIX: &str = "/bench-etcd-alone/";
    let etcd = Arc::new(Etcd::new(vec![addr.to_string()]));
    let lease = etcd.grant(600).await?;
    let seen = Arc::new(AtomicUsize::new(0));
    let mut watchers = Vec::new();
    for _ in 0..2 {
        let mut watch = Watch::open(&etcd, PREFIX.as_bytes(), 0).await?;
        let seen = seen.clone();
        watchers.push(mini::rt::spawn(async move {
            while let Ok(message) = watch.next().await {
                if let Message::Events { events, .. } = message {
                    seen.fetch_add(events.len(), Ordering::Relaxed);
                }
            }
        }));
    }
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let writers: Vec<_> = (0..2)
        .map(|_| {
            let (etcd, next) = (etcd.clone(), next.clone());
            mini::rt::spawn(async move {
                loop {
                    let from = next.fetch_add(MAX_TXN_OPS, Ordering::Relaxed);
                    if from >= n {
                        return Ok::<(), mini::etcd::EtcdError>(());
                    }
                    let keys: Vec<String> = (from..(from + MAX_TXN_OPS).min(n))
                        .map(|i| format!("{PREFIX}bench/{}", instance_addr(i)))
                        .collect();
                    let ops: Vec<TxnOp> = (keys.iter())
                        .map(|k| TxnOp::Put {
                            key: k.as_bytes(),
                            value: br#"{"ttl_ms":60000}"#,
                            lease,
                        })
                        .collect();
                    etcd.txn(&ops).await?;
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await?;
    }
    while seen.load(Ordering::Relaxed) < 2 * n && started.elapsed() < CONVERGE {
        Timer::after(Duration::from_millis(5)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    drop(watchers);
    etcd.revoke(lease).await?;
    match seen.load(Ordering::Relaxed) {
        all if all >= 2 * n => Ok(n as f64 / secs),
        some => Err(format!("the watchers saw {some} of {} events", 2 * n).into()),
    }
}

/// Registers instances `0..n`, instance `i` through `regs[i % len]`; returns registrations per second.
fn register(args: &Arc<Args>, regs: &[String], n: usize) -> BenchResult<f64> {
    let regs: Vec<Arc<str>> = regs.iter().map(|r| Arc::from(r.as_str())).collect();
    let ttl = args.ttl.clone();
    let put = move |i: usize| {
        let target = format!("/v1/services/bench/{}?ttl={ttl}", instance_addr(i));
        (regs[i % regs.len()].clone(), target)
    };
    let started = Instant::now();
    let workers = args.register_workers;
    mini::rt::block_on(register_each(workers, 0..n, client, put, "etcd-scale"))?;
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// Visibility samples until `done`, a `PUT` through one registry at a time: per sample, microseconds from the start of the `PUT` until the other registry
/// listed it, and until the `PUT` itself answered (its txn applied).
async fn visibility(regs: Vec<String>, done: Arc<AtomicBool>) -> (Vec<u64>, Vec<u64>) {
    let (writer, reader) = (client(), client());
    let (mut out, mut answered) = (Vec::new(), Vec::new());
    let mut k = 0;
    while !done.load(Ordering::Relaxed) {
        let (to, from) = (&regs[k % 2], &regs[(k + 1) % 2]);
        let addr = format!("127.0.3.{}:{}", k % 250 + 1, SAMPLE_PORT + k / 250);
        let index = match request_ok(&reader, "GET", from, "/v1/services/vis").await {
            Ok(r) => r
                .header("X-Mini-Index")
                .and_then(|i| i.parse().ok())
                .unwrap_or(0u64),
            Err(_) => 0, // 404 before the first sample
        };
        let start = Instant::now();
        let watch = async {
            let mut index = index;
            loop {
                let target = format!("/v1/services/vis?index={index}&wait=4s");
                match request_ok(&reader, "GET", from, &target).await {
                    Ok(r) if r.text().contains(&addr) => return Some(start.elapsed()),
                    Ok(r) => {
                        index = r
                            .header("X-Mini-Index")
                            .and_then(|i| i.parse().ok())
                            .unwrap_or(index)
                    }
                    Err(_) => return None,
                }
            }
        };
        let target = format!("/v1/services/vis/{addr}?ttl=60m");
        let put = async {
            let r = request_ok(&writer, "PUT", to, &target).await;
            (r, start.elapsed())
        };
        let (seen, (put, put_took)) = smol::future::zip(watch, put).await;
        match (seen, put) {
            (Some(t), Ok(_)) => {
                out.push(t.as_micros() as u64);
                answered.push(put_took.as_micros() as u64);
            }
            (_, Err(e)) => eprintln!("etcd-scale: sample {addr}: {e}"),
            (None, _) => eprintln!("etcd-scale: sample {addr} never seen on {from}"),
        }
        k += 1;
        Timer::after(SAMPLE_GAP).await;
    }
    (out, answered)
}

/// Waits until every registry lists `n` instances of `bench`; returns how long that took.
fn converge(regs: &[String], n: usize) -> BenchResult<Duration> {
    let started = Instant::now();
    let client = client();
    let want = format!("bench live={n} total={n} ");
    mini::rt::block_on(async {
        for reg in regs {
            loop {
                if let Ok(r) = request_ok(&client, "GET", reg, "/v1/services").await {
                    if r.text().lines().any(|l| l.starts_with(&want)) {
                        break;
                    }
                }
                if started.elapsed() > CONVERGE {
                    return Err(format!("{reg} never listed {n} instances").into());
                }
                Timer::after(Duration::from_millis(20)).await;
            }
        }
        Ok(started.elapsed())
    })
}

/// Counters read from etcd's `/metrics`.
struct EtcdCounters {
    /// `grpc_server_started_total` by method: one per unary call or stream opened.
    started: BTreeMap<String, f64>,
    /// WAL fsyncs, and the seconds they took.
    wal_fsyncs: f64,
    wal_fsync_seconds: f64,
}

impl EtcdCounters {
    fn requests(&self) -> f64 {
        self.started.values().sum()
    }

    fn started(&self, method: &str) -> f64 {
        self.started.get(method).copied().unwrap_or(0.0)
    }
}

fn etcd_counters(etcd: &str) -> BenchResult<EtcdCounters> {
    let text = mini::rt::block_on(request_ok(&client(), "GET", etcd, "/metrics"))?.text();
    let mut started = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("grpc_server_started_total{"))
    {
        let method = (line.split("grpc_method=\"").nth(1))
            .and_then(|r| r.split('"').next())
            .unwrap_or("?");
        let value: f64 = (line.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        *started.entry(method.to_string()).or_default() += value;
    }
    let metric = |name: &str| -> f64 {
        (text.lines())
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    Ok(EtcdCounters {
        started,
        wal_fsyncs: metric("etcd_disk_wal_fsync_duration_seconds_count"),
        wal_fsync_seconds: metric("etcd_disk_wal_fsync_duration_seconds_sum"),
    })
}

/// Prints a beat phase's figures as `PREFIX_beat_*=` lines.
fn print_beats(mut beats: Beats, prefix: &str) {
    beats.latency_us.sort_unstable();
    beats.lateness_us.sort_unstable();
    let ok = beats.latency_us.len();
    println!("{prefix}_beat_ok={ok}");
    println!("{prefix}_beat_failed={}", beats.failed);
    println!(
        "{prefix}_beat_rate={:.0}",
        ok as f64 / beats.elapsed.as_secs_f64()
    );
    for (name, p) in [("p50", 50.0), ("p99", 99.0), ("max", 100.0)] {
        println!(
            "{prefix}_beat_{name}_ms={}",
            ms(percentile(&beats.latency_us, p))
        );
    }
    println!(
        "{prefix}_beat_late_p99_ms={}",
        ms(percentile(&beats.lateness_us, 99.0))
    );
    if let Some(e) = beats.first_error {
        eprintln!("etcd-scale: {prefix}: first failed beat: {e}");
    }
}

/// Renews every instance once per period for the phase's length, instance `i` to `regs[i % len]`,
/// instance `i` of `n` at offset `i / n` of the period ([`beat_rounds`]).
async fn beats(args: Arc<Args>, regs: Vec<String>) -> Beats {
    let rounds = (args.duration.as_secs_f64() / args.period.as_secs_f64()).round() as u32;
    let regs: Vec<Arc<str>> = regs.into_iter().map(Arc::from).collect();
    let ttl = args.ttl.clone();
    let beat = move |i: usize| {
        let target = format!("/v1/services/bench/{}?ttl={ttl}", instance_addr(i));
        (regs[i % regs.len()].clone(), target)
    };
    beat_rounds(
        args.workers,
        args.instances,
        args.period,
        rounds,
        client,
        beat,
    )
    .await
}
