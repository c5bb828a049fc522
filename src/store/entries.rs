//! Writing and reading entries: recording a finished run once per pod, ever (a claim on the pod
//! uid that outlives the row), adopting a run for
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
    /// The pod (this uid) was recorded before and its entry has since been invalidated,
    /// withdrawn or expired and deleted by gc: it is not recorded again, ever.
    Withdrawn(String),
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

/// The JSON columns of a run, encoded once per insert.
struct Encoded {
    outputs: String,
    material: String,
    image_digests: String,
    images: String,
}

impl Encoded {
    fn of(run: &Execution) -> Result<Encoded, StoreError> {
        Ok(Encoded {
            outputs: rows::to_json("outputs", &run.outputs)?,
            material: rows::to_json("key material", &run.material)?,
            image_digests: rows::to_json("image digests", &run.image_digests)?,
            images: rows::to_json("images", &run.images)?,
        })
    }
}

/// The insert of `run` with `stamp` ([`sql::INSERT`]), ready to run on the pool or in a
/// transaction.
fn insert_query<'q>(
    run: &'q Execution,
    stamp: &'q Stamp,
    enc: &'q Encoded,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    sqlx::query(sql::INSERT)
        .bind(run.namespace.as_str())
        .bind(run.key.as_str())
        .bind(run.seed.as_str())
        .bind(stamp.staleness.to_db())
        .bind(enc.outputs.as_str())
        .bind(enc.material.as_str())
        .bind(run.template_name.as_str())
        .bind(run.workflow_name.as_str())
        .bind(run.workflow_uid.as_str())
        .bind(run.node_id.as_str())
        .bind(run.pod_name.as_str())
        .bind(run.pod_uid.as_str())
        .bind(enc.image_digests.as_str())
        .bind(enc.images.as_str())
        .bind(run.started_at.as_millisecond())
        .bind(run.finished_at.as_millisecond())
        .bind(stamp.created_at.as_millisecond())
        .bind(run.expires_at.map(Timestamp::as_millisecond))
        .bind(stamp.source_id.map(|id| id.0))
        .bind(stamp.dedup.as_str())
}

impl Store {
    /// Inserts `run` with `stamp` unless the stamp's dedup token exists; returns (inserted?,
    /// the row holding it).
    async fn insert_or_existing(&self, run: &Execution, stamp: &Stamp) -> Result<(bool, Entry), StoreError> {
        let enc = Encoded::of(run)?;
        // A conflicting row deleted (gc) between the two statements is retried; three rounds
        // of that means something is deleting as fast as we insert.
        for _ in 0..3 {
            let inserted = insert_query(run, stamp, &enc).fetch_optional(&self.pool).await?;
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

    /// Records a finished execution, once per pod uid, ever: the pod's uid is claimed in
    /// `recorded_pods` in the same transaction as the row is written, and that claim outlives
    /// the row (gc keeps it). A second record of the same pod (a retry, a restart's re-list,
    /// another replica) returns `AlreadyRecorded` with the existing row, or `Withdrawn` once that
    /// row was invalidated, withdrawn or expired and gc deleted it: what was taken out of the
    /// cache stays out. An empty pod uid is refused (`InvalidInput`).
    pub async fn record(&self, e: &Execution, now: Timestamp) -> Result<Recorded, StoreError> {
        if e.pod_uid.is_empty() {
            // The uid is the idempotency key: every uid-less pod would collapse into one row.
            return Err(StoreError::InvalidInput("cannot record a pod without a uid".to_owned()));
        }
        let stamp =
            Stamp { staleness: e.staleness, created_at: now, source_id: None, dedup: format!("pod:{}", e.pod_uid) };
        let enc = Encoded::of(e)?;
        self.bounded(async {
            let mut tx = self.pool.begin().await?;
            // On Postgres a racing claim of the same uid waits here until this one commits
            // (then finds the row) or rolls back (then claims it itself).
            let claimed = sqlx::query(sql::CLAIM_POD)
                .bind(e.pod_uid.as_str())
                .bind(now.as_millisecond())
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
            if claimed {
                let inserted = insert_query(e, &stamp, &enc).fetch_optional(&mut *tx).await?;
                if let Some(r) = inserted {
                    let entry = rows::entry(&r)?;
                    tx.commit().await?;
                    return Ok(Recorded::Inserted(entry));
                }
                // A row without a claim (written by a binary older than the claims table):
                // claim it now, and it is that row.
                tx.commit().await?;
            } else {
                tx.rollback().await?;
            }
            let existing = sqlx::query(sql::BY_DEDUP).bind(stamp.dedup.as_str()).fetch_optional(&self.pool).await?;
            Ok(match existing {
                Some(r) => Recorded::AlreadyRecorded(rows::entry(&r)?),
                None => Recorded::Withdrawn(e.pod_uid.clone()),
            })
        })
        .await
    }

    /// True when the pod with this uid was ever recorded (whether or not its entry remains).
    pub async fn was_recorded(&self, pod_uid: &str) -> Result<bool, StoreError> {
        self.bounded(async {
            let row = sqlx::query(sql::POD_CLAIMED).bind(pod_uid).fetch_optional(&self.pool).await?;
            Ok(row.is_some())
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
