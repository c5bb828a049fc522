-- Hits the API server refused after stepcache answered them (a policy, an allow-list, another
-- webhook): the key is not served in that namespace again until an operator clears the row
-- (`stepcache refused clear`). One row per (key, namespace); the first refusal is kept.
-- Applied by `Store::migrate`; never edit an applied migration, add one.
CREATE TABLE refused_hits (
    cache_key  TEXT   NOT NULL,
    namespace  TEXT   NOT NULL,
    -- epoch ms when the refusal was detected
    refused_at BIGINT NOT NULL,
    pod_name   TEXT   NOT NULL,
    entry_id   BIGINT NOT NULL,
    cause      TEXT   NOT NULL,
    PRIMARY KEY (cache_key, namespace)
);
