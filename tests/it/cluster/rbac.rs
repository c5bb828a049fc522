//! The chart's webhook selectors and ClusterRole, rendered with `helm template`: what they keep
//! away, that they are enough, and how a missing permission shows.

use super::*;

fn yaml_to_json(v: &serde_yaml::Value) -> Value {
    serde_json::to_value(v).unwrap()
}

/// The chart's webhook entry for `values`, called by URL instead of through its Service.
fn chart_webhook(helm: &std::path::Path, values: &str) -> Value {
    let mut entry = yaml_to_json(crate::chart::render_with(helm, values, &[]).webhook());
    entry.as_object_mut().unwrap().remove("clientConfig");
    entry
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_charts_selectors_keep_non_argo_pods_and_excluded_namespaces_away() {
    let Some(kit) = kit::shared() else { return };
    let Some(helm) = crate::chart::helm() else { return };
    let client = kit.client().await;
    let inside = kit.namespace(&client, "chart-in", &[]).await;
    let excluded = kit.namespace(&client, "chart-out", &[]).await;
    // Limited to this test's namespaces (the API server is shared), one of them excluded again.
    let values = format!("webhook: {{namespaces: {{include: [{inside}, {excluded}], exclude: [{excluded}]}}}}");
    let entry = chart_webhook(helm, &values);
    let env =
        Env::attach_with(kit, client, &[&inside, &excluded], ServeOptions::default(), entry, &[inside.as_str()]).await;
    let review = fixture(V36);
    let before = admissions(&env.serve.metrics().await);
    let mut untouched = vec![pod_object(&rerun(&review, "excluded"), &excluded)];
    let mut opted_out = pod_object(&rerun(&review, "optout"), &inside);
    opted_out["metadata"]["labels"]["stepcache.dev/enabled"] = json!("false");
    let mut kfp_off = pod_object(&rerun(&review, "kfpoff"), &inside);
    kfp_off["metadata"]["labels"]["pipelines.kubeflow.org/enable_caching"] = json!("false");
    let mut agent = pod_object(&rerun(&review, "agent"), &inside);
    agent["metadata"]["labels"]["workflows.argoproj.io/component"] = json!("agent");
    let mut plain = pod_object(&rerun(&review, "plain"), &inside);
    plain["metadata"]["labels"].as_object_mut().unwrap().remove("workflows.argoproj.io/workflow");
    untouched.extend([opted_out, kfp_off, agent, plain]);
    for want in untouched {
        let ns = want["metadata"]["namespace"].as_str().unwrap();
        let api: Api<Pod> = Api::namespaced(env.client.clone(), ns);
        let pod: Pod = serde_json::from_value(want.clone()).unwrap();
        let got = serde_json::to_value(api.create(&PostParams::default(), &pod).await.unwrap()).unwrap();
        assert_eq!(got["metadata"]["labels"], want["metadata"]["labels"], "labels untouched");
        assert_eq!(got["metadata"]["annotations"], want["metadata"]["annotations"], "annotations untouched");
    }
    assert_eq!(admissions(&env.serve.metrics().await), before, "the selectors kept them from the webhook");
    let step = env.create(&rerun(&review, "step")).await;
    assert_eq!(label(&step, "stepcache.dev/decision"), Some("miss"), "an Argo step pod in an included namespace");
    assert_eq!(admissions(&env.serve.metrics().await), before + 1.0);
    env.done().await;
}

/// A ServiceAccount `stepcache` in `ns` bound to the chart's ClusterRole with `rules` changed by
/// `edit`; returns a kubeconfig authenticating with its token (TokenRequest API), once RBAC
/// lets it list pods.
async fn service_account_kubeconfig(
    kit: &Kit,
    client: &kube::Client,
    helm: &std::path::Path,
    ns: &str,
    edit: impl FnOnce(&mut Vec<Value>),
) -> std::path::PathBuf {
    use k8s_openapi::api::authentication::v1::TokenRequest;
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
    let rendered = crate::chart::render_with(helm, "", &[]);
    let mut role = yaml_to_json(rendered.one("ClusterRole"));
    let mut binding = yaml_to_json(rendered.one("ClusterRoleBinding"));
    let name = format!("stepcache-{ns}");
    role["metadata"]["name"] = json!(name);
    let mut rules: Vec<Value> = role["rules"].as_array().unwrap().clone();
    edit(&mut rules);
    role["rules"] = json!(rules);
    binding["metadata"]["name"] = json!(name);
    binding["roleRef"]["name"] = json!(name);
    assert_eq!(binding["subjects"].as_array().unwrap().len(), 1);
    binding["subjects"][0]["namespace"] = json!(ns);
    let sa_name = binding["subjects"][0]["name"].as_str().unwrap().to_owned();
    let pp = PostParams::default();
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": sa_name}})).unwrap();
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    sas.create(&pp, &sa).await.unwrap();
    let role: ClusterRole = serde_json::from_value(role).unwrap();
    Api::<ClusterRole>::all(client.clone()).create(&pp, &role).await.unwrap();
    let binding: ClusterRoleBinding = serde_json::from_value(binding).unwrap();
    Api::<ClusterRoleBinding>::all(client.clone()).create(&pp, &binding).await.unwrap();
    let req: TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 3600}})).unwrap();
    let token = sas.create_token_request(&sa_name, &pp, &req).await.unwrap().status.unwrap().token;
    let path = kit.run.join(format!("{ns}.kubeconfig"));
    kit.kubeconfig_with_token(&path, &token);
    // RBAC is served from a cache: wait until the binding applies.
    let as_sa = kit::client_from(&path).await;
    let pods: Api<Pod> = Api::namespaced(as_sa, ns);
    eventually("the ClusterRoleBinding to apply", Duration::from_secs(20), || async {
        pods.list(&ListParams::default().limit(1)).await.ok().map(|_| ())
    })
    .await;
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_cycle_works_with_only_the_charts_cluster_role() {
    let Some(kit) = kit::shared() else { return };
    let Some(helm) = crate::chart::helm() else { return };
    let client = kit.client().await;
    let ns = kit.namespace(&client, "rbac", &[]).await;
    let kubeconfig = service_account_kubeconfig(kit, &client, helm, &ns, |_| {}).await;
    let opts = ServeOptions { kubeconfig: Some(kubeconfig), ..Default::default() };
    let env = Env::attach(kit, client, &[&ns], opts).await;
    super::cycle::cycle(&env, V36, "150").await;
    let logs = env.serve.logs();
    assert!(!logs.contains("forbidden"), "no permission was missing:\n{logs}");
    env.done().await;
}

/// Removes `verbs` from the chart's rule on `resource`.
fn without(rules: &mut [Value], resource: &str, verbs: &[&str]) {
    let rule = rules
        .iter_mut()
        .find(|r| r["resources"].as_array().unwrap().iter().any(|x| x == resource))
        .unwrap_or_else(|| panic!("the chart has no rule for {resource}"));
    let kept: Vec<Value> =
        rule["verbs"].as_array().unwrap().iter().filter(|v| !verbs.iter().any(|x| *v == x)).cloned().collect();
    rule["verbs"] = json!(kept);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorder_without_watch_permission_says_so_in_its_log_and_metrics() {
    let Some(kit) = kit::shared() else { return };
    let Some(helm) = crate::chart::helm() else { return };
    let client = kit.client().await;
    let ns = kit.namespace(&client, "nowatch", &[]).await;
    let kubeconfig =
        service_account_kubeconfig(kit, &client, helm, &ns, |r| without(r, "workflowtaskresults", &["list", "watch"]))
            .await;
    let opts = ServeOptions { kubeconfig: Some(kubeconfig), ..Default::default() };
    let env = Env::attach(kit, client, &[&ns], opts).await;
    let logs = env.serve.wait_for_log("recorder forbidden", Duration::from_secs(20)).await;
    let line = logs.lines().find(|l| l.contains("recorder forbidden")).unwrap();
    assert!(line.contains("workflowtaskresults") && line.contains("list and watch"), "names what is missing: {line}");
    assert!(line.contains("ERROR"), "an error, not a retry notice: {line}");
    let m = env.serve.metrics().await;
    assert!(
        metric(&m, "stepcache_recorder_watch_errors_total{resource=\"workflowtaskresults\",reason=\"forbidden\"}")
            >= 1.0,
        "{m}"
    );
    env.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hit_without_task_result_permission_is_a_miss_with_a_log_line_and_a_metric() {
    let Some(kit) = kit::shared() else { return };
    let Some(helm) = crate::chart::helm() else { return };
    let client = kit.client().await;
    let ns = kit.namespace(&client, "nocreate", &[]).await;
    let kubeconfig = service_account_kubeconfig(kit, &client, helm, &ns, |r| {
        without(r, "workflowtaskresults", &["create", "update", "patch"])
    })
    .await;
    let opts = ServeOptions { kubeconfig: Some(kubeconfig), ..Default::default() };
    let env = Env::attach(kit, client, &[&ns], opts).await;
    let review = record_once(&env, V36, "7").await;
    let (again, warnings) = create_pod_with_warnings(&env.client, &env.ns, &rerun(&review, "again")).await;
    assert_eq!(label(&again, "stepcache.dev/decision"), Some("miss"), "{}", again["metadata"]);
    assert!(
        warnings.iter().any(|w| w.contains("hit not served") && w.contains("forbidden")),
        "the pod's creator is told why: {warnings:?}"
    );
    let shape = |pod: &Value| -> Vec<(Value, Value, Value)> {
        let cs = pod["spec"]["containers"].as_array().unwrap();
        cs.iter().map(|c| (c["name"].clone(), c["image"].clone(), c["command"].clone())).collect()
    };
    assert_eq!(shape(&again), shape(&pod_object(&rerun(&review, "again"), &env.ns)), "the step runs as Argo built it");
    let m = env.serve.metrics().await;
    assert_eq!(metric(&m, "stepcache_task_result_errors_total{reason=\"forbidden\"}"), 1.0, "{m}");
    let logs = env.serve.logs();
    assert!(
        logs.lines().any(|l| l.contains("forbidden") && l.contains("workflowtaskresults")),
        "a log line names the refused write:\n{logs}"
    );
    env.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hit_without_limitrange_permission_is_a_miss_that_names_it() {
    let Some(kit) = kit::shared() else { return };
    let Some(helm) = crate::chart::helm() else { return };
    let client = kit.client().await;
    let ns = kit.namespace(&client, "nolimits", &[]).await;
    let kubeconfig =
        service_account_kubeconfig(kit, &client, helm, &ns, |r| without(r, "limitranges", &["list"])).await;
    let opts = ServeOptions { kubeconfig: Some(kubeconfig), ..Default::default() };
    let env = Env::attach(kit, client, &[&ns], opts).await;
    let review = record_once(&env, V36, "7").await;
    let (again, warnings) = create_pod_with_warnings(&env.client, &env.ns, &rerun(&review, "again")).await;
    assert_eq!(label(&again, "stepcache.dev/decision"), Some("miss"), "{}", again["metadata"]);
    assert!(
        warnings.iter().any(|w| w.contains("hit not served") && w.contains("limitranges")),
        "the pod's creator is told why: {warnings:?}"
    );
    let m = env.serve.metrics().await;
    assert_eq!(metric(&m, "stepcache_hit_pod_refusals_total{reason=\"not_synced\"}"), 1.0, "{m}");
    env.done().await;
}
