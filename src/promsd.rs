//! Prometheus HTTP service discovery (`http_sd_configs`): `GET /v1/sd/prometheus[?service=NAME][&tag=T]`
//! answers a JSON array with one target group per instance, every instance included with its health
//! as a label (Prometheus' maintainers advise relabelling over filtering at the source), `[]` when
//! there is none. The format is Prometheus' `discovery/http`: `Content-Type: application/json`, a list of
//! `{"targets":["HOST:PORT"],"labels":{...}}`, never a `null` element.

use crate::json::{self, Object};
use crate::view::{Health, InstanceView};

/// The route.
pub const PATH: &str = "/v1/sd/prometheus";
/// The label prefix of every label mini sets (Prometheus drops `__meta_*` after relabelling).
pub const PREFIX: &str = "__meta_mini_";

/// A label name from a meta key: characters outside `[a-zA-Z0-9_]` become `_`, as Prometheus'
/// own discoveries do (`strutil.SanitizeLabelName`).
pub fn sanitize(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `healthy`, `excluded` or `draining`: the health label, in mini's words.
pub fn health_label(v: &InstanceView<'_>) -> &'static str {
    match (v.draining, v.health) {
        (true, _) => "draining",
        (false, Health::Critical) => "excluded",
        (false, _) => "healthy",
    }
}

/// The target groups of `instances`.
pub fn render(instances: &[InstanceView<'_>]) -> String {
    json::array(instances.iter().map(|v| {
        let target = if v.host.contains(':') {
            format!("[{}]:{}", v.host, v.port)
        } else {
            format!("{}:{}", v.host, v.port)
        };
        let mut targets = String::new();
        json::string(&mut targets, &target);
        let mut labels = Object::new();
        labels.str("__meta_mini_service", v.service);
        labels.str("__meta_mini_health", health_label(v));
        labels.str("__meta_mini_id", v.id);
        labels.str("__meta_mini_weight", &v.weight.to_string());
        // Leading and trailing commas, as Prometheus' Consul discovery joins tags, so a relabel
        // regex `.*,v2,.*` matches a whole tag.
        let tags = if v.tags.is_empty() {
            String::new()
        } else {
            format!(",{},", v.tags.join(","))
        };
        labels.str("__meta_mini_tags", &tags);
        for (k, val) in v.meta {
            labels.str(&format!("{PREFIX}meta_{}", sanitize(k)), val);
        }
        Object::new()
            .raw("targets", &format!("[{targets}]"))
            .raw("labels", &labels.finish())
            .finish()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_group_per_instance_with_health_tags_and_meta() {
        let tags = ["v2".to_string(), "eu".to_string()];
        let meta = [("zone.name".to_string(), "a".to_string())];
        let a = InstanceView {
            id: "10.0.0.1:80",
            service: "web",
            host: "10.0.0.1",
            port: 80,
            tags: &tags,
            meta: &meta,
            weight: 2,
            health: Health::Critical,
            draining: false,
            index: 1,
        };
        let b = InstanceView {
            host: "::1",
            health: Health::Passing,
            draining: true,
            tags: &[],
            ..a
        };
        let body = render(&[a, b]);
        let v = crate::jsonread::parse(body.as_bytes()).unwrap();
        let groups = v.as_array().unwrap();
        assert_eq!(groups.len(), 2);
        let t0 = groups[0].get("targets").unwrap().as_array().unwrap();
        assert_eq!(t0[0].as_str(), Some("10.0.0.1:80"));
        let l0 = groups[0].get("labels").unwrap();
        assert_eq!(
            l0.get("__meta_mini_health").unwrap().as_str(),
            Some("excluded")
        );
        assert_eq!(
            l0.get("__meta_mini_tags").unwrap().as_str(),
            Some(",v2,eu,")
        );
        assert_eq!(
            l0.get("__meta_mini_meta_zone_name").unwrap().as_str(),
            Some("a")
        );
        let t1 = groups[1].get("targets").unwrap().as_array().unwrap();
        assert_eq!(t1[0].as_str(), Some("[::1]:80"));
        let l1 = groups[1].get("labels").unwrap();
        assert_eq!(
            l1.get("__meta_mini_health").unwrap().as_str(),
            Some("draining")
        );
        assert_eq!(l1.get("__meta_mini_tags").unwrap().as_str(), Some(""));
    }

    #[test]
    fn meta_keys_become_label_names() {
        assert_eq!(sanitize("app.kubernetes/io-name"), "app_kubernetes_io_name");
        assert_eq!(sanitize("zone_1"), "zone_1");
    }

    #[test]
    fn no_instance_is_an_empty_array() {
        assert_eq!(render(&[]), "[]");
    }
}
