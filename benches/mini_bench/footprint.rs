//! Footprint: cold start of the registry to its first `200` on `/health`, and idle RSS of each role.
//!
//! The poller is a tight loop of blocking loopback connects (refused until the registry listens) in
//! this process; its resolution is the mean time of one attempt, reported as `coldstart_poll_us`.

use crate::common::{free_ports, log_path, median, rss_kib, BenchResult, Role};
use argh::FromArgs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest a start may take before the run fails.
const START_LIMIT: Duration = Duration::from_secs(5);
/// How long a role idles before its RSS is read.
const IDLE: Duration = Duration::from_secs(1);
/// The request the poller sends.
const HEALTH_REQUEST: &[u8] = b"GET /health HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";

/// Cold start to /health and idle RSS of the registry and an adder.
#[derive(FromArgs)]
#[argh(subcommand, name = "footprint")]
pub struct Args {
    /// path of the mini binary
    #[argh(option)]
    mini: PathBuf,
    /// directory for the processes' logs
    #[argh(option)]
    logs: PathBuf,
    /// cold starts to take the median of (default 20)
    #[argh(option, default = "20")]
    starts: usize,
}

pub fn run(args: Args) -> BenchResult<()> {
    std::fs::create_dir_all(&args.logs)?;
    let mut times = Vec::with_capacity(args.starts);
    let (mut attempts, mut polling) = (0u64, Duration::ZERO);
    for _ in 0..args.starts {
        let (took, tries) = cold_start(&args)?;
        times.push(took.as_secs_f64() * 1000.0);
        attempts += tries;
        polling += took;
    }
    let max = times.iter().copied().fold(0.0, f64::max);
    println!("coldstart_starts={}", times.len());
    println!("coldstart_median_ms={:.2}", median(&mut times));
    println!("coldstart_max_ms={max:.2}");
    println!(
        "coldstart_poll_us={:.0}",
        polling.as_secs_f64() * 1e6 / attempts.max(1) as f64
    );

    let registry = Role::start(
        &args.mini,
        &["registry", "--listen", "127.0.0.1:0"],
        &log_path(&args.logs, "footprint-registry.log"),
    )?;
    let adder = Role::start(
        &args.mini,
        &["adder", "0", "--registry", &registry.addr],
        &log_path(&args.logs, "footprint-adder.log"),
    )?;
    std::thread::sleep(IDLE);
    println!("rss_idle_registry_kib={}", rss_kib(registry.pid())?);
    println!("rss_idle_adder_kib={}", rss_kib(adder.pid())?);
    Ok(())
}

/// Starts a registry on a free port and polls until `/health` answers 200: the time and the attempts.
fn cold_start(args: &Args) -> BenchResult<(Duration, u64)> {
    let port = *free_ports(1)?.first().ok_or("no free port")?;
    let listen = format!("127.0.0.1:{port}");
    let begun = Instant::now();
    let mut child = Command::new(&args.mini)
        .args(["registry", "--listen", &listen])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let mut tries = 0;
    let result = loop {
        tries += 1;
        if health_ok(&listen) {
            break Ok((begun.elapsed(), tries));
        }
        if begun.elapsed() > START_LIMIT {
            break Err(format!("registry on {listen} not healthy after {START_LIMIT:?}").into());
        }
        if let Some(status) = child.try_wait()? {
            break Err(format!("registry on {listen} exited with {status}").into());
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// One attempt: connect, ask `/health`, and whether the answer is a 200.
fn health_ok(addr: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return false;
    };
    let mut reply = Vec::new();
    stream.write_all(HEALTH_REQUEST).is_ok()
        && stream.read_to_end(&mut reply).is_ok()
        && reply.starts_with(b"HTTP/1.1 200")
}
