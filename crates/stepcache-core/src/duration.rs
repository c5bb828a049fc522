//! Parsing the duration spellings authors and admins use: ISO-8601 (`P7D`, `PT12H`, KFP's form)
//! and Go (`72h`, `1h30m`, Argo's form).
//!
//! Pure; imports nothing internal.

/// Largest accepted duration (100 years): larger values are typos, not intent.
pub const MAX_SECONDS: u64 = 100 * 365 * 24 * 3600;

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Empty input.
    #[error("empty duration")]
    Empty,
    /// Negative durations have no meaning for staleness or expiry.
    #[error("negative duration {0:?}")]
    Negative(String),
    /// Not ISO-8601 nor Go syntax.
    #[error("{0:?} is not a duration (use ISO-8601 like P7D/PT12H or Go like 72h/30m)")]
    Syntax(String),
    /// Beyond [`MAX_SECONDS`].
    #[error("duration {0:?} exceeds 100 years")]
    TooLarge(String),
}

/// Parses ISO-8601 or Go duration syntax into whole seconds (fractions are truncated).
///
/// ```
/// use stepcache_core::duration::parse_seconds;
/// assert_eq!(parse_seconds("P7D"), Ok(7 * 86400));
/// assert_eq!(parse_seconds("1h30m"), Ok(5400));
/// assert!(parse_seconds("forever").is_err());
/// ```
pub fn parse_seconds(raw: &str) -> Result<u64, DurationError> {
    parse_exact(raw).map(|d| d.as_secs())
}

/// Parses like [`parse_seconds`] but keeps fractions of a second (to the nanosecond), so a
/// caller can tell `300ms` (under a second, so 0 whole seconds) from `0`.
///
/// ```
/// use stepcache_core::duration::parse_exact;
/// assert_eq!(parse_exact("300ms").map(|d| d.as_millis()), Ok(300));
/// assert_eq!(parse_exact("PT0.9S").map(|d| d.as_millis()), Ok(900));
/// ```
pub fn parse_exact(raw: &str) -> Result<std::time::Duration, DurationError> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s.starts_with('-') {
        return Err(DurationError::Negative(s.to_owned()));
    }
    let secs = if s == "0" {
        Some(0.0)
    } else if let Some(rest) = s.strip_prefix('P').or_else(|| s.strip_prefix('p')) {
        parse_iso(rest)
    } else {
        parse_go(s)
    };
    let secs = secs.ok_or_else(|| {
        // A sign before a number (`P-1D`, `1h-30m`) is a negative duration; any other `-`
        // (`forever-ish`) is just not duration syntax.
        let signed_number = s
            .as_bytes()
            .windows(2)
            .any(|w| w.first() == Some(&b'-') && w.get(1).is_some_and(|c| c.is_ascii_digit() || *c == b'.'));
        if signed_number {
            DurationError::Negative(s.chars().take(64).collect())
        } else {
            DurationError::Syntax(s.chars().take(64).collect())
        }
    })?;
    if !secs.is_finite() || secs > MAX_SECONDS as f64 {
        return Err(DurationError::TooLarge(s.chars().take(64).collect()));
    }
    // Round to the nanosecond so decimal spellings (`0.9s`) do not lose a unit to binary floats.
    Ok(std::time::Duration::from_nanos((secs * 1e9).round() as u64))
}

/// ISO-8601 `PnYnMnWnDTnHnMnS` after the `P`; years are 365 days and months 30 days, as KFP did.
fn parse_iso(rest: &str) -> Option<f64> {
    if rest.is_empty() {
        return None;
    }
    let (date, time) = match rest.split_once(['T', 't']) {
        Some((d, t)) if !t.is_empty() => (d, Some(t)),
        Some(_) => return None,
        None => (rest, None),
    };
    let mut total = 0.0;
    total += iso_part(date, &[('Y', 365.0 * 86400.0), ('M', 30.0 * 86400.0), ('W', 7.0 * 86400.0), ('D', 86400.0)])?;
    if let Some(t) = time {
        total += iso_part(t, &[('H', 3600.0), ('M', 60.0), ('S', 1.0)])?;
    }
    Some(total)
}

/// Sums `<number><unit>` groups whose units appear in `units` order, each at most once.
fn iso_part(s: &str, units: &[(char, f64)]) -> Option<f64> {
    let mut total = 0.0;
    let mut num = String::new();
    let mut next_unit = 0usize;
    for c in s.chars() {
        if c.is_ascii_digit() || c == '.' || c == ',' {
            num.push(if c == ',' { '.' } else { c });
            continue;
        }
        let u = c.to_ascii_uppercase();
        let pos = units.iter().skip(next_unit).position(|(n, _)| *n == u)? + next_unit;
        let (_, mult) = units.get(pos)?;
        if num.is_empty() {
            return None;
        }
        total += num.parse::<f64>().ok()? * mult;
        num.clear();
        next_unit = pos + 1;
    }
    if num.is_empty() {
        Some(total)
    } else {
        None
    }
}

/// Go `time.ParseDuration` syntax without sign: e.g. `1h30m`, `1.5h`, `300ms`, `72h`.
fn parse_go(s: &str) -> Option<f64> {
    let mut total = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let n_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (num, tail) = rest.split_at(n_end);
        if num.is_empty() {
            return None;
        }
        let value: f64 = num.parse().ok()?;
        let u_end = tail.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(u_end);
        let mult = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return None,
        };
        total += value * mult;
        rest = tail;
    }
    Some(total)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn iso_durations_parse_like_kfp() {
        assert_eq!(parse_seconds("P7D"), Ok(7 * 86400));
        assert_eq!(parse_seconds("PT12H"), Ok(12 * 3600));
        assert_eq!(parse_seconds("P0D"), Ok(0));
        assert_eq!(parse_seconds("P30D"), Ok(30 * 86400));
        assert_eq!(parse_seconds("P1DT1H30M"), Ok(86400 + 5400));
        assert_eq!(parse_seconds("P1W"), Ok(7 * 86400));
        assert_eq!(parse_seconds("PT0.5S"), Ok(0));
    }

    #[test]
    fn exact_parsing_keeps_fractions_of_a_second() {
        assert_eq!(parse_exact("300ms"), Ok(std::time::Duration::from_millis(300)));
        assert_eq!(parse_exact("PT0.9S"), Ok(std::time::Duration::from_millis(900)));
        assert_eq!(parse_exact("1.5s"), Ok(std::time::Duration::from_millis(1500)));
        assert_eq!(parse_exact("0"), Ok(std::time::Duration::ZERO));
        assert_eq!(parse_seconds("1.999s"), Ok(1));
    }

    #[test]
    fn go_durations_parse_like_argo() {
        assert_eq!(parse_seconds("72h"), Ok(72 * 3600));
        assert_eq!(parse_seconds("30m"), Ok(1800));
        assert_eq!(parse_seconds("1h30m"), Ok(5400));
        assert_eq!(parse_seconds("1.5h"), Ok(5400));
        assert_eq!(parse_seconds("0"), Ok(0));
        assert_eq!(parse_seconds("0s"), Ok(0));
    }

    #[test]
    fn bad_durations_are_rejected_with_a_reason() {
        assert!(matches!(parse_seconds("P-1D"), Err(DurationError::Negative(_))));
        assert!(matches!(parse_seconds("-5m"), Err(DurationError::Negative(_))));
        assert!(matches!(parse_seconds("forever"), Err(DurationError::Syntax(_))));
        assert!(matches!(parse_seconds("1h-30m"), Err(DurationError::Negative(_))));
        // A hyphen inside a word is a typo, not a sign: the author gets the syntax help.
        assert!(matches!(parse_seconds("forever-ish"), Err(DurationError::Syntax(_))));
        assert!(matches!(parse_seconds("P1D-ish"), Err(DurationError::Syntax(_))));
        assert!(matches!(parse_seconds("9999999999999h"), Err(DurationError::TooLarge(_))));
        assert!(matches!(parse_seconds(""), Err(DurationError::Empty)));
        assert!(matches!(parse_seconds("P"), Err(DurationError::Syntax(_))));
        assert!(matches!(parse_seconds("PT"), Err(DurationError::Syntax(_))));
        assert!(matches!(parse_seconds("P1H"), Err(DurationError::Syntax(_))));
        assert!(matches!(parse_seconds("5"), Err(DurationError::Syntax(_))));
        assert!(matches!(parse_seconds("PD"), Err(DurationError::Syntax(_))));
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(s in ".{0,40}") {
            let _ = parse_seconds(&s);
        }
    }
}
