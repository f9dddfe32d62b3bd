//! What the measurements share: processes of ours to start and stop, /proc readings, percentiles,
//! and the beat loop of a fleet renewing its leases on schedule.

use mini::http::client::{Client, ClientRequest, ClientResponse};
use smol::Timer;
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Errors of a measurement: reported on stderr, exit status 1.
pub type BenchError = Box<dyn std::error::Error + Send + Sync>;
/// A measurement's result.
pub type BenchResult<T> = Result<T, BenchError>;

/// Kernel clock ticks per second in `/proc/PID/stat` (USER_HZ, 100 on every mainstream Linux build).
pub const CLOCK_TICKS_PER_SEC: f64 = 100.0;
/// How long a started role may take to log `listening on ADDR`.
const LISTEN_WAIT: Duration = Duration::from_secs(10);
/// How often the role's log is read while waiting for that line.
const LISTEN_POLL: Duration = Duration::from_millis(1);

/// `count` distinct loopback ports that were free a moment ago (bound together, then released).
pub fn free_ports(count: usize) -> BenchResult<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    let ports = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<std::io::Result<Vec<_>>>()?;
    Ok(ports)
}

/// Resident set size of `pid` in KiB (`VmRSS` in `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> BenchResult<u64> {
    status_field(pid, "VmRSS:")
}

/// The number in the line `name` (such as `VmRSS:` or `Threads:`) of `/proc/PID/status`, without its
/// unit (`kB` for sizes).
pub fn status_field(pid: u32, name: &str) -> BenchResult<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no {name} in /proc/{pid}/status").into())
}

/// CPU time (user + system) `pid` has used so far, in seconds, from `/proc/PID/stat`.
pub fn cpu_seconds(pid: u32) -> BenchResult<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or("malformed /proc/PID/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    let ticks = |i: usize| -> BenchResult<f64> {
        Ok(fields
            .get(i)
            .ok_or("short /proc/PID/stat")?
            .parse::<f64>()?)
    };
    Ok((ticks(11)? + ticks(12)?) / CLOCK_TICKS_PER_SEC)
}

/// The `p`-th percentile (0..=100) of sorted samples, nearest rank; 0 for no samples.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Microseconds as milliseconds with three decimals, for the `key=value` output.
pub fn ms(micros: u64) -> String {
    format!("{:.3}", micros as f64 / 1000.0)
}

/// The median of a few values (sorted in place); 0 for none.
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// A `mini` process we started: its address once it listens, killed and reaped on drop.
pub struct Role {
    child: Child,
    /// The `HOST:PORT` it logged as `listening on`.
    pub addr: String,
}

impl Role {
    /// Starts `mini ARGS...` with stderr to `log` and waits for its `listening on ADDR` line.
    pub fn start(mini: &Path, args: &[&str], log: &Path) -> BenchResult<Role> {
        Role::start_with_env(mini, args, log, &[])
    }

    /// [`Role::start`] with extra environment variables.
    pub fn start_with_env(
        mini: &Path,
        args: &[&str],
        log: &Path,
        env: &[(&str, &str)],
    ) -> BenchResult<Role> {
        let mut cmd = Command::new(mini);
        cmd.args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(log)?);
        let child = cmd.spawn()?;
        let mut role = Role {
            child,
            addr: String::new(),
        };
        let deadline = Instant::now() + LISTEN_WAIT;
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            // Only whole lines: mini's stderr is unbuffered and a line may arrive in several writes.
            if let Some(addr) = text
                .split_inclusive('\n')
                .filter(|l| l.ends_with('\n'))
                .find_map(|l| l.split_once("listening on ").map(|(_, a)| a.trim()))
            {
                role.addr = addr.to_string();
                return Ok(role);
            }
            if let Some(status) = role.child.try_wait()? {
                return Err(
                    format!("{args:?} exited with {status} before listening; see {log:?}").into(),
                );
            }
            if Instant::now() > deadline {
                return Err(format!("{args:?} did not listen within {LISTEN_WAIT:?}").into());
            }
            std::thread::sleep(LISTEN_POLL);
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A log file path `name` under `dir`.
pub fn log_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// What a beat phase measured.
#[derive(Default)]
pub struct Beats {
    /// Latency of every successful beat, from the send to the full response, in microseconds.
    pub latency_us: Vec<u64>,
    /// How late every beat was sent against its schedule, in microseconds.
    pub lateness_us: Vec<u64>,
    /// Beats that failed: an error, or a status other than 200.
    pub failed: u64,
    /// The first failure's reason.
    pub first_error: Option<String>,
    /// From the phase's start to the last beat's answer.
    pub elapsed: Duration,
}

/// `METHOD target` to `addr` without a body; the response only if it is a 200, else the status
/// and text, or the error, as one line.
pub async fn request_ok(
    client: &Client,
    method: &str,
    addr: &str,
    target: &str,
) -> Result<ClientResponse, String> {
    match client
        .request(&ClientRequest::new(method, addr, target))
        .await
    {
        Ok(resp) if resp.status == 200 => Ok(resp),
        Ok(resp) => Err(format!("{} {}", resp.status, resp.text().trim())),
        Err(e) => Err(e.to_string()),
    }
}

/// `PUT target` to `registry`; `Ok` only on a 200.
pub async fn put_ok(client: &Client, registry: &str, target: &str) -> Result<(), String> {
    request_ok(client, "PUT", registry, target).await.map(drop)
}

/// Registers instances `range` as fast as `workers` tasks go, each with one client from `client`
/// (so one keep-alive connection) taking the next instance not yet taken: instance `i` is a `PUT`
/// of the target `put(i)` gives, to the registry it gives. The first failure is printed, prefixed
/// by `bench`; any failure fails the whole.
pub async fn register_each<F>(
    workers: usize,
    range: std::ops::Range<usize>,
    client: fn() -> Client,
    put: F,
    bench: &'static str,
) -> BenchResult<()>
where
    F: Fn(usize) -> (Arc<str>, String) + Clone + Send + 'static,
{
    let count = range.len();
    let next = Arc::new(AtomicUsize::new(range.start));
    let failed = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (next, failed, put, end) = (next.clone(), failed.clone(), put.clone(), range.end);
            mini::rt::spawn(async move {
                let client = client();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= end {
                        return;
                    }
                    let (registry, target) = put(i);
                    if let Err(e) = put_ok(&client, &registry, &target).await {
                        if failed.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!("{bench}: registering {target} failed: {e}");
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await;
    }
    match failed.load(Ordering::Relaxed) {
        0 => Ok(()),
        n => Err(format!("{n} of {count} registrations failed").into()),
    }
}

/// Renews instances `0..n` once per `period` for `rounds` periods. `workers` tasks each own one
/// client from `client` (so one keep-alive connection) and the instances `i` with
/// `i % workers == w`; instance `i` beats at `start + round * period + period * i / n`, so the
/// offered rate is `n / period` beats per second, spread evenly. A beat is a `PUT` of the target
/// `beat(i)` gives, to the registry it gives.
pub async fn beat_rounds<F>(
    workers: usize,
    n: usize,
    period: Duration,
    rounds: u32,
    client: fn() -> Client,
    beat: F,
) -> Beats
where
    F: Fn(usize) -> (Arc<str>, String) + Clone + Send + 'static,
{
    let start = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let beat = beat.clone();
            mini::rt::spawn(async move {
                let client = client();
                let mine: Vec<(usize, Arc<str>, String)> = (w..n)
                    .step_by(workers)
                    .map(|i| {
                        let (registry, target) = beat(i);
                        (i, registry, target)
                    })
                    .collect();
                let mut out = Beats {
                    latency_us: Vec::with_capacity(mine.len() * rounds as usize),
                    lateness_us: Vec::with_capacity(mine.len() * rounds as usize),
                    ..Beats::default()
                };
                for round in 0..rounds {
                    for (i, registry, target) in &mine {
                        let due = start + period * round + period.mul_f64(*i as f64 / n as f64);
                        if due > Instant::now() {
                            Timer::at(due).await;
                        }
                        let sent = Instant::now();
                        out.lateness_us
                            .push(sent.saturating_duration_since(due).as_micros() as u64);
                        match put_ok(&client, registry, target).await {
                            Ok(()) => out.latency_us.push(sent.elapsed().as_micros() as u64),
                            Err(e) => {
                                out.failed += 1;
                                out.first_error.get_or_insert(e);
                            }
                        }
                    }
                }
                out.elapsed = start.elapsed();
                out
            })
        })
        .collect();
    let mut all = Beats::default();
    for t in tasks {
        let part = t.await;
        all.latency_us.extend(part.latency_us);
        all.lateness_us.extend(part.lateness_us);
        all.failed += part.failed;
        all.first_error = all.first_error.or(part.first_error);
        all.elapsed = all.elapsed.max(part.elapsed);
    }
    all
}

/// Fake hosts per port in [`fake_addr`]: `127.0.X.Y` with X in 0..250 and Y in 1..=250.
pub const HOSTS_PER_PORT: usize = 250 * 250;

/// The `i`-th fake instance address, `127.0.X.Y:PORT` from port `first_port` on (nothing listens
/// there: the registries under test must not probe it).
pub fn fake_addr(first_port: usize, i: usize) -> String {
    let host = i % HOSTS_PER_PORT;
    let port = first_port + i / HOSTS_PER_PORT;
    format!("127.0.{}.{}:{port}", host / 250, host % 250 + 1)
}

/// A duration flag (`5s`, `200ms`), as mini reads its own.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    mini::duration::parse(s)
}

/// Our HTTP client with `timeout` for connecting and for each request.
pub fn client_with(timeout: Duration) -> Client {
    Client::new(mini::http::client::ClientConfig {
        connect_timeout: timeout,
        request_timeout: timeout,
    })
}
