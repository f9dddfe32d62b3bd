//! Failure to silence: how long after an adder dies does the registry stop handing it out?
//!
//! Several registries run side by side (each with its own adders, at the default timings), so the
//! kills of one run overlap in time and the whole measurement stays short. Before each kill the
//! series waits a random fraction of the probe interval, so kills land at every phase of the probe
//! timer rather than right after the probe that caught the previous victim. After a kill, the
//! registry's instance listing is polled until the victim is no longer `healthy` (excluded or gone);
//! then a fresh adder replaces it.
//!
//! Then `mini client 1 2 --repeat N` runs against a registry with five adders while two of them are
//! killed mid-run, and its count of failed calls is reported.

use crate::common::{log_path, median, BenchResult, Role};
use argh::FromArgs;
use mini::http::client::{Client, ClientConfig};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest wait for a victim to be silenced, or for adders to show up, before the run fails.
const GIVE_UP: Duration = Duration::from_secs(30);
/// Limits of the poller's requests.
const POLL_TIMEOUT: Duration = Duration::from_secs(1);
/// Where in the client run (fraction of its expected length) the two adders are killed.
const CLIENT_KILL_POINTS: [f64; 2] = [0.3, 0.6];
/// Calls of the calibration run that estimates how long the client run takes.
const CALIBRATION_CALLS: u32 = 1000;

/// Kill adders and time their silencing; count failed client calls while adders die.
#[derive(FromArgs)]
#[argh(subcommand, name = "silence")]
pub struct Args {
    /// path of the mini binary
    #[argh(option)]
    mini: PathBuf,
    /// directory for the processes' logs
    #[argh(option)]
    logs: PathBuf,
    /// registries run side by side (default 4)
    #[argh(option, default = "4")]
    registries: usize,
    /// kills per registry (default 5)
    #[argh(option, default = "5")]
    kills: usize,
    /// adders per registry (default 5)
    #[argh(option, default = "5")]
    adders: usize,
    /// time between two polls of the listing (default 10ms)
    #[argh(
        option,
        default = "Duration::from_millis(10)",
        from_str_fn(parse_duration)
    )]
    poll: Duration,
    /// the registries' probe interval (default 5s, the registry's default)
    #[argh(
        option,
        default = "Duration::from_secs(5)",
        from_str_fn(parse_duration)
    )]
    probe_interval: Duration,
    /// calls of the client run (default 10000)
    #[argh(option, default = "10000")]
    client_calls: u32,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    mini::duration::parse(s)
}

pub fn run(args: Args) -> BenchResult<()> {
    std::fs::create_dir_all(&args.logs)?;
    let mut times: Vec<f64> = std::thread::scope(|scope| {
        let series: Vec<_> = (0..args.registries)
            .map(|r| {
                let args = &args;
                scope.spawn(move || kill_series(args, r))
            })
            .collect();
        let mut times = Vec::new();
        for s in series {
            let part = s.join().map_err(|_| "a kill series panicked")??;
            times.extend(part.iter().map(|d| d.as_secs_f64() * 1000.0));
        }
        Ok::<_, crate::common::BenchError>(times)
    })?;
    let max = times.iter().copied().fold(0.0, f64::max);
    let min = times.iter().copied().fold(f64::INFINITY, f64::min);
    println!("silence_kills={}", times.len());
    println!("silence_median_ms={:.0}", median(&mut times));
    println!("silence_min_ms={min:.0}");
    println!("silence_max_ms={max:.0}");
    println!("silence_poll_ms={}", args.poll.as_millis());
    client_under_kills(&args)
}

/// One registry, its adders, and `args.kills` timed kills; the silencing times.
fn kill_series(args: &Args, r: usize) -> BenchResult<Vec<Duration>> {
    let client = poll_client();
    let interval = format!("{}ms", args.probe_interval.as_millis());
    let registry = Role::start(
        &args.mini,
        &[
            "registry",
            "--listen",
            "127.0.0.1:0",
            "--probe-interval",
            &interval,
        ],
        &log_path(&args.logs, &format!("silence-registry-{r}.log")),
    )?;
    let mut started = 0;
    let mut adders = Vec::new();
    for _ in 0..args.adders {
        adders.push(start_adder(args, &registry.addr, r, &mut started)?);
    }
    wait_healthy(&client, &registry.addr, &adders)?;
    let mut rng = fastrand::Rng::new();
    let mut times = Vec::with_capacity(args.kills);
    for _ in 0..args.kills {
        std::thread::sleep(args.probe_interval.mul_f64(rng.f64()));
        let mut victim = adders.swap_remove(rng.usize(..adders.len()));
        let killed = Instant::now();
        victim.kill();
        loop {
            if !is_healthy(&client, &registry.addr, &victim.addr)? {
                break;
            }
            if killed.elapsed() > GIVE_UP {
                return Err(format!("{} still handed out after {GIVE_UP:?}", victim.addr).into());
            }
            std::thread::sleep(args.poll);
        }
        times.push(killed.elapsed());
        adders.push(start_adder(args, &registry.addr, r, &mut started)?);
        wait_healthy(&client, &registry.addr, &adders)?;
    }
    Ok(times)
}

/// Runs the client while two of five adders are killed; prints how many calls failed.
fn client_under_kills(args: &Args) -> BenchResult<()> {
    let client = poll_client();
    let registry = Role::start(
        &args.mini,
        &["registry", "--listen", "127.0.0.1:0"],
        &log_path(&args.logs, "client-registry.log"),
    )?;
    let mut started = 0;
    let mut adders = Vec::new();
    for _ in 0..5 {
        adders.push(start_adder(args, &registry.addr, 99, &mut started)?);
    }
    wait_healthy(&client, &registry.addr, &adders)?;

    let calibration = Instant::now();
    let status = client_command(&args.mini, &registry.addr, CALIBRATION_CALLS)
        .stderr(Stdio::null())
        .status()?;
    if !status.success() {
        return Err(format!("calibration client run failed: {status}").into());
    }
    let expected = calibration
        .elapsed()
        .mul_f64(f64::from(args.client_calls) / f64::from(CALIBRATION_CALLS));

    let log = log_path(&args.logs, "client.log");
    let begun = Instant::now();
    let mut child = client_command(&args.mini, &registry.addr, args.client_calls)
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    let mut mid_run = true;
    for point in CLIENT_KILL_POINTS {
        let at = expected.mul_f64(point);
        if let Some(wait) = at.checked_sub(begun.elapsed()) {
            std::thread::sleep(wait);
        }
        mid_run &= child.try_wait()?.is_none();
        adders.remove(0).kill();
    }
    child.wait()?;
    let took = begun.elapsed();
    let text = std::fs::read_to_string(&log)?;
    let failed: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("failed calls: "))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| format!("no `failed calls:` line in {log:?}"))?;
    println!("client_calls={}", args.client_calls);
    println!("client_failed={failed}");
    println!("client_seconds={:.2}", took.as_secs_f64());
    println!(
        "client_kills_mid_run={}",
        if mid_run { "yes" } else { "no" }
    );
    Ok(())
}

fn client_command(mini: &Path, registry: &str, calls: u32) -> Command {
    let mut cmd = Command::new(mini);
    cmd.args(["client", "1", "2", "--registry", registry, "--repeat"])
        .arg(calls.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    cmd
}

fn start_adder(args: &Args, registry: &str, r: usize, started: &mut usize) -> BenchResult<Role> {
    *started += 1;
    Role::start(
        &args.mini,
        &["adder", "0", "--registry", registry],
        &log_path(&args.logs, &format!("silence-adder-{r}-{started}.log")),
    )
}

fn poll_client() -> Client {
    Client::new(ClientConfig {
        connect_timeout: POLL_TIMEOUT,
        request_timeout: POLL_TIMEOUT,
    })
}

/// The registry's `add` listing, one line per instance.
fn listing(client: &Client, registry: &str) -> BenchResult<String> {
    let resp = mini::rt::block_on(client.get(registry, "/v1/services/add"))?;
    if resp.status != 200 {
        return Err(format!("/v1/services/add answered {}", resp.status).into());
    }
    Ok(resp.text())
}

/// Whether the registry would still hand out `addr`.
fn is_healthy(client: &Client, registry: &str, addr: &str) -> BenchResult<bool> {
    let text = listing(client, registry)?;
    Ok(text.lines().any(|l| {
        l.strip_prefix(addr)
            .is_some_and(|r| r.starts_with(" healthy"))
    }))
}

/// Waits until every one of `adders` is listed healthy.
fn wait_healthy(client: &Client, registry: &str, adders: &[Role]) -> BenchResult<()> {
    let since = Instant::now();
    loop {
        let text = listing(client, registry)?;
        let all = adders.iter().all(|a| {
            text.lines().any(|l| {
                l.strip_prefix(&*a.addr)
                    .is_some_and(|r| r.starts_with(" healthy"))
            })
        });
        if all {
            return Ok(());
        }
        if since.elapsed() > GIVE_UP {
            let expected: Vec<&str> = adders.iter().map(|a| a.addr.as_str()).collect();
            return Err(format!(
                "adders {expected:?} not all healthy at {registry} after {GIVE_UP:?}; listing:\n{text}"
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
