//! `--config triggerd.toml`: settings from a file, layered defaults → file → environment → flags.
//!
//! The file holds the same settings as the environment, named without the `TRIGGERD_` prefix and
//! in lower case:
//!
//! ```toml
//! listen = "0.0.0.0:8080"
//! database_url = "postgres://triggerd@db/triggerd"
//! public_url = "https://hooks.example.com"
//! hide_unknown_tokens = true
//! activity_retention = 5000
//! run_retention_days = 30
//! ```
//!
//! A value from the environment or a flag wins over the file; the file wins over the defaults.
//! Unknown keys are refused, so a typo does not silently fall back to a default.

use std::net::SocketAddr;
use std::path::Path;

use clap::ArgMatches;
use clap::parser::ValueSource;
use serde::Deserialize;

use crate::{ServeArgs, timeout_from_secs};

/// The settings a file may hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    listen: Option<SocketAddr>,
    database_url: Option<String>,
    public_url: Option<String>,
    api_token: Option<String>,
    hide_unknown_tokens: Option<bool>,
    activity_retention: Option<usize>,
    run_retention_days: Option<f64>,
    allow_private_networks: Option<bool>,
    allow_commands: Option<bool>,
    retry_schedule: Option<String>,
    db_lock_timeout_secs: Option<f64>,
    db_statement_timeout_secs: Option<f64>,
    db_connect_timeout_secs: Option<f64>,
    header_read_timeout_secs: Option<f64>,
    body_read_timeout_secs: Option<f64>,
    idle_timeout_secs: Option<f64>,
    max_connections: Option<usize>,
    memory_budget_mb: Option<u64>,
}

impl FileConfig {
    /// Reads and parses a file; the error names the file and the problem.
    pub fn read(path: &Path) -> Result<FileConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the config file {}: {e}", path.display()))?;
        let file: FileConfig = toml::from_str(&text)
            .map_err(|e| format!("the config file {} is invalid: {e}", path.display()))?;
        if let Some(days) = file.run_retention_days
            && !(days.is_finite() && days >= 0.0)
        {
            return Err(format!(
                "the config file {} is invalid: run_retention_days must be a number of days ≥ 0, got {days}",
                path.display()
            ));
        }
        for (key, secs) in [
            ("db_lock_timeout_secs", file.db_lock_timeout_secs),
            ("db_statement_timeout_secs", file.db_statement_timeout_secs),
            ("db_connect_timeout_secs", file.db_connect_timeout_secs),
            ("header_read_timeout_secs", file.header_read_timeout_secs),
            ("body_read_timeout_secs", file.body_read_timeout_secs),
            ("idle_timeout_secs", file.idle_timeout_secs),
        ] {
            if let Some(secs) = secs
                && timeout_from_secs(secs).is_none()
            {
                return Err(format!(
                    "the config file {} is invalid: {key} must be a number of seconds ≥ 0, got {secs}",
                    path.display()
                ));
            }
        }
        if file.max_connections == Some(0) {
            return Err(format!(
                "the config file {} is invalid: max_connections must be at least 1",
                path.display()
            ));
        }
        Ok(file)
    }

    /// Sets every option of `args` that still has its default (not given as a flag or in the
    /// environment) to the file's value.
    pub fn apply(self, matches: &ArgMatches, args: &mut ServeArgs) {
        let unset = |id: &str| {
            matches!(
                matches.value_source(id),
                None | Some(ValueSource::DefaultValue)
            )
        };
        if let Some(v) = self.listen.filter(|_| unset("listen")) {
            args.listen = v;
        }
        if let Some(v) = self.database_url.filter(|_| unset("database_url")) {
            args.db.database_url = v;
        }
        if let Some(v) = self.public_url.filter(|_| unset("public_url")) {
            args.public_url = Some(v);
        }
        if let Some(v) = self.api_token.filter(|_| unset("api_token")) {
            args.api_token = Some(v);
        }
        if let Some(v) = self
            .hide_unknown_tokens
            .filter(|_| unset("hide_unknown_tokens"))
        {
            args.hide_unknown_tokens = v;
        }
        if let Some(v) = self
            .activity_retention
            .filter(|_| unset("activity_retention"))
        {
            args.activity_retention = v;
        }
        if let Some(v) = self
            .run_retention_days
            .filter(|_| unset("run_retention_days"))
        {
            args.run_retention_days = Some(v);
        }
        if let Some(v) = self
            .allow_private_networks
            .filter(|_| unset("allow_private_networks"))
        {
            args.allow_private_networks = v;
        }
        if let Some(v) = self.allow_commands.filter(|_| unset("allow_commands")) {
            args.allow_commands = v;
        }
        if let Some(v) = self.retry_schedule.filter(|_| unset("retry_schedule")) {
            args.retry_schedule = Some(v);
        }
        if let Some(v) = self.max_connections.filter(|_| unset("max_connections")) {
            args.max_connections = v;
        }
        if let Some(v) = self.memory_budget_mb.filter(|_| unset("memory_budget_mb")) {
            args.memory_budget_mb = v;
        }
        let timeouts = [
            (
                self.db_lock_timeout_secs,
                "db_lock_timeout_secs",
                &mut args.db.db_lock_timeout_secs,
            ),
            (
                self.db_statement_timeout_secs,
                "db_statement_timeout_secs",
                &mut args.db.db_statement_timeout_secs,
            ),
            (
                self.db_connect_timeout_secs,
                "db_connect_timeout_secs",
                &mut args.db.db_connect_timeout_secs,
            ),
            (
                self.header_read_timeout_secs,
                "header_read_timeout_secs",
                &mut args.header_read_timeout_secs,
            ),
            (
                self.body_read_timeout_secs,
                "body_read_timeout_secs",
                &mut args.body_read_timeout_secs,
            ),
            (
                self.idle_timeout_secs,
                "idle_timeout_secs",
                &mut args.idle_timeout_secs,
            ),
        ];
        for (secs, id, arg) in timeouts {
            // `read` checked the values.
            if let Some(v) = secs.filter(|_| unset(id)).and_then(timeout_from_secs) {
                *arg = v;
            }
        }
    }
}
