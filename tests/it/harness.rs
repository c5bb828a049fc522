//! Shared helpers for the I/O tests: fixtures by name, stores on real files, an in-process
//! HTTPS webhook, JSON Patch application, and builders that turn an admitted pod into the
//! pod and task result Argo would produce after the step succeeded.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use stepcache::admission::{AdmitConfig, Admitter, Ports};
use stepcache::mark::Signer;
use stepcache::metrics::Metrics;
use stepcache::store::{Store, StoreOptions};

/// Fixture directory.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/argo")
}

/// Loads a fixture by file name.
pub fn fixture(name: &str) -> Value {
    let p = fixtures().join(name);
    serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

/// The step-pod admission fixtures, hand-built and captured.
pub const STEP_FIXTURES: &[&str] = &[
    "v2.12-template-annotation.admission.json",
    "v3.3-container-params.admission.json",
    "v3.5-artifacts-s3.admission.json",
    "v3.6-container-params.admission.json",
    "v3.7-script.admission.json",
    "kfp-v1-staleness.admission.json",
    "v4.0-container-params.admission.json",
    "v4.1-container-params.admission.json",
    "v4.1-initless-container-artifacts.admission.json",
    "captured/v2.12-template-annotation.captured.json",
    "captured/v3.3-container-params.captured.json",
    "captured/v3.5-artifacts-s3.captured.json",
    "captured/v3.6-container-params.captured.json",
    "captured/v3.7-script.captured.json",
    "captured/kfp-v1-staleness.captured.json",
];

/// Every admission fixture, step pods and ignored ones.
pub fn all_admission_fixtures() -> Vec<String> {
    let mut v: Vec<String> = STEP_FIXTURES.iter().map(|s| (*s).to_owned()).collect();
    v.extend(
        [
            "v3.6-agent-pod.ignore.admission.json",
            "v3.6-resource-template.ignore.admission.json",
            "captured/v3.6-agent-pod.ignore.captured.json",
            "captured/v3.6-resource-template.ignore.captured.json",
        ]
        .iter()
        .map(|s| (*s).to_owned()),
    );
    v
}

/// A migrated SQLite store on a real temp file.
pub async fn sqlite_store(dir: &Path) -> Store {
    let url = format!("sqlite://{}", dir.join("stepcache.db").display());
    let s = Store::connect(&url, StoreOptions { timeout: Duration::from_secs(5), max_connections: 4 }).await.unwrap();
    s.migrate().await.unwrap();
    s
}

/// Signing secret used by tests.
pub const SECRET: &[u8] = b"test-signing-secret-0123456789";

/// Admission config used by tests.
pub fn config() -> AdmitConfig {
    let mut cfg = AdmitConfig { explain_misses: true, ..Default::default() };
    // The captured fixtures were sent for the envtest capture's `admin`, playing the controller.
    cfg.admin.controllers.users.push(CAPTURED_CONTROLLER.into());
    cfg
}

/// The identity the captured fixtures' pods were created with (playing the Argo controller).
pub const CAPTURED_CONTROLLER: &str = "admin";

/// An admitter over `store` with no cluster (side effects treated as offline when `offline`).
pub fn admitter(store: Store, cfg: AdmitConfig, cluster: Ports) -> Admitter {
    Admitter {
        config: Arc::new(cfg),
        store,
        signer: Signer::new(SECRET).unwrap(),
        ports: cluster,
        metrics: Arc::new(Metrics::new()),
    }
}

/// Admits a review document; returns (response review, explain JSON).
pub async fn admit(a: &Admitter, review: &Value, now: jiff::Timestamp) -> (Value, Value) {
    let d = stepcache::admission::decode::decode(&serde_json::to_vec(review).unwrap()).unwrap();
    let o = a.admit(&d, now).await;
    (serde_json::to_value(&o.review).unwrap(), serde_json::to_value(&o.explain).unwrap())
}

/// Decodes `response.patch` into a JSON Patch document.
pub fn patch_of(review: &Value) -> Option<json_patch::Patch> {
    let b64 = review.pointer("/response/patch")?.as_str()?;
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
    Some(serde_json::from_slice(&bytes).unwrap())
}

/// Applies the response's patch (if any) to the request's pod, like the API server does.
pub fn patched_pod(request: &Value, response: &Value) -> Value {
    let mut pod = request.pointer("/request/object").unwrap().clone();
    if let Some(p) = patch_of(response) {
        json_patch::patch(&mut pod, &p.0).unwrap();
    }
    pod
}

/// The same step in another workflow run: new request uid, workflow name and uid, pod name and
/// node id — only where Argo puts run identity (metadata, owner, ARGO_* env), not in the template.
pub fn rerun(review: &Value, run: &str) -> Value {
    let mut v = review.clone();
    let obj = &v["request"]["object"];
    let wf =
        obj.pointer("/metadata/labels/workflows.argoproj.io~1workflow").and_then(Value::as_str).unwrap().to_owned();
    let new_wf = format!("{wf}-{run}");
    let new_uid = format!("{run}-uid");
    let rename = |s: &str| s.replacen(&wf, &new_wf, 1);
    v["request"]["uid"] = json!(format!("req-{run}"));
    if let Some(n) = v["request"]["name"].as_str().map(rename) {
        v["request"]["name"] = json!(n);
    }
    let o = &mut v["request"]["object"];
    if let Some(n) = o["metadata"]["name"].as_str().map(rename) {
        o["metadata"]["name"] = json!(n);
    }
    o["metadata"]["labels"]["workflows.argoproj.io/workflow"] = json!(new_wf);
    for k in ["workflows.argoproj.io/node-id", "workflows.argoproj.io/node-name"] {
        if let Some(n) = o["metadata"]["annotations"][k].as_str().map(rename) {
            o["metadata"]["annotations"][k] = json!(n);
        }
    }
    if let Some(refs) = o["metadata"]["ownerReferences"].as_array_mut() {
        for r in refs {
            r["name"] = json!(new_wf);
            r["uid"] = json!(new_uid);
        }
    }
    for list in ["initContainers", "containers"] {
        if let Some(cs) = o["spec"][list].as_array_mut() {
            for c in cs {
                if let Some(env) = c["env"].as_array_mut() {
                    for e in env {
                        match e["name"].as_str() {
                            Some("ARGO_WORKFLOW_NAME") => e["value"] = json!(new_wf),
                            Some("ARGO_WORKFLOW_UID") => e["value"] = json!(new_uid),
                            Some("ARGO_NODE_ID") => {
                                if let Some(n) = e["value"].as_str().map(rename) {
                                    e["value"] = json!(n)
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
    }
    v
}

/// A run that finished `ago` before this machine's clock and took `took`: (started, finished)
/// as RFC 3339 strings. Tests whose entries meet a wall clock (a `serve`, the recorder's own
/// clock) record with these, so they mean the same thing on any date.
pub fn ran_ago(ago: std::time::Duration, took: std::time::Duration) -> (String, String) {
    let finished = jiff::Timestamp::now() - jiff::SignedDuration::try_from(ago).unwrap();
    let finished = finished.round(jiff::Unit::Second).unwrap();
    let started = finished - jiff::SignedDuration::try_from(took).unwrap();
    (started.to_string(), finished.to_string())
}

/// [`ran_ago`] for the 4m12s run the fixtures' outputs describe, finished an hour ago: fresh
/// under any staleness a fixture asks for (the shortest is `P30D`).
pub fn ran_an_hour_ago() -> (String, String) {
    ran_ago(std::time::Duration::from_secs(3600), std::time::Duration::from_secs(252))
}

/// Turns an admitted (patched) pod into the pod the API server returns after the step
/// succeeded: uid, start time, every container terminated with exit 0, image ids.
pub fn succeeded(pod: &Value, uid: &str, started: &str, finished: &str) -> Value {
    let mut p = pod.clone();
    p["metadata"]["uid"] = json!(uid);
    let names: Vec<String> =
        p["spec"]["containers"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_owned()).collect();
    let statuses: Vec<Value> = names
        .iter()
        .map(|n| {
            json!({"name": n, "ready": false, "restartCount": 0, "image": "img", "imageID": format!("docker.io/img@sha256:{:0>64}", n.len()),
                   "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started, "finishedAt": finished}}})
        })
        .collect();
    p["status"] = json!({"phase": "Succeeded", "startTime": started, "containerStatuses": statuses});
    p
}

/// The same pod but failed (main exited `code`).
pub fn failed(pod: &Value, uid: &str, code: i32, reason: &str) -> Value {
    let mut p = succeeded(pod, uid, "2026-11-01T10:00:00Z", "2026-11-01T10:05:00Z");
    p["status"]["phase"] = json!("Failed");
    for cs in p["status"]["containerStatuses"].as_array_mut().unwrap() {
        if cs["name"] == "main" {
            cs["state"]["terminated"]["exitCode"] = json!(code);
            cs["state"]["terminated"]["reason"] = json!(reason);
        }
    }
    p
}

/// The completed WorkflowTaskResult the wait container would write for this pod, with a value
/// for every declared output parameter and a key for every declared artifact.
pub fn task_result_for(pod: &Value, value: &str) -> Value {
    let node = pod
        .pointer("/metadata/annotations/workflows.argoproj.io~1node-id")
        .and_then(Value::as_str)
        .or_else(|| pod.pointer("/metadata/name").and_then(Value::as_str))
        .unwrap();
    let wf = pod.pointer("/metadata/labels/workflows.argoproj.io~1workflow").and_then(Value::as_str).unwrap();
    let tmpl = template_of(pod);
    let params: Vec<Value> = tmpl
        .pointer("/outputs/parameters")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|p| json!({"name": p["name"], "value": value}))
        .collect();
    let arts: Vec<Value> = tmpl
        .pointer("/outputs/artifacts")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|a| json!({"name": a["name"], "s3": {"key": format!("{wf}/{node}/{}.tgz", a["name"].as_str().unwrap())}}))
        .collect();
    let mut outputs = json!({});
    if !params.is_empty() {
        outputs["parameters"] = json!(params);
    }
    if !arts.is_empty() {
        outputs["artifacts"] = json!(arts);
    }
    if tmpl.get("script").is_some() {
        outputs["result"] = json!(value);
    }
    // As v3.5.2+ (and v3.3.0–v3.3.1) write it: owned by the pod's Workflow.
    let owners: Vec<Value> = pod["metadata"]["ownerReferences"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|o| json!({"apiVersion": o["apiVersion"], "kind": o["kind"], "name": o["name"], "uid": o["uid"]}))
        .collect();
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTaskResult",
        "metadata": {"name": node, "namespace": pod["metadata"]["namespace"], "ownerReferences": owners,
            "labels": {"workflows.argoproj.io/workflow": wf, "workflows.argoproj.io/report-outputs-completed": "true"}},
        "outputs": outputs})
}

/// The Workflow owning `pod` (name, namespace, uid from its ownerReference) with `node` as the
/// status of the pod's node.
pub fn workflow_with_node(pod: &Value, node: Value) -> Value {
    let owner = &pod["metadata"]["ownerReferences"][0];
    let node_id = pod
        .pointer("/metadata/annotations/workflows.argoproj.io~1node-id")
        .and_then(Value::as_str)
        .or_else(|| pod.pointer("/metadata/name").and_then(Value::as_str))
        .unwrap();
    let mut nodes = serde_json::Map::new();
    nodes.insert(node_id.to_owned(), node);
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {"name": owner["name"], "namespace": pod["metadata"]["namespace"], "uid": owner["uid"]},
        "status": {"nodes": nodes}})
}

/// The resolved template carried by a pod (annotation or ARGO_TEMPLATE on any container).
pub fn template_of(pod: &Value) -> Value {
    if let Some(t) = pod.pointer("/metadata/annotations/workflows.argoproj.io~1template").and_then(Value::as_str) {
        return serde_json::from_str(t).unwrap();
    }
    for list in ["initContainers", "containers"] {
        for c in pod["spec"][list].as_array().cloned().unwrap_or_default() {
            for e in c["env"].as_array().cloned().unwrap_or_default() {
                if e["name"] == "ARGO_TEMPLATE" {
                    return serde_json::from_str(e["value"].as_str().unwrap()).unwrap();
                }
            }
        }
    }
    panic!("no template")
}

/// Sets the namespace of a review (request and object).
pub fn in_namespace(review: &Value, ns: &str) -> Value {
    let mut v = review.clone();
    v["request"]["namespace"] = json!(ns);
    v["request"]["object"]["metadata"]["namespace"] = json!(ns);
    v
}

/// Sets a pod annotation in a review.
pub fn with_annotation(review: &Value, k: &str, val: &str) -> Value {
    let mut v = review.clone();
    let meta = &mut v["request"]["object"]["metadata"];
    if meta.get("annotations").is_none() {
        meta["annotations"] = json!({});
    }
    meta["annotations"][k] = json!(val);
    v
}

/// Sets a pod label in a review.
pub fn with_label(review: &Value, k: &str, val: &str) -> Value {
    let mut v = review.clone();
    let meta = &mut v["request"]["object"]["metadata"];
    if meta.get("labels").is_none() {
        meta["labels"] = json!({});
    }
    meta["labels"][k] = json!(val);
    v
}

/// Parses an RFC 3339 instant.
pub fn ts(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}
