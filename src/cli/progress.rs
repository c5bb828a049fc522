//! Where progress lines go: on a terminal (stderr is a tty) one line rewritten in place a few
//! times a second; otherwise (logs, CI) a line every `STEPCACHE_PROGRESS_INTERVAL` (default
//! 10s). Either way a final line with the totals. The line itself is [`crate::progress`]'s.

use crate::progress::{format_line, Snapshot};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Reports one operation's progress on stderr.
pub struct Reporter {
    what: String,
    unit: &'static str,
    total: Option<u64>,
    started: Instant,
    last: Option<Instant>,
    tty: bool,
    every: Duration,
}

/// Default spacing of log lines when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// Spacing of in-place updates on a terminal.
const TTY_EVERY: Duration = Duration::from_millis(200);

impl Reporter {
    /// Starts reporting `what` (`gc`, `fill`), counting `unit`s out of `total` when known.
    pub fn new(what: &str, unit: &'static str, total: Option<u64>) -> Reporter {
        let tty = std::io::stderr().is_terminal();
        let every = if tty {
            TTY_EVERY
        } else {
            std::env::var("STEPCACHE_PROGRESS_INTERVAL")
                .ok()
                .and_then(|v| crate::config::parse_duration(&v).ok())
                .unwrap_or(LOG_EVERY)
        };
        Reporter { what: what.into(), unit, total, started: Instant::now(), last: None, tty, every }
    }

    fn line(&self, done: u64) -> String {
        format_line(&self.what, self.unit, &Snapshot { done, total: self.total, elapsed: self.started.elapsed() })
    }

    /// Notes that `done` units are done; prints when the last line is old enough.
    pub fn update(&mut self, done: u64) {
        let due = self.last.is_none_or(|t| t.elapsed() >= self.every);
        if !due {
            return;
        }
        self.last = Some(Instant::now());
        let line = self.line(done);
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(err, "stepcache: {line}");
        }
    }

    /// Prints the final line.
    pub fn finish(self, done: u64) {
        let line = self.line(done);
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = writeln!(err, "\r\x1b[2K{line}, done");
        } else {
            let _ = writeln!(err, "stepcache: {line}, done");
        }
    }
}
