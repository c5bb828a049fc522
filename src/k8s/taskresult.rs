//! Writing the WorkflowTaskResult of a cache hit: create, or on AlreadyExists update it to the
//! same content (the API server may call the webhook twice; the controller may retry a pod).

use super::{task_result_resource, KubeError};
use crate::rewrite::WorkflowTaskResult;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use std::time::Duration;

/// Writes task results with a bound on each call.
#[derive(Clone)]
pub struct TaskResultWriter {
    client: kube::Client,
    timeout: Duration,
}

impl TaskResultWriter {
    /// Wraps a client.
    pub fn new(client: kube::Client, timeout: Duration) -> TaskResultWriter {
        TaskResultWriter { client, timeout }
    }

    /// Creates the task result, or makes an existing one identical (idempotent).
    pub async fn upsert(&self, result: &WorkflowTaskResult) -> Result<(), KubeError> {
        let obj: DynamicObject = serde_json::to_value(result)
            .and_then(serde_json::from_value)
            .map_err(|e| KubeError::Invalid(e.to_string()))?;
        let (ns, name) = (result.metadata.namespace.as_str(), result.metadata.name.as_str());
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &task_result_resource());
        let work = async {
            match api.create(&PostParams::default(), &obj).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    let patch = serde_json::json!({
                        "metadata": {"labels": result.metadata.labels},
                        "outputs": result.outputs,
                    });
                    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
                    Ok(())
                }
                Err(e) => Err(KubeError::from(e)),
            }
        };
        tokio::time::timeout(self.timeout, work).await.map_err(|_| KubeError::Timeout(self.timeout))?
    }
}
