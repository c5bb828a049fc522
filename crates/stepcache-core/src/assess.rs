//! Deciding whether a finished step pod is recorded, and with which outputs. Pure.
//!
//! A pod is recorded only when it carries a valid signed mark, really succeeded (the node is
//! Succeeded by Argo's rules for every release that makes such a pod, see
//! [`crate::argo::success`]: a pod `Failed` only by sidecars Argo killed counts, and `main` and
//! `wait` exited 0) and its outputs are final and complete, read from
//! a source that provably belongs to this pod: a WorkflowTaskResult of the same namespace,
//! workflow (label and owner uid) and instance id, or the Workflow whose uid owns the pod.

use crate::argo::labels;
use crate::argo::success::{succeeded_in_every, ArgoVersion, Judged, NodeVerdict};
use crate::argo::template::{classify_with, ArgoLayout, Classification, StepPod, TemplateKind};
use crate::execution::Execution;
use crate::key::configmaps::{ConfigMaps, NoConfigMaps};
use crate::key::{derive_key_with, Scope};
use crate::mark::{MarkClaims, Signer};
use crate::types::{CacheKey, CacheSeed, Namespace, Staleness, StepOutputs};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// Where the outputs of a completed step can be read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OutputSources<'a> {
    /// The step's WorkflowTaskResult (Argo ≥ 3.3); used only when it provably is this pod's.
    pub task_result: Option<&'a Value>,
    /// The step's Workflow object: `status.nodes[<node id>]` persists after task results are
    /// deleted. Used only when its uid is the uid of the pod's owning Workflow.
    pub workflow: Option<&'a Value>,
}

/// How far ahead of the recorder's clock a reported finish time may be and still be recorded
/// (as "now"): node clocks drift a little; a finish time further ahead is a broken clock, and an
/// entry from the future would count as fresh for any staleness.
pub const MAX_CLOCK_SKEW: std::time::Duration = std::time::Duration::from_secs(300);

/// Why a pod is not (yet) recorded.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum NotRecorded {
    /// No stepcache mark: not admitted as a miss.
    #[error("pod is not marked for recording")]
    NotMarked,
    /// Mark annotations unreadable.
    #[error("mark is malformed: {0}")]
    MalformedMark(String),
    /// Signature does not bind this pod (forged or replayed).
    #[error("mark signature is invalid for this pod: {0}")]
    ForgedMark(String),
    /// The key derived now differs from the marked key (e.g. scope changed).
    #[error("key derived from the pod ({derived}) differs from the marked key ({marked})")]
    KeyMismatch {
        /// Key in the mark.
        marked: String,
        /// Key derived now.
        derived: String,
    },
    /// Not a cacheable step pod.
    #[error("not a cacheable step pod: {0}")]
    NotStep(String),
    /// Pod has not finished yet.
    #[error("pod has not finished: {0}")]
    NotFinished(String),
    /// Pod finished without succeeding (failed, evicted, OOM-killed, non-zero exit).
    #[error("pod did not succeed: {0}")]
    NotSucceeded(String),
    /// Outputs are not reported as complete yet.
    #[error("outputs are not final yet")]
    OutputsPending,
    /// Outputs lack something the template declares.
    #[error("outputs lack declared {0:?}")]
    OutputsIncomplete(Vec<String>),
    /// The only outputs source seen belongs to another pod, workflow or namespace (a stale
    /// result of an earlier workflow of the same name, or a forged one); the real one may follow.
    #[error("outputs source is not this pod's: {0}")]
    ForeignSource(String),
    /// The pod reports a finish time further ahead of this clock than [`MAX_CLOCK_SKEW`].
    #[error("finish time {finished} is ahead of this clock ({now}) by more than the tolerated skew")]
    FinishedInFuture {
        /// Reported finish time.
        finished: Timestamp,
        /// The recorder's clock.
        now: Timestamp,
    },
}

impl NotRecorded {
    /// Bounded metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            NotRecorded::NotMarked => "not_marked",
            NotRecorded::MalformedMark(_) => "malformed_mark",
            NotRecorded::ForgedMark(_) => "forged_mark",
            NotRecorded::KeyMismatch { .. } => "key_mismatch",
            NotRecorded::NotStep(_) => "not_step",
            NotRecorded::NotFinished(_) => "not_finished",
            NotRecorded::NotSucceeded(_) => "not_succeeded",
            NotRecorded::OutputsPending => "outputs_pending",
            NotRecorded::OutputsIncomplete(_) => "outputs_incomplete",
            NotRecorded::ForeignSource(_) => "foreign_source",
            NotRecorded::FinishedInFuture { .. } => "finished_in_future",
        }
    }

    /// True when waiting may change the answer (so the recorder keeps the pod around).
    pub fn may_change(&self) -> bool {
        matches!(self, NotRecorded::OutputsPending | NotRecorded::NotFinished(_) | NotRecorded::ForeignSource(_))
    }
}

/// Recording settings.
#[derive(Clone, Debug)]
pub struct RecordSettings {
    /// Must equal the admission's scope.
    pub scope: Scope,
    /// Entry lifetime (distinct from staleness).
    pub default_expiry: Option<Duration>,
}

fn marked(pod: &Pod) -> bool {
    pod.metadata.labels.as_ref().and_then(|l| l.get(labels::RECORD_LABEL)).is_some_and(|v| v == "true")
}

/// True when the pod carries stepcache's record label (cheap pre-filter for watchers).
pub fn is_marked(pod: &Pod) -> bool {
    marked(pod)
}

fn ann<'a>(a: &'a BTreeMap<String, String>, k: &str) -> Result<&'a str, NotRecorded> {
    a.get(k).map(String::as_str).ok_or_else(|| NotRecorded::MalformedMark(format!("missing {k}")))
}

/// The Argo releases that can have made a pod of this layout (from its first release to any
/// later one); the pod itself does not say which.
fn layout_versions(layout: ArgoLayout) -> (ArgoVersion, ArgoVersion) {
    let any_later = ArgoVersion::new(u16::MAX, 0, 0);
    match layout {
        ArgoLayout::TemplateAnnotation => (ArgoVersion::new(2, 12, 0), ArgoVersion::new(3, 1, u16::MAX)),
        ArgoLayout::TemplateEnvAllContainers => (ArgoVersion::new(3, 2, 0), ArgoVersion::new(3, 5, u16::MAX)),
        ArgoLayout::TemplateEnvInitOnly => (ArgoVersion::new(3, 6, 0), any_later),
        ArgoLayout::TemplateEnvSupervisor => (ArgoVersion::new(4, 1, 0), any_later),
    }
}

/// Checks success the way the Argo controller does ([`crate::argo::success`]): the node must be
/// Succeeded under every controller release that can have made this layout of pod, so a pod
/// that is `Failed` only because Argo killed a user sidecar at the end (137/143) counts, and
/// nothing Argo fails or errors does. On top of Argo's verdict stepcache asks, because it
/// records outputs: no pod-level `reason`/`message` (eviction, deadline), every main container
/// (`mains`) terminated with exit code 0, and for a `Failed` pod the output collector
/// (`wait`/`supervisor`) too (Argo before v3.6.16/v3.7.7 accepts one that never finished).
/// Returns when the step started computing and when it finished.
fn check_succeeded(
    pod: &Pod,
    layout: ArgoLayout,
    mains: &[&str],
) -> Result<(Option<Timestamp>, Timestamp), NotRecorded> {
    let status = pod.status.as_ref().ok_or_else(|| NotRecorded::NotFinished("no status".into()))?;
    let phase = status.phase.as_deref().unwrap_or("Unknown");
    if phase != "Succeeded" && phase != "Failed" {
        return Err(NotRecorded::NotFinished(format!("phase {phase}")));
    }
    let pod_level = [status.reason.as_deref(), status.message.as_deref()];
    if let Some(why) = pod_level.into_iter().flatten().find(|r| !r.is_empty()) {
        return Err(NotRecorded::NotSucceeded(format!("phase {phase} ({why})")));
    }
    let (lo, hi) = layout_versions(layout);
    match succeeded_in_every(lo, hi, Judged { status, mains }) {
        NodeVerdict::Succeeded => {}
        NodeVerdict::Unfinished(why) => return Err(NotRecorded::NotFinished(why)),
        NodeVerdict::Failed(why) | NodeVerdict::Error(why) => return Err(NotRecorded::NotSucceeded(why)),
    }
    let collector = layout.output_collector();
    let term = |name: &str| {
        status
            .container_statuses
            .iter()
            .flatten()
            .find(|c| c.name == name)
            .and_then(|c| c.state.as_ref())
            .and_then(|s| s.terminated.as_ref())
    };
    // The collector of a `Succeeded` pod may still be reported running (its outputs come from
    // the task result, not its state); a `Failed` pod's must have finished at 0.
    let collector_must_finish = phase == "Failed" && has_container(pod, collector);
    for name in mains.iter().copied().chain(Some(collector).filter(|_| collector_must_finish)) {
        match term(name) {
            Some(t) if t.exit_code == 0 => {}
            Some(t) => {
                return Err(NotRecorded::NotSucceeded(format!(
                    "container {name} exited {} ({})",
                    t.exit_code,
                    t.reason.as_deref().unwrap_or("")
                )))
            }
            None => return Err(NotRecorded::NotSucceeded(format!("container {name} has not terminated"))),
        }
    }
    let mut finished: Option<Timestamp> = None;
    // When the step really started computing: `main`'s start, else the earliest user container's
    // (not the pod's `startTime`, which includes scheduling, image pulls and init containers).
    let mut main_started: Option<Timestamp> = None;
    let mut user_started: Option<Timestamp> = None;
    for cs in status.container_statuses.iter().flatten().filter(|c| c.name != collector) {
        let Some(term) = cs.state.as_ref().and_then(|s| s.terminated.as_ref()) else { continue };
        if let Some(t) = &term.finished_at {
            finished = Some(finished.map_or(t.0, |f| f.max(t.0)));
        }
        if let Some(t) = &term.started_at {
            user_started = Some(user_started.map_or(t.0, |s| s.min(t.0)));
            if cs.name == labels::MAIN_CONTAINER {
                main_started = Some(t.0);
            }
        }
    }
    let started = main_started.or(user_started).or_else(|| status.start_time.as_ref().map(|t| t.0));
    Ok((started, finished.unwrap_or_else(|| started.unwrap_or(Timestamp::UNIX_EPOCH))))
}

/// True when the pod spec has a container named `name`.
fn has_container(pod: &Pod, name: &str) -> bool {
    pod.spec.iter().flat_map(|s| s.containers.iter()).any(|c| c.name == name)
}

/// The step's main containers as Argo names them (`IsMainContainerName`): the members of a
/// container set, else `main`.
fn main_containers(step: &StepPod) -> Vec<&str> {
    match step.kind {
        TemplateKind::ContainerSet => step.template.container_set_dependencies().into_iter().map(|(n, _)| n).collect(),
        _ => vec![labels::MAIN_CONTAINER],
    }
}

fn parse_outputs(v: &Value) -> Option<StepOutputs> {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("exitCode");
    }
    serde_json::from_value(v).ok()
}

/// uid of the Workflow owning `pod` (its ownerReference of kind `Workflow`).
fn workflow_owner_uid(pod: &Pod) -> Option<&str> {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.kind == labels::WORKFLOW_KIND)
        .map(|o| o.uid.as_str())
        .filter(|u| !u.is_empty())
}

/// True when Argo's executor captures the main container's stdout as `outputs.result` for this
/// pod: env `ARGO_INCLUDE_SCRIPT_OUTPUT=true` (v3.0+, read by argoexec from its own env; any
/// container saying so counts, to be safe) or `includeScriptOutput` in the v2.12 execution
/// control annotation. Applies to script and container templates alike (`HasOutput`).
pub fn captures_result(pod: &Pod) -> bool {
    let env_says =
        pod.spec.iter().flat_map(|s| s.init_containers.iter().flatten().chain(s.containers.iter())).any(|c| {
            c.env.iter().flatten().any(|e| {
                e.name == labels::ARGO_INCLUDE_SCRIPT_OUTPUT_ENV
                    && e.value.as_deref().is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
            })
        });
    let annotation_says = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(labels::EXECUTION_CONTROL_ANNOTATION))
        .and_then(|raw| serde_json::from_str::<Value>(raw).ok())
        .and_then(|v| v.get("includeScriptOutput").and_then(Value::as_bool))
        .unwrap_or(false);
    env_says || annotation_says
}

/// Why `tr` is not the WorkflowTaskResult of `pod`, or `None` when it is: same name as the node
/// id, same namespace, same workflow label and instance-id label, and an owner that is this
/// pod's Workflow (v3.3.0–v3.3.1, v3.5.2+) or this pod itself (v3.3.2–v3.5.1 own results by the
/// pod, `kind` `pods` then `Pod`).
pub fn foreign_task_result(tr: &Value, pod: &Pod, step: &StepPod) -> Option<String> {
    let meta = tr.get("metadata");
    let field = |k: &str| meta.and_then(|m| m.get(k)).and_then(Value::as_str);
    let label =
        |k: &str| meta.and_then(|m| m.pointer(&format!("/labels/{}", k.replace('/', "~1")))).and_then(Value::as_str);
    if field("name") != Some(step.node_id.as_str()) {
        return Some(format!("task result {:?} is not named for node {}", field("name").unwrap_or(""), step.node_id));
    }
    if field("namespace") != Some(step.namespace.as_str()) {
        return Some(format!(
            "task result is in namespace {:?}, the pod in {}",
            field("namespace").unwrap_or(""),
            step.namespace
        ));
    }
    if label(labels::WORKFLOW_LABEL) != Some(step.workflow_name.as_str()) {
        return Some(format!(
            "task result belongs to workflow {:?}, the pod to {}",
            label(labels::WORKFLOW_LABEL).unwrap_or(""),
            step.workflow_name
        ));
    }
    if label(labels::INSTANCE_ID_LABEL) != step.instance_id.as_deref() {
        return Some("task result and pod disagree on the controller instance id".into());
    }
    let wf_uid = workflow_owner_uid(pod);
    let pod_uid = pod.metadata.uid.as_deref().filter(|u| !u.is_empty());
    let owned = meta.and_then(|m| m.get("ownerReferences")).and_then(Value::as_array).is_some_and(|refs| {
        refs.iter().any(|r| {
            let uid = r.get("uid").and_then(Value::as_str);
            match r.get("kind").and_then(Value::as_str) {
                Some(labels::WORKFLOW_KIND) => uid.is_some() && uid == wf_uid,
                Some("Pod") | Some("pods") => uid.is_some() && uid == pod_uid,
                _ => false,
            }
        })
    });
    if !owned {
        return Some("task result is owned by neither this pod's Workflow nor this pod (uid)".into());
    }
    None
}

/// `status.nodes[<node id>]` of `workflow` when that Workflow owns `pod`; else why not.
fn own_workflow_node<'a>(workflow: &'a Value, pod: &Pod, step: &StepPod) -> Result<Option<&'a Value>, String> {
    let uid = workflow.pointer("/metadata/uid").and_then(Value::as_str);
    if uid.is_none() || uid != workflow_owner_uid(pod) {
        return Err(format!("workflow uid {:?} does not own the pod", uid.unwrap_or("")));
    }
    let ns = workflow.pointer("/metadata/namespace").and_then(Value::as_str);
    if ns.is_some_and(|n| n != step.namespace.as_str()) {
        return Err(format!("workflow is in namespace {:?}, the pod in {}", ns.unwrap_or(""), step.namespace));
    }
    Ok(workflow.pointer("/status/nodes").and_then(|n| n.get(&step.node_id)))
}

/// True when `outputs` has everything the step must report (declared outputs, and `result`
/// when the executor captures it).
fn complete(step: &StepPod, wants_result: bool, outputs: &StepOutputs) -> bool {
    step.template.declared_outputs().missing(outputs).is_empty() && (!wants_result || outputs.result.is_some())
}

/// Reads the final outputs from the best available channel for the pod's layout.
///
/// Never defaults to "no outputs" when a report is still to come: a step whose executor
/// captures `result` always reports it, and from v3.5.2 (every v3.6+ pod) the executor always
/// writes a task result, so empty outputs are assumed only for steps that report nothing and
/// run on controllers that may skip reporting (v3.3–v3.5.1) or use the pod annotation (≤ v3.5).
fn final_outputs(
    step: &StepPod,
    pod: &Pod,
    src: &OutputSources<'_>,
    wants_result: bool,
) -> Result<StepOutputs, NotRecorded> {
    let mut foreign = None;
    if let Some(tr) = src.task_result {
        match foreign_task_result(tr, pod, step) {
            Some(why) => foreign = Some(why),
            None => {
                let completed = tr
                    .pointer("/metadata/labels")
                    .and_then(|l| l.get(labels::REPORT_OUTPUTS_COMPLETED))
                    .and_then(Value::as_str);
                match completed {
                    // v3.5.2+: the label flips to "true" once outputs are final.
                    Some("true") => return Ok(tr.get("outputs").and_then(parse_outputs).unwrap_or_default()),
                    Some(_) => return Err(NotRecorded::OutputsPending),
                    // v3.3–v3.5.1 never set the label: the result is written once, when the wait
                    // container has collected everything, but may be seen earlier with progress
                    // only. Use it once it carries everything the step must report.
                    None => {
                        if let Some(o) = tr.get("outputs").and_then(parse_outputs) {
                            if complete(step, wants_result, &o) {
                                return Ok(o);
                            }
                        }
                    }
                }
            }
        }
    }
    if let Some(wf) = src.workflow {
        match own_workflow_node(wf, pod, step) {
            Ok(Some(node)) if node.get("phase").and_then(Value::as_str) == Some("Succeeded") => {
                return Ok(node.get("outputs").and_then(parse_outputs).unwrap_or_default());
            }
            Ok(_) => {}
            Err(why) => foreign = foreign.or(Some(why)),
        }
    }
    if matches!(step.layout, ArgoLayout::TemplateAnnotation | ArgoLayout::TemplateEnvAllContainers) {
        let a = pod.metadata.annotations.as_ref();
        if let Some(raw) = a.and_then(|a| a.get(labels::OUTPUTS_ANNOTATION)) {
            let v: Value = serde_json::from_str(raw).map_err(|_| NotRecorded::OutputsPending)?;
            return parse_outputs(&v).ok_or(NotRecorded::OutputsPending);
        }
    }
    let reports_nothing = step.template.declared_outputs() == Default::default() && !wants_result;
    // ≥ 3.6 (and the v4.1 init-less layout) report every step's outputs, even none, in the task
    // result: until it is seen the outputs are pending, not empty.
    let reports_by_task_result =
        matches!(step.layout, ArgoLayout::TemplateEnvInitOnly | ArgoLayout::TemplateEnvSupervisor);
    if reports_nothing && !reports_by_task_result && foreign.is_none() {
        return Ok(StepOutputs::default());
    }
    Err(foreign.map_or(NotRecorded::OutputsPending, NotRecorded::ForeignSource))
}

/// The key of `pod`'s stepcache mark when its signature binds this very pod (namespace, name,
/// workflow uid, staleness, seed); `None` for unmarked, malformed or forged marks. Latches are
/// settled only for pods this returns a key for, so a pod an author dressed up as a leader
/// cannot release or fail someone else's latch.
pub fn verified_key(pod: &Pod, signer: &Signer) -> Option<CacheKey> {
    if !marked(pod) {
        return None;
    }
    let a = pod.metadata.annotations.as_ref()?;
    let key = CacheKey::parse(a.get(labels::KEY_ANNOTATION)?).ok()?;
    let staleness = a.get(labels::STALENESS_ANNOTATION)?.parse::<i64>().ok().map(Staleness::from_db)?;
    let seed = CacheSeed::parse(a.get(labels::SEED_ANNOTATION).map(String::as_str).unwrap_or("")).ok()?;
    let namespace = Namespace::parse(pod.metadata.namespace.as_deref()?).ok()?;
    let claims = MarkClaims {
        key: &key,
        namespace: &namespace,
        pod_name: pod.metadata.name.as_deref()?,
        workflow_uid: workflow_owner_uid(pod).unwrap_or(""),
        staleness,
        seed: &seed,
    };
    signer.verify(&claims, a.get(labels::MARK_ANNOTATION)?).ok()?;
    Some(key)
}

/// A finish time the store may keep: at most `now`; a little ahead (node clock skew) is
/// clamped to `now`, far ahead is refused.
fn bounded_finish(finished: Timestamp, now: Timestamp) -> Result<Timestamp, NotRecorded> {
    if finished <= now {
        return Ok(finished);
    }
    let skew = jiff::SignedDuration::try_from(MAX_CLOCK_SKEW).unwrap_or(jiff::SignedDuration::ZERO);
    match now.checked_add(skew) {
        Ok(limit) if finished <= limit => Ok(now),
        _ => Err(NotRecorded::FinishedInFuture { finished, now }),
    }
}

/// Decides whether `pod` is recorded at `now` (the recorder's clock), returning the row to insert.
pub fn assess(
    pod: &Pod,
    src: &OutputSources<'_>,
    signer: &Signer,
    settings: &RecordSettings,
    now: Timestamp,
) -> Result<Execution, NotRecorded> {
    assess_with(pod, src, None, &NoConfigMaps, signer, settings, now)
}

/// [`assess`] for a pod whose template or args Argo offloaded, with its ConfigMap (read by the
/// caller; the key is re-derived from it exactly as admission derived it), and with the
/// contents of the ConfigMaps the step reads as they are now: when they changed since
/// admission the re-derived key differs from the marked one and the run is not recorded.
pub fn assess_with(
    pod: &Pod,
    src: &OutputSources<'_>,
    offloaded: Option<&crate::argo::offload::Offloaded>,
    configmaps: &dyn ConfigMaps,
    signer: &Signer,
    settings: &RecordSettings,
    now: Timestamp,
) -> Result<Execution, NotRecorded> {
    if !marked(pod) {
        return Err(NotRecorded::NotMarked);
    }
    let empty = BTreeMap::new();
    let a = pod.metadata.annotations.as_ref().unwrap_or(&empty);
    let marked_key =
        CacheKey::parse(ann(a, labels::KEY_ANNOTATION)?).map_err(|e| NotRecorded::MalformedMark(e.to_string()))?;
    let mark = ann(a, labels::MARK_ANNOTATION)?;
    let staleness = ann(a, labels::STALENESS_ANNOTATION)?
        .parse::<i64>()
        .map(Staleness::from_db)
        .map_err(|e| NotRecorded::MalformedMark(format!("staleness: {e}")))?;
    let seed = CacheSeed::parse(a.get(labels::SEED_ANNOTATION).map(String::as_str).unwrap_or(""))
        .map_err(|e| NotRecorded::MalformedMark(e.to_string()))?;
    let step = match classify_with(pod, offloaded) {
        Classification::Step(s) => s,
        Classification::Skip(r) => return Err(NotRecorded::NotStep(r.to_string())),
        Classification::NotArgo => return Err(NotRecorded::NotStep("not an Argo pod".into())),
    };
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let claims = MarkClaims {
        key: &marked_key,
        namespace: &step.namespace,
        pod_name: &pod_name,
        workflow_uid: step.workflow_uid.as_deref().unwrap_or(""),
        staleness,
        seed: &seed,
    };
    signer.verify(&claims, mark).map_err(|e| NotRecorded::ForgedMark(e.to_string()))?;
    let mut km = derive_key_with(pod, &step, &seed, settings.scope, configmaps)
        .map_err(|e| NotRecorded::NotStep(e.to_string()))?;
    if km.key != marked_key && settings.scope == Scope::Cluster {
        // A namespace outside `--share-namespaces` is keyed with namespace scope under cluster
        // scope; the signed mark says which key admission gave it.
        if let Ok(private) = derive_key_with(pod, &step, &seed, Scope::Namespace, configmaps) {
            if private.key == marked_key {
                km = private;
            }
        }
    }
    if km.key != marked_key {
        return Err(NotRecorded::KeyMismatch { marked: marked_key.to_string(), derived: km.key.to_string() });
    }
    // `wait`, or `supervisor` in the v4.1 init-less layout: Argo's, not the step's.
    let collector = step.layout.output_collector();
    let (started, finished) = check_succeeded(pod, step.layout, &main_containers(&step))?;
    let finished = bounded_finish(finished, now)?;
    let started = started.map(|s| s.min(finished));
    let wants_result = captures_result(pod);
    let outputs = final_outputs(&step, pod, src, wants_result)?;
    let mut missing = step.template.declared_outputs().missing(&outputs);
    if wants_result && outputs.result.is_none() && !missing.iter().any(|m| m == "result") {
        missing.push("result".to_owned());
    }
    if !missing.is_empty() {
        return Err(NotRecorded::OutputsIncomplete(missing));
    }
    let mut images = BTreeMap::new();
    for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
        if c.name != collector {
            images.insert(c.name.clone(), c.image.clone().unwrap_or_default());
        }
    }
    let mut image_digests = BTreeMap::new();
    for cs in pod.status.iter().flat_map(|s| s.container_statuses.iter().flatten()) {
        if cs.name != collector && !cs.image_id.is_empty() {
            image_digests.insert(cs.name.clone(), cs.image_id.clone());
        }
    }
    let expires_at = settings
        .default_expiry
        .and_then(|d| jiff::SignedDuration::try_from(d).ok())
        .and_then(|d| finished.checked_add(d).ok());
    let pod_uid =
        pod.metadata.uid.clone().filter(|u| !u.is_empty()).unwrap_or_else(|| {
            format!("{}/{}/{}", step.namespace, pod_name, step.workflow_uid.as_deref().unwrap_or(""))
        });
    Ok(Execution {
        namespace: step.namespace.clone(),
        key: km.key,
        seed,
        staleness,
        outputs,
        material: km.material,
        template_name: step.template.name().to_owned(),
        workflow_name: step.workflow_name.clone(),
        workflow_uid: step.workflow_uid.clone().unwrap_or_default(),
        node_id: step.node_id.clone(),
        pod_name,
        pod_uid,
        image_digests,
        images,
        started_at: started.unwrap_or(finished),
        finished_at: finished,
        expires_at,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use serde_json::json;

    fn finished_pod(phase: &str, codes: &[(&str, i32)]) -> Pod {
        let statuses: Vec<Value> = codes
            .iter()
            .map(|(n, c)| {
                json!({"name": n, "ready": false, "restartCount": 0, "image": "i", "imageID": "",
                       "state": {"terminated": {"exitCode": c, "reason": if *c == 0 { "Completed" } else { "Error" },
                                                "startedAt": "2026-11-01T10:00:00Z", "finishedAt": "2026-11-01T10:02:00Z"}}})
            })
            .collect();
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"containers": codes.iter().map(|(n, _)| json!({"name": n, "image": "i"})).collect::<Vec<_>>()},
            "status": {"phase": phase, "containerStatuses": statuses}
        }))
        .unwrap()
    }

    #[test]
    fn a_pod_failed_only_by_a_sidecar_argo_killed_counts_as_succeeded() {
        for code in [137, 143] {
            let pod = finished_pod("Failed", &[("wait", 0), ("main", 0), ("proxy", code)]);
            let got = check_succeeded(&pod, ArgoLayout::TemplateEnvInitOnly, &["main"]);
            assert!(got.is_ok(), "sidecar exited {code}: {got:?}");
        }
    }

    #[test]
    fn a_pod_whose_main_wait_or_sidecar_really_failed_is_not_succeeded() {
        for codes in [
            [("wait", 0), ("main", 1), ("proxy", 137)],
            [("wait", 1), ("main", 0), ("proxy", 0)],
            [("wait", 0), ("main", 0), ("proxy", 1)],
            [("wait", 0), ("main", 137), ("proxy", 0)],
        ] {
            for layout in
                [ArgoLayout::TemplateAnnotation, ArgoLayout::TemplateEnvAllContainers, ArgoLayout::TemplateEnvInitOnly]
            {
                let got = check_succeeded(&finished_pod("Failed", &codes), layout, &["main"]);
                assert!(matches!(got, Err(NotRecorded::NotSucceeded(_))), "{codes:?} {layout:?}: {got:?}");
            }
        }
    }

    #[test]
    fn an_evicted_pod_is_not_succeeded_even_with_every_container_at_zero() {
        let mut pod = finished_pod("Failed", &[("wait", 0), ("main", 0)]);
        if let Some(s) = pod.status.as_mut() {
            s.reason = Some("Evicted".into());
        }
        let got = check_succeeded(&pod, ArgoLayout::TemplateEnvInitOnly, &["main"]);
        assert!(matches!(got, Err(NotRecorded::NotSucceeded(_))), "{got:?}");
    }
}
