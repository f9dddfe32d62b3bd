//! The read side of the Consul door and Prometheus SD: catalog, health and state answers over the
//! state's instances, as blocking queries.

use super::{consul_json, row, split, BlockingQuery, Door, Doors, Row};
use crate::consul::{self, render};
use crate::http::Request;
use crate::http::Response;
use crate::promsd;
use crate::registry::routes::tags_asked;
use crate::registry::state::Instance;
use crate::registry::watch::ANY_SERVICE;
use crate::rt;
use crate::view::{Health, InstanceView};
use std::borrow::Cow;

impl Doors {
    /// Catalog and health answers, blocking while `index` is given and not yet passed.
    pub(super) async fn blocking(
        &self,
        req: &Request<'_>,
        service: Option<(Door, &str)>,
    ) -> Response {
        let (wait, since) = match BlockingQuery::of(req) {
            Ok(query) => (query.wait, query.index),
            Err(resp) => return resp,
        };
        // A state query is about every service; the others about the one they name.
        let scope = service
            .filter(|(door, _)| *door != Door::HealthState)
            .map(|(_, s)| s);
        let key = scope.unwrap_or(ANY_SERVICE);
        if let Some(since) = since.filter(|s| *s > 0) {
            let deadline = std::time::Instant::now() + wait;
            loop {
                let Ok(sub) = self.shared.watchers.subscribe(key) else {
                    return Response::error(503, "too many watchers");
                };
                if self.index(scope) > since {
                    break;
                }
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() || rt::timeout(left, sub.changed()).await.is_none() {
                    break;
                }
            }
        }
        match service {
            None => self.catalog_services(),
            Some((Door::CatalogService, s)) => self.service_rows(req, s, false),
            Some((Door::HealthState, s)) => self.health_state(s),
            Some((_, s)) => self.service_rows(req, s, true),
        }
    }

    fn index(&self, service: Option<&str>) -> u64 {
        let state = self.shared.state();
        match service {
            Some(s) => state.index(s),
            None => state.global_index(),
        }
    }

    fn catalog_services(&self) -> Response {
        let (mut services, index) = {
            let state = self.shared.state();
            let services: Vec<(String, Vec<String>)> = state
                .each_service_tags()
                .map(|(name, tags)| {
                    let mut tags: Vec<String> = tags.map(str::to_string).collect();
                    tags.sort_unstable();
                    (name.to_string(), tags)
                })
                .collect();
            (services, state.global_index())
        };
        services.sort_unstable();
        consul_json(render::catalog_services(&services), index)
    }

    /// Consul IDs and TTL warnings of `rows`, read after the state lock is released.
    fn ids_of(&self, rows: &[Row]) -> Vec<(String, bool)> {
        let ids = rt::lock(&self.ids);
        rows.iter()
            .map(|r| {
                let key = (r.service.clone(), r.addr.to_string());
                match ids.by_key.get(&key) {
                    Some(id) => (id.clone(), ids.by_id.get(id).is_some_and(|k| k.warning)),
                    None => (key.1, false),
                }
            })
            .collect()
    }

    fn service_rows(&self, req: &Request<'_>, service: &str, health: bool) -> Response {
        let (rows, index) = self.rows(Some(service), &tags_asked(req));
        let ids = self.ids_of(&rows);
        let mut views = views(&rows, &ids);
        if health && req.query("passing").is_some() {
            views.retain(InstanceView::passing);
        }
        views.sort_by(|a, b| a.id.cmp(b.id));
        let dc = &self.shared.config.datacenter;
        let body = if health {
            render::health_service(&views, dc, consul::NODE_NAME)
        } else {
            render::catalog_service(&views, dc, consul::NODE_NAME)
        };
        consul_json(body, index)
    }

    /// The rows of `service` (or of every service) whose instances carry `tags`, sorted by service
    /// and address, and that service's index (or the global one); read under the lock, released
    /// before IDs are looked up.
    fn rows(&self, service: Option<&str>, tags: &[Cow<'_, str>]) -> (Vec<Row>, u64) {
        let mut rows = Vec::new();
        let mut add = |name: &str, slots: &[Instance], index: u64| {
            let carrying = slots.iter().filter(|i| i.spec.has_tags(tags));
            rows.extend(carrying.map(|i| row(name, i, index)));
        };
        let index = {
            let state = self.shared.state();
            match service {
                Some(s) => match state.service_view(s) {
                    Some((slots, index)) => {
                        add(s, slots, index);
                        index
                    }
                    None => state.index(s),
                },
                None => {
                    for (name, slots, index) in state.each_service() {
                        add(name, slots, index);
                    }
                    state.global_index()
                }
            }
        };
        rows.sort_unstable_by(|a, b| (&a.service, &a.addr).cmp(&(&b.service, &b.addr)));
        (rows, index)
    }

    /// `GET /v1/health/state/STATE`: the checks of every instance in `state`, with the global index.
    fn health_state(&self, state: &str) -> Response {
        let (rows, index) = self.rows(None, &[]);
        let ids = self.ids_of(&rows);
        consul_json(
            render::health_state(&views(&rows, &ids), consul::NODE_NAME, state),
            index,
        )
    }

    pub(super) fn prometheus(&self, req: &Request<'_>) -> Response {
        let service = req.query("service");
        let (rows, _) = self.rows(service.as_deref(), &tags_asked(req));
        let ids = self.ids_of(&rows);
        Response::json(200, promsd::render(&views(&rows, &ids)))
    }
}

/// The views of `rows`, each with its Consul ID and TTL warning from `ids` ([`Doors::ids_of`]).
fn views<'a>(rows: &'a [Row], ids: &'a [(String, bool)]) -> Vec<InstanceView<'a>> {
    (rows.iter().zip(ids))
        .map(|(r, (id, warning))| view(r, id, *warning))
        .collect()
}

fn view<'a>(r: &'a Row, id: &'a str, warning: bool) -> InstanceView<'a> {
    let (host, port) = split(&r.addr);
    InstanceView {
        id,
        service: &r.service,
        host,
        port,
        tags: &r.spec.tags,
        meta: &r.spec.meta,
        weight: r.spec.weight,
        health: match (r.excluded, warning) {
            (true, _) => Health::Critical,
            (false, true) => Health::Warning,
            (false, false) => Health::Passing,
        },
        draining: r.draining,
        index: r.index,
    }
}
