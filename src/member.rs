//! Membership: one instance kept registered at every registry of `--registry a,b`, and taken out of
//! them cleanly. The adder and `mini register` share this one loop.
//!
//! - [`Member::start`] beats to each registry at once and then every [`Config::every`]. A registry
//!   that is down or refuses is logged once per outage (once per change of outcome) and retried at
//!   the next beat; it is never fatal.
//! - [`Member::drain`] stops the beats, marks the instance draining at each registry
//!   (`POST /v1/services/S/ADDR/drain`: still listed, never picked) and waits [`Config::drain`]
//!   while the instance keeps serving, so calls already sent to it finish and no new lookup hands it
//!   out. A registry without the route (404 or 405, e.g. an original one) is logged and the drain goes
//!   on: the wait still gives in-flight calls their time.
//! - [`Member::deregister`] removes the instance at each registry (`DELETE`).
//!
//! Each drain and deregistration request is bounded by [`LEAVE_TIMEOUT`], and the registries are asked
//! in parallel, so leaving takes at most `2 × LEAVE_TIMEOUT + drain` however many registries are down.
//!
//! The beats stop when the drain starts, so no renewal can race the drain mark. The lease outlives a
//! drain shorter than the TTL (seconds against 15 s by default); a drain that outlasts it lets the
//! lease run out, which takes the instance out of the listing too, never back into the picks.

use crate::http::client::{Client, ClientConfig};
use crate::metrics::Counter;
use crate::proto::{self, bearer, ServiceName};
use crate::spec::Spec;
use crate::{duration, log, rt};
use smol::stream::StreamExt;
use smol::{Task, Timer};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Heartbeat period of the original design.
pub const DEFAULT_BEAT: Duration = Duration::from_secs(5);
/// How long an instance stays up, draining, between its stop signal and its deregistration.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(2);
/// Time one drain or deregistration request may take before the instance goes on without it.
pub const LEAVE_TIMEOUT: Duration = Duration::from_secs(1);

/// What a heartbeat sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Beat {
    /// `POST /registerList?ip=ADDR[&service=S]` ([`proto::register_list_target`]): the original
    /// heartbeat, which old registries understand too. The registry's own TTL and the default check
    /// apply. The adder beats this way.
    RegisterList,
    /// `PUT /v1/services/S/ADDR?ttl=..&check=..&tag=..` ([`proto::register_target`]): a registration
    /// that says how to check the instance, its tags, metadata, weight and lease. `mini register`
    /// beats this way.
    Put {
        /// The instance's check, tags, metadata and weight.
        spec: Spec,
        /// The lease each beat asks for.
        ttl: Duration,
    },
}

/// One instance's membership.
#[derive(Debug, Clone)]
pub struct Config {
    /// The registries' `HOST:PORT`s; each gets every beat, drain and deregistration.
    pub registries: Vec<String>,
    /// The service the instance belongs to.
    pub service: ServiceName,
    /// The instance's `HOST:PORT`, as the registries hand it out.
    pub addr: String,
    /// The registries' token, sent as `Authorization: Bearer` on every request.
    pub token: Option<String>,
    /// Heartbeat period.
    pub every: Duration,
    /// What each heartbeat sends.
    pub beat: Beat,
    /// How long [`Member::drain`] waits after marking the instance draining; zero skips the drain.
    pub drain: Duration,
    /// The role name that starts each log line (`adder`, `register`).
    pub role: &'static str,
}

/// Heartbeats by result, for a role's `/metrics`.
#[derive(Debug, Default)]
pub struct Counts {
    /// Heartbeats a registry accepted (200).
    pub ok: Counter,
    /// Heartbeats that failed or were refused.
    pub failed: Counter,
}

/// A running membership: one heartbeat task per registry until [`Member::drain`] or
/// [`Member::deregister`].
pub struct Member {
    config: Arc<Config>,
    client: Client,
    beats: Vec<Task<()>>,
}

impl Member {
    /// Starts beating to every registry of `config`, counting each result in `counts`.
    ///
    /// ```no_run
    /// use mini::member::{Beat, Config, Counts, Member};
    /// mini::rt::block_on(async {
    ///     let config = Config {
    ///         registries: vec!["127.0.0.1:6666".into()],
    ///         service: Default::default(),
    ///         addr: "127.0.0.1:8000".into(),
    ///         token: None,
    ///         every: mini::member::DEFAULT_BEAT,
    ///         beat: Beat::RegisterList,
    ///         drain: mini::member::DEFAULT_DRAIN,
    ///         role: "example",
    ///     };
    ///     let mut member = Member::start(config, Default::default());
    ///     // ... serve until told to stop ...
    ///     member.drain(std::future::pending()).await;
    ///     member.deregister().await;
    /// });
    /// ```
    pub fn start(config: Config, counts: Arc<Counts>) -> Member {
        let config = Arc::new(config);
        let client = Client::new(ClientConfig::default());
        let beats = config
            .registries
            .iter()
            .map(|registry| {
                rt::spawn(heartbeat(
                    client.clone(),
                    config.clone(),
                    registry.clone(),
                    counts.clone(),
                ))
            })
            .collect();
        Member {
            config,
            client,
            beats,
        }
    }

    /// Stops beating, marks the instance draining at every registry, then waits [`Config::drain`]
    /// or until `cut_short` completes (a second signal, the process having exited), whichever is
    /// first. With a zero drain it only stops the beats.
    pub async fn drain(&mut self, cut_short: impl Future<Output = ()>) {
        self.stop_beating().await;
        let drain = self.config.drain;
        if drain.is_zero() {
            return;
        }
        let target = proto::drain_path(&self.config.service, &self.config.addr);
        self.at_each("POST", &target, Leave::Drain).await;
        log::line(
            self.config.role,
            format_args!("{}: draining for {}", self.who(), duration::show(drain)),
        );
        smol::future::or(
            async {
                Timer::after(drain).await;
            },
            cut_short,
        )
        .await;
    }

    /// Stops beating (if [`Member::drain`] did not) and deregisters at every registry.
    pub async fn deregister(mut self) {
        self.stop_beating().await;
        let target = proto::instance_path(&self.config.service, &self.config.addr);
        self.at_each("DELETE", &target, Leave::Deregister).await;
    }

    async fn stop_beating(&mut self) {
        for beat in self.beats.drain(..) {
            beat.cancel().await;
        }
    }

    /// Sends `method target` to every registry in parallel, each bounded by [`LEAVE_TIMEOUT`].
    async fn at_each(&self, method: &'static str, target: &str, what: Leave) {
        let tasks: Vec<_> = self
            .config
            .registries
            .iter()
            .map(|registry| {
                rt::spawn(leave(
                    self.client.clone(),
                    self.config.clone(),
                    registry.clone(),
                    (method, target.to_string()),
                    what,
                ))
            })
            .collect();
        for task in tasks {
            task.await;
        }
    }

    fn who(&self) -> String {
        who(&self.config)
    }
}

/// A signal that stops an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM: what service managers and orchestrators send.
    Term,
    /// SIGINT: Ctrl-C at a terminal.
    Int,
}

impl Stop {
    /// `SIGTERM` or `SIGINT`.
    pub fn name(self) -> &'static str {
        match self {
            Stop::Term => "SIGTERM",
            Stop::Int => "SIGINT",
        }
    }
}

/// SIGTERM and SIGINT, caught from the moment this is made (before it, they end the process as
/// usual), so one that arrives while a role starts up is not lost.
pub struct StopSignals(async_signal::Signals);

impl StopSignals {
    /// Starts catching SIGTERM and SIGINT.
    pub fn new() -> std::io::Result<StopSignals> {
        use async_signal::Signal;
        async_signal::Signals::new([Signal::Term, Signal::Int]).map(StopSignals)
    }

    /// Waits for the next one.
    pub async fn next(&mut self) -> Stop {
        match self.0.next().await {
            Some(Ok(async_signal::Signal::Int)) => Stop::Int,
            _ => Stop::Term,
        }
    }
}

/// How the instance is named in log lines: `SERVICE HOST:PORT`.
fn who(config: &Config) -> String {
    format!("{} {}", config.service, config.addr)
}

/// The method and target of one heartbeat.
fn beat_request(config: &Config) -> (&'static str, String) {
    match &config.beat {
        Beat::RegisterList => (
            "POST",
            proto::register_list_target(&config.addr, &config.service),
        ),
        Beat::Put { spec, ttl } => (
            "PUT",
            proto::register_target(&config.service, &config.addr, spec, *ttl),
        ),
    }
}

/// What a beat came to, so that a log line is written only when it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Registered,
    Refused(u16),
    Unreachable,
}

/// Beats to `registry` at once and every `config.every`, forever (the task is cancelled).
async fn heartbeat(client: Client, config: Arc<Config>, registry: String, counts: Arc<Counts>) {
    let (method, target) = beat_request(&config);
    let bearer = bearer(config.token.as_deref());
    let who = who(&config);
    let mut ticks = Timer::interval(config.every);
    let mut last = None;
    loop {
        let result = client
            .call(method, &registry, &target, bearer.as_deref())
            .await;
        let outcome = match &result {
            Ok(r) if r.status == 200 => Outcome::Registered,
            Ok(r) => Outcome::Refused(r.status),
            Err(_) => Outcome::Unreachable,
        };
        let counter = if outcome == Outcome::Registered {
            &counts.ok
        } else {
            &counts.failed
        };
        counter.inc();
        if last.as_ref() != Some(&outcome) {
            let role = config.role;
            match &result {
                Ok(r) if r.status == 200 => {
                    log::line(role, format_args!("{who} registered with {registry}"))
                }
                Ok(r) => log::line(
                    role,
                    format_args!(
                        "{who}: registry {registry} refused the heartbeat: {} {}",
                        r.status,
                        r.text().trim_end()
                    ),
                ),
                Err(e) => log::line(
                    role,
                    format_args!(
                        "{who}: registry {registry} unreachable ({e}); retrying every {}",
                        duration::show(config.every)
                    ),
                ),
            }
            last = Some(outcome);
        }
        ticks.next().await;
    }
}

/// Which leaving request [`leave`] sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leave {
    Drain,
    Deregister,
}

/// Sends one drain or deregistration to `registry`, bounded by [`LEAVE_TIMEOUT`], and logs how it went.
async fn leave(
    client: Client,
    config: Arc<Config>,
    registry: String,
    (method, target): (&'static str, String),
    what: Leave,
) {
    let (role, who) = (config.role, who(&config));
    let bearer = bearer(config.token.as_deref());
    let call = client.call(method, &registry, &target, bearer.as_deref());
    let name = match what {
        Leave::Drain => "drain",
        Leave::Deregister => "deregistration",
    };
    match (rt::timeout(LEAVE_TIMEOUT, call).await, what) {
        (Some(Ok(r)), Leave::Drain) if r.status == 200 => {
            log::line(role, format_args!("{who} draining at {registry}"))
        }
        (Some(Ok(r)), Leave::Deregister) if r.status == 200 => {
            log::line(role, format_args!("{who} deregistered from {registry}"))
        }
        (Some(Ok(r)), Leave::Drain) if matches!(r.status, 404 | 405) => log::line(
            role,
            format_args!(
                "{who}: registry {registry} answered {} to the drain (no drain route, or it does not \
                 know the instance); going on",
                r.status
            ),
        ),
        (Some(Ok(r)), _) => log::line(
            role,
            format_args!(
                "{who}: {name} at {registry} answered {} {}",
                r.status,
                r.text().trim_end()
            ),
        ),
        (Some(Err(e)), _) => log::line(
            role,
            format_args!("{who}: {name} at {registry} failed: {e}"),
        ),
        (None, _) => log::line(
            role,
            format_args!(
                "{who}: {name} at {registry} timed out after {}",
                duration::show(LEAVE_TIMEOUT)
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Check;

    fn config(beat: Beat) -> Config {
        Config {
            registries: vec!["127.0.0.1:1".into()],
            service: ServiceName::try_from("web").unwrap(),
            addr: "127.0.0.1:8000".into(),
            token: None,
            every: DEFAULT_BEAT,
            beat,
            drain: DEFAULT_DRAIN,
            role: "test",
        }
    }

    #[test]
    fn each_beat_kind_sends_its_own_request() {
        assert_eq!(
            beat_request(&config(Beat::RegisterList)),
            ("POST", "/registerList?ip=127.0.0.1:8000&service=web".into())
        );
        let spec = Spec {
            check: Check::Tcp,
            ..Spec::default()
        };
        let ttl = Duration::from_secs(15);
        assert_eq!(
            beat_request(&config(Beat::Put { spec, ttl })),
            (
                "PUT",
                "/v1/services/web/127.0.0.1:8000?ttl=15s&check=tcp&weight=1".into()
            )
        );
    }

    #[test]
    fn leaving_unreachable_registries_is_bounded() {
        // Port 1 on loopback refuses at once; the drain and deregistration log and return.
        let started = std::time::Instant::now();
        rt::block_on(async {
            let mut c = config(Beat::RegisterList);
            c.registries.push("127.0.0.1:1".into());
            c.drain = Duration::from_millis(50);
            let mut member = Member::start(c, Arc::default());
            member.drain(std::future::pending()).await;
            member.deregister().await;
        });
        // A hang guard: each request is bounded by LEAVE_TIMEOUT, so this is far from any real time.
        assert!(started.elapsed() < 2 * LEAVE_TIMEOUT + Duration::from_secs(5));
    }
}
