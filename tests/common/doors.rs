//! Helpers for the door tests, which drive real programs (dig, HAProxy, Prometheus, VictoriaMetrics,
//! python-consul) against real `mini` processes: finding a program (or printing a skip), the fast
//! registry timings, temporary directories, external processes killed on drop, a tolerant HTTP/1.0
//! GET for servers that are not ours, a registry with `--dns`, and dig's output split into sections
//! (tests/dns.rs reads dig through it too).
//!
//! Every wait polls with a deadline ([`PROC_DEADLINE`]); nothing here sleeps a fixed time.

use super::procs::{free_port, Proc, PROC_DEADLINE};
use super::RawResponse;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The path of `name` in `PATH`, `/usr/sbin` or `/usr/bin`; `None` after printing a skip line
/// naming `package`, for a test to return early.
pub fn program(name: &str, package: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        eprintln!("skipped: {name} is not installed (apt-get install {package})");
    }
    found
}

/// A registry's timings for the door tests: probes every 200 ms with a 200 ms timeout, so a check's
/// outcome shows quickly, and a 2 s lease.
pub const FAST_PROBES: &[&str] = &[
    "--probe-interval",
    "200ms",
    "--probe-timeout",
    "200ms",
    "--ttl",
    "2s",
];

/// A temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh, empty directory named after `what`.
    pub fn new(what: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mini-{what}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        TempDir(dir)
    }

    /// `NAME` inside the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes `text` to `NAME` inside the directory and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.join(name);
        std::fs::write(&path, text).expect("write a temporary file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A program that is not ours, its stdout and stderr in one log file; killed (SIGKILL) on drop.
pub struct External {
    /// The child process.
    pub child: Child,
    /// Where its output goes.
    pub log: PathBuf,
}

impl External {
    /// Starts `cmd` with its output in `log`.
    pub fn spawn(mut cmd: Command, log: &Path) -> External {
        let out = std::fs::File::create(log).expect("create a log file");
        let err = out.try_clone().expect("clone the log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
        External {
            child,
            log: log.to_path_buf(),
        }
    }

    /// Its output so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }
}

impl Drop for External {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a program that must listen on a port named in its command line or configuration:
/// `make(port)` builds the command for a free port ([`free_port`]: one a program may still lose a
/// race for), `ready(port)` says whether it serves. A start
/// whose process exits before it is ready (the port was taken meanwhile) is retried on another
/// port, three times at most.
pub fn start_with_port(
    what: &str,
    log: &Path,
    mut make: impl FnMut(u16) -> Command,
    mut ready: impl FnMut(u16) -> bool,
) -> (External, u16) {
    let mut last = String::new();
    for _ in 0..3 {
        let port = free_port();
        let mut ext = External::spawn(make(port), log);
        let deadline = Instant::now() + PROC_DEADLINE;
        loop {
            if ready(port) {
                return (ext, port);
            }
            if let Some(status) = ext.exited() {
                last = format!("exited with {status}:\n{}", ext.output());
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{what} not ready within {PROC_DEADLINE:?}:\n{}",
                ext.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("{what} did not start in three tries; last: {last}");
}

/// `GET target` over HTTP/1.0 (so a server that is not ours answers without chunking and closes):
/// the status and body, or `None` when the connection or the read fails.
pub fn http_get(addr: &str, target: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(PROC_DEADLINE)).ok()?;
    let raw = format!("GET {target} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(raw.as_bytes()).ok()?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// One request to one of our servers with `Connection: close`: the whole parsed response, headers
/// included.
pub fn request(addr: &str, method: &str, target: &str, headers: &str, body: &str) -> RawResponse {
    let raw = format!(
        "{method} {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{headers}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    super::procs::exchange_response(addr, &raw)
}

/// `PUT target` with `body`: status and body text.
pub fn put(addr: &str, target: &str, body: &str) -> (u16, String) {
    let resp = request(addr, "PUT", target, "", body);
    (resp.status, resp.text().to_string())
}

/// A registry with `--dns 127.0.0.1:0` and [`FAST_PROBES`] plus `extra`; its DNS port, read
/// from its `dns on 127.0.0.1:PORT` line.
pub fn dns_registry(extra: &[&str]) -> (Proc, u16) {
    let mut args = vec!["--dns", "127.0.0.1:0"];
    args.extend_from_slice(FAST_PROBES);
    args.extend_from_slice(extra);
    let registry = Proc::registry(&args);
    let port = dns_port(&registry);
    (registry, port)
}

/// The DNS port a registry started with `--dns 127.0.0.1:0` logs, waiting for the line.
pub fn dns_port(registry: &Proc) -> u16 {
    let mut port = None;
    super::procs::eventually("the registry logs its DNS port", || {
        port = registry.log.lock().unwrap().iter().find_map(|l| {
            let rest = l.split("dns on 127.0.0.1:").nth(1)?;
            rest.split(' ').next()?.parse::<u16>().ok()
        });
        port.is_some()
    });
    port.expect("a DNS port")
}

/// What dig printed, split up; records with their whitespace collapsed to single spaces.
#[derive(Debug, Default)]
pub struct Dig {
    /// `NOERROR`, `NXDOMAIN`...
    pub status: String,
    /// The header flags (`qr`, `aa`, `tc`...).
    pub flags: Vec<String>,
    /// The answer section.
    pub answer: Vec<String>,
    /// The authority section.
    pub authority: Vec<String>,
    /// The additional section (without the OPT pseudo-section).
    pub additional: Vec<String>,
    /// All of it.
    pub text: String,
}

impl Dig {
    /// Whether the header flags include `flag`.
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// The ports of the SRV answers, sorted.
    pub fn srv_ports(&self) -> Vec<u16> {
        let mut v: Vec<u16> = self
            .answer
            .iter()
            .filter(|r| r.contains(" IN SRV "))
            .filter_map(|r| r.split(' ').nth(6)?.parse().ok())
            .collect();
        v.sort_unstable();
        v
    }
}

/// Runs `dig @127.0.0.1 -p PORT ARGS` (dig must be installed: check with [`program`] first).
pub fn dig(port: u16, args: &[&str]) -> Dig {
    let out = Command::new("dig")
        .args(["@127.0.0.1", "-p", &port.to_string(), "+time=2", "+tries=2"])
        .args(args)
        .output()
        .expect("run dig");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "dig {args:?} failed:\n{text}");
    let mut dig = Dig {
        text: text.clone(),
        ..Dig::default()
    };
    let mut section = None;
    for line in text.lines() {
        if let Some(rest) = line.split("status: ").nth(1) {
            dig.status = rest.split(',').next().unwrap_or("").to_string();
        }
        if let Some(rest) = line.strip_prefix(";; flags: ") {
            let flags = rest.split(';').next().unwrap_or("");
            dig.flags = flags.split_whitespace().map(String::from).collect();
        }
        if line.starts_with(";; ") && line.ends_with("SECTION:") {
            section = Some(line.to_string());
            continue;
        }
        if line.trim().is_empty() {
            section = None;
            continue;
        }
        let Some(name) = &section else { continue };
        let rec = line.split_whitespace().collect::<Vec<_>>().join(" ");
        match name.as_str() {
            ";; ANSWER SECTION:" => dig.answer.push(rec),
            ";; AUTHORITY SECTION:" => dig.authority.push(rec),
            ";; ADDITIONAL SECTION:" => dig.additional.push(rec),
            _ => {}
        }
    }
    dig
}

/// The `mini_http_requests_total{route="ROUTE",status="200"}` count on a server's `/metrics`.
pub fn requests_served(addr: &str, route: &str) -> u64 {
    let (_, body) = super::procs::get(addr, "/metrics");
    let prefix = format!("mini_http_requests_total{{route=\"{route}\",status=\"200\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Additions an adder answered ([`requests_served`] for its `add` route).
pub fn adds_served(adder: &str) -> u64 {
    requests_served(adder, "add")
}

/// The port of a `HOST:PORT` address.
pub fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {addr:?}"))
}

/// Polls `check` every 20 ms until it is true; after [`PROC_DEADLINE`], panics with `what` and the
/// last 4 KiB of the program's log at `log`.
pub fn eventually_or_show(what: &str, log: &Path, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + PROC_DEADLINE;
    while !check() {
        if Instant::now() >= deadline {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let mut start = text.len().saturating_sub(4096);
            while !text.is_char_boundary(start) {
                start += 1;
            }
            let tail = &text[start..];
            panic!(
                "{what}: not true within {PROC_DEADLINE:?}; {}:\n{tail}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
