//! `stepcache why`, the pure part: turns what is known about one step (the pod's stepcache
//! labels and annotations, the decision log row, the entries involved) into one report, and
//! renders it for a terminal. No I/O and no clock: `cli::why` fetches, this explains.
//!
//! Owns: `WhyReport`, `PodFacts`, `Source`, `build`, `render_text`.

use crate::argo::labels as l;
use crate::decision::Decision;
use crate::key::diff_material;
use crate::store::decisions::LoggedDecision;
use crate::store::Entry;
use crate::types::Staleness;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;
use serde_json::Value;

/// Where the report's decision came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// The live pod's stepcache labels and annotations.
    Cluster,
    /// The decision log (the pod is gone).
    DecisionLog,
    /// Only the entry the pod's run was recorded as (the pod is gone, its decision pruned).
    Entry,
}

impl Source {
    fn describe(self) -> &'static str {
        match self {
            Source::Cluster => "the pod in the cluster",
            Source::DecisionLog => "the stepcache decision log (the pod is gone)",
            Source::Entry => "the entry its run was recorded as (the pod and its decision are gone)",
        }
    }
}

/// What stepcache wrote on a pod (labels and annotations), read back.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PodFacts {
    /// Namespace.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// Workflow label.
    pub workflow: String,
    /// Argo node id annotation.
    pub node_id: String,
    /// Argo node name annotation.
    pub node_name: Option<String>,
    /// `stepcache.dev/decision` (absent: stepcache did not touch the pod).
    pub decision: Option<String>,
    /// `stepcache.dev/key`.
    pub key: Option<String>,
    /// `stepcache.dev/staleness` (seconds, -1 unbounded).
    pub staleness: Option<i64>,
    /// `stepcache.dev/seed`.
    pub seed: Option<String>,
    /// `stepcache.dev/entry`.
    pub entry_id: Option<i64>,
    /// `stepcache.dev/miss-reason`.
    pub miss_reason: Option<String>,
    /// Pod phase.
    pub phase: Option<String>,
}

impl PodFacts {
    /// Reads the facts off a pod.
    pub fn from_pod(pod: &Pod) -> PodFacts {
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let ann = pod.metadata.annotations.clone().unwrap_or_default();
        PodFacts {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            pod: pod.metadata.name.clone().unwrap_or_default(),
            workflow: labels.get(l::WORKFLOW_LABEL).cloned().unwrap_or_default(),
            node_id: ann.get(l::NODE_ID_ANNOTATION).cloned().unwrap_or_default(),
            node_name: ann.get(l::NODE_NAME_ANNOTATION).cloned(),
            decision: labels.get(l::DECISION_LABEL).cloned(),
            key: ann.get(l::KEY_ANNOTATION).cloned(),
            staleness: ann.get(l::STALENESS_ANNOTATION).and_then(|s| s.parse().ok()),
            seed: ann.get(l::SEED_ANNOTATION).cloned(),
            entry_id: labels.get(l::ENTRY_LABEL).or_else(|| ann.get(l::ENTRY_LABEL)).and_then(|s| s.parse().ok()),
            miss_reason: ann.get(l::MISS_REASON).cloned(),
            phase: pod.status.as_ref().and_then(|s| s.phase.clone()),
        }
    }
}

/// One entry, as a report shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EntrySummary {
    /// Entry id.
    pub id: i64,
    /// Workflow that ran it.
    pub workflow: String,
    /// Its node id.
    pub node_id: String,
    /// Pod that ran it.
    pub pod: String,
    /// Template.
    pub template: String,
    /// When the run finished.
    pub finished_at: Timestamp,
    /// How long the run took, seconds (what a hit on it saves).
    pub run_seconds: f64,
    /// `live`, `expired` or `invalidated` (at the time of the report).
    pub state: String,
    /// Its key.
    pub key: String,
    /// Staleness it was recorded with.
    pub staleness: String,
}

impl EntrySummary {
    /// Summarises an entry as of `now`.
    pub fn of(e: &Entry, now: Timestamp) -> EntrySummary {
        let state = if e.invalidated_at.is_some() {
            "invalidated"
        } else if e.run.expires_at.is_some_and(|x| x <= now) {
            "expired"
        } else {
            "live"
        };
        EntrySummary {
            id: e.id.0,
            workflow: e.run.workflow_name.clone(),
            node_id: e.run.node_id.clone(),
            pod: e.run.pod_name.clone(),
            template: e.run.template_name.clone(),
            finished_at: e.run.finished_at,
            run_seconds: (e.run.finished_at.as_millisecond() - e.run.started_at.as_millisecond()).max(0) as f64
                / 1000.0,
            state: state.into(),
            key: e.run.key.to_string(),
            staleness: e.run.staleness.to_string(),
        }
    }
}

/// Everything `stepcache why` says about one step.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WhyReport {
    /// Where the decision came from.
    pub source: Source,
    /// Namespace.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// Workflow.
    pub workflow: String,
    /// Argo node id.
    pub node_id: String,
    /// `hit`, `miss`, `shadow-hit`, `latched`, `error`, or `none` (stepcache did not decide).
    pub decision: String,
    /// Why, as stepcache said it at admission.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it decided (decision log only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<Timestamp>,
    /// Cache key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Staleness used, human form (`unbounded`, `3600s`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub staleness: Option<String>,
    /// Cache seed used (empty: the default track).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<String>,
    /// Hit: the entry served.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub served: Option<EntrySummary>,
    /// Miss: the entry it was compared against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nearest: Option<EntrySummary>,
    /// Miss: key-material differences from the nearest entry (`path: old → new`).
    pub differences: Vec<String>,
    /// The entry this pod's own run was recorded as, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded_as: Option<EntrySummary>,
    /// Things the report could not establish, or caveats.
    pub notes: Vec<String>,
}

/// The inputs of [`build`], gathered by the CLI.
#[derive(Clone, Debug, Default)]
pub struct Evidence {
    /// The live pod's facts, when the pod exists.
    pub pod: Option<PodFacts>,
    /// Key material derived from the live pod (misses only: a hit pod is rewritten).
    pub material: Option<Value>,
    /// The newest decision-log row for the pod.
    pub logged: Option<LoggedDecision>,
    /// The entry served (hit) or that would have been (shadow hit).
    pub served: Option<Entry>,
    /// The entry a miss was compared against.
    pub nearest: Option<Entry>,
    /// The entry this pod's run was recorded as.
    pub recorded: Option<Entry>,
    /// What the caller asked about, for the report when nothing else names it.
    pub namespace: String,
    /// Pod name asked about (may be empty when asked by node).
    pub pod_name: String,
}

/// Why nothing could be said.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum WhyError {
    /// No pod, no decision and no entry.
    #[error("no pod {pod:?} in namespace {namespace:?}, and stepcache stored no decision or entry for it")]
    NothingKnown {
        /// Namespace asked.
        namespace: String,
        /// Pod asked.
        pod: String,
    },
}

fn staleness_text(db: i64) -> String {
    Staleness::from_db(db).to_string()
}

/// Combines the evidence: the live pod wins, then the decision log, then the recorded entry.
/// Differences are recomputed exactly when both the pod's material and the nearest entry are
/// at hand, else taken from the decision log.
pub fn build(ev: &Evidence, now: Timestamp) -> Result<WhyReport, WhyError> {
    let summary = |e: &Entry| EntrySummary::of(e, now);
    let mut notes = Vec::new();
    let mut report = if let Some(p) = &ev.pod {
        WhyReport {
            source: Source::Cluster,
            namespace: p.namespace.clone(),
            pod: p.pod.clone(),
            workflow: p.workflow.clone(),
            node_id: p.node_id.clone(),
            // A pod stepcache left alone carries no decision; the log says why (another
            // identity created it, ...).
            decision: p
                .decision
                .clone()
                .or_else(|| ev.logged.as_ref().map(|d| d.decision.clone()))
                .unwrap_or_else(|| "none".into()),
            reason: p.miss_reason.clone().or_else(|| ev.logged.as_ref().map(|d| d.reason.clone())),
            decided_at: ev.logged.as_ref().map(|d| d.decided_at),
            key: p.key.clone(),
            // Hit pods carry no staleness/seed annotations: those come from the decision log.
            staleness: p.staleness.or_else(|| ev.logged.as_ref().map(|d| d.staleness)).map(staleness_text),
            seed: p.seed.clone().or_else(|| ev.logged.as_ref().map(|d| d.seed.clone())),
            served: None,
            nearest: None,
            differences: Vec::new(),
            recorded_as: None,
            notes: Vec::new(),
        }
    } else if let Some(d) = &ev.logged {
        WhyReport {
            source: Source::DecisionLog,
            namespace: d.namespace.clone(),
            pod: d.pod_name.clone(),
            workflow: d.workflow_name.clone(),
            node_id: d.node_id.clone(),
            decision: d.decision.clone(),
            reason: Some(d.reason.clone()),
            decided_at: Some(d.decided_at),
            key: Some(d.key.clone()),
            staleness: Some(staleness_text(d.staleness)),
            seed: Some(d.seed.clone()),
            served: None,
            nearest: None,
            differences: d.differences.clone(),
            recorded_as: None,
            notes: Vec::new(),
        }
    } else if let Some(e) = &ev.recorded {
        notes.push("the decision was pruned from the log; a recorded run was a miss that ran".into());
        WhyReport {
            source: Source::Entry,
            namespace: e.run.namespace.to_string(),
            pod: e.run.pod_name.clone(),
            workflow: e.run.workflow_name.clone(),
            node_id: e.run.node_id.clone(),
            decision: Decision::Miss.as_str().into(),
            reason: None,
            decided_at: None,
            key: Some(e.run.key.to_string()),
            staleness: Some(e.run.staleness.to_string()),
            seed: Some(e.run.seed.as_str().to_owned()),
            served: None,
            nearest: None,
            differences: Vec::new(),
            recorded_as: None,
            notes: Vec::new(),
        }
    } else {
        return Err(WhyError::NothingKnown { namespace: ev.namespace.clone(), pod: ev.pod_name.clone() });
    };
    if report.decision != "none" && report.staleness.is_none() {
        notes.push("staleness and seed not known yet: the decision log is written every few seconds".into());
    }
    if report.decision == "none" {
        notes.push(
            "stepcache did not decide on this pod (not a cacheable Argo step, opted out, outside the \
             webhook's selectors, or admitted while stepcache was unavailable)"
                .into(),
        );
    }
    report.served = ev.served.as_ref().map(summary);
    if let Some(n) = &ev.nearest {
        report.nearest = Some(summary(n));
        match (&ev.material, report.key.as_deref()) {
            (Some(m), Some(k)) if n.run.key.as_str() != k => report.differences = diff_material(&n.run.material, m),
            (_, Some(k)) if n.run.key.as_str() == k => report.differences.clear(),
            _ => {}
        }
    }
    if report.decision == Decision::Miss.as_str() && ev.nearest.is_none() && report.differences.is_empty() {
        notes.push("no earlier entry of this template to compare with: this was the first run".into());
    }
    report.recorded_as = ev.recorded.as_ref().map(summary);
    report.notes.extend(notes);
    Ok(report)
}

/// The short human form.
pub fn render_text(r: &WhyReport) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: &str| {
        out.push_str(&format!("{k:<11}{v}\n"));
    };
    line("pod:", &format!("{}/{} (workflow {}, node {})", r.namespace, r.pod, r.workflow, r.node_id));
    line("decision:", &r.decision);
    if let Some(reason) = &r.reason {
        line("reason:", reason);
    }
    if let Some(k) = &r.key {
        line("key:", k);
    }
    if let Some(s) = &r.staleness {
        line("staleness:", s);
    }
    if let Some(s) = &r.seed {
        line("seed:", if s.is_empty() { "(none)" } else { s });
    }
    if let Some(t) = &r.decided_at {
        line("decided:", &t.to_string());
    }
    let entry = |e: &EntrySummary| {
        format!(
            "entry {} from workflow {} (pod {}, finished {}, ran {}, {})",
            e.id,
            e.workflow,
            e.pod,
            e.finished_at,
            crate::admission::human_seconds(e.run_seconds),
            e.state
        )
    };
    if let Some(e) = &r.served {
        line("served:", &entry(e));
    }
    if let Some(e) = &r.nearest {
        line("nearest:", &entry(e));
    }
    if !r.differences.is_empty() {
        out.push_str("differences (nearest entry → this pod):\n");
        for d in &r.differences {
            out.push_str(&format!("  {d}\n"));
        }
    }
    if let Some(e) = &r.recorded_as {
        out.push_str(&format!("{:<11}{}\n", "recorded:", entry(e)));
    }
    for n in &r.notes {
        out.push_str(&format!("{:<11}{n}\n", "note:"));
    }
    out.push_str(&format!("{:<11}{}\n", "source:", r.source.describe()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{CacheKey, CacheSeed, EntryId, Namespace, StepOutputs};
    use serde_json::json;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap_or_default()
    }

    fn entry(id: i64, key: &str, material: Value) -> Entry {
        Entry {
            id: EntryId(id),
            run: crate::store::Execution {
                namespace: Namespace::parse("ml").unwrap_or_else(|_| unreachable!()),
                key: CacheKey::parse(key).unwrap_or_else(|_| unreachable!()),
                seed: CacheSeed::default(),
                staleness: Staleness::Unbounded,
                outputs: StepOutputs::default(),
                material,
                template_name: "train".into(),
                workflow_name: "wf-old".into(),
                workflow_uid: "u".into(),
                node_id: "wf-old-1".into(),
                pod_name: "wf-old-train-1".into(),
                pod_uid: "p".into(),
                image_digests: Default::default(),
                images: Default::default(),
                started_at: ts("2026-11-01T10:00:00Z"),
                finished_at: ts("2026-11-01T10:04:12Z"),
                expires_at: None,
            },
            created_at: ts("2026-11-01T10:04:13Z"),
            invalidated_at: None,
            source_id: None,
            hit_count: 0,
        }
    }

    const K1: &str = "v1:1111111111111111111111111111111111111111111111111111111111111111";
    const K2: &str = "v1:2222222222222222222222222222222222222222222222222222222222222222";

    fn miss_pod() -> PodFacts {
        PodFacts {
            namespace: "ml".into(),
            pod: "wf-new-train-2".into(),
            workflow: "wf-new".into(),
            node_id: "wf-new-2".into(),
            decision: Some("miss".into()),
            key: Some(K2.into()),
            staleness: Some(-1),
            seed: Some(String::new()),
            miss_reason: Some("no entry".into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_live_miss_recomputes_the_exact_differences_from_the_nearest_entry() {
        let ev = Evidence {
            pod: Some(miss_pod()),
            material: Some(json!({"inputs": {"parameters": [{"name": "lr", "value": "0.2"}]}})),
            nearest: Some(entry(7, K1, json!({"inputs": {"parameters": [{"name": "lr", "value": "0.1"}]}}))),
            logged: Some(LoggedDecision { differences: vec!["stale line".into()], ..Default::default() }),
            ..Default::default()
        };
        let r = build(&ev, ts("2026-11-02T00:00:00Z")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.source, Source::Cluster);
        assert_eq!(r.decision, "miss");
        assert_eq!(r.nearest.as_ref().map(|n| n.id), Some(7));
        assert_eq!(r.differences.len(), 1, "{:?}", r.differences);
        assert!(r.differences.iter().all(|d| d.contains("lr") && d.contains("0.1") && d.contains("0.2")));
        let text = render_text(&r);
        assert!(text.contains("decision:  miss"), "{text}");
        assert!(text.contains("nearest:   entry 7 from workflow wf-old"), "{text}");
        assert!(text.contains("source:    the pod in the cluster"), "{text}");
    }

    #[test]
    fn a_gone_pod_is_explained_from_the_decision_log_and_says_so() {
        let logged = LoggedDecision {
            namespace: "ml".into(),
            pod_name: "wf-new-train-2".into(),
            decision: "hit".into(),
            reason: "served entry 7".into(),
            key: K1.into(),
            staleness: 3600,
            entry_id: Some(7),
            ..Default::default()
        };
        let ev = Evidence { logged: Some(logged), served: Some(entry(7, K1, json!({}))), ..Default::default() };
        let r = build(&ev, ts("2026-11-02T00:00:00Z")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.source, Source::DecisionLog);
        assert_eq!(r.staleness.as_deref(), Some(Staleness::Seconds(3600).to_string().as_str()));
        assert_eq!(r.served.as_ref().map(|s| s.run_seconds), Some(252.0));
        let json = serde_json::to_value(&r).unwrap_or_default();
        assert_eq!(json["source"], "decision-log");
        assert!(render_text(&r).contains("ran 4m12s"));
    }

    #[test]
    fn nothing_known_is_an_error_naming_the_pod() {
        let ev = Evidence { namespace: "ml".into(), pod_name: "gone".into(), ..Default::default() };
        assert_eq!(
            build(&ev, Timestamp::UNIX_EPOCH),
            Err(WhyError::NothingKnown { namespace: "ml".into(), pod: "gone".into() })
        );
    }

    #[test]
    fn a_recorded_entry_alone_reports_a_miss_from_the_entry() {
        let ev = Evidence { recorded: Some(entry(9, K1, json!({}))), ..Default::default() };
        let r = build(&ev, Timestamp::UNIX_EPOCH).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((r.source, r.decision.as_str()), (Source::Entry, "miss"));
        assert_eq!(r.recorded_as.map(|e| e.id), Some(9));
    }

    #[test]
    fn a_pod_left_alone_because_another_identity_created_it_says_so() {
        let logged = LoggedDecision {
            namespace: "ml".into(),
            pod_name: "p".into(),
            decision: "skipped-not-controller".into(),
            reason: "created by system:serviceaccount:ml:mallory, not by an Argo controller identity".into(),
            ..Default::default()
        };
        let pod = PodFacts { pod: "p".into(), namespace: "ml".into(), ..Default::default() };
        let ev = Evidence { pod: Some(pod), logged: Some(logged), ..Default::default() };
        let r = build(&ev, Timestamp::UNIX_EPOCH).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.decision, "skipped-not-controller");
        assert!(r.reason.as_deref().unwrap_or_default().contains("mallory"), "{:?}", r.reason);
    }

    #[test]
    fn an_untouched_pod_says_stepcache_did_not_decide() {
        let ev = Evidence { pod: Some(PodFacts { pod: "p".into(), ..Default::default() }), ..Default::default() };
        let r = build(&ev, Timestamp::UNIX_EPOCH).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.decision, "none");
        assert!(r.notes.iter().any(|n| n.contains("did not decide")));
    }
}
