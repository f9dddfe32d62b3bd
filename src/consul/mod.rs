//! The Consul door: the subset of Consul's agent, catalog and health API that Prometheus,
//! VictoriaMetrics, python-consul, consul-template, Traefik and Fabio call, on the registry's own
//! port. The codec lives here (a registration body in, JSON answers out, no I/O); the registry's
//! routes drive it over the same state as every other door.
//!
//! | route | consumer |
//! |---|---|
//! | `PUT /v1/agent/service/register` | python-consul, any agent client |
//! | `PUT /v1/agent/service/deregister/ID` | the same |
//! | `PUT /v1/agent/service/maintenance/ID?enable=` | drain |
//! | `PUT /v1/agent/check/{pass,warn,fail}/service:ID` | TTL checks |
//! | `GET /v1/agent/self`, `GET /v1/status/leader` | Prometheus, Fabio, python-consul |
//! | `GET /v1/catalog/services`, `GET /v1/catalog/service/NAME` | Prometheus, Traefik, Fabio |
//! | `GET /v1/health/service/NAME[?passing][&tag=T]` | Prometheus, consul-template, Traefik |
//! | `GET /v1/health/state/{any,passing,warning,critical}` | Fabio, Traefik (watching checks) |
//! | `GET /v1/kv/KEY` (always absent: 404 with an index; blocking reads wait out `wait`), writes 501 | Fabio, consul-template, python-consul |

mod register;
pub mod render;

pub use register::{member, ConsulRegistration, RegisterBodyError, MAX_ID};

/// The datacenter mini reports unless `--datacenter` says otherwise (Consul's own default).
pub const DEFAULT_DATACENTER: &str = "dc1";
/// The one node every instance is shown on.
pub const NODE_NAME: &str = "mini";
/// The header of a blocking query's index (never 0 on an answer).
pub const INDEX_HEADER: &str = "X-Consul-Index";
/// The header Consul clients read to know a leader exists.
pub const KNOWN_LEADER_HEADER: &str = "X-Consul-KnownLeader";
/// The header that carries a token.
pub const TOKEN_HEADER: &str = "X-Consul-Token";
