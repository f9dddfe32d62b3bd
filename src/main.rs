//! The `mini` command line: `mini registry`, `mini adder PORT`, `mini client A B`.
//!
//! Exit codes: 0 done, 1 the work failed (no adder, registry unreachable), 2 bad arguments.

use argh::FromArgs;
use mini::registry::store::StoreConfig;
use mini::{adder, client, duration, registry};
use std::process::ExitCode;
use std::time::Duration;

/// mini: a small service registry, a demo adder service and a client.
#[derive(FromArgs)]
struct Cli {
    #[argh(subcommand)]
    role: Role,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Role {
    Registry(RegistryArgs),
    Adder(AdderArgs),
    Client(ClientArgs),
}

/// Run the registry: instances register by heartbeat, clients ask it for one.
#[derive(FromArgs)]
#[argh(subcommand, name = "registry")]
struct RegistryArgs {
    /// address to listen on (default 127.0.0.1:6666, the original's)
    #[argh(option, default = "registry::DEFAULT_LISTEN.to_string()")]
    listen: String,
    /// time between probe rounds (default 5s)
    #[argh(
        option,
        default = "registry::DEFAULT_PROBE_INTERVAL",
        from_str_fn(duration::parse)
    )]
    probe_interval: Duration,
    /// time one probe may take (default 2s)
    #[argh(
        option,
        default = "registry::DEFAULT_PROBE_TIMEOUT",
        from_str_fn(duration::parse)
    )]
    probe_timeout: Duration,
    /// lease of a registration without a heartbeat (default 15s)
    #[argh(
        option,
        default = "registry::DEFAULT_TTL",
        from_str_fn(duration::parse)
    )]
    ttl: Duration,
    /// where registrations live: memory (default) or etcd, shared by several registries
    #[argh(option, default = "String::from(\"memory\")")]
    store: String,
    /// etcd members for --store etcd: http://HOST:PORT[,http://...] (default $MINI_ETCD, else
    /// http://127.0.0.1:2379)
    #[argh(option)]
    etcd: Option<String>,
}

/// Run an adder on PORT (0 picks a free one) and keep it registered.
#[derive(FromArgs)]
#[argh(subcommand, name = "adder")]
struct AdderArgs {
    /// port to serve on
    #[argh(positional)]
    port: u16,
    /// registry HOST:PORT (default 127.0.0.1:6666)
    #[argh(option, default = "registry::DEFAULT_LISTEN.to_string()")]
    registry: String,
    /// host to listen on and announce (default 127.0.0.1)
    #[argh(option, default = "String::from(\"127.0.0.1\")")]
    host: String,
    /// heartbeat period (default 5s)
    #[argh(option, default = "adder::DEFAULT_BEAT", from_str_fn(duration::parse))]
    beat: Duration,
    /// service name to register under (default add)
    #[argh(option, default = "String::from(\"add\")")]
    service: String,
}

/// Ask the registry for an adder and print A + B.
#[derive(FromArgs)]
#[argh(subcommand, name = "client")]
struct ClientArgs {
    /// first operand
    #[argh(positional)]
    a: String,
    /// second operand
    #[argh(positional)]
    b: String,
    /// registry HOST:PORT (default 127.0.0.1:6666)
    #[argh(option, default = "registry::DEFAULT_LISTEN.to_string()")]
    registry: String,
    /// service to ask for (default add)
    #[argh(option, default = "String::from(\"add\")")]
    service: String,
    /// make N calls and report on stderr how many each instance served
    #[argh(option, default = "1")]
    repeat: u32,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = negative_numbers_as_positionals(args);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let cli = match Cli::from_args(&["mini"], &refs) {
        Ok(cli) => cli,
        Err(early) if early.status.is_ok() => {
            println!("{}", early.output);
            return ExitCode::SUCCESS;
        }
        Err(early) => return usage_error(&early.output),
    };
    match cli.role {
        Role::Registry(a) => run_registry(a),
        Role::Adder(a) => run_adder(a),
        Role::Client(a) => run_client(a),
    }
}

/// Client options that take a value, so their value is not mistaken for an operand.
const CLIENT_VALUE_OPTIONS: &[&str] = &["--registry", "--service", "--repeat"];

/// `mini client -5 6` means the numbers: move operands behind a `--` so argh does not read `-5` as a flag.
fn negative_numbers_as_positionals(args: Vec<String>) -> Vec<String> {
    if args.first().map(String::as_str) != Some("client") || args.iter().any(|a| a == "--") {
        return args;
    }
    let is_number = |a: &str| {
        a.strip_prefix('-')
            .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
    };
    let (mut options, mut operands) = (Vec::new(), Vec::new());
    let mut rest = args.into_iter();
    options.extend(rest.next());
    while let Some(arg) = rest.next() {
        if CLIENT_VALUE_OPTIONS.contains(&arg.as_str()) {
            options.push(arg);
            options.extend(rest.next());
        } else if arg.starts_with('-') && !is_number(&arg) {
            options.push(arg);
        } else {
            operands.push(arg);
        }
    }
    options.push("--".to_string());
    options.extend(operands);
    options
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("mini: {}", message.trim_end());
    eprintln!("usage: mini registry [--listen ADDR] | mini adder PORT [--registry ADDR] | mini client A B [--registry ADDR] [--repeat N]");
    eprintln!("run `mini <role> --help` for every option");
    ExitCode::from(2)
}

fn runtime_error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("mini: {message}");
    ExitCode::from(1)
}

/// Default etcd client URL, etcd's own default.
const DEFAULT_ETCD: &str = "http://127.0.0.1:2379";

/// `--store` and `--etcd` (or `MINI_ETCD`) into a store configuration.
fn store_config(store: &str, etcd: Option<String>) -> Result<StoreConfig, String> {
    match store {
        "memory" if etcd.is_some() => Err("--etcd needs --store etcd".into()),
        "memory" => Ok(StoreConfig::Memory),
        "etcd" => {
            let urls = etcd
                .or_else(|| std::env::var("MINI_ETCD").ok())
                .unwrap_or_else(|| DEFAULT_ETCD.to_string());
            mini::etcd::parse_endpoints(&urls)
                .map(StoreConfig::Etcd)
                .map_err(|e| format!("--etcd: {e}"))
        }
        other => Err(format!("--store {other:?}: expected memory or etcd")),
    }
}

fn run_registry(a: RegistryArgs) -> ExitCode {
    let store = match store_config(&a.store, a.etcd) {
        Ok(s) => s,
        Err(e) => return usage_error(&e),
    };
    let config = registry::Config {
        store,
        listen: a.listen,
        probe_interval: a.probe_interval,
        probe_timeout: a.probe_timeout,
        ttl: a.ttl,
        ..registry::Config::default()
    };
    mini::rt::block_on(async {
        let listener = match async_net::TcpListener::bind(config.listen.as_str()).await {
            Ok(l) => l,
            Err(e) => {
                return runtime_error(format_args!("cannot listen on {}: {e}", config.listen))
            }
        };
        if let Ok(addr) = listener.local_addr() {
            mini::log::line("registry", format_args!("listening on {addr}"));
        }
        registry::run(listener, config).await;
        ExitCode::SUCCESS
    })
}

fn run_adder(a: AdderArgs) -> ExitCode {
    if let Err(e) = mini::addr::check(&a.registry) {
        return usage_error(&format!("--registry {:?}: {e}", a.registry));
    }
    if !registry::state::valid_service_name(&a.service) {
        return usage_error(&format!(
            "--service {:?}: not a valid service name",
            a.service
        ));
    }
    let config = adder::Config {
        registry: a.registry,
        host: a.host,
        beat: a.beat,
        service: a.service,
    };
    let bind = format!("{}:{}", config.host, a.port);
    mini::rt::block_on(async {
        let listener = match async_net::TcpListener::bind(bind.as_str()).await {
            Ok(l) => l,
            Err(e) => return runtime_error(format_args!("cannot listen on {bind}: {e}")),
        };
        if let Ok(addr) = listener.local_addr() {
            mini::log::line("adder", format_args!("listening on {addr}"));
        }
        match adder::run(listener, config).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => runtime_error(e),
        }
    })
}

fn run_client(a: ClientArgs) -> ExitCode {
    let (x, y) = match (a.a.parse::<i64>(), a.b.parse::<i64>()) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(_), _) => return usage_error(&format!("A {:?} is not a 64-bit integer", a.a)),
        (_, Err(_)) => return usage_error(&format!("B {:?} is not a 64-bit integer", a.b)),
    };
    if let Err(e) = mini::addr::check(&a.registry) {
        return usage_error(&format!("--registry {:?}: {e}", a.registry));
    }
    if !registry::state::valid_service_name(&a.service) {
        return usage_error(&format!(
            "--service {:?}: not a valid service name",
            a.service
        ));
    }
    if a.repeat == 0 {
        return usage_error("--repeat must be at least 1");
    }
    let caller = client::Caller::new(&a.registry, &a.service);
    mini::rt::block_on(async {
        if a.repeat == 1 {
            return match caller.add(x, y).await {
                Ok(answer) => {
                    mini::log::line("client", format_args!("{} answered {x} + {y}", answer.addr));
                    println!("{}", answer.sum);
                    ExitCode::SUCCESS
                }
                Err(e) => runtime_error(e),
            };
        }
        repeat(&caller, x, y, a.repeat).await
    })
}

async fn repeat(caller: &client::Caller, x: i64, y: i64, n: u32) -> ExitCode {
    let mut tally = client::Tally::default();
    let mut last_error = None;
    let mut sum = None;
    for _ in 0..n {
        let outcome = caller.add(x, y).await;
        tally.count(&outcome);
        match outcome {
            Ok(answer) => sum = Some(answer.sum),
            Err(e) => last_error = Some(e),
        }
    }
    eprintln!("{tally}");
    if let Some(sum) = sum {
        println!("{sum}");
    }
    match last_error {
        None => ExitCode::SUCCESS,
        Some(e) => runtime_error(format_args!(
            "{} of {n} calls failed; last: {e}",
            tally.failed
        )),
    }
}
