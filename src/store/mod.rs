//! The execution store: the cache's table of recorded executions, in Postgres or SQLite.
//!
//! One code path serves both backends: sqlx's `Any` driver, timestamps as BIGINT epoch
//! milliseconds, JSON as TEXT, `$N` placeholders (which sqlx's SQLite driver also binds).
//! Idempotency lives in the schema: every row carries a unique `dedup` token (`pod:<uid>` for
//! originals, `copy:<source>:<staleness>` for adopting copies) and inserts are
//! `ON CONFLICT (dedup) DO NOTHING`, so racing replicas never duplicate or lose a row.
//!
//! Every call is bounded by the configured timeout. Imports only `types`. What lives where:
//! [`connect`] (the handle, options, migrations, readiness, timeouts), [`lookup`] (what to
//! serve and why not), [`entries`] (recording, adopting, reading rows), [`filter`] (selecting
//! rows), [`maintenance`] (invalidation, gc, stats), [`refusals`] (keys blocked by refused hits), [`bulk`] (synthetic fills for load tests);
//! this file only the error type.

pub mod bulk;
pub mod connect;
pub mod decisions;
pub mod entries;
mod estimate;
pub mod filter;
pub mod integrity;
pub mod latch;
pub mod lookup;
pub mod maintenance;
pub mod refusals;
mod rows;
mod sql;

pub use bulk::synthetic_key;
pub use connect::{Store, StoreOptions, MIGRATE_MIN_TIMEOUT};
pub use entries::Recorded;
pub use filter::EntryFilter;
pub use lookup::{oldest_finished_ms, Explained};
pub use maintenance::Stats;
pub use sql::Backend;
pub use stepcache_core::execution::{Entry, Execution};

use std::time::Duration;

/// Store failures; every one makes the webhook fail open.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names no backend this store speaks.
    #[error("unsupported database URL scheme in {0:?} (use postgres:// or sqlite://)")]
    UnsupportedUrl(String),
    /// The call (acquire included) did not finish in time; also lock waits cut short by the
    /// database's own statement/busy timeout, which is set to the same bound.
    #[error("store call exceeded its {0:?} timeout")]
    Timeout(Duration),
    /// The database refused or failed the statement.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored row does not decode into the vocabulary types; it is never served.
    #[error("stored row is corrupt: {0}")]
    Corrupt(String),
    /// `invalidate` was given a filter that selects everything; refused so nobody wipes the
    /// cache by accident.
    #[error("refusing to invalidate with an empty filter (it would match every entry)")]
    EmptyFilter,
    /// The database is reachable but lacks this binary's migrations.
    #[error("store is not migrated: applied version {applied:?}, this binary needs {expected}")]
    NotMigrated {
        /// Highest applied migration, if any.
        applied: Option<i64>,
        /// The newest migration this binary embeds.
        expected: i64,
    },
    /// A value could not be encoded for storage.
    #[error("cannot encode {what}: {message}")]
    Encode {
        /// Which value.
        what: &'static str,
        /// Why.
        message: String,
    },
    /// An argument is out of range (e.g. a synthetic fill's namespace or size).
    #[error("invalid argument: {0}")]
    InvalidInput(String),
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
            StoreError::EmptyFilter => "empty_filter",
            StoreError::NotMigrated { .. } => "not_migrated",
            StoreError::Encode { .. } => "encode",
            StoreError::InvalidInput(_) => "invalid_input",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_are_stable_labels() {
        assert_eq!(StoreError::EmptyFilter.kind(), "empty_filter");
        assert_eq!(StoreError::Timeout(Duration::from_millis(5)).kind(), "timeout");
    }
}
