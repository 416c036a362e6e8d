-- Event hooks (SPEC 7): where run state changes are sent, and the outbox of deliveries.
CREATE TABLE hooks (
    id            TEXT PRIMARY KEY NOT NULL,
    -- workflow | deployment | run
    scope         TEXT NOT NULL,
    workflow      TEXT,
    deployment_id TEXT,
    run_id        TEXT,
    url           TEXT NOT NULL,
    -- JSON array of event types, e.g. ["run.completed","run.failed"]
    events        TEXT NOT NULL,
    -- whsec_ + base64; write-only in the API except GET /hooks/{id}/secret
    secret        TEXT NOT NULL,
    -- api | run (POST /runs hooks)
    origin        TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX hooks_workflow ON hooks (workflow) WHERE workflow IS NOT NULL;
CREATE INDEX hooks_deployment ON hooks (deployment_id) WHERE deployment_id IS NOT NULL;
CREATE INDEX hooks_run ON hooks (run_id) WHERE run_id IS NOT NULL;

-- One row per (event, hook), written in the same transaction as the run's state change. The
-- body is rendered from the run when sent: every field of an event's data is fixed by the time
-- the event happens (terminal fields are null for non-terminal events).
-- No foreign keys: the log of a removed hook stays readable through its run.
CREATE TABLE deliveries (
    id               TEXT PRIMARY KEY NOT NULL,
    hook_id          TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    run_id           TEXT NOT NULL,
    occurred_at      BIGINT NOT NULL,
    -- pending | delivered | failed
    status           TEXT NOT NULL,
    attempts         BIGINT NOT NULL,
    next_attempt_at  BIGINT,
    lease_owner      TEXT,
    lease_expires_at BIGINT,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    finished_at      BIGINT
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_hook ON deliveries (hook_id, id);
CREATE INDEX deliveries_run ON deliveries (run_id, id);

CREATE TABLE delivery_attempts (
    delivery_id   TEXT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempt       BIGINT NOT NULL,
    attempted_at  BIGINT NOT NULL,
    status_code   INTEGER,
    duration_ms   BIGINT NOT NULL,
    error         TEXT,
    response_body TEXT,
    PRIMARY KEY (delivery_id, attempt)
) WITHOUT ROWID;
