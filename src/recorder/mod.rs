//! The recorder: records the outputs of every succeeded, marked step exactly once.
//!
//! Exactly once comes from the store (one row per pod uid, committed before anything is
//! acknowledged), not from memory, so duplicate events, restarts and several recorders racing
//! are harmless; no leader election is needed. Pods are kept in a pending set until recorded
//! or proven unrecordable, and the pending set is retried with backoff (store outages).

pub mod assess;
pub mod images;
pub mod watch;

use crate::mark::Signer;
use crate::metrics::Metrics;
use crate::store::{Entry, Recorded, Store, StoreError};
use assess::{assess, NotRecorded, OutputSources, RecordSettings};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use std::sync::Arc;

/// Result of one recording attempt.
#[derive(Debug)]
pub enum Attempt {
    /// Row committed now.
    Recorded(Box<Entry>),
    /// Row existed already (replay, duplicate event, another recorder).
    AlreadyRecorded(Box<Entry>),
    /// Not recorded, and why.
    Skipped(NotRecorded),
    /// Store failed; try again later.
    Failed(StoreError),
}

impl Attempt {
    /// True when nothing more will happen for this pod.
    pub fn is_final(&self) -> bool {
        match self {
            Attempt::Recorded(_) | Attempt::AlreadyRecorded(_) => true,
            Attempt::Skipped(r) => !r.may_change(),
            Attempt::Failed(_) => false,
        }
    }
}

impl Recorder {
    /// Settles the latch this pod may lead (a no-op for pods that lead none).
    pub async fn settle_latch(&self, pod: &Pod, succeeded: bool) {
        let key = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(crate::argo::labels::KEY_ANNOTATION))
            .and_then(|k| crate::types::CacheKey::parse(k).ok());
        let (Some(key), Some(name)) = (key, pod.metadata.name.as_deref()) else { return };
        match self.store.latch_finish(&key, name, succeeded).await {
            Ok(true) => tracing::info!(pod = name, succeeded, "latch leader settled"),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, pod = name, "latch not settled; waiters fall back to the timeout"),
        }
    }
}

/// Records completions into the store.
#[derive(Clone)]
pub struct Recorder {
    /// Store.
    pub store: Store,
    /// Mark verifier.
    pub signer: Signer,
    /// Scope and expiry (must match the admission's).
    pub settings: Arc<RecordSettings>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Image tag digests already written by this process.
    pub tags: images::TagMemo,
}

impl Recorder {
    /// Assesses and, when the step really succeeded with complete outputs, records it.
    pub async fn record(&self, pod: &Pod, src: &OutputSources<'_>, now: Timestamp) -> Attempt {
        let entry = match assess(pod, src, &self.signer, &self.settings) {
            Ok(e) => e,
            Err(r) => {
                if matches!(r, NotRecorded::NotSucceeded(_)) {
                    // The mark was verified before the success check: a failed latch leader.
                    self.settle_latch(pod, false).await;
                }
                if !r.may_change() {
                    self.metrics.skipped(r.kind());
                    if matches!(
                        r,
                        NotRecorded::ForgedMark(_)
                            | NotRecorded::OutputsIncomplete(_)
                            | NotRecorded::KeyMismatch { .. }
                    ) {
                        tracing::warn!(pod = pod.metadata.name.as_deref().unwrap_or(""), reason = %r, "completion not recorded");
                    }
                }
                return Attempt::Skipped(r);
            }
        };
        if let Ok(Some(prev)) = self.store.latest_for_key(&entry.key).await {
            let drift: Vec<String> = entry
                .image_digests
                .iter()
                .filter_map(|(c, d)| prev.image_digests.get(c).filter(|p| *p != d).map(|p| format!("{c}: {p} → {d}")))
                .collect();
            if !drift.is_empty() {
                self.metrics.tag_drift.inc();
                tracing::warn!(key = %entry.key, previous_entry = prev.id.0, drift = %drift.join(", "), "image tag drift: same key ran a different image digest");
            }
        }
        let t = std::time::Instant::now();
        let res = self.store.record(&entry, now).await;
        self.metrics.store_call("record", t.elapsed().as_secs_f64(), res.as_ref().err().map(StoreError::kind));
        match res {
            Ok(Recorded::Inserted(e)) => {
                self.metrics.recorded.inc();
                let lag = (now.as_millisecond() - e.finished_at.as_millisecond()).max(0) as f64 / 1000.0;
                self.metrics.recorder_lag.observe(lag);
                tracing::info!(entry = e.id.0, key = %e.key, pod = %e.pod_name, namespace = %e.namespace, "execution recorded");
                self.settle_latch(pod, true).await;
                Attempt::Recorded(Box::new(e))
            }
            Ok(Recorded::AlreadyRecorded(e)) => {
                self.settle_latch(pod, true).await;
                Attempt::AlreadyRecorded(Box::new(e))
            }
            Err(e) => {
                tracing::warn!(error = %e, pod = pod.metadata.name.as_deref().unwrap_or(""), "recording failed; will retry");
                Attempt::Failed(e)
            }
        }
    }
}
