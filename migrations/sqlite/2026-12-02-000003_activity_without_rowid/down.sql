CREATE TABLE activity_rowid (
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
);
INSERT INTO activity_rowid
    (id, trigger_id, received_at, method, status_code, outcome, run_id, error, body_bytes,
     duration_ms, remote_addr)
SELECT id, trigger_id, received_at, method, status_code, outcome, run_id, error, body_bytes,
       duration_ms, remote_addr
FROM activity;
DROP TABLE activity;
ALTER TABLE activity_rowid RENAME TO activity;
CREATE INDEX activity_trigger ON activity (trigger_id, id);
