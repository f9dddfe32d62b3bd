//! Prometheus and VictoriaMetrics find the adders through mini and scrape them: Prometheus (Debian's
//! 2.42, built without Consul discovery) with `http_sd_configs` on `/v1/sd/prometheus`, and
//! VictoriaMetrics with `consul_sd_configs` on the Consul door. Each keeps only healthy (passing)
//! instances by relabelling; a killed adder leaves its active targets. Each test prints a skip line
//! and passes when its program is not installed.
//!
//! Prometheus hands discovered targets to its scrape manager at most every 5 s (its own fixed
//! throttle), so its test takes that long twice however short the intervals here are.

mod common;

use common::doors::{eventually_or_show, http_get, program, start_with_port, TempDir, FAST_PROBES};
use common::procs::{eventually, Proc};
use mini::jsonread::{self, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Active targets of `/api/v1/targets` as `instance -> (health, discovered labels)`.
type Targets = BTreeMap<String, (String, Vec<(String, String)>)>;

/// The active targets of a Prometheus-compatible server, or `None` if it does not answer yet.
fn active_targets(server: &str) -> Option<Targets> {
    let (status, body) = http_get(server, "/api/v1/targets?state=active")?;
    if status != 200 {
        return None;
    }
    let value = jsonread::parse(body.as_bytes()).ok()?;
    let targets = value.path(&["data", "activeTargets"])?.as_array()?;
    let mut out = BTreeMap::new();
    for t in targets {
        let instance = t.path(&["labels", "instance"])?.as_str()?.to_string();
        let health = t.get("health")?.as_str()?.to_string();
        let labels = match t.get("discoveredLabels") {
            Some(Value::Object(members)) => members
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect(),
            _ => Vec::new(),
        };
        out.insert(instance, (health, labels));
    }
    Some(out)
}

/// Whether the active targets are exactly `adders`, every one scraped `up`.
fn all_up(targets: &Option<Targets>, adders: &[&str]) -> bool {
    targets.as_ref().is_some_and(|t| {
        t.len() == adders.len()
            && adders
                .iter()
                .all(|a| t.get(*a).is_some_and(|(health, _)| health == "up"))
    })
}

/// Three adders on a fresh registry (fast probes, so a killed one is excluded in a fraction of a
/// second), all three healthy.
fn registry_and_adders() -> (Proc, Vec<Proc>) {
    let registry = Proc::registry(FAST_PROBES);
    let adders: Vec<Proc> = (0..3).map(|_| Proc::adder(&registry.addr)).collect();
    eventually("three healthy adders", || {
        common::procs::healthy(&registry.addr).len() == 3
    });
    (registry, adders)
}

/// Polls `server`'s targets until every adder is up, kills the first adder and polls until the
/// active targets are the two others, up.
fn scrape_then_kill(server: &str, mut adders: Vec<Proc>, log: &Path, check: impl Fn(&Targets)) {
    let addrs: Vec<String> = adders.iter().map(|a| a.addr.clone()).collect();
    let all: Vec<&str> = addrs.iter().map(String::as_str).collect();
    let mut last = None;
    eventually_or_show("every adder is an active target, up", log, || {
        last = active_targets(server);
        all_up(&last, &all)
    });
    check(last.as_ref().expect("targets"));
    adders[0].kill();
    eventually_or_show("the killed adder leaves the active targets", log, || {
        last = active_targets(server);
        all_up(&last, &all[1..])
    });
}

#[test]
fn prometheus_http_sd_scrapes_every_healthy_adder() {
    let Some(prometheus) = program("prometheus", "prometheus") else {
        return;
    };
    let (registry, adders) = registry_and_adders();
    let dir = TempDir::new("prometheus");
    let config = dir.write(
        "prometheus.yml",
        &format!(
            "global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: add
    http_sd_configs:
      - url: http://{}/v1/sd/prometheus?service=add
        refresh_interval: 1s
    relabel_configs:
      - source_labels: [__meta_mini_health]
        regex: healthy
        action: keep
",
            registry.addr
        ),
    );
    let log = dir.join("prometheus.log");
    let (_prometheus, port) = start_with_port(
        "prometheus",
        &log,
        |port| {
            let mut cmd = Command::new(&prometheus);
            cmd.arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"));
            cmd
        },
        |port| http_get(&format!("127.0.0.1:{port}"), "/-/ready").is_some_and(|(s, _)| s == 200),
    );
    let server = format!("127.0.0.1:{port}");
    scrape_then_kill(&server, adders, &log, |targets| {
        for (health, labels) in targets.values() {
            assert_eq!(health, "up");
            let label = |k: &str| labels.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
            assert_eq!(label("__meta_mini_service"), Some("add"), "{labels:?}");
            assert_eq!(label("__meta_mini_health"), Some("healthy"), "{labels:?}");
            assert_eq!(label("__meta_mini_weight"), Some("1"), "{labels:?}");
        }
    });
}

#[test]
fn victoria_metrics_consul_sd_scrapes_every_passing_adder() {
    let Some(vm) = program("victoria-metrics", "victoria-metrics") else {
        return;
    };
    let (registry, adders) = registry_and_adders();
    let dir = TempDir::new("victoria-metrics");
    let config = dir.write(
        "promscrape.yml",
        &format!(
            "global:
  scrape_interval: 1s
scrape_configs:
  - job_name: add
    consul_sd_configs:
      - server: {}
        services: [add]
    relabel_configs:
      - source_labels: [__meta_consul_health]
        regex: passing
        action: keep
",
            registry.addr
        ),
    );
    let log = dir.join("victoria-metrics.log");
    let (_vm, port) = start_with_port(
        "victoria-metrics",
        &log,
        |port| {
            let mut cmd = Command::new(&vm);
            cmd.arg(format!("-promscrape.config={}", config.display()))
                .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
                .arg(format!("-storageDataPath={}", dir.join("data").display()))
                .arg("-promscrape.config.strictParse=false")
                .arg("-promscrape.consulSDCheckInterval=1s");
            cmd
        },
        |port| http_get(&format!("127.0.0.1:{port}"), "/health").is_some_and(|(s, _)| s == 200),
    );
    let server = format!("127.0.0.1:{port}");
    scrape_then_kill(&server, adders, &log, |targets| {
        for (instance, (_, labels)) in targets {
            let label = |k: &str| labels.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
            assert_eq!(label("__meta_consul_health"), Some("passing"), "{labels:?}");
            assert_eq!(label("__meta_consul_service"), Some("add"), "{labels:?}");
            assert_eq!(label("__meta_consul_node"), Some("mini"), "{labels:?}");
            assert_eq!(label("__meta_consul_dc"), Some("dc1"), "{labels:?}");
            assert_eq!(
                label("__meta_consul_service_id"),
                Some(instance.as_str()),
                "{labels:?}"
            );
        }
    });
    drop(registry);
}
