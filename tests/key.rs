//! Cache-key tests on whole pods: fixture classification, captured-vs-hand-built twins,
//! cross-version equality, golden key vectors (`tests/key_vectors/`), and proptest properties
//! for what does and does not change a key. Pure: no I/O beyond reading fixtures.
//!
//! Regenerating the golden vectors is a key-format bump (every user's cache starts over):
//! `STEPCACHE_BLESS_KEY_VECTORS=1 cargo test --test key` rewrites the `key`/`material` fields.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use k8s_openapi::api::core::v1::Pod;
use proptest::prelude::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use stepcache::argo::offload::Offloaded;
use stepcache::argo::template::{classify, classify_with, ArgoLayout, Classification, SkipReason, StepPod};
use stepcache::key::{canonical_json, derive_key, derive_key_with, diff_material, KeyMaterial, Scope};
use stepcache::types::CacheSeed;

// ---------------------------------------------------------------------------------------------
// Fixtures and builders
// ---------------------------------------------------------------------------------------------

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/argo")
}

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/key_vectors")
}

/// The pod (`request.object`) of an AdmissionReview fixture, as JSON for builders.
fn pod_json(name: &str) -> Value {
    let p = fixtures_dir().join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let review: Value = serde_json::from_str(&text).unwrap();
    review["request"]["object"].clone()
}

/// Hand-built step fixtures; each has a `captured/<name>.captured.json` twin.
const STEP_FIXTURES: &[&str] = &[
    "v2.12-template-annotation",
    "v3.3-container-params",
    "v3.5-artifacts-s3",
    "v3.6-container-params",
    "v3.7-script",
    "kfp-v1-staleness",
];

/// Step fixtures built from the pod contract with no API-server capture (v4.0, v4.1, offload).
const HAND_BUILT_ONLY: &[&str] = &[
    "v4.0-container-params",
    "v4.1-container-params",
    "v4.1-initless-container-artifacts",
    "v3.7-offloaded-template-args",
];

fn hand_built(name: &str) -> String {
    format!("{name}.admission.json")
}

fn captured(name: &str) -> String {
    format!("captured/{name}.captured.json")
}

fn to_pod(v: &Value) -> Pod {
    serde_json::from_value(v.clone()).unwrap()
}

/// The offload ConfigMap fixture (`*.configmap.json`) named like the pod, if any.
fn offload_for(pod: &Pod) -> Option<Offloaded> {
    let name = pod.metadata.name.as_deref()?;
    for entry in std::fs::read_dir(fixtures_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().ends_with(".configmap.json") {
            let cm: k8s_openapi::api::core::v1::ConfigMap =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            if cm.metadata.name.as_deref() == Some(name) {
                return Some(Offloaded::from_config_map(&cm));
            }
        }
    }
    None
}

/// Classifies a pod the way admission does: with its offload ConfigMap when it has one.
fn step_of(pod: &Pod) -> StepPod {
    match classify_with(pod, offload_for(pod).as_ref()) {
        Classification::Step(s) => *s,
        other => panic!("expected a step pod, got {other:?}"),
    }
}

/// Every ConfigMap exists, with contents named after it: the view of a synced cache for tests
/// about everything but ConfigMap contents (those are `key::configmaps` unit tests).
struct EveryConfigMap;

impl stepcache::key::configmaps::ConfigMaps for EveryConfigMap {
    fn digest(&self, namespace: &str, name: &str) -> Option<String> {
        Some(format!("sha256:contents-of-{namespace}/{name}"))
    }
}

fn key_with(pod: &Value, seed: &str, scope: Scope) -> KeyMaterial {
    let pod = to_pod(pod);
    let step = step_of(&pod);
    derive_key_with(&pod, &step, &CacheSeed::parse(seed).unwrap(), scope, &EveryConfigMap).unwrap()
}

fn key(pod: &Value) -> KeyMaterial {
    key_with(pod, "", Scope::Namespace)
}

fn assert_same_key(a: &KeyMaterial, b: &KeyMaterial, what: &str) {
    assert_eq!(a.key, b.key, "{what}: keys differ:\n{}", diff_material(&a.material, &b.material).join("\n"));
}

/// Every container (init and regular) of a pod JSON.
fn containers_mut(pod: &mut Value) -> Vec<&mut Value> {
    let spec = pod["spec"].as_object_mut().unwrap();
    let mut out = Vec::new();
    for (k, v) in spec.iter_mut() {
        if k == "initContainers" || k == "containers" {
            out.extend(v.as_array_mut().unwrap().iter_mut());
        }
    }
    out
}

fn container_mut<'a>(pod: &'a mut Value, name: &str) -> &'a mut Value {
    containers_mut(pod).into_iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no container {name}"))
}

fn env_mut(c: &mut Value) -> &mut Vec<Value> {
    if c.get("env").is_none() {
        c["env"] = json!([]);
    }
    c["env"].as_array_mut().unwrap()
}

/// Sets an env var on a container, replacing an existing one of that name.
fn set_env(c: &mut Value, name: &str, value: &str) {
    let env = env_mut(c);
    match env.iter_mut().find(|e| e["name"] == name) {
        Some(e) => *e = json!({"name": name, "value": value}),
        None => env.push(json!({"name": name, "value": value})),
    }
}

/// The carried template of a pod (annotation or the first `ARGO_TEMPLATE`).
fn template_of(pod: &Value) -> Value {
    if let Some(t) = pod["metadata"]["annotations"]["workflows.argoproj.io/template"].as_str() {
        return serde_json::from_str(t).unwrap();
    }
    for c in pod["spec"]["initContainers"].as_array().into_iter().chain(pod["spec"]["containers"].as_array()).flatten()
    {
        for e in c["env"].as_array().into_iter().flatten() {
            if e["name"] == "ARGO_TEMPLATE" {
                return serde_json::from_str(e["value"].as_str().unwrap()).unwrap();
            }
        }
    }
    panic!("pod carries no template")
}

/// The carried template's exact text on `init` (every copy Argo writes is byte-identical).
fn raw_template(pod: &Value) -> String {
    let init = pod["spec"]["initContainers"].as_array().unwrap().iter().find(|c| c["name"] == "init").unwrap();
    let e = init["env"].as_array().unwrap().iter().find(|e| e["name"] == "ARGO_TEMPLATE").unwrap();
    e["value"].as_str().unwrap().to_owned()
}

/// Rewrites every copy of the carried template (annotation and every `ARGO_TEMPLATE`).
fn edit_template(pod: &mut Value, f: impl Fn(&mut Value)) {
    let rewrite = |text: &str| {
        let mut t: Value = serde_json::from_str(text).unwrap();
        f(&mut t);
        t.to_string()
    };
    if let Some(t) = pod["metadata"]["annotations"]["workflows.argoproj.io/template"].as_str() {
        let new = rewrite(t);
        pod["metadata"]["annotations"]["workflows.argoproj.io/template"] = json!(new);
    }
    for c in containers_mut(pod) {
        for e in env_mut(c) {
            if e["name"] == "ARGO_TEMPLATE" {
                let new = rewrite(e["value"].as_str().unwrap());
                e["value"] = json!(new);
            }
        }
    }
}

/// Serialises JSON with each object's keys in reverse order (serde_json's Map sorts them), so
/// a test can hand the classifier a template whose text differs only in key order.
fn reversed_key_order(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let members: Vec<String> = m
                .iter()
                .rev()
                .map(|(k, v)| format!("{}:{}", Value::String(k.clone()), reversed_key_order(v)))
                .collect();
            format!("{{{}}}", members.join(","))
        }
        Value::Array(a) => format!("[{}]", a.iter().map(reversed_key_order).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

const NODE_ID: &str = "train-pipeline-7xk2p-3108604587";

/// The v3.6 step re-expressed as a v3.2–v3.5 controller would build it: `ARGO_TEMPLATE`
/// (with `inputs.parameters`) on every container, that version's log options in the emissary
/// wrapper, its executor image, and its pod-name format.
fn v36_as_env_all_containers(version: &str) -> Value {
    let mut pod = pod_json(&hand_built("v3.6-container-params"));
    let mut template = template_of(&pod);
    template["inputs"] = json!({"parameters": [
        {"name": "dataset", "value": "s3://datasets/iris-v3.csv"},
        {"name": "sample-rate", "value": "0.25"}
    ]});
    let template = template.to_string();
    let log_opts: Vec<&str> = match version {
        "v3.3.10" => vec![],
        _ => vec!["--loglevel", "info", "--log-format", "text"],
    };
    let executor_opts: Vec<&str> = match version {
        "v3.3.10" => vec!["--loglevel", "info"],
        _ => log_opts.clone(),
    };
    let image = format!("quay.io/argoproj/argoexec:{version}");
    for c in containers_mut(&mut pod) {
        let name = c["name"].as_str().unwrap().to_owned();
        let env = env_mut(c);
        env.retain(|e| e["name"] != "ARGO_TEMPLATE");
        let at = env.iter().position(|e| e["name"] == "ARGO_CONTAINER_NAME").map_or(0, |i| i + 1);
        env.insert(at, json!({"name": "ARGO_TEMPLATE", "value": template}));
        match name.as_str() {
            "init" | "wait" => {
                let mut cmd = vec!["argoexec", name.as_str()];
                cmd.extend(&executor_opts);
                c["command"] = json!(cmd);
                c["image"] = json!(image);
            }
            _ => {
                let mut cmd = vec!["/var/run/argo/argoexec", "emissary"];
                cmd.extend(&log_opts);
                cmd.extend(["--", "python", "/app/preprocess.py"]);
                c["command"] = json!(cmd);
            }
        }
    }
    if version == "v3.3.10" {
        // Pod name v1 (= node id) and no tmp-dir-argo volume before v3.4.
        pod["metadata"]["name"] = json!(NODE_ID);
        pod["spec"]["volumes"] = json!([{"name": "var-run-argo", "emptyDir": {}}]);
        container_mut(&mut pod, "wait")["volumeMounts"] =
            json!([{"name": "var-run-argo", "mountPath": "/var/run/argo"}]);
    }
    pod
}

/// The v3.6 step re-expressed as a v2.12 docker-executor pod: template annotation, no init
/// container, no emissary wrapper, no node-id annotation, pod name = node id.
fn v36_as_template_annotation() -> Value {
    let mut pod = pod_json(&hand_built("v3.6-container-params"));
    let mut template = template_of(&pod);
    template["arguments"] = json!({});
    template["inputs"] = json!({"parameters": [
        {"name": "dataset", "value": "s3://datasets/iris-v3.csv"},
        {"name": "sample-rate", "value": "0.25"}
    ]});
    pod["metadata"]["name"] = json!(NODE_ID);
    pod["metadata"]["annotations"] = json!({
        "workflows.argoproj.io/node-name": "train-pipeline-7xk2p.preprocess",
        "workflows.argoproj.io/template": template.to_string(),
    });
    let spec = pod["spec"].as_object_mut().unwrap();
    spec.remove("initContainers");
    spec.insert(
        "volumes".into(),
        json!([
            {"name": "podmetadata", "downwardAPI": {"items": [{"path": "annotations", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.annotations"}}]}},
            {"name": "docker-sock", "hostPath": {"path": "/var/run/docker.sock", "type": "Socket"}}
        ]),
    );
    spec.insert(
        "containers".into(),
        json!([
            {
                "name": "wait",
                "image": "argoproj/argoexec:v2.12.13",
                "command": ["argoexec", "wait"],
                "env": [
                    {"name": "ARGO_POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
                    {"name": "GODEBUG", "value": "x509ignoreCN=0"}
                ],
                "volumeMounts": [
                    {"name": "podmetadata", "mountPath": "/argo/podmetadata"},
                    {"name": "docker-sock", "mountPath": "/var/run/docker.sock", "readOnly": true}
                ]
            },
            {
                "name": "main",
                "image": "ghcr.io/example/preprocess@sha256:4f1c2d9e0a7b3c5d6e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d",
                "command": ["python", "/app/preprocess.py"],
                "args": ["--dataset", "s3://datasets/iris-v3.csv", "--sample-rate", "0.25", "--out", "/tmp/row_count.txt"],
                "env": [{"name": "LOG_LEVEL", "value": "debug"}],
                "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}
            }
        ]),
    );
    pod
}

/// The v3.6 step as the v4.1.2 controller builds it with `initlessPod.enabled` (§1.8): no init
/// container, `supervisor` first (carrying `ARGO_TEMPLATE`, `ARGO_INITLESS_POD`), `main` run from
/// the `argoexec-bin` image volume with `ARGO_WAIT_FOR_READY`, v4.1's per-run trace env on every
/// container and the trace annotations.
fn v36_as_initless() -> Value {
    let mut pod = pod_json(&hand_built("v4.1-container-params"));
    let template = template_of(&pod).to_string();
    let spec = pod["spec"].as_object_mut().unwrap();
    spec.remove("initContainers");
    let opts = ["--loglevel", "info", "--log-format", "text", "--gloglevel", "0"];
    for c in spec["containers"].as_array_mut().unwrap() {
        match c["name"].as_str().unwrap() {
            "wait" => {
                c["name"] = json!("supervisor");
                let mut cmd = vec!["argoexec", "supervisor"];
                cmd.extend(opts);
                c["command"] = json!(cmd);
                for e in env_mut(c) {
                    if e["name"] == "ARGO_CONTAINER_NAME" {
                        e["value"] = json!("supervisor");
                    }
                }
                let env = env_mut(c);
                let at = env.iter().position(|e| e["name"] == "ARGO_CONTAINER_NAME").unwrap();
                env.insert(at, json!({"name": "ARGO_INITLESS_POD", "value": "true"}));
                env.push(json!({"name": "ARGO_TEMPLATE", "value": template}));
            }
            "main" => {
                let mut cmd = vec!["/argo-bin/bin/argoexec", "emissary"];
                cmd.extend(opts);
                cmd.extend(["--", "python", "/app/preprocess.py"]);
                c["command"] = json!(cmd);
                env_mut(c).push(json!({"name": "ARGO_WAIT_FOR_READY", "value": "true"}));
                c["volumeMounts"]
                    .as_array_mut()
                    .unwrap()
                    .insert(0, json!({"name": "argoexec-bin", "readOnly": true, "mountPath": "/argo-bin"}));
            }
            _ => {}
        }
    }
    spec["volumes"].as_array_mut().unwrap().push(
        json!({"name": "argoexec-bin", "image": {"reference": "quay.io/argoproj/argoexec:v4.1.2", "pullPolicy": "IfNotPresent"}}),
    );
    pod
}

/// The same v4.1 step in another run: another workflow name, uid, node id, pod name and trace.
fn v41_second_run(first: &Value) -> Value {
    let text = first.to_string();
    let old_wf = first["metadata"]["labels"]["workflows.argoproj.io/workflow"].as_str().unwrap().to_owned();
    let old_uid = first["metadata"]["ownerReferences"][0]["uid"].as_str().unwrap().to_owned();
    let old_trace = first["metadata"]["annotations"]["workflows.argoproj.io/trace-id"].as_str().unwrap().to_owned();
    let old_span = first["metadata"]["annotations"]["workflows.argoproj.io/span-id"].as_str().unwrap().to_owned();
    let text = text
        .replace(&old_wf, "rerun-q9w4z")
        .replace(&old_uid, "11111111-2222-4333-8444-555555555555")
        .replace(&old_trace, "0af7651916cd43dd8448eb211c80319c")
        .replace(&old_span, "b7ad6b7169203331");
    serde_json::from_str(&text).unwrap()
}

/// The v4.0 step reading its output artifact through an artifact plugin `acme`: Argo adds
/// `init-artifact-acme` and the sidecar `artifact-plugin-acme` (listed on `wait`).
fn v40_with_artifact_plugin() -> Value {
    let mut pod = pod_json(&hand_built("v4.0-container-params"));
    edit_template(&mut pod, |t| {
        t["outputs"]["artifacts"] =
            json!([{"name": "rows", "path": "/tmp/rows", "plugin": {"name": "acme", "configuration": "bucket: b"}}]);
    });
    let plugin = json!({
        "name": "artifact-plugin-acme", "image": "ghcr.io/acme/argo-artifact-plugin:1.0",
        "command": ["/plugin"], "args": ["--socket", "/var/run/argo/acme.sock"],
        "env": [{"name": "ARGO_CONTAINER_NAME", "value": "artifact-plugin-acme"}, {"name": "ARGO_CONTAINER_NAME", "value": "artifact-plugin-acme"}],
        "volumeMounts": [{"name": "var-run-argo", "mountPath": "/var/run/argo"}]
    });
    let mut init = plugin.clone();
    init["name"] = json!("init-artifact-acme");
    pod["spec"]["containers"].as_array_mut().unwrap().push(plugin);
    pod["spec"]["initContainers"].as_array_mut().unwrap().push(init);
    set_env(container_mut(&mut pod, "wait"), "ARGO_ARTIFACT_PLUGIN_NAMES", "artifact-plugin-acme");
    pod
}

/// The offloaded v3.7 step as it would look had nothing been offloaded: the ConfigMap's template
/// inline on `init`, its args on `main`, no `argo-env-config` volume, mount or args file.
fn offloaded_inline_twin() -> Value {
    let mut pod = pod_json(&hand_built("v3.7-offloaded-template-args"));
    let off = offload_for(&to_pod(&pod)).unwrap();
    set_env(container_mut(&mut pod, "init"), "ARGO_TEMPLATE", off.template.as_deref().unwrap());
    let main = container_mut(&mut pod, "main");
    env_mut(main).retain(|e| e["name"] != "ARGO_CONTAINER_ARGS_FILE");
    main["args"] = json!(off.args_list().unwrap());
    for c in containers_mut(&mut pod) {
        if let Some(m) = c["volumeMounts"].as_array_mut() {
            m.retain(|m| m["name"] != "argo-env-config");
        }
    }
    pod["spec"]["volumes"].as_array_mut().unwrap().retain(|v| v["name"] != "argo-env-config");
    pod
}

/// Named pod variants used by golden vectors and tests.
fn variant(fixture: &str, variant: &str) -> Value {
    match variant {
        "" | "none" => pod_json(fixture),
        "v3.6-as-v3.3-layout" => v36_as_env_all_containers("v3.3.10"),
        "v3.6-as-v3.4-layout" => v36_as_env_all_containers("v3.4.18"),
        "v3.6-as-v3.5-layout" => v36_as_env_all_containers("v3.5.15"),
        "v3.6-as-v2.12-layout" => v36_as_template_annotation(),
        "v3.6-as-v4.1-initless-layout" => v36_as_initless(),
        "v4.1-second-run" => v41_second_run(&pod_json(&hand_built("v4.1-container-params"))),
        "v4.0-with-artifact-plugin" => v40_with_artifact_plugin(),
        "v3.7-offloaded-inline-twin" => offloaded_inline_twin(),
        other => panic!("unknown variant {other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Classification of every fixture
// ---------------------------------------------------------------------------------------------

/// Expected outcome per admission fixture; a new fixture without an entry fails the test.
fn expected_classification(file: &str) -> Result<ArgoLayout, SkipReason> {
    let base =
        file.trim_start_matches("captured/").trim_end_matches(".admission.json").trim_end_matches(".captured.json");
    match base {
        "v2.12-template-annotation" => Ok(ArgoLayout::TemplateAnnotation),
        "v3.3-container-params" | "v3.5-artifacts-s3" | "kfp-v1-staleness" => Ok(ArgoLayout::TemplateEnvAllContainers),
        "v3.6-container-params" | "v3.7-script" | "v4.0-container-params" | "v4.1-container-params" => {
            Ok(ArgoLayout::TemplateEnvInitOnly)
        }
        "v4.1-initless-container-artifacts" => Ok(ArgoLayout::TemplateEnvSupervisor),
        // Without its ConfigMap (read through the API at admission) the pod says too little.
        "v3.7-offloaded-template-args" => Err(SkipReason::Offloaded),
        "v3.6-resource-template.ignore" => Err(SkipReason::NotCacheableKind("resource")),
        "v3.6-agent-pod.ignore" => Err(SkipReason::Component("agent".into())),
        other => panic!("fixture {other} has no expected classification; add one"),
    }
}

#[test]
fn every_pod_fixture_classifies_as_expected() {
    let mut files = Vec::new();
    for dir in ["", "captured/"] {
        for entry in std::fs::read_dir(fixtures_dir().join(dir)).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".admission.json") || name.ends_with(".captured.json") {
                files.push(format!("{dir}{name}"));
            }
        }
    }
    files.sort();
    assert_eq!(files.len(), 20, "{files:?}");
    for f in files {
        let got = classify(&to_pod(&pod_json(&f)));
        match (expected_classification(&f), got) {
            (Ok(layout), Classification::Step(s)) => assert_eq!(s.layout, layout, "{f}"),
            (Err(want), Classification::Skip(r)) => assert_eq!(r, want, "{f}"),
            (want, got) => panic!("{f}: expected {want:?}, got {got:?}"),
        }
    }
}

#[test]
fn every_step_fixture_yields_a_key() {
    for name in STEP_FIXTURES {
        let km = key(&pod_json(&hand_built(name)));
        assert!(km.key.as_str().starts_with("v3:"), "{name}");
        assert_eq!(km.material["format"], "v3");
    }
}

// ---------------------------------------------------------------------------------------------
// API-server captures and cross-version equality
// ---------------------------------------------------------------------------------------------

#[test]
fn captured_pods_have_the_same_key_as_their_hand_built_twins() {
    for name in STEP_FIXTURES {
        let a = key(&pod_json(&hand_built(name)));
        let b = key(&pod_json(&captured(name)));
        assert_same_key(&a, &b, name);
        assert_eq!(a.material, b.material, "{name}");
    }
}

#[test]
fn captured_pods_keep_their_key_in_cluster_scope_and_with_a_seed() {
    for name in STEP_FIXTURES {
        for (seed, scope) in [("track-2", Scope::Namespace), ("", Scope::Cluster)] {
            let a = key_with(&pod_json(&hand_built(name)), seed, scope);
            let b = key_with(&pod_json(&captured(name)), seed, scope);
            assert_same_key(&a, &b, name);
        }
    }
}

#[test]
fn v36_step_has_the_same_key_in_every_argo_layout() {
    let reference = key(&pod_json(&hand_built("v3.6-container-params")));
    let cases = [
        ("v3.6-as-v3.3-layout", ArgoLayout::TemplateEnvAllContainers),
        ("v3.6-as-v3.4-layout", ArgoLayout::TemplateEnvAllContainers),
        ("v3.6-as-v3.5-layout", ArgoLayout::TemplateEnvAllContainers),
        ("v3.6-as-v2.12-layout", ArgoLayout::TemplateAnnotation),
        ("v3.6-as-v4.1-initless-layout", ArgoLayout::TemplateEnvSupervisor),
        ("v4.1-second-run", ArgoLayout::TemplateEnvInitOnly),
        ("v4.0-container-params.admission.json", ArgoLayout::TemplateEnvInitOnly),
        ("v4.1-container-params.admission.json", ArgoLayout::TemplateEnvInitOnly),
    ];
    for (v, expected_layout) in cases {
        let pod = if v.ends_with(".json") { pod_json(v) } else { variant("", v) };
        let step = step_of(&to_pod(&pod));
        assert_eq!(step.layout, expected_layout, "{v}");
        assert_same_key(&reference, &key(&pod), v);
        assert_eq!(reference.material, key(&pod).material, "{v}");
    }
}

#[test]
fn two_runs_of_one_v41_step_share_a_key_although_trace_and_workflow_env_differ() {
    for first in [pod_json(&hand_built("v4.1-container-params")), v36_as_initless()] {
        let second = v41_second_run(&first);
        assert_ne!(first, second);
        let (a, b) = (key(&first), key(&second));
        assert_same_key(&a, &b, "v4.1 rerun");
        let s = step_of(&to_pod(&second));
        assert!(s.argo.v41);
        assert_eq!(s.workflow_name, "rerun-q9w4z");
    }
}

#[test]
fn v41_initless_fixture_is_keyed_like_the_same_step_on_v35() {
    let initless = pod_json(&hand_built("v4.1-initless-container-artifacts"));
    let step = step_of(&to_pod(&initless));
    assert_eq!(step.layout, ArgoLayout::TemplateEnvSupervisor);
    assert_eq!(step.layout.output_collector(), "supervisor");
    // The same step on v3.5 reading the same upstream artifact.
    let upstream = template_of(&initless)["inputs"]["artifacts"][0]["s3"]["key"].clone();
    let mut v35 = pod_json(&hand_built("v3.5-artifacts-s3"));
    edit_template(&mut v35, |t| t["inputs"]["artifacts"][0]["s3"]["key"] = upstream.clone());
    assert_same_key(&key(&v35), &key(&initless), "v3.5 vs v4.1 init-less");
    let m = canonical_json(&key(&initless).material);
    for argo in ["supervisor", "argoexec-bin", "TRACEPARENT", "ARGO_WAIT_FOR_READY", "my-minio-cred\"/", "/argo/secret"]
    {
        assert!(!m.contains(argo), "{argo} in {m}");
    }
}

#[test]
fn a_user_env_named_like_argos_is_keyed() {
    for fixture in ["v3.6-container-params", "v3.5-artifacts-s3", "v4.1-container-params"] {
        let mut safe = pod_json(&hand_built(fixture));
        set_env(container_mut(&mut safe, "main"), "ARGO_MODE", "safe");
        let mut poison = safe.clone();
        set_env(container_mut(&mut poison, "main"), "ARGO_MODE", "poison");
        assert_ne!(key(&safe).key, key(&poison).key, "{fixture}");
    }
    // Before v4.1 Argo never writes ARGO_WORKFLOW_NAME or TRACEPARENT on `main`: a user's is keyed.
    let mut a = v36();
    set_env(container_mut(&mut a, "main"), "TRACEPARENT", "x");
    assert_ne!(key(&a).key, key(&v36()).key);
}

#[test]
fn trace_annotations_are_not_keyed() {
    let base = pod_json(&hand_built("v4.1-container-params"));
    let mut pod = base.clone();
    pod["metadata"]["annotations"]["workflows.argoproj.io/trace-id"] = json!("ffffffffffffffffffffffffffffffff");
    pod["metadata"]["annotations"]["workflows.argoproj.io/span-id"] = json!("ffffffffffffffff");
    assert_same_key(&key(&base), &key(&pod), "trace annotations");
}

#[test]
fn artifact_plugin_containers_are_argos_but_a_lookalike_is_keyed() {
    let plugin = v40_with_artifact_plugin();
    let step = step_of(&to_pod(&plugin));
    assert!(step.argo.plugin_containers.contains("artifact-plugin-acme"));
    assert!(step.argo.plugin_containers.contains("init-artifact-acme"));
    let km = key(&plugin);
    assert_eq!(km.material["containers"].as_array().unwrap().len(), 1, "{}", km.material);
    assert!(km.material.get("initContainers").is_none(), "{}", km.material);
    // A container named like a plugin the template does not use is the author's.
    let mut lookalike = plugin.clone();
    let mut extra = container_mut(&mut lookalike, "artifact-plugin-acme").clone();
    extra["name"] = json!("artifact-plugin-other");
    lookalike["spec"]["containers"].as_array_mut().unwrap().push(extra);
    assert_ne!(key(&lookalike).key, km.key);
}

#[test]
fn a_template_planted_on_main_is_not_read_on_v36() {
    let mut pod = v36();
    let mut forged = template_of(&pod);
    forged["container"]["image"] = json!("evil:1");
    set_env(container_mut(&mut pod, "main"), "ARGO_TEMPLATE", &forged.to_string());
    assert!(matches!(classify(&to_pod(&pod)), Classification::Skip(SkipReason::TemplateConflict(_))));
    // An identical copy is harmless and changes nothing.
    let mut same = v36();
    let t = raw_template(&same);
    set_env(container_mut(&mut same, "main"), "ARGO_TEMPLATE", &t);
    assert!(matches!(classify(&to_pod(&same)), Classification::Step(_)));
}

#[test]
fn containers_that_disagree_about_the_template_are_not_cached() {
    // v3.5: every container carries it; a different copy on init is a conflict.
    let mut pod = pod_json(&hand_built("v3.5-artifacts-s3"));
    set_env(container_mut(&mut pod, "init"), "ARGO_TEMPLATE", r#"{"name":"x","container":{"image":"evil"}}"#);
    let Classification::Skip(r) = classify(&to_pod(&pod)) else { panic!() };
    assert_eq!(r.kind(), "template_conflict");
    assert!(r.warns());
    // An author's template annotation (template metadata) next to Argo's env var.
    let mut pod = v36();
    pod["metadata"]["annotations"]["workflows.argoproj.io/template"] = json!(r#"{"container":{"image":"evil"}}"#);
    assert!(matches!(classify(&to_pod(&pod)), Classification::Skip(SkipReason::TemplateConflict(_))));
}

#[test]
fn offloaded_v37_pod_is_keyed_equal_to_its_inline_twin() {
    let offloaded = pod_json(&hand_built("v3.7-offloaded-template-args"));
    let pod = to_pod(&offloaded);
    assert_eq!(classify(&pod), Classification::Skip(SkipReason::Offloaded));
    let step = step_of(&pod);
    assert_eq!(step.offloaded_args.as_ref().unwrap().container, "main");
    let twin = offloaded_inline_twin();
    let (a, b) = (key(&offloaded), key(&twin));
    assert_same_key(&a, &b, "offloaded vs inline");
    assert_eq!(a.material["containers"][0]["args"].as_array().unwrap().len(), step.offloaded_args.unwrap().args.len());
    // Two offloaded steps whose args differ must not share a key (the pod args are absent).
    let mut other = twin.clone();
    container_mut(&mut other, "main")["args"][1] = json!("c-999999");
    assert_ne!(key(&other).key, b.key);
}

#[test]
fn an_offload_config_map_of_another_workflow_or_with_other_args_is_rejected() {
    let pod = to_pod(&pod_json(&hand_built("v3.7-offloaded-template-args")));
    let good = offload_for(&pod).unwrap();
    let mut foreign = good.clone();
    foreign.owner_uid = Some("00000000-0000-4000-8000-000000000000".into());
    let Classification::Skip(r) = classify_with(&pod, Some(&foreign)) else { panic!() };
    assert_eq!(r.kind(), "offload_rejected");
    let mut other_args = good.clone();
    other_args.args = Some(r#"["--ids-json","x"]"#.into());
    let Classification::Skip(r) = classify_with(&pod, Some(&other_args)) else { panic!() };
    assert_eq!(r.kind(), "offload_rejected");
    let mut unreadable = good;
    unreadable.args = Some("not json".into());
    assert!(matches!(classify_with(&pod, Some(&unreadable)), Classification::Skip(SkipReason::OffloadRejected(_))));
}

#[test]
fn included_script_output_makes_result_a_required_output() {
    let script = step_of(&to_pod(&pod_json(&hand_built("v3.7-script"))));
    let declared = script.template.declared_outputs();
    assert!(declared.result);
    let none = stepcache::types::StepOutputs::default();
    assert_eq!(declared.missing(&none), vec!["result".to_owned()]);
    let with: stepcache::types::StepOutputs = serde_json::from_value(json!({"result": "64"})).unwrap();
    assert!(declared.missing(&with).is_empty());
    // Not asked for: not required.
    let mut pod = pod_json(&hand_built("v3.7-script"));
    for c in containers_mut(&mut pod) {
        set_env(c, "ARGO_INCLUDE_SCRIPT_OUTPUT", "false");
    }
    assert!(step_of(&to_pod(&pod)).template.declared_outputs().missing(&none).is_empty());
}

#[test]
fn key_only_input_artifacts_are_keyed_with_their_repository() {
    let base = pod_json(&hand_built("v3.5-artifacts-s3"));
    let km = key(&base);
    assert_eq!(
        km.material["inputArtifactRepository"],
        json!({"s3": {"endpoint": "minio.argo.svc:9000", "bucket": "my-bucket", "insecure": true,
            "accessKeySecret": {"name": "my-minio-cred", "key": "accesskey"},
            "secretKeySecret": {"name": "my-minio-cred", "key": "secretkey"}}})
    );
    let mut prod = base.clone();
    edit_template(&mut prod, |t| t["archiveLocation"]["s3"]["bucket"] = json!("prod-bucket"));
    assert_ne!(key(&prod).key, km.key);
    // Without input artifacts the repository only says where outputs go: not keyed.
    assert!(key(&v36()).material.get("inputArtifactRepository").is_none());
}

#[test]
fn global_names_of_outputs_are_keyed() {
    let base = v36();
    let mut g = base.clone();
    edit_template(&mut g, |t| t["outputs"]["parameters"][0]["globalName"] = json!("rows"));
    let km = key(&g);
    assert_ne!(km.key, key(&base).key);
    assert_eq!(km.material["outputs"]["parameters"][0]["globalName"], "rows");
}

#[test]
fn host_aliases_block_devices_user_volumes_named_like_argos_and_pod_spec_patch_are_keyed() {
    let base = v36();
    let mut aliases = base.clone();
    aliases["spec"]["hostAliases"] = json!([{"ip": "10.0.0.9", "hostnames": ["data.internal"]}]);
    assert_ne!(key(&aliases).key, key(&base).key);

    let device = |claim: &str| {
        let mut p = v36();
        p["spec"]["volumes"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "raw", "persistentVolumeClaim": {"claimName": claim}}));
        container_mut(&mut p, "main")["volumeDevices"] = json!([{"name": "raw", "devicePath": "/dev/xvda"}]);
        p
    };
    let (a, b) = (key(&device("disk-a")), key(&device("disk-b")));
    assert_ne!(a.key, b.key);
    assert_eq!(a.material["volumes"]["raw"], json!({"persistentVolumeClaim": {"claimName": "disk-a"}}));

    let kubeconfig = |secret: &str| {
        let mut p = v36();
        p["spec"]["volumes"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "kubeconfig", "secret": {"secretName": secret}}));
        container_mut(&mut p, "main")["volumeMounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "kubeconfig", "mountPath": "/root/.kube"}));
        p
    };
    assert_ne!(key(&kubeconfig("dev")).key, key(&kubeconfig("prod")).key);

    let mut patched = base.clone();
    edit_template(&mut patched, |t| {
        t["podSpecPatch"] = json!(r#"{"initContainers":[{"name":"init","image":"evil"}]}"#)
    });
    assert_ne!(key(&patched).key, key(&base).key);
}

#[test]
fn v33_layout_variant_carries_parameters_that_the_v36_template_lacks() {
    // Guards the builder: the equality above must hold *despite* inputs.parameters.
    let t33 = template_of(&variant("", "v3.6-as-v3.3-layout"));
    let t36 = template_of(&pod_json(&hand_built("v3.6-container-params")));
    assert!(t33["inputs"]["parameters"].is_array());
    assert_eq!(t36["inputs"], json!({}));
}

#[test]
fn v33_and_v36_fixtures_model_different_steps_and_differ_only_in_step_content() {
    let a = key(&pod_json(&hand_built("v3.3-container-params")));
    let b = key(&pod_json(&hand_built("v3.6-container-params")));
    assert_ne!(a.key, b.key);
    let d = diff_material(&a.material, &b.material);
    // Nothing Argo-version-specific shows up: only the user's container, outputs, namespace.
    for line in &d {
        assert!(
            line.starts_with("containers[main].") || line.starts_with("outputs.") || line.starts_with("namespace:"),
            "{line}"
        );
    }
}

#[test]
fn script_args_keep_the_staging_path_in_every_layout() {
    let km = key(&pod_json(&hand_built("v3.7-script")));
    assert_eq!(km.material["containers"][0]["args"], json!(["/argo/staging/script"]));
    assert!(km.material["scriptSource"].as_str().unwrap().contains("hashlib"));
}

#[test]
fn input_artifacts_and_declared_outputs_are_in_the_material_without_archive_location() {
    let km = key(&pod_json(&hand_built("v3.5-artifacts-s3")));
    let m = &km.material;
    assert_eq!(
        m["inputArtifacts"],
        json!([{"name":"raw","path":"/data/raw.csv","s3":{"key":"features-m2dq8/features-m2dq8-extract-2260468523/raw.tgz"}}])
    );
    assert_eq!(
        m["outputs"],
        json!({"artifacts":[{"name":"features","path":"/data/out/features.parquet"}],
               "parameters":[{"name":"n-features","valueFrom":{"path":"/data/out/n.txt"}}]})
    );
    // `scratch` is an emptyDir: its source `{"emptyDir":{}}` prunes away, the mount names it.
    assert!(m.get("volumes").is_none());
    assert_eq!(m["containers"][0]["volumeMounts"], json!([{"name":"scratch","mountPath":"/data/out"}]));
    assert!(!canonical_json(m).contains("archiveLocation"));
    // The repository (bucket, endpoint, credentials) is keyed with the key-only input; the
    // per-run archive key is not.
    assert_eq!(m["inputArtifactRepository"]["s3"]["bucket"], "my-bucket");
    assert!(!canonical_json(m).contains("features-m2dq8-featurize"));
}

#[test]
fn kfp_pod_keys_on_its_container_and_ignores_kfp_metadata() {
    let base = pod_json(&hand_built("kfp-v1-staleness"));
    let mut other = base.clone();
    other["metadata"]["annotations"]["pipelines.kubeflow.org/arguments.parameters"] = json!("{\"n\": \"6\"}");
    edit_template(&mut other, |t| {
        t["metadata"]["annotations"]["pipelines.kubeflow.org/arguments.parameters"] = json!("{\"n\": \"6\"}");
        t["archiveLocation"]["s3"]["key"] = json!("artifacts/other-run");
    });
    assert_same_key(&key(&base), &key(&other), "kfp metadata");
}

// ---------------------------------------------------------------------------------------------
// Golden vectors
// ---------------------------------------------------------------------------------------------

#[derive(serde::Deserialize, serde::Serialize)]
struct Vector {
    /// What the case covers.
    description: String,
    /// Fixture file under tests/fixtures/argo (may be empty for builder variants).
    fixture: String,
    /// Builder variant applied to the fixture (`none` for the fixture as is).
    variant: String,
    /// Cache seed.
    seed: String,
    /// `namespace` or `cluster`.
    scope: Scope,
    /// Expected key.
    key: String,
    /// Expected material (explains a mismatch line by line).
    material: Value,
}

fn load_vectors() -> Vec<(PathBuf, Vector)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(vectors_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let v: Vector = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            out.push((path, v));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn golden_key_vectors_are_reproduced_exactly() {
    let bless = std::env::var_os("STEPCACHE_BLESS_KEY_VECTORS").is_some();
    let vectors = load_vectors();
    assert!(vectors.len() >= 20, "only {} vectors", vectors.len());
    let mut failures = Vec::new();
    for (path, mut v) in vectors {
        let km = key_with(&variant(&v.fixture, &v.variant), &v.seed, v.scope);
        // The spec, independently of derive_key: key = "v3:" + hex(sha256(canonical material)).
        let spec_key = format!("v3:{}", hex::encode(Sha256::digest(canonical_json(&km.material).as_bytes())));
        assert_eq!(km.key.as_str(), spec_key, "{}", path.display());
        if km.key.as_str() == v.key && km.material == v.material {
            continue;
        }
        if bless {
            v.key = km.key.to_string();
            v.material = km.material;
            let text = serde_json::to_string_pretty(&v).unwrap() + "\n";
            std::fs::write(&path, text).unwrap();
            continue;
        }
        failures.push(format!(
            "{}: expected {}, got {}\n  {}",
            path.display(),
            v.key,
            km.key,
            diff_material(&v.material, &km.material).join("\n  ")
        ));
    }
    assert!(
        failures.is_empty(),
        "golden key vectors changed (a key-format bump flushes every cache; see docs/cache-key.md):\n{}",
        failures.join("\n")
    );
}

#[test]
fn golden_vectors_cover_every_step_fixture_and_its_capture() {
    let covered: BTreeSet<String> = load_vectors().into_iter().map(|(_, v)| v.fixture).collect();
    for name in STEP_FIXTURES {
        assert!(covered.contains(&hand_built(name)), "{name}");
        assert!(covered.contains(&captured(name)), "{name}");
    }
    for name in HAND_BUILT_ONLY {
        assert!(covered.contains(&hand_built(name)), "{name}");
    }
}

#[test]
fn golden_vectors_with_equal_inputs_modulo_layout_share_a_key() {
    let vectors = load_vectors();
    let v36 = vectors
        .iter()
        .find(|(_, v)| {
            v.fixture == hand_built("v3.6-container-params")
                && v.variant == "none"
                && v.seed.is_empty()
                && v.scope == Scope::Namespace
        })
        .map(|(_, v)| v.key.clone())
        .unwrap();
    let layouts: Vec<&Vector> = vectors
        .iter()
        .map(|(_, v)| v)
        .filter(|v| {
            v.seed.is_empty()
                && v.scope == Scope::Namespace
                && (v.variant.starts_with("v3.6-as-")
                    || v.variant == "v4.1-second-run"
                    || v.fixture == hand_built("v4.0-container-params")
                    || v.fixture == hand_built("v4.1-container-params"))
        })
        .collect();
    assert_eq!(layouts.len(), 8);
    for v in layouts {
        assert_eq!(v.key, v36, "{}", v.variant);
    }
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

fn v36() -> Value {
    pod_json(&hand_built("v3.6-container-params"))
}

fn main_args(pod: &Value) -> Vec<String> {
    serde_json::from_value(
        pod["spec"]["containers"].as_array().unwrap().iter().find(|c| c["name"] == "main").unwrap()["args"].clone(),
    )
    .unwrap()
}

fn with_data_mount(path: &str) -> Value {
    let mut pod = v36();
    pod["spec"]["volumes"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "data", "persistentVolumeClaim": {"claimName": "datasets"}}));
    container_mut(&mut pod, "main")["volumeMounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "data", "mountPath": path}));
    pod
}

fn namespace_strategy() -> impl Strategy<Value = String> {
    "[a-z]([a-z0-9-]{0,20}[a-z0-9])?"
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("name".to_owned()),
                    Just("source".to_owned()),
                    Just("artifacts".to_owned()),
                    Just("parameters".to_owned()),
                    Just("containers".to_owned()),
                    Just("dependencies".to_owned()),
                    Just("valueFrom".to_owned()),
                    "[a-zA-Z]{1,8}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Classifies and keys a pod; any outcome but a panic is acceptable.
fn classify_and_key_without_panicking(pod: &Value) {
    let Ok(pod) = serde_json::from_value::<Pod>(pod.clone()) else {
        return;
    };
    if let Classification::Step(step) = classify(&pod) {
        if let Ok(km) = derive_key(&pod, &step, &CacheSeed::default(), Scope::Namespace) {
            let _ = diff_material(&km.material, &json!({}));
            let _ = canonical_json(&km.material);
        }
    }
}

fn set_init_template_text(pod: &mut Value, text: &str) {
    set_env(container_mut(pod, "init"), "ARGO_TEMPLATE", text);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    // --- included fields change the key ---

    #[test]
    fn changing_one_character_of_an_arg_changes_the_key(i in 0usize..6, pos in any::<prop::sample::Index>(), ch in any::<char>()) {
        let base = v36();
        let mut args = main_args(&base);
        let arg: Vec<char> = args[i].chars().collect();
        let at = pos.index(arg.len());
        prop_assume!(arg[at] != ch);
        let mut arg = arg;
        arg[at] = ch;
        args[i] = arg.into_iter().collect();
        let mut pod = base.clone();
        container_mut(&mut pod, "main")["args"] = json!(args);
        prop_assert_ne!(key(&base).key, key(&pod).key);
    }

    #[test]
    fn changing_the_image_tag_changes_the_key(a in "[a-z0-9][a-z0-9._-]{0,20}", b in "[a-z0-9][a-z0-9._-]{0,20}") {
        prop_assume!(a != b);
        let mut x = v36();
        let mut y = v36();
        container_mut(&mut x, "main")["image"] = json!(format!("ghcr.io/example/preprocess:{a}"));
        container_mut(&mut y, "main")["image"] = json!(format!("ghcr.io/example/preprocess:{b}"));
        let (kx, ky) = (key(&x), key(&y));
        prop_assert_ne!(&kx.key, &ky.key);
        prop_assert_eq!(diff_material(&kx.material, &ky.material).len(), 1);
    }

    #[test]
    fn changing_a_user_env_value_changes_the_key(v in ".{0,40}") {
        prop_assume!(v != "debug" && !v.is_empty());
        let base = v36();
        let mut pod = base.clone();
        set_env(container_mut(&mut pod, "main"), "LOG_LEVEL", &v);
        prop_assert_ne!(key(&base).key, key(&pod).key);
    }

    #[test]
    fn changing_a_mount_path_changes_the_key(p in "/[a-z]{1,12}") {
        prop_assume!(p != "/data");
        prop_assert_ne!(key(&with_data_mount("/data")).key, key(&with_data_mount(&p)).key);
    }

    #[test]
    fn changing_the_seed_changes_the_key(a in "[ -~]{0,40}", b in "[ -~]{0,40}") {
        prop_assume!(a != b);
        let pod = v36();
        prop_assert_ne!(key_with(&pod, &a, Scope::Namespace).key, key_with(&pod, &b, Scope::Namespace).key);
    }

    #[test]
    fn changing_the_namespace_changes_the_key_only_in_namespace_scope(a in namespace_strategy(), b in namespace_strategy()) {
        prop_assume!(a != b);
        let mut x = v36();
        let mut y = v36();
        x["metadata"]["namespace"] = json!(a);
        y["metadata"]["namespace"] = json!(b);
        prop_assert_ne!(key(&x).key, key(&y).key);
        prop_assert_eq!(key_with(&x, "", Scope::Cluster).key, key_with(&y, "", Scope::Cluster).key);
    }

    #[test]
    fn changing_the_script_source_changes_the_key(pos in any::<prop::sample::Index>(), ch in any::<char>()) {
        let base = pod_json(&hand_built("v3.7-script"));
        let src: Vec<char> = template_of(&base)["script"]["source"].as_str().unwrap().chars().collect();
        let at = pos.index(src.len());
        prop_assume!(src[at] != ch);
        let mut new = src;
        new[at] = ch;
        let new: String = new.into_iter().collect();
        let mut pod = base.clone();
        edit_template(&mut pod, |t| t["script"]["source"] = json!(new));
        prop_assert_ne!(key(&base).key, key(&pod).key);
    }

    #[test]
    fn changing_an_input_artifact_key_changes_the_key(k in "[a-z0-9/._-]{1,60}") {
        let base = pod_json(&hand_built("v3.5-artifacts-s3"));
        prop_assume!(k != "features-m2dq8/features-m2dq8-extract-2260468523/raw.tgz");
        let mut pod = base.clone();
        edit_template(&mut pod, |t| t["inputs"]["artifacts"][0]["s3"]["key"] = json!(k));
        prop_assert_ne!(key(&base).key, key(&pod).key);
    }

    #[test]
    fn swapping_two_different_args_changes_the_key(i in 0usize..6, j in 0usize..6) {
        let base = v36();
        let mut args = main_args(&base);
        prop_assume!(args[i] != args[j]);
        args.swap(i, j);
        let mut pod = base.clone();
        container_mut(&mut pod, "main")["args"] = json!(args);
        prop_assert_ne!(key(&base).key, key(&pod).key);
    }

    // --- excluded fields do not change the key ---

    #[test]
    fn pod_name_node_id_and_workflow_identity_do_not_change_the_key(
        pod_name in "[a-z][a-z0-9-]{0,40}[a-z0-9]",
        node in "[a-z][a-z0-9-]{0,30}-[0-9]{1,10}",
        wf in "[a-z][a-z0-9-]{0,30}",
        uid in "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    ) {
        let base = v36();
        let mut pod = base.clone();
        pod["metadata"]["name"] = json!(pod_name);
        pod["metadata"]["annotations"]["workflows.argoproj.io/node-id"] = json!(node);
        pod["metadata"]["annotations"]["workflows.argoproj.io/node-name"] = json!(format!("{wf}.step"));
        pod["metadata"]["labels"]["workflows.argoproj.io/workflow"] = json!(wf);
        pod["metadata"]["ownerReferences"][0]["name"] = json!(wf);
        pod["metadata"]["ownerReferences"][0]["uid"] = json!(uid);
        for c in containers_mut(&mut pod) {
            for (n, v) in [("ARGO_NODE_ID", &node), ("ARGO_WORKFLOW_NAME", &wf), ("ARGO_WORKFLOW_UID", &uid)] {
                if c["env"].as_array().unwrap().iter().any(|e| e["name"] == n) {
                    set_env(c, n, v);
                }
            }
        }
        let step = step_of(&to_pod(&pod));
        prop_assert_eq!(&step.node_id, &node);
        prop_assert_eq!(key(&base).key, key(&pod).key);
    }

    #[test]
    fn values_of_argo_injected_env_do_not_change_the_key_but_env_added_to_argos_containers_does(
        deadline in ".{0,30}", tick in ".{0,10}", pod_name in ".{0,20}", extra in "[A-Z_]{1,12}", extra_v in ".{0,20}",
    ) {
        let extra = format!("ARGO_{extra}");
        prop_assume!(!stepcache::argo::contract::is_executor_env(&extra, ArgoLayout::TemplateEnvInitOnly, &Default::default()));
        let base = v36();
        let mut pod = base.clone();
        for c in containers_mut(&mut pod) {
            set_env(c, "ARGO_DEADLINE", &deadline);
            set_env(c, "ARGO_PROGRESS_FILE_TICK_DURATION", &tick);
            if c["name"] != "main" {
                set_env(c, "ARGO_WORKFLOW_NAME", &pod_name);
            }
        }
        prop_assert_eq!(key(&base).key, key(&pod).key);
        // Anything else on Argo's containers came from the admin's `executor.env` (the same for
        // every pod, so it splits nothing) or a workflow podSpecPatch: keyed.
        let mut on_wait = pod.clone();
        set_env(container_mut(&mut on_wait, "wait"), &extra, &extra_v);
        prop_assert_ne!(key(&base).key, key(&on_wait).key);
        // The same variable on the user's container is the user's: keyed.
        set_env(container_mut(&mut pod, "main"), &extra, &extra_v);
        prop_assert_ne!(key(&base).key, key(&pod).key);
    }

    #[test]
    fn resources_node_selector_and_scheduling_do_not_change_the_key(
        cpu in 1u32..64_000, mem in 1u32..512, sel in proptest::collection::btree_map("[a-z]{1,10}", "[a-z0-9]{0,10}", 0..4),
        tol in "[a-z]{1,10}",
    ) {
        let base = v36();
        let mut pod = base.clone();
        container_mut(&mut pod, "main")["resources"] =
            json!({"requests": {"cpu": format!("{cpu}m"), "memory": format!("{mem}Gi")}, "limits": {"memory": format!("{mem}Gi")}});
        container_mut(&mut pod, "main")["imagePullPolicy"] = json!("Always");
        pod["spec"]["nodeSelector"] = json!(sel);
        pod["spec"]["tolerations"] = json!([{"key": tol, "operator": "Exists"}]);
        pod["spec"]["activeDeadlineSeconds"] = json!(cpu);
        prop_assert_eq!(key(&base).key, key(&pod).key);
    }

    #[test]
    fn archive_location_and_template_metadata_do_not_change_the_key(k in "[a-z0-9/-]{1,40}", label in "[a-z0-9]{0,20}") {
        let base = pod_json(&hand_built("v3.5-artifacts-s3"));
        let mut pod = base.clone();
        edit_template(&mut pod, |t| {
            t["archiveLocation"]["s3"]["key"] = json!(k);
            t["metadata"] = json!({"labels": {"run": label}});
            t["retryStrategy"] = json!({"limit": 3});
            t["memoize"] = json!({"key": label});
            t["timeout"] = json!("1h");
        });
        prop_assert_eq!(key(&base).key, key(&pod).key);
    }

    #[test]
    fn env_order_does_not_change_the_key(
        vars in proptest::collection::btree_map("[A-Z][A-Z0-9_]{0,8}", ".{0,12}", 1..8),
        perm in any::<u64>(),
    ) {
        prop_assume!(vars.keys().all(|k| !k.starts_with("ARGO_") && k != "LOG_LEVEL"));
        let sorted: Vec<(String, String)> = vars.into_iter().collect();
        let mut shuffled = sorted.clone();
        // Deterministic shuffle driven by proptest's rng value.
        let mut r = perm;
        for i in (1..shuffled.len()).rev() {
            r = r.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let j = usize::try_from(r >> 33).unwrap() % (i + 1);
            shuffled.swap(i, j);
        }
        let mut a = v36();
        let mut b = v36();
        for (n, v) in &sorted {
            set_env(container_mut(&mut a, "main"), n, v);
        }
        for (n, v) in &shuffled {
            set_env(container_mut(&mut b, "main"), n, v);
        }
        prop_assert_eq!(key(&a).key, key(&b).key);
    }

    #[test]
    fn template_key_order_does_not_change_the_key(fixture in prop::sample::select(vec!["v3.5-artifacts-s3", "v3.6-container-params", "v3.7-script"])) {
        let base = pod_json(&hand_built(fixture));
        let mut pod = base.clone();
        let text = reversed_key_order(&template_of(&base));
        let sorted_text = serde_json::to_string(&template_of(&base)).unwrap();
        prop_assume!(text != sorted_text);
        for c in containers_mut(&mut pod) {
            if c["env"].as_array().into_iter().flatten().any(|e| e["name"] == "ARGO_TEMPLATE") {
                set_env(c, "ARGO_TEMPLATE", &text);
            }
        }
        prop_assert_eq!(key(&base).key, key(&pod).key);
    }

    // --- hostile input never panics ---

    #[test]
    fn arbitrary_strings_as_argo_template_never_panic(text in ".{0,200}") {
        let mut pod = v36();
        set_init_template_text(&mut pod, &text);
        classify_and_key_without_panicking(&pod);
        let mut pod = pod_json(&hand_built("v3.5-artifacts-s3"));
        set_env(container_mut(&mut pod, "wait"), "ARGO_TEMPLATE", &text);
        classify_and_key_without_panicking(&pod);
    }

    #[test]
    fn arbitrary_json_templates_never_panic(t in arb_json()) {
        let mut pod = v36();
        set_init_template_text(&mut pod, &t.to_string());
        classify_and_key_without_panicking(&pod);
    }

    #[test]
    fn arbitrary_json_in_template_fields_never_panics(
        kind in prop::sample::select(vec!["container", "script", "containerSet"]),
        body in arb_json(), inputs in arb_json(), outputs in arb_json(), daemon in arb_json(),
    ) {
        let t = json!({"name": "t", kind: body, "inputs": inputs, "outputs": outputs, "daemon": daemon});
        let mut pod = v36();
        set_init_template_text(&mut pod, &t.to_string());
        classify_and_key_without_panicking(&pod);
    }
}

#[test]
fn malformed_templates_are_skipped_as_malformed() {
    for text in [
        "{",
        "null",
        "\"container\"",
        r#"{"container":5}"#,
        r#"{"container":"x"}"#,
        r#"{"container":[],"name":"t"}"#,
        r#"{"script":{"source":["x"]}}"#,
        r#"{"container":{},"outputs":{"artifacts":"x"}}"#,
        r#"{"container":{},"inputs":{"artifacts":[{"name":1}]}}"#,
    ] {
        let mut pod = v36();
        set_init_template_text(&mut pod, text);
        match classify(&to_pod(&pod)) {
            Classification::Skip(SkipReason::Malformed(_)) => {}
            other => panic!("{text}: {other:?}"),
        }
    }
}

#[test]
fn container_args_of_the_wrong_type_are_rejected_when_the_pod_is_decoded() {
    // The pod itself is typed: `"args": "x"` never reaches classify; decoding fails instead.
    let mut pod = v36();
    container_mut(&mut pod, "main")["args"] = json!("x");
    assert!(serde_json::from_value::<Pod>(pod).is_err());
}

#[test]
fn deeply_nested_and_huge_templates_do_not_crash() {
    let deep = format!("{{\"container\":{{}},\"inputs\":{}{}}}", "{\"a\":".repeat(50_000), "}".repeat(50_000));
    let mut pod = v36();
    set_init_template_text(&mut pod, &deep);
    assert!(matches!(classify(&to_pod(&pod)), Classification::Skip(SkipReason::Malformed(_))));

    // 4 MiB of script source and 100 000 args: keyed, no crash, distinct keys.
    let mut a = pod_json(&hand_built("v3.7-script"));
    let big = "x".repeat(4 << 20);
    edit_template(&mut a, |t| t["script"]["source"] = json!(big));
    let mut b = a.clone();
    let args: Vec<String> = (0..100_000).map(|i| i.to_string()).collect();
    container_mut(&mut b, "main")["args"] = json!(args);
    assert_ne!(key(&a).key, key(&b).key);
}

#[test]
fn offloaded_templates_are_skipped_not_keyed() {
    let mut pod = v36();
    set_init_template_text(&mut pod, "offloaded");
    assert_eq!(classify(&to_pod(&pod)), Classification::Skip(SkipReason::Offloaded));
}

#[test]
fn user_sidecars_and_init_containers_are_keyed_but_argo_ones_are_not() {
    let base = v36();
    let mut pod = base.clone();
    pod["spec"]["containers"].as_array_mut().unwrap().push(json!({
        "name": "sidecar", "image": "redis:7",
        "command": ["/var/run/argo/argoexec", "emissary", "--", "redis-server"],
        "env": [{"name": "ARGO_CONTAINER_NAME", "value": "sidecar"}],
        "volumeMounts": [{"name": "var-run-argo", "mountPath": "/var/run/argo"}]
    }));
    pod["spec"]["initContainers"].as_array_mut().unwrap().push(json!({
        "name": "fetch", "image": "busybox:1.36", "command": ["true"],
        "env": [{"name": "ARGO_TEMPLATE", "value": raw_template(&base)}]
    }));
    let km = key(&pod);
    assert_ne!(km.key, key(&base).key);
    assert_eq!(
        km.material["containers"][1],
        json!({"name": "sidecar", "image": "redis:7", "command": ["redis-server"]})
    );
    assert_eq!(km.material["initContainers"], json!([{"name": "fetch", "image": "busybox:1.36", "command": ["true"]}]));
}

#[test]
fn container_set_dependencies_are_part_of_the_key() {
    let mut base = v36();
    for c in containers_mut(&mut base) {
        if c["name"] == "main" {
            c["name"] = json!("a");
        }
    }
    let mut b2 = container_mut(&mut base, "a").clone();
    b2["name"] = json!("b");
    base["spec"]["containers"].as_array_mut().unwrap().push(b2);
    let set = |deps: Value| {
        let mut p = base.clone();
        edit_template(&mut p, |t| {
            t.as_object_mut().unwrap().remove("container");
            t["containerSet"] = json!({"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "x", "dependencies": deps.clone()}]});
        });
        p
    };
    let independent = key(&set(json!([])));
    let ordered = key(&set(json!(["a"])));
    assert_ne!(independent.key, ordered.key);
    assert_eq!(ordered.material["containerSetDependencies"], json!({"b": ["a"]}));
    assert_eq!(
        ordered.material["containers"].as_array().unwrap().iter().map(|c| c["name"].clone()).collect::<Vec<_>>(),
        vec![json!("a"), json!("b")]
    );
}

// ---------------------------------------------------------------------------------------------
// Issue #26: the key follows what the kubelet will run, not what the template says
// ---------------------------------------------------------------------------------------------

fn mount_on(pod: &mut Value, container: &str, m: Value) {
    let c = container_mut(pod, container);
    if c.get("volumeMounts").is_none() {
        c["volumeMounts"] = json!([]);
    }
    c["volumeMounts"].as_array_mut().unwrap().push(m);
}

/// A named change to a pod JSON.
type PodEdit = Box<dyn Fn(&mut Value)>;

/// What a workflow-level `spec.podSpecPatch` can do to Argo's own containers (it is applied
/// after `ARGO_TEMPLATE` is serialised, so the template does not show it).
fn argo_container_patches() -> Vec<(&'static str, PodEdit)> {
    vec![
        ("wait image", Box::new(|p| container_mut(p, "wait")["image"] = json!("ghcr.io/evil/argoexec:v3.6.19"))),
        (
            "wait command",
            Box::new(|p| {
                container_mut(p, "wait")["command"] =
                    json!(["sh", "-c", "echo 42 > /mainctrfs/tmp/row_count.txt; argoexec wait"])
            }),
        ),
        ("wait subcommand", Box::new(|p| container_mut(p, "wait")["command"] = json!(["argoexec", "resource", "get"]))),
        ("wait args", Box::new(|p| container_mut(p, "wait")["args"] = json!(["--fake-outputs"]))),
        ("init image", Box::new(|p| container_mut(p, "init")["image"] = json!("evil/argoexec:v3.6.19"))),
        ("init command", Box::new(|p| container_mut(p, "init")["command"] = json!(["/bin/evil-init"]))),
        ("wait env", Box::new(|p| set_env(container_mut(p, "wait"), "HTTPS_PROXY", "http://evil:3128"))),
        ("init env", Box::new(|p| set_env(container_mut(p, "init"), "ARGO_DEBUG_PAUSE_AFTER", "true"))),
        (
            "wait envFrom",
            Box::new(|p| container_mut(p, "wait")["envFrom"] = json!([{"configMapRef": {"name": "evil"}}])),
        ),
        (
            "wait mount over an output path",
            Box::new(|p| {
                p["spec"]["volumes"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "fake", "configMap": {"name": "fake"}}));
                mount_on(
                    p,
                    "wait",
                    json!({"name": "fake", "mountPath": "/mainctrfs/tmp/row_count.txt", "subPath": "v"}),
                );
            }),
        ),
        (
            "wait lifecycle hook",
            Box::new(|p| {
                container_mut(p, "wait")["lifecycle"] = json!({"postStart": {"exec": {"command": ["sh", "-c", "x"]}}})
            }),
        ),
        ("wait working dir", Box::new(|p| container_mut(p, "wait")["workingDir"] = json!("/evil"))),
    ]
}

#[test]
fn argo_containers_changed_after_the_template_was_serialised_do_not_share_the_honest_key() {
    let honest = key(&v36());
    let mut seen = BTreeSet::new();
    for (what, patch) in argo_container_patches() {
        let mut pod = v36();
        patch(&mut pod);
        let km = key(&pod);
        assert_ne!(km.key, honest.key, "{what}: a patched Argo container shares the honest key");
        assert!(seen.insert(km.key.as_str().to_owned()), "{what}: shares a key with another patch");
        assert!(
            diff_material(&honest.material, &km.material).iter().any(|l| l.starts_with("argoContainers")),
            "{what}: the difference is not explained as argoContainers: {:?}",
            diff_material(&honest.material, &km.material)
        );
    }
}

#[test]
fn a_replaced_supervisor_or_argoexec_binary_volume_does_not_share_the_honest_key() {
    let honest = key(&variant("", "v3.6-as-v4.1-initless-layout"));
    let mut sup = variant("", "v3.6-as-v4.1-initless-layout");
    container_mut(&mut sup, "supervisor")["image"] = json!("evil/argoexec:v4.1.2");
    assert_ne!(key(&sup).key, honest.key);
    let mut bin = variant("", "v3.6-as-v4.1-initless-layout");
    for v in bin["spec"]["volumes"].as_array_mut().unwrap() {
        if v["name"] == "argoexec-bin" {
            v["image"]["reference"] = json!("evil/argoexec:v4.1.2");
        }
    }
    assert_ne!(key(&bin).key, honest.key);
}

#[test]
fn honest_argo_containers_add_nothing_to_the_material_in_any_layout_or_version() {
    let mut pods: Vec<(String, Value)> = Vec::new();
    for f in STEP_FIXTURES {
        pods.push((f.to_string(), pod_json(&hand_built(f))));
        pods.push((format!("{f} captured"), pod_json(&captured(f))));
    }
    for f in HAND_BUILT_ONLY {
        pods.push((f.to_string(), pod_json(&hand_built(f))));
    }
    for v in ["v3.6-as-v3.3-layout", "v3.6-as-v3.5-layout", "v3.6-as-v2.12-layout", "v3.6-as-v4.1-initless-layout"] {
        pods.push((v.to_owned(), variant("", v)));
    }
    for (name, pod) in pods {
        let km = key(&pod);
        assert!(km.material.get("argoContainers").is_none(), "{name}: {}", km.material["argoContainers"]);
    }
    // Another upstream executor version (an Argo upgrade) keeps the key.
    let mut upgraded = v36();
    for c in ["init", "wait"] {
        container_mut(&mut upgraded, c)["image"] = json!("quay.io/argoproj/argoexec:v3.6.20");
    }
    assert_same_key(&key(&v36()), &key(&upgraded), "upgraded executor");
    // An admin's own executor image is keyed as written.
    let mut own = v36();
    for c in ["init", "wait"] {
        container_mut(&mut own, c)["image"] = json!("registry.corp/argoexec:v3.6.19");
    }
    assert_eq!(key(&own).material["argoContainers"]["wait"]["image"], "registry.corp/argoexec:v3.6.19");
}

#[test]
fn runtime_class_and_a_pinned_architecture_or_os_are_keyed() {
    let base = key(&v36());
    let with = |f: &dyn Fn(&mut Value)| {
        let mut p = v36();
        f(&mut p);
        key(&p)
    };
    let gvisor = with(&|p| p["spec"]["runtimeClassName"] = json!("gvisor"));
    assert_ne!(gvisor.key, base.key);
    assert_eq!(gvisor.material["platform"]["runtimeClassName"], "gvisor");
    let arm = with(&|p| p["spec"]["nodeSelector"] = json!({"kubernetes.io/arch": "arm64", "disk": "ssd"}));
    let amd = with(&|p| p["spec"]["nodeSelector"] = json!({"kubernetes.io/arch": "amd64"}));
    assert_ne!(arm.key, base.key);
    assert_ne!(arm.key, amd.key);
    assert_eq!(arm.material["platform"]["nodeSelector"], json!({"kubernetes.io/arch": "arm64"}));
    let os = with(&|p| p["spec"]["nodeSelector"] = json!({"kubernetes.io/os": "windows"}));
    assert_ne!(os.key, base.key);
    let pod_os = with(&|p| p["spec"]["os"] = json!({"name": "windows"}));
    assert_ne!(pod_os.key, base.key);
    let affinity = |arch: &'static str| {
        move |p: &mut Value| {
            p["spec"]["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/arch", "operator": "In", "values": [arch]},
                    {"key": "zone", "operator": "In", "values": ["a"]}
                ]}]
            }}})
        }
    };
    let aff_arm = with(&affinity("arm64"));
    assert_ne!(aff_arm.key, base.key);
    assert_ne!(aff_arm.key, with(&affinity("amd64")).key);
    // What only steers scheduling stays out.
    let unpinned = with(&|p| {
        p["spec"]["nodeSelector"] = json!({"disk": "ssd"});
        p["spec"]["affinity"] = json!({"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 1, "preference": {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["arm64"]}]}}
        ]}})
    });
    assert_same_key(&base, &unpinned, "preferred affinity and unrelated selectors");
}

#[test]
fn a_step_mounting_a_claim_the_workflow_creates_per_run_is_not_cached_and_says_why() {
    let per_run = |claim: &str| {
        let mut p = v36();
        p["spec"]["volumes"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "workdir", "persistentVolumeClaim": {"claimName": claim}}));
        mount_on(&mut p, "main", json!({"name": "workdir", "mountPath": "/work"}));
        p
    };
    match classify(&to_pod(&per_run("train-pipeline-7xk2p-workdir"))) {
        Classification::Skip(r) => {
            assert_eq!(r.kind(), "per_run_volume", "{r}");
            let text = r.to_string();
            assert!(text.contains("workdir") && text.contains("train-pipeline-7xk2p-workdir"), "{text}");
        }
        other => panic!("a per-run claim is cached: {other:?}"),
    }
    // A claim that outlives the workflow is an input like any other volume: keyed by name.
    assert!(matches!(classify(&to_pod(&per_run("shared-datasets"))), Classification::Step(_)));
}

// ---------------------------------------------------------------------------------------------
// The key follows what the kubelet runs: env order and expansion, Argo's block by position, the
// downward API's values.
// ---------------------------------------------------------------------------------------------

/// `main`'s template env replaced by `user` (placed before Argo's appended block, as Argo
/// places the template's env), in the hand-built fixture `name`.
fn with_template_env(name: &str, user: Value) -> Value {
    let mut pod = pod_json(&hand_built(name));
    let main = container_mut(&mut pod, "main");
    let env = env_mut(main);
    env.retain(|e| e["name"].as_str().is_some_and(|n| n.starts_with("ARGO_") || n == "TRACEPARENT"));
    let at = env.iter().position(|e| e["name"] == "ARGO_CONTAINER_NAME").unwrap_or(env.len());
    for (i, e) in user.as_array().unwrap().iter().enumerate() {
        env.insert(at + i, e.clone());
    }
    pod
}

/// The layouts the contract lists: v2.12 (nothing appended on main), v3.3 (`ARGO_TEMPLATE` on
/// every container), v3.6 (init only), v4.1 (trace env), v4.1 init-less (supervisor).
const ENV_LAYOUTS: &[&str] = &[
    "v2.12-template-annotation",
    "v3.3-container-params",
    "v3.6-container-params",
    "v4.1-container-params",
    "v4.1-initless-container-artifacts",
];

#[test]
fn env_order_that_changes_an_expansion_changes_the_key_in_every_layout() {
    for name in ENV_LAYOUTS {
        let before =
            with_template_env(name, json!([{"name": "DB_HOST", "value": "x"}, {"name": "DSN", "value": "$(DB_HOST)"}]));
        let after =
            with_template_env(name, json!([{"name": "DSN", "value": "$(DB_HOST)"}, {"name": "DB_HOST", "value": "x"}]));
        assert_ne!(key(&before).key, key(&after).key, "{name}: DSN is x in one, literal $(DB_HOST) in the other");
        let a = with_template_env(
            name,
            json!([{"name": "MODE", "value": "a"}, {"name": "RUN", "value": "$(MODE)"}, {"name": "MODE", "value": "b"}]),
        );
        let b = with_template_env(
            name,
            json!([{"name": "MODE", "value": "a"}, {"name": "MODE", "value": "b"}, {"name": "RUN", "value": "$(MODE)"}]),
        );
        assert_ne!(key(&a).key, key(&b).key, "{name}: RUN is a in one, b in the other");
        // An order that changes nothing the process sees keeps the key.
        let x = with_template_env(name, json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]));
        let y = with_template_env(name, json!([{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]));
        assert_same_key(&key(&x), &key(&y), name);
    }
}

#[test]
fn a_user_value_under_an_argo_name_reaches_the_key_in_every_layout() {
    for name in ENV_LAYOUTS {
        let run = |cutoff: &str| {
            with_template_env(
                name,
                json!([{"name": "ARGO_DEADLINE", "value": cutoff}, {"name": "CUTOFF", "value": "$(ARGO_DEADLINE)"}]),
            )
        };
        let (a, b) = (key(&run("2025-12-31")), key(&run("2026-06-30")));
        assert_ne!(a.key, b.key, "{name}: the process sees CUTOFF=2025-12-31 in one run, 2026-06-30 in the other");
        assert_eq!(a.material["containers"][0]["env"]["CUTOFF"], "2025-12-31", "{name}");
    }
}

#[test]
fn downward_api_values_of_labels_annotations_and_resources_are_keyed() {
    let with = |label: &str, cpu: &str| {
        let mut pod = with_template_env(
            "v3.6-container-params",
            json!([
                {"name": "TEAM", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['team']"}}},
                {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}
            ]),
        );
        pod["metadata"]["labels"]["team"] = json!(label);
        container_mut(&mut pod, "main")["resources"]["limits"] = json!({"cpu": cpu});
        pod
    };
    assert_ne!(key(&with("a", "1")).key, key(&with("b", "1")).key, "a label value read through the downward API");
    assert_ne!(key(&with("a", "1")).key, key(&with("a", "2")).key, "limits.cpu read through the downward API");
    // A downwardAPI volume of the pod's annotations.
    let vol = |v: &str| {
        let mut pod = pod_json(&hand_built("v3.6-container-params"));
        pod["metadata"]["annotations"]["cutoff"] = json!(v);
        pod["spec"]["volumes"].as_array_mut().unwrap().push(json!({"name": "info", "downwardAPI": {"items": [
            {"path": "cutoff", "fieldRef": {"fieldPath": "metadata.annotations['cutoff']"}}
        ]}}));
        container_mut(&mut pod, "main")["volumeMounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "info", "mountPath": "/etc/info"}));
        pod
    };
    assert_ne!(key(&vol("2025")).key, key(&vol("2026")).key, "an annotation a downwardAPI volume exposes");
    // Per-run identity is keyed by reference: two runs of one step still share a key.
    let ident = |pod_name: &str| {
        let mut pod = with_template_env(
            "v3.6-container-params",
            json!([{"name": "ME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]),
        );
        pod["metadata"]["name"] = json!(pod_name);
        pod
    };
    assert_same_key(&key(&ident("wf-a-1")), &key(&ident("wf-b-2")), "metadata.name is the run's identity");
}

#[test]
fn the_repository_output_artifacts_are_written_to_is_keyed_without_its_per_run_key() {
    // A step that only writes artifacts: its entry stores key-only references (`s3.key`),
    // which Argo resolves against the consuming workflow's repository.
    let mut writer = pod_json(&hand_built("v3.5-artifacts-s3"));
    edit_template(&mut writer, |t| {
        t["inputs"].as_object_mut().unwrap().remove("artifacts");
    });
    let km = key(&writer);
    assert!(km.material.get("inputArtifactRepository").is_none());
    assert_eq!(
        km.material["outputArtifactRepository"],
        json!({"s3": {"endpoint": "minio.argo.svc:9000", "bucket": "my-bucket", "insecure": true,
            "accessKeySecret": {"name": "my-minio-cred", "key": "accesskey"},
            "secretKeySecret": {"name": "my-minio-cred", "key": "secretkey"}}})
    );
    let mut other_bucket = writer.clone();
    edit_template(&mut other_bucket, |t| t["archiveLocation"]["s3"]["bucket"] = json!("bucket-b"));
    assert_ne!(key(&other_bucket).key, km.key, "served keys would resolve against bucket-b");
    let mut other_run = writer.clone();
    edit_template(&mut other_run, |t| t["archiveLocation"]["s3"]["key"] = json!("wf-2/pod-2"));
    assert_same_key(&km, &key(&other_run), "the per-run archive key");
}

#[test]
fn archived_logs_key_the_repository_and_steps_writing_nothing_there_do_not() {
    // v3.6 container fixture: parameters only, no archiveLocation.
    assert!(key(&v36()).material.get("outputArtifactRepository").is_none());
    let repo = json!({"archiveLogs": true, "s3": {"endpoint": "e:9000", "bucket": "b", "key": "wf/pod"}});
    let mut logs = v36();
    edit_template(&mut logs, |t| t["archiveLocation"] = repo.clone());
    assert_eq!(key(&logs).material["outputArtifactRepository"], json!({"s3": {"endpoint": "e:9000", "bucket": "b"}}));
    let mut no_logs = v36();
    edit_template(&mut no_logs, |t| {
        t["archiveLocation"] = repo.clone();
        t["archiveLocation"]["archiveLogs"] = json!(false);
    });
    assert_same_key(&key(&v36()), &key(&no_logs), "a repository nothing is written to");
}

#[test]
fn a_patched_source_of_argos_own_scratch_volumes_does_not_share_the_honest_key() {
    let honest = key(&v36());
    for name in ["var-run-argo", "tmp-dir-argo"] {
        let mut pod = v36();
        let v = pod["spec"]["volumes"].as_array_mut().unwrap().iter_mut().find(|v| v["name"] == name).unwrap();
        *v = json!({"name": name, "hostPath": {"path": "/srv/prepared"}});
        let km = key(&pod);
        assert_ne!(km.key, honest.key, "{name} from a hostPath");
        assert!(km.material["argoContainers"][format!("volume:{name}")]["hostPath"].is_object(), "{}", km.material);
    }
    // Argo's memory-backed variant is no plain emptyDir either.
    let mut pod = v36();
    let v = pod["spec"]["volumes"].as_array_mut().unwrap().iter_mut().find(|v| v["name"] == "var-run-argo").unwrap();
    *v = json!({"name": "var-run-argo", "emptyDir": {"medium": "Memory"}});
    assert_ne!(key(&pod).key, honest.key);
}
