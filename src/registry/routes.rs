//! The registry's HTTP routes: the original wire routes, byte for byte, and our own `/v1` API.
//!
//! | route | what |
//! |---|---|
//! | `POST /registerList?ip=HOST:PORT[&service=NAME]` | register or renew (original wire route); a renewal keeps the spec a `PUT` gave |
//! | `GET /serviceAddr?queryParam=NAME[&tag=T]...` | one healthy `HOST:PORT`, drawn by weight, carrying every tag (original wire route) |
//! | `PUT /v1/services/{service}/{addr}[?ttl=15s&check=&tag=&meta=K:V&weight=]` | register or renew with a spec (query, or the same as a JSON body; the query wins) |
//! | `DELETE /v1/services/{service}/{addr}` | deregister |
//! | `POST /v1/services/{service}/{addr}/drain` | mark draining: listed and probed, never picked (404 if unknown) |
//! | `DELETE /v1/services/{service}/{addr}/drain` | back in rotation |
//! | `GET /v1/services` | services with live/total/draining counts |
//! | `GET /v1/services/{service}[?tag=T]...` | instances with health, beat, probe, lease, spec and drain mark |
//! | `GET /v1/services/{service}?index=N&wait=30s` | the same, once the service's index moves past N (a watch) |
//! | `GET /health` | 200 while the registry runs (`degraded: ...` while etcd is unreachable) |
//! | `GET /metrics` | Prometheus text format |
//! | `GET /` | the live page |
//!
//! With `--token`, the writes need it (see [`super::auth`]).
//!
//! Listings are plain text unless the caller asks for JSON (`Accept: application/json` or
//! `?format=json`); the paths and the JSON form of a listing are [`crate::proto`]'s.

use super::auth::Kind;
use super::doors::{self, Doors};
use super::state::{Instance, RegisterError, Registered, ServiceSummary};
use super::store::StoreError;
use super::watch::{DEFAULT_WAIT, MAX_WAIT, MAX_WATCHERS};
use super::{Shared, MAX_TTL};
use crate::http::router::{printable, Router};
use crate::http::{Body, Handler, Request, Response};
use crate::metrics::join_names;
use crate::proto::{
    self, ListedInstance, ListedProbe, DEFAULT_SERVICE, NO_SERVICE_BODY, WARMING_UP,
};
use crate::spec::{Spec, SpecError, MAX_TAGS};
use crate::{addr, duration, json, log, rt};
use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    RegisterList,
    ServiceAddr,
    Put,
    Delete,
    Drain,
    Undrain,
    Services,
    Service,
    Health,
    Metrics,
    Page,
}

/// Names of mini's own routes, in the order of [`Route`]'s variants.
const OWN_NAMES: [&str; 11] = [
    "registerList",
    "serviceAddr",
    "put",
    "delete",
    "drain",
    "undrain",
    "services",
    "service",
    "health",
    "metrics",
    "page",
];
const _: () = assert!(OWN_NAMES.len() == Route::Page as usize + 1);

/// Route names for metrics: mini's own (in the order of the routes' enum), the doors'
/// (`doors::DOOR_NAMES`, in order), counted in the same family, then unmatched requests.
pub const ROUTE_NAMES: &[&str] =
    &join_names::<ROUTE_COUNT>(&[&OWN_NAMES, &doors::DOOR_NAMES, &["unmatched"]]);
const ROUTE_COUNT: usize = OWN_NAMES.len() + doors::DOOR_NAMES.len() + 1;
/// Where the doors' names start in [`ROUTE_NAMES`].
const DOORS_FROM: usize = OWN_NAMES.len();
const UNMATCHED: usize = ROUTE_NAMES.len() - 1;

impl Route {
    /// What the access check guards; `None` for routes that are always open.
    fn access(self) -> Option<Kind> {
        match self {
            Route::RegisterList | Route::Put | Route::Delete | Route::Drain | Route::Undrain => {
                Some(Kind::Write)
            }
            Route::ServiceAddr
            | Route::Services
            | Route::Service
            | Route::Metrics
            | Route::Page => Some(Kind::Read),
            Route::Health => None,
        }
    }
}

const TABLE: &[(&str, &str, Route)] = &[
    ("POST", proto::REGISTER_LIST, Route::RegisterList),
    ("GET", proto::SERVICE_ADDR, Route::ServiceAddr),
    ("PUT", proto::INSTANCE_PATTERN, Route::Put),
    ("DELETE", proto::INSTANCE_PATTERN, Route::Delete),
    ("POST", proto::DRAIN_PATTERN, Route::Drain),
    ("DELETE", proto::DRAIN_PATTERN, Route::Undrain),
    ("GET", proto::SERVICES, Route::Services),
    ("GET", proto::SERVICE_PATTERN, Route::Service),
    ("GET", proto::HEALTH, Route::Health),
    ("GET", proto::METRICS, Route::Metrics),
    ("GET", proto::PAGE, Route::Page),
];

/// The registry's request handler.
pub struct Routes {
    shared: Arc<Shared>,
    doors: Doors,
    router: Router<Route>,
    woken: Mutex<Option<Rendered>>,
}

/// The listing last sent to a woken watcher: the thousand watchers one change wakes share one
/// rendering instead of each walking the instances under the lock.
struct Rendered {
    service: String,
    json: bool,
    index: u64,
    at: Instant,
    resp: Response,
}

/// How long a rendered listing may be reused for other watchers of the same index (its "ms ago"
/// figures are at most this stale).
const REUSE_LISTING: Duration = Duration::from_millis(100);

impl Routes {
    /// Routes over shared state.
    pub fn new(shared: Arc<Shared>) -> Routes {
        Routes {
            doors: Doors::new(shared.clone()),
            shared,
            router: Router::new(TABLE),
            woken: Mutex::new(None),
        }
    }

    /// Answers one request (a watch too, which may wait). Reads are a short critical section on the
    /// local state; writes may wait on the store (etcd).
    pub async fn answer(&self, req: &Request<'_>) -> Response {
        if doors::owns(req.path()) {
            let (door, resp) = self.doors.answer(req).await;
            let index = door.map_or(UNMATCHED, |d| DOORS_FROM + d as usize);
            self.shared.metrics.http.record(index, resp.status);
            return resp;
        }
        let (route, resp) = match self.watch_of(req) {
            Some(Ok(watch)) => (Some(Route::Service), self.watch(watch).await),
            Some(Err(resp)) => (Some(Route::Service), resp),
            None => self.route(req).await,
        };
        let index = route.map_or(UNMATCHED, |r| r as usize);
        self.shared.metrics.http.record(index, resp.status);
        resp
    }

    async fn route(&self, req: &Request<'_>) -> (Option<Route>, Response) {
        let (route, params) = match self.router.find_path(req.method(), req.path()) {
            Ok(found) => found,
            Err(miss) => return (None, miss.response(req.method(), req.path())),
        };
        if let Some(kind) = route.access() {
            if let Err(denied) = self.shared.config.access.check(req, kind) {
                return (Some(route), denied);
            }
        }
        (Some(route), self.dispatch(req, route, &params).await)
    }

    async fn dispatch(&self, req: &Request<'_>, route: Route, params: &[Cow<'_, str>]) -> Response {
        match (route, params) {
            (Route::RegisterList, _) => self.register_list(req).await,
            (Route::ServiceAddr, _) => self.service_addr(req),
            (Route::Put, [service, addr]) => self.put(req, service, addr).await,
            (Route::Delete, [service, addr]) => self.delete(service, addr).await,
            (Route::Drain, [service, addr]) => self.drain(service, addr, true).await,
            (Route::Undrain, [service, addr]) => self.drain(service, addr, false).await,
            (Route::Services, _) => self.services(req),
            (Route::Service, [service]) => self.service(req, service),
            (Route::Health, _) => self.health(),
            (Route::Metrics, _) => Response {
                content_type: crate::metrics::CONTENT_TYPE,
                ..Response::text(200, self.shared.render_metrics())
            },
            (Route::Page, _) => Response {
                content_type: "text/html; charset=utf-8",
                ..Response::text(200, Body::from_static(super::page::HTML.as_bytes()))
            },
            _ => Response::error(500, "route table and handlers disagree"),
        }
    }

    async fn register_list(&self, req: &Request<'_>) -> Response {
        let Some(ip) = req.query("ip") else {
            return Response::error(400, "missing ip=HOST:PORT");
        };
        let service = req.query("service");
        let service = service.as_deref().unwrap_or(DEFAULT_SERVICE);
        match self
            .register(service, &ip, self.shared.config.ttl, None)
            .await
        {
            // Written straight into the body: no `String` for the reply.
            Ok(()) => Response::text(200, Body::display(format_args!("{ip} registered"))),
            Err(resp) => resp,
        }
    }

    fn service_addr(&self, req: &Request<'_>) -> Response {
        let Some(service) = req.query("queryParam") else {
            return Response::error(400, "missing queryParam=SERVICE");
        };
        let tags = match tag_filter(req) {
            Ok(tags) => tags,
            Err(resp) => return resp,
        };
        let picked = (self.shared.state()).pick_tagged(&service, &tags, &mut fastrand::Rng::new());
        match picked {
            // Copied into the body's inline bytes: no `String` for the reply.
            Some(addr) => Response::text(200, &*addr),
            None if self.warming_up() => Response::error(503, WARMING_UP),
            None => Response::text(400, Body::from_static(NO_SERVICE_BODY.as_bytes())),
        }
    }

    /// A registry that just started has not heard every instance's beat yet: "none" may be untrue.
    fn warming_up(&self) -> bool {
        self.shared.metrics.started.elapsed() < self.shared.config.warmup
    }

    async fn put(&self, req: &Request<'_>, service: &str, addr: &str) -> Response {
        let body = match req.body() {
            [] => None,
            bytes => match crate::jsonread::parse(bytes) {
                Ok(v) => Some(v),
                Err(e) => return Response::error(400, SpecError::BadBody(e.to_string())),
            },
        };
        let parsed = match Spec::parse(req.query_pairs(), body.as_ref()) {
            Ok(parsed) => parsed,
            Err(e) => return Response::error(400, e),
        };
        let ttl = match parsed.ttl.as_deref().map(duration::parse) {
            None => self.shared.config.ttl,
            Some(Ok(ttl)) if ttl <= MAX_TTL => ttl,
            Some(Ok(_)) => {
                return Response::error(
                    400,
                    format_args!("ttl longer than {}", duration::show(MAX_TTL)),
                )
            }
            Some(Err(why)) => return Response::error(400, format_args!("bad ttl: {why}")),
        };
        let spec = Some(Arc::new(parsed.spec));
        match self.register(service, addr, ttl, spec).await {
            Ok(()) => Response::text(200, format!("{addr} registered in {service}\n")),
            Err(resp) => resp,
        }
    }

    /// Validates and registers (`spec: None` keeps the instance's spec); the error is the reply.
    async fn register(
        &self,
        service: &str,
        addr: &str,
        ttl: Duration,
        spec: Option<Arc<Spec>>,
    ) -> Result<(), Response> {
        addr::check(addr).map_err(|e| Response::error(400, format_args!("bad address: {e}")))?;
        let logged = spec.clone();
        let result = self.shared.register(service, addr, ttl, spec).await;
        if result.is_ok() {
            self.shared.metrics.heartbeats.inc();
        }
        match result {
            Ok(Registered::New) => {
                log::line(
                    "registry",
                    format_args!("{service} {addr} registered (ttl {})", duration::show(ttl)),
                );
                Ok(())
            }
            Ok(Registered::Updated) => {
                let spec = logged.map(|s| s.describe()).unwrap_or_default();
                log::line("registry", format_args!("{service} {addr} updated: {spec}"));
                Ok(())
            }
            Ok(Registered::Renewed) => Ok(()),
            Err(StoreError::Refused(e @ RegisterError::BadServiceName)) => {
                Err(Response::error(400, e))
            }
            Err(StoreError::Refused(e)) => Err(Response::error(429, e)),
            Err(e @ StoreError::Unavailable(_)) => Err(Response::error(503, e)),
        }
    }

    async fn delete(&self, service: &str, addr: &str) -> Response {
        match self.shared.deregister(service, addr).await {
            Ok(true) => {
                log::line("registry", format_args!("{service} {addr} deregistered"));
                Response::text(200, format!("{addr} deregistered from {service}\n"))
            }
            Ok(false) => not_registered(service, addr),
            Err(e) => Response::error(503, e),
        }
    }

    /// `POST .../drain` (`draining`) or `DELETE .../drain`: 200 whether or not the mark flipped, 404
    /// for an instance not registered (a drain never creates one).
    async fn drain(&self, service: &str, addr: &str, draining: bool) -> Response {
        let (word, done) = if draining {
            ("draining", "drained")
        } else {
            ("back in rotation", "undrained")
        };
        match self.shared.drain(service, addr, draining).await {
            Ok(Some(flipped)) => {
                if flipped {
                    log::line("registry", format_args!("{service} {addr} {done}"));
                }
                Response::text(200, format!("{addr} {word} in {service}\n"))
            }
            Ok(None) => not_registered(service, addr),
            Err(e) => Response::error(503, e),
        }
    }

    /// `ok`, or `degraded: why` while the store cannot be reached (still 200: lookups work).
    fn health(&self) -> Response {
        match self.shared.store.degraded() {
            None => Response::text(200, "ok\n"),
            Some(why) => Response::text(200, format!("degraded: {why}\n")),
        }
    }

    fn services(&self, req: &Request<'_>) -> Response {
        let services = self.shared.state().services();
        if wants_json(req) {
            let items = services.iter().map(summary_json);
            let mut body = json::Object::new();
            body.raw("services", &json::array(items));
            if let Some(why) = self.shared.store.degraded() {
                body.str("degraded", &why);
            }
            return Response::json(200, body.finish());
        }
        let mut body = String::new();
        for s in &services {
            body.push_str(&format!(
                "{} live={} total={} index={} draining={}\n",
                s.name, s.live, s.total, s.index, s.draining
            ));
        }
        if let Some(why) = self.shared.store.degraded() {
            body.push_str(&format!("degraded: {why}\n"));
        }
        Response::text(200, body)
    }

    fn service(&self, req: &Request<'_>, service: &str) -> Response {
        match tag_filter(req) {
            Ok(tags) => self.render(service, wants_json(req), &tags).1,
            Err(resp) => resp,
        }
    }

    /// The listing for a woken watcher, rendered once per service, index and format (a watch with a
    /// tag filter renders its own).
    fn shared_listing(&self, service: &str, json: bool, tags: &[Cow<'_, str>]) -> Response {
        if !tags.is_empty() {
            return self.render(service, json, tags).1;
        }
        let index = self.shared.state().index(service);
        let fresh = |r: &Rendered| {
            r.service == service
                && r.json == json
                && r.index == index
                && r.at.elapsed() < REUSE_LISTING
        };
        let mut woken = rt::lock(&self.woken);
        if let Some(r) = woken.as_ref().filter(|r| fresh(r)) {
            return r.resp.clone();
        }
        let (index, resp) = self.render(service, json, &[]);
        *woken = Some(Rendered {
            service: service.to_string(),
            json,
            index,
            at: Instant::now(),
            resp: resp.clone(),
        });
        resp
    }

    /// The listing of `service`'s instances carrying every tag in `tags` (all when empty): a tag
    /// filter that matches none gives the listing of an empty service, index and all.
    fn render(&self, service: &str, json: bool, tags: &[Cow<'_, str>]) -> (u64, Response) {
        let (mut instances, index) = {
            let state = self.shared.state();
            (
                state.instances(service).unwrap_or_default(),
                state.index(service),
            )
        };
        instances.retain(|i| i.spec.has_tags(tags));
        let now = Instant::now();
        let listed = instances.iter().map(|i| listed(i, now));
        let resp = if json {
            Response::json(200, proto::encode_listing(service, index, listed))
        } else {
            let live = instances.iter().filter(|i| i.pickable()).count();
            let draining = instances.iter().filter(|i| i.draining).count();
            let total = instances.len();
            let mut body = format!(
                "# {service} index={index} live={live} total={total} draining={draining}\n"
            );
            body.extend(listed.map(|i| instance_text(&i)));
            Response::text(200, body)
        };
        (
            index,
            resp.with_header(proto::INDEX_HEADER, index.to_string()),
        )
    }

    /// A watch request (`GET /v1/services/{service}?index=N[&wait=30s]`), if this is one.
    fn watch_of(&self, req: &Request<'_>) -> Option<Result<WatchQuery, Response>> {
        let index = req.query("index")?;
        let Ok((Route::Service, params)) = self.router.find_path(req.method(), req.path()) else {
            return None;
        };
        let service = params.first()?.to_string();
        if let Err(denied) = self.shared.config.access.check(req, Kind::Read) {
            return Some(Err(denied));
        }
        let Ok(index) = index.parse::<u64>() else {
            return Some(Err(Response::error(
                400,
                "index must be a non-negative integer",
            )));
        };
        let wait = match req.query("wait").as_deref().map(duration::parse) {
            None => DEFAULT_WAIT,
            Some(Ok(wait)) => wait.min(MAX_WAIT),
            Some(Err(why)) => {
                return Some(Err(Response::error(400, format_args!("bad wait: {why}"))))
            }
        };
        let json = wants_json(req);
        let tags = match tag_filter(req) {
            Ok(tags) => tags.into_iter().map(Cow::into_owned).collect(),
            Err(resp) => return Some(Err(resp)),
        };
        Some(Ok(WatchQuery {
            service,
            index,
            wait,
            json,
            tags,
        }))
    }

    /// Blocks until the service's index differs from the one the watcher knows, or the wait (plus up
    /// to 1/16 of jitter, as Consul does, so watchers do not return in step) runs out.
    async fn watch(&self, w: WatchQuery) -> Response {
        let Ok(sub) = self.shared.watchers.subscribe(&w.service) else {
            return Response::error(503, format_args!("too many watchers (max {MAX_WATCHERS})"));
        };
        if self.shared.state().index(&w.service) == w.index {
            let jitter = w.wait.mul_f64(fastrand::f64() / 16.0);
            rt::timeout(w.wait + jitter, sub.changed()).await;
        }
        drop(sub);
        let tags: Vec<Cow<'_, str>> = w.tags.iter().map(|t| Cow::Borrowed(t.as_str())).collect();
        self.shared_listing(&w.service, w.json, &tags)
    }
}

/// A parsed watch request.
struct WatchQuery {
    service: String,
    index: u64,
    wait: Duration,
    json: bool,
    tags: Vec<String>,
}

impl Handler for Routes {
    async fn handle(&self, req: &Request<'_>) -> Response {
        self.answer(req).await
    }
}

fn wants_json(req: &Request<'_>) -> bool {
    req.query("format").as_deref() == Some("json")
        || req.header("accept").is_some_and(|v| {
            v.windows(16)
                .any(|w| w.eq_ignore_ascii_case(b"application/json"))
        })
}

/// The `tag=` values of a lookup or listing (an instance must carry all); no allocation when there
/// are none. More tags than an instance may carry can match nothing: 400 with the reason.
/// Every `tag=` value of the query, in order: the tags an instance must all carry.
pub(crate) fn tags_asked<'r>(req: &Request<'r>) -> Vec<Cow<'r, str>> {
    (req.query_pairs())
        .filter(|(k, _)| k == proto::TAG)
        .map(|(_, v)| v)
        .collect()
}

fn tag_filter<'r>(req: &Request<'r>) -> Result<Vec<Cow<'r, str>>, Response> {
    let tags = tags_asked(req);
    if tags.len() > MAX_TAGS {
        return Err(Response::error(400, SpecError::TooManyTags));
    }
    Ok(tags)
}

fn summary_json(s: &ServiceSummary) -> String {
    json::Object::new()
        .str("name", &s.name)
        .num("live", s.live as f64)
        .num("total", s.total as f64)
        .num("index", s.index as f64)
        .num("draining", s.draining as f64)
        .finish()
}

fn millis_since(then: Instant, now: Instant) -> u64 {
    now.saturating_duration_since(then).as_millis() as u64
}

fn millis_until(then: Instant, now: Instant) -> u64 {
    then.saturating_duration_since(now).as_millis() as u64
}

/// An instance as listings show it, its times relative to `now`.
fn listed(i: &Instance, now: Instant) -> ListedInstance<'_> {
    ListedInstance {
        addr: &i.addr,
        healthy: i.healthy(),
        draining: i.draining,
        spec: &i.spec,
        last_beat_ms_ago: millis_since(i.last_beat, now),
        expires_in_ms: millis_until(i.expires_at, now),
        ttl_ms: u64::try_from(i.ttl.as_millis()).unwrap_or(u64::MAX),
        picks: i.picks,
        last_probe: i.last_probe.as_ref().map(|p| ListedProbe {
            ok: p.ok,
            ms_ago: millis_since(p.at, now),
        }),
    }
}

/// One line of the text listing: the fields of before issue 11 first, then the spec and the drain
/// mark, so a reader of the older lines reads these unchanged.
fn instance_text(i: &ListedInstance<'_>) -> String {
    let probe = match &i.last_probe {
        Some(p) => format!("{}:{}ms-ago", if p.ok { "ok" } else { "failed" }, p.ms_ago),
        None => "none".to_string(),
    };
    format!(
        "{} {} beat={}ms-ago probe={} expires-in={}ms picks={} draining={} {}\n",
        i.addr,
        proto::health_word(i.healthy),
        i.last_beat_ms_ago,
        probe,
        i.expires_in_ms,
        i.picks,
        if i.draining { "yes" } else { "no" },
        i.spec.describe(),
    )
}

/// 404 for `addr` not registered in `service`: both raw path segments (nothing validated them),
/// echoed on one line.
fn not_registered(service: &str, addr: &str) -> Response {
    Response::error(
        404,
        format_args!(
            "{} is not registered in {}",
            printable(addr),
            printable(service)
        ),
    )
}

#[cfg(test)]
mod tests;
