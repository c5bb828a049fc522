//! JSON patches that turn an admitted step pod into a marked miss pod or a no-op hit pod, and
//! the WorkflowTaskResult that hands stored outputs to Argo ≥ 3.3.
//!
//! Owns: `build_hit_patch`, `build_mark_patch`, `build_task_result`, `RewriteConfig`.
//! Pointers are built from tokens (escaping `/` and `~`); parents are created when missing.
//! Pure: no I/O, no clock. Imports layer 0 and `argo`.

use crate::argo::labels;
use crate::argo::template::{ArgoLayout, StepPod, TemplateKind};
use crate::decision::Decision;
use crate::types::{CacheKey, EntryId, StepOutputs};
use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation, RemoveOperation, ReplaceOperation};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// How hit pods are built.
#[derive(Clone, Debug, PartialEq)]
pub struct RewriteConfig {
    /// Image of the no-op container.
    pub noop_image: String,
    /// Command of the no-op container (must exit 0 within a second).
    pub noop_command: Vec<String>,
    /// Keep `nodeSelector` and `affinity` on hit pods (some clusters require them).
    pub keep_node_restrictions: bool,
}

impl Default for RewriteConfig {
    fn default() -> Self {
        RewriteConfig {
            noop_image: format!("ghcr.io/stepcache/stepcache:{}", env!("CARGO_PKG_VERSION")),
            noop_command: vec!["/stepcache".into(), "noop".into()],
            keep_node_restrictions: false,
        }
    }
}

/// What a hit serves and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct HitInfo<'a> {
    /// Entry served.
    pub entry_id: EntryId,
    /// Key of the step.
    pub key: &'a CacheKey,
    /// Outputs to hand to Argo.
    pub outputs: &'a StepOutputs,
    /// Workflow that produced the entry.
    pub source_workflow: &'a str,
    /// Node that produced the entry.
    pub source_node: &'a str,
    /// When the producing run finished (RFC 3339).
    pub source_finished_at: String,
}

/// What a miss (or shadow-hit) pod is marked with so the recorder records it.
#[derive(Clone, Debug, PartialEq)]
pub struct MarkInfo<'a> {
    /// Key of the step.
    pub key: &'a CacheKey,
    /// HMAC mark.
    pub mark: &'a str,
    /// Staleness in stored form (seconds, -1 unbounded).
    pub staleness_db: i64,
    /// Seed.
    pub seed: &'a str,
    /// The decision the label shows (`miss`, `shadow-hit`).
    pub decision: Decision,
    /// Why the step missed, for the author.
    pub miss_reason: Option<String>,
}

fn ptr(tokens: &[&str]) -> PointerBuf {
    PointerBuf::from_tokens(tokens.iter().copied())
}

fn add(tokens: &[&str], value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation { path: ptr(tokens), value })
}

/// Adds one key of a metadata map, creating the map when the pod has none.
fn set_meta(ops: &mut Vec<PatchOperation>, has_map: &mut bool, map: &str, k: &str, v: &str) {
    if !*has_map {
        ops.push(add(&["metadata", map], json!({})));
        *has_map = true;
    }
    ops.push(add(&["metadata", map, k], Value::String(v.to_owned())));
}

/// Marks a pod for recording: labels and annotations only, the pod runs as Argo built it.
pub fn build_mark_patch(pod: &Pod, m: &MarkInfo<'_>) -> Vec<PatchOperation> {
    let mut ops = Vec::new();
    let mut has_labels = pod.metadata.labels.is_some();
    let mut has_ann = pod.metadata.annotations.is_some();
    set_meta(&mut ops, &mut has_labels, "labels", labels::DECISION_LABEL, m.decision.as_str());
    set_meta(&mut ops, &mut has_labels, "labels", labels::RECORD_LABEL, "true");
    set_meta(&mut ops, &mut has_ann, "annotations", labels::KEY_ANNOTATION, m.key.as_str());
    set_meta(&mut ops, &mut has_ann, "annotations", labels::MARK_ANNOTATION, m.mark);
    set_meta(&mut ops, &mut has_ann, "annotations", labels::STALENESS_ANNOTATION, &m.staleness_db.to_string());
    set_meta(&mut ops, &mut has_ann, "annotations", labels::SEED_ANNOTATION, m.seed);
    if let Some(r) = &m.miss_reason {
        let short: String = r.chars().take(1024).collect();
        set_meta(&mut ops, &mut has_ann, "annotations", labels::MISS_REASON, &short);
    }
    ops
}

/// The no-op container that replaces every container of a hit pod.
fn noop_container(cfg: &RewriteConfig, name: &str) -> Value {
    json!({
        "name": name,
        "image": cfg.noop_image,
        "imagePullPolicy": "IfNotPresent",
        "command": cfg.noop_command,
        "resources": {
            "requests": {"cpu": "10m", "memory": "16Mi"},
            "limits": {"cpu": "100m", "memory": "32Mi"}
        },
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": true,
            "runAsNonRoot": true,
            "runAsUser": 65532,
            "seccompProfile": {"type": "RuntimeDefault"}
        },
        "terminationMessagePolicy": "FallbackToLogsOnError"
    })
}

/// Replaces the containers and drops what a no-op pod must not pull, stage or attach.
fn replace_spec(pod: &Pod, containers: Vec<Value>, cfg: &RewriteConfig) -> Vec<PatchOperation> {
    let mut ops = vec![PatchOperation::Replace(ReplaceOperation {
        path: ptr(&["spec", "containers"]),
        value: Value::Array(containers),
    })];
    let spec = pod.spec.as_ref();
    if spec.and_then(|s| s.init_containers.as_ref()).is_some() {
        ops.push(PatchOperation::Remove(RemoveOperation { path: ptr(&["spec", "initContainers"]) }));
    }
    if spec.and_then(|s| s.volumes.as_ref()).is_some() {
        ops.push(PatchOperation::Remove(RemoveOperation { path: ptr(&["spec", "volumes"]) }));
    }
    if !cfg.keep_node_restrictions {
        if spec.and_then(|s| s.affinity.as_ref()).is_some() {
            ops.push(PatchOperation::Remove(RemoveOperation { path: ptr(&["spec", "affinity"]) }));
        }
        if spec.and_then(|s| s.node_selector.as_ref()).is_some() {
            ops.push(PatchOperation::Remove(RemoveOperation { path: ptr(&["spec", "nodeSelector"]) }));
        }
    }
    if spec.and_then(|s| s.ephemeral_containers.as_ref()).is_some() {
        ops.push(PatchOperation::Remove(RemoveOperation { path: ptr(&["spec", "ephemeralContainers"]) }));
    }
    ops
}

/// How a latched waiter reaches stepcache.
#[derive(Clone, Debug, PartialEq)]
pub struct WaitInfo<'a> {
    /// Key of the step.
    pub key: &'a CacheKey,
    /// `https://<service>/latch`.
    pub url: &'a str,
    /// Signed poll token.
    pub token: &'a str,
    /// CA bundle (PEM) that signs stepcache's serving certificate.
    pub ca_bundle: Option<&'a str>,
    /// The leader this pod waits for.
    pub leader_pod: &'a str,
}

/// Rewrites a step pod into a waiter: one `main` container running `stepcache wait`, which
/// exits 0 once stepcache has handed the leader's outputs to Argo for this node.
pub fn build_wait_patch(pod: &Pod, w: &WaitInfo<'_>, cfg: &RewriteConfig) -> Vec<PatchOperation> {
    let binary = cfg.noop_command.first().cloned().unwrap_or_else(|| "/stepcache".into());
    let mut c = noop_container(cfg, labels::MAIN_CONTAINER);
    if let Some(o) = c.as_object_mut() {
        o.insert("command".into(), json!([binary, "wait", "--url", w.url, "--token", w.token]));
        if let Some(ca) = w.ca_bundle {
            o.insert("env".into(), json!([{"name": "STEPCACHE_CA_BUNDLE", "value": ca}]));
        }
    }
    let mut ops = replace_spec(pod, vec![c], cfg);
    let mut has_labels = pod.metadata.labels.is_some();
    let mut has_ann = pod.metadata.annotations.is_some();
    set_meta(&mut ops, &mut has_labels, "labels", labels::DECISION_LABEL, Decision::Latched.as_str());
    set_meta(&mut ops, &mut has_ann, "annotations", labels::KEY_ANNOTATION, w.key.as_str());
    set_meta(&mut ops, &mut has_ann, "annotations", labels::LATCH_LEADER, w.leader_pod);
    ops
}

/// Where a WorkflowTaskResult goes: the node, its workflow, and the controller instance.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TaskResultTarget {
    /// Namespace of the workflow.
    pub namespace: String,
    /// Node id (the task result's name).
    pub node_id: String,
    /// Workflow name (label and owner).
    pub workflow_name: String,
    /// Workflow uid (owner reference).
    pub workflow_uid: Option<String>,
    /// Controller instance id, when the controller uses one.
    pub instance_id: Option<String>,
}

impl From<&StepPod> for TaskResultTarget {
    fn from(s: &StepPod) -> Self {
        TaskResultTarget {
            namespace: s.namespace.to_string(),
            node_id: s.node_id.clone(),
            workflow_name: s.workflow_name.clone(),
            workflow_uid: s.workflow_uid.clone(),
            instance_id: s.instance_id.clone(),
        }
    }
}

/// True when the controller generation reads outputs from the pod annotation.
pub fn uses_outputs_annotation(layout: ArgoLayout) -> bool {
    matches!(layout, ArgoLayout::TemplateAnnotation | ArgoLayout::TemplateEnvAllContainers)
}

/// True when the controller generation may read (3.3–3.5) or only reads (3.6+) task results.
pub fn uses_task_result(layout: ArgoLayout) -> bool {
    matches!(
        layout,
        ArgoLayout::TemplateEnvAllContainers | ArgoLayout::TemplateEnvInitOnly | ArgoLayout::TemplateEnvSupervisor
    )
}

/// True when a hit cannot be delivered without a task result (Argo 3.6+, v4.1 init-less).
pub fn requires_task_result(layout: ArgoLayout) -> bool {
    matches!(layout, ArgoLayout::TemplateEnvInitOnly | ArgoLayout::TemplateEnvSupervisor)
}

/// Rewrites a step pod into a no-op pod that succeeds at once and hands Argo the stored outputs.
/// Keeps name, namespace, owner references, every Argo label and annotation, the service
/// account and restart policy; replaces containers by one `main` that exits 0 (one no-op per
/// user container for container sets); drops init
/// containers and volumes so nothing is pulled, staged or attached — Argo's output collector
/// (`wait`, `supervisor`), artifact-plugin containers, the v4.1 `argoexec-bin` image volume and
/// Argo's artifact-credential secret volumes included.
pub fn build_hit_patch(pod: &Pod, step: &StepPod, hit: &HitInfo<'_>, cfg: &RewriteConfig) -> Vec<PatchOperation> {
    let spec = pod.spec.as_ref();
    // Container sets: the controller derives child nodes `<node>.<container>` from container
    // statuses, so keep one no-op container per user container name; otherwise one `main`.
    let names: Vec<String> = if step.kind == TemplateKind::ContainerSet {
        spec.map(|s| {
            s.containers
                .iter()
                .filter(|c| c.name != step.layout.output_collector() && !step.argo.plugin_containers.contains(&c.name))
                .map(|c| c.name.clone())
                .collect()
        })
        .unwrap_or_default()
    } else {
        Vec::new()
    };
    let containers: Vec<Value> = if names.is_empty() {
        vec![noop_container(cfg, labels::MAIN_CONTAINER)]
    } else {
        names.iter().map(|n| noop_container(cfg, n)).collect()
    };
    let mut ops = replace_spec(pod, containers, cfg);
    let mut has_labels = pod.metadata.labels.is_some();
    let mut has_ann = pod.metadata.annotations.is_some();
    let id = hit.entry_id.to_string();
    set_meta(&mut ops, &mut has_labels, "labels", labels::DECISION_LABEL, Decision::Hit.as_str());
    set_meta(&mut ops, &mut has_labels, "labels", labels::ENTRY_LABEL, &id);
    if step.kfp {
        set_meta(&mut ops, &mut has_labels, "labels", labels::KFP_REUSED_FROM_CACHE, "true");
    }
    set_meta(&mut ops, &mut has_ann, "annotations", labels::KEY_ANNOTATION, hit.key.as_str());
    set_meta(&mut ops, &mut has_ann, "annotations", labels::SOURCE_WORKFLOW, hit.source_workflow);
    set_meta(&mut ops, &mut has_ann, "annotations", labels::SOURCE_NODE, hit.source_node);
    set_meta(&mut ops, &mut has_ann, "annotations", labels::SOURCE_FINISHED_AT, &hit.source_finished_at);
    if uses_outputs_annotation(step.layout) {
        let outputs = serde_json::to_string(hit.outputs).unwrap_or_else(|_| "{}".into());
        set_meta(&mut ops, &mut has_ann, "annotations", labels::OUTPUTS_ANNOTATION, &outputs);
    }
    if step.layout == ArgoLayout::TemplateEnvAllContainers {
        // 3.5.11+ honour the annotation only with this companion; earlier 3.5 read "true" as complete.
        set_meta(&mut ops, &mut has_ann, "annotations", labels::REPORT_OUTPUTS_COMPLETED, "true");
    }
    ops
}

/// The WorkflowTaskResult a hit creates: named after the node id, labelled with the workflow
/// (and the instance id only when the controller uses one) and `report-outputs-completed`,
/// owned by the Workflow, holding the stored outputs.
pub fn build_task_result(step: &StepPod, outputs: &StepOutputs) -> WorkflowTaskResult {
    build_task_result_for(&TaskResultTarget::from(step), outputs)
}

/// [`build_task_result`] for a node known only by its target (latched waiters).
pub fn build_task_result_for(t: &TaskResultTarget, outputs: &StepOutputs) -> WorkflowTaskResult {
    let mut labels_map = BTreeMap::new();
    labels_map.insert(labels::WORKFLOW_LABEL.to_owned(), t.workflow_name.clone());
    labels_map.insert(labels::REPORT_OUTPUTS_COMPLETED.to_owned(), "true".to_owned());
    if let Some(iid) = &t.instance_id {
        labels_map.insert(labels::INSTANCE_ID_LABEL.to_owned(), iid.clone());
    }
    WorkflowTaskResult {
        api_version: labels::ARGO_API_VERSION.to_owned(),
        kind: TASK_RESULT_KIND.to_owned(),
        metadata: TaskResultMeta {
            name: t.node_id.clone(),
            namespace: t.namespace.clone(),
            labels: labels_map,
            owner_references: vec![WorkflowOwner {
                api_version: labels::ARGO_API_VERSION.to_owned(),
                kind: labels::WORKFLOW_KIND.to_owned(),
                name: t.workflow_name.clone(),
                uid: t.workflow_uid.clone(),
            }],
        },
        outputs: outputs.clone(),
    }
}

/// Kind of the object Argo's executor reports a node's outputs with (Argo ≥ 3.3).
pub const TASK_RESULT_KIND: &str = "WorkflowTaskResult";

/// The WorkflowTaskResult a hit (or a released latch waiter) hands Argo: the node's outputs,
/// labelled complete, owned by the node's Workflow. Typed from here to the writer, so the
/// object the API server receives is the one the decision built.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowTaskResult {
    /// `argoproj.io/v1alpha1`.
    pub api_version: String,
    /// `WorkflowTaskResult`.
    pub kind: String,
    /// Name (the node id), namespace, labels and owner.
    pub metadata: TaskResultMeta,
    /// The outputs Argo reads for the node.
    pub outputs: StepOutputs,
}

/// The metadata stepcache sets on a WorkflowTaskResult.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskResultMeta {
    /// The node id: Argo finds a node's task result by this name.
    pub name: String,
    /// The Workflow's namespace.
    pub namespace: String,
    /// The workflow label, `report-outputs-completed`, and the controller instance id if any.
    pub labels: BTreeMap<String, String>,
    /// The owning Workflow, so the task result is deleted with it.
    pub owner_references: Vec<WorkflowOwner>,
}

/// An owner reference to a Workflow; the uid is left out when the pod did not carry it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowOwner {
    /// `argoproj.io/v1alpha1`.
    pub api_version: String,
    /// `Workflow`.
    pub kind: String,
    /// The Workflow's name.
    pub name: String,
    /// The Workflow's uid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}
