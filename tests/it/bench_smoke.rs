//! The load tool end to end, small: the real `stepcache-bench` binary sends a few hundred requests
//! over TLS to the no-op baseline and the real path (both `stepcache serve`), and its JSON report
//! must show zero errors and hits served. No timing assertions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use serde_json::Value;
use std::process::{Command, Output};

/// Runs `stepcache-bench` with `args` against this build's `stepcache`, temp files in `tmp`.
fn bench(tmp: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stepcache-bench"))
        .args(args)
        .arg("--server-binary")
        .arg(env!("CARGO_BIN_EXE_stepcache"))
        .env("TMPDIR", tmp)
        .env("STEPCACHE_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn the_bench_binary_reports_zero_errors_and_served_hits_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--rate", "200", "--concurrency", "16", "--requests", "200", "--phases", "2", "--fill", "500"];
    let o = bench(dir.path(), &[&args[..], &["--mix", "mixed", "--json"]].concat());
    assert!(o.status.success(), "exit {:?}: {}", o.status, String::from_utf8_lossy(&o.stderr));
    let r: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)));
    assert_eq!(r["mix"], "mixed", "{r}");
    assert_eq!(r["entries"], 550, "the fill plus the recorded hits: {r}");
    assert_eq!(r["baseline"]["errors"], 0, "{r}");
    assert_eq!(r["subject"]["errors"], 0, "{r}");
    assert_eq!(r["baseline"]["requests"], 200, "{r}");
    assert_eq!(r["subject"]["requests"], 200, "{r}");
    assert_eq!(r["baseline"]["patched"], 0, "the baseline never patches: {r}");
    assert!(r["subject"]["patched"].as_u64().unwrap() >= 100, "misses are marked and hits rewritten: {r}");
    assert!(r["subject"]["rss_mib"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["ratio_p50"].as_f64().unwrap() > 0.0, "{r}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "the work directory is removed: {left:?}");
}

#[test]
fn the_floor_baseline_answers_without_patching_and_says_which_baseline_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--rate", "200", "--concurrency", "8", "--requests", "60", "--phases", "2", "--fill", "50"];
    let o = bench(dir.path(), &[&args[..], &["--mix", "mixed", "--baseline", "floor", "--json"]].concat());
    assert!(o.status.success(), "exit {:?}: {}", o.status, String::from_utf8_lossy(&o.stderr));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["baseline_kind"], "floor", "{r}");
    assert_eq!(r["baseline"]["errors"], 0, "{r}");
    assert_eq!(r["baseline"]["requests"], 60, "{r}");
    assert_eq!(r["baseline"]["patched"], 0, "the floor decides nothing: {r}");
    assert!(r["subject"]["patched"].as_u64().unwrap() >= 30, "{r}");
}

#[test]
fn interleaved_lookups_in_two_stores_report_both_sides_and_their_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let (small, large) = (work.path().join("small.db"), work.path().join("large.db"));
    let (small, large) = (format!("sqlite://{}", small.display()), format!("sqlite://{}", large.display()));
    let o = bench(dir.path(), &["--database-url", &small, "--fill", "100", "--store-lookups", "10"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let args = ["--database-url", &large, "--fill", "400", "--store-lookups", "50"];
    let o = bench(dir.path(), &[&args[..], &["--versus-database-url", &small, "--versus-fill", "100"]].concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["rows_filled"], 400, "{r}");
    assert_eq!(r["versus"]["rows"], 100, "{r}");
    assert_eq!(r["lookups"], 50, "{r}");
    let ratio = r["ratio_p99"].as_f64().unwrap();
    let expect = r["p99_ms"].as_f64().unwrap() / r["versus"]["p99_ms"].as_f64().unwrap();
    assert!((ratio - expect).abs() < 1e-9, "{r}");
    // Keys beyond the second store's fill are not there: the run says so instead of timing misses.
    let o = bench(
        dir.path(),
        &[&args[..], &["--no-fill", "--versus-database-url", &small, "--versus-fill", "1000"]].concat(),
    );
    assert!(!o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not found"), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn the_bench_binary_rejects_an_unknown_mix_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let o = bench(dir.path(), &["--requests", "10", "--fill", "0", "--mix", "most"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.starts_with("stepcache-bench: --mix must be miss, hit or mixed"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn the_bench_binary_documents_its_flags_and_stepcache_has_no_bench_command() {
    let help = Command::new(env!("CARGO_BIN_EXE_stepcache-bench")).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in ["--rate", "--fill", "--mix", "--server-binary", "--store-lookups", "--record", "--log", "--baseline"] {
        assert!(help.contains(flag), "stepcache-bench --help lacks {flag}:\n{help}");
    }
    let o = Command::new(env!("CARGO_BIN_EXE_stepcache")).args(["bench", "--help"]).output().unwrap();
    assert!(!o.status.success(), "stepcache bench is gone: {}", String::from_utf8_lossy(&o.stdout));
}
