//! The recorder: records the outputs of every succeeded, marked step exactly once.
//!
//! Exactly once comes from the store (one claim per pod uid, written with the row and kept by
//! gc after the row is invalidated or withdrawn, so a pod is recorded at most once, ever,
//! across restarts and replicas), not from memory, so duplicate events, restarts and several recorders racing
//! are harmless; no leader election is needed. Pods are kept in a pending set until recorded
//! or proven unrecordable, and the pending set is retried with backoff (store outages).

pub use stepcache_core::assess;
pub mod images;
pub mod watch;

use crate::mark::Signer;
use crate::metrics::Metrics;
use crate::store::{Entry, Recorded, Store, StoreError};
use assess::{assess_with, NotRecorded, OutputSources, RecordSettings};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use std::sync::Arc;
use stepcache_core::key::configmaps::{ConfigMaps, NoConfigMaps};

/// Result of one recording attempt.
#[derive(Debug)]
pub enum Attempt {
    /// Row committed now.
    Recorded(Box<Entry>),
    /// Row existed already (replay, duplicate event, another recorder).
    AlreadyRecorded(Box<Entry>),
    /// The pod (this uid) was recorded before and its entry was since invalidated, withdrawn
    /// or expired and deleted: never recorded again (a restart re-lists such pods).
    Withdrawn(String),
    /// Not recorded, and why.
    Skipped(NotRecorded),
    /// Store failed; try again later.
    Failed(StoreError),
}

impl Attempt {
    /// True when nothing more will happen for this pod.
    pub fn is_final(&self) -> bool {
        match self {
            Attempt::Recorded(_) | Attempt::AlreadyRecorded(_) | Attempt::Withdrawn(_) => true,
            Attempt::Skipped(r) => !r.may_change(),
            Attempt::Failed(_) => false,
        }
    }
}

impl Recorder {
    /// Settles the latch this pod may lead (a no-op for pods that lead none, and for pods whose
    /// mark does not verify: an author cannot settle someone else's latch).
    pub async fn settle_latch(&self, pod: &Pod, succeeded: bool) {
        let key = assess::verified_key(pod, &self.signer);
        let (Some(key), Some(name), Some(ns)) = (key, pod.metadata.name.as_deref(), pod.metadata.namespace.as_deref())
        else {
            return;
        };
        match self.store.latch_finish(&key, ns, name, succeeded).await {
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
    /// The namespaces' ConfigMaps, read to re-derive keys that include their contents; `None`
    /// (no Kubernetes API, `stepcache record`) sees none: steps reading one are not recorded.
    /// Secret contents as keyed digests (`--key-secret-contents`); `None` keys Secrets by
    /// reference (must match the admission's).
    pub secret_digests: Option<crate::k8s::secret_digests::SecretDigestCache>,
    pub configmaps: Option<crate::k8s::configmaps::ConfigMapCache>,
}

impl Recorder {
    /// Assesses and, when the step really succeeded with complete outputs, records it.
    pub async fn record(&self, pod: &Pod, src: &OutputSources<'_>, now: Timestamp) -> Attempt {
        self.record_with(pod, src, None, now).await
    }

    /// [`Recorder::record`] for a pod whose template or args Argo offloaded, with its ConfigMap.
    pub async fn record_with(
        &self,
        pod: &Pod,
        src: &OutputSources<'_>,
        offloaded: Option<&crate::argo::offload::Offloaded>,
        now: Timestamp,
    ) -> Attempt {
        // The ConfigMaps as they are now: changed since admission, the re-derived key differs from
        // the marked one and the run is not recorded (KeyMismatch).
        let view = match (&self.configmaps, stepcache_core::key::configmaps::configmap_names(pod).is_empty()) {
            (Some(cache), false) => cache.view().await.ok(),
            _ => None,
        };
        let boxed: Box<dyn ConfigMaps + Send + Sync> = match view {
            Some(v) => Box::new(v),
            None => Box::new(NoConfigMaps),
        };
        let configmaps: Box<dyn ConfigMaps + Send + Sync> = match &self.secret_digests {
            Some(secrets) => {
                Box::new(crate::k8s::secret_digests::WithSecrets { inner: boxed, secrets: secrets.clone() })
            }
            None => boxed,
        };
        let entry = match assess_with(pod, src, offloaded, configmaps.as_ref(), &self.signer, &self.settings, now) {
            Ok(e) => e,
            Err(r) => {
                if !r.may_change() {
                    // Finished for good without an entry (failed, incomplete outputs, key
                    // mismatch, ...): waiters must not wait for a recording that never comes.
                    self.settle_latch(pod, false).await;
                    self.metrics.skipped(r.kind());
                    if matches!(
                        r,
                        NotRecorded::ForgedMark(_)
                            | NotRecorded::OutputsIncomplete(_)
                            | NotRecorded::KeyMismatch { .. }
                            | NotRecorded::FinishedInFuture { .. }
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
                .filter_map(|(c, d)| {
                    prev.run.image_digests.get(c).filter(|p| *p != d).map(|p| format!("{c}: {p} → {d}"))
                })
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
                let lag = (now.as_millisecond() - e.run.finished_at.as_millisecond()).max(0) as f64 / 1000.0;
                self.metrics.recorder_lag.observe(lag);
                tracing::info!(entry = e.id.0, key = %e.run.key, pod = %e.run.pod_name, namespace = %e.run.namespace, "execution recorded");
                self.settle_latch(pod, true).await;
                Attempt::Recorded(Box::new(e))
            }
            Ok(Recorded::AlreadyRecorded(e)) => {
                self.settle_latch(pod, true).await;
                Attempt::AlreadyRecorded(Box::new(e))
            }
            Ok(Recorded::Withdrawn(uid)) => {
                // No entry to serve: a latch this pod still led must not keep its waiters.
                self.settle_latch(pod, false).await;
                self.metrics.skipped("withdrawn");
                tracing::info!(pod = pod.metadata.name.as_deref().unwrap_or(""), pod_uid = %uid, "pod was recorded before and its entry withdrawn; not recorded again");
                Attempt::Withdrawn(uid)
            }
            Err(e) => {
                tracing::warn!(error = %e, pod = pod.metadata.name.as_deref().unwrap_or(""), "recording failed; will retry");
                Attempt::Failed(e)
            }
        }
    }
}
