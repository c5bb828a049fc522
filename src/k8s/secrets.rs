//! Artifact repository credentials read from Secrets through the API (`get` on `secrets`, the
//! only Secret permission stepcache needs), kept briefly so a burst of hits reads each Secret once.

use crate::integrity::artifacts::SecretKey;
use crate::integrity::check::Credentials;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// (namespace, Secret name) → (when read, decoded data; `None` when the Secret is missing).
type Cached = HashMap<(String, String), (Instant, Option<BTreeMap<String, String>>)>;

/// Reads Secret values for artifact checks.
#[derive(Clone)]
pub struct SecretReader {
    client: kube::Client,
    ttl: Duration,
    timeout: Duration,
    cache: Arc<Mutex<Cached>>,
}

impl SecretReader {
    /// A reader keeping each Secret `ttl`, each read bounded by `timeout`.
    pub fn new(client: kube::Client, ttl: Duration, timeout: Duration) -> SecretReader {
        SecretReader { client, ttl, timeout, cache: Arc::default() }
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<BTreeMap<String, String>>, String> {
        let id = (namespace.to_owned(), name.to_owned());
        if let Ok(m) = self.cache.lock() {
            if let Some((at, data)) = m.get(&id).filter(|(at, _)| at.elapsed() < self.ttl) {
                let _ = at;
                return Ok(data.clone());
            }
        }
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let got = tokio::time::timeout(self.timeout, api.get_opt(name))
            .await
            .map_err(|_| format!("reading Secret {namespace}/{name} timed out"))?
            .map_err(|e| format!("reading Secret {namespace}/{name}: {e}"))?;
        let data = got.map(|s| {
            s.data
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(k, v)| String::from_utf8(v.0).ok().map(|v| (k, v.trim().to_owned())))
                .collect::<BTreeMap<_, _>>()
        });
        if let Ok(mut m) = self.cache.lock() {
            if m.len() > 10_000 {
                m.clear();
            }
            m.insert(id, (Instant::now(), data.clone()));
        }
        Ok(data)
    }
}

impl Credentials for SecretReader {
    fn value<'a>(&'a self, namespace: &'a str, key: &'a SecretKey) -> BoxFuture<'a, Result<Option<String>, String>> {
        Box::pin(async move { Ok(self.secret(namespace, &key.name).await?.and_then(|d| d.get(&key.key).cloned())) })
    }
}
