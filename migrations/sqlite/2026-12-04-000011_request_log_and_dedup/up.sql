-- Request inspection and replay (SPEC 4.7): a request that started no run keeps what it carried
-- (`request`: path, redacted headers and query as JSON; `body`: the raw body up to the trigger's
-- `log_body_bytes`), the refusal details, and the request it replays. Accepted requests leave
-- them NULL: their run's `trigger_input` holds the request already, so the hot path writes
-- nothing more.
ALTER TABLE activity ADD COLUMN request TEXT;
ALTER TABLE activity ADD COLUMN body BLOB;
ALTER TABLE activity ADD COLUMN body_truncated BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE activity ADD COLUMN details TEXT;
ALTER TABLE activity ADD COLUMN replay_of TEXT;

-- De-duplication keys (`config.dedup`): one per trigger and key, written with the run it
-- started in the same transaction; a key stops counting at `expires_at` and is trimmed after.
CREATE TABLE dedup_keys (
    trigger_id TEXT NOT NULL,
    key        TEXT NOT NULL,
    run_id     TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (trigger_id, key)
) WITHOUT ROWID;
CREATE INDEX dedup_keys_expiry ON dedup_keys (expires_at);
