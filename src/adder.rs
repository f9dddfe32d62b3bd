//! The adder: the demo service. It adds two `i64`s over HTTP and keeps itself registered.
//!
//! | route | what |
//! |---|---|
//! | `GET /Add/{a}/{b}` | `a + b` as decimal text (the original route) |
//! | `GET /Add?a=&b=` | the same with query parameters |
//! | `GET /aliveCheck` | 200 while serving (the registry's probe) |
//! | `GET /health` | 200 while serving |
//!
//! Bad numbers and overflow answer 400 with the reason: the original wrapped silently.

use crate::http::router::Router;
use crate::http::server::{self, ServerConfig};
use crate::http::{Handler, Request, Response};
use crate::member::{self, Beat, Member};
use crate::metrics::{Exposition, HttpCounts};
use crate::proto::{self, ServiceName};
use crate::{log, rt};
use async_net::TcpListener;
use smol::Timer;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Heartbeat period of the original design.
pub const DEFAULT_BEAT: Duration = member::DEFAULT_BEAT;
/// The host an adder listens on and announces unless told otherwise.
pub const DEFAULT_HOST: &str = "127.0.0.1";

/// Everything `mini adder` is told on its command line.
#[derive(Debug, Clone)]
pub struct Config {
    /// The registries' `HOST:PORT`s: the adder beats to each of them.
    pub registries: Vec<String>,
    /// The host this adder announces (and listens on).
    pub host: String,
    /// The port [`serve`] listens on (0 picks a free one).
    pub port: u16,
    /// Heartbeat period.
    pub beat: Duration,
    /// Service name to register under.
    pub service: ServiceName,
    /// The registry's token, sent as `Authorization: Bearer` on heartbeats and deregistration.
    pub token: Option<String>,
    /// An artificial delay before each sum (testing only: makes this adder slow).
    pub delay: Option<Duration>,
    /// How long it keeps answering, marked draining, between a stop signal and its deregistration
    /// (zero: deregister at once).
    pub drain: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            registries: vec![proto::DEFAULT_REGISTRY.to_string()],
            host: DEFAULT_HOST.to_string(),
            port: 0,
            beat: DEFAULT_BEAT,
            service: ServiceName::default(),
            token: None,
            delay: None,
            drain: member::DEFAULT_DRAIN,
        }
    }
}

/// Why a sum was refused; each is a 400 with this text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddError {
    /// An operand is not a decimal `i64`.
    NotANumber(String),
    /// The sum does not fit in an `i64`.
    Overflow(i64, i64),
}

impl std::fmt::Display for AddError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AddError::NotANumber(s) => {
                let shown: String = s.chars().take(40).filter(|c| !c.is_control()).collect();
                write!(
                    f,
                    "{shown:?} is not an integer from -9223372036854775808 to 9223372036854775807"
                )
            }
            AddError::Overflow(a, b) => write!(f, "{a} + {b} overflows a 64-bit integer"),
        }
    }
}

impl std::error::Error for AddError {}

/// Adds two decimal operands, refusing what is not an `i64` and sums that overflow.
///
/// ```
/// use mini::adder::add;
/// assert_eq!(add("5", "-6"), Ok(-1));
/// assert!(add("9223372036854775807", "1").is_err());
/// assert!(add("five", "6").is_err());
/// ```
pub fn add(a: &str, b: &str) -> Result<i64, AddError> {
    let parse = |s: &str| {
        s.parse::<i64>()
            .map_err(|_| AddError::NotANumber(s.to_string()))
    };
    let (x, y) = (parse(a)?, parse(b)?);
    x.checked_add(y).ok_or(AddError::Overflow(x, y))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    AddPath,
    AddQuery,
    Alive,
    Metrics,
}

/// Route names for metrics, in the order of [`Route`]'s variants, then unmatched requests.
const ROUTE_NAMES: &[&str] = &["add", "addQuery", "alive", "metrics", "unmatched"];
const UNMATCHED: usize = ROUTE_NAMES.len() - 1;

/// The adder's counters for `/metrics`.
#[derive(Debug)]
pub struct Metrics {
    /// Requests by route and status.
    pub http: HttpCounts,
    /// Heartbeats by result, shared with the membership loop.
    pub beats: Arc<member::Counts>,
    started: Instant,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            http: HttpCounts::new(ROUTE_NAMES),
            beats: Arc::default(),
            started: Instant::now(),
        }
    }
}

impl Metrics {
    fn render(&self) -> String {
        let mut page = Exposition::default();
        self.http.render(&mut page, "mini");
        page.outcomes(
            "mini_heartbeats_sent_total",
            "Heartbeats sent to the registry, by result.",
            &self.beats.ok,
            &self.beats.failed,
        );
        page.single(
            "mini_uptime_seconds",
            "Seconds since the adder started.",
            "gauge",
            self.started.elapsed().as_secs_f64(),
        );
        page.finish()
    }
}

/// The adder's request handler.
pub struct Routes {
    router: Router<Route>,
    /// Counters, shared with the heartbeat loop.
    pub metrics: Arc<Metrics>,
    /// Added before each sum is answered: makes an adder artificially slow, for balancing tests.
    pub delay: Option<Duration>,
}

impl Default for Routes {
    fn default() -> Self {
        Routes {
            router: Router::new(&[
                ("GET", proto::ADD_PATTERN, Route::AddPath),
                ("GET", proto::ADD, Route::AddQuery),
                ("GET", proto::ALIVE_CHECK, Route::Alive),
                ("GET", proto::HEALTH, Route::Alive),
                ("GET", proto::METRICS, Route::Metrics),
            ]),
            metrics: Arc::default(),
            delay: None,
        }
    }
}

impl Routes {
    /// Answers one request (without the artificial delay).
    pub fn answer(&self, req: &Request<'_>) -> Response {
        let (route, resp) = self.route(req);
        self.metrics
            .http
            .record(route.map_or(UNMATCHED, |r| r as usize), resp.status);
        resp
    }

    fn route(&self, req: &Request<'_>) -> (Option<Route>, Response) {
        let (route, params) = match self.router.find_path(req.method(), req.path()) {
            Ok(found) => found,
            Err(miss) => return (None, miss.response(req.method(), req.path())),
        };
        let (a, b) = (req.query("a"), req.query("b"));
        let operands = match (route, &params[..]) {
            (Route::Alive, _) => return (Some(route), Response::text(200, "ok\n")),
            (Route::Metrics, _) => {
                let page = Response {
                    content_type: crate::metrics::CONTENT_TYPE,
                    ..Response::text(200, self.metrics.render())
                };
                return (Some(route), page);
            }
            (Route::AddPath, [a, b]) => (&**a, &**b),
            (_, _) => match (&a, &b) {
                (Some(a), Some(b)) => (&**a, &**b),
                _ => {
                    let resp = Response::error(400, "need a and b: /Add/{a}/{b} or /Add?a=&b=");
                    return (Some(route), resp);
                }
            },
        };
        let resp = match add(operands.0, operands.1) {
            Ok(sum) => Response::text(200, sum.to_string()),
            Err(e) => Response::error(400, e),
        };
        (Some(route), resp)
    }
}

impl Handler for Routes {
    async fn handle(&self, req: &Request<'_>) -> Response {
        if let Some(delay) = self.delay {
            if req.segments().next().is_some_and(|s| s == "Add") {
                Timer::after(delay).await;
            }
        }
        self.answer(req)
    }
}

/// `mini adder`: listens on `config.host:config.port`, says `listening on ADDR`, then [`run`]s.
pub async fn serve(config: Config) -> std::io::Result<()> {
    let listener = rt::bind(&format!("{}:{}", config.host, config.port)).await?;
    if let Ok(addr) = listener.local_addr() {
        log::line("adder", format_args!("listening on {addr}"));
    }
    run(listener, config).await
}

/// Serves on `listener`, heartbeats to the registries, and on SIGINT or SIGTERM drains for
/// `config.drain` (still answering), deregisters and returns. A second signal cuts the drain short.
///
/// ```no_run
/// mini::rt::block_on(async {
///     let listener = async_net::TcpListener::bind("127.0.0.1:0").await?;
///     mini::adder::run(listener, mini::adder::Config::default()).await
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub async fn run(listener: TcpListener, config: Config) -> std::io::Result<()> {
    let port = listener.local_addr()?.port();
    let me = format!("{}:{port}", config.host);
    let mut signals = member::StopSignals::new()?;
    let routes = Routes {
        delay: config.delay,
        ..Routes::default()
    };
    let beats = routes.metrics.beats.clone();
    rt::spawn(server::serve(
        listener,
        Arc::new(routes),
        ServerConfig::default(),
    ))
    .detach();
    let mut member = Member::start(
        member::Config {
            registries: config.registries,
            service: config.service,
            addr: me.clone(),
            token: config.token,
            every: config.beat,
            beat: Beat::RegisterList,
            drain: config.drain,
            role: "adder",
        },
        beats,
    );
    let signal = signals.next().await;
    log::line("adder", format_args!("{me} got {}; leaving", signal.name()));
    member
        .drain(async {
            signals.next().await;
        })
        .await;
    member.deregister().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_and_refuses() {
        assert_eq!(add("-9223372036854775808", "0"), Ok(i64::MIN));
        assert_eq!(add("+5", "6"), Ok(11));
        assert_eq!(add("1", "-9223372036854775808").unwrap(), i64::MIN + 1);
        assert_eq!(
            add("-1", "-9223372036854775808"),
            Err(AddError::Overflow(-1, i64::MIN))
        );
        assert!(matches!(add("", "1"), Err(AddError::NotANumber(_))));
        assert!(matches!(add("1.5", "1"), Err(AddError::NotANumber(_))));
        assert!(matches!(
            add("99999999999999999999", "1"),
            Err(AddError::NotANumber(_))
        ));
    }
}
