//! Recognising Argo step pods and extracting the resolved template they carry, per Argo version.
//!
//! Owns: `classify` (pod → step pod / skip / not Argo), `ArgoLayout`, `Template`, `StepPod`.
//! Pure: no I/O, no clock. Must not import tokio, sqlx, axum or kube::Client.

use crate::argo::outputs::DeclaredOutputs;
use crate::types::Namespace;
use k8s_openapi::api::core::v1::Pod;

/// Where the controller put the resolved template, which tells the Argo generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArgoLayout {
    /// v2.12–v3.1: annotation `workflows.argoproj.io/template`; outputs via pod annotation.
    TemplateAnnotation,
    /// v3.2–v3.5: `ARGO_TEMPLATE` on every container; outputs via annotation or task result.
    TemplateEnvAllContainers,
    /// v3.6+: `ARGO_TEMPLATE` on init containers only; outputs via task result only.
    TemplateEnvInitOnly,
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

/// The resolved template as the controller serialised it.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    raw: serde_json::Map<String, serde_json::Value>,
}

/// An Argo step pod that may be cached.
#[derive(Clone, Debug, PartialEq)]
pub struct StepPod {
    pub layout: ArgoLayout,
    pub kind: TemplateKind,
    pub namespace: Namespace,
    pub pod_name: String,
    pub workflow_name: String,
    pub workflow_uid: Option<String>,
    pub node_id: String,
    pub node_name: Option<String>,
    pub instance_id: Option<String>,
    pub template: Template,
    /// True when KFP labels/annotations are present.
    pub kfp: bool,
}

/// Why an Argo pod is not cached.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SkipReason {
    #[error("Argo {0} pod is not a step pod")]
    Component(String),
    #[error("template kind {0} is not cacheable")]
    NotCacheableKind(&'static str),
    #[error("daemon steps are never cached")]
    Daemon,
    #[error("pod carries no resolved Argo template")]
    NoTemplate,
    #[error("template was offloaded to a ConfigMap")]
    Offloaded,
    #[error("malformed Argo template: {0}")]
    Malformed(String),
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
        }
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
pub fn classify(_pod: &Pod) -> Classification {
    Classification::NotArgo
}

impl Template {
    /// Parses the JSON the controller carried.
    pub fn parse(raw: &str) -> Result<Template, SkipReason> {
        match serde_json::from_str::<serde_json::Value>(raw) {
            Ok(serde_json::Value::Object(raw)) => Ok(Template { raw }),
            Ok(_) => Err(SkipReason::Malformed("template is not a JSON object".into())),
            Err(e) => Err(SkipReason::Malformed(e.to_string())),
        }
    }

    /// Template name.
    pub fn name(&self) -> &str {
        self.raw.get("name").and_then(|v| v.as_str()).unwrap_or("")
    }

    /// Raw template object.
    pub fn raw(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.raw
    }

    /// Outputs the template declares.
    pub fn declared_outputs(&self) -> DeclaredOutputs {
        DeclaredOutputs::from_template(self.raw.get("outputs"))
    }
}
