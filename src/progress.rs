//! Progress of long operator commands (`gc`, `migrate`, `stepcache-bench --fill`): how much is
//! done, the rate and the time left, as one line. Pure: the caller supplies counts and elapsed
//! time, and decides where the line goes (`cli::progress` rewrites it in place on a terminal,
//! logs it periodically otherwise).
//!
//! Owns: `Snapshot`, `format_line`.

use std::time::Duration;

/// How far one operation got.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Snapshot {
    /// Units done (rows).
    pub done: u64,
    /// Units expected in all, when known.
    pub total: Option<u64>,
    /// Time since the operation started.
    pub elapsed: Duration,
}

impl Snapshot {
    /// Units per second so far (`None` before any time has passed).
    pub fn rate(&self) -> Option<f64> {
        let s = self.elapsed.as_secs_f64();
        (s > 0.0).then(|| self.done as f64 / s)
    }

    /// Time left at the rate so far (`None` without a total or a rate).
    pub fn eta(&self) -> Option<Duration> {
        let total = self.total?;
        let rate = self.rate().filter(|r| *r > 0.0)?;
        Some(Duration::from_secs_f64(total.saturating_sub(self.done) as f64 / rate))
    }
}

fn short(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
}

/// `gc: 12000/50000 rows (24%), 3400 rows/s, ETA 11s` (parts that are unknown are left out).
pub fn format_line(what: &str, unit: &str, s: &Snapshot) -> String {
    let mut line = match s.total {
        Some(t) if t > 0 => {
            format!("{what}: {}/{t} {unit} ({}%)", s.done, (s.done.min(t) * 100) / t)
        }
        _ => format!("{what}: {} {unit}", s.done),
    };
    if let Some(r) = s.rate() {
        line.push_str(&format!(", {r:.0} {unit}/s"));
    }
    if let Some(eta) = s.eta() {
        line.push_str(&format!(", ETA {}", short(eta)));
    }
    line.push_str(&format!(", {} elapsed", short(s.elapsed)));
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_has_count_percentage_rate_and_eta() {
        let s = Snapshot { done: 12_000, total: Some(48_000), elapsed: Duration::from_secs(4) };
        assert_eq!(s.rate(), Some(3000.0));
        assert_eq!(s.eta(), Some(Duration::from_secs(12)));
        assert_eq!(format_line("gc", "rows", &s), "gc: 12000/48000 rows (25%), 3000 rows/s, ETA 12s, 4s elapsed");
    }

    #[test]
    fn unknown_totals_and_zero_time_leave_parts_out() {
        let s = Snapshot { done: 5, total: None, elapsed: Duration::ZERO };
        assert_eq!(format_line("migrate", "migrations", &s), "migrate: 5 migrations, 0s elapsed");
        let long = Snapshot { done: 1, total: Some(10_000), elapsed: Duration::from_secs(2) };
        assert_eq!(long.eta().map(short).as_deref(), Some("5h33m"));
    }
}
