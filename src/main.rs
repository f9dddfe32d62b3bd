//! The `mini` command line: `mini registry`, `mini adder PORT`, `mini client A B`, `mini watch SERVICE`,
//! `mini register SERVICE HOST:PORT [-- CMD ARGS...]`.
//!
//! Only the argh structs and their conversion into each role's `Config`; each role binds, logs and
//! runs itself (`registry::serve`, `adder::serve`, `client::run`, `watcher::serve`), and the
//! environment fallbacks live in `mini::env`.
//!
//! Exit codes: 0 done, 1 the work failed (no adder, registry unreachable), 2 bad arguments; `mini
//! register` with a command ends with the command's status (127 if it cannot be started).

use argh::FromArgs;
use mini::addr::{self, ListError, ListForm};
use mini::balance::Strategy;
use mini::proto::ServiceName;
use mini::registry::store::StoreConfig;
use mini::spec::Spec;
use mini::{adder, client, duration, env, member, registry, sidecar, watcher};
use std::fmt::Display;
use std::future::Future;
use std::process::ExitCode;
use std::str::FromStr;
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
    Register(RegisterArgs),
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
    /// lease of a registration without a heartbeat (default 15s); with --store etcd also the
    /// election's, and the registry's own lease is the shorter of it and probe interval + timeout
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
    #[argh(option, default = "StoreKind::Memory")]
    store: StoreKind,
    /// etcd members for --store etcd: http://HOST:PORT[,http://...] (default $MINI_ETCD, else
    /// http://127.0.0.1:2379)
    #[argh(option)]
    etcd: Option<String>,
    /// serve DNS (A/AAAA/SRV) on this UDP and TCP address, e.g. 127.0.0.1:8600 (off by default)
    #[argh(option)]
    dns: Option<String>,
    /// the DNS domain: NAME.service.DOMAIN (default mini)
    #[argh(option, default = "mini::dns::DEFAULT_DOMAIN.to_string()")]
    dns_domain: String,
    /// TTL of DNS records (default 0s, as Consul's)
    #[argh(
        option,
        default = "Duration::ZERO",
        from_str_fn(duration::parse_or_zero)
    )]
    dns_ttl: Duration,
    /// the datacenter Consul's API reports (default dc1)
    #[argh(option, default = "mini::consul::DEFAULT_DATACENTER.to_string()")]
    datacenter: String,
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
    #[argh(option, default = "adder::DEFAULT_HOST.to_string()")]
    host: String,
    /// heartbeat period (default 5s)
    #[argh(option, default = "adder::DEFAULT_BEAT", from_str_fn(duration::parse))]
    beat: Duration,
    /// service name to register under (default add)
    #[argh(option, default = "mini::proto::DEFAULT_SERVICE.to_string()")]
    service: String,
    /// the registry's token (or MINI_TOKEN)
    #[argh(option)]
    token: Option<String>,
    /// testing only: wait this long before answering each sum (a slow adder)
    #[argh(option, from_str_fn(duration::parse))]
    delay: Option<Duration>,
    /// on SIGTERM/SIGINT, stay up this long marked draining before deregistering (default 2s; 0s for
    /// none)
    #[argh(
        option,
        default = "member::DEFAULT_DRAIN",
        from_str_fn(duration::parse_or_zero)
    )]
    drain: Duration,
}

/// Keep HOST:PORT registered under SERVICE by heartbeat; with `-- CMD ARGS...`, run CMD as a child,
/// register it once HOST:PORT accepts connections, and leave when it exits (ending with its status).
#[derive(FromArgs)]
#[argh(subcommand, name = "register")]
struct RegisterArgs {
    /// the service to register under
    #[argh(positional)]
    service: String,
    /// the instance's HOST:PORT, as clients reach it
    #[argh(positional)]
    addr: String,
    /// how the registry checks it: http:/PATH (any 2xx), tcp (a connect) or none (the lease alone)
    /// (default http:/aliveCheck)
    #[argh(option)]
    check: Option<String>,
    /// a tag (repeatable; lookups can filter on tags)
    #[argh(option)]
    tag: Vec<String>,
    /// metadata KEY:VALUE (repeatable)
    #[argh(option)]
    meta: Vec<String>,
    /// share of picks, 1 to 1000 (default 1)
    #[argh(option)]
    weight: Option<String>,
    /// heartbeat period (default 5s)
    #[argh(option, default = "member::DEFAULT_BEAT", from_str_fn(duration::parse))]
    beat: Duration,
    /// lease each heartbeat asks for (default 15s)
    #[argh(option, default = "sidecar::DEFAULT_TTL", from_str_fn(duration::parse))]
    ttl: Duration,
    /// registry HOST:PORT, or several separated by commas: beats go to each (default 127.0.0.1:6666)
    #[argh(option, default = "registry::DEFAULT_LISTEN.to_string()")]
    registry: String,
    /// the registry's token (or MINI_TOKEN)
    #[argh(option)]
    token: Option<String>,
    /// on SIGTERM/SIGINT, stay registered this long marked draining before passing the signal on
    /// and deregistering (default 2s; 0s for none)
    #[argh(
        option,
        default = "member::DEFAULT_DRAIN",
        from_str_fn(duration::parse_or_zero)
    )]
    drain: Duration,
    /// after `--`: the command to run as the child, and its arguments
    #[argh(positional, greedy)]
    command: Vec<String>,
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
    lb: Option<Lb>,
    /// calls in flight at once in --repeat mode (default 1)
    #[argh(option, default = "1")]
    concurrency: u32,
    /// service to ask for (default add)
    #[argh(option, default = "mini::proto::DEFAULT_SERVICE.to_string()")]
    service: String,
    /// make N calls and report on stderr how many each instance served
    #[argh(option, default = "1")]
    repeat: u32,
    /// the registry's token, for a registry with --token-reads (or MINI_TOKEN)
    #[argh(option)]
    token: Option<String>,
}

/// `--store`: where registrations live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreKind {
    Memory,
    Etcd,
}

impl FromStr for StoreKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "memory" => Ok(StoreKind::Memory),
            "etcd" => Ok(StoreKind::Etcd),
            other => Err(format!("--store {other:?}: expected memory or etcd")),
        }
    }
}

/// `--lb`: a balancing strategy, whose error names the flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Lb(Strategy);

impl FromStr for Lb {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.parse().map(Lb).map_err(|why| format!("--lb: {why}"))
    }
}

/// Options whose `FromStr` error already names the option (see [`own_message`]).
const SELF_NAMING_OPTIONS: &[&str] = &["--store", "--lb"];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if matches!(args.first().map(String::as_str), Some("--version" | "-V")) {
        println!("mini {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let args = negative_numbers_as_positionals(args);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let cli = match Cli::from_args(&["mini"], &refs) {
        Ok(cli) => cli,
        Err(early) if early.status.is_ok() => {
            println!("{}", early.output);
            return ExitCode::SUCCESS;
        }
        Err(early) => return usage_error(own_message(&early.output)),
    };
    match cli.role {
        Role::Registry(a) => start(registry_config(a), registry::serve),
        Role::Adder(a) => start(adder_config(a), adder::serve),
        Role::Client(a) => start(client_config(a), client::run),
        Role::Watch(a) => start(watch_config(a), |config| async {
            watcher::serve(config).await;
            Ok::<(), std::convert::Infallible>(())
        }),
        Role::Register(a) => match register_config(a) {
            Ok(config) => ExitCode::from(mini::rt::block_on(sidecar::run(config))),
            Err(why) => usage_error(&why),
        },
    }
}

/// Runs a role whose arguments converted (else exit 2 with usage); its failure exits 1.
fn start<C, E: Display, F: Future<Output = Result<(), E>>>(
    config: Result<C, String>,
    serve: impl FnOnce(C) -> F,
) -> ExitCode {
    let config = match config {
        Ok(config) => config,
        Err(why) => return usage_error(&why),
    };
    match mini::rt::block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mini: {e}");
            ExitCode::from(1)
        }
    }
}

/// argh words a bad value `Error parsing option '--lb' with value 'x': MESSAGE`. For the options whose
/// MESSAGE names the option itself ([`SELF_NAMING_OPTIONS`]), MESSAGE alone is what `mini` prints.
fn own_message(output: &str) -> &str {
    let Some(rest) = output.strip_prefix("Error parsing option '") else {
        return output;
    };
    let Some((option, rest)) = rest.split_once("' with value '") else {
        return output;
    };
    if !SELF_NAMING_OPTIONS.contains(&option) {
        return output;
    }
    match rest.find(&format!("': {option}")) {
        Some(at) => &rest[at + 3..],
        None => output,
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
    eprintln!("       mini register SERVICE HOST:PORT [--check http:/PATH|tcp|none] [--registry ADDR] [-- CMD ARGS...]");
    eprintln!("run `mini <role> --help` for every option");
    ExitCode::from(2)
}

/// The token from the flag, else from `MINI_TOKEN`; it must be printable ASCII without spaces.
fn token(flag: Option<String>) -> Result<Option<String>, String> {
    match env::token(flag) {
        Some(t) if !t.bytes().all(|b| b.is_ascii_graphic()) => {
            Err("--token must be printable ASCII without spaces".into())
        }
        token => Ok(token),
    }
}

/// `--store` and `--etcd` (or `MINI_ETCD`) into a store configuration.
fn store_config(store: StoreKind, etcd: Option<String>) -> Result<StoreConfig, String> {
    match store {
        StoreKind::Memory if etcd.is_some() => Err("--etcd needs --store etcd".into()),
        StoreKind::Memory => Ok(StoreConfig::Memory),
        StoreKind::Etcd => mini::etcd::parse_endpoints(&env::etcd(etcd))
            .map(StoreConfig::Etcd)
            .map_err(|e| format!("--etcd: {e}")),
    }
}

fn registry_config(a: RegistryArgs) -> Result<registry::Config, String> {
    let dns = match &a.dns {
        None => None,
        Some(listen) => {
            let listen = listen
                .parse()
                .map_err(|_| format!("--dns: {listen:?} is not an IP:PORT"))?;
            if !mini::proto::ServiceName::is_valid(&a.dns_domain) {
                return Err(format!("--dns-domain: {:?} is not a domain", a.dns_domain));
            }
            Some(mini::dns::DnsConfig {
                listen,
                domain: a.dns_domain.clone(),
                ttl: u32::try_from(a.dns_ttl.as_secs()).unwrap_or(u32::MAX),
                ..Default::default()
            })
        }
    };
    let store = store_config(a.store, a.etcd)?;
    Ok(registry::Config {
        store,
        access: registry::auth::Access {
            token: token(a.token)?,
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
        dns,
        datacenter: a.datacenter,
        ..registry::Config::default()
    })
}

fn adder_config(a: AdderArgs) -> Result<adder::Config, String> {
    let (registries, service, token) = peer_flags(&a.registry, &a.service, a.token)?;
    Ok(adder::Config {
        registries,
        host: a.host,
        port: a.port,
        beat: a.beat,
        service,
        token,
        delay: a.delay,
        drain: a.drain,
    })
}

fn register_config(a: RegisterArgs) -> Result<sidecar::Config, String> {
    let (registries, service, token) = peer_flags(&a.registry, &a.service, a.token)?;
    if let Err(e) = addr::check(&a.addr) {
        return Err(format!("HOST:PORT {:?}: {e}", a.addr));
    }
    // The registry's own parser checks the flags, so what it would refuse is refused here first.
    let mut fields: Vec<(&str, &str)> = Vec::new();
    fields.extend(a.check.as_deref().map(|c| ("check", c)));
    fields.extend(a.tag.iter().map(|t| ("tag", t.as_str())));
    fields.extend(a.meta.iter().map(|m| ("meta", m.as_str())));
    fields.extend(a.weight.as_deref().map(|w| ("weight", w)));
    let spec = Spec::parse(fields, None).map_err(|e| e.to_string())?.spec;
    if a.ttl > registry::MAX_TTL {
        let max = duration::show(registry::MAX_TTL);
        return Err(format!(
            "--ttl {}: longer than {max}",
            duration::show(a.ttl)
        ));
    }
    if a.beat >= a.ttl {
        return Err(format!(
            "--beat {} must be shorter than --ttl {}, or the lease runs out between beats",
            duration::show(a.beat),
            duration::show(a.ttl)
        ));
    }
    Ok(sidecar::Config {
        registries,
        service,
        addr: a.addr,
        spec,
        ttl: a.ttl,
        beat: a.beat,
        token,
        drain: a.drain,
        command: a.command,
    })
}

fn client_config(a: ClientArgs) -> Result<client::Config, String> {
    let operands = match (a.a.parse::<i64>(), a.b.parse::<i64>()) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(_), _) => return Err(format!("A {:?} is not a 64-bit integer", a.a)),
        (_, Err(_)) => return Err(format!("B {:?} is not a 64-bit integer", a.b)),
    };
    let (registries, service, token) = peer_flags(&a.registry, &a.service, a.token)?;
    if a.repeat == 0 || a.concurrency == 0 {
        return Err("--repeat and --concurrency must be at least 1".into());
    }
    Ok(client::Config {
        registries,
        service,
        token,
        lb: a.lb.map(|Lb(strategy)| strategy),
        operands,
        repeat: a.repeat,
        concurrency: a.concurrency,
    })
}

/// What the adder and the client both take: `--registry` list, `--service` and `--token`, checked.
fn peer_flags(
    list: &str,
    service: &str,
    token_flag: Option<String>,
) -> Result<(Vec<String>, ServiceName, Option<String>), String> {
    let registries = addr::parse_list(list, ListForm::Addrs).map_err(|e| match e {
        ListError::Entry(entry, why) => format!("--registry {entry:?}: {why}"),
        ListError::Empty => format!("--registry {list:?}: no address given"),
    })?;
    let service = ServiceName::try_from(service)
        .map_err(|_| format!("--service {service:?}: not a valid service name"))?;
    Ok((registries, service, token(token_flag)?))
}

fn watch_config(a: WatchArgs) -> Result<watcher::Config, String> {
    if let Err(e) = addr::check(&a.registry) {
        return Err(format!("--registry {:?}: {e}", a.registry));
    }
    let service = ServiceName::try_from(a.service.as_str())
        .map_err(|_| format!("{:?} is not a valid service name", a.service))?;
    Ok(watcher::Config {
        registry: a.registry,
        service,
        token: token(a.token)?,
    })
}
