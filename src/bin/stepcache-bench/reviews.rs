//! The requests the load generator sends: real Argo 3.3 AdmissionReviews varied per request so
//! keys differ, and store entries that make chosen ones hits. The I/O tests compile this file
//! too (`tests/it/client.rs`), so they give a webhook hits the way the load tool does.

use anyhow::{anyhow, bail};
use serde_json::Value;
use stepcache::argo::template::{classify, Classification};
use stepcache::store::{Execution, Store};
use stepcache::types::{OutputParameter, StepOutputs};

const FIXTURE: &str =
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/argo/v3.3-container-params.admission.json"));

/// Builds `n` distinct admission bodies (distinct uids and keys) from a real Argo 3.3 fixture.
pub fn bodies(n: usize, prefix: &str) -> anyhow::Result<Vec<Value>> {
    let base: Value = serde_json::from_str(FIXTURE)?;
    (0..n)
        .map(|i| {
            let mut v = base.clone();
            let uid = format!("{prefix}-{i}");
            *v.pointer_mut("/request/uid").ok_or_else(|| anyhow!("fixture has no uid"))? = Value::String(uid);
            let containers = v
                .pointer_mut("/request/object/spec/containers")
                .and_then(Value::as_array_mut)
                .ok_or_else(|| anyhow!("fixture has no containers"))?;
            for c in containers.iter_mut() {
                if c.get("name").and_then(Value::as_str) == Some("main") {
                    if let Some(args) = c.get_mut("args").and_then(Value::as_array_mut) {
                        args.push(Value::String(format!("--bench-variant={prefix}-{i}")));
                    }
                }
            }
            Ok(v)
        })
        .collect()
}

/// Records an entry for each body so that admitting it again is a hit.
pub async fn record_hits(store: &Store, bodies: &[Value], now: jiff::Timestamp) -> anyhow::Result<()> {
    for (i, b) in bodies.iter().enumerate() {
        let pod = stepcache::cli::pod_from_json(&serde_json::to_vec(b)?)?;
        let Classification::Step(step) = classify(&pod) else { bail!("fixture is not a step pod") };
        let km = stepcache::key::derive_key(&pod, &step, &Default::default(), stepcache::key::Scope::Namespace)
            .map_err(|e| anyhow!("{e}"))?;
        let declared = step.template.declared_outputs();
        let outputs = StepOutputs {
            parameters: declared
                .parameters
                .iter()
                .map(|p| OutputParameter { name: p.clone(), value: Some("42".into()), rest: Default::default() })
                .collect(),
            ..Default::default()
        };
        let finished = now.checked_sub(jiff::SignedDuration::from_secs(60)).unwrap_or(now);
        store
            .record(
                &Execution {
                    namespace: step.namespace.clone(),
                    key: km.key,
                    seed: Default::default(),
                    staleness: stepcache::types::Staleness::Unbounded,
                    outputs,
                    material: km.material,
                    template_name: step.template.name().to_owned(),
                    workflow_name: step.workflow_name.clone(),
                    workflow_uid: step.workflow_uid.clone().unwrap_or_default(),
                    node_id: step.node_id.clone(),
                    pod_name: format!("bench-{i}"),
                    pod_uid: format!("bench-hit-{i}"),
                    image_digests: Default::default(),
                    images: Default::default(),
                    started_at: finished.checked_sub(jiff::SignedDuration::from_secs(120)).unwrap_or(finished),
                    finished_at: finished,
                    expires_at: None,
                },
                now,
            )
            .await?;
    }
    Ok(())
}
