//! `stepcache why POD | WORKFLOW/NODE`: gathers the evidence about one step — the pod (or the
//! Workflow node's pod) from the cluster, the decision log, the entries involved — and hands it
//! to the pure [`crate::why`] module to explain. Falls back to the store when the pod is gone.

use crate::argo::labels as l;
use crate::config::Output;
use crate::decision::Decision;
use crate::store::Store;
use crate::types::EntryId;
use crate::why::{build, render_text, Evidence, PodFacts};
use anyhow::Context;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use std::time::Duration;

/// What to explain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A pod by name.
    Pod(String),
    /// A Workflow node: id, name (`wf.step`) or display name.
    Node {
        /// Workflow name.
        workflow: String,
        /// Node id, name or display name.
        node: String,
    },
}

impl Target {
    /// `POD` or `WORKFLOW/NODE`.
    pub fn parse(raw: &str) -> Target {
        if let Some(pod) = raw.strip_prefix("pod/").or_else(|| raw.strip_prefix("pods/")) {
            return Target::Pod(pod.to_owned());
        }
        match raw.split_once('/') {
            Some((w, n)) if !w.is_empty() && !n.is_empty() => Target::Node { workflow: w.into(), node: n.into() },
            _ => Target::Pod(raw.to_owned()),
        }
    }
}

/// The Workflow node a `WORKFLOW/NODE` target names: its id and its pod, when found.
struct NodeMatch {
    node_id: String,
    pod: Option<Pod>,
}

async fn client() -> Option<kube::Client> {
    match tokio::time::timeout(Duration::from_secs(5), kube::Client::try_default()).await {
        Ok(Ok(c)) => Some(c),
        _ => None,
    }
}

async fn find_node(client: &kube::Client, ns: &str, workflow: &str, node: &str) -> anyhow::Result<NodeMatch> {
    let gvk = GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Workflow");
    let wfs: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk(&gvk));
    let mut node_id = node.to_owned();
    if let Some(wf) = wfs.get_opt(workflow).await.with_context(|| format!("reading Workflow {ns}/{workflow}"))? {
        let nodes = wf.data.pointer("/status/nodes").and_then(|n| n.as_object()).cloned().unwrap_or_default();
        let full = format!("{workflow}.{node}");
        if let Some((id, _)) = nodes.iter().find(|(id, n)| {
            id.as_str() == node
                || n.get("name").and_then(|v| v.as_str()).is_some_and(|v| v == node || v == full)
                || n.get("displayName").and_then(|v| v.as_str()) == Some(node)
        }) {
            node_id = id.clone();
        }
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let listed = pods
        .list(&ListParams::default().labels(&format!("{}={workflow}", l::WORKFLOW_LABEL)))
        .await
        .with_context(|| format!("listing pods of Workflow {ns}/{workflow}"))?;
    let pod = listed.items.into_iter().find(|p| {
        let ann = p.metadata.annotations.clone().unwrap_or_default();
        ann.get(l::NODE_ID_ANNOTATION).map(String::as_str) == Some(node_id.as_str())
    });
    Ok(NodeMatch { node_id, pod })
}

/// Key material of a live pod as the webhook derived it (meaningful for pods that ran
/// unchanged, i.e. misses; a hit pod was rewritten).
fn material(pod: &Pod, scope: crate::key::Scope) -> Option<(serde_json::Value, String)> {
    use crate::argo::template::{classify, Classification};
    let Classification::Step(step) = classify(pod) else { return None };
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let ann = pod.metadata.annotations.clone().unwrap_or_default();
    let seed = match crate::policy::plan(&labels, &ann, &Default::default()) {
        crate::policy::Plan::Lookup(s) => s.seed,
        _ => Default::default(),
    };
    let km = crate::key::derive_key(pod, &step, &seed, scope).ok()?;
    Some((km.material, step.template.name().to_owned()))
}

/// Runs `stepcache why`.
pub async fn why(
    target: &str,
    namespace: Option<String>,
    output: Output,
    scope: crate::key::Scope,
    store: &Store,
) -> anyhow::Result<()> {
    let target = Target::parse(target);
    let client = client().await;
    let ns = namespace
        .or_else(|| client.as_ref().map(|c| c.default_namespace().to_owned()))
        .unwrap_or_else(|| "default".into());
    let mut ev = Evidence { namespace: ns.clone(), ..Default::default() };
    let mut notes = Vec::new();
    let (pod, node_id) = match (&client, &target) {
        (None, _) => {
            notes.push("no Kubernetes API configured: answered from the store only".to_owned());
            (None, None)
        }
        (Some(c), Target::Pod(name)) => {
            let pods: Api<Pod> = Api::namespaced(c.clone(), &ns);
            (pods.get_opt(name).await.with_context(|| format!("reading pod {ns}/{name}"))?, None)
        }
        (Some(c), Target::Node { workflow, node }) => {
            let m = find_node(c, &ns, workflow, node).await?;
            (m.pod, Some(m.node_id))
        }
    };
    ev.pod_name = match (&pod, &target) {
        (Some(p), _) => p.metadata.name.clone().unwrap_or_default(),
        (None, Target::Pod(name)) => name.clone(),
        (None, Target::Node { .. }) => String::new(),
    };
    if let Some(p) = &pod {
        let facts = PodFacts::from_pod(p);
        if facts.decision.as_deref() != Some(Decision::Hit.as_str()) {
            if let Some((m, template)) = material(p, scope) {
                ev.material = Some(m);
                if facts.decision.as_deref() == Some(Decision::Miss.as_str()) {
                    // Fallback when the decision log has no row: the template's newest entry
                    // other than this pod's own.
                    ev.nearest = store
                        .nearest(&crate::types::Namespace::parse(&ns)?, &template)
                        .await?
                        .filter(|e| e.run.pod_name != facts.pod);
                }
            }
        }
        ev.pod = Some(facts);
    }
    ev.logged = match (&ev.pod_name, &target) {
        (name, _) if !name.is_empty() => store.decision_for_pod(&ns, name).await?,
        (_, Target::Node { workflow, node }) => {
            store.decision_for_node(&ns, workflow, node_id.as_deref().unwrap_or(node)).await?
        }
        _ => None,
    };
    if ev.pod_name.is_empty() {
        ev.pod_name = ev.logged.as_ref().map(|d| d.pod_name.clone()).unwrap_or_default();
    }
    let served_id = ev.pod.as_ref().and_then(|p| p.entry_id).or(ev.logged.as_ref().and_then(|d| d.entry_id));
    if let Some(id) = served_id {
        ev.served = store.get(EntryId(id)).await?;
    }
    if let Some(id) = ev.logged.as_ref().and_then(|d| d.nearest_id) {
        ev.nearest = store.get(EntryId(id)).await?;
    }
    if !ev.pod_name.is_empty() {
        ev.recorded = store.entry_for_pod(&ns, &ev.pod_name).await?;
    }
    let mut report = build(&ev, jiff::Timestamp::now())?;
    report.notes.extend(notes);
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Table => print!("{}", render_text(&report)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_pods_or_workflow_nodes() {
        assert_eq!(Target::parse("wf-abc-123"), Target::Pod("wf-abc-123".into()));
        assert_eq!(Target::parse("pod/wf-abc-123"), Target::Pod("wf-abc-123".into()));
        assert_eq!(Target::parse("wf-abc/train"), Target::Node { workflow: "wf-abc".into(), node: "train".into() });
    }
}
