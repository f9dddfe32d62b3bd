//! The client: ask the registry for an adder, call it, and when that adder fails, ask again for
//! another, never retrying an address that already failed in this call.
//!
//! This is the original design's retry loop with its two holes closed: it stops when the registry says
//! there is no instance (the original looped forever on some answers), and it is bounded by
//! [`MAX_LOOKUPS`] however the registry answers.

use crate::http::client::{Client, ClientConfig, ClientError, Request};
use crate::registry::routes::NO_SERVICE_BODY;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Registry lookups one call may make before giving up.
pub const MAX_LOOKUPS: usize = 16;
/// Time to connect to the registry or an adder.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Time one HTTP exchange may take; a slower adder counts as failed and the next one is tried.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a call produced no sum.
#[derive(Debug)]
pub enum CallError {
    /// The registry has no healthy instance (or only ones that already failed in this call).
    NoInstance {
        /// The service asked for.
        service: String,
        /// Addresses that failed during this call.
        failed: Vec<String>,
    },
    /// The registry could not be reached.
    RegistryUnreachable(String, ClientError),
    /// The registry answered something unexpected.
    Registry(u16, String),
    /// An adder refused the operands (bad number, overflow): no other adder would do better.
    Rejected(String),
    /// Every lookup returned an address that had already failed.
    GaveUp {
        /// The service asked for.
        service: String,
        /// Addresses that failed during this call.
        failed: Vec<String>,
    },
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::NoInstance { service, failed } if failed.is_empty() => {
                write!(f, "no {service} instance available")
            }
            CallError::NoInstance { service, failed } => {
                write!(
                    f,
                    "no {service} instance available (failed: {})",
                    failed.join(", ")
                )
            }
            CallError::RegistryUnreachable(addr, e) => {
                write!(f, "registry {addr} unreachable: {e}")
            }
            CallError::Registry(status, body) => write!(f, "registry answered {status}: {body}"),
            CallError::Rejected(reason) => write!(f, "adder refused: {reason}"),
            CallError::GaveUp { service, failed } => write!(
                f,
                "no {service} instance answered: every one the registry offered in {MAX_LOOKUPS} lookups failed ({})",
                failed.join(", ")
            ),
        }
    }
}

impl std::error::Error for CallError {}

/// A successful call: the sum and who computed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The sum.
    pub sum: i64,
    /// The adder that answered.
    pub addr: String,
    /// Adders that failed before it, in this call.
    pub failed: Vec<String>,
}

/// Calls adders found through one registry.
///
/// ```no_run
/// mini::rt::block_on(async {
///     let caller = mini::client::Caller::new("127.0.0.1:6666", "add");
///     let answer = caller.add(5, 6).await?;
///     assert_eq!(answer.sum, 11);
///     Ok::<(), mini::client::CallError>(())
/// });
/// ```
#[derive(Debug, Clone)]
pub struct Caller {
    http: Client,
    registry: String,
    service: String,
    bearer: Option<String>,
}

/// What one attempt at an adder came to.
enum Attempt {
    Sum(i64),
    /// The instance failed (refused, timed out, 5xx, garbage): try another.
    Failed(String),
    /// The instance refused the input: stop.
    Rejected(String),
}

impl Caller {
    /// A caller for `service` through the registry at `registry` (`HOST:PORT`).
    pub fn new(registry: &str, service: &str) -> Caller {
        let http = Client::new(ClientConfig {
            connect_timeout: CONNECT_TIMEOUT,
            request_timeout: CALL_TIMEOUT,
        });
        Caller {
            http,
            registry: registry.to_string(),
            service: service.to_string(),
            bearer: None,
        }
    }

    /// Sends `token` on lookups, for a registry started with `--token-reads`.
    pub fn with_token(mut self, token: Option<&str>) -> Caller {
        self.bearer = crate::adder::bearer(token);
        self
    }

    /// Computes `a + b` on some adder, moving on from adders that fail.
    pub async fn add(&self, a: i64, b: i64) -> Result<Answer, CallError> {
        let mut failed: Vec<String> = Vec::new();
        for _ in 0..MAX_LOOKUPS {
            let addr = self.lookup(&failed).await?;
            if failed.contains(&addr) {
                continue;
            }
            match self.call(&addr, a, b).await {
                Attempt::Sum(sum) => return Ok(Answer { sum, addr, failed }),
                Attempt::Rejected(reason) => return Err(CallError::Rejected(reason)),
                Attempt::Failed(why) => {
                    crate::log::line(
                        "client",
                        format_args!("{addr} failed ({why}); asking the registry again"),
                    );
                    failed.push(addr);
                }
            }
        }
        Err(CallError::GaveUp {
            service: self.service.clone(),
            failed,
        })
    }

    async fn lookup(&self, failed: &[String]) -> Result<String, CallError> {
        let target = format!("/serviceAddr?queryParam={}", self.service);
        let headers = crate::adder::auth_headers(&self.bearer);
        let req = Request {
            method: "GET",
            addr: &self.registry,
            target: &target,
            headers: &headers,
            body: b"",
        };
        let resp = self
            .http
            .request(&req)
            .await
            .map_err(|e| CallError::RegistryUnreachable(self.registry.clone(), e))?;
        let body = resp.text();
        match resp.status {
            200 => Ok(body),
            400 if body == NO_SERVICE_BODY => Err(CallError::NoInstance {
                service: self.service.clone(),
                failed: failed.to_vec(),
            }),
            status => Err(CallError::Registry(status, body.trim_end().to_string())),
        }
    }

    async fn call(&self, addr: &str, a: i64, b: i64) -> Attempt {
        let resp = match self.http.get(addr, &format!("/Add/{a}/{b}")).await {
            Ok(resp) => resp,
            Err(e) => return Attempt::Failed(e.to_string()),
        };
        let body = resp.text();
        match resp.status {
            200 => match body.trim().parse() {
                Ok(sum) => Attempt::Sum(sum),
                Err(_) => Attempt::Failed(format!("answered a non-number: {:?}", short(&body))),
            },
            400 => Attempt::Rejected(body.trim_end().to_string()),
            status => Attempt::Failed(format!("answered {status}")),
        }
    }
}

fn short(s: &str) -> String {
    s.chars().take(60).collect()
}

/// Tally of `--repeat` calls: how many each instance answered, and the failures.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Answers per instance address.
    pub served: BTreeMap<String, u64>,
    /// Calls that got no sum.
    pub failed: u64,
}

impl Tally {
    /// Counts one call's outcome.
    pub fn count(&mut self, outcome: &Result<Answer, CallError>) {
        match outcome {
            Ok(answer) => *self.served.entry(answer.addr.clone()).or_default() += 1,
            Err(_) => self.failed += 1,
        }
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (addr, n) in &self.served {
            writeln!(f, "{addr} served {n}")?;
        }
        write!(f, "failed calls: {}", self.failed)
    }
}
