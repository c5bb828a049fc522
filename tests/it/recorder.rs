//! The recorder: exactly once, only real successes with complete outputs, only valid marks,
//! whatever order pod and task-result events arrive in.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use crate::harness::*;
use crate::hitpath::recorder;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};
use stepcache::admission::Ports;
use stepcache::recorder::assess::{NotRecorded, OutputSources};
use stepcache::recorder::watch::{process, Tracker};
use stepcache::recorder::Attempt;
use stepcache::store::{EntryFilter, Store};

fn offline() -> Ports {
    Ports::offline()
}

/// Admits the v3.6 fixture and returns the marked pod.
async fn marked_pod(store: &Store, name: &str) -> Value {
    let a = admitter(store.clone(), config(), offline());
    let review = fixture(name);
    let (resp, ex) = admit(&a, &review, ts("2026-11-01T10:00:00Z")).await;
    assert_eq!(ex["decision"], "miss");
    patched_pod(&review, &resp)
}

async fn count(store: &Store) -> usize {
    store.list(&EntryFilter::default(), 1000).await.unwrap().len()
}

fn pod(v: &Value) -> Pod {
    serde_json::from_value(v.clone()).unwrap()
}

#[tokio::test]
async fn a_success_is_recorded_once_even_when_events_repeat() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let marked = marked_pod(&store, "v3.6-container-params.admission.json").await;
    let done = succeeded(&marked, "uid-1", "2026-11-01T10:00:00Z", "2026-11-01T10:02:00Z");
    let tr = task_result_for(&done, "150");
    let r = recorder(store.clone());
    let src = OutputSources { task_result: Some(&tr), workflow: None };
    let first = r.record(&pod(&done), &src, ts("2026-11-01T10:03:00Z")).await;
    let Attempt::Recorded(e) = first else { panic!("{first:?}") };
    assert_eq!(e.run.outputs.parameters[0].value.as_deref(), Some("150"));
    assert_eq!(e.run.pod_uid, "uid-1");
    assert_eq!(e.run.finished_at, ts("2026-11-01T10:02:00Z"));
    assert!(!e.run.image_digests.is_empty(), "image digests that ran are kept");
    for _ in 0..3 {
        assert!(matches!(r.record(&pod(&done), &src, ts("2026-11-01T10:04:00Z")).await, Attempt::AlreadyRecorded(_)));
    }
    assert_eq!(count(&store).await, 1);
    assert!(r.metrics.encode().contains("stepcache_recorder_recorded_total 1"));
}

#[tokio::test]
async fn failed_oom_killed_and_unfinished_pods_are_never_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let marked = marked_pod(&store, "v3.6-container-params.admission.json").await;
    let r = recorder(store.clone());
    let tr = task_result_for(&succeeded(&marked, "u", "2026-11-01T10:00:00Z", "2026-11-01T10:02:00Z"), "1");
    let src = OutputSources { task_result: Some(&tr), workflow: None };
    for bad in [failed(&marked, "u1", 1, "Error"), failed(&marked, "u2", 137, "OOMKilled")] {
        let a = r.record(&pod(&bad), &src, ts("2026-11-01T10:03:00Z")).await;
        assert!(matches!(a, Attempt::Skipped(NotRecorded::NotSucceeded(_))), "{a:?}");
    }
    let mut evicted = failed(&marked, "u3", 0, "Completed");
    evicted["status"]["reason"] = json!("Evicted");
    assert!(matches!(
        r.record(&pod(&evicted), &src, ts("2026-11-01T10:03:00Z")).await,
        Attempt::Skipped(NotRecorded::NotSucceeded(_))
    ));
    let mut running = succeeded(&marked, "u4", "2026-11-01T10:00:00Z", "2026-11-01T10:02:00Z");
    running["status"]["phase"] = json!("Running");
    assert!(matches!(
        r.record(&pod(&running), &src, ts("2026-11-01T10:03:00Z")).await,
        Attempt::Skipped(NotRecorded::NotFinished(_))
    ));
    assert_eq!(count(&store).await, 0);
}

#[tokio::test]
async fn a_forged_or_replayed_mark_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let marked = marked_pod(&store, "v3.6-container-params.admission.json").await;
    let r = recorder(store.clone());
    // Forged: a user writes the mark annotations by hand.
    let mut forged = succeeded(&marked, "f1", "2026-11-01T10:00:00Z", "2026-11-01T10:02:00Z");
    forged["metadata"]["annotations"]["stepcache.dev/mark"] = json!("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let tr = task_result_for(&forged, "1");
    let a = r
        .record(&pod(&forged), &OutputSources { task_result: Some(&tr), workflow: None }, ts("2026-11-01T10:03:00Z"))
        .await;
    assert!(matches!(a, Attempt::Skipped(NotRecorded::ForgedMark(_))), "{a:?}");
    // Replayed: a valid mark copied onto another pod of another workflow.
    let mut replayed = succeeded(&marked, "f2", "2026-11-01T10:00:00Z", "2026-11-01T10:02:00Z");
    replayed["metadata"]["name"] = json!("someone-elses-pod");
    let a = r
        .record(&pod(&replayed), &OutputSources { task_result: Some(&tr), workflow: None }, ts("2026-11-01T10:03:00Z"))
        .await;
    assert!(matches!(a, Attempt::Skipped(NotRecorded::ForgedMark(_))), "{a:?}");
    // Staleness annotation edited after admission.
    let mut edited = succeeded(&marked, "f3", "2026-11-01T10:00:00Z", "2026-11-01T10:02:00Z");
    edited["metadata"]["annotations"]["stepcache.dev/staleness"] = json!("5");
    let a = r
        .record(&pod(&edited), &OutputSources { task_result: Some(&tr), workflow: None }, ts("2026-11-01T10:03:00Z"))
        .await;
    assert!(matches!(a, Attempt::Skipped(NotRecorded::ForgedMark(_))), "{a:?}");
    assert_eq!(count(&store).await, 0);
}

/// Argo ≥ 3.6 reports a script's `result` (never declared) only in the task result, which may
/// arrive after the pod is seen as Succeeded: recording then would store empty outputs.
#[tokio::test]
async fn a_script_seen_succeeded_before_its_task_result_waits_for_its_result() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let marked = marked_pod(&store, "v3.7-script.admission.json").await;
    let done = succeeded(&marked, "uid-s", "2026-11-01T10:00:00Z", "2026-11-01T10:02:00Z");
    let r = recorder(store.clone());
    let early = OutputSources { task_result: None, workflow: None };
    let a = r.record(&pod(&done), &early, ts("2026-11-01T10:03:00Z")).await;
    assert!(matches!(a, Attempt::Skipped(NotRecorded::OutputsPending)), "{a:?}");
    assert!(!a.is_final(), "the pod stays pending until its task result arrives");
    let tr = task_result_for(&done, "42");
    let a = r
        .record(&pod(&done), &OutputSources { task_result: Some(&tr), workflow: None }, ts("2026-11-01T10:03:00Z"))
        .await;
    let Attempt::Recorded(e) = a else { panic!("{a:?}") };
    assert_eq!(e.run.outputs.result.as_deref(), Some("42"));
}

#[tokio::test]
async fn a_placeholder_task_result_waits_and_the_completed_one_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let marked = marked_pod(&store, "v3.6-container-params.admission.json").await;
    let done = succeeded(&marked, "uid-p", "2026-11-01T10:00:00Z", "2026-11-01T10:02:00Z");
    let mut placeholder = task_result_for(&done, "1");
    placeholder["metadata"]["labels"]["workflows.argoproj.io/report-outputs-completed"] = json!("false");
    placeholder["outputs"] = json!({});
    let r = recorder(store.clone());
    let a = r
        .record(
            &pod(&done),
            &OutputSources { task_result: Some(&placeholder), workflow: None },
            ts("2026-11-01T10:03:00Z"),
        )
        .await;
    assert!(matches!(a, Attempt::Skipped(NotRecorded::OutputsPending)), "{a:?}");
    assert!(!a.is_final(), "pending outputs keep the pod in the pending set");
    let tr = task_result_for(&done, "9");
    let a = r
        .record(&pod(&done), &OutputSources { task_result: Some(&tr), workflow: None }, ts("2026-11-01T10:03:00Z"))
        .await;
    assert!(matches!(a, Attempt::Recorded(_)), "{a:?}");
}

#[tokio::test]
async fn the_task_result_before_or_after_the_pod_phase_change_records_once() {
    for result_first in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(dir.path()).await;
        let marked = marked_pod(&store, "v3.6-container-params.admission.json").await;
        let r = recorder(store.clone());
        let mut t = Tracker::default();
        let mut running = succeeded(&marked, "uid-t", "2026-11-01T10:00:00Z", "2026-11-01T10:02:00Z");
        running["status"]["phase"] = json!("Running");
        let done = succeeded(&marked, "uid-t", "2026-11-01T10:00:00Z", "2026-11-01T10:02:00Z");
        let tr = task_result_for(&done, "5");
        assert!(t.on_pod(pod(&running), false).is_none(), "running pods are not assessed");
        if result_first {
            assert!(t.on_task_result(tr.clone()).is_empty());
            let uid = t.on_pod(pod(&done), false).unwrap();
            process(&mut t, &r, None, &uid, false).await;
        } else {
            let uid = t.on_pod(pod(&done), false).unwrap();
            process(&mut t, &r, None, &uid, false).await;
            assert_eq!(t.len(), 1, "waits for the task result");
            for uid in t.on_task_result(tr.clone()) {
                process(&mut t, &r, None, &uid, false).await;
            }
        }
        assert!(t.is_empty());
        // A duplicate event after recording changes nothing.
        assert!(t.on_pod(pod(&done), false).is_none());
        assert_eq!(count(&store).await, 1, "result_first={result_first}");
    }
}

/// Node ids derive from the workflow name: a task result of an earlier run of a workflow with
/// the same name carries this node's name but another Workflow owner, and is not this step's.
#[tokio::test]
async fn a_task_result_owned_by_another_workflow_is_not_this_steps() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let marked = marked_pod(&store, "v3.6-container-params.admission.json").await;
    let done = succeeded(&marked, "uid-o", "2026-11-01T10:00:00Z", "2026-11-01T10:02:00Z");
    let mut tr = task_result_for(&done, "earlier");
    let owner =
        |uid: &str| json!([{"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "name": "w", "uid": uid}]);
    tr["metadata"]["ownerReferences"] = owner("an-earlier-workflow-uid");
    let r = recorder(store.clone());
    let src = OutputSources { task_result: Some(&tr), workflow: None };
    let a = r.record(&pod(&done), &src, ts("2026-11-01T10:03:00Z")).await;
    assert!(matches!(a, Attempt::Skipped(NotRecorded::ForeignSource(_))), "{a:?}");
    tr["metadata"]["ownerReferences"] = owner(done["metadata"]["ownerReferences"][0]["uid"].as_str().unwrap());
    let src = OutputSources { task_result: Some(&tr), workflow: None };
    let a = r.record(&pod(&done), &src, ts("2026-11-01T10:03:00Z")).await;
    assert!(matches!(a, Attempt::Recorded(_)), "its own Workflow's task result records: {a:?}");
}

#[tokio::test]
async fn a_deleted_task_result_is_forgotten_by_the_tracker() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let marked = marked_pod(&store, "v3.6-container-params.admission.json").await;
    let done = succeeded(&marked, "uid-d", "2026-11-01T10:00:00Z", "2026-11-01T10:02:00Z");
    let tr = task_result_for(&done, "gone");
    let mut t = Tracker::default();
    assert!(t.on_task_result(tr.clone()).is_empty());
    t.on_task_result_deleted(&tr);
    let uid = t.on_pod(pod(&done), false).unwrap();
    let (_, found) = t.sources(&uid).unwrap();
    assert!(found.is_none(), "a deleted task result supplies nothing");
}

#[tokio::test]
async fn a_pod_deleted_by_pod_gc_after_success_is_still_recorded_from_the_workflow_status() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let marked = marked_pod(&store, "v3.6-container-params.admission.json").await;
    let done = succeeded(&marked, "uid-g", "2026-11-01T10:00:00Z", "2026-11-01T10:02:00Z");
    let tr = task_result_for(&done, "77");
    let wf = workflow_with_node(&done, json!({"phase": "Succeeded", "outputs": tr["outputs"].clone()}));
    let a = recorder(store.clone())
        .record(&pod(&done), &OutputSources { task_result: None, workflow: Some(&wf) }, ts("2026-11-01T10:03:00Z"))
        .await;
    let Attempt::Recorded(e) = a else { panic!("{a:?}") };
    assert_eq!(e.run.outputs.parameters[0].value.as_deref(), Some("77"));
}

#[tokio::test]
async fn a_pod_deleted_before_completion_is_never_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let marked = marked_pod(&store, "v3.6-container-params.admission.json").await;
    let mut t = Tracker::default();
    let mut running = succeeded(&marked, "uid-d", "2026-11-01T10:00:00Z", "2026-11-01T10:02:00Z");
    running["status"]["phase"] = json!("Running");
    assert!(t.on_pod(pod(&running), true).is_none());
    assert!(t.is_empty());
    // A late success event for the same pod is ignored.
    let done = succeeded(&marked, "uid-d", "2026-11-01T10:00:00Z", "2026-11-01T10:02:00Z");
    assert!(t.on_pod(pod(&done), false).is_none());
    assert_eq!(count(&store).await, 0);
}

#[tokio::test]
async fn a_legacy_outputs_annotation_records_on_argo_3_3() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let marked = marked_pod(&store, "kfp-v1-staleness.admission.json").await;
    let mut done = succeeded(&marked, "uid-k", "2026-11-01T10:00:00Z", "2026-11-01T10:02:00Z");
    let outputs = task_result_for(&done, "0.93")["outputs"].clone();
    done["metadata"]["annotations"]["workflows.argoproj.io/outputs"] = json!(outputs.to_string());
    let a = recorder(store.clone()).record(&pod(&done), &OutputSources::default(), ts("2026-11-01T10:03:00Z")).await;
    assert!(matches!(a, Attempt::Recorded(_)), "{a:?}");
}

async fn racing_recorders_write_one_row(store: Store) {
    let marked = marked_pod(&store, "v3.6-container-params.admission.json").await;
    let done = succeeded(&marked, "uid-race", "2026-11-01T10:00:00Z", "2026-11-01T10:02:00Z");
    let tr = task_result_for(&done, "3");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let r = recorder(store.clone());
        let (p, tr) = (pod(&done), tr.clone());
        tasks.push(tokio::spawn(async move {
            r.record(&p, &OutputSources { task_result: Some(&tr), workflow: None }, ts("2026-11-01T10:03:00Z")).await
        }));
    }
    let mut inserted = 0;
    for t in tasks {
        match t.await.unwrap() {
            Attempt::Recorded(_) => inserted += 1,
            Attempt::AlreadyRecorded(_) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(inserted, 1);
    assert_eq!(count(&store).await, 1);
}

#[tokio::test]
async fn two_recorders_racing_on_sqlite_write_one_row() {
    let dir = tempfile::tempdir().unwrap();
    racing_recorders_write_one_row(sqlite_store(dir.path()).await).await;
}

#[tokio::test]
async fn two_recorders_racing_on_postgres_write_one_row() {
    let Some(db) = crate::pg::database().await else { return };
    racing_recorders_write_one_row(db.store.clone()).await;
}

#[tokio::test]
async fn a_deleted_task_result_is_forgotten_and_never_paired_with_a_later_pod() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let marked = marked_pod(&store, "v3.6-container-params.admission.json").await;
    let done = succeeded(&marked, "uid-late", "2026-11-01T10:00:00Z", "2026-11-01T10:02:00Z");
    let tr = task_result_for(&done, "5");
    let mut t = Tracker::default();
    assert!(t.on_task_result(tr.clone()).is_empty());
    assert_eq!(t.task_results(), 1);
    t.on_task_result_deleted(&tr);
    assert_eq!(t.task_results(), 0);
    let uid = t.on_pod(pod(&done), false).unwrap();
    assert_eq!(t.sources(&uid).unwrap().1, None, "the deleted result is gone");
}

#[test]
fn the_task_result_map_is_bounded() {
    use stepcache::recorder::watch::MAX_TASK_RESULTS;
    let mut t = Tracker::default();
    for i in 0..MAX_TASK_RESULTS + 10 {
        t.on_task_result(json!({"metadata": {"namespace": "ns", "name": format!("wf-{i}")}}));
    }
    assert_eq!(t.task_results(), MAX_TASK_RESULTS);
    // Updates of one result do not grow it either.
    for _ in 0..100 {
        t.on_task_result(json!({"metadata": {"namespace": "ns", "name": "wf-busy"}}));
    }
    assert_eq!(t.task_results(), MAX_TASK_RESULTS);
}

#[tokio::test]
async fn the_status_of_a_same_named_later_workflow_is_never_used_as_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let marked = marked_pod(&store, "v3.6-container-params.admission.json").await;
    let done = succeeded(&marked, "uid-wf", "2026-11-01T10:00:00Z", "2026-11-01T10:02:00Z");
    let tr = task_result_for(&done, "77");
    let mut other = workflow_with_node(&done, json!({"phase": "Succeeded", "outputs": tr["outputs"].clone()}));
    other["metadata"]["uid"] = json!("uid-of-a-resubmitted-workflow");
    let a = recorder(store.clone())
        .record(&pod(&done), &OutputSources { task_result: None, workflow: Some(&other) }, ts("2026-11-01T10:03:00Z"))
        .await;
    assert!(matches!(a, Attempt::Skipped(NotRecorded::ForeignSource(_))), "{a:?}");
    assert_eq!(count(&store).await, 0);
}

/// The v3.6 fixture with a user sidecar `proxy` (in the carried template and in the pod, as the
/// controller builds it), admitted as a miss under `name`.
async fn marked_pod_with_sidecar(store: &Store, name: &str) -> Value {
    let mut review = fixture("v3.6-container-params.admission.json");
    let obj = &mut review["request"]["object"];
    obj["metadata"]["name"] = json!(name);
    let proxy = json!({"name": "proxy", "image": "docker.io/envoyproxy/envoy:v1.31.0", "command": ["envoy"]});
    for c in obj["spec"]["initContainers"].as_array_mut().unwrap() {
        for e in c["env"].as_array_mut().unwrap() {
            if e["name"] == "ARGO_TEMPLATE" {
                let mut t: Value = serde_json::from_str(e["value"].as_str().unwrap()).unwrap();
                t["sidecars"] = json!([proxy.clone()]);
                e["value"] = json!(t.to_string());
            }
        }
    }
    obj["spec"]["containers"].as_array_mut().unwrap().push(proxy);
    let a = admitter(store.clone(), config(), offline());
    let (resp, ex) = admit(&a, &review, ts("2026-11-01T10:00:00Z")).await;
    assert_eq!(ex["decision"], "miss", "{ex}");
    patched_pod(&review, &resp)
}

/// `done` with the sidecar's exit code set, the pod `Failed` as the kubelet reports it.
fn sidecar_exited(done: &Value, code: i32) -> Value {
    let mut p = done.clone();
    p["status"]["phase"] = json!("Failed");
    for cs in p["status"]["containerStatuses"].as_array_mut().unwrap() {
        if cs["name"] == "proxy" {
            cs["state"]["terminated"]["exitCode"] = json!(code);
            cs["state"]["terminated"]["reason"] = json!("Error");
        }
    }
    p
}

/// Argo stops user sidecars once `main` is done (SIGTERM, then SIGKILL): the pod ends `Failed`
/// but the node `Succeeded`, and a rerun must hit.
#[tokio::test]
async fn a_pod_failed_only_by_a_sidecar_argo_killed_with_137_or_143_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let r = recorder(store.clone());
    for (n, code) in [(1, 137), (2, 143)] {
        let marked = marked_pod_with_sidecar(&store, &format!("sidecar-step-{n}")).await;
        let done = succeeded(&marked, &format!("uid-sc-{n}"), "2026-11-01T10:00:00Z", "2026-11-01T10:02:00Z");
        let killed = sidecar_exited(&done, code);
        let tr = task_result_for(&killed, "150");
        // Through the watch path: the tracker takes Failed pods too.
        let mut t = Tracker::default();
        assert!(t.on_task_result(tr).is_empty());
        let uid = t.on_pod(pod(&killed), false).expect("a Failed pod is assessed");
        process(&mut t, &r, None, &uid, false).await;
        assert!(t.is_empty(), "settled");
        let rows = store.list(&EntryFilter::default(), 10).await.unwrap();
        assert!(rows.iter().any(|e| e.run.pod_uid == format!("uid-sc-{n}")), "exit {code} is recorded");
    }
    assert_eq!(count(&store).await, 2);
}

#[tokio::test]
async fn a_pod_with_a_sidecar_whose_main_or_sidecar_really_failed_is_not_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let r = recorder(store.clone());
    let marked = marked_pod_with_sidecar(&store, "sidecar-step").await;
    let done = succeeded(&marked, "uid-f", "2026-11-01T10:00:00Z", "2026-11-01T10:02:00Z");
    let tr = task_result_for(&done, "150");
    let src = OutputSources { task_result: Some(&tr), workflow: None };
    let mut main_failed = sidecar_exited(&done, 137);
    for cs in main_failed["status"]["containerStatuses"].as_array_mut().unwrap() {
        if cs["name"] == "main" {
            cs["state"]["terminated"]["exitCode"] = json!(1);
        }
    }
    let mut wait_failed = sidecar_exited(&done, 0);
    for cs in wait_failed["status"]["containerStatuses"].as_array_mut().unwrap() {
        if cs["name"] == "wait" {
            cs["state"]["terminated"]["exitCode"] = json!(1);
        }
    }
    for bad in [main_failed, wait_failed, sidecar_exited(&done, 1), sidecar_exited(&done, 2)] {
        let a = r.record(&pod(&bad), &src, ts("2026-11-01T10:03:00Z")).await;
        assert!(matches!(a, Attempt::Skipped(NotRecorded::NotSucceeded(_))), "{a:?}");
        assert!(a.is_final());
    }
    assert_eq!(count(&store).await, 0);
}

/// `stepcache entries invalidate --id N` (or an `artifact-gone` withdrawal), gc at the next
/// start, and a fresh recorder whose initial list still holds the succeeded pod: the pod was
/// recorded once and is never recorded again.
async fn a_withdrawn_entry_never_comes_back_after_gc_and_a_restart(store: Store) {
    let marked = marked_pod(&store, "v3.6-container-params.admission.json").await;
    let done = succeeded(&marked, "uid-once", "2026-11-01T10:00:00Z", "2026-11-01T10:02:00Z");
    let tr = task_result_for(&done, "150");
    let src = OutputSources { task_result: Some(&tr), workflow: None };
    let Attempt::Recorded(e) = recorder(store.clone()).record(&pod(&done), &src, ts("2026-11-01T10:03:00Z")).await
    else {
        panic!("first record")
    };
    let now = ts("2026-11-01T11:00:00Z");
    let by_id = EntryFilter { id: Some(e.id), ..Default::default() };
    assert_eq!(store.invalidate(&by_id, now).await.unwrap(), 1);
    for round in 0..2 {
        store.gc(now, 100).await.unwrap();
        let fresh = recorder(store.clone());
        let mut t = Tracker::default();
        t.on_task_result(tr.clone());
        let uid = t.on_pod(pod(&done), false).expect("re-listed");
        process(&mut t, &fresh, None, &uid, true).await;
        assert!(t.is_empty(), "round {round}: the withdrawn pod is settled, not retried");
        let again = fresh.record(&pod(&done), &src, now).await;
        assert!(matches!(again, Attempt::Withdrawn(_)), "round {round}: {again:?}");
        assert!(again.is_final());
        assert_eq!(count(&store).await, 0, "round {round}: nothing is recorded again");
        assert_eq!(store.lookup(&e.run.key, e.run.staleness, now).await.unwrap(), None, "round {round}");
    }
    // Another pod of the same step is a new run and records as usual.
    let next = succeeded(&marked, "uid-next", "2026-11-01T12:00:00Z", "2026-11-01T12:02:00Z");
    let tr = task_result_for(&next, "151");
    let src = OutputSources { task_result: Some(&tr), workflow: None };
    let a = recorder(store.clone()).record(&pod(&next), &src, ts("2026-11-01T12:03:00Z")).await;
    assert!(matches!(a, Attempt::Recorded(_)), "{a:?}");
}

#[tokio::test]
async fn a_withdrawn_entry_never_comes_back_after_gc_and_a_restart_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    a_withdrawn_entry_never_comes_back_after_gc_and_a_restart(sqlite_store(dir.path()).await).await;
}

#[tokio::test]
async fn a_withdrawn_entry_never_comes_back_after_gc_and_a_restart_on_postgres() {
    let Some(db) = crate::pg::database().await else { return };
    a_withdrawn_entry_never_comes_back_after_gc_and_a_restart(db.store.clone()).await;
}

/// Only the mark admission signed makes a pod recordable: the record label alone, a mark
/// without the label, or labels and annotations copied from an admitted pod onto a pod of
/// another name are all refused.
#[tokio::test]
async fn a_pod_stepcache_did_not_admit_is_never_recorded_whatever_it_carries() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let r = recorder(store.clone());
    let marked = marked_pod(&store, "v3.6-container-params.admission.json").await;
    let unadmitted = fixture("v3.6-container-params.admission.json")["request"]["object"].clone();
    // The record label set by the author, no mark.
    let mut label_only = succeeded(&unadmitted, "a1", "2026-11-01T10:00:00Z", "2026-11-01T10:02:00Z");
    label_only["metadata"]["labels"]["stepcache.dev/record"] = json!("true");
    // A valid mark copied without the label.
    let mut no_label = succeeded(&marked, "a2", "2026-11-01T10:00:00Z", "2026-11-01T10:02:00Z");
    no_label["metadata"]["labels"].as_object_mut().unwrap().remove("stepcache.dev/record");
    // Everything copied onto a pod of the same workflow with another name.
    let mut renamed = succeeded(&marked, "a3", "2026-11-01T10:00:00Z", "2026-11-01T10:02:00Z");
    renamed["metadata"]["name"] = json!("train-pipeline-7xk2p-author-1");
    for (what, p) in [("label only", label_only), ("mark without label", no_label), ("renamed", renamed)] {
        let tr = task_result_for(&p, "poison");
        let a = r
            .record(&pod(&p), &OutputSources { task_result: Some(&tr), workflow: None }, ts("2026-11-01T10:03:00Z"))
            .await;
        assert!(
            matches!(
                a,
                Attempt::Skipped(NotRecorded::NotMarked | NotRecorded::MalformedMark(_) | NotRecorded::ForgedMark(_))
            ),
            "{what}: {a:?}"
        );
        let mut t = Tracker::default();
        if let Some(uid) = t.on_pod(pod(&p), false) {
            process(&mut t, &r, None, &uid, false).await;
        }
    }
    assert_eq!(count(&store).await, 0);
}
