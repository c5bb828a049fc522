//! The decision log: one row per step-pod decision (hit, miss, ...), written behind the
//! admission path in batches and pruned by gc, so `stepcache why` can explain pods that are
//! long gone and the status page can show recent misses and time saved across replicas.
//!
//! Bounded twice: the in-memory buffer holds at most [`BUFFER_LIMIT`] decisions (further ones
//! are counted and dropped, never waited for), and [`Store::prune_decisions`] keeps at most
//! [`DECISION_RETENTION`] of history and [`DECISION_ROW_LIMIT`] rows.

use super::{rows, Store, StoreError};
use jiff::Timestamp;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Decisions waiting for the next flush; beyond this, new ones are dropped (and counted).
pub const BUFFER_LIMIT: usize = 10_000;
/// How long decisions are kept.
pub const DECISION_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Most rows kept, whatever their age (a busy cluster must not grow the log without bound).
pub const DECISION_ROW_LIMIT: i64 = 1_000_000;
/// Rows per insert transaction.
const FLUSH_CHUNK: usize = 200;

/// One logged decision.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct LoggedDecision {
    /// Row id (0 before it is stored).
    pub id: i64,
    /// When the webhook decided.
    pub decided_at: Timestamp,
    /// Namespace of the pod.
    pub namespace: String,
    /// Pod name.
    pub pod_name: String,
    /// Workflow that created the pod.
    pub workflow_name: String,
    /// Argo node id of the step.
    pub node_id: String,
    /// Template of the step.
    pub template_name: String,
    /// Fine decision (`hit`, `miss`, `shadow-hit`, `latched`, `error`).
    pub decision: String,
    /// Why, as the webhook said it.
    pub reason: String,
    /// Cache key derived for the pod.
    pub key: String,
    /// Staleness used (seconds, -1 unbounded).
    pub staleness: i64,
    /// Cache seed used.
    pub seed: String,
    /// Entry served (hits) or that would have been served (shadow hits).
    pub entry_id: Option<i64>,
    /// Entry a miss was compared against.
    pub nearest_id: Option<i64>,
    /// Key-material differences from the nearest entry.
    pub differences: Vec<String>,
    /// Compute time a hit saved, in seconds.
    pub saved_seconds: f64,
}

/// Counts of one decision kind since an instant.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct DecisionCount {
    /// Fine decision.
    pub decision: String,
    /// How many.
    pub count: i64,
    /// Compute time saved by them, seconds.
    pub saved_seconds: f64,
}

/// Time saved by one template since an instant.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct TemplateSaving {
    /// Namespace.
    pub namespace: String,
    /// Template name.
    pub template: String,
    /// Hits served.
    pub hits: i64,
    /// Compute time saved, seconds.
    pub saved_seconds: f64,
}

/// Decisions not yet written; shared by every clone of a [`Store`].
#[derive(Clone, Debug, Default)]
pub struct DecisionBuffer {
    pending: Arc<Mutex<VecDeque<LoggedDecision>>>,
    dropped: Arc<AtomicU64>,
}

impl DecisionBuffer {
    fn push(&self, d: LoggedDecision) {
        match self.pending.lock() {
            Ok(mut q) if q.len() < BUFFER_LIMIT => q.push_back(d),
            _ => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn take(&self, n: usize) -> Vec<LoggedDecision> {
        match self.pending.lock() {
            Ok(mut q) => {
                let n = n.min(q.len());
                q.drain(..n).collect()
            }
            Err(_) => Vec::new(),
        }
    }

    fn put_back(&self, batch: Vec<LoggedDecision>) {
        if let Ok(mut q) = self.pending.lock() {
            for d in batch.into_iter().rev() {
                if q.len() >= BUFFER_LIMIT {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                q.push_front(d);
            }
        }
    }
}

const COLS: &str = "id, decided_at, namespace, pod_name, workflow_name, node_id, template_name, decision, \
                    reason, cache_key, max_cache_staleness, cache_seed, entry_id, nearest_id, differences, saved_ms";

/// Columns written per decision, in bind order.
const INSERT_COLUMNS: usize = 15;

/// `INSERT ... VALUES (...), (...)` for `rows` decisions.
fn insert_many(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO decisions (decided_at, namespace, pod_name, workflow_name, node_id, template_name, \
         decision, reason, cache_key, max_cache_staleness, cache_seed, entry_id, nearest_id, differences, \
         saved_ms) VALUES ",
    );
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        let first = r * INSERT_COLUMNS + 1;
        let ps: Vec<String> = (first..first + INSERT_COLUMNS).map(|i| format!("${i}")).collect();
        sql.push('(');
        sql.push_str(&ps.join(", "));
        sql.push(')');
    }
    sql
}

fn decision_row(row: &sqlx::any::AnyRow) -> Result<LoggedDecision, StoreError> {
    let ms: i64 = rows::get(row, "decided_at")?;
    let differences: String = rows::get(row, "differences")?;
    let saved_ms: i64 = rows::get(row, "saved_ms")?;
    Ok(LoggedDecision {
        id: rows::get(row, "id")?,
        decided_at: Timestamp::from_millisecond(ms)
            .map_err(|e| StoreError::Corrupt(format!("column decided_at: {e}")))?,
        namespace: rows::get(row, "namespace")?,
        pod_name: rows::get(row, "pod_name")?,
        workflow_name: rows::get(row, "workflow_name")?,
        node_id: rows::get(row, "node_id")?,
        template_name: rows::get(row, "template_name")?,
        decision: rows::get(row, "decision")?,
        reason: rows::get(row, "reason")?,
        key: rows::get(row, "cache_key")?,
        staleness: rows::get(row, "max_cache_staleness")?,
        seed: rows::get(row, "cache_seed")?,
        entry_id: rows::get(row, "entry_id")?,
        nearest_id: rows::get(row, "nearest_id")?,
        differences: serde_json::from_str(&differences)
            .map_err(|e| StoreError::Corrupt(format!("column differences: {e}")))?,
        saved_seconds: saved_ms as f64 / 1000.0,
    })
}

impl Store {
    /// Queues a decision for the next [`Store::flush_decisions`]; never blocks or fails (when
    /// the buffer is full the decision is dropped and counted).
    pub fn log_decision(&self, d: LoggedDecision) {
        self.decisions.push(d);
    }

    /// Decisions dropped because the buffer was full, since start.
    pub fn dropped_decisions(&self) -> u64 {
        self.decisions.dropped.load(Ordering::Relaxed)
    }

    /// Writes queued decisions in batches; on failure the unwritten ones are kept for the next
    /// flush. Returns how many were written.
    pub async fn flush_decisions(&self) -> Result<usize, StoreError> {
        let mut written = 0usize;
        loop {
            let batch = self.decisions.take(FLUSH_CHUNK);
            if batch.is_empty() {
                return Ok(written);
            }
            let n = batch.len();
            // One multi-row INSERT per chunk: a round trip per chunk, not per decision, so the
            // log does not compete with lookups for connections.
            let sql = insert_many(batch.len());
            let res = self
                .bounded(async {
                    let mut q = sqlx::query(&sql);
                    for d in &batch {
                        q = q
                            .bind(d.decided_at.as_millisecond())
                            .bind(d.namespace.as_str())
                            .bind(d.pod_name.as_str())
                            .bind(d.workflow_name.as_str())
                            .bind(d.node_id.as_str())
                            .bind(d.template_name.as_str())
                            .bind(d.decision.as_str())
                            .bind(d.reason.as_str())
                            .bind(d.key.as_str())
                            .bind(d.staleness)
                            .bind(d.seed.as_str())
                            .bind(d.entry_id)
                            .bind(d.nearest_id)
                            .bind(rows::to_json("differences", &d.differences)?)
                            .bind((d.saved_seconds * 1000.0).round() as i64);
                    }
                    q.execute(&self.pool).await?;
                    Ok(())
                })
                .await;
            if let Err(e) = res {
                self.decisions.put_back(batch);
                return Err(e);
            }
            written += n;
        }
    }

    /// The newest logged decision for a pod.
    pub async fn decision_for_pod(
        &self,
        namespace: &str,
        pod_name: &str,
    ) -> Result<Option<LoggedDecision>, StoreError> {
        let sql =
            format!("SELECT {COLS} FROM decisions WHERE namespace = $1 AND pod_name = $2 ORDER BY id DESC LIMIT 1");
        self.bounded(async {
            let row = sqlx::query(&sql).bind(namespace).bind(pod_name).fetch_optional(&self.pool).await?;
            row.as_ref().map(decision_row).transpose()
        })
        .await
    }

    /// The newest logged decision for a Workflow node (by node id).
    pub async fn decision_for_node(
        &self,
        namespace: &str,
        workflow: &str,
        node_id: &str,
    ) -> Result<Option<LoggedDecision>, StoreError> {
        let sql = format!(
            "SELECT {COLS} FROM decisions WHERE namespace = $1 AND workflow_name = $2 AND node_id = $3 \
             ORDER BY id DESC LIMIT 1"
        );
        self.bounded(async {
            let row = sqlx::query(&sql).bind(namespace).bind(workflow).bind(node_id).fetch_optional(&self.pool).await?;
            row.as_ref().map(decision_row).transpose()
        })
        .await
    }

    /// The original entry a pod's run was recorded as, if any (scans by pod name: for
    /// operators, not the request path).
    pub async fn entry_for_pod(&self, namespace: &str, pod_name: &str) -> Result<Option<super::Entry>, StoreError> {
        let sql = format!(
            "{}namespace = $1 AND pod_name = $2 AND source_id IS NULL ORDER BY id DESC LIMIT 1",
            super::sql::LIST_PREFIX
        );
        self.bounded(async {
            let row = sqlx::query(&sql).bind(namespace).bind(pod_name).fetch_optional(&self.pool).await?;
            row.as_ref().map(rows::entry).transpose()
        })
        .await
    }

    /// The newest decisions of one kind (e.g. `miss`), newest first.
    pub async fn recent_decisions(&self, decision: &str, limit: i64) -> Result<Vec<LoggedDecision>, StoreError> {
        let sql = format!("SELECT {COLS} FROM decisions WHERE decision = $1 ORDER BY id DESC LIMIT $2");
        self.bounded(async {
            let found = sqlx::query(&sql).bind(decision).bind(limit.max(0)).fetch_all(&self.pool).await?;
            found.iter().map(decision_row).collect()
        })
        .await
    }

    /// Decisions since `since`, counted by kind, with the time hits saved.
    pub async fn decision_counts(&self, since: Timestamp) -> Result<Vec<DecisionCount>, StoreError> {
        let sql = "SELECT decision, COUNT(*) AS n, CAST(COALESCE(SUM(saved_ms), 0) AS BIGINT) AS saved \
                   FROM decisions WHERE decided_at >= $1 GROUP BY decision ORDER BY decision";
        self.bounded(async {
            let found = sqlx::query(sql).bind(since.as_millisecond()).fetch_all(&self.pool).await?;
            found
                .iter()
                .map(|r| {
                    Ok(DecisionCount {
                        decision: rows::get(r, "decision")?,
                        count: rows::get(r, "n")?,
                        saved_seconds: rows::get::<i64>(r, "saved")? as f64 / 1000.0,
                    })
                })
                .collect()
        })
        .await
    }

    /// Templates whose hits saved the most compute since `since`, most first.
    pub async fn top_templates(&self, since: Timestamp, limit: i64) -> Result<Vec<TemplateSaving>, StoreError> {
        let sql =
            "SELECT namespace, template_name, COUNT(*) AS n, CAST(COALESCE(SUM(saved_ms), 0) AS BIGINT) AS saved \
                   FROM decisions WHERE decided_at >= $1 AND decision = 'hit' \
                   GROUP BY namespace, template_name ORDER BY saved DESC, n DESC LIMIT $2";
        self.bounded(async {
            let found = sqlx::query(sql).bind(since.as_millisecond()).bind(limit.max(0)).fetch_all(&self.pool).await?;
            found
                .iter()
                .map(|r| {
                    Ok(TemplateSaving {
                        namespace: rows::get(r, "namespace")?,
                        template: rows::get(r, "template_name")?,
                        hits: rows::get(r, "n")?,
                        saved_seconds: rows::get::<i64>(r, "saved")? as f64 / 1000.0,
                    })
                })
                .collect()
        })
        .await
    }

    /// Deletes decisions older than [`DECISION_RETENTION`] and beyond the newest
    /// [`DECISION_ROW_LIMIT`], `batch` rows per statement; returns how many.
    pub async fn prune_decisions(&self, now: Timestamp, batch: i64) -> Result<u64, StoreError> {
        let batch = batch.max(1);
        let cutoff =
            now.as_millisecond().saturating_sub(i64::try_from(DECISION_RETENTION.as_millis()).unwrap_or(i64::MAX));
        let max_id: Option<i64> = self
            .bounded(async {
                let r = sqlx::query("SELECT MAX(id) AS m FROM decisions").fetch_one(&self.pool).await?;
                rows::get(&r, "m")
            })
            .await?;
        let floor = max_id.unwrap_or(0).saturating_sub(DECISION_ROW_LIMIT);
        let sql = "DELETE FROM decisions WHERE id IN \
                   (SELECT id FROM decisions WHERE decided_at < $1 OR id <= $2 LIMIT $3)";
        let full = u64::try_from(batch).unwrap_or(u64::MAX);
        let mut total = 0u64;
        loop {
            let n = self
                .bounded(async {
                    Ok(sqlx::query(sql).bind(cutoff).bind(floor).bind(batch).execute(&self.pool).await?.rows_affected())
                })
                .await?;
            total = total.saturating_add(n);
            if n < full {
                return Ok(total);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multi_row_insert_numbers_every_placeholder_once() {
        let sql = insert_many(2);
        assert!(sql.ends_with("VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15), ($16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30)"), "{sql}");
    }
}
