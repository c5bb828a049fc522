//! Cache-key derivation: canonical key material from a step pod, hashed into a versioned key.
//!
//! Owns: `derive_key`, `KeyMaterial`, `Scope`. Specification: `docs/cache-key.md`.
//! Pure: no I/O, no clock. Must not import tokio, sqlx, axum or kube::Client.

use crate::argo::template::StepPod;
use crate::types::{CacheKey, CacheSeed};
use k8s_openapi::api::core::v1::Pod;
use sha2::{Digest, Sha256};

/// Which pods may share entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Entries are shared only within a namespace (default).
    #[default]
    Namespace,
    /// Entries are shared across namespaces (explicit admin opt-in).
    Cluster,
}

/// The canonical key material and the key derived from it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct KeyMaterial {
    pub key: CacheKey,
    pub material: serde_json::Value,
}

/// Errors deriving a key.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum KeyError {
    #[error("pod has no user container to key on")]
    NoUserContainer,
}

impl KeyError {
    /// Bounded metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            KeyError::NoUserContainer => "no_user_container",
        }
    }
}

/// Derives the key of a step from the pod Argo built and the step's seed.
pub fn derive_key(
    _pod: &Pod,
    step: &StepPod,
    seed: &CacheSeed,
    scope: Scope,
) -> Result<KeyMaterial, KeyError> {
    let material = serde_json::json!({
        "format": crate::types::KEY_FORMAT,
        "namespace": if scope == Scope::Namespace { Some(step.namespace.as_str()) } else { None },
        "seed": seed.as_str(),
    });
    let digest = Sha256::digest(material.to_string().as_bytes());
    Ok(KeyMaterial { key: CacheKey::from_digest(&digest), material })
}
