//! Helpers for tests that run the real `mini` binary: start roles on port 0, find their address from
//! their first log line, talk to them over blocking sockets, and poll for conditions with a deadline.

use super::{parse_response, RawResponse};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest a process-level condition may take before the test fails (a hang guard, not a speed check).
pub const PROC_DEADLINE: Duration = Duration::from_secs(20);

/// The binary under test.
pub fn mini() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mini"))
}

/// A running role; killed when dropped.
pub struct Proc {
    /// The child process.
    pub child: Child,
    /// The address it listens on.
    pub addr: String,
    /// Every stderr line so far.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    /// Starts `mini ARGS` and waits for its `listening on ADDR` line.
    pub fn start(args: &[&str]) -> Proc {
        let mut cmd = mini();
        cmd.args(args);
        Proc::spawn(cmd)
    }

    /// Starts `cmd` (which must end up running a `mini` role, e.g. through a shell that `exec`s it)
    /// and waits for its `listening on ADDR` line.
    pub fn spawn(mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mini");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some((_, addr)) = line.split_once("listening on ") {
                    let _ = tx.send(addr.trim().to_string());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = rx
            .recv_timeout(PROC_DEADLINE)
            .unwrap_or_else(|_| panic!("{cmd:?} never said where it listens"));
        Proc { child, addr, log }
    }

    /// A registry on a free port with the given extra flags.
    /// No warm-up unless `extra` sets one, so an empty lookup is the plain 400 at once.
    pub fn registry(extra: &[&str]) -> Proc {
        let mut args = vec!["registry", "--listen", "127.0.0.1:0"];
        if !extra.contains(&"--warmup") {
            args.extend(["--warmup", "0s"]);
        }
        args.extend_from_slice(extra);
        Proc::start(&args)
    }

    /// An adder on a free port, beating every 200 ms to `registry`.
    pub fn adder(registry: &str) -> Proc {
        Proc::adder_with(registry, &[])
    }

    /// An adder on a free port, beating every 200 ms to `registry`, with extra flags.
    pub fn adder_with(registry: &str, extra: &[&str]) -> Proc {
        let mut args = vec!["adder", "0", "--registry", registry, "--beat", "200ms"];
        args.extend_from_slice(extra);
        Proc::start(&args)
    }

    /// Kills the process at once (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal("TERM")
    }

    /// Sends the signal named `name` (`TERM`, `INT`) and waits for the exit status.
    pub fn signal(&mut self, name: &str) -> ExitStatus {
        assert!(send_signal(self.child.id(), name), "kill -{name} failed");
        exit_status(&mut self.child)
            .unwrap_or_else(|| panic!("process did not exit after SIG{name}"))
    }

    /// Whether some stderr line contains `needle`.
    pub fn logged(&self, needle: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(needle))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends the signal named `name` (`TERM`, `KILL`...) to `pid` without waiting; whether `kill` did.
pub fn send_signal(pid: u32, name: &str) -> bool {
    Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

/// `child`'s exit status once it exits (polled every 10 ms), or `None` while it still runs after
/// [`PROC_DEADLINE`].
pub fn exit_status(child: &mut Child) -> Option<ExitStatus> {
    let deadline = Instant::now() + PROC_DEADLINE;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends one raw request (`Connection: close` is up to the caller) and returns the whole parsed
/// response, headers included.
pub fn exchange_response(addr: &str, raw: &str) -> RawResponse {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(PROC_DEADLINE))
        .expect("timeout");
    stream.write_all(raw.as_bytes()).expect("write");
    let mut buf = Vec::new();
    let _ = stream.read_to_end(&mut buf);
    parse_response(&buf)
        .unwrap_or_else(|| panic!("no whole response: {:?}", String::from_utf8_lossy(&buf)))
        .0
}

/// [`exchange_response`]'s status and body.
pub fn exchange(addr: &str, raw: &str) -> (u16, String) {
    let resp = exchange_response(addr, raw);
    (
        resp.status,
        String::from_utf8_lossy(&resp.body).into_owned(),
    )
}

/// `GET target` with `Connection: close`.
pub fn get(addr: &str, target: &str) -> (u16, String) {
    exchange(
        addr,
        &format!("GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
    )
}

/// Polls `check` every 20 ms until it is true; panics with `what` after [`PROC_DEADLINE`].
pub fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + PROC_DEADLINE;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "{what}: not true within {PROC_DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The healthy instances of `add`, from the registry's listing.
pub fn healthy(registry: &str) -> Vec<String> {
    let (_, body) = get(registry, "/v1/services/add");
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(' ').nth(1) == Some("healthy"))
        .filter_map(|l| l.split(' ').next().map(str::to_string))
        .collect()
}

/// All listed instances of `add`, healthy or not.
pub fn listed(registry: &str) -> Vec<String> {
    let (_, body) = get(registry, "/v1/services/add");
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(' ').next().map(str::to_string))
        .collect()
}

/// Runs `mini client ARGS` to completion.
pub fn client(args: &[&str]) -> Output {
    mini()
        .arg("client")
        .args(args)
        .output()
        .expect("run client")
}

/// Parses the `ADDR served N` lines and the `failed calls: N` line that `--repeat` prints on stderr.
pub fn tally(stderr: &str) -> (std::collections::BTreeMap<String, u64>, u64) {
    let mut served = std::collections::BTreeMap::new();
    let mut failed = None;
    for line in stderr.lines() {
        if let Some((addr, n)) = line.split_once(" served ") {
            served.insert(addr.to_string(), n.trim().parse().expect("count"));
        }
        if let Some(n) = line.strip_prefix("failed calls: ") {
            failed = Some(n.trim().parse().expect("failed count"));
        }
    }
    (served, failed.expect("a failed-calls line"))
}

/// A loopback port that was free a moment ago (bound, read, released), for a role that must listen
/// on a port known in advance.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
