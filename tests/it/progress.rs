//! Long operator commands report progress: off a terminal, periodic `stepcache: <what>: ...`
//! lines with count, percentage, rate and ETA on stderr, then a final line; stdout keeps only
//! the result operators script against.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use crate::harness::sqlite_store;
use std::process::Command;
use stepcache::store::EntryFilter;

#[tokio::test]
async fn gc_over_many_rows_logs_progress_lines_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    store.fill_synthetic(2_000, "progress", true, jiff::Timestamp::now()).await.unwrap();
    let filter =
        EntryFilter { namespace: Some(stepcache::types::Namespace::parse("progress").unwrap()), ..Default::default() };
    assert_eq!(store.invalidate(&filter, jiff::Timestamp::now()).await.unwrap(), 2_000);
    store.close().await;
    let out = Command::new(env!("CARGO_BIN_EXE_stepcache"))
        .args(["gc", "--batch", "250", "--database-url"])
        .arg(format!("sqlite://{}", dir.path().join("stepcache.db").display()))
        .env("STEPCACHE_PROGRESS_INTERVAL", "0s")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.trim(), "deleted 2000 expired or invalidated entries");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("stepcache: gc: ")).collect();
    // A line per statement (8 full batches of 250, and the ones that find nothing), then the total.
    assert!(lines.len() >= 9, "{stderr}");
    assert!(lines.iter().any(|l| l.starts_with("stepcache: gc: 250/2000 rows (12%), ")), "{stderr}");
    assert!(lines.iter().any(|l| l.starts_with("stepcache: gc: 1000/2000 rows (50%), ")), "{stderr}");
    assert!(lines.iter().all(|l| l.contains(" rows/s") && l.contains(" elapsed")), "{stderr}");
    assert!(lines.iter().any(|l| l.contains(", ETA ")), "{stderr}");
    let last = lines.last().unwrap();
    assert!(last.starts_with("stepcache: gc: 2000/2000 rows (100%)") && last.ends_with(", done"), "{stderr}");
    assert!(!stderr.contains('\r'), "no terminal control characters in logs: {stderr:?}");
}

#[tokio::test]
async fn by_default_off_a_terminal_only_the_final_line_is_logged_for_a_quick_gc() {
    let dir = tempfile::tempdir().unwrap();
    sqlite_store(dir.path()).await.close().await;
    let out = Command::new(env!("CARGO_BIN_EXE_stepcache"))
        .args(["gc", "--database-url"])
        .arg(format!("sqlite://{}", dir.path().join("stepcache.db").display()))
        .env_remove("STEPCACHE_PROGRESS_INTERVAL")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("stepcache: gc: ")).collect();
    // The first batch always prints (a run that stalls right away still says what it does).
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(lines[1].starts_with("stepcache: gc: 0 rows") && lines[1].ends_with(", done"), "{stderr}");
}

#[tokio::test]
async fn invalidating_many_entries_goes_in_batches_with_progress_and_selects_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    store.fill_synthetic(2_500, "many", true, jiff::Timestamp::now()).await.unwrap();
    store.fill_synthetic(10, "kept", true, jiff::Timestamp::now()).await.unwrap();
    store.close().await;
    let out = Command::new(env!("CARGO_BIN_EXE_stepcache"))
        .args(["entries", "--database-url"])
        .arg(format!("sqlite://{}", dir.path().join("stepcache.db").display()))
        .args(["invalidate", "--namespace", "many"])
        .env("STEPCACHE_PROGRESS_INTERVAL", "0s")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.trim(), "invalidated 2500 entries");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("stepcache: invalidate: ")).collect();
    assert!(lines.iter().any(|l| l.starts_with("stepcache: invalidate: 1000/2500 entries (40%), ")), "{stderr}");
    assert!(lines.last().unwrap().starts_with("stepcache: invalidate: 2500/2500 entries (100%)"), "{stderr}");
    let store = sqlite_store(dir.path()).await;
    let ns =
        |n: &str| EntryFilter { namespace: Some(stepcache::types::Namespace::parse(n).unwrap()), ..Default::default() };
    assert_eq!(store.count_live(&ns("many")).await.unwrap(), 0);
    assert_eq!(store.count_live(&ns("kept")).await.unwrap(), 10, "other namespaces untouched");
}

#[tokio::test]
async fn batched_invalidation_selects_the_same_rows_on_postgres() {
    let Some(t) = crate::support::TestStore::postgres().await else { return };
    t.store.fill_synthetic(25, "many", true, jiff::Timestamp::now()).await.unwrap();
    t.store.fill_synthetic(3, "kept", true, jiff::Timestamp::now()).await.unwrap();
    let ns =
        |n: &str| EntryFilter { namespace: Some(stepcache::types::Namespace::parse(n).unwrap()), ..Default::default() };
    assert_eq!(t.store.count_live(&ns("many")).await.unwrap(), 25);
    let mut seen = Vec::new();
    let n = t.store.invalidate_with_progress(&ns("many"), jiff::Timestamp::now(), 10, |d| seen.push(d)).await.unwrap();
    assert_eq!((n, seen), (25, vec![10, 20, 25]));
    assert_eq!(t.store.count_live(&ns("many")).await.unwrap(), 0);
    assert_eq!(t.store.count_live(&ns("kept")).await.unwrap(), 3);
}

#[test]
fn migrate_reports_the_pending_migrations_then_none() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("fresh.db").display());
    let run = || {
        let out = Command::new(env!("CARGO_BIN_EXE_stepcache"))
            .args(["migrate", "--database-url", &url])
            .env("STEPCACHE_PROGRESS_INTERVAL", "0s")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let first = run();
    let embedded = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite")).unwrap().count();
    let last = first.lines().rfind(|l| l.starts_with("stepcache: migrate: ")).unwrap().to_owned();
    assert!(last.starts_with(&format!("stepcache: migrate: {embedded}/{embedded} migrations (100%)")), "{first}");
    assert!(last.ends_with(", done"), "{first}");
    let again = run();
    assert!(again.contains("stepcache: migrate: 0 migrations"), "nothing pending the second time: {again}");
}
