//! Store side of refused hits: a (key, namespace) whose hit pod the API server refused is kept
//! here until an operator clears it, so every replica, and every restart, stops serving it.
//! Both backends, same statements.

use super::{Store, StoreError};
use jiff::Timestamp;
use sqlx::Row;

/// One refused hit: the key and namespace it blocks, and what is known of the refusal.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RefusedHit {
    /// The cache key (`v3:…`).
    pub key: String,
    /// The namespace the hit was refused in.
    pub namespace: String,
    /// When the refusal was detected.
    pub refused_at: Timestamp,
    /// The hit pod that never appeared.
    pub pod_name: String,
    /// The entry the hit served.
    pub entry_id: i64,
    /// The controller's message, or what is known.
    pub cause: String,
}

/// The first refusal of a (key, namespace) is kept: it names the cause an operator must fix.
const INSERT: &str = "INSERT INTO refused_hits (cache_key, namespace, refused_at, pod_name, entry_id, cause) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (cache_key, namespace) DO NOTHING";

const ALL: &str = "SELECT cache_key, namespace, refused_at, pod_name, entry_id, cause FROM refused_hits \
     ORDER BY refused_at, cache_key, namespace";

const CLEAR_KEY: &str = "DELETE FROM refused_hits WHERE cache_key = $1";
const CLEAR_KEY_IN: &str = "DELETE FROM refused_hits WHERE cache_key = $1 AND namespace = $2";
const CLEAR_IN: &str = "DELETE FROM refused_hits WHERE namespace = $1";

fn corrupt(field: &str, e: sqlx::Error) -> StoreError {
    StoreError::Corrupt(format!("refused_hits.{field}: {e}"))
}

impl Store {
    /// Blocks `r.key` in `r.namespace`; a second refusal of the same pair keeps the first row.
    pub async fn refuse_hit(&self, r: &RefusedHit) -> Result<(), StoreError> {
        self.bounded(async {
            sqlx::query(INSERT)
                .bind(r.key.as_str())
                .bind(r.namespace.as_str())
                .bind(r.refused_at.as_millisecond())
                .bind(r.pod_name.as_str())
                .bind(r.entry_id)
                .bind(r.cause.as_str())
                .execute(&self.pool)
                .await?;
            Ok(())
        })
        .await
    }

    /// Every blocked (key, namespace), oldest first.
    pub async fn refused_hits(&self) -> Result<Vec<RefusedHit>, StoreError> {
        self.bounded(async {
            let rows = sqlx::query(ALL).fetch_all(&self.pool).await?;
            rows.iter()
                .map(|row| {
                    let at: i64 = row.try_get("refused_at").map_err(|e| corrupt("refused_at", e))?;
                    Ok(RefusedHit {
                        key: row.try_get("cache_key").map_err(|e| corrupt("cache_key", e))?,
                        namespace: row.try_get("namespace").map_err(|e| corrupt("namespace", e))?,
                        refused_at: Timestamp::from_millisecond(at)
                            .map_err(|e| StoreError::Corrupt(format!("refused_hits.refused_at: {e}")))?,
                        pod_name: row.try_get("pod_name").map_err(|e| corrupt("pod_name", e))?,
                        entry_id: row.try_get("entry_id").map_err(|e| corrupt("entry_id", e))?,
                        cause: row.try_get("cause").map_err(|e| corrupt("cause", e))?,
                    })
                })
                .collect()
        })
        .await
    }

    /// Unblocks `key` (in `namespace`, or everywhere), or every key of `namespace`; at least one
    /// of the two is required. Returns the rows removed.
    pub async fn clear_refused(&self, key: Option<&str>, namespace: Option<&str>) -> Result<u64, StoreError> {
        let q = match (key, namespace) {
            (Some(k), Some(ns)) => sqlx::query(CLEAR_KEY_IN).bind(k.to_owned()).bind(ns.to_owned()),
            (Some(k), None) => sqlx::query(CLEAR_KEY).bind(k.to_owned()),
            (None, Some(ns)) => sqlx::query(CLEAR_IN).bind(ns.to_owned()),
            (None, None) => return Err(StoreError::EmptyFilter),
        };
        self.bounded(async { Ok(q.execute(&self.pool).await?.rows_affected()) }).await
    }
}
