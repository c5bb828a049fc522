//! Store side of integrity checks: withdrawing an entry whose artifacts are gone, and the
//! shared map of image tag → newest observed digest. Both backends, same statements.

use super::{Entry, Store, StoreError};
use jiff::Timestamp;
use sqlx::Row;
use std::collections::BTreeMap;

/// Withdraws the original and every adopting copy of `entry` (they share its outputs).
const MARK_DANGLING: &str = "UPDATE executions SET invalidated_at = $1, invalid_reason = $2 \
     WHERE invalidated_at IS NULL AND (id = $3 OR source_id = $3)";

/// Keeps the newest observation per tag: an older one never overwrites a newer one.
const OBSERVE_TAG: &str = "INSERT INTO image_tags (image_ref, digest, observed_at) VALUES ($1, $2, $3) \
     ON CONFLICT (image_ref) DO UPDATE SET digest = excluded.digest, observed_at = excluded.observed_at \
     WHERE excluded.observed_at > image_tags.observed_at";

const TAG_DIGEST: &str = "SELECT digest FROM image_tags WHERE image_ref = $1";

const PRUNE_TAGS: &str = "DELETE FROM image_tags WHERE observed_at < $1";

impl Store {
    /// Marks `entry`, its original and that original's adopting copies invalidated at `now`
    /// with `reason`, so none is served again (gc deletes them later). Returns the rows changed.
    pub async fn mark_dangling(&self, entry: &Entry, reason: &str, now: Timestamp) -> Result<u64, StoreError> {
        let root = entry.source_id.unwrap_or(entry.id);
        self.bounded(async {
            Ok(sqlx::query(MARK_DANGLING)
                .bind(now.as_millisecond())
                .bind(reason)
                .bind(root.0)
                .execute(&self.pool)
                .await?
                .rows_affected())
        })
        .await
    }

    /// Records that `image_ref` (a normalized `registry/repo:tag`) resolved to `digest` in a
    /// container started at `at`; ignored when a newer observation is stored already.
    pub async fn observe_tag(&self, image_ref: &str, digest: &str, at: Timestamp) -> Result<(), StoreError> {
        self.bounded(async {
            sqlx::query(OBSERVE_TAG).bind(image_ref).bind(digest).bind(at.as_millisecond()).execute(&self.pool).await?;
            Ok(())
        })
        .await
    }

    /// Newest observed digest of each of `refs` that has one.
    pub async fn tag_digests(&self, refs: &[String]) -> Result<BTreeMap<String, String>, StoreError> {
        self.bounded(async {
            let mut out = BTreeMap::new();
            for r in refs {
                if let Some(row) = sqlx::query(TAG_DIGEST).bind(r.as_str()).fetch_optional(&self.pool).await? {
                    let d: String =
                        row.try_get("digest").map_err(|e| StoreError::Corrupt(format!("image_tags.digest: {e}")))?;
                    out.insert(r.clone(), d);
                }
            }
            Ok(out)
        })
        .await
    }

    /// Forgets tags not seen since `before` (keeps the map bounded by the tags in use).
    pub async fn prune_tags(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.bounded(async {
            Ok(sqlx::query(PRUNE_TAGS).bind(before.as_millisecond()).execute(&self.pool).await?.rows_affected())
        })
        .await
    }
}
