//! Integrity checks on the hit path, end to end through the admitter: output artifacts checked
//! against a real S3-compatible server ([`crate::s3server`]: present → hit, deleted → miss and
//! the entry withdrawn, server down or hanging → miss within the budget), and image tags that
//! moved since the entry ran (`image-moved`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use crate::harness::*;
use crate::hitpath::run_and_record;
use crate::s3server::S3Server;
use futures::future::BoxFuture;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stepcache::admission::{AdmitConfig, Admitter, Ports};
use stepcache::integrity::artifacts::SecretKey;
use stepcache::integrity::check::{ArtifactChecker, CheckConfig, Credentials, HttpArtifacts};
use stepcache::metrics::Metrics;
use stepcache::types::EntryId;

const ARTIFACTS: &str = "v3.5-artifacts-s3.admission.json";
/// Endpoint and bucket of the fixture's artifact repository.
const FIXTURE_ENDPOINT: &str = "minio.argo.svc:9000";
const BUCKET: &str = "my-bucket";

/// The fixture's Secret, as the API would return it (the adapter under test is the HTTP side).
struct FixtureSecret;

impl Credentials for FixtureSecret {
    fn value<'a>(&'a self, namespace: &'a str, key: &'a SecretKey) -> BoxFuture<'a, Result<Option<String>, String>> {
        Box::pin(async move {
            assert_eq!(key.name, "my-minio-cred", "the repository's Secret is asked for");
            assert_eq!(namespace, "ml-team");
            Ok(match key.key.as_str() {
                "accesskey" => Some("testing-access".to_owned()),
                "secretkey" => Some("testing-secret".to_owned()),
                _ => None,
            })
        })
    }
}

/// The artifact fixture with its repository at `endpoint`.
fn review_at(endpoint: &str) -> Value {
    serde_json::from_str(&serde_json::to_string(&fixture(ARTIFACTS)).unwrap().replace(FIXTURE_ENDPOINT, endpoint))
        .unwrap()
}

fn checking_admitter(store: stepcache::store::Store, budget: Duration) -> Admitter {
    checking_admitter_ttl(store, budget, Duration::ZERO)
}

fn checking_admitter_ttl(store: stepcache::store::Store, budget: Duration, cache_ttl: Duration) -> Admitter {
    let metrics = Arc::new(Metrics::new());
    let http = HttpArtifacts::new(Some(Arc::new(FixtureSecret)), budget, None).unwrap();
    let checker = ArtifactChecker::new(Arc::new(http), CheckConfig { budget, cache_ttl }, metrics.clone());
    let mut a = admitter(store, config(), Ports { artifacts: Some(checker), ..Ports::offline() });
    a.metrics = metrics;
    a
}

/// Records the step once (its artifact under `key`); returns the review and the entry id.
async fn recorded(a: &Admitter, review: &Value) -> (String, EntryId) {
    let (_, tr) = run_and_record(a, review, "pod-1", "128", ts("2026-11-01T10:05:00Z")).await;
    let key = tr["outputs"]["artifacts"][0]["s3"]["key"].as_str().unwrap().to_owned();
    let id = a.store.list(&Default::default(), 10).await.unwrap()[0].id;
    (key, id)
}

async fn again(a: &Admitter, review: &Value, run: &str) -> (Value, Duration) {
    let t = Instant::now();
    let (_, ex) = admit(a, &rerun(review, run), ts("2026-11-02T10:00:00Z")).await;
    (ex, t.elapsed())
}

#[tokio::test]
async fn present_artifacts_hit_deleted_ones_miss_and_withdraw_the_entry() {
    let Some(s3) = S3Server::start().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let a = checking_admitter(sqlite_store(dir.path()).await, Duration::from_secs(2));
    let review = review_at(&s3.endpoint);
    s3.bucket(BUCKET).await;
    let (key, id) = recorded(&a, &review).await;

    s3.put(BUCKET, &key, "features").await;
    let (ex, _) = again(&a, &review, "second").await;
    assert_eq!(ex["decision"], "hit", "{ex}");
    assert!(
        a.metrics.encode().contains("stepcache_artifact_checks_total{reason=\"present\"} 1"),
        "{}",
        a.metrics.encode()
    );

    s3.delete(BUCKET, &key).await;
    // A dry run answers the same but withdraws nothing.
    let mut dry = rerun(&review, "dry");
    dry["request"]["dryRun"] = Value::Bool(true);
    let (_, ex) = admit(&a, &dry, ts("2026-11-02T10:00:00Z")).await;
    assert!(ex["reason"].as_str().unwrap().starts_with("artifact-gone:"), "{ex}");
    assert!(a.store.get(id).await.unwrap().unwrap().invalidated_at.is_none(), "dry run has no side effects");

    let (ex, _) = again(&a, &review, "third").await;
    assert_eq!(ex["decision"], "miss", "{ex}");
    let reason = ex["reason"].as_str().unwrap();
    assert!(reason.starts_with("artifact-gone:") && reason.contains(&key), "{reason}");
    let entry = a.store.get(id).await.unwrap().unwrap();
    assert!(entry.invalidated_at.is_some(), "the dangling entry is withdrawn");
    assert!(a.metrics.encode().contains("stepcache_integrity_misses_total{reason=\"artifact-gone\"} 2"));

    // Withdrawn for good: even with the object back, the entry is not served again.
    s3.put(BUCKET, &key, "features").await;
    let (ex, _) = again(&a, &review, "fourth").await;
    assert_eq!(ex["decision"], "miss", "{ex}");
    assert!(!ex["reason"].as_str().unwrap().starts_with("artifact-"), "no lookup hit, so no check: {ex}");
}

#[tokio::test]
async fn a_server_that_is_down_makes_a_miss_within_the_budget_and_keeps_the_entry() {
    let Some(mut s3) = S3Server::start().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let budget = Duration::from_millis(300);
    let a = checking_admitter(sqlite_store(dir.path()).await, budget);
    let review = review_at(&s3.endpoint);
    s3.bucket(BUCKET).await;
    let (key, id) = recorded(&a, &review).await;
    s3.put(BUCKET, &key, "features").await;
    assert_eq!(again(&a, &review, "second").await.0["decision"], "hit");

    s3.stop();
    let (ex, took) = again(&a, &review, "third").await;
    assert_eq!(ex["decision"], "miss", "{ex}");
    assert!(ex["reason"].as_str().unwrap().starts_with("artifact-unverified:"), "{ex}");
    assert!(took < budget + Duration::from_millis(700), "took {took:?}");
    assert!(a.store.get(id).await.unwrap().unwrap().invalidated_at.is_none(), "unknown is not gone");
}

#[tokio::test]
async fn a_server_that_hangs_makes_a_miss_within_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = listener.local_addr().unwrap().to_string();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = listener.accept().await {
            conns.push(c);
        }
    });
    let budget = Duration::from_millis(300);
    let a = checking_admitter(sqlite_store(dir.path()).await, budget);
    let review = review_at(&endpoint);
    recorded(&a, &review).await;
    let (ex, took) = again(&a, &review, "second").await;
    assert_eq!(ex["decision"], "miss", "{ex}");
    assert!(ex["reason"].as_str().unwrap().starts_with("artifact-unverified:"), "{ex}");
    assert!(took >= budget && took < budget + Duration::from_millis(700), "took {took:?}");
    held.abort();
}

#[tokio::test]
async fn a_present_answer_is_reused_for_the_cache_ttl() {
    let Some(s3) = S3Server::start().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let a = checking_admitter_ttl(sqlite_store(dir.path()).await, Duration::from_secs(2), Duration::from_secs(60));
    let review = review_at(&s3.endpoint);
    s3.bucket(BUCKET).await;
    let (key, _) = recorded(&a, &review).await;
    s3.put(BUCKET, &key, "features").await;
    assert_eq!(again(&a, &review, "second").await.0["decision"], "hit");
    s3.delete(BUCKET, &key).await;
    // Within the TTL the server is not asked again (the documented window).
    assert_eq!(again(&a, &review, "third").await.0["decision"], "hit");
    let m = a.metrics.encode();
    assert!(m.contains("stepcache_artifact_checks_total{reason=\"cached-present\"} 1"), "{m}");
}

/// The tag of the artifact fixture's main container, normalized.
const TAG: &str = "ghcr.io/example/featurize:1.4.2";

#[tokio::test]
async fn an_entry_whose_tag_moved_misses_unless_the_admin_turns_the_check_off() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let a = admitter(store.clone(), config(), Ports::offline());
    let review = fixture(ARTIFACTS);
    run_and_record(&a, &review, "pod-1", "128", ts("2026-11-01T10:05:00Z")).await;
    let ran = store.list(&Default::default(), 1).await.unwrap()[0].run.image_digests["main"].clone();
    let ran = ran.rsplit_once('@').unwrap().1.to_owned();

    store.observe_tag(TAG, &ran, ts("2026-11-01T10:00:00Z")).await.unwrap();
    let (ex, _) = again(&a, &review, "second").await;
    assert_eq!(ex["decision"], "hit", "the tag still points where the entry ran: {ex}");

    let moved = format!("sha256:{}", "f".repeat(64));
    store.observe_tag(TAG, &moved, ts("2026-11-03T08:00:00Z")).await.unwrap();
    // An older observation never overrides a newer one.
    store.observe_tag(TAG, &ran, ts("2026-11-02T08:00:00Z")).await.unwrap();
    let (ex, _) = again(&a, &review, "third").await;
    assert_eq!(ex["decision"], "miss", "{ex}");
    let reason = ex["reason"].as_str().unwrap();
    assert!(reason.starts_with("image-moved:") && reason.contains(&moved) && reason.contains(TAG), "{reason}");

    let off = admitter(store.clone(), AdmitConfig { ignore_moved_images: true, ..config() }, Ports::offline());
    let (ex, _) = again(&off, &review, "fourth").await;
    assert_eq!(ex["decision"], "hit", "--ignore-moved-images serves it: {ex}");
}

/// The artifact fixture with its repository at `endpoint` and in `bucket`, and without input
/// artifacts (whose repository is keyed already): a step that only writes artifacts. Every copy
/// of the template is edited (v3.5 carries it on each container).
fn writer_in_bucket(endpoint: &str, bucket: &str) -> Value {
    let mut v: Value =
        serde_json::from_str(&serde_json::to_string(&review_at(endpoint)).unwrap().replace(BUCKET, bucket)).unwrap();
    let pod = &mut v["request"]["object"]["spec"];
    for list in ["initContainers", "containers"] {
        for c in pod[list].as_array_mut().into_iter().flatten() {
            for e in c["env"].as_array_mut().into_iter().flatten() {
                if e["name"] == "ARGO_TEMPLATE" {
                    let mut t: Value = serde_json::from_str(e["value"].as_str().unwrap()).unwrap();
                    t["inputs"].as_object_mut().unwrap().remove("artifacts");
                    e["value"] = Value::String(t.to_string());
                }
            }
        }
    }
    v
}

#[tokio::test]
async fn a_workflow_whose_repository_is_another_bucket_is_not_served_keys_that_resolve_against_it() {
    let Some(s3) = S3Server::start().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let a = checking_admitter(sqlite_store(dir.path()).await, Duration::from_secs(2));
    let in_a = writer_in_bucket(&s3.endpoint, BUCKET);
    s3.bucket(BUCKET).await;
    s3.bucket("bucket-b").await;
    let (key, id) = recorded(&a, &in_a).await;
    s3.put(BUCKET, &key, "features").await;

    // The same step from a workflow whose artifact repository is bucket B: its downstream steps
    // would resolve a served key-only reference against bucket B, where nothing was written.
    let in_b = writer_in_bucket(&s3.endpoint, "bucket-b");
    let (resp, ex) = admit(&a, &rerun(&in_b, "other-repo"), ts("2026-11-02T10:00:00Z")).await;
    assert_eq!(ex["decision"], "miss", "{ex}");
    assert!(!ex["reason"].as_str().unwrap_or("").starts_with("artifact-"), "bucket B was checked: {ex}");
    assert_ne!(patched_pod(&in_b, &resp)["metadata"]["labels"]["stepcache.dev/decision"], "hit", "{ex}");
    assert!(
        a.store.get(id).await.unwrap().unwrap().invalidated_at.is_none(),
        "the entry is not withdrawn for looking in the wrong bucket"
    );

    // The recording repository still hits, checked in bucket A.
    let (ex, _) = again(&a, &in_a, "same-repo").await;
    assert_eq!(ex["decision"], "hit", "{ex}");
    assert!(
        a.metrics.encode().contains("stepcache_artifact_checks_total{reason=\"present\"} 1"),
        "{}",
        a.metrics.encode()
    );
}
