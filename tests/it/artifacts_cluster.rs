//! Artifact checks through the real `stepcache serve --verify-artifacts` on the API server kit,
//! against a real S3-compatible server: the credentials come from the Secret the repository
//! names, read through the API; a present artifact hits, a deleted one misses (`artifact-gone`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use crate::drift_cluster::{create, decision, set_status};
use crate::harness::{fixture, ran_an_hour_ago, rerun, succeeded, task_result_for};
use crate::kit::{self, pod_object, register, unregister, wait_effective, webhook_entry, Serve, ServeOptions};
use crate::s3server::S3Server;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use std::time::Duration;

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_verifies_artifacts_with_credentials_from_the_secret() {
    let Some(kit) = kit::shared() else { return };
    let Some(s3) = S3Server::start().await else { return };
    let client = kit.client().await;
    let ns = kit.namespace(&client, "artifacts", &[]).await;
    let secret: Secret = serde_json::from_value(json!({"metadata": {"name": "my-minio-cred"},
        "stringData": {"accesskey": "testing-access", "secretkey": "testing-secret"}}))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), &ns).create(&PostParams::default(), &secret).await.unwrap();
    let opts = ServeOptions {
        watch_namespaces: vec![ns.clone()],
        args: vec!["--verify-artifacts".into(), "--artifact-check-cache-ttl".into(), "0s".into()],
        ..Default::default()
    };
    let serve = Serve::start(kit, opts).await;
    let webhook = format!("stepcache-{ns}");
    register(&client, kit, &webhook, webhook_entry(&[&ns]), &serve.url()).await;
    let review: Value = serde_json::from_str(
        &serde_json::to_string(&fixture("v3.5-artifacts-s3.admission.json"))
            .unwrap()
            .replace("minio.argo.svc:9000", &s3.endpoint),
    )
    .unwrap();
    wait_effective(&client, &ns, &pod_object(&rerun(&review, "probe"), &ns)).await;

    let first = create(&client, &ns, &rerun(&review, "first")).await;
    assert_eq!(decision(&first), "miss");
    let ran = ran_an_hour_ago();
    set_status(&client, &first, succeeded(&first, "x", &ran.0, &ran.1)["status"].clone()).await;
    let tr = task_result_for(&first, "7");
    let key = tr["outputs"]["artifacts"][0]["s3"]["key"].as_str().unwrap().to_owned();
    let patch = json!({"metadata": {"annotations": {"workflows.argoproj.io/outputs": serde_json::to_string(&tr["outputs"]).unwrap()}}});
    Api::<Pod>::namespaced(client.clone(), &ns)
        .patch(first["metadata"]["name"].as_str().unwrap(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    crate::cluster::eventually("the step recorded", Duration::from_secs(30), || async {
        (metric(&serve.metrics().await, "stepcache_recorder_recorded_total") >= 1.0).then_some(())
    })
    .await;

    s3.bucket("my-bucket").await;
    s3.put("my-bucket", &key, "features").await;
    let hit = create(&client, &ns, &rerun(&review, "second")).await;
    assert_eq!(decision(&hit), "hit", "{}\n{}", hit["metadata"], serve.logs());

    s3.delete("my-bucket", &key).await;
    let gone = create(&client, &ns, &rerun(&review, "third")).await;
    assert_eq!(decision(&gone), "miss", "{}", gone["metadata"]);
    let why = gone["metadata"]["annotations"]["stepcache.dev/miss-reason"].as_str().unwrap_or("");
    assert!(why.starts_with("artifact-gone:"), "{why}");
    assert_eq!(metric(&serve.metrics().await, "stepcache_integrity_misses_total{reason=\"artifact-gone\"}"), 1.0);
    unregister(&client, &webhook).await;
}
