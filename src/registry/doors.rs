//! The doors other tools read on the registry's own port: the subset of Consul's agent, catalog and
//! health API that Prometheus, VictoriaMetrics, python-consul, consul-template, Traefik and Fabio
//! call, and Prometheus HTTP service discovery; plus the records the DNS door answers from
//! (`impl dns::Source for Shared`). The codecs are [`crate::consul`], [`crate::promsd`] and
//! [`crate::dns`]; this file drives them over the one registry state, so an instance registered
//! through any door is one instance for all of them.
//!
//! Consul IDs: an instance registered through `PUT /v1/agent/service/register` keeps its `ID` in a
//! map here, beside the state (never locked while the state is: the state is read and released
//! first). Instances registered through mini's own routes show `HOST:PORT` as their ID. IDs are this
//! registry's own: with `--store etcd` another registry shows the instance under `HOST:PORT`.

use super::auth::Kind;
use super::state::{Change, Instance};
use super::watch;
use super::Shared;
use crate::consul::{self, render, ConsulRegistration};
use crate::http::router::{printable, Router};
use crate::http::{Request, Response};

use crate::spec::Spec;
use crate::{duration, promsd, rt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod catalog;
mod dns;
mod kv;

/// A blocking query's parameters: `wait` (Go duration; none: [`watch::DEFAULT_WAIT`], Consul's 5
/// minutes; capped at [`watch::MAX_WAIT`], Consul's 10, with Consul's jitter of up to wait/16 added
/// on top) and `index` (none: answer at once).
struct BlockingQuery {
    wait: Duration,
    index: Option<u64>,
}

impl BlockingQuery {
    fn of(req: &Request<'_>) -> Result<BlockingQuery, Response> {
        let wait = match req.query("wait") {
            None => watch::DEFAULT_WAIT,
            Some(w) => match duration::parse_go(&w) {
                Ok(w) => w.min(watch::MAX_WAIT),
                Err(why) => return Err(Response::error(400, format_args!("bad wait: {why}"))),
            },
        };
        let index = match req.query("index") {
            None => None,
            Some(i) => match i.parse::<u64>() {
                Ok(i) => Some(i),
                Err(_) => return Err(Response::error(400, "bad index: not a number")),
            },
        };
        let jitter = wait / 16;
        Ok(BlockingQuery {
            wait: wait + jitter.mul_f64(fastrand::f64()),
            index,
        })
    }
}

/// Lease of a Consul registration without a TTL check: it lives until deregistered (a century).
pub const NO_EXPIRY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The door routes, for metrics and dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Door {
    Register,
    Deregister,
    Maintenance,
    Pass,
    Warn,
    Fail,
    AgentSelf,
    Leader,
    CatalogServices,
    CatalogService,
    HealthService,
    HealthState,
    Kv,
    PromSd,
}

/// Metric names of the doors, in [`Door`]'s order; `routes::ROUTE_NAMES` counts them after mini's
/// own routes.
pub(super) const DOOR_NAMES: [&str; 14] = [
    "consulRegister",
    "consulDeregister",
    "consulMaintenance",
    "consulPass",
    "consulWarn",
    "consulFail",
    "consulAgentSelf",
    "consulLeader",
    "consulCatalogServices",
    "consulCatalogService",
    "consulHealthService",
    "consulHealthState",
    "consulKv",
    "prometheusSd",
];
const _: () = assert!(DOOR_NAMES.len() == Door::PromSd as usize + 1);

impl Door {
    fn access(self) -> Kind {
        match self {
            Door::Register
            | Door::Deregister
            | Door::Maintenance
            | Door::Pass
            | Door::Warn
            | Door::Fail => Kind::Write,
            // A KV write is refused either way; a read is a read.
            _ => Kind::Read,
        }
    }
}

/// python-consul 0.7 sends deregistration and TTL updates as `GET` (Consul once took both).
const TABLE: &[(&str, &str, Door)] = &[
    ("PUT", "/v1/agent/service/register", Door::Register),
    ("PUT", "/v1/agent/service/deregister/{}", Door::Deregister),
    ("GET", "/v1/agent/service/deregister/{}", Door::Deregister),
    ("PUT", "/v1/agent/service/maintenance/{}", Door::Maintenance),
    ("PUT", "/v1/agent/check/pass/{}", Door::Pass),
    ("GET", "/v1/agent/check/pass/{}", Door::Pass),
    ("PUT", "/v1/agent/check/warn/{}", Door::Warn),
    ("GET", "/v1/agent/check/warn/{}", Door::Warn),
    ("PUT", "/v1/agent/check/fail/{}", Door::Fail),
    ("GET", "/v1/agent/check/fail/{}", Door::Fail),
    ("GET", "/v1/agent/self", Door::AgentSelf),
    ("GET", "/v1/status/leader", Door::Leader),
    ("GET", "/v1/catalog/services", Door::CatalogServices),
    ("GET", "/v1/catalog/service/{}", Door::CatalogService),
    ("GET", "/v1/health/service/{}", Door::HealthService),
    ("GET", "/v1/health/state/{}", Door::HealthState),
    ("GET", promsd::PATH, Door::PromSd),
];

/// Path prefixes the doors own; everything else is mini's own routes.
const PREFIXES: &[&str] = &[
    "/v1/agent/",
    "/v1/catalog/",
    "/v1/health/",
    "/v1/kv/",
    "/v1/status/",
    "/v1/sd/",
];

/// Whether `path` belongs to a door.
pub(super) fn owns(path: &str) -> bool {
    PREFIXES.iter().any(|p| path.starts_with(p))
}

/// What the Consul door remembers of a registration it took.
#[derive(Debug, Clone)]
struct Known {
    service: String,
    addr: String,
    /// The lease a TTL check renews; `None` without a TTL check.
    ttl: Option<Duration>,
    /// `warn` from a TTL check: still picked, shown as `warning`.
    warning: bool,
}

/// Consul IDs, both ways.
#[derive(Debug, Default)]
struct Ids {
    by_id: HashMap<String, Known>,
    by_key: HashMap<(String, String), String>,
}

impl Ids {
    fn insert(&mut self, id: String, known: Known) {
        if let Some(old) = self.by_id.remove(&id) {
            self.by_key.remove(&(old.service, old.addr));
        }
        let key = (known.service.clone(), known.addr.clone());
        if let Some(old_id) = self.by_key.insert(key, id.clone()) {
            self.by_id.remove(&old_id);
        }
        self.by_id.insert(id, known);
    }

    fn remove(&mut self, id: &str) -> Option<Known> {
        let known = self.by_id.remove(id)?;
        self.by_key
            .remove(&(known.service.clone(), known.addr.clone()));
        Some(known)
    }
}

/// The doors' handler, owned by the registry's routes.
pub(super) struct Doors {
    shared: Arc<Shared>,
    router: Router<Door>,
    ids: Mutex<Ids>,
}

/// An instance taken out of the state (released before the Consul IDs are read): its address and
/// spec are the state's own, shared, not copied.
struct Row {
    service: String,
    addr: Arc<str>,
    spec: Arc<Spec>,
    excluded: bool,
    draining: bool,
    index: u64,
}

/// `HOST:PORT` split into its host (brackets kept off an IPv6 address) and port.
fn split(addr: &str) -> (&str, u16) {
    match addr.rsplit_once(':') {
        Some((h, p)) => (
            h.trim_start_matches('[').trim_end_matches(']'),
            p.parse().unwrap_or(0),
        ),
        None => (addr, 0),
    }
}

fn row(service: &str, i: &Instance, index: u64) -> Row {
    Row {
        service: service.to_string(),
        addr: i.addr.clone(),
        spec: i.spec.clone(),
        excluded: i.excluded,
        draining: i.draining,
        index,
    }
}

/// A reply carrying Consul's headers (an index of 0 is never sent: clients treat it as a reset).
fn consul_json(body: String, index: u64) -> Response {
    Response::json(200, body)
        .with_header(consul::INDEX_HEADER, index.max(1).to_string())
        .with_header(consul::KNOWN_LEADER_HEADER, "true")
        .with_header("X-Consul-LastContact", "0")
}

impl Doors {
    pub(super) fn new(shared: Arc<Shared>) -> Doors {
        Doors {
            shared,
            router: Router::new(TABLE),
            ids: Mutex::default(),
        }
    }

    /// Answers a request to a door; the route's index among [`DOOR_NAMES`] for metrics, if one
    /// matched.
    pub(super) async fn answer(&self, req: &Request<'_>) -> (Option<Door>, Response) {
        if req.path().starts_with(kv::PREFIX) {
            let kind = if req.method() == "GET" {
                Kind::Read
            } else {
                Kind::Write
            };
            if let Err(denied) = self.shared.config.access.check(req, kind) {
                return (Some(Door::Kv), denied);
            }
            return (Some(Door::Kv), kv::answer(req).await);
        }
        let (door, params) = match self.router.find_path(req.method(), req.path()) {
            Ok(found) => found,
            Err(miss) => return (None, miss.response(req.method(), req.path())),
        };
        if let Err(denied) = self.shared.config.access.check(req, door.access()) {
            return (Some(door), denied);
        }
        let param = params.first().map(|p| p.as_ref()).unwrap_or("");
        let resp = match door {
            Door::Register => self.register(req).await,
            Door::Deregister => self.deregister(param).await,
            Door::Maintenance => self.maintenance(req, param).await,
            Door::Pass => self.ttl_update(param, Some(false)).await,
            Door::Warn => self.ttl_update(param, Some(true)).await,
            Door::Fail => self.ttl_update(param, None).await,
            Door::AgentSelf => {
                let version = format!("mini {}", env!("CARGO_PKG_VERSION"));
                let dc = &self.shared.config.datacenter;
                consul_json(render::agent_self(dc, consul::NODE_NAME, &version), 1)
            }
            Door::Leader => {
                let mut body = String::new();
                crate::json::string(&mut body, &self.shared.config.listen);
                consul_json(body, 1)
            }
            Door::CatalogServices => self.blocking(req, None).await,
            Door::CatalogService | Door::HealthService => {
                match crate::proto::ServiceName::try_from(param) {
                    Ok(_) => self.blocking(req, Some((door, param))).await,
                    // An impossible name has no instance: an empty list, as Consul answers.
                    Err(_) => consul_json("[]".into(), 1),
                }
            }
            Door::HealthState if !render::CHECK_STATES.contains(&param) => Response::error(
                400,
                format_args!(
                    "unknown check state {} (one of {})",
                    printable(param),
                    render::CHECK_STATES.join(", ")
                ),
            ),
            Door::HealthState => self.blocking(req, Some((door, param))).await,
            // Answered above, before the table (a key may hold any number of `/`).
            Door::Kv => Response::error(404, "no such route"),
            Door::PromSd => self.prometheus(req),
        };
        (Some(door), resp)
    }

    async fn register(&self, req: &Request<'_>) -> Response {
        let reg = match ConsulRegistration::parse(req.body()) {
            Ok(reg) => reg,
            Err(e) => return Response::error(400, e),
        };
        // Without `Address`, the caller's own address, as Consul's agent does.
        let Some(host) = reg
            .address
            .clone()
            .or_else(|| req.peer().map(|p| p.ip().to_string()))
        else {
            return Response::error(400, "missing Address, and the caller's is unknown");
        };
        let addr = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{}", reg.port)
        } else {
            format!("{host}:{}", reg.port)
        };
        if let Err(e) = crate::addr::check(&addr) {
            return Response::error(400, format_args!("bad Address: {e}"));
        }
        let service = reg.name.as_str().to_string();
        let ttl = reg.ttl;
        // The same ID registered again elsewhere replaces the old instance, as in Consul.
        let previous = rt::lock(&self.ids).by_id.get(&reg.id).cloned();
        if let Some(old) = previous.filter(|o| o.service != service || o.addr != addr) {
            if let Err(e) = self.shared.deregister(&old.service, &old.addr).await {
                return Response::error(503, e);
            }
        }
        // The ID is known before the instance appears, so a watcher woken by it renders the ID.
        let known = Known {
            service: service.clone(),
            addr: addr.clone(),
            ttl,
            warning: false,
        };
        rt::lock(&self.ids).insert(reg.id.clone(), known);
        let spec = Arc::new(reg.spec);
        let lease = ttl.unwrap_or(NO_EXPIRY);
        let refused = match self
            .shared
            .register(&service, &addr, lease, Some(spec))
            .await
        {
            Ok(_) => None,
            Err(e @ super::store::StoreError::Refused(_)) => Some(Response::error(429, e)),
            Err(e) => Some(Response::error(503, e)),
        };
        if let Some(resp) = refused {
            rt::lock(&self.ids).remove(&reg.id);
            return resp;
        }
        if ttl.is_some() {
            // A TTL check starts critical until its first pass, as Consul's does.
            self.shared
                .apply(&[Change::health(service.as_str(), addr.as_str(), false)]);
        }
        crate::log::line(
            "registry",
            format_args!(
                "{service} {addr} registered through Consul's API as {}",
                reg.id
            ),
        );
        Response::json(200, String::new())
    }

    /// The instance a Consul ID names: one registered here by ID, else `HOST:PORT` in the first
    /// service by name that holds it (a lookup in each service's address index, no walk over the
    /// instances).
    fn resolve(&self, id: &str) -> Option<Known> {
        if let Some(known) = rt::lock(&self.ids).by_id.get(id).cloned() {
            return Some(known);
        }
        let service = self.shared.state().service_of(id)?.to_string();
        Some(Known {
            service,
            addr: id.to_string(),
            ttl: None,
            warning: false,
        })
    }

    fn unknown(id: &str) -> Response {
        Response::error(404, format_args!("unknown service ID {}", printable(id)))
    }

    async fn deregister(&self, id: &str) -> Response {
        let Some(known) = self.resolve(id) else {
            return Self::unknown(id);
        };
        rt::lock(&self.ids).remove(id);
        match self.shared.deregister(&known.service, &known.addr).await {
            Ok(_) => Response::json(200, String::new()),
            Err(e) => Response::error(503, e),
        }
    }

    async fn maintenance(&self, req: &Request<'_>, id: &str) -> Response {
        let enable = match req.query("enable").as_deref() {
            Some("true") => true,
            Some("false") => false,
            _ => return Response::error(400, "missing enable=true|false"),
        };
        let Some(known) = self.resolve(id) else {
            return Self::unknown(id);
        };
        match self.shared.drain(&known.service, &known.addr, enable).await {
            Ok(Some(_)) => Response::json(200, String::new()),
            Ok(None) => Self::unknown(id),
            Err(e) => Response::error(503, e),
        }
    }

    /// `pass` (`Some(false)`), `warn` (`Some(true)`) or `fail` (`None`) on `service:ID`: renews
    /// the lease a TTL check keeps, and sets health.
    async fn ttl_update(&self, check: &str, warning: Option<bool>) -> Response {
        let Some(id) = check.strip_prefix("service:") else {
            return Response::error(
                404,
                format_args!("unknown check {} (mini's are service:ID)", printable(check)),
            );
        };
        let Some(known) = self.resolve(id) else {
            return Self::unknown(id);
        };
        let Some(ttl) = known.ttl else {
            return Response::error(400, format_args!("{} has no TTL check", printable(id)));
        };
        if let Err(e) = (self.shared)
            .register(&known.service, &known.addr, ttl, None)
            .await
        {
            return Response::error(503, e);
        }
        self.shared.apply(&[Change::health(
            known.service.as_str(),
            known.addr.as_str(),
            warning.is_some(),
        )]);
        if let Some(k) = rt::lock(&self.ids).by_id.get_mut(id) {
            k.warning = warning == Some(true);
        }
        Response::json(200, String::new())
    }
}

#[cfg(test)]
mod tests;
