//! Choosing what to serve: one query, [`sql::LOOKUP_EXPLAINED`], returns the entry to serve
//! and, in the same round trip, the newest entry with the key whatever its state, so a miss can
//! say "stale", "expired" or "invalidated" without a second query on the admission path. Every
//! lookup ([`Store::lookup_explained`], [`Store::lookup`]) runs that query; the explanation
//! helpers for misses ([`Store::latest_for_key`], [`Store::nearest`]) live here too.

use super::{rows, sql, Entry, Store, StoreError};
use crate::types::{CacheKey, Namespace, Staleness};
use jiff::Timestamp;

/// What one explained lookup returns.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Explained {
    /// The entry to serve (see [`Store::lookup_explained`] for the rule).
    pub candidate: Option<Entry>,
    /// The newest entry with the key in any state (may equal the candidate).
    pub latest: Option<Entry>,
}

/// Oldest `finished_at` (ms) a step with `staleness` may be served at `now_ms`
/// (`i64::MIN` when unbounded); shared by every lookup and by the miss explanation so the
/// boundary is defined once.
pub fn oldest_finished_ms(staleness: Staleness, now_ms: i64) -> i64 {
    match staleness {
        Staleness::Unbounded => i64::MIN,
        Staleness::Seconds(s) => now_ms.saturating_sub(i64::try_from(s).unwrap_or(i64::MAX).saturating_mul(1000)),
    }
}

impl Store {
    /// The entry to serve a step with `key` and `staleness` at `now`, and the newest entry with
    /// the key in any state, in one round trip.
    ///
    /// Viable: not invalidated, not expired (`expires_at > now`), finished at most `staleness`
    /// ago (exactly that old still counts) and not after `now` (an entry from the future — a
    /// skewed clock — would otherwise be fresh for any staleness). Among viable entries the
    /// newest whose own staleness equals the step's wins; else the newest viable one (the
    /// caller then adopts it). Ties go to the higher id. `Seconds(0)` never reuses: no
    /// candidate, but the latest entry is still reported.
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
        let oldest = oldest_finished_ms(staleness, now_ms);
        self.bounded(async {
            let found = sqlx::query(sql::LOOKUP_EXPLAINED)
                .bind(key.as_str())
                .bind(staleness.to_db())
                .bind(now_ms)
                .bind(oldest)
                .fetch_all(&self.pool)
                .await?;
            let mut out = Explained::default();
            // Best first: the first row chosen by a viable branch is the candidate.
            for row in &found {
                let prefs: i64 = rows::get(row, "prefs")?;
                let entry = rows::entry(row)?;
                let viable = prefs & (sql::SAME_STALENESS | sql::ANY_STALENESS) != 0;
                if prefs & sql::LATEST != 0 {
                    out.latest = Some(entry.clone());
                }
                if viable && out.candidate.is_none() {
                    out.candidate = Some(entry);
                }
            }
            Ok(out)
        })
        .await
    }

    /// The candidate of [`Store::lookup_explained`] alone, for callers that need no
    /// explanation; the same query, so it always chooses what the webhook chooses. `Seconds(0)`
    /// does not touch the database.
    pub async fn lookup(
        &self,
        key: &CacheKey,
        staleness: Staleness,
        now: Timestamp,
    ) -> Result<Option<Entry>, StoreError> {
        if staleness.never_reuse() {
            return Ok(None);
        }
        Ok(self.lookup_explained(key, staleness, now).await?.candidate)
    }

    /// Newest entry with `key` (by finish) whatever its state, to explain a stale, expired or
    /// invalidated miss.
    pub async fn latest_for_key(&self, key: &CacheKey) -> Result<Option<Entry>, StoreError> {
        self.bounded(async {
            let row = sqlx::query(sql::LATEST_FOR_KEY).bind(key.as_str()).fetch_optional(&self.pool).await?;
            row.as_ref().map(rows::entry).transpose()
        })
        .await
    }

    /// Newest entry (by creation) of `template_name` in `namespace`, including invalidated and
    /// expired ones, so a miss can be explained against the closest earlier run.
    pub async fn nearest(&self, namespace: &Namespace, template_name: &str) -> Result<Option<Entry>, StoreError> {
        self.bounded(async {
            let row = sqlx::query(sql::NEAREST)
                .bind(namespace.as_str())
                .bind(template_name)
                .fetch_optional(&self.pool)
                .await?;
            row.as_ref().map(rows::entry).transpose()
        })
        .await
    }
}
