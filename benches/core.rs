//! Micro-benchmarks of the pure decision core on the admission path: decoding a pod from an
//! AdmissionReview, classifying it (template extraction and parsing), and deriving its key,
//! for a typical v3.6 pod, a ≤3.5 pod (template on every container) and a synthetic script
//! pod whose template carries 64 KiB of source.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use criterion::{criterion_group, criterion_main, Criterion};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};
use std::hint::black_box;
use stepcache::admission::decode::{decode, Subject};
use stepcache::argo::template::{classify, Classification, StepPod};
use stepcache::key::{derive_key, Scope};
use stepcache::types::CacheSeed;

const V36: &str = include_str!("../tests/fixtures/argo/v3.6-container-params.admission.json");
const V35: &str = include_str!("../tests/fixtures/argo/v3.5-artifacts-s3.admission.json");
const V37_SCRIPT: &str = include_str!("../tests/fixtures/argo/v3.7-script.admission.json");

/// The v3.7 script review with a 64 KiB `script.source` in its `ARGO_TEMPLATE`.
fn script_64k_review() -> String {
    let mut review: Value = serde_json::from_str(V37_SCRIPT).unwrap();
    let line = "print('stepcache synthetic benchmark line ....................')\n";
    let source: String = line.repeat(64 * 1024 / line.len() + 1);
    let source = &source[..64 * 1024];
    for e in review["request"]["object"]["spec"]["initContainers"][0]["env"].as_array_mut().unwrap() {
        if e["name"] == "ARGO_TEMPLATE" {
            let mut t: Value = serde_json::from_str(e["value"].as_str().unwrap()).unwrap();
            t["script"]["source"] = json!(source);
            e["value"] = json!(t.to_string());
        }
    }
    review.to_string()
}

fn pod_of(body: &[u8]) -> Pod {
    match decode(body).unwrap().subject {
        Subject::PodCreate(pod) => *pod,
        _ => panic!("fixture is not a pod create"),
    }
}

fn step_of(pod: &Pod) -> StepPod {
    match classify(pod) {
        Classification::Step(s) => *s,
        other => panic!("fixture is not a step: {other:?}"),
    }
}

fn bench(c: &mut Criterion) {
    let script_64k = script_64k_review();
    let cases: [(&str, &[u8]); 3] = [
        ("v3.6_container", V36.as_bytes()),
        ("v3.5_artifacts_all_containers", V35.as_bytes()),
        ("script_64KiB_source", script_64k.as_bytes()),
    ];
    let seed = CacheSeed::default();
    for (name, body) in cases {
        let pod = pod_of(body);
        let step = step_of(&pod);
        c.bench_function(&format!("decode_review/{name}"), |b| b.iter(|| decode(black_box(body)).unwrap()));
        c.bench_function(&format!("classify/{name}"), |b| b.iter(|| classify(black_box(&pod))));
        c.bench_function(&format!("derive_key/{name}"), |b| {
            b.iter(|| derive_key(black_box(&pod), &step, &seed, Scope::Namespace).unwrap())
        });
        c.bench_function(&format!("decode_classify_key/{name}"), |b| {
            b.iter(|| {
                let pod = pod_of(black_box(body));
                let step = step_of(&pod);
                derive_key(&pod, &step, &seed, Scope::Namespace).unwrap()
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
