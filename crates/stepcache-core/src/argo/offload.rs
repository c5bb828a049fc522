//! The ConfigMap Argo 3.6+ offloads an oversized template (and, v3.7.10+/v4.0.1+, one
//! container's oversized args) into: what it holds and whether it belongs to the pod.
//!
//! Owns: `Offloaded`. Pure: the ConfigMap is fetched at the edge (`k8s::offload`); this module
//! only reads the object. Must not import tokio, sqlx, axum or kube::Client.
//!
//! Contract (§1.9): name = pod name, same namespace, label `workflows.argoproj.io/workflow`,
//! node annotations, one controller ownerReference to the Workflow; data keys `ARGO_TEMPLATE`
//! and/or `ARGO_CONTAINER_ARGS_FILE` (a JSON array of strings). Created before the pod and
//! never updated by the controller.

use crate::argo::labels;
use k8s_openapi::api::core::v1::ConfigMap;

/// The offloaded parts of one step pod, read from its ConfigMap.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Offloaded {
    /// `ARGO_TEMPLATE`: the template JSON exactly as the env var would have carried it.
    pub template: Option<String>,
    /// `ARGO_CONTAINER_ARGS_FILE`: the offloaded container's args, a JSON array of strings.
    pub args: Option<String>,
    /// uid of the Workflow named as the ConfigMap's controller owner.
    pub owner_uid: Option<String>,
    /// The ConfigMap's `workflows.argoproj.io/workflow` label.
    pub workflow: Option<String>,
}

impl Offloaded {
    /// Reads the parts Argo writes; anything else in the ConfigMap is ignored.
    pub fn from_config_map(cm: &ConfigMap) -> Offloaded {
        let data = cm.data.as_ref();
        let get = |k: &str| data.and_then(|d| d.get(k)).cloned();
        Offloaded {
            template: get(labels::ARGO_TEMPLATE_ENV),
            args: get(labels::OFFLOADED_ARGS_KEY),
            owner_uid: cm
                .metadata
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.kind == labels::WORKFLOW_KIND && o.controller == Some(true))
                .map(|o| o.uid.clone()),
            workflow: cm.metadata.labels.as_ref().and_then(|l| l.get(labels::WORKFLOW_LABEL)).cloned(),
        }
    }

    /// The offloaded args as strings; `None` when absent or not a JSON array of strings.
    pub fn args_list(&self) -> Option<Vec<String>> {
        serde_json::from_str::<Vec<String>>(self.args.as_deref()?).ok()
    }
}
