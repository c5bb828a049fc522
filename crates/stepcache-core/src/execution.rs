//! Recorded executions as the decision core sees them: what a run produced and where
//! ([`Execution`], what the recorder hands the store), and the stored row around it ([`Entry`]).
//! Plain data: the store maps them to rows, the core decides with them.

use crate::types::{CacheKey, CacheSeed, EntryId, Namespace, Staleness, StepOutputs};
use jiff::Timestamp;

/// One run of a step: what it produced, under which key, and where it ran. The recorder builds
/// one from a finished pod; the store keeps it verbatim in every entry (an adopting copy carries
/// its original's run with only the staleness changed).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Execution {
    /// Namespace the run happened in.
    pub namespace: Namespace,
    /// The cache key the run was recorded under.
    pub key: CacheKey,
    /// The author's cache track (already part of `key`; kept to explain misses).
    pub seed: CacheSeed,
    /// The staleness the run was recorded (or adopted) with; lookups prefer an exact match.
    pub staleness: Staleness,
    /// What the run produced; served to hits.
    pub outputs: StepOutputs,
    /// The key material the key was derived from, to explain misses.
    pub material: serde_json::Value,
    /// Template that ran.
    pub template_name: String,
    /// Workflow that ran it.
    pub workflow_name: String,
    /// That workflow's uid.
    pub workflow_uid: String,
    /// Argo node id of the step.
    pub node_id: String,
    /// Pod that ran it.
    pub pod_name: String,
    /// That pod's uid (the idempotency key of originals: one row per pod uid).
    pub pod_uid: String,
    /// container name → imageID that actually ran.
    pub image_digests: std::collections::BTreeMap<String, String>,
    /// container name → image as written in the pod (tag or digest).
    pub images: std::collections::BTreeMap<String, String>,
    /// When the step's main container started.
    pub started_at: Timestamp,
    /// When it finished; staleness is measured from here.
    pub finished_at: Timestamp,
    /// After this instant the entry is never served and gc deletes it (`None`: never).
    pub expires_at: Option<Timestamp>,
}

/// A recorded execution as stored (an original run, or an adopting copy of one): the run plus
/// what the store adds to it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Entry {
    /// Row id; adopting copies point at their original through `source_id`.
    pub id: EntryId,
    /// The run itself; flattened so an entry's JSON keeps one flat object.
    #[serde(flatten)]
    pub run: Execution,
    /// When this row was written (for copies: when the copy was adopted).
    pub created_at: Timestamp,
    /// Set by `invalidate`; invalidated entries are never served and gc deletes them.
    pub invalidated_at: Option<Timestamp>,
    /// Set on adopting copies: the entry this one copies.
    pub source_id: Option<EntryId>,
    /// How many times the entry was served.
    pub hit_count: i64,
}
