//! A small etcd v3 client over etcd's JSON gateway: leases, kv, txn and the gateway's codec
//! ([`client`]), watches ([`watch`]) and a lease-based leader election ([`election`]).
//!
//! This module knows nothing of the registry (it never imports `crate::registry`); the registry's
//! use of etcd (key layout, the local copy fed by one watch, health keys) is
//! `crate::registry::store`.
//!
//! Nothing here holds a lock across an await, every network wait is bounded (calls by
//! [`client::CALL_TIMEOUT`], watches by the stream breaking when etcd goes away), and nothing
//! etcd sends can make it panic.

pub mod client;
pub mod election;
pub mod watch;

use crate::jsonread;
use std::fmt;

pub use client::{Etcd, Kv, TxnOp, TxnReply, MAX_TXN_OPS};

/// Why an etcd call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtcdError {
    /// No member could be reached (the last transport error).
    Unreachable(String),
    /// A member answered with an error (HTTP status and etcd's message).
    Status {
        /// The HTTP status (200 for errors inside a watch stream).
        status: u16,
        /// etcd's message.
        message: String,
    },
    /// The reply is not what the gateway sends.
    BadReply(String),
    /// A watch's start revision was compacted away; re-read from this revision or later.
    Compacted(i64),
}

impl EtcdError {
    /// Whether etcd refused a write because its lease is gone (expired or revoked): the caller needs
    /// a new lease.
    pub fn is_lease_not_found(&self) -> bool {
        matches!(self, EtcdError::Status { message, .. } if message.contains("lease not found"))
    }

    /// The error for a non-200 reply: etcd's own message when the body has one.
    pub(crate) fn from_reply(status: u16, body: &[u8]) -> EtcdError {
        let message = jsonread::parse(body)
            .map(|v| client::message_of(&v))
            .unwrap_or_else(|_| String::from_utf8_lossy(body).chars().take(200).collect());
        EtcdError::Status { status, message }
    }
}

impl fmt::Display for EtcdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EtcdError::Unreachable(why) => write!(f, "etcd unreachable: {why}"),
            EtcdError::Status { status, message } => write!(f, "etcd answered {status}: {message}"),
            EtcdError::BadReply(why) => write!(f, "unexpected reply from etcd: {why}"),
            EtcdError::Compacted(rev) => write!(f, "etcd compacted history up to revision {rev}"),
        }
    }
}

impl std::error::Error for EtcdError {}

/// Parses `--etcd` / `MINI_ETCD`: comma-separated `http://host:port` URLs (or bare `host:port`),
/// into `host:port` addresses. `https` is refused: our HTTP client speaks plain HTTP only.
///
/// ```
/// let eps = mini::etcd::parse_endpoints("http://127.0.0.1:2379, 127.0.0.1:22379/").unwrap();
/// assert_eq!(eps, ["127.0.0.1:2379", "127.0.0.1:22379"]);
/// assert!(mini::etcd::parse_endpoints("https://h:1").is_err());
/// ```
pub fn parse_endpoints(text: &str) -> Result<Vec<String>, String> {
    use crate::addr::{parse_list, ListError, ListForm};
    parse_list(text, ListForm::HttpUrls).map_err(|e| match e {
        ListError::Entry(part, why) => format!("{part}: {why}"),
        ListError::Empty => "no etcd endpoint given".into(),
    })
}
