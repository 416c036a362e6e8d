//! Triggers: create, change, rotate, remove; a webhook token resolved to a typed trigger; the
//! next cron slot. The one place where a stored trigger row becomes a typed
//! [`TriggerConfig`] ([`config_of`]) and where webhook tokens are generated ([`new_token`]).
//!
//! Every committed change calls [`TriggerChanges::changed`](crate::TriggerChanges::changed), so
//! caches and the cron scheduler learn of it without hand-placed invalidations.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;
use triggerd_domain::Problem;
use triggerd_domain::api_keys::GeneratedApiKey;
use triggerd_domain::cron::When;
use triggerd_domain::definition::Definition;
use triggerd_domain::ids::{IdKind, new_id, new_webhook_token};
use triggerd_domain::inputs::InputSpecs;
use triggerd_domain::run::rfc3339;
use triggerd_domain::trigger::{
    TriggerConfig, TriggerType, WebhookConfig, merge_config, merge_webhook_config,
};
use triggerd_storage::{NewTrigger, StoreError, TriggerPatch, TriggerRow};

use crate::{App, AppError};

/// Longest `grace_seconds` of a rotation: 7 days.
pub const MAX_GRACE_SECONDS: u64 = 7 * 86_400;

/// Everything the webhook hot path needs to know about a token, parsed once.
#[derive(Debug, Clone)]
pub struct WebhookTrigger {
    /// `trg_...`
    pub trigger_id: String,
    /// `dep_...`
    pub deployment_id: String,
    /// The workflow's name.
    pub workflow: String,
    /// The version the deployment runs.
    pub workflow_version: i64,
    /// Disabled triggers answer 404 (and the request is logged against them).
    pub enabled: bool,
    /// Set when the token was rotated with a grace period: valid until then (µs).
    pub token_expires_at: Option<i64>,
    /// The compiled definition.
    pub definition: Arc<Definition>,
    /// The parsed webhook configuration.
    pub config: WebhookConfig,
}

/// A trigger to create through the API (`POST /deployments/{id}/triggers`).
#[derive(Debug, Clone)]
pub struct TriggerRequest {
    /// `webhook` or `cron`.
    pub trigger_type: TriggerType,
    /// Unique per deployment when set.
    pub name: Option<String>,
    /// Whether it starts runs (default true).
    pub enabled: bool,
    /// The configuration as submitted.
    pub config: Value,
}

/// A stored trigger's type.
pub fn type_of(row: &TriggerRow) -> Result<TriggerType, AppError> {
    row.trigger_type
        .parse()
        .map_err(|p: Problem| AppError::internal(format!("trigger {}: {}", row.id, p.message)))
}

/// A stored trigger's configuration, typed. Stored configurations were validated when stored;
/// one this build cannot read is a bug.
pub fn config_of(row: &TriggerRow) -> Result<TriggerConfig, AppError> {
    let trigger_type = type_of(row)?;
    let stored: Value = serde_json::from_str(&row.config)
        .map_err(|e| AppError::internal(format!("trigger {}: config: {e}", row.id)))?;
    TriggerConfig::from_stored(trigger_type, &stored).map_err(|problems| {
        AppError::internal(format!(
            "trigger {}: stored config does not parse: {}",
            row.id,
            problems
                .first()
                .map(ToString::to_string)
                .unwrap_or_default()
        ))
    })
}

/// A new webhook token (`wht_` + 256 random bits).
pub fn new_token() -> Result<String, AppError> {
    new_webhook_token().map_err(|e| AppError::internal(format!("no randomness for a token: {e}")))
}

/// Generates the API keys `config` asks for (`{"generate": true}`) and dates its new keys, so it
/// can be stored; returns the generated keys, which are shown once and never stored. See
/// [`TriggerConfig::resolve_api_keys`].
pub(crate) fn resolve_api_keys(
    config: &mut TriggerConfig,
    previous: Option<&TriggerConfig>,
    reuse_generated: bool,
    now: i64,
) -> Result<Vec<GeneratedApiKey>, triggerd_domain::ids::IdError> {
    config.resolve_api_keys(previous, reuse_generated, &rfc3339(now))
}

fn no_randomness(e: triggerd_domain::ids::IdError) -> AppError {
    AppError::internal(format!("no randomness for an API key: {e}"))
}

/// Checks a trigger configuration against a workflow's inputs. Problems are reported at their
/// path under `config.` (the API; a definition's triggers are checked where the definition is).
pub fn validate_config(
    trigger_type: TriggerType,
    config: &Value,
    inputs: &InputSpecs,
) -> Result<TriggerConfig, Vec<Problem>> {
    TriggerConfig::parse(trigger_type, config, inputs)
}

/// The problem with a one-time cron trigger whose instant is not after `now` (µs): it would
/// never fire. Reported at `at` (`config.at`, `triggers[0].config.at`).
pub(crate) fn past_instant(config: &TriggerConfig, now: i64, at: &str) -> Option<Problem> {
    match config {
        TriggerConfig::Cron(c) => match c.when {
            When::At(instant) if instant.timestamp_micros() <= now => Some(Problem::new(
                at,
                format!(
                    "{} is in the past: a one-time trigger needs an instant that is still to come",
                    instant.to_rfc3339()
                ),
            )),
            _ => None,
        },
        TriggerConfig::Webhook(_) => None,
    }
}

/// A trigger's `next_fire_at` for a configuration: the next slot of an enabled cron trigger
/// after `now`; `None` for webhooks, disabled triggers and one-time triggers that have fired.
pub(crate) fn next_fire_for(
    config: &TriggerConfig,
    enabled: bool,
    now: DateTime<Utc>,
) -> Option<i64> {
    match config {
        TriggerConfig::Cron(c) if enabled => c.next_after(now).map(|t| t.timestamp_micros()),
        _ => None,
    }
}

impl App {
    /// The next slot of a cron trigger from now, in µs; `None` for webhooks and for one-time
    /// triggers whose instant has passed.
    pub fn next_fire_at(&self, config: &TriggerConfig) -> Option<i64> {
        next_fire_for(config, true, self.clock().now())
    }

    /// The typed trigger a webhook token maps to now: `None` when the token is unknown, rotated
    /// away past its grace, or not a webhook's.
    pub async fn resolve_webhook(&self, token: &str) -> Result<Option<WebhookTrigger>, AppError> {
        let Some(target) = self.store().resolve_token(token, self.now()).await? else {
            return Ok(None);
        };
        if type_of(&target.trigger)? != TriggerType::Webhook {
            return Ok(None);
        }
        let TriggerConfig::Webhook(config) = config_of(&target.trigger)? else {
            return Ok(None);
        };
        let definition = crate::deployments::parse_stored(
            &target.deployment.workflow,
            target.workflow_version,
            &target.definition,
        )?;
        Ok(Some(WebhookTrigger {
            trigger_id: target.trigger.id,
            deployment_id: target.deployment.id,
            workflow: target.deployment.workflow,
            workflow_version: target.workflow_version,
            enabled: target.trigger.enabled,
            token_expires_at: target.token_expires_at,
            definition: Arc::new(definition),
            config: *config,
        }))
    }

    /// Creates a trigger in a deployment: the configuration is validated against the inputs of
    /// the version the deployment runs, a webhook gets its token (and the API keys it asks the
    /// server to generate), a cron trigger its first slot. Returns the trigger and the generated
    /// API keys — shown to the caller once, stored only as digests. `NotFound` for an unknown
    /// deployment, `InvalidConfig` (422), `Conflict` for a taken name.
    pub async fn create_trigger(
        &self,
        deployment_id: &str,
        request: TriggerRequest,
    ) -> Result<(TriggerRow, Vec<GeneratedApiKey>), AppError> {
        let deployment = self.deployment(deployment_id).await?;
        let (_, definition) = self.deployment_definition(&deployment).await?;
        let mut config = validate_config(request.trigger_type, &request.config, &definition.inputs)
            .map_err(AppError::InvalidConfig)?;
        if let Some(problem) = past_instant(&config, self.now(), "config.at") {
            return Err(AppError::InvalidConfig(vec![problem]));
        }
        let token = match request.trigger_type {
            TriggerType::Webhook => Some(new_token()?),
            TriggerType::Cron => None,
        };
        let now = self.now();
        let generated = resolve_api_keys(&mut config, None, false, now).map_err(no_randomness)?;
        let new = NewTrigger {
            id: new_id(IdKind::Trigger),
            deployment_id: deployment.id.clone(),
            name: request.name,
            trigger_type: request.trigger_type.as_str().to_owned(),
            enabled: request.enabled,
            config: config.stored_json().to_string(),
            declared: false,
            next_fire_at: next_fire_for(&config, request.enabled, self.clock().now()),
            token,
            now,
        };
        let row = self.store().create_trigger(new).await?;
        self.trigger_changes().changed();
        tracing::info!(trigger_id = %row.id, deployment_id = %row.deployment_id, trigger_type = %row.trigger_type, "trigger created");
        Ok((row, generated))
    }

    /// Changes `enabled` and merges `config_changes` into the stored configuration (top-level
    /// keys; `null` removes one; a webhook's `api_keys_add` / `api_keys_remove` change single
    /// keys), validated against the deployment's inputs. The read, merge and write are ONE
    /// transaction that locks the trigger's row, so concurrent changes (on this node or another)
    /// are applied one after the other and none is lost. Returns the trigger and the API keys
    /// generated by the change (shown once).
    pub async fn patch_trigger(
        &self,
        id: &str,
        enabled: Option<bool>,
        config_changes: Option<Value>,
    ) -> Result<(TriggerRow, Vec<GeneratedApiKey>), AppError> {
        let current = self
            .store()
            .get_trigger(id)
            .await?
            .ok_or_else(|| AppError::not_found(format!("trigger {id}")))?;
        let inputs = match &config_changes {
            Some(_) => {
                let deployment = self.deployment(&current.deployment_id).await?;
                let (_, definition) = self.deployment_definition(&deployment).await?;
                Some(definition.inputs.clone())
            }
            None => None,
        };
        let trigger_type = type_of(&current)?;
        let (id, now, clock) = (id.to_owned(), self.now(), self.clock().clone());
        let outcome = self
            .store()
            .transaction(move |tx| {
                let Some(row) = tx.lock_trigger(&id)? else {
                    return Ok(Err(AppError::not_found(format!("trigger {id}"))));
                };
                let mut patch = TriggerPatch {
                    enabled,
                    ..TriggerPatch::default()
                };
                let enabled_now = enabled.unwrap_or(row.enabled);
                let mut config = None;
                let mut generated = Vec::new();
                if let (Some(changes), Some(inputs)) = (&config_changes, &inputs) {
                    let stored: Value = serde_json::from_str(&row.config).unwrap_or(Value::Null);
                    let merged = match trigger_type {
                        TriggerType::Webhook => merge_webhook_config(&stored, changes),
                        TriggerType::Cron => Ok(merge_config(&stored, changes)),
                    };
                    let mut merged = match merged {
                        Ok(merged) => merged,
                        Err(problems) => return Ok(Err(AppError::InvalidConfig(problems))),
                    };
                    if changes.get("secret").is_some_and(Value::is_null)
                        && changes.get("signature").is_none()
                        && let Some(map) = merged.as_object_mut()
                    {
                        // Removing the secret turns signature checking off; its scheme goes too.
                        map.shift_remove("signature");
                    }
                    let mut parsed = match validate_config(trigger_type, &merged, inputs) {
                        Ok(config) => config,
                        Err(problems) => return Ok(Err(AppError::InvalidConfig(problems))),
                    };
                    let previous = config_of(&row).ok();
                    generated = match resolve_api_keys(&mut parsed, previous.as_ref(), false, now) {
                        Ok(generated) => generated,
                        Err(e) => return Ok(Err(no_randomness(e))),
                    };
                    if changes.get("at").is_some_and(|v| !v.is_null())
                        && let Some(problem) = past_instant(&parsed, now, "config.at")
                    {
                        return Ok(Err(AppError::InvalidConfig(vec![problem])));
                    }
                    patch.config = Some(parsed.stored_json().to_string());
                    config = Some(parsed);
                }
                // A cron trigger's next slot is computed again when its schedule changes or it
                // is enabled; a disabled trigger has none (it does not fire, and does not catch
                // up on the slots of its disabled time when enabled again).
                if trigger_type == TriggerType::Cron
                    && (config.is_some() || enabled_now != row.enabled)
                {
                    let config = match config {
                        Some(c) => c,
                        None => match config_of(&row) {
                            Ok(c) => c,
                            Err(e) => return Ok(Err(e)),
                        },
                    };
                    patch.next_fire_at = Some(next_fire_for(&config, enabled_now, clock.now()));
                }
                Ok(Ok((tx.update_trigger(&id, &patch, now)?, generated)))
            })
            .await?;
        let (row, generated) = outcome?;
        self.trigger_changes().changed();
        tracing::info!(trigger_id = %row.id, enabled = row.enabled, "trigger changed");
        Ok((row, generated))
    }

    /// Removes a trigger; its URL stops at once. `NotFound` when there is none.
    pub async fn delete_trigger(&self, id: &str) -> Result<(), AppError> {
        self.store().delete_trigger(id).await?;
        self.trigger_changes().changed();
        tracing::info!(trigger_id = %id, "trigger removed");
        Ok(())
    }

    /// Gives a webhook trigger a new token. The old one stops at once, or keeps working for
    /// `grace_seconds` (at most [`MAX_GRACE_SECONDS`]). Returns the trigger and, with a grace,
    /// until when the old token works (µs). `Conflict` for a cron trigger.
    pub async fn rotate_trigger(
        &self,
        id: &str,
        grace_seconds: u64,
    ) -> Result<(TriggerRow, Option<i64>), AppError> {
        let row = self
            .store()
            .get_trigger(id)
            .await?
            .ok_or_else(|| AppError::not_found(format!("trigger {id}")))?;
        if type_of(&row)? != TriggerType::Webhook {
            return Err(AppError::conflict(
                "only webhook triggers have a token to rotate",
            ));
        }
        if grace_seconds > MAX_GRACE_SECONDS {
            return Err(AppError::bad_request(format!(
                "grace_seconds must be a whole number from 0 to {MAX_GRACE_SECONDS} (7 days)"
            )));
        }
        let now = self.now();
        let old_valid_until = (grace_seconds > 0).then(|| now + (grace_seconds as i64) * 1_000_000);
        let token = new_token()?;
        let row = self
            .store()
            .rotate_trigger(&row.id, &token, old_valid_until, now)
            .await?;
        self.trigger_changes().changed();
        tracing::info!(trigger_id = %row.id, grace_seconds, "webhook token rotated");
        Ok((row, old_valid_until))
    }
}

/// A token for a trigger created inside a storage transaction (no `AppError` there).
pub(crate) fn new_token_in_tx() -> Result<String, StoreError> {
    new_webhook_token().map_err(|e| StoreError::aborted(format!("no randomness for a token: {e}")))
}
