DROP TABLE dedup_keys;
ALTER TABLE activity
    DROP COLUMN replay_of,
    DROP COLUMN details,
    DROP COLUMN body_truncated,
    DROP COLUMN body,
    DROP COLUMN request;
