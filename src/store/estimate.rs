//! Housekeeping queries kept off the admission path: a cheap entry count for the
//! `stepcache_entries` gauge (a full `count(*)` over millions of rows would not fit the store
//! timeout, so Postgres reads the planner's estimate) and batched hit counts.

use super::{Backend, Store, StoreError};

impl Store {
    /// Approximate number of rows in `executions` (exact on SQLite, planner estimate on Postgres).
    pub async fn estimate_entries(&self) -> Result<i64, StoreError> {
        let q = match self.backend {
            Backend::Postgres => {
                "SELECT CAST(GREATEST(reltuples, 0) AS BIGINT) AS n FROM pg_class WHERE relname = 'executions'"
            }
            Backend::Sqlite => "SELECT COUNT(*) AS n FROM executions",
        };
        self.bounded(async {
            let row = sqlx::query(q).fetch_optional(&self.pool).await?;
            match row {
                Some(r) => super::rows::get(&r, "n"),
                None => Ok(0),
            }
        })
        .await
    }
}

impl Store {
    /// Adds `n` hits to each entry in one transaction (one commit for a whole batch, so counting
    /// hits never competes with lookups for connections or WAL flushes).
    pub async fn add_hits(&self, counts: &[(crate::types::EntryId, i64)]) -> Result<(), StoreError> {
        if counts.is_empty() {
            return Ok(());
        }
        self.bounded(async {
            let mut tx = self.pool.begin().await?;
            for (id, n) in counts {
                sqlx::query("UPDATE executions SET hit_count = hit_count + $2 WHERE id = $1")
                    .bind(id.0)
                    .bind(*n)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }
}
