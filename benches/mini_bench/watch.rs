//! Change to watcher: how long after a registration starts does a waiting watcher have the news?
//!
//! W watcher tasks (on `mini::rt`, each with its own [`Client`], so its own connection) hold a blocking
//! query `GET /v1/services/{service}?index=N&wait=..` on the registry. Once the registry's `mini_watchers`
//! gauge shows all W waiting, the driver notes the time and registers a new fake instance with a `PUT`;
//! each watcher's latency runs from that moment to its response being complete (and listing the new
//! instance). Every watcher then re-arms on the index its answer carried, and the driver waits for the
//! gauge to read W again before the next change, so every change finds every watcher waiting.
//!
//! The `PUT` may go to another registry than the one watched (`--writer`): with two registries on one
//! etcd, that measures how long a registration through one takes to reach a watcher of the other.
//!
//! The instances are fake (`127.0.2.X:PORT`, nothing listens), so the registries must not probe during
//! the run (a probe interval longer than the run).

use crate::common::{cpu_seconds, ms, percentile, rss_kib, status_field, BenchResult};
use argh::FromArgs;
use mini::http::client::{Client, ClientConfig, ClientRequest};
use smol::channel::{Receiver, Sender};
use smol::Timer;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Connect limit of every client, and request limit of the driver's (PUTs, gauge readings, listings).
const SHORT_TIMEOUT: Duration = Duration::from_secs(5);
/// A watcher's request limit beyond its wait: the registry adds up to wait/16 of jitter.
const WATCH_SLACK: Duration = Duration::from_secs(10);
/// Longest the driver waits for all watchers to answer one change, or to be waiting again.
const GIVE_UP: Duration = Duration::from_secs(30);
/// Time between two readings of the `mini_watchers` gauge while watchers (re-)arm.
const GAUGE_POLL: Duration = Duration::from_millis(2);
/// Lease of the fake instances: longer than any run, so none expires (an expiry is a change too).
const INSTANCE_TTL: &str = "60m";
/// First port of the fake instances; instance `i` is `127.0.2.{i % 250 + 1}:{FIRST_PORT + i / 250}`.
const FIRST_PORT: usize = 30_000;
/// Watchers connecting at once while a phase arms, so a thousand connects do not all hit the accept
/// queue in the same instant.
const ARM_BATCH: usize = 100;

/// Time from a registration to the answers of W waiting watchers, for each W.
#[derive(FromArgs)]
#[argh(subcommand, name = "watch")]
pub struct Args {
    /// registry HOST:PORT the watchers wait on
    #[argh(option)]
    registry: String,
    /// registry HOST:PORT the PUTs go to (default: the watched one)
    #[argh(option)]
    writer: Option<String>,
    /// process id of the watched registry, for its thread count and RSS
    #[argh(option)]
    pid: Option<u32>,
    /// watcher counts, one phase each (default 1,1000)
    #[argh(option, default = "String::from(\"1,1000\")")]
    watchers: String,
    /// changes timed per phase (default 20)
    #[argh(option, default = "20")]
    changes: usize,
    /// service watched and registered to (default add)
    #[argh(option, default = "String::from(\"add\")")]
    service: String,
    /// the watches' wait, longer than a phase (default 60s)
    #[argh(
        option,
        default = "Duration::from_secs(60)",
        from_str_fn(parse_duration)
    )]
    wait: Duration,
    /// prefix of the output keys (default watch)
    #[argh(option, default = "String::from(\"watch\")")]
    prefix: String,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    mini::duration::parse(s)
}

/// The `i`-th fake instance address.
fn instance_addr(i: usize) -> String {
    format!("127.0.2.{}:{}", i % 250 + 1, FIRST_PORT + i / 250)
}

/// Whether a text listing names `addr` as one of its instances.
fn lists(text: &str, addr: &str) -> bool {
    text.lines()
        .any(|l| l.strip_prefix(addr).is_some_and(|r| r.starts_with(' ')))
}

fn short_client() -> Client {
    Client::new(ClientConfig {
        connect_timeout: SHORT_TIMEOUT,
        request_timeout: SHORT_TIMEOUT,
    })
}

/// What one change measured: each watcher's latency, in microseconds.
struct Change {
    latency_us: Vec<u64>,
    /// From the last watcher's answer to all of them waiting again.
    rearm: Duration,
}

/// What the watchers share with the driver.
struct Shared {
    registry: String,
    service: String,
    wait: Duration,
    /// The instance the current change registers: a watcher reports an answer that lists it.
    expected: Mutex<String>,
}

pub fn run(args: Args) -> BenchResult<()> {
    let counts: Vec<usize> = args
        .watchers
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()?;
    if counts.contains(&0) || args.changes == 0 {
        return Err("--watchers and --changes must be positive".into());
    }
    mini::rt::block_on(measure(args, counts))
}

async fn measure(args: Args, counts: Vec<usize>) -> BenchResult<()> {
    let client = short_client();
    let writer = args.writer.clone().unwrap_or_else(|| args.registry.clone());
    let p = &args.prefix;
    let shared = Arc::new(Shared {
        registry: args.registry.clone(),
        service: args.service.clone(),
        wait: args.wait,
        expected: Mutex::new(String::new()),
    });
    // A first instance, so the service exists; on another registry, once it is listed there.
    let mut next = 0;
    let seed = instance_addr(next);
    next += 1;
    put(&client, &writer, &args.service, &seed).await?;
    let since = Instant::now();
    while !lists(
        &listing(&client, &args.registry, &args.service).await?.1,
        &seed,
    ) {
        if since.elapsed() > GIVE_UP {
            return Err(format!("{seed} not listed by {} after {GIVE_UP:?}", args.registry).into());
        }
        Timer::after(GAUGE_POLL).await;
    }
    if let Some(pid) = args.pid {
        println!("{p}_threads_idle={}", status_field(pid, "Threads:")?);
        println!("{p}_rss_kib_idle={}", rss_kib(pid)?);
    }
    println!("{p}_changes={}", args.changes);

    for &w in &counts {
        let (tx, rx) = smol::channel::unbounded();
        let (index, _) = listing(&client, &args.registry, &args.service).await?;
        let armed = Instant::now();
        let mut tasks = Vec::with_capacity(w);
        while tasks.len() < w {
            let batch = ARM_BATCH.min(w - tasks.len());
            tasks.extend(
                (0..batch).map(|_| mini::rt::spawn(watcher(shared.clone(), index, tx.clone()))),
            );
            wait_watchers(&client, &args.registry, tasks.len(), &rx).await?;
        }
        println!("{p}_{w}_arm_ms={}", ms(armed.elapsed().as_micros() as u64));
        if let Some(pid) = args.pid {
            println!("{p}_{w}_threads={}", status_field(pid, "Threads:")?);
            println!("{p}_{w}_rss_kib={}", rss_kib(pid)?);
        }

        let cpu_before = (
            args.pid.map(cpu_seconds).transpose()?,
            cpu_seconds(std::process::id())?,
        );
        let mut changes = Vec::with_capacity(args.changes);
        for _ in 0..args.changes {
            let addr = instance_addr(next);
            next += 1;
            *shared.expected.lock().unwrap_or_else(|e| e.into_inner()) = addr.clone();
            changes.push(change(&client, &writer, &shared, w, &addr, &rx).await?);
        }
        // CPU per change, re-arming and gauge readings included (10 ms clock ticks: a rough figure).
        let per_change = |before: f64, after: f64| (after - before) * 1000.0 / args.changes as f64;
        if let (Some(pid), Some(before)) = (args.pid, cpu_before.0) {
            let used = per_change(before, cpu_seconds(pid)?);
            println!("{p}_{w}_registry_cpu_ms_per_change={used:.1}");
        }
        let used = per_change(cpu_before.1, cpu_seconds(std::process::id())?);
        println!("{p}_{w}_watchers_cpu_ms_per_change={used:.1}");
        drop(tasks);
        wait_watchers(&client, &args.registry, 0, &rx).await?;
        report(p, w, &mut changes);
    }
    Ok(())
}

/// Registers `addr`, collects every watcher's answer, and waits until all are waiting again.
async fn change(
    client: &Client,
    writer: &str,
    shared: &Shared,
    w: usize,
    addr: &str,
    rx: &Receiver<Result<Instant, String>>,
) -> BenchResult<Change> {
    let sent = Instant::now();
    put(client, writer, &shared.service, addr).await?;
    let mut latency_us = Vec::with_capacity(w);
    while latency_us.len() < w {
        let answered = match smol::future::or(async { Some(rx.recv().await) }, async {
            Timer::at(sent + GIVE_UP).await;
            None
        })
        .await
        {
            Some(Ok(Ok(at))) => at,
            Some(Ok(Err(e))) => return Err(format!("a watcher failed: {e}").into()),
            Some(Err(_)) => return Err("every watcher stopped".into()),
            None => {
                return Err(format!(
                    "{} of {w} watchers answered {addr} within {GIVE_UP:?}",
                    latency_us.len()
                )
                .into())
            }
        };
        latency_us.push(answered.saturating_duration_since(sent).as_micros() as u64);
    }
    let last = Instant::now();
    wait_watchers(client, &shared.registry, w, rx).await?;
    Ok(Change {
        latency_us,
        rearm: last.elapsed(),
    })
}

/// One watcher: waits on the service, reports each answer that lists the expected instance (once per
/// instance), and re-arms on the answer's index, until its task is dropped.
async fn watcher(shared: Arc<Shared>, mut index: u64, tx: Sender<Result<Instant, String>>) {
    let client = Client::new(ClientConfig {
        connect_timeout: SHORT_TIMEOUT,
        request_timeout: shared.wait + WATCH_SLACK,
    });
    let mut reported = String::new();
    let wait = format!("{}ms", shared.wait.as_millis());
    loop {
        let target = format!("/v1/services/{}?index={index}&wait={wait}", shared.service);
        let answer = match client.get(&shared.registry, &target).await {
            Ok(resp) if resp.status == 200 => resp,
            Ok(resp) => {
                let _ = tx
                    .send(Err(format!("{target}: {} {}", resp.status, resp.text())))
                    .await;
                return;
            }
            Err(e) => {
                let _ = tx.send(Err(format!("{target}: {e}"))).await;
                return;
            }
        };
        let at = Instant::now();
        let Some(new) = answer
            .header("X-Mini-Index")
            .and_then(|v| v.parse::<u64>().ok())
        else {
            let _ = tx.send(Err(format!("{target}: no X-Mini-Index"))).await;
            return;
        };
        if new == index {
            continue; // the wait ran out
        }
        index = new;
        let expected = shared
            .expected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if expected != reported && lists(&answer.text(), &expected) {
            reported = expected;
            if tx.send(Ok(at)).await.is_err() {
                return;
            }
        }
    }
}

/// Waits until the registry's `mini_watchers` gauge reads `n`; fails early if a watcher reported an error.
async fn wait_watchers(
    client: &Client,
    registry: &str,
    n: usize,
    rx: &Receiver<Result<Instant, String>>,
) -> BenchResult<()> {
    let since = Instant::now();
    loop {
        if let Ok(Err(e)) = rx.try_recv() {
            return Err(format!("a watcher failed: {e}").into());
        }
        let seen = watchers_gauge(client, registry).await?;
        if seen == n {
            return Ok(());
        }
        if since.elapsed() > GIVE_UP {
            return Err(format!("{seen} watchers waiting, not {n}, after {GIVE_UP:?}").into());
        }
        Timer::after(GAUGE_POLL).await;
    }
}

/// The `mini_watchers` gauge of the registry's `/metrics`.
async fn watchers_gauge(client: &Client, registry: &str) -> BenchResult<usize> {
    let resp = client.get(registry, "/metrics").await?;
    let text = resp.text();
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix("mini_watchers "))
        .ok_or("no mini_watchers in /metrics")?;
    Ok(value.trim().parse::<f64>()? as usize)
}

/// The service's index (`X-Mini-Index`) and text listing.
async fn listing(client: &Client, registry: &str, service: &str) -> BenchResult<(u64, String)> {
    let resp = client
        .get(registry, &format!("/v1/services/{service}"))
        .await?;
    if resp.status != 200 {
        return Err(format!("/v1/services/{service} answered {}", resp.status).into());
    }
    let index = resp
        .header("X-Mini-Index")
        .ok_or("no X-Mini-Index")?
        .parse()?;
    Ok((index, resp.text()))
}

/// Registers `addr` under `service`; `Ok` only on a 200.
async fn put(client: &Client, registry: &str, service: &str, addr: &str) -> BenchResult<()> {
    let target = format!("/v1/services/{service}/{addr}?ttl={INSTANCE_TTL}");
    let req = ClientRequest::new("PUT", registry, &target);
    let resp = client.request(&req).await?;
    if resp.status != 200 {
        return Err(format!("PUT {target}: {} {}", resp.status, resp.text().trim()).into());
    }
    Ok(())
}

/// Prints one phase's figures: the per-change median and slowest watcher, each as median, p99 and max
/// over the changes (with 20 changes the p99 is the largest, as the nearest rank).
fn report(p: &str, w: usize, changes: &mut [Change]) {
    let mut medians = Vec::with_capacity(changes.len());
    let mut slowest = Vec::with_capacity(changes.len());
    let mut rearm = Vec::with_capacity(changes.len());
    for c in changes.iter_mut() {
        c.latency_us.sort_unstable();
        medians.push(percentile(&c.latency_us, 50.0));
        slowest.push(percentile(&c.latency_us, 100.0));
        rearm.push(c.rearm.as_micros() as u64);
    }
    for (name, values) in [
        ("median", &mut medians),
        ("slowest", &mut slowest),
        ("rearm", &mut rearm),
    ] {
        values.sort_unstable();
        println!("{p}_{w}_{name}_p50_ms={}", ms(percentile(values, 50.0)));
        println!("{p}_{w}_{name}_p99_ms={}", ms(percentile(values, 99.0)));
        println!("{p}_{w}_{name}_max_ms={}", ms(percentile(values, 100.0)));
    }
}
