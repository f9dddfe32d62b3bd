//! `mini watch SERVICE`: prints each instance event of a service as it happens, for people.

use crate::discovery::{diff, fetch, watch_client, Snapshot, WATCH_WAIT};
use crate::log;
use crate::proto::{self, ServiceName};
use smol::Timer;
use std::time::Duration;

/// How often `mini watch` asks again while the registry fails.
pub const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Everything `mini watch` is told on its command line.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The registry's `HOST:PORT`.
    pub registry: String,
    /// The service to watch.
    pub service: ServiceName,
    /// The registry's token, for a registry with `--token-reads`.
    pub token: Option<String>,
}

/// Watches forever: prints the current instances, then one line per event (`+`, `-`, `~`) on stdout.
pub async fn serve(config: Config) {
    let Config {
        registry,
        service,
        token,
    } = config;
    let bearer = proto::bearer(token.as_deref());
    let http = watch_client();
    let mut known = Snapshot::default();
    let mut after = None;
    let mut failing = false;
    loop {
        match fetch(&http, &registry, &service, after, WATCH_WAIT, &bearer).await {
            Ok(now) => {
                if failing {
                    log::line("watch", format_args!("registry {registry} is back"));
                    failing = false;
                }
                for event in diff(&known, &now) {
                    log::stamped(format_args!("{event}"));
                }
                after = Some(now.index);
                known = now;
            }
            Err(e) => {
                if !failing {
                    log::line(
                        "watch",
                        format_args!("{e}; retrying every {}", crate::duration::show(RETRY_EVERY)),
                    );
                    failing = true;
                }
                after = None;
                Timer::after(RETRY_EVERY).await;
            }
        }
    }
}
