//! Recognising Argo step pods and extracting the resolved template they carry, per Argo version.
//!
//! Owns: `classify` (pod → step pod / skip / not Argo), `ArgoLayout`, `Template`, `StepPod`.
//! Pure: no I/O, no clock. Must not import tokio, sqlx, axum or kube::Client.
//!
//! The facts encoded here (where the template lives, which containers are Argo's, what a
//! non-step pod looks like) are in `shared/design/argo-pod-contract.md` §1.1–§1.7.
//! Everything a pod carries is untrusted input: nothing here panics, every unexpected shape
//! becomes a [`SkipReason`].

use crate::argo::contract::ArgoFacts;
use crate::argo::labels;
use crate::argo::offload::Offloaded;
use crate::argo::outputs::DeclaredOutputs;
use crate::types::Namespace;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// Where the controller put the resolved template, which tells the Argo generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArgoLayout {
    /// v2.12–v3.1: annotation `workflows.argoproj.io/template`; outputs via pod annotation.
    TemplateAnnotation,
    /// v3.2–v3.5: `ARGO_TEMPLATE` on every container; outputs via annotation or task result.
    TemplateEnvAllContainers,
    /// v3.6+ (v4.1 default layout included): `ARGO_TEMPLATE` on init containers only; outputs
    /// via task result only.
    TemplateEnvInitOnly,
    /// v4.1 init-less layout (controller `initlessPod.enabled`): no Argo init container,
    /// `supervisor` replaces `wait` and carries `ARGO_TEMPLATE`; outputs via task result only.
    TemplateEnvSupervisor,
}

impl ArgoLayout {
    /// Stable kebab-case name (the serde form), for explanations, logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ArgoLayout::TemplateAnnotation => "template-annotation",
            ArgoLayout::TemplateEnvAllContainers => "template-env-all-containers",
            ArgoLayout::TemplateEnvInitOnly => "template-env-init-only",
            ArgoLayout::TemplateEnvSupervisor => "template-env-supervisor",
        }
    }

    /// Name of Argo's container that collects and reports outputs (`wait`, or `supervisor` in
    /// the v4.1 init-less layout): never part of a key, dropped on a hit, skipped by the recorder.
    pub fn output_collector(self) -> &'static str {
        match self {
            ArgoLayout::TemplateEnvSupervisor => labels::SUPERVISOR_CONTAINER,
            _ => labels::WAIT_CONTAINER,
        }
    }

    /// Name of Argo's own init container in this layout, if it has one.
    pub fn argo_init(self) -> Option<&'static str> {
        match self {
            ArgoLayout::TemplateEnvSupervisor => None,
            _ => Some(labels::INIT_CONTAINER),
        }
    }
}

/// What kind of template produced the pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TemplateKind {
    /// `container:` template.
    Container,
    /// `script:` template.
    Script,
    /// `containerSet:` template.
    ContainerSet,
    /// `resource:` template (not cacheable).
    Resource,
    /// `data:` template (not cacheable).
    Data,
}

impl TemplateKind {
    /// The template field that selects this kind (`container`, `script`, ...).
    pub fn field(self) -> &'static str {
        match self {
            TemplateKind::Container => "container",
            TemplateKind::Script => "script",
            TemplateKind::ContainerSet => "containerSet",
            TemplateKind::Resource => "resource",
            TemplateKind::Data => "data",
        }
    }
}

/// Kinds in the order Argo's `Template.GetType` tests them, so a template with several
/// kind fields (rejected by Argo's validation anyway) is read the way the controller reads it.
const KIND_ORDER: [TemplateKind; 5] = [
    TemplateKind::Container,
    TemplateKind::ContainerSet,
    TemplateKind::Script,
    TemplateKind::Resource,
    TemplateKind::Data,
];

/// The resolved template as the controller serialised it.
///
/// Kept as raw JSON because Argo adds template fields in every minor version; typed accessors
/// below read only what caching needs and [`Template::validate`] checks those fields' types once.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    raw: Map<String, Value>,
    /// The pod asks Argo to capture stdout as `outputs.result` (`ARGO_INCLUDE_SCRIPT_OUTPUT`).
    include_result: bool,
}

/// Args Argo moved out of a container into the offload ConfigMap (v3.7.10+/v4.0.1+).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffloadedArgs {
    /// The container whose `args` field was removed.
    pub container: String,
    /// The args the emissary appends at run time.
    pub args: Vec<String>,
}

/// An Argo step pod that may be cached: the identity of the step and the template it carries.
#[derive(Clone, Debug, PartialEq)]
pub struct StepPod {
    /// Where the template was found, i.e. the Argo generation (decides how outputs are handed over).
    pub layout: ArgoLayout,
    /// Container, script or container set (the only cacheable kinds).
    pub kind: TemplateKind,
    /// Namespace of the pod (the default cache scope).
    pub namespace: Namespace,
    /// `metadata.name`; may be empty only for pods that carry a node id elsewhere.
    pub pod_name: String,
    /// Value of the `workflows.argoproj.io/workflow` label.
    pub workflow_name: String,
    /// uid of the owning Workflow (from the ownerReference of kind `Workflow`), when present.
    pub workflow_uid: Option<String>,
    /// The node id: names the WorkflowTaskResult and identifies the node to the controller.
    pub node_id: String,
    /// The node name annotation (`<wf>.<step>`), for explanations.
    pub node_name: Option<String>,
    /// The controller instance id label, copied onto anything stepcache creates.
    pub instance_id: Option<String>,
    /// The resolved template the controller carried in the pod.
    pub template: Template,
    /// True when KFP labels/annotations are present.
    pub kfp: bool,
    /// Argo generation details that decide which containers, env names and mounts are Argo's.
    pub argo: ArgoFacts,
    /// Args that live in the offload ConfigMap instead of the pod (keyed in their place).
    pub offloaded_args: Option<OffloadedArgs>,
}

/// Why an Argo pod is not cached.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SkipReason {
    /// The pod carries `workflows.argoproj.io/component` (agent, artifact-gc): not a step pod.
    #[error("Argo {0} pod is not a step pod")]
    Component(String),
    /// The template is a resource/data template or of no kind that creates a step pod.
    #[error("template kind {0} is not cacheable")]
    NotCacheableKind(&'static str),
    /// `daemon: true`: the node succeeds when the pod is killed, so its outputs mean nothing.
    #[error("daemon steps are never cached")]
    Daemon,
    /// Neither the annotation nor any `ARGO_TEMPLATE` env var carries a template.
    #[error("pod carries no resolved Argo template")]
    NoTemplate,
    /// The template (v3.6+) or the main container's args (v3.7.10+) live in a ConfigMap that a
    /// pure classifier cannot read; keying without them would merge different steps.
    #[error("template was offloaded to a ConfigMap")]
    Offloaded,
    /// The template or the pod has an unexpected shape; the reason says which field.
    #[error("malformed Argo template: {0}")]
    Malformed(String),
    /// The pod has no `wait` container, so nothing would collect or report its outputs.
    #[error("pod has no wait container, so it is not a step pod")]
    NoWaitContainer,
    /// Containers carry different templates, or a template where the detected layout never
    /// puts one: the author may have planted one, so what runs is uncertain.
    #[error("containers disagree about the template: {0}")]
    TemplateConflict(String),
    /// The offload ConfigMap does not belong to this pod's Workflow, or its args are unreadable.
    #[error("offload ConfigMap rejected: {0}")]
    OffloadRejected(String),
    /// A volume mounts a claim named `<workflow>-…`, as Argo names the claims it creates for
    /// each run from `volumeClaimTemplates`: the claim starts empty every run, so what the step
    /// reads from it was written by earlier steps of the same run, which the key cannot see.
    /// Keying its run-relative name would serve one run's result to another whose earlier steps
    /// wrote something else; keying its real name would never hit. Not cached.
    #[error(
        "volume {volume} mounts claim {claim}, which this workflow creates for this run \
         (volumeClaimTemplates): its contents come from earlier steps of the same run, which the \
         key cannot see, so this step is never served from the cache"
    )]
    PerRunVolume {
        /// The pod's volume name.
        volume: String,
        /// The claim it mounts.
        claim: String,
    },
}

impl SkipReason {
    /// Bounded metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            SkipReason::Component(_) => "component",
            SkipReason::NotCacheableKind(_) => "not_cacheable_kind",
            SkipReason::Daemon => "daemon",
            SkipReason::NoTemplate => "no_template",
            SkipReason::Offloaded => "offloaded",
            SkipReason::Malformed(_) => "malformed_template",
            SkipReason::NoWaitContainer => "no_wait_container",
            SkipReason::TemplateConflict(_) => "template_conflict",
            SkipReason::OffloadRejected(_) => "offload_rejected",
            SkipReason::PerRunVolume { .. } => "per_run_volume",
        }
    }

    /// True for skips the author (or an administrator) should hear about in an admission warning.
    pub fn warns(&self) -> bool {
        matches!(self, SkipReason::Malformed(_) | SkipReason::TemplateConflict(_) | SkipReason::OffloadRejected(_))
    }
}

/// Outcome of looking at a pod.
#[derive(Clone, Debug, PartialEq)]
pub enum Classification {
    /// No workflow label: not created by the Argo controller.
    NotArgo,
    /// An Argo pod that is not cached, and why.
    Skip(SkipReason),
    /// A cacheable step pod.
    Step(Box<StepPod>),
}

/// Decides whether a pod is an Argo step pod and extracts what caching needs.
///
/// Order of checks: workflow label (else [`Classification::NotArgo`]), component label, the
/// carried template (read only where the detected layout puts it: annotation ≤3.1, `wait`
/// 3.2–3.5, `init` 3.6+, `supervisor` v4.1 init-less; every other copy must be identical), its
/// kind and `daemon` flag, the output collector (`wait`/`supervisor`), offloaded args,
/// namespace, node id, and finally the types of the template fields the key reads.
/// An offloaded template or args make this a [`SkipReason::Offloaded`]; see [`classify_with`].
pub fn classify(pod: &Pod) -> Classification {
    classify_with(pod, None)
}

/// [`classify`] with the pod's offload ConfigMap, read by the caller (Argo 3.6+ moves templates
/// and v3.7.10+/v4.0.1+ args over 128 KiB there). The ConfigMap must be owned by the pod's
/// Workflow; its template replaces the env value `offloaded`, its args the absent pod args.
pub fn classify_with(pod: &Pod, offloaded: Option<&Offloaded>) -> Classification {
    match classify_inner(pod, offloaded) {
        Ok(Some(step)) => Classification::Step(Box::new(step)),
        Ok(None) => Classification::NotArgo,
        Err(reason) => Classification::Skip(reason),
    }
}

fn classify_inner(pod: &Pod, offloaded: Option<&Offloaded>) -> Result<Option<StepPod>, SkipReason> {
    let meta = &pod.metadata;
    let label = |k: &str| meta.labels.as_ref().and_then(|m| m.get(k));
    let annotation = |k: &str| meta.annotations.as_ref().and_then(|m| m.get(k));

    let Some(workflow_name) = label(labels::WORKFLOW_LABEL) else {
        return Ok(None);
    };
    if let Some(component) = label(labels::COMPONENT_LABEL) {
        return Err(SkipReason::Component(bounded(component)));
    }

    let workflow_uid = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.kind == labels::WORKFLOW_KIND)
        .map(|o| o.uid.clone())
        .filter(|u| !u.is_empty());
    let offloaded = offloaded.map(|o| check_offload(o, workflow_name, workflow_uid.as_deref())).transpose()?;

    let (layout, raw_template) = find_template(pod)?;
    let raw_template = if raw_template == labels::OFFLOADED_VALUE {
        offloaded.and_then(|o| o.template.as_deref()).ok_or(SkipReason::Offloaded)?
    } else {
        raw_template
    };
    let mut template = Template::parse(raw_template)?;
    let kind = template.kind()?;
    match kind {
        TemplateKind::Resource => return Err(SkipReason::NotCacheableKind("resource")),
        TemplateKind::Data => return Err(SkipReason::NotCacheableKind("data")),
        TemplateKind::Container | TemplateKind::Script | TemplateKind::ContainerSet => {}
    }
    if template.is_daemon()? {
        return Err(SkipReason::Daemon);
    }

    let spec = pod.spec.as_ref().ok_or_else(|| SkipReason::Malformed("pod has no spec".into()))?;
    if let Some(reason) = per_run_volume(spec, workflow_name) {
        return Err(reason);
    }
    let collector = layout.output_collector();
    let Some(collector_container) = spec.containers.iter().find(|c| c.name == collector) else {
        return Err(SkipReason::NoWaitContainer);
    };
    let all_containers = || spec.init_containers.iter().flatten().chain(spec.containers.iter());
    let offloaded_args = find_offloaded_args(spec, &template, offloaded)?;
    let namespace = meta
        .namespace
        .as_deref()
        .and_then(|n| Namespace::parse(n).ok())
        .ok_or_else(|| SkipReason::Malformed("pod has no valid namespace".into()))?;
    let pod_name = meta.name.clone().unwrap_or_default();
    let node_id = node_id_of(pod, &pod_name)?;

    template.validate(kind)?;
    template.include_result =
        all_containers().any(|c| env_value(c, labels::ARGO_INCLUDE_SCRIPT_OUTPUT_ENV) == Some("true"));

    let argo = ArgoFacts {
        v41: is_v41(spec, layout, collector_container),
        plugin_containers: plugin_containers(&template, spec, collector_container),
        has_input_artifacts: !template.input_artifacts().is_empty(),
    };
    let kfp = [&meta.labels, &meta.annotations]
        .into_iter()
        .flatten()
        .any(|m| m.keys().any(|k| k.starts_with(labels::KFP_PREFIX)));

    Ok(Some(StepPod {
        layout,
        kind,
        namespace,
        pod_name,
        workflow_name: workflow_name.clone(),
        workflow_uid,
        node_id,
        node_name: annotation(labels::NODE_NAME_ANNOTATION).cloned(),
        instance_id: label(labels::INSTANCE_ID_LABEL).cloned(),
        template,
        kfp,
        argo,
        offloaded_args,
    }))
}

/// The first volume mounting a claim the workflow created for this run: Argo names a claim from
/// `volumeClaimTemplates` `<workflow name>-<template name>` (`createPVCs`), and KFP's `VolumeOp`
/// defaults to `{{workflow.name}}-<name>`. A claim of another workflow's name is not matched;
/// a long-lived claim that merely starts with the workflow's name is skipped too (a lost hit,
/// never a false one).
fn per_run_volume(spec: &PodSpec, workflow_name: &str) -> Option<SkipReason> {
    let prefix = format!("{workflow_name}-");
    spec.volumes.iter().flatten().find_map(|v| {
        let claim = &v.persistent_volume_claim.as_ref()?.claim_name;
        claim.starts_with(&prefix).then(|| SkipReason::PerRunVolume { volume: bounded(&v.name), claim: bounded(claim) })
    })
}

/// The args Argo offloaded, if any: v3.7.10+/v4.0.1+ move one container's oversized args into
/// the offload ConfigMap and clear them from the pod, so the key uses the args the emissary will
/// append, never the absent pod args.
fn find_offloaded_args(
    spec: &PodSpec,
    template: &Template,
    offloaded: Option<&Offloaded>,
) -> Result<Option<OffloadedArgs>, SkipReason> {
    let mut found = None;
    let all_containers = spec.init_containers.iter().flatten().chain(spec.containers.iter());
    for c in all_containers.filter(|c| env_value(c, labels::ARGO_CONTAINER_ARGS_FILE_ENV).is_some()) {
        if found.is_some() || c.args.as_ref().is_some_and(|a| !a.is_empty()) {
            return Err(SkipReason::OffloadRejected(format!(
                "container {} has both args and an args file, or several containers have one",
                bounded(&c.name)
            )));
        }
        let off = offloaded.ok_or(SkipReason::Offloaded)?;
        found = Some(OffloadedArgs { container: c.name.clone(), args: offloaded_args_of(template, c, off)? });
    }
    Ok(found)
}

/// The node id: Argo's annotation, else its env var, else (v2.12–v3.1, and v1 pod names) the
/// pod name.
fn node_id_of(pod: &Pod, pod_name: &str) -> Result<String, SkipReason> {
    let from_annotation =
        pod.metadata.annotations.as_ref().and_then(|m| m.get(labels::NODE_ID_ANNOTATION)).filter(|v| !v.is_empty());
    if let Some(id) = from_annotation {
        return Ok(id.clone());
    }
    let spec = pod.spec.as_ref();
    let from_env = spec
        .into_iter()
        .flat_map(|s| s.init_containers.iter().flatten().chain(s.containers.iter()))
        .find_map(|c| env_value(c, labels::ARGO_NODE_ID_ENV))
        .filter(|v| !v.is_empty());
    from_env
        .map(str::to_owned)
        .or_else(|| Some(pod_name.to_owned()).filter(|n| !n.is_empty()))
        .ok_or_else(|| SkipReason::Malformed("pod has no node id and no name".into()))
}

/// v4.1 is recognised on Argo's own executor containers, which the author does not write.
fn is_v41(spec: &PodSpec, layout: ArgoLayout, collector: &Container) -> bool {
    let executors = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| Some(c.name.as_str()) == layout.argo_init())
        .chain(std::iter::once(collector));
    layout == ArgoLayout::TemplateEnvSupervisor
        || executors.into_iter().any(|c| c.env.iter().flatten().any(|e| e.name == labels::TRACEPARENT_ENV))
}

/// The args of a container whose args Argo offloaded: the template's args for it (what the
/// controller serialised), which must agree with the ConfigMap's copy when both exist; the
/// ConfigMap's alone when the template has none (args from the image `CMD` lookup).
fn offloaded_args_of(template: &Template, c: &Container, off: &Offloaded) -> Result<Vec<String>, SkipReason> {
    let from_template = match c.name.as_str() {
        labels::MAIN_CONTAINER => template.container_args(&c.name),
        name if template.kind() == Ok(TemplateKind::ContainerSet) => template.container_args(name),
        _ => None,
    }
    .filter(|a| !a.is_empty());
    let from_config_map = match off.args.as_deref() {
        None => None,
        Some(_) => Some(off.args_list().ok_or_else(|| {
            SkipReason::OffloadRejected(format!("{} is not a JSON array of strings", labels::OFFLOADED_ARGS_KEY))
        })?),
    };
    match (from_template, from_config_map) {
        (Some(t), Some(m)) if t == m => Ok(t),
        (Some(_), Some(_)) => Err(SkipReason::OffloadRejected(format!(
            "args in {} differ from the template's",
            labels::OFFLOADED_ARGS_KEY
        ))),
        (Some(t), None) => Ok(t),
        (None, Some(m)) => Ok(m),
        (None, None) => Err(SkipReason::OffloadRejected(format!("no args for container {}", bounded(&c.name)))),
    }
}

/// The offload ConfigMap must belong to the pod's Workflow (same uid as the pod's owner, same
/// workflow label): a ConfigMap an author created under the pod's name is not Argo's.
fn check_offload<'a>(o: &'a Offloaded, workflow: &str, uid: Option<&str>) -> Result<&'a Offloaded, SkipReason> {
    match (o.owner_uid.as_deref(), uid) {
        (Some(a), Some(b)) if a == b && o.workflow.as_deref() == Some(workflow) => Ok(o),
        _ => Err(SkipReason::OffloadRejected("not owned by the pod's Workflow".into())),
    }
}

/// Argo's artifact-plugin containers (v4.0+): for each plugin the template's artifacts or
/// archive location name, `init-artifact-<plugin>` (legacy input loaders) and
/// `artifact-plugin-<plugin>` (sidecars, also listed in `ARGO_ARTIFACT_PLUGIN_NAMES` on the
/// output collector). Containers are matched by these exact names only: the API server rejects
/// a second container of the same name, so an author cannot hide a container behind one.
fn plugin_containers(
    template: &Template,
    spec: &k8s_openapi::api::core::v1::PodSpec,
    collector: &Container,
) -> BTreeSet<String> {
    let mut plugins = BTreeSet::new();
    let mut note = |a: &Map<String, Value>| {
        if let Some(n) = a.get("plugin").and_then(|p| p.get("name")).and_then(Value::as_str) {
            plugins.insert(n.to_owned());
        }
    };
    for a in template.input_artifacts().into_iter().chain(template.output_artifacts()) {
        note(a);
    }
    if let Some(a) = template.raw.get("archiveLocation").and_then(Value::as_object) {
        note(a);
    }
    let listed: BTreeSet<&str> =
        env_value(collector, labels::ARGO_ARTIFACT_PLUGIN_NAMES_ENV).unwrap_or("").split(',').collect();
    let mut out = BTreeSet::new();
    for p in plugins {
        let sidecar = format!("{}{p}", labels::ARTIFACT_PLUGIN_PREFIX);
        if listed.contains(sidecar.as_str()) || spec.containers.iter().any(|c| c.name == sidecar) {
            out.insert(sidecar);
        }
        out.insert(format!("{}{p}", labels::INIT_ARTIFACT_PREFIX));
    }
    out
}

/// Finds the carried template where the detected layout puts it: the annotation (v2.12–3.1),
/// `wait` (v3.2–3.5, where every container has a copy), the `init` container (v3.6+), or
/// `supervisor` (v4.1 init-less). Every other `ARGO_TEMPLATE` in the pod must be identical to
/// that one; otherwise the pod is not cached ([`SkipReason::TemplateConflict`]). Pods without
/// an output collector (resource and data templates) are read from `init`, then `main`, only to
/// learn their kind.
fn find_template(pod: &Pod) -> Result<(ArgoLayout, &str), SkipReason> {
    let spec = pod.spec.as_ref();
    let containers = spec.map(|s| s.containers.as_slice()).unwrap_or_default();
    let inits = spec.and_then(|s| s.init_containers.as_deref()).unwrap_or_default();
    let mut copies: Vec<(&str, bool, &str)> = Vec::new();
    for (c, init) in inits.iter().map(|c| (c, true)).chain(containers.iter().map(|c| (c, false))) {
        if let Some(v) = template_env(c)? {
            copies.push((c.name.as_str(), init, v));
        }
    }
    let copy = |name: &str, init: bool| copies.iter().find(|(n, i, _)| *n == name && *i == init).map(|(_, _, v)| *v);
    let has = |name: &str| containers.iter().any(|c| c.name == name);
    let has_init = inits.iter().any(|c| c.name == labels::INIT_CONTAINER);

    if let Some(t) = pod.metadata.annotations.as_ref().and_then(|m| m.get(labels::TEMPLATE_ANNOTATION)) {
        if copies.is_empty() {
            return Ok((ArgoLayout::TemplateAnnotation, t.as_str()));
        }
        // Argo ≥3.2 never writes the annotation; template metadata can.
        return Err(SkipReason::TemplateConflict(format!(
            "annotation {} next to {} env vars",
            labels::TEMPLATE_ANNOTATION,
            labels::ARGO_TEMPLATE_ENV
        )));
    }
    let found = if has(labels::WAIT_CONTAINER) {
        match (copy(labels::WAIT_CONTAINER, false), copy(labels::INIT_CONTAINER, true)) {
            (Some(v), _) => Some((ArgoLayout::TemplateEnvAllContainers, v, labels::WAIT_CONTAINER)),
            (None, Some(v)) => Some((ArgoLayout::TemplateEnvInitOnly, v, labels::INIT_CONTAINER)),
            (None, None) => None,
        }
    } else if has(labels::SUPERVISOR_CONTAINER) && !has_init {
        copy(labels::SUPERVISOR_CONTAINER, false)
            .map(|v| (ArgoLayout::TemplateEnvSupervisor, v, labels::SUPERVISOR_CONTAINER))
    } else {
        // No output collector: not a cacheable step pod; read the template only for its kind.
        copy(labels::INIT_CONTAINER, true)
            .or_else(|| copy(labels::MAIN_CONTAINER, false))
            .map(|v| (ArgoLayout::TemplateEnvInitOnly, v, labels::INIT_CONTAINER))
    };
    let Some((layout, canonical, from)) = found else {
        return Err(SkipReason::NoTemplate);
    };
    if let Some((name, _, _)) = copies.iter().find(|(_, _, v)| *v != canonical) {
        return Err(SkipReason::TemplateConflict(format!(
            "{} on container {} differs from the one on {from}",
            labels::ARGO_TEMPLATE_ENV,
            bounded(name)
        )));
    }
    Ok((layout, canonical))
}

/// The `ARGO_TEMPLATE` value of a container; an entry without a literal value is malformed.
fn template_env(c: &Container) -> Result<Option<&str>, SkipReason> {
    let Some(e) = c.env.iter().flatten().find(|e| e.name == labels::ARGO_TEMPLATE_ENV) else {
        return Ok(None);
    };
    match e.value.as_deref() {
        Some(v) => Ok(Some(v)),
        None => Err(SkipReason::Malformed(format!(
            "{} on container {} has no literal value",
            labels::ARGO_TEMPLATE_ENV,
            bounded(&c.name)
        ))),
    }
}

/// The literal value of env var `name` on a container.
fn env_value<'a>(c: &'a Container, name: &str) -> Option<&'a str> {
    c.env.iter().flatten().find(|e| e.name == name).and_then(|e| e.value.as_deref())
}

/// Cuts untrusted text that ends up in a reason, so a hostile pod cannot bloat logs or warnings.
fn bounded(s: &str) -> String {
    const MAX: usize = 63;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(MAX).collect();
        out.push('…');
        out
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn wrong_type(path: &str, expected: &str, got: &Value) -> SkipReason {
    SkipReason::Malformed(format!("template field {path} must be {expected}, not {}", type_name(got)))
}

/// An optional field that, when present and not null, must be an array of objects.
fn objects_at<'a>(
    parent: &'a Map<String, Value>,
    field: &str,
    path: &str,
) -> Result<Vec<&'a Map<String, Value>>, SkipReason> {
    match parent.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_object().ok_or_else(|| wrong_type(&format!("{path}[]"), "an object", i)))
            .collect(),
        Some(other) => Err(wrong_type(path, "an array", other)),
    }
}

/// An optional field that, when present and not null, must be an object.
fn object_at<'a>(
    parent: &'a Map<String, Value>,
    field: &str,
    path: &str,
) -> Result<Option<&'a Map<String, Value>>, SkipReason> {
    match parent.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(other) => Err(wrong_type(path, "an object", other)),
    }
}

/// Each item of a named list must have a string `name` (it is what the key sorts and matches by).
fn require_names(items: &[&Map<String, Value>], path: &str) -> Result<(), SkipReason> {
    for i in items {
        match i.get("name") {
            Some(Value::String(_)) => {}
            Some(other) => return Err(wrong_type(&format!("{path}[].name"), "a string", other)),
            None => return Err(SkipReason::Malformed(format!("template field {path}[] has an entry without a name"))),
        }
    }
    Ok(())
}

impl Template {
    /// Parses the JSON the controller carried.
    pub fn parse(raw: &str) -> Result<Template, SkipReason> {
        match serde_json::from_str::<Value>(raw) {
            Ok(Value::Object(raw)) => Ok(Template { raw, include_result: false }),
            Ok(_) => Err(SkipReason::Malformed("template is not a JSON object".into())),
            Err(e) => Err(SkipReason::Malformed(e.to_string())),
        }
    }

    /// Template name.
    pub fn name(&self) -> &str {
        self.raw.get("name").and_then(|v| v.as_str()).unwrap_or("")
    }

    /// Outputs the step must provide: those the template declares, plus `result` when the pod
    /// asks Argo to capture stdout (`ARGO_INCLUDE_SCRIPT_OUTPUT=true`, set when a later step
    /// reads `outputs.result`).
    pub fn declared_outputs(&self) -> DeclaredOutputs {
        let mut d = DeclaredOutputs::from_template(self.raw.get("outputs"));
        d.result = self.include_result;
        d
    }

    /// The container's `args` as the template has them (container and script templates, or a
    /// container-set member by name).
    pub fn container_args(&self, container: &str) -> Option<Vec<String>> {
        let c = match self.kind().ok()? {
            TemplateKind::Container => self.raw.get("container"),
            TemplateKind::Script => self.raw.get("script"),
            TemplateKind::ContainerSet => self
                .raw
                .get("containerSet")
                .and_then(|s| s.get("containers"))
                .and_then(Value::as_array)
                .and_then(|cs| cs.iter().find(|c| c.get("name").and_then(Value::as_str) == Some(container))),
            TemplateKind::Resource | TemplateKind::Data => None,
        }?;
        serde_json::from_value(c.get("args").cloned().unwrap_or(Value::Array(Vec::new()))).ok()
    }

    /// `podSpecPatch`, when the template has one: Argo applies it to the whole pod, including
    /// its own executor containers, which the key does not otherwise read.
    pub fn pod_spec_patch(&self) -> Option<&str> {
        self.raw.get("podSpecPatch").and_then(Value::as_str).filter(|p| !p.trim().is_empty())
    }

    /// `archiveLocation`: Argo's copy of the artifact repository, whose bucket, endpoint and
    /// credentials complete key-only input artifacts.
    pub fn archive_location(&self) -> Option<&Map<String, Value>> {
        self.raw.get("archiveLocation").and_then(Value::as_object)
    }

    /// The template kind, read like Argo's `GetType`; a kind field that is not an object is
    /// malformed, and a template with none of the pod-creating kinds is not cacheable.
    pub fn kind(&self) -> Result<TemplateKind, SkipReason> {
        for kind in KIND_ORDER {
            match self.raw.get(kind.field()) {
                None | Some(Value::Null) => continue,
                Some(Value::Object(_)) => return Ok(kind),
                Some(other) => return Err(wrong_type(kind.field(), "an object", other)),
            }
        }
        Err(SkipReason::NotCacheableKind("unknown"))
    }

    /// True for `daemon: true` (never cached); a non-boolean `daemon` is malformed.
    pub fn is_daemon(&self) -> Result<bool, SkipReason> {
        match self.raw.get("daemon") {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(wrong_type("daemon", "a boolean", other)),
        }
    }

    /// `script.source` of a script template: the program, which exists only in the carried
    /// template (the init container writes it to `/argo/staging/script`).
    pub fn script_source(&self) -> Option<&str> {
        self.raw.get("script").and_then(|s| s.get("source")).and_then(Value::as_str)
    }

    /// `inputs.artifacts` with their resolved locations: the identity of the step's input files.
    /// Present in every layout (v3.6+ strips only `inputs.parameters`). Unreadable shapes are
    /// rejected by [`Template::validate`] during classification.
    pub fn input_artifacts(&self) -> Vec<&Map<String, Value>> {
        self.raw
            .get("inputs")
            .and_then(Value::as_object)
            .and_then(|i| i.get("artifacts"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_object).collect())
            .unwrap_or_default()
    }

    /// `outputs.parameters` declarations (name, `valueFrom`, ...), as written in the template.
    pub fn output_parameters(&self) -> Vec<&Map<String, Value>> {
        self.outputs_list("parameters")
    }

    /// `outputs.artifacts` declarations (name, path, options, sometimes a location).
    pub fn output_artifacts(&self) -> Vec<&Map<String, Value>> {
        self.outputs_list("artifacts")
    }

    fn outputs_list(&self, field: &str) -> Vec<&Map<String, Value>> {
        self.raw
            .get("outputs")
            .and_then(Value::as_object)
            .and_then(|o| o.get(field))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_object).collect())
            .unwrap_or_default()
    }

    /// Container-set dependencies: container name → names it waits for. The emissary enforces
    /// this order from the template, so it is part of what runs although the pod spec lacks it.
    pub fn container_set_dependencies(&self) -> Vec<(&str, Vec<&str>)> {
        self.raw
            .get("containerSet")
            .and_then(|s| s.get("containers"))
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| {
                        let name = c.get("name")?.as_str()?;
                        let deps = c
                            .get("dependencies")
                            .and_then(Value::as_array)
                            .map(|d| d.iter().filter_map(Value::as_str).collect())
                            .unwrap_or_default();
                        Some((name, deps))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Checks the types of every field the key reads, so key derivation never has to guess:
    /// `script.source` (string, script templates), `inputs`/`outputs` (objects), their
    /// `artifacts`/`parameters` (arrays of named objects), container-set containers.
    pub fn validate(&self, kind: TemplateKind) -> Result<(), SkipReason> {
        if kind == TemplateKind::Script {
            match self.raw.get("script").and_then(|s| s.get("source")) {
                Some(Value::String(_)) => {}
                None | Some(Value::Null) => {
                    return Err(SkipReason::Malformed("script template has no script.source".into()))
                }
                Some(other) => return Err(wrong_type("script.source", "a string", other)),
            }
        }
        if let Some(inputs) = object_at(&self.raw, "inputs", "inputs")? {
            require_names(&objects_at(inputs, "artifacts", "inputs.artifacts")?, "inputs.artifacts")?;
        }
        if let Some(outputs) = object_at(&self.raw, "outputs", "outputs")? {
            require_names(&objects_at(outputs, "parameters", "outputs.parameters")?, "outputs.parameters")?;
            require_names(&objects_at(outputs, "artifacts", "outputs.artifacts")?, "outputs.artifacts")?;
        }
        if kind == TemplateKind::ContainerSet {
            if let Some(set) = object_at(&self.raw, "containerSet", "containerSet")? {
                let containers = objects_at(set, "containers", "containerSet.containers")?;
                require_names(&containers, "containerSet.containers")?;
                for c in containers {
                    match c.get("dependencies") {
                        None | Some(Value::Null) => {}
                        Some(Value::Array(d)) if d.iter().all(Value::is_string) => {}
                        Some(other) => {
                            return Err(wrong_type(
                                "containerSet.containers[].dependencies",
                                "an array of strings",
                                other,
                            ))
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture(name: &str) -> Value {
        let path = format!("{}/tests/fixtures/argo/{name}", concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap()
    }

    fn pod_of(review: &Value) -> Pod {
        serde_json::from_value(review["request"]["object"].clone()).unwrap()
    }

    fn classify_fixture(name: &str) -> Classification {
        classify(&pod_of(&fixture(name)))
    }

    fn step(name: &str) -> StepPod {
        match classify_fixture(name) {
            Classification::Step(s) => *s,
            other => panic!("{name}: expected a step pod, got {other:?}"),
        }
    }

    /// The v3.6 fixture's pod as JSON, for small variations.
    fn v36() -> Value {
        fixture("v3.6-container-params.admission.json")["request"]["object"].clone()
    }

    fn classify_json(pod: Value) -> Classification {
        classify(&serde_json::from_value::<Pod>(pod).unwrap())
    }

    fn set_init_template(pod: &mut Value, template: &str) {
        for e in pod["spec"]["initContainers"][0]["env"].as_array_mut().unwrap() {
            if e["name"] == "ARGO_TEMPLATE" {
                e["value"] = json!(template);
            }
        }
    }

    fn skip_of(c: Classification) -> SkipReason {
        match c {
            Classification::Skip(r) => r,
            other => panic!("expected a skip, got {other:?}"),
        }
    }

    #[test]
    fn every_step_fixture_classifies_as_a_step_with_its_layout_and_kind() {
        let cases = [
            ("v2.12-template-annotation", ArgoLayout::TemplateAnnotation, TemplateKind::Container),
            ("v3.3-container-params", ArgoLayout::TemplateEnvAllContainers, TemplateKind::Container),
            ("v3.5-artifacts-s3", ArgoLayout::TemplateEnvAllContainers, TemplateKind::Container),
            ("v3.6-container-params", ArgoLayout::TemplateEnvInitOnly, TemplateKind::Container),
            ("v3.7-script", ArgoLayout::TemplateEnvInitOnly, TemplateKind::Script),
            ("kfp-v1-staleness", ArgoLayout::TemplateEnvAllContainers, TemplateKind::Container),
        ];
        for (name, layout, kind) in cases {
            for file in [format!("{name}.admission.json"), format!("captured/{name}.captured.json")] {
                let s = step(&file);
                assert_eq!(s.layout, layout, "{file}");
                assert_eq!(s.kind, kind, "{file}");
                assert!(!s.node_id.is_empty(), "{file}");
                assert!(s.workflow_uid.is_some(), "{file}");
                assert_eq!(s.kfp, name.starts_with("kfp"), "{file}");
            }
        }
    }

    #[test]
    fn v36_fixture_yields_node_identity_from_annotations_and_owner() {
        let s = step("v3.6-container-params.admission.json");
        assert_eq!(s.namespace.as_str(), "ml-team");
        assert_eq!(s.pod_name, "train-pipeline-7xk2p-preprocess-3108604587");
        assert_eq!(s.workflow_name, "train-pipeline-7xk2p");
        assert_eq!(s.workflow_uid.as_deref(), Some("0b3e6a52-8a61-4c1f-9d3a-6f2d5f4c1a10"));
        assert_eq!(s.node_id, "train-pipeline-7xk2p-3108604587");
        assert_eq!(s.node_name.as_deref(), Some("train-pipeline-7xk2p.preprocess"));
        assert_eq!(s.instance_id, None);
        assert_eq!(s.template.name(), "preprocess");
        assert_eq!(s.template.declared_outputs().parameters, vec!["row-count"]);
    }

    #[test]
    fn v212_pod_without_node_id_annotation_uses_the_pod_name() {
        let s = step("v2.12-template-annotation.admission.json");
        assert_eq!(s.node_id, "legacy-wf-8hz2c-2303345872");
        assert_eq!(s.node_id, s.pod_name);
    }

    #[test]
    fn node_id_falls_back_to_the_argo_node_id_env() {
        let mut pod = v36();
        pod["metadata"]["annotations"].as_object_mut().unwrap().remove("workflows.argoproj.io/node-id");
        pod["metadata"]["name"] = json!("renamed-pod");
        let Classification::Step(s) = classify_json(pod) else { panic!() };
        assert_eq!(s.node_id, "train-pipeline-7xk2p-3108604587");
    }

    #[test]
    fn script_fixture_exposes_its_source() {
        let s = step("v3.7-script.admission.json");
        assert!(s.template.script_source().unwrap().starts_with("import hashlib"));
    }

    #[test]
    fn artifact_fixture_exposes_input_artifacts_with_locations() {
        let s = step("v3.5-artifacts-s3.admission.json");
        let arts = s.template.input_artifacts();
        assert_eq!(arts.len(), 1);
        assert_eq!(arts[0]["name"], "raw");
        assert!(arts[0]["s3"]["key"].as_str().unwrap().ends_with("raw.tgz"));
    }

    #[test]
    fn resource_template_fixtures_are_skipped_as_not_cacheable() {
        for f in
            ["v3.6-resource-template.ignore.admission.json", "captured/v3.6-resource-template.ignore.captured.json"]
        {
            assert_eq!(skip_of(classify_fixture(f)), SkipReason::NotCacheableKind("resource"), "{f}");
        }
    }

    #[test]
    fn agent_pod_fixtures_are_skipped_as_components() {
        for f in ["v3.6-agent-pod.ignore.admission.json", "captured/v3.6-agent-pod.ignore.captured.json"] {
            assert_eq!(skip_of(classify_fixture(f)), SkipReason::Component("agent".into()), "{f}");
        }
    }

    #[test]
    fn pods_without_the_workflow_label_are_not_argo() {
        let mut pod = v36();
        pod["metadata"]["labels"].as_object_mut().unwrap().remove("workflows.argoproj.io/workflow");
        assert_eq!(classify_json(pod), Classification::NotArgo);
        assert_eq!(classify(&Pod::default()), Classification::NotArgo);
    }

    #[test]
    fn artifact_gc_pods_are_skipped_as_components() {
        let mut pod = v36();
        pod["metadata"]["labels"]["workflows.argoproj.io/component"] = json!("artifact-gc");
        assert_eq!(skip_of(classify_json(pod)), SkipReason::Component("artifact-gc".into()));
    }

    #[test]
    fn offloaded_template_is_skipped() {
        let mut pod = v36();
        set_init_template(&mut pod, "offloaded");
        assert_eq!(skip_of(classify_json(pod)), SkipReason::Offloaded);
    }

    #[test]
    fn offloaded_main_args_are_skipped_without_the_config_map() {
        let mut pod = v36();
        pod["spec"]["containers"][1]["env"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name":"ARGO_CONTAINER_ARGS_FILE","value":"/argo/config/ARGO_CONTAINER_ARGS_FILE"}));
        // Argo removes the args it offloads; a container with both is not Argo's doing.
        assert_eq!(skip_of(classify_json(pod.clone())).kind(), "offload_rejected");
        pod["spec"]["containers"][1].as_object_mut().unwrap().remove("args");
        assert_eq!(skip_of(classify_json(pod)), SkipReason::Offloaded);
    }

    #[test]
    fn v41_initless_fixture_reads_the_template_from_the_supervisor() {
        let s = step("v4.1-initless-container-artifacts.admission.json");
        assert_eq!(s.layout, ArgoLayout::TemplateEnvSupervisor);
        assert!(s.argo.v41 && s.argo.has_input_artifacts);
        assert_eq!(s.template.name(), "featurize");
        // Without the supervisor nothing collects outputs: not a step pod.
        let mut pod = fixture("v4.1-initless-container-artifacts.admission.json")["request"]["object"].clone();
        pod["spec"]["containers"].as_array_mut().unwrap().retain(|c| c["name"] != "supervisor");
        assert!(matches!(skip_of(classify_json(pod)), SkipReason::NoTemplate));
    }

    #[test]
    fn v41_is_recognised_on_argos_containers_not_on_main() {
        assert!(step("v4.1-container-params.admission.json").argo.v41);
        assert!(!step("v4.0-container-params.admission.json").argo.v41);
        let mut pod = v36();
        pod["spec"]["containers"][1]["env"].as_array_mut().unwrap().push(json!({"name":"TRACEPARENT","value":"x"}));
        let Classification::Step(s) = classify_json(pod) else { panic!() };
        assert!(!s.argo.v41);
    }

    #[test]
    fn pod_without_any_template_is_skipped() {
        let mut pod = v36();
        pod["spec"]["initContainers"][0]["env"].as_array_mut().unwrap().retain(|e| e["name"] != "ARGO_TEMPLATE");
        assert_eq!(skip_of(classify_json(pod)), SkipReason::NoTemplate);
    }

    #[test]
    fn daemon_templates_are_skipped() {
        let mut pod = v36();
        set_init_template(&mut pod, r#"{"name":"d","daemon":true,"container":{"image":"x"}}"#);
        assert_eq!(skip_of(classify_json(pod)), SkipReason::Daemon);
    }

    #[test]
    fn data_and_kindless_templates_are_not_cacheable() {
        for (t, want) in [
            (r#"{"name":"d","data":{"source":{}}}"#, "data"),
            (r#"{"name":"s","suspend":{}}"#, "unknown"),
            (r#"{}"#, "unknown"),
        ] {
            let mut pod = v36();
            set_init_template(&mut pod, t);
            assert_eq!(skip_of(classify_json(pod)), SkipReason::NotCacheableKind(want), "{t}");
        }
    }

    #[test]
    fn container_template_without_wait_container_is_skipped() {
        let mut pod = v36();
        pod["spec"]["containers"].as_array_mut().unwrap().retain(|c| c["name"] != "wait");
        assert_eq!(skip_of(classify_json(pod)), SkipReason::NoWaitContainer);
    }

    #[test]
    fn malformed_templates_are_skipped_with_a_reason() {
        let cases = [
            "{not json",
            "[]",
            "5",
            r#"{"container":5}"#,
            r#"{"container":{},"daemon":"yes"}"#,
            r#"{"script":{"image":"x"}}"#,
            r#"{"script":{"image":"x","source":7}}"#,
            r#"{"container":{},"inputs":[]}"#,
            r#"{"container":{},"inputs":{"artifacts":"x"}}"#,
            r#"{"container":{},"inputs":{"artifacts":[5]}}"#,
            r#"{"container":{},"inputs":{"artifacts":[{"path":"/x"}]}}"#,
            r#"{"container":{},"outputs":{"parameters":{"name":"x"}}}"#,
            r#"{"container":{},"outputs":{"artifacts":[{"name":3}]}}"#,
            r#"{"containerSet":{"containers":[{"name":"a","dependencies":"b"}]}}"#,
        ];
        for t in cases {
            let mut pod = v36();
            set_init_template(&mut pod, t);
            let r = skip_of(classify_json(pod));
            assert!(matches!(r, SkipReason::Malformed(_)), "{t}: {r:?}");
            assert_eq!(r.kind(), "malformed_template");
        }
    }

    #[test]
    fn deeply_nested_template_is_malformed_not_a_crash() {
        let deep = format!("{{\"container\":{{}},\"x\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        let mut pod = v36();
        set_init_template(&mut pod, &deep);
        assert!(matches!(skip_of(classify_json(pod)), SkipReason::Malformed(_)));
    }

    #[test]
    fn template_env_without_literal_value_is_malformed() {
        let mut pod = v36();
        for e in pod["spec"]["initContainers"][0]["env"].as_array_mut().unwrap() {
            if e["name"] == "ARGO_TEMPLATE" {
                *e = json!({"name":"ARGO_TEMPLATE","valueFrom":{"configMapKeyRef":{"name":"x","key":"y"}}});
            }
        }
        assert!(matches!(skip_of(classify_json(pod)), SkipReason::Malformed(_)));
    }

    #[test]
    fn pod_without_a_valid_namespace_is_malformed() {
        for ns in [json!(null), json!(""), json!("Not_A_Namespace")] {
            let mut pod = v36();
            pod["metadata"]["namespace"] = ns.clone();
            assert_eq!(skip_of(classify_json(pod)), SkipReason::Malformed("pod has no valid namespace".into()), "{ns}");
        }
    }

    #[test]
    fn instance_id_and_kfp_markers_are_read_from_labels() {
        let mut pod = v36();
        pod["metadata"]["labels"]["workflows.argoproj.io/controller-instanceid"] = json!("team-a");
        pod["metadata"]["annotations"]["pipelines.kubeflow.org/anything"] = json!("x");
        let Classification::Step(s) = classify_json(pod) else { panic!() };
        assert_eq!(s.instance_id.as_deref(), Some("team-a"));
        assert!(s.kfp);
    }

    #[test]
    fn component_reason_is_bounded() {
        let mut pod = v36();
        pod["metadata"]["labels"]["workflows.argoproj.io/component"] = json!("x".repeat(5000));
        let SkipReason::Component(c) = skip_of(classify_json(pod)) else { panic!() };
        assert!(c.len() < 100);
    }

    #[test]
    fn layout_names_match_their_serde_form() {
        for l in [ArgoLayout::TemplateAnnotation, ArgoLayout::TemplateEnvAllContainers, ArgoLayout::TemplateEnvInitOnly]
        {
            assert_eq!(serde_json::to_value(l).unwrap(), json!(l.as_str()));
        }
    }

    #[test]
    fn container_set_dependencies_are_read() {
        let t = Template::parse(r#"{"containerSet":{"containers":[{"name":"a"},{"name":"b","dependencies":["a"]}]}}"#)
            .unwrap();
        assert_eq!(t.kind().unwrap(), TemplateKind::ContainerSet);
        assert_eq!(t.container_set_dependencies(), vec![("a", vec![]), ("b", vec!["a"])]);
    }
}
