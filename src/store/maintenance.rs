//! Keeping the table healthy and reporting on it: invalidation (whole or batched with
//! progress), garbage collection of expired and invalidated rows, and per-namespace stats.
//! None of it is on the admission path.

use super::filter::{EntryFilter, Where};
use super::{rows, sql, Store, StoreError};
use jiff::Timestamp;

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

impl Store {
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
    /// until none are left, so no statement holds locks for long; returns how many. The pods'
    /// claims in `recorded_pods` are kept, so a deleted entry's pod is never recorded again. Each
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
        // Expired rows first (the query takes `now`), then invalidated ones; each in batches
        // until a batch comes back short.
        for (sql, at) in [(expired, Some(now.as_millisecond())), (invalidated, None)] {
            loop {
                let n = self
                    .bounded(async {
                        let q = sqlx::query(&sql);
                        let q = match at {
                            Some(ms) => q.bind(ms),
                            None => q,
                        };
                        Ok(q.bind(batch).execute(&self.pool).await?.rows_affected())
                    })
                    .await?;
                total = total.saturating_add(n);
                progress(total);
                if n < full {
                    break;
                }
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
}
