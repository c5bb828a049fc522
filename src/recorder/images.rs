//! Feeds the shared image tag → newest digest map from every pod the recorder sees: each
//! container that runs a tag reports, in its status `imageID`, the digest the tag resolved to
//! when it was pulled. A small memory skips writing an observation the store already has.

use super::Recorder;
use crate::integrity::images::observations;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Most tags remembered; past this the memory is dropped (the store stays the authority).
const MEMO_MAX: usize = 10_000;

/// Tag → (digest, observed at ms) last written by this process.
#[derive(Clone, Default)]
pub struct TagMemo(Arc<Mutex<HashMap<String, (String, i64)>>>);

impl TagMemo {
    /// True when this process already wrote an observation of `tag` at least as new, so the
    /// store (which keeps the newest) holds one too. Repeated status updates of one pod carry
    /// the same start time and are skipped; a same-digest observation from a newer pod is not,
    /// since another replica may have stored a different digest in between.
    fn known(&self, tag: &str, at_ms: i64) -> bool {
        self.0.lock().ok().and_then(|m| m.get(tag).map(|(_, t)| *t >= at_ms)).unwrap_or(false)
    }

    fn note(&self, tag: String, digest: String, at_ms: i64) {
        if let Ok(mut m) = self.0.lock() {
            if m.len() >= MEMO_MAX {
                m.clear();
            }
            m.insert(tag, (digest, at_ms));
        }
    }
}

/// When the container started (running or terminated), the instant its digest was current.
fn started(cs: &ContainerStatus) -> Option<Timestamp> {
    let st = cs.state.as_ref()?;
    let t = st
        .running
        .as_ref()
        .and_then(|r| r.started_at.as_ref())
        .or_else(|| st.terminated.as_ref().and_then(|t| t.started_at.as_ref()))?;
    Some(t.0)
}

/// `(tag, digest, started)` of every container of `pod` that runs a tag and reports a digest.
pub fn pod_observations(pod: &Pod) -> Vec<(String, String, Timestamp)> {
    let images: HashMap<&str, &str> = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()))
        .filter_map(|c| Some((c.name.as_str(), c.image.as_deref()?)))
        .collect();
    let mut seen = Vec::new();
    if let Some(st) = &pod.status {
        for cs in st.container_statuses.iter().flatten().chain(st.init_container_statuses.iter().flatten()) {
            let (Some(image), Some(at)) = (images.get(cs.name.as_str()), started(cs)) else { continue };
            for (tag, digest) in observations([(*image, cs.image_id.as_str())]) {
                seen.push((tag, digest, at));
            }
        }
    }
    seen
}

impl Recorder {
    /// Stores the tag digests `pod`'s containers report. Best effort: a failed write is retried
    /// by the next pod that reports the same tag.
    pub async fn observe_images(&self, pod: &Pod) {
        for (tag, digest, at) in pod_observations(pod) {
            let at_ms = at.as_millisecond();
            if self.tags.known(&tag, at_ms) {
                continue;
            }
            match self.store.observe_tag(&tag, &digest, at).await {
                Ok(()) => {
                    self.metrics.image_tag_observations.inc();
                    self.tags.note(tag, digest, at_ms);
                }
                Err(e) => tracing::debug!(error = %e, %tag, "image tag observation not stored"),
            }
        }
    }
}
