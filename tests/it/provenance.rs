//! What the recorder stores must provably be this pod's: outputs from this pod's own task
//! result (same namespace, workflow label and owner uid), never empty outputs for a step whose
//! report is still to come, never a finish time from the future; and a latch leader that ends
//! without an entry, or a dry run, never leaves waiters waiting.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use crate::harness::*;
use crate::hitpath::{recorder, run_and_record};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};
use std::time::Duration;
use stepcache::admission::latch::LatchConfig;
use stepcache::admission::{AdmitConfig, Admitter, Ports};
use stepcache::recorder::assess::{NotRecorded, OutputSources};
use stepcache::recorder::Attempt;
use stepcache::store::{EntryFilter, Store};
use stepcache::types::CacheKey;

fn offline() -> Ports {
    Ports::offline()
}

async fn marked(store: &Store, review: &Value) -> Value {
    let a = admitter(store.clone(), config(), offline());
    let (resp, ex) = admit(&a, review, ts("2026-11-01T10:00:00Z")).await;
    assert_eq!(ex["decision"], "miss", "{ex}");
    patched_pod(review, &resp)
}

fn pod(v: &Value) -> Pod {
    serde_json::from_value(v.clone()).unwrap()
}

async fn count(store: &Store) -> usize {
    store.list(&EntryFilter::default(), 1000).await.unwrap().len()
}

async fn record_with(store: &Store, done: &Value, tr: Option<&Value>, now: &str) -> Attempt {
    recorder(store.clone()).record(&pod(done), &OutputSources { task_result: tr, ..Default::default() }, ts(now)).await
}

/// Sets `ARGO_INCLUDE_SCRIPT_OUTPUT` on every container of a review, as the controller does
/// when a later step reads `{{steps.x.outputs.result}}`.
fn capturing_result(review: &Value) -> Value {
    let mut v = review.clone();
    for list in ["initContainers", "containers"] {
        for c in v["request"]["object"]["spec"][list].as_array_mut().into_iter().flatten() {
            for e in c["env"].as_array_mut().into_iter().flatten() {
                if e["name"] == "ARGO_INCLUDE_SCRIPT_OUTPUT" {
                    e["value"] = json!("true");
                }
            }
        }
    }
    v
}

#[tokio::test]
async fn a_script_step_seen_succeeded_before_its_task_result_is_not_recorded_with_empty_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let done = succeeded(
        &marked(&store, &fixture("v3.7-script.admission.json")).await,
        "uid-s",
        "2026-11-01T10:00:00Z",
        "2026-11-01T10:02:00Z",
    );
    let a = record_with(&store, &done, None, "2026-11-01T10:03:00Z").await;
    assert!(matches!(a, Attempt::Skipped(NotRecorded::OutputsPending)), "{a:?}");
    assert!(!a.is_final(), "the task result is still to come");
    assert_eq!(count(&store).await, 0);
    let tr = task_result_for(&done, "64");
    let Attempt::Recorded(e) = record_with(&store, &done, Some(&tr), "2026-11-01T10:03:00Z").await else { panic!() };
    assert_eq!(e.run.outputs.result.as_deref(), Some("64"));
}

#[tokio::test]
async fn a_step_whose_executor_captures_result_is_not_recorded_without_it() {
    // Argo 3.3 layout, container template whose stdout a later step reads as `result`.
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let review = capturing_result(&fixture("v3.3-container-params.admission.json"));
    let done = succeeded(&marked(&store, &review).await, "uid-r", "2026-11-01T10:00:00Z", "2026-11-01T10:02:00Z");
    let tr = task_result_for(&done, "7");
    assert!(tr["outputs"].get("result").is_none());
    let a = record_with(&store, &done, Some(&tr), "2026-11-01T10:03:00Z").await;
    assert!(
        matches!(&a, Attempt::Skipped(NotRecorded::OutputsIncomplete(m)) if m.contains(&"result".to_owned())),
        "{a:?}"
    );
    let mut with_result = tr.clone();
    with_result["outputs"]["result"] = json!("7");
    let a = record_with(&store, &done, Some(&with_result), "2026-11-01T10:03:00Z").await;
    assert!(matches!(a, Attempt::Recorded(_)), "{a:?}");
}

#[tokio::test]
async fn an_unlabelled_task_result_owned_by_the_pod_as_argo_3_4_writes_it_is_recorded() {
    // v3.3.2–v3.5.1: no report-outputs-completed label, owner is the pod itself.
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let done = succeeded(
        &marked(&store, &fixture("v3.5-artifacts-s3.admission.json")).await,
        "uid-pod-owner",
        "2026-11-01T10:00:00Z",
        "2026-11-01T10:02:00Z",
    );
    let mut tr = task_result_for(&done, "1");
    tr["metadata"]["labels"].as_object_mut().unwrap().remove("workflows.argoproj.io/report-outputs-completed");
    tr["metadata"]["ownerReferences"] =
        json!([{"apiVersion": "v1", "kind": "Pod", "name": done["metadata"]["name"], "uid": "uid-pod-owner"}]);
    let a = record_with(&store, &done, Some(&tr), "2026-11-01T10:03:00Z").await;
    assert!(matches!(a, Attempt::Recorded(_)), "{a:?}");
}

#[tokio::test]
async fn a_task_result_of_another_workflow_or_namespace_is_never_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let done = succeeded(
        &marked(&store, &fixture("v3.6-container-params.admission.json")).await,
        "uid-p",
        "2026-11-01T10:00:00Z",
        "2026-11-01T10:02:00Z",
    );
    let good = task_result_for(&done, "150");
    let mut other_uid = good.clone();
    other_uid["metadata"]["ownerReferences"][0]["uid"] = json!("uid-of-an-earlier-workflow-of-the-same-name");
    let mut other_wf = good.clone();
    other_wf["metadata"]["labels"]["workflows.argoproj.io/workflow"] = json!("attacker-wf");
    let mut other_ns = good.clone();
    other_ns["metadata"]["namespace"] = json!("attacker");
    let mut no_owner = good.clone();
    no_owner["metadata"].as_object_mut().unwrap().remove("ownerReferences");
    let mut pod_owner_wrong_uid = good.clone();
    pod_owner_wrong_uid["metadata"]["ownerReferences"] =
        json!([{"apiVersion": "v1", "kind": "Pod", "name": done["metadata"]["name"], "uid": "another-pod"}]);
    for forged in [other_uid, other_wf, other_ns, no_owner, pod_owner_wrong_uid] {
        let a = record_with(&store, &done, Some(&forged), "2026-11-01T10:03:00Z").await;
        assert!(matches!(a, Attempt::Skipped(NotRecorded::ForeignSource(_))), "{forged}: {a:?}");
        assert!(!a.is_final(), "the pod's own result may still come");
    }
    assert_eq!(count(&store).await, 0);
    assert!(matches!(record_with(&store, &done, Some(&good), "2026-11-01T10:03:00Z").await, Attempt::Recorded(_)));
}

#[tokio::test]
async fn a_finish_time_from_the_future_is_clamped_when_slight_and_refused_when_far() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let base = fixture("v3.6-container-params.admission.json");
    let skewed =
        succeeded(&marked(&store, &rerun(&base, "a")).await, "uid-a", "2026-11-01T10:00:00Z", "2026-11-01T10:05:00Z");
    let tr = task_result_for(&skewed, "1");
    let Attempt::Recorded(e) = record_with(&store, &skewed, Some(&tr), "2026-11-01T10:03:00Z").await else { panic!() };
    assert_eq!(
        e.run.finished_at,
        ts("2026-11-01T10:03:00Z"),
        "two minutes of node skew: clamped to the recorder's clock"
    );
    let far =
        succeeded(&marked(&store, &rerun(&base, "b")).await, "uid-b", "2099-01-01T00:00:00Z", "2099-01-01T00:00:05Z");
    let tr = task_result_for(&far, "1");
    let a = record_with(&store, &far, Some(&tr), "2026-11-01T10:03:00Z").await;
    assert!(matches!(a, Attempt::Skipped(NotRecorded::FinishedInFuture { .. })), "{a:?}");
    assert!(a.is_final());
    assert_eq!(count(&store).await, 1);
}

#[tokio::test]
async fn an_entry_whose_finish_lies_in_the_future_is_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let a = admitter(sqlite_store(dir.path()).await, config(), offline());
    let review = fixture("v3.6-container-params.admission.json");
    // Recorded (by an older recorder, or a skewed replica) with a finish after the lookup's clock.
    run_and_record(&a, &review, "pod-1", "42", ts("2026-11-01T10:05:00Z")).await;
    let again = rerun(&review, "second");
    let (_, ex) = admit(&a, &again, ts("2026-11-01T10:04:00Z")).await;
    assert_eq!(ex["decision"], "miss", "an entry finished 'later than now' is not fresh: {ex}");
    let (_, ex) = admit(&a, &again, ts("2026-11-01T10:05:00Z")).await;
    assert_eq!(ex["decision"], "hit", "{ex}");
}

#[tokio::test]
async fn the_miss_explanation_uses_the_lookups_millisecond_staleness_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let a = admitter(sqlite_store(dir.path()).await, config(), offline());
    let review =
        with_annotation(&fixture("v3.6-container-params.admission.json"), "stepcache.dev/max-cache-staleness", "60s");
    // Finished 10:04:12.000 (run_and_record's pod).
    run_and_record(&a, &review, "pod-1", "42", ts("2026-11-01T10:05:00Z")).await;
    let again = rerun(&review, "second");
    let (_, ex) = admit(&a, &again, ts("2026-11-01T10:05:12.400Z")).await;
    assert_eq!(ex["decision"], "miss", "60.4 s old with a 60 s staleness: {ex}");
    assert_eq!(ex["nearest"]["state"], "stale", "{ex}");
    let (_, ex) = admit(&a, &again, ts("2026-11-01T10:05:12Z")).await;
    assert_eq!(ex["decision"], "hit", "exactly 60 s old still counts: {ex}");
}

#[tokio::test]
async fn sub_second_staleness_warns_that_it_never_reuses() {
    let dir = tempfile::tempdir().unwrap();
    let a = admitter(sqlite_store(dir.path()).await, config(), offline());
    for raw in ["300ms", "PT0.9S"] {
        let review =
            with_annotation(&fixture("v3.6-container-params.admission.json"), "stepcache.dev/max-cache-staleness", raw);
        let (resp, ex) = admit(&a, &review, ts("2026-11-01T10:00:00Z")).await;
        assert_eq!(ex["staleness"], 0, "{raw}: {ex}");
        let warnings = resp["response"]["warnings"].to_string();
        assert!(warnings.contains("under one second"), "{raw}: {resp}");
    }
}

fn latch_admitter(store: Store) -> Admitter {
    let mut c: AdmitConfig = config();
    c.admin.latch = true;
    c.latch = Some(LatchConfig {
        url: "https://stepcache.test/latch".into(),
        ca_bundle: None,
        window: Duration::from_secs(3600),
        timeout: Duration::from_secs(6 * 3600),
    });
    admitter(store, c, offline())
}

fn latched(review: &Value) -> Value {
    with_annotation(review, "stepcache.dev/latch", "true")
}

#[tokio::test]
async fn a_dry_run_admission_never_becomes_a_latch_leader() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let a = latch_admitter(store.clone());
    let mut dry = latched(&fixture("v3.6-container-params.admission.json"));
    dry["request"]["dryRun"] = json!(true);
    let (_, ex) = admit(&a, &dry, ts("2026-11-01T10:00:00Z")).await;
    assert_eq!(ex["decision"], "miss", "{ex}");
    let key = CacheKey::parse(ex["key"].as_str().unwrap()).unwrap();
    assert_eq!(store.latch_get(&key).await.unwrap(), None, "a dry run writes no latch");
    // The real step then leads, and an identical one waits for it; a dry run of that one says so.
    let (_, real) =
        admit(&a, &latched(&rerun(&fixture("v3.6-container-params.admission.json"), "r1")), ts("2026-11-01T10:00:01Z"))
            .await;
    assert_eq!(real["decision"], "miss", "{real}");
    let mut dry2 = latched(&rerun(&fixture("v3.6-container-params.admission.json"), "r2"));
    dry2["request"]["dryRun"] = json!(true);
    let (_, ex) = admit(&a, &dry2, ts("2026-11-01T10:00:02Z")).await;
    assert_eq!(ex["decision"], "latched", "{ex}");
    assert_eq!(store.latch_get(&key).await.unwrap().unwrap().generation, 1, "the dry run changed nothing");
}

#[tokio::test]
async fn a_leader_that_succeeds_without_being_recorded_releases_its_latch() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let a = latch_admitter(store.clone());
    let review = latched(&fixture("v3.6-container-params.admission.json"));
    let (resp, ex) = admit(&a, &review, ts("2026-11-01T10:00:00Z")).await;
    assert_eq!(ex["decision"], "miss", "{ex}");
    let key = CacheKey::parse(ex["key"].as_str().unwrap()).unwrap();
    let done = succeeded(&patched_pod(&review, &resp), "leader", "2026-11-01T10:00:00Z", "2026-11-01T10:02:00Z");
    let mut tr = task_result_for(&done, "1");
    tr["outputs"] = json!({"parameters": []});
    let a = record_with(&store, &done, Some(&tr), "2026-11-01T10:03:00Z").await;
    assert!(matches!(a, Attempt::Skipped(NotRecorded::OutputsIncomplete(_))), "{a:?}");
    assert_eq!(store.latch_get(&key).await.unwrap().unwrap().state, "failed", "waiters are released");
}

#[tokio::test]
async fn a_pod_with_a_forged_mark_cannot_settle_anothers_latch() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let a = latch_admitter(store.clone());
    let review = latched(&fixture("v3.6-container-params.admission.json"));
    let (resp, ex) = admit(&a, &review, ts("2026-11-01T10:00:00Z")).await;
    let key = CacheKey::parse(ex["key"].as_str().unwrap()).unwrap();
    // Same name and key, another namespace, a mark copied from the leader: failed at once.
    let mut impostor = failed(&patched_pod(&review, &resp), "impostor", 1, "Error");
    impostor["metadata"]["namespace"] = json!("attacker");
    let tr = task_result_for(&impostor, "1");
    record_with(&store, &impostor, Some(&tr), "2026-11-01T10:03:00Z").await;
    recorder(store.clone()).settle_latch(&pod(&impostor), false).await;
    assert_eq!(store.latch_get(&key).await.unwrap().unwrap().state, "running", "the leader still leads");
}

#[tokio::test]
async fn a_waiter_promoted_from_another_namespace_settles_its_own_latch() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let key = CacheKey::parse(&format!("v1:{}", "ab".repeat(32))).unwrap();
    let now = ts("2026-11-01T10:00:00Z");
    store.latch_acquire(&key, "team-a", "leader", now, Duration::from_secs(3600)).await.unwrap();
    assert!(!store.latch_finish(&key, "team-b", "leader", false).await.unwrap(), "same name, other namespace");
    assert!(store.latch_finish(&key, "team-a", "leader", false).await.unwrap());
    assert!(store.latch_promote(&key, "team-b", "waiter", now, Duration::from_secs(60)).await.unwrap());
    let l = store.latch_get(&key).await.unwrap().unwrap();
    assert_eq!((l.namespace.as_str(), l.leader_pod.as_str(), l.state.as_str()), ("team-b", "waiter", "running"));
    assert!(store.latch_finish(&key, "team-b", "waiter", false).await.unwrap(), "the promoted pod's failure settles");
}
