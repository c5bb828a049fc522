//! The recorder's watch loop against a mock API server (tower-test) that serves list and watch
//! responses built from the Argo fixtures: catch-up by list after a restart, duplicate watch
//! events, failed pods and incomplete outputs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use crate::harness::*;
use crate::hitpath::recorder;
use http::{Request, Response};
use kube::client::Body;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use stepcache::admission::Ports;
use stepcache::recorder::watch::{run, WatchConfig};
use stepcache::store::{EntryFilter, Store};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn ok(v: &Value) -> Response<Body> {
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(v).unwrap()))
        .unwrap()
}

fn list(kind: &str, items: &[Value]) -> Value {
    json!({"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": "100"}, "items": items})
}

/// Serves: pod list, one pod watch carrying `pod_events`, task-result list; every later watch hangs.
async fn mock_api(mut handle: Handle, pods: Vec<Value>, pod_events: Vec<Value>, results: Vec<Value>) {
    let mut pod_watch_done = false;
    while let Some((req, send)) = handle.next_request().await {
        let path = req.uri().path().to_owned();
        let query = req.uri().query().unwrap_or("").to_owned();
        let watch = query.contains("watch=true");
        if path == "/api/v1/pods" && !watch {
            assert!(query.contains("labelSelector=stepcache.dev%2Frecord%3Dtrue"), "{query}");
            send.send_response(ok(&list("PodList", &pods)));
        } else if path == "/api/v1/pods" && !pod_watch_done {
            pod_watch_done = true;
            let lines: String = pod_events.iter().map(|e| format!("{e}\n")).collect();
            send.send_response(Response::builder().status(200).body(Body::from(lines.into_bytes())).unwrap());
        } else if path == "/apis/argoproj.io/v1alpha1/workflowtaskresults" && !watch {
            // Every task result of a workflow: v3.3–v3.5.1 never label them complete.
            assert!(query.contains("labelSelector=workflows.argoproj.io%2Fworkflow"), "{query}");
            assert!(!query.contains("report-outputs-completed"), "{query}");
            send.send_response(ok(&list("WorkflowTaskResultList", &results)));
        } else if watch {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(600)).await;
                drop(send);
            });
        } else {
            let status = json!({"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404,"message":"not found"});
            send.send_response(
                Response::builder().status(404).body(Body::from(serde_json::to_vec(&status).unwrap())).unwrap(),
            );
        }
    }
}

async fn marked(store: &Store, review: &Value) -> Value {
    let a = admitter(store.clone(), config(), Ports::offline());
    let (resp, _) = admit(&a, review, ts("2026-11-01T10:00:00Z")).await;
    patched_pod(review, &resp)
}

async fn rows(store: &Store) -> Vec<stepcache::store::Entry> {
    store.list(&EntryFilter::default(), 100).await.unwrap()
}

#[tokio::test]
async fn the_watch_loop_catches_up_by_list_records_once_and_skips_failures() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let base = fixture("v3.6-container-params.admission.json");
    // Finished while the recorder was down: in the initial list with its task result.
    let p1 =
        succeeded(&marked(&store, &rerun(&base, "one")).await, "uid-1", "2026-11-01T10:00:00Z", "2026-11-01T10:01:00Z");
    let t1 = task_result_for(&p1, "1");
    // Failed: listed, never recorded.
    let p2 = failed(&marked(&store, &rerun(&base, "two")).await, "uid-2", 1, "Error");
    // Succeeded during the watch, reported twice (duplicate event).
    let p3 = succeeded(
        &marked(&store, &rerun(&base, "three")).await,
        "uid-3",
        "2026-11-01T10:00:00Z",
        "2026-11-01T10:02:00Z",
    );
    let t3 = task_result_for(&p3, "3");
    // Succeeded but its task result lacks the declared parameter.
    let p4 = succeeded(
        &marked(&store, &rerun(&base, "four")).await,
        "uid-4",
        "2026-11-01T10:00:00Z",
        "2026-11-01T10:02:00Z",
    );
    let mut t4 = task_result_for(&p4, "4");
    t4["outputs"] = json!({"parameters": []});

    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "default");
    let with_rv = |p: &Value, rv: &str| {
        let mut p = p.clone();
        p["metadata"]["resourceVersion"] = json!(rv);
        p
    };
    let events = vec![
        json!({"type": "MODIFIED", "object": with_rv(&p3, "101")}),
        json!({"type": "MODIFIED", "object": with_rv(&p3, "102")}),
        json!({"type": "MODIFIED", "object": with_rv(&p4, "103")}),
    ];
    tokio::spawn(mock_api(handle, vec![p1.clone(), p2.clone()], events, vec![t1, t3, t4]));
    let r = recorder(store.clone());
    let metrics = r.metrics.clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let cfg = WatchConfig {
        namespaces: Vec::new(),
        resync: Duration::from_millis(100),
        give_up_after: Duration::from_secs(60),
    };
    let task = tokio::spawn(run(client, r, cfg, async move {
        let _ = rx.await;
    }));
    let t = Instant::now();
    while rows(&store).await.len() < 2 {
        assert!(t.elapsed() < Duration::from_secs(20), "not recorded in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    let got = rows(&store).await;
    let mut uids: Vec<&str> = got.iter().map(|e| e.run.pod_uid.as_str()).collect();
    uids.sort();
    assert_eq!(uids, vec!["uid-1", "uid-3"], "listed success and watched success, once each");
    let m = metrics.encode();
    assert!(m.contains("stepcache_recorder_recorded_total 2"), "{m}");
    assert!(m.contains("reason=\"outputs_incomplete\""), "{m}");
    assert!(m.contains("reason=\"not_succeeded\""), "{m}");
}

#[tokio::test]
async fn a_latch_leader_whose_outputs_never_arrive_releases_its_waiters_when_the_recorder_gives_up() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let mut cfg = config();
    cfg.admin.latch = true;
    cfg.latch = Some(stepcache::admission::latch::LatchConfig {
        url: "https://stepcache.test/latch".into(),
        ca_bundle: None,
        window: Duration::from_secs(3600),
        timeout: Duration::from_secs(6 * 3600),
    });
    let a = admitter(store.clone(), cfg, Ports::offline());
    let review = with_annotation(&fixture("v3.6-container-params.admission.json"), "stepcache.dev/latch", "true");
    let (resp, ex) = admit(&a, &review, ts("2026-11-01T10:00:00Z")).await;
    assert_eq!(ex["decision"], "miss", "{ex}");
    let key = stepcache::types::CacheKey::parse(ex["key"].as_str().unwrap()).unwrap();
    // Succeeded, but its task result never comes and the Workflow is gone (404).
    let leader = succeeded(&patched_pod(&review, &resp), "uid-l", "2026-11-01T10:00:00Z", "2026-11-01T10:01:00Z");
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "default");
    tokio::spawn(mock_api(handle, vec![leader], Vec::new(), Vec::new()));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let wc = WatchConfig {
        namespaces: Vec::new(),
        resync: Duration::from_millis(50),
        give_up_after: Duration::from_millis(300),
    };
    let task = tokio::spawn(run(client, recorder(store.clone()), wc, async move {
        let _ = rx.await;
    }));
    let t = Instant::now();
    loop {
        let state = store.latch_get(&key).await.unwrap().unwrap().state;
        if state == "failed" {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "latch still {state}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    assert!(rows(&store).await.is_empty());
}
