DROP TABLE activity;
DROP TABLE runs;
DROP TABLE webhook_tokens;
DROP TABLE triggers;
DROP TABLE deployments;
DROP TABLE workflow_versions;
DROP TABLE workflows;
DROP TABLE settings;
