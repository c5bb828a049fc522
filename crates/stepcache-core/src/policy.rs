//! Caching policy: what the author asked for (annotations, labels), what the admin allows
//! (flags), and the choice among stored entries once the store has answered.
//!
//! Owns: `AdminPolicy`, `StepSettings`, `plan`, `Plan`, `refuse_moving`, `choose`, `Choice`.
//! Pure: no I/O, no clock. Imports only `types`, `duration`, `argo::labels`, `argo::outputs`,
//! `moving`.

use crate::argo::labels;
use crate::argo::outputs::DeclaredOutputs;
use crate::duration;
use crate::moving::{MovingArtifacts, MovingInput};
use crate::types::{CacheSeed, EntryId, Namespace, Staleness, StepOutputs};
use std::collections::BTreeMap;

/// What the cluster admin configured; applies to every step.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AdminPolicy {
    /// Staleness for steps that set none (`None` = unbounded).
    pub default_staleness: Option<Staleness>,
    /// Cap on any step's staleness.
    pub max_staleness: Option<Staleness>,
    /// Namespaces to act on (empty = all).
    pub include_namespaces: Vec<String>,
    /// Namespaces never to act on.
    pub exclude_namespaces: Vec<String>,
    /// Under cluster scope, the namespaces whose steps share one cache (empty = every covered
    /// namespace); the others keep namespace-private entries.
    pub share_namespaces: Vec<String>,
    /// Decide and record but never rewrite a pod.
    pub shadow: bool,
    /// Allow execution latching for steps that ask for it.
    pub latch: bool,
    /// Who counts as the Argo controller: only its pods are decided, recorded and served.
    pub controllers: crate::trust::ControllerIdentities,
    /// Whether steps whose input artifacts can move (git branch/tag, http URL) may be served:
    /// the key sees only the reference, so serving them can hand a changed upstream old outputs.
    pub moving_artifacts: MovingArtifacts,
}

/// Namespaces Kubernetes owns; stepcache never acts on them, whatever the admin lists say
/// (as KFP's cache server, which skips the same two).
pub const SYSTEM_NAMESPACES: &[&str] = &["kube-system", "kube-public"];

impl AdminPolicy {
    /// True when stepcache acts on pods of this namespace.
    pub fn covers(&self, ns: &Namespace) -> bool {
        let n = ns.as_str();
        if SYSTEM_NAMESPACES.contains(&n) || self.exclude_namespaces.iter().any(|x| x == n) {
            return false;
        }
        self.include_namespaces.is_empty() || self.include_namespaces.iter().any(|x| x == n)
    }

    /// True when this namespace's steps may share entries with other namespaces (cluster scope).
    pub fn shares(&self, ns: &Namespace) -> bool {
        self.share_namespaces.is_empty() || self.share_namespaces.iter().any(|x| x == ns.as_str())
    }
}

/// What the admission should do before it looks anything up.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// The author opted the step out; nothing to do.
    OptedOut {
        /// Which label opted out.
        by: &'static str,
    },
    /// An annotation was invalid: treated as "no cache for this step".
    Invalid {
        /// Exactly what was wrong, one line each.
        warnings: Vec<String>,
    },
    /// Look the key up with this staleness (0 = do not look up, only record).
    Lookup(StepSettings),
}

/// The author's effective settings after admin defaults and caps.
#[derive(Clone, Debug, PartialEq)]
pub struct StepSettings {
    /// Effective staleness.
    pub staleness: Staleness,
    /// Cache track.
    pub seed: CacheSeed,
    /// The step asked to wait for an identical running step.
    pub latch: bool,
    /// Non-fatal notes for the AdmissionResponse (e.g. both spellings given).
    pub warnings: Vec<String>,
}

/// Reads the author's labels and annotations and applies the admin's defaults and caps.
pub fn plan(
    labels_map: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
    admin: &AdminPolicy,
) -> Plan {
    for (label, by) in [
        (labels::ENABLED_LABEL, labels::ENABLED_LABEL),
        (labels::KFP_ENABLE_CACHING, labels::KFP_ENABLE_CACHING),
        (labels::KFP_CACHE_ENABLED, labels::KFP_CACHE_ENABLED),
    ] {
        if labels_map.get(label).is_some_and(|v| v.trim().eq_ignore_ascii_case("false")) {
            return Plan::OptedOut { by };
        }
    }
    let mut warnings = Vec::new();
    let mut errors = Vec::new();

    let ours = annotations.get(labels::MAX_CACHE_STALENESS);
    let kfp = annotations.get(labels::KFP_MAX_CACHE_STALENESS);
    let (raw, source) = match (ours, kfp) {
        (Some(o), Some(_)) => {
            warnings.push(format!(
                "both {} and {} are set; {} wins",
                labels::MAX_CACHE_STALENESS,
                labels::KFP_MAX_CACHE_STALENESS,
                labels::MAX_CACHE_STALENESS
            ));
            (Some(o), labels::MAX_CACHE_STALENESS)
        }
        (Some(o), None) => (Some(o), labels::MAX_CACHE_STALENESS),
        (None, Some(k)) => (Some(k), labels::KFP_MAX_CACHE_STALENESS),
        (None, None) => (None, ""),
    };
    let authored = match raw {
        Some(r) => match duration::parse_exact(r) {
            Ok(d) => {
                if d.as_secs() == 0 && !d.is_zero() {
                    warnings.push(format!(
                        "{source}: {:?} is under one second; staleness counts whole seconds, so it \
                         rounds down to 0: this step never reuses a result (it is still recorded)",
                        r.trim()
                    ));
                }
                Some(Staleness::Seconds(d.as_secs()))
            }
            Err(e) => {
                errors.push(format!("{source}: {e}; caching disabled for this step"));
                None
            }
        },
        None => None,
    };

    let seed = match annotations.get(labels::CACHE_SEED) {
        Some(s) => match CacheSeed::parse(s) {
            Ok(seed) => seed,
            Err(e) => {
                errors.push(format!("{}: {e}; caching disabled for this step", labels::CACHE_SEED));
                CacheSeed::default()
            }
        },
        None => CacheSeed::default(),
    };

    let latch = match annotations.get(labels::LATCH).map(|v| v.trim()) {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => {
            if !admin.latch {
                warnings.push(format!("{} is set but latching is disabled on this installation", labels::LATCH));
            }
            admin.latch
        }
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(v) => {
            warnings.push(format!("{}: {v:?} is not true/false; ignored", labels::LATCH));
            false
        }
    };

    if !errors.is_empty() {
        return Plan::Invalid { warnings: errors };
    }
    let base = authored.or(admin.default_staleness).unwrap_or(Staleness::Unbounded);
    let staleness = match admin.max_staleness {
        Some(cap) => {
            let capped = base.min(cap);
            if capped != base && authored.is_some() {
                warnings.push(format!("staleness {base} capped to the installation maximum {capped}"));
            }
            capped
        }
        None => base,
    };
    Plan::Lookup(StepSettings { staleness, seed, latch, warnings })
}

/// The one entry the store proposes (the newest viable, preferring the step's staleness).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate<'a> {
    /// Entry id.
    pub id: EntryId,
    /// The entry's own staleness.
    pub staleness: Staleness,
    /// What the entry would serve.
    pub outputs: &'a StepOutputs,
}

/// The decision once the store has answered.
#[derive(Clone, Debug, PartialEq)]
pub enum Choice {
    /// Serve the entry; it already has the step's staleness.
    Hit(EntryId),
    /// Serve the entry and record a copy that adopts the step's staleness.
    HitAdopting(EntryId),
    /// Run the step.
    Miss(MissCause),
}

/// Why a lookup did not produce a hit.
#[derive(Clone, Debug, PartialEq)]
pub enum MissCause {
    /// Staleness 0: never reuse.
    NeverReuse,
    /// No viable entry.
    NoEntry,
    /// The entry lacks outputs the template declares (serving it would poison the step).
    IncompleteEntry(Vec<String>),
    /// Input artifacts whose reference can move, under `--moving-artifacts miss`: never served,
    /// not looked up (the key cannot tell yesterday's `main` from today's).
    MovingInput(Vec<MovingInput>),
}

impl MissCause {
    /// Human-readable reason for annotations and `--explain`.
    pub fn describe(&self) -> String {
        match self {
            MissCause::NeverReuse => "max cache staleness is 0: never reuse".into(),
            MissCause::NoEntry => "no viable entry for this key".into(),
            MissCause::IncompleteEntry(m) => {
                format!("stored entry lacks declared outputs: {}", m.join(", "))
            }
            MissCause::MovingInput(m) => {
                let each: Vec<String> = m.iter().map(ToString::to_string).collect();
                format!(
                    "moving-input: {}; the key sees the reference, not the bytes, so this step is \
                     never served (--moving-artifacts miss)",
                    each.join(", ")
                )
            }
        }
    }
}

/// Before the lookup: the miss a step with moving input artifacts gets under
/// `--moving-artifacts miss` (no lookup, no latch: both would hand it another run's outputs);
/// `None` when nothing moves or the admin chose `cache`.
pub fn refuse_moving(admin: &AdminPolicy, moving: Vec<MovingInput>) -> Option<MissCause> {
    match admin.moving_artifacts {
        MovingArtifacts::Miss if !moving.is_empty() => Some(MissCause::MovingInput(moving)),
        _ => None,
    }
}

/// Applies the selection rule to what the store returned.
pub fn choose(step_staleness: Staleness, declared: &DeclaredOutputs, candidate: Option<Candidate<'_>>) -> Choice {
    if step_staleness.never_reuse() {
        return Choice::Miss(MissCause::NeverReuse);
    }
    let Some(c) = candidate else {
        return Choice::Miss(MissCause::NoEntry);
    };
    let missing = declared.missing(c.outputs);
    if !missing.is_empty() {
        return Choice::Miss(MissCause::IncompleteEntry(missing));
    }
    if c.staleness == step_staleness {
        Choice::Hit(c.id)
    } else {
        Choice::HitAdopting(c.id)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::types::OutputParameter;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn settings(p: Plan) -> StepSettings {
        match p {
            Plan::Lookup(s) => s,
            other => panic!("expected lookup, got {other:?}"),
        }
    }

    #[test]
    fn system_namespaces_are_never_covered_even_when_included() {
        let admin = AdminPolicy { include_namespaces: vec!["kube-public".into(), "ml".into()], ..Default::default() };
        for ns in ["kube-system", "kube-public"] {
            assert!(!admin.covers(&Namespace::parse(ns).unwrap()), "{ns}");
            assert!(!AdminPolicy::default().covers(&Namespace::parse(ns).unwrap()), "{ns}");
        }
        assert!(admin.covers(&Namespace::parse("ml").unwrap()));
    }

    #[test]
    fn stepcache_label_false_opts_out() {
        let p = plan(&map(&[(labels::ENABLED_LABEL, "false")]), &map(&[]), &AdminPolicy::default());
        assert_eq!(p, Plan::OptedOut { by: labels::ENABLED_LABEL });
    }

    #[test]
    fn kfp_enable_caching_false_opts_out() {
        let p = plan(&map(&[(labels::KFP_ENABLE_CACHING, "false")]), &map(&[]), &AdminPolicy::default());
        assert_eq!(p, Plan::OptedOut { by: labels::KFP_ENABLE_CACHING });
    }

    #[test]
    fn kfp_staleness_annotation_is_honoured() {
        let s = settings(plan(&map(&[]), &map(&[(labels::KFP_MAX_CACHE_STALENESS, "P30D")]), &AdminPolicy::default()));
        assert_eq!(s.staleness, Staleness::Seconds(30 * 86400));
        assert!(s.warnings.is_empty());
    }

    #[test]
    fn stepcache_spelling_wins_over_kfp_with_a_warning() {
        let a = map(&[(labels::KFP_MAX_CACHE_STALENESS, "P30D"), (labels::MAX_CACHE_STALENESS, "1h")]);
        let s = settings(plan(&map(&[]), &a, &AdminPolicy::default()));
        assert_eq!(s.staleness, Staleness::Seconds(3600));
        assert_eq!(s.warnings.len(), 1);
        assert!(s.warnings[0].contains("wins"));
    }

    #[test]
    fn sub_second_staleness_rounds_down_to_never_reuse_with_a_warning() {
        for raw in ["300ms", "PT0.9S", "999ms"] {
            let s = settings(plan(&map(&[]), &map(&[(labels::MAX_CACHE_STALENESS, raw)]), &AdminPolicy::default()));
            assert_eq!(s.staleness, Staleness::Seconds(0), "{raw}");
            assert_eq!(s.warnings.len(), 1, "{raw}");
            assert!(s.warnings[0].contains("under one second"), "{raw}: {:?}", s.warnings);
        }
        for raw in ["0", "P0D", "1s", "1.5s"] {
            let s = settings(plan(&map(&[]), &map(&[(labels::MAX_CACHE_STALENESS, raw)]), &AdminPolicy::default()));
            assert!(s.warnings.is_empty(), "{raw}: {:?}", s.warnings);
        }
    }

    #[test]
    fn no_staleness_means_unbounded_unless_admin_default() {
        assert_eq!(settings(plan(&map(&[]), &map(&[]), &AdminPolicy::default())).staleness, Staleness::Unbounded);
        let admin = AdminPolicy { default_staleness: Some(Staleness::Seconds(60)), ..Default::default() };
        assert_eq!(settings(plan(&map(&[]), &map(&[]), &admin)).staleness, Staleness::Seconds(60));
    }

    #[test]
    fn admin_cap_limits_author_staleness() {
        let admin = AdminPolicy { max_staleness: Some(Staleness::Seconds(3600)), ..Default::default() };
        let s = settings(plan(&map(&[]), &map(&[(labels::MAX_CACHE_STALENESS, "P7D")]), &admin));
        assert_eq!(s.staleness, Staleness::Seconds(3600));
        assert_eq!(s.warnings.len(), 1);
        let s = settings(plan(&map(&[]), &map(&[]), &admin));
        assert_eq!(s.staleness, Staleness::Seconds(3600));
    }

    #[test]
    fn invalid_staleness_disables_caching_with_exact_warning() {
        for bad in ["P-1D", "forever", "9999999999999h"] {
            match plan(&map(&[]), &map(&[(labels::MAX_CACHE_STALENESS, bad)]), &AdminPolicy::default()) {
                Plan::Invalid { warnings } => {
                    assert_eq!(warnings.len(), 1);
                    assert!(warnings[0].starts_with(labels::MAX_CACHE_STALENESS), "{warnings:?}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn oversized_seed_disables_caching() {
        let big = "s".repeat(1 << 20);
        let p = plan(&map(&[]), &map(&[(labels::CACHE_SEED, big.as_str())]), &AdminPolicy::default());
        assert!(matches!(p, Plan::Invalid { .. }));
    }

    #[test]
    fn latch_requires_admin_opt_in() {
        let a = map(&[(labels::LATCH, "true")]);
        let s = settings(plan(&map(&[]), &a, &AdminPolicy::default()));
        assert!(!s.latch);
        assert_eq!(s.warnings.len(), 1);
        let admin = AdminPolicy { latch: true, ..Default::default() };
        assert!(settings(plan(&map(&[]), &a, &admin)).latch);
    }

    fn outputs(names: &[&str]) -> StepOutputs {
        StepOutputs {
            parameters: names
                .iter()
                .map(|n| OutputParameter { name: (*n).into(), value: Some("1".into()), rest: Default::default() })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn choose_prefers_same_staleness_and_adopts_otherwise() {
        let d = DeclaredOutputs { parameters: vec!["p".into()], artifacts: vec![], result: false };
        let o = outputs(&["p"]);
        let c = Candidate { id: EntryId(1), staleness: Staleness::Seconds(60), outputs: &o };
        assert_eq!(choose(Staleness::Seconds(60), &d, Some(c)), Choice::Hit(EntryId(1)));
        assert_eq!(choose(Staleness::Unbounded, &d, Some(c)), Choice::HitAdopting(EntryId(1)));
        assert_eq!(choose(Staleness::Seconds(0), &d, Some(c)), Choice::Miss(MissCause::NeverReuse));
        assert_eq!(choose(Staleness::Seconds(60), &d, None), Choice::Miss(MissCause::NoEntry));
    }

    #[test]
    fn moving_inputs_are_refused_before_lookup_unless_the_admin_chose_cache() {
        let src =
            MovingInput { artifact: "src".into(), moving: crate::moving::Moving::GitRevision(Some("main".into())) };
        let cause = refuse_moving(&AdminPolicy::default(), vec![src.clone()]).unwrap();
        let reason = cause.describe();
        assert!(reason.starts_with("moving-input: git artifact src at revision main"), "{reason}");
        assert_eq!(refuse_moving(&AdminPolicy::default(), vec![]), None);
        let cache = AdminPolicy { moving_artifacts: MovingArtifacts::Cache, ..Default::default() };
        assert_eq!(refuse_moving(&cache, vec![src]), None);
    }

    #[test]
    fn choose_refuses_entries_missing_declared_outputs() {
        let d = DeclaredOutputs { parameters: vec!["p".into(), "q".into()], artifacts: vec![], result: false };
        let o = outputs(&["p"]);
        let c = Candidate { id: EntryId(1), staleness: Staleness::Unbounded, outputs: &o };
        assert!(matches!(choose(Staleness::Unbounded, &d, Some(c)), Choice::Miss(MissCause::IncompleteEntry(_))));
    }
}
