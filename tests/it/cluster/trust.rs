//! Only the Argo controller's pods count: a user who may create pods, dressing one as another
//! workflow's node, is neither served nor recorded, and stepcache never writes a task result
//! on her behalf (the API server sends her own `userInfo`, which is what stepcache checks).

use super::*;

/// A ServiceAccount `mallory` in `ns` that may create, get and list pods and get task results,
/// nothing more; a client authenticating as her (TokenRequest API), once RBAC applies.
async fn pod_creator(kit: &Kit, client: &kube::Client, ns: &str) -> kube::Client {
    use k8s_openapi::api::authentication::v1::TokenRequest;
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    let pp = PostParams::default();
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    sas.create(&pp, &serde_json::from_value(json!({"metadata": {"name": "mallory"}})).unwrap()).await.unwrap();
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "pod-creator"},
        "rules": [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "get", "list"]},
            {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["get", "list"]}
        ]
    }))
    .unwrap();
    Api::<Role>::namespaced(client.clone(), ns).create(&pp, &role).await.unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "pod-creator"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-creator"},
        "subjects": [{"kind": "ServiceAccount", "name": "mallory", "namespace": ns}]
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(client.clone(), ns).create(&pp, &binding).await.unwrap();
    let req: TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 3600}})).unwrap();
    let token = sas.create_token_request("mallory", &pp, &req).await.unwrap().status.unwrap().token;
    let path = kit.run.join(format!("{ns}-mallory.kubeconfig"));
    kit.kubeconfig_with_token(&path, &token);
    let as_her = kit::client_from(&path).await;
    let pods: Api<Pod> = Api::namespaced(as_her.clone(), ns);
    eventually("the RoleBinding to apply", Duration::from_secs(20), || async {
        pods.list(&ListParams::default().limit(1)).await.ok().map(|_| ())
    })
    .await;
    as_her
}

fn decisions(metrics: &str, decision: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("stepcache_namespace_decisions_total{") && l.contains(&format!("decision=\"{decision}\""))
        })
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_dressed_as_another_workflows_node_by_a_user_is_not_served_and_its_task_result_is_untouched() {
    let Some(env) = Env::new("deputy", ServeOptions::default()).await else { return };
    let review = record_once(&env, V36, "7").await;
    let mallory = pod_creator(env.kit, &env.client, &env.ns).await;

    // Another workflow's node is running: its wait container has left an incomplete task result.
    let victim = rerun(&review, "victim");
    let want = pod_object(&victim, &env.ns);
    let mut placeholder = task_result_for(&want, "0");
    placeholder["metadata"]["labels"]["workflows.argoproj.io/report-outputs-completed"] = json!("false");
    placeholder["outputs"] = json!({});
    env.task_results().create(&PostParams::default(), &serde_json::from_value(placeholder).unwrap()).await.unwrap();
    // She may not write it herself.
    let hers: Api<DynamicObject> = Api::namespaced_with(mallory.clone(), &env.ns, &task_result_resource());
    let forbidden = hers
        .patch(&node_of(&want), &PatchParams::default(), &Patch::Merge(&json!({"outputs": {"parameters": []}})))
        .await;
    assert!(matches!(forbidden, Err(kube::Error::Api(ref s)) if s.code == 403), "{forbidden:?}");

    // She creates a pod with that node's labels, annotations and owner, reproducing the
    // recorded step: the controller's identical pod would be a hit.
    let before = decisions(&env.serve.metrics().await, "skipped-not-controller");
    let got = create_pod(&mallory, &env.ns, &victim).await;
    assert_eq!(label(&got, "stepcache.dev/decision"), None, "not decided: {}", got["metadata"]);
    assert_eq!(shape(&got), shape(&want), "her pod runs as she wrote it");
    let tr = serde_json::to_value(env.task_results().get(&node_of(&want)).await.unwrap()).unwrap();
    assert_eq!(tr["metadata"]["labels"]["workflows.argoproj.io/report-outputs-completed"], "false", "{tr}");
    assert_eq!(tr["outputs"], json!({}), "stepcache wrote nothing for her: {tr}");
    let after = decisions(&env.serve.metrics().await, "skipped-not-controller");
    assert_eq!(after, before + 1.0, "counted as not the controller's");
    assert!(env.serve.logs().contains("not created by the Argo controller"), "the log says why:\n{}", env.serve.logs());

    // The controller's own pod for that node is served as before.
    let hit = env.create(&rerun(&review, "controller")).await;
    assert_eq!(label(&hit, "stepcache.dev/decision"), Some("hit"), "{}", hit["metadata"]);
    env.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mark_copied_onto_a_users_pod_is_removed_so_the_recorder_never_sees_it() {
    let Some(env) = Env::new("copied", ServeOptions::default()).await else { return };
    let mallory = pod_creator(env.kit, &env.client, &env.ns).await;
    let review = fixture(V36);
    let marked = env.create(&rerun(&review, "marked")).await;
    assert_eq!(label(&marked, "stepcache.dev/record"), Some("true"), "{}", marked["metadata"]);

    // Her pod carries the controller's pod's decision, record label, key and mark.
    let mut copy = rerun(&review, "copy");
    let obj = &mut copy["request"]["object"]["metadata"];
    for map in ["labels", "annotations"] {
        for (k, v) in marked["metadata"][map].as_object().unwrap() {
            if k.starts_with("stepcache.dev/") {
                obj[map][k] = v.clone();
            }
        }
    }
    let (got, warnings) = create_pod_with_warnings(&mallory, &env.ns, &copy).await;
    for map in ["labels", "annotations"] {
        let left: Vec<&String> =
            got["metadata"][map].as_object().unwrap().keys().filter(|k| k.starts_with("stepcache.dev/")).collect();
        assert!(left.is_empty(), "{map} left: {left:?}");
    }
    assert!(warnings.iter().any(|w| w.contains("not created by the Argo controller")), "{warnings:?}");
    env.done().await;
}
