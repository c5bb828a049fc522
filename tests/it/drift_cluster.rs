//! Image drift on the real API server kit ([`crate::kit`]): the recorder of a real `stepcache
//! serve` learns where a tag points from the pods it watches; once a pod reports a new digest
//! for the tag an entry ran with, the same step misses with `image-moved`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

pub(crate) use crate::cluster::{create_pod as create, eventually};
use crate::harness::{fixture, ran_an_hour_ago, rerun, succeeded, task_result_for, with_annotation};
use crate::kit::{self, pod_object, register, unregister, wait_effective, webhook_entry, Serve, ServeOptions};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{json, Value};
use std::time::Duration;

const V35: &str = "v3.5-artifacts-s3.admission.json";
const TAG: &str = "ghcr.io/example/featurize:1.4.2";

pub(crate) async fn set_status(client: &kube::Client, pod: &Value, status: Value) {
    let api: Api<Pod> = Api::namespaced(client.clone(), pod["metadata"]["namespace"].as_str().unwrap());
    api.patch_status(
        pod["metadata"]["name"].as_str().unwrap(),
        &PatchParams::default(),
        &Patch::Merge(&json!({ "status": status })),
    )
    .await
    .unwrap();
}

pub(crate) fn decision(pod: &Value) -> &str {
    pod["metadata"]["labels"]["stepcache.dev/decision"].as_str().unwrap_or("")
}

async fn newest_digest(serve: &Serve) -> Option<String> {
    let url = format!("sqlite://{}", serve.dir.join("stepcache.db").display());
    let opts = stepcache::store::StoreOptions { timeout: Duration::from_secs(10), max_connections: 1 };
    let store = stepcache::store::Store::connect(&url, opts).await.unwrap();
    let got = store.tag_digests(&[TAG.to_owned()]).await.unwrap().remove(TAG);
    store.close().await;
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_reporting_a_new_digest_for_the_tag_makes_the_entry_miss_as_image_moved() {
    let Some(kit) = kit::shared() else { return };
    let client = kit.client().await;
    let ns = kit.namespace(&client, "drift", &[]).await;
    let serve = Serve::start(kit, ServeOptions { watch_namespaces: vec![ns.clone()], ..Default::default() }).await;
    let webhook = format!("stepcache-{ns}");
    register(&client, kit, &webhook, webhook_entry(&[&ns]), &serve.url()).await;
    let review = fixture(V35);
    wait_effective(&client, &ns, &pod_object(&rerun(&review, "probe"), &ns)).await;

    // The step runs once with the tag at digest A and is recorded (outputs in the annotation).
    let first = create(&client, &ns, &rerun(&review, "first")).await;
    assert_eq!(decision(&first), "miss");
    let ran = ran_an_hour_ago();
    set_status(&client, &first, succeeded(&first, "x", &ran.0, &ran.1)["status"].clone()).await;
    let outputs = serde_json::to_string(&task_result_for(&first, "7")["outputs"]).unwrap();
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let patch = json!({"metadata": {"annotations": {"workflows.argoproj.io/outputs": outputs}}});
    api.patch(first["metadata"]["name"].as_str().unwrap(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let ran = eventually("digest A observed", Duration::from_secs(30), || newest_digest(&serve)).await;
    // The tag is observed before the run is recorded: wait for the entry too.
    eventually("the first run recorded", Duration::from_secs(30), || async {
        serve.metrics().await.lines().any(|l| l == "stepcache_recorder_recorded_total 1").then_some(())
    })
    .await;
    let hit = create(&client, &ns, &rerun(&review, "second")).await;
    assert_eq!(decision(&hit), "hit", "the tag has not moved: {}\n{}", hit["metadata"], serve.logs());

    // Another step (another cache track) pulls the same tag later and gets digest B.
    let other =
        create(&client, &ns, &with_annotation(&rerun(&review, "other"), "stepcache.dev/cache-seed", "other")).await;
    assert_eq!(decision(&other), "miss");
    let moved = format!("docker.io/img@sha256:{}", "b".repeat(64));
    // It started after the first run finished (an hour ago): now.
    let (_, now) = crate::harness::ran_ago(Duration::ZERO, Duration::ZERO);
    set_status(
        &client,
        &other,
        json!({"phase": "Running", "startTime": now, "containerStatuses": [
            {"name": "main", "ready": true, "restartCount": 0, "image": TAG, "imageID": moved,
             "state": {"running": {"startedAt": now}}}]}),
    )
    .await;
    eventually("digest B observed", Duration::from_secs(30), || async {
        newest_digest(&serve).await.filter(|d| *d != ran)
    })
    .await;

    let third = create(&client, &ns, &rerun(&review, "third")).await;
    assert_eq!(decision(&third), "miss", "{}", third["metadata"]);
    let why = third["metadata"]["annotations"]["stepcache.dev/miss-reason"].as_str().unwrap_or("");
    assert!(why.starts_with("image-moved:") && why.contains(&"b".repeat(64)), "{why}");
    unregister(&client, &webhook).await;
}
