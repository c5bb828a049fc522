//! The I/O behind artifact verification: a port ([`ArtifactStore`]) that answers whether one
//! artifact exists, its HTTP implementation (S3-compatible HEAD signed with SigV4, plain HEAD
//! for HTTP artifacts) with credentials read from Secrets through [`Credentials`], and the
//! [`ArtifactChecker`] that bounds a hit's checks by a budget and remembers answers briefly.

use super::artifacts::{describe, verdict, Check, Found, S3Object, SecretKey, Verdict};
use super::sigv4;
use crate::metrics::{Metrics, ReasonLabel};
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where credentials named by an artifact repository come from (Secrets, in a cluster).
pub trait Credentials: Send + Sync {
    /// The value of `key` in the step's `namespace`; `Ok(None)` when the Secret or its key is
    /// missing; `Err` when it could not be read.
    fn value<'a>(&'a self, namespace: &'a str, key: &'a SecretKey) -> BoxFuture<'a, Result<Option<String>, String>>;
}

/// The port: does one artifact exist? Implementations answer within their own bound; the
/// checker cuts them off at the budget anyway.
pub trait ArtifactStore: Send + Sync {
    /// Checks one artifact of a step in `namespace`.
    fn exists<'a>(&'a self, namespace: &'a str, check: &'a Check) -> BoxFuture<'a, Found>;
}

/// Building the HTTP client failed.
#[derive(Debug, thiserror::Error)]
#[error("artifact check client: {0}")]
pub struct ClientError(String);

/// [`ArtifactStore`] over HTTP: S3-compatible HEAD (SigV4 when the repository names
/// credentials, anonymous otherwise) and plain HEAD for HTTP artifacts.
pub struct HttpArtifacts {
    http: reqwest::Client,
    credentials: Option<Arc<dyn Credentials>>,
}

impl HttpArtifacts {
    /// A client trusting the system's roots plus `extra_ca_pem` (a private object store's CA).
    pub fn new(
        credentials: Option<Arc<dyn Credentials>>,
        timeout: Duration,
        extra_ca_pem: Option<&str>,
    ) -> Result<HttpArtifacts, ClientError> {
        let mut b = reqwest::Client::builder().use_rustls_tls().timeout(timeout).connect_timeout(timeout);
        for cert in rustls_native_certs::load_native_certs().certs {
            if let Ok(c) = reqwest::Certificate::from_der(cert.as_ref()) {
                b = b.add_root_certificate(c);
            }
        }
        if let Some(pem) = extra_ca_pem {
            b = b.add_root_certificate(
                reqwest::Certificate::from_pem(pem.as_bytes()).map_err(|e| ClientError(e.to_string()))?,
            );
        }
        Ok(HttpArtifacts { http: b.build().map_err(|e| ClientError(e.to_string()))?, credentials })
    }

    async fn credential(&self, namespace: &str, key: &Option<SecretKey>) -> Result<Option<String>, String> {
        let Some(key) = key else { return Ok(None) };
        let Some(c) = &self.credentials else {
            return Err(format!("no Kubernetes API to read Secret {}", key.name));
        };
        match c.value(namespace, key).await? {
            Some(v) => Ok(Some(v)),
            None => Err(format!("Secret {}/{} has no key {}", namespace, key.name, key.key)),
        }
    }

    async fn head_s3(&self, namespace: &str, o: &S3Object) -> Found {
        let (ak, sk) =
            match (self.credential(namespace, &o.access_key).await, self.credential(namespace, &o.secret_key).await) {
                (Ok(a), Ok(s)) => (a, s),
                (Err(e), _) | (_, Err(e)) => return Found::Unknown(e),
            };
        let path = sigv4::encode_path(&format!("/{}/{}", o.bucket, o.key));
        let scheme = if o.insecure { "http" } else { "https" };
        let url = format!("{scheme}://{}{path}", o.endpoint);
        let amz_date = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ").to_string();
        let mut req =
            self.http.head(&url).header("x-amz-date", &amz_date).header("x-amz-content-sha256", sigv4::EMPTY_SHA256);
        if let (Some(ak), Some(sk)) = (ak, sk) {
            let auth = sigv4::authorization(
                &sigv4::Request {
                    method: "HEAD",
                    path: &path,
                    headers: &[
                        ("host", o.endpoint.as_str()),
                        ("x-amz-content-sha256", sigv4::EMPTY_SHA256),
                        ("x-amz-date", &amz_date),
                    ],
                    amz_date: &amz_date,
                    region: &o.region,
                    service: "s3",
                },
                &ak,
                &sk,
            );
            req = req.header("authorization", auth);
        }
        status_to_found(req.send().await)
    }
}

/// 2xx present, 404 gone, anything else unknown (S3 answers 403 for a missing object when the
/// credentials may not list the bucket, so 403 is never taken for "gone").
fn status_to_found(r: Result<reqwest::Response, reqwest::Error>) -> Found {
    match r {
        Ok(r) if r.status().is_success() => Found::Present,
        Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => Found::Gone,
        Ok(r) => Found::Unknown(format!("HTTP {}", r.status().as_u16())),
        Err(e) if e.is_timeout() => Found::Unknown("timed out".into()),
        Err(e) if e.is_connect() => Found::Unknown("connection failed".into()),
        Err(e) => Found::Unknown(e.to_string()),
    }
}

impl ArtifactStore for HttpArtifacts {
    fn exists<'a>(&'a self, namespace: &'a str, check: &'a Check) -> BoxFuture<'a, Found> {
        Box::pin(async move {
            match check {
                Check::S3(o) => self.head_s3(namespace, o).await,
                Check::Http { url } => status_to_found(self.http.head(url).send().await),
                Check::Unchecked { .. } => Found::Unchecked,
            }
        })
    }
}

/// Bounds of the checks.
#[derive(Clone, Copy, Debug)]
pub struct CheckConfig {
    /// All checks of one hit run concurrently and each is cut off at this bound.
    pub budget: Duration,
    /// How long a `present` or `gone` answer is reused for the same object.
    pub cache_ttl: Duration,
}

/// Remembered answers: object identity → (when, answer).
type Answers = HashMap<String, (Instant, Found)>;

/// Most objects remembered; past this the memory is dropped and refilled.
const CACHE_MAX: usize = 50_000;

/// Verifies a hit's artifacts within the budget; cheap to clone.
#[derive(Clone)]
pub struct ArtifactChecker {
    store: Arc<dyn ArtifactStore>,
    config: CheckConfig,
    cache: Arc<Mutex<Answers>>,
    metrics: Arc<Metrics>,
}

impl ArtifactChecker {
    /// A checker over `store`.
    pub fn new(store: Arc<dyn ArtifactStore>, config: CheckConfig, metrics: Arc<Metrics>) -> ArtifactChecker {
        ArtifactChecker { store, config, cache: Arc::default(), metrics }
    }

    fn count(&self, result: &str) {
        self.metrics.artifact_checks.get_or_create(&ReasonLabel { reason: result.to_owned() }).inc();
    }

    fn cached(&self, id: &str) -> Option<Found> {
        let m = self.cache.lock().ok()?;
        m.get(id).filter(|(at, _)| at.elapsed() < self.config.cache_ttl).map(|(_, f)| f.clone())
    }

    fn remember(&self, id: String, found: &Found) {
        if matches!(found, Found::Present | Found::Gone) {
            if let Ok(mut m) = self.cache.lock() {
                if m.len() >= CACHE_MAX {
                    m.clear();
                }
                m.insert(id, (Instant::now(), found.clone()));
            }
        }
    }

    /// Runs `checks` for a step in `namespace` concurrently, each bounded by the budget, and
    /// combines the answers. Never takes (much) longer than the budget.
    pub async fn verify(&self, namespace: &str, checks: &[Check]) -> Verdict {
        let started = Instant::now();
        let budget = self.config.budget;
        let runs = checks.iter().map(|c| async move {
            let id = match c {
                Check::S3(o) => Some(o.cache_key()),
                Check::Http { url } => Some(url.clone()),
                Check::Unchecked { kind } => {
                    self.count(&format!("unchecked-{kind}"));
                    None
                }
            };
            let found = match &id {
                None => Found::Unchecked,
                Some(id) => match self.cached(id) {
                    Some(f) => {
                        self.count(if f == Found::Present { "cached-present" } else { "cached-gone" });
                        f
                    }
                    None => {
                        let f = match tokio::time::timeout(budget, self.store.exists(namespace, c)).await {
                            Ok(f) => f,
                            Err(_) => Found::Unknown(format!("no answer within the {budget:?} budget")),
                        };
                        self.count(match f {
                            Found::Present => "present",
                            Found::Gone => "gone",
                            Found::Unknown(_) => "unknown",
                            Found::Unchecked => "unchecked",
                        });
                        self.remember(id.clone(), &f);
                        f
                    }
                },
            };
            (describe(c), found)
        });
        let results = futures::future::join_all(runs).await;
        self.metrics.artifact_check_duration.observe(started.elapsed().as_secs_f64());
        verdict(&results)
    }
}
