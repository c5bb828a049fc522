//! `stepcache why` against a real kube-apiserver ([`crate::kit`]) and the real `stepcache serve`
//! registered as its webhook: a hit names the entry it was served, a changed step's miss names
//! the nearest entry and the exact argument that differs, and a deleted pod is still explained
//! from the decision log (saying so). Also: the binary answers as the kubectl plugin.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use crate::harness::{fixture, ran_an_hour_ago, rerun, succeeded, task_result_for};
use crate::kit::{self, pod_object, register, unregister, wait_effective, webhook_entry, Serve, ServeOptions};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

const V36: &str = "v3.6-container-params.admission.json";

async fn create(client: &kube::Client, ns: &str, review: &Value) -> Value {
    let pod: Pod = serde_json::from_value(pod_object(review, ns)).unwrap();
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    serde_json::to_value(api.create(&PostParams::default(), &pod).await.unwrap()).unwrap()
}

fn name(pod: &Value) -> String {
    pod["metadata"]["name"].as_str().unwrap().to_owned()
}

fn decision(pod: &Value) -> &str {
    pod["metadata"]["labels"]["stepcache.dev/decision"].as_str().unwrap_or("")
}

/// Runs `stepcache why` against the kit and `serve`'s store.
fn why(kit: &kit::Kit, serve: &Serve, ns: &str, target: &str, json: bool) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stepcache"));
    cmd.args(["why", target, "-n", ns, "--database-url"])
        .arg(format!("sqlite://{}", serve.dir.join("stepcache.db").display()))
        .env("KUBECONFIG", &kit.kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("STEPCACHE_DATABASE_URL");
    if json {
        cmd.args(["-o", "json"]);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn why_json(kit: &kit::Kit, serve: &Serve, ns: &str, target: &str) -> Value {
    let (ok, stdout, stderr) = why(kit, serve, ns, target, true);
    assert!(ok, "why {target} failed: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("why {target}: {e}: {stdout}"))
}

async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn why_explains_a_hit_a_miss_with_its_differences_and_a_pod_that_is_gone() {
    let Some(kit) = kit::shared() else { return };
    let client = kit.client().await;
    let ns = kit.namespace(&client, "why", &[]).await;
    let serve = Serve::start(kit, ServeOptions { watch_namespaces: vec![ns.clone()], ..Default::default() }).await;
    let webhook = format!("stepcache-{ns}");
    register(&client, kit, &webhook, webhook_entry(&[&ns]), &serve.url()).await;
    let review = fixture(V36);
    wait_effective(&client, &ns, &pod_object(&rerun(&review, "probe"), &ns)).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);

    // First run: a miss; the kubelet and the wait container are played by the test.
    let first = create(&client, &ns, &rerun(&review, "first")).await;
    assert_eq!(decision(&first), "miss");
    let ran = ran_an_hour_ago();
    let status = succeeded(&first, "ignored", &ran.0, &ran.1)["status"].clone();
    pods.patch_status(&name(&first), &PatchParams::default(), &Patch::Merge(&json!({"status": status}))).await.unwrap();
    let trs: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &stepcache::k8s::task_result_resource());
    trs.create(&PostParams::default(), &serde_json::from_value(task_result_for(&first, "42")).unwrap()).await.unwrap();
    let t = Instant::now();
    while !serve.metrics().await.contains("stepcache_recorder_recorded_total 1") {
        assert!(t.elapsed() < Duration::from_secs(30), "not recorded:\n{}", serve.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Second run: a hit.
    let hit = create(&client, &ns, &rerun(&review, "second")).await;
    assert_eq!(decision(&hit), "hit", "{}", hit["metadata"]);
    let served = hit["metadata"]["labels"]["stepcache.dev/entry"].as_str().unwrap().parse::<i64>().unwrap();
    // Staleness and seed of a hit come from the decision log, written every few seconds.
    let r = eventually("the hit's staleness from the decision log", || {
        Some(why_json(kit, &serve, &ns, &name(&hit))).filter(|r| r.get("staleness").is_some())
    })
    .await;
    assert_eq!(r["source"], "cluster", "{r}");
    assert_eq!(r["decision"], "hit", "{r}");
    assert_eq!(r["served"]["id"], served, "{r}");
    assert_eq!(r["served"]["pod"], name(&first).as_str(), "{r}");
    assert_eq!(r["served"]["run_seconds"], 252.0, "{r}");
    assert_eq!(r["key"], hit["metadata"]["annotations"]["stepcache.dev/key"], "{r}");
    assert_eq!(r["staleness"], "unbounded", "{r}");

    // A changed argument: a miss whose differences name it exactly.
    let mut changed = rerun(&review, "third");
    let containers = changed["request"]["object"]["spec"]["containers"].as_array_mut().unwrap();
    let main = containers.iter_mut().find(|c| c["name"] == "main").unwrap();
    let args = main["args"].as_array_mut().unwrap();
    let last = args.len() - 1;
    args[last] = json!("/tmp/other.txt");
    let miss = create(&client, &ns, &changed).await;
    assert_eq!(decision(&miss), "miss");
    let r = why_json(kit, &serve, &ns, &name(&miss));
    assert_eq!((r["source"].as_str(), r["decision"].as_str()), (Some("cluster"), Some("miss")), "{r}");
    assert_eq!(r["nearest"]["pod"], name(&first).as_str(), "{r}");
    let diffs: Vec<&str> = r["differences"].as_array().unwrap().iter().map(|d| d.as_str().unwrap()).collect();
    assert_eq!(diffs.len(), 1, "{r}");
    assert!(diffs[0].contains("/tmp/other.txt") && diffs[0].contains("main"), "{r}");
    let (ok, text, _) = why(kit, &serve, &ns, &name(&miss), false);
    assert!(ok && text.contains("decision:  miss") && text.contains("/tmp/other.txt"), "{text}");
    std::fs::write(crate::status::output_dir().join("why-miss.txt"), &text).unwrap();

    // Asked by Workflow node: the same pod.
    let wf = miss["metadata"]["labels"]["workflows.argoproj.io/workflow"].as_str().unwrap();
    let node = miss["metadata"]["annotations"]["workflows.argoproj.io/node-id"].as_str().unwrap();
    let r = why_json(kit, &serve, &ns, &format!("{wf}/{node}"));
    assert_eq!(r["pod"], name(&miss).as_str(), "{r}");

    // The hit pod is deleted: the decision log still explains it, and says it is the source.
    pods.delete(&name(&hit), &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await.unwrap();
    let t = Instant::now();
    while pods.get_opt(&name(&hit)).await.unwrap().is_some() {
        assert!(t.elapsed() < Duration::from_secs(30), "pod not deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = eventually("the decision log to hold the hit", || {
        let (ok, stdout, _) = why(kit, &serve, &ns, &name(&hit), true);
        ok.then(|| serde_json::from_str::<Value>(&stdout).unwrap())
    })
    .await;
    assert_eq!(r["source"], "decision-log", "{r}");
    assert_eq!(r["decision"], "hit", "{r}");
    assert_eq!(r["served"]["id"], served, "{r}");
    let (_, text, _) = why(kit, &serve, &ns, &name(&hit), false);
    assert!(text.contains("source:    the stepcache decision log (the pod is gone)"), "{text}");

    // A pod nobody knows: a one-line error.
    let (ok, _, stderr) = why(kit, &serve, &ns, "never-existed", false);
    assert!(!ok && stderr.contains("no pod \"never-existed\""), "{stderr}");
    unregister(&client, &webhook).await;
}

#[test]
fn installed_as_kubectl_stepcache_the_binary_is_the_kubectl_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("kubectl-stepcache");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_stepcache"), &link).unwrap();
    let out = Command::new(&link).args(["why", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{help}");
    assert!(help.contains("Usage: kubectl stepcache why"), "{help}");
    let plain = Command::new(env!("CARGO_BIN_EXE_stepcache")).args(["why", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&plain.stdout).contains("Usage: stepcache why"));
}
