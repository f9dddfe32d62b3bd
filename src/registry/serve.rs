//! `mini registry`: bind `--listen`, raise the open-file limit, say where it listens, warn when it is
//! open beyond loopback, then [`super::run`].

use super::{run, Config};
use crate::{log, rt};

/// Listens on `config.listen` and runs the registry there until the process ends.
///
/// Logs `listening on ADDR` first (tests and scripts wait for that line), then the open-file limit,
/// then a warning when it listens beyond loopback without a token.
pub async fn serve(config: Config) -> std::io::Result<()> {
    let fds = rt::raise_fd_limit();
    let listener = rt::bind(&config.listen).await?;
    if let Ok(addr) = listener.local_addr() {
        log::line("registry", format_args!("listening on {addr}"));
        if let Some(fds) = fds {
            log::line("registry", format_args!("open-file limit {fds}"));
        }
        if !addr.ip().is_loopback() && config.access.token.is_none() {
            log::line(
                "registry",
                format_args!("WARNING: listening beyond loopback with no --token: anyone who reaches {addr} can register any address and steer every client"),
            );
        }
    }
    run(listener, config).await;
    Ok(())
}
