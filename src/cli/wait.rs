//! `stepcache wait`: the command of latched waiter pods.

use anyhow::{bail, Context};
use std::time::{Duration, Instant};

/// How the wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitOutcome {
    /// The leader's outputs were delivered to Argo for this node.
    Done,
    /// The leader failed: this pod was promoted and must run the step.
    Run,
}

/// Polls `url?token=` until the answer is `done` or `run`; transient errors are retried.
pub async fn wait(
    url: &str,
    token: &str,
    ca_bundle: Option<&str>,
    interval: Duration,
    timeout: Duration,
) -> anyhow::Result<WaitOutcome> {
    crate::cli::serve::install_crypto();
    let mut b = reqwest::Client::builder().use_rustls_tls().timeout(Duration::from_secs(10));
    if let Some(pem) = ca_bundle {
        b = b.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).context("STEPCACHE_CA_BUNDLE")?);
    }
    let client = b.build()?;
    let started = Instant::now();
    loop {
        match client.get(url).query(&[("token", token)]).send().await {
            Ok(r) if r.status().is_success() => {
                let v: serde_json::Value = r.json().await.unwrap_or_default();
                match v.get("state").and_then(serde_json::Value::as_str) {
                    Some("done") => return Ok(WaitOutcome::Done),
                    Some("run") => return Ok(WaitOutcome::Run),
                    _ => {}
                }
            }
            Ok(r) if r.status() == reqwest::StatusCode::FORBIDDEN || r.status() == reqwest::StatusCode::NOT_FOUND => {
                bail!("latch endpoint refused the token: HTTP {}", r.status())
            }
            Ok(r) => tracing::debug!(status = %r.status(), "latch poll failed; retrying"),
            Err(e) => tracing::debug!(error = %e, "latch poll failed; retrying"),
        }
        if started.elapsed() > timeout {
            bail!("gave up waiting after {timeout:?}");
        }
        tokio::time::sleep(interval).await;
    }
}
