-- SQLite makes `activity` a WITHOUT ROWID table in this migration (one B-tree less per webhook
-- request). PostgreSQL has no rowid B-tree to drop: its heap and primary-key index stay as they
-- are. Kept so that both backends share migration names.
SELECT 1;
