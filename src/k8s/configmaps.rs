//! The namespaces' ConfigMaps, for keys that see what a step reads: a step that mounts a
//! ConfigMap or reads it through its environment is keyed by the ConfigMap's contents, not only
//! its name (`docs/cache-key.md`, "ConfigMap contents").
//!
//! Owns: `ConfigMapCache`, a kube watch cache (`kube::runtime::reflector`) over every
//! namespace's ConfigMaps (`list`/`watch configmaps`), so admission and the recorder read them
//! from memory and never wait on the API server. What the core sees is a
//! [`stepcache_core::key::configmaps::ConfigMaps`] view; the digests are computed there
//! (`configmaps::digest`), this edge only keeps the objects current.

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::ResourceExt;
use stepcache_core::key::configmaps::{self, ConfigMaps};

/// Why the ConfigMaps are not known (steps reading one are then not keyed: `configmap-unknown`).
#[derive(Debug, thiserror::Error)]
pub enum ConfigMapsError {
    /// The watch cache has not completed its first list (just started, or RBAC forbids it).
    #[error("ConfigMaps not yet listed (needs list/watch on configmaps)")]
    NotSynced,
    /// Re-reading a ConfigMap from the API server failed or exceeded its bound.
    #[error("ConfigMap {name} not re-read: {reason}")]
    Unread {
        /// The ConfigMap.
        name: String,
        /// What failed.
        reason: String,
    },
}

impl ConfigMapsError {
    /// Bounded metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            ConfigMapsError::NotSynced => "not_synced",
            ConfigMapsError::Unread { .. } => "unread",
        }
    }
}

/// Every namespace's ConfigMaps, kept current by a watch (a reflector store).
#[derive(Clone)]
pub struct ConfigMapCache {
    store: reflector::Store<ConfigMap>,
    /// For re-reading a ConfigMap before a hit is served; `None` for a fixed cache.
    client: Option<kube::Client>,
}

impl ConfigMapCache {
    /// Starts watching ConfigMaps in all namespaces on the current runtime; the watch retries
    /// with backoff for as long as the process runs. `managedFields` and annotations are
    /// dropped before storing (the digest reads only `data` and `binaryData`), which keeps the
    /// memory of a cluster-wide cache close to the contents themselves.
    pub fn start(client: kube::Client) -> ConfigMapCache {
        let (store, writer) = reflector::store();
        let api: Api<ConfigMap> = Api::all(client.clone());
        let stream = reflector(
            writer,
            watcher(api, watcher::Config::default()).default_backoff().modify(|cm: &mut ConfigMap| {
                cm.managed_fields_mut().clear();
                cm.annotations_mut().clear();
            }),
        );
        tokio::spawn(async move {
            let mut events = std::pin::pin!(stream);
            while let Some(ev) = events.next().await {
                if let Err(e) = ev {
                    tracing::warn!(error = %e, "ConfigMap watch failed; retrying");
                }
            }
        });
        ConfigMapCache { store, client: Some(client) }
    }

    /// A cache over a fixed set of ConfigMaps (tests, tools): always synced.
    pub fn fixed(maps: Vec<ConfigMap>) -> ConfigMapCache {
        let (store, mut writer) = reflector::store();
        writer.apply_watcher_event(&watcher::Event::Init);
        for m in maps {
            writer.apply_watcher_event(&watcher::Event::InitApply(m));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        // The store stays readable (and ready) after its writer is gone.
        ConfigMapCache { store, client: None }
    }

    /// A view the key can read digests through. Right after start the first list may still be
    /// under way: waits for it at most `SYNC_WAIT`, then fails (the step is not keyed).
    pub async fn view(&self) -> Result<ConfigMapView, ConfigMapsError> {
        match tokio::time::timeout(SYNC_WAIT, self.store.wait_until_ready()).await {
            Ok(Ok(())) => Ok(ConfigMapView { store: self.store.clone() }),
            _ => Err(ConfigMapsError::NotSynced),
        }
    }
}

impl ConfigMapCache {
    /// The digest of ConfigMap `name` as the API server has it now (a `get`, bounded by
    /// `FRESH_WAIT`), `None` when it does not exist. Used before a hit is served, so a ConfigMap
    /// changed within the watch delay is not served the previous contents' outputs.
    pub async fn fresh_digest(&self, namespace: &str, name: &str) -> Result<Option<String>, ConfigMapsError> {
        let Some(client) = &self.client else {
            return Ok(self.store.get(&ObjectRef::new(name).within(namespace)).map(|cm| configmaps::digest(&cm)));
        };
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        let unread = |reason: String| ConfigMapsError::Unread { name: name.to_owned(), reason };
        match tokio::time::timeout(FRESH_WAIT, api.get_opt(name)).await {
            Ok(Ok(cm)) => Ok(cm.map(|cm| configmaps::digest(&cm))),
            Ok(Err(e)) => Err(unread(e.to_string())),
            Err(_) => Err(unread(format!("exceeded {FRESH_WAIT:?}"))),
        }
    }
}

/// How long a hit waits for one ConfigMap re-read before it is served as a miss.
const FRESH_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// A synced cache, read synchronously by the key derivation.
pub struct ConfigMapView {
    store: reflector::Store<ConfigMap>,
}

impl ConfigMaps for ConfigMapView {
    fn digest(&self, namespace: &str, name: &str) -> Option<String> {
        self.store.get(&ObjectRef::new(name).within(namespace)).map(|cm| configmaps::digest(&cm))
    }
}

/// How long an admission (or a recording) waits for the first list of ConfigMaps (a restart's
/// first pods): well inside the request deadline, and once synced it costs nothing.
const SYNC_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_fixed_cache_knows_its_configmaps_by_namespace_and_name_only() {
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "conf", "namespace": "a"},
            "data": {"k": "v"}
        }))
        .unwrap();
        let view = ConfigMapCache::fixed(vec![cm.clone()]).view().await.unwrap();
        assert_eq!(view.digest("a", "conf"), Some(configmaps::digest(&cm)));
        assert_eq!(view.digest("b", "conf"), None);
        assert_eq!(view.digest("a", "other"), None);
    }
}
