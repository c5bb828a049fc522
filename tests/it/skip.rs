//! Visible skips. A test whose real dependency (Postgres, helm, the API server kit, a browser)
//! is missing calls [`skip`]: under `CI` that is a failure; otherwise the test returns early,
//! and the reader of `cargo test` output still sees it. The harness captures `println!` and
//! `eprintln!`, so the notices go to the process's real stderr:
//!
//! - the first skip of a group prints one line naming the group and the reason;
//! - when the test binary exits, a watchdog process it started prints the total count per group
//!   (after libtest's own summary), so "30 passed" can't silently mean "30 skipped".
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;

struct Skips {
    /// Skips per group, with the first reason seen.
    groups: BTreeMap<String, (usize, String)>,
    /// The file the exit watchdog reads its summary from.
    log: Option<PathBuf>,
}

static SKIPS: Mutex<Skips> = Mutex::new(Skips { groups: BTreeMap::new(), log: None });

/// Whether skips must fail instead (the `CI` variable is set, to anything).
pub fn strict() -> bool {
    std::env::var_os("CI").is_some()
}

/// Records that the calling test can't run because `group` (e.g. `postgres`) is unavailable for
/// `reason`. Panics under `CI`; otherwise returns, and the caller returns early.
pub fn skip(group: &str, reason: &str) {
    if strict() {
        panic!("{group} unavailable (CI is set, so this fails instead of skipping): {reason}");
    }
    let test = std::thread::current().name().unwrap_or("?").to_owned();
    let mut s = SKIPS.lock().unwrap_or_else(|p| p.into_inner());
    if s.log.is_none() {
        s.log = start_watchdog();
    }
    let entry = s.groups.entry(group.to_owned()).or_insert_with(|| (0, reason.to_owned()));
    entry.0 += 1;
    if entry.0 == 1 {
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPED [{group}]: {reason} — tests that need it pass without running (set CI=1 to fail) ***"
        );
    }
    if let Some(log) = &s.log {
        if let Ok(mut f) = std::fs::OpenOptions::new().append(true).create(true).open(log) {
            let _ = writeln!(f, "{group}\t{test}\t{reason}");
        }
    }
}

/// Starts `sh` waiting for this process to exit, then printing the skip summary from the log.
fn start_watchdog() -> Option<PathBuf> {
    let log = std::env::temp_dir().join(format!("stepcache-test-skips-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let script = r#"
log="$1"; parent="$2"
while kill -0 "$parent" 2>/dev/null; do sleep 0.1; done
[ -s "$log" ] || exit 0
total=$(wc -l < "$log")
{
  echo ""
  echo "*** $total test(s) SKIPPED in this test binary (they reported ok without running):"
  cut -f1,3 "$log" | sort | uniq -c | sed 's/^/***   /'
  echo "*** set CI=1 to make every skip a failure"
} >&2
rm -f "$log"
"#;
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("skip-summary")
        .arg(&log)
        .arg(std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .ok()
        .map(|_| log)
}
