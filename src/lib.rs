//! `mini`: a small service registry, a demo adder service and a client.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod http;
pub mod registry;
pub mod rt;
