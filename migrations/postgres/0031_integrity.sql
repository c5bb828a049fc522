-- Integrity of served entries: why an entry was withdrawn by stepcache itself (an output
-- artifact found gone), and where each image tag was last seen pointing.
-- Applied by `Store::migrate`; never edit an applied migration, add one.

-- Set together with invalidated_at when stepcache withdraws an entry on its own
-- (`artifact-gone`); NULL for entries invalidated by an operator.
ALTER TABLE executions ADD COLUMN invalid_reason TEXT;

-- Newest observed digest of each image tag (`registry/repo:tag`), fed by every pod the
-- recorder sees, shared so every replica answers `image-moved` alike. One row per tag.
CREATE TABLE image_tags (
    image_ref   TEXT   NOT NULL PRIMARY KEY,
    digest      TEXT   NOT NULL,
    -- epoch ms of the observation (the container's start); only a newer one replaces a row
    observed_at BIGINT NOT NULL
);
CREATE INDEX image_tags_observed ON image_tags (observed_at);
