//! Outputs in Argo's shapes: what a template declares, and what a run reported through
//! a WorkflowTaskResult, the legacy pod annotation, or the Workflow's node status.
//!
//! Pure: must not import tokio, sqlx, axum or kube::Client.

use crate::types::StepOutputs;

/// The outputs a template declares; a served entry must provide all of them.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct DeclaredOutputs {
    /// Declared output parameter names.
    pub parameters: Vec<String>,
    /// Declared output artifacts: name and whether it is optional.
    pub artifacts: Vec<(String, bool)>,
    /// `outputs.result` is required: the pod asks Argo to capture stdout
    /// (`ARGO_INCLUDE_SCRIPT_OUTPUT=true`) because a later step reads it.
    pub result: bool,
}

impl DeclaredOutputs {
    /// Reads `outputs` of a template; anything unreadable declares nothing.
    pub fn from_template(outputs: Option<&serde_json::Value>) -> DeclaredOutputs {
        let Some(o) = outputs else { return DeclaredOutputs::default() };
        let names = |field: &str| -> Vec<&serde_json::Value> {
            o.get(field).and_then(|v| v.as_array()).map(|a| a.iter().collect()).unwrap_or_default()
        };
        DeclaredOutputs {
            parameters: names("parameters")
                .into_iter()
                .filter_map(|p| p.get("name").and_then(|n| n.as_str()).map(str::to_owned))
                .collect(),
            artifacts: names("artifacts")
                .into_iter()
                .filter_map(|a| {
                    let name = a.get("name").and_then(|n| n.as_str())?;
                    let optional = a.get("optional").and_then(|v| v.as_bool()).unwrap_or(false);
                    Some((name.to_owned(), optional))
                })
                .collect(),
            result: false,
        }
    }

    /// Names of declared outputs that `outputs` lacks (parameters without a value count as missing).
    pub fn missing(&self, outputs: &StepOutputs) -> Vec<String> {
        let mut missing = Vec::new();
        for p in &self.parameters {
            let has = outputs.parameters.iter().any(|o| &o.name == p && o.value.is_some());
            if !has {
                missing.push(format!("parameter {p}"));
            }
        }
        for (a, optional) in &self.artifacts {
            if !optional && !outputs.artifacts.iter().any(|o| &o.name == a) {
                missing.push(format!("artifact {a}"));
            }
        }
        if self.result && outputs.result.is_none() {
            missing.push("result".into());
        }
        missing
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn result_is_missing_only_when_the_pod_asks_for_it() {
        let outputs: StepOutputs = serde_json::from_value(serde_json::json!({})).unwrap();
        let asked = DeclaredOutputs { result: true, ..Default::default() };
        assert_eq!(asked.missing(&outputs), vec!["result".to_owned()]);
        assert!(DeclaredOutputs::default().missing(&outputs).is_empty());
        let with: StepOutputs = serde_json::from_value(serde_json::json!({"result": ""})).unwrap();
        assert!(asked.missing(&with).is_empty(), "an empty stdout is a result");
    }
}
