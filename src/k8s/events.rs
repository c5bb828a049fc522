//! Kubernetes Events on the step's Workflow, so authors see "served from cache" in `argo get`
//! and `kubectl describe`.

use super::KubeError;
use k8s_openapi::api::core::v1::{Event, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use std::time::Duration;

/// Posts Events with a bound on each call.
#[derive(Clone)]
pub struct EventPoster {
    client: kube::Client,
    timeout: Duration,
    instance: String,
}

/// What to report.
#[derive(Clone, Debug, PartialEq)]
pub struct StepEvent {
    /// Namespace of the workflow.
    pub namespace: String,
    /// Workflow name.
    pub workflow: String,
    /// Workflow uid.
    pub workflow_uid: Option<String>,
    /// Short CamelCase reason (`CacheHit`).
    pub reason: String,
    /// Human message.
    pub message: String,
}

impl EventPoster {
    /// Wraps a client; `instance` names this replica in `reportingInstance`.
    pub fn new(client: kube::Client, timeout: Duration, instance: String) -> EventPoster {
        EventPoster { client, timeout, instance }
    }

    /// Posts one Normal event about the workflow.
    pub async fn post(&self, e: &StepEvent, now: jiff::Timestamp) -> Result<(), KubeError> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), &e.namespace);
        let ev = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}.", e.workflow)),
                namespace: Some(e.namespace.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some(crate::argo::labels::ARGO_API_VERSION.into()),
                kind: Some(crate::argo::labels::WORKFLOW_KIND.into()),
                name: Some(e.workflow.clone()),
                namespace: Some(e.namespace.clone()),
                uid: e.workflow_uid.clone(),
                ..Default::default()
            },
            reason: Some(e.reason.clone()),
            message: Some(e.message.clone()),
            type_: Some("Normal".into()),
            event_time: Some(MicroTime(now)),
            action: Some("Admit".into()),
            reporting_component: Some("stepcache".into()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        };
        tokio::time::timeout(self.timeout, api.create(&PostParams::default(), &ev))
            .await
            .map_err(|_| KubeError::Timeout(self.timeout))?
            .map(|_| ())
            .map_err(KubeError::from)
    }
}
