//! The benchmark baselines of `serve`: `--noop` answers every pod "allow, no patch" without
//! touching the store; `--noop-lookup` adds exactly one store lookup, so the baseline is the
//! floor a deciding webhook cannot go below. Neither may change what a later run is served.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use crate::harness::*;
use stepcache::admission::{AdmitConfig, Noop, Ports};

const NOW: &str = "2026-11-01T10:00:00Z";

/// Lookups the admitter timed, read from its own metrics.
fn lookups(a: &stepcache::admission::Admitter) -> u64 {
    let text = a.metrics.encode();
    text.lines()
        .find(|l| l.starts_with("stepcache_store_duration_seconds_count{") && l.contains("op=\"lookup\""))
        .and_then(|l| l.rsplit(' ').next())
        .map(|n| n.parse().unwrap())
        .unwrap_or(0)
}

/// Admits one Argo step pod under `noop`; checks what every baseline answers (allow, no patch,
/// decision `noop`) and that nothing it did is visible to a later run. Returns the lookups it
/// made.
async fn baseline(noop: Noop) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let cfg = AdmitConfig { noop: Some(noop), ..config() };
    let a = admitter(store.clone(), cfg, Ports::offline());
    let review = fixture("v3.3-container-params.admission.json");
    let before = lookups(&a);
    assert_eq!(before, 0, "a new admitter has made no lookup");
    let (resp, explain) = admit(&a, &review, NOW.parse().unwrap()).await;
    let after = lookups(&a);
    // The baseline logs no decision: nothing it did is visible to a later run.
    store.flush_decisions().await.unwrap();
    assert_eq!(store.stats().await.unwrap().iter().map(|s| s.entries).sum::<i64>(), 0);
    let (ns, pod) = (review["request"]["namespace"].as_str().unwrap(), review["request"]["name"].as_str().unwrap());
    assert!(store.decision_for_pod(ns, pod).await.unwrap().is_none());
    assert_eq!(resp["response"]["allowed"], true);
    assert!(resp["response"].get("patch").is_none(), "{resp}");
    assert_eq!(explain["detail"], "noop");
    after - before
}

#[tokio::test]
async fn noop_allows_without_a_patch_and_makes_no_store_call() {
    assert_eq!(baseline(Noop::Answer).await, 0);
}

#[tokio::test]
async fn noop_lookup_adds_exactly_one_store_lookup_and_still_no_patch() {
    assert_eq!(baseline(Noop::AfterLookup).await, 1);
}

#[test]
fn noop_lookup_without_noop_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let o = crate::cli::run(dir.path(), &["serve", "--noop-lookup"], b"");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--noop"), "{err}");
}
