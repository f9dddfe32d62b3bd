//! The cost of issue 11 at fleet size: a registry's pick over 100 000 instances (weighted, and
//! tag-filtered), and the registry's memory per instance when instances carry tags and meta.
//!
//! - Pick cost is measured in this process on [`Registry`] itself, the state the lookup route locks
//!   for one call: N instances of one service with weights 1..=10, 10 % excluded and 5 % draining;
//!   half carry the tag `v2` and 1 % the tag `canary`. Each figure is the mean over many picks with
//!   one `fastrand::Rng`, as the route does (the route adds HTTP around it): picks are timed in
//!   batches until [`MIN_TIMED`] has passed (or `--picks` are done), so that the CPU time, read in
//!   10 ms ticks, is read over a second or more whatever a pick costs.
//! - Memory: four registry processes in turn (no probes), each given N instances by `PUT` from 64
//!   connections: with no fields (the default spec, shared by all), with one spec all share (two
//!   tags, two meta pairs, a weight), with a spec of its own per instance (the same with a
//!   `meta=host:hN` unique to it, so nothing can be shared), and the same with a tag `hN` unique to
//!   it as well (a tag index per instance: the worst case). RSS is read after registering; bytes per
//!   instance are (RSS - RSS empty) / N.

use crate::common::{cpu_seconds, log_path, register_each, rss_kib, BenchResult, Role};
use argh::FromArgs;
use mini::http::client::{Client, ClientConfig};
use mini::registry::state::{Limits, Registry};
use mini::spec::Spec;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Time given to the registry's allocator to settle before each RSS reading.
const SETTLE: Duration = Duration::from_millis(500);
/// Concurrent registering connections.
const WORKERS: usize = 64;
/// Shortest timing of one kind of pick: 100 ticks of the 10 ms clock `/proc/PID/stat` counts CPU
/// time in, so the CPU figure is within about 1 %.
const MIN_TIMED: Duration = Duration::from_secs(1);
/// Picks between two looks at the clock.
const BATCH: usize = 1_000;

/// Pick cost at N instances, and registry RSS per instance with specs.
#[derive(FromArgs)]
#[argh(subcommand, name = "pick")]
pub struct Args {
    /// path of the mini binary
    #[argh(option)]
    mini: PathBuf,
    /// directory for the registries' logs
    #[argh(option)]
    logs: PathBuf,
    /// instances in the service (default 100000)
    #[argh(option, default = "100_000")]
    instances: usize,
    /// most picks of each kind to time (default 20000000), fewer once MIN_TIMED has passed
    #[argh(option, default = "20_000_000")]
    picks: usize,
}

pub fn run(args: Args) -> BenchResult<()> {
    pick_cost(&args)?;
    std::fs::create_dir_all(&args.logs)?;
    let n = args.instances;
    println!("pick_instances={n}");
    let plain = memory(&args, "plain", |_| String::new())?;
    let shared = memory(&args, "shared", |_| {
        "tag=v2&tag=zone-a&meta=version:1.2.3&meta=team:payments&weight=3".to_string()
    })?;
    let own = memory(&args, "own", |i| {
        format!("tag=v2&tag=zone-a&meta=version:1.2.3&meta=host:h{i}&weight=3")
    })?;
    let own_tag = memory(&args, "own_tag", |i| {
        format!("tag=v2&tag=zone-a&tag=h{i}&meta=version:1.2.3&meta=host:h{i}&weight=3")
    })?;
    let runs = [
        ("plain", plain),
        ("shared", shared),
        ("own", own),
        ("own_tag", own_tag),
    ];
    for (name, (empty, full)) in runs {
        println!("rss_{name}_empty_kib={empty}");
        println!("rss_{name}_kib={full}");
        println!(
            "bytes_per_instance_{name}={:.0}",
            (full.saturating_sub(empty)) as f64 * 1024.0 / n as f64
        );
    }
    Ok(())
}

/// (weight, carries `v2`, carries `canary`).
type SpecKey = (u16, bool, bool);

/// The spec of instance `i`: weight 1..=10, `v2` on every other one, `canary` on every 100th.
fn spec_of(i: usize, specs: &mut Vec<(SpecKey, Arc<Spec>)>) -> Arc<Spec> {
    let key = (
        (i % 10) as u16 + 1,
        i.is_multiple_of(2),
        i.is_multiple_of(100),
    );
    if let Some((_, s)) = specs.iter().find(|(k, _)| *k == key) {
        return s.clone();
    }
    let mut pairs = vec![("weight", key.0.to_string())];
    if key.1 {
        pairs.push(("tag", "v2".to_string()));
    }
    if key.2 {
        pairs.push(("tag", "canary".to_string()));
    }
    let spec = Arc::new(Spec::parse(pairs, None).map(|p| p.spec).unwrap_or_default());
    specs.push((key, spec.clone()));
    spec
}

fn pick_cost(args: &Args) -> BenchResult<()> {
    let n = args.instances;
    let mut reg = Registry::new(Limits {
        max_instances_per_service: n.max(1),
        max_instances_total: n.max(1),
        ..Limits::default()
    });
    let now = Instant::now();
    let ttl = Duration::from_secs(3600);
    let mut specs = Vec::new();
    let mut rng = fastrand::Rng::with_seed(7);
    for i in 0..n {
        let addr = format!("10.{}.{}.{}:80", i >> 16, (i >> 8) & 255, i & 255);
        let spec = spec_of(i, &mut specs);
        reg.upsert("bench", &addr, ttl, Some(&spec), None, now)
            .map_err(|e| e.to_string())?;
        match rng.u8(..100) {
            0..=9 => {
                reg.mark_probe("bench", &addr, false, now);
            }
            10..=14 => {
                reg.set_draining("bench", &addr, true);
            }
            _ => {}
        }
    }
    let live = reg.services().first().map_or(0, |s| s.live);
    println!("pick_live={live}");
    // Wall time per pick, and this process's CPU time per pick (what the pick cost the core it ran
    // on, whatever else the machine was doing; 10 ms ticks, so only for runs of a second or more).
    let mut time = |name: &str, tags: &[&str]| -> BenchResult<()> {
        let mut rng = fastrand::Rng::with_seed(9);
        let (mut found, mut picks) = (0usize, 0usize);
        let cpu = cpu_seconds(std::process::id())?;
        let start = Instant::now();
        while picks < args.picks && start.elapsed() < MIN_TIMED {
            for _ in 0..BATCH.min(args.picks - picks) {
                found += usize::from(reg.pick_tagged("bench", tags, &mut rng).is_some());
                picks += 1;
            }
        }
        let wall = start.elapsed().as_nanos() as f64 / picks.max(1) as f64;
        let cpu = (cpu_seconds(std::process::id())? - cpu) * 1e9 / picks.max(1) as f64;
        println!("pick_{name}_ns={wall:.0}");
        println!("pick_{name}_cpu_ns={cpu:.0}");
        println!("pick_{name}_picks={picks}");
        println!("pick_{name}_found={found}");
        Ok(())
    };
    time("weighted", &[])?;
    time("tag_half", &["v2"])?;
    time("tag_rare", &["canary"])?;
    time("tag_none", &["nobody"])?;
    // Both tags: drawn from `canary` (the rarer), whose members all carry `v2` too.
    time("tag_both", &["v2", "canary"])?;
    Ok(())
}

/// RSS of a fresh registry empty and after `n` instances are registered with `query(i)`.
fn memory(
    args: &Args,
    name: &str,
    query: impl Fn(usize) -> String + Send + Sync + 'static,
) -> BenchResult<(u64, u64)> {
    let log = log_path(&args.logs, &format!("pick-{name}-registry.log"));
    let registry = Role::start(
        &args.mini,
        &[
            "registry",
            "--listen",
            "127.0.0.1:0",
            "--probe-interval",
            "1440m",
        ],
        &log,
    )?;
    std::thread::sleep(SETTLE);
    let empty = rss_kib(registry.pid())?;
    let (addr, n) = (registry.addr.clone(), args.instances);
    mini::rt::block_on(register_all(addr, n, Arc::new(query)))?;
    std::thread::sleep(SETTLE);
    Ok((empty, rss_kib(registry.pid())?))
}

/// `PUT /v1/services/bench/ADDR?ttl=60m&QUERY` for instances `0..n` from [`WORKERS`] connections.
async fn register_all(
    registry: String,
    n: usize,
    query: Arc<dyn Fn(usize) -> String + Send + Sync>,
) -> BenchResult<()> {
    let registry: Arc<str> = Arc::from(registry);
    let put = move |i: usize| {
        let addr = format!("127.{}.{}.{}:80", i >> 16, (i >> 8) & 255, i & 255);
        let target = format!("/v1/services/bench/{addr}?ttl=60m&{}", query(i));
        (registry.clone(), target)
    };
    register_each(WORKERS, 0..n, pick_client, put, "pick").await
}

fn pick_client() -> Client {
    Client::new(ClientConfig {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
    })
}
