//! Probe targets: many loopback ports in one process, each answering `GET /aliveCheck` with 200 on
//! our own server, all registered in one registry, so the registry's probe rounds can be costed.
//!
//! Prints `ready COUNT` on stdout once every port listens and is registered, then serves until killed.

use crate::common::BenchResult;
use argh::FromArgs;
use mini::http::client::{Client, ClientConfig, ClientRequest};
use mini::http::{server, Handler, Request, Response};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

/// Lease of the targets' registrations: the longest the registry accepts, since they never beat.
const TTL: &str = "60m";
/// Registrations in flight at once.
const REGISTER_CONCURRENCY: usize = 32;
/// Limits of the registration requests.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(5);

/// Serve /aliveCheck on COUNT loopback ports and register them all.
#[derive(FromArgs)]
#[argh(subcommand, name = "probe-target")]
pub struct Args {
    /// registry HOST:PORT
    #[argh(option)]
    registry: String,
    /// ports to serve (default 10000)
    #[argh(option, default = "10_000")]
    count: usize,
    /// service to register under (default probe)
    #[argh(option, default = "String::from(\"probe\")")]
    service: String,
}

/// Answers 200 to everything: the registry only asks `/aliveCheck`.
struct Alive;

impl Handler for Alive {
    async fn handle(&self, _req: &Request<'_>) -> Response {
        Response::text(200, "ok")
    }
}

pub fn run(args: Args) -> BenchResult<()> {
    mini::rt::block_on(async {
        let handler = Arc::new(Alive);
        let mut addrs = Vec::with_capacity(args.count);
        for _ in 0..args.count {
            let listener = async_net::TcpListener::bind("127.0.0.1:0").await?;
            addrs.push(listener.local_addr()?.to_string());
            mini::rt::spawn(server::serve(
                listener,
                handler.clone(),
                server::ServerConfig::default(),
            ))
            .detach();
        }
        register_all(&args, addrs).await?;
        println!("ready {}", args.count);
        std::io::stdout().flush()?;
        smol::future::pending::<BenchResult<()>>().await
    })
}

/// Registers every address, a few at a time, each worker on its own connection.
async fn register_all(args: &Args, addrs: Vec<String>) -> BenchResult<()> {
    let chunk = addrs.len().div_ceil(REGISTER_CONCURRENCY).max(1);
    let tasks: Vec<_> = addrs
        .chunks(chunk)
        .map(|part| {
            let part = part.to_vec();
            let (registry, service) = (args.registry.clone(), args.service.clone());
            mini::rt::spawn(async move {
                let client = Client::new(ClientConfig {
                    connect_timeout: REGISTER_TIMEOUT,
                    request_timeout: REGISTER_TIMEOUT,
                });
                for addr in part {
                    let target = format!("/v1/services/{service}/{addr}?ttl={TTL}");
                    let req = ClientRequest::new("PUT", &registry, &target);
                    match client.request(&req).await {
                        Ok(resp) if resp.status == 200 => {}
                        Ok(resp) => {
                            return Err(format!(
                                "registering {addr}: {} {}",
                                resp.status,
                                resp.text().trim()
                            ))
                        }
                        Err(e) => return Err(format!("registering {addr}: {e}")),
                    }
                }
                Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await?;
    }
    Ok(())
}
