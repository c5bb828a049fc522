//! Hit pods the real API server accepts wherever it accepted the original (#27 §2): a refused
//! create fails the Argo node, so each case creates the original (a miss) and then its hit
//! through the real API server and its admission plugins.

use super::*;
use k8s_openapi::api::core::v1::LimitRange;

/// Records the step of `review` once in `env` (miss → succeeded → outputs → recorded).
async fn record(env: &Env, review: &Value, value: &str) -> Value {
    let first = env.create(&rerun(review, "first")).await;
    assert_eq!(label(&first, "stepcache.dev/decision"), Some("miss"), "{}", first["metadata"]);
    succeed(&env.client, &first).await;
    report_outputs(&env.client, &first, value).await;
    recorded(&env.serve, 1.0).await;
    first
}

/// Creates `review`'s pod; the API server's refusal, if any, as text.
async fn try_create(env: &Env, review: &Value) -> Result<Value, String> {
    let pod: Pod = serde_json::from_value(pod_object(review, &env.ns)).unwrap();
    env.pods()
        .create(&PostParams::default(), &pod)
        .await
        .map(|p| serde_json::to_value(p).unwrap())
        .map_err(|e| e.to_string())
}

/// A quantity in thousandths (`50m` → 50, `32Mi` → 32 Mi × 1000); 0 when absent.
fn quantity_milli(v: &Value) -> i128 {
    let s = v.as_str().unwrap_or("0");
    let (num, mul) = [("m", 1), ("Ki", 1000 << 10), ("Mi", 1000 << 20), ("Gi", 1000 << 30)]
        .iter()
        .find_map(|(suffix, mul)| s.strip_suffix(suffix).map(|n| (n, *mul)))
        .unwrap_or((s, 1000));
    num.parse::<i128>().unwrap() * mul
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hit_in_a_namespace_with_a_limit_range_minimum_is_accepted() {
    let Some(env) = Env::new("limits", ServeOptions::default()).await else { return };
    let lr: LimitRange = serde_json::from_value(json!({
        "metadata": {"name": "minimums"},
        "spec": {"limits": [{"type": "Container", "min": {"cpu": "50m", "memory": "32Mi"}}]}
    }))
    .unwrap();
    Api::<LimitRange>::namespaced(env.client.clone(), &env.ns).create(&PostParams::default(), &lr).await.unwrap();
    let review = fixture(V36);
    let first = record(&env, &review, "9").await;
    // The API server enforces LimitRanges: the original's init container got the minimum as its
    // default request (LimitRanger), so a no-op under it would be refused.
    let init = &first["spec"]["initContainers"][0]["resources"]["requests"];
    assert_eq!(quantity_milli(&init["cpu"]), 50, "LimitRanger is not enabled: {init}");

    let hit = try_create(&env, &rerun(&review, "second")).await.unwrap_or_else(|e| panic!("hit pod refused: {e}"));
    assert_eq!(label(&hit, "stepcache.dev/decision"), Some("hit"), "{}", hit["metadata"]);
    let r = &hit["spec"]["containers"][0]["resources"];
    assert!(quantity_milli(&r["requests"]["cpu"]) >= 50, "{r}");
    assert!(quantity_milli(&r["requests"]["memory"]) >= 32 * 1024 * 1024 * 1000, "{r}");
    env.done().await;
}

/// `review` as a Windows step pod: `spec.os.name: windows` and the OS node selector.
fn on_windows(review: &Value) -> Value {
    let mut v = review.clone();
    let spec = &mut v["request"]["object"]["spec"];
    spec["os"] = json!({"name": "windows"});
    spec["nodeSelector"] = json!({"kubernetes.io/os": "windows"});
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_windows_pods_hit_is_accepted_and_stays_on_windows() {
    let Some(env) = Env::new("windows", ServeOptions::default()).await else { return };
    let review = on_windows(&fixture(V36));
    record(&env, &review, "3").await;

    let hit = try_create(&env, &rerun(&review, "second")).await.unwrap_or_else(|e| panic!("hit pod refused: {e}"));
    assert_eq!(label(&hit, "stepcache.dev/decision"), Some("hit"), "{}", hit["metadata"]);
    assert_eq!(hit["spec"]["os"]["name"], "windows");
    assert_eq!(hit["spec"]["nodeSelector"]["kubernetes.io/os"], "windows", "{}", hit["spec"]);
    let c = &hit["spec"]["containers"][0];
    assert_eq!(c["image"], stepcache::rewrite::DEFAULT_WINDOWS_NOOP_IMAGE);
    env.done().await;
}
