//! Bench (run on demand, never timed as a test): what the webhook adds to pod creation through
//! a real kube-apiserver. Pods are created round-robin in three namespaces — no webhook,
//! `stepcache serve --noop` (TLS/HTTP/JSON only) and `stepcache serve` (real decisions; every
//! pod a miss, so each pays the store lookup and the mark) — and p50/p99 and their ratios to the
//! no-webhook baseline are printed.
//!
//! `cargo test --release --test it cluster_latency -- --ignored --nocapture` (`PODS=N`, default 200).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use crate::harness::{fixture, rerun};
use crate::kit::{self, pod_object, register, unregister, wait_called, webhook_entry, Serve, ServeOptions};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use std::io::Write;
use std::time::{Duration, Instant};

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a bench: run with --ignored --nocapture"]
async fn pod_create_latency_with_and_without_the_webhook() {
    let Some(kit) = kit::shared() else { return };
    let n: usize = std::env::var("PODS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let client = kit.client().await;
    let review = fixture("v3.6-container-params.admission.json");
    let mut setups = Vec::new();
    for (name, args) in [("none", None), ("noop", Some(vec!["--noop".to_owned()])), ("stepcache", Some(vec![]))] {
        let ns = kit.namespace(&client, &format!("latency-{name}"), &[]).await;
        let serve = match args {
            None => None,
            Some(args) => {
                let serve = Serve::start(kit, ServeOptions { args, ..Default::default() }).await;
                register(&client, kit, &format!("stepcache-{ns}"), webhook_entry(&[&ns]), &serve.url()).await;
                wait_called(&client, &ns, &pod_object(&rerun(&review, "probe"), &ns), &serve).await;
                Some(serve)
            }
        };
        setups.push((name, ns, serve, Vec::with_capacity(n)));
    }
    for i in 0..n {
        for (_, ns, _, samples) in setups.iter_mut() {
            let pod: Pod = serde_json::from_value(pod_object(&rerun(&review, &format!("r{i}")), ns)).unwrap();
            let api: Api<Pod> = Api::namespaced(client.clone(), ns);
            let t = Instant::now();
            api.create(&PostParams::default(), &pod).await.unwrap();
            samples.push(t.elapsed());
        }
    }
    let mut out = format!("\npod create through kube-apiserver, {n} pods per setup (round-robin)\n");
    let mut base = (Duration::ZERO, Duration::ZERO);
    for (name, ns, serve, samples) in setups.iter_mut() {
        samples.sort();
        let (p50, p99) = (quantile(samples, 0.5), quantile(samples, 0.99));
        if *name == "none" {
            base = (p50, p99);
        }
        out.push_str(&format!(
            "{name:>10}: p50 {:>7.2} ms  p99 {:>7.2} ms  (p50 x{:.2}, p99 x{:.2} the no-webhook baseline)\n",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            p50.as_secs_f64() / base.0.as_secs_f64(),
            p99.as_secs_f64() / base.1.as_secs_f64(),
        ));
        if serve.is_some() {
            unregister(&client, &format!("stepcache-{ns}")).await;
        }
    }
    let _ = writeln!(std::io::stderr(), "{out}");
    assert!(setups.iter().all(|s| s.3.len() == n));
}
