//! What a real API server cannot be made to show on demand, against a mock one: a task-result
//! write that hangs past its bound turns the hit into a miss in time. (Creation, AlreadyExists,
//! RBAC refusals, dry runs and Events run against a real kube-apiserver in `cluster`.) And the
//! offload ConfigMap reader's answers (found, missing, foreign, late) at admission and recording.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use crate::harness::*;
use crate::hitpath::run_and_record;
use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::{json, Value};
use std::time::Duration;
use stepcache::admission::{Ports, TaskResults};
use stepcache::k8s::taskresult::TaskResultWriter;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn mock(timeout: Duration) -> (TaskResultWriter, Handle) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "default");
    (TaskResultWriter::new(client, timeout), handle)
}

fn status(code: u16, reason: &str) -> Response<Body> {
    let body = json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":format!("{reason} (test)"),"reason":reason,"code":code});
    Response::builder().status(code).body(Body::from(serde_json::to_vec(&body).unwrap())).unwrap()
}

const NS: &str = "ml-team";

/// Records the v3.6 fixture offline, then returns a rerun of it.
async fn recorded_rerun(dir: &std::path::Path) -> (stepcache::store::Store, Value) {
    let store = sqlite_store(dir).await;
    let a = admitter(store.clone(), config(), Ports::offline());
    let review = fixture("v3.6-container-params.admission.json");
    run_and_record(&a, &review, "pod-1", "150", ts("2026-11-01T10:05:00Z")).await;
    (store, rerun(&review, "k8s"))
}

fn online(w: TaskResultWriter) -> Ports {
    Ports { task_results: TaskResults::Api(w), ..Default::default() }
}

#[tokio::test]
async fn a_task_result_write_that_times_out_turns_the_hit_into_a_miss() {
    let dir = tempfile::tempdir().unwrap();
    let (store, again) = recorded_rerun(dir.path()).await;
    let (w, mut handle) = mock(Duration::from_millis(200));
    let a = admitter(store, config(), online(w));
    let server = tokio::spawn(async move {
        let (_req, send) = handle.next_request().await.expect("create");
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(send);
    });
    let started = std::time::Instant::now();
    let (_, ex) = admit(&a, &again, ts("2026-11-02T10:00:00Z")).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(ex["decision"], "miss", "{ex}");
    server.abort();
}

// ---------------------------------------------------------------------------------------------
// Offloaded templates: the ConfigMap named like the pod, read through the API at admission.
// ---------------------------------------------------------------------------------------------

const OFFLOADED: &str = "v3.7-offloaded-template-args.admission.json";

fn offload_cluster(timeout: Duration) -> (Ports, Handle) {
    use stepcache::k8s::offload::{ConfigMapReader, OffloadSource};
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let reader = ConfigMapReader::new(kube::Client::new(svc, "default"), timeout);
    let cluster =
        Ports { offload: Some(std::sync::Arc::new(reader) as std::sync::Arc<dyn OffloadSource>), ..Ports::offline() };
    (cluster, handle)
}

/// Answers one GET of the offload ConfigMap with `cm` (or `status` when `cm` is null).
async fn serve_config_map(handle: &mut Handle, cm: Value) {
    let (req, send) = handle.next_request().await.expect("a ConfigMap GET");
    assert_eq!(req.method(), Method::GET);
    let pod = fixture(OFFLOADED)["request"]["object"]["metadata"]["name"].as_str().unwrap().to_owned();
    assert_eq!(req.uri().path(), format!("/api/v1/namespaces/{NS}/configmaps/{pod}"));
    if cm.is_null() {
        send.send_response(status(404, "NotFound"));
    } else {
        send.send_response(Response::builder().status(200).body(Body::from(serde_json::to_vec(&cm).unwrap())).unwrap());
    }
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
    let (cluster, mut handle) = offload_cluster(Duration::from_secs(1));
    let a = admitter(sqlite_store(dir.path()).await, config(), cluster);
    let review = fixture(OFFLOADED);
    let cm = fixture("v3.7-offloaded-template-args.configmap.json");
    let server = tokio::spawn(async move {
        serve_config_map(&mut handle, cm).await;
        handle
    });
    let (_, ex) = admit(&a, &review, ts("2026-11-01T10:00:00Z")).await;
    let mut handle = server.await.unwrap();
    assert_eq!(ex["decision"], "miss", "{ex}");
    assert_eq!(ex["key"], inline_twin_key(), "offloaded pod keys like its inline twin");
    // The API server may call the webhook again for the same pod: no second read.
    let (_, again) = admit(&a, &review, ts("2026-11-01T10:00:01Z")).await;
    assert_eq!(again["key"], ex["key"]);
    let none = tokio::time::timeout(Duration::from_millis(200), handle.next_request()).await;
    assert!(none.is_err(), "the ConfigMap is cached per pod");
}

#[tokio::test]
async fn an_unreadable_config_map_leaves_the_pod_unchanged_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, mut handle) = offload_cluster(Duration::from_millis(200));
    let a = admitter(sqlite_store(dir.path()).await, config(), cluster);
    let server = tokio::spawn(async move {
        let (_req, send) = handle.next_request().await.expect("GET");
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(send);
    });
    let started = std::time::Instant::now();
    let (resp, ex) = admit(&a, &fixture(OFFLOADED), ts("2026-11-01T10:00:00Z")).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(ex["decision"], "skip", "{ex}");
    assert_eq!(resp["response"]["allowed"], true);
    assert!(resp["response"].get("patch").is_none(), "{resp}");
    assert!(resp["response"]["warnings"][0].as_str().unwrap().contains("unreadable"), "{resp}");
    server.abort();
}

#[tokio::test]
async fn a_missing_or_foreign_config_map_is_not_used() {
    let dir = tempfile::tempdir().unwrap();
    for (cm, reason) in [
        (Value::Null, "offloaded"),
        (
            {
                let mut cm = fixture("v3.7-offloaded-template-args.configmap.json");
                cm["metadata"]["ownerReferences"][0]["uid"] = json!("00000000-0000-4000-8000-000000000000");
                cm
            },
            "not owned by the pod's Workflow",
        ),
    ] {
        let (cluster, mut handle) = offload_cluster(Duration::from_secs(1));
        let a = admitter(sqlite_store(dir.path()).await, config(), cluster);
        let server = tokio::spawn(async move { serve_config_map(&mut handle, cm).await });
        let (resp, ex) = admit(&a, &fixture(OFFLOADED), ts("2026-11-01T10:00:00Z")).await;
        server.await.unwrap();
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

    let (cluster, mut handle) = offload_cluster(Duration::from_secs(1));
    let a = admitter(store.clone(), config(), cluster);
    let cm = config_map_for(&review);
    let server = tokio::spawn(async move { serve_config_map(&mut handle, cm).await });
    let (resp, ex) = admit(&a, &review, ts("2026-11-01T10:00:00Z")).await;
    server.await.unwrap();
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
    let (cluster, mut handle) = offload_cluster(Duration::from_secs(1));
    let b = admitter(store, config(), cluster);
    let cm = config_map_for(&again);
    let server = tokio::spawn(async move {
        let (req, send) = handle.next_request().await.expect("GET");
        assert!(req.uri().path().ends_with(cm["metadata"]["name"].as_str().unwrap()));
        send.send_response(Response::builder().status(200).body(Body::from(serde_json::to_vec(&cm).unwrap())).unwrap());
    });
    let (_, ex2) = admit(&b, &again, ts("2026-11-02T10:00:00Z")).await;
    server.await.unwrap();
    assert_eq!(ex2["decision"], "hit", "{ex2}");
    assert_eq!(ex2["key"], ex["key"]);
}
