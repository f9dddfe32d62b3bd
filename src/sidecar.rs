//! `mini register`: the sidecar that keeps any process registered, whatever it is written in.
//!
//! - Without a command it beats `HOST:PORT` into every registry (the `PUT` with the instance's check,
//!   tags, metadata, weight and lease: [`crate::proto::register_target`]) until SIGTERM or SIGINT,
//!   then drains, deregisters and ends with 0.
//! - With a command it starts it as its child (stdio inherited) and registers only once `HOST:PORT`
//!   accepts TCP connections. On SIGTERM or SIGINT it drains first, then passes the signal on to the
//!   child; whenever the child exits, for any reason, it deregisters and ends with the child's status
//!   (128 + the signal if a signal killed it). A command that cannot be started ends it with 127.
//!
//! The child runs in a process group of its own, so a terminal's Ctrl-C reaches `mini register`
//! alone, which drains before passing it on (in the shared group the child would stop at once,
//! while the registries still hand it out). The price: a child in a background group that reads
//! the terminal is stopped (SIGTTIN); servers do not read it.
//!
//! The child is watched with `try_wait` every [`CHILD_POLL`] on a timer rather than a blocking
//! `wait` on another thread: the child stays unreaped until its status has been seen here, so a
//! signal passed on can never reach a recycled pid, and no thread is held for the child's life. The
//! cost is up to [`CHILD_POLL`] between the child's exit and the deregistration.

use crate::member::{self, Beat, Member, Stop, StopSignals};
use crate::proto::ServiceName;
use crate::spec::Spec;
use crate::{log, rt};
use smol::Timer;
use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Default lease each beat asks for (the registry's own default).
pub const DEFAULT_TTL: Duration = Duration::from_secs(15);
/// Exit status when the command cannot be started (the shell's "command not found").
pub const CANNOT_START: u8 = 127;
/// How often the child's exit and `HOST:PORT`'s readiness are checked.
pub const CHILD_POLL: Duration = Duration::from_millis(50);
/// Time one readiness connect may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// After this long without `HOST:PORT` accepting connections, one line says it is still waited for.
pub const SLOW_START: Duration = Duration::from_secs(10);

const ROLE: &str = "register";

/// Everything `mini register` is told on its command line.
#[derive(Debug, Clone)]
pub struct Config {
    /// The registries' `HOST:PORT`s: beats, drains and deregistrations go to each.
    pub registries: Vec<String>,
    /// The service to register under.
    pub service: ServiceName,
    /// The instance's `HOST:PORT`, as the registries hand it out.
    pub addr: String,
    /// Its check, tags, metadata and weight.
    pub spec: Spec,
    /// The lease each beat asks for.
    pub ttl: Duration,
    /// Heartbeat period.
    pub beat: Duration,
    /// The registries' token.
    pub token: Option<String>,
    /// How long to stay registered, draining, between a stop signal and passing it on.
    pub drain: Duration,
    /// The program and its arguments to run as the child; empty for none.
    pub command: Vec<String>,
}

impl Config {
    fn member(&self) -> member::Config {
        member::Config {
            registries: self.registries.clone(),
            service: self.service.clone(),
            addr: self.addr.clone(),
            token: self.token.clone(),
            every: self.beat,
            beat: Beat::Put {
                spec: self.spec.clone(),
                ttl: self.ttl,
            },
            drain: self.drain,
            role: ROLE,
        }
    }
}

/// Runs `mini register` and returns its exit status: 0 after a signal without a command, the child's
/// status with one, [`CANNOT_START`] when it cannot be started, 1 when signals cannot be caught.
pub async fn run(config: Config) -> u8 {
    let mut signals = match StopSignals::new() {
        Ok(signals) => signals,
        Err(e) => {
            log::line(ROLE, format_args!("cannot catch SIGTERM and SIGINT: {e}"));
            return 1;
        }
    };
    let who = format!("{} {}", config.service, config.addr);
    let Some((program, args)) = config.command.split_first() else {
        let mut member = Member::start(config.member(), Arc::default());
        let stop = signals.next().await;
        log::line(ROLE, format_args!("{who}: got {}; leaving", stop.name()));
        member
            .drain(async {
                signals.next().await;
            })
            .await;
        member.deregister().await;
        return 0;
    };
    let mut child = match Command::new(program).args(args).process_group(0).spawn() {
        Ok(child) => child,
        Err(e) => {
            log::line(ROLE, format_args!("cannot start {program:?}: {e}"));
            return CANNOT_START;
        }
    };
    log::line(
        ROLE,
        format_args!(
            "started {program:?} (pid {}); registering {who} once {} accepts connections",
            child.id(),
            config.addr
        ),
    );
    let first = smol::future::or(
        async {
            accepting(&config.addr).await;
            None
        },
        async { Some(next_event(&mut child, &mut signals).await) },
    )
    .await;
    match first {
        None => {}
        Some(Event::Exited(status)) => {
            log::line(
                ROLE,
                format_args!(
                    "{program:?} ended before {} accepted connections",
                    config.addr
                ),
            );
            return exit_code(program, status);
        }
        Some(Event::Signal(stop)) => {
            log::line(
                ROLE,
                format_args!(
                    "got {} before {} accepted connections; passing it on",
                    stop.name(),
                    config.addr
                ),
            );
            forward(&child, stop);
            return exit_code(program, wait_child(&mut child, &mut signals).await);
        }
    }
    let mut member = Member::start(config.member(), Arc::default());
    let status = match next_event(&mut child, &mut signals).await {
        Event::Exited(status) => status,
        Event::Signal(stop) => {
            log::line(
                ROLE,
                format_args!("{who}: got {}; draining, then passing it on", stop.name()),
            );
            member
                .drain(async {
                    next_event(&mut child, &mut signals).await;
                })
                .await;
            if !matches!(child.try_wait(), Ok(Some(_))) {
                forward(&child, stop);
            }
            wait_child(&mut child, &mut signals).await
        }
    };
    let code = exit_code(program, status);
    member.deregister().await;
    code
}

/// What happened first: the child ended, or a stop signal came.
enum Event {
    Exited(io::Result<ExitStatus>),
    Signal(Stop),
}

async fn next_event(child: &mut Child, signals: &mut StopSignals) -> Event {
    smol::future::or(async { Event::Exited(exited(child).await) }, async {
        Event::Signal(signals.next().await)
    })
    .await
}

/// The child's status once it has exited (seen every [`CHILD_POLL`]; see the module's notes).
/// Once seen, `try_wait` keeps answering the same status, so this may be awaited again.
async fn exited(child: &mut Child) -> io::Result<ExitStatus> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        Timer::after(CHILD_POLL).await;
    }
}

/// Waits for the child's exit, passing on every further stop signal (a second Ctrl-C, say).
async fn wait_child(child: &mut Child, signals: &mut StopSignals) -> io::Result<ExitStatus> {
    loop {
        match next_event(child, signals).await {
            Event::Exited(status) => return status,
            Event::Signal(stop) => forward(child, stop),
        }
    }
}

/// Sends `stop` to the child. Only called while the child is unreaped, so its pid is still its own.
fn forward(child: &Child, stop: Stop) {
    use rustix::process::{kill_process, Pid, Signal};
    let signal = match stop {
        Stop::Term => Signal::TERM,
        Stop::Int => Signal::INT,
    };
    if let Err(e) = kill_process(Pid::from_child(child), signal) {
        let pid = child.id();
        log::line(
            ROLE,
            format_args!("cannot send {} to pid {pid}: {e}", stop.name()),
        );
    }
}

/// Returns once `addr` accepts a TCP connection, trying every [`CHILD_POLL`], each attempt bounded
/// by [`CONNECT_TIMEOUT`]; says once when it is slow.
async fn accepting(addr: &str) {
    let started = Instant::now();
    let mut said = false;
    loop {
        let connect = async_net::TcpStream::connect(addr);
        if let Some(Ok(_)) = rt::timeout(CONNECT_TIMEOUT, connect).await {
            return;
        }
        if !said && started.elapsed() >= SLOW_START {
            log::line(
                ROLE,
                format_args!(
                    "{addr} does not accept connections after {}s; still waiting",
                    SLOW_START.as_secs()
                ),
            );
            said = true;
        }
        Timer::after(CHILD_POLL).await;
    }
}

/// The status `mini register` ends with for the child's: its exit code, or 128 + the signal that
/// killed it; 1 if its status could not be read.
fn exit_code(program: &str, status: io::Result<ExitStatus>) -> u8 {
    match status {
        Ok(status) => {
            log::line(ROLE, format_args!("{program:?} ended: {status}"));
            status_code(status)
        }
        Err(e) => {
            log::line(ROLE, format_args!("cannot read {program:?}'s status: {e}"));
            1
        }
    }
}

/// An exit status as a shell reports it: the code, or 128 + the signal.
///
/// ```
/// use std::os::unix::process::ExitStatusExt;
/// use std::process::ExitStatus;
/// assert_eq!(mini::sidecar::status_code(ExitStatus::from_raw(3 << 8)), 3);
/// assert_eq!(mini::sidecar::status_code(ExitStatus::from_raw(9)), 137);
/// ```
pub fn status_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(1),
        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(255),
        (None, None) => 1,
    }
}
