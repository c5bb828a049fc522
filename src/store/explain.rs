//! The lookup that also explains: the entry to serve and, in the same round trip, the newest
//! entry with the key whatever its state, so a miss can say "stale", "expired" or
//! "invalidated" without a second query on the admission path.

use super::{rows, sql, Entry, Store, StoreError};
use crate::types::{CacheKey, Staleness};
use jiff::Timestamp;

/// What one explained lookup returns.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Explained {
    /// The entry to serve, chosen exactly as [`Store::lookup`] chooses.
    pub candidate: Option<Entry>,
    /// The newest entry with the key in any state (may equal the candidate).
    pub latest: Option<Entry>,
}

impl Store {
    /// [`Store::lookup`] and [`Store::latest_for_key`] in one round trip. Staleness 0 skips
    /// the candidate but still reports the latest entry.
    pub async fn lookup_explained(
        &self,
        key: &CacheKey,
        staleness: Staleness,
        now: Timestamp,
    ) -> Result<Explained, StoreError> {
        if staleness.never_reuse() {
            return Ok(Explained { candidate: None, latest: self.latest_for_key(key).await? });
        }
        let now_ms = now.as_millisecond();
        let oldest = super::oldest_finished_ms(staleness, now_ms);
        self.bounded(async {
            let found = sqlx::query(sql::LOOKUP_EXPLAINED)
                .bind(key.as_str())
                .bind(staleness.to_db())
                .bind(now_ms)
                .bind(oldest)
                .fetch_all(&self.pool)
                .await?;
            let mut out = Explained::default();
            for row in &found {
                let pref: i64 = rows::get(row, "pref")?;
                let entry = rows::entry(row)?;
                if pref >= 0 {
                    if out.candidate.is_none() {
                        out.candidate = Some(entry);
                    }
                } else {
                    out.latest = Some(entry);
                }
            }
            Ok(out)
        })
        .await
    }
}
