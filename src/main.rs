//! The `mini` command line: `mini registry`, `mini adder PORT`, `mini client A B`.
//!
//! Exit codes: 0 done, 1 the work failed (no adder, registry unreachable), 2 bad arguments.

use argh::FromArgs;
use mini::balance::Strategy;
use mini::client::AnyCaller;
use mini::registry::store::StoreConfig;
use mini::{adder, client, duration, registry};
use std::process::ExitCode;
use std::sync::Arc;
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
    Watch(WatchArgs),
}

/// Print each instance event of SERVICE as it happens (+ added, - removed, ~ health).
#[derive(FromArgs)]
#[argh(subcommand, name = "watch")]
struct WatchArgs {
    /// the service to watch
    #[argh(positional)]
    service: String,
    /// registry HOST:PORT (default 127.0.0.1:6666)
    #[argh(option, default = "registry::DEFAULT_LISTEN.to_string()")]
    registry: String,
    /// the registry's token, for a registry with --token-reads (or MINI_TOKEN)
    #[argh(option)]
    token: Option<String>,
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
    /// after start, how long an empty lookup answers 503 (retry) rather than 400 (default 5s; 0 for none)
    #[argh(
        option,
        default = "registry::DEFAULT_WARMUP",
        from_str_fn(duration::parse_or_zero)
    )]
    warmup: Duration,
    /// open connections past which new ones close an idle kept-alive one, or are refused (default 10000)
    #[argh(option, default = "mini::http::MAX_CONNECTIONS")]
    max_connections: usize,
    /// token that registering, renewing and deregistering need (or MINI_TOKEN)
    #[argh(option)]
    token: Option<String>,
    /// require the token for lookups and listings too
    #[argh(switch)]
    token_reads: bool,
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
    /// registry HOST:PORT, or several separated by commas: beats go to each (default 127.0.0.1:6666)
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
    /// the registry's token (or MINI_TOKEN)
    #[argh(option)]
    token: Option<String>,
    /// testing only: wait this long before answering each sum (a slow adder)
    #[argh(option, from_str_fn(duration::parse))]
    delay: Option<Duration>,
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
    /// registry HOST:PORT, or several separated by commas, tried in turn (default 127.0.0.1:6666)
    #[argh(option, default = "registry::DEFAULT_LISTEN.to_string()")]
    registry: String,
    /// balance locally from a watched copy: random, round-robin or p2c (default: ask the registry per call)
    #[argh(option)]
    lb: Option<String>,
    /// calls in flight at once in --repeat mode (default 1)
    #[argh(option, default = "1")]
    concurrency: u32,
    /// service to ask for (default add)
    #[argh(option, default = "String::from(\"add\")")]
    service: String,
    /// make N calls and report on stderr how many each instance served
    #[argh(option, default = "1")]
    repeat: u32,
    /// the registry's token, for a registry with --token-reads (or MINI_TOKEN)
    #[argh(option)]
    token: Option<String>,
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
        Role::Watch(a) => run_watch(a),
    }
}

/// Client options that take a value, so their value is not mistaken for an operand.
const CLIENT_VALUE_OPTIONS: &[&str] = &[
    "--registry",
    "--service",
    "--repeat",
    "--token",
    "--lb",
    "--concurrency",
];

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

/// The token from the flag, else from `MINI_TOKEN`; it must be printable ASCII without spaces.
fn token(flag: Option<String>) -> Result<Option<String>, ExitCode> {
    let token = flag
        .or_else(|| std::env::var("MINI_TOKEN").ok())
        .filter(|t| !t.is_empty());
    match &token {
        Some(t) if !t.bytes().all(|b| b.is_ascii_graphic()) => Err(usage_error(
            "--token must be printable ASCII without spaces",
        )),
        _ => Ok(token),
    }
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
    let token = match token(a.token) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let config = registry::Config {
        store,
        access: registry::auth::Access {
            token,
            reads: a.token_reads,
        },
        listen: a.listen,
        probe_interval: a.probe_interval,
        probe_timeout: a.probe_timeout,
        ttl: a.ttl,
        warmup: a.warmup,
        server: mini::http::ServerConfig {
            max_connections: a.max_connections.max(1),
            ..Default::default()
        },
        ..registry::Config::default()
    };
    let fds = mini::rt::raise_fd_limit();
    mini::rt::block_on(async {
        let listener = match async_net::TcpListener::bind(config.listen.as_str()).await {
            Ok(l) => l,
            Err(e) => {
                return runtime_error(format_args!("cannot listen on {}: {e}", config.listen))
            }
        };
        if let Ok(addr) = listener.local_addr() {
            mini::log::line("registry", format_args!("listening on {addr}"));
            if let Some(fds) = fds {
                mini::log::line("registry", format_args!("open-file limit {fds}"));
            }
            if !addr.ip().is_loopback() && config.access.token.is_none() {
                mini::log::line(
                    "registry",
                    format_args!("WARNING: listening beyond loopback with no --token: anyone who reaches {addr} can register any address and steer every client"),
                );
            }
        }
        registry::run(listener, config).await;
        ExitCode::SUCCESS
    })
}

fn run_adder(a: AdderArgs) -> ExitCode {
    let (registries, token) = match peer_flags(&a.registry, &a.service, a.token) {
        Ok(checked) => checked,
        Err(code) => return code,
    };
    let config = adder::Config {
        registries,
        host: a.host,
        beat: a.beat,
        service: a.service,
        token,
        delay: a.delay,
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
    let (registries, token) = match peer_flags(&a.registry, &a.service, a.token) {
        Ok(checked) => checked,
        Err(code) => return code,
    };
    if a.repeat == 0 || a.concurrency == 0 {
        return usage_error("--repeat and --concurrency must be at least 1");
    }
    let strategy = match a.lb.as_deref().map(str::parse::<Strategy>) {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(why)) => return usage_error(&format!("--lb: {why}")),
    };
    mini::rt::block_on(async {
        let caller = match strategy {
            None => AnyCaller::PerCall(
                client::Caller::new(&registries, &a.service).with_token(token.as_deref()),
            ),
            Some(strategy) => {
                let balanced =
                    client::Balanced::start(&registries, &a.service, strategy, token.as_deref());
                if !balanced.ready(FIRST_LISTING).await {
                    return runtime_error(format_args!(
                        "no listing of {} from {}",
                        a.service,
                        registries.join(", ")
                    ));
                }
                AnyCaller::Balanced(balanced)
            }
        };
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
        let (tally, last_error) =
            client::repeat(Arc::new(caller), x, y, a.repeat, a.concurrency).await;
        eprintln!("{tally}");
        if let Some(sum) = tally.sum {
            println!("{sum}");
        }
        match last_error {
            None => ExitCode::SUCCESS,
            Some(e) => runtime_error(format_args!(
                "{} of {} calls failed; last: {e}",
                tally.failed, a.repeat
            )),
        }
    })
}

/// How long a balanced client waits for its first listing of the service.
const FIRST_LISTING: Duration = Duration::from_secs(5);

/// What the adder and the client both take: `--registry` list, `--service` and `--token`, checked.
fn peer_flags(
    list: &str,
    service: &str,
    token_flag: Option<String>,
) -> Result<(Vec<String>, Option<String>), ExitCode> {
    let registries = registries(list)?;
    if !registry::state::valid_service_name(service) {
        return Err(usage_error(&format!(
            "--service {service:?}: not a valid service name"
        )));
    }
    Ok((registries, token(token_flag)?))
}

/// Splits `a,b,c` into checked registry addresses.
fn registries(list: &str) -> Result<Vec<String>, ExitCode> {
    let mut out = Vec::new();
    for addr in list.split(',').map(str::trim) {
        if let Err(e) = mini::addr::check(addr) {
            return Err(usage_error(&format!("--registry {addr:?}: {e}")));
        }
        out.push(addr.to_string());
    }
    Ok(out)
}

fn run_watch(a: WatchArgs) -> ExitCode {
    if let Err(e) = mini::addr::check(&a.registry) {
        return usage_error(&format!("--registry {:?}: {e}", a.registry));
    }
    if !registry::state::valid_service_name(&a.service) {
        return usage_error(&format!("{:?} is not a valid service name", a.service));
    }
    let token = match token(a.token) {
        Ok(t) => t,
        Err(code) => return code,
    };
    mini::rt::block_on(mini::watcher::run(
        &a.registry,
        &a.service,
        mini::registry::auth::bearer(token.as_deref()),
    ));
    ExitCode::SUCCESS
}
