//! Consul's JSON answers, rendered from [`Entry`] views of mini's instances.
//!
//! mini has no nodes: every instance is shown on one node named after the registry (`mini` unless
//! `--node`), whose `Address` is the instance's own host, so consumers that fall back to the node's
//! address (Prometheus does when `Service.Address` is empty) still reach the instance.
//!
//! ```
//! use mini::consul::render;
//! use mini::view::{Health, InstanceView};
//! let e = InstanceView { id: "web1", service: "web", host: "10.0.0.5", port: 80, tags: &[], meta: &[],
//!                 weight: 1, health: Health::Passing, draining: false, index: 7 };
//! let json = render::health_service(&[e], "dc1", "mini");
//! assert!(json.contains(r#""Status":"passing""#));
//! ```

use crate::json::{self, pairs, strings, Object};
use crate::view::{Health, InstanceView as Entry};

fn weights(w: u16) -> String {
    Object::new().num("Passing", w).num("Warning", 1).finish()
}

fn node(e: &Entry<'_>, dc: &str, node: &str) -> String {
    Object::new()
        .str("ID", "")
        .str("Node", node)
        .str("Address", e.host)
        .str("Datacenter", dc)
        .raw("TaggedAddresses", "{}")
        .raw("Meta", "{}")
        .finish()
}

fn service(e: &Entry<'_>) -> String {
    Object::new()
        .str("ID", e.id)
        .str("Service", e.service)
        .raw("Tags", &strings(e.tags))
        .str("Address", e.host)
        .raw("Meta", &pairs(e.meta))
        .num("Port", e.port)
        .raw("Weights", &weights(e.weight))
        .bool("EnableTagOverride", false)
        .num("CreateIndex", e.index as f64)
        .num("ModifyIndex", e.index as f64)
        .finish()
}

/// An instance's checks whose status `keep` accepts, as JSON objects: its own check, and while it
/// drains the maintenance check Consul adds (`critical`), which Fabio and Traefik read as "not
/// routable". A check not kept is not rendered.
fn check_list(e: &Entry<'_>, node: &str, keep: impl Fn(&str) -> bool) -> Vec<String> {
    let check = |id: String, name: &str, status: &'static str, output: &str| {
        Object::new()
            .str("Node", node)
            .str("CheckID", &id)
            .str("Name", name)
            .str("Status", status)
            .str("Notes", "")
            .str("Output", output)
            .str("ServiceID", e.id)
            .str("ServiceName", e.service)
            .raw("ServiceTags", &strings(e.tags))
            .str("Type", "")
            .num("CreateIndex", e.index as f64)
            .num("ModifyIndex", e.index as f64)
            .finish()
    };
    let name = format!("Service '{}' check", e.service);
    let output = match e.health {
        Health::Passing => "mini: check passing",
        Health::Warning => "mini: check warning",
        Health::Critical => "mini: check failing",
    };
    let mut list = Vec::with_capacity(2);
    if keep(e.health.word()) {
        list.push(check(
            format!("service:{}", e.id),
            &name,
            e.health.word(),
            output,
        ));
    }
    if e.draining && keep("critical") {
        list.push(check(
            format!("_service_maintenance:{}", e.id),
            "Service Maintenance Mode",
            "critical",
            "mini: draining",
        ));
    }
    list
}

fn checks(e: &Entry<'_>, node: &str) -> String {
    json::array(check_list(e, node, |_| true))
}

/// The states `GET /v1/health/state/STATE` takes: `any` or one check status.
pub const CHECK_STATES: &[&str] = &["any", "passing", "warning", "critical"];

/// `GET /v1/health/state/STATE`: every instance's checks, flat, keeping those in `state` (all of
/// them for `any`); Fabio and Traefik watch `any` to learn which instances pass.
///
/// ```
/// use mini::consul::render;
/// use mini::view::{Health, InstanceView};
/// let e = InstanceView { id: "web1", service: "web", host: "10.0.0.5", port: 80, tags: &[], meta: &[],
///                 weight: 1, health: Health::Critical, draining: false, index: 7 };
/// assert!(render::health_state(&[e], "mini", "any").contains(r#""Status":"critical""#));
/// assert_eq!(render::health_state(&[e], "mini", "passing"), "[]");
/// ```
pub fn health_state(entries: &[Entry<'_>], node_name: &str, state: &str) -> String {
    let keep = |status: &str| state == "any" || status == state;
    json::array(entries.iter().flat_map(|e| check_list(e, node_name, keep)))
}

/// `GET /v1/health/service/NAME`: `[{Node, Service, Checks}]`.
pub fn health_service(entries: &[Entry<'_>], dc: &str, node_name: &str) -> String {
    json::array(entries.iter().map(|e| {
        Object::new()
            .raw("Node", &node(e, dc, node_name))
            .raw("Service", &service(e))
            .raw("Checks", &checks(e, node_name))
            .finish()
    }))
}

/// `GET /v1/catalog/service/NAME`: the flat form.
pub fn catalog_service(entries: &[Entry<'_>], dc: &str, node_name: &str) -> String {
    json::array(entries.iter().map(|e| {
        Object::new()
            .str("ID", "")
            .str("Node", node_name)
            .str("Address", e.host)
            .str("Datacenter", dc)
            .raw("TaggedAddresses", "{}")
            .raw("NodeMeta", "{}")
            .str("ServiceKind", "")
            .str("ServiceID", e.id)
            .str("ServiceName", e.service)
            .raw("ServiceTags", &strings(e.tags))
            .str("ServiceAddress", e.host)
            .raw("ServiceWeights", &weights(e.weight))
            .raw("ServiceMeta", &pairs(e.meta))
            .num("ServicePort", e.port)
            .bool("ServiceEnableTagOverride", false)
            .num("CreateIndex", e.index as f64)
            .num("ModifyIndex", e.index as f64)
            .finish()
    }))
}

/// `GET /v1/catalog/services`: `{"name":["tag",...]}`, each service's tags merged and sorted.
pub fn catalog_services(services: &[(String, Vec<String>)]) -> String {
    let mut o = Object::new();
    for (name, tags) in services {
        o.raw(name, &strings(tags));
    }
    o.finish()
}

/// `GET /v1/agent/self`: what Prometheus and Fabio read (`Config.Datacenter`, `Config.NodeName`).
pub fn agent_self(dc: &str, node_name: &str, version: &str) -> String {
    let config = Object::new()
        .str("Datacenter", dc)
        .str("NodeName", node_name)
        .str("NodeID", "")
        .str("Version", version)
        .bool("Server", true)
        .finish();
    let member = Object::new()
        .str("Name", node_name)
        .str("Addr", "")
        .num("Port", 0)
        .num("Status", 1)
        .finish();
    Object::new()
        .raw("Config", &config)
        .raw("Member", &member)
        .raw("Meta", "{}")
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(tags: &'a [String], meta: &'a [(String, String)]) -> Entry<'a> {
        Entry {
            id: "web1",
            service: "web",
            host: "10.0.0.5",
            port: 8080,
            tags,
            meta,
            weight: 3,
            health: Health::Passing,
            draining: false,
            index: 9,
        }
    }

    #[test]
    fn health_entries_carry_node_service_and_checks() {
        let tags = ["v2".to_string()];
        let meta = [("zone".to_string(), "a".to_string())];
        let body = health_service(&[entry(&tags, &meta)], "dc1", "mini");
        let v = crate::jsonread::parse(body.as_bytes()).unwrap();
        let first = &v.as_array().unwrap()[0];
        assert_eq!(
            first.path(&["Node", "Datacenter"]).unwrap().as_str(),
            Some("dc1")
        );
        assert_eq!(
            first.path(&["Service", "ID"]).unwrap().as_str(),
            Some("web1")
        );
        assert_eq!(
            first.path(&["Service", "Port"]).unwrap().as_i64(),
            Some(8080)
        );
        assert_eq!(
            first.path(&["Service", "Meta", "zone"]).unwrap().as_str(),
            Some("a")
        );
        assert_eq!(
            first
                .path(&["Service", "Weights", "Passing"])
                .unwrap()
                .as_i64(),
            Some(3)
        );
        let checks = first.get("Checks").unwrap().as_array().unwrap();
        assert_eq!(checks.len(), 1);
        assert_eq!(checks[0].get("Status").unwrap().as_str(), Some("passing"));
        assert_eq!(
            checks[0].get("CheckID").unwrap().as_str(),
            Some("service:web1")
        );
    }

    #[test]
    fn a_draining_instance_has_the_maintenance_check_critical() {
        let e = Entry {
            draining: true,
            ..entry(&[], &[])
        };
        assert!(!e.passing());
        let body = health_service(&[e], "dc1", "mini");
        assert!(body.contains(r#""CheckID":"_service_maintenance:web1""#));
        assert!(body.contains(r#""Status":"critical""#));
    }

    #[test]
    fn health_state_lists_checks_of_every_instance_filtered_by_status() {
        let a = entry(&[], &[]);
        let b = Entry {
            id: "web2",
            health: Health::Warning,
            draining: true,
            ..entry(&[], &[])
        };
        let statuses = |state: &str| -> Vec<(String, String)> {
            let body = health_state(&[a, b], "mini", state);
            let v = crate::jsonread::parse(body.as_bytes()).unwrap();
            let list = v.as_array().unwrap();
            list.iter()
                .map(|c| {
                    let s = |k: &str| c.get(k).unwrap().as_str().unwrap().to_string();
                    (s("CheckID"), s("Status"))
                })
                .collect()
        };
        let pair = |id: &str, st: &str| (id.to_string(), st.to_string());
        assert_eq!(
            statuses("any"),
            [
                pair("service:web1", "passing"),
                pair("service:web2", "warning"),
                pair("_service_maintenance:web2", "critical"),
            ]
        );
        assert_eq!(statuses("passing"), [pair("service:web1", "passing")]);
        assert_eq!(
            statuses("critical"),
            [pair("_service_maintenance:web2", "critical")]
        );
        assert_eq!(statuses("warning"), [pair("service:web2", "warning")]);
    }

    #[test]
    fn catalog_forms_parse_as_json() {
        let body = catalog_service(&[entry(&[], &[])], "dc1", "mini");
        let v = crate::jsonread::parse(body.as_bytes()).unwrap();
        let first = &v.as_array().unwrap()[0];
        assert_eq!(
            first.get("ServiceAddress").unwrap().as_str(),
            Some("10.0.0.5")
        );
        assert_eq!(first.get("ServicePort").unwrap().as_i64(), Some(8080));
        let services = catalog_services(&[("web".into(), vec!["a".into(), "b".into()])]);
        assert_eq!(services, r#"{"web":["a","b"]}"#);
        let me = agent_self("dc2", "mini", "mini 0.1.0");
        let v = crate::jsonread::parse(me.as_bytes()).unwrap();
        assert_eq!(
            v.path(&["Config", "Datacenter"]).unwrap().as_str(),
            Some("dc2")
        );
    }
}
