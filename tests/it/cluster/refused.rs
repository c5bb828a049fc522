//! A hit the API server refuses after stepcache answered it (here a ValidatingAdmissionPolicy
//! that rejects no-op pods, as an image allow-list would) heals: the refusal is detected, the
//! key is blocked in that namespace, Argo's retry runs the step, and an operator's
//! `stepcache refused clear` serves the key again.

use super::*;
use kube::api::DeleteParams;

/// A ValidatingAdmissionPolicy, bound to `ns` only, that denies pods stepcache rewrote into a
/// hit; returns once the API server enforces it.
async fn refuse_hits_in(client: &kube::Client, ns: &str) -> String {
    use kube::discovery::ApiResource;
    let policy_res = ApiResource {
        group: "admissionregistration.k8s.io".into(),
        version: "v1".into(),
        api_version: "admissionregistration.k8s.io/v1".into(),
        kind: "ValidatingAdmissionPolicy".into(),
        plural: "validatingadmissionpolicies".into(),
    };
    let binding_res = ApiResource {
        kind: "ValidatingAdmissionPolicyBinding".into(),
        plural: "validatingadmissionpolicybindings".into(),
        ..policy_res.clone()
    };
    let name = format!("no-noop-{ns}");
    let policy: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}]},
            "validations": [{
                "expression": "!has(object.metadata.labels) || !('stepcache.dev/decision' in object.metadata.labels) || object.metadata.labels['stepcache.dev/decision'] != 'hit'",
                "message": "image not on the allow-list"
            }]
        }
    }))
    .unwrap();
    let binding: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}
        }
    }))
    .unwrap();
    let pp = PostParams::default();
    Api::<DynamicObject>::all_with(client.clone(), &policy_res).create(&pp, &policy).await.unwrap();
    let bindings = Api::<DynamicObject>::all_with(client.clone(), &binding_res);
    bindings.create(&pp, &binding).await.unwrap();
    // The probe is refused once the policy is in force.
    let probe = probe();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let dry = PostParams { dry_run: true, ..Default::default() };
    eventually("the policy to be enforced", Duration::from_secs(30), || async {
        pods.create(&dry, &probe).await.is_err().then_some(())
    })
    .await;
    name
}

async fn unbind(client: &kube::Client, ns: &str, name: &str) {
    use kube::discovery::ApiResource;
    let binding_res = ApiResource {
        group: "admissionregistration.k8s.io".into(),
        version: "v1".into(),
        api_version: "admissionregistration.k8s.io/v1".into(),
        kind: "ValidatingAdmissionPolicyBinding".into(),
        plural: "validatingadmissionpolicybindings".into(),
    };
    Api::<DynamicObject>::all_with(client.clone(), &binding_res).delete(name, &DeleteParams::default()).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let dry = PostParams { dry_run: true, ..Default::default() };
    eventually("the policy to be lifted", Duration::from_secs(30), || async {
        pods.create(&dry, &probe()).await.is_ok().then_some(())
    })
    .await;
}

/// A plain pod labelled like a hit (no Argo labels: the webhook never sees it).
fn probe() -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "probe", "labels": {"stepcache.dev/decision": "hit"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    }))
    .unwrap()
}

/// Plays the controller after a refused create: the Workflow whose node holds the error text.
async fn workflow_with_error(client: &kube::Client, ns: &str, pod: &Value, message: &str) {
    let wf = workflow_of(pod);
    let node = node_of(pod);
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {"name": wf, "namespace": ns},
        "spec": {"entrypoint": "main", "templates": [{"name": "main", "container": {"image": "busybox"}}]},
        "status": {"phase": "Running", "nodes": {node.clone(): {"id": node, "name": wf, "type": "Pod", "phase": "Error", "message": message}}}
    }))
    .unwrap();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &stepcache::k8s::workflow_resource());
    api.create(&PostParams::default(), &obj).await.unwrap();
}

fn stepcache_cli(serve: &Serve, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stepcache"))
        .args(args)
        .args(["--database-url", &format!("sqlite://{}", serve.dir.join("stepcache.db").display())])
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_hit_blocks_its_key_so_the_retry_runs_and_a_clear_serves_it_again() {
    let opts = ServeOptions {
        args: ["--refused-hit-check-after", "1s", "--refused-hit-refresh", "1s"].map(String::from).to_vec(),
        ..Default::default()
    };
    let Some(env) = Env::new("refused", opts).await else { return };
    let review = record_once(&env, V36, "7").await;
    let policy = refuse_hits_in(&env.client, &env.ns).await;

    // The hit is answered, then refused by the policy: Argo would fail the node.
    let refused = rerun(&review, "refused");
    let want = pod_object(&refused, &env.ns);
    let pod: Pod = serde_json::from_value(want.clone()).unwrap();
    let err = env.pods().create(&PostParams::default(), &pod).await.unwrap_err();
    let message = match &err {
        kube::Error::Api(s) => s.message.clone(),
        other => panic!("{other:?}"),
    };
    assert!(message.contains("image not on the allow-list"), "{message}");
    workflow_with_error(&env.client, &env.ns, &want, &message).await;
    eventually("the refusal to be detected", Duration::from_secs(30), || async {
        (metric(&env.serve.metrics().await, "stepcache_refused_hits_total") >= 1.0).then_some(())
    })
    .await;

    // Argo's retry (a new node, a new pod name) runs the step.
    let retry = env.create(&rerun(&review, "refused-retry")).await;
    assert_eq!(label(&retry, "stepcache.dev/decision"), Some("miss"), "{}", retry["metadata"]);
    let why = retry["metadata"]["annotations"]["stepcache.dev/miss-reason"].as_str().unwrap_or_default();
    assert!(why.starts_with("hit-refused:") && why.contains("image not on the allow-list"), "{why}");

    // What operators see, and the clear.
    let listed: Value = serde_json::from_str(&stepcache_cli(&env.serve, &["refused", "list", "-o", "json"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["namespace"], env.ns.as_str());
    assert_eq!(listed[0]["pod_name"], want["metadata"]["name"]);
    assert!(listed[0]["cause"].as_str().unwrap().contains("image not on the allow-list"), "{listed}");
    let key = listed[0]["key"].as_str().unwrap().to_owned();
    unbind(&env.client, &env.ns, &policy).await;
    let cleared = stepcache_cli(&env.serve, &["refused", "clear", "--key", &key, "--namespace", &env.ns]);
    assert_eq!(cleared.trim(), "1");
    let mut n = 0;
    eventually("the key to be served again", Duration::from_secs(30), || {
        n += 1;
        let review = rerun(&review, &format!("after-clear-{n}"));
        let env = &env;
        async move {
            let pod = env.create(&review).await;
            (label(&pod, "stepcache.dev/decision") == Some("hit")).then_some(())
        }
    })
    .await;
    env.done().await;
}
