//! Deciding whether a finished step pod is recorded, and with which outputs. Pure.
//!
//! A pod is recorded only when it carries a valid signed mark, really succeeded (phase
//! Succeeded, every user container exited 0) and its outputs are final and complete.

use crate::argo::labels;
use crate::argo::template::{classify, ArgoLayout, Classification, StepPod};
use crate::key::{derive_key, Scope};
use crate::mark::{MarkClaims, Signer};
use crate::store::NewEntry;
use crate::types::{CacheKey, CacheSeed, Staleness, StepOutputs};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// Where the outputs of a completed step can be read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OutputSources<'a> {
    /// The step's WorkflowTaskResult (Argo ≥ 3.3).
    pub task_result: Option<&'a Value>,
    /// `Workflow.status.nodes[<node id>]` (persists after task results are deleted).
    pub workflow_node: Option<&'a Value>,
}

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
        }
    }

    /// True when waiting may change the answer (so the recorder keeps the pod around).
    pub fn may_change(&self) -> bool {
        matches!(self, NotRecorded::OutputsPending | NotRecorded::NotFinished(_))
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

/// Checks success the way the Argo controller does: phase Succeeded and every user
/// container terminated with exit code 0 (the `main` one in particular).
fn check_succeeded(pod: &Pod) -> Result<(Option<Timestamp>, Timestamp), NotRecorded> {
    let status = pod.status.as_ref().ok_or_else(|| NotRecorded::NotFinished("no status".into()))?;
    let phase = status.phase.as_deref().unwrap_or("Unknown");
    if phase != "Succeeded" && phase != "Failed" {
        return Err(NotRecorded::NotFinished(format!("phase {phase}")));
    }
    if phase != "Succeeded" {
        let reason = status.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
        return Err(NotRecorded::NotSucceeded(format!("phase {phase}{reason}")));
    }
    let mut finished: Option<Timestamp> = None;
    let mut saw_user = false;
    for cs in status.container_statuses.iter().flatten() {
        if cs.name == labels::WAIT_CONTAINER {
            continue;
        }
        saw_user = true;
        let term = cs
            .state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .ok_or_else(|| NotRecorded::NotSucceeded(format!("container {} has not terminated", cs.name)))?;
        if term.exit_code != 0 {
            return Err(NotRecorded::NotSucceeded(format!(
                "container {} exited {} ({})",
                cs.name,
                term.exit_code,
                term.reason.as_deref().unwrap_or("")
            )));
        }
        if let Some(t) = &term.finished_at {
            finished = Some(finished.map_or(t.0, |f| f.max(t.0)));
        }
    }
    if !saw_user {
        return Err(NotRecorded::NotSucceeded("no user container status".into()));
    }
    let started = status.start_time.as_ref().map(|t| t.0);
    Ok((started, finished.unwrap_or_else(|| started.unwrap_or(Timestamp::UNIX_EPOCH))))
}

fn parse_outputs(v: &Value) -> Option<StepOutputs> {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("exitCode");
    }
    serde_json::from_value(v).ok()
}

/// Reads the final outputs from the best available channel for the pod's layout.
fn final_outputs(step: &StepPod, pod: &Pod, src: &OutputSources<'_>) -> Result<StepOutputs, NotRecorded> {
    if let Some(tr) = src.task_result {
        // Node ids derive from the workflow name, so a task result left by an earlier run of a
        // workflow with the same name has this node's name: its Workflow owner must be ours.
        let owner_ok = tr
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|o| o.get("kind").and_then(Value::as_str) == Some(labels::WORKFLOW_KIND))
            .all(|o| o.get("uid").and_then(Value::as_str) == step.workflow_uid.as_deref());
        let name_ok = owner_ok && tr.pointer("/metadata/name").and_then(Value::as_str) == Some(step.node_id.as_str());
        let completed = tr
            .pointer("/metadata/labels")
            .and_then(|l| l.get(labels::REPORT_OUTPUTS_COMPLETED))
            .and_then(Value::as_str);
        if name_ok {
            match completed {
                Some("true") => {
                    return Ok(tr.get("outputs").and_then(parse_outputs).unwrap_or_default());
                }
                Some(_) => return Err(NotRecorded::OutputsPending),
                // ≤3.5.1: no completion label; the result is written once, at the end.
                None => {
                    if let Some(o) = tr.get("outputs").and_then(parse_outputs) {
                        return Ok(o);
                    }
                }
            }
        }
    }
    if let Some(node) = src.workflow_node {
        let phase = node.get("phase").and_then(Value::as_str).unwrap_or("");
        if phase == "Succeeded" {
            return Ok(node.get("outputs").and_then(parse_outputs).unwrap_or_default());
        }
    }
    if step.layout != ArgoLayout::TemplateEnvInitOnly {
        let a = pod.metadata.annotations.as_ref();
        if let Some(raw) = a.and_then(|a| a.get(labels::OUTPUTS_ANNOTATION)) {
            let v: Value = serde_json::from_str(raw).map_err(|_| NotRecorded::OutputsPending)?;
            return parse_outputs(&v).ok_or(NotRecorded::OutputsPending);
        }
    }
    // ≥ 3.6 reports every step's outputs (even none) in its task result, which may arrive after
    // the pod is seen as Succeeded: until then the outputs are pending, not empty (a script's
    // `result` is never declared, yet always reported).
    if step.template.declared_outputs() == Default::default() && step.layout != ArgoLayout::TemplateEnvInitOnly {
        return Ok(StepOutputs::default());
    }
    Err(NotRecorded::OutputsPending)
}

/// Decides whether `pod` is recorded, returning the row to insert.
pub fn assess(
    pod: &Pod,
    src: &OutputSources<'_>,
    signer: &Signer,
    settings: &RecordSettings,
) -> Result<NewEntry, NotRecorded> {
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
    let step = match classify(pod) {
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
    let km = derive_key(pod, &step, &seed, settings.scope).map_err(|e| NotRecorded::NotStep(e.to_string()))?;
    if km.key != marked_key {
        return Err(NotRecorded::KeyMismatch { marked: marked_key.to_string(), derived: km.key.to_string() });
    }
    let (started, finished) = check_succeeded(pod)?;
    let outputs = final_outputs(&step, pod, src)?;
    let missing = step.template.declared_outputs().missing(&outputs);
    if !missing.is_empty() {
        return Err(NotRecorded::OutputsIncomplete(missing));
    }
    let mut images = BTreeMap::new();
    for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
        if c.name != labels::WAIT_CONTAINER {
            images.insert(c.name.clone(), c.image.clone().unwrap_or_default());
        }
    }
    let mut image_digests = BTreeMap::new();
    for cs in pod.status.iter().flat_map(|s| s.container_statuses.iter().flatten()) {
        if cs.name != labels::WAIT_CONTAINER && !cs.image_id.is_empty() {
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
    Ok(NewEntry {
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
