//! What a real API server cannot be made to show on demand, against a mock one: a task-result
//! write that hangs past its bound turns the hit into a miss in time. (Creation, AlreadyExists,
//! RBAC refusals, dry runs and Events run against a real kube-apiserver in `cluster`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use crate::harness::*;
use crate::hitpath::run_and_record;
use http::{Request, Response};
use kube::client::Body;
use serde_json::Value;
use std::time::Duration;
use stepcache::admission::Cluster;
use stepcache::k8s::taskresult::TaskResultWriter;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn mock(timeout: Duration) -> (TaskResultWriter, Handle) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "default");
    (TaskResultWriter::new(client, timeout), handle)
}

/// Records the v3.6 fixture offline, then returns a rerun of it.
async fn recorded_rerun(dir: &std::path::Path) -> (stepcache::store::Store, Value) {
    let store = sqlite_store(dir).await;
    let a = admitter(store.clone(), config(), Cluster { offline: true, ..Default::default() });
    let review = fixture("v3.6-container-params.admission.json");
    run_and_record(&a, &review, "pod-1", "150", ts("2026-11-01T10:05:00Z")).await;
    (store, rerun(&review, "k8s"))
}

fn online(w: TaskResultWriter) -> Cluster {
    Cluster { task_results: Some(w), events: None, offline: false }
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
