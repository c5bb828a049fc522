//! Keyed digests of the namespaces' Secrets, for `--key-secret-contents`: a step that reads a
//! Secret is then keyed by what the Secret holds, not only by its name (`docs/cache-key.md`,
//! "Secret contents"). Only digests are kept: every Secret event is turned into an HMAC with
//! the install's signing key (`Signer::digest_hex`) and the object is dropped, so no Secret
//! value stays in memory, in logs or in stored key material.
//!
//! Owns: `SecretDigestCache` (a `list`/`watch secrets` loop over all namespaces) and
//! `WithSecrets`, the key's view that adds these digests to a ConfigMap view.

use crate::mark::Signer;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::{watcher, WatchStreamExt};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use stepcache_core::key::configmaps::{ConfigMaps, SecretContents};

/// (namespace, name) → keyed digest.
type Digests = HashMap<(String, String), String>;

/// Every namespace's Secrets as keyed digests, kept current by a watch.
#[derive(Clone, Default)]
pub struct SecretDigestCache {
    digests: Arc<RwLock<Digests>>,
    synced: Arc<AtomicBool>,
    /// For re-reading a Secret before a hit is served, with the signer that digests it; `None`
    /// for a fixed cache.
    fresh: Option<(kube::Client, Signer)>,
}

/// How long a hit waits for one Secret re-read before it is served as a miss.
const FRESH_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The keyed digest of a Secret's contents (`data`, values as the API's base64, keys sorted).
pub fn digest(signer: &Signer, s: &Secret) -> String {
    use base64::Engine;
    let mut text = String::new();
    for (k, v) in s.data.iter().flatten() {
        text.push_str(k);
        text.push('\0');
        text.push_str(&base64::engine::general_purpose::STANDARD.encode(&v.0));
        text.push('\0');
    }
    signer.digest_hex("secret", text.as_bytes())
}

impl SecretDigestCache {
    /// Starts watching Secrets in all namespaces; retries with backoff while the process runs.
    pub fn start(client: kube::Client, signer: Signer) -> SecretDigestCache {
        let cache = SecretDigestCache { fresh: Some((client.clone(), signer.clone())), ..Default::default() };
        let (digests, synced) = (cache.digests.clone(), cache.synced.clone());
        let api: Api<Secret> = Api::all(client);
        tokio::spawn(async move {
            let mut building: Option<Digests> = None;
            let mut events = watcher(api, watcher::Config::default()).default_backoff().boxed();
            while let Some(ev) = events.next().await {
                let key = |s: &Secret| {
                    (s.metadata.namespace.clone().unwrap_or_default(), s.metadata.name.clone().unwrap_or_default())
                };
                match ev {
                    Ok(watcher::Event::Init) => building = Some(HashMap::new()),
                    Ok(watcher::Event::InitApply(s)) => {
                        if let Some(b) = building.as_mut() {
                            b.insert(key(&s), digest(&signer, &s));
                        }
                    }
                    Ok(watcher::Event::InitDone) => {
                        if let (Some(b), Ok(mut d)) = (building.take(), digests.write()) {
                            *d = b;
                        }
                        synced.store(true, Ordering::Release);
                    }
                    Ok(watcher::Event::Apply(s)) => {
                        if let Ok(mut d) = digests.write() {
                            d.insert(key(&s), digest(&signer, &s));
                        }
                    }
                    Ok(watcher::Event::Delete(s)) => {
                        if let Ok(mut d) = digests.write() {
                            d.remove(&key(&s));
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "Secret watch failed; retrying (needs list/watch on secrets)"),
                }
            }
        });
        cache
    }

    /// A cache holding exactly `secrets` (tests).
    pub fn fixed(signer: &Signer, secrets: &[Secret]) -> SecretDigestCache {
        let cache = SecretDigestCache::default();
        if let Ok(mut d) = cache.digests.write() {
            for s in secrets {
                let k = (s.metadata.namespace.clone().unwrap_or_default(), s.metadata.name.clone().unwrap_or_default());
                d.insert(k, digest(signer, s));
            }
        }
        cache.synced.store(true, Ordering::Release);
        cache
    }

    /// The digest of Secret `name` as the API server has it now (a `get`, bounded), `None` when
    /// it does not exist; used before a hit is served, so a Secret changed within the watch
    /// delay is not served the previous contents' outputs. A fixed cache answers from itself.
    pub async fn fresh_digest(&self, namespace: &str, name: &str) -> Result<Option<String>, String> {
        let Some((client, signer)) = &self.fresh else {
            return Ok(match self.contents(namespace, name) {
                SecretContents::Known(d) => Some(d),
                _ => None,
            });
        };
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        match tokio::time::timeout(FRESH_WAIT, api.get_opt(name)).await {
            Ok(Ok(s)) => Ok(s.map(|s| digest(signer, &s))),
            Ok(Err(e)) => Err(format!("Secret {name} not re-read: {e}")),
            Err(_) => Err(format!("Secret {name} not re-read within {FRESH_WAIT:?}")),
        }
    }

    /// What the key reads of Secret `name` in `namespace`.
    pub fn contents(&self, namespace: &str, name: &str) -> SecretContents {
        if !self.synced.load(Ordering::Acquire) {
            return SecretContents::Unknown;
        }
        match self.digests.read().ok().and_then(|d| d.get(&(namespace.to_owned(), name.to_owned())).cloned()) {
            Some(d) => SecretContents::Known(d),
            None => SecretContents::Unknown,
        }
    }
}

/// A ConfigMap view with Secret contents keyed (`--key-secret-contents`).
pub struct WithSecrets<C> {
    /// The ConfigMap view.
    pub inner: C,
    /// The Secret digests.
    pub secrets: SecretDigestCache,
}

impl<C: std::ops::Deref<Target = dyn ConfigMaps + Send + Sync>> ConfigMaps for WithSecrets<C> {
    fn digest(&self, namespace: &str, name: &str) -> Option<String> {
        self.inner.digest(namespace, name)
    }

    fn secret(&self, namespace: &str, name: &str) -> SecretContents {
        self.secrets.contents(namespace, name)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn digests_follow_contents_are_keyed_by_the_install_and_hold_no_value() {
        let signer = Signer::new(b"0123456789abcdef0123").unwrap();
        let other = Signer::new(b"fedcba9876543210fedc").unwrap();
        let secret = |v: &str| -> Secret {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "db", "namespace": "ml"},
                "data": {"password": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, v)}
            }))
            .unwrap()
        };
        let a = digest(&signer, &secret("hunter2"));
        assert_ne!(a, digest(&signer, &secret("hunter3")));
        assert_ne!(a, digest(&other, &secret("hunter2")), "another install's key gives another digest");
        assert!(!a.contains("hunter2") && !a.contains("aHVudGVyMg"), "{a}");
        let cache = SecretDigestCache::fixed(&signer, &[secret("hunter2")]);
        assert_eq!(cache.contents("ml", "db"), SecretContents::Known(a));
        assert_eq!(cache.contents("ml", "other"), SecretContents::Unknown);
        assert_eq!(SecretDigestCache::default().contents("ml", "db"), SecretContents::Unknown, "not synced");
    }
}
