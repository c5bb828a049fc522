//! Secret contents in the key (`--key-secret-contents`), through the real API server: a step
//! reading a Secret is served a recorded run only while the Secret holds what that run read;
//! without the switch Secrets stay keyed by reference; a Secret stepcache cannot see leaves the
//! step uncached, saying which.

use super::*;
use k8s_openapi::api::core::v1::Secret;

const SECRET: &str = "db-credentials";

/// `review` with `main` reading Secret `SECRET` through `envFrom`.
fn reading_secret(review: &Value) -> Value {
    let mut v = review.clone();
    let spec = &mut v["request"]["object"]["spec"];
    let main = spec["containers"].as_array_mut().unwrap().iter_mut().find(|c| c["name"] == "main").unwrap();
    main["envFrom"] = json!([{"secretRef": {"name": SECRET}}]);
    v
}

/// Creates or replaces Secret `SECRET` with `password`, then gives the webhook's watch a moment.
async fn set_secret(env: &Env, password: &str, settle: bool) {
    let api: Api<Secret> = Api::namespaced(env.client.clone(), &env.ns);
    let s: Secret = serde_json::from_value(json!({
        "metadata": {"name": SECRET, "namespace": env.ns},
        "stringData": {"PASSWORD": password}
    }))
    .unwrap();
    let pp = PatchParams::apply("stepcache-test").force();
    api.patch(SECRET, &pp, &Patch::Apply(&s)).await.unwrap();
    if settle {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

fn keyed() -> ServeOptions {
    ServeOptions { args: vec!["--key-secret-contents".into()], ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_secret_contents_keyed_a_changed_secret_is_not_served_the_old_run() {
    let Some(env) = Env::new("seckey", keyed()).await else { return };
    let review = reading_secret(&fixture(V36));
    set_secret(&env, "hunter2", true).await;

    let first = env.create(&rerun(&review, "first")).await;
    assert_eq!(label(&first, "stepcache.dev/decision"), Some("miss"), "{}", first["metadata"]);
    let key = first["metadata"]["annotations"]["stepcache.dev/key"].as_str().unwrap().to_owned();
    succeed(&env.client, &first).await;
    report_outputs(&env.client, &first, "150").await;
    recorded(&env.serve, 1.0).await;

    let same = env.create(&rerun(&review, "same")).await;
    assert_eq!(label(&same, "stepcache.dev/decision"), Some("hit"), "unchanged Secret: {}", same["metadata"]);

    // No pause: a stale watch keys the old contents, and the re-read before serving catches it.
    set_secret(&env, "hunter3", false).await;
    let changed = env.create(&rerun(&review, "changed")).await;
    assert_eq!(label(&changed, "stepcache.dev/decision"), Some("miss"), "{}", changed["metadata"]);
    // The value never reaches the pod, the log or the key material.
    let logs = env.serve.logs();
    assert!(!logs.contains("hunter2") && !logs.contains("aHVudGVyMg"), "a Secret value in the log");
    assert!(!key.contains("hunter"));
    env.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_switch_secrets_are_keyed_by_reference_and_a_missing_one_is_named_with_it() {
    let Some(env) = Env::new("secref", ServeOptions::default()).await else { return };
    let review = reading_secret(&fixture(V36));
    // By reference: no Secret needs to exist for the step to be keyed and marked.
    let pod = env.create(&rerun(&review, "byref")).await;
    assert_eq!(label(&pod, "stepcache.dev/decision"), Some("miss"), "{}", pod["metadata"]);
    env.done().await;

    let Some(env) = Env::new("secgone", keyed()).await else { return };
    let (pod, warnings) = create_pod_with_warnings(&env.client, &env.ns, &rerun(&review, "gone")).await;
    assert_ne!(label(&pod, "stepcache.dev/record"), Some("true"), "{}", pod["metadata"]);
    assert!(warnings.iter().any(|w| w.contains(&format!("secret-unknown: {SECRET}"))), "{warnings:?}");
    env.done().await;
}
