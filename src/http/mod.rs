//! Our HTTP/1.1 layer on httparse: request parsing, a server and a client.

pub mod client;
