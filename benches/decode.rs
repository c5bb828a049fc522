//! What decoding an AdmissionReview costs, per KiB, against serde_json's raw parse of the same
//! bytes into a `Value` (the floor any JSON webhook pays) in the same run: stepcache's decode
//! (one typed parse straight into kube's `AdmissionRequest<Pod>`), and the two-step decode it
//! replaced (a `Value`, then the object converted into a `Pod`). For a typical v3.6 pod, a ≤3.5
//! pod (template on every container) and a script pod carrying 64 KiB of source.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};
use std::hint::black_box;
use stepcache::admission::decode::{decode, Subject};

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

/// The decode stepcache used before: a `Value`, then the object cloned into a `Pod`.
fn value_then_pod(body: &[u8]) -> Option<Pod> {
    let v: Value = serde_json::from_slice(body).ok()?;
    serde_json::from_value(v.get("request")?.get("object")?.clone()).ok()
}

fn bench(c: &mut Criterion) {
    let script_64k = script_64k_review();
    let cases: [(&str, &[u8]); 3] = [
        ("v3.6_container", V36.as_bytes()),
        ("v3.5_artifacts_all_containers", V35.as_bytes()),
        ("script_64KiB_source", script_64k.as_bytes()),
    ];
    for (name, body) in cases {
        assert!(matches!(decode(body).unwrap().subject, Subject::PodCreate(_)), "{name} is a pod create");
        assert!(value_then_pod(body).is_some(), "{name} decodes the old way");
        let mut g = c.benchmark_group(format!("decode/{name}"));
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function("serde_json_value_floor", |b| {
            b.iter(|| serde_json::from_slice::<Value>(black_box(body)).unwrap())
        });
        g.bench_function("stepcache_typed", |b| b.iter(|| decode(black_box(body)).unwrap()));
        g.bench_function("value_then_pod", |b| b.iter(|| value_then_pod(black_box(body)).unwrap()));
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
