//! A real etcd for the integration tests: one member or a cluster on free loopback ports, each with a
//! temporary data directory, killed and removed on drop. No mock: the tests exercise the JSON gateway
//! the registry really uses.
//!
//! If `etcd` is not installed, the first test to need it tries `apt-get install -y etcd-server` (CI
//! runs as root); if that is impossible too, [`Cluster::start`] returns `None` after printing why and
//! the test returns early.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::procs::{free_port, PROC_DEADLINE};

/// The etcd binary, installing the Debian package once if it is missing.
fn binary() -> Option<&'static Path> {
    static FOUND: OnceLock<Option<PathBuf>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let find = || {
                let path = std::env::var_os("PATH").unwrap_or_default();
                std::env::split_paths(&path)
                    .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
                    .map(|d| d.join("etcd"))
                    .find(|p| p.is_file())
            };
            if let Some(p) = find() {
                return Some(p);
            }
            eprintln!("etcd not found; trying apt-get install -y etcd-server");
            let installed = Command::new("apt-get")
                .args(["install", "-y", "etcd-server"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !installed {
                let _ = Command::new("apt-get")
                    .arg("update")
                    .stdout(Stdio::null())
                    .status();
                let _ = Command::new("apt-get")
                    .args(["install", "-y", "etcd-server"])
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .stdout(Stdio::null())
                    .status();
            }
            find()
        })
        .as_deref()
}

struct Member {
    name: String,
    client: u16,
    peer: u16,
    child: Option<Child>,
}

/// A running etcd cluster; every member is killed and the data removed on drop.
pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    initial: String,
    members: Vec<Member>,
}

impl Cluster {
    /// Starts `n` members and waits until the cluster is healthy; `None` (after saying why) when
    /// etcd is not available here.
    pub fn start(n: usize) -> Option<Cluster> {
        let Some(bin) = binary() else {
            eprintln!("SKIPPED: etcd is not installed and apt-get install -y etcd-server failed");
            return None;
        };
        for attempt in 0..3 {
            let dir = std::env::temp_dir().join(format!(
                "mini-etcd-{}-{:08x}",
                std::process::id(),
                fastrand::u32(..)
            ));
            let members: Vec<Member> = (0..n)
                .map(|i| Member {
                    name: format!("m{i}"),
                    client: free_port(),
                    peer: free_port(),
                    child: None,
                })
                .collect();
            let initial = members
                .iter()
                .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
                .collect::<Vec<_>>()
                .join(",");
            let mut cluster = Cluster {
                bin: bin.to_path_buf(),
                dir,
                initial,
                members,
            };
            for i in 0..n {
                cluster.spawn(i);
            }
            if cluster.wait_healthy() {
                return Some(cluster);
            }
            eprintln!("etcd did not come up (attempt {attempt}); retrying on other ports");
        }
        panic!(
            "etcd never became healthy; see the logs under {:?}",
            std::env::temp_dir()
        );
    }

    fn spawn(&mut self, i: usize) {
        let token = self
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        let m = &mut self.members[i];
        let data = self.dir.join(&m.name);
        std::fs::create_dir_all(&data).expect("etcd data dir");
        let log = std::fs::File::create(self.dir.join(format!("{}.log", m.name))).expect("log");
        let client = format!("http://127.0.0.1:{}", m.client);
        let peer = format!("http://127.0.0.1:{}", m.peer);
        let child = Command::new(&self.bin)
            .args(["--name", &m.name, "--data-dir"])
            .arg(&data)
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args([
                "--initial-cluster",
                &self.initial,
                "--initial-cluster-state",
                "new",
            ])
            .args([
                "--initial-cluster-token",
                token.as_deref().unwrap_or("mini"),
            ])
            // Fast elections, so a killed member costs well under a second.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        m.child = Some(child);
    }

    /// Whether every running member answers healthy within the deadline.
    fn wait_healthy(&mut self) -> bool {
        let deadline = Instant::now() + PROC_DEADLINE;
        let running: Vec<usize> = (0..self.members.len())
            .filter(|&i| self.members[i].child.is_some())
            .collect();
        for i in running {
            loop {
                if let Some(Ok(Some(_))) = self.members[i].child.as_mut().map(Child::try_wait) {
                    return false; // exited: most likely a port taken meanwhile
                }
                let addr = format!("127.0.0.1:{}", self.members[i].client);
                if probe_health(&addr) {
                    break;
                }
                if Instant::now() > deadline {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        true
    }

    /// `http://127.0.0.1:C1,http://...`, for `--etcd`.
    pub fn urls(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Kills member `i` at once (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Restarts member `i` on its ports and data, and waits until it is healthy.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
        assert!(self.wait_healthy(), "etcd member {i} did not come back");
    }
}

/// `GET /health` answers `"health":"true"` (a raw HTTP/1.0 exchange, bounded by a read timeout).
fn probe_health(addr: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(b"GET /health HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = Vec::new();
    let _ = stream.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    text.starts_with("HTTP/1.")
        && text.get(9..12) == Some("200")
        && text.contains("\"health\":\"true\"")
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
