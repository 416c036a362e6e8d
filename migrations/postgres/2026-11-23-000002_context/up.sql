-- The deployment context store (SPEC 3): string keys to JSON values, persisted per deployment.
CREATE TABLE deployment_context (
    deployment_id TEXT NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    key           TEXT NOT NULL,
    value         TEXT NOT NULL,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (deployment_id, key)
);
