//! Kubernetes API edges: WorkflowTaskResult writes for the hit path, Events for provenance,
//! the LimitRange watch cache that shapes hit pods, the ConfigMap watch cache whose contents
//! are keyed.
//!
//! Every call is bounded by a timeout; errors are typed and never panic.

pub mod configmaps;
pub mod events;
pub mod limits;
pub mod offload;
pub mod secret_digests;
pub mod secrets;
pub mod taskresult;

use kube::discovery::ApiResource;

/// Argo's WorkflowTaskResult resource (`argoproj.io/v1alpha1`, namespaced).
pub fn task_result_resource() -> ApiResource {
    ApiResource {
        group: "argoproj.io".into(),
        version: "v1alpha1".into(),
        api_version: "argoproj.io/v1alpha1".into(),
        kind: "WorkflowTaskResult".into(),
        plural: "workflowtaskresults".into(),
    }
}

/// Argo's Workflow resource (`argoproj.io/v1alpha1`, namespaced).
pub fn workflow_resource() -> ApiResource {
    ApiResource {
        group: "argoproj.io".into(),
        version: "v1alpha1".into(),
        api_version: "argoproj.io/v1alpha1".into(),
        kind: "Workflow".into(),
        plural: "workflows".into(),
    }
}

/// Failures talking to the API server.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The API server refused (RBAC).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The resource type is not installed (no Argo CRD).
    #[error("not found: {0}")]
    NotFound(String),
    /// Any other API error.
    #[error("API error {code}: {message}")]
    Api {
        /// HTTP status.
        code: u16,
        /// Server message.
        message: String,
    },
    /// Transport or client error.
    #[error("client error: {0}")]
    Client(String),
    /// Exceeded the bound.
    #[error("Kubernetes API call exceeded {0:?}")]
    Timeout(std::time::Duration),
    /// The object could not be built.
    #[error("invalid object: {0}")]
    Invalid(String),
    /// An object of that name exists and stepcache did not create it: left alone.
    #[error("{0} exists and was not written by stepcache; left alone")]
    NotOurs(String),
}

impl KubeError {
    /// Bounded metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            KubeError::Forbidden(_) => "forbidden",
            KubeError::NotFound(_) => "not_found",
            KubeError::Api { .. } => "api",
            KubeError::Client(_) => "client",
            KubeError::Timeout(_) => "timeout",
            KubeError::Invalid(_) => "invalid",
            KubeError::NotOurs(_) => "not_ours",
        }
    }
}

impl From<kube::Error> for KubeError {
    fn from(e: kube::Error) -> Self {
        match e {
            kube::Error::Api(s) if s.code == 403 => KubeError::Forbidden(s.message.clone()),
            kube::Error::Api(s) if s.code == 404 => KubeError::NotFound(s.message.clone()),
            kube::Error::Api(s) => KubeError::Api { code: s.code, message: s.message.clone() },
            other => KubeError::Client(other.to_string()),
        }
    }
}
