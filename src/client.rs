//! The client: ask the registry for an adder, call it, and when that adder fails, ask again for
//! another, never retrying an address that already failed in this call.
//!
//! This is the original design's retry loop with its two holes closed: it stops when the registry says
//! there is no instance (the original looped forever on some answers), and it is bounded by
//! [`MAX_LOOKUPS`] however the registry answers. An address the registry offers again after it
//! failed costs a lookup but no call: with two failing adders of three, 16 lookups drawing only the
//! failed pair happened once in 660 calls ((2/3)^16), so the lookup budget is larger than the number
//! of adders a call tries ([`MAX_ATTEMPTS`]).
//!
//! [`run`] is `mini client A B`: one call, or `--repeat N` calls with a tally of who served them.

use crate::balance::Strategy;
use crate::discovery::Discovery;
use crate::http::client::{Client, ClientConfig, ClientError};
use crate::proto::{self, ServiceName, NO_SERVICE_BODY};
use crate::rt;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Registry lookups one call may make before giving up: (2/3)^64 is 5e-12, so with a third of the
/// adders good a call practically always finds one.
pub const MAX_LOOKUPS: usize = 64;
/// Distinct adders one call tries before giving up.
pub const MAX_ATTEMPTS: usize = 16;
/// Time to connect to the registry or an adder.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Time one HTTP exchange may take; a slower adder counts as failed and the next one is tried.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a lookup keeps trying while no registry can be reached (a restart takes milliseconds).
pub const UNREACHABLE_PATIENCE: Duration = Duration::from_secs(1);
/// How long a lookup keeps trying while the registry warms up (its default warm-up is one 5 s beat).
pub const WARMUP_PATIENCE: Duration = Duration::from_secs(6);
/// First pause between lookups that found no registry ready; it doubles up to a second.
const FIRST_PAUSE: Duration = Duration::from_millis(50);
/// How long a balanced client (`--lb`) waits for its first listing of the service.
pub const FIRST_LISTING: Duration = Duration::from_secs(5);

/// Why a call produced no sum.
#[derive(Debug)]
pub enum CallError {
    /// The registry has no healthy instance (or only ones that already failed in this call).
    NoInstance {
        /// The service asked for.
        service: String,
        /// Addresses that failed during this call.
        failed: Vec<String>,
        /// The registry's wording when it is not ours ([`NO_SERVICE_BODY`]): the original Go
        /// registry's says it in Chinese, and any 400 on `/serviceAddr` means "none" there.
        said: Option<String>,
    },
    /// The registry could not be reached.
    RegistryUnreachable(String, ClientError),
    /// The registry answered something unexpected.
    Registry(u16, String),
    /// An adder refused the operands (bad number, overflow): no other adder would do better.
    Rejected(String),
    /// No registry was configured.
    NoRegistry,
    /// Retries would exceed the retry budget.
    RetryBudget {
        /// Addresses that failed during this call.
        failed: Vec<String>,
    },
    /// Every lookup returned an address that had already failed.
    GaveUp {
        /// The service asked for.
        service: String,
        /// Addresses that failed during this call.
        failed: Vec<String>,
    },
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::NoInstance {
                service,
                failed,
                said,
            } => {
                write!(f, "no {service} instance available")?;
                match (failed.is_empty(), said) {
                    (true, None) => Ok(()),
                    (true, Some(said)) => write!(f, " (registry said: {said})"),
                    (false, None) => write!(f, " (failed: {})", failed.join(", ")),
                    (false, Some(said)) => write!(
                        f,
                        " (failed: {}; registry said: {said})",
                        failed.join(", ")
                    ),
                }
            }
            CallError::RegistryUnreachable(addr, e) => {
                write!(f, "registry {addr} unreachable: {e}")
            }
            CallError::Registry(status, body) => write!(f, "registry answered {status}: {body}"),
            CallError::Rejected(reason) => write!(f, "adder refused: {reason}"),
            CallError::NoRegistry => f.write_str("no registry given"),
            CallError::RetryBudget { failed } => write!(
                f,
                "retry budget exhausted (retries may add 20% of calls); failed: {}",
                failed.join(", ")
            ),
            CallError::GaveUp { service, failed } => write!(
                f,
                "no {service} instance answered: every one the registry offered in up to {MAX_LOOKUPS} lookups failed ({})",
                failed.join(", ")
            ),
        }
    }
}

impl std::error::Error for CallError {}

/// A successful call: the sum and who computed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The sum.
    pub sum: i64,
    /// The adder that answered.
    pub addr: String,
    /// Adders that failed before it, in this call.
    pub failed: Vec<String>,
}

/// Calls adders found through the registry, asking it on every call (the original design).
///
/// With several registries (`--registry a,b`), a lookup that cannot reach one moves on to the next
/// and stays there while it answers.
///
/// ```no_run
/// mini::rt::block_on(async {
///     let add = mini::proto::ServiceName::default();
///     let caller = mini::client::Caller::new(&["127.0.0.1:6666".to_string()], &add);
///     let answer = caller.add(5, 6).await?;
///     assert_eq!(answer.sum, 11);
///     Ok::<(), mini::client::CallError>(())
/// });
/// ```
#[derive(Debug, Clone)]
pub struct Caller {
    http: Client,
    registries: Vec<String>,
    current: Arc<AtomicUsize>,
    service: ServiceName,
    bearer: Option<String>,
}

/// What one attempt at an adder came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The sum.
    Sum(i64),
    /// The instance failed (refused, timed out, 5xx, garbage): try another.
    Failed(String),
    /// The instance refused the input: stop.
    Rejected(String),
}

/// The HTTP client every call uses: short connect and call timeouts, keep-alive pooled.
pub fn http_client() -> Client {
    Client::new(ClientConfig {
        connect_timeout: CONNECT_TIMEOUT,
        request_timeout: CALL_TIMEOUT,
    })
}

/// Calls `GET /Add/{a}/{b}` on one adder and says what came of it.
pub async fn call_adder(http: &Client, addr: &str, a: i64, b: i64) -> Attempt {
    let resp = match http.get(addr, &proto::add_target(a, b)).await {
        Ok(resp) => resp,
        Err(e) => return Attempt::Failed(e.to_string()),
    };
    let body = resp.text();
    match resp.status {
        200 => match body.trim().parse() {
            Ok(sum) => Attempt::Sum(sum),
            Err(_) => Attempt::Failed(format!("answered a non-number: {:?}", short(&body))),
        },
        400 => Attempt::Rejected(body.trim_end().to_string()),
        status => Attempt::Failed(format!("answered {status}")),
    }
}

impl Caller {
    /// A caller for `service` through `registries` (`HOST:PORT` each, tried in order).
    pub fn new(registries: &[String], service: &ServiceName) -> Caller {
        Caller {
            http: http_client(),
            registries: registries.to_vec(),
            current: Arc::default(),
            service: service.clone(),
            bearer: None,
        }
    }

    /// Sends `token` on lookups, for a registry started with `--token-reads`.
    pub fn with_token(mut self, token: Option<&str>) -> Caller {
        self.bearer = proto::bearer(token);
        self
    }

    /// Computes `a + b` on some adder, moving on from adders that fail.
    pub async fn add(&self, a: i64, b: i64) -> Result<Answer, CallError> {
        let mut failed: Vec<String> = Vec::new();
        for _ in 0..MAX_LOOKUPS {
            if failed.len() == MAX_ATTEMPTS {
                break;
            }
            let addr = self.lookup(&failed).await?;
            if failed.contains(&addr) {
                continue;
            }
            match call_adder(&self.http, &addr, a, b).await {
                Attempt::Sum(sum) => return Ok(Answer { sum, addr, failed }),
                Attempt::Rejected(reason) => return Err(CallError::Rejected(reason)),
                Attempt::Failed(why) => {
                    crate::log::line(
                        "client",
                        format_args!("{addr} failed ({why}); asking the registry again"),
                    );
                    failed.push(addr);
                }
            }
        }
        Err(CallError::GaveUp {
            service: self.service.to_string(),
            failed,
        })
    }

    /// Asks the registries; while none can be reached, or one says it is warming up (503), asks again
    /// with a growing pause, for at most [`UNREACHABLE_PATIENCE`] or [`WARMUP_PATIENCE`].
    async fn lookup(&self, failed: &[String]) -> Result<String, CallError> {
        let start = Instant::now();
        let mut pause = FIRST_PAUSE;
        loop {
            let answer = self.lookup_once(failed).await;
            let patience = match &answer {
                Err(CallError::RegistryUnreachable(..)) => UNREACHABLE_PATIENCE,
                Err(CallError::Registry(503, _)) => WARMUP_PATIENCE,
                _ => return answer,
            };
            if start.elapsed() + pause > patience {
                return answer;
            }
            smol::Timer::after(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// Asks the current registry, failing over to the next ones when it cannot be reached.
    async fn lookup_once(&self, failed: &[String]) -> Result<String, CallError> {
        let n = self.registries.len();
        let first = self.current.load(Ordering::Relaxed);
        let mut last_error = None;
        for step in 0..n {
            let i = (first + step) % n;
            match self.lookup_at(&self.registries[i], failed).await {
                Err(CallError::RegistryUnreachable(addr, e)) => {
                    last_error = Some(CallError::RegistryUnreachable(addr, e));
                }
                answer => {
                    if step > 0 {
                        self.current.store(i, Ordering::Relaxed);
                        let to = &self.registries[i];
                        crate::log::line("client", format_args!("failed over to registry {to}"));
                    }
                    return answer;
                }
            }
        }
        Err(last_error.unwrap_or(CallError::NoRegistry))
    }

    /// One lookup. A 400 means "none available" whatever its body, as in the original protocol: ours
    /// says [`NO_SERVICE_BODY`], the original Go registry `当前没有可用服务`.
    async fn lookup_at(&self, registry: &str, failed: &[String]) -> Result<String, CallError> {
        let target = proto::service_addr_target(&self.service);
        let resp = self
            .http
            .call("GET", registry, &target, self.bearer.as_deref())
            .await
            .map_err(|e| CallError::RegistryUnreachable(registry.to_string(), e))?;
        let body = resp.text();
        match resp.status {
            200 => Ok(body),
            400 => Err(CallError::NoInstance {
                service: self.service.to_string(),
                failed: failed.to_vec(),
                said: (body != NO_SERVICE_BODY).then(|| body.trim_end().to_string()),
            }),
            status => Err(CallError::Registry(status, body.trim_end().to_string())),
        }
    }
}

/// Calls adders picked locally from a watched copy of the service ([`Discovery`]), with a balancing
/// strategy, outlier ejection and a retry budget: no registry round trip per call.
///
/// ```no_run
/// use mini::balance::Strategy;
/// mini::rt::block_on(async {
///     let add = mini::proto::ServiceName::default();
///     let caller = mini::client::Balanced::start(&["127.0.0.1:6666".to_string()], &add, Strategy::P2c, None);
///     caller.ready(std::time::Duration::from_secs(2)).await;
///     println!("{}", caller.add(5, 6).await?.sum);
///     Ok::<(), mini::client::CallError>(())
/// });
/// ```
#[derive(Debug)]
pub struct Balanced {
    http: Client,
    discovery: Discovery,
}

impl Balanced {
    /// Starts watching `service` through `registries`.
    pub fn start(
        registries: &[String],
        service: &ServiceName,
        strategy: Strategy,
        token: Option<&str>,
    ) -> Balanced {
        Balanced {
            http: http_client(),
            discovery: Discovery::start(registries, service, strategy, proto::bearer(token)),
        }
    }

    /// Waits (at most `limit`) for the first listing; false if none came.
    pub async fn ready(&self, limit: Duration) -> bool {
        self.discovery.ready(limit).await
    }

    /// Computes `a + b`, retrying on other instances within the retry budget.
    pub async fn add(&self, a: i64, b: i64) -> Result<Answer, CallError> {
        let mut failed: Vec<String> = Vec::new();
        loop {
            let Some(addr) = self.discovery.pick(&failed) else {
                return Err(CallError::NoInstance {
                    service: self.discovery.service().to_string(),
                    failed,
                    said: None,
                });
            };
            self.discovery.started(&addr);
            let attempt = call_adder(&self.http, &addr, a, b).await;
            self.discovery
                .finished(&addr, !matches!(attempt, Attempt::Failed(_)));
            match attempt {
                Attempt::Sum(sum) => return Ok(Answer { sum, addr, failed }),
                Attempt::Rejected(reason) => return Err(CallError::Rejected(reason)),
                Attempt::Failed(why) => {
                    crate::log::line(
                        "client",
                        format_args!("{addr} failed ({why}); trying another"),
                    );
                    failed.push(addr);
                    if !self.discovery.try_retry() {
                        return Err(CallError::RetryBudget { failed });
                    }
                }
            }
        }
    }
}

/// Either way of calling, behind one `add`.
#[derive(Debug)]
pub enum AnyCaller {
    /// Ask the registry per call.
    PerCall(Caller),
    /// Pick locally from a watched copy.
    Balanced(Balanced),
}

impl AnyCaller {
    /// Computes `a + b`.
    pub async fn add(&self, a: i64, b: i64) -> Result<Answer, CallError> {
        match self {
            AnyCaller::PerCall(c) => c.add(a, b).await,
            AnyCaller::Balanced(c) => c.add(a, b).await,
        }
    }
}

/// Makes `n` calls of `a + b`, `concurrency` at a time, and tallies who served them.
pub async fn repeat(
    caller: Arc<AnyCaller>,
    a: i64,
    b: i64,
    n: u32,
    concurrency: u32,
) -> (Tally, Option<CallError>) {
    let remaining = Arc::new(AtomicUsize::new(n as usize));
    let results = Arc::new(Mutex::new((Tally::default(), None)));
    let workers: Vec<_> = (0..concurrency.clamp(1, n.max(1)))
        .map(|_| {
            let (caller, remaining, results) = (caller.clone(), remaining.clone(), results.clone());
            rt::spawn(async move {
                while take_one(&remaining) {
                    let outcome = caller.add(a, b).await;
                    let mut r = rt::lock(&results);
                    r.0.count(&outcome);
                    if let Err(e) = outcome {
                        r.1 = Some(e);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await;
    }
    let mut r = rt::lock(&results);
    (std::mem::take(&mut r.0), r.1.take())
}

fn take_one(remaining: &AtomicUsize) -> bool {
    remaining
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
}

fn short(s: &str) -> String {
    s.chars().take(60).collect()
}

/// Tally of `--repeat` calls: how many each instance answered, and the failures.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Answers per instance address.
    pub served: BTreeMap<String, u64>,
    /// Calls that got no sum.
    pub failed: u64,
    /// The last sum an adder answered.
    pub sum: Option<i64>,
}

impl Tally {
    /// Counts one call's outcome.
    pub fn count(&mut self, outcome: &Result<Answer, CallError>) {
        match outcome {
            Ok(answer) => {
                *self.served.entry(answer.addr.clone()).or_default() += 1;
                self.sum = Some(answer.sum);
            }
            Err(_) => self.failed += 1,
        }
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (addr, n) in &self.served {
            writeln!(f, "{addr} served {n}")?;
        }
        write!(f, "failed calls: {}", self.failed)
    }
}

/// Everything `mini client A B` is told on its command line.
#[derive(Debug, Clone)]
pub struct Config {
    /// The registries' `HOST:PORT`s, tried in turn.
    pub registries: Vec<String>,
    /// The service to call.
    pub service: ServiceName,
    /// The registry's token, for a registry with `--token-reads`.
    pub token: Option<String>,
    /// `Some`: balance locally from a watched copy ([`Balanced`]); `None`: ask per call ([`Caller`]).
    pub lb: Option<Strategy>,
    /// The operands.
    pub operands: (i64, i64),
    /// Calls to make (at least 1); more than one prints a [`Tally`] on stderr.
    pub repeat: u32,
    /// Calls in flight at once (at least 1).
    pub concurrency: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            registries: vec![proto::DEFAULT_REGISTRY.to_string()],
            service: ServiceName::default(),
            token: None,
            lb: None,
            operands: (0, 0),
            repeat: 1,
            concurrency: 1,
        }
    }
}

/// Why `mini client` failed (it then exits 1).
#[derive(Debug)]
pub enum RunError {
    /// `--lb`: no registry sent a first listing within [`FIRST_LISTING`].
    NoListing {
        /// The service asked for.
        service: ServiceName,
        /// The registries tried.
        registries: Vec<String>,
    },
    /// The one call failed.
    Call(CallError),
    /// Some of the `--repeat` calls failed.
    Repeat {
        /// How many failed.
        failed: u64,
        /// How many were made.
        calls: u32,
        /// The last failure.
        last: CallError,
    },
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::NoListing {
                service,
                registries,
            } => write!(f, "no listing of {service} from {}", registries.join(", ")),
            RunError::Call(e) => e.fmt(f),
            RunError::Repeat {
                failed,
                calls,
                last,
            } => write!(f, "{failed} of {calls} calls failed; last: {last}"),
        }
    }
}

impl std::error::Error for RunError {}

/// `mini client A B`: computes the sum and prints it on stdout (with who answered on stderr); with
/// `repeat > 1` prints the [`Tally`] on stderr and the last sum on stdout.
pub async fn run(config: Config) -> Result<(), RunError> {
    let token = config.token.as_deref();
    let caller = match config.lb {
        None => {
            AnyCaller::PerCall(Caller::new(&config.registries, &config.service).with_token(token))
        }
        Some(strategy) => {
            let balanced = Balanced::start(&config.registries, &config.service, strategy, token);
            if !balanced.ready(FIRST_LISTING).await {
                return Err(RunError::NoListing {
                    service: config.service,
                    registries: config.registries,
                });
            }
            AnyCaller::Balanced(balanced)
        }
    };
    let (x, y) = config.operands;
    if config.repeat == 1 {
        let answer = caller.add(x, y).await.map_err(RunError::Call)?;
        crate::log::line("client", format_args!("{} answered {x} + {y}", answer.addr));
        println!("{}", answer.sum);
        return Ok(());
    }
    let (tally, last_error) =
        repeat(Arc::new(caller), x, y, config.repeat, config.concurrency).await;
    eprintln!("{tally}");
    if let Some(sum) = tally.sum {
        println!("{sum}");
    }
    match last_error {
        None => Ok(()),
        Some(last) => Err(RunError::Repeat {
            failed: tally.failed,
            calls: config.repeat,
            last,
        }),
    }
}

#[cfg(test)]
mod tests;
