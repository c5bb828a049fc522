//! Input artifacts whose reference can name other bytes tomorrow (a git branch or tag, an http
//! URL): with the default `--moving-artifacts miss` such a step is never served, even when an
//! entry with its key exists, and the reason names the artifact; `cache` serves it as before;
//! a git artifact pinned to a full commit SHA is served under the default.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use crate::harness::*;
use crate::hitpath::run_and_record;
use serde_json::{json, Value};
use stepcache::admission::Ports;

/// The artifact fixture with its input artifacts replaced by `artifacts`, in every copy of the
/// template (v3.5 carries it on each container).
fn with_inputs(artifacts: Value) -> Value {
    let mut v = fixture("v3.5-artifacts-s3.admission.json");
    let spec = &mut v["request"]["object"]["spec"];
    for list in ["initContainers", "containers"] {
        for c in spec[list].as_array_mut().into_iter().flatten() {
            for e in c["env"].as_array_mut().into_iter().flatten() {
                if e["name"] == "ARGO_TEMPLATE" {
                    let mut t: Value = serde_json::from_str(e["value"].as_str().unwrap()).unwrap();
                    t["inputs"]["artifacts"] = artifacts.clone();
                    e["value"] = Value::String(t.to_string());
                }
            }
        }
    }
    v
}

fn git_at(revision: &str) -> Value {
    with_inputs(json!([{"name": "src", "path": "/src",
        "git": {"repo": "https://github.com/example/pipeline.git", "revision": revision}}]))
}

#[tokio::test]
async fn a_recorded_step_reading_a_git_branch_is_not_served_by_default_and_the_reason_names_the_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let a = admitter(sqlite_store(dir.path()).await, config(), Ports::offline());
    let review = git_at("main");
    run_and_record(&a, &review, "pod-1", "1", ts("2026-11-01T10:05:00Z")).await;
    let all = a.store.list(&Default::default(), 10).await.unwrap();
    assert_eq!(all.len(), 1, "recorded under the default");

    let (resp, ex) = admit(&a, &rerun(&review, "second"), ts("2026-11-02T10:00:00Z")).await;
    assert_eq!(ex["decision"], "miss", "{ex}");
    let reason = ex["reason"].as_str().unwrap();
    assert!(reason.starts_with("moving-input:"), "{reason}");
    assert!(reason.contains("git artifact src") && reason.contains("revision main"), "{reason}");
    assert!(ex.get("entry_id").is_none(), "{ex}");
    let second = rerun(&review, "second");
    let pod = patched_pod(&second, &resp);
    assert_eq!(pod["metadata"]["labels"]["stepcache.dev/decision"], "miss", "{ex}");

    // `why` answers from the decision log: the row carries the same reason.
    a.store.flush_decisions().await.unwrap();
    let name = second["request"]["object"]["metadata"]["name"].as_str().unwrap();
    let ns = second["request"]["object"]["metadata"]["namespace"].as_str().unwrap();
    let logged = a.store.decision_for_pod(ns, name).await.unwrap().unwrap();
    assert_eq!((logged.decision.as_str(), logged.reason.as_str()), ("miss", reason));
}

#[test]
fn review_explain_names_the_moving_artifact_and_honours_moving_artifacts_cache() {
    let dir = tempfile::tempdir().unwrap();
    let review = git_at("v1").to_string();
    let explain = |args: &[&str]| -> Value {
        let o = crate::cli::run(dir.path(), args, review.as_bytes());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<Value>(&o.stdout).unwrap()["explain"].clone()
    };
    let ex = explain(&["review", "--explain"]);
    assert_eq!(ex["decision"], "miss", "{ex}");
    assert!(ex["reason"].as_str().unwrap().starts_with("moving-input: git artifact src at revision v1"), "{ex}");
    let ex = explain(&["review", "--explain", "--moving-artifacts", "cache"]);
    assert_eq!(ex["decision"], "miss", "{ex}");
    assert!(!ex["reason"].as_str().unwrap().contains("moving-input"), "cache looks the key up: {ex}");
}

#[tokio::test]
async fn a_recorded_step_reading_an_http_url_is_not_served_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let a = admitter(sqlite_store(dir.path()).await, config(), Ports::offline());
    let review = with_inputs(json!([{"name": "data", "path": "/data/raw.csv",
        "http": {"url": "https://example.com/latest/raw.csv"}}]));
    run_and_record(&a, &review, "pod-1", "1", ts("2026-11-01T10:05:00Z")).await;
    let (_, ex) = admit(&a, &rerun(&review, "second"), ts("2026-11-02T10:00:00Z")).await;
    assert_eq!(ex["decision"], "miss", "{ex}");
    let reason = ex["reason"].as_str().unwrap();
    assert!(reason.contains("http artifact data") && reason.contains("https://example.com/latest/raw.csv"), "{reason}");
}

#[tokio::test]
async fn a_git_artifact_pinned_to_a_full_commit_sha_is_served_under_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let a = admitter(sqlite_store(dir.path()).await, config(), Ports::offline());
    let review = git_at("0123456789abcdef0123456789abcdef01234567");
    run_and_record(&a, &review, "pod-1", "1", ts("2026-11-01T10:05:00Z")).await;
    let (_, ex) = admit(&a, &rerun(&review, "second"), ts("2026-11-02T10:00:00Z")).await;
    assert_eq!(ex["decision"], "hit", "{ex}");
}

#[tokio::test]
async fn moving_artifacts_cache_serves_a_step_reading_a_git_branch_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.admin.moving_artifacts = stepcache_core::moving::MovingArtifacts::Cache;
    let a = admitter(sqlite_store(dir.path()).await, cfg, Ports::offline());
    let review = git_at("main");
    run_and_record(&a, &review, "pod-1", "1", ts("2026-11-01T10:05:00Z")).await;
    let (_, ex) = admit(&a, &rerun(&review, "second"), ts("2026-11-02T10:00:00Z")).await;
    assert_eq!(ex["decision"], "hit", "{ex}");
}
