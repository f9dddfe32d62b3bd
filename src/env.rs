//! The environment variables `mini` reads, all in this one place: each is the fallback of a flag
//! (`MINI_TOKEN` of `--token`, `MINI_ETCD` of `--etcd`), or the only knob there is (`MINI_THREADS`).

/// The registry's token when `--token` is not given.
pub const TOKEN: &str = "MINI_TOKEN";
/// The etcd members when `--etcd` is not given.
pub const ETCD: &str = "MINI_ETCD";
/// The number of executor threads (default: one per core).
pub const THREADS: &str = "MINI_THREADS";
/// The etcd members when neither `--etcd` nor `MINI_ETCD` says: etcd's own default client URL.
pub const DEFAULT_ETCD: &str = "http://127.0.0.1:2379";

/// The token from the flag, else from `MINI_TOKEN`; an empty one is none.
pub fn token(flag: Option<String>) -> Option<String> {
    flag.or_else(|| var(TOKEN)).filter(|t| !t.is_empty())
}

/// The etcd members from the flag, else from `MINI_ETCD`, else [`DEFAULT_ETCD`].
pub fn etcd(flag: Option<String>) -> String {
    flag.or_else(|| var(ETCD))
        .unwrap_or_else(|| DEFAULT_ETCD.to_string())
}

/// `MINI_THREADS` when it is a positive number.
pub fn threads() -> Option<usize> {
    var(THREADS).and_then(|v| v.parse().ok()).filter(|n| *n > 0)
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}
