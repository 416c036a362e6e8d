-- triggerd initial schema (PostgreSQL). Keep in step with ../../sqlite/2026-11-23-000001_initial.
-- Conventions: ids and JSON documents are TEXT, instants are BIGINT microseconds since the epoch.
-- Only types that diesel's MultiConnection maps on both backends: no JSONB, TIMESTAMPTZ or UUID.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

CREATE TABLE workflows (
    name           TEXT PRIMARY KEY NOT NULL,
    latest_version BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

CREATE TABLE workflow_versions (
    workflow   TEXT NOT NULL REFERENCES workflows (name) ON DELETE CASCADE,
    version    BIGINT NOT NULL,
    definition TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (workflow, version)
);

-- A workflow cannot be deleted while deployments exist (no cascade from workflows).
-- pinned_version NULL = the deployment tracks the latest version (NULL is not checked by the FK).
CREATE TABLE deployments (
    id             TEXT PRIMARY KEY NOT NULL,
    workflow       TEXT NOT NULL REFERENCES workflows (name),
    name           TEXT NOT NULL,
    pinned_version BIGINT,
    created_at     BIGINT NOT NULL,
    UNIQUE (workflow, name),
    FOREIGN KEY (workflow, pinned_version) REFERENCES workflow_versions (workflow, version)
);

CREATE TABLE triggers (
    id            TEXT PRIMARY KEY NOT NULL,
    deployment_id TEXT NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    name          TEXT,
    trigger_type  TEXT NOT NULL,
    enabled       BOOLEAN NOT NULL,
    config        TEXT NOT NULL,
    declared      BOOLEAN NOT NULL,
    fire_count    BIGINT NOT NULL DEFAULT 0,
    last_fired_at BIGINT,
    next_fire_at  BIGINT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE UNIQUE INDEX triggers_deployment_name ON triggers (deployment_id, name) WHERE name IS NOT NULL;
CREATE INDEX triggers_deployment_id ON triggers (deployment_id, id);

-- expires_at NULL = the current token; set = rotated away, still accepted until then.
CREATE TABLE webhook_tokens (
    token      TEXT PRIMARY KEY NOT NULL,
    trigger_id TEXT NOT NULL REFERENCES triggers (id) ON DELETE CASCADE,
    expires_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX webhook_tokens_trigger_id ON webhook_tokens (trigger_id);

-- No foreign keys: runs of a deleted deployment or trigger stay readable.
CREATE TABLE runs (
    id                 TEXT PRIMARY KEY NOT NULL,
    deployment_id      TEXT NOT NULL,
    workflow           TEXT NOT NULL,
    workflow_version   BIGINT NOT NULL,
    trigger_id         TEXT,
    source             TEXT NOT NULL,
    status             TEXT NOT NULL,
    input              TEXT NOT NULL,
    trigger_input      TEXT NOT NULL,
    context            TEXT NOT NULL,
    step_executions    TEXT NOT NULL,
    waiting_reason     TEXT,
    waiting_payload    TEXT,
    waiting_expires_at BIGINT,
    final_output       TEXT,
    error              TEXT,
    created_at         BIGINT NOT NULL,
    started_at         BIGINT,
    finished_at        BIGINT,
    lease_owner        TEXT,
    lease_expires_at   BIGINT
);
-- Claiming: only unfinished runs are in this index, walked oldest first (ids sort by creation).
CREATE INDEX runs_claimable ON runs (id) WHERE status IN ('pending', 'running');
CREATE INDEX runs_deployment ON runs (deployment_id, id);
CREATE INDEX runs_trigger ON runs (trigger_id, id);
CREATE INDEX runs_status ON runs (status, id);

-- Every run started by a trigger (a webhook request, a cron slot) counts as one fire, in the
-- transaction that stores the run. A trigger, not code, so that the hot path's INSERT stays a
-- cached prepared statement instead of an extra UPDATE prepared for every request.
CREATE FUNCTION runs_count_fire() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE triggers SET fire_count = fire_count + 1, last_fired_at = NEW.created_at
    WHERE id = NEW.trigger_id;
    RETURN NULL;
END
$$;
CREATE TRIGGER runs_count_fire AFTER INSERT ON runs
FOR EACH ROW WHEN (NEW.trigger_id IS NOT NULL) EXECUTE FUNCTION runs_count_fire();

-- No foreign key: the log of a deleted trigger stays readable.
CREATE TABLE activity (
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
CREATE INDEX activity_trigger ON activity (trigger_id, id);
