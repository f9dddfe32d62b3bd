//! The registry's HTTP routes: the original wire routes, byte for byte, and our own `/v1` API.
//!
//! | route | what |
//! |---|---|
//! | `POST /registerList?ip=HOST:PORT[&service=NAME]` | register or renew (original wire route) |
//! | `GET /serviceAddr?queryParam=NAME` | one random healthy `HOST:PORT` (original wire route) |
//! | `PUT /v1/services/{service}/{addr}[?ttl=15s]` | register or renew |
//! | `DELETE /v1/services/{service}/{addr}` | deregister |
//! | `GET /v1/services` | services with live/total counts |
//! | `GET /v1/services/{service}` | instances with health, beat, probe and lease |
//! | `GET /health` | 200 while the registry runs (`degraded: ...` while etcd is unreachable) |
//!
//! Listings are plain text unless the caller asks for JSON (`Accept: application/json` or
//! `?format=json`).

use super::state::{Instance, RegisterError, Registered, ServiceSummary};
use super::store::StoreError;
use super::{Shared, MAX_TTL};
use crate::http::router::Router;
use crate::http::{Handler, Request, Response};
use crate::{addr, duration, json, log};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The service an original heartbeat or lookup means when it names none.
pub const DEFAULT_SERVICE: &str = "add";
/// The original registry's body when it has no instance; its client compares against this spelling.
pub const NO_SERVICE_BODY: &str = "no service availble";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    RegisterList,
    ServiceAddr,
    Put,
    Delete,
    Services,
    Service,
    Health,
}

const TABLE: &[(&str, &str, Route)] = &[
    ("POST", "/registerList", Route::RegisterList),
    ("GET", "/serviceAddr", Route::ServiceAddr),
    ("PUT", "/v1/services/{}/{}", Route::Put),
    ("DELETE", "/v1/services/{}/{}", Route::Delete),
    ("GET", "/v1/services", Route::Services),
    ("GET", "/v1/services/{}", Route::Service),
    ("GET", "/health", Route::Health),
];

/// The registry's request handler.
pub struct Routes {
    shared: Arc<Shared>,
    router: Router<Route>,
}

impl Routes {
    /// Routes over shared state.
    pub fn new(shared: Arc<Shared>) -> Routes {
        Routes {
            shared,
            router: Router::new(TABLE),
        }
    }

    /// Answers one request. Reads are a short critical section on the local state; writes may wait
    /// on the store (etcd).
    pub async fn answer(&self, req: &Request) -> Response {
        let (route, params) = match self.router.find(&req.method, &req.segments) {
            Ok(found) => found,
            Err(miss) => return miss.response(&req.method, req.path()),
        };
        match (route, params.as_slice()) {
            (Route::RegisterList, _) => self.register_list(req).await,
            (Route::ServiceAddr, _) => self.service_addr(req),
            (Route::Put, [service, addr]) => self.put(req, service, addr).await,
            (Route::Delete, [service, addr]) => self.delete(service, addr).await,
            (Route::Services, _) => self.services(req),
            (Route::Service, [service]) => self.service(req, service),
            (Route::Health, _) => self.health(),
            _ => Response::error(500, "route table and handlers disagree"),
        }
    }

    async fn register_list(&self, req: &Request) -> Response {
        let Some(ip) = req.query("ip") else {
            return Response::error(400, "missing ip=HOST:PORT");
        };
        let service = req.query("service").unwrap_or(DEFAULT_SERVICE);
        match self.register(service, ip, self.shared.config.ttl).await {
            Ok(()) => Response::text(200, format!("{ip} registered")),
            Err(resp) => resp,
        }
    }

    fn service_addr(&self, req: &Request) -> Response {
        let Some(service) = req.query("queryParam") else {
            return Response::error(400, "missing queryParam=SERVICE");
        };
        let picked = self.shared.state().pick(service, &mut fastrand::Rng::new());
        match picked {
            Some(addr) => Response::text(200, &*addr),
            None => Response::text(400, NO_SERVICE_BODY),
        }
    }

    async fn put(&self, req: &Request, service: &str, addr: &str) -> Response {
        let ttl = match req.query("ttl").map(duration::parse) {
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
        match self.register(service, addr, ttl).await {
            Ok(()) => Response::text(200, format!("{addr} registered in {service}\n")),
            Err(resp) => resp,
        }
    }

    /// Validates and registers; the error is the reply to send.
    async fn register(&self, service: &str, addr: &str, ttl: Duration) -> Result<(), Response> {
        addr::check(addr).map_err(|e| Response::error(400, format_args!("bad address: {e}")))?;
        let result = (self.shared.store)
            .register(&self.shared, service, addr, ttl)
            .await;
        match result {
            Ok(Registered::New) => {
                log::line(
                    "registry",
                    format_args!("{service} {addr} registered (ttl {})", duration::show(ttl)),
                );
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
        match (self.shared.store)
            .deregister(&self.shared, service, addr)
            .await
        {
            Ok(true) => {
                log::line("registry", format_args!("{service} {addr} deregistered"));
                Response::text(200, format!("{addr} deregistered from {service}\n"))
            }
            Ok(false) => {
                Response::error(404, format_args!("{addr} is not registered in {service}"))
            }
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

    fn services(&self, req: &Request) -> Response {
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
                "{} live={} total={} index={}\n",
                s.name, s.live, s.total, s.index
            ));
        }
        if let Some(why) = self.shared.store.degraded() {
            body.push_str(&format!("degraded: {why}\n"));
        }
        Response::text(200, body)
    }

    fn service(&self, req: &Request, service: &str) -> Response {
        let (instances, index) = {
            let state = self.shared.state();
            (
                state.instances(service).unwrap_or_default(),
                state.index(service),
            )
        };
        let now = Instant::now();
        let resp = if wants_json(req) {
            let items = instances.iter().map(|i| instance_json(i, now));
            let body = json::Object::new()
                .str("service", service)
                .num("index", index as f64)
                .raw("instances", &json::array(items))
                .finish();
            Response::json(200, body)
        } else {
            let body: String = instances.iter().map(|i| instance_text(i, now)).collect();
            Response::text(200, body)
        };
        resp.with_header("X-Mini-Index", index.to_string())
    }
}

impl Handler for Routes {
    async fn handle(&self, req: Request) -> Response {
        self.answer(&req).await
    }
}

fn wants_json(req: &Request) -> bool {
    req.query("format") == Some("json")
        || req.header("accept").is_some_and(|v| {
            v.windows(16)
                .any(|w| w.eq_ignore_ascii_case(b"application/json"))
        })
}

fn summary_json(s: &ServiceSummary) -> String {
    json::Object::new()
        .str("name", &s.name)
        .num("live", s.live as f64)
        .num("total", s.total as f64)
        .num("index", s.index as f64)
        .finish()
}

fn millis_since(then: Instant, now: Instant) -> u64 {
    now.saturating_duration_since(then).as_millis() as u64
}

fn millis_until(then: Instant, now: Instant) -> u64 {
    then.saturating_duration_since(now).as_millis() as u64
}

fn instance_json(i: &Instance, now: Instant) -> String {
    let mut o = json::Object::new();
    o.str("addr", &i.addr)
        .str("health", health(i))
        .num("last_beat_ms_ago", millis_since(i.last_beat, now) as f64)
        .num("expires_in_ms", millis_until(i.expires_at, now) as f64)
        .num("ttl_ms", i.ttl.as_millis() as f64)
        .num("picks", i.picks as f64);
    match &i.last_probe {
        Some(p) => o.raw(
            "last_probe",
            &json::Object::new()
                .bool("ok", p.ok)
                .num("ms_ago", millis_since(p.at, now) as f64)
                .finish(),
        ),
        None => o.null("last_probe"),
    };
    o.finish()
}

fn instance_text(i: &Instance, now: Instant) -> String {
    let probe = match &i.last_probe {
        Some(p) => format!(
            "{}:{}ms-ago",
            if p.ok { "ok" } else { "failed" },
            millis_since(p.at, now)
        ),
        None => "none".to_string(),
    };
    format!(
        "{} {} beat={}ms-ago probe={} expires-in={}ms picks={}\n",
        i.addr,
        health(i),
        millis_since(i.last_beat, now),
        probe,
        millis_until(i.expires_at, now),
        i.picks
    )
}

fn health(i: &Instance) -> &'static str {
    if i.healthy() {
        "healthy"
    } else {
        "excluded"
    }
}
