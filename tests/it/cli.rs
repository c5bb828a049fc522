//! The `stepcache` binary as operators use it: review, key, record, entries, gc, stats, certs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use crate::harness::*;
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_stepcache")
}

/// Runs the binary in `dir` with `stdin`.
pub fn run(dir: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(bin())
        .args(args)
        .current_dir(dir)
        .env_remove("STEPCACHE_DATABASE_URL")
        .env("STEPCACHE_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn json_out(o: &Output) -> Value {
    assert!(o.status.success(), "exit {:?}: {}", o.status, String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)))
}

#[test]
fn review_prints_a_valid_response_with_the_request_uid_for_every_fixture() {
    let dir = tempfile::tempdir().unwrap();
    for name in all_admission_fixtures() {
        let review = fixture(&name);
        let out =
            json_out(&run(dir.path(), &["review", "--now", "2026-11-01T10:00:00Z"], review.to_string().as_bytes()));
        assert_eq!(out["apiVersion"], "admission.k8s.io/v1", "{name}");
        assert_eq!(out["kind"], "AdmissionReview");
        assert_eq!(out["response"]["uid"], review["request"]["uid"], "{name}");
        assert_eq!(out["response"]["allowed"], true);
    }
}

#[test]
fn review_of_unreadable_input_exits_non_zero_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        &b"not json"[..],
        br#"{"apiVersion":"v1","kind":"Pod"}"#,
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{}}"#,
    ] {
        let o = run(dir.path(), &["review"], bad);
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

#[test]
fn review_of_a_non_argo_pod_allows_without_patch() {
    let dir = tempfile::tempdir().unwrap();
    let mut review = fixture("v3.6-container-params.admission.json");
    review["request"]["object"]["metadata"]["labels"] = json!({"app": "web"});
    let out = json_out(&run(dir.path(), &["review", "--explain"], review.to_string().as_bytes()));
    assert!(out["review"]["response"].get("patch").is_none());
    assert_eq!(out["explain"]["detail"], "skipped-not-argo");
}

#[test]
fn key_prints_key_and_material_and_refuses_non_step_pods() {
    let dir = tempfile::tempdir().unwrap();
    let review = fixture("v3.6-container-params.admission.json");
    let out = json_out(&run(dir.path(), &["key"], review.to_string().as_bytes()));
    assert!(out["key"].as_str().unwrap().starts_with("v3:"));
    assert!(out["material"].is_object());
    let bare = review["request"]["object"].clone();
    let out2 = json_out(&run(dir.path(), &["key"], bare.to_string().as_bytes()));
    assert_eq!(out["key"], out2["key"], "bare pod and review give the same key");
    let o = run(dir.path(), &["key"], fixture("v3.6-agent-pod.ignore.admission.json").to_string().as_bytes());
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not"), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn miss_record_hit_walkthrough_with_entries_invalidate_gc_and_stats() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let review = fixture("v3.5-artifacts-s3.admission.json");
    // 1. miss: the pod is marked for recording.
    let out =
        json_out(&run(d, &["review", "--explain", "--now", "2026-11-01T10:00:00Z"], review.to_string().as_bytes()));
    assert_eq!(out["explain"]["decision"], "miss");
    let pod = patched_pod(&review, &out["review"]);
    // 2. the step succeeds; its pod and task result are recorded.
    let done = succeeded(&pod, "pod-uid-1", "2026-11-01T10:00:00Z", "2026-11-01T10:04:12Z");
    let tr = task_result_for(&done, "42");
    std::fs::write(d.join("pod.json"), done.to_string()).unwrap();
    std::fs::write(d.join("tr.json"), tr.to_string()).unwrap();
    let entry = json_out(&run(
        d,
        &["record", "--pod", "pod.json", "--task-result", "tr.json", "--now", "2026-11-01T10:05:00Z"],
        b"",
    ));
    let id = entry["id"].as_i64().unwrap();
    let again = json_out(&run(d, &["record", "--pod", "pod.json", "--task-result", "tr.json"], b""));
    assert_eq!(again["id"].as_i64(), Some(id), "recording the same pod twice stores it once");
    // 3. the same step in a new run hits.
    let second = rerun(&review, "second");
    let out =
        json_out(&run(d, &["review", "--explain", "--now", "2026-11-02T10:00:00Z"], second.to_string().as_bytes()));
    assert_eq!(out["explain"]["decision"], "hit", "{}", out["explain"]);
    assert_eq!(out["explain"]["entry_id"].as_i64(), Some(id));
    assert_eq!(out["explain"]["creates"][0]["kind"], "WorkflowTaskResult");
    // 4. operators list and invalidate.
    let list = json_out(&run(d, &["entries", "list", "-o", "json"], b""));
    assert_eq!(list.as_array().unwrap().len(), 1);
    let table = run(d, &["entries", "list"], b"");
    assert!(String::from_utf8_lossy(&table.stdout).contains("NAMESPACE"));
    let shown = json_out(&run(d, &["entries", "show", &id.to_string()], b""));
    assert_eq!(shown["pod_uid"], "pod-uid-1");
    let stats = json_out(&run(d, &["stats", "-o", "json"], b""));
    let total = stats.as_array().unwrap().iter().find(|s| s["namespace"].is_null()).unwrap();
    assert_eq!(total["entries"], 1);
    assert_eq!(total["hits"], 1);
    assert!((total["time_saved_seconds"].as_f64().unwrap() - 252.0).abs() < 1.0, "{total}");
    let inv = run(d, &["entries", "invalidate", "--key", entry["key"].as_str().unwrap()], b"");
    assert!(inv.status.success());
    assert_eq!(String::from_utf8_lossy(&inv.stdout).trim(), "invalidated 1 entries");
    let refused = run(d, &["entries", "invalidate"], b"");
    assert!(!refused.status.success(), "an empty filter must not wipe the cache");
    let out = json_out(&run(
        d,
        &["review", "--explain", "--now", "2026-11-02T11:00:00Z"],
        rerun(&review, "third").to_string().as_bytes(),
    ));
    assert_eq!(out["explain"]["decision"], "miss");
    assert_eq!(out["explain"]["nearest"]["state"], "invalidated", "{}", out["explain"]);
    let gc = run(d, &["gc"], b"");
    assert_eq!(String::from_utf8_lossy(&gc.stdout).trim(), "deleted 1 expired or invalidated entries");
}

#[test]
fn certs_prints_a_ca_bundle_and_writes_the_pair() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &["certs", "--out", "out", "--dns", "stepcache.stepcache.svc"], b"");
    assert!(o.status.success());
    use base64::Engine;
    let pem = base64::engine::general_purpose::STANDARD.decode(String::from_utf8_lossy(&o.stdout).trim()).unwrap();
    assert!(String::from_utf8_lossy(&pem).starts_with("-----BEGIN CERTIFICATE-----"));
    for f in ["ca.crt", "tls.crt", "tls.key"] {
        assert!(dir.path().join("out").join(f).exists(), "{f}");
    }
}

#[test]
fn every_command_documents_its_flags() {
    let dir = tempfile::tempdir().unwrap();
    for (cmd, flag) in [
        ("serve", "--database-url"),
        ("serve", "--request-deadline"),
        ("serve", "--shadow"),
        ("certs", "--dns"),
        ("migrate", "--database-url"),
        ("review", "--explain"),
        ("review", "--now"),
        ("key", "--scope"),
        ("record", "--task-result"),
        ("entries", "list"),
        ("gc", "--batch"),
        ("stats", "--output"),
    ] {
        let o = run(dir.path(), &[cmd, "--help"], b"");
        let help = String::from_utf8_lossy(&o.stdout);
        assert!(help.contains(flag), "{cmd} --help lacks {flag}:\n{help}");
    }
    let o = run(dir.path(), &["serve", "--help"], b"");
    assert!(String::from_utf8_lossy(&o.stdout).contains("STEPCACHE_DATABASE_URL"));
}

#[test]
fn review_says_when_it_assumed_a_task_result_write_that_mutate_would_need() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let review = fixture("v3.6-container-params.admission.json");
    let out = json_out(&run(d, &["review", "--explain"], review.to_string().as_bytes()));
    let pod = patched_pod(&review, &out["review"]);
    let done = succeeded(&pod, "pod-uid-36", "2026-11-01T10:00:00Z", "2026-11-01T10:04:12Z");
    std::fs::write(d.join("pod.json"), done.to_string()).unwrap();
    std::fs::write(d.join("tr.json"), task_result_for(&done, "7").to_string()).unwrap();
    json_out(&run(d, &["record", "--pod", "pod.json", "--task-result", "tr.json"], b""));
    let o = run(d, &["review", "--explain"], rerun(&review, "again").to_string().as_bytes());
    let out = json_out(&o);
    assert_eq!(out["explain"]["decision"], "hit", "{}", out["explain"]);
    let assumed = out["explain"]["offline_assumed"].as_array().unwrap();
    assert!(assumed[0].as_str().unwrap().contains("answers miss"), "{assumed:?}");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("offline difference from /mutate"), "{stderr}");
}

#[test]
fn database_url_is_accepted_after_the_entries_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("elsewhere.db");
    let url = format!("sqlite://{}", other.display());
    let after = run(dir.path(), &["entries", "list", "--database-url", &url, "-o", "json"], b"");
    assert_eq!(json_out(&after), json!([]));
    let before = run(dir.path(), &["entries", "--database-url", &url, "list", "-o", "json"], b"");
    assert_eq!(json_out(&before), json!([]));
    assert!(other.exists(), "the named database was used");
    assert!(!dir.path().join("stepcache.db").exists(), "the default database was not touched");
}

#[test]
fn started_at_is_when_main_started_not_when_the_pod_was_scheduled() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let review = fixture("v3.5-artifacts-s3.admission.json");
    let out = json_out(&run(d, &["review", "--explain"], review.to_string().as_bytes()));
    let pod = patched_pod(&review, &out["review"]);
    // Scheduled and initialised for 3 minutes; main then computed for 72 s.
    let mut done = succeeded(&pod, "pod-uid-slow-start", "2026-11-01T10:03:00Z", "2026-11-01T10:04:12Z");
    done["status"]["startTime"] = json!("2026-11-01T10:00:00Z");
    std::fs::write(d.join("pod.json"), done.to_string()).unwrap();
    std::fs::write(d.join("tr.json"), task_result_for(&done, "1").to_string()).unwrap();
    let entry = json_out(&run(d, &["record", "--pod", "pod.json", "--task-result", "tr.json"], b""));
    let shown = json_out(&run(d, &["entries", "show", &entry["id"].to_string()], b""));
    assert_eq!(shown["started_at"], "2026-11-01T10:03:00Z", "{shown}");
}

#[test]
fn a_hyphenated_word_is_a_staleness_syntax_error_not_a_negative_duration() {
    let dir = tempfile::tempdir().unwrap();
    let review = fixture("v3.6-container-params.admission.json");
    let o = run(dir.path(), &["review", "--default-staleness", "forever-ish"], review.to_string().as_bytes());
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("is not a duration"), "{err}");
    assert!(!err.contains("negative"), "{err}");
}
