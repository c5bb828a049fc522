//! A container's environment as the kubelet materialises it, for the key: Argo's appended block
//! dropped by position, every other entry kept, `$(VAR)` references expanded in declared order
//! against the entries before them, the last duplicate winning, and downward-API values read
//! from the pod where they are the same for every run of the step.
//!
//! Kubelet rules (`makeEnvironmentVariables`, `pkg/kubelet/kubelet_pods.go`, with
//! `third_party/forked/golang/expansion`): `env` is walked in order; each `value` has `$(NAME)`
//! replaced by the value of `NAME` among the entries already processed (and `envFrom`, and
//! service links); an unknown name stays literally `$(NAME)`; `$$` is a literal `$`; a later
//! entry of the same name overwrites an earlier one. Argo appends its own variables (from
//! `ARGO_CONTAINER_NAME` on, `argo-pod-contract.md` §1.11) after the template's, so a template
//! variable spelled like one of Argo's is still the user's and still reaches everything declared
//! after it; only Argo's block is left out, and only where Argo put it.
//!
//! Pure.

use crate::argo::contract::{self, ArgoFacts, Role};
use crate::argo::labels;
use crate::argo::template::ArgoLayout;
use k8s_openapi::api::core::v1::{Container, EnvVar, EnvVarSource, Pod};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The first variable of Argo's appended block on every container (§1.11, position 3).
const BLOCK_START: &str = "ARGO_CONTAINER_NAME";

/// Downward-API fields whose value is the run's identity rather than an input of the step: they
/// differ on every run by construction, so keying their value would make such a step never hit.
/// They are keyed by reference (the process gets this run's value; a served entry carries the
/// recording run's outputs). `docs/cache-key.md` states the assumption.
const PER_RUN_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.uid",
    "spec.nodeName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

/// The range of `env` that is Argo's appended block, if any: from the last `ARGO_CONTAINER_NAME`
/// through the run of names Argo injects for this layout and role that follows it. Nothing on
/// layouts whose controller appends nothing (v2.12's executors).
pub fn argo_block(env: &[EnvVar], layout: ArgoLayout, facts: &ArgoFacts, role: Role) -> std::ops::Range<usize> {
    let Some(start) = env.iter().rposition(|e| e.name == BLOCK_START) else {
        return 0..0;
    };
    let len = env.iter().skip(start).take_while(|e| contract::is_injected_env(&e.name, layout, facts, role)).count();
    start..start + len
}

/// One part of an expanded value: literal text, or the value of an earlier variable that is not
/// known at admission (a Secret or ConfigMap key, a per-run field), or a `$(NAME)` the kubelet
/// leaves to `envFrom` and service links.
fn part_literal(s: &str) -> Value {
    let mut o = Map::new();
    o.insert("text".into(), Value::String(s.into()));
    Value::Object(o)
}

/// What a variable holds: literal text, or parts (text and references).
#[derive(Clone, Debug)]
enum Held {
    /// Known text.
    Text(String),
    /// Not known at admission: its canonical description.
    Unknown(Value),
}

/// Resolves a `valueFrom` to what the process will read, where that is the same for every run.
fn resolve_source(pod: &Pod, c: &Container, from: &EnvVarSource) -> Held {
    if let Some(f) = &from.field_ref {
        return match downward_field(pod, &f.field_path) {
            Some(v) => Held::Text(v),
            None => Held::Unknown(reference("fieldRef", Value::String(f.field_path.clone()))),
        };
    }
    if let Some(r) = &from.resource_field_ref {
        let container = r.container_name.as_deref().filter(|n| !n.is_empty()).unwrap_or(&c.name);
        let divisor = r.divisor.as_ref().map(|d| d.0.clone()).filter(|d| d != "0" && !d.is_empty());
        let amount = container_resource(pod, container, &r.resource);
        let mut o = Map::new();
        o.insert("resource".into(), Value::String(r.resource.clone()));
        // Unset: the kubelet uses the node's allocatable amount, not known at admission.
        o.insert("amount".into(), amount.map_or(Value::String("node-allocatable".into()), Value::String));
        if let Some(d) = divisor {
            o.insert("divisor".into(), Value::String(d));
        }
        return Held::Unknown(reference("resourceFieldRef", Value::Object(o)));
    }
    // Secret and ConfigMap keys: keyed by reference (their contents are not read here).
    let v = serde_json::to_value(from).unwrap_or(Value::Null);
    Held::Unknown(reference("valueFrom", v))
}

fn reference(kind: &str, v: Value) -> Value {
    let mut o = Map::new();
    o.insert(kind.into(), v);
    Value::Object(o)
}

/// The value of a downward-API field that is the same for every run of the step; `None` for the
/// per-run identity fields and unknown paths.
pub fn downward_field(pod: &Pod, path: &str) -> Option<String> {
    if PER_RUN_FIELDS.contains(&path) {
        return None;
    }
    let quoted = |prefix: &str| path.strip_prefix(prefix).and_then(|r| r.strip_suffix("']")).map(str::to_owned);
    if let Some(k) = quoted("metadata.labels['") {
        return Some(visible(pod.metadata.labels.as_ref()).get(k.as_str()).cloned().unwrap_or_default());
    }
    if let Some(k) = quoted("metadata.annotations['") {
        return Some(visible(pod.metadata.annotations.as_ref()).get(k.as_str()).cloned().unwrap_or_default());
    }
    match path {
        "metadata.namespace" => pod.metadata.namespace.clone(),
        "spec.serviceAccountName" => Some(
            pod.spec
                .as_ref()
                .and_then(|s| s.service_account_name.clone())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "default".into()),
        ),
        _ => None,
    }
}

/// A pod's labels or annotations as the step's downward API reads them for keying: without what
/// stepcache writes on the pod itself (its decision, mark, key…) and Argo's outputs annotation
/// (written by the step's own `wait` afterwards), so the key at admission and at recording agree.
pub fn visible(map: Option<&BTreeMap<String, String>>) -> BTreeMap<&str, String> {
    map.into_iter()
        .flatten()
        .filter(|(k, _)| !crate::trust::is_stepcache_written(k) && k.as_str() != labels::OUTPUTS_ANNOTATION)
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect()
}

/// A container's resource amount (`limits.cpu`, `requests.memory`, …) as written on the pod.
fn container_resource(pod: &Pod, container: &str, resource: &str) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let c = spec.containers.iter().chain(spec.init_containers.iter().flatten()).find(|c| c.name == container)?;
    let (kind, name) = resource.split_once('.')?;
    let r = c.resources.as_ref()?;
    let map = match kind {
        "limits" => r.limits.as_ref(),
        "requests" => r.requests.as_ref(),
        _ => None,
    }?;
    map.get(name).map(|q| q.0.clone())
}

/// Expands `$(NAME)` in `s` against `known` as the kubelet does: known text is substituted, a
/// known variable whose value admission cannot see becomes a reference, an unknown name stays
/// `$(NAME)` (envFrom and service links may still supply it; they are keyed by reference), `$$`
/// is `$`.
fn expand(s: &str, known: &BTreeMap<String, Held>) -> Vec<Value> {
    let mut parts: Vec<Value> = Vec::new();
    let mut text = String::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes.get(i) == Some(&b'$') {
            match bytes.get(i + 1) {
                Some(b'$') => {
                    text.push('$');
                    i += 2;
                    continue;
                }
                Some(b'(') => {
                    if let Some(close) = s.get(i + 2..).and_then(|r| r.find(')')) {
                        let name = s.get(i + 2..i + 2 + close).unwrap_or_default();
                        match known.get(name) {
                            Some(Held::Text(v)) => text.push_str(v),
                            Some(Held::Unknown(r)) => {
                                if !text.is_empty() {
                                    parts.push(part_literal(&std::mem::take(&mut text)));
                                }
                                parts.push(r.clone());
                            }
                            None => {
                                if !text.is_empty() {
                                    parts.push(part_literal(&std::mem::take(&mut text)));
                                }
                                let mut o = Map::new();
                                o.insert("unresolved".into(), Value::String(name.into()));
                                parts.push(Value::Object(o));
                            }
                        }
                        i += 2 + close + 1;
                        continue;
                    }
                    // No closing parenthesis: the kubelet keeps the text as it is.
                }
                _ => {}
            }
        }
        // Copy one UTF-8 character.
        let ch_len = s.get(i..).and_then(|r| r.chars().next()).map_or(1, char::len_utf8);
        text.push_str(s.get(i..i + ch_len).unwrap_or_default());
        i += ch_len;
    }
    if !text.is_empty() || parts.is_empty() {
        parts.push(part_literal(&text));
    }
    parts
}

/// The environment the process sees, for the key: name → value (text, or parts where a reference
/// stays), sorted by name. Argo's appended block is left out; everything else, user variables
/// spelled like Argo's included, is resolved in declared order with the last duplicate winning.
pub fn effective_env(pod: &Pod, c: &Container, layout: ArgoLayout, facts: &ArgoFacts, role: Role) -> Value {
    let env: &[EnvVar] = c.env.as_deref().unwrap_or_default();
    let block = argo_block(env, layout, facts, role);
    let mut known: BTreeMap<String, Held> = BTreeMap::new();
    let mut keyed: BTreeMap<String, Value> = BTreeMap::new();
    for (i, e) in env.iter().enumerate() {
        if block.contains(&i) {
            continue;
        }
        if e.name == labels::ARGO_TEMPLATE_ENV {
            // Classification admits only copies identical to the template the key reads: the
            // step's own description, carrying per-run locations. Referenced, never keyed.
            known.insert(e.name.clone(), Held::Unknown(reference("argoTemplate", Value::Bool(true))));
            keyed.remove(&e.name);
            continue;
        }
        let (held, material) = match &e.value_from {
            Some(from) => {
                let held = resolve_source(pod, c, from);
                let material = match &held {
                    Held::Text(t) => Value::String(t.clone()),
                    Held::Unknown(r) => Value::Array(vec![r.clone()]),
                };
                (held, material)
            }
            None => {
                let parts = expand(e.value.as_deref().unwrap_or_default(), &known);
                match parts.as_slice() {
                    [only] if only.get("text").is_some() && only.as_object().is_some_and(|o| o.len() == 1) => {
                        let t = only.get("text").and_then(Value::as_str).unwrap_or_default().to_owned();
                        (Held::Text(t.clone()), Value::String(t))
                    }
                    _ => (Held::Unknown(Value::Array(parts.clone())), Value::Array(parts)),
                }
            }
        };
        known.insert(e.name.clone(), held);
        keyed.insert(e.name.clone(), material);
    }
    Value::Object(keyed.into_iter().collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod_with(env: Value) -> (Pod, Container) {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "wf-1-step-123", "namespace": "ml",
                         "labels": {"team": "a", "stepcache.dev/decision": "miss"},
                         "annotations": {"cutoff": "2025-12-31", "stepcache.dev/mark": "m"}},
            "spec": {"serviceAccountName": "runner", "containers": [
                {"name": "main", "image": "x", "env": env, "resources": {"limits": {"cpu": "2"}}}
            ]}
        }))
        .unwrap();
        let c = pod.spec.as_ref().unwrap().containers[0].clone();
        (pod, c)
    }

    fn eff(env: Value) -> Value {
        let (pod, c) = pod_with(env);
        effective_env(&pod, &c, ArgoLayout::TemplateEnvInitOnly, &ArgoFacts::default(), Role::User)
    }

    #[test]
    fn a_reference_to_a_variable_declared_later_stays_literal() {
        let before = eff(json!([{"name": "DB_HOST", "value": "x"}, {"name": "DSN", "value": "$(DB_HOST)"}]));
        let after = eff(json!([{"name": "DSN", "value": "$(DB_HOST)"}, {"name": "DB_HOST", "value": "x"}]));
        assert_eq!(before["DSN"], "x");
        assert_eq!(after["DSN"], json!([{"unresolved": "DB_HOST"}]));
        assert_ne!(before, after);
    }

    #[test]
    fn the_last_duplicate_wins_and_references_see_the_value_at_their_position() {
        let a = eff(
            json!([{"name": "MODE", "value": "a"}, {"name": "RUN", "value": "$(MODE)"}, {"name": "MODE", "value": "b"}]),
        );
        let b = eff(
            json!([{"name": "MODE", "value": "a"}, {"name": "MODE", "value": "b"}, {"name": "RUN", "value": "$(MODE)"}]),
        );
        assert_eq!((a["RUN"].clone(), a["MODE"].clone()), (json!("a"), json!("b")));
        assert_eq!((b["RUN"].clone(), b["MODE"].clone()), (json!("b"), json!("b")));
        assert_ne!(a, b);
    }

    #[test]
    fn order_that_changes_nothing_the_process_sees_keys_alike() {
        let a = eff(json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]));
        let b = eff(json!([{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]));
        assert_eq!(a, b);
    }

    #[test]
    fn dollar_escapes_and_unclosed_references_are_kept_as_the_kubelet_keeps_them() {
        let e = eff(json!([{"name": "A", "value": "x"}, {"name": "B", "value": "$$(A) $(A) $(A"}]));
        assert_eq!(e["B"], "$(A) x $(A");
    }

    #[test]
    fn a_user_value_under_an_argo_name_before_argos_block_is_keyed() {
        let argo = |v: &str| {
            json!([{"name": "ARGO_DEADLINE", "value": v}, {"name": "CUTOFF", "value": "$(ARGO_DEADLINE)"},
                   {"name": "ARGO_CONTAINER_NAME", "value": "main"}, {"name": "ARGO_NODE_ID", "value": "n-1"},
                   {"name": "ARGO_DEADLINE", "value": "0001-01-01T00:00:00Z"}])
        };
        let a = eff(argo("2025-12-31"));
        let b = eff(argo("2026-06-30"));
        assert_eq!(a["CUTOFF"], "2025-12-31");
        assert_ne!(a, b, "two user values of ARGO_DEADLINE must not share a key");
        assert!(
            a.get("ARGO_NODE_ID").is_none() && a.get("ARGO_CONTAINER_NAME").is_none(),
            "Argo's block is dropped: {a}"
        );
    }

    #[test]
    fn argos_block_per_run_values_do_not_change_the_key() {
        let run = |node: &str| {
            json!([{"name": "LOG_LEVEL", "value": "debug"}, {"name": "ARGO_CONTAINER_NAME", "value": "main"},
                   {"name": "ARGO_NODE_ID", "value": node}, {"name": "ARGO_DEADLINE", "value": "0001-01-01T00:00:00Z"}])
        };
        assert_eq!(eff(run("wf-a-1")), eff(run("wf-b-2")));
        assert_eq!(eff(run("wf-a-1")), json!({"LOG_LEVEL": "debug"}));
    }

    #[test]
    fn downward_labels_annotations_and_resources_are_keyed_by_value() {
        let e = eff(json!([
            {"name": "TEAM", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['team']"}}},
            {"name": "CUT", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['cutoff']"}}},
            {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
            {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "MSG", "value": "$(TEAM)-$(POD)"}
        ]));
        assert_eq!(e["TEAM"], "a");
        assert_eq!(e["CUT"], "2025-12-31");
        assert_eq!(e["SA"], "runner");
        assert_eq!(e["CPU"], json!([{"resourceFieldRef": {"resource": "limits.cpu", "amount": "2"}}]));
        assert_eq!(e["POD"], json!([{"fieldRef": "metadata.name"}]), "per-run identity by reference");
        assert_eq!(e["MSG"], json!([{"text": "a-"}, {"fieldRef": "metadata.name"}]));
    }

    #[test]
    fn what_stepcache_writes_on_the_pod_is_not_visible_to_the_key() {
        let (pod, _) = pod_with(json!([]));
        assert_eq!(downward_field(&pod, "metadata.labels['stepcache.dev/decision']"), Some(String::new()));
        assert!(!visible(pod.metadata.annotations.as_ref()).contains_key("stepcache.dev/mark"));
    }

    #[test]
    fn argos_block_is_found_only_where_argo_puts_it() {
        let names = |ns: &[&str]| -> Vec<EnvVar> {
            ns.iter().map(|n| EnvVar { name: (*n).into(), ..Default::default() }).collect()
        };
        let f = ArgoFacts::default();
        let l = ArgoLayout::TemplateEnvInitOnly;
        let env = names(&["ARGO_CONTAINER_NAME", "X", "ARGO_CONTAINER_NAME", "ARGO_NODE_ID", "ARGO_DEADLINE"]);
        assert_eq!(argo_block(&env, l, &f, Role::User), 2..5);
        // Something appended after Argo's block (another webhook) is not Argo's.
        let env = names(&["A", "ARGO_CONTAINER_NAME", "ARGO_NODE_ID", "INJECTED"]);
        assert_eq!(argo_block(&env, l, &f, Role::User), 1..3);
        assert_eq!(argo_block(&names(&["ARGO_NODE_ID"]), l, &f, Role::User), 0..0, "no block start: nothing dropped");
    }
}
