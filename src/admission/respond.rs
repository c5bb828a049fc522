//! Building AdmissionReview responses: always allowed, with an optional JSON patch and warnings.
//!
//! The response is a typed struct rather than kube-core's `AdmissionResponse`: kube-core 3.1
//! serializes its `patch: Vec<u8>` as a JSON array of numbers (the API server accepts it), and a
//! hit's patch carries the rewritten pod and its outputs: a hit's response is 4,344 bytes that way
//! against 1,712 with base64. `docs/performance.md` has the measured cost of both encodings.
//!
//! Pure: no I/O.

use base64::Engine;
use json_patch::PatchOperation;
use serde::{Deserialize, Serialize};

/// Most warnings Kubernetes shows; the rest are dropped to keep responses small.
const MAX_WARNINGS: usize = 8;
/// Longest warning kept (the API server truncates longer ones anyway).
const MAX_WARNING_CHARS: usize = 480;

/// An `admission.k8s.io/v1` AdmissionReview carrying a response, as sent to the API server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewResponse {
    /// Always `admission.k8s.io/v1`.
    pub api_version: String,
    /// Always `AdmissionReview`.
    pub kind: String,
    /// The answer.
    pub response: AdmissionAnswer,
}

/// The `response` of an AdmissionReview: stepcache always allows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionAnswer {
    /// The request's uid, echoed.
    pub uid: String,
    /// Always true: stepcache never denies a pod.
    pub allowed: bool,
    /// `JSONPatch` when a patch is present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<String>,
    /// The JSON patch, base64 of its JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    /// Warnings shown to the client that created the pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// An allowed response with an optional patch and warnings (bounded in number and length).
pub fn allow(uid: &str, patch: &[PatchOperation], warnings: &[String]) -> ReviewResponse {
    let patch = (!patch.is_empty()).then(|| {
        let bytes = serde_json::to_vec(patch).unwrap_or_default();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    });
    ReviewResponse {
        api_version: "admission.k8s.io/v1".into(),
        kind: "AdmissionReview".into(),
        response: AdmissionAnswer {
            uid: uid.to_owned(),
            allowed: true,
            patch_type: patch.as_ref().map(|_| "JSONPatch".to_owned()),
            patch,
            warnings: warnings.iter().take(MAX_WARNINGS).map(|w| w.chars().take(MAX_WARNING_CHARS).collect()).collect(),
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn allow_without_patch_has_no_patch_type() {
        let r = serde_json::to_value(allow("u1", &[], &[])).unwrap();
        assert_eq!(
            r,
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {"uid": "u1", "allowed": true}})
        );
    }

    #[test]
    fn the_patch_is_base64_json_and_reads_back() {
        let ops: Vec<PatchOperation> =
            serde_json::from_value(json!([{"op": "add", "path": "/metadata/labels", "value": {"a": "b"}}])).unwrap();
        let r = allow("u", &ops, &[]);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["response"]["patchType"], "JSONPatch");
        let text = base64::engine::general_purpose::STANDARD.decode(v["response"]["patch"].as_str().unwrap()).unwrap();
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&text).unwrap()[0]["path"], "/metadata/labels");
        assert_eq!(serde_json::from_slice::<Vec<PatchOperation>>(&text).unwrap(), ops);
    }

    #[test]
    fn warnings_are_bounded() {
        let w: Vec<String> = (0..20).map(|i| format!("{i}{}", "x".repeat(1000))).collect();
        let ws = allow("u", &[], &w).response.warnings;
        assert_eq!(ws.len(), MAX_WARNINGS);
        assert!(ws.iter().all(|w| w.chars().count() <= MAX_WARNING_CHARS));
    }
}
