//! The view of one instance that the doors (Consul's API, Prometheus discovery, DNS) render: what
//! they show, borrowed from the registry's state while its lock is held, with no I/O.
//!
//! ```
//! use mini::view::{Health, InstanceView};
//! let v = InstanceView { id: "127.0.0.1:1111", service: "add", host: "127.0.0.1", port: 1111,
//!                        tags: &[], meta: &[], weight: 1, health: Health::Passing, draining: false,
//!                        index: 3 };
//! assert!(v.passing());
//! ```

/// The state of an instance's check, in Consul's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// The probe passes (or there is none).
    Passing,
    /// A TTL check reported `warn`.
    Warning,
    /// The probe failed, or a TTL check failed or lapsed.
    Critical,
}

impl Health {
    /// `passing`, `warning` or `critical`.
    ///
    /// ```
    /// assert_eq!(mini::view::Health::Warning.word(), "warning");
    /// ```
    pub fn word(self) -> &'static str {
        match self {
            Health::Passing => "passing",
            Health::Warning => "warning",
            Health::Critical => "critical",
        }
    }
}

/// One instance as a door shows it.
#[derive(Debug, Clone, Copy)]
pub struct InstanceView<'a> {
    /// The Consul service ID (`HOST:PORT` for instances registered through mini's own routes).
    pub id: &'a str,
    /// The service name.
    pub service: &'a str,
    /// The instance's host.
    pub host: &'a str,
    /// The instance's port.
    pub port: u16,
    /// Tags.
    pub tags: &'a [String],
    /// Metadata.
    pub meta: &'a [(String, String)],
    /// `Weights.Passing`.
    pub weight: u16,
    /// The check's state.
    pub health: Health,
    /// In maintenance (mini's drain): a critical `_service_maintenance:ID` check is added.
    pub draining: bool,
    /// The service's change index, as `CreateIndex`/`ModifyIndex`.
    pub index: u64,
}

impl InstanceView<'_> {
    /// Whether every check passes (`?passing`): a passing probe and no maintenance.
    pub fn passing(&self) -> bool {
        self.health == Health::Passing && !self.draining
    }
}
