//! Feeding the recorder from the cluster: watchers (with backoff) on marked pods and on
//! completed WorkflowTaskResults, a pending set retried periodically, and the Workflow status
//! as the fallback source of outputs once task results are deleted.
//!
//! The initial list of each watcher is the catch-up after a restart: every marked pod still in
//! the cluster is assessed again, and the store's per-pod claim makes that harmless (a pod
//! recorded before is `AlreadyRecorded`, or `Withdrawn` once its entry was invalidated and
//! collected). `Failed` pods are assessed too: Argo calls some of them Succeeded (sidecars it
//! killed at the end).

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
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

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
    first_seen: Instant,
}

/// Most task results kept in memory; the oldest are dropped first (a pod whose result was
/// dropped falls back to the Workflow status). Bounds memory whatever the cluster holds.
pub const MAX_TASK_RESULTS: usize = 50_000;

/// (namespace, name) of a task result.
type ResultId = (String, String);

/// In-memory join of pods and task results; the only state that is lost on restart, and the
/// initial list rebuilds it. Task results are kept until recorded, deleted, older than the
/// give-up time, or pushed out by [`MAX_TASK_RESULTS`] newer ones.
#[derive(Default)]
pub struct Tracker {
    pending: HashMap<String, Pending>,
    results: HashMap<ResultId, (Instant, Value)>,
    /// Insertion order of `results` (entries whose instant no longer matches are stale).
    order: VecDeque<(ResultId, Instant)>,
    done: HashSet<String>,
}

fn result_id(tr: &Value) -> ResultId {
    let field = |k: &str| tr.pointer(&format!("/metadata/{k}")).and_then(Value::as_str).unwrap_or("").to_owned();
    (field("namespace"), field("name"))
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
        let id = result_id(&tr);
        let uids = self
            .pending
            .iter()
            .filter(|(_, p)| {
                p.pod.metadata.namespace.as_deref() == Some(id.0.as_str())
                    && node_id(&p.pod).as_deref() == Some(id.1.as_str())
            })
            .map(|(u, _)| u.clone())
            .collect();
        let now = Instant::now();
        self.results.insert(id.clone(), (now, tr));
        self.order.push_back((id, now));
        while self.results.len() > MAX_TASK_RESULTS {
            let Some((old, at)) = self.order.pop_front() else { break };
            if self.results.get(&old).is_some_and(|(t, _)| *t == at) {
                self.results.remove(&old);
            }
        }
        // Keep the order queue from growing with stale entries of often-updated results.
        if self.order.len() > 2 * MAX_TASK_RESULTS.max(self.results.len()) {
            let results = &self.results;
            self.order.retain(|(id, at)| results.get(id).is_some_and(|(t, _)| t == at));
        }
        uids
    }

    /// A task result was deleted (its workflow completed or was deleted): forget it, so it can
    /// never be paired with a later pod of a same-named workflow.
    pub fn on_task_result_deleted(&mut self, tr: &Value) {
        self.results.remove(&result_id(tr));
    }

    /// Number of task results held.
    pub fn task_results(&self) -> usize {
        self.results.len()
    }

    /// The pod and its task result, when pending.
    pub fn sources(&self, uid: &str) -> Option<(Pod, Option<Value>)> {
        let p = self.pending.get(uid)?;
        let ns = p.pod.metadata.namespace.clone().unwrap_or_default();
        let tr = node_id(&p.pod).and_then(|n| self.results.get(&(ns, n)).map(|(_, v)| v.clone()));
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

    /// Pending uids, oldest first, and those that waited too long; task results not updated
    /// for that long are dropped.
    pub fn pending(&mut self, give_up_after: Duration) -> (Vec<String>, Vec<String>) {
        self.results.retain(|_, (at, _)| at.elapsed() <= give_up_after);
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

/// Reads the pod's Workflow, whose `status.nodes[<node id>]` is the last source of outputs
/// (assessment checks that its uid owns the pod: a same-named later workflow does not).
async fn workflow_object(client: &kube::Client, pod: &Pod) -> Option<Value> {
    let ns = pod.metadata.namespace.as_deref()?;
    let wf = pod.metadata.labels.as_ref()?.get(labels::WORKFLOW_LABEL)?;
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &workflow_resource());
    let obj = tokio::time::timeout(Duration::from_secs(5), api.get_opt(wf)).await.ok()?.ok()??;
    serde_json::to_value(&obj).ok()
}

/// The offload ConfigMap of a pod whose template or args Argo offloaded (it lives until the
/// Workflow is deleted, so it is still there when the step has finished); `None` otherwise or
/// when it cannot be read within 5 s (the pod is then not recorded, as without the ConfigMap).
async fn offloaded(client: &kube::Client, pod: &Pod) -> Option<crate::argo::offload::Offloaded> {
    use crate::argo::template::{classify, Classification, SkipReason};
    use crate::k8s::offload::{ConfigMapReader, OffloadSource};
    if !matches!(classify(pod), Classification::Skip(SkipReason::Offloaded)) {
        return None;
    }
    let (ns, name) = (pod.metadata.namespace.as_deref()?, pod.metadata.name.as_deref()?);
    ConfigMapReader::new(client.clone(), Duration::from_secs(5)).fetch(ns, name).await.ok().flatten()
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
    let workflow = match (use_fallback, client) {
        (true, Some(c)) => workflow_object(c, &pod).await,
        _ => None,
    };
    let src = OutputSources { task_result: tr.as_ref(), workflow: workflow.as_ref() };
    let offloaded = match client {
        Some(c) => offloaded(c, &pod).await,
        None => None,
    };
    let attempt = recorder.record_with(&pod, &src, offloaded.as_ref(), Timestamp::now()).await;
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
    // Every task result of a workflow, not only those labelled complete: v3.3–v3.5.1 never set
    // `report-outputs-completed`. Assessment decides whether one is final and this pod's.
    let cfg = watcher::Config::default().labels(labels::WORKFLOW_LABEL);
    let apis: Vec<Api<DynamicObject>> = if namespaces.is_empty() {
        vec![Api::all_with(client.clone(), &ar)]
    } else {
        namespaces.iter().map(|n| Api::namespaced_with(client.clone(), n, &ar)).collect()
    };
    apis.into_iter().map(|a| kube::runtime::watcher(a, cfg.clone()).default_backoff().boxed()).collect()
}

/// Bounded kind of a watch failure: `forbidden` (RBAC), `expired` (410: resourceVersion too
/// old, the watcher relists), `api` (another API status) or `client` (transport).
pub fn watch_error_kind(e: &watcher::Error) -> &'static str {
    let code = match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => Some(s.code),
        watcher::Error::WatchError(s) => Some(s.code),
        _ => None,
    };
    match code {
        Some(403) => "forbidden",
        Some(410) => "expired",
        Some(_) => "api",
        None => "client",
    }
}

/// Counts a failed list/watch and logs it; a refused one is an error naming the permission, since
/// nothing is recorded until an admin grants it (the watcher keeps retrying with backoff).
fn watch_failed(metrics: &crate::metrics::Metrics, resource: &'static str, e: &watcher::Error) {
    let reason = watch_error_kind(e);
    let label = crate::metrics::WatchErrorLabel { resource: resource.into(), reason: reason.into() };
    metrics.watch_errors.get_or_create(&label).inc();
    if reason == "forbidden" {
        tracing::error!(resource, error = %e, "recorder forbidden to list/watch {resource}: grant the list and watch verbs on {resource} to stepcache's ServiceAccount (the chart's ClusterRole has them); completions are not recorded until then");
    } else {
        tracing::warn!(resource, reason, error = %e, "{resource} watch error; retrying with backoff");
    }
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
                Some(Err(e)) => watch_failed(&recorder.metrics, "pods", &e),
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
                Some(Ok(Event::Delete(o))) => {
                    if let Ok(v) = serde_json::to_value(&o) {
                        tracker.on_task_result_deleted(&v);
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => watch_failed(&recorder.metrics, "workflowtaskresults", &e),
                None => break,
            },
            _ = tick.tick() => {
                let (live, expired) = tracker.pending(cfg.give_up_after);
                for uid in live {
                    process(&mut tracker, &recorder, Some(&client), &uid, true).await;
                }
                for uid in expired {
                    recorder.metrics.skipped("gave_up");
                    if let Some((pod, _)) = tracker.sources(&uid) {
                        // Never recorded: a latch this pod leads must not keep its waiters.
                        recorder.settle_latch(&pod, false).await;
                    }
                    tracker.finish(&uid);
                }
            }
        }
    }
}
