//! The admission service: decode → classify → plan → key → lookup (timed, fail-open) → choose
//! → rewrite → respond. Every failure after the uid is known becomes "allowed, unchanged,
//! with a warning"; stepcache never denies a pod.
//!
//! Owns: `Admitter`, `Outcome`, `Explain`. Imports layers 0–2, `k8s`, `metrics`.

pub mod decode;
pub mod integrity;
pub mod latch;
pub mod ports;
pub mod respond;

pub use ports::{Ports, SideEffects, TaskResults};

use crate::argo::template::{classify, classify_with, Classification, SkipReason, StepPod};
use crate::decision::{Decision, Effect};
use crate::k8s::events::StepEvent;
use crate::key::{derive_key_with, diff_material, KeyError, KeyMaterial, Scope};
use crate::mark::{MarkClaims, Signer};
use crate::metrics::Metrics;
use crate::policy::{choose, plan, AdminPolicy, Candidate, Choice, MissCause, Plan, StepSettings};
use crate::rewrite::{self, HitInfo, MarkInfo, RewriteConfig};
use crate::store::{Entry, Store, StoreError};
use crate::types::{CacheKey, Namespace, Staleness};
use decode::{Decoded, Subject};
use jiff::Timestamp;
use json_patch::PatchOperation;
use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;
use stepcache_core::key::configmaps::{ConfigMaps, NoConfigMaps};

/// Everything `review --explain` prints about one decision.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Explain {
    /// What the decision does to the pod: `hit`, `miss`, `latched`, `skip`.
    pub decision: Effect,
    /// The fine decision (metric label, decision log).
    pub detail: Decision,
    /// Why.
    pub reason: String,
    /// The key, when one was derived.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Detected Argo layout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layout: Option<String>,
    /// Staleness used (seconds, -1 unbounded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub staleness: Option<i64>,
    /// Entry served on a hit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry_id: Option<i64>,
    /// True when the hit recorded an adopting copy.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub adopted: bool,
    /// The JSON patch, decoded.
    pub patch: Vec<PatchOperation>,
    /// Objects the decision creates (the WorkflowTaskResult of a hit).
    pub creates: Vec<rewrite::WorkflowTaskResult>,
    /// On a miss: the nearest earlier entry of the same template and how it differs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nearest: Option<Nearest>,
    /// Warnings returned to the API server.
    pub warnings: Vec<String>,
    /// Offline (`review`) only: what this decision assumed would succeed but did not perform.
    /// `/mutate` on a `serve` without the Kubernetes API answers **miss** where this is set.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub offline_assumed: Vec<String>,
}

impl Explain {
    /// Sets the fine decision and, from it, what the decision does to the pod.
    pub fn decide(&mut self, d: Decision) {
        self.detail = d;
        self.decision = d.effect();
    }
}

/// Explanation of a miss against the nearest earlier entry.
#[derive(Clone, Debug, Serialize)]
pub struct Nearest {
    /// Entry compared against.
    pub entry_id: i64,
    /// Workflow it came from.
    pub workflow: String,
    /// State of that entry (`live`, `stale`, `future` (finished after this clock's now),
    /// `expired`, `invalidated`).
    pub state: String,
    /// Key-material differences, one per line.
    pub differences: Vec<String>,
}

/// The response plus its explanation.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The AdmissionReview response.
    pub review: respond::ReviewResponse,
    /// Explanation.
    pub explain: Explain,
}

/// Configuration of the decision.
#[derive(Clone, Debug, Default)]
pub struct AdmitConfig {
    /// Admin policy.
    pub admin: AdminPolicy,
    /// Cache scope.
    pub scope: Scope,
    /// Hit pod shape.
    pub rewrite: RewriteConfig,
    /// Look up the nearest earlier entry to explain misses.
    pub explain_misses: bool,
    /// Serve a no-op baseline (always allow, no decision) for benchmarks instead of deciding.
    pub noop: Option<Noop>,
    /// Execution latching, when enabled.
    pub latch: Option<latch::LatchConfig>,
    /// Serve entries whose image tag has since moved to another digest (`--ignore-moved-images`).
    pub ignore_moved_images: bool,
}

/// The benchmark baselines `serve --noop` answers with: always "allow, no patch".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Noop {
    /// Nothing else: the cost of TLS, HTTP and JSON alone.
    Answer,
    /// One store lookup first (the real query, for a key no step has): the floor of a webhook
    /// that must ask its store.
    AfterLookup,
}

/// The admission service.
#[derive(Clone)]
pub struct Admitter {
    /// Decision configuration.
    pub config: Arc<AdmitConfig>,
    /// Execution store.
    pub store: Store,
    /// Mark signer.
    pub signer: Signer,
    /// Where the decision's side effects go.
    pub ports: Ports,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

/// Newest entry per (namespace, template) for explaining misses, kept a few seconds so a fan-out
/// of misses of one template asks the store once rather than once per pod.
#[derive(Clone, Default)]
pub struct NearestCache(Arc<std::sync::Mutex<NearestMap>>);

/// (namespace, template name) → (when fetched, newest entry).
type NearestMap = HashMap<(String, String), (Instant, Option<Entry>)>;

/// How long a cached nearest entry is used.
const NEAREST_TTL: std::time::Duration = std::time::Duration::from_secs(5);

/// Hit counts accumulated in memory and written in batches: a write per hit would make every
/// hit compete with lookups for connections and WAL flushes. Counts are statistics; a crash
/// loses at most one flush interval of them.
#[derive(Clone, Default)]
pub struct HitCounter(Arc<std::sync::Mutex<std::collections::HashMap<crate::types::EntryId, i64>>>);

impl HitCounter {
    /// Counts one hit.
    pub fn note(&self, id: crate::types::EntryId) {
        if let Ok(mut m) = self.0.lock() {
            *m.entry(id).or_insert(0) += 1;
        }
    }

    /// Takes the pending counts.
    pub fn drain(&self) -> Vec<(crate::types::EntryId, i64)> {
        self.0.lock().map(|mut m| m.drain().collect()).unwrap_or_default()
    }

    /// Writes the pending counts; on failure they are kept for the next flush.
    pub async fn flush(&self, store: &Store) -> Result<usize, StoreError> {
        let batch = self.drain();
        let n = batch.len();
        if let Err(e) = store.add_hits(&batch).await {
            if let Ok(mut m) = self.0.lock() {
                for (id, c) in batch {
                    *m.entry(id).or_insert(0) += c;
                }
            }
            return Err(e);
        }
        Ok(n)
    }
}

/// Who a decision was about, for the decision log.
struct LoggedStep {
    namespace: Namespace,
    pod: String,
    workflow: String,
    node: String,
    template: String,
    seed: String,
}

/// What is settled about a step once its key is derived: the pod as admitted, its step, the
/// author's settings, its key and the decision's clock. Passed as one value to the hit, miss
/// and explanation paths.
#[derive(Clone, Copy)]
struct Decided<'a> {
    pod: &'a Pod,
    step: &'a StepPod,
    settings: &'a StepSettings,
    km: &'a KeyMaterial,
    now: Timestamp,
}

struct Ctx<'a> {
    decoded: &'a Decoded,
    warnings: Vec<String>,
    /// The newest entry with the key in any state, when the lookup already fetched it.
    known_latest: Option<Option<Entry>>,
    /// The step being decided (for the decision log), once classified.
    step: Option<LoggedStep>,
    /// Compute time a hit saved, seconds.
    saved: f64,
}

tokio::task_local! {
    /// Time spent in store calls by the admission running in this task (its span's `store_ms`).
    static STORE_TIME: std::cell::Cell<std::time::Duration>;
}

impl Admitter {
    /// Answers a decoded review. Never fails: every error becomes an allowed response.
    ///
    /// Runs in one `admission` span whose fields (uid, namespace, pod, key, decision, store_ms)
    /// are declared up front and recorded as they become known, so traces and logs of one
    /// admission can be found and filtered by any of them.
    pub async fn admit(&self, decoded: &Decoded, now: Timestamp) -> Outcome {
        use tracing::field::Empty;
        let span = tracing::info_span!(
            "admission",
            uid = %decoded.uid,
            namespace = decoded.namespace.as_deref().unwrap_or(""),
            pod = decoded.name.as_deref().unwrap_or(""),
            key = Empty,
            decision = Empty,
            store_ms = Empty,
        );
        let run = STORE_TIME.scope(std::cell::Cell::new(std::time::Duration::ZERO), async {
            let outcome = self.admit_in_span(decoded, now).await;
            let span = tracing::Span::current();
            if let Some(k) = &outcome.explain.key {
                span.record("key", k.as_str());
            }
            span.record("decision", outcome.explain.detail.as_str());
            let store = STORE_TIME.try_with(std::cell::Cell::get).unwrap_or_default();
            span.record("store_ms", store.as_secs_f64() * 1000.0);
            outcome
        });
        tracing::Instrument::instrument(run, span).await
    }

    async fn admit_in_span(&self, decoded: &Decoded, now: Timestamp) -> Outcome {
        let started = Instant::now();
        let mut ctx = Ctx { decoded, warnings: Vec::new(), known_latest: None, step: None, saved: 0.0 };
        let explain = if let Some(noop) = self.config.noop {
            if noop == Noop::AfterLookup {
                let nobody = CacheKey::from_digest(&[0; 32]);
                let _ = self.timed("lookup", self.store.lookup_explained(&nobody, Staleness::Unbounded, now)).await;
            }
            skip(Decision::Noop, "no-op baseline mode".into())
        } else {
            match &decoded.subject {
                Subject::Ignored(reason) => skip(Decision::SkippedNotArgo, reason.clone()),
                Subject::Unreadable(w) => {
                    ctx.warnings.push(w.clone());
                    skip(Decision::Invalid, w.clone())
                }
                Subject::PodCreate(pod) => self.admit_pod(&mut ctx, pod, now).await,
            }
        };
        let mut explain = explain;
        explain.warnings.extend(ctx.warnings);
        self.metrics.decision(explain.detail);
        if let Some(step) = ctx.step {
            self.metrics.namespace_decision(step.namespace.as_str(), explain.detail);
            let logged = explain.key.is_some() || explain.detail == Decision::SkippedNotController;
            if logged && !decoded.dry_run {
                self.store.log_decision(decision_record(&explain, step, ctx.saved, now));
            }
        }
        self.metrics.admission_duration.observe(started.elapsed().as_secs_f64());
        tracing::info!(
            uid = %decoded.uid,
            namespace = decoded.namespace.as_deref().unwrap_or(""),
            pod = decoded.name.as_deref().unwrap_or(""),
            key = explain.key.as_deref().unwrap_or(""),
            decision = explain.detail.as_str(),
            reason = %explain.reason,
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            store_ms = STORE_TIME.try_with(std::cell::Cell::get).unwrap_or_default().as_secs_f64() * 1000.0,
            "admission"
        );
        let review = respond::allow(&decoded.uid, &explain.patch, &explain.warnings);
        Outcome { review, explain }
    }

    async fn timed<T>(
        &self,
        op: &str,
        fut: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let t = Instant::now();
        let r = fut.await;
        let _ = STORE_TIME.try_with(|c| c.set(c.get() + t.elapsed()));
        self.metrics.store_call(op, t.elapsed().as_secs_f64(), r.as_ref().err().map(StoreError::kind));
        r
    }

    async fn admit_pod(&self, ctx: &mut Ctx<'_>, pod: &Pod, now: Timestamp) -> Explain {
        // The API server sends the object with its namespace and name; only a request that
        // names them outside the object pays for a copy of the pod.
        let fill_namespace = pod.metadata.namespace.is_none() && ctx.decoded.namespace.is_some();
        let fill_name = pod.metadata.name.is_none() && ctx.decoded.name.is_some();
        let pod: std::borrow::Cow<'_, Pod> = if fill_namespace || fill_name {
            let mut owned = pod.clone();
            if fill_namespace {
                owned.metadata.namespace = ctx.decoded.namespace.clone();
            }
            if fill_name {
                owned.metadata.name = ctx.decoded.name.clone();
            }
            std::borrow::Cow::Owned(owned)
        } else {
            std::borrow::Cow::Borrowed(pod)
        };
        let pod: &Pod = &pod;
        if let Err(not) = self.config.admin.controllers.check(&ctx.decoded.requester) {
            return self.not_controller(ctx, pod, &not);
        }
        let step = match self.cacheable_step(ctx, pod).await {
            Ok(step) => step,
            Err(skipped) => return *skipped,
        };
        let (configmaps, unseen) = self.configmaps(pod).await;
        let (settings, km) = match self.settle(ctx, pod, &step, configmaps.as_ref(), unseen) {
            Ok(settled) => settled,
            Err(skipped) => return *skipped,
        };
        let mut ex = Explain {
            key: Some(km.key.to_string()),
            layout: Some(layout_name(&step)),
            staleness: Some(settings.staleness.to_db()),
            ..Default::default()
        };

        // A step whose inputs can move is never served under `--moving-artifacts miss`: no
        // lookup, no latch. It is still marked (recorded), as a staleness-0 step is.
        let moving = stepcache_core::moving::moving_inputs(&step.template.input_artifacts());
        if let Some(cause) = stepcache_core::policy::refuse_moving(&self.config.admin, moving) {
            let d = Decided { pod, step: &step, settings: &settings, km: &km, now };
            return self.miss(ctx, &d, cause.describe(), false, ex).await;
        }
        let candidate = if settings.staleness.never_reuse() {
            None
        } else {
            match self.timed("lookup", self.store.lookup_explained(&km.key, settings.staleness, now)).await {
                Ok(found) => {
                    ctx.known_latest = Some(found.latest);
                    found.candidate
                }
                Err(e) => {
                    ctx.warnings.push(format!("stepcache: cache unavailable ({e}); step runs uncached"));
                    ex.decide(Decision::Error);
                    ex.reason = format!("store error: {e}");
                    return ex;
                }
            }
        };
        let declared = step.template.declared_outputs();
        let choice = choose(
            settings.staleness,
            &declared,
            candidate.as_ref().map(|e| Candidate { id: e.id, staleness: e.run.staleness, outputs: &e.run.outputs }),
        );
        let d = Decided { pod, step: &step, settings: &settings, km: &km, now };
        match (choice, candidate) {
            (Choice::Hit(_), Some(entry)) => self.hit(ctx, &d, entry, false, ex).await,
            (Choice::HitAdopting(_), Some(entry)) => self.hit(ctx, &d, entry, true, ex).await,
            (Choice::Miss(cause), _) => {
                let ex = if self.may_latch(&step, settings.latch) && cause != MissCause::NeverReuse {
                    match self.try_latch(pod, &step, &km, now, ctx.decoded.dry_run, ex).await {
                        Ok(waiting) => return waiting,
                        Err(ex) => ex,
                    }
                } else {
                    ex
                };
                self.miss(ctx, &d, cause.describe(), true, ex).await
            }
            (_, None) => self.miss(ctx, &d, MissCause::NoEntry.describe(), true, ex).await,
        }
    }

    /// A pod someone other than the Argo controller created: left alone (no lookup, no mark, no
    /// task result), except that stepcache-written labels and annotations it arrived with are
    /// removed, so a copied mark or decision cannot pass for stepcache's. Logged (when it names an
    /// Argo node) so `why` can say why the step was not cached.
    fn not_controller(&self, ctx: &mut Ctx<'_>, pod: &Pod, not: &stepcache_core::trust::NotController) -> Explain {
        let reason = not.to_string();
        tracing::info!(
            namespace = pod.metadata.namespace.as_deref().unwrap_or(""),
            pod = pod.metadata.name.as_deref().unwrap_or(""),
            user = %ctx.decoded.requester.username,
            "pod not created by the Argo controller; not decided"
        );
        let empty = BTreeMap::new();
        let labels_map = pod.metadata.labels.as_ref().unwrap_or(&empty);
        let annotations = pod.metadata.annotations.as_ref().unwrap_or(&empty);
        let namespace = pod.metadata.namespace.as_deref().and_then(|n| Namespace::parse(n).ok());
        if let (Some(namespace), Some(workflow)) = (namespace, labels_map.get(crate::argo::labels::WORKFLOW_LABEL)) {
            ctx.step = Some(LoggedStep {
                namespace,
                pod: pod.metadata.name.clone().unwrap_or_default(),
                workflow: workflow.clone(),
                node: annotations.get(crate::argo::labels::NODE_ID_ANNOTATION).cloned().unwrap_or_default(),
                template: String::new(),
                seed: String::new(),
            });
        }
        let mut ex = skip(Decision::SkippedNotController, reason);
        ex.patch = stepcache_core::trust::strip_stepcache_metadata(pod);
        if !ex.patch.is_empty() {
            ctx.warnings.push(
                "stepcache: removed stepcache.dev/ labels and annotations that only stepcache writes \
                 (this pod was not created by the Argo controller)"
                    .into(),
            );
        }
        ex
    }

    /// The pod's step, when it is an Argo step stepcache may cache here; otherwise the skip
    /// (with a warning when the author asked for caching or the reason deserves one).
    async fn cacheable_step(&self, ctx: &mut Ctx<'_>, pod: &Pod) -> Result<StepPod, Box<Explain>> {
        let asked = pod.metadata.annotations.as_ref().is_some_and(author_asked);
        let step = match self.classify(ctx, pod).await {
            Classification::NotArgo => {
                return Err(skipped(Decision::SkippedNotArgo, "not created by the Argo controller".into()))
            }
            Classification::Skip(reason) => {
                let malformed = matches!(reason, SkipReason::Malformed(_));
                if asked || reason.warns() {
                    ctx.warnings.push(format!("stepcache: step not cached: {reason}"));
                }
                let detail = if malformed { Decision::Invalid } else { Decision::Skipped };
                return Err(skipped(detail, reason.to_string()));
            }
            Classification::Step(step) => *step,
        };
        if let Some(x) = crate::argo::exclusion::exclusion(pod) {
            if x.warns() {
                ctx.warnings.push(format!("stepcache: step not cached: {x}"));
            }
            return Err(skipped(Decision::Skipped, x.to_string()));
        }
        ctx.step = Some(LoggedStep {
            namespace: step.namespace.clone(),
            pod: step.pod_name.clone(),
            workflow: step.workflow_name.clone(),
            node: step.node_id.clone(),
            template: step.template.name().to_owned(),
            seed: String::new(),
        });
        if !self.config.admin.covers(&step.namespace) {
            let reason = format!("namespace {} is not covered by this installation", step.namespace);
            return Err(skipped(Decision::Skipped, reason));
        }
        Ok(step)
    }

    /// The author's settings for the step and its key; otherwise the skip (opted out, invalid
    /// annotations, nothing to key on).
    fn settle(
        &self,
        ctx: &mut Ctx<'_>,
        pod: &Pod,
        step: &StepPod,
        configmaps: &dyn ConfigMaps,
        unseen: Option<&'static str>,
    ) -> Result<(StepSettings, KeyMaterial), Box<Explain>> {
        let empty = BTreeMap::new();
        let labels_map = pod.metadata.labels.as_ref().unwrap_or(&empty);
        let annotations = pod.metadata.annotations.as_ref().unwrap_or(&empty);
        let settings = match plan(labels_map, annotations, &self.config.admin) {
            Plan::OptedOut { by } => return Err(skipped(Decision::OptedOut, format!("opted out by label {by}"))),
            Plan::Invalid { warnings } => {
                let reason = warnings.join("; ");
                ctx.warnings.extend(warnings.into_iter().map(|w| format!("stepcache: {w}")));
                return Err(skipped(Decision::Invalid, reason));
            }
            Plan::Lookup(s) => s,
        };
        ctx.warnings.extend(settings.warnings.iter().map(|w| format!("stepcache: {w}")));
        // Cluster scope applies only to namespaces the admin lets share (`--share-namespaces`).
        let scope = match self.config.scope {
            Scope::Cluster if !self.config.admin.shares(&step.namespace) => Scope::Namespace,
            s => s,
        };
        if let Some(logged) = ctx.step.as_mut() {
            logged.seed = settings.seed.as_str().to_owned();
        }
        match derive_key_with(pod, step, &settings.seed, scope, configmaps) {
            Ok(km) => Ok((settings, km)),
            // Not keyed because a ConfigMap's contents are not known: not the author's mistake,
            // a skip that says which ConfigMap (and why admission could not see it).
            Err(e @ KeyError::ConfigMapUnknown(_)) => {
                let reason = match unseen {
                    Some(why) => format!("{e} ({why})"),
                    None => format!("{e} (not found in namespace {})", step.namespace),
                };
                ctx.warnings.push(format!("stepcache: step not cached: {reason}"));
                Err(skipped(Decision::Skipped, reason))
            }
            // Secret contents are keyed and this Secret is not visible: not cached, and why.
            Err(e @ KeyError::SecretUnknown(_)) => {
                let reason = format!("{e} (Secret not visible to stepcache: needs list/watch on secrets)");
                ctx.warnings.push(format!("stepcache: step not cached: {reason}"));
                Err(skipped(Decision::Skipped, reason))
            }
            Err(e) => {
                ctx.warnings.push(format!("stepcache: step not cached: {e}"));
                Err(skipped(Decision::Invalid, e.to_string()))
            }
        }
    }

    async fn hit(&self, ctx: &mut Ctx<'_>, d: &Decided<'_>, entry: Entry, adopt: bool, mut ex: Explain) -> Explain {
        let Decided { pod, step, settings, km, now } = *d;
        if let Some(r) = self.ports.refusals.set.blocked(km.key.as_str(), step.namespace.as_str()) {
            let reason =
                stepcache_core::refusal::blocked_reason(&r.key, &r.namespace, &r.refused_at.to_string(), &r.cause);
            return self.miss(ctx, d, reason, false, ex).await;
        }
        if let Some(why) = self.changed_configmaps(step, km).await {
            return self.miss(ctx, d, why, false, ex).await;
        }
        if let Some(why) = self.changed_secrets(step, km).await {
            return self.miss(ctx, d, why, false, ex).await;
        }
        if let Some(why) = self.integrity_failure(pod, step, &entry, ctx.decoded.dry_run, now).await {
            return self.miss(ctx, d, why, false, ex).await;
        }
        if self.config.admin.shadow {
            let reason = format!("shadow mode: would have served entry {}", entry.id);
            let mut ex = self.miss(ctx, d, reason, false, ex).await;
            ex.decide(Decision::ShadowHit);
            ex.entry_id = Some(entry.id.0);
            return ex;
        }
        // The hit pod is built before anything is written: when the API server would refuse it
        // (a refused create fails the Argo node), the step runs as a miss and nothing is left behind.
        let hit = HitInfo {
            entry_id: entry.id,
            key: &km.key,
            outputs: &entry.run.outputs,
            source_workflow: &entry.run.workflow_name,
            source_node: &entry.run.node_id,
            source_finished_at: entry.run.finished_at.to_string(),
        };
        let built = match self.namespace_limits(step).await {
            Ok(limits) => rewrite::build_hit_patch(pod, step, &hit, &self.config.rewrite, &limits)
                .map_err(|e| (e.kind(), e.to_string())),
            Err(e) => Err((e.kind(), e.to_string())),
        };
        let patch = match built {
            Ok(patch) => patch,
            Err((kind, why)) => {
                self.metrics.hit_pod_refusals.get_or_create(&crate::metrics::ReasonLabel { reason: kind.into() }).inc();
                ctx.warnings.push(format!("stepcache: hit not served: {why}; step runs"));
                let reason = format!("hit could not be delivered: {why}");
                return self.miss(ctx, d, reason, false, ex).await;
            }
        };
        let task_result = rewrite::build_task_result(step, &entry.run.outputs);
        if rewrite::uses_task_result(step.layout) {
            let required = rewrite::requires_task_result(step.layout);
            // (why the hit cannot be delivered, whether that is an error worth its own metric)
            let failure: Option<(String, bool)> = if step.workflow_uid.is_none() && required {
                Some(("pod has no Workflow owner uid for the task result".into(), false))
            } else {
                match (&self.ports.task_results, ctx.decoded.dry_run) {
                    (_, true) => None,
                    (TaskResults::Api(w), false) => match w.upsert(&task_result).await {
                        Ok(()) => None,
                        Err(e) => {
                            self.metrics
                                .task_result_errors
                                .get_or_create(&crate::metrics::ReasonLabel { reason: e.kind().into() })
                                .inc();
                            if required {
                                // Leaving another writer's task result alone is no error.
                                let is_error = !matches!(e, crate::k8s::KubeError::NotOurs(_));
                                Some((format!("task result not written ({e})"), is_error))
                            } else {
                                tracing::warn!(error = %e, "task result not written; relying on the outputs annotation");
                                None
                            }
                        }
                    },
                    (TaskResults::Unavailable, false) if required => {
                        Some(("no Kubernetes API to write the task result".into(), false))
                    }
                    (TaskResults::Unavailable, false) => None,
                    (TaskResults::Assumed, false) => {
                        if required {
                            ex.offline_assumed.push(
                                "the WorkflowTaskResult under `creates` was not written (no Kubernetes API offline); \
                                 a `serve` without the Kubernetes API answers miss for this step instead"
                                    .into(),
                            );
                        }
                        None
                    }
                }
            };
            if let Some((why, is_error)) = failure {
                ctx.warnings.push(format!("stepcache: hit not served: {why}; step runs"));
                let reason = format!("hit could not be delivered: {why}");
                let mut ex = self.miss(ctx, d, reason, true, ex).await;
                if is_error {
                    // Counted as an error, but the pod runs marked: what it does stays a miss.
                    ex.detail = Decision::Error;
                }
                return ex;
            }
            if !ctx.decoded.dry_run {
                // A dry run writes nothing, so it lists nothing as created.
                ex.creates.push(task_result);
            }
        }
        ex.patch = patch;
        ex.decide(Decision::Hit);
        if !ctx.decoded.dry_run {
            let pending = crate::refusal::PendingHit {
                namespace: step.namespace.to_string(),
                pod_name: step.pod_name.clone(),
                workflow: step.workflow_name.clone(),
                node_id: step.node_id.clone(),
                key: km.key.to_string(),
                entry_id: entry.id.0,
                answered: Instant::now(),
            };
            self.ports.refusals.note_hit(pending, &self.metrics);
        }
        ex.entry_id = Some(entry.id.0);
        ex.adopted = adopt;
        let saved =
            (entry.run.finished_at.as_millisecond() - entry.run.started_at.as_millisecond()).max(0) as f64 / 1000.0;
        ex.reason = format!(
            "served entry {} from workflow {} (finished {}), saving {}",
            entry.id,
            entry.run.workflow_name,
            entry.run.finished_at,
            human_seconds(saved)
        );
        self.metrics.saved(step.namespace.as_str(), saved);
        ctx.saved = saved;
        if !ctx.decoded.dry_run {
            self.after_hit(step, entry, adopt, settings.staleness, saved, now).await;
        }
        ex
    }

    /// Adopting copy, hit count and Event: off the response path when configured.
    async fn after_hit(
        &self,
        step: &StepPod,
        entry: Entry,
        adopt: bool,
        staleness: crate::types::Staleness,
        saved: f64,
        now: Timestamp,
    ) {
        let this = self.clone();
        let ev = StepEvent {
            namespace: step.namespace.to_string(),
            workflow: step.workflow_name.clone(),
            workflow_uid: step.workflow_uid.clone(),
            reason: "StepServedFromCache".into(),
            message: format!(
                "step {} served from cache entry {} (workflow {}), saved {}",
                step.node_name.as_deref().unwrap_or(&step.node_id),
                entry.id,
                entry.run.workflow_name,
                human_seconds(saved)
            ),
        };
        let work = async move {
            if adopt {
                if let Err(e) = this.timed("adopt", this.store.adopt(&entry, staleness, now)).await {
                    tracing::warn!(error = %e, entry = entry.id.0, "adopting copy not recorded");
                }
            }
            if let Some(hits) = this.ports.effects.hit_counter() {
                hits.note(entry.id);
            } else if let Err(e) = this.timed("note_hit", this.store.note_hit(entry.id)).await {
                tracing::debug!(error = %e, "hit count not updated");
            }
            if let Some(p) = &this.ports.events {
                if let Err(e) = p.post(&ev, now).await {
                    tracing::debug!(error = %e, "event not posted");
                }
            }
        };
        if matches!(self.ports.effects, SideEffects::Inline) {
            work.await;
        } else if adopt || self.ports.events.is_some() {
            tokio::spawn(work);
        } else {
            // Nothing to wait for: count the hit without spawning a task.
            work.await;
        }
    }

    /// What the key may read of the ConfigMaps, and why none are visible when so. Waits for the
    /// watch cache's first list only when the pod references a ConfigMap at all.
    async fn configmaps(&self, pod: &Pod) -> (Box<dyn ConfigMaps + Send + Sync>, Option<&'static str>) {
        let (view, unseen) = self.configmap_view(pod).await;
        match &self.ports.secret_digests {
            Some(secrets) => {
                (Box::new(crate::k8s::secret_digests::WithSecrets { inner: view, secrets: secrets.clone() }), unseen)
            }
            None => (view, unseen),
        }
    }

    /// The ConfigMap part of [`Admitter::configmaps`].
    async fn configmap_view(&self, pod: &Pod) -> (Box<dyn ConfigMaps + Send + Sync>, Option<&'static str>) {
        if stepcache_core::key::configmaps::configmap_names(pod).is_empty() {
            return (Box::new(NoConfigMaps), None);
        }
        match &self.ports.configmaps {
            Some(cache) => match cache.view().await {
                Ok(view) => (Box::new(view), None),
                Err(_) => (Box::new(NoConfigMaps), Some("ConfigMaps not yet listed")),
            },
            None => (Box::new(NoConfigMaps), Some("no Kubernetes API to read ConfigMaps")),
        }
    }

    /// Why a hit must not be served because a ConfigMap the key read is not (provably) what
    /// the API server holds now: each is re-read (quorum `get`) and its digest compared with the
    /// key's. Closes the window in which the watch cache still shows contents changed a moment
    /// ago. Nothing to check when the key read no ConfigMap.
    async fn changed_configmaps(&self, step: &StepPod, km: &KeyMaterial) -> Option<String> {
        let cache = self.ports.configmaps.as_ref()?;
        let fresh = |name: String| async move {
            cache.fresh_digest(step.namespace.as_str(), &name).await.map_err(|e| e.to_string())
        };
        changed_objects(km, stepcache_core::key::field::CONFIG_MAPS, "configmap", fresh).await
    }

    /// The same for the Secrets whose contents the key read (`--key-secret-contents`).
    async fn changed_secrets(&self, step: &StepPod, km: &KeyMaterial) -> Option<String> {
        let cache = self.ports.secret_digests.as_ref()?;
        let fresh = |name: String| async move { cache.fresh_digest(step.namespace.as_str(), &name).await };
        changed_objects(km, stepcache_core::key::field::SECRETS, "secret", fresh).await
    }

    /// The LimitRanges of the step's namespace from the watch cache; none known without a
    /// Kubernetes API (`review`, `--kube off`).
    pub(crate) async fn namespace_limits(
        &self,
        step: &StepPod,
    ) -> Result<stepcache_core::hitpod::NamespaceLimits, crate::k8s::limits::LimitsError> {
        match &self.ports.limits {
            Some(cache) => cache.for_namespace(step.namespace.as_str()).await,
            None => Ok(Default::default()),
        }
    }

    async fn miss(
        &self,
        ctx: &mut Ctx<'_>,
        d: &Decided<'_>,
        reason: String,
        explain_nearest: bool,
        mut ex: Explain,
    ) -> Explain {
        let Decided { pod, step, settings, km, .. } = *d;
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let claims = MarkClaims {
            key: &km.key,
            namespace: &step.namespace,
            pod_name: &pod_name,
            workflow_uid: step.workflow_uid.as_deref().unwrap_or(""),
            staleness: settings.staleness,
            seed: &settings.seed,
        };
        let mark = self.signer.sign(&claims);
        let nearest = if explain_nearest && self.config.explain_misses {
            let known = ctx.known_latest.take();
            self.nearest(d, known).await
        } else {
            None
        };
        let full_reason = match &nearest {
            Some(n) if n.differences.is_empty() => format!("{reason}; nearest entry {} is {}", n.entry_id, n.state),
            Some(n) => format!("{reason}; nearest entry {} differs: {}", n.entry_id, n.differences.join(", ")),
            None => reason.clone(),
        };
        let m = MarkInfo {
            key: &km.key,
            mark: &mark,
            staleness_db: settings.staleness.to_db(),
            seed: settings.seed.as_str(),
            decision: Decision::Miss,
            miss_reason: Some(full_reason.clone()),
        };
        ex.patch = rewrite::build_mark_patch(pod, &m);
        ex.decide(Decision::Miss);
        ex.reason = full_reason;
        ex.nearest = nearest;
        ex
    }

    async fn nearest(&self, d: &Decided<'_>, known_latest: Option<Option<Entry>>) -> Option<Nearest> {
        let (key, material, now) = (&d.km.key, &d.km.material, d.now);
        let same_key = match known_latest {
            Some(latest) => latest,
            None => self.timed("latest_for_key", self.store.latest_for_key(key)).await.ok().flatten(),
        };
        let entry = match same_key {
            Some(e) => e,
            None => self.nearest_of_template(&d.step.namespace, d.step.template.name()).await?,
        };
        // The lookup's own arithmetic (milliseconds, same boundary), so an entry the lookup
        // refused is never explained as live.
        let finished_ms = entry.run.finished_at.as_millisecond();
        let now_ms = now.as_millisecond();
        let state = if entry.invalidated_at.is_some() {
            "invalidated"
        } else if entry.run.expires_at.is_some_and(|x| x <= now) {
            "expired"
        } else if finished_ms > now_ms {
            "future"
        } else if finished_ms < crate::store::oldest_finished_ms(d.settings.staleness, now_ms) {
            "stale"
        } else {
            "live"
        };
        Some(Nearest {
            entry_id: entry.id.0,
            workflow: entry.run.workflow_name.clone(),
            state: state.into(),
            differences: if &entry.run.key == key { Vec::new() } else { diff_material(&entry.run.material, material) },
        })
    }
}

impl Admitter {
    /// Classifies the pod; a pod whose template or args Argo offloaded is classified again with
    /// its ConfigMap, read through the API (bounded; an unreadable ConfigMap leaves the pod
    /// uncached, with a warning).
    async fn classify(&self, ctx: &mut Ctx<'_>, pod: &Pod) -> Classification {
        let first = classify(pod);
        let (Classification::Skip(SkipReason::Offloaded), Some(source)) = (&first, &self.ports.offload) else {
            return first;
        };
        let (Some(ns), Some(name)) = (pod.metadata.namespace.as_deref(), pod.metadata.name.as_deref()) else {
            return first;
        };
        let t = Instant::now();
        let fetched = source.fetch(ns, name).await;
        tracing::debug!(
            pod = name,
            elapsed_ms = t.elapsed().as_secs_f64() * 1000.0,
            ok = fetched.is_ok(),
            "offload ConfigMap read"
        );
        match fetched {
            Ok(Some(o)) => classify_with(pod, Some(&o)),
            Ok(None) => first,
            Err(e) => {
                ctx.warnings.push(format!("stepcache: step not cached: offload ConfigMap {name} unreadable ({e})"));
                first
            }
        }
    }

    /// Newest entry of a template in a namespace; cached briefly when serving.
    async fn nearest_of_template(&self, ns: &Namespace, template_name: &str) -> Option<Entry> {
        let cache_key = (ns.to_string(), template_name.to_owned());
        let cache = match &self.ports.effects {
            SideEffects::Background { nearest, .. } => Some(nearest),
            SideEffects::Inline => None,
        };
        let cached = cache.and_then(|c| {
            let m = c.0.lock().ok()?;
            m.get(&cache_key).filter(|(at, _)| at.elapsed() < NEAREST_TTL).map(|(_, e)| e.clone())
        });
        if let Some(e) = cached {
            return e;
        }
        let found = self.timed("nearest", self.store.nearest(ns, template_name)).await.ok()?;
        if let Some(c) = cache {
            if let Ok(mut m) = c.0.lock() {
                if m.len() > 10_000 {
                    m.clear();
                }
                m.insert(cache_key, (Instant::now(), found.clone()));
            }
        }
        found
    }
}

/// The decision-log row of one step-pod decision.
fn decision_record(
    ex: &Explain,
    step: LoggedStep,
    saved_seconds: f64,
    now: Timestamp,
) -> crate::store::decisions::LoggedDecision {
    crate::store::decisions::LoggedDecision {
        id: 0,
        decided_at: now,
        namespace: step.namespace.to_string(),
        pod_name: step.pod,
        workflow_name: step.workflow,
        node_id: step.node,
        template_name: step.template,
        decision: ex.detail.as_str().to_owned(),
        reason: ex.reason.clone(),
        key: ex.key.clone().unwrap_or_default(),
        staleness: ex.staleness.unwrap_or_default(),
        seed: step.seed,
        entry_id: ex.entry_id,
        nearest_id: ex.nearest.as_ref().map(|n| n.entry_id),
        differences: ex.nearest.as_ref().map(|n| n.differences.clone()).unwrap_or_default(),
        saved_seconds,
    }
}

/// [`skip`], boxed for the early returns of the steps before a lookup.
fn skipped(detail: Decision, reason: String) -> Box<Explain> {
    Box::new(skip(detail, reason))
}

/// Why a hit must not be served because an object whose digest the key holds under `field`
/// (name → digest) reads otherwise now (`<what>-changed`), or could not be re-read
/// (`<what>-unverified`); `None` when every one matches or the key holds none.
async fn changed_objects<F, Fut>(km: &KeyMaterial, field: &str, what: &str, fresh: F) -> Option<String>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<Option<String>, String>>,
{
    let read = km.material.get(field)?.as_object()?;
    for (name, want) in read {
        match fresh(name.clone()).await {
            Ok(Some(now)) if Some(now.as_str()) == want.as_str() => {}
            Ok(_) => return Some(format!("{what}-changed: {name} (changed since the watch cache saw it)")),
            Err(e) => return Some(format!("{what}-unverified: {e}")),
        }
    }
    None
}

fn skip(detail: Decision, reason: String) -> Explain {
    Explain { decision: detail.effect(), detail, reason, ..Default::default() }
}

fn layout_name(step: &StepPod) -> String {
    serde_json::to_value(step.layout).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// True when the author set any stepcache or KFP caching annotation (so a skip deserves a warning).
fn author_asked(annotations: &BTreeMap<String, String>) -> bool {
    use crate::argo::labels as l;
    [l::MAX_CACHE_STALENESS, l::CACHE_SEED, l::LATCH, l::KFP_MAX_CACHE_STALENESS]
        .iter()
        .any(|k| annotations.contains_key(*k))
}

/// `4m12s`-style rendering for events and reasons.
pub fn human_seconds(s: f64) -> String {
    let total = s.max(0.0).round() as u64;
    let (h, m, sec) = (total / 3600, (total % 3600) / 60, total % 60);
    match (h, m) {
        (0, 0) => format!("{sec}s"),
        (0, _) => format!("{m}m{sec}s"),
        _ => format!("{h}h{m}m{sec}s"),
    }
}
