//! Execution latching state: one running leader per cache key, shared by every replica
//! through the store. Each transition is a single conditional statement, so concurrent
//! admissions and polls elect exactly one leader and promote exactly one waiter.

use super::{Store, StoreError};
use crate::types::CacheKey;
use jiff::Timestamp;
use std::time::Duration;

/// What an admission became.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LatchRole {
    /// This pod runs the step.
    Leader,
    /// This pod waits for `leader_pod`.
    Waiter {
        /// The running leader.
        leader_pod: String,
    },
}

/// A latch row.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Latch {
    /// Namespace of the leader.
    pub namespace: String,
    /// Leader pod name.
    pub leader_pod: String,
    /// When the leader was admitted.
    pub admitted_at: Timestamp,
    /// `running`, `succeeded` or `failed`.
    pub state: String,
    /// Leadership changes so far + 1.
    pub generation: i64,
}

/// Latch states as stored.
pub mod state {
    /// The leader runs.
    pub const RUNNING: &str = "running";
    /// The leader's execution was recorded.
    pub const SUCCEEDED: &str = "succeeded";
    /// The leader failed or was deleted.
    pub const FAILED: &str = "failed";
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Store {
    /// Makes `pod` the leader for `key` unless a leader admitted within `window` is running;
    /// then it is a waiter. Re-admitting the current leader keeps it leader.
    pub async fn latch_acquire(
        &self,
        key: &CacheKey,
        namespace: &str,
        pod: &str,
        now: Timestamp,
        window: Duration,
    ) -> Result<LatchRole, StoreError> {
        let now_ms = now.as_millisecond();
        let stale_before = now_ms.saturating_sub(ms(window));
        self.bounded(async {
            let inserted = sqlx::query(
                "INSERT INTO latches (cache_key, namespace, leader_pod, admitted_at, state, generation) \
                 VALUES ($1, $2, $3, $4, 'running', 1) ON CONFLICT (cache_key) DO NOTHING",
            )
            .bind(key.as_str())
            .bind(namespace)
            .bind(pod)
            .bind(now_ms)
            .execute(&self.pool)
            .await?
            .rows_affected();
            if inserted == 1 {
                return Ok(LatchRole::Leader);
            }
            let taken = sqlx::query(
                "UPDATE latches SET namespace = $2, leader_pod = $3, admitted_at = $4, state = 'running', \
                 generation = generation + 1 \
                 WHERE cache_key = $1 AND (state <> 'running' OR admitted_at < $5)",
            )
            .bind(key.as_str())
            .bind(namespace)
            .bind(pod)
            .bind(now_ms)
            .bind(stale_before)
            .execute(&self.pool)
            .await?
            .rows_affected();
            if taken == 1 {
                return Ok(LatchRole::Leader);
            }
            let row = sqlx::query("SELECT leader_pod FROM latches WHERE cache_key = $1")
                .bind(key.as_str())
                .fetch_optional(&self.pool)
                .await?;
            let leader: String = match row {
                Some(r) => super::rows::get(&r, "leader_pod")?,
                None => String::new(),
            };
            if leader == pod || leader.is_empty() {
                Ok(LatchRole::Leader)
            } else {
                Ok(LatchRole::Waiter { leader_pod: leader })
            }
        })
        .await
    }

    /// The latch of `key`, if any.
    pub async fn latch_get(&self, key: &CacheKey) -> Result<Option<Latch>, StoreError> {
        self.bounded(async {
            let row = sqlx::query(
                "SELECT namespace, leader_pod, admitted_at, state, generation FROM latches WHERE cache_key = $1",
            )
            .bind(key.as_str())
            .fetch_optional(&self.pool)
            .await?;
            match row {
                None => Ok(None),
                Some(r) => {
                    let admitted: i64 = super::rows::get(&r, "admitted_at")?;
                    Ok(Some(Latch {
                        namespace: super::rows::get(&r, "namespace")?,
                        leader_pod: super::rows::get(&r, "leader_pod")?,
                        admitted_at: Timestamp::from_millisecond(admitted)
                            .map_err(|e| StoreError::Corrupt(format!("latch admitted_at: {e}")))?,
                        state: super::rows::get(&r, "state")?,
                        generation: super::rows::get(&r, "generation")?,
                    }))
                }
            }
        })
        .await
    }

    /// Settles the latch led by `pod` of `namespace` (no-op when that pod does not lead `key`;
    /// under `--scope cluster` a pod of the same name in another namespace is another pod).
    pub async fn latch_finish(
        &self,
        key: &CacheKey,
        namespace: &str,
        pod: &str,
        succeeded: bool,
    ) -> Result<bool, StoreError> {
        let s = if succeeded { state::SUCCEEDED } else { state::FAILED };
        self.bounded(async {
            let n = sqlx::query(
                "UPDATE latches SET state = $3 WHERE cache_key = $1 AND leader_pod = $2 AND state = 'running' \
                 AND namespace = $4",
            )
            .bind(key.as_str())
            .bind(pod)
            .bind(s)
            .bind(namespace)
            .execute(&self.pool)
            .await?
            .rows_affected();
            Ok(n == 1)
        })
        .await
    }

    /// Promotes `pod` when the leader failed or has run longer than `timeout`; true for
    /// exactly one of any number of concurrent callers.
    pub async fn latch_promote(
        &self,
        key: &CacheKey,
        namespace: &str,
        pod: &str,
        now: Timestamp,
        timeout: Duration,
    ) -> Result<bool, StoreError> {
        let now_ms = now.as_millisecond();
        self.bounded(async {
            let n = sqlx::query(
                "UPDATE latches SET leader_pod = $2, admitted_at = $3, state = 'running', generation = generation + 1, \
                 namespace = $5 \
                 WHERE cache_key = $1 AND (leader_pod <> $2 OR namespace <> $5) \
                 AND (state = 'failed' OR (state = 'running' AND admitted_at < $4))",
            )
            .bind(key.as_str())
            .bind(pod)
            .bind(now_ms)
            .bind(now_ms.saturating_sub(ms(timeout)))
            .bind(namespace)
            .execute(&self.pool)
            .await?
            .rows_affected();
            Ok(n == 1)
        })
        .await
    }
}
