//! ConfigMap contents in the key, through the real API server: a step that mounts a ConfigMap
//! is served a recorded run only while the ConfigMap holds what that run read.

use super::*;
use k8s_openapi::api::core::v1::ConfigMap;

const CONFIG: &str = "pipeline-config";

/// `review` with a user ConfigMap volume `CONFIG` mounted at `/conf` on `main`.
fn mounting_config(review: &Value) -> Value {
    let mut v = review.clone();
    let spec = &mut v["request"]["object"]["spec"];
    spec["volumes"].as_array_mut().unwrap().push(json!({"name": "conf", "configMap": {"name": CONFIG}}));
    let main = spec["containers"].as_array_mut().unwrap().iter_mut().find(|c| c["name"] == "main").unwrap();
    main["volumeMounts"].as_array_mut().unwrap().push(json!({"name": "conf", "mountPath": "/conf"}));
    v
}

/// Creates or replaces ConfigMap `CONFIG` with `rate`; with `settle`, gives the webhook's watch
/// cache a moment to see it (the cache, not the test, is what admission keys from).
async fn set_config(env: &Env, rate: &str, settle: bool) {
    let api: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.ns);
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": CONFIG, "namespace": env.ns},
        "data": {"rate": rate}
    }))
    .unwrap();
    let pp = PatchParams::apply("stepcache-test").force();
    api.patch(CONFIG, &pp, &Patch::Apply(&cm)).await.unwrap();
    if settle {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_mounting_a_configmap_hits_only_while_the_configmap_is_unchanged() {
    let Some(env) = Env::new("cmkey", ServeOptions::default()).await else { return };
    let review = mounting_config(&fixture(V36));
    set_config(&env, "0.25", true).await;

    let first = env.create(&rerun(&review, "first")).await;
    assert_eq!(label(&first, "stepcache.dev/decision"), Some("miss"), "{}", first["metadata"]);
    assert_eq!(label(&first, "stepcache.dev/record"), Some("true"), "{}", env.serve.logs());
    succeed(&env.client, &first).await;
    report_outputs(&env.client, &first, "150").await;
    recorded(&env.serve, 1.0).await;

    let same = env.create(&rerun(&review, "same")).await;
    assert_eq!(label(&same, "stepcache.dev/decision"), Some("hit"), "unchanged contents: {}", same["metadata"]);

    // No pause: whether or not the watch cache has seen the change yet, the hit is not served
    // (a stale cache keys the old contents, and the re-read before serving finds them changed).
    set_config(&env, "0.50", false).await;
    let changed = env.create(&rerun(&review, "changed")).await;
    assert_eq!(
        label(&changed, "stepcache.dev/decision"),
        Some("miss"),
        "changed contents must not be served the old run: {}",
        changed["metadata"]
    );
    env.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_mounting_a_missing_configmap_is_not_cached_and_says_which() {
    let Some(env) = Env::new("cmgone", ServeOptions::default()).await else { return };
    let review = mounting_config(&fixture(V36));
    let (pod, warnings) = create_pod_with_warnings(&env.client, &env.ns, &rerun(&review, "first")).await;
    assert_ne!(label(&pod, "stepcache.dev/decision"), Some("miss"), "{}", pod["metadata"]);
    assert_ne!(label(&pod, "stepcache.dev/record"), Some("true"));
    assert!(warnings.iter().any(|w| w.contains(&format!("configmap-unknown: {CONFIG}"))), "{warnings:?}");
    env.done().await;
}
