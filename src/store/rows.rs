//! Conversions between stored rows and [`Entry`] (with its [`Execution`]): epoch milliseconds and JSON text.
//!
//! A row that does not decode into the vocabulary types is reported as
//! [`StoreError::Corrupt`], never served.

use super::{Entry, Execution, StoreError};
use crate::types::{CacheKey, CacheSeed, EntryId, Namespace, Staleness};
use jiff::Timestamp;
use sqlx::any::AnyRow;
use sqlx::Row;
use std::collections::BTreeMap;

/// Reads one column, turning any decode failure into `Corrupt` naming the column.
pub(super) fn get<'r, T>(row: &'r AnyRow, col: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(col).map_err(|e| StoreError::Corrupt(format!("column {col}: {e}")))
}

fn ts(col: &str, ms: i64) -> Result<Timestamp, StoreError> {
    Timestamp::from_millisecond(ms)
        .map_err(|e| StoreError::Corrupt(format!("column {col}: {ms} ms is not a timestamp: {e}")))
}

fn opt_ts(row: &AnyRow, col: &str) -> Result<Option<Timestamp>, StoreError> {
    get::<Option<i64>>(row, col)?.map(|ms| ts(col, ms)).transpose()
}

fn json<T: serde::de::DeserializeOwned>(row: &AnyRow, col: &str) -> Result<T, StoreError> {
    let text: String = get(row, col)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("column {col}: {e}")))
}

/// Decodes a row selected with the store's column list.
pub(super) fn entry(row: &AnyRow) -> Result<Entry, StoreError> {
    let corrupt = |col: &str, e: crate::types::TypeError| StoreError::Corrupt(format!("column {col}: {e}"));
    let images: BTreeMap<String, String> = json(row, "images")?;
    Ok(Entry {
        id: EntryId(get(row, "id")?),
        run: Execution {
            namespace: Namespace::parse(&get::<String>(row, "namespace")?).map_err(|e| corrupt("namespace", e))?,
            key: CacheKey::parse(&get::<String>(row, "cache_key")?).map_err(|e| corrupt("cache_key", e))?,
            seed: CacheSeed::parse(&get::<String>(row, "cache_seed")?).map_err(|e| corrupt("cache_seed", e))?,
            staleness: Staleness::from_db(get(row, "max_cache_staleness")?),
            outputs: json(row, "outputs")?,
            material: json(row, "key_material")?,
            template_name: get(row, "template_name")?,
            workflow_name: get(row, "workflow_name")?,
            workflow_uid: get(row, "workflow_uid")?,
            node_id: get(row, "node_id")?,
            pod_name: get(row, "pod_name")?,
            pod_uid: get(row, "pod_uid")?,
            image_digests: json(row, "image_digests")?,
            images,
            started_at: ts("started_at", get(row, "started_at")?)?,
            finished_at: ts("finished_at", get(row, "finished_at")?)?,
            expires_at: opt_ts(row, "expires_at")?,
        },
        created_at: ts("created_at", get(row, "created_at")?)?,
        invalidated_at: opt_ts(row, "invalidated_at")?,
        source_id: get::<Option<i64>>(row, "source_id")?.map(EntryId),
        hit_count: get(row, "hit_count")?,
    })
}

/// JSON text of a value for a TEXT column.
pub(super) fn to_json<T: serde::Serialize + ?Sized>(what: &'static str, v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Encode { what, message: e.to_string() })
}
