//! The hit path end to end for every Argo layout: admit (miss, marked) → the step succeeds →
//! record → the same step in a new run is admitted → the patch yields a valid no-op pod that
//! hands Argo the stored outputs through the channel its controller version reads.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use crate::harness::*;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};
use std::sync::Arc;
use stepcache::admission::{Admitter, Ports};
use stepcache::mark::Signer;
use stepcache::metrics::Metrics;
use stepcache::recorder::assess::{OutputSources, RecordSettings};
use stepcache::recorder::{Attempt, Recorder};
use stepcache::store::Store;

pub fn recorder(store: Store) -> Recorder {
    Recorder {
        store,
        signer: Signer::new(SECRET).unwrap(),
        settings: Arc::new(RecordSettings { scope: Default::default(), default_expiry: None }),
        metrics: Arc::new(Metrics::new()),
        tags: Default::default(),
        configmaps: None,
        secret_digests: None,
    }
}

/// Admits `review` (expecting a miss), lets the step succeed with `value` outputs and records it.
/// Returns the succeeded pod and its task result.
pub async fn run_and_record(
    a: &Admitter,
    review: &Value,
    uid: &str,
    value: &str,
    now: jiff::Timestamp,
) -> (Value, Value) {
    let (resp, ex) = admit(a, review, now).await;
    assert_eq!(ex["decision"], "miss", "first admission must miss: {ex}");
    let pod = patched_pod(review, &resp);
    assert_eq!(pod["metadata"]["labels"]["stepcache.dev/record"], "true");
    let done = succeeded(&pod, uid, "2026-11-01T10:00:00Z", "2026-11-01T10:04:12Z");
    let tr = task_result_for(&done, value);
    let r = recorder(a.store.clone());
    let p: Pod = serde_json::from_value(done.clone()).unwrap();
    let attempt = r.record(&p, &OutputSources { task_result: Some(&tr), workflow: None }, now).await;
    assert!(matches!(attempt, Attempt::Recorded(_)), "{attempt:?}");
    (done, tr)
}

fn offline() -> Ports {
    Ports::offline()
}

fn argo_metadata(pod: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for m in ["labels", "annotations"] {
        for (k, v) in pod["metadata"][m].as_object().cloned().unwrap_or_default() {
            if k.starts_with("workflows.argoproj.io/")
                && k != "workflows.argoproj.io/outputs"
                && k != "workflows.argoproj.io/report-outputs-completed"
            {
                out.push((format!("{m}/{k}"), v.as_str().unwrap_or_default().to_owned()));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn every_step_fixture_misses_records_and_then_hits_with_a_valid_no_op_pod() {
    for name in STEP_FIXTURES {
        let dir = tempfile::tempdir().unwrap();
        let a = admitter(sqlite_store(dir.path()).await, config(), offline());
        let review = fixture(name);
        let now = ts("2026-11-01T10:05:00Z");
        let (_, tr) = run_and_record(&a, &review, "pod-1", "1234", now).await;

        let again = rerun(&review, "second");
        let (resp, ex) = admit(&a, &again, ts("2026-11-02T10:00:00Z")).await;
        assert_eq!(ex["decision"], "hit", "{name}: {ex}");
        assert_eq!(resp["response"]["uid"], again["request"]["uid"]);
        assert_eq!(resp["response"]["allowed"], true);
        assert_eq!(resp["response"]["patchType"], "JSONPatch");
        let before = &again["request"]["object"];
        let after = patched_pod(&again, &resp);
        let pod: Pod =
            serde_json::from_value(after.clone()).unwrap_or_else(|e| panic!("{name}: patched pod is not a Pod: {e}"));
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(after["metadata"]["name"], before["metadata"]["name"], "{name}");
        assert_eq!(after["metadata"]["ownerReferences"], before["metadata"]["ownerReferences"], "{name}");
        assert_eq!(argo_metadata(&after), argo_metadata(before), "{name}: Argo labels/annotations must survive");
        assert_eq!(after["spec"]["serviceAccountName"], before["spec"]["serviceAccountName"], "{name}");
        assert_eq!(spec.restart_policy.as_deref(), before["spec"]["restartPolicy"].as_str(), "{name}");
        assert_eq!(spec.containers.len(), 1, "{name}");
        assert_eq!(spec.containers[0].name, "main");
        assert!(spec.containers[0].volume_mounts.is_none());
        assert!(spec.init_containers.is_none(), "{name}: init containers must be dropped");
        assert!(spec.volumes.is_none(), "{name}: volumes must be dropped");
        assert_eq!(after["metadata"]["labels"]["stepcache.dev/decision"], "hit");
        assert!(after["metadata"]["labels"]["stepcache.dev/entry"].as_str().unwrap().parse::<i64>().is_ok());
        assert!(after["metadata"]["annotations"]["stepcache.dev/source-workflow"].as_str().is_some());
        assert_eq!(after["metadata"]["annotations"]["stepcache.dev/source-finished-at"], "2026-11-01T10:04:12Z");
        // Other labels (e.g. set by other webhooks) survive: the patch touches single keys only.
        for (k, v) in before["metadata"]["labels"].as_object().unwrap() {
            assert_eq!(&after["metadata"]["labels"][k], v, "{name}: label {k}");
        }
        let layout = ex["layout"].as_str().unwrap();
        let stored_outputs = &tr["outputs"];
        match layout {
            "template-annotation" | "template-env-all-containers" => {
                let ann: Value = serde_json::from_str(
                    after["metadata"]["annotations"]["workflows.argoproj.io/outputs"].as_str().unwrap(),
                )
                .unwrap();
                assert_eq!(&ann, stored_outputs, "{name}: outputs annotation");
            }
            _ => assert!(
                after["metadata"]["annotations"].get("workflows.argoproj.io/outputs").is_none(),
                "{name}: 3.6+ never reads the annotation"
            ),
        }
        if layout == "template-env-all-containers" {
            assert_eq!(after["metadata"]["annotations"]["workflows.argoproj.io/report-outputs-completed"], "true");
        }
        if layout == "template-annotation" {
            assert!(ex["creates"].as_array().unwrap().is_empty(), "{name}: no task results before 3.3");
        } else {
            let created = &ex["creates"][0];
            let node = before["metadata"]["annotations"]["workflows.argoproj.io/node-id"].as_str().unwrap();
            assert_eq!(created["kind"], "WorkflowTaskResult");
            assert_eq!(created["metadata"]["name"], node, "{name}: task result is named after the node id");
            assert_eq!(created["metadata"]["namespace"], before["metadata"]["namespace"]);
            assert_eq!(
                created["metadata"]["labels"]["workflows.argoproj.io/workflow"],
                before["metadata"]["labels"]["workflows.argoproj.io/workflow"]
            );
            assert_eq!(created["metadata"]["labels"]["workflows.argoproj.io/report-outputs-completed"], "true");
            assert!(created["metadata"]["labels"].get("workflows.argoproj.io/controller-instanceid").is_none());
            let owner = &created["metadata"]["ownerReferences"][0];
            assert_eq!(owner["kind"], "Workflow");
            assert_eq!(owner["name"], before["metadata"]["ownerReferences"][0]["name"]);
            assert_eq!(owner["uid"], before["metadata"]["ownerReferences"][0]["uid"]);
            assert!(owner.get("controller").is_none(), "Argo's own task results carry no controller flag");
            assert_eq!(&created["outputs"], stored_outputs, "{name}: task result outputs");
        }
        let kfp =
            before["metadata"]["labels"].as_object().unwrap().keys().any(|k| k.starts_with("pipelines.kubeflow.org/"));
        assert_eq!(
            after["metadata"]["labels"].get("pipelines.kubeflow.org/reused_from_cache").is_some(),
            kfp,
            "{name}"
        );
    }
}

#[tokio::test]
async fn an_entry_recorded_in_another_namespace_is_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let a = admitter(sqlite_store(dir.path()).await, config(), offline());
    let review = in_namespace(&fixture("v3.5-artifacts-s3.admission.json"), "team-a");
    run_and_record(&a, &review, "pod-a", "1", ts("2026-11-01T10:05:00Z")).await;
    let other = in_namespace(&rerun(&review, "b"), "team-b");
    let (_, ex) = admit(&a, &other, ts("2026-11-01T11:00:00Z")).await;
    assert_eq!(ex["decision"], "miss", "{ex}");
    let same = rerun(&review, "a2");
    let (_, ex) = admit(&a, &same, ts("2026-11-01T11:00:00Z")).await;
    assert_eq!(ex["decision"], "hit", "{ex}");
}

#[tokio::test]
async fn staleness_zero_and_opt_out_never_hit() {
    let dir = tempfile::tempdir().unwrap();
    let a = admitter(sqlite_store(dir.path()).await, config(), offline());
    let review = fixture("v3.3-container-params.admission.json");
    run_and_record(&a, &review, "pod-1", "1", ts("2026-11-01T10:05:00Z")).await;
    let zero = with_annotation(&rerun(&review, "z"), "stepcache.dev/max-cache-staleness", "P0D");
    let (resp, ex) = admit(&a, &zero, ts("2026-11-01T11:00:00Z")).await;
    assert_eq!(ex["decision"], "miss");
    // Still marked for recording: staleness 0 means "do not read", not "do not record".
    assert_eq!(patched_pod(&zero, &resp)["metadata"]["labels"]["stepcache.dev/record"], "true");
    let out = with_label(&rerun(&review, "o"), "stepcache.dev/enabled", "false");
    let (resp, ex) = admit(&a, &out, ts("2026-11-01T11:00:00Z")).await;
    assert_eq!(ex["detail"], "opted-out");
    assert!(resp["response"].get("patch").is_none());
    let kfp_out = with_label(&rerun(&review, "k"), "pipelines.kubeflow.org/enable_caching", "false");
    let (_, ex) = admit(&a, &kfp_out, ts("2026-11-01T11:00:00Z")).await;
    assert_eq!(ex["detail"], "opted-out");
}

#[tokio::test]
async fn a_step_with_a_different_argument_misses_and_the_miss_names_the_difference() {
    let dir = tempfile::tempdir().unwrap();
    let a = admitter(sqlite_store(dir.path()).await, config(), offline());
    let review = fixture("v3.6-container-params.admission.json");
    run_and_record(&a, &review, "pod-1", "1", ts("2026-11-01T10:05:00Z")).await;
    let mut changed = rerun(&review, "c");
    let containers = changed["request"]["object"]["spec"]["containers"].as_array_mut().unwrap();
    let main = containers.iter_mut().find(|c| c["name"] == "main").unwrap();
    let args = main["args"].as_array_mut().unwrap();
    let last = args.len() - 1;
    args[last] = json!("/tmp/other.txt");
    let (resp, ex) = admit(&a, &changed, ts("2026-11-01T11:00:00Z")).await;
    assert_eq!(ex["decision"], "miss");
    let diffs = ex["nearest"]["differences"].as_array().unwrap();
    assert!(diffs.iter().any(|d| d.as_str().unwrap().contains("/tmp/other.txt")), "{ex}");
    let reason = patched_pod(&changed, &resp)["metadata"]["annotations"]["stepcache.dev/miss-reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(reason.contains("/tmp/other.txt"), "{reason}");
}

#[tokio::test]
async fn shadow_mode_never_rewrites_but_counts_the_would_be_hit() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let a = admitter(store.clone(), config(), offline());
    let review = fixture("v3.3-container-params.admission.json");
    run_and_record(&a, &review, "pod-1", "1", ts("2026-11-01T10:05:00Z")).await;
    let mut cfg = config();
    cfg.admin.shadow = true;
    let shadow = admitter(store, cfg, offline());
    let again = rerun(&review, "s");
    let (resp, ex) = admit(&shadow, &again, ts("2026-11-01T11:00:00Z")).await;
    assert_eq!(ex["detail"], "shadow-hit");
    let after = patched_pod(&again, &resp);
    assert_eq!(after["spec"], again["request"]["object"]["spec"], "shadow mode must not touch the spec");
    assert!(shadow.metrics.encode().contains("decision=\"shadow-hit\""));
}

#[tokio::test]
async fn an_entry_missing_a_declared_output_is_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let a = admitter(store.clone(), config(), offline());
    let review = fixture("v3.6-container-params.admission.json");
    let (resp, _) = admit(&a, &review, ts("2026-11-01T10:05:00Z")).await;
    let done = succeeded(&patched_pod(&review, &resp), "pod-x", "2026-11-01T10:00:00Z", "2026-11-01T10:01:00Z");
    let mut tr = task_result_for(&done, "1");
    tr["outputs"] = json!({});
    let p: Pod = serde_json::from_value(done).unwrap();
    let attempt = recorder(store)
        .record(&p, &OutputSources { task_result: Some(&tr), workflow: None }, ts("2026-11-01T10:05:00Z"))
        .await;
    assert!(
        matches!(attempt, Attempt::Skipped(stepcache::recorder::assess::NotRecorded::OutputsIncomplete(_))),
        "{attempt:?}"
    );
    let (_, ex) = admit(&a, &rerun(&review, "n"), ts("2026-11-01T11:00:00Z")).await;
    assert_eq!(ex["decision"], "miss");
}

#[tokio::test]
async fn the_v41_supervisor_is_treated_like_wait_when_recording() {
    let dir = tempfile::tempdir().unwrap();
    let a = admitter(sqlite_store(dir.path()).await, config(), offline());
    let review = fixture("v4.1-initless-container-artifacts.admission.json");
    let (resp, ex) = admit(&a, &review, ts("2026-11-01T10:00:00Z")).await;
    assert_eq!(ex["decision"], "miss", "{ex}");
    assert_eq!(ex["layout"], "template-env-supervisor");
    let mut done =
        succeeded(&patched_pod(&review, &resp), "pod-initless", "2026-11-01T10:00:00Z", "2026-11-01T10:04:12Z");
    // The supervisor is Argo's: its state (still reporting outputs) must not decide success.
    for cs in done["status"]["containerStatuses"].as_array_mut().unwrap() {
        if cs["name"] == "supervisor" {
            cs["state"] = json!({"running": {"startedAt": "2026-11-01T10:00:00Z"}});
        }
    }
    let tr = task_result_for(&done, "7");
    let p: Pod = serde_json::from_value(done).unwrap();
    let attempt = recorder(a.store.clone())
        .record(&p, &OutputSources { task_result: Some(&tr), workflow: None }, ts("2026-11-01T10:05:00Z"))
        .await;
    let Attempt::Recorded(entry) = attempt else { panic!("{attempt:?}") };
    assert!(!entry.run.images.contains_key("supervisor"), "{:?}", entry.run.images);
    assert!(entry.run.images.contains_key("main"));
}

/// The review with its pod moved to namespace `ns`.
fn in_namespace(review: &Value, ns: &str) -> Value {
    let mut v = review.clone();
    v["request"]["namespace"] = json!(ns);
    v["request"]["object"]["metadata"]["namespace"] = json!(ns);
    v
}

#[tokio::test]
async fn cluster_scope_shares_only_between_the_namespaces_the_admin_lists() {
    use stepcache::key::Scope;
    use stepcache::policy::AdminPolicy;
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let admin = AdminPolicy { share_namespaces: vec!["team-a".into(), "team-b".into()], ..Default::default() };
    let cfg = stepcache::admission::AdmitConfig { scope: Scope::Cluster, admin, ..config() };
    let a = admitter(store.clone(), cfg, offline());
    let r = Recorder {
        settings: Arc::new(RecordSettings { scope: Scope::Cluster, default_expiry: None }),
        ..recorder(store.clone())
    };
    let base = fixture("v3.6-container-params.admission.json");
    let record = |review: Value, uid: &'static str| {
        let (a, r) = (a.clone(), r.clone());
        async move {
            let (resp, ex) = admit(&a, &review, ts("2026-11-01T10:00:00Z")).await;
            assert_eq!(ex["decision"], "miss", "{ex}");
            let done = succeeded(&patched_pod(&review, &resp), uid, "2026-11-01T10:00:00Z", "2026-11-01T10:04:12Z");
            let tr = task_result_for(&done, "5");
            let p: Pod = serde_json::from_value(done).unwrap();
            let attempt = r
                .record(&p, &OutputSources { task_result: Some(&tr), workflow: None }, ts("2026-11-01T10:05:00Z"))
                .await;
            assert!(matches!(attempt, Attempt::Recorded(_)), "{attempt:?}");
            ex["key"].as_str().unwrap().to_owned()
        }
    };
    let shared_key = record(in_namespace(&base, "team-a"), "pod-a").await;
    // Listed namespaces share: team-b is served team-a's run.
    let (_, ex) = admit(&a, &rerun(&in_namespace(&base, "team-b"), "b"), ts("2026-11-02T10:00:00Z")).await;
    assert_eq!(ex["decision"], "hit", "{ex}");
    assert_eq!(ex["key"], shared_key);
    // Any other namespace keeps a private cache, which the recorder still records.
    let private_key = record(rerun(&in_namespace(&base, "team-c"), "c"), "pod-c").await;
    assert_ne!(private_key, shared_key);
    let (_, ex) = admit(&a, &rerun(&in_namespace(&base, "team-c"), "c2"), ts("2026-11-02T10:00:00Z")).await;
    assert_eq!(ex["decision"], "hit", "{ex}");
    assert_eq!(ex["key"], private_key);
}

#[tokio::test]
async fn a_v41_initless_container_set_hit_keeps_one_no_op_per_user_container_and_drops_argos() {
    let mut review = fixture("v4.1-initless-container-artifacts.admission.json");
    let pod = &mut review["request"]["object"];
    let containers = pod["spec"]["containers"].as_array_mut().unwrap();
    let main = containers.iter().find(|c| c["name"] == "main").unwrap().clone();
    containers.retain(|c| c["name"] != "main");
    for n in ["a", "b"] {
        let mut c = main.clone();
        c["name"] = json!(n);
        containers.push(c);
    }
    let mut plugin = main.clone();
    plugin["name"] = json!("artifact-plugin-acme");
    containers.push(plugin);
    let sup = containers.iter_mut().find(|c| c["name"] == "supervisor").unwrap();
    let env = sup["env"].as_array_mut().unwrap();
    env.push(json!({"name": "ARGO_ARTIFACT_PLUGIN_NAMES", "value": "artifact-plugin-acme"}));
    for e in env.iter_mut() {
        if e["name"] == "ARGO_TEMPLATE" {
            let mut t: Value = serde_json::from_str(e["value"].as_str().unwrap()).unwrap();
            let c = t["container"].clone();
            t.as_object_mut().unwrap().remove("container");
            let mut a = c.clone();
            a["name"] = json!("a");
            let mut b = c;
            b["name"] = json!("b");
            t["containerSet"] = json!({"containers": [a, b]});
            t["outputs"]["artifacts"][0]["plugin"] = json!({"name": "acme"});
            e["value"] = json!(t.to_string());
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let a = admitter(sqlite_store(dir.path()).await, config(), offline());
    run_and_record(&a, &review, "pod-set", "3", ts("2026-11-01T10:05:00Z")).await;
    let again = rerun(&review, "set2");
    let (resp, ex) = admit(&a, &again, ts("2026-11-02T10:00:00Z")).await;
    assert_eq!(ex["decision"], "hit", "{ex}");
    let after: Pod = serde_json::from_value(patched_pod(&again, &resp)).unwrap();
    let spec = after.spec.unwrap();
    let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["a", "b"], "no supervisor, no plugin sidecar");
    assert!(spec.volumes.is_none(), "no argoexec-bin image volume, no credential secret");
}

#[tokio::test]
async fn outputs_too_large_for_the_pods_annotations_serve_a_miss_that_says_so_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let a = admitter(sqlite_store(dir.path()).await, config(), Ports::offline());
    // Argo ≤ 3.5 reads outputs from the pod's annotation: 256 KiB of output is more than the
    // API server lets a pod's annotations hold, so the hit pod would be refused (422).
    let review = fixture("v3.3-container-params.admission.json");
    let big = "x".repeat(256 * 1024);
    run_and_record(&a, &review, "pod-1", &big, ts("2026-11-01T10:05:00Z")).await;
    let (resp, ex) = admit(&a, &rerun(&review, "second"), ts("2026-11-01T11:00:00Z")).await;
    assert_eq!(ex["decision"], "miss", "{ex}");
    let reason = ex["reason"].as_str().unwrap();
    assert!(reason.contains("annotations would be") && reason.contains("262144-byte limit"), "{reason}");
    assert!(ex["creates"].as_array().unwrap().is_empty(), "no task result for a hit not served: {ex}");
    let warnings = resp["response"]["warnings"].as_array().unwrap();
    assert!(warnings.iter().any(|w| w.as_str().unwrap().contains("hit not served")), "{warnings:?}");
}
