//! `/metrics` on the registry and the adder: the Prometheus text format (0.0.4), checked by our own
//! reading of its rules and, where installed, by `promtool check metrics`.

mod common;

use common::procs::{client, eventually, exchange, get, healthy, Proc};
use std::collections::HashSet;
use std::io::Write;
use std::process::{Command, Stdio};

/// Checks the exposition rules a scraper relies on; returns the samples as (series, value).
fn validate(page: &str) -> Vec<(String, f64)> {
    let mut typed: HashSet<String> = HashSet::new();
    let mut helped: HashSet<String> = HashSet::new();
    let mut samples = Vec::new();
    for line in page.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().expect("name");
            assert!(helped.insert(name.to_string()), "HELP twice for {name}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split(' ');
            let name = words.next().expect("name");
            let kind = words.next().expect("type");
            assert!(["counter", "gauge"].contains(&kind), "{line}");
            assert_eq!(
                kind == "counter",
                name.ends_with("_total"),
                "counter naming: {line}"
            );
            assert!(typed.insert(name.to_string()), "TYPE twice for {name}");
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment {line}");
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        let name = series.split('{').next().expect("name");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad name {name}"
        );
        assert!(typed.contains(name), "sample before its TYPE: {line}");
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
            }
        }
        samples.push((series.to_string(), value));
    }
    samples
}

fn value(samples: &[(String, f64)], series: &str) -> f64 {
    samples
        .iter()
        .find(|(s, _)| s == series)
        .unwrap_or_else(|| panic!("no {series} in {samples:?}"))
        .1
}

/// Runs `promtool check metrics` when it is installed; CI installs it, so there it must be present.
fn promtool(page: &str) {
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is not installed in CI"
        );
        eprintln!("promtool not installed: checked the format with our own rules only");
        return;
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(page.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}"
    );
}

#[test]
fn registry_metrics_count_what_happened() {
    let reg = Proc::registry(&["--probe-interval", "100ms"]);
    let adder = Proc::adder(&reg.addr);
    eventually("registered", || healthy(&reg.addr).len() == 1);
    for _ in 0..3 {
        assert_eq!(get(&reg.addr, "/serviceAddr?queryParam=add").0, 200);
    }
    assert_eq!(get(&reg.addr, "/serviceAddr?queryParam=none").0, 400);
    assert_eq!(get(&reg.addr, "/nope").0, 404);
    eventually("a probe has run", || {
        let (_, page) = get(&reg.addr, "/metrics");
        value(&validate(&page), "mini_probes_total{result=\"ok\"}") >= 1.0
    });
    let raw = exchange(
        &reg.addr,
        "GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    let samples = validate(&raw.1);
    assert_eq!(
        value(
            &samples,
            "mini_http_requests_total{route=\"serviceAddr\",status=\"200\"}"
        ),
        3.0
    );
    assert_eq!(
        value(
            &samples,
            "mini_http_requests_total{route=\"serviceAddr\",status=\"400\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            "mini_http_requests_total{route=\"unmatched\",status=\"404\"}"
        ),
        1.0
    );
    assert_eq!(value(&samples, "mini_picks_total{service=\"add\"}"), 3.0);
    assert_eq!(
        value(
            &samples,
            "mini_instances{service=\"add\",health=\"healthy\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            "mini_instances{service=\"add\",health=\"excluded\"}"
        ),
        0.0
    );
    assert!(value(&samples, "mini_heartbeats_total") >= 1.0);
    assert_eq!(value(&samples, "mini_watchers"), 0.0);
    assert!(value(&samples, "mini_uptime_seconds") > 0.0);
    promtool(&raw.1);
    drop(adder);
}

#[test]
fn adder_metrics_count_sums_and_heartbeats() {
    let reg = Proc::registry(&["--probe-interval", "60s"]);
    let adder = Proc::adder(&reg.addr);
    eventually("registered", || healthy(&reg.addr).len() == 1);
    let out = client(&["2", "2", "--registry", &reg.addr, "--repeat", "4"]);
    assert!(out.status.success());
    assert_eq!(get(&adder.addr, "/Add/x/1").0, 400);
    let (status, page) = get(&adder.addr, "/metrics");
    assert_eq!(status, 200);
    let samples = validate(&page);
    assert_eq!(
        value(
            &samples,
            "mini_http_requests_total{route=\"add\",status=\"200\"}"
        ),
        4.0
    );
    assert_eq!(
        value(
            &samples,
            "mini_http_requests_total{route=\"add\",status=\"400\"}"
        ),
        1.0
    );
    assert!(value(&samples, "mini_heartbeats_sent_total{result=\"ok\"}") >= 1.0);
    promtool(&page);
}
