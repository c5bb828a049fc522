//! Writing and reading entries: recording a finished run once per pod, adopting a run for
//! another staleness, counting hits, and fetching or listing rows. Inserts bind straight from
//! the one [`Execution`] type; an original and an adopting copy differ only in staleness,
//! creation time, source and dedup token.

use super::filter::{EntryFilter, Where};
use super::{rows, sql, Entry, Execution, Store, StoreError};
use crate::types::{EntryId, Staleness};
use jiff::Timestamp;

/// Outcome of recording.
#[derive(Clone, Debug, PartialEq)]
pub enum Recorded {
    /// This call wrote the row.
    Inserted(Entry),
    /// The pod was already recorded (a retry or a racing replica); the existing row.
    AlreadyRecorded(Entry),
}

/// What an insert adds to the run: the only parts in which an original and an adopting copy
/// of it differ.
struct Stamp {
    /// The run's own staleness for an original; the adopted one for a copy.
    staleness: Staleness,
    /// When the row is written.
    created_at: Timestamp,
    /// The original a copy points at; `None` for originals.
    source_id: Option<EntryId>,
    /// The idempotency token (`pod:<uid>` or `copy:<source>:<staleness>`).
    dedup: String,
}

impl Store {
    /// Inserts `run` with `stamp` unless the stamp's dedup token exists; returns (inserted?,
    /// the row holding it).
    async fn insert_or_existing(&self, run: &Execution, stamp: &Stamp) -> Result<(bool, Entry), StoreError> {
        let outputs = rows::to_json("outputs", &run.outputs)?;
        let material = rows::to_json("key material", &run.material)?;
        let image_digests = rows::to_json("image digests", &run.image_digests)?;
        let images = rows::to_json("images", &run.images)?;
        // A conflicting row deleted (gc) between the two statements is retried; three rounds
        // of that means something is deleting as fast as we insert.
        for _ in 0..3 {
            let inserted = sqlx::query(sql::INSERT)
                .bind(run.namespace.as_str())
                .bind(run.key.as_str())
                .bind(run.seed.as_str())
                .bind(stamp.staleness.to_db())
                .bind(outputs.as_str())
                .bind(material.as_str())
                .bind(run.template_name.as_str())
                .bind(run.workflow_name.as_str())
                .bind(run.workflow_uid.as_str())
                .bind(run.node_id.as_str())
                .bind(run.pod_name.as_str())
                .bind(run.pod_uid.as_str())
                .bind(image_digests.as_str())
                .bind(images.as_str())
                .bind(run.started_at.as_millisecond())
                .bind(run.finished_at.as_millisecond())
                .bind(stamp.created_at.as_millisecond())
                .bind(run.expires_at.map(Timestamp::as_millisecond))
                .bind(stamp.source_id.map(|id| id.0))
                .bind(stamp.dedup.as_str())
                .fetch_optional(&self.pool)
                .await?;
            if let Some(r) = inserted {
                return Ok((true, rows::entry(&r)?));
            }
            let existing = sqlx::query(sql::BY_DEDUP).bind(stamp.dedup.as_str()).fetch_optional(&self.pool).await?;
            if let Some(r) = existing {
                return Ok((false, rows::entry(&r)?));
            }
        }
        Err(StoreError::Database(sqlx::Error::RowNotFound))
    }

    /// Records a copy of `source` that carries `staleness`, so the next lookup with that
    /// staleness finds an exact match. Same key, outputs, material and provenance; `source_id`
    /// is the original (never a copy), `created_at` is `now`, `finished_at` and `expires_at`
    /// are the source's. Idempotent: racing adopts of one source and staleness leave exactly
    /// one row, which every caller gets back. Adopting the source's own staleness returns it.
    pub async fn adopt(&self, source: &Entry, staleness: Staleness, now: Timestamp) -> Result<Entry, StoreError> {
        if source.run.staleness == staleness {
            return Ok(source.clone());
        }
        let root = source.source_id.unwrap_or(source.id);
        let stamp = Stamp {
            staleness,
            created_at: now,
            source_id: Some(root),
            dedup: format!("copy:{}:{}", root.0, staleness.to_db()),
        };
        self.bounded(async { Ok(self.insert_or_existing(&source.run, &stamp).await?.1) }).await
    }

    /// Records a finished execution, once per pod uid: a second record of the same pod (a
    /// retry, or another replica's recorder) returns `AlreadyRecorded` with the existing row.
    /// An empty pod uid is refused (`InvalidInput`).
    pub async fn record(&self, e: &Execution, now: Timestamp) -> Result<Recorded, StoreError> {
        if e.pod_uid.is_empty() {
            // The uid is the idempotency key: every uid-less pod would collapse into one row.
            return Err(StoreError::InvalidInput("cannot record a pod without a uid".to_owned()));
        }
        let stamp =
            Stamp { staleness: e.staleness, created_at: now, source_id: None, dedup: format!("pod:{}", e.pod_uid) };
        self.bounded(async {
            Ok(match self.insert_or_existing(e, &stamp).await? {
                (true, entry) => Recorded::Inserted(entry),
                (false, entry) => Recorded::AlreadyRecorded(entry),
            })
        })
        .await
    }

    /// Counts one serve of an entry (feeds `stats`); a missing id is not an error.
    pub async fn note_hit(&self, id: EntryId) -> Result<(), StoreError> {
        self.bounded(async {
            sqlx::query(sql::NOTE_HIT).bind(id.0).execute(&self.pool).await?;
            Ok(())
        })
        .await
    }

    /// One entry by id, whatever its state.
    pub async fn get(&self, id: EntryId) -> Result<Option<Entry>, StoreError> {
        self.bounded(async {
            let row = sqlx::query(sql::BY_ID).bind(id.0).fetch_optional(&self.pool).await?;
            row.as_ref().map(rows::entry).transpose()
        })
        .await
    }

    /// Entries matching `f`, newest (highest id) first, at most `limit` (≤ 0 gives none).
    pub async fn list(&self, f: &EntryFilter, limit: i64) -> Result<Vec<Entry>, StoreError> {
        if limit <= 0 {
            return Ok(Vec::new());
        }
        let w = Where::build(self.backend, f, 1)?;
        let sql = format!("{}{} ORDER BY id DESC LIMIT {}", sql::LIST_PREFIX, w.sql(), w.next_placeholder());
        self.bounded(async {
            let found = w.bind(sqlx::query(&sql)).bind(limit).fetch_all(&self.pool).await?;
            found.iter().map(rows::entry).collect()
        })
        .await
    }
}
