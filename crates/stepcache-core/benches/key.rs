//! Key derivation on the admission path, with its floor beside it: classifying a pod (template
//! extraction and parsing) and deriving its key for a typical v3.6 pod, a ≤3.5 pod (template on
//! every container) and a script pod whose template carries 64 KiB of source; and, for the
//! 64 KiB case, the two parts no derivation can skip — writing the canonical text and SHA-256
//! over it — so the ratio to the floor is read off one run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::hint::black_box;
use stepcache_core::argo::template::{classify, Classification, StepPod};
use stepcache_core::key::{canonical_json, derive_key, Scope};
use stepcache_core::types::CacheSeed;

const V36: &str = include_str!("../../../tests/fixtures/argo/v3.6-container-params.admission.json");
const V35: &str = include_str!("../../../tests/fixtures/argo/v3.5-artifacts-s3.admission.json");
const V37_SCRIPT: &str = include_str!("../../../tests/fixtures/argo/v3.7-script.admission.json");

/// 64 KiB of Python source, as a script step would carry it.
fn source_64k() -> String {
    let line = "print('stepcache synthetic benchmark line ....................')\n";
    let source: String = line.repeat(64 * 1024 / line.len() + 1);
    source[..64 * 1024].to_owned()
}

/// The v3.7 script pod with a 64 KiB `script.source` in its `ARGO_TEMPLATE`.
fn script_64k_pod() -> Pod {
    let mut review: Value = serde_json::from_str(V37_SCRIPT).unwrap();
    for e in review["request"]["object"]["spec"]["initContainers"][0]["env"].as_array_mut().unwrap() {
        if e["name"] == "ARGO_TEMPLATE" {
            let mut t: Value = serde_json::from_str(e["value"].as_str().unwrap()).unwrap();
            t["script"]["source"] = json!(source_64k());
            e["value"] = json!(t.to_string());
        }
    }
    serde_json::from_value(review["request"]["object"].take()).unwrap()
}

fn pod_of(review: &str) -> Pod {
    let mut v: Value = serde_json::from_str(review).unwrap();
    serde_json::from_value(v["request"]["object"].take()).unwrap()
}

fn step_of(pod: &Pod) -> StepPod {
    match classify(pod) {
        Classification::Step(s) => *s,
        other => panic!("fixture is not a step: {other:?}"),
    }
}

fn bench(c: &mut Criterion) {
    let cases = [
        ("v3.6_container", pod_of(V36)),
        ("v3.5_artifacts_all_containers", pod_of(V35)),
        ("script_64KiB_source", script_64k_pod()),
    ];
    let seed = CacheSeed::default();
    for (name, pod) in &cases {
        let step = step_of(pod);
        c.bench_function(&format!("classify/{name}"), |b| b.iter(|| classify(black_box(pod))));
        c.bench_function(&format!("derive_key/{name}"), |b| {
            b.iter(|| derive_key(black_box(pod), &step, &seed, Scope::Namespace).unwrap())
        });
    }
    // The floor of the 64 KiB case: its canonical text, and SHA-256 over that text.
    let (_, pod) = &cases[2];
    let material = derive_key(pod, &step_of(pod), &seed, Scope::Namespace).unwrap().material;
    let text = canonical_json(&material);
    c.bench_function("floor/canonical_json_script_64KiB", |b| b.iter(|| canonical_json(black_box(&material))));
    c.bench_function("floor/sha256_script_64KiB_text", |b| b.iter(|| Sha256::digest(black_box(text.as_bytes()))));
}

criterion_group!(benches, bench);
criterion_main!(benches);
