//! What the I/O tests need to talk to a webhook and to give it hits: an HTTPS client trusting
//! the generated test CA, distinct Argo AdmissionReviews, and store entries that turn a review
//! into a hit (recorded directly, without running the step).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use crate::harness::fixture;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use stepcache::argo::template::{classify, Classification};
use stepcache::store::{Execution, Store};
use stepcache::types::{OutputParameter, StepOutputs};

/// An HTTPS client that trusts the CA in `certs/ca.crt` (as written by `stepcache::tls::generate`).
pub fn https_client(certs: &Path) -> reqwest::Client {
    let ca = std::fs::read(certs.join("ca.crt")).unwrap();
    reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// `n` distinct AdmissionReviews of the Argo 3.3 step fixture: each has its own request uid and
/// one more `main` argument, so each has its own cache key.
pub fn reviews(n: usize, prefix: &str) -> Vec<Value> {
    let base = fixture("v3.3-container-params.admission.json");
    (0..n)
        .map(|i| {
            let mut v = base.clone();
            v["request"]["uid"] = Value::String(format!("{prefix}-{i}"));
            let containers = v["request"]["object"]["spec"]["containers"].as_array_mut().unwrap();
            let main = containers.iter_mut().find(|c| c["name"] == "main").unwrap();
            main["args"].as_array_mut().unwrap().push(Value::String(format!("--variant={prefix}-{i}")));
            v
        })
        .collect()
}

/// Records an entry (the step's declared parameters all `"42"`, finished a minute before `now`)
/// for each review's step, so admitting the review again is a hit.
pub async fn record_hits(store: &Store, reviews: &[Value], now: jiff::Timestamp) {
    for (i, review) in reviews.iter().enumerate() {
        let pod = stepcache::cli::pod_from_json(&serde_json::to_vec(review).unwrap()).unwrap();
        let Classification::Step(step) = classify(&pod) else { panic!("the review is not of a step pod") };
        let km =
            stepcache::key::derive_key(&pod, &step, &Default::default(), stepcache::key::Scope::Namespace).unwrap();
        let outputs = StepOutputs {
            parameters: step
                .template
                .declared_outputs()
                .parameters
                .iter()
                .map(|p| OutputParameter { name: p.clone(), value: Some("42".into()), rest: Default::default() })
                .collect(),
            ..Default::default()
        };
        let finished = now.checked_sub(jiff::SignedDuration::from_secs(60)).unwrap();
        let entry = Execution {
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
            pod_name: format!("recorded-{i}"),
            pod_uid: format!("recorded-uid-{i}"),
            image_digests: Default::default(),
            images: Default::default(),
            started_at: finished.checked_sub(jiff::SignedDuration::from_secs(120)).unwrap(),
            finished_at: finished,
            expires_at: None,
        };
        store.record(&entry, now).await.unwrap();
    }
}
