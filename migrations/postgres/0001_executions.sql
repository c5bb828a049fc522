-- stepcache execution store (Postgres). Timestamps are epoch milliseconds (BIGINT) and JSON is
-- TEXT so the same statements serve Postgres and SQLite through sqlx's Any driver.
-- Applied by `Store::migrate` under sqlx's advisory lock; never edit an applied migration, add one.

CREATE TABLE executions (
    id                  BIGSERIAL PRIMARY KEY,
    namespace           TEXT   NOT NULL,
    cache_key           TEXT   NOT NULL,
    cache_seed          TEXT   NOT NULL DEFAULT '',
    -- seconds; -1 = unbounded (types::Staleness::to_db)
    max_cache_staleness BIGINT NOT NULL,
    outputs             TEXT   NOT NULL,
    key_material        TEXT   NOT NULL,
    template_name       TEXT   NOT NULL,
    workflow_name       TEXT   NOT NULL,
    workflow_uid        TEXT   NOT NULL,
    node_id             TEXT   NOT NULL,
    pod_name            TEXT   NOT NULL,
    pod_uid             TEXT   NOT NULL,
    image_digests       TEXT   NOT NULL DEFAULT '{}',
    images              TEXT   NOT NULL DEFAULT '{}',
    started_at          BIGINT NOT NULL,
    finished_at         BIGINT NOT NULL,
    created_at          BIGINT NOT NULL,
    expires_at          BIGINT,
    invalidated_at      BIGINT,
    -- adopting copies: the original they copy (no foreign key: gc deletes in any order)
    source_id           BIGINT,
    hit_count           BIGINT NOT NULL DEFAULT 0,
    -- idempotency: 'pod:<pod_uid>' for originals, 'copy:<source_id>:<staleness>' for copies
    dedup               TEXT   NOT NULL,
    CONSTRAINT executions_dedup_key UNIQUE (dedup)
);

-- lookup: newest viable entry for a key, and newest with the step's own staleness
CREATE INDEX executions_key_finished ON executions (cache_key, finished_at DESC, id DESC);
CREATE INDEX executions_key_staleness_finished
    ON executions (cache_key, max_cache_staleness, finished_at DESC, id DESC);
-- nearest earlier entry of a template, to explain a miss
CREATE INDEX executions_template_created
    ON executions (namespace, template_name, created_at DESC, id DESC);
-- gc
CREATE INDEX executions_expires ON executions (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX executions_invalidated ON executions (invalidated_at) WHERE invalidated_at IS NOT NULL;
-- list / invalidate by workflow, and by id together with the entry's adopting copies
CREATE INDEX executions_workflow ON executions (workflow_name);
CREATE INDEX executions_source ON executions (source_id) WHERE source_id IS NOT NULL;
