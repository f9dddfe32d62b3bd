//! `/v1/kv/KEY`: mini keeps no key/value store, yet the tools that read Consul's KV beside its
//! catalog (Fabio's manual routes under `fabio/config`, consul-template's `key`, python-consul's
//! `kv.get`) must see "no such key" as Consul says it: a 404 carrying `X-Consul-Index`, and a
//! blocking read that waits out its `wait` (the store never changes) instead of answering at once,
//! which would turn a client's watch loop into a busy loop. Writes are refused with 501.

use super::BlockingQuery;
use crate::consul;
use crate::http::{Request, Response};

/// The route prefix; everything after it is the key (never read: every key is absent).
pub(super) const PREFIX: &str = "/v1/kv/";
/// The index of the (empty, unchanging) store.
const KV_INDEX: u64 = 1;

/// Answers a KV request, whatever its key.
pub(super) async fn answer(req: &Request<'_>) -> Response {
    if req.method() != "GET" {
        return Response::error(
            501,
            "mini keeps no key/value store: KV writes are not supported",
        )
        .with_header(consul::INDEX_HEADER, KV_INDEX.to_string());
    }
    let query = match BlockingQuery::of(req) {
        Ok(query) => query,
        Err(resp) => return resp,
    };
    if query.index.is_some_and(|i| i >= KV_INDEX) {
        smol::Timer::after(query.wait).await;
    }
    Response::error(404, "no such key (mini keeps no key/value store)")
        .with_header(consul::INDEX_HEADER, KV_INDEX.to_string())
        .with_header(consul::KNOWN_LEADER_HEADER, "true")
}
