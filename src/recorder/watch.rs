//! Feeding the recorder from the cluster: watchers (with backoff) on marked pods and on
//! completed WorkflowTaskResults, a pending set retried periodically, and the Workflow status
//! as the fallback source of outputs once task results are deleted.
//!
//! The initial list of each watcher is the catch-up after a restart: every marked pod still in
//! the cluster is assessed again, and the store's per-pod uniqueness makes that harmless.

use super::Recorder;
use crate::argo::labels;
use crate::k8s::{task_result_resource, workflow_resource};
use crate::recorder::assess::{is_marked, OutputSources};
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// Watch settings.
#[derive(Clone, Debug)]
pub struct WatchConfig {
    /// Namespaces to watch; empty = all.
    pub namespaces: Vec<String>,
    /// How often pending pods are retried.
    pub resync: Duration,
    /// How long a pod whose outputs never arrive is kept before it is dropped.
    pub give_up_after: Duration,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig { namespaces: Vec::new(), resync: Duration::from_secs(5), give_up_after: Duration::from_secs(3600) }
    }
}

struct Pending {
    pod: Pod,
    first_seen: std::time::Instant,
}

/// In-memory join of pods and task results; the only state that is lost on restart, and the
/// initial list rebuilds it.
#[derive(Default)]
pub struct Tracker {
    pending: HashMap<String, Pending>,
    results: HashMap<(String, String), Value>,
    done: HashSet<String>,
}

fn pod_uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_else(|| {
        format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or(""), pod.metadata.name.as_deref().unwrap_or(""))
    })
}

fn node_id(pod: &Pod) -> Option<String> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(labels::NODE_ID_ANNOTATION).cloned())
        .or_else(|| pod.metadata.name.clone())
}

fn finished_phase(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded") | Some("Failed"))
}

impl Tracker {
    /// A pod was added, changed or deleted; returns its uid when it should be assessed now.
    pub fn on_pod(&mut self, pod: Pod, deleted: bool) -> Option<String> {
        if !is_marked(&pod) {
            return None;
        }
        let uid = pod_uid(&pod);
        if self.done.contains(&uid) {
            return None;
        }
        if !finished_phase(&pod) {
            if deleted {
                // Deleted before completion: never recorded.
                self.pending.remove(&uid);
                self.done.insert(uid);
            }
            return None;
        }
        let first_seen = self.pending.get(&uid).map(|p| p.first_seen).unwrap_or_else(std::time::Instant::now);
        self.pending.insert(uid.clone(), Pending { pod, first_seen });
        Some(uid)
    }

    /// A task result was added or changed; returns the uids of pending pods it completes.
    pub fn on_task_result(&mut self, tr: Value) -> Vec<String> {
        let ns = tr.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("").to_owned();
        let name = tr.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_owned();
        let uids = self
            .pending
            .iter()
            .filter(|(_, p)| {
                p.pod.metadata.namespace.as_deref() == Some(ns.as_str())
                    && node_id(&p.pod).as_deref() == Some(name.as_str())
            })
            .map(|(u, _)| u.clone())
            .collect();
        self.results.insert((ns, name), tr);
        uids
    }

    /// The pod and its task result, when pending.
    pub fn sources(&self, uid: &str) -> Option<(Pod, Option<Value>)> {
        let p = self.pending.get(uid)?;
        let ns = p.pod.metadata.namespace.clone().unwrap_or_default();
        let tr = node_id(&p.pod).and_then(|n| self.results.get(&(ns, n)).cloned());
        Some((p.pod.clone(), tr))
    }

    /// Marks a pod as finished with (recorded or proven unrecordable).
    pub fn finish(&mut self, uid: &str) {
        if let Some(p) = self.pending.remove(uid) {
            let ns = p.pod.metadata.namespace.clone().unwrap_or_default();
            if let Some(n) = node_id(&p.pod) {
                self.results.remove(&(ns, n));
            }
        }
        self.done.insert(uid.to_owned());
        if self.done.len() > 100_000 {
            self.done.clear();
        }
    }

    /// Pending uids, oldest first, and those that waited too long.
    pub fn pending(&self, give_up_after: Duration) -> (Vec<String>, Vec<String>) {
        let mut live = Vec::new();
        let mut expired = Vec::new();
        for (u, p) in &self.pending {
            if p.first_seen.elapsed() > give_up_after {
                expired.push(u.clone());
            } else {
                live.push(u.clone());
            }
        }
        (live, expired)
    }

    /// Number of pods waiting.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// Reads `Workflow.status.nodes[<node id>]` as the last source of outputs.
async fn workflow_node(client: &kube::Client, pod: &Pod) -> Option<Value> {
    let ns = pod.metadata.namespace.as_deref()?;
    let wf = pod.metadata.labels.as_ref()?.get(labels::WORKFLOW_LABEL)?;
    let node = node_id(pod)?;
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &workflow_resource());
    let obj = tokio::time::timeout(Duration::from_secs(5), api.get_opt(wf)).await.ok()?.ok()??;
    obj.data.pointer("/status/nodes").and_then(|n| n.get(&node)).cloned()
}

/// Assesses one pending pod and settles it when the attempt is final.
pub async fn process(
    tracker: &mut Tracker,
    recorder: &Recorder,
    client: Option<&kube::Client>,
    uid: &str,
    use_fallback: bool,
) {
    let Some((pod, tr)) = tracker.sources(uid) else { return };
    let node = match (use_fallback, client) {
        (true, Some(c)) => workflow_node(c, &pod).await,
        _ => None,
    };
    let src = OutputSources { task_result: tr.as_ref(), workflow_node: node.as_ref() };
    let attempt = recorder.record(&pod, &src, Timestamp::now()).await;
    if attempt.is_final() {
        tracker.finish(uid);
    }
}

fn pod_streams(
    client: &kube::Client,
    namespaces: &[String],
) -> Vec<futures::stream::BoxStream<'static, Result<Event<Pod>, watcher::Error>>> {
    let cfg = watcher::Config::default().labels(&format!("{}=true", labels::RECORD_LABEL));
    let apis: Vec<Api<Pod>> = if namespaces.is_empty() {
        vec![Api::all(client.clone())]
    } else {
        namespaces.iter().map(|n| Api::namespaced(client.clone(), n)).collect()
    };
    apis.into_iter().map(|a| kube::runtime::watcher(a, cfg.clone()).default_backoff().boxed()).collect()
}

fn result_streams(
    client: &kube::Client,
    namespaces: &[String],
) -> Vec<futures::stream::BoxStream<'static, Result<Event<DynamicObject>, watcher::Error>>> {
    let ar = task_result_resource();
    let cfg = watcher::Config::default().labels(&format!("{}=true", labels::REPORT_OUTPUTS_COMPLETED));
    let apis: Vec<Api<DynamicObject>> = if namespaces.is_empty() {
        vec![Api::all_with(client.clone(), &ar)]
    } else {
        namespaces.iter().map(|n| Api::namespaced_with(client.clone(), n, &ar)).collect()
    };
    apis.into_iter().map(|a| kube::runtime::watcher(a, cfg.clone()).default_backoff().boxed()).collect()
}

/// Runs the recorder against the cluster until `shutdown` resolves.
pub async fn run(
    client: kube::Client,
    recorder: Recorder,
    cfg: WatchConfig,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut pods = futures::stream::select_all(pod_streams(&client, &cfg.namespaces));
    let mut results = futures::stream::select_all(result_streams(&client, &cfg.namespaces));
    let mut tracker = Tracker::default();
    let mut tick = tokio::time::interval(cfg.resync);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            ev = pods.next() => match ev {
                Some(Ok(Event::Apply(p))) | Some(Ok(Event::InitApply(p))) => {
                    recorder.observe_images(&p).await;
                    if let Some(uid) = tracker.on_pod(p, false) {
                        process(&mut tracker, &recorder, Some(&client), &uid, false).await;
                    }
                }
                Some(Ok(Event::Delete(p))) => {
                    if !matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded") | Some("Failed")) && is_marked(&p) {
                        // Deleted before completion: a latch it leads must not wait for it.
                        recorder.settle_latch(&p, false).await;
                    }
                    if let Some(uid) = tracker.on_pod(p, true) {
                        process(&mut tracker, &recorder, Some(&client), &uid, true).await;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => tracing::warn!(error = %e, "pod watch error; retrying with backoff"),
                None => break,
            },
            ev = results.next() => match ev {
                Some(Ok(Event::Apply(o))) | Some(Ok(Event::InitApply(o))) => {
                    if let Ok(v) = serde_json::to_value(&o) {
                        for uid in tracker.on_task_result(v) {
                            process(&mut tracker, &recorder, Some(&client), &uid, false).await;
                        }
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => tracing::warn!(error = %e, "task result watch error; retrying with backoff"),
                None => break,
            },
            _ = tick.tick() => {
                let (live, expired) = tracker.pending(cfg.give_up_after);
                for uid in live {
                    process(&mut tracker, &recorder, Some(&client), &uid, true).await;
                }
                for uid in expired {
                    recorder.metrics.skipped("gave_up");
                    tracker.finish(&uid);
                }
            }
        }
    }
}
