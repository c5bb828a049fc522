//! A cheap entry count for the `stepcache_entries` gauge: a full `count(*)` over millions of
//! rows would not fit the store timeout, so Postgres reads the planner's estimate.

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
