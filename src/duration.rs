//! Durations on the command line: `5s`, `200ms`, `2m`, `1h`, or a bare number of seconds.

use std::time::Duration;

/// Parses a flag value such as `5s`, `250ms`, `1m`, `1h` or `3` (seconds); zero is refused.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(mini::duration::parse("250ms"), Ok(Duration::from_millis(250)));
/// assert_eq!(mini::duration::parse("2"), Ok(Duration::from_secs(2)));
/// assert!(mini::duration::parse("soon").is_err());
/// ```
pub fn parse(value: &str) -> Result<Duration, String> {
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (digits, unit) = value.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{value:?} is not a duration (try 5s, 250ms or 1m)"))?;
    let d = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(format!("{value:?} has an unknown unit (use ms, s, m or h)")),
    };
    if d.is_zero() {
        return Err(format!("{value:?} must be greater than zero"));
    }
    if d > MAX {
        return Err(format!("{value:?} is longer than a day"));
    }
    Ok(d)
}

/// Like [`parse`], but `0` (or `0s`, `0ms`) is allowed and means "none".
///
/// ```
/// assert_eq!(mini::duration::parse_or_zero("0s"), Ok(std::time::Duration::ZERO));
/// assert!(mini::duration::parse_or_zero("-1s").is_err());
/// ```
pub fn parse_or_zero(value: &str) -> Result<Duration, String> {
    let digits = value.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    if !digits.is_empty()
        && digits.bytes().all(|b| b == b'0')
        && matches!(&value[digits.len()..], "" | "s" | "ms" | "m")
    {
        return Ok(Duration::ZERO);
    }
    parse(value)
}

/// Longest accepted duration: a day is already absurd for any timer here.
pub const MAX: Duration = Duration::from_secs(24 * 3600);

/// Formats a duration the way [`parse`] reads it: whole seconds as `Ns`, anything finer as `Nms`.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(mini::duration::show(Duration::from_millis(1500)), "1500ms");
/// assert_eq!(mini::duration::show(Duration::from_secs(15)), "15s");
/// ```
pub fn show(d: Duration) -> String {
    if d.subsec_millis() == 0 && d >= Duration::from_secs(1) {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Parses Go's `time.ParseDuration` syntax, which Consul's clients send (`120000ms`, `1m30s`, `1.5h`,
/// `10s`, `0`): a sequence of decimal numbers, each with a unit of `ns`, `us`, `µs`, `ms`, `s`, `m` or
/// `h`. Negative durations and values past [`MAX`] are refused.
///
/// ```
/// use std::time::Duration;
/// use mini::duration::parse_go;
/// assert_eq!(parse_go("120000ms"), Ok(Duration::from_secs(120)));
/// assert_eq!(parse_go("1m30s"), Ok(Duration::from_secs(90)));
/// assert_eq!(parse_go("1.5s"), Ok(Duration::from_millis(1500)));
/// assert!(parse_go("5").is_err());
/// ```
pub fn parse_go(value: &str) -> Result<Duration, String> {
    let bad = || format!("{value:?} is not a Go duration (try 30s, 1m30s or 120000ms)");
    if value == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = value;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (num, tail) = rest.split_at(num_end);
        // Digits and dots only, so the float parser refuses "", "." and "1.2.3" alike.
        let n: f64 = num.parse().map_err(|_| bad())?;
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_end);
        let nanos = match unit {
            "ns" => 1.0,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        total += n * nanos;
        if total > MAX.as_nanos() as f64 {
            return Err(format!("{value:?} is longer than a day"));
        }
        rest = next;
    }
    Ok(Duration::from_nanos(total.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_zero_negative_and_huge() {
        assert!(parse("0s").is_err());
        assert!(parse("-1s").is_err());
        assert!(parse("").is_err());
        assert!(parse("99999999999999999999s").is_err());
        assert!(parse("2d").is_err());
        assert!(parse("100000m").is_err());
        assert_eq!(parse("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse("25h").is_err());
    }

    #[test]
    fn show_output_parses_back() {
        for d in [
            Duration::from_millis(1),
            Duration::from_millis(1500),
            Duration::from_secs(15),
        ] {
            assert_eq!(parse(&show(d)), Ok(d));
        }
    }

    #[test]
    fn go_durations_as_consul_clients_send_them() {
        assert_eq!(parse_go("0"), Ok(Duration::ZERO));
        assert_eq!(parse_go("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_go("1h2m3s"), Ok(Duration::from_secs(3723)));
        assert_eq!(parse_go("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_go("\u{b5}s"), Err(parse_go("\u{b5}s").unwrap_err()));
        assert_eq!(parse_go("3\u{b5}s"), Ok(Duration::from_micros(3)));
        for bad in ["", "s", "5", "-1s", "1x", "1..5s", ".s", "1s5"] {
            assert!(parse_go(bad).is_err(), "{bad}");
        }
        assert!(parse_go("25h").is_err());
    }
}
