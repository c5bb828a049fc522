//! The admission service's side-effect ports: where a decision's effects go. `review` and
//! `/mutate` run the same decision code and differ only in the ports they are given
//! ([`Ports::offline`] against what `serve` assembles), so every difference between an offline
//! explanation and a live answer is visible at construction.

use crate::integrity::check::ArtifactChecker;
use crate::k8s::events::EventPoster;
use crate::k8s::limits::LimitRangeCache;
use crate::k8s::offload::OffloadSource;
use crate::k8s::taskresult::TaskResultWriter;
use std::sync::Arc;

/// Where a hit's WorkflowTaskResult goes.
#[derive(Clone, Default)]
pub enum TaskResults {
    /// Written through the Kubernetes API (`serve` with a cluster).
    Api(TaskResultWriter),
    /// Not written; the decision proceeds as if it had been and says so in
    /// `offline_assumed` (`stepcache review`).
    Assumed,
    /// No API to write to (`serve --kube off`): a step whose outputs need a task result runs as
    /// a miss.
    #[default]
    Unavailable,
}

/// How a served hit's bookkeeping (adopting copy, hit count, Event) and the miss explanation's
/// template lookups are carried out.
#[derive(Clone, Default)]
pub enum SideEffects {
    /// In the request, one write per hit, no caching: answers reflect the store exactly
    /// (`review`, tests).
    #[default]
    Inline,
    /// Off the response path: adopting copies and Events in a spawned task, hit counts batched
    /// in memory (flushed by `serve`), newest entries per template cached for a few seconds.
    Background {
        /// Hit counts not yet written.
        hits: super::HitCounter,
        /// Recent newest-entry-of-template answers.
        nearest: super::NearestCache,
    },
}

impl SideEffects {
    /// The background variant with empty buffers.
    pub fn background() -> SideEffects {
        SideEffects::Background { hits: Default::default(), nearest: Default::default() }
    }

    /// The hit-count buffer, when hits are batched.
    pub fn hit_counter(&self) -> Option<&super::HitCounter> {
        match self {
            SideEffects::Background { hits, .. } => Some(hits),
            SideEffects::Inline => None,
        }
    }
}

/// Every side effect a decision can have, injected.
#[derive(Clone, Default)]
pub struct Ports {
    /// Reads the ConfigMap of pods whose template or args Argo offloaded (3.6+).
    pub offload: Option<Arc<dyn OffloadSource>>,
    /// Where hits' task results go.
    pub task_results: TaskResults,
    /// Posts provenance Events; `None` posts nothing.
    pub events: Option<EventPoster>,
    /// Verifies output artifacts before a hit (`--verify-artifacts`); `None` serves unchecked.
    pub artifacts: Option<ArtifactChecker>,
    /// How bookkeeping after a decision runs.
    pub effects: SideEffects,
    /// Keys blocked by refused hits, and where answered hits go to be confirmed.
    pub refusals: crate::refusal::Refusals,
    /// The namespaces' LimitRanges, which hit pods must meet; `None` (no Kubernetes API,
    /// `review`) builds hit pods as if no namespace had any.
    pub limits: Option<LimitRangeCache>,
    /// The namespaces' ConfigMaps, whose contents are keyed; `None` (no Kubernetes API,
    /// `review`) sees none, so steps reading a ConfigMap are not keyed (`configmap-unknown`).
    pub configmaps: Option<crate::k8s::configmaps::ConfigMapCache>,
    /// Secret contents as keyed digests (`--key-secret-contents`); `None` keys Secrets by
    /// reference.
    pub secret_digests: Option<crate::k8s::secret_digests::SecretDigestCache>,
}

impl Ports {
    /// The ports of `stepcache review`: no cluster, task results assumed written, bookkeeping
    /// inline.
    pub fn offline() -> Ports {
        Ports { task_results: TaskResults::Assumed, ..Default::default() }
    }
}
