//! `mini watch SERVICE`: prints each instance event of a service as it happens, for people.

use crate::discovery::{diff, fetch, watch_client, Snapshot, WATCH_WAIT};
use crate::log;
use smol::Timer;
use std::time::Duration;

/// Pause before asking again after the registry failed.
pub const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Watches forever: prints the current instances, then one line per event (`+`, `-`, `~`) on stdout.
pub async fn run(registry: &str, service: &str, bearer: Option<String>) {
    let http = watch_client();
    let mut known = Snapshot::default();
    let mut after = None;
    let mut failing = false;
    loop {
        match fetch(&http, registry, service, after, WATCH_WAIT, &bearer).await {
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
                        format_args!("{e}; retrying every {}", crate::duration::show(RETRY_PAUSE)),
                    );
                    failing = true;
                }
                after = None;
                Timer::after(RETRY_PAUSE).await;
            }
        }
    }
}
