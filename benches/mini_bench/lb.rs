//! Balancing around a slow adder: how much of the traffic each `--lb` strategy sends to it, and how
//! long the same batch of calls takes.
//!
//! One registry, `normal` adders and one adder started with `--delay` (it waits that long before each
//! answer). Each round runs `mini client 1 2 --repeat N --concurrency C --lb S` once per strategy, in
//! turn, so the strategies share the machine's moods; the client's tally (`ADDR served N` lines and
//! `failed calls: N`, on stderr) gives the slow adder's share, and the wall time of the process is the
//! batch's time (process start and the first listing included, a few milliseconds).

use crate::common::{log_path, median, BenchResult, Role};
use argh::FromArgs;
use mini::http::client::{Client, ClientConfig};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Heartbeat period of the adders, so they are registered soon after they start.
const BEAT: &str = "200ms";
/// Longest wait for the adders to be listed healthy.
const GIVE_UP: Duration = Duration::from_secs(30);
/// Time between two readings of the listing while the adders come up.
const POLL: Duration = Duration::from_millis(20);
/// Limits of the readiness poller's requests.
const POLL_TIMEOUT: Duration = Duration::from_secs(1);

/// The slow adder's share of calls and the batch's time, per `--lb` strategy.
#[derive(FromArgs)]
#[argh(subcommand, name = "lb")]
pub struct Args {
    /// path of the mini binary
    #[argh(option)]
    mini: PathBuf,
    /// directory for the processes' logs
    #[argh(option)]
    logs: PathBuf,
    /// strategies, run in this order every round (default random,round-robin,p2c)
    #[argh(option, default = "String::from(\"random,round-robin,p2c\")")]
    strategies: String,
    /// rounds (default 3)
    #[argh(option, default = "3")]
    rounds: usize,
    /// calls per client run (default 600)
    #[argh(option, default = "600")]
    calls: u32,
    /// calls in flight per client run (default 8)
    #[argh(option, default = "8")]
    concurrency: u32,
    /// adders without a delay (default 2)
    #[argh(option, default = "2")]
    normal: usize,
    /// the slow adder's delay before each answer (default 40ms)
    #[argh(option, default = "String::from(\"40ms\")")]
    delay: String,
}

/// What one client run reported.
struct Run {
    slow_pct: f64,
    seconds: f64,
    failed: u64,
}

pub fn run(args: Args) -> BenchResult<()> {
    std::fs::create_dir_all(&args.logs)?;
    let strategies: Vec<&str> = args.strategies.split(',').map(str::trim).collect();
    let registry = Role::start(
        &args.mini,
        &["registry", "--listen", "127.0.0.1:0"],
        &log_path(&args.logs, "lb-registry.log"),
    )?;
    let mut adders = Vec::with_capacity(args.normal + 1);
    for i in 0..args.normal {
        adders.push(Role::start(
            &args.mini,
            &["adder", "0", "--registry", &registry.addr, "--beat", BEAT],
            &log_path(&args.logs, &format!("lb-adder-{i}.log")),
        )?);
    }
    let slow = Role::start(
        &args.mini,
        &[
            "adder",
            "0",
            "--registry",
            &registry.addr,
            "--beat",
            BEAT,
            "--delay",
            &args.delay,
        ],
        &log_path(&args.logs, "lb-adder-slow.log"),
    )?;
    wait_listed(&registry.addr, args.normal + 1)?;

    let mut runs: BTreeMap<&str, Vec<Run>> = BTreeMap::new();
    for round in 1..=args.rounds {
        for &s in &strategies {
            let log = log_path(&args.logs, &format!("lb-client-{s}-{round}.log"));
            let r = client_run(&args, &registry.addr, s, &slow.addr, &log)?;
            eprintln!(
                "lb: round {round} {s}: slow adder {:.1} % of calls, {:.2} s, {} failed",
                r.slow_pct, r.seconds, r.failed
            );
            let key = s.replace('-', "_");
            println!("lb_{key}_slow_pct_{round}={:.1}", r.slow_pct);
            println!("lb_{key}_seconds_{round}={:.2}", r.seconds);
            runs.entry(s).or_default().push(r);
        }
    }
    println!("lb_rounds={}", args.rounds);
    println!("lb_calls={}", args.calls);
    println!("lb_concurrency={}", args.concurrency);
    println!("lb_adders={}", args.normal + 1);
    println!("lb_delay={}", args.delay);
    for (s, rs) in &runs {
        let key = s.replace('-', "_");
        let mut pct: Vec<f64> = rs.iter().map(|r| r.slow_pct).collect();
        let mut secs: Vec<f64> = rs.iter().map(|r| r.seconds).collect();
        println!("lb_{key}_slow_pct={:.1}", median(&mut pct));
        println!("lb_{key}_seconds={:.2}", median(&mut secs));
        println!(
            "lb_{key}_failed={}",
            rs.iter().map(|r| r.failed).sum::<u64>()
        );
    }
    drop(adders);
    Ok(())
}

/// One `mini client 1 2 --repeat N --concurrency C --lb S` run: the slow adder's share and the time.
fn client_run(
    args: &Args,
    registry: &str,
    strategy: &str,
    slow: &str,
    log: &std::path::Path,
) -> BenchResult<Run> {
    let begun = Instant::now();
    let status = Command::new(&args.mini)
        .args(["client", "1", "2", "--registry", registry, "--repeat"])
        .arg(args.calls.to_string())
        .arg("--concurrency")
        .arg(args.concurrency.to_string())
        .args(["--lb", strategy])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .status()?;
    let seconds = begun.elapsed().as_secs_f64();
    let text = std::fs::read_to_string(log)?;
    let failed: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("failed calls: "))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| format!("no `failed calls:` line in {log:?} ({status})"))?;
    let served_by_slow: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix(slow)?.strip_prefix(" served "))
        .map_or(Ok(0), str::parse)?;
    Ok(Run {
        slow_pct: 100.0 * served_by_slow as f64 / f64::from(args.calls),
        seconds,
        failed,
    })
}

/// Waits until the registry lists `n` healthy instances of `add`.
fn wait_listed(registry: &str, n: usize) -> BenchResult<()> {
    let client = Client::new(ClientConfig {
        connect_timeout: POLL_TIMEOUT,
        request_timeout: POLL_TIMEOUT,
    });
    let since = Instant::now();
    loop {
        let resp = mini::rt::block_on(client.get(registry, "/v1/services/add"))?;
        let healthy = resp
            .text()
            .lines()
            .filter(|l| l.contains(" healthy"))
            .count();
        if healthy == n {
            return Ok(());
        }
        if since.elapsed() > GIVE_UP {
            return Err(format!("{healthy} of {n} adders healthy after {GIVE_UP:?}").into());
        }
        std::thread::sleep(POLL);
    }
}
