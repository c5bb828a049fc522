//! Task-result writes on the hit path against a mock API server that asserts each request:
//! created, AlreadyExists → patched to the same content, forbidden and timeout → plain miss,
//! dryRun → no request at all.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use crate::harness::*;
use crate::hitpath::run_and_record;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::client::Body;
use serde_json::{json, Value};
use std::time::Duration;
use stepcache::admission::Cluster;
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

async fn body_json(req: Request<Body>) -> Value {
    let bytes = req.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

const NS: &str = "ml-team";

/// Records the v3.6 fixture offline, then returns a rerun of it.
async fn recorded_rerun(dir: &std::path::Path) -> (stepcache::store::Store, Value) {
    let store = sqlite_store(dir).await;
    let a = admitter(store.clone(), config(), Cluster { offline: true, ..Default::default() });
    let review = fixture("v3.6-container-params.admission.json");
    run_and_record(&a, &review, "pod-1", "150", ts("2026-11-01T10:05:00Z")).await;
    (store, rerun(&review, "k8s"))
}

fn online(w: TaskResultWriter) -> Cluster {
    Cluster { task_results: Some(w), events: None, offline: false, artifacts: None }
}

#[tokio::test]
async fn a_hit_creates_the_task_result_the_controller_expects() {
    let dir = tempfile::tempdir().unwrap();
    let (store, again) = recorded_rerun(dir.path()).await;
    let (w, mut handle) = mock(Duration::from_secs(5));
    let a = admitter(store, config(), online(w));
    let node = again["request"]["object"]["metadata"]["annotations"]["workflows.argoproj.io/node-id"]
        .as_str()
        .unwrap()
        .to_owned();
    let server = tokio::spawn(async move {
        let (req, send) = handle.next_request().await.expect("one request");
        assert_eq!(req.method(), Method::POST);
        assert_eq!(req.uri().path(), format!("/apis/argoproj.io/v1alpha1/namespaces/{NS}/workflowtaskresults"));
        let body = body_json(req).await;
        assert_eq!(body["metadata"]["name"], node);
        assert_eq!(body["metadata"]["labels"]["workflows.argoproj.io/report-outputs-completed"], "true");
        assert_eq!(body["outputs"]["parameters"][0]["value"], "150");
        send.send_response(
            Response::builder().status(201).body(Body::from(serde_json::to_vec(&body).unwrap())).unwrap(),
        );
    });
    let (resp, ex) = admit(&a, &again, ts("2026-11-02T10:00:00Z")).await;
    server.await.unwrap();
    assert_eq!(ex["decision"], "hit", "{ex}");
    assert!(resp["response"]["patch"].is_string());
}

#[tokio::test]
async fn an_existing_task_result_is_patched_to_the_same_content() {
    let dir = tempfile::tempdir().unwrap();
    let (store, again) = recorded_rerun(dir.path()).await;
    let (w, mut handle) = mock(Duration::from_secs(5));
    let a = admitter(store, config(), online(w));
    let node = again["request"]["object"]["metadata"]["annotations"]["workflows.argoproj.io/node-id"]
        .as_str()
        .unwrap()
        .to_owned();
    let server = tokio::spawn(async move {
        let (req, send) = handle.next_request().await.expect("create");
        assert_eq!(req.method(), Method::POST);
        send.send_response(status(409, "AlreadyExists"));
        let (req, send) = handle.next_request().await.expect("patch");
        assert_eq!(req.method(), Method::PATCH);
        assert_eq!(req.uri().path(), format!("/apis/argoproj.io/v1alpha1/namespaces/{NS}/workflowtaskresults/{node}"));
        assert_eq!(req.headers()["content-type"], "application/merge-patch+json");
        let body = body_json(req).await;
        assert_eq!(body["outputs"]["parameters"][0]["value"], "150");
        assert_eq!(body["metadata"]["labels"]["workflows.argoproj.io/report-outputs-completed"], "true");
        send.send_response(
            Response::builder().status(200).body(Body::from(serde_json::to_vec(&body).unwrap())).unwrap(),
        );
    });
    let (_, ex) = admit(&a, &again, ts("2026-11-02T10:00:00Z")).await;
    server.await.unwrap();
    assert_eq!(ex["decision"], "hit", "{ex}");
}

#[tokio::test]
async fn a_forbidden_task_result_turns_the_hit_into_a_plain_miss() {
    let dir = tempfile::tempdir().unwrap();
    let (store, again) = recorded_rerun(dir.path()).await;
    let (w, mut handle) = mock(Duration::from_secs(5));
    let a = admitter(store, config(), online(w));
    let server = tokio::spawn(async move {
        let (_, send) = handle.next_request().await.expect("create");
        send.send_response(status(403, "Forbidden"));
    });
    let (resp, ex) = admit(&a, &again, ts("2026-11-02T10:00:00Z")).await;
    server.await.unwrap();
    assert_eq!(ex["decision"], "miss", "{ex}");
    let pod = patched_pod(&again, &resp);
    assert_eq!(pod["spec"], again["request"]["object"]["spec"], "the pod runs exactly as Argo built it");
    assert!(resp["response"]["warnings"][0].as_str().unwrap().contains("forbidden"), "{resp}");
    assert!(a.metrics.encode().contains("stepcache_task_result_errors_total{reason=\"forbidden\"} 1"));
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

#[tokio::test]
async fn a_dry_run_hit_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut again) = recorded_rerun(dir.path()).await;
    again["request"]["dryRun"] = json!(true);
    let (w, mut handle) = mock(Duration::from_secs(5));
    let a = admitter(store, config(), online(w));
    let (_, ex) = admit(&a, &again, ts("2026-11-02T10:00:00Z")).await;
    assert_eq!(ex["decision"], "hit", "{ex}");
    let none = tokio::time::timeout(Duration::from_millis(200), handle.next_request()).await;
    assert!(none.is_err(), "dryRun must not call the API server");
    let _ = StatusCode::OK;
}

#[tokio::test]
async fn a_hit_posts_a_provenance_event_on_the_workflow() {
    use stepcache::k8s::events::EventPoster;
    let dir = tempfile::tempdir().unwrap();
    let (store, again) = recorded_rerun(dir.path()).await;
    let (w, mut handle) = mock(Duration::from_secs(5));
    let (svc, mut events) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let poster = EventPoster::new(kube::Client::new(svc, "default"), Duration::from_secs(5), "stepcache-0".into());
    let a = admitter(
        store,
        config(),
        Cluster { task_results: Some(w), events: Some(poster), offline: false, artifacts: None },
    );
    let wf =
        again["request"]["object"]["metadata"]["labels"]["workflows.argoproj.io/workflow"].as_str().unwrap().to_owned();
    let api = tokio::spawn(async move {
        let (req, send) = handle.next_request().await.expect("task result");
        let body = body_json(req).await;
        send.send_response(
            Response::builder().status(201).body(Body::from(serde_json::to_vec(&body).unwrap())).unwrap(),
        );
    });
    let ev = tokio::spawn(async move {
        let (req, send) = events.next_request().await.expect("event");
        assert_eq!(req.method(), Method::POST);
        assert_eq!(req.uri().path(), format!("/api/v1/namespaces/{NS}/events"));
        let body = body_json(req).await;
        assert_eq!(body["involvedObject"]["kind"], "Workflow");
        assert_eq!(body["involvedObject"]["name"], wf);
        assert_eq!(body["reason"], "StepServedFromCache");
        assert!(body["message"].as_str().unwrap().contains("saved 4m12s"), "{body}");
        send.send_response(
            Response::builder().status(201).body(Body::from(serde_json::to_vec(&body).unwrap())).unwrap(),
        );
    });
    let (_, ex) = admit(&a, &again, ts("2026-11-02T10:00:00Z")).await;
    api.await.unwrap();
    ev.await.unwrap();
    assert_eq!(ex["decision"], "hit");
}
