//! The live page at `GET /` in a real browser: Debian's Chromium, headless, loads the page against a
//! live registry; an adder is killed and the page must show it excluded or gone on its own, from the
//! watch endpoint, without a reload. The screenshot is kept in `target/page-test/live.png`.
//!
//! Needs `chromium`, `node` and `playwright-core` (installed by `.ci/run` into `target/pw`); outside
//! CI the test says what is missing and passes without a browser.

mod common;

use common::procs::{eventually, get, healthy, Proc, PROC_DEADLINE};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;

fn browser_ready(pw_dir: &Path) -> Result<(), String> {
    let missing = [
        (
            Path::new("/usr/bin/chromium").exists(),
            "chromium (apt-get install chromium)",
        ),
        (
            Command::new("node").arg("--version").output().is_ok(),
            "node",
        ),
        (
            pw_dir.join("node_modules/playwright-core").exists(),
            "playwright-core in target/pw (see .ci/run)",
        ),
    ];
    let absent: Vec<&str> = missing
        .iter()
        .filter(|(ok, _)| !ok)
        .map(|(_, what)| *what)
        .collect();
    if absent.is_empty() {
        Ok(())
    } else {
        Err(absent.join(", "))
    }
}

#[test]
fn the_page_lists_instances_and_drops_a_killed_adder_by_itself() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let pw_dir = root.join("target/pw");
    if let Err(missing) = browser_ready(&pw_dir) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have the browser parts: missing {missing}"
        );
        eprintln!("skipping the browser test: missing {missing}");
        return;
    }
    let reg = Proc::registry(&["--probe-interval", "200ms", "--probe-timeout", "500ms"]);
    let (status, html) = get(&reg.addr, "/");
    assert_eq!(status, 200);
    assert!(html.contains("<title>mini registry</title>"));
    let mut doomed = Proc::adder(&reg.addr);
    let survivor = Proc::adder(&reg.addr);
    eventually("both adders healthy", || healthy(&reg.addr).len() == 2);

    let shot = root.join("target/page-test/live.png");
    std::fs::create_dir_all(shot.parent().expect("dir")).expect("mkdir");
    let _ = std::fs::remove_file(&shot);
    let mut node = Command::new("node")
        .arg(root.join("tests/page/live.cjs"))
        .args([
            format!("http://{}/", reg.addr),
            doomed.addr.clone(),
            shot.display().to_string(),
        ])
        .env("PW_DIR", &pw_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start node");
    let (tx, rx) = mpsc::channel();
    let stdout = node.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let ready = rx
        .recv_timeout(PROC_DEADLINE * 2)
        .expect("the page shows the adder healthy");
    assert_eq!(ready, "READY");
    doomed.kill();
    node.stdin
        .take()
        .expect("stdin")
        .write_all(b"KILLED\n")
        .expect("tell node");
    let gone = rx
        .recv_timeout(PROC_DEADLINE)
        .expect("the page shows the adder gone");
    assert!(gone.starts_with("GONE "), "{gone}");
    let text = rx.recv_timeout(PROC_DEADLINE).expect("page text");
    assert!(
        text.contains(&survivor.addr),
        "the survivor is missing from the page: {text}"
    );
    assert!(node.wait().expect("node").success());
    let size = std::fs::metadata(&shot).expect("screenshot").len();
    assert!(size > 1000, "screenshot too small: {size} bytes");
    eprintln!(
        "page updated {} ms after the kill; screenshot: {}",
        &gone[5..],
        shot.display()
    );
}
