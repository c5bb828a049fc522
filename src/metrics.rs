//! Prometheus metrics: one registry, named `stepcache_<noun>_<unit>`, labels with bounded values.
//!
//! Owns: `Metrics` and its text encoding. Served on the plain-HTTP metrics port by `server`.

use crate::decision::Decision;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// Label set with one bounded value.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabel {
    /// Admission decision.
    pub decision: String,
}

/// Label set for store operations.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    /// Store operation (`lookup`, `adopt`, `record`, ...).
    pub op: String,
}

/// Label set for errors: operation and error kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpKindLabel {
    /// Operation.
    pub op: String,
    /// Error kind (from the error type's `kind()`).
    pub kind: String,
}

/// Label set for reasons.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Reason kind.
    pub reason: String,
}

/// Label set of per-namespace series: a namespace (bounded, see [`NAMESPACE_LABEL_LIMIT`]) and
/// a decision.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceDecisionLabel {
    /// Namespace of the pod, or [`OTHER_NAMESPACES`].
    pub namespace: String,
    /// Admission decision.
    pub decision: String,
}

/// Label set with only a (bounded) namespace.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceLabel {
    /// Namespace of the pod, or [`OTHER_NAMESPACES`].
    pub namespace: String,
}

/// Distinct namespaces that get series of their own; later ones share [`OTHER_NAMESPACES`],
/// so a cluster creating namespaces per run cannot explode the series count.
pub const NAMESPACE_LABEL_LIMIT: usize = 200;
/// The `namespace` label value of namespaces past [`NAMESPACE_LABEL_LIMIT`].
pub const OTHER_NAMESPACES: &str = "_other";

/// Label set for supervised background loops.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabel {
    /// Loop name (`hit_flush`, `gc`, `cert_reload`, ...).
    pub task: String,
}

/// Every metric stepcache exports.
pub struct Metrics {
    registry: Registry,
    /// Admission requests by decision.
    pub admission_requests: Family<DecisionLabel, Counter>,
    /// Admission latency.
    pub admission_duration: Histogram,
    /// Store call latency by operation.
    pub store_duration: Family<OpLabel, Histogram>,
    /// Store errors by operation and kind.
    pub store_errors: Family<OpKindLabel, Counter>,
    /// Task-result writes that failed, by kind.
    pub task_result_errors: Family<ReasonLabel, Counter>,
    /// Hits served as misses because the API server would refuse the hit pod (or the
    /// LimitRanges it must meet are not known yet), by reason.
    pub hit_pod_refusals: Family<ReasonLabel, Counter>,
    /// Executions recorded.
    pub recorded: Counter,
    /// Completions not recorded, by reason.
    pub recorder_skipped: Family<ReasonLabel, Counter>,
    /// Lag between a pod finishing and its row being committed.
    pub recorder_lag: Histogram,
    /// Recordings whose image digest differs from an earlier entry with the same key.
    pub tag_drift: Counter,
    /// Compute time saved by hits (sum of the served runs' durations).
    pub time_saved_seconds: Counter<f64, AtomicU64>,
    /// Entries in the store, refreshed periodically.
    pub entries: Gauge,
    /// Certificate reloads by result.
    pub cert_reloads: Family<ReasonLabel, Counter>,
    /// Hits the API server refused after stepcache answered them (their key is then blocked).
    pub refused_hits: Counter,
    /// Answered hits not checked for refusal because the confirmation queue was full.
    pub refused_hit_checks_dropped: Counter,
    /// (key, namespace) pairs blocked by refused hits, as this replica last read them.
    pub refused_keys: Gauge,
    /// Output-artifact existence checks by result (`present`, `gone`, `unknown`, `cached-*`,
    /// `unchecked-<kind>`).
    pub artifact_checks: Family<ReasonLabel, Counter>,
    /// Time the artifact checks of one hit took.
    pub artifact_check_duration: Histogram,
    /// Hits turned into misses by an integrity check (`artifact-gone`, `artifact-unverified`,
    /// `image-moved`).
    pub integrity_misses: Family<ReasonLabel, Counter>,
    /// Image tag observations written to the store.
    pub image_tag_observations: Counter,
    /// Step-pod decisions by namespace and decision (Argo step pods only).
    pub namespace_decisions: Family<NamespaceDecisionLabel, Counter>,
    /// Compute time saved by hits, by namespace.
    pub namespace_time_saved: Family<NamespaceLabel, Counter<f64, AtomicU64>>,
    /// Namespaces that have series of their own.
    namespaces_seen: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Recorder list/watch failures by resource and reason (`forbidden` = a missing permission).
    pub watch_errors: Family<WatchErrorLabel, Counter>,
    /// Background loops that stopped (ended or panicked) and were restarted, by loop.
    pub background_restarts: Family<TaskLabel, Counter>,
}

/// Label set for the recorder's watch failures.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WatchErrorLabel {
    /// Watched resource (`pods`, `workflowtaskresults`).
    pub resource: String,
    /// Failure kind (`forbidden`, `expired`, `api`, `client`).
    pub reason: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("stepcache");
        let admission_requests = Family::<DecisionLabel, Counter>::default();
        registry.register("admission_requests", "Admission requests by decision", admission_requests.clone());
        let admission_duration = latency_histogram();
        registry.register("admission_duration_seconds", "Admission latency", admission_duration.clone());
        let store_duration = Family::<OpLabel, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register("store_duration_seconds", "Store call latency", store_duration.clone());
        let store_errors = Family::<OpKindLabel, Counter>::default();
        registry.register("store_errors", "Store call errors", store_errors.clone());
        let task_result_errors = Family::<ReasonLabel, Counter>::default();
        registry.register("task_result_errors", "WorkflowTaskResult writes that failed", task_result_errors.clone());
        let hit_pod_refusals = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "hit_pod_refusals",
            "Hits served as misses because no hit pod the API server accepts could be built",
            hit_pod_refusals.clone(),
        );
        let recorded = Counter::default();
        registry.register("recorder_recorded", "Executions recorded", recorded.clone());
        let recorder_skipped = Family::<ReasonLabel, Counter>::default();
        registry.register("recorder_skipped", "Completions not recorded, by reason", recorder_skipped.clone());
        let recorder_lag = Histogram::new(exponential_buckets(0.01, 2.0, 16));
        registry.register("recorder_lag_seconds", "Pod finish to committed record", recorder_lag.clone());
        let tag_drift = Counter::default();
        registry.register("tag_drift", "Recordings whose image digest differs for the same key", tag_drift.clone());
        let time_saved_seconds = Counter::<f64, AtomicU64>::default();
        registry.register("time_saved_seconds", "Compute time saved by cache hits", time_saved_seconds.clone());
        let entries = Gauge::default();
        registry.register("entries", "Entries in the execution store", entries.clone());
        let cert_reloads = Family::<ReasonLabel, Counter>::default();
        registry.register("cert_reloads", "Serving certificate reloads by result", cert_reloads.clone());
        let refused_hits = Counter::default();
        registry.register(
            "refused_hits",
            "Hits the API server refused after stepcache answered them",
            refused_hits.clone(),
        );
        let refused_hit_checks_dropped = Counter::default();
        registry.register(
            "refused_hit_checks_dropped",
            "Answered hits not checked for refusal (confirmation queue full)",
            refused_hit_checks_dropped.clone(),
        );
        let refused_keys = Gauge::default();
        registry.register("refused_keys", "Keys blocked in a namespace by a refused hit", refused_keys.clone());
        let artifact_checks = Family::<ReasonLabel, Counter>::default();
        registry.register("artifact_checks", "Output artifact existence checks by result", artifact_checks.clone());
        let artifact_check_duration = latency_histogram();
        registry.register(
            "artifact_check_duration_seconds",
            "Artifact checks of one hit",
            artifact_check_duration.clone(),
        );
        let integrity_misses = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "integrity_misses",
            "Hits turned into misses by an integrity check",
            integrity_misses.clone(),
        );
        let image_tag_observations = Counter::default();
        registry.register(
            "image_tag_observations",
            "Image tag digests observed and stored",
            image_tag_observations.clone(),
        );
        let namespace_decisions = Family::<NamespaceDecisionLabel, Counter>::default();
        registry.register(
            "namespace_decisions",
            "Step-pod admission decisions by namespace",
            namespace_decisions.clone(),
        );
        let namespace_time_saved = Family::<NamespaceLabel, Counter<f64, AtomicU64>>::default();
        registry.register(
            "namespace_time_saved_seconds",
            "Compute time saved by cache hits, by namespace",
            namespace_time_saved.clone(),
        );
        // Series that dashboards and alerts select on exist from the start (at 0), so a rate
        // over them is 0 rather than "no data" until the first failure.
        let _ = store_errors.get_or_create(&OpKindLabel { op: "record".into(), kind: "timeout".into() });
        let _ = recorder_skipped.get_or_create(&ReasonLabel { reason: "not_succeeded".into() });
        let watch_errors = Family::<WatchErrorLabel, Counter>::default();
        registry.register(
            "recorder_watch_errors",
            "Recorder list/watch failures by resource and reason",
            watch_errors.clone(),
        );
        let background_restarts = Family::<TaskLabel, Counter>::default();
        registry.register(
            "background_restarts",
            "Background loops restarted after stopping",
            background_restarts.clone(),
        );
        Metrics {
            registry,
            admission_requests,
            admission_duration,
            store_duration,
            store_errors,
            task_result_errors,
            hit_pod_refusals,
            recorded,
            recorder_skipped,
            recorder_lag,
            tag_drift,
            time_saved_seconds,
            entries,
            cert_reloads,
            refused_hits,
            refused_hit_checks_dropped,
            refused_keys,
            artifact_checks,
            artifact_check_duration,
            integrity_misses,
            image_tag_observations,
            namespace_decisions,
            namespace_time_saved,
            namespaces_seen: Default::default(),
            watch_errors,
            background_restarts,
        }
    }

    /// The `namespace` label value for `ns`: itself while fewer than
    /// [`NAMESPACE_LABEL_LIMIT`] namespaces have series, else [`OTHER_NAMESPACES`].
    pub fn namespace_label(&self, ns: &str) -> String {
        match self.namespaces_seen.lock() {
            Ok(seen) if seen.contains(ns) => ns.to_owned(),
            Ok(mut seen) if seen.len() < NAMESPACE_LABEL_LIMIT => {
                seen.insert(ns.to_owned());
                ns.to_owned()
            }
            _ => OTHER_NAMESPACES.to_owned(),
        }
    }

    /// Counts one step-pod decision in its namespace.
    pub fn namespace_decision(&self, ns: &str, decision: Decision) {
        let label =
            NamespaceDecisionLabel { namespace: self.namespace_label(ns), decision: decision.as_str().to_owned() };
        self.namespace_decisions.get_or_create(&label).inc();
    }

    /// Adds compute time a hit saved, overall and in its namespace.
    pub fn saved(&self, ns: &str, seconds: f64) {
        self.time_saved_seconds.inc_by(seconds);
        self.namespace_time_saved
            .get_or_create(&NamespaceLabel { namespace: self.namespace_label(ns) })
            .inc_by(seconds);
    }

    /// Counts one admission decision.
    pub fn decision(&self, decision: Decision) {
        self.admission_requests.get_or_create(&DecisionLabel { decision: decision.as_str().to_owned() }).inc();
    }

    /// Observes one store call.
    pub fn store_call(&self, op: &str, seconds: f64, error_kind: Option<&str>) {
        self.store_duration.get_or_create(&OpLabel { op: op.to_owned() }).observe(seconds);
        if let Some(kind) = error_kind {
            self.store_errors.get_or_create(&OpKindLabel { op: op.to_owned(), kind: kind.to_owned() }).inc();
        }
    }

    /// Counts one recorder skip.
    pub fn skipped(&self, reason: &str) {
        self.recorder_skipped.get_or_create(&ReasonLabel { reason: reason.to_owned() }).inc();
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_past_the_limit_share_one_label() {
        let m = Metrics::new();
        for i in 0..NAMESPACE_LABEL_LIMIT {
            assert_eq!(m.namespace_label(&format!("ns-{i}")), format!("ns-{i}"));
        }
        assert_eq!(m.namespace_label("one-too-many"), OTHER_NAMESPACES);
        assert_eq!(m.namespace_label("ns-0"), "ns-0");
    }

    #[test]
    fn saved_time_is_counted_overall_and_per_namespace() {
        let m = Metrics::new();
        m.saved("ml-team", 2.5);
        m.namespace_decision("ml-team", Decision::Hit);
        let text = m.encode();
        assert!(text.contains("stepcache_time_saved_seconds_total 2.5"), "{text}");
        assert!(text.contains("stepcache_namespace_time_saved_seconds_total{namespace=\"ml-team\"} 2.5"), "{text}");
        assert!(
            text.contains("stepcache_namespace_decisions_total{namespace=\"ml-team\",decision=\"hit\"} 1"),
            "{text}"
        );
    }
}
