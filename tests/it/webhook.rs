//! The webhook over real TLS: every fixture, HTTP/1.1 and HTTP/2, health, metrics, bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use crate::harness::*;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use stepcache::admission::{Admitter, Ports};
use stepcache::listener::{serve_https, Limits, NoDelayListener};
use stepcache::server::{self, AppState};

/// A running in-process webhook.
pub struct TestServer {
    /// HTTPS address.
    pub addr: SocketAddr,
    /// Plain-HTTP metrics address.
    pub metrics_addr: SocketAddr,
    /// Client trusting the test CA.
    pub client: reqwest::Client,
}

impl TestServer {
    /// `https://addr/path`.
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    /// POSTs a review and returns (status, body JSON).
    pub async fn post(&self, review: &Value) -> (u16, Value) {
        let r = self
            .client
            .post(self.url("/mutate"))
            .header("content-type", "application/json")
            .body(review.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Scrapes /metrics.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.metrics_addr)).await.unwrap().text().await.unwrap()
    }
}

/// Starts the webhook for `admitter` with certificates generated into `dir`.
pub async fn start(admitter: Admitter, dir: &Path, deadline: Duration, body_limit: usize) -> TestServer {
    start_with_limits(admitter, dir, deadline, body_limit, Limits::default()).await
}

/// Starts the webhook with the given connection limits, through the same accept loop as `serve`.
pub async fn start_with_limits(
    admitter: Admitter,
    dir: &Path,
    deadline: Duration,
    body_limit: usize,
    limits: Limits,
) -> TestServer {
    stepcache::cli::serve::install_crypto();
    let certs = dir.join("certs");
    stepcache::tls::generate(&certs, &["127.0.0.1".into(), "localhost".into()]).unwrap();
    let tls = stepcache::tls::load(&certs.join("tls.crt"), &certs.join("tls.key")).await.unwrap();
    let metrics = admitter.metrics.clone();
    let app = server::router(AppState { admitter, deadline }, body_limit);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_https(listener, tls, app, limits, std::future::pending(), Duration::from_secs(1)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(NoDelayListener(listener), server::metrics_router(metrics)).await.unwrap() });
    let client = crate::client::https_client(&certs);
    TestServer { addr, metrics_addr, client }
}

async fn default_server(dir: &Path) -> TestServer {
    let a = admitter(sqlite_store(dir).await, config(), Ports::default());
    start(a, dir, Duration::from_secs(4), server::DEFAULT_BODY_LIMIT).await
}

#[tokio::test]
async fn every_fixture_gets_an_allowed_response_with_its_uid_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let s = default_server(dir.path()).await;
    for name in all_admission_fixtures() {
        let review = fixture(&name);
        let (status, body) = s.post(&review).await;
        assert_eq!(status, 200, "{name}");
        assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(body["kind"], "AdmissionReview");
        assert_eq!(body["response"]["uid"], review["request"]["uid"], "{name}");
        assert_eq!(body["response"]["allowed"], true, "{name}");
        let has_patch = body["response"].get("patch").is_some();
        assert_eq!(has_patch, !name.contains(".ignore."), "{name}: step pods are marked, ignored pods untouched");
    }
}

#[tokio::test]
async fn http2_and_health_endpoints_work() {
    let dir = tempfile::tempdir().unwrap();
    let s = default_server(dir.path()).await;
    let r = s.client.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2, "ALPN negotiates h2");
    let r = s.client.get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h1 = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(dir.path().join("certs/ca.crt")).unwrap()).unwrap(),
        )
        .http1_only()
        .build()
        .unwrap();
    let r = h1
        .post(s.url("/mutate"))
        .header("content-type", "application/json")
        .body(fixture("v3.6-container-params.admission.json").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn plaintext_http_is_refused_on_the_webhook_port() {
    let dir = tempfile::tempdir().unwrap();
    let s = default_server(dir.path()).await;
    let r = reqwest::Client::new().get(format!("http://{}/healthz", s.addr)).send().await;
    assert!(r.is_err() || !r.unwrap().status().is_success());
}

#[tokio::test]
async fn metrics_count_decisions_and_latency() {
    let dir = tempfile::tempdir().unwrap();
    let s = default_server(dir.path()).await;
    s.post(&fixture("v3.6-container-params.admission.json")).await;
    s.post(&fixture("v3.6-agent-pod.ignore.admission.json")).await;
    s.post(&with_label(&fixture("v3.3-container-params.admission.json"), "stepcache.dev/enabled", "false")).await;
    let m = s.metrics().await;
    assert!(m.contains("stepcache_admission_requests_total{decision=\"miss\"} 1"), "{m}");
    assert!(m.contains("stepcache_admission_requests_total{decision=\"skipped\"} 1"), "{m}");
    assert!(m.contains("stepcache_admission_requests_total{decision=\"opted-out\"} 1"), "{m}");
    assert!(m.contains("stepcache_admission_duration_seconds_count 3"), "{m}");
    assert!(m.contains("stepcache_store_duration_seconds_count{op=\"lookup\"}"), "{m}");
}

#[tokio::test]
async fn bad_requests_get_specific_answers_and_never_hang() {
    let dir = tempfile::tempdir().unwrap();
    let a = admitter(sqlite_store(dir.path()).await, config(), Ports::default());
    let s = start(a, dir.path(), Duration::from_secs(4), 64 * 1024).await;
    let post = |body: Vec<u8>, ct: &'static str| {
        let c = s.client.clone();
        let url = s.url("/mutate");
        async move {
            let r =
                tokio::time::timeout(Duration::from_secs(10), c.post(url).header("content-type", ct).body(body).send())
                    .await
                    .expect("hung")
                    .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (st, b) = post(b"{not json".to_vec(), "application/json").await;
    assert_eq!((st, b["error"].as_str()), (400, Some("not_json")));
    let (st, b) = post(fixture("v3.6-container-params.admission.json").to_string().into_bytes(), "text/plain").await;
    assert_eq!((st, b["error"].as_str()), (415, Some("content_type")));
    let (st, b) = post(
        br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"x"}}"#.to_vec(),
        "application/json",
    )
    .await;
    assert_eq!((st, b["error"].as_str()), (400, Some("wrong_version")));
    let (st, b) = post(
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"operation":"CREATE"}}"#.to_vec(),
        "application/json",
    )
    .await;
    assert_eq!((st, b["error"].as_str()), (400, Some("missing_uid")));
    let (st, _) = post(vec![b' '; 100 * 1024], "application/json").await;
    assert_eq!(st, 413, "body over the limit");
    let secret = json!({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"s1","operation":"CREATE",
        "kind":{"group":"","version":"v1","kind":"Pod"},"object":{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}}});
    let (st, b) = post(secret.to_string().into_bytes(), "application/json").await;
    assert_eq!(st, 200);
    assert_eq!(b["response"]["allowed"], true);
    assert!(b["response"]["warnings"][0].as_str().unwrap().contains("not a Pod"));
    let mut broken = fixture("v3.6-container-params.admission.json");
    for e in broken["request"]["object"]["spec"]["initContainers"][0]["env"].as_array_mut().unwrap() {
        if e["name"] == "ARGO_TEMPLATE" {
            e["value"] = json!("{\"name\": \"x\", \"container\": ");
        }
    }
    let (st, b) = post(broken.to_string().into_bytes(), "application/json").await;
    assert_eq!(st, 200);
    assert_eq!(b["response"]["allowed"], true);
    assert!(b["response"].get("patch").is_none());
    assert!(b["response"]["warnings"][0].as_str().unwrap().contains("malformed"), "{b}");
}
