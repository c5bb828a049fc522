//! Execution latching at admission and at poll time: the first identical miss leads, the
//! others become waiters that poll `/latch` until the leader's execution is recorded (then
//! their outputs are handed to Argo exactly like a hit) or the leader fails (then exactly
//! one waiter is promoted). See `docs/latching.md`.

use super::{Admitter, Explain};
use crate::argo::template::{StepPod, TemplateKind};
use crate::decision::Decision;
use crate::key::KeyMaterial;
use crate::rewrite::{self, TaskResultTarget, WaitInfo};
use crate::store::latch::{state, LatchRole};
use crate::types::{CacheKey, Staleness};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Installation settings for latching.
#[derive(Clone, Debug, PartialEq)]
pub struct LatchConfig {
    /// URL waiters poll, e.g. `https://stepcache.stepcache.svc/latch`.
    pub url: String,
    /// CA bundle (PEM) waiters trust for that URL.
    pub ca_bundle: Option<String>,
    /// A running leader admitted longer ago than this no longer latches new arrivals.
    pub window: Duration,
    /// A leader running longer than this is treated as failed for its waiters.
    pub timeout: Duration,
}

/// What a waiter's token carries (signed, so a pod cannot claim another node's outputs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatchClaims {
    /// Cache key waited for.
    pub key: CacheKey,
    /// Waiter pod name.
    pub pod: String,
    /// Where the waiter's outputs go.
    pub target: TaskResultTarget,
}

/// Answer to a poll.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LatchAnswer {
    /// `waiting`, `done` (outputs delivered; exit 0) or `run` (promoted; exit and be retried).
    pub state: String,
    /// Entry whose outputs were delivered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry_id: Option<i64>,
    /// The task result written for the waiter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_result: Option<rewrite::WorkflowTaskResult>,
    /// Why.
    pub reason: String,
}

/// Why a poll could not be answered at all.
#[derive(Debug, thiserror::Error)]
pub enum LatchError {
    /// Token forged or malformed.
    #[error("invalid latch token: {0}")]
    Token(String),
    /// Latching is not configured on this installation.
    #[error("latching is not enabled on this installation")]
    Disabled,
}

impl LatchError {
    /// Bounded metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            LatchError::Token(_) => "token",
            LatchError::Disabled => "disabled",
        }
    }
}

fn answer(state: &str, reason: String) -> LatchAnswer {
    LatchAnswer { state: state.into(), entry_id: None, task_result: None, reason }
}

impl Admitter {
    /// True when this step may latch: asked for, enabled, delivered through task results
    /// (Argo ≥ 3.3), and not a container set.
    pub(super) fn may_latch(&self, step: &StepPod, wants: bool) -> bool {
        wants
            && self.config.latch.is_some()
            && rewrite::uses_task_result(step.layout)
            && step.kind != TemplateKind::ContainerSet
            && step.workflow_uid.is_some()
    }

    /// Leader: `None` (the caller marks a normal miss). Waiter: the waiting explanation.
    /// A dry run only predicts the role from the current latch and writes nothing: a pod that
    /// will never exist must not become the leader every identical real step waits for.
    pub(super) async fn try_latch(
        &self,
        pod: &Pod,
        step: &StepPod,
        km: &KeyMaterial,
        now: Timestamp,
        dry_run: bool,
        mut ex: Explain,
    ) -> Result<Explain, Explain> {
        let Some(cfg) = &self.config.latch else { return Err(ex) };
        // Waiters run `stepcache wait`, a Linux binary: a Windows step runs instead of waiting.
        if stepcache_core::hitpod::pod_os(pod) == stepcache_core::hitpod::PodOs::Windows {
            return Err(ex);
        }
        // A waiter pod must meet the namespace's LimitRanges like a hit pod; unknown ones → run.
        let Ok(limits) = self.namespace_limits(step).await else { return Err(ex) };
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let role = if dry_run {
            self.predict_latch(&km.key, step.namespace.as_str(), &pod_name, now, cfg.window).await
        } else {
            self.store.latch_acquire(&km.key, step.namespace.as_str(), &pod_name, now, cfg.window).await
        };
        match role {
            Ok(LatchRole::Waiter { leader_pod }) => {
                let claims = LatchClaims { key: km.key.clone(), pod: pod_name, target: TaskResultTarget::from(step) };
                let token = self.signer.sign_token(&serde_json::to_vec(&claims).unwrap_or_default());
                let w = WaitInfo {
                    key: &km.key,
                    url: &cfg.url,
                    token: &token,
                    ca_bundle: cfg.ca_bundle.as_deref(),
                    leader_pod: &leader_pod,
                };
                ex.patch = rewrite::build_wait_patch(pod, &w, &self.config.rewrite, &limits);
                ex.decide(Decision::Latched);
                ex.reason = format!("identical step {leader_pod} is running; waiting for its result");
                Ok(ex)
            }
            Ok(LatchRole::Leader) => Err(ex),
            Err(e) => {
                tracing::warn!(error = %e, "latch unavailable; step runs");
                Err(ex)
            }
        }
    }

    /// The role `latch_acquire` would give, read-only.
    async fn predict_latch(
        &self,
        key: &CacheKey,
        namespace: &str,
        pod: &str,
        now: Timestamp,
        window: Duration,
    ) -> Result<LatchRole, crate::store::StoreError> {
        let stale_before = now.as_millisecond().saturating_sub(i64::try_from(window.as_millis()).unwrap_or(i64::MAX));
        Ok(match self.store.latch_get(key).await? {
            Some(l)
                if l.state == state::RUNNING
                    && l.admitted_at.as_millisecond() >= stale_before
                    && !(l.leader_pod == pod && l.namespace == namespace) =>
            {
                LatchRole::Waiter { leader_pod: l.leader_pod }
            }
            _ => LatchRole::Leader,
        })
    }

    /// Answers a waiter's poll: deliver the leader's recorded outputs, promote one waiter
    /// when the leader failed or timed out, or keep waiting.
    pub async fn poll_latch(&self, token: &str, now: Timestamp) -> Result<LatchAnswer, LatchError> {
        let cfg = self.config.latch.as_ref().ok_or(LatchError::Disabled)?;
        let payload = self.signer.verify_token(token).map_err(|e| LatchError::Token(e.to_string()))?;
        let claims: LatchClaims = serde_json::from_slice(&payload).map_err(|e| LatchError::Token(e.to_string()))?;
        let latch = match self.store.latch_get(&claims.key).await {
            Ok(l) => l,
            Err(e) => return Ok(answer("waiting", format!("store unavailable: {e}"))),
        };
        let entry = match self.store.lookup(&claims.key, Staleness::Unbounded, now).await {
            Ok(e) => e,
            Err(e) => return Ok(answer("waiting", format!("store unavailable: {e}"))),
        };
        let fresh = |finished: Timestamp| {
            latch.as_ref().is_none_or(|l| finished >= l.admitted_at || l.state == state::SUCCEEDED)
        };
        if let Some(entry) = entry.filter(|e| fresh(e.run.finished_at)) {
            let tr = rewrite::build_task_result_for(&claims.target, &entry.run.outputs);
            match &self.ports.task_results {
                super::TaskResults::Api(w) => {
                    if let Err(e) = w.upsert(&tr).await {
                        return Ok(answer("waiting", format!("task result not written yet: {e}")));
                    }
                }
                super::TaskResults::Unavailable => {
                    return Ok(answer("waiting", "no Kubernetes API to deliver the outputs".into()));
                }
                super::TaskResults::Assumed => {}
            }
            let _ = self.store.note_hit(entry.id).await;
            return Ok(LatchAnswer {
                state: "done".into(),
                entry_id: Some(entry.id.0),
                task_result: Some(tr),
                reason: format!("leader's execution recorded as entry {}", entry.id),
            });
        }
        match latch {
            Some(l) if l.leader_pod == claims.pod && l.namespace == claims.target.namespace => {
                Ok(answer("run", "this pod leads: it must run the step".into()))
            }
            Some(l)
                if l.state == state::FAILED
                    || l.admitted_at.as_millisecond() + cfg.timeout.as_millis() as i64 <= now.as_millisecond() =>
            {
                match self
                    .store
                    .latch_promote(&claims.key, &claims.target.namespace, &claims.pod, now, cfg.timeout)
                    .await
                {
                    Ok(true) => {
                        Ok(answer("run", format!("leader {} failed or timed out; this pod takes over", l.leader_pod)))
                    }
                    Ok(false) => Ok(answer("waiting", "another waiter took over".into())),
                    Err(e) => Ok(answer("waiting", format!("store unavailable: {e}"))),
                }
            }
            Some(l) => Ok(answer("waiting", format!("leader {} is {}", l.leader_pod, l.state))),
            None => Ok(answer("waiting", "no latch yet".into())),
        }
    }
}
