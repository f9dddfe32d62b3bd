//! etcd v3 over its JSON gateway (`/v3/...`), on our own HTTP client.
//!
//! Why the gateway and not gRPC: it is plain HTTP/1.1 and JSON, which our HTTP layer and
//! [`crate::jsonread`] already speak, so etcd support costs no new dependency. Keys and values travel
//! as base64, int64 fields as JSON strings; fields at their default value (0, false, empty) are left
//! out by the gateway, so every reader here treats a missing field as its default.
//!
//! Every call is bounded: [`CONNECT_TIMEOUT`] and [`CALL_TIMEOUT`] per endpoint, and each endpoint is
//! tried at most once per call. A transport failure or a 5xx moves on to the next endpoint and makes it
//! the preferred one, so a dead member of a cluster costs one refused connection, not every call.

use super::EtcdError;
use crate::base64;
use crate::http::client::{BodyStream, Client, ClientConfig, ClientRequest};
use crate::json;
use crate::jsonread::{self, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Time to connect to one etcd member: loopback or a LAN, so a slow connect means a dead member.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Time one call to one member may take. Long enough to ride out an etcd leader election
/// (1 s election timeout by default), short enough that a registration answers within seconds.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(2500);
/// Keys per page when reading a prefix, so no reply exceeds the HTTP client's body limit.
pub const RANGE_PAGE: usize = 500;
/// Most operations etcd accepts in one txn (its `--max-txn-ops` default); callers chunk to it.
pub const MAX_TXN_OPS: usize = 128;

/// One operation of a [`Etcd::txn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnOp<'a> {
    /// Put `key = value` attached to `lease` (0: none).
    Put {
        /// The key.
        key: &'a [u8],
        /// The value.
        value: &'a [u8],
        /// The lease, or 0.
        lease: i64,
    },
    /// Delete `key`.
    Delete {
        /// The key.
        key: &'a [u8],
    },
}

/// What a successful [`Etcd::txn`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnReply {
    /// The revision every operation of the txn was applied at.
    pub revision: i64,
    /// Keys each operation deleted, in order (0 for a put).
    pub deleted: Vec<i64>,
}

/// One key-value pair as etcd reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Kv {
    /// The key.
    pub key: Vec<u8>,
    /// The value (empty for a deletion event).
    pub value: Vec<u8>,
    /// The lease the key is attached to (0: none).
    pub lease: i64,
    /// The revision of the last change to the key.
    pub mod_revision: i64,
}

/// A client for one etcd cluster, given as its members' `host:port` client addresses.
#[derive(Debug)]
pub struct Etcd {
    endpoints: Vec<String>,
    preferred: AtomicUsize,
    http: Client,
}

/// `prefix` with its last byte incremented: etcd's `range_end` for "every key starting with prefix".
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // every key
}

impl Etcd {
    /// A client for the members at `endpoints` (`host:port` each, at least one).
    pub fn new(endpoints: Vec<String>) -> Etcd {
        Etcd {
            endpoints,
            preferred: AtomicUsize::new(0),
            http: Client::new(ClientConfig {
                connect_timeout: CONNECT_TIMEOUT,
                request_timeout: CALL_TIMEOUT,
            }),
        }
    }

    /// The members' addresses.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The endpoints in the order to try them: the preferred one first.
    fn order(&self) -> impl Iterator<Item = (usize, &str)> {
        let n = self.endpoints.len();
        let first = self.preferred.load(Ordering::Relaxed);
        (0..n).map(move |k| {
            let i = (first + k) % n.max(1);
            (i, self.endpoints.get(i).map_or("", String::as_str))
        })
    }

    /// POSTs `body` to `path` on the first member that answers; the parsed JSON reply on 200.
    pub async fn call(&self, path: &str, body: &str) -> Result<Value, EtcdError> {
        let mut last = EtcdError::Unreachable("no endpoint configured".into());
        for (i, addr) in self.order() {
            let req = post(addr, path, body.as_bytes());
            match self.http.request(&req).await {
                Ok(resp) if resp.status == 200 => {
                    self.preferred.store(i, Ordering::Relaxed);
                    return jsonread::parse(&resp.body)
                        .map_err(|e| EtcdError::BadReply(e.to_string()));
                }
                Ok(resp) => {
                    let err = EtcdError::from_reply(resp.status, &resp.body);
                    if resp.status < 500 {
                        return Err(err);
                    }
                    last = err;
                }
                Err(e) => last = EtcdError::Unreachable(format!("{addr}: {e}")),
            }
        }
        Err(last)
    }

    /// Opens a streaming POST (for `/v3/watch`) on the first member that accepts it.
    pub async fn stream(&self, path: &str, body: &str) -> Result<BodyStream, EtcdError> {
        let mut last = EtcdError::Unreachable("no endpoint configured".into());
        for (i, addr) in self.order() {
            match self.http.stream(&post(addr, path, body.as_bytes())).await {
                Ok((200, stream)) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    return Ok(stream);
                }
                Ok((status, _)) => {
                    last = EtcdError::Status {
                        status,
                        message: "watch refused".into(),
                    }
                }
                Err(e) => last = EtcdError::Unreachable(format!("{addr}: {e}")),
            }
        }
        Err(last)
    }

    /// Grants a lease of `ttl` seconds; returns its id.
    pub async fn grant(&self, ttl: i64) -> Result<i64, EtcdError> {
        let body = json::Object::new().str("TTL", &ttl.to_string()).finish();
        let v = self.call("/v3/lease/grant", &body).await?;
        match int(&v, &["ID"]) {
            0 => Err(EtcdError::BadReply("lease grant without an ID".into())),
            id => Ok(id),
        }
    }

    /// Renews lease `id` once; `Ok(None)` when etcd no longer knows it (expired or revoked).
    pub async fn keepalive(&self, id: i64) -> Result<Option<i64>, EtcdError> {
        let body = json::Object::new().str("ID", &id.to_string()).finish();
        let v = self.call("/v3/lease/keepalive", &body).await?;
        if let Some(err) = v.get("error") {
            return Err(EtcdError::BadReply(format!(
                "keepalive: {}",
                message_of(err)
            )));
        }
        let ttl = int(&v, &["result", "TTL"]);
        Ok((ttl > 0).then_some(ttl))
    }

    /// Revokes lease `id`, deleting every key attached to it. An unknown lease is not an error.
    pub async fn revoke(&self, id: i64) -> Result<(), EtcdError> {
        let body = json::Object::new().str("ID", &id.to_string()).finish();
        match self.call("/v3/lease/revoke", &body).await {
            Err(e) if e.is_lease_not_found() => Ok(()),
            other => other.map(drop),
        }
    }

    /// Puts `key = value` attached to `lease` (0: none); returns the new revision.
    pub async fn put(&self, key: &[u8], value: &[u8], lease: i64) -> Result<i64, EtcdError> {
        let v = self
            .call("/v3/kv/put", &put_body(key, value, lease))
            .await?;
        Ok(int(&v, &["header", "revision"]))
    }

    /// Deletes `key`; returns the revision and how many keys were deleted (0 or 1).
    pub async fn delete(&self, key: &[u8]) -> Result<(i64, i64), EtcdError> {
        let body = json::Object::new()
            .str("key", &base64::encode(key))
            .finish();
        let v = self.call("/v3/kv/deleterange", &body).await?;
        Ok((int(&v, &["header", "revision"]), int(&v, &["deleted"])))
    }

    /// Reads every key under `prefix`, page by page at one revision (a consistent snapshot);
    /// returns that revision and the pairs in key order.
    pub async fn range_prefix(&self, prefix: &[u8]) -> Result<(i64, Vec<Kv>), EtcdError> {
        let end = base64::encode(&prefix_end(prefix));
        let mut from = prefix.to_vec();
        let mut revision = 0;
        let mut out = Vec::new();
        loop {
            let mut body = json::Object::new();
            body.str("key", &base64::encode(&from))
                .str("range_end", &end)
                .str("limit", &RANGE_PAGE.to_string());
            if revision > 0 {
                body.str("revision", &revision.to_string());
            }
            let v = self.call("/v3/kv/range", &body.finish()).await?;
            if revision == 0 {
                revision = int(&v, &["header", "revision"]);
            }
            let kvs = kvs(v.get("kvs"))?;
            let more = v.get("more").and_then(Value::as_bool).unwrap_or(false);
            match kvs.last() {
                Some(last) if more => {
                    from = last.key.clone();
                    from.push(0); // the next key after `last`
                }
                _ => {
                    out.extend(kvs);
                    return Ok((revision, out));
                }
            }
            out.extend(kvs);
        }
    }

    /// Creates `key = value` on `lease` only if the key does not exist (a one-compare txn).
    /// Returns whether it was created, and otherwise the existing pair.
    pub async fn create_if_absent(
        &self,
        key: &[u8],
        value: &[u8],
        lease: i64,
    ) -> Result<(bool, Option<Kv>), EtcdError> {
        let k = base64::encode(key);
        let compare = json::Object::new()
            .str("key", &k)
            .str("target", "CREATE")
            .str("result", "EQUAL")
            .str("create_revision", "0")
            .finish();
        let success = json::Object::new()
            .raw("request_put", &put_body(key, value, lease))
            .finish();
        let failure = json::Object::new()
            .raw(
                "request_range",
                &json::Object::new().str("key", &k).finish(),
            )
            .finish();
        let body = json::Object::new()
            .raw("compare", &json::array([compare]))
            .raw("success", &json::array([success]))
            .raw("failure", &json::array([failure]))
            .finish();
        let v = self.call("/v3/kv/txn", &body).await?;
        if v.get("succeeded").and_then(Value::as_bool).unwrap_or(false) {
            return Ok((true, None));
        }
        let existing = v
            .get("responses")
            .and_then(Value::as_array)
            .and_then(|r| r.first())
            .and_then(|r| r.path(&["response_range", "kvs"]));
        Ok((false, kvs(existing)?.into_iter().next()))
    }

    /// Deletes `key` only if its value is `value` (a one-compare txn); returns whether it did.
    pub async fn delete_if_value(&self, key: &[u8], value: &[u8]) -> Result<bool, EtcdError> {
        let k = base64::encode(key);
        let compare = json::Object::new()
            .str("key", &k)
            .str("target", "VALUE")
            .str("result", "EQUAL")
            .str("value", &base64::encode(value))
            .finish();
        let success = json::Object::new()
            .raw(
                "request_delete_range",
                &json::Object::new().str("key", &k).finish(),
            )
            .finish();
        let body = json::Object::new()
            .raw("compare", &json::array([compare]))
            .raw("success", &json::array([success]))
            .finish();
        let v = self.call("/v3/kv/txn", &body).await?;
        Ok(v.get("succeeded").and_then(Value::as_bool).unwrap_or(false))
    }

    /// Applies `ops` atomically in one unconditional txn, at one revision. etcd refuses a txn of more
    /// than [`MAX_TXN_OPS`] operations or touching one key twice; a put on an unknown lease fails the
    /// whole txn ([`EtcdError::is_lease_not_found`]).
    pub async fn txn(&self, ops: &[TxnOp<'_>]) -> Result<TxnReply, EtcdError> {
        let v = self.call("/v3/kv/txn", &txn_body(ops)).await?;
        Ok(txn_reply(&v, ops.len()))
    }
}

/// The body of an unconditional txn of `ops`, written into one buffer: a txn of 128 puts is one
/// string, not five per operation (keys, values and leases need no JSON escaping: base64 and digits).
fn txn_body(ops: &[TxnOp<'_>]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(32 + ops.len() * 160);
    out.push_str(r#"{"success":["#);
    for (i, op) in ops.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match op {
            TxnOp::Put { key, value, lease } => {
                out.push_str(r#"{"request_put":{"key":""#);
                base64::encode_into(&mut out, key);
                out.push_str(r#"","value":""#);
                base64::encode_into(&mut out, value);
                out.push('"');
                if *lease != 0 {
                    let _ = write!(out, r#","lease":"{lease}""#);
                }
                out.push_str("}}");
            }
            TxnOp::Delete { key } => {
                out.push_str(r#"{"request_delete_range":{"key":""#);
                base64::encode_into(&mut out, key);
                out.push_str(r#""}}"#);
            }
        }
    }
    out.push_str("]}");
    out
}

/// Reads a txn reply of `n` operations; a missing response counts as nothing deleted.
fn txn_reply(v: &Value, n: usize) -> TxnReply {
    let responses = v.get("responses").and_then(Value::as_array);
    let deleted = (0..n)
        .map(|i| {
            responses
                .and_then(|rs| rs.get(i))
                .map_or(0, |r| int(r, &["response_delete_range", "deleted"]))
        })
        .collect();
    TxnReply {
        revision: int(v, &["header", "revision"]),
        deleted,
    }
}

fn post<'a>(addr: &'a str, path: &'a str, body: &'a [u8]) -> ClientRequest<'a> {
    ClientRequest {
        method: "POST",
        addr,
        target: path,
        headers: &[("Content-Type", "application/json")],
        body,
    }
}

fn put_body(key: &[u8], value: &[u8], lease: i64) -> String {
    let mut o = json::Object::new();
    o.str("key", &base64::encode(key))
        .str("value", &base64::encode(value));
    if lease != 0 {
        o.str("lease", &lease.to_string());
    }
    o.finish()
}

/// An int64 field at `path`, 0 when absent (the gateway omits default values).
pub(crate) fn int(v: &Value, path: &[&str]) -> i64 {
    v.path(path).and_then(Value::as_i64).unwrap_or(0)
}

/// The `message` (or `error`) text of a gateway error object.
pub(crate) fn message_of(v: &Value) -> String {
    v.get("message")
        .or_else(|| v.get("error"))
        .and_then(Value::as_str)
        .unwrap_or("no message")
        .chars()
        .take(200)
        .collect()
}

/// Decodes one `kv` object.
pub(crate) fn kv(v: &Value) -> Result<Kv, EtcdError> {
    let bytes = |field: &str| -> Result<Vec<u8>, EtcdError> {
        match v.get(field).and_then(Value::as_str) {
            None => Ok(Vec::new()),
            Some(text) => {
                base64::decode(text).map_err(|e| EtcdError::BadReply(format!("{field}: {e}")))
            }
        }
    };
    Ok(Kv {
        key: bytes("key")?,
        value: bytes("value")?,
        lease: int(v, &["lease"]),
        mod_revision: int(v, &["mod_revision"]),
    })
}

/// Decodes an optional array of `kv` objects.
fn kvs(v: Option<&Value>) -> Result<Vec<Kv>, EtcdError> {
    match v {
        None => Ok(Vec::new()),
        Some(v) => v
            .as_array()
            .ok_or_else(|| EtcdError::BadReply("kvs is not an array".into()))?
            .iter()
            .map(kv)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_covers_the_prefix() {
        assert_eq!(prefix_end(b"/mini/"), b"/mini0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
    }

    #[test]
    fn reads_gateway_replies_with_missing_defaults() {
        let v = jsonread::parse(br#"{"header":{"revision":"4"},"kvs":[{"key":"Zm9v","mod_revision":"2","value":"YmFy","lease":"2324035600315780616"},{"key":"eA=="}]}"#).unwrap();
        let pairs = kvs(v.get("kvs")).unwrap();
        assert_eq!(pairs[0].key, b"foo");
        assert_eq!(pairs[0].value, b"bar");
        assert_eq!(pairs[0].lease, 2324035600315780616);
        assert_eq!(
            pairs[1],
            Kv {
                key: b"x".to_vec(),
                ..Kv::default()
            }
        );
        assert_eq!(int(&v, &["header", "revision"]), 4);
        assert_eq!(int(&v, &["count"]), 0);
        let bad = jsonread::parse(br#"[{"key":"***"}]"#).unwrap();
        assert!(kvs(Some(&bad)).is_err());
        assert!(kvs(Some(&Value::Null)).is_err());
    }

    #[test]
    fn reads_txn_replies() {
        let v = jsonread::parse(br#"{"header":{"revision":"3"},"succeeded":true,"responses":[{"response_put":{"header":{"revision":"3"}}},{"response_delete_range":{"header":{"revision":"3"},"deleted":"1"}},{"response_delete_range":{"header":{"revision":"3"}}}]}"#).unwrap();
        assert_eq!(
            txn_reply(&v, 3),
            TxnReply {
                revision: 3,
                deleted: vec![0, 1, 0]
            }
        );
        assert_eq!(txn_reply(&Value::Null, 1).deleted, [0]);
    }

    #[test]
    fn encodes_txn_bodies_as_the_object_writer_would() {
        let ops = [
            TxnOp::Put {
                key: b"foo",
                value: b"bar",
                lease: 7,
            },
            TxnOp::Delete { key: b"x" },
            TxnOp::Put {
                key: b"k",
                value: b"",
                lease: 0,
            },
        ];
        let requests = [
            json::Object::new()
                .raw("request_put", &put_body(b"foo", b"bar", 7))
                .finish(),
            json::Object::new()
                .raw("request_delete_range", r#"{"key":"eA=="}"#)
                .finish(),
            json::Object::new()
                .raw("request_put", &put_body(b"k", b"", 0))
                .finish(),
        ];
        let want = json::Object::new()
            .raw("success", &json::array(requests))
            .finish();
        assert_eq!(txn_body(&ops), want);
        assert!(jsonread::parse(txn_body(&[]).as_bytes()).is_ok());
    }

    #[test]
    fn encodes_put_bodies() {
        assert_eq!(
            put_body(b"foo", b"bar", 0),
            r#"{"key":"Zm9v","value":"YmFy"}"#
        );
        assert_eq!(
            put_body(b"foo", b"", 7),
            r#"{"key":"Zm9v","value":"","lease":"7"}"#
        );
    }
}
