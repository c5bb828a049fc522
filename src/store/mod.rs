//! The execution store: the cache's table of recorded executions, in Postgres or SQLite.
//!
//! Owns: `Store`, `Entry`, `NewEntry`, `EntryFilter`, `Stats`, `StoreError`, migrations.
//! Every call is bounded by the configured timeout. Imports only `types`.
//!
//! One code path serves both backends: sqlx's `Any` driver, timestamps as BIGINT epoch
//! milliseconds, JSON as TEXT, `$N` placeholders (which sqlx's SQLite driver also binds).
//! Idempotency lives in the schema: every row carries a unique `dedup` token (`pod:<uid>` for
//! originals, `copy:<source>:<staleness>` for adopting copies) and inserts are
//! `ON CONFLICT (dedup) DO NOTHING`, so racing replicas never duplicate or lose a row.

pub mod decisions;
mod estimate;
pub mod explain;
pub mod integrity;
pub mod latch;
mod rows;
mod sql;

pub use sql::Backend;
pub use stepcache_core::execution::{Entry, NewEntry};

use crate::types::{CacheKey, EntryId, Namespace, Staleness};
use jiff::Timestamp;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Connection};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Outcome of recording.
#[derive(Clone, Debug, PartialEq)]
pub enum Recorded {
    /// This call wrote the row.
    Inserted(Entry),
    /// The pod was already recorded (a retry or a racing replica); the existing row.
    AlreadyRecorded(Entry),
}

/// Selects entries for listing and invalidation; unset fields match everything.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EntryFilter {
    /// This entry and its adopting copies (invalidating an original must take its copies).
    pub id: Option<EntryId>,
    /// Entries of one namespace.
    pub namespace: Option<Namespace>,
    /// Entries of one key.
    pub key: Option<CacheKey>,
    /// Entries recorded by one workflow (by name).
    pub workflow: Option<String>,
    /// Matches the image string or the image digest of any container: an exact image
    /// (`repo:tag`, `repo@sha256:…`) or imageID, or a bare digest (`sha256:…`) that an
    /// imageID ends with.
    pub image: Option<String>,
    /// Entries that finished before this instant.
    pub finished_before: Option<Timestamp>,
}

impl EntryFilter {
    /// True when nothing is selected, i.e. the filter would match the whole table.
    pub fn is_empty(&self) -> bool {
        *self == EntryFilter::default()
    }
}

/// Aggregates for one namespace (or all, with `namespace: None`).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Stats {
    /// The namespace, or `None` for the total over all namespaces.
    pub namespace: Option<String>,
    /// Rows stored (any state).
    pub entries: i64,
    /// Rows recorded from a pod.
    pub originals: i64,
    /// Rows that adopt another staleness for an original.
    pub adopting_copies: i64,
    /// Sum of hit counts.
    pub hits: i64,
    /// Encoded bytes of outputs and key material.
    pub bytes: i64,
    /// Σ hit_count × (finished_at − started_at): compute the cache saved.
    pub time_saved_seconds: f64,
}

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

/// Lower bound on the time `migrate` may take: schema changes on a large table can outlast a
/// request-path timeout, and a migration cut short is rolled back and retried, never half-done.
pub const MIGRATE_MIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Handle on the execution store; cheap to clone (a shared pool).
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    timeout: Duration,
    decisions: decisions::DecisionBuffer,
}

/// A bind value of a dynamically built statement.
enum Arg {
    Int(i64),
    Text(String),
}

/// A WHERE clause built from an [`EntryFilter`], numbering placeholders from `first`.
struct Where {
    first: usize,
    conds: Vec<String>,
    args: Vec<Arg>,
}

impl Where {
    fn new(first: usize) -> Where {
        Where { first, conds: Vec::new(), args: Vec::new() }
    }

    fn arg(&mut self, a: Arg) -> String {
        self.args.push(a);
        format!("${}", self.first + self.args.len() - 1)
    }

    fn next_placeholder(&self) -> String {
        format!("${}", self.first + self.args.len())
    }

    fn build(backend: Backend, f: &EntryFilter, first: usize) -> Result<Where, StoreError> {
        let mut w = Where::new(first);
        if let Some(id) = f.id {
            let p = w.arg(Arg::Int(id.0));
            w.conds.push(format!("(id = {p} OR source_id = {p})"));
        }
        if let Some(ns) = &f.namespace {
            let p = w.arg(Arg::Text(ns.as_str().to_owned()));
            w.conds.push(format!("namespace = {p}"));
        }
        if let Some(k) = &f.key {
            let p = w.arg(Arg::Text(k.as_str().to_owned()));
            w.conds.push(format!("cache_key = {p}"));
        }
        if let Some(wf) = &f.workflow {
            let p = w.arg(Arg::Text(wf.clone()));
            w.conds.push(format!("workflow_name = {p}"));
        }
        if let Some(image) = &f.image {
            // The maps are stored as compact JSON, so `:"<value>"` is exactly "some container's
            // value is <value>", and `@<digest>"` is "some imageID ends with @<digest>".
            let quoted = rows::to_json("image filter", image.as_str())?;
            let exact = w.arg(Arg::Text(format!(":{quoted}")));
            let suffix = w.arg(Arg::Text(format!("@{}", quoted.strip_prefix('"').unwrap_or(&quoted))));
            w.conds.push(format!(
                "({} OR {} OR {})",
                backend.contains("images", &exact),
                backend.contains("image_digests", &exact),
                backend.contains("image_digests", &suffix)
            ));
        }
        if let Some(t) = f.finished_before {
            let p = w.arg(Arg::Int(t.as_millisecond()));
            w.conds.push(format!("finished_at < {p}"));
        }
        Ok(w)
    }

    fn sql(&self) -> String {
        if self.conds.is_empty() {
            "1 = 1".to_owned()
        } else {
            self.conds.join(" AND ")
        }
    }

    fn bind<'q>(
        &'q self,
        mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        for a in &self.args {
            q = match a {
                Arg::Int(v) => q.bind(*v),
                Arg::Text(v) => q.bind(v.as_str()),
            };
        }
        q
    }
}

/// The values of one insert, in the order of [`sql::INSERT`]'s placeholders.
struct InsertRow<'a> {
    namespace: &'a str,
    key: &'a str,
    seed: &'a str,
    staleness: i64,
    outputs: String,
    material: String,
    template_name: &'a str,
    workflow_name: &'a str,
    workflow_uid: &'a str,
    node_id: &'a str,
    pod_name: &'a str,
    pod_uid: &'a str,
    image_digests: String,
    images: String,
    started_at: i64,
    finished_at: i64,
    created_at: i64,
    expires_at: Option<i64>,
    source_id: Option<i64>,
    dedup: String,
}

impl<'a> InsertRow<'a> {
    fn original(e: &'a NewEntry, now: Timestamp) -> Result<InsertRow<'a>, StoreError> {
        Ok(InsertRow {
            namespace: e.namespace.as_str(),
            key: e.key.as_str(),
            seed: e.seed.as_str(),
            staleness: e.staleness.to_db(),
            outputs: rows::to_json("outputs", &e.outputs)?,
            material: rows::to_json("key material", &e.material)?,
            template_name: &e.template_name,
            workflow_name: &e.workflow_name,
            workflow_uid: &e.workflow_uid,
            node_id: &e.node_id,
            pod_name: &e.pod_name,
            pod_uid: &e.pod_uid,
            image_digests: rows::to_json("image digests", &e.image_digests)?,
            images: rows::to_json("images", &e.images)?,
            started_at: e.started_at.as_millisecond(),
            finished_at: e.finished_at.as_millisecond(),
            created_at: now.as_millisecond(),
            expires_at: e.expires_at.map(Timestamp::as_millisecond),
            source_id: None,
            dedup: format!("pod:{}", e.pod_uid),
        })
    }

    fn copy(src: &'a Entry, root: EntryId, staleness: Staleness, now: Timestamp) -> Result<InsertRow<'a>, StoreError> {
        Ok(InsertRow {
            namespace: src.namespace.as_str(),
            key: src.key.as_str(),
            seed: src.seed.as_str(),
            staleness: staleness.to_db(),
            outputs: rows::to_json("outputs", &src.outputs)?,
            material: rows::to_json("key material", &src.material)?,
            template_name: &src.template_name,
            workflow_name: &src.workflow_name,
            workflow_uid: &src.workflow_uid,
            node_id: &src.node_id,
            pod_name: &src.pod_name,
            pod_uid: &src.pod_uid,
            image_digests: rows::to_json("image digests", &src.image_digests)?,
            images: rows::to_json("images", &src.images)?,
            started_at: src.started_at.as_millisecond(),
            finished_at: src.finished_at.as_millisecond(),
            created_at: now.as_millisecond(),
            expires_at: src.expires_at.map(Timestamp::as_millisecond),
            source_id: Some(root.0),
            dedup: format!("copy:{}:{}", root.0, staleness.to_db()),
        })
    }
}

/// Oldest `finished_at` (ms) a step with `staleness` may be served at `now_ms`
/// (`i64::MIN` when unbounded); shared by every lookup and by the miss explanation so the
/// boundary is defined once.
pub fn oldest_finished_ms(staleness: Staleness, now_ms: i64) -> i64 {
    match staleness {
        Staleness::Unbounded => i64::MIN,
        Staleness::Seconds(s) => now_ms.saturating_sub(i64::try_from(s).unwrap_or(i64::MAX).saturating_mul(1000)),
    }
}

/// A duration as the integer milliseconds `statement_timeout` / `busy_timeout` take (both are
/// 32-bit ints; 0 would mean "no limit", so at least 1).
fn millis(d: Duration) -> u128 {
    d.as_millis().clamp(1, 2_147_483_647)
}

/// First 8 bytes of SHA-256(namespace): keeps synthetic keys of different namespaces apart.
fn synthetic_prefix(namespace: &str) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    Sha256::digest(namespace.as_bytes()).iter().take(8).copied().collect()
}

/// The key `Store::fill_synthetic` gives synthetic row `index` of `namespace` (index 0 for
/// every row when keys are not distinct), so a load tool can look up keys that exist.
pub fn synthetic_key(namespace: &str, index: u64) -> CacheKey {
    let digest: Vec<u8> = synthetic_prefix(namespace)
        .into_iter()
        .chain(std::iter::repeat_n(0u8, 16))
        .chain(index.to_be_bytes())
        .collect();
    CacheKey::from_digest(&digest)
}

impl Store {
    /// Opens a store. `postgres://`/`postgresql://` or `sqlite://`/`sqlite:` URLs; anything
    /// else is `UnsupportedUrl` (in-memory SQLite is `InvalidInput`). Postgres connects
    /// lazily, so a webhook can start (and fail open) while the database is down; a SQLite file
    /// is created if missing and switched to WAL.
    pub async fn connect(url: &str, opts: StoreOptions) -> Result<Store, StoreError> {
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            return Err(StoreError::UnsupportedUrl(url.split(':').next().unwrap_or_default().to_owned()));
        };
        if backend == Backend::Sqlite && (url.contains(":memory:") || url.contains("mode=memory")) {
            return Err(StoreError::InvalidInput(
                "in-memory SQLite is not supported (every pooled connection would get a database \
                 of its own); use a file"
                    .to_owned(),
            ));
        }
        sqlx::any::install_default_drivers();
        let timeout = opts.timeout;
        // The database enforces the same bound server-side, so a call abandoned by the
        // client-side timer does not keep its connection blocked behind a lock.
        let setup: Arc<str> = match backend {
            Backend::Postgres => format!("SET statement_timeout = {}", millis(timeout)).into(),
            Backend::Sqlite => {
                // Opening may replay a large WAL left by a crash or a bulk load: give it the
                // migration bound, not the per-call one.
                let open_bound = timeout.max(MIGRATE_MIN_TIMEOUT);
                bounded(open_bound, backend, prepare_sqlite(url, open_bound)).await?;
                format!("PRAGMA busy_timeout = {}; PRAGMA synchronous = NORMAL", millis(timeout)).into()
            }
        };
        let pool = AnyPoolOptions::new()
            .max_connections(opts.max_connections.max(1))
            .acquire_timeout(timeout)
            // A ping per acquire would double the round trips of a lookup; a broken connection
            // fails its call (the webhook fails open) and is discarded.
            .test_before_acquire(false)
            .after_connect(move |conn, _meta| {
                let setup = setup.clone();
                Box::pin(async move {
                    sqlx::Executor::execute(conn, &*setup).await?;
                    Ok(())
                })
            })
            .connect_lazy(url)?;
        Ok(Store { pool, backend, timeout, decisions: Default::default() })
    }

    /// Which database this store talks to.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes the pool's connections; for orderly shutdown.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn migrator(&self) -> Migrator {
        let mut m = match self.backend {
            Backend::Postgres => sqlx::migrate!("migrations/postgres"),
            Backend::Sqlite => sqlx::migrate!("migrations/sqlite"),
        };
        // During a rolling upgrade an older replica must accept a schema a newer one migrated.
        m.set_ignore_missing(true);
        m
    }

    /// The newest migration version this binary embeds.
    pub fn schema_version(&self) -> i64 {
        self.migrator().iter().map(|m| m.version).max().unwrap_or(0)
    }

    /// Applies the embedded migrations; idempotent, and safe when several replicas start at once
    /// (on Postgres sqlx holds an advisory lock while migrating). Runs on a connection of its
    /// own that is closed afterwards, so the session lock can never leak into the pool. Bounded
    /// by the larger of the store timeout and [`MIGRATE_MIN_TIMEOUT`].
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let limit = self.timeout.max(MIGRATE_MIN_TIMEOUT);
        let migrator = self.migrator();
        bounded(limit, self.backend, async {
            let mut conn = self.pool.acquire().await?.detach();
            let setup = match self.backend {
                Backend::Postgres => format!("SET statement_timeout = {}", millis(limit)),
                Backend::Sqlite => format!("PRAGMA busy_timeout = {}", millis(limit)),
            };
            sqlx::Executor::execute(&mut conn, setup.as_str()).await?;
            // `run_direct` rather than `run`: `run`'s `Acquire` bound is not general enough for
            // the future to be `Send` (sqlx documents `run_direct` as the way around that).
            let result = migrator.run_direct(&mut conn).await;
            // Best effort: an error closing changes nothing about the migration's outcome.
            let _ = conn.close().await;
            Ok(result?)
        })
        .await
    }

    /// Embedded migrations not yet applied (all of them when the database has none); for
    /// progress reports.
    pub async fn pending_migrations(&self) -> Result<u64, StoreError> {
        let embedded: Vec<i64> = self.migrator().iter().map(|m| m.version).collect();
        let applied: Vec<i64> = self
            .bounded(async {
                match sqlx::query("SELECT version FROM _sqlx_migrations WHERE success").fetch_all(&self.pool).await {
                    Ok(found) => found.iter().map(|r| rows::get::<i64>(r, "version")).collect(),
                    Err(sqlx::Error::Database(e)) if self.is_missing_table(e.as_ref()) => Ok(Vec::new()),
                    Err(e) => Err(e.into()),
                }
            })
            .await?;
        Ok(embedded.iter().filter(|v| !applied.contains(v)).count() as u64)
    }

    /// Reachable and migrated to at least this binary's schema (a newer schema is fine).
    pub async fn ready(&self) -> Result<(), StoreError> {
        let expected = self.schema_version();
        self.bounded(async {
            let row = match sqlx::query(sql::APPLIED_VERSION).fetch_one(&self.pool).await {
                Ok(row) => row,
                Err(sqlx::Error::Database(e)) if self.is_missing_table(e.as_ref()) => {
                    return Err(StoreError::NotMigrated { applied: None, expected });
                }
                Err(e) => return Err(e.into()),
            };
            let applied: Option<i64> = rows::get(&row, "version")?;
            match applied {
                Some(v) if v >= expected => Ok(()),
                _ => Err(StoreError::NotMigrated { applied, expected }),
            }
        })
        .await
    }

    fn is_missing_table(&self, e: &dyn sqlx::error::DatabaseError) -> bool {
        match self.backend {
            Backend::Postgres => e.code().as_deref() == Some("42P01"),
            Backend::Sqlite => e.message().contains("no such table"),
        }
    }

    async fn bounded<T>(&self, fut: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        bounded(self.timeout, self.backend, fut).await
    }

    /// The entry to serve a step with `key` and `staleness` at `now`, in one round trip.
    ///
    /// Viable: not invalidated, not expired (`expires_at > now`), finished at most `staleness`
    /// ago (exactly that old still counts) and not after `now` (an entry from the future — a
    /// skewed clock — would otherwise be fresh for any staleness). Among viable entries the newest whose own staleness
    /// equals the step's wins; else the newest viable one (the caller then adopts it). Ties go to
    /// the higher id. `Seconds(0)` never reuses and does not touch the database.
    pub async fn lookup(
        &self,
        key: &CacheKey,
        staleness: Staleness,
        now: Timestamp,
    ) -> Result<Option<Entry>, StoreError> {
        if staleness.never_reuse() {
            return Ok(None);
        }
        let now_ms = now.as_millisecond();
        let oldest = oldest_finished_ms(staleness, now_ms);
        self.bounded(async {
            let row = sqlx::query(sql::LOOKUP)
                .bind(key.as_str())
                .bind(staleness.to_db())
                .bind(now_ms)
                .bind(oldest)
                .fetch_optional(&self.pool)
                .await?;
            row.as_ref().map(rows::entry).transpose()
        })
        .await
    }

    /// Inserts `row` unless its dedup token exists; returns (inserted?, the row holding it).
    async fn insert_or_existing(&self, row: &InsertRow<'_>) -> Result<(bool, Entry), StoreError> {
        // A conflicting row deleted (gc) between the two statements is retried; three rounds
        // of that means something is deleting as fast as we insert.
        for _ in 0..3 {
            let inserted = sqlx::query(sql::INSERT)
                .bind(row.namespace)
                .bind(row.key)
                .bind(row.seed)
                .bind(row.staleness)
                .bind(row.outputs.as_str())
                .bind(row.material.as_str())
                .bind(row.template_name)
                .bind(row.workflow_name)
                .bind(row.workflow_uid)
                .bind(row.node_id)
                .bind(row.pod_name)
                .bind(row.pod_uid)
                .bind(row.image_digests.as_str())
                .bind(row.images.as_str())
                .bind(row.started_at)
                .bind(row.finished_at)
                .bind(row.created_at)
                .bind(row.expires_at)
                .bind(row.source_id)
                .bind(row.dedup.as_str())
                .fetch_optional(&self.pool)
                .await?;
            if let Some(r) = inserted {
                return Ok((true, rows::entry(&r)?));
            }
            let existing = sqlx::query(sql::BY_DEDUP).bind(row.dedup.as_str()).fetch_optional(&self.pool).await?;
            if let Some(r) = existing {
                return Ok((false, rows::entry(&r)?));
            }
        }
        Err(StoreError::Database(sqlx::Error::RowNotFound))
    }

    /// Records a copy of `source` that carries `staleness`, so the next lookup with that
    /// staleness finds an exact match. Same key, outputs, material and provenance; `source_id`
    /// is the original (never a copy), `created_at` is `now`, `finished_at` and `expires_at`
    /// are the source's. Idempotent: racing adopts of one source and staleness leave exactly
    /// one row, which every caller gets back. Adopting the source's own staleness returns it.
    pub async fn adopt(&self, source: &Entry, staleness: Staleness, now: Timestamp) -> Result<Entry, StoreError> {
        if source.staleness == staleness {
            return Ok(source.clone());
        }
        let root = source.source_id.unwrap_or(source.id);
        let row = InsertRow::copy(source, root, staleness, now)?;
        self.bounded(async { Ok(self.insert_or_existing(&row).await?.1) }).await
    }

    /// Records a finished execution, once per pod uid: a second record of the same pod (a
    /// retry, or another replica's recorder) returns `AlreadyRecorded` with the existing row.
    /// An empty pod uid is refused (`InvalidInput`).
    pub async fn record(&self, e: &NewEntry, now: Timestamp) -> Result<Recorded, StoreError> {
        if e.pod_uid.is_empty() {
            // The uid is the idempotency key: every uid-less pod would collapse into one row.
            return Err(StoreError::InvalidInput("cannot record a pod without a uid".to_owned()));
        }
        let row = InsertRow::original(e, now)?;
        self.bounded(async {
            Ok(match self.insert_or_existing(&row).await? {
                (true, entry) => Recorded::Inserted(entry),
                (false, entry) => Recorded::AlreadyRecorded(entry),
            })
        })
        .await
    }

    /// Counts one serve of an entry (feeds `stats`); a missing id is not an error.
    pub async fn note_hit(&self, id: EntryId) -> Result<(), StoreError> {
        self.bounded(async {
            sqlx::query(sql::NOTE_HIT).bind(id.0).execute(&self.pool).await?;
            Ok(())
        })
        .await
    }

    /// One entry by id, whatever its state.
    pub async fn get(&self, id: EntryId) -> Result<Option<Entry>, StoreError> {
        self.bounded(async {
            let row = sqlx::query(sql::BY_ID).bind(id.0).fetch_optional(&self.pool).await?;
            row.as_ref().map(rows::entry).transpose()
        })
        .await
    }

    /// Entries matching `f`, newest (highest id) first, at most `limit` (≤ 0 gives none).
    pub async fn list(&self, f: &EntryFilter, limit: i64) -> Result<Vec<Entry>, StoreError> {
        if limit <= 0 {
            return Ok(Vec::new());
        }
        let w = Where::build(self.backend, f, 1)?;
        let sql = format!("{}{} ORDER BY id DESC LIMIT {}", sql::LIST_PREFIX, w.sql(), w.next_placeholder());
        self.bounded(async {
            let found = w.bind(sqlx::query(&sql)).bind(limit).fetch_all(&self.pool).await?;
            found.iter().map(rows::entry).collect()
        })
        .await
    }

    /// Marks matching live entries invalidated at `now` (they are never served again and gc
    /// deletes them); returns how many. An id selects the entry and its adopting copies. An
    /// empty filter is refused with `EmptyFilter`.
    pub async fn invalidate(&self, f: &EntryFilter, now: Timestamp) -> Result<u64, StoreError> {
        if f.is_empty() {
            return Err(StoreError::EmptyFilter);
        }
        let w = Where::build(self.backend, f, 2)?;
        let sql = format!("{}{}", sql::INVALIDATE_PREFIX, w.sql());
        self.bounded(async {
            let q = sqlx::query(&sql).bind(now.as_millisecond());
            Ok(w.bind(q).execute(&self.pool).await?.rows_affected())
        })
        .await
    }

    /// [`Store::invalidate`] in statements of at most `batch` rows (so no statement holds locks
    /// on a huge selection), calling `progress` with the running total after each; the rows
    /// selected are the same. Each statement is bounded by the timeout (work done stays done).
    pub async fn invalidate_with_progress(
        &self,
        f: &EntryFilter,
        now: Timestamp,
        batch: i64,
        mut progress: impl FnMut(u64),
    ) -> Result<u64, StoreError> {
        if f.is_empty() {
            return Err(StoreError::EmptyFilter);
        }
        let batch = batch.max(1);
        let w = Where::build(self.backend, f, 3)?;
        let sql = format!(
            "UPDATE executions SET invalidated_at = $1 WHERE id IN (SELECT id FROM executions \
             WHERE invalidated_at IS NULL AND {} LIMIT $2)",
            w.sql()
        );
        let full = u64::try_from(batch).unwrap_or(u64::MAX);
        let mut total = 0u64;
        loop {
            let n = self
                .bounded(async {
                    let q = sqlx::query(&sql).bind(now.as_millisecond()).bind(batch);
                    Ok(w.bind(q).execute(&self.pool).await?.rows_affected())
                })
                .await?;
            total = total.saturating_add(n);
            progress(total);
            if n < full {
                return Ok(total);
            }
        }
    }

    /// How many live entries `f` selects (what an invalidation would touch); for progress.
    pub async fn count_live(&self, f: &EntryFilter) -> Result<u64, StoreError> {
        let w = Where::build(self.backend, f, 1)?;
        let sql = format!("SELECT COUNT(*) AS n FROM executions WHERE invalidated_at IS NULL AND {}", w.sql());
        self.bounded(async {
            let r = w.bind(sqlx::query(&sql)).fetch_one(&self.pool).await?;
            Ok(u64::try_from(rows::get::<i64>(&r, "n")?).unwrap_or(0))
        })
        .await
    }

    /// Deletes expired (`expires_at <= now`) and invalidated rows, `batch` rows per statement
    /// until none are left, so no statement holds locks for long; returns how many. Each
    /// statement is bounded by the timeout (work already done stays done).
    pub async fn gc(&self, now: Timestamp, batch: i64) -> Result<u64, StoreError> {
        self.gc_with_progress(now, batch, |_| {}).await
    }

    /// [`Store::gc`], calling `progress` with the running total after every batch.
    pub async fn gc_with_progress(
        &self,
        now: Timestamp,
        batch: i64,
        mut progress: impl FnMut(u64),
    ) -> Result<u64, StoreError> {
        let batch = batch.max(1);
        let (expired, invalidated) = (self.backend.gc_expired(), self.backend.gc_invalidated());
        let full = u64::try_from(batch).unwrap_or(u64::MAX);
        let mut total = 0u64;
        loop {
            let n = self
                .bounded(async {
                    let q = sqlx::query(&expired).bind(now.as_millisecond()).bind(batch);
                    Ok(q.execute(&self.pool).await?.rows_affected())
                })
                .await?;
            total = total.saturating_add(n);
            progress(total);
            if n < full {
                break;
            }
        }
        loop {
            let n = self
                .bounded(async {
                    let q = sqlx::query(&invalidated).bind(batch);
                    Ok(q.execute(&self.pool).await?.rows_affected())
                })
                .await?;
            total = total.saturating_add(n);
            progress(total);
            if n < full {
                break;
            }
        }
        Ok(total)
    }

    /// How many rows gc at `now` would delete (expired or invalidated); a scan, for progress.
    pub async fn gc_backlog(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.bounded(async {
            let r = sqlx::query(
                "SELECT COUNT(*) AS n FROM executions WHERE expires_at <= $1 OR invalidated_at IS NOT NULL",
            )
            .bind(now.as_millisecond())
            .fetch_one(&self.pool)
            .await?;
            Ok(u64::try_from(rows::get::<i64>(&r, "n")?).unwrap_or(0))
        })
        .await
    }

    /// One row per namespace (by name) and then the total (`namespace: None`); counts rows in
    /// every state. Scans the table: for operators and periodic gauges, not the request path.
    pub async fn stats(&self) -> Result<Vec<Stats>, StoreError> {
        let sql = self.backend.stats();
        self.bounded(async {
            let found = sqlx::query(&sql).fetch_all(&self.pool).await?;
            let mut out = Vec::with_capacity(found.len() + 1);
            let mut total = Stats::default();
            let mut saved_ms_total = 0i64;
            for r in &found {
                let saved_ms: i64 = rows::get(r, "saved_ms")?;
                let s = Stats {
                    namespace: Some(rows::get(r, "namespace")?),
                    entries: rows::get(r, "entries")?,
                    originals: rows::get(r, "originals")?,
                    adopting_copies: rows::get(r, "copies")?,
                    hits: rows::get(r, "hits")?,
                    bytes: rows::get(r, "bytes")?,
                    time_saved_seconds: saved_ms as f64 / 1000.0,
                };
                total.entries = total.entries.saturating_add(s.entries);
                total.originals = total.originals.saturating_add(s.originals);
                total.adopting_copies = total.adopting_copies.saturating_add(s.adopting_copies);
                total.hits = total.hits.saturating_add(s.hits);
                total.bytes = total.bytes.saturating_add(s.bytes);
                saved_ms_total = saved_ms_total.saturating_add(saved_ms);
                out.push(s);
            }
            total.time_saved_seconds = saved_ms_total as f64 / 1000.0;
            out.push(total);
            Ok(out)
        })
        .await
    }

    /// Newest entry (by creation) of `template_name` in `namespace`, including invalidated and
    /// expired ones, so a miss can be explained against the closest earlier run.
    pub async fn nearest(&self, namespace: &Namespace, template_name: &str) -> Result<Option<Entry>, StoreError> {
        self.bounded(async {
            let row = sqlx::query(sql::NEAREST)
                .bind(namespace.as_str())
                .bind(template_name)
                .fetch_optional(&self.pool)
                .await?;
            row.as_ref().map(rows::entry).transpose()
        })
        .await
    }

    /// Newest entry with `key` (by finish) whatever its state, to explain a stale, expired or
    /// invalidated miss.
    pub async fn latest_for_key(&self, key: &CacheKey) -> Result<Option<Entry>, StoreError> {
        self.bounded(async {
            let row = sqlx::query(sql::LATEST_FOR_KEY).bind(key.as_str()).fetch_optional(&self.pool).await?;
            row.as_ref().map(rows::entry).transpose()
        })
        .await
    }

    /// Bulk-inserts `n` synthetic live entries into `namespace` for load tests, generated by the
    /// database in one statement (Postgres `generate_series`, SQLite a recursive CTE), so ten
    /// million rows take minutes, not hours. Row `i` gets key
    /// [`synthetic_key`]`(namespace, offset + i)` where offset is the namespace's row count
    /// before the fill; with `keys_distinct == false` every row shares key index 0 (the
    /// worst case of one key with many entries). Entries are unbounded-staleness, never
    /// expire, and finished within the last hour. Bounded by the store timeout: give the
    /// store a generous one for large fills. Returns the rows inserted.
    pub async fn fill_synthetic(&self, n: u64, namespace: &str, keys_distinct: bool) -> Result<u64, StoreError> {
        let ns = Namespace::parse(namespace).map_err(|e| StoreError::InvalidInput(e.to_string()))?;
        let count = i64::try_from(n).map_err(|_| StoreError::InvalidInput(format!("cannot fill {n} rows")))?;
        if count == 0 {
            return Ok(0);
        }
        let prefix = hex::encode(synthetic_prefix(ns.as_str()));
        let now = Timestamp::now();
        let tag = format!("synthetic-{}-{}", ns, now.as_nanosecond());
        let sql = self.backend.fill();
        self.bounded(async {
            let offset: i64 = if keys_distinct {
                let r = sqlx::query(sql::COUNT_IN_NAMESPACE).bind(ns.as_str()).fetch_one(&self.pool).await?;
                rows::get(&r, "n")?
            } else {
                0
            };
            let done = sqlx::query(&sql)
                .bind(ns.as_str())
                .bind(prefix.as_str())
                .bind(offset)
                .bind(i64::from(keys_distinct))
                .bind(tag.as_str())
                .bind(now.as_millisecond())
                .bind(count)
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected())
        })
        .await
    }
}

/// Runs `fut` within `limit`; lock waits the database itself cut short (Postgres
/// `statement_timeout`, SQLite busy timeout) and pool acquire timeouts also count as `Timeout`.
async fn bounded<T>(
    limit: Duration,
    backend: Backend,
    fut: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(limit, fut).await {
        Err(_) => Err(StoreError::Timeout(limit)),
        Ok(Err(StoreError::Database(e))) if is_timeout(backend, &e) => Err(StoreError::Timeout(limit)),
        Ok(r) => r,
    }
}

fn is_timeout(backend: Backend, e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(db) => {
            let code = db.code();
            match backend {
                // query_canceled: statement_timeout fired.
                Backend::Postgres => code.as_deref() == Some("57014"),
                // SQLITE_BUSY / SQLITE_LOCKED (and their extended codes): busy timeout ran out.
                Backend::Sqlite => code.and_then(|c| c.parse::<i64>().ok()).is_some_and(|c| matches!(c & 0xff, 5 | 6)),
            }
        }
        _ => false,
    }
}

/// Creates the SQLite file if missing and switches it to WAL (persistent in the file), on a
/// connection of its own: changing the journal mode needs a lock the pool's busy handler
/// cannot wait for, so it is done once here rather than on every pooled connection.
async fn prepare_sqlite(url: &str, timeout: Duration) -> Result<(), StoreError> {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode};
    use std::str::FromStr;
    let opts = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(timeout);
    let conn = SqliteConnection::connect_with(&opts).await?;
    conn.close().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_keys_are_valid_and_match_the_sql_layout() {
        let k = synthetic_key("bench", 255);
        assert!(CacheKey::parse(k.as_str()).is_ok());
        let prefix = hex::encode(synthetic_prefix("bench"));
        assert_eq!(k.as_str(), format!("{}:{prefix}{:048x}", crate::types::KEY_FORMAT, 255));
        assert_ne!(synthetic_key("bench", 1), synthetic_key("other", 1));
    }

    #[test]
    fn empty_filter_is_detected() {
        assert!(EntryFilter::default().is_empty());
        assert!(!EntryFilter { workflow: Some("w".into()), ..Default::default() }.is_empty());
    }

    #[test]
    fn filter_placeholders_number_from_the_given_start() {
        let f = EntryFilter {
            id: Some(EntryId(3)),
            workflow: Some("wf".into()),
            image: Some("nginx:1".into()),
            ..Default::default()
        };
        let w = Where::build(Backend::Postgres, &f, 2).unwrap_or_else(|_| Where::new(0));
        assert_eq!(w.sql(), "(id = $2 OR source_id = $2) AND workflow_name = $3 AND (strpos(images, $4) > 0 OR strpos(image_digests, $4) > 0 OR strpos(image_digests, $5) > 0)");
        assert_eq!(w.next_placeholder(), "$6");
    }

    #[test]
    fn error_kinds_are_stable_labels() {
        assert_eq!(StoreError::EmptyFilter.kind(), "empty_filter");
        assert_eq!(StoreError::Timeout(Duration::from_millis(5)).kind(), "timeout");
    }
}
