DROP TABLE dedup_keys;
ALTER TABLE activity DROP COLUMN replay_of;
ALTER TABLE activity DROP COLUMN details;
ALTER TABLE activity DROP COLUMN body_truncated;
ALTER TABLE activity DROP COLUMN body;
ALTER TABLE activity DROP COLUMN request;
