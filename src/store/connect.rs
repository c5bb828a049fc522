//! The store handle and its lifecycle: options, connecting to either backend, migrations,
//! readiness, and the bound every call runs under (client-side timer plus the database's own
//! statement/busy timeout).

use super::{rows, sql, Backend, StoreError};
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Connection};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

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
    pub(super) pool: AnyPool,
    pub(super) backend: Backend,
    pub(super) timeout: Duration,
    pub(super) decisions: super::decisions::DecisionBuffer,
}

/// A duration as the integer milliseconds `statement_timeout` / `busy_timeout` take (both are
/// 32-bit ints; 0 would mean "no limit", so at least 1).
fn millis(d: Duration) -> u128 {
    d.as_millis().clamp(1, 2_147_483_647)
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

    /// Runs `fut` within the store timeout (see [`bounded`]); every call goes through here.
    pub(super) async fn bounded<T>(&self, fut: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        bounded(self.timeout, self.backend, fut).await
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
