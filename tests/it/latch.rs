//! Execution latching: ten identical steps admitted at once elect one leader; the leader's
//! success completes every waiter with its outputs; its failure promotes exactly one waiter;
//! the same across two server instances sharing Postgres; the waiter command over TLS.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use crate::harness::*;
use crate::hitpath::recorder;
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;
use std::time::Duration;
use stepcache::admission::latch::LatchConfig;
use stepcache::admission::{AdmitConfig, Admitter, Ports};
use stepcache::recorder::assess::OutputSources;
use stepcache::recorder::Attempt;
use stepcache::store::Store;

fn latch_config() -> AdmitConfig {
    let mut c = config();
    c.admin.latch = true;
    c.latch = Some(LatchConfig {
        url: "https://stepcache.test/latch".into(),
        ca_bundle: Some("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into()),
        window: Duration::from_secs(3600),
        timeout: Duration::from_secs(6 * 3600),
    });
    c
}

fn latched_admitter(store: Store) -> Admitter {
    admitter(store, latch_config(), Ports::offline())
}

fn fan_out(n: usize) -> Vec<Value> {
    let base = with_annotation(&fixture("v3.6-container-params.admission.json"), "stepcache.dev/latch", "true");
    (0..n).map(|i| rerun(&base, &format!("fan{i}"))).collect()
}

/// Admits all `reviews` concurrently over `admitters` (round robin); returns (review, response, explain).
async fn admit_all(admitters: &[Admitter], reviews: &[Value]) -> Vec<(Value, Value, Value)> {
    admit_all_at(admitters, reviews, ts("2026-11-01T10:00:00Z")).await
}

async fn admit_all_at(admitters: &[Admitter], reviews: &[Value], now: jiff::Timestamp) -> Vec<(Value, Value, Value)> {
    let mut tasks = Vec::new();
    for (i, r) in reviews.iter().enumerate() {
        let a = admitters[i % admitters.len()].clone();
        let r = r.clone();
        tasks.push(tokio::spawn(async move {
            let (resp, ex) = admit(&a, &r, now).await;
            (r, resp, ex)
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn token_of(pod: &Value) -> String {
    let cmd = pod["spec"]["containers"][0]["command"].as_array().unwrap();
    let i = cmd.iter().position(|c| c == "--token").unwrap();
    cmd[i + 1].as_str().unwrap().to_owned()
}

/// (review, response, explain) of one admission.
type Admitted = (Value, Value, Value);

fn split(results: &[Admitted]) -> (Vec<&Admitted>, Vec<&Admitted>) {
    let leaders: Vec<_> = results.iter().filter(|(_, _, ex)| ex["decision"] == "miss").collect();
    let waiters: Vec<_> = results.iter().filter(|(_, _, ex)| ex["decision"] == "latched").collect();
    (leaders, waiters)
}

async fn ten_at_once_elect_one_leader(admitters: &[Admitter]) -> Vec<(Value, Value, Value)> {
    let results = admit_all(admitters, &fan_out(10)).await;
    let (leaders, waiters) = split(&results);
    assert_eq!(leaders.len(), 1, "exactly one leader");
    assert_eq!(waiters.len(), 9, "nine waiters");
    for (review, resp, _) in &waiters {
        let pod = patched_pod(review, resp);
        let _: Pod = serde_json::from_value(pod.clone()).unwrap();
        assert_eq!(pod["metadata"]["labels"]["stepcache.dev/decision"], "latched");
        assert_eq!(pod["spec"]["containers"].as_array().unwrap().len(), 1);
        assert_eq!(pod["spec"]["containers"][0]["name"], "main");
        assert_eq!(pod["spec"]["containers"][0]["command"][1], "wait");
        assert!(pod["spec"].get("initContainers").is_none());
    }
    results
}

#[tokio::test]
async fn ten_identical_admissions_at_once_elect_one_leader_and_its_success_completes_all_waiters() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let a = latched_admitter(store.clone());
    let results = ten_at_once_elect_one_leader(std::slice::from_ref(&a)).await;
    let (leaders, waiters) = split(&results);
    // Before the leader finishes, waiters wait.
    let t0 = token_of(&patched_pod(&waiters[0].0, &waiters[0].1));
    assert_eq!(a.poll_latch(&t0, ts("2026-11-01T10:01:00Z")).await.unwrap().state, "waiting");
    // The leader succeeds and is recorded.
    let (lr, lresp, _) = leaders[0];
    let done = succeeded(&patched_pod(lr, lresp), "leader-uid", "2026-11-01T10:00:00Z", "2026-11-01T10:03:00Z");
    let tr = task_result_for(&done, "150");
    let p: Pod = serde_json::from_value(done).unwrap();
    let got = recorder(store.clone())
        .record(&p, &OutputSources { task_result: Some(&tr), workflow: None }, ts("2026-11-01T10:03:01Z"))
        .await;
    assert!(matches!(got, Attempt::Recorded(_)), "{got:?}");
    assert_eq!(
        store
            .latch_get(&stepcache::types::CacheKey::parse(results[0].2["key"].as_str().unwrap()).unwrap())
            .await
            .unwrap()
            .unwrap()
            .state,
        "succeeded"
    );
    for (review, resp, _) in &waiters {
        let ans = a.poll_latch(&token_of(&patched_pod(review, resp)), ts("2026-11-01T10:04:00Z")).await.unwrap();
        assert_eq!(ans.state, "done", "{ans:?}");
        let created = serde_json::to_value(ans.task_result.unwrap()).unwrap();
        assert_eq!(
            created["metadata"]["name"],
            review["request"]["object"]["metadata"]["annotations"]["workflows.argoproj.io/node-id"]
        );
        assert_eq!(
            created["metadata"]["labels"]["workflows.argoproj.io/workflow"],
            review["request"]["object"]["metadata"]["labels"]["workflows.argoproj.io/workflow"]
        );
        assert_eq!(created["outputs"], tr["outputs"], "the waiter gets the leader's outputs");
    }
}

#[tokio::test]
async fn a_failed_leader_promotes_exactly_one_waiter() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let a = latched_admitter(store.clone());
    let results = ten_at_once_elect_one_leader(std::slice::from_ref(&a)).await;
    let (leaders, waiters) = split(&results);
    let (lr, lresp, _) = leaders[0];
    let bad = failed(&patched_pod(lr, lresp), "leader-uid", 1, "Error");
    let tr = task_result_for(&bad, "x");
    let p: Pod = serde_json::from_value(bad).unwrap();
    let got = recorder(store.clone())
        .record(&p, &OutputSources { task_result: Some(&tr), workflow: None }, ts("2026-11-01T10:03:01Z"))
        .await;
    assert!(matches!(got, Attempt::Skipped(_)));
    let mut polls = Vec::new();
    for (review, resp, _) in &waiters {
        let a = a.clone();
        let t = token_of(&patched_pod(review, resp));
        polls.push(tokio::spawn(async move { a.poll_latch(&t, ts("2026-11-01T10:04:00Z")).await.unwrap() }));
    }
    let mut states = Vec::new();
    for p in polls {
        states.push(p.await.unwrap().state);
    }
    assert_eq!(states.iter().filter(|s| *s == "run").count(), 1, "{states:?}");
    assert_eq!(states.iter().filter(|s| *s == "waiting").count(), 8, "{states:?}");
    assert!(!states.iter().any(|s| s == "done"), "never a result from a failed run");
}

#[tokio::test]
async fn two_server_instances_sharing_postgres_elect_one_leader() {
    let Some(db) = crate::pg::database().await else { return };
    let other = Store::connect(&db.url, Default::default()).await.unwrap();
    let admitters = [latched_admitter(db.store.clone()), latched_admitter(other)];
    ten_at_once_elect_one_leader(&admitters).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wait_command_completes_over_tls_once_the_leader_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let a = latched_admitter(store.clone());
    let s = crate::webhook::start(a.clone(), dir.path(), Duration::from_secs(4), 1 << 22).await;
    // The endpoint decides with the real clock, so admit with it too.
    let results = admit_all_at(std::slice::from_ref(&a), &fan_out(2), jiff::Timestamp::now()).await;
    let (leaders, waiters) = split(&results);
    let token = token_of(&patched_pod(&waiters[0].0, &waiters[0].1));
    let ca = std::fs::read_to_string(dir.path().join("certs/ca.crt")).unwrap();
    let url = s.url("/latch");
    let ca_arg = format!("--ca-bundle={ca}");
    let forged = {
        let (url, ca_arg, d) = (url.clone(), ca_arg.clone(), dir.path().to_owned());
        tokio::task::spawn_blocking(move || {
            crate::cli::run(
                &d,
                &["wait", "--url", &url, "--token", "eyJ9.AAAA", &ca_arg, "--interval", "100ms", "--timeout", "20s"],
                b"",
            )
        })
        .await
        .unwrap()
    };
    assert!(!forged.status.success(), "a forged token is refused");
    let waiter = {
        let (url, token, ca_arg, d) = (url.clone(), token.clone(), ca_arg.clone(), dir.path().to_owned());
        tokio::task::spawn_blocking(move || {
            crate::cli::run(
                &d,
                &["wait", "--url", &url, "--token", &token, &ca_arg, "--interval", "100ms", "--timeout", "60s"],
                b"",
            )
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (lr, lresp, _) = leaders[0];
    let done = succeeded(&patched_pod(lr, lresp), "leader-uid", "2026-11-01T10:00:00Z", "2026-11-01T10:03:00Z");
    let tr = task_result_for(&done, "7");
    let p: Pod = serde_json::from_value(done).unwrap();
    recorder(store)
        .record(&p, &OutputSources { task_result: Some(&tr), workflow: None }, ts("2026-11-01T10:03:01Z"))
        .await;
    let out = waiter.await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
