//! `mini register`, the sidecar for any process, through the real binary: a Python HTTP server kept
//! registered and removed when it dies, the heartbeat-only form, and the exit statuses (the child's,
//! 127, 2).

mod common;

use common::procs::{eventually, exit_status, free_port, get, mini, send_signal, Proc};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

/// A running `mini register`; it and its children are killed when dropped.
struct Sidecar {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Sidecar {
    /// Starts `mini register ARGS`, collecting its stderr (and its child's, which it inherits).
    fn start(args: &[&str]) -> Sidecar {
        let mut child = mini()
            .arg("register")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mini register");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Sidecar { child, log }
    }

    /// The pids of its children, from every thread's entry in /proc.
    fn children(&self) -> Vec<u32> {
        let tasks = format!("/proc/{}/task", self.child.id());
        let mut pids = Vec::new();
        for task in std::fs::read_dir(tasks).into_iter().flatten().flatten() {
            let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            pids.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
        pids
    }

    /// Waits for its exit (bounded by `procs::PROC_DEADLINE`).
    fn wait(&mut self) -> ExitStatus {
        exit_status(&mut self.child)
            .unwrap_or_else(|| panic!("mini register did not exit:\n{}", self.log()))
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    fn logged(&self, needle: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        for pid in self.children() {
            signal(pid, "KILL");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `SIGNAME` to `pid` (it may have exited already).
fn signal(pid: u32, name: &str) {
    let _ = send_signal(pid, name);
}

/// `SERVICE`'s instances as `(HOST:PORT, healthy)`, from the JSON listing.
fn instances(registry: &str, service: &str) -> Vec<(String, bool)> {
    let (status, body) = get(registry, &format!("/v1/services/{service}?format=json"));
    assert_eq!(status, 200, "{body}");
    mini::proto::decode_listing(body.as_bytes())
        .expect("a listing")
        .instances
}

/// Whether the last probe of `SERVICE`'s first instance passed (`None`: not probed yet).
fn last_probe_ok(registry: &str, service: &str) -> Option<bool> {
    let (_, body) = get(registry, &format!("/v1/services/{service}?format=json"));
    let doc = mini::jsonread::parse(body.as_bytes()).expect("a JSON listing");
    let first = doc.get("instances")?.as_array()?.first()?.clone();
    first.get("last_probe")?.get("ok")?.as_bool()
}

/// How many `PUT`s (registrations and beats) the registry answered 200, from its `/metrics`.
fn puts_answered(registry: &str) -> u64 {
    common::doors::requests_served(registry, "put")
}

fn python_available() -> bool {
    Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `mini register web 127.0.0.1:PORT OPTIONS... -- python3 -m http.server PORT` on a free port,
/// beating to a new registry that probes every 100 ms: the registry, `127.0.0.1:PORT` and the
/// sidecar; `None` (after printing a skip) when python3 is not installed.
fn python_sidecar(options: &[&str]) -> Option<(Proc, String, Sidecar)> {
    if !python_available() {
        eprintln!("SKIPPED: python3 is not installed");
        return None;
    }
    let reg = Proc::registry(&["--probe-interval", "100ms"]);
    let port = free_port().to_string();
    let addr = format!("127.0.0.1:{port}");
    let mut args = vec!["web", addr.as_str()];
    args.extend_from_slice(options);
    args.extend([
        "--registry",
        &reg.addr,
        "--",
        "python3",
        "-m",
        "http.server",
    ]);
    args.extend([port.as_str(), "--bind", "127.0.0.1"]);
    let sidecar = Sidecar::start(&args);
    Some((reg, addr, sidecar))
}

#[test]
fn a_python_server_is_registered_once_it_listens_and_leaves_when_killed() {
    // Probed every 100 ms with its own check (`GET /`, which python's http.server answers 200), not
    // with /aliveCheck (which it answers 404): it stays healthy.
    let Some((reg, addr, mut sidecar)) = python_sidecar(&["--check", "http:/", "--beat", "200ms"])
    else {
        return;
    };
    eventually("the python server is registered", || {
        instances(&reg.addr, "web") == [(addr.clone(), true)]
    });
    eventually("probed with GET / and healthy", || {
        last_probe_ok(&reg.addr, "web") == Some(true)
    });
    // Registered only once it accepted connections, so it answers at once.
    assert_eq!(get(&addr, "/").0, 200);
    assert_eq!(
        get(&reg.addr, "/serviceAddr?queryParam=web"),
        (200, addr.clone())
    );
    eventually("the log line", || {
        reg.logged(&format!("web {addr} registered (ttl 15s)"))
    });
    let python = sidecar.children();
    assert_eq!(python.len(), 1, "children: {python:?}\n{}", sidecar.log());
    signal(python[0], "KILL");
    let status = sidecar.wait();
    assert_eq!(status.code(), Some(137), "{}", sidecar.log());
    // Deregistered before it exited: the 15 s lease alone would keep it listed.
    assert!(instances(&reg.addr, "web").is_empty());
    eventually("the log line", || {
        reg.logged(&format!("web {addr} deregistered"))
    });
}

#[test]
fn sigterm_drains_then_passes_it_on_and_the_child_status_is_the_exit_status() {
    // Probed every 100 ms with a TCP connect.
    let options = ["--check", "tcp", "--beat", "200ms", "--drain", "2s"];
    let Some((reg, addr, mut sidecar)) = python_sidecar(&options) else {
        return;
    };
    eventually("registered", || instances(&reg.addr, "web").len() == 1);
    signal(sidecar.child.id(), "TERM");
    eventually("it drains", || sidecar.logged("draining for 2s") == 1);
    // While it drains the child still serves and the instance is still listed.
    assert_eq!(get(&addr, "/").0, 200);
    assert_eq!(instances(&reg.addr, "web").len(), 1);
    assert!(
        sidecar.running(),
        "the drain ended early:\n{}",
        sidecar.log()
    );
    let status = sidecar.wait();
    // python dies of the SIGTERM passed on to it: 128 + 15.
    assert_eq!(status.code(), Some(143), "{}", sidecar.log());
    assert!(instances(&reg.addr, "web").is_empty());
}

#[test]
fn without_a_command_it_beats_until_sigterm_then_deregisters() {
    // Probes run every 100 ms, but never for `--check none`: nothing listens at ADDR, and it stays
    // healthy on its beats alone.
    let reg = Proc::registry(&["--probe-interval", "100ms"]);
    let addr = format!("127.0.0.1:{}", free_port());
    // The second registry is down: logged once, retried, never fatal.
    let down = format!("127.0.0.1:{}", free_port());
    let registries = format!("{},{down}", reg.addr);
    let mut sidecar = Sidecar::start(&[
        "web",
        &addr,
        "--check",
        "none",
        "--tag",
        "v2",
        "--meta",
        "zone:eu west",
        "--ttl",
        "7s",
        "--beat",
        "100ms",
        "--drain",
        "0s",
        "--registry",
        &registries,
    ]);
    eventually("registered", || {
        instances(&reg.addr, "web") == [(addr.clone(), true)]
    });
    // The PUT carried its lease, check, tag and meta.
    eventually("the log line", || {
        reg.logged(&format!("web {addr} registered (ttl 7s)"))
    });
    let listing =
        mini::proto::decode_listing(get(&reg.addr, "/v1/services/web?format=json").1.as_bytes())
            .expect("a listing");
    let spec = &listing.specs[0].spec;
    assert_eq!(
        spec.describe(),
        "weight=1 check=none tags=v2 meta=zone:eu%20west"
    );
    assert_eq!(
        last_probe_ok(&reg.addr, "web"),
        None,
        "a check=none instance was probed"
    );
    eventually("the down registry is logged", || {
        sidecar.logged(&format!("registry {down} unreachable")) == 1 && sidecar.running()
    });
    // Four more beats (each sent to the down registry too), and still one line.
    let beats = puts_answered(&reg.addr);
    eventually("a few beats went by", || {
        puts_answered(&reg.addr) >= beats + 4
    });
    assert!(sidecar.running(), "{}", sidecar.log());
    assert_eq!(
        sidecar.logged(&format!("registry {down} unreachable")),
        1,
        "{}",
        sidecar.log()
    );
    signal(sidecar.child.id(), "TERM");
    let status = sidecar.wait();
    assert_eq!(status.code(), Some(0), "{}", sidecar.log());
    assert!(instances(&reg.addr, "web").is_empty());
    eventually("the log line", || {
        reg.logged(&format!("web {addr} deregistered"))
    });
}

#[test]
fn a_command_that_cannot_start_exits_127_with_the_reason() {
    let mut sidecar = Sidecar::start(&[
        "web",
        "127.0.0.1:9",
        "--registry",
        "127.0.0.1:9",
        "--",
        "/nonexistent/mini-test-command",
        "x",
    ]);
    assert_eq!(sidecar.wait().code(), Some(127));
    eventually("the reason is printed", || {
        sidecar.logged("cannot start \"/nonexistent/mini-test-command\": No such file") == 1
    });
}

#[test]
fn a_child_that_ends_before_listening_gives_its_status() {
    let mut sidecar = Sidecar::start(&[
        "web",
        &format!("127.0.0.1:{}", free_port()),
        "--registry",
        "127.0.0.1:9",
        "--",
        "sh",
        "-c",
        "exit 3",
    ]);
    assert_eq!(sidecar.wait().code(), Some(3), "{}", sidecar.log());
    assert_eq!(sidecar.logged("registered with"), 0);
}

#[test]
fn bad_arguments_exit_2_with_usage() {
    for args in [
        &["web", "127.0.0.1:1", "--check", "grpc"][..],
        &["web", "127.0.0.1:1", "--check", "http:healthz"][..],
        &["web", "127.0.0.1:1", "--weight", "0"][..],
        &["web", "127.0.0.1:1", "--weight", "1001"][..],
        &["web", "127.0.0.1:1", "--tag", ""][..],
        &["web", "127.0.0.1:1", "--meta", "novalue"][..],
        &["web", "127.0.0.1:1", "--beat", "20s", "--ttl", "15s"][..],
        &["web", "127.0.0.1:1", "--ttl", "2h"][..],
        &["web", "127.0.0.1:1", "--drain", "soon"][..],
        &["web", "127.0.0.1:1", "--registry", "nowhere"][..],
        &["web", "nowhere"][..],
        &["a b", "127.0.0.1:1"][..],
        &["web"][..],
    ] {
        let out = mini()
            .arg("register")
            .args(args)
            .output()
            .expect("run mini");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("usage: mini"), "{args:?}: {stderr}");
    }
    let out = mini()
        .args(["register", "web", "127.0.0.1:1", "--check", "grpc"])
        .output()
        .expect("run mini");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad check: use http:/PATH, tcp or none"),
        "{stderr}"
    );
}
