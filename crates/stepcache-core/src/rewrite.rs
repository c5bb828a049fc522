//! JSON patches that turn an admitted step pod into a marked miss pod or a no-op hit pod, and
//! the WorkflowTaskResult that hands stored outputs to Argo ≥ 3.3.
//!
//! Owns: `build_hit_patch`, `build_mark_patch`, `build_task_result`, `RewriteConfig`.
//! Pointers are built from tokens (escaping `/` and `~`); parents are created when missing.
//! What the no-op asks for and runs as (OS, LimitRanges, annotation size) comes from `hitpod`.
//! Pure: no I/O, no clock. Imports layer 0, `argo` and `hitpod`.

use crate::argo::labels;
use crate::argo::template::{ArgoLayout, StepPod, TemplateKind};
use crate::decision::Decision;
use crate::hitpod::{self, HitPodError, NamespaceLimits, NoopResources, PodOs};
use crate::types::{CacheKey, EntryId, StepOutputs};
use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation, RemoveOperation, ReplaceOperation};
use k8s_openapi::api::core::v1::{Pod, SecurityContext};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// How hit pods are built: the no-op per OS, what it asks for and runs as. Configuration,
/// because the images a cluster can pull and the security a namespace demands differ.
#[derive(Clone, Debug, PartialEq)]
pub struct RewriteConfig {
    /// Image of the Linux no-op container.
    pub noop_image: String,
    /// Command of the Linux no-op container (must exit 0 within a second).
    pub noop_command: Vec<String>,
    /// Image of the Windows no-op container (a Linux image cannot run on a Windows node).
    pub windows_noop_image: String,
    /// Command of the Windows no-op container.
    pub windows_noop_command: Vec<String>,
    /// Requests and limits of each no-op container before LimitRanges and the original pod
    /// shape them.
    pub noop_resources: NoopResources,
    /// Security context of the Linux no-op container.
    pub noop_security_context: SecurityContext,
    /// Security context of the Windows no-op container (Linux-only fields are always dropped).
    pub windows_noop_security_context: SecurityContext,
    /// Keep `nodeSelector`, `affinity` and `runtimeClassName` on hit pods (some clusters require
    /// them).
    pub keep_node_restrictions: bool,
}

/// Default image of the Windows no-op: Nano Server, the smallest Windows base image.
pub const DEFAULT_WINDOWS_NOOP_IMAGE: &str = "mcr.microsoft.com/windows/nanoserver:ltsc2022";

impl Default for RewriteConfig {
    fn default() -> Self {
        RewriteConfig {
            noop_image: format!("ghcr.io/stepcache/stepcache:{}", env!("CARGO_PKG_VERSION")),
            noop_command: vec!["/stepcache".into(), "noop".into()],
            windows_noop_image: DEFAULT_WINDOWS_NOOP_IMAGE.into(),
            windows_noop_command: vec!["cmd.exe".into(), "/c".into(), "exit".into(), "0".into()],
            noop_resources: NoopResources::default(),
            noop_security_context: hitpod::default_linux_security_context(),
            windows_noop_security_context: hitpod::default_windows_security_context(),
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

/// What every no-op container of one hit pod shares: image, command, security and resources,
/// decided once from the pod's OS, the namespace's LimitRanges and the original's resources.
struct NoopShape {
    image: String,
    command: Vec<String>,
    security: Value,
    resources: hitpod::Amounts,
    /// How many no-op containers the pod gets (LimitRange `type: Pod` bounds are shared).
    count: usize,
}

impl NoopShape {
    fn new(pod: &Pod, cfg: &RewriteConfig, limits: &NamespaceLimits, count: usize) -> NoopShape {
        let (image, command, sc) = match hitpod::pod_os(pod) {
            PodOs::Linux => {
                (&cfg.noop_image, &cfg.noop_command, hitpod::adapt_security_context(&cfg.noop_security_context, pod))
            }
            PodOs::Windows => (
                &cfg.windows_noop_image,
                &cfg.windows_noop_command,
                hitpod::strip_linux_only(&cfg.windows_noop_security_context),
            ),
        };
        let original = hitpod::sum_original_resources(pod);
        NoopShape {
            image: image.clone(),
            command: command.clone(),
            security: serde_json::to_value(sc).unwrap_or_else(|_| json!({})),
            resources: hitpod::fit_resources(&cfg.noop_resources, limits, &original, count),
            count,
        }
    }

    /// The no-op container named `name`.
    fn container(&self, name: &str) -> Value {
        json!({
            "name": name,
            "image": self.image,
            "imagePullPolicy": "IfNotPresent",
            "command": self.command,
            "resources": self.resources.to_json(),
            "securityContext": self.security,
            "terminationMessagePolicy": "FallbackToLogsOnError"
        })
    }
}

fn remove(tokens: &[&str]) -> PatchOperation {
    PatchOperation::Remove(RemoveOperation { path: ptr(tokens) })
}

/// Replaces the containers and drops what a no-op pod must not pull, stage, attach or wait for:
/// init and ephemeral containers, volumes, DRA resource claims (a GPU it would hold), and —
/// unless configured to keep them — affinity, node selectors other than OS and architecture,
/// and the runtime class (whose node selector went with them) with its overhead. Pod-level
/// `resources` are kept but shrunk to the no-op's (a v4.1 controller warns when the whole
/// field disappears).
fn replace_spec(pod: &Pod, containers: Vec<Value>, shape: &NoopShape, cfg: &RewriteConfig) -> Vec<PatchOperation> {
    let mut ops = vec![PatchOperation::Replace(ReplaceOperation {
        path: ptr(&["spec", "containers"]),
        value: Value::Array(containers),
    })];
    let Some(spec) = pod.spec.as_ref() else { return ops };
    if spec.init_containers.is_some() {
        ops.push(remove(&["spec", "initContainers"]));
    }
    if spec.volumes.is_some() {
        ops.push(remove(&["spec", "volumes"]));
    }
    if !cfg.keep_node_restrictions {
        if spec.affinity.is_some() {
            ops.push(remove(&["spec", "affinity"]));
        }
        if let Some(sel) = &spec.node_selector {
            let kept: BTreeMap<&String, &String> =
                sel.iter().filter(|(k, _)| *k == hitpod::OS_LABEL || *k == hitpod::ARCH_LABEL).collect();
            if kept.is_empty() {
                ops.push(remove(&["spec", "nodeSelector"]));
            } else if kept.len() < sel.len() {
                ops.push(PatchOperation::Replace(ReplaceOperation {
                    path: ptr(&["spec", "nodeSelector"]),
                    value: json!(kept),
                }));
            }
        }
        if spec.runtime_class_name.is_some() {
            ops.push(remove(&["spec", "runtimeClassName"]));
            // Set by the RuntimeClass admission plugin; refused without a runtime class.
            if spec.overhead.is_some() {
                ops.push(remove(&["spec", "overhead"]));
            }
        }
    }
    if spec.ephemeral_containers.is_some() {
        ops.push(remove(&["spec", "ephemeralContainers"]));
    }
    if spec.resource_claims.is_some() {
        ops.push(remove(&["spec", "resourceClaims"]));
    }
    if spec.resources.is_some() {
        ops.push(PatchOperation::Replace(ReplaceOperation {
            path: ptr(&["spec", "resources"]),
            value: hitpod::sum_pod_level(&shape.resources, shape.count).to_json(),
        }));
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
pub fn build_wait_patch(
    pod: &Pod,
    w: &WaitInfo<'_>,
    cfg: &RewriteConfig,
    limits: &NamespaceLimits,
) -> Vec<PatchOperation> {
    let binary = cfg.noop_command.first().cloned().unwrap_or_else(|| "/stepcache".into());
    let shape = NoopShape::new(pod, cfg, limits, 1);
    let mut c = shape.container(labels::MAIN_CONTAINER);
    if let Some(o) = c.as_object_mut() {
        o.insert("command".into(), json!([binary, "wait", "--url", w.url, "--token", w.token]));
        if let Some(ca) = w.ca_bundle {
            o.insert("env".into(), json!([{"name": "STEPCACHE_CA_BUNDLE", "value": ca}]));
        }
    }
    let mut ops = replace_spec(pod, vec![c], &shape, cfg);
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
///
/// The result is a pod the API server accepts wherever it accepted the original: the no-op fits
/// the pod's OS, the namespace's LimitRanges (`limits`) and the original's own resources.
/// Fails when no such pod exists (annotations over the API server's limit): a refused create
/// would fail the Argo node, so the caller serves a miss instead.
pub fn build_hit_patch(
    pod: &Pod,
    step: &StepPod,
    hit: &HitInfo<'_>,
    cfg: &RewriteConfig,
    limits: &NamespaceLimits,
) -> Result<Vec<PatchOperation>, HitPodError> {
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
    let mut annotations: Vec<(&str, String)> = vec![
        (labels::KEY_ANNOTATION, hit.key.as_str().to_owned()),
        (labels::SOURCE_WORKFLOW, hit.source_workflow.to_owned()),
        (labels::SOURCE_NODE, hit.source_node.to_owned()),
        (labels::SOURCE_FINISHED_AT, hit.source_finished_at.clone()),
    ];
    if uses_outputs_annotation(step.layout) {
        let outputs = serde_json::to_string(hit.outputs).unwrap_or_else(|_| "{}".into());
        annotations.push((labels::OUTPUTS_ANNOTATION, outputs));
    }
    if step.layout == ArgoLayout::TemplateEnvAllContainers {
        // 3.5.11+ honour the annotation only with this companion; earlier 3.5 read "true" as complete.
        annotations.push((labels::REPORT_OUTPUTS_COMPLETED, "true".into()));
    }
    let mut after = pod.metadata.annotations.clone().unwrap_or_default();
    after.extend(annotations.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    hitpod::check_annotations_size(&after)?;

    let shape = NoopShape::new(pod, cfg, limits, names.len().max(1));
    let containers: Vec<Value> = if names.is_empty() {
        vec![shape.container(labels::MAIN_CONTAINER)]
    } else {
        names.iter().map(|n| shape.container(n)).collect()
    };
    let mut ops = replace_spec(pod, containers, &shape, cfg);
    let mut has_labels = pod.metadata.labels.is_some();
    let mut has_ann = pod.metadata.annotations.is_some();
    let id = hit.entry_id.to_string();
    set_meta(&mut ops, &mut has_labels, "labels", labels::DECISION_LABEL, Decision::Hit.as_str());
    set_meta(&mut ops, &mut has_labels, "labels", labels::ENTRY_LABEL, &id);
    if step.kfp {
        set_meta(&mut ops, &mut has_labels, "labels", labels::KFP_REUSED_FROM_CACHE, "true");
    }
    for (k, v) in &annotations {
        set_meta(&mut ops, &mut has_ann, "annotations", k, v);
    }
    Ok(ops)
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::argo::template::{classify, Classification};
    use crate::hitpod::NamespaceLimits;
    use crate::types::EntryId;

    fn fixture_pod(name: &str) -> Pod {
        let path = format!("{}/../../tests/fixtures/argo/{name}", env!("CARGO_MANIFEST_DIR"));
        let review: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        serde_json::from_value(review["request"]["object"].clone()).unwrap()
    }

    fn step_of(pod: &Pod) -> StepPod {
        match classify(pod) {
            Classification::Step(s) => *s,
            other => panic!("not a step: {other:?}"),
        }
    }

    /// The pod after the hit patch, or the reason no hit pod can be built.
    fn hit_pod_with(pod: &Pod, outputs: &StepOutputs, limits: &NamespaceLimits) -> Result<Value, String> {
        let step = step_of(pod);
        let key = CacheKey::from_digest(&[7; 32]);
        let hit = HitInfo {
            entry_id: EntryId(1),
            key: &key,
            outputs,
            source_workflow: "wf-a",
            source_node: "wf-a-1",
            source_finished_at: "2026-11-01T10:04:12Z".into(),
        };
        let ops = build_hit_patch(pod, &step, &hit, &RewriteConfig::default(), limits).map_err(|e| e.to_string())?;
        let mut v = serde_json::to_value(pod).unwrap();
        json_patch::patch(&mut v, &ops).unwrap();
        Ok(v)
    }

    fn hit_pod(pod: &Pod, limits: &NamespaceLimits) -> Value {
        hit_pod_with(pod, &StepOutputs::default(), limits).unwrap()
    }

    fn patched(pod: &Pod, f: impl FnOnce(&mut Value)) -> Pod {
        let mut v = serde_json::to_value(pod).unwrap();
        f(&mut v);
        serde_json::from_value(v).unwrap()
    }

    fn v36() -> Pod {
        fixture_pod("v3.6-container-params.admission.json")
    }

    const LINUX_ONLY: &[&str] = &[
        "appArmorProfile",
        "seLinuxOptions",
        "runAsUser",
        "runAsGroup",
        "seccompProfile",
        "capabilities",
        "readOnlyRootFilesystem",
        "privileged",
        "allowPrivilegeEscalation",
        "procMount",
    ];

    #[test]
    fn the_default_no_op_security_context_fixes_no_uid_and_is_restricted() {
        let after = hit_pod(&v36(), &NamespaceLimits::default());
        let sc = &after["spec"]["containers"][0]["securityContext"];
        assert!(sc.get("runAsUser").is_none(), "OpenShift restricted-v2 refuses a uid outside the range: {sc}");
        assert_eq!(sc["runAsNonRoot"], true);
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    }

    #[test]
    fn a_windows_pods_no_op_has_no_linux_only_security_fields_and_stays_on_windows() {
        for how in ["os", "selector"] {
            let pod = patched(&v36(), |v| {
                if how == "os" {
                    v["spec"]["os"] = json!({"name": "windows"});
                }
                v["spec"]["nodeSelector"] = json!({"kubernetes.io/os": "windows", "pool": "win"});
            });
            let after = hit_pod(&pod, &NamespaceLimits::default());
            let c = &after["spec"]["containers"][0];
            for field in LINUX_ONLY {
                assert!(c["securityContext"].get(*field).is_none(), "{how}: {field} in {}", c["securityContext"]);
            }
            assert_eq!(c["image"], RewriteConfig::default().windows_noop_image, "{how}");
            assert_eq!(after["spec"]["nodeSelector"], json!({"kubernetes.io/os": "windows"}), "{how}");
        }
    }

    fn limit_ranges(items: Value) -> NamespaceLimits {
        let lr: k8s_openapi::api::core::v1::LimitRange =
            serde_json::from_value(json!({"spec": {"limits": items}})).unwrap();
        NamespaceLimits::from_limit_ranges([&lr])
    }

    fn milli(q: &Value) -> i128 {
        crate::hitpod::Milli::parse(q.as_str().unwrap()).unwrap().0
    }

    #[test]
    fn a_limit_range_minimum_is_met_by_the_no_op() {
        let limits = limit_ranges(json!([{"type": "Container", "min": {"cpu": "50m", "memory": "32Mi"}}]));
        let after = hit_pod(&v36(), &limits);
        let r = &after["spec"]["containers"][0]["resources"];
        assert!(milli(&r["requests"]["cpu"]) >= 50, "{r}");
        assert!(milli(&r["requests"]["memory"]) >= 32 * 1024 * 1024 * 1000, "{r}");
    }

    #[test]
    fn a_limit_range_maximum_and_ratio_are_met_by_the_no_op() {
        let limits =
            limit_ranges(json!([{"type": "Container", "max": {"cpu": "50m"}, "maxLimitRequestRatio": {"cpu": "2"}}]));
        let after = hit_pod(&v36(), &limits);
        let r = &after["spec"]["containers"][0]["resources"];
        let (req, lim) = (milli(&r["requests"]["cpu"]), milli(&r["limits"]["cpu"]));
        assert!(lim <= 50, "{r}");
        assert!(lim <= 2 * req, "{r}");
    }

    #[test]
    fn a_hit_pod_holds_no_gpu_claim_no_runtime_class_and_only_its_own_pod_resources() {
        let pod = patched(&v36(), |v| {
            v["spec"]["resources"] =
                json!({"requests": {"cpu": "8", "memory": "64Gi"}, "limits": {"cpu": "8", "memory": "64Gi"}});
            v["spec"]["resourceClaims"] = json!([{"name": "gpu", "resourceClaimTemplateName": "one-gpu"}]);
            v["spec"]["runtimeClassName"] = json!("nvidia");
            v["spec"]["overhead"] = json!({"cpu": "250m"});
            v["spec"]["nodeSelector"] = json!({"gpu": "a100"});
        });
        let after = hit_pod(&pod, &NamespaceLimits::default());
        let spec = &after["spec"];
        assert!(spec.get("resourceClaims").is_none(), "{spec}");
        assert!(spec.get("runtimeClassName").is_none(), "{spec}");
        assert!(spec.get("overhead").is_none(), "{spec}");
        assert!(spec.get("nodeSelector").is_none(), "{spec}");
        // Kept (so the v4.1 controller does not warn PodLevelResourcesDropped), shrunk to the no-op's.
        let c = &spec["containers"][0]["resources"];
        assert_eq!(spec["resources"]["requests"]["cpu"], c["requests"]["cpu"], "{spec}");
        assert_eq!(spec["resources"]["limits"]["memory"], c["limits"]["memory"], "{spec}");
    }

    #[test]
    fn keeping_node_restrictions_keeps_the_runtime_class_and_every_node_selector() {
        let pod = patched(&v36(), |v| {
            v["spec"]["runtimeClassName"] = json!("gvisor");
            v["spec"]["nodeSelector"] = json!({"sandbox": "gvisor", "kubernetes.io/arch": "arm64"});
        });
        let step = step_of(&pod);
        let key = CacheKey::from_digest(&[7; 32]);
        let outputs = StepOutputs::default();
        let hit = HitInfo {
            entry_id: EntryId(1),
            key: &key,
            outputs: &outputs,
            source_workflow: "wf-a",
            source_node: "wf-a-1",
            source_finished_at: "2026-11-01T10:04:12Z".into(),
        };
        let cfg = RewriteConfig { keep_node_restrictions: true, ..Default::default() };
        let ops = build_hit_patch(&pod, &step, &hit, &cfg, &NamespaceLimits::default()).unwrap();
        let mut kept = serde_json::to_value(&pod).unwrap();
        json_patch::patch(&mut kept, &ops).unwrap();
        assert_eq!(kept["spec"]["runtimeClassName"], "gvisor");
        assert_eq!(kept["spec"]["nodeSelector"]["sandbox"], "gvisor");
        let dropped = hit_pod(&pod, &NamespaceLimits::default());
        assert!(dropped["spec"].get("runtimeClassName").is_none());
        assert_eq!(dropped["spec"]["nodeSelector"], json!({"kubernetes.io/arch": "arm64"}), "where the step could run");
    }

    #[test]
    fn a_pod_running_as_root_keeps_a_no_op_the_kubelet_can_start() {
        let pod = patched(&v36(), |v| v["spec"]["securityContext"] = json!({"runAsUser": 0}));
        let after = hit_pod(&pod, &NamespaceLimits::default());
        let sc = &after["spec"]["containers"][0]["securityContext"];
        assert!(sc.get("runAsNonRoot").is_none() || sc.get("runAsUser").is_some(), "{sc}");
    }

    #[test]
    fn outputs_that_would_push_annotations_over_256_kib_refuse_the_hit() {
        let pod = fixture_pod("v3.5-artifacts-s3.admission.json");
        assert!(uses_outputs_annotation(step_of(&pod).layout));
        let big: StepOutputs = serde_json::from_value(json!({
            "parameters": [{"name": "blob", "value": "x".repeat(crate::hitpod::MAX_ANNOTATIONS_BYTES)}]
        }))
        .unwrap();
        let err = hit_pod_with(&pod, &big, &NamespaceLimits::default()).unwrap_err();
        assert!(err.contains("262144-byte limit"), "{err}");
        let small: StepOutputs = serde_json::from_value(json!({"parameters": [{"name": "n", "value": "1"}]})).unwrap();
        assert!(hit_pod_with(&pod, &small, &NamespaceLimits::default()).is_ok());
    }
}
