//! Refused hits, the service part: every hit answered (not a dry run) is looked at again after a
//! bound (`--refused-hit-check-after`); when its pod never appeared, the verdict of
//! [`stepcache_core::refusal::judge`] blocks the key in that namespace, in the store (every
//! replica, every restart) and at once in this replica's [`RefusedSet`], so Argo's retry of the
//! step runs it instead of being the same refused hit again. An operator clears the block with
//! `stepcache refused clear` once the cause is fixed.
//!
//! Owns: `RefusedSet`, `PendingHit`, `Refusals`, the confirmation and refresh loops. Imports
//! `store`, `k8s`, `metrics`.

use crate::k8s::workflow_resource;
use crate::metrics::Metrics;
use crate::store::refusals::RefusedHit;
use crate::store::Store;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use stepcache_core::refusal::{judge, Found, NodeView, Verdict};
use tokio::sync::mpsc;

/// How many answered hits may wait for their confirmation; past it a hit is not checked (and
/// counted), rather than holding memory without bound.
const PENDING_CAPACITY: usize = 10_000;

/// How long a refusal detected here is kept over a store read that does not have it yet.
const RECENT: jiff::SignedDuration = jiff::SignedDuration::from_secs(30);

/// Bound on each Kubernetes read of a confirmation.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The (key, namespace) pairs this replica will not serve, as last read from the store plus what
/// it detected itself since.
#[derive(Clone, Default)]
pub struct RefusedSet(Arc<RwLock<HashMap<(String, String), Held>>>);

/// One blocked pair and whether the store has it (then the store's rows decide).
#[derive(Clone, Debug)]
struct Held {
    hit: RefusedHit,
    stored: bool,
}

impl RefusedSet {
    /// The refusal blocking `key` in `namespace`, if any.
    pub fn blocked(&self, key: &str, namespace: &str) -> Option<RefusedHit> {
        let map = self.0.read().ok()?;
        map.get(&(key.to_owned(), namespace.to_owned())).map(|h| h.hit.clone())
    }

    /// Adds one refusal this replica detected, not yet in the store.
    pub fn insert(&self, r: RefusedHit) {
        if let Ok(mut m) = self.0.write() {
            m.entry((r.key.clone(), r.namespace.clone())).or_insert(Held { hit: r, stored: false });
        }
    }

    /// Notes that the store has the refusal of (key, namespace): from now on the store's rows
    /// decide whether it stays (an operator's clear removes it).
    pub fn stored(&self, key: &str, namespace: &str) {
        if let Ok(mut m) = self.0.write() {
            if let Some(h) = m.get_mut(&(key.to_owned(), namespace.to_owned())) {
                h.stored = true;
            }
        }
    }

    /// Replaces the set with the store's rows, so clears made by operators take effect; a
    /// refusal this replica detected but has not stored yet is kept while it is recent
    /// (`RECENT` before `read_at`), so a failing store write does not unblock it at once.
    pub fn replace(&self, rows: Vec<RefusedHit>, read_at: jiff::Timestamp) {
        if let Ok(mut m) = self.0.write() {
            let recent = read_at - RECENT;
            let mut next: HashMap<(String, String), Held> = rows
                .into_iter()
                .map(|r| ((r.key.clone(), r.namespace.clone()), Held { hit: r, stored: true }))
                .collect();
            for (k, h) in m.drain() {
                if !h.stored && h.hit.refused_at > recent {
                    next.entry(k).or_insert(h);
                }
            }
            *m = next;
        }
    }

    /// Number of blocked pairs.
    pub fn len(&self) -> usize {
        self.0.read().map(|m| m.len()).unwrap_or(0)
    }

    /// True when nothing is blocked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A hit answered by this replica, to be confirmed.
#[derive(Clone, Debug)]
pub struct PendingHit {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod_name: String,
    /// Its Workflow's name.
    pub workflow: String,
    /// Its Argo node id.
    pub node_id: String,
    /// The key served.
    pub key: String,
    /// The entry served.
    pub entry_id: i64,
    /// When the hit was answered.
    pub answered: Instant,
}

/// What the admission needs of refused hits: the set it consults and where it hands answered
/// hits for confirmation (none offline, or without a Kubernetes API).
#[derive(Clone, Default)]
pub struct Refusals {
    /// Pairs not to serve.
    pub set: RefusedSet,
    confirm: Option<mpsc::Sender<PendingHit>>,
}

impl Refusals {
    /// Refusals that block what `set` holds and confirm nothing (no Kubernetes API).
    pub fn unconfirmed(set: RefusedSet) -> Refusals {
        Refusals { set, confirm: None }
    }

    /// Refusals whose hits are confirmed by the loop reading the returned receiver.
    pub fn confirmed(set: RefusedSet) -> (Refusals, mpsc::Receiver<PendingHit>) {
        let (tx, rx) = mpsc::channel(PENDING_CAPACITY);
        (Refusals { set, confirm: Some(tx) }, rx)
    }

    /// Hands an answered hit to the confirmation loop; never waits.
    pub fn note_hit(&self, hit: PendingHit, metrics: &Metrics) {
        if let Some(tx) = &self.confirm {
            if tx.try_send(hit).is_err() {
                metrics.refused_hit_checks_dropped.inc();
            }
        }
    }
}

/// What the confirmation reads from the API server.
async fn look(client: &kube::Client, hit: &PendingHit) -> Result<Found, kube::Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &hit.namespace);
    if timed(pods.get_opt(&hit.pod_name)).await?.is_some() {
        return Ok(Found::Pod);
    }
    let workflows: Api<DynamicObject> = Api::namespaced_with(client.clone(), &hit.namespace, &workflow_resource());
    let Some(wf) = timed(workflows.get_opt(&hit.workflow)).await? else {
        return Ok(Found::NoPod { node: None, workflow_found: false });
    };
    let node = wf.data.pointer("/status/nodes").and_then(|nodes| nodes.get(&hit.node_id)).map(|n| NodeView {
        phase: n.get("phase").and_then(|v| v.as_str()).unwrap_or_default().to_owned(),
        message: n.get("message").and_then(|v| v.as_str()).unwrap_or_default().to_owned(),
    });
    Ok(Found::NoPod { node, workflow_found: true })
}

async fn timed<T>(fut: impl std::future::Future<Output = Result<T, kube::Error>>) -> Result<T, kube::Error> {
    tokio::time::timeout(READ_TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| Err(kube::Error::Service(format!("no answer within {READ_TIMEOUT:?}").into())))
}

/// The confirmation loop: waits until each hit is `after` old, judges it, and blocks refused
/// ones. A hit whose reads fail is judged once more at the next round, then given up (logged).
pub async fn confirm_loop(
    client: kube::Client,
    store: Store,
    set: RefusedSet,
    metrics: Arc<Metrics>,
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<PendingHit>>>,
    after: Duration,
) {
    let mut rx = rx.lock().await;
    let mut queue: VecDeque<(PendingHit, u8)> = VecDeque::new();
    loop {
        let next_due = queue.front().map(|(h, _)| h.answered + after);
        let received = match next_due {
            Some(due) => tokio::select! {
                r = rx.recv() => r.map(Some),
                () = tokio::time::sleep_until(tokio::time::Instant::from_std(due)) => Some(None),
            },
            None => rx.recv().await.map(Some),
        };
        match received {
            None => return,
            Some(Some(hit)) => queue.push_back((hit, 0)),
            Some(None) => {
                while let Some((hit, tries)) = queue.pop_front() {
                    if hit.answered + after > Instant::now() {
                        queue.push_front((hit, tries));
                        break;
                    }
                    if let Some(retry) = confirm_one(&client, &store, &set, &metrics, hit, tries).await {
                        queue.push_back(retry);
                    }
                }
            }
        }
    }
}

async fn confirm_one(
    client: &kube::Client,
    store: &Store,
    set: &RefusedSet,
    metrics: &Metrics,
    hit: PendingHit,
    tries: u8,
) -> Option<(PendingHit, u8)> {
    let found = match look(client, &hit).await {
        Ok(f) => f,
        Err(e) if tries == 0 => {
            tracing::debug!(error = %e, pod = %hit.pod_name, "hit confirmation read failed; trying once more");
            return Some((hit, 1));
        }
        Err(e) => {
            tracing::warn!(error = %e, namespace = %hit.namespace, pod = %hit.pod_name, "hit not confirmed: reads failed");
            return None;
        }
    };
    match judge(&found) {
        Verdict::Delivered | Verdict::Retrying => None,
        Verdict::Refused { cause } => {
            metrics.refused_hits.inc();
            tracing::warn!(
                namespace = %hit.namespace,
                pod = %hit.pod_name,
                key = %hit.key,
                entry = hit.entry_id,
                cause = %cause,
                "hit refused: the hit pod never appeared; the key is not served in this namespace until cleared"
            );
            let refused = RefusedHit {
                key: hit.key.clone(),
                namespace: hit.namespace.clone(),
                refused_at: jiff::Timestamp::now(),
                pod_name: hit.pod_name.clone(),
                entry_id: hit.entry_id,
                cause,
            };
            set.insert(refused.clone());
            if let Err(e) = store.refuse_hit(&refused).await {
                // This replica blocks it already; retried at the next round.
                tracing::warn!(error = %e, "refused hit not stored yet; kept in this replica");
                return if tries < 3 { Some((hit, tries + 1)) } else { None };
            }
            set.stored(&refused.key, &refused.namespace);
            None
        }
    }
}

/// Re-reads the store's refusals every `every`, so blocks detected by other replicas and clears
/// made by operators take effect here. Keeps the last good set when the store fails.
pub async fn refresh_loop(store: Store, set: RefusedSet, metrics: Arc<Metrics>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let read_at = jiff::Timestamp::now();
        match store.refused_hits().await {
            Ok(rows) => {
                set.replace(rows, read_at);
                metrics.refused_keys.set(i64::try_from(set.len()).unwrap_or(i64::MAX));
            }
            Err(e) => tracing::debug!(error = %e, "refused hits not refreshed; keeping the last set"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn refused(key: &str, at: jiff::Timestamp) -> RefusedHit {
        RefusedHit {
            key: key.into(),
            namespace: "ns".into(),
            refused_at: at,
            pod_name: "p".into(),
            entry_id: 1,
            cause: "c".into(),
        }
    }

    #[test]
    fn a_refresh_applies_clears_but_keeps_a_refusal_detected_just_before_it() {
        let now: jiff::Timestamp = "2026-01-01T00:10:00Z".parse().unwrap();
        let set = RefusedSet::default();
        set.insert(refused("old", now - jiff::SignedDuration::from_secs(600)));
        set.insert(refused("fresh", now - jiff::SignedDuration::from_secs(5)));
        set.insert(refused("fresh-stored", now - jiff::SignedDuration::from_secs(5)));
        set.stored("fresh-stored", "ns");
        assert!(set.blocked("old", "ns").is_some());
        // The store no longer has `old` nor `fresh-stored` (cleared) and not `fresh` yet.
        set.replace(vec![refused("other", now)], now);
        assert!(set.blocked("old", "ns").is_none(), "a clear takes effect");
        assert!(set.blocked("fresh-stored", "ns").is_none(), "a clear takes effect on a fresh stored refusal");
        assert!(set.blocked("fresh", "ns").is_some(), "a refusal not stored yet is kept");
        assert!(set.blocked("other", "ns").is_some());
        assert!(set.blocked("other", "elsewhere").is_none(), "blocked per namespace");
        assert_eq!(set.len(), 2);
    }
}
