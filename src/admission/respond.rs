//! Building AdmissionReview responses: always allowed, with an optional JSON patch and warnings.
//!
//! Pure: no I/O.

use base64::Engine;
use json_patch::PatchOperation;
use serde_json::{json, Value};

/// Most warnings Kubernetes shows; the rest are dropped to keep responses small.
const MAX_WARNINGS: usize = 8;
/// Longest warning kept (the API server truncates longer ones anyway).
const MAX_WARNING_CHARS: usize = 480;

/// An allowed response with an optional patch and warnings.
pub fn allow(uid: &str, patch: &[PatchOperation], warnings: &[String]) -> Value {
    let mut response = json!({"uid": uid, "allowed": true});
    if let Some(r) = response.as_object_mut() {
        if !patch.is_empty() {
            let bytes = serde_json::to_vec(patch).unwrap_or_default();
            r.insert("patchType".into(), Value::String("JSONPatch".into()));
            r.insert("patch".into(), Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)));
        }
        if !warnings.is_empty() {
            let w: Vec<Value> = warnings
                .iter()
                .take(MAX_WARNINGS)
                .map(|w| Value::String(w.chars().take(MAX_WARNING_CHARS).collect()))
                .collect();
            r.insert("warnings".into(), Value::Array(w));
        }
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn allow_without_patch_has_no_patch_type() {
        let r = allow("u1", &[], &[]);
        assert_eq!(r["response"]["uid"], "u1");
        assert_eq!(r["response"]["allowed"], true);
        assert!(r["response"].get("patchType").is_none());
        assert!(r["response"].get("warnings").is_none());
    }

    #[test]
    fn warnings_are_bounded() {
        let w: Vec<String> = (0..20).map(|i| format!("{i}{}", "x".repeat(1000))).collect();
        let r = allow("u", &[], &w);
        let ws = r["response"]["warnings"].as_array().unwrap();
        assert_eq!(ws.len(), MAX_WARNINGS);
        assert!(ws.iter().all(|w| w.as_str().unwrap().chars().count() <= MAX_WARNING_CHARS));
    }
}
