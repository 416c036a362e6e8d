-- The activity log as a WITHOUT ROWID table keyed by its `req_` id: one B-tree less per row
-- (the rowid table and the automatic index of the TEXT primary key become one), written on
-- every webhook request. Its rows are small (~200 bytes), which is where WITHOUT ROWID pays.
-- `runs` stays a rowid table: its rows (input, trigger_input, output) are kilobytes.
CREATE TABLE activity_keyed (
    id          TEXT PRIMARY KEY NOT NULL,
    trigger_id  TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    method      TEXT NOT NULL,
    status_code INTEGER NOT NULL,
    outcome     TEXT NOT NULL,
    run_id      TEXT,
    error       TEXT,
    body_bytes  BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    remote_addr TEXT
) WITHOUT ROWID;
INSERT INTO activity_keyed
    (id, trigger_id, received_at, method, status_code, outcome, run_id, error, body_bytes,
     duration_ms, remote_addr)
SELECT id, trigger_id, received_at, method, status_code, outcome, run_id, error, body_bytes,
       duration_ms, remote_addr
FROM activity;
DROP TABLE activity;
ALTER TABLE activity_keyed RENAME TO activity;
CREATE INDEX activity_trigger ON activity (trigger_id, id);
