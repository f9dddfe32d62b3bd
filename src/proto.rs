//! The wire protocol, in one place: every route's path, the request targets the roles send, the bodies
//! and header the original protocol fixes, service names, and the JSON form of a service listing.
//!
//! The registry's routes ([`crate::registry::routes`]) and the adder's route table are built from the
//! paths here; the adder, the client, discovery, `mini watch` and the prober build their requests
//! with the builders here. Nothing in this module does I/O or imports a role.
//!
//! | route | path or builder |
//! |---|---|
//! | `POST /registerList?ip=HOST:PORT[&service=NAME]` (original; keeps the spec, a new instance gets the default) | [`register_list_target`] |
//! | `GET /serviceAddr?queryParam=NAME[&tag=T]...` (original, plus tag filters) | [`service_addr_target`] |
//! | `PUT /v1/services/{service}/{addr}[?ttl=&check=&tag=&meta=K:V&weight=]` (or the same as a JSON body) | [`register_target`], [`INSTANCE_PATTERN`] |
//! | `DELETE /v1/services/{service}/{addr}` | [`instance_path`] |
//! | `POST`/`DELETE /v1/services/{service}/{addr}/drain` (drain / undo) | [`drain_path`], [`DRAIN_PATTERN`] |
//! | `GET /v1/services` | [`SERVICES`] |
//! | `GET /v1/services/{service}[?tag=T]...` (text) | [`service_path`] |
//! | `GET /v1/services/{service}?format=json` | [`listing_target`], read by [`decode_listing`] |
//! | `GET /v1/services/{service}?index=N&wait=D&format=json` | [`watch_target`] |
//! | `GET /Add/{a}/{b}` on an adder (original) | [`add_target`] |
//! | `GET /aliveCheck` on an adder (original) | [`ALIVE_CHECK`] |

use crate::spec::Spec;
use crate::{json, jsonread};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The original heartbeat route (`POST`, `?ip=HOST:PORT[&service=NAME]`).
pub const REGISTER_LIST: &str = "/registerList";
/// The original lookup route (`GET`, `?queryParam=NAME`): one healthy `HOST:PORT`, no newline.
pub const SERVICE_ADDR: &str = "/serviceAddr";
/// The list of services (`GET`).
pub const SERVICES: &str = "/v1/services";
/// Router pattern of one service's listing and watch (`GET`).
pub const SERVICE_PATTERN: &str = "/v1/services/{}";
/// Router pattern of one instance: `PUT` registers or renews, `DELETE` deregisters.
pub const INSTANCE_PATTERN: &str = "/v1/services/{}/{}";
/// Router pattern of an instance's drain mark: `POST` drains, `DELETE` undoes it.
pub const DRAIN_PATTERN: &str = "/v1/services/{}/{}/drain";
/// The query key of a tag filter on lookups and listings, and of a tag on a registration
/// (repeatable: an instance must carry every tag asked for).
pub const TAG: &str = "tag";
/// Health of a role itself (`GET`, both roles).
pub const HEALTH: &str = "/health";
/// Prometheus counters (`GET`, both roles).
pub const METRICS: &str = "/metrics";
/// The registry's live page (`GET`).
pub const PAGE: &str = "/";
/// The path every instance answers 200 on while it is alive: what the registry probes (original).
pub const ALIVE_CHECK: &str = "/aliveCheck";
/// The adder's sum with query operands (`GET /Add?a=&b=`).
pub const ADD: &str = "/Add";
/// Router pattern of the adder's original sum route (`GET /Add/{a}/{b}`).
pub const ADD_PATTERN: &str = "/Add/{}/{}";

/// The registry's address in the original design (where it listens, and where adders and clients
/// look for it by default).
pub const DEFAULT_REGISTRY: &str = "127.0.0.1:6666";
/// The header that carries a service's change index on its listings.
pub const INDEX_HEADER: &str = "X-Mini-Index";
/// The service an original heartbeat or lookup means when it names none.
pub const DEFAULT_SERVICE: &str = "add";
/// The original registry's body when it has no instance; its client compares against this spelling.
pub const NO_SERVICE_BODY: &str = "no service availble";
/// The reason of the 503 a lookup gets while the registry warms up and has no instance yet.
pub const WARMING_UP: &str = "registry just started: instances are still beating in, retry shortly";
/// Longest accepted service name, to bound memory and log lines.
pub const MAX_SERVICE_NAME: usize = 64;

/// A valid service name: 1 to [`MAX_SERVICE_NAME`] bytes of `[A-Za-z0-9._-]`, so it is safe in URLs,
/// logs and JSON without escaping. Checked once, where it enters (a flag, a constructor).
///
/// ```
/// use mini::proto::ServiceName;
/// assert_eq!(ServiceName::try_from("mul").unwrap().as_str(), "mul");
/// assert_eq!(ServiceName::default().as_str(), "add");
/// assert!(ServiceName::try_from("a b").is_err());
/// assert!(ServiceName::try_from("").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceName(String);

/// A name that [`ServiceName`] refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadServiceName;

impl fmt::Display for BadServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bad service name (1 to {MAX_SERVICE_NAME} characters of A-Z a-z 0-9 . _ -)"
        )
    }
}

impl std::error::Error for BadServiceName {}

impl ServiceName {
    /// Whether `name` is a valid service name.
    ///
    /// ```
    /// use mini::proto::ServiceName;
    /// assert!(ServiceName::is_valid("add-v2.eu_1"));
    /// assert!(!ServiceName::is_valid("a b") && !ServiceName::is_valid(""));
    /// ```
    pub fn is_valid(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= MAX_SERVICE_NAME
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is [`DEFAULT_SERVICE`], the one original requests mean when they name none.
    pub fn is_default(&self) -> bool {
        self.0 == DEFAULT_SERVICE
    }
}

impl Default for ServiceName {
    /// [`DEFAULT_SERVICE`].
    fn default() -> Self {
        ServiceName(DEFAULT_SERVICE.to_string())
    }
}

impl TryFrom<&str> for ServiceName {
    type Error = BadServiceName;
    fn try_from(name: &str) -> Result<Self, BadServiceName> {
        if ServiceName::is_valid(name) {
            Ok(ServiceName(name.to_string()))
        } else {
            Err(BadServiceName)
        }
    }
}

impl TryFrom<String> for ServiceName {
    type Error = BadServiceName;
    fn try_from(name: String) -> Result<Self, BadServiceName> {
        if ServiceName::is_valid(&name) {
            Ok(ServiceName(name))
        } else {
            Err(BadServiceName)
        }
    }
}

impl FromStr for ServiceName {
    type Err = BadServiceName;
    fn from_str(name: &str) -> Result<Self, BadServiceName> {
        ServiceName::try_from(name)
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ServiceName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The `Authorization` value that carries `token`, if any: what adders and clients send.
///
/// ```
/// assert_eq!(mini::proto::bearer(Some("t")), Some("Bearer t".to_string()));
/// assert_eq!(mini::proto::bearer(None), None);
/// ```
pub fn bearer(token: Option<&str>) -> Option<String> {
    token.map(|t| format!("Bearer {t}"))
}

/// The original heartbeat: `/registerList?ip=ADDR`, plus `&service=` when the service is not `add`.
///
/// ```
/// use mini::proto::{register_list_target, ServiceName};
/// let mul = ServiceName::try_from("mul").unwrap();
/// assert_eq!(register_list_target("h:1", &mul), "/registerList?ip=h:1&service=mul");
/// ```
pub fn register_list_target(addr: &str, service: &ServiceName) -> String {
    if service.is_default() {
        format!("{REGISTER_LIST}?ip={addr}")
    } else {
        format!("{REGISTER_LIST}?ip={addr}&service={service}")
    }
}

/// The original lookup: `/serviceAddr?queryParam=SERVICE`.
///
/// ```
/// let add = mini::proto::ServiceName::default();
/// assert_eq!(mini::proto::service_addr_target(&add), "/serviceAddr?queryParam=add");
/// ```
pub fn service_addr_target(service: &ServiceName) -> String {
    format!("{SERVICE_ADDR}?queryParam={service}")
}

/// One instance: `/v1/services/SERVICE/ADDR` (`PUT` registers, `DELETE` deregisters).
///
/// ```
/// let add = mini::proto::ServiceName::default();
/// assert_eq!(mini::proto::instance_path(&add, "127.0.0.1:1111"), "/v1/services/add/127.0.0.1:1111");
/// ```
pub fn instance_path(service: &ServiceName, addr: &str) -> String {
    format!("{SERVICES}/{service}/{addr}")
}

/// One service's listing in its text form, for people: `/v1/services/SERVICE`.
///
/// ```
/// let add = mini::proto::ServiceName::default();
/// assert_eq!(mini::proto::service_path(&add), "/v1/services/add");
/// ```
pub fn service_path(service: &ServiceName) -> String {
    format!("{SERVICES}/{service}")
}

/// One service's listing in its JSON form, the one programs read ([`decode_listing`]).
///
/// ```
/// let add = mini::proto::ServiceName::default();
/// assert_eq!(mini::proto::listing_target(&add), "/v1/services/add?format=json");
/// ```
pub fn listing_target(service: &ServiceName) -> String {
    format!("{SERVICES}/{service}?format=json")
}

/// A watch: the JSON listing once the service's index moves past `index`, or after `wait`.
///
/// ```
/// use std::time::Duration;
/// let add = mini::proto::ServiceName::default();
/// assert_eq!(
///     mini::proto::watch_target(&add, 7, Duration::from_secs(30)),
///     "/v1/services/add?index=7&wait=30000ms&format=json"
/// );
/// ```
pub fn watch_target(service: &ServiceName, index: u64, wait: Duration) -> String {
    format!(
        "{SERVICES}/{service}?index={index}&wait={}ms&format=json",
        wait.as_millis()
    )
}

/// The original sum on an adder: `/Add/A/B`.
///
/// ```
/// assert_eq!(mini::proto::add_target(5, -6), "/Add/5/-6");
/// ```
pub fn add_target(a: i64, b: i64) -> String {
    format!("{ADD}/{a}/{b}")
}

/// The word a listing uses for an instance's health: `healthy`, or `excluded` by a failed probe.
///
/// ```
/// assert_eq!(mini::proto::health_word(false), "excluded");
/// ```
pub fn health_word(healthy: bool) -> &'static str {
    if healthy {
        "healthy"
    } else {
        "excluded"
    }
}

/// One instance as a listing shows it, times relative to the moment of the listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedInstance<'a> {
    /// `HOST:PORT`.
    pub addr: &'a str,
    /// Not excluded by a failed probe (it may still be draining).
    pub healthy: bool,
    /// Marked draining: listed, never picked.
    pub draining: bool,
    /// Its check, tags, meta and weight.
    pub spec: &'a Spec,
    /// Milliseconds since its last heartbeat.
    pub last_beat_ms_ago: u64,
    /// Milliseconds until its lease runs out.
    pub expires_in_ms: u64,
    /// Its lease, in milliseconds.
    pub ttl_ms: u64,
    /// How many lookups handed it out.
    pub picks: u64,
    /// The last probe, if any ran.
    pub last_probe: Option<ListedProbe>,
}

/// The last probe of a [`ListedInstance`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedProbe {
    /// Whether it answered 200.
    pub ok: bool,
    /// Milliseconds since it finished.
    pub ms_ago: u64,
}

/// The JSON form of a service listing:
/// `{"service":S,"index":N,"instances":[{"addr":A,"health":H,"last_beat_ms_ago":N,"expires_in_ms":N,
/// "ttl_ms":N,"picks":N,"last_probe":{"ok":B,"ms_ago":N}|null,"check":C,"tags":[T,...],
/// "meta":{K:V,...},"weight":N,"draining":B},...]}`. The fields from `check` on came with issue 11,
/// after the others, so a reader of the older form reads this one unchanged.
///
/// ```
/// use mini::proto::{decode_listing, encode_listing, ListedInstance};
/// use mini::spec::Spec;
/// let spec = Spec::default();
/// let one = ListedInstance { addr: "h:1", healthy: false, draining: false, spec: &spec,
///     last_beat_ms_ago: 1, expires_in_ms: 2, ttl_ms: 3, picks: 4, last_probe: None };
/// let body = encode_listing("add", 9, [one]);
/// assert_eq!(body, r#"{"service":"add","index":9,"instances":[{"addr":"h:1","health":"excluded","last_beat_ms_ago":1,"expires_in_ms":2,"ttl_ms":3,"picks":4,"last_probe":null,"check":"http:/aliveCheck","tags":[],"meta":{},"weight":1,"draining":false}]}"#);
/// let read = decode_listing(body.as_bytes()).unwrap();
/// assert_eq!((read.index, read.instances), (9, vec![("h:1".to_string(), false)]));
/// assert_eq!(read.specs[0].spec, spec);
/// ```
pub fn encode_listing<'a>(
    service: &str,
    index: u64,
    instances: impl IntoIterator<Item = ListedInstance<'a>>,
) -> String {
    let items = instances.into_iter().map(|i| encode_instance(&i));
    json::Object::new()
        .str("service", service)
        .num("index", index as f64)
        .raw("instances", &json::array(items))
        .finish()
}

fn encode_instance(i: &ListedInstance<'_>) -> String {
    let mut o = json::Object::new();
    o.str("addr", i.addr)
        .str("health", health_word(i.healthy))
        .num("last_beat_ms_ago", i.last_beat_ms_ago as f64)
        .num("expires_in_ms", i.expires_in_ms as f64)
        .num("ttl_ms", i.ttl_ms as f64)
        .num("picks", i.picks as f64);
    match &i.last_probe {
        Some(p) => o.raw(
            "last_probe",
            &json::Object::new()
                .bool("ok", p.ok)
                .num("ms_ago", p.ms_ago as f64)
                .finish(),
        ),
        None => o.null("last_probe"),
    };
    i.spec.write_json(&mut o);
    o.bool("draining", i.draining);
    o.finish()
}

/// What a program reads from a listing: the service, its change index, and each instance's address
/// and health.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// The service listed.
    pub service: String,
    /// Its change index (also in the [`INDEX_HEADER`]).
    pub index: u64,
    /// `(HOST:PORT, healthy)`, in the registry's order.
    pub instances: Vec<(String, bool)>,
    /// What each of [`Listing::instances`] says about itself, in the same order.
    pub specs: Vec<ListedSpec>,
}

/// An instance's spec and drain mark as a listing carries them; a registry older than issue 11
/// lists neither, which reads as the default spec, not draining.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListedSpec {
    /// Its check, tags, meta and weight.
    pub spec: Spec,
    /// Marked draining: not to be called.
    pub draining: bool,
}

/// A body that is not the JSON form of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListingError(String);

impl fmt::Display for ListingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a listing: {}", self.0)
    }
}

impl std::error::Error for ListingError {}

/// Reads the JSON form of a listing (see [`encode_listing`]); fields it does not need are ignored.
pub fn decode_listing(body: &[u8]) -> Result<Listing, ListingError> {
    let bad = |why: &str| ListingError(why.to_string());
    let doc = jsonread::parse(body).map_err(|e| ListingError(e.to_string()))?;
    let service = doc
        .get("service")
        .and_then(jsonread::Value::as_str)
        .ok_or_else(|| bad("no service"))?
        .to_string();
    let index = doc
        .get("index")
        .and_then(as_u64)
        .ok_or_else(|| bad("no index"))?;
    let items = doc
        .get("instances")
        .and_then(jsonread::Value::as_array)
        .ok_or_else(|| bad("no instances"))?;
    let mut instances = Vec::with_capacity(items.len());
    let mut specs = Vec::with_capacity(items.len());
    for item in items {
        let addr = item
            .get("addr")
            .and_then(jsonread::Value::as_str)
            .ok_or_else(|| bad("an instance without addr"))?;
        let healthy = match item.get("health").and_then(jsonread::Value::as_str) {
            Some("healthy") => true,
            Some("excluded") => false,
            _ => return Err(bad("an instance without health")),
        };
        instances.push((addr.to_string(), healthy));
        specs.push(ListedSpec {
            spec: Spec::read_json(item).unwrap_or_default(),
            draining: item.get("draining").and_then(jsonread::Value::as_bool) == Some(true),
        });
    }
    Ok(Listing {
        service,
        index,
        instances,
        specs,
    })
}

fn as_u64(v: &jsonread::Value) -> Option<u64> {
    match v {
        jsonread::Value::Number(text) => text.parse().ok(),
        _ => None,
    }
}

/// A registration or renewal that says what the instance is:
/// `/v1/services/SERVICE/ADDR?ttl=T&check=C[&tag=T]...[&meta=K:V]...&weight=N`, the `PUT` that
/// `mini register` beats with. Values are percent-encoded where the query needs it (a tag may hold a
/// space, a check path a `?`); the registry decodes them back to exactly what [`Spec`] holds.
///
/// [`Spec`]: crate::spec::Spec
///
/// ```
/// use mini::proto::{register_target, ServiceName};
/// use mini::spec::{Check, Spec};
/// use std::time::Duration;
/// let web = ServiceName::try_from("web").unwrap();
/// let spec = Spec {
///     check: Check::Http("/healthz".into()),
///     tags: vec!["v2".into(), "eu west".into()],
///     meta: vec![("zone".into(), "a&b".into())],
///     weight: 5,
/// };
/// assert_eq!(
///     register_target(&web, "h:1", &spec, Duration::from_secs(15)),
///     "/v1/services/web/h:1?ttl=15s&check=http:/healthz&tag=v2&tag=eu%20west&meta=zone:a%26b&weight=5"
/// );
/// ```
pub fn register_target(
    service: &ServiceName,
    addr: &str,
    spec: &crate::spec::Spec,
    ttl: Duration,
) -> String {
    let mut target = instance_path(service, addr);
    target.push_str("?ttl=");
    target.push_str(&crate::duration::show(ttl));
    target.push_str("&check=");
    push_query_value(&mut target, &spec.check.to_string());
    for tag in &spec.tags {
        target.push_str("&tag=");
        push_query_value(&mut target, tag);
    }
    for (key, value) in &spec.meta {
        target.push_str("&meta=");
        push_query_value(&mut target, key);
        target.push(':');
        push_query_value(&mut target, value);
    }
    target.push_str("&weight=");
    target.push_str(&spec.weight.to_string());
    target
}

/// Marking an instance draining: `/v1/services/SERVICE/ADDR/drain` (`POST` drains, `DELETE` undoes).
///
/// ```
/// let web = mini::proto::ServiceName::try_from("web").unwrap();
/// assert_eq!(mini::proto::drain_path(&web, "h:1"), "/v1/services/web/h:1/drain");
/// ```
pub fn drain_path(service: &ServiceName, addr: &str) -> String {
    format!("{SERVICES}/{service}/{addr}/drain")
}

/// Appends `text` as a query value: unreserved bytes and `/` `:` as they are, every other byte as
/// `%XX` (so `&`, `=`, `+`, `#`, `%` and spaces survive the registry's decoding).
fn push_query_value(out: &mut String, text: &str) {
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/' | b':') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

#[cfg(test)]
mod tests;
