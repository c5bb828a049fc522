//! Recorder throughput: succeeded, marked step pods recorded through the real recorder.

use crate::args::BenchArgs;
use crate::reviews::bodies;
use anyhow::{anyhow, bail};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stepcache::argo::template::{classify, Classification};
use stepcache::store::{Store, StoreOptions};

/// Recorder throughput: `n` distinct succeeded, marked pods recorded 16 at a time.
pub async fn measure_recording(args: &BenchArgs, n: usize) -> anyhow::Result<serde_json::Value> {
    use stepcache::recorder::assess::{OutputSources, RecordSettings};
    use stepcache::recorder::{Attempt, Recorder};
    let db = args.database_url.clone().ok_or_else(|| anyhow!("--record needs --database-url"))?;
    let store = Store::connect(&db, StoreOptions { timeout: Duration::from_secs(60), max_connections: 16 }).await?;
    store.migrate().await?;
    let signer = stepcache::mark::Signer::new(b"bench-signing-key-0123456789abcdef").map_err(|e| anyhow!("{e}"))?;
    let policy = stepcache::policy::AdminPolicy::default();
    let admitter = stepcache::admission::Admitter {
        config: Arc::new(stepcache::admission::AdmitConfig { admin: policy, ..Default::default() }),
        store: store.clone(),
        signer: signer.clone(),
        ports: stepcache::admission::Ports::offline(),
        metrics: Arc::new(stepcache::metrics::Metrics::new()),
    };
    // Admit (miss → marked pod), then turn each into the pod and task result of a success.
    let prefix = format!("rec{}", jiff::Timestamp::now().as_millisecond());
    let mut work = Vec::with_capacity(n);
    for (i, b) in bodies(n, &prefix)?.into_iter().enumerate() {
        let d = stepcache::admission::decode::decode(&serde_json::to_vec(&b)?).map_err(|e| anyhow!("{e}"))?;
        let out = admitter.admit(&d, jiff::Timestamp::now()).await;
        let mut pod = b.pointer("/request/object").cloned().unwrap_or_default();
        let patch: Vec<json_patch::PatchOperation> = serde_json::from_value(serde_json::to_value(&out.explain.patch)?)?;
        json_patch::patch(&mut pod, &patch)?;
        let names: Vec<String> = pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .map(|cs| cs.iter().filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_owned)).collect())
            .unwrap_or_default();
        let statuses: Vec<Value> = names.iter().map(|c| serde_json::json!({"name": c, "ready": false, "restartCount": 0, "image": "i",
            "imageID": "docker.io/i@sha256:00", "state": {"terminated": {"exitCode": 0, "startedAt": "2026-11-01T10:00:00Z", "finishedAt": "2026-11-01T10:01:00Z"}}})).collect();
        if let Some(o) = pod.as_object_mut() {
            o.insert("status".into(), serde_json::json!({"phase": "Succeeded", "startTime": "2026-11-01T10:00:00Z", "containerStatuses": statuses}));
        }
        if let Some(m) = pod.pointer_mut("/metadata").and_then(Value::as_object_mut) {
            m.insert("uid".into(), Value::String(format!("{prefix}-uid-{i}")));
        }
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(pod)?;
        let Classification::Step(step) = classify(&pod) else { bail!("fixture is not a step pod") };
        let declared = step.template.declared_outputs();
        let params: Vec<Value> =
            declared.parameters.iter().map(|p| serde_json::json!({"name": p, "value": i.to_string()})).collect();
        let arts: Vec<Value> = declared
            .artifacts
            .iter()
            .map(|(a, _)| serde_json::json!({"name": a, "s3": {"key": format!("{prefix}/{i}/{a}.tgz")}}))
            .collect();
        let outputs = serde_json::json!({"parameters": params, "artifacts": arts});
        work.push((pod, outputs));
    }
    let recorder = Recorder {
        store,
        signer,
        settings: Arc::new(RecordSettings { scope: Default::default(), default_expiry: None }),
        metrics: Arc::new(stepcache::metrics::Metrics::new()),
        tags: Default::default(),
        configmaps: None,
        secret_digests: None,
    };
    let sem = Arc::new(tokio::sync::Semaphore::new(16));
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (pod, outputs) in work {
        let r = recorder.clone();
        let permit = sem.clone().acquire_owned().await?;
        tasks.spawn(async move {
            let node = pod.metadata.annotations.as_ref().and_then(|a| a.get(stepcache::argo::labels::NODE_ID_ANNOTATION).cloned()).unwrap_or_default();
            let wf = pod.metadata.labels.as_ref().and_then(|l| l.get(stepcache::argo::labels::WORKFLOW_LABEL).cloned()).unwrap_or_default();
            let owners: Vec<Value> = pod.metadata.owner_references.iter().flatten().map(|o| serde_json::json!({"apiVersion": o.api_version, "kind": o.kind, "name": o.name, "uid": o.uid})).collect();
            let tr = serde_json::json!({"metadata": {"name": node, "namespace": pod.metadata.namespace, "ownerReferences": owners,
                "labels": {stepcache::argo::labels::REPORT_OUTPUTS_COMPLETED: "true", stepcache::argo::labels::WORKFLOW_LABEL: wf}}, "outputs": outputs});
            let a = r.record(&pod, &OutputSources { task_result: Some(&tr), workflow: None }, jiff::Timestamp::now()).await;
            drop(permit);
            matches!(a, Attempt::Recorded(_))
        });
    }
    let mut ok = 0usize;
    while let Some(j) = tasks.join_next().await {
        if matches!(j, Ok(true)) {
            ok += 1;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    Ok(serde_json::json!({"recorded": ok, "attempted": n, "seconds": secs, "per_second": ok as f64 / secs}))
}
