//! Instance addresses: `HOST:PORT`, checked before anything is stored or probed.
//!
//! The original registry stored whatever `ip=` said; a registry that probes and hands out addresses must
//! at least know they are addresses, so junk never reaches a client or the prober.

use std::fmt;
use std::net::Ipv6Addr;

/// Longest accepted host name (the DNS limit).
pub const MAX_HOST_LEN: usize = 253;

/// Why an address was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrError {
    /// No `:PORT` part.
    MissingPort,
    /// The port is not a number in 1..=65535.
    BadPort,
    /// The host is empty, too long, or has characters no host name or IP literal has.
    BadHost,
}

impl fmt::Display for AddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddrError::MissingPort => "address must be HOST:PORT",
            AddrError::BadPort => "port must be a number from 1 to 65535",
            AddrError::BadHost => "host must be a host name, an IPv4 address or [IPv6]",
        })
    }
}

impl std::error::Error for AddrError {}

/// Checks `HOST:PORT`.
///
/// ```
/// use mini::addr::check;
/// assert!(check("127.0.0.1:1111").is_ok());
/// assert!(check("[::1]:80").is_ok());
/// assert!(check("127.0.0.1:0").is_err());
/// assert!(check("127.0.0.1").is_err());
/// ```
pub fn check(addr: &str) -> Result<(), AddrError> {
    let (host, port) = addr.rsplit_once(':').ok_or(AddrError::MissingPort)?;
    let port_ok = !port.is_empty()
        && port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u32>().is_ok_and(|p| (1..=65535).contains(&p));
    if !port_ok {
        return Err(AddrError::BadPort);
    }
    if valid_host(host) {
        Ok(())
    } else {
        Err(AddrError::BadHost)
    }
}

/// How [`parse_list`] reads the entries of a comma-separated list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListForm {
    /// Every entry is a `HOST:PORT` (`--registry a,b`); an empty entry is a bad one.
    Addrs,
    /// Entries are `http://HOST:PORT[/]` or `HOST:PORT` (`--etcd`); empty ones are skipped and
    /// `https://` is refused (our HTTP client speaks plain HTTP only).
    HttpUrls,
}

/// What is wrong with a list of addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListError {
    /// This entry (trimmed) is not acceptable, for this reason.
    Entry(String, String),
    /// There is no entry at all.
    Empty,
}

/// Parses a comma-separated list of addresses into checked `HOST:PORT`s, spaces around entries
/// allowed: the one parser of `--registry` and `--etcd` lists.
///
/// ```
/// use mini::addr::{parse_list, ListError, ListForm};
/// assert_eq!(parse_list("a:1, b:2", ListForm::Addrs).unwrap(), ["a:1", "b:2"]);
/// assert_eq!(parse_list("a:1,,b:2", ListForm::Addrs), Err(ListError::Entry("".into(), "address must be HOST:PORT".into())));
/// assert_eq!(parse_list("http://a:1/,,b:2", ListForm::HttpUrls).unwrap(), ["a:1", "b:2"]);
/// assert_eq!(parse_list(" ", ListForm::HttpUrls), Err(ListError::Empty));
/// ```
pub fn parse_list(text: &str, form: ListForm) -> Result<Vec<String>, ListError> {
    let mut out = Vec::new();
    for entry in text.split(',').map(str::trim) {
        let addr = match form {
            ListForm::Addrs => entry,
            ListForm::HttpUrls if entry.is_empty() => continue,
            ListForm::HttpUrls if entry.starts_with("https://") => {
                let why = "https is not supported, use http://";
                return Err(ListError::Entry(entry.to_string(), why.to_string()));
            }
            ListForm::HttpUrls => entry
                .strip_prefix("http://")
                .unwrap_or(entry)
                .trim_end_matches('/'),
        };
        check(addr).map_err(|e| ListError::Entry(entry.to_string(), e.to_string()))?;
        out.push(addr.to_string());
    }
    if out.is_empty() {
        return Err(ListError::Empty);
    }
    Ok(out)
}

fn valid_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.len() <= MAX_HOST_LEN
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_an_address() {
        for bad in [
            "",
            ":80",
            "host:",
            "host:65536",
            "host:-1",
            "host:+80",
            "a b:80",
            "h\0:80",
            "[zz]:80",
            "::1:80",
            "host:80/x",
            "127.0.0.1:1111\r\nX: y",
        ] {
            assert!(check(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn accepts_names_ipv4_and_ipv6() {
        for good in [
            "localhost:1",
            "adder-1.internal:65535",
            "10.0.0.1:8080",
            "[fe80::1]:9",
        ] {
            assert_eq!(check(good), Ok(()), "{good}");
        }
    }
}
