//! The hidden cost of artifact verification: hit-path latency (decode → lookup → checks →
//! patch, in process, SQLite store) with `--verify-artifacts` against a local S3-compatible
//! server, as a ratio to the same hit without it. Two checked variants: every hit asks the
//! server (cache TTL 0, the worst case) and answers reused for 30 s (the default).
//!
//! Run: `cargo bench --bench integrity` (release build). The S3 server is
//! `$STEPCACHE_S3_ENDPOINT` (host:port of any S3-compatible server accepting anonymous bucket
//! creation, e.g. moto) or, when unset, the `moto_server` the integration tests install under
//! `$STEPCACHE_TOOLS_DIR` (default `~/.cache/stepcache/tools/moto-venv`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use futures::future::BoxFuture;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stepcache::admission::{AdmitConfig, Admitter, Ports, SideEffects};
use stepcache::integrity::artifacts::SecretKey;
use stepcache::integrity::check::{ArtifactChecker, CheckConfig, Credentials, HttpArtifacts};
use stepcache::integrity::sigv4;
use stepcache::metrics::Metrics;
use stepcache::store::{Execution, Store, StoreOptions};
use stepcache::types::{CacheKey, Namespace, StepOutputs};

const FIXTURE: &str = include_str!("../tests/fixtures/argo/v3.5-artifacts-s3.admission.json");
const ROUNDS: usize = 10;
const PER_ROUND: usize = 300;

fn signed(http: &reqwest::Client, endpoint: &str, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    let path = sigv4::encode_path(&format!("/{path}"));
    let amz_date = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ").to_string();
    let headers = [("host", endpoint), ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"), ("x-amz-date", amz_date.as_str())];
    let req = sigv4::Request {
        method: method.as_str(),
        path: &path,
        headers: &headers,
        amz_date: &amz_date,
        region: "us-east-1",
        service: "s3",
    };
    let auth = sigv4::authorization(&req, "bench", "bench-secret");
    http.request(method, format!("http://{endpoint}{path}"))
        .header("x-amz-date", &amz_date)
        .header("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
        .header("authorization", auth)
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((p / 100.0) * (v.len() as f64 - 1.0)).round() as usize;
    v[i.min(v.len() - 1)]
}

fn admitter(store: &Store, checker: Option<ArtifactChecker>) -> Admitter {
    Admitter {
        config: Arc::new(AdmitConfig::default()),
        store: store.clone(),
        signer: stepcache::mark::Signer::new(b"bench-signing-key-0123456789abcdef").unwrap(),
        ports: Ports { artifacts: checker, effects: SideEffects::background(), ..Ports::offline() },
        metrics: Arc::new(Metrics::new()),
    }
}

/// The repository Secret's values (read once and cached by `serve`, so not part of the cost).
struct Keys;

impl Credentials for Keys {
    fn value<'a>(&'a self, _: &'a str, key: &'a SecretKey) -> BoxFuture<'a, Result<Option<String>, String>> {
        Box::pin(async move { Ok(Some(format!("bench-{}", key.key))) })
    }
}

fn checker(endpoint_ttl: Duration) -> ArtifactChecker {
    let budget = Duration::from_millis(500);
    let http = HttpArtifacts::new(Some(Arc::new(Keys)), budget, None).unwrap();
    ArtifactChecker::new(Arc::new(http), CheckConfig { budget, cache_ttl: endpoint_ttl }, Arc::new(Metrics::new()))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut server = None;
    let endpoint = match std::env::var("STEPCACHE_S3_ENDPOINT") {
        Ok(e) => e,
        Err(_) => {
            let tools = std::env::var_os("STEPCACHE_TOOLS_DIR").map(PathBuf::from).unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/stepcache/tools")
            });
            let bin = tools.join("moto-venv/bin/moto_server");
            assert!(
                bin.is_file(),
                "no {} (run `cargo test --test it integrity::` once, or set STEPCACHE_S3_ENDPOINT)",
                bin.display()
            );
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            server = Some(
                Command::new(bin)
                    .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            );
            format!("127.0.0.1:{port}")
        }
    };
    let http = reqwest::Client::new();
    let t = Instant::now();
    while http.get(format!("http://{endpoint}/")).send().await.is_err() {
        assert!(t.elapsed() < Duration::from_secs(30), "S3 server at {endpoint} not answering");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The fixture's repository (credentials from its Secret) at the local server.
    let review = FIXTURE.replace("minio.argo.svc:9000", &endpoint);
    let body = review.as_bytes().to_vec();
    let key = "bench/features.tgz";
    assert!(signed(&http, &endpoint, reqwest::Method::PUT, "my-bucket").send().await.unwrap().status().is_success());
    assert!(signed(&http, &endpoint, reqwest::Method::PUT, &format!("my-bucket/{key}"))
        .body("x")
        .send()
        .await
        .unwrap()
        .status()
        .is_success());

    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("b.db").display()), StoreOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let plain = admitter(&store, None);
    let d = stepcache::admission::decode::decode(&body).unwrap();
    let first = plain.admit(&d, jiff::Timestamp::now()).await;
    let cache_key = CacheKey::parse(first.explain.key.as_deref().unwrap()).unwrap();
    let outputs: StepOutputs = serde_json::from_value(serde_json::json!({
        "parameters": [{"name": "n-features", "value": "128"}],
        "artifacts": [{"name": "features", "path": "/data/out/features.parquet", "s3": {"key": key}}]
    }))
    .unwrap();
    let now = jiff::Timestamp::now();
    store
        .record(
            &Execution {
                namespace: Namespace::parse("ml-team").unwrap(),
                key: cache_key,
                seed: Default::default(),
                staleness: stepcache::types::Staleness::Unbounded,
                outputs,
                material: serde_json::json!({}),
                template_name: "featurize".into(),
                workflow_name: "bench".into(),
                workflow_uid: "bench-uid".into(),
                node_id: "bench-node".into(),
                pod_name: "bench-pod".into(),
                pod_uid: "bench-pod-uid".into(),
                image_digests: Default::default(),
                images: Default::default(),
                started_at: now,
                finished_at: now,
                expires_at: None,
            },
            now,
        )
        .await
        .unwrap();

    let variants = [
        ("hit, no artifact check", admitter(&store, None)),
        ("hit, check every time (TTL 0)", admitter(&store, Some(checker(Duration::ZERO)))),
        ("hit, check cached (TTL 30s)", admitter(&store, Some(checker(Duration::from_secs(30))))),
    ];
    let mut lat: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for round in 0..=ROUNDS {
        for (i, (name, a)) in variants.iter().enumerate() {
            for _ in 0..PER_ROUND {
                let t = Instant::now();
                let d = stepcache::admission::decode::decode(&body).unwrap();
                let o = a.admit(&d, jiff::Timestamp::now()).await;
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                assert_eq!(o.explain.decision.as_str(), "hit", "{name}: {}", o.explain.reason);
                if round > 0 {
                    lat[i].push(ms);
                }
            }
        }
    }
    let mut base = lat[0].clone();
    let (b50, b99) = (percentile(&mut base, 50.0), percentile(&mut base, 99.0));
    println!("{:<32} {:>9} {:>9} {:>10} {:>10}", "variant", "p50 ms", "p99 ms", "p50 ratio", "p99 ratio");
    for (i, (name, _)) in variants.iter().enumerate() {
        let mut v = lat[i].clone();
        let (p50, p99) = (percentile(&mut v, 50.0), percentile(&mut v, 99.0));
        println!("{name:<32} {p50:>9.3} {p99:>9.3} {:>10.2} {:>10.2}", p50 / b50, p99 / b99);
    }
    println!("({} hits per variant, interleaved in {ROUNDS} rounds; S3 server {endpoint})", ROUNDS * PER_ROUND);
    if let Some(mut s) = server {
        let _ = s.kill();
        let _ = s.wait();
    }
}
