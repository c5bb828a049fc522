//! The whole cycle against a real kube-apiserver + etcd ([`crate::kit`]), through the real
//! `stepcache serve` registered as a MutatingWebhookConfiguration: a miss marks the pod; the
//! test plays the kubelet (pod status → Succeeded) and Argo's wait container (outputs); the
//! recorder records from its real watches; the same step in another workflow is a hit whose
//! WorkflowTaskResult the real Argo CRD accepts and whose Event is stored.
//!
//! Each test has its own namespaces, `stepcache serve` and webhook configuration scoped to
//! them, so they run in parallel on the one shared API server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use crate::harness::{fixture, rerun, succeeded, task_result_for};
use crate::kit::{
    self, admissions, pod_object, register, unregister, wait_effective, webhook_entry, Kit, Serve, ServeOptions,
};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use stepcache::argo::template::{classify, ArgoLayout, Classification};
use stepcache::k8s::task_result_resource;

const V36: &str = "v3.6-container-params.admission.json";

/// One test's slice of the cluster: a namespace, a `stepcache serve` and its webhook.
struct Env {
    kit: &'static Kit,
    client: kube::Client,
    ns: String,
    serve: Serve,
    webhook: String,
}

impl Env {
    /// A namespace `prefix-N`, a `stepcache serve` watching it, registered and effective.
    /// `None` = skipped (no kit).
    async fn new(prefix: &str, opts: ServeOptions) -> Option<Env> {
        let kit = kit::shared()?;
        let client = kit.client().await;
        let ns = kit.namespace(&client, prefix, &[]).await;
        Some(Env::attach(kit, client, &[&ns], opts).await)
    }

    /// A `stepcache serve` (watching `namespaces` unless `opts` says otherwise) registered with
    /// the chart's webhook entry limited to `namespaces`; the first one is the test's own.
    async fn attach(kit: &'static Kit, client: kube::Client, namespaces: &[&str], opts: ServeOptions) -> Env {
        Env::attach_with(kit, client, namespaces, opts, webhook_entry(namespaces), namespaces).await
    }

    /// [`Env::attach`] with another webhook entry; waits until it is effective in `probe_in`.
    async fn attach_with(
        kit: &'static Kit,
        client: kube::Client,
        namespaces: &[&str],
        mut opts: ServeOptions,
        entry: Value,
        probe_in: &[&str],
    ) -> Env {
        if opts.watch_namespaces.is_empty() {
            opts.watch_namespaces = namespaces.iter().map(|n| (*n).to_owned()).collect();
        }
        let ns = namespaces[0].to_owned();
        let serve = Serve::start(kit, opts).await;
        let webhook = format!("stepcache-{ns}");
        register(&client, kit, &webhook, entry, &serve.url()).await;
        for n in probe_in {
            wait_effective(&client, n, &pod_object(&rerun(&fixture(V36), "probe"), n)).await;
        }
        Env { kit, client, ns, serve, webhook }
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    fn task_results(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.ns, &task_result_resource())
    }

    /// Creates `review`'s pod in this namespace (through the webhook); returns it as stored.
    async fn create(&self, review: &Value) -> Value {
        create_pod(&self.client, &self.ns, review).await
    }

    async fn done(self) {
        unregister(&self.client, &self.webhook).await;
    }
}

async fn create_pod(client: &kube::Client, ns: &str, review: &Value) -> Value {
    let pod: Pod = serde_json::from_value(pod_object(review, ns)).unwrap();
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    serde_json::to_value(api.create(&PostParams::default(), &pod).await.unwrap()).unwrap()
}

/// Creates `review`'s pod with a raw request, returning it and the API server's `Warning`
/// headers (what `kubectl` shows the pod's creator).
async fn create_pod_with_warnings(client: &kube::Client, ns: &str, review: &Value) -> (Value, Vec<String>) {
    use http_body_util::BodyExt;
    let body = serde_json::to_vec(&pod_object(review, ns)).unwrap();
    let req = http::Request::post(format!("/api/v1/namespaces/{ns}/pods"))
        .header("content-type", "application/json")
        .body(kube::client::Body::from(body))
        .unwrap();
    let resp = client.send(req).await.unwrap();
    let warnings = resp.headers().get_all("warning").iter().map(|v| v.to_str().unwrap_or("").to_owned()).collect();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(status.is_success(), "{status}: {}", String::from_utf8_lossy(&bytes));
    (serde_json::from_slice(&bytes).unwrap(), warnings)
}

/// Plays the kubelet: every container terminated with exit 0, phase Succeeded.
async fn succeed(client: &kube::Client, pod: &Value) {
    let ns = pod["metadata"]["namespace"].as_str().unwrap();
    let name = pod["metadata"]["name"].as_str().unwrap();
    let status = succeeded(pod, "ignored", "2026-11-01T10:00:00Z", "2026-11-01T10:04:12Z")["status"].clone();
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&json!({"status": status}))).await.unwrap();
}

/// Plays Argo's wait container: outputs in a WorkflowTaskResult (≥ 3.6, and 3.3–3.5 controllers
/// that read them) or in the pod's outputs annotation (≤ 3.5).
async fn report_outputs(client: &kube::Client, pod: &Value, value: &str) -> Value {
    let ns = pod["metadata"]["namespace"].as_str().unwrap();
    let tr = task_result_for(pod, value);
    if uses_annotation(pod) {
        let name = pod["metadata"]["name"].as_str().unwrap();
        let outputs = serde_json::to_string(&tr["outputs"]).unwrap();
        let patch = json!({"metadata": {"annotations": {"workflows.argoproj.io/outputs": outputs}}});
        let api: Api<Pod> = Api::namespaced(client.clone(), ns);
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    } else {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &task_result_resource());
        let obj: DynamicObject = serde_json::from_value(tr.clone()).unwrap();
        api.create(&PostParams::default(), &obj).await.unwrap();
    }
    tr
}

/// The pod's Argo layout, as stepcache classifies it.
fn layout(pod: &Value) -> ArgoLayout {
    match classify(&serde_json::from_value(pod.clone()).unwrap()) {
        Classification::Step(s) => s.layout,
        _ => panic!("not a step pod: {}", pod["metadata"]),
    }
}

/// Whether the pod's controller reads outputs from the pod annotation (≤ 3.5).
fn uses_annotation(pod: &Value) -> bool {
    stepcache::rewrite::uses_outputs_annotation(layout(pod))
}

/// Polls `f` until it returns `Some`, failing after `timeout` with `what`.
async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let t = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(t.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of a metric line `name` (exact series text), or 0.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

async fn recorded(serve: &Serve, n: f64) {
    eventually(&format!("{n} recorded executions"), Duration::from_secs(30), || async {
        (metric(&serve.metrics().await, "stepcache_recorder_recorded_total") >= n).then_some(())
    })
    .await;
}

fn label<'a>(pod: &'a Value, k: &str) -> Option<&'a str> {
    pod["metadata"]["labels"][k].as_str()
}

/// miss → marked → succeeded + outputs → recorded → rerun is a hit with a valid task result and
/// an Event; returns the hit pod.
async fn cycle(env: &Env, fixture_name: &str, value: &str) -> Value {
    let review = fixture(fixture_name);
    let first = env.create(&rerun(&review, "first")).await;
    assert_eq!(label(&first, "stepcache.dev/decision"), Some("miss"), "{fixture_name}: {}", first["metadata"]);
    assert_eq!(label(&first, "stepcache.dev/record"), Some("true"), "{fixture_name}");
    succeed(&env.client, &first).await;
    let tr = report_outputs(&env.client, &first, value).await;
    recorded(&env.serve, 1.0).await;

    let again = rerun(&review, "second");
    let want = pod_object(&again, &env.ns);
    let hit = env.create(&again).await;
    assert_eq!(label(&hit, "stepcache.dev/decision"), Some("hit"), "{fixture_name}: {}", hit["metadata"]);
    // The pod keeps its identity: name, owner, Argo labels and annotations, service account.
    assert_eq!(hit["metadata"]["name"], want["metadata"]["name"]);
    assert_eq!(hit["metadata"]["ownerReferences"], want["metadata"]["ownerReferences"]);
    assert_eq!(hit["spec"]["serviceAccountName"], want["spec"]["serviceAccountName"]);
    for (k, v) in want["metadata"]["labels"].as_object().unwrap() {
        assert_eq!(&hit["metadata"]["labels"][k], v, "{fixture_name}: label {k}");
    }
    let names: Vec<&str> =
        hit["spec"]["containers"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["main"], "{fixture_name}: one no-op container");
    assert!(hit["spec"].get("initContainers").is_none(), "{fixture_name}");

    let wf = want["metadata"]["labels"]["workflows.argoproj.io/workflow"].as_str().unwrap().to_owned();
    if uses_annotation(&want) {
        let ann = hit["metadata"]["annotations"]["workflows.argoproj.io/outputs"].as_str().unwrap();
        assert_eq!(serde_json::from_str::<Value>(ann).unwrap(), tr["outputs"], "{fixture_name}");
    }
    let node = task_result_for(&want, value)["metadata"]["name"].as_str().unwrap().to_owned();
    if stepcache::rewrite::uses_task_result(layout(&want)) {
        // Stored by the real CRD: it passed validation, with what the controller selects on.
        let got =
            env.task_results().get(&node).await.unwrap_or_else(|e| panic!("{fixture_name}: task result {node}: {e}"));
        let got = serde_json::to_value(got).unwrap();
        assert_eq!(got["outputs"], tr["outputs"], "{fixture_name}: {}", env.serve.logs());
        assert_eq!(got["metadata"]["labels"]["workflows.argoproj.io/workflow"], wf.as_str());
        assert_eq!(got["metadata"]["labels"]["workflows.argoproj.io/report-outputs-completed"], "true");
        let owner = &got["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "Workflow");
        assert_eq!(owner["apiVersion"], "argoproj.io/v1alpha1");
        assert_eq!(owner["name"], wf.as_str());
        assert_eq!(owner["uid"], want["metadata"]["ownerReferences"][0]["uid"]);
    }
    // The provenance Event on the Workflow (posted off the response path).
    let events: Api<Event> = Api::namespaced(env.client.clone(), &env.ns);
    let ev = eventually("the StepServedFromCache event", Duration::from_secs(20), || async {
        let list = events.list(&ListParams::default()).await.unwrap();
        list.items.into_iter().find(|e| e.involved_object.name.as_deref() == Some(wf.as_str()))
    })
    .await;
    assert_eq!(ev.reason.as_deref(), Some("StepServedFromCache"));
    assert!(ev.message.as_deref().unwrap_or("").contains("saved 4m12s"), "{:?}", ev.message);
    assert_eq!(
        ev.involved_object.uid.as_ref(),
        want["metadata"]["ownerReferences"][0]["uid"].as_str().map(String::from).as_ref()
    );
    assert_eq!(ev.involved_object.kind.as_deref(), Some("Workflow"));
    hit
}

/// One test per Argo layout and output kind in the fixtures.
macro_rules! cycle_tests {
    ($($name:ident: $fixture:literal,)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let Some(env) = Env::new("cycle", ServeOptions::default()).await else { return };
            cycle(&env, $fixture, "150").await;
            env.done().await;
        }
    )*};
}

cycle_tests! {
    cycle_v2_12_template_annotation: "v2.12-template-annotation.admission.json",
    cycle_v3_3_container_params: "v3.3-container-params.admission.json",
    cycle_v3_5_artifacts_s3: "v3.5-artifacts-s3.admission.json",
    cycle_v3_6_container_params: "v3.6-container-params.admission.json",
    cycle_v3_7_script: "v3.7-script.admission.json",
    cycle_kfp_v1_staleness: "kfp-v1-staleness.admission.json",
}

/// Records `fixture_name`'s step once in `env` (miss → succeeded → outputs → recorded).
async fn record_once(env: &Env, fixture_name: &str, value: &str) -> Value {
    let review = fixture(fixture_name);
    let first = env.create(&rerun(&review, "first")).await;
    assert_eq!(label(&first, "stepcache.dev/decision"), Some("miss"), "{}", first["metadata"]);
    succeed(&env.client, &first).await;
    report_outputs(&env.client, &first, value).await;
    recorded(&env.serve, 1.0).await;
    review
}

fn workflow_of(pod: &Value) -> String {
    pod["metadata"]["labels"]["workflows.argoproj.io/workflow"].as_str().unwrap().to_owned()
}

fn node_of(pod: &Value) -> String {
    pod["metadata"]["annotations"]["workflows.argoproj.io/node-id"].as_str().unwrap().to_owned()
}

async fn events_about(client: &kube::Client, ns: &str, workflow: &str) -> Vec<Event> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let list = events.list(&ListParams::default()).await.unwrap();
    list.items.into_iter().filter(|e| e.involved_object.name.as_deref() == Some(workflow)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_side_dry_run_of_a_hit_creates_nothing() {
    let Some(env) = Env::new("dryrun", ServeOptions::default()).await else { return };
    let review = record_once(&env, V36, "7").await;
    let again = rerun(&review, "dry");
    let pod: Pod = serde_json::from_value(pod_object(&again, &env.ns)).unwrap();
    let dry = env.pods().create(&PostParams { dry_run: true, ..Default::default() }, &pod).await.unwrap();
    let dry = serde_json::to_value(dry).unwrap();
    assert_eq!(label(&dry, "stepcache.dev/decision"), Some("hit"), "the dry run shows the decision");
    // Give a background side effect the time it would take, then look for any.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let name = dry["metadata"]["name"].as_str().unwrap();
    assert!(env.pods().get_opt(name).await.unwrap().is_none(), "no pod");
    assert!(env.task_results().get_opt(&node_of(&dry)).await.unwrap().is_none(), "no task result");
    assert!(events_about(&env.client, &env.ns, &workflow_of(&dry)).await.is_empty(), "no event");
    env.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_step_in_another_namespace_misses() {
    let Some(kit) = kit::shared() else { return };
    let client = kit.client().await;
    let a = kit.namespace(&client, "scope-a", &[]).await;
    let b = kit.namespace(&client, "scope-b", &[]).await;
    let env = Env::attach(kit, client, &[&a, &b], ServeOptions::default()).await;
    let review = record_once(&env, V36, "7").await;
    let elsewhere = create_pod(&env.client, &b, &rerun(&review, "other")).await;
    assert_eq!(label(&elsewhere, "stepcache.dev/decision"), Some("miss"), "{}", elsewhere["metadata"]);
    let here = env.create(&rerun(&review, "same")).await;
    assert_eq!(label(&here, "stepcache.dev/decision"), Some("hit"), "{}", here["metadata"]);
    env.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opted_out_and_non_argo_pods_never_reach_the_webhook() {
    let Some(env) = Env::new("optout", ServeOptions::default()).await else { return };
    let review = fixture(V36);
    let before = admissions(&env.serve.metrics().await);
    let mut opted_out = pod_object(&rerun(&review, "optout"), &env.ns);
    opted_out["metadata"]["labels"]["stepcache.dev/enabled"] = json!("false");
    let mut agent = pod_object(&rerun(&review, "agent"), &env.ns);
    agent["metadata"]["labels"]["workflows.argoproj.io/component"] = json!("agent");
    let mut plain = pod_object(&rerun(&review, "plain"), &env.ns);
    plain["metadata"]["labels"].as_object_mut().unwrap().remove("workflows.argoproj.io/workflow");
    for want in [opted_out, agent, plain] {
        let pod: Pod = serde_json::from_value(want.clone()).unwrap();
        let got = serde_json::to_value(env.pods().create(&PostParams::default(), &pod).await.unwrap()).unwrap();
        assert_eq!(got["metadata"]["labels"], want["metadata"]["labels"], "labels untouched");
        assert_eq!(got["metadata"]["annotations"], want["metadata"]["annotations"], "annotations untouched");
        assert_eq!(
            got["spec"]["containers"].as_array().unwrap().len(),
            want["spec"]["containers"].as_array().unwrap().len()
        );
    }
    assert_eq!(admissions(&env.serve.metrics().await), before, "the objectSelector kept them from the webhook");
    env.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hit_over_an_existing_task_result_makes_it_complete() {
    let Some(env) = Env::new("existing", ServeOptions::default()).await else { return };
    let review = record_once(&env, V36, "7").await;
    let again = rerun(&review, "again");
    let want = pod_object(&again, &env.ns);
    // A placeholder with the node's name, as a wait container that started would leave it.
    let mut placeholder = task_result_for(&want, "0");
    placeholder["metadata"]["labels"]["workflows.argoproj.io/report-outputs-completed"] = json!("false");
    placeholder["outputs"] = json!({});
    let obj: DynamicObject = serde_json::from_value(placeholder).unwrap();
    env.task_results().create(&PostParams::default(), &obj).await.unwrap();
    let hit = env.create(&again).await;
    assert_eq!(label(&hit, "stepcache.dev/decision"), Some("hit"), "{}", hit["metadata"]);
    let got = serde_json::to_value(env.task_results().get(&node_of(&want)).await.unwrap()).unwrap();
    assert_eq!(got["metadata"]["labels"]["workflows.argoproj.io/report-outputs-completed"], "true");
    assert_eq!(got["outputs"]["parameters"][0]["value"], "7", "{got}");
    env.done().await;
}

/// The rows of a serve instance's SQLite store, read beside it.
async fn rows(serve: &Serve) -> Vec<stepcache::store::Entry> {
    let url = format!("sqlite://{}", serve.dir.join("stepcache.db").display());
    let opts = stepcache::store::StoreOptions { timeout: Duration::from_secs(10), max_connections: 1 };
    let store = stepcache::store::Store::connect(&url, opts).await.unwrap();
    let rows = store.list(&Default::default(), 100).await.unwrap();
    store.close().await;
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_while_stepcache_is_down_is_recorded_once_after_restart() {
    let Some(mut env) = Env::new("restart", ServeOptions::default()).await else { return };
    let review = fixture(V36);
    let first = env.create(&rerun(&review, "first")).await;
    assert_eq!(label(&first, "stepcache.dev/decision"), Some("miss"));
    // SIGKILL between the pod's admission and its success: nothing is watching.
    env.serve.kill();
    succeed(&env.client, &first).await;
    report_outputs(&env.client, &first, "7").await;
    env.serve.restart().await;
    recorded(&env.serve, 1.0).await; // from the initial list of the new process
                                     // Restarted again: the catch-up sees the same pod and its task result, and records nothing new.
    env.serve.restart().await;
    wait_effective(&env.client, &env.ns, &pod_object(&rerun(&review, "probe2"), &env.ns)).await;
    let hit = env.create(&rerun(&review, "second")).await;
    assert_eq!(label(&hit, "stepcache.dev/decision"), Some("hit"), "{}", hit["metadata"]);
    let uid = first["metadata"]["uid"].as_str().unwrap();
    let rows = rows(&env.serve).await;
    assert_eq!(rows.iter().filter(|r| r.pod_uid == uid).count(), 1, "recorded exactly once: {rows:?}");
    assert_eq!(rows.len(), 1);
    assert_eq!(
        metric(&env.serve.metrics().await, "stepcache_recorder_recorded_total"),
        0.0,
        "nothing new after the 2nd restart"
    );
    env.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_are_created_unchanged_when_the_webhook_is_down_or_hangs() {
    let Some(mut env) = Env::new("down", ServeOptions::default()).await else { return };
    let review = fixture(V36);
    // Down: connection refused.
    env.serve.kill();
    let t = Instant::now();
    let refused = env.create(&rerun(&review, "refused")).await;
    assert!(t.elapsed() < Duration::from_secs(5), "refused took {:?}", t.elapsed());
    assert_eq!(label(&refused, "stepcache.dev/decision"), None, "created unchanged");
    // Hanging: accepts connections, never answers; the API server gives up after timeoutSeconds.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", env.serve.port)).await.unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let t = Instant::now();
    let hung = env.create(&rerun(&review, "hung")).await;
    let took = t.elapsed();
    assert_eq!(label(&hung, "stepcache.dev/decision"), None, "created unchanged");
    assert!(took >= Duration::from_secs(4), "the API server waited for the webhook ({took:?})");
    assert!(took < Duration::from_secs(10), "within timeoutSeconds (5s) plus slack: {took:?}");
    hold.abort();
    env.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recorder_resumes_after_an_api_server_restart() {
    // A private instance: restarting the shared one would disturb the other tests.
    let Some(kit) = Kit::start(&["--etcd-compaction-interval=10s"]) else { return };
    let kit: &'static Kit = Box::leak(Box::new(kit));
    let client = kit.client().await;
    let ns = kit.namespace(&client, "apirestart", &[]).await;
    let env = Env::attach(kit, client, &[&ns], ServeOptions::default()).await;
    let review = fixture(V36);
    let first = env.create(&rerun(&review, "first")).await;
    assert_eq!(label(&first, "stepcache.dev/decision"), Some("miss"));
    // A crash (SIGKILL): the watches break mid-stream.
    env.kit.kill_apiserver();
    tokio::time::sleep(Duration::from_secs(1)).await;
    env.kit.start_apiserver();
    let client = env.kit.client().await;
    succeed(&client, &first).await;
    report_outputs(&client, &first, "7").await;
    recorded(&env.serve, 1.0).await;
    let hit = create_pod(&client, &env.ns, &rerun(&review, "second")).await;
    assert_eq!(label(&hit, "stepcache.dev/decision"), Some("hit"), "{}", hit["metadata"]);
    let logs = env.serve.logs();
    assert!(
        logs.contains("too old resource version"),
        "the restart should have expired the watches' resourceVersion (410), and they resumed:\n{logs}"
    );
    drop(env);
    kit.stop();
}

// ---------------------------------------------------------------------------------------------
// The chart's webhook selectors and RBAC, rendered with `helm template`

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
    cycle(&env, V36, "150").await;
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

// ---------------------------------------------------------------------------------------------
// The Workflow status as the last source of outputs (task results already deleted)

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
    assert_eq!(serde_json::to_value(&rows[0].outputs).unwrap(), outputs);
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
