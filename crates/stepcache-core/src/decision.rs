//! What an admission decided, as values: the fine decision (a metric label, the decision log's
//! `decision` column, `--explain`'s `detail`) and what it does to the pod (`--explain`'s
//! `decision`). One enum instead of string constants compared across files, so a new decision
//! is added in one place and every `match` over it is checked by the compiler.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The fine decision of one admission.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    /// Served from cache: the pod was rewritten into a no-op that hands Argo the stored outputs.
    Hit,
    /// Runs and is marked for recording.
    Miss,
    /// Would have been a hit; shadow mode let it run (and marked it).
    ShadowHit,
    /// Waits for an identical running step (execution latching).
    Latched,
    /// Not an Argo pod, or not a pod CREATE.
    SkippedNotArgo,
    /// An Argo-shaped pod created by someone other than the Argo controller (`userInfo`).
    SkippedNotController,
    /// An Argo pod that is not cacheable (resource, agent, daemon, excluded, not covered, ...).
    /// The default: a decision not yet made leaves the pod alone.
    #[default]
    Skipped,
    /// The author opted the step out.
    OptedOut,
    /// Invalid annotations or an unreadable object.
    Invalid,
    /// A store, API or request failure: the pod is allowed (and runs).
    Error,
    /// The no-op baseline mode (`serve --noop`).
    Noop,
}

impl Decision {
    /// Every decision, for metric pre-registration and documentation.
    pub const ALL: [Decision; 11] = [
        Decision::Hit,
        Decision::Miss,
        Decision::ShadowHit,
        Decision::Latched,
        Decision::SkippedNotArgo,
        Decision::SkippedNotController,
        Decision::Skipped,
        Decision::OptedOut,
        Decision::Invalid,
        Decision::Error,
        Decision::Noop,
    ];

    /// The label value (metrics, decision log, `--explain`'s `detail`). Stable: dashboards and
    /// scripts select on it.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Hit => "hit",
            Decision::Miss => "miss",
            Decision::ShadowHit => "shadow-hit",
            Decision::Latched => "latched",
            Decision::SkippedNotArgo => "skipped-not-argo",
            Decision::SkippedNotController => "skipped-not-controller",
            Decision::Skipped => "skipped",
            Decision::OptedOut => "opted-out",
            Decision::Invalid => "invalid",
            Decision::Error => "error",
            Decision::Noop => "noop",
        }
    }

    /// True for the decisions about a cacheable step (the denominator of a hit ratio).
    pub fn is_cacheable(self) -> bool {
        matches!(self, Decision::Hit | Decision::Miss | Decision::ShadowHit | Decision::Latched | Decision::Error)
    }

    /// What the decision does to the pod when nothing else overrides it.
    pub fn effect(self) -> Effect {
        match self {
            Decision::Hit => Effect::Hit,
            Decision::Miss | Decision::ShadowHit => Effect::Miss,
            Decision::Latched => Effect::Latched,
            _ => Effect::Skip,
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Decision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Decision::ALL.into_iter().find(|d| d.as_str() == s).ok_or_else(|| format!("unknown decision {s:?}"))
    }
}

/// What an admission does to the pod: `--explain`'s coarse `decision`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// Rewritten into a no-op serving stored outputs.
    Hit,
    /// Runs, marked for recording.
    Miss,
    /// Rewritten to wait for an identical running step.
    Latched,
    /// Left unchanged.
    #[default]
    Skip,
}

impl Effect {
    /// The `--explain` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Hit => "hit",
            Effect::Miss => "miss",
            Effect::Latched => "latched",
            Effect::Skip => "skip",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_decision_round_trips_through_its_label_and_serde() {
        for d in Decision::ALL {
            assert_eq!(d.as_str().parse::<Decision>(), Ok(d));
            assert_eq!(serde_json::to_value(d).ok(), Some(serde_json::Value::String(d.as_str().into())));
        }
        assert!("hits".parse::<Decision>().is_err());
    }

    #[test]
    fn labels_are_distinct_and_effects_follow_what_happens_to_the_pod() {
        let labels: std::collections::BTreeSet<_> = Decision::ALL.iter().map(|d| d.as_str()).collect();
        assert_eq!(labels.len(), Decision::ALL.len());
        assert_eq!(Decision::ShadowHit.effect(), Effect::Miss);
        assert_eq!(Decision::Error.effect(), Effect::Skip);
        assert_eq!(serde_json::to_value(Effect::Latched).ok(), Some(serde_json::Value::String("latched".into())));
    }
}
