-- Runs a webhook request with `response.mode = "sync"` waits for (SPEC 4.5). One node serves a
-- SQLite file, so the node that waits is the node that finishes the run: the flag is kept for
-- the schema's sake and read by nothing else here.
ALTER TABLE runs ADD COLUMN awaited BOOLEAN NOT NULL DEFAULT FALSE;
