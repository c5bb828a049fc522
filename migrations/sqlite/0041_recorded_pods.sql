-- Record once, ever: one row per pod whose outputs were ever recorded, kept when its entry is
-- invalidated, withdrawn (`artifact-gone`) or expired and gc deletes the entry. The recorder
-- re-lists every succeeded pod Argo keeps after each restart; this table is what stops a pod
-- whose entry was withdrawn from being recorded (and served) again. Written in the same
-- transaction as the entry. gc never deletes from it (a row is ~100 bytes per recorded pod).
-- Applied by `Store::migrate`; never edit an applied migration, add one.

CREATE TABLE recorded_pods (
    pod_uid     TEXT   NOT NULL PRIMARY KEY,
    -- epoch ms when the pod was first recorded
    recorded_at BIGINT NOT NULL
);

-- Pods recorded before this table existed.
INSERT INTO recorded_pods (pod_uid, recorded_at)
    SELECT pod_uid, MIN(created_at) FROM executions WHERE source_id IS NULL GROUP BY pod_uid;
