-- Decision log: what the webhook decided for each step pod, kept for a bounded time (gc prunes
-- it) so `stepcache why` can explain pods that are long gone and the status page can show
-- recent misses and time saved. Timestamps are epoch milliseconds; differences is a JSON array.

CREATE TABLE decisions (
    id            BIGSERIAL PRIMARY KEY,
    decided_at    BIGINT NOT NULL,
    namespace     TEXT   NOT NULL,
    pod_name      TEXT   NOT NULL,
    workflow_name TEXT   NOT NULL,
    node_id       TEXT   NOT NULL,
    template_name TEXT   NOT NULL,
    -- hit | miss | shadow-hit | latched | error
    decision      TEXT   NOT NULL,
    reason        TEXT   NOT NULL,
    cache_key     TEXT   NOT NULL,
    max_cache_staleness BIGINT NOT NULL,
    cache_seed    TEXT   NOT NULL,
    entry_id      BIGINT,
    nearest_id    BIGINT,
    differences   TEXT   NOT NULL,
    saved_ms      BIGINT NOT NULL
);
CREATE INDEX decisions_pod ON decisions (namespace, pod_name, id);
CREATE INDEX decisions_at ON decisions (decided_at);
