//! The whole cycle against a real kube-apiserver + etcd ([`crate::kit`]), through the real
//! `stepcache serve` registered as a MutatingWebhookConfiguration: a miss marks the pod; the
//! test plays the kubelet (pod status → Succeeded) and Argo's wait container (outputs); the
//! recorder records from its real watches; the same step in another workflow is a hit whose
//! WorkflowTaskResult the real Argo CRD accepts and whose Event is stored.
//!
//! Each test has its own namespaces, `stepcache serve` and webhook configuration scoped to
//! them, so they run in parallel on the one shared API server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod configmaps;
mod cycle;
mod faults;
mod hitpod;
mod kubelet_runs;
mod rbac;
mod refused;
mod secrets;
mod sources;
mod trust;

use crate::harness::{fixture, ran_an_hour_ago, rerun, succeeded, task_result_for};
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

pub(crate) async fn create_pod(client: &kube::Client, ns: &str, review: &Value) -> Value {
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

/// Plays the kubelet: every container terminated with exit 0, phase Succeeded; the run took
/// 4m12s and finished an hour before this machine's clock (fresh under any fixture's staleness).
async fn succeed(client: &kube::Client, pod: &Value) {
    let (started, finished) = ran_an_hour_ago();
    succeed_at(client, pod, &started, &finished).await
}

/// [`succeed`] with the run's start and finish times.
async fn succeed_at(client: &kube::Client, pod: &Value, started: &str, finished: &str) {
    let ns = pod["metadata"]["namespace"].as_str().unwrap();
    let name = pod["metadata"]["name"].as_str().unwrap();
    let status = succeeded(pod, "ignored", started, finished)["status"].clone();
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
pub(crate) async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
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

/// Each container's name, image, command, args and env: what a rewrite would change.
fn shape(pod: &Value) -> Vec<Value> {
    let all = pod["spec"]["initContainers"].as_array().into_iter().chain(pod["spec"]["containers"].as_array());
    all.flatten().map(|c| json!([c["name"], c["image"], c["command"], c["args"], c["env"]])).collect()
}

fn label<'a>(pod: &'a Value, k: &str) -> Option<&'a str> {
    pod["metadata"]["labels"][k].as_str()
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

/// The rows of a serve instance's SQLite store, read beside it.
async fn rows(serve: &Serve) -> Vec<stepcache::store::Entry> {
    let url = format!("sqlite://{}", serve.dir.join("stepcache.db").display());
    let opts = stepcache::store::StoreOptions { timeout: Duration::from_secs(10), max_connections: 1 };
    let store = stepcache::store::Store::connect(&url, opts).await.unwrap();
    let rows = store.list(&Default::default(), 100).await.unwrap();
    store.close().await;
    rows
}
