//! Where recorded outputs may come from: the Workflow status once task results are gone, and
//! never a Workflow or task result of another run under the same name.

use super::*;

/// Creates the Workflow `name` (validated by the real CRD) whose status holds `node` Succeeded
/// with `outputs`; returns its uid.
async fn workflow_with_node(env: &Env, name: &str, node: &str, outputs: &Value) -> String {
    let wf = json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {"name": name, "namespace": env.ns},
        "spec": {"entrypoint": "main", "templates": [{"name": "main", "container": {"image": "busybox"}}]},
        "status": {"phase": "Running", "nodes": {node: {
            "id": node, "name": format!("{name}.step"), "type": "Pod", "phase": "Succeeded", "outputs": outputs}}},
    });
    let api: Api<DynamicObject> =
        Api::namespaced_with(env.client.clone(), &env.ns, &stepcache::k8s::workflow_resource());
    let obj: DynamicObject = serde_json::from_value(wf).unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap().metadata.uid.unwrap()
}

/// `review` with its Workflow owner uid (ownerReference and `ARGO_WORKFLOW_UID`) set to `uid`.
fn owned_by(review: &Value, uid: &str) -> Value {
    let mut v = review.clone();
    let o = &mut v["request"]["object"];
    o["metadata"]["ownerReferences"][0]["uid"] = json!(uid);
    for list in ["initContainers", "containers"] {
        for c in o["spec"][list].as_array_mut().into_iter().flatten() {
            for e in c["env"].as_array_mut().into_iter().flatten() {
                if e["name"] == "ARGO_WORKFLOW_UID" {
                    e["value"] = json!(uid);
                }
            }
        }
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_come_from_the_workflow_status_once_the_task_result_is_gone() {
    let Some(env) = Env::new("wfstatus", ServeOptions::default()).await else { return };
    let review = rerun(&fixture(V36), "first");
    let want = pod_object(&review, &env.ns);
    let outputs = task_result_for(&want, "from-status")["outputs"].clone();
    let uid = workflow_with_node(&env, &workflow_of(&want), &node_of(&want), &outputs).await;
    let first = env.create(&owned_by(&review, &uid)).await;
    assert_eq!(label(&first, "stepcache.dev/decision"), Some("miss"));
    succeed(&env.client, &first).await; // no task result: read from the Workflow on the next resync
    recorded(&env.serve, 1.0).await;
    let rows = rows(&env.serve).await;
    assert_eq!(serde_json::to_value(&rows[0].run.outputs).unwrap(), outputs);
    env.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_workflow_of_the_same_name_never_supplies_outputs() {
    let Some(env) = Env::new("wfreuse", ServeOptions::default()).await else { return };
    let review = rerun(&fixture(V36), "first");
    let want = pod_object(&review, &env.ns);
    let first = env.create(&review).await;
    assert_eq!(label(&first, "stepcache.dev/decision"), Some("miss"));
    // The pod's own Workflow is gone; another run under the same name (same node ids) exists.
    let outputs = task_result_for(&want, "another-run")["outputs"].clone();
    let other = workflow_with_node(&env, &workflow_of(&want), &node_of(&want), &outputs).await;
    assert_ne!(Some(other.as_str()), first["metadata"]["ownerReferences"][0]["uid"].as_str());
    succeed(&env.client, &first).await;
    // Two resync periods (5 s) with the fallback consulted.
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(
        metric(&env.serve.metrics().await, "stepcache_recorder_recorded_total"),
        0.0,
        "{:?}",
        rows(&env.serve).await
    );
    env.done().await;
}

// ---------------------------------------------------------------------------------------------
// Task results left by an earlier run of a workflow with the same name (same node ids)

/// A completed task result for `pod`'s node holding `value`, owned by the Workflow `owner_uid`.
async fn leftover_task_result(env: &Env, pod: &Value, value: &str, owner_uid: &str) -> Value {
    let mut tr = task_result_for(pod, value);
    tr["metadata"]["ownerReferences"] = json!([{"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "name": workflow_of(pod), "uid": owner_uid}]);
    let obj: DynamicObject = serde_json::from_value(tr.clone()).unwrap();
    env.task_results().create(&PostParams::default(), &obj).await.unwrap();
    tr
}

/// Asserts that nothing gets recorded over two resync periods.
async fn not_recorded_after_resyncs(env: &Env) {
    // Two resync periods (5 s): the pending pod is assessed again, with every source it has.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let m = env.serve.metrics().await;
    assert_eq!(metric(&m, "stepcache_recorder_recorded_total"), 0.0, "{:?}", rows(&env.serve).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_result_of_an_earlier_run_never_supplies_outputs() {
    let Some(env) = Env::new("trreuse", ServeOptions::default()).await else { return };
    let review = rerun(&fixture(V36), "first");
    let want = pod_object(&review, &env.ns);
    // Not yet garbage-collected: still owned by the earlier run's Workflow.
    leftover_task_result(&env, &want, "earlier-run", "an-earlier-workflow-uid").await;
    let first = env.create(&review).await;
    assert_eq!(label(&first, "stepcache.dev/decision"), Some("miss"));
    succeed(&env.client, &first).await;
    not_recorded_after_resyncs(&env).await;
    env.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_task_result_never_supplies_outputs() {
    let Some(env) = Env::new("trdeleted", ServeOptions::default()).await else { return };
    let review = rerun(&fixture(V36), "first");
    let want = pod_object(&review, &env.ns);
    let owner = want["metadata"]["ownerReferences"][0]["uid"].as_str().unwrap().to_owned();
    let tr = leftover_task_result(&env, &want, "deleted", &owner).await;
    // Seen by the recorder, then deleted (as the garbage collector does with its Workflow's).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let name = tr["metadata"]["name"].as_str().unwrap();
    env.task_results().delete(name, &Default::default()).await.unwrap();
    let first = env.create(&review).await;
    assert_eq!(label(&first, "stepcache.dev/decision"), Some("miss"));
    succeed(&env.client, &first).await;
    not_recorded_after_resyncs(&env).await;
    env.done().await;
}
