-- Execution latching: at most one running leader per cache key; waiters poll until the
-- leader's execution is recorded, or one of them is promoted when the leader fails.
-- Timestamps are epoch milliseconds.

CREATE TABLE latches (
    cache_key   TEXT   NOT NULL PRIMARY KEY,
    namespace   TEXT   NOT NULL,
    leader_pod  TEXT   NOT NULL,
    admitted_at BIGINT NOT NULL,
    -- running | succeeded | failed
    state       TEXT   NOT NULL,
    -- bumped whenever leadership changes hands
    generation  BIGINT NOT NULL DEFAULT 1
);
