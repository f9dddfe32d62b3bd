//! `mini_bench`: the Rust half of `just bench` (the other half is `benches/run.sh`).
//!
//! Each subcommand measures one thing and prints its results on stdout as `key=value` lines, which
//! `benches/run.sh` collects into BENCH.md. Progress and diagnostics go to stderr.
//!
//! | subcommand | what |
//! |---|---|
//! | `free-ports N` | N currently free loopback ports, one per line |
//! | `heartbeat` | registers up to 100 000 fake instances, reports registry RSS at steps, then renews them all every period and reports per-beat latency and the achieved rate |
//! | `silence` | kills adders and measures how long until the registry stops handing them out; counts failed client calls while adders die |
//! | `footprint` | cold start to the first 200 on `/health`, idle RSS of a registry and an adder |
//! | `probe-target` | serves `/aliveCheck` on many loopback ports and registers them all, for the probe-cost run |
//! | `watch` | time from a registration to the answers of 1 or 1000 waiting watchers (also across two registries on etcd) |
//! | `etcd-scale` | 100 000 instances beating through two `--store etcd` registries against one in-memory registry: beat latency, etcd's requests in steady state, registration rate and cross-registry visibility, CPU and RSS |
//! | `lb` | share of calls a slow adder gets, and the batch's time, under `--lb random`, `round-robin` and `p2c` |
//! | `pick` | a pick's cost over 100 000 instances (weighted, tag-filtered), and registry RSS per instance with tags and meta |
//!
//! Run through `just bench`; `cargo bench` alone only prints this hint.

mod common;
mod etcd_scale;
mod footprint;
mod heartbeat;
mod lb;
mod pick;
mod probe_target;
mod silence;
mod watch;

use argh::FromArgs;
use std::process::ExitCode;

/// Load generators and measurements for `just bench`.
#[derive(FromArgs)]
struct Cli {
    #[argh(subcommand)]
    command: Command,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Command {
    FreePorts(FreePorts),
    Heartbeat(heartbeat::Args),
    Silence(silence::Args),
    Footprint(footprint::Args),
    ProbeTarget(probe_target::Args),
    Watch(watch::Args),
    Lb(lb::Args),
    EtcdScale(etcd_scale::Args),
    Pick(pick::Args),
}

/// Print N free loopback ports, one per line.
#[derive(FromArgs)]
#[argh(subcommand, name = "free-ports")]
struct FreePorts {
    /// how many
    #[argh(positional)]
    count: usize,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` runs every bench target with `--bench`: this one is driven by `just bench`.
    if args.is_empty() || args.iter().any(|a| a == "--bench") {
        eprintln!("mini_bench: run `just bench` (benches/run.sh), which writes BENCH.md");
        return ExitCode::SUCCESS;
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let cli = match Cli::from_args(&["mini_bench"], &refs) {
        Ok(cli) => cli,
        Err(early) => {
            let ok = early.status.is_ok();
            if ok {
                println!("{}", early.output);
            } else {
                eprintln!("{}", early.output);
            }
            return if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    let result = match cli.command {
        Command::FreePorts(a) => common::free_ports(a.count).map(|ports| {
            for p in ports {
                println!("{p}");
            }
        }),
        Command::Heartbeat(a) => heartbeat::run(a),
        Command::Silence(a) => silence::run(a),
        Command::Footprint(a) => footprint::run(a),
        Command::ProbeTarget(a) => probe_target::run(a),
        Command::Watch(a) => watch::run(a),
        Command::Lb(a) => lb::run(a),
        Command::EtcdScale(a) => etcd_scale::run(a),
        Command::Pick(a) => pick::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mini_bench: {e}");
            ExitCode::FAILURE
        }
    }
}
