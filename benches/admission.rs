//! Micro-benchmarks of the admission path's pure parts: decoding an AdmissionReview, building the
//! hit patch and the miss mark, and encoding the response.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use stepcache::admission::decode::{decode, Subject};
use stepcache::admission::respond;
use stepcache::argo::template::{classify, Classification};
use stepcache::rewrite::{build_hit_patch, build_mark_patch, build_task_result, HitInfo, MarkInfo, RewriteConfig};
use stepcache::types::{EntryId, OutputParameter, StepOutputs};

const FIXTURE: &str = include_str!("../tests/fixtures/argo/v3.6-container-params.admission.json");

fn bench(c: &mut Criterion) {
    let body = FIXTURE.as_bytes();
    c.bench_function("decode_admission_review", |b| b.iter(|| decode(black_box(body)).unwrap()));
    let Subject::PodCreate(pod) = decode(body).unwrap().subject else { panic!("fixture") };
    let Classification::Step(step) = classify(&pod) else { panic!("fixture") };
    let km = stepcache::key::derive_key(&pod, &step, &Default::default(), Default::default()).unwrap();
    let outputs = StepOutputs {
        parameters: vec![OutputParameter {
            name: "row-count".into(),
            value: Some("150".into()),
            rest: Default::default(),
        }],
        ..Default::default()
    };
    let cfg = RewriteConfig::default();
    let limits = stepcache_core::hitpod::NamespaceLimits::default();
    let hit = HitInfo {
        entry_id: EntryId(42),
        key: &km.key,
        outputs: &outputs,
        source_workflow: "wf",
        source_node: "wf-1",
        source_finished_at: "2026-11-01T10:00:00Z".into(),
    };
    c.bench_function("build_hit_patch_and_task_result", |b| {
        b.iter(|| {
            let p = build_hit_patch(black_box(&pod), &step, &hit, &cfg, &limits);
            let t = build_task_result(&step, &outputs);
            (p, t)
        })
    });
    let mark = MarkInfo {
        key: &km.key,
        mark: "sig",
        staleness_db: -1,
        seed: "",
        decision: stepcache::decision::Decision::Miss,
        miss_reason: Some("no viable entry".into()),
    };
    c.bench_function("build_mark_patch", |b| b.iter(|| build_mark_patch(black_box(&pod), &mark)));
    let patch = build_hit_patch(&pod, &step, &hit, &cfg, &limits).unwrap();
    let encode = |p: &[json_patch::PatchOperation]| serde_json::to_vec(&respond::allow("uid", p, &[])).unwrap();
    c.bench_function("encode_hit_response", |b| b.iter(|| encode(black_box(&patch))));
    let mpatch = build_mark_patch(&pod, &mark);
    c.bench_function("encode_miss_response", |b| b.iter(|| encode(black_box(&mpatch))));
    // kube-core's AdmissionResponse for the same hit: its `patch: Vec<u8>` serializes as a JSON
    // array of numbers.
    let review: kube::core::admission::AdmissionReview<kube::core::DynamicObject> =
        serde_json::from_slice(body).unwrap();
    let req: kube::core::admission::AdmissionRequest<kube::core::DynamicObject> = review.try_into().unwrap();
    let kube_encode = |p: &[json_patch::PatchOperation]| {
        let r = kube::core::admission::AdmissionResponse::from(&req).with_patch(json_patch::Patch(p.to_vec())).unwrap();
        serde_json::to_vec(&r.into_review()).unwrap()
    };
    eprintln!("hit response bytes: stepcache {} / kube-core {}", encode(&patch).len(), kube_encode(&patch).len());
    c.bench_function("encode_hit_response_kube_core", |b| b.iter(|| kube_encode(black_box(&patch))));
}

criterion_group!(benches, bench);
criterion_main!(benches);
