//! What a real API server cannot be made to show on demand, against a mock one driven by
//! scenarios (`mock_api`): a task-result write that hangs past its bound turns the hit into a
//! miss in time, and the write's create and AlreadyExists-then-patch exchanges. (Creation,
//! AlreadyExists, RBAC refusals, dry runs and Events also run against a real kube-apiserver in
//! `cluster`.) And the offload ConfigMap reader's answers (found, missing, foreign, late) at
//! admission and recording.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use crate::harness::*;
use crate::hitpath::run_and_record;
use crate::mock_api::{mock_client, Scenario};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use stepcache::admission::{Ports, TaskResults};
use stepcache::k8s::offload::{ConfigMapReader, OffloadSource};
use stepcache::k8s::taskresult::TaskResultWriter;

const NS: &str = "ml-team";

/// Records the v3.6 fixture offline, then returns a rerun of it.
async fn recorded_rerun(dir: &std::path::Path) -> (stepcache::store::Store, Value) {
    let store = sqlite_store(dir).await;
    let a = admitter(store.clone(), config(), Ports::offline());
    let review = fixture("v3.6-container-params.admission.json");
    run_and_record(&a, &review, "pod-1", "150", ts("2026-11-01T10:05:00Z")).await;
    (store, rerun(&review, "k8s"))
}

/// Task results written through `client`, each call bounded by `timeout`.
fn task_results_via(client: kube::Client, timeout: Duration) -> Ports {
    Ports {
        task_results: TaskResults::Api(TaskResultWriter::new(
            client,
            timeout,
            stepcache::mark::Signer::new(SECRET).unwrap(),
        )),
        ..Default::default()
    }
}

/// The task result a hit on `review` must write: the recorded value under the rerun's node.
fn hit_task_result(review: &Value) -> Value {
    task_result_for(&review["request"]["object"], "150")
}

#[tokio::test]
async fn a_hit_creates_its_task_result_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let (store, again) = recorded_rerun(dir.path()).await;
    let (client, api) = mock_client();
    let a = admitter(store, config(), task_results_via(client, Duration::from_secs(1)));
    let exchange = api.run(Scenario::TaskResultCreated(hit_task_result(&again)));
    let (_, ex) = admit(&a, &again, ts("2026-11-02T10:00:00Z")).await;
    exchange.verified().await;
    assert_eq!(ex["decision"], "hit", "{ex}");
}

#[tokio::test]
async fn a_hit_whose_own_task_result_already_exists_patches_it_and_stays_a_hit() {
    let dir = tempfile::tempdir().unwrap();
    let (store, again) = recorded_rerun(dir.path()).await;
    let (client, api) = mock_client();
    let a = admitter(store, config(), task_results_via(client, Duration::from_secs(1)));
    let exchange = api.run(Scenario::TaskResultConflictThenPatched(hit_task_result(&again)));
    let (_, ex) = admit(&a, &again, ts("2026-11-02T10:00:00Z")).await;
    exchange.verified().await;
    assert_eq!(ex["decision"], "hit", "{ex}");
}

#[tokio::test]
async fn a_hit_whose_task_result_exists_from_another_writer_leaves_it_alone_and_misses() {
    let dir = tempfile::tempdir().unwrap();
    let (store, again) = recorded_rerun(dir.path()).await;
    let (client, api) = mock_client();
    let a = admitter(store, config(), task_results_via(client, Duration::from_secs(1)));
    let exchange = api.run(Scenario::TaskResultConflictForeign(hit_task_result(&again)));
    let (_, ex) = admit(&a, &again, ts("2026-11-02T10:00:00Z")).await;
    exchange.verified().await;
    assert_eq!(ex["decision"], "miss", "{ex}");
    assert_eq!(ex["detail"], "miss", "leaving it alone is no error: {ex}");
    assert!(ex["reason"].as_str().unwrap().contains("was not written by stepcache; left alone"), "{ex}");
}

#[tokio::test]
async fn a_task_result_write_that_times_out_turns_the_hit_into_a_miss() {
    let dir = tempfile::tempdir().unwrap();
    let (store, again) = recorded_rerun(dir.path()).await;
    let (client, api) = mock_client();
    let a = admitter(store, config(), task_results_via(client, Duration::from_millis(200)));
    let exchange = api.run(Scenario::TaskResultTimeout { namespace: NS.into() });
    let started = std::time::Instant::now();
    let (_, ex) = admit(&a, &again, ts("2026-11-02T10:00:00Z")).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    exchange.verified().await;
    assert_eq!(ex["decision"], "miss", "{ex}");
}

// ---------------------------------------------------------------------------------------------
// Offloaded templates: the ConfigMap named like the pod, read through the API at admission.
// ---------------------------------------------------------------------------------------------

const OFFLOADED: &str = "v3.7-offloaded-template-args.admission.json";

/// Offload ConfigMaps read through `client`, each read bounded by `timeout`.
fn offload_via(client: kube::Client, timeout: Duration) -> Ports {
    let reader = ConfigMapReader::new(client, timeout);
    Ports { offload: Some(Arc::new(reader) as Arc<dyn OffloadSource>), ..Ports::offline() }
}

/// The name of the offloaded fixture's pod (its ConfigMap's name).
fn offloaded_pod() -> String {
    fixture(OFFLOADED)["request"]["object"]["metadata"]["name"].as_str().unwrap().to_owned()
}

/// The key of the offloaded step computed from the same pod with template and args inline.
fn inline_twin_key() -> String {
    use k8s_openapi::api::core::v1::Pod;
    use stepcache::argo::template::{classify, Classification};
    let cm = fixture("v3.7-offloaded-template-args.configmap.json");
    let mut pod = fixture(OFFLOADED)["request"]["object"].clone();
    for e in pod["spec"]["initContainers"][0]["env"].as_array_mut().unwrap() {
        if e["name"] == "ARGO_TEMPLATE" {
            e["value"] = cm["data"]["ARGO_TEMPLATE"].clone();
        }
    }
    let main = pod["spec"]["containers"].as_array_mut().unwrap().iter_mut().find(|c| c["name"] == "main").unwrap();
    main["env"].as_array_mut().unwrap().retain(|e| e["name"] != "ARGO_CONTAINER_ARGS_FILE");
    main["args"] = serde_json::from_str(cm["data"]["ARGO_CONTAINER_ARGS_FILE"].as_str().unwrap()).unwrap();
    let pod: Pod = serde_json::from_value(pod).unwrap();
    let Classification::Step(step) = classify(&pod) else { panic!("twin is a step") };
    let km = stepcache::key::derive_key(&pod, &step, &Default::default(), Default::default()).unwrap();
    km.key.to_string()
}

#[tokio::test]
async fn an_offloaded_pod_is_keyed_from_its_config_map_read_once_per_pod() {
    let dir = tempfile::tempdir().unwrap();
    let (client, api) = mock_client();
    let a = admitter(sqlite_store(dir.path()).await, config(), offload_via(client, Duration::from_secs(1)));
    let review = fixture(OFFLOADED);
    let exchange = api.run(Scenario::ConfigMapFound(fixture("v3.7-offloaded-template-args.configmap.json")));
    let (_, ex) = admit(&a, &review, ts("2026-11-01T10:00:00Z")).await;
    let api = exchange.verified().await;
    assert_eq!(ex["decision"], "miss", "{ex}");
    assert_eq!(ex["key"], inline_twin_key(), "offloaded pod keys like its inline twin");
    // The API server may call the webhook again for the same pod: no second read.
    let (_, again) = admit(&a, &review, ts("2026-11-01T10:00:01Z")).await;
    assert_eq!(again["key"], ex["key"]);
    api.run(Scenario::NoRequest).verified().await;
}

#[tokio::test]
async fn an_unreadable_config_map_leaves_the_pod_unchanged_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (client, api) = mock_client();
    let a = admitter(sqlite_store(dir.path()).await, config(), offload_via(client, Duration::from_millis(200)));
    let exchange = api.run(Scenario::ConfigMapTimeout { namespace: NS.into(), name: offloaded_pod() });
    let started = std::time::Instant::now();
    let (resp, ex) = admit(&a, &fixture(OFFLOADED), ts("2026-11-01T10:00:00Z")).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(ex["decision"], "skip", "{ex}");
    assert_eq!(resp["response"]["allowed"], true);
    assert!(resp["response"].get("patch").is_none(), "{resp}");
    assert!(resp["response"]["warnings"][0].as_str().unwrap().contains("unreadable"), "{resp}");
    exchange.verified().await;
}

#[tokio::test]
async fn a_missing_or_foreign_config_map_is_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let foreign = {
        let mut cm = fixture("v3.7-offloaded-template-args.configmap.json");
        cm["metadata"]["ownerReferences"][0]["uid"] = json!("00000000-0000-4000-8000-000000000000");
        cm
    };
    for (scenario, reason) in [
        (Scenario::ConfigMapMissing { namespace: NS.into(), name: offloaded_pod() }, "offloaded"),
        (Scenario::ConfigMapFound(foreign), "not owned by the pod's Workflow"),
    ] {
        let (client, api) = mock_client();
        let a = admitter(sqlite_store(dir.path()).await, config(), offload_via(client, Duration::from_secs(1)));
        let exchange = api.run(scenario);
        let (resp, ex) = admit(&a, &fixture(OFFLOADED), ts("2026-11-01T10:00:00Z")).await;
        exchange.verified().await;
        assert_eq!(ex["decision"], "skip", "{ex}");
        assert!(ex["reason"].as_str().unwrap().contains(reason), "{ex}");
        assert!(resp["response"].get("patch").is_none());
    }
}

/// The offload ConfigMap the controller would create for `review`'s pod (name, owner, label).
fn config_map_for(review: &Value) -> Value {
    let pod = &review["request"]["object"];
    let mut cm = fixture("v3.7-offloaded-template-args.configmap.json");
    cm["metadata"]["name"] = pod["metadata"]["name"].clone();
    cm["metadata"]["labels"] =
        json!({"workflows.argoproj.io/workflow": pod["metadata"]["labels"]["workflows.argoproj.io/workflow"]});
    cm["metadata"]["ownerReferences"] = pod["metadata"]["ownerReferences"].clone();
    cm
}

#[tokio::test]
async fn an_offloaded_step_is_recorded_from_its_config_map_and_hits_on_its_next_run() {
    use k8s_openapi::api::core::v1::{ConfigMap, Pod};
    use stepcache::argo::offload::Offloaded;
    use stepcache::recorder::assess::OutputSources;
    use stepcache::recorder::Attempt;
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let review = fixture(OFFLOADED);

    let (client, api) = mock_client();
    let a = admitter(store.clone(), config(), offload_via(client, Duration::from_secs(1)));
    let exchange = api.run(Scenario::ConfigMapFound(config_map_for(&review)));
    let (resp, ex) = admit(&a, &review, ts("2026-11-01T10:00:00Z")).await;
    exchange.verified().await;
    assert_eq!(ex["decision"], "miss", "{ex}");

    let done = succeeded(&patched_pod(&review, &resp), "pod-off", "2026-11-01T10:00:00Z", "2026-11-01T10:04:12Z");
    // The task result `wait` writes: the template (in the ConfigMap) declares `n-scored`.
    let node = done["metadata"]["annotations"]["workflows.argoproj.io/node-id"].clone();
    let tr = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTaskResult",
        "metadata": {"name": node, "namespace": NS, "ownerReferences": done["metadata"]["ownerReferences"], "labels": {
            "workflows.argoproj.io/workflow": done["metadata"]["labels"]["workflows.argoproj.io/workflow"],
            "workflows.argoproj.io/report-outputs-completed": "true"}},
        "outputs": {"parameters": [{"name": "n-scored", "value": "42"}]}});
    let p: Pod = serde_json::from_value(done).unwrap();
    let r = crate::hitpath::recorder(store.clone());
    let src = OutputSources { task_result: Some(&tr), workflow: None };
    // Without the ConfigMap the recorder cannot re-derive the key.
    assert!(matches!(r.record(&p, &src, ts("2026-11-01T10:05:00Z")).await, Attempt::Skipped(_)));
    let cm: ConfigMap = serde_json::from_value(config_map_for(&review)).unwrap();
    let attempt = r.record_with(&p, &src, Some(&Offloaded::from_config_map(&cm)), ts("2026-11-01T10:05:00Z")).await;
    assert!(matches!(attempt, Attempt::Recorded(_)), "{attempt:?}");

    let again = rerun(&review, "next");
    let (client, api) = mock_client();
    let b = admitter(store, config(), offload_via(client, Duration::from_secs(1)));
    let exchange = api.run(Scenario::ConfigMapFound(config_map_for(&again)));
    let (_, ex2) = admit(&b, &again, ts("2026-11-02T10:00:00Z")).await;
    exchange.verified().await;
    assert_eq!(ex2["decision"], "hit", "{ex2}");
    assert_eq!(ex2["key"], ex["key"]);
}
