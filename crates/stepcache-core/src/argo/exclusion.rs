//! Step pods stepcache must leave alone even though they look cacheable: pods whose caching
//! another system owns (KFP v2, TFX), and pods that arrive already carrying what only Argo's
//! executor or stepcache itself may write (outputs, marks, decisions).
//!
//! A pod author is not trusted: template metadata reaches the pod verbatim, so an author can
//! pre-set `workflows.argoproj.io/outputs` (which the recorder of Argo ≤ 3.5 would read as the
//! step's outputs) or stepcache's own marks. Such a pod is neither served nor marked.
//!
//! Pure: must not import tokio, sqlx, axum or kube::Client.

use super::labels;
use k8s_openapi::api::core::v1::Pod;

/// Why a step pod is left alone.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Exclusion {
    /// KFP v2 pods: the KFP v2 driver caches through ML Metadata keyed by run id; a no-op pod
    /// would break the pipeline (KFP's own cache server skips them too).
    #[error("KFP v2 pod ({} is true): KFP v2 caches it itself", labels::KFP_V2_COMPONENT)]
    KfpV2,
    /// TFX component pods exchange artifacts through ML Metadata; KFP's cache server never
    /// serves them.
    #[error("TFX component pod ({0}): never cached")]
    Tfx(&'static str),
    /// The pod was created with Argo's outputs annotation already set (by template metadata).
    #[error("pod arrived already carrying {}: never cached", labels::OUTPUTS_ANNOTATION)]
    PresetOutputs,
    /// The pod was created with a stepcache label or annotation only stepcache may write.
    #[error("pod arrived already carrying stepcache's own {0:?}: never cached")]
    PresetMark(String),
}

impl Exclusion {
    /// Bounded metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Exclusion::KfpV2 => "kfp_v2",
            Exclusion::Tfx(_) => "tfx",
            Exclusion::PresetOutputs => "preset_outputs",
            Exclusion::PresetMark(_) => "preset_mark",
        }
    }

    /// True when the author should be told (a pre-set mark is a mistake or an attack; a KFP v2
    /// or TFX pod is simply not ours).
    pub fn warns(&self) -> bool {
        matches!(self, Exclusion::PresetOutputs | Exclusion::PresetMark(_))
    }
}

/// The first reason to leave `pod` alone, if any. Checked at admission, on the pod as created.
///
/// KFP conditions follow KFP's cache server (`isTFXPod`, `isV2Pod` in
/// `backend/src/cache/server/mutation.go`), loosened where that is safer: the SDK-type label
/// matches on "tfx" anywhere, and the TFX entrypoint counts in any element of `main`'s command
/// (Argo's emissary wrapper puts its own words first).
pub fn exclusion(pod: &Pod) -> Option<Exclusion> {
    let meta = &pod.metadata;
    let annotations = meta.annotations.as_ref();
    let pod_labels = meta.labels.as_ref();
    if annotations.and_then(|a| a.get(labels::KFP_V2_COMPONENT)).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    {
        return Some(Exclusion::KfpV2);
    }
    if pod_labels
        .and_then(|l| l.get(labels::KFP_PIPELINE_SDK_TYPE))
        .is_some_and(|v| v.to_ascii_lowercase().contains("tfx"))
    {
        return Some(Exclusion::Tfx("pipeline-sdk-type label"));
    }
    let tfx_entrypoint = pod.spec.iter().flat_map(|s| s.containers.iter()).any(|c| {
        c.name == labels::MAIN_CONTAINER
            && c.command.iter().flatten().any(|w| w.trim_end().ends_with(labels::TFX_ENTRYPOINT_SUFFIX))
    });
    if tfx_entrypoint {
        return Some(Exclusion::Tfx("container entrypoint"));
    }
    if annotations.is_some_and(|a| a.contains_key(labels::OUTPUTS_ANNOTATION)) {
        return Some(Exclusion::PresetOutputs);
    }
    let ours = |k: &&String| k.starts_with(labels::STEPCACHE_PREFIX) && !labels::AUTHOR_NAMES.contains(&k.as_str());
    let preset = pod_labels.into_iter().flat_map(|l| l.keys()).chain(annotations.into_iter().flat_map(|a| a.keys()));
    preset.filter(ours).min().map(|k| Exclusion::PresetMark(k.chars().take(128).collect()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    fn with_meta(labels: serde_json::Value, annotations: serde_json::Value) -> Pod {
        pod(json!({"metadata": {"labels": labels, "annotations": annotations},
            "spec": {"containers": [{"name": "main", "image": "x", "command": ["/var/run/argo/argoexec", "emissary", "--", "python"]}]}}))
    }

    #[test]
    fn ordinary_step_pods_and_author_settings_are_not_excluded() {
        let p = with_meta(
            json!({"workflows.argoproj.io/workflow": "w", "stepcache.dev/enabled": "true"}),
            json!({"stepcache.dev/max-cache-staleness": "P1D", "stepcache.dev/cache-seed": "s", "stepcache.dev/latch": "true"}),
        );
        assert_eq!(exclusion(&p), None);
    }

    #[test]
    fn kfp_v2_and_tfx_pods_are_left_alone() {
        let v2 = with_meta(json!({}), json!({"pipelines.kubeflow.org/v2_component": "true"}));
        assert_eq!(exclusion(&v2), Some(Exclusion::KfpV2));
        for sdk in ["tfx", "tfx-template"] {
            let t = with_meta(json!({"pipelines.kubeflow.org/pipeline-sdk-type": sdk}), json!({}));
            assert!(matches!(exclusion(&t), Some(Exclusion::Tfx(_))), "{sdk}");
        }
        let kfp = with_meta(json!({"pipelines.kubeflow.org/pipeline-sdk-type": "kfp"}), json!({}));
        assert_eq!(exclusion(&kfp), None);
        let entry = pod(json!({"spec": {"containers": [{"name": "main", "image": "tfx",
            "command": ["/var/run/argo/argoexec", "emissary", "--", "python", "/tfx-src/tfx/orchestration/kubeflow/container_entrypoint.py"]}]}}));
        assert!(matches!(exclusion(&entry), Some(Exclusion::Tfx(_))));
    }

    #[test]
    fn preset_outputs_or_stepcache_marks_are_left_alone_with_a_warning() {
        let o = with_meta(json!({}), json!({"workflows.argoproj.io/outputs": "{\"result\":\"forged\"}"}));
        assert_eq!(exclusion(&o), Some(Exclusion::PresetOutputs));
        assert!(exclusion(&o).unwrap().warns());
        for (l, a) in [
            (json!({"stepcache.dev/record": "true"}), json!({})),
            (json!({"stepcache.dev/decision": "hit"}), json!({})),
            (json!({}), json!({"stepcache.dev/mark": "AAAA"})),
            (json!({}), json!({"stepcache.dev/key": "v1:00"})),
            (json!({}), json!({"stepcache.dev/whatever-next": "x"})),
        ] {
            let p = with_meta(l.clone(), a.clone());
            assert!(matches!(exclusion(&p), Some(Exclusion::PresetMark(_))), "{l} {a}");
        }
    }
}
