//! `mini`: a small service registry, a demo adder service and a client, on our own HTTP/1.1 layer.
//!
//! - [`registry`]: instances register and renew leases; the registry probes them and hands out a random
//!   healthy one per lookup.
//! - [`adder`]: the demo service (`GET /Add/{a}/{b}`), which heartbeats to the registry.
//! - [`member`]: the membership loop (heartbeats, drain, deregistration) the adder and `mini register`
//!   share; [`sidecar`]: `mini register`, which keeps any process registered.
//! - [`client`]: asks the registry, calls an adder, and moves on to another when one fails.
//! - [`http`]: the HTTP/1.1 server and client they all speak through.
//! - [`proto`]: the wire protocol they share: routes, request targets, service names, the listing.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod adder;
pub mod addr;
pub mod balance;
pub mod base64;
pub mod client;
pub mod consul;
pub mod discovery;
pub mod dns;
pub mod duration;
pub mod env;
pub mod etcd;
pub mod http;
pub mod json;
pub mod jsonread;
mod log;
pub mod member;
pub mod metrics;
mod promsd;
pub mod proto;
pub mod registry;
pub mod rt;
pub mod sidecar;
pub mod spec;
pub mod view;
pub mod watcher;
