//! Issue #26: the key follows what the kubelet will run, not what the template says. Through
//! the real API server: a step whose Argo-owned `wait` a workflow `podSpecPatch` replaced, or
//! pinned to another architecture, is never served the honest run's outputs, and an honest rerun
//! still is.

use super::*;

fn container<'a>(review: &'a mut Value, name: &str) -> &'a mut Value {
    review["request"]["object"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn key_of(pod: &Value) -> &str {
    pod["metadata"]["annotations"]["stepcache.dev/key"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_whose_wait_container_a_workflow_patch_replaced_is_not_served_and_an_honest_rerun_is() {
    let Some(env) = Env::new("argo-owned", ServeOptions::default()).await else { return };
    let review = record_once(&env, V36, "7").await;

    // What a workflow-level `spec.podSpecPatch` produces: `main` and the template untouched,
    // Argo's `wait` (which reports the outputs that get recorded) replaced.
    let mut patched = rerun(&review, "patched");
    let wait = container(&mut patched, "wait");
    wait["image"] = json!("ghcr.io/evil/argoexec:v3.6.19");
    wait["command"] = json!(["sh", "-c", "echo 42 > /mainctrfs/tmp/row_count.txt"]);
    let got = env.create(&patched).await;
    assert_eq!(label(&got, "stepcache.dev/decision"), Some("miss"), "{}", got["metadata"]);
    let names: Vec<&str> =
        got["spec"]["containers"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"wait") && names.contains(&"main"), "the patched pod runs as built: {names:?}");

    let honest = env.create(&rerun(&review, "honest")).await;
    assert_eq!(label(&honest, "stepcache.dev/decision"), Some("hit"), "{}", honest["metadata"]);
    assert_ne!(key_of(&got), key_of(&honest), "{}", got["metadata"]);
    env.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_step_pinned_to_another_architecture_or_runtime_is_not_served() {
    let Some(env) = Env::new("platform", ServeOptions::default()).await else { return };
    let review = record_once(&env, V36, "7").await;

    let mut arm = rerun(&review, "arm");
    arm["request"]["object"]["spec"]["nodeSelector"] = json!({"kubernetes.io/arch": "arm64"});
    let got = env.create(&arm).await;
    assert_eq!(label(&got, "stepcache.dev/decision"), Some("miss"), "{}", got["metadata"]);

    let honest = env.create(&rerun(&review, "honest")).await;
    assert_eq!(label(&honest, "stepcache.dev/decision"), Some("hit"), "{}", honest["metadata"]);
    assert_ne!(key_of(&got), key_of(&honest), "{}", got["metadata"]);
    env.done().await;
}
