//! The namespaces' LimitRanges, for hit pods the API server accepts: a hit pod's no-op must meet
//! the LimitRange minimums, maximums and ratios of its namespace, or the LimitRanger admission
//! plugin refuses it (403) and Argo fails the node.
//!
//! Owns: `LimitRangeCache`, a kube watch cache (`kube::runtime::reflector`) over every
//! namespace's LimitRanges (`list`/`watch limitranges`), so admission reads them from memory and
//! never waits on the API server. What the core sees is the merged value
//! `hitpod::NamespaceLimits`; this edge only keeps the objects current.

use futures::StreamExt;
use k8s_openapi::api::core::v1::LimitRange;
use kube::api::Api;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use stepcache_core::hitpod::NamespaceLimits;

/// Why a namespace's LimitRanges are not known (the hit is then served as a miss).
#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    /// The watch cache has not completed its first list (just started, or RBAC forbids it).
    #[error("LimitRanges not yet listed (needs list/watch on limitranges)")]
    NotSynced,
}

impl LimitsError {
    /// Bounded metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            LimitsError::NotSynced => "not_synced",
        }
    }
}

/// Every namespace's LimitRanges, kept current by a watch (a reflector store).
#[derive(Clone)]
pub struct LimitRangeCache {
    store: reflector::Store<LimitRange>,
}

impl LimitRangeCache {
    /// Starts watching LimitRanges in all namespaces on the current runtime; the watch retries
    /// with backoff for as long as the process runs.
    pub fn start(client: kube::Client) -> LimitRangeCache {
        let (store, writer) = reflector::store();
        let api: Api<LimitRange> = Api::all(client);
        let stream = reflector(writer, watcher(api, watcher::Config::default()).default_backoff());
        tokio::spawn(async move {
            let mut events = std::pin::pin!(stream);
            while let Some(ev) = events.next().await {
                if let Err(e) = ev {
                    tracing::warn!(error = %e, "LimitRange watch failed; retrying");
                }
            }
        });
        LimitRangeCache { store }
    }

    /// A cache over a fixed set of LimitRanges (tests, tools): always synced.
    pub fn fixed(ranges: Vec<LimitRange>) -> LimitRangeCache {
        let (store, mut writer) = reflector::store();
        writer.apply_watcher_event(&watcher::Event::Init);
        for r in ranges {
            writer.apply_watcher_event(&watcher::Event::InitApply(r));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        // The store stays readable (and ready) after its writer is gone.
        LimitRangeCache { store }
    }

    /// The merged LimitRanges of `namespace`, from memory. Right after start the first list may
    /// still be under way: waits for it at most `SYNC_WAIT`, then fails (the hit runs as a miss).
    pub async fn for_namespace(&self, namespace: &str) -> Result<NamespaceLimits, LimitsError> {
        match tokio::time::timeout(SYNC_WAIT, self.store.wait_until_ready()).await {
            Ok(Ok(())) => {}
            _ => return Err(LimitsError::NotSynced),
        }
        let all = self.store.state();
        let here = all.iter().filter(|r| r.metadata.namespace.as_deref() == Some(namespace)).map(|r| r.as_ref());
        Ok(NamespaceLimits::from_limit_ranges(here))
    }
}

/// How long an admission waits for the first list of LimitRanges (a restart's first pods):
/// well inside the request deadline, and once synced it costs nothing.
const SYNC_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_fixed_cache_answers_only_for_its_namespace() {
        let lr: LimitRange = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "mins", "namespace": "a"},
            "spec": {"limits": [{"type": "Container", "min": {"cpu": "50m"}}]}
        }))
        .unwrap();
        let cache = LimitRangeCache::fixed(vec![lr]);
        assert!(cache.for_namespace("a").await.unwrap().container.contains_key("cpu"));
        assert_eq!(cache.for_namespace("b").await.unwrap(), NamespaceLimits::default());
    }
}
