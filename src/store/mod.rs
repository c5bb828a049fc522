//! The execution store: the cache's table of recorded executions, in Postgres or SQLite.
//!
//! Owns: `Store`, `Entry`, `NewEntry`, `EntryFilter`, `Stats`, `StoreError`, migrations.
//! Every call is bounded by the configured timeout. Imports only `types`.

use crate::types::{CacheKey, CacheSeed, EntryId, Namespace, Staleness, StepOutputs};
use jiff::Timestamp;
use std::time::Duration;

/// A recorded execution (an original run, or an adopting copy of one).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Entry {
    pub id: EntryId,
    pub namespace: Namespace,
    pub key: CacheKey,
    pub seed: CacheSeed,
    pub staleness: Staleness,
    pub outputs: StepOutputs,
    pub material: serde_json::Value,
    pub template_name: String,
    pub workflow_name: String,
    pub workflow_uid: String,
    pub node_id: String,
    pub pod_name: String,
    pub pod_uid: String,
    /// container name → imageID that actually ran.
    pub image_digests: std::collections::BTreeMap<String, String>,
    /// container name → image as written in the pod (tag or digest).
    pub images: std::collections::BTreeMap<String, String>,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub invalidated_at: Option<Timestamp>,
    /// Set on adopting copies: the entry this one copies.
    pub source_id: Option<EntryId>,
    pub hit_count: i64,
}

/// What the recorder hands the store.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEntry {
    pub namespace: Namespace,
    pub key: CacheKey,
    pub seed: CacheSeed,
    pub staleness: Staleness,
    pub outputs: StepOutputs,
    pub material: serde_json::Value,
    pub template_name: String,
    pub workflow_name: String,
    pub workflow_uid: String,
    pub node_id: String,
    pub pod_name: String,
    /// Idempotency key: one row per pod uid.
    pub pod_uid: String,
    pub image_digests: std::collections::BTreeMap<String, String>,
    pub images: std::collections::BTreeMap<String, String>,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub expires_at: Option<Timestamp>,
}

/// Outcome of recording.
#[derive(Clone, Debug, PartialEq)]
pub enum Recorded {
    Inserted(Entry),
    AlreadyRecorded(Entry),
}

/// Selects entries for listing and invalidation; unset fields match everything.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EntryFilter {
    pub id: Option<EntryId>,
    pub namespace: Option<Namespace>,
    pub key: Option<CacheKey>,
    pub workflow: Option<String>,
    /// Matches the image string or the image digest of any container.
    pub image: Option<String>,
    /// Entries that finished before this instant.
    pub finished_before: Option<Timestamp>,
}

/// Aggregates for one namespace (or all, with `namespace: None`).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Stats {
    pub namespace: Option<String>,
    pub entries: i64,
    pub originals: i64,
    pub adopting_copies: i64,
    pub hits: i64,
    pub bytes: i64,
    pub time_saved_seconds: f64,
}

/// Store failures; every one makes the webhook fail open.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL scheme in {0:?} (use postgres:// or sqlite://)")]
    UnsupportedUrl(String),
    #[error("store call exceeded its {0:?} timeout")]
    Timeout(Duration),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored row is corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Bounded metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::UnsupportedUrl(_) => "unsupported_url",
            StoreError::Timeout(_) => "timeout",
            StoreError::Database(_) => "database",
            StoreError::Migrate(_) => "migrate",
            StoreError::Corrupt(_) => "corrupt",
        }
    }
}

/// Connection settings.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Bound on every call (connection acquisition included).
    pub timeout: Duration,
    /// Pool size.
    pub max_connections: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { timeout: Duration::from_secs(1), max_connections: 16 }
    }
}
