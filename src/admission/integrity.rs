//! Integrity checks on the hit path: a hit is served only when the entry's output artifacts
//! still exist and the image tags the pod runs still point at the digests the entry ran.
//! Each failed check turns the hit into a miss with its own reason; an entry whose artifact is
//! gone is withdrawn so it is not served again.
//!
//! Owns: the miss reasons `artifact-gone`, `artifact-unverified`, `image-moved`,
//! `image-unverified`.

use super::Admitter;
use crate::argo::template::StepPod;
use crate::integrity::artifacts::{plan, Verdict};
use crate::integrity::images::{moved, tags_to_check};
use crate::metrics::ReasonLabel;
use crate::store::Entry;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use std::collections::BTreeMap;

/// Miss reasons (metric label values and the first word of the miss reason).
pub mod reason {
    /// An output artifact of the entry no longer exists; the entry was withdrawn.
    pub const ARTIFACT_GONE: &str = "artifact-gone";
    /// An artifact check did not complete within the budget (or could not be made).
    pub const ARTIFACT_UNVERIFIED: &str = "artifact-unverified";
    /// An image tag the pod runs points at another digest than the entry ran.
    pub const IMAGE_MOVED: &str = "image-moved";
    /// The newest digests of the pod's tags could not be read.
    pub const IMAGE_UNVERIFIED: &str = "image-unverified";
}

/// `container name → image` of the pod's containers, as the recorder stores them.
fn pod_images(pod: &Pod) -> BTreeMap<String, String> {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .filter(|c| c.name != crate::argo::labels::WAIT_CONTAINER)
        .filter_map(|c| Some((c.name.clone(), c.image.clone()?)))
        .collect()
}

impl Admitter {
    /// Why `entry` must not be served to `pod`, as `<reason>: <detail>`; `None` to serve. A dry
    /// run withdraws nothing (the webhook declares no side effects on dry run).
    pub(super) async fn integrity_failure(
        &self,
        pod: &Pod,
        step: &StepPod,
        entry: &Entry,
        dry_run: bool,
        now: Timestamp,
    ) -> Option<String> {
        let failure = match self.image_failure(pod, entry).await {
            Some(f) => Some(f),
            None => self.artifact_failure(step, entry, dry_run, now).await,
        };
        if let Some((label, _)) = &failure {
            self.metrics.integrity_misses.get_or_create(&ReasonLabel { reason: (*label).to_owned() }).inc();
        }
        failure.map(|(label, detail)| format!("{label}: {detail}"))
    }

    async fn image_failure(&self, pod: &Pod, entry: &Entry) -> Option<(&'static str, String)> {
        if self.config.ignore_moved_images {
            return None;
        }
        let uses = tags_to_check(&pod_images(pod), &entry.run.image_digests);
        if uses.is_empty() {
            return None;
        }
        let tags: Vec<String> = uses.iter().map(|u| u.tag.clone()).collect();
        match self.timed("tag_digests", self.store.tag_digests(&tags)).await {
            Ok(newest) => moved(&uses, &newest).map(|why| (reason::IMAGE_MOVED, why)),
            Err(e) => Some((reason::IMAGE_UNVERIFIED, format!("newest tag digests not readable ({e})"))),
        }
    }

    async fn artifact_failure(
        &self,
        step: &StepPod,
        entry: &Entry,
        dry_run: bool,
        now: Timestamp,
    ) -> Option<(&'static str, String)> {
        let checker = self.ports.artifacts.as_ref()?;
        let checks = plan(&entry.run.outputs, step.template.archive_location());
        if checks.is_empty() {
            return None;
        }
        match checker.verify(step.namespace.as_str(), &checks).await {
            Verdict::Serve => None,
            Verdict::Gone(why) if dry_run => Some((reason::ARTIFACT_GONE, why)),
            Verdict::Gone(why) => {
                match self.timed("mark_dangling", self.store.mark_dangling(entry, reason::ARTIFACT_GONE, now)).await {
                    Ok(n) => {
                        tracing::warn!(entry = entry.id.0, withdrawn = n, detail = %why, "entry withdrawn: output artifact gone")
                    }
                    Err(e) => {
                        tracing::warn!(entry = entry.id.0, error = %e, "dangling entry not marked; checked again next hit")
                    }
                }
                Some((reason::ARTIFACT_GONE, why))
            }
            Verdict::Unverified(why) => Some((reason::ARTIFACT_UNVERIFIED, why)),
        }
    }
}
