//! What the I/O tests need to talk to a webhook and to give it hits: an HTTPS client trusting
//! the generated test CA, distinct Argo AdmissionReviews, and store entries that turn a review
//! into a hit (recorded directly, without running the step).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use stepcache::store::Store;

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

/// The load generator's review builder and hit recorder, compiled into the tests as well: the
/// tests and `stepcache-bench` give a webhook hits one way.
#[path = "../../src/bin/stepcache-bench/reviews.rs"]
mod shared;

/// `n` distinct AdmissionReviews of the Argo 3.3 step fixture: each has its own request uid and
/// one more `main` argument, so each has its own cache key.
pub fn reviews(n: usize, prefix: &str) -> Vec<Value> {
    shared::bodies(n, prefix).unwrap()
}

/// Records an entry (the step's declared parameters all `"42"`, finished a minute before `now`)
/// for each review's step, so admitting the review again is a hit.
pub async fn record_hits(store: &Store, reviews: &[Value], now: jiff::Timestamp) {
    shared::record_hits(store, reviews, now).await.unwrap();
}
