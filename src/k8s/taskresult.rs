//! Writing the WorkflowTaskResult of a cache hit: create it with a proof that stepcache wrote it
//! (an HMAC over its namespace and name in `stepcache.dev/task-result-proof`); on AlreadyExists,
//! update it only when the existing object carries that proof (the API server may call the webhook
//! twice; the controller may retry a pod). A task result stepcache did not write (Argo's wait
//! container's, a user's) is left alone: the hit is not delivered and the step runs.

use super::{task_result_resource, KubeError};
use crate::mark::Signer;
use crate::rewrite::WorkflowTaskResult;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use std::time::Duration;
use stepcache_core::argo::labels::TASK_RESULT_PROOF;

/// Writes task results with a bound on each call.
#[derive(Clone)]
pub struct TaskResultWriter {
    client: kube::Client,
    timeout: Duration,
    signer: Signer,
}

/// The signed payload of a task result's proof: domain-separated from latch tokens (JSON).
fn proof_payload(namespace: &str, name: &str) -> Vec<u8> {
    format!("stepcache-task-result\0{namespace}\0{name}").into_bytes()
}

/// The proof stepcache puts on the task results it writes.
pub fn proof(signer: &Signer, namespace: &str, name: &str) -> String {
    signer.sign_token(&proof_payload(namespace, name))
}

/// True when `obj` carries a proof that stepcache (with this signing key) wrote it.
pub fn written_by_stepcache(signer: &Signer, obj: &DynamicObject, namespace: &str, name: &str) -> bool {
    obj.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TASK_RESULT_PROOF))
        .and_then(|t| signer.verify_token(t).ok())
        .is_some_and(|payload| payload == proof_payload(namespace, name))
}

impl TaskResultWriter {
    /// Wraps a client; `signer` proves which task results are stepcache's own.
    pub fn new(client: kube::Client, timeout: Duration, signer: Signer) -> TaskResultWriter {
        TaskResultWriter { client, timeout, signer }
    }

    /// Creates the task result, or makes stepcache's own existing one identical (idempotent);
    /// an existing one stepcache did not write is left alone ([`KubeError::NotOurs`]).
    pub async fn upsert(&self, result: &WorkflowTaskResult) -> Result<(), KubeError> {
        let mut obj: DynamicObject = serde_json::to_value(result)
            .and_then(serde_json::from_value)
            .map_err(|e| KubeError::Invalid(e.to_string()))?;
        let (ns, name) = (result.metadata.namespace.as_str(), result.metadata.name.as_str());
        obj.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(TASK_RESULT_PROOF.to_owned(), proof(&self.signer, ns, name));
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &task_result_resource());
        let work = async {
            match api.create(&PostParams::default(), &obj).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    let existing = api.get(name).await?;
                    if !written_by_stepcache(&self.signer, &existing, ns, name) {
                        return Err(KubeError::NotOurs(format!("WorkflowTaskResult {ns}/{name}")));
                    }
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
