//! Workflows, deployments, their declared triggers, and the deployment context store.
//!
//! Triggers declared in a definition exist once per deployment, keyed by name, taken from the
//! version the deployment runs (SPEC 1). Storing a new version and syncing every deployment that
//! tracks the latest — or creating a deployment and its declared triggers — is ONE transaction:
//! a crash, a failure half-way or a concurrent `PUT` from another node never leaves a deployment
//! with half its declared triggers. (The deployments' rows are locked first, so two nodes syncing
//! the same deployment take turns.)

use std::sync::Arc;

use serde_json::{Map, Value};
use triggerd_domain::Problem;
use triggerd_domain::api_keys::GeneratedApiKey;
use triggerd_domain::definition::{Definition, StepKind};
use triggerd_domain::ids::{IdKind, is_valid_id, new_id};
use triggerd_domain::run::EventType;
use triggerd_domain::trigger::TriggerConfig;
use triggerd_storage::{
    DeploymentRow, NewDeployment, NewTrigger, StoreError, TriggerPatch, TriggerRow, Tx,
    WorkflowVersionRow,
};

use crate::triggers::new_token_in_tx;
use crate::{App, AppError, AppOptions, Clock};

/// Longest context key, in characters.
pub const MAX_CONTEXT_KEY_CHARS: usize = 128;
/// Largest context value, in bytes of JSON.
pub const MAX_CONTEXT_VALUE_BYTES: usize = 64 * 1024;

/// What a declared-trigger sync changed in one deployment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncReport {
    /// The deployment.
    pub deployment_id: String,
    /// Triggers created (with their tokens).
    pub created: Vec<TriggerRow>,
    /// Names of triggers updated in place.
    pub updated: Vec<String>,
    /// Names of triggers removed.
    pub removed: Vec<String>,
    /// API keys generated for the declared triggers, as `(trigger name, key)`: a declared
    /// `{"name", "generate": true}` makes one key per deployment, when the trigger is created or
    /// first asks for it; applying the definition again keeps it. Shown once, never stored.
    pub generated_api_keys: Vec<(String, GeneratedApiKey)>,
}

impl SyncReport {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.created.is_empty() && self.updated.is_empty() && self.removed.is_empty()
    }

    /// Names of the triggers created.
    pub fn created_names(&self) -> Vec<String> {
        self.created.iter().filter_map(|t| t.name.clone()).collect()
    }

    /// The API keys generated for the trigger named `trigger`.
    pub fn generated_for(&self, trigger: &str) -> Vec<GeneratedApiKey> {
        self.generated_api_keys
            .iter()
            .filter(|(name, _)| name == trigger)
            .map(|(_, key)| key.clone())
            .collect()
    }
}

/// What [`App::put_workflow`] did.
#[derive(Debug, Clone)]
pub struct PutWorkflow {
    /// The newest version (the new one, or the identical latest).
    pub version: WorkflowVersionRow,
    /// Whether a new version was stored.
    pub created: bool,
    /// The declared-trigger changes, per deployment that tracks the latest version.
    pub synced: Vec<SyncReport>,
    /// The workflow-scoped hooks the latest version declares (`hooks`, `on_success_url`,
    /// `on_failure_url`), as stored: unchanged ones keep their id and secret across versions.
    pub hooks: Vec<triggerd_storage::HookRow>,
    /// What in the definition is valid but likely to fail at run time
    /// ([`Definition::warnings`]): shown to whoever stored it, never a refusal.
    pub warnings: Vec<Problem>,
}

/// A stored definition, parsed. Stored definitions were validated when stored; one this build
/// cannot read is a bug.
pub(crate) fn parse_stored(
    workflow: &str,
    version: i64,
    text: &str,
) -> Result<Definition, AppError> {
    Definition::from_json_str(text).map_err(|e| {
        AppError::internal(format!(
            "stored definition of {workflow} version {version} does not parse: {e}"
        ))
    })
}

/// Checks a submitted definition for the workflow `name`: its `name` field (when given) must
/// match, and everything the domain checks, plus what this server does not allow
/// (`command` steps without `TRIGGERD_ALLOW_COMMANDS=true`) and what this build cannot honour yet
/// (event `hooks`, `on_success_url`/`on_failure_url`, the `sync` response mode).
pub fn parse_definition(
    name: &str,
    mut document: Map<String, Value>,
    options: AppOptions,
) -> Result<Definition, AppError> {
    match document.get("name") {
        None | Some(Value::Null) => {
            document.insert("name".into(), Value::String(name.to_owned()));
        }
        Some(Value::String(n)) if n == name => {}
        Some(_) => {
            return Err(AppError::InvalidDefinition(vec![Problem::new(
                "name",
                format!("must match the name in the URL (\"{name}\")"),
            )]));
        }
    }
    let definition =
        Definition::from_value(Value::Object(document)).map_err(AppError::InvalidDefinition)?;
    let problems: Vec<Problem> = definition
        .steps
        .iter()
        .enumerate()
        .filter_map(|(i, step)| {
            let at = format!("steps[{i}].type");
            match &step.kind {
                StepKind::Command(_) if !options.allow_commands => Some(Problem::new(
                    at,
                    "command steps run programs on the server and are off: start the server \
                     with TRIGGERD_ALLOW_COMMANDS=true to allow them",
                )),
                _ => None,
            }
        })
        .collect();
    if !problems.is_empty() {
        return Err(AppError::InvalidDefinition(problems));
    }
    Ok(definition)
}

impl App {
    /// A deployment by id; `NotFound` for an unknown or malformed id.
    pub async fn deployment(&self, id: &str) -> Result<DeploymentRow, AppError> {
        let not_found = || AppError::not_found(format!("deployment {id}"));
        if !is_valid_id(IdKind::Deployment, id) {
            return Err(not_found());
        }
        self.store().get_deployment(id).await?.ok_or_else(not_found)
    }

    /// The definition a deployment runs now: its pinned version, or the workflow's latest.
    pub async fn deployment_definition(
        &self,
        deployment: &DeploymentRow,
    ) -> Result<(WorkflowVersionRow, Arc<Definition>), AppError> {
        let version = match deployment.pinned_version {
            Some(v) => {
                self.store()
                    .get_workflow_version(&deployment.workflow, v)
                    .await?
            }
            None => self
                .store()
                .get_workflow(&deployment.workflow)
                .await?
                .map(|(_, latest)| latest),
        }
        .ok_or_else(|| {
            AppError::not_found(format!(
                "workflow {} of deployment {}",
                deployment.workflow, deployment.id
            ))
        })?;
        let definition = parse_stored(&version.workflow, version.version, &version.definition)?;
        Ok((version, Arc::new(definition)))
    }

    /// A workflow version's definition, parsed.
    pub async fn workflow_definition(
        &self,
        workflow: &str,
        version: i64,
    ) -> Result<Option<Arc<Definition>>, AppError> {
        let Some(row) = self.store().get_workflow_version(workflow, version).await? else {
            return Ok(None);
        };
        Ok(Some(Arc::new(parse_stored(
            workflow,
            version,
            &row.definition,
        )?)))
    }

    /// Stores `document` as the newest version of workflow `name` (unless identical to the
    /// latest) and, in the same transaction, syncs the declared triggers of every deployment
    /// that tracks the latest version.
    pub async fn put_workflow(
        &self,
        name: &str,
        document: Map<String, Value>,
    ) -> Result<PutWorkflow, AppError> {
        let definition = parse_definition(name, document, self.options())?;
        let warnings = definition.warnings().to_vec();
        let text = definition.source().to_string();
        self.refuse_past_instants(name, &definition, &text).await?;
        let (name, now, clock) = (name.to_owned(), self.now(), self.clock().clone());
        let fail_after = self.inner.fail_sync_after;
        let definition = Arc::new(definition);
        let result = self
            .store()
            .transaction(move |tx| {
                let (version, created) = tx.put_workflow(&name, &text, now)?;
                let mut synced = Vec::new();
                if created {
                    let mut budget = fail_after;
                    for deployment in tx.lock_deployments_of_workflow(&name)? {
                        if deployment.pinned_version.is_none() {
                            let report = sync_declared(
                                tx,
                                &deployment,
                                &definition,
                                now,
                                &*clock,
                                &mut budget,
                            )?;
                            if !report.is_empty() {
                                synced.push(report);
                            }
                        }
                    }
                }
                let hooks = if created {
                    sync_declared_hooks(tx, &name, &definition, now)?
                } else {
                    tx.declared_hooks(&name)?
                };
                Ok(PutWorkflow {
                    version,
                    created,
                    synced,
                    hooks,
                    warnings: Vec::new(),
                })
            })
            .await?;
        let result = PutWorkflow { warnings, ..result };
        if !result.hooks.is_empty() {
            self.set_hooks_may_exist(true);
        }
        if result.created {
            self.trigger_changes().changed();
            tracing::info!(workflow = %result.version.workflow, version = result.version.version, "workflow version stored");
            for report in &result.synced {
                log_sync(report);
            }
        }
        Ok(result)
    }

    /// Refuses a new definition whose declared one-time cron triggers lie in the past (they would
    /// never fire). Submitting the latest version again is not a change and passes.
    async fn refuse_past_instants(
        &self,
        name: &str,
        definition: &Definition,
        text: &str,
    ) -> Result<(), AppError> {
        let now = self.now();
        let problems: Vec<_> = definition
            .triggers
            .iter()
            .enumerate()
            .filter_map(|(i, t)| {
                crate::triggers::past_instant(&t.config, now, &format!("triggers[{i}].config.at"))
            })
            .collect();
        if problems.is_empty() {
            return Ok(());
        }
        let latest = self.store().get_workflow(name).await?;
        if latest.is_some_and(|(_, v)| v.definition == text) {
            return Ok(());
        }
        Err(AppError::InvalidDefinition(problems))
    }

    /// Deletes a workflow and its versions; `Conflict` while it has deployments.
    pub async fn delete_workflow(&self, name: &str) -> Result<(), AppError> {
        self.store().delete_workflow(name).await?;
        tracing::info!(workflow = %name, "workflow deleted");
        Ok(())
    }

    /// Deploys workflow `workflow` as `name`, pinned to `pinned_version` or tracking the latest,
    /// with its declared triggers — in one transaction. `NotFound` for an unknown workflow or
    /// version, `Conflict` for a taken name.
    pub async fn deploy(
        &self,
        workflow: &str,
        name: &str,
        pinned_version: Option<i64>,
    ) -> Result<(DeploymentRow, SyncReport), AppError> {
        let new = NewDeployment {
            id: new_id(IdKind::Deployment),
            workflow: workflow.to_owned(),
            name: name.to_owned(),
            pinned_version,
            now: self.now(),
        };
        let (now, clock) = (new.now, self.clock().clone());
        let fail_after = self.inner.fail_sync_after;
        let result = self
            .store()
            .transaction(move |tx| {
                let row = tx.create_deployment(new)?;
                let version = tx
                    .workflow_version(&row.workflow, row.pinned_version)?
                    .ok_or_else(|| StoreError::NotFound {
                        what: format!("workflow {}", row.workflow),
                    })?;
                let definition = Definition::from_json_str(&version.definition).map_err(|e| {
                    StoreError::aborted(format!(
                        "stored definition of {} version {} does not parse: {e}",
                        version.workflow, version.version
                    ))
                })?;
                let mut budget = fail_after;
                let report = sync_declared(tx, &row, &definition, now, &*clock, &mut budget)?;
                Ok((row, report))
            })
            .await;
        let (row, report) = match result {
            Ok(done) => done,
            Err(StoreError::Conflict { what }) => {
                // The storage message names the id this call generated, which means nothing to
                // the caller: name the deployment that holds the name instead.
                return Err(
                    match self.store().get_deployment_by_name(workflow, name).await? {
                        Some(existing) => AppError::conflict(format!(
                            "workflow {workflow} already has a deployment named {name} ({})",
                            existing.id
                        )),
                        None => AppError::conflict(what),
                    },
                );
            }
            Err(e) => return Err(e.into()),
        };
        self.trigger_changes().changed();
        tracing::info!(deployment_id = %row.id, workflow = %row.workflow, name = %row.name, "deployment created");
        log_sync(&report);
        Ok((row, report))
    }

    /// Deletes a deployment; its triggers stop at once.
    pub async fn delete_deployment(&self, id: &str) -> Result<(), AppError> {
        let row = self.deployment(id).await?;
        self.store().delete_deployment(&row.id).await?;
        self.trigger_changes().changed();
        tracing::info!(deployment_id = %row.id, "deployment deleted");
        Ok(())
    }

    /// The `deployment` root of a run's template scope: `{id, name, webhook_urls}`, where
    /// `webhook_urls` maps each named webhook trigger of the deployment to its URL. A deleted
    /// deployment shows its id only.
    pub async fn deployment_root(&self, deployment_id: &str) -> Result<Value, AppError> {
        let Some(row) = self.store().get_deployment(deployment_id).await? else {
            return Ok(serde_json::json!({"id": deployment_id, "webhook_urls": {}}));
        };
        let mut urls = Map::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .store()
                .list_triggers(deployment_id, cursor.as_deref(), 1000)
                .await?;
            for t in &page.items {
                if let (Some(name), Some(token)) = (&t.name, &t.token) {
                    urls.insert(name.clone(), Value::String(self.webhook_url(token)));
                }
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        Ok(serde_json::json!({"id": row.id, "name": row.name, "webhook_urls": urls}))
    }

    /// A deployment's context store as an object. `NotFound` for an unknown deployment.
    pub async fn context(&self, deployment_id: &str) -> Result<Map<String, Value>, AppError> {
        let pairs = self.store().get_context(deployment_id).await?;
        Ok(context_object(pairs))
    }

    /// Applies `changes` to a deployment's context store in one transaction — a value sets a
    /// key, `null` deletes it — and returns the whole context after them. Keys have 1 to
    /// [`MAX_CONTEXT_KEY_CHARS`] characters and no control characters; values at most
    /// [`MAX_CONTEXT_VALUE_BYTES`] of JSON (`BadRequest` otherwise, nothing changed).
    pub async fn patch_context(
        &self,
        deployment_id: &str,
        changes: Map<String, Value>,
    ) -> Result<Map<String, Value>, AppError> {
        let mut pairs = Vec::with_capacity(changes.len());
        for (key, value) in changes {
            // No control characters: PostgreSQL text cannot hold NUL, and a key is a name for
            // people and templates (`{{ context.key }}`) alike.
            if key.is_empty()
                || key.chars().count() > MAX_CONTEXT_KEY_CHARS
                || key.chars().any(char::is_control)
            {
                return Err(AppError::bad_request(format!(
                    "context keys have 1 to {MAX_CONTEXT_KEY_CHARS} characters and no control characters"
                )));
            }
            let text = match value {
                Value::Null => None,
                other => {
                    let text = other.to_string();
                    if text.len() > MAX_CONTEXT_VALUE_BYTES {
                        return Err(AppError::bad_request(format!(
                            "the value of \"{key}\" is {} bytes of JSON; the limit is {MAX_CONTEXT_VALUE_BYTES}",
                            text.len()
                        )));
                    }
                    Some(text)
                }
            };
            pairs.push((key, text));
        }
        let stored = self
            .store()
            .patch_context(deployment_id, pairs, self.now())
            .await?;
        Ok(context_object(stored))
    }
}

fn context_object(pairs: Vec<(String, String)>) -> Map<String, Value> {
    let mut map = Map::with_capacity(pairs.len());
    for (key, value) in pairs {
        map.insert(key, serde_json::from_str(&value).unwrap_or(Value::Null));
    }
    map
}

fn log_sync(report: &SyncReport) {
    if !report.is_empty() {
        tracing::info!(deployment_id = %report.deployment_id, created = ?report.created_names(),
            updated = ?report.updated, removed = ?report.removed, "declared triggers synced");
    }
}

/// One change of a sync; fails (rolling the whole transaction back) when the test budget of
/// changes is spent.
fn spend(budget: &mut Option<usize>) -> Result<(), StoreError> {
    match budget {
        Some(0) => Err(StoreError::aborted(
            "injected failure in the declared-trigger sync",
        )),
        Some(n) => {
            *n -= 1;
            Ok(())
        }
        None => Ok(()),
    }
}

/// Brings the declared triggers of `deployment` in line with `definition`, inside `tx`: creates
/// the missing ones, updates changed ones in place (a webhook keeps its token), removes those no
/// longer declared. Triggers created through the API are never touched.
fn sync_declared(
    tx: &mut Tx<'_>,
    deployment: &DeploymentRow,
    definition: &Definition,
    now: i64,
    clock: &dyn Clock,
    budget: &mut Option<usize>,
) -> Result<SyncReport, StoreError> {
    let existing = tx.triggers_of_deployment(&deployment.id)?;
    let mut report = SyncReport {
        deployment_id: deployment.id.clone(),
        ..SyncReport::default()
    };
    let next_fire_at = |config: &TriggerConfig, enabled: bool| {
        crate::triggers::next_fire_for(config, enabled, clock.now())
    };
    for declared in &definition.triggers {
        let trigger_type = declared.config.trigger_type().as_str();
        let current = existing
            .iter()
            .find(|t| t.name.as_deref() == Some(declared.name.as_str()));
        // Keys the definition asks the server to generate are made per deployment; a trigger
        // that has one of that name already keeps it (applying again changes nothing).
        let previous = current
            .filter(|row| row.declared && row.trigger_type == trigger_type)
            .and_then(|row| crate::triggers::config_of(row).ok());
        let mut config = declared.config.clone();
        let generated =
            crate::triggers::resolve_api_keys(&mut config, previous.as_ref(), true, now)
                .map_err(|e| StoreError::aborted(format!("no randomness for an API key: {e}")))?;
        let stored = config.stored_json().to_string();
        match current {
            Some(row) if !row.declared => {
                tracing::warn!(deployment_id = %deployment.id, trigger = %declared.name,
                    "a trigger created through the API has the declared trigger's name; the declared one is not created");
            }
            Some(row) if row.trigger_type == trigger_type => {
                if row.config != stored {
                    spend(budget)?;
                    report
                        .generated_api_keys
                        .extend(generated.into_iter().map(|k| (declared.name.clone(), k)));
                    let patch = TriggerPatch {
                        enabled: None,
                        config: Some(stored),
                        next_fire_at: Some(next_fire_at(&declared.config, row.enabled)),
                    };
                    tx.update_trigger(&row.id, &patch, now)?;
                    report.updated.push(declared.name.clone());
                }
            }
            _ => {
                spend(budget)?;
                if let Some(row) = current {
                    // The type changed: a webhook cannot become a cron trigger in place.
                    tx.delete_trigger(&row.id)?;
                }
                let token = match declared.config {
                    TriggerConfig::Webhook(_) => Some(new_token_in_tx()?),
                    TriggerConfig::Cron(_) => None,
                };
                let row = tx.create_trigger(NewTrigger {
                    id: new_id(IdKind::Trigger),
                    deployment_id: deployment.id.clone(),
                    name: Some(declared.name.clone()),
                    trigger_type: trigger_type.to_owned(),
                    enabled: true,
                    config: stored,
                    declared: true,
                    next_fire_at: next_fire_at(&declared.config, true),
                    token,
                    now,
                })?;
                report.created.push(row);
                report
                    .generated_api_keys
                    .extend(generated.into_iter().map(|k| (declared.name.clone(), k)));
            }
        }
    }
    for row in existing.iter().filter(|t| t.declared) {
        let name = row.name.as_deref().unwrap_or_default();
        if !definition.triggers.iter().any(|d| d.name == name) {
            spend(budget)?;
            tx.delete_trigger(&row.id)?;
            report.removed.push(name.to_owned());
        }
    }
    Ok(report)
}

/// The hooks a definition declares: `(origin, url, events)`.
fn declared_hook_specs(definition: &Definition) -> Vec<(&'static str, String, Vec<EventType>)> {
    let mut specs: Vec<(&'static str, String, Vec<EventType>)> = definition
        .hooks
        .iter()
        .map(|h| ("definition", h.url.clone(), h.events.clone()))
        .collect();
    if let Some(url) = &definition.on_success_url {
        specs.push(("on_success_url", url.clone(), vec![EventType::RunCompleted]));
    }
    if let Some(url) = &definition.on_failure_url {
        specs.push(("on_failure_url", url.clone(), vec![EventType::RunFailed]));
    }
    specs
}

/// Makes the workflow-scoped hooks of `workflow` that its definition declares match a new
/// version: a hook declared again (same origin, URL and events) is kept with its id and secret,
/// one no longer declared is removed (its pending deliveries given up), a new one is created
/// with a generated secret. Returns the hooks now declared.
fn sync_declared_hooks(
    tx: &mut Tx<'_>,
    workflow: &str,
    definition: &Definition,
    now: i64,
) -> Result<Vec<triggerd_storage::HookRow>, StoreError> {
    let mut existing = tx.declared_hooks(workflow)?;
    let mut kept = Vec::new();
    for (origin, url, events) in declared_hook_specs(definition) {
        let events_text = serde_json::Value::Array(
            events
                .iter()
                .map(|e| serde_json::Value::String(e.as_str().to_owned()))
                .collect(),
        )
        .to_string();
        if let Some(i) = existing
            .iter()
            .position(|h| h.origin == origin && h.url == url && h.events == events_text)
        {
            kept.push(existing.swap_remove(i));
            continue;
        }
        let secret = triggerd_domain::ids::new_hook_secret()
            .map_err(|e| StoreError::aborted(format!("no randomness for a secret: {e}")))?;
        let row = triggerd_storage::HookRow {
            id: new_id(IdKind::Hook),
            scope: "workflow".to_owned(),
            workflow: Some(workflow.to_owned()),
            deployment_id: None,
            run_id: None,
            url,
            events: events_text,
            secret,
            origin: origin.to_owned(),
            created_at: now,
        };
        tx.create_hook(&row)?;
        kept.push(row);
    }
    for gone in existing {
        tx.delete_hook(&gone.id, now)?;
    }
    kept.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(kept)
}
