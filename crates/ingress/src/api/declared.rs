//! Triggers declared in a workflow definition, kept in step with each deployment (SPEC 1).
//!
//! A declared trigger exists once per deployment, keyed by its `name`, taken from the version the
//! deployment runs. Syncing after a deploy or a new version creates the missing ones, updates
//! changed ones in place (a webhook keeps its token and URL), and removes those no longer
//! declared. Triggers created through the API (`declared = false`) are never touched.

use triggerd_domain::definition::Definition;
use triggerd_domain::ids::{IdKind, new_id, new_webhook_token};
use triggerd_domain::trigger::TriggerConfig;
use triggerd_storage::{DeploymentRow, NewTrigger, TriggerPatch, TriggerRow};

use super::MAX_LIMIT;
use super::triggers::next_fire_at;
use super::views::DeclaredSync;
use crate::{ApiError, AppState, now_micros};

/// What a sync changed, by trigger name.
#[derive(Debug, Default)]
pub(super) struct SyncReport {
    pub created: Vec<TriggerRow>,
    pub updated: Vec<String>,
    pub removed: Vec<String>,
}

impl SyncReport {
    /// What changed in `deployment_id`, by trigger name.
    pub fn summary(&self, deployment_id: &str) -> DeclaredSync {
        DeclaredSync {
            deployment_id: deployment_id.to_owned(),
            created: self.created.iter().filter_map(|t| t.name.clone()).collect(),
            updated: self.updated.clone(),
            removed: self.removed.clone(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.created.is_empty() && self.updated.is_empty() && self.removed.is_empty()
    }
}

async fn all_triggers(state: &AppState, deployment_id: &str) -> Result<Vec<TriggerRow>, ApiError> {
    let mut rows = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = state
            .store
            .list_triggers(deployment_id, cursor.as_deref(), MAX_LIMIT)
            .await?;
        rows.extend(page.items);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(rows),
        }
    }
}

/// Brings the declared triggers of `deployment` in line with `definition`.
pub(super) async fn sync(
    state: &AppState,
    deployment: &DeploymentRow,
    definition: &Definition,
) -> Result<SyncReport, ApiError> {
    let existing = all_triggers(state, &deployment.id).await?;
    let mut report = SyncReport::default();
    let now = now_micros();
    for declared in &definition.triggers {
        let stored = declared.config.stored_json().to_string();
        let trigger_type = declared.config.trigger_type().as_str();
        let current = existing
            .iter()
            .find(|t| t.name.as_deref() == Some(declared.name.as_str()));
        match current {
            Some(row) if !row.declared => {
                tracing::warn!(deployment_id = %deployment.id, trigger = %declared.name,
                    "a trigger created through the API has the declared trigger's name; the declared one is not created");
            }
            Some(row) if row.trigger_type == trigger_type => {
                if row.config != stored {
                    let patch = TriggerPatch {
                        enabled: None,
                        config: Some(stored),
                        next_fire_at: Some(next_fire_at(&declared.config)),
                    };
                    state.store.update_trigger(&row.id, patch, now).await?;
                    report.updated.push(declared.name.clone());
                }
            }
            _ => {
                if let Some(row) = current {
                    // The type changed: a webhook cannot become a cron trigger in place.
                    state.store.delete_trigger(&row.id).await?;
                }
                let token = match declared.config {
                    TriggerConfig::Webhook(_) => Some(new_webhook_token().map_err(|e| {
                        tracing::error!(error = %e, "no randomness for a webhook token");
                        ApiError::internal()
                    })?),
                    TriggerConfig::Cron(_) => None,
                };
                let row = state
                    .store
                    .create_trigger(NewTrigger {
                        id: new_id(IdKind::Trigger),
                        deployment_id: deployment.id.clone(),
                        name: Some(declared.name.clone()),
                        trigger_type: trigger_type.to_owned(),
                        enabled: true,
                        config: stored,
                        declared: true,
                        next_fire_at: next_fire_at(&declared.config),
                        token,
                        now,
                    })
                    .await?;
                report.created.push(row);
            }
        }
    }
    for row in existing.iter().filter(|t| t.declared) {
        let name = row.name.as_deref().unwrap_or_default();
        if !definition.triggers.iter().any(|d| d.name == name) {
            state.store.delete_trigger(&row.id).await?;
            report.removed.push(name.to_owned());
        }
    }
    if !report.is_empty() {
        state.cache.invalidate_all();
        let summary = report.summary(&deployment.id);
        tracing::info!(deployment_id = %deployment.id, created = ?summary.created, updated = ?summary.updated, removed = ?summary.removed, "declared triggers synced");
    }
    Ok(report)
}
