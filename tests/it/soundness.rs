//! The pod author is not trusted: pods that arrive with outputs or stepcache marks already set,
//! pods whose caching KFP owns, system namespaces and dry runs never lead to a served or
//! recorded answer the author chose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use crate::harness::*;
use crate::hitpath::run_and_record;
use serde_json::{json, Value};
use stepcache::admission::{Admitter, Ports};

fn offline() -> Ports {
    Ports::offline()
}

/// An admitter whose store already holds a recorded run of `name`, and the rerun that would hit.
async fn with_entry(dir: &std::path::Path, name: &str) -> (Admitter, Value) {
    let a = admitter(sqlite_store(dir).await, config(), offline());
    let review = fixture(name);
    run_and_record(&a, &review, "pod-1", "42", ts("2026-11-01T10:05:00Z")).await;
    let again = rerun(&review, "second");
    let (_, ex) = admit(&a, &again, ts("2026-11-02T10:00:00Z")).await;
    assert_eq!(ex["decision"], "hit", "the unmodified rerun hits: {ex}");
    (a, again)
}

fn assert_left_alone(resp: &Value, ex: &Value, warns: bool) {
    assert_eq!(ex["decision"], "skip", "{ex}");
    assert!(ex["patch"].as_array().unwrap().is_empty(), "no patch: {ex}");
    assert!(ex["creates"].as_array().unwrap().is_empty(), "nothing created: {ex}");
    assert!(resp["response"].get("patch").is_none(), "{resp}");
    assert_eq!(resp["response"]["allowed"], true);
    let warned = resp["response"]["warnings"].as_array().is_some_and(|w| !w.is_empty());
    assert_eq!(warned, warns, "{resp}");
}

#[tokio::test]
async fn a_pod_arriving_with_argo_outputs_already_set_is_neither_served_nor_marked() {
    for name in ["v3.3-container-params.admission.json", "v3.5-artifacts-s3.admission.json"] {
        let dir = tempfile::tempdir().unwrap();
        let (a, again) = with_entry(dir.path(), name).await;
        let forged =
            with_annotation(&again, "workflows.argoproj.io/outputs", r#"{"parameters":[{"name":"x","value":"evil"}]}"#);
        let (resp, ex) = admit(&a, &forged, ts("2026-11-02T10:00:00Z")).await;
        assert_left_alone(&resp, &ex, true);
        assert!(ex["reason"].as_str().unwrap().contains("workflows.argoproj.io/outputs"), "{ex}");
    }
}

#[tokio::test]
async fn a_pod_arriving_with_stepcache_marks_or_decisions_is_neither_served_nor_marked() {
    let dir = tempfile::tempdir().unwrap();
    let (a, again) = with_entry(dir.path(), "v3.6-container-params.admission.json").await;
    let cases = [
        with_label(&again, "stepcache.dev/record", "true"),
        with_label(&again, "stepcache.dev/decision", "hit"),
        with_annotation(&again, "stepcache.dev/mark", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        with_annotation(
            &again,
            "stepcache.dev/key",
            "v1:0000000000000000000000000000000000000000000000000000000000000000",
        ),
        with_annotation(&again, "stepcache.dev/staleness", "-1"),
    ];
    for review in cases {
        let (resp, ex) = admit(&a, &review, ts("2026-11-02T10:00:00Z")).await;
        assert_left_alone(&resp, &ex, true);
    }
    // The author's own knobs are still honoured.
    let seeded = with_annotation(&again, "stepcache.dev/max-cache-staleness", "P30D");
    let (_, ex) = admit(&a, &seeded, ts("2026-11-02T10:00:00Z")).await;
    assert_eq!(ex["decision"], "hit", "{ex}");
}

#[tokio::test]
async fn kfp_v2_and_tfx_component_pods_are_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let (a, again) = with_entry(dir.path(), "kfp-v1-staleness.admission.json").await;
    let mut tfx_entry = again.clone();
    let main = tfx_entry["request"]["object"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|c| c["name"] == "main")
        .unwrap();
    let cmd = main["command"].as_array_mut().unwrap();
    cmd.push(json!("/tfx-src/tfx/orchestration/kubeflow/container_entrypoint.py"));
    let cases = [
        with_annotation(&again, "pipelines.kubeflow.org/v2_component", "true"),
        with_label(&again, "pipelines.kubeflow.org/pipeline-sdk-type", "tfx"),
        with_label(&again, "pipelines.kubeflow.org/pipeline-sdk-type", "tfx-template"),
        tfx_entry,
    ];
    for review in cases {
        let (resp, ex) = admit(&a, &review, ts("2026-11-02T10:00:00Z")).await;
        assert_left_alone(&resp, &ex, false);
    }
}

#[tokio::test]
async fn pods_in_kube_public_and_kube_system_are_never_acted_on() {
    let dir = tempfile::tempdir().unwrap();
    let a = admitter(sqlite_store(dir.path()).await, config(), offline());
    for ns in ["kube-public", "kube-system"] {
        let review = in_namespace(&fixture("v3.6-container-params.admission.json"), ns);
        let (resp, ex) = admit(&a, &review, ts("2026-11-01T10:00:00Z")).await;
        assert_left_alone(&resp, &ex, false);
    }
}

#[tokio::test]
async fn a_dry_run_hit_lists_no_task_result_under_creates() {
    let dir = tempfile::tempdir().unwrap();
    let (a, again) = with_entry(dir.path(), "v3.6-container-params.admission.json").await;
    let mut dry = again.clone();
    dry["request"]["dryRun"] = json!(true);
    let (_, ex) = admit(&a, &dry, ts("2026-11-02T10:00:00Z")).await;
    assert_eq!(ex["decision"], "hit", "{ex}");
    assert_eq!(ex["creates"], json!([]), "a dry run writes nothing and must not say it does: {ex}");
    let (_, real) = admit(&a, &again, ts("2026-11-02T10:00:00Z")).await;
    assert_eq!(real["creates"].as_array().unwrap().len(), 1, "a real hit lists its task result: {real}");
}
