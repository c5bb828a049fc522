//! Reads the ConfigMap Argo 3.6+ offloads oversized templates and args into (named like the
//! pod, created by the controller before the pod), for admission.
//!
//! Owns: the `OffloadSource` port and its Kubernetes adapter `ConfigMapReader`. The decision
//! core only sees the parsed `argo::offload::Offloaded`; this edge does the I/O, bounded by a
//! short timeout, and remembers each pod's answer for a while so a re-invoked admission (or a
//! retried pod creation) costs no second round trip. Errors are typed; the caller fails open.

use crate::argo::offload::Offloaded;
use crate::k8s::KubeError;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where admission gets an offloaded pod's ConfigMap from (a port, so tests and the CLI can
/// supply it without a cluster).
pub trait OffloadSource: Send + Sync {
    /// The offload ConfigMap of pod `pod_name` in `namespace`; `Ok(None)` when it does not exist.
    fn fetch<'a>(
        &'a self,
        namespace: &'a str,
        pod_name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Offloaded>, KubeError>>;
}

/// How long a pod's ConfigMap is remembered. The controller never updates it after creating it.
const CACHE_TTL: Duration = Duration::from_secs(300);
/// Most pods remembered at once; the cache is cleared when full (it only saves round trips).
const CACHE_MAX: usize = 4096;

/// Reads offload ConfigMaps through the API server (`get configmaps` in workflow namespaces).
pub struct ConfigMapReader {
    client: kube::Client,
    timeout: Duration,
    cache: Mutex<HashMap<(String, String), (Instant, Offloaded)>>,
}

impl ConfigMapReader {
    /// A reader whose every request is bounded by `timeout`.
    pub fn new(client: kube::Client, timeout: Duration) -> ConfigMapReader {
        ConfigMapReader { client, timeout, cache: Mutex::new(HashMap::new()) }
    }

    fn cached(&self, key: &(String, String)) -> Option<Offloaded> {
        let m = self.cache.lock().ok()?;
        m.get(key).filter(|(at, _)| at.elapsed() < CACHE_TTL).map(|(_, o)| o.clone())
    }

    fn remember(&self, key: (String, String), o: &Offloaded) {
        if let Ok(mut m) = self.cache.lock() {
            if m.len() >= CACHE_MAX {
                m.clear();
            }
            m.insert(key, (Instant::now(), o.clone()));
        }
    }
}

impl OffloadSource for ConfigMapReader {
    fn fetch<'a>(
        &'a self,
        namespace: &'a str,
        pod_name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Offloaded>, KubeError>> {
        Box::pin(async move {
            let key = (namespace.to_owned(), pod_name.to_owned());
            if let Some(o) = self.cached(&key) {
                return Ok(Some(o));
            }
            let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
            let cm = tokio::time::timeout(self.timeout, api.get_opt(pod_name))
                .await
                .map_err(|_| KubeError::Timeout(self.timeout))??;
            let found = cm.as_ref().map(Offloaded::from_config_map);
            if let Some(o) = &found {
                self.remember(key, o);
            }
            Ok(found)
        })
    }
}
