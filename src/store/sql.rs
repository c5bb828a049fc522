//! SQL text for the execution store, written once for both backends.
//!
//! Placeholders are `$N` everywhere: Postgres takes them natively and sqlx's SQLite driver binds
//! `$N` by number, so no rewriting is needed. Where the dialects differ (substring search, byte
//! length, row generation) the [`Backend`] picks the fragment. Must not import other modules.

/// The database behind a store (and so the SQL dialect); chosen once from the URL scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL (shared, multi-replica deployments).
    Postgres,
    /// SQLite (single replica, local file).
    Sqlite,
}

/// The columns of an entry, in the order [`super::rows::entry`] reads them by name.
macro_rules! cols {
    () => {
        "id, namespace, cache_key, cache_seed, max_cache_staleness, outputs, key_material, \
         template_name, workflow_name, workflow_uid, node_id, pod_name, pod_uid, image_digests, \
         images, started_at, finished_at, created_at, expires_at, invalidated_at, source_id, \
         hit_count"
    };
}

/// Condition shared by both lookup branches: the key's live rows young enough for the step and
/// not finished after now. `$1` key, `$3` now (ms), `$4` oldest acceptable finished_at (ms;
/// i64::MIN when unbounded).
macro_rules! viable {
    () => {
        "cache_key = $1 AND invalidated_at IS NULL AND (expires_at IS NULL OR expires_at > $3) \
         AND finished_at >= $4 AND finished_at <= $3"
    };
}

/// The one lookup, in one round trip: the newest viable entry carrying the step's staleness
/// (`$2`; bit [`SAME_STALENESS`] of `prefs`), the newest viable one whatever its staleness
/// ([`ANY_STALENESS`]), and the newest entry with the key in any state ([`LATEST`]), which
/// explains a miss (stale, expired, invalidated). Each branch is a top-1 probe of an index on
/// the key, so cost does not grow with the table, nor with how many entries the key has. Each
/// distinct entry then comes back once, with the bits of every branch that chose it: on a hit
/// all three branches usually choose the same entry, so one row is sent and decoded instead of
/// three copies of its outputs and key material. Best first (`prefs` descending).
pub const LOOKUP_EXPLAINED: &str = concat!(
    "SELECT prefs, ",
    cols!(),
    " FROM (SELECT SUM(branch_bit) OVER (PARTITION BY id) AS prefs,",
    " ROW_NUMBER() OVER (PARTITION BY id ORDER BY branch_bit DESC) AS nth, ",
    cols!(),
    " FROM (SELECT * FROM (SELECT 4 AS branch_bit, ",
    cols!(),
    " FROM executions WHERE ",
    viable!(),
    " AND max_cache_staleness = $2 ORDER BY finished_at DESC, id DESC LIMIT 1) AS same_s",
    " UNION ALL SELECT * FROM (SELECT 2 AS branch_bit, ",
    cols!(),
    " FROM executions WHERE ",
    viable!(),
    " ORDER BY finished_at DESC, id DESC LIMIT 1) AS any_s",
    " UNION ALL SELECT * FROM (SELECT 1 AS branch_bit, ",
    cols!(),
    " FROM executions WHERE cache_key = $1 ORDER BY finished_at DESC, id DESC LIMIT 1) AS latest",
    ") AS branches) AS chosen WHERE nth = 1 ORDER BY prefs DESC"
);

/// `prefs` bit of [`LOOKUP_EXPLAINED`]: viable, with the step's own staleness.
pub const SAME_STALENESS: i64 = 4;
/// `prefs` bit of [`LOOKUP_EXPLAINED`]: viable, any staleness (the step adopts it).
pub const ANY_STALENESS: i64 = 2;
/// `prefs` bit of [`LOOKUP_EXPLAINED`]: the key's newest entry in any state.
pub const LATEST: i64 = 1;

/// Inserts an original or an adopting copy unless its dedup token exists; returns the new row.
pub const INSERT: &str = concat!(
    "INSERT INTO executions (namespace, cache_key, cache_seed, max_cache_staleness, outputs, \
     key_material, template_name, workflow_name, workflow_uid, node_id, pod_name, pod_uid, \
     image_digests, images, started_at, finished_at, created_at, expires_at, source_id, dedup) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
     $19, $20) ON CONFLICT (dedup) DO NOTHING RETURNING ",
    cols!()
);

/// Claims a pod uid for recording (`$1` uid, `$2` now in ms); affects no row when the pod was
/// ever recorded before. The claim is never deleted, so a pod is recorded at most once.
pub const CLAIM_POD: &str =
    "INSERT INTO recorded_pods (pod_uid, recorded_at) VALUES ($1, $2) ON CONFLICT (pod_uid) DO NOTHING";

/// The claim of a pod uid, if it was ever recorded.
pub const POD_CLAIMED: &str = "SELECT recorded_at FROM recorded_pods WHERE pod_uid = $1";

/// The row holding a dedup token (after an insert found it taken).
pub const BY_DEDUP: &str = concat!("SELECT ", cols!(), " FROM executions WHERE dedup = $1");

/// One entry by id.
pub const BY_ID: &str = concat!("SELECT ", cols!(), " FROM executions WHERE id = $1");

/// Newest entry of a key whatever its state, to explain why it was not served.
pub const LATEST_FOR_KEY: &str =
    concat!("SELECT ", cols!(), " FROM executions WHERE cache_key = $1 ORDER BY finished_at DESC, id DESC LIMIT 1");

/// Newest entry of a template in a namespace whatever its state, to explain a miss.
pub const NEAREST: &str = concat!(
    "SELECT ",
    cols!(),
    " FROM executions WHERE namespace = $1 AND template_name = $2 \
     ORDER BY created_at DESC, id DESC LIMIT 1"
);

/// Counts a hit.
pub const NOTE_HIT: &str = "UPDATE executions SET hit_count = hit_count + 1 WHERE id = $1";

/// Highest successfully applied migration version.
pub const APPLIED_VERSION: &str = "SELECT MAX(version) AS version FROM _sqlx_migrations WHERE success";

/// Rows already in a namespace (the offset for synthetic key numbering).
pub const COUNT_IN_NAMESPACE: &str = "SELECT COUNT(*) AS n FROM executions WHERE namespace = $1";

/// Prefix of a list query; the filter and ordering are appended.
pub const LIST_PREFIX: &str = concat!("SELECT ", cols!(), " FROM executions WHERE ");

/// Prefix of an invalidation; `$1` is the instant, the filter is appended.
pub const INVALIDATE_PREFIX: &str = "UPDATE executions SET invalidated_at = $1 WHERE invalidated_at IS NULL AND ";

const FILL_COLUMNS: &str = "namespace, cache_key, cache_seed, max_cache_staleness, outputs, \
     key_material, template_name, workflow_name, workflow_uid, node_id, pod_name, pod_uid, \
     image_digests, images, started_at, finished_at, created_at, dedup";

/// The projected values of a synthetic row `g`. `$1` namespace, `$2` key prefix (16 hex),
/// `$3` key offset, `$4` 1 for distinct keys / 0 for one shared key, `$5` run tag, `$6` now (ms).
fn fill_values(hex48: &str) -> String {
    let format = crate::types::KEY_FORMAT;
    format!(
        "$1, '{format}:' || $2 || {hex48}, '', -1, \
         '{{\"parameters\":[{{\"name\":\"out\",\"value\":\"' || g || '\"}}]}}', \
         '{{\"synthetic\":' || g || '}}', 'synthetic', 'synthetic-' || $5, 'synthetic-' || $5, \
         'synthetic-' || g, 'synthetic-' || $5 || '-' || g, $5 || '-' || g, \
         '{{\"main\":\"example.com/synthetic@sha256:' || $2 || '\"}}', \
         '{{\"main\":\"example.com/synthetic:latest\"}}', \
         $6 - (g % 3600) * 1000 - 30000, $6 - (g % 3600) * 1000, $6, 'pod:' || $5 || '-' || g"
    )
}

impl Backend {
    /// `haystack` contains `needle` (exact, case-sensitive, no wildcard escaping needed).
    pub fn contains(self, haystack: &str, needle: &str) -> String {
        match self {
            Backend::Postgres => format!("strpos({haystack}, {needle}) > 0"),
            Backend::Sqlite => format!("instr({haystack}, {needle}) > 0"),
        }
    }

    /// Per-namespace aggregates; `bytes` in encoded bytes, `saved_ms` = Σ hits × run time.
    pub fn stats(self) -> String {
        let len = |c: &str| match self {
            Backend::Postgres => format!("octet_length({c})"),
            Backend::Sqlite => format!("length(CAST({c} AS BLOB))"),
        };
        format!(
            "SELECT namespace, COUNT(*) AS entries, \
             CAST(COALESCE(SUM(CASE WHEN source_id IS NULL THEN 1 ELSE 0 END), 0) AS BIGINT) AS originals, \
             CAST(COALESCE(SUM(CASE WHEN source_id IS NULL THEN 0 ELSE 1 END), 0) AS BIGINT) AS copies, \
             CAST(COALESCE(SUM(hit_count), 0) AS BIGINT) AS hits, \
             CAST(COALESCE(SUM({} + {}), 0) AS BIGINT) AS bytes, \
             CAST(COALESCE(SUM(hit_count * (finished_at - started_at)), 0) AS BIGINT) AS saved_ms \
             FROM executions GROUP BY namespace ORDER BY namespace",
            len("outputs"),
            len("key_material")
        )
    }

    /// One gc batch of expired rows (`$1` now, `$2` batch size). On Postgres, rows another
    /// replica's gc is deleting are skipped rather than waited for.
    pub fn gc_expired(self) -> String {
        format!(
            "DELETE FROM executions WHERE id IN \
             (SELECT id FROM executions WHERE expires_at <= $1 LIMIT $2{})",
            self.skip_locked()
        )
    }

    /// One gc batch of invalidated rows (`$1` batch size).
    pub fn gc_invalidated(self) -> String {
        format!(
            "DELETE FROM executions WHERE id IN \
             (SELECT id FROM executions WHERE invalidated_at IS NOT NULL LIMIT $1{})",
            self.skip_locked()
        )
    }

    fn skip_locked(self) -> &'static str {
        match self {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            // SQLite has one writer at a time; there is nothing to skip.
            Backend::Sqlite => "",
        }
    }

    /// Inserts `$7` synthetic rows in one statement (rows generated by the database itself).
    pub fn fill(self) -> String {
        match self {
            Backend::Postgres => format!(
                "INSERT INTO executions ({FILL_COLUMNS}) SELECT {} \
                 FROM generate_series(CAST(0 AS BIGINT), $7 - 1) AS s(g)",
                fill_values("lpad(to_hex(($3 + g) * $4), 48, '0')")
            ),
            Backend::Sqlite => format!(
                "WITH RECURSIVE s(g) AS (SELECT 0 UNION ALL SELECT g + 1 FROM s WHERE g + 1 < $7) \
                 INSERT INTO executions ({FILL_COLUMNS}) SELECT {} FROM s",
                fill_values("printf('%048x', ($3 + g) * $4)")
            ),
        }
    }
}
