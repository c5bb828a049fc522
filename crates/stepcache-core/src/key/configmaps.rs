//! ConfigMap contents in the key: what a step reads from a ConfigMap is keyed by a digest of
//! the ConfigMap's contents, not only by its name (issue #26, defect 5).
//!
//! Owns: the [`ConfigMaps`] port the key reads digests through, [`digest`] (the one definition
//! of a ConfigMap's content digest) and [`configmap_names`] (what a pod references).
//! Pure: the watch cache that answers lookups lives at the edge (`src/k8s/configmaps.rs`); here
//! a lookup is a synchronous read of values the caller already holds.
//!
//! The digest covers the whole ConfigMap (`data` and `binaryData`), not only the keys a
//! reference selects (`items`, `key`): a change to an unused key costs one miss, never a false
//! hit, and one digest per ConfigMap keeps admission and recording trivially consistent.

use super::canonical_json;
use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvFromSource, EnvVar, Pod, Volume};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

/// Where the key reads ConfigMap contents from. `None` means the caller cannot see that
/// ConfigMap now (cache not synced, ConfigMap missing, no cluster at all): the step is then not
/// keyed, because guessing its contents could serve another run's outputs.
pub trait ConfigMaps {
    /// The content digest ([`digest`]) of ConfigMap `name` in `namespace`, when known.
    fn digest(&self, namespace: &str, name: &str) -> Option<String>;

    /// What the key reads of Secret `name` in `namespace`. By default Secrets are keyed by
    /// reference only; with the admin's `--key-secret-contents` the edge answers with a keyed
    /// digest (an HMAC, never the value) or says it cannot see the Secret.
    fn secret(&self, _namespace: &str, _name: &str) -> SecretContents {
        SecretContents::ByReference
    }
}

/// What the key knows of a Secret's contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretContents {
    /// Contents are not keyed (the default): the reference (name, key) is.
    ByReference,
    /// A keyed digest of the contents (the install's HMAC, so stored key material reveals
    /// nothing a guess could confirm).
    Known(String),
    /// Contents are keyed but not visible now (cache not synced, Secret missing): not keyed.
    Unknown,
}

/// Names of the Secrets `c` reads through its environment: `envFrom.secretRef` and
/// `env[].valueFrom.secretKeyRef`.
pub(super) fn container_secret_refs(c: &Container, out: &mut BTreeSet<String>) {
    for e in c.env_from.iter().flatten() {
        if let Some(r) = &e.secret_ref {
            out.insert(r.name.clone());
        }
    }
    for e in c.env.iter().flatten() {
        if let Some(r) = e.value_from.as_ref().and_then(|f| f.secret_key_ref.as_ref()) {
            out.insert(r.name.clone());
        }
    }
}

/// Names of the Secrets a volume exposes: `secret` volumes and projected `secret` sources.
pub(super) fn volume_secret_refs(v: &Volume, out: &mut BTreeSet<String>) {
    if let Some(name) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
        out.insert(name);
    }
    for src in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
        if let Some(s) = &src.secret {
            out.insert(s.name.clone());
        }
    }
}

/// No ConfigMap is known: the view of `stepcache key`/`review` without a cluster. Steps that
/// reference a ConfigMap are not keyed (`configmap-unknown`).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoConfigMaps;

impl ConfigMaps for NoConfigMaps {
    fn digest(&self, _namespace: &str, _name: &str) -> Option<String> {
        None
    }
}

/// A fixed set of digests by `(namespace, name)`: tests, tools, and callers that looked the
/// referenced ConfigMaps up beforehand.
impl ConfigMaps for BTreeMap<(String, String), String> {
    fn digest(&self, namespace: &str, name: &str) -> Option<String> {
        self.get(&(namespace.to_owned(), name.to_owned())).cloned()
    }
}

/// The content digest of a ConfigMap: `sha256:<hex>` of the canonical JSON of
/// `{"data": …, "binaryData": …}` (binary values as the API's base64). Metadata (labels,
/// resourceVersion, owner) is left out: only what a reader of the ConfigMap can see counts.
pub fn digest(cm: &ConfigMap) -> String {
    let mut o = Map::new();
    if let Some(data) = &cm.data {
        let d = data.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
        o.insert("data".into(), Value::Object(d));
    }
    if let Some(bin) = &cm.binary_data {
        use base64::Engine;
        let d = bin
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(base64::engine::general_purpose::STANDARD.encode(&v.0))))
            .collect();
        o.insert("binaryData".into(), Value::Object(d));
    }
    // An empty ConfigMap and one with empty maps read alike; canonical_json prunes both.
    let bytes = canonical_json(&Value::Object(o));
    format!("sha256:{}", hex::encode(Sha256::digest(bytes.as_bytes())))
}

/// Names of the ConfigMaps `c` reads through its environment: `envFrom.configMapRef` and
/// `env[].valueFrom.configMapKeyRef`.
pub(super) fn container_refs(c: &Container, out: &mut BTreeSet<String>) {
    for e in c.env_from.iter().flatten() {
        if let EnvFromSource { config_map_ref: Some(r), .. } = e {
            out.insert(r.name.clone());
        }
    }
    for e in c.env.iter().flatten() {
        if let EnvVar { value_from: Some(from), .. } = e {
            if let Some(r) = &from.config_map_key_ref {
                out.insert(r.name.clone());
            }
        }
    }
}

/// Names of the ConfigMaps volume `v` exposes: a `configMap` volume or `projected` configMap
/// sources.
pub(super) fn volume_refs(v: &Volume, out: &mut BTreeSet<String>) {
    if let Some(cm) = &v.config_map {
        out.insert(cm.name.clone());
    }
    if let Some(p) = &v.projected {
        for s in p.sources.iter().flatten() {
            if let Some(cm) = &s.config_map {
                out.insert(cm.name.clone());
            }
        }
    }
}

/// Every ConfigMap name `pod` references anywhere (all containers and volumes). A superset of
/// what the key reads: callers that look digests up beforehand (a prefetch) use it.
pub fn configmap_names(pod: &Pod) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if let Some(spec) = &pod.spec {
        for c in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
            container_refs(c, &mut out);
        }
        for v in spec.volumes.iter().flatten() {
            volume_refs(v, &mut out);
        }
    }
    out
}
