//! Shared helpers for the I/O tests: a fresh, isolated store per test on either backend.
//!
//! SQLite: a real file in a temp dir. Postgres: the server at `DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`), one schema per test (selected through the
//! connection's `search_path`, so tests run in parallel), dropped when the test ends. When
//! Postgres is unreachable the helpers return `None` after a visible skip ([`crate::skip`]),
//! except under `CI`, where the test fails instead.
//!
//! Run one test body against both backends with [`each_backend!`]:
//! ```ignore
//! async fn records_once(t: TestStore) { ... }
//! crate::support::each_backend!(records_once);   // → records_once::sqlite, records_once::postgres
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use sqlx::Connection;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use stepcache::store::{Store, StoreOptions};
use tempfile::TempDir;

/// Which database a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A temp-file SQLite database.
    Sqlite,
    /// A private schema on the real Postgres server.
    Postgres,
}

/// The Postgres URL tests use (`DATABASE_URL`, else the local trust-auth default).
pub fn postgres_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Options for test stores: generous timeout so a loaded machine does not flake.
pub fn test_options() -> StoreOptions {
    StoreOptions { timeout: Duration::from_secs(20), max_connections: 8 }
}

/// A unique lowercase suffix for database object names.
pub fn unique_suffix() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{}_{}_{}", std::process::id(), nanos % 1_000_000_000_000, N.fetch_add(1, Ordering::Relaxed))
}

/// Connects to the Postgres admin URL; `None` (loudly) when unreachable outside CI.
pub async fn postgres_admin() -> Option<sqlx::PgConnection> {
    let url = postgres_url();
    let why = match tokio::time::timeout(Duration::from_secs(5), sqlx::PgConnection::connect(&url)).await {
        Ok(Ok(c)) => return Some(c),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "connect timed out after 5s".to_owned(),
    };
    crate::skip::skip("postgres", &format!("Postgres unreachable at {url}: {why}"));
    None
}

fn with_search_path(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

enum Guard {
    Dir(TempDir),
    Schema(String),
    Released,
}

/// An empty, private database (a SQLite file or a Postgres schema), removed on drop.
pub struct Scratch {
    /// Which backend.
    pub backend: Backend,
    /// URL that connects into it (for `Store::connect` or raw sqlx connections).
    pub url: String,
    guard: Guard,
}

impl Scratch {
    /// A new SQLite file path in a fresh temp dir (the file itself is created by the store).
    pub fn sqlite() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("stepcache.db").display());
        Scratch { backend: Backend::Sqlite, url, guard: Guard::Dir(dir) }
    }

    /// A new schema on the Postgres server; `None` when it is unreachable (outside CI).
    pub async fn postgres() -> Option<Scratch> {
        let mut admin = postgres_admin().await?;
        let schema = format!("stepcache_t_{}", unique_suffix());
        sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&mut admin).await.unwrap();
        let _ = admin.close().await;
        Some(Scratch {
            backend: Backend::Postgres,
            url: with_search_path(&postgres_url(), &schema),
            guard: Guard::Schema(schema),
        })
    }

    /// A scratch database on `backend`.
    pub async fn new(backend: Backend) -> Option<Scratch> {
        match backend {
            Backend::Sqlite => Some(Scratch::sqlite()),
            Backend::Postgres => Scratch::postgres().await,
        }
    }

    /// A store connected to it with `opts`, not migrated.
    pub async fn connect(&self, opts: StoreOptions) -> Store {
        Store::connect(&self.url, opts).await.unwrap()
    }

    /// A migrated store with [`test_options`].
    pub async fn migrated(&self) -> Store {
        let s = self.connect(test_options()).await;
        s.migrate().await.unwrap();
        s
    }

    /// The temp dir of a SQLite scratch.
    pub fn dir(&self) -> Option<&std::path::Path> {
        match &self.guard {
            Guard::Dir(d) => Some(d.path()),
            Guard::Schema(_) | Guard::Released => None,
        }
    }

    /// Turns a SQLite scratch into its temp dir (keeps the file alive as long as the dir).
    fn into_dir(mut self) -> Option<TempDir> {
        match std::mem::replace(&mut self.guard, Guard::Released) {
            Guard::Dir(d) => Some(d),
            other => {
                self.guard = other;
                None
            }
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let Guard::Schema(schema) = &self.guard else {
            return;
        };
        let schema = schema.clone();
        let url = postgres_url();
        // Best effort, on a thread with its own runtime (Drop may run inside a runtime).
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async {
                if let Ok(Ok(mut c)) =
                    tokio::time::timeout(Duration::from_secs(5), sqlx::PgConnection::connect(&url)).await
                {
                    let _ = sqlx::query("SET lock_timeout = '5s'").execute(&mut c).await;
                    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(&mut c).await;
                    let _ = c.close().await;
                }
            });
        })
        .join();
    }
}

/// A migrated store on a scratch database; derefs to the [`Store`].
pub struct TestStore {
    /// The store under test.
    pub store: Store,
    /// Its database (dropped after the store).
    pub scratch: Scratch,
}

impl TestStore {
    /// On SQLite.
    pub async fn sqlite() -> TestStore {
        let scratch = Scratch::sqlite();
        TestStore { store: scratch.migrated().await, scratch }
    }

    /// On Postgres; `None` when unreachable (outside CI).
    pub async fn postgres() -> Option<TestStore> {
        let scratch = Scratch::postgres().await?;
        Some(TestStore { store: scratch.migrated().await, scratch })
    }

    /// Which backend.
    pub fn backend(&self) -> Backend {
        self.scratch.backend
    }

    /// Another store on the same database with other options (e.g. a short timeout).
    pub async fn reconnect(&self, opts: StoreOptions) -> Store {
        self.scratch.connect(opts).await
    }

    /// A raw sqlx pool on the same database, for poking at rows the API would not write.
    pub async fn raw(&self) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        sqlx::AnyPool::connect(&self.scratch.url).await.unwrap()
    }
}

impl std::ops::Deref for TestStore {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

/// A migrated SQLite store and the temp dir holding its file (keep the dir alive).
pub async fn sqlite_store() -> (Store, TempDir) {
    let scratch = Scratch::sqlite();
    let store = scratch.migrated().await;
    (store, scratch.into_dir().unwrap())
}

/// A migrated Postgres store in its own schema, and the guard that drops the schema; `None`
/// (after a loud `SKIPPED`) when Postgres is unreachable outside CI.
pub async fn postgres_store() -> Option<(Store, Scratch)> {
    let scratch = Scratch::postgres().await?;
    Some((scratch.migrated().await, scratch))
}

/// Defines, for each `async fn name(t: TestStore)`, a module `name` with two tests, `sqlite` and
/// `postgres`, running that body on a fresh migrated store of each backend.
macro_rules! each_backend {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn sqlite() {
                    super::$name($crate::support::TestStore::sqlite().await).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn postgres() {
                    if let Some(t) = $crate::support::TestStore::postgres().await {
                        super::$name(t).await
                    }
                }
            }
        )*
    };
}
pub(crate) use each_backend;
