//! A fresh Postgres database per test on the real server (`DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`). Unreachable: fails under `CI`, else skips loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sqlx::Connection;
use std::time::Duration;
use stepcache::store::{Store, StoreOptions};

/// Admin URL.
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A database that is dropped when the test ends.
pub struct TestDb {
    /// Store connected to it, migrated.
    pub store: Store,
    /// Its URL.
    pub url: String,
    name: String,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let admin = admin_url();
        // Best effort, on a separate thread with its own runtime (Drop may run inside a runtime).
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                rt.block_on(async {
                    if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                        let _ =
                            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut c).await;
                    }
                });
            }
        })
        .join();
    }
}

fn with_db(url: &str, db: &str) -> String {
    match url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{db}"),
        None => format!("{url}/{db}"),
    }
}

/// Creates a fresh, migrated database; `None` (with a loud notice) when Postgres is unreachable
/// outside CI.
pub async fn database() -> Option<TestDb> {
    let admin = admin_url();
    let conn = tokio::time::timeout(Duration::from_secs(5), sqlx::PgConnection::connect(&admin)).await;
    let mut c = match conn {
        Ok(Ok(c)) => c,
        other => {
            let why = match other {
                Ok(Err(e)) => e.to_string(),
                _ => "timeout".into(),
            };
            crate::skip::skip("postgres", &format!("Postgres unreachable at {admin}: {why}"));
            return None;
        }
    };
    let name = format!("stepcache_it_{}", rand_suffix());
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut c).await.unwrap();
    let url = with_db(&admin, &name);
    let store =
        Store::connect(&url, StoreOptions { timeout: Duration::from_secs(10), max_connections: 8 }).await.unwrap();
    store.migrate().await.unwrap();
    Some(TestDb { store, url, name })
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{}_{}_{}", std::process::id(), t % 1_000_000_000, N.fetch_add(1, Ordering::Relaxed))
}
