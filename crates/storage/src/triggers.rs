//! Triggers, their webhook tokens, and the lookup of a token for the ingress cache.

use diesel::prelude::*;

use crate::Store;
use crate::conn::DbConn;
use crate::deployments::DeploymentRow;
use crate::error::{Result, StoreError};
use crate::schema::{deployments, triggers, webhook_tokens, workflow_versions, workflows};
use crate::store::{Page, fetch_limit, page};

diesel::alias!(webhook_tokens as current_tokens: CurrentTokens);

/// A trigger, with its current webhook token (if it has one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerRow {
    /// `trg_...`.
    pub id: String,
    /// The deployment it belongs to.
    pub deployment_id: String,
    /// Unique per deployment when set (declared triggers always have one).
    pub name: Option<String>,
    /// `webhook` or `cron`.
    pub trigger_type: String,
    /// A disabled trigger starts no runs; its webhook requests answer 404.
    pub enabled: bool,
    /// The configuration as JSON text, write-only secrets included.
    pub config: String,
    /// Declared in the workflow definition (managed by `PUT /workflows`), not created by the API.
    pub declared: bool,
    /// Runs started so far: the database counts every stored run that names this trigger.
    pub fire_count: i64,
    /// `created_at` of the last run it started, microseconds since the epoch.
    pub last_fired_at: Option<i64>,
    /// Cron: the next slot, microseconds since the epoch.
    pub next_fire_at: Option<i64>,
    /// Microseconds since the epoch.
    pub created_at: i64,
    /// Microseconds since the epoch.
    pub updated_at: i64,
    /// The current webhook token (`wht_...`); `None` for cron triggers.
    pub token: Option<String>,
}

/// The stored columns of a trigger.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
// `None` binds NULL instead of DEFAULT: the INSERT text no longer depends on the values, so
// diesel can cache its prepared statement (it re-prepares every INSERT that uses DEFAULT).
#[diesel(table_name = triggers, treat_none_as_default_value = false)]
pub(crate) struct TriggerRecord {
    id: String,
    deployment_id: String,
    name: Option<String>,
    trigger_type: String,
    enabled: bool,
    config: String,
    declared: bool,
    fire_count: i64,
    last_fired_at: Option<i64>,
    next_fire_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl TriggerRecord {
    pub(crate) fn with_token(self, token: Option<String>) -> TriggerRow {
        TriggerRow {
            id: self.id,
            deployment_id: self.deployment_id,
            name: self.name,
            trigger_type: self.trigger_type,
            enabled: self.enabled,
            config: self.config,
            declared: self.declared,
            fire_count: self.fire_count,
            last_fired_at: self.last_fired_at,
            next_fire_at: self.next_fire_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
            token,
        }
    }
}

/// What [`Store::create_trigger`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTrigger {
    /// `trg_...`, chosen by the caller.
    pub id: String,
    /// Must exist.
    pub deployment_id: String,
    /// Unique per deployment when set.
    pub name: Option<String>,
    /// `webhook` or `cron`.
    pub trigger_type: String,
    /// Whether it starts runs.
    pub enabled: bool,
    /// JSON text.
    pub config: String,
    /// Declared in the workflow definition.
    pub declared: bool,
    /// Cron: the first slot.
    pub next_fire_at: Option<i64>,
    /// Webhook: its first token (`wht_...`).
    pub token: Option<String>,
    /// Microseconds since the epoch.
    pub now: i64,
}

/// A change to a trigger; `None` fields are left as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq, AsChangeset)]
#[diesel(table_name = triggers)]
pub struct TriggerPatch {
    /// Enable or disable.
    pub enabled: Option<bool>,
    /// New configuration (JSON text).
    pub config: Option<String>,
    /// Cron: `Some(None)` clears the next slot, `Some(Some(t))` sets it.
    pub next_fire_at: Option<Option<i64>>,
}

/// Everything the webhook ingress needs to serve a token, read in one query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookTarget {
    /// The trigger, which may be disabled (the ingress answers 404 and logs the request).
    /// `trigger.token` is its current token, which differs from the token looked up when that one
    /// was rotated away and is in its grace period.
    pub trigger: TriggerRow,
    /// The trigger's deployment.
    pub deployment: DeploymentRow,
    /// The workflow version the deployment runs (its pinned version, or the latest).
    pub workflow_version: i64,
    /// That version's definition, JSON text.
    pub definition: String,
    /// When the token looked up stops being accepted: `None` for the current token.
    pub token_expires_at: Option<i64>,
}

/// A row of [`Store::resolve_token`]'s query: trigger, its current token, deployment, version,
/// definition, expiry of the token looked up.
type TargetTuple = (
    TriggerRecord,
    Option<String>,
    DeploymentRow,
    i64,
    String,
    Option<i64>,
);

/// A trigger with its current token, by id.
pub(crate) fn load_trigger(c: &mut DbConn, id: &str) -> QueryResult<Option<TriggerRow>> {
    let row: Option<(TriggerRecord, Option<String>)> = triggers::table
        .left_join(
            webhook_tokens::table.on(webhook_tokens::trigger_id
                .eq(triggers::id)
                .and(webhook_tokens::expires_at.is_null())),
        )
        .filter(triggers::id.eq(id))
        .select((TriggerRecord::as_select(), webhook_tokens::token.nullable()))
        .first(c)
        .optional()?;
    Ok(row.map(|(t, token)| t.with_token(token)))
}

fn trigger_exists(c: &mut DbConn, id: &str) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(triggers::table.find(id))).get_result(c)
}

pub(crate) fn create_trigger(c: &mut DbConn, new: NewTrigger) -> Result<TriggerRow> {
    let deployment_exists: bool = diesel::select(diesel::dsl::exists(
        deployments::table.find(&new.deployment_id),
    ))
    .get_result(c)?;
    if !deployment_exists {
        return Err(StoreError::not_found(format!(
            "deployment {}",
            new.deployment_id
        )));
    }
    let record = TriggerRecord {
        id: new.id,
        deployment_id: new.deployment_id,
        name: new.name,
        trigger_type: new.trigger_type,
        enabled: new.enabled,
        config: new.config,
        declared: new.declared,
        fire_count: 0,
        last_fired_at: None,
        next_fire_at: new.next_fire_at,
        created_at: new.now,
        updated_at: new.now,
    };
    diesel::insert_into(triggers::table)
        .values(&record)
        .execute(c)
        .map_err(|e| {
            StoreError::on_constraint(
                e,
                &format!(
                    "deployment {} already has a trigger named {} (or id {} is taken)",
                    record.deployment_id,
                    record.name.as_deref().unwrap_or("-"),
                    record.id
                ),
                &format!("deployment {}", record.deployment_id),
            )
        })?;
    if let Some(token) = &new.token {
        insert_token(c, token, &record.id, new.now)?;
    }
    Ok(record.with_token(new.token))
}

pub(crate) fn update_trigger(
    c: &mut DbConn,
    id: &str,
    patch: &TriggerPatch,
    now: i64,
) -> Result<TriggerRow> {
    let updated = diesel::update(triggers::table.find(id))
        .set((patch, triggers::updated_at.eq(now)))
        .execute(c)?;
    if updated == 0 {
        return Err(StoreError::not_found(format!("trigger {id}")));
    }
    load_trigger(c, id)?.ok_or_else(|| StoreError::not_found(format!("trigger {id}")))
}

pub(crate) fn delete_trigger(c: &mut DbConn, id: &str) -> Result<()> {
    if diesel::delete(triggers::table.find(id)).execute(c)? == 0 {
        return Err(StoreError::not_found(format!("trigger {id}")));
    }
    Ok(())
}

impl Store {
    /// Creates a trigger and, when `token` is given, its current webhook token. `NotFound` when
    /// the deployment does not exist, `Conflict` when the deployment already has a trigger of that
    /// name (or the id or token is taken).
    pub async fn create_trigger(&self, new: NewTrigger) -> Result<TriggerRow> {
        self.write(move |c| create_trigger(c, new), |_| false).await
    }

    /// A trigger with its current token.
    pub async fn get_trigger(&self, id: &str) -> Result<Option<TriggerRow>> {
        let id = id.to_owned();
        self.read(move |c| Ok(load_trigger(c, &id)?)).await
    }

    /// A deployment's triggers, newest first, starting after `cursor` (an id).
    pub async fn list_triggers(
        &self,
        deployment_id: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<TriggerRow>> {
        let (deployment_id, cursor) = (deployment_id.to_owned(), cursor.map(str::to_owned));
        self.read(move |c| {
            let mut q = triggers::table
                .left_join(
                    webhook_tokens::table.on(webhook_tokens::trigger_id
                        .eq(triggers::id)
                        .and(webhook_tokens::expires_at.is_null())),
                )
                .filter(triggers::deployment_id.eq(deployment_id))
                .select((TriggerRecord::as_select(), webhook_tokens::token.nullable()))
                .order(triggers::id.desc())
                .limit(fetch_limit(limit))
                .into_boxed();
            if let Some(cursor) = cursor {
                q = q.filter(triggers::id.lt(cursor));
            }
            let rows: Vec<(TriggerRecord, Option<String>)> = q.load(c)?;
            let rows = rows.into_iter().map(|(t, tok)| t.with_token(tok)).collect();
            Ok(page(rows, limit, |t: &TriggerRow| &t.id))
        })
        .await
    }

    /// Changes a trigger (enable/disable, configuration, next cron slot) and returns it.
    /// Disabling takes effect for in-flight webhook requests too: their write is refused with
    /// `TokenGone`. `NotFound` when there is no such trigger.
    pub async fn update_trigger(
        &self,
        id: &str,
        patch: TriggerPatch,
        now: i64,
    ) -> Result<TriggerRow> {
        let id = id.to_owned();
        self.write(move |c| update_trigger(c, &id, &patch, now), |_| false)
            .await
    }

    /// Deletes a trigger and its tokens; its URL stops at once. Its runs and activity stay
    /// readable. `NotFound` when there is no such trigger.
    pub async fn delete_trigger(&self, id: &str) -> Result<()> {
        let id = id.to_owned();
        self.write(move |c| delete_trigger(c, &id), |_| false).await
    }

    /// Gives a trigger a new current token. The old current token keeps working until
    /// `old_valid_until` (microseconds since the epoch), or stops at once when `None`. Rotated
    /// tokens whose grace is over are removed. `NotFound` when there is no such trigger.
    pub async fn rotate_trigger(
        &self,
        id: &str,
        new_token: &str,
        old_valid_until: Option<i64>,
        now: i64,
    ) -> Result<TriggerRow> {
        let (id, new_token) = (id.to_owned(), new_token.to_owned());
        self.write(
            move |c| {
                if !trigger_exists(c, &id)? {
                    return Err(StoreError::not_found(format!("trigger {id}")));
                }
                let of_trigger = webhook_tokens::trigger_id.eq(&id);
                diesel::delete(
                    webhook_tokens::table
                        .filter(of_trigger)
                        .filter(webhook_tokens::expires_at.le(now)),
                )
                .execute(c)?;
                let current = webhook_tokens::table
                    .filter(of_trigger)
                    .filter(webhook_tokens::expires_at.is_null());
                match old_valid_until {
                    Some(until) if until > now => {
                        diesel::update(current)
                            .set(webhook_tokens::expires_at.eq(until))
                            .execute(c)?;
                    }
                    _ => {
                        diesel::delete(current).execute(c)?;
                    }
                }
                insert_token(c, &new_token, &id, now)?;
                diesel::update(triggers::table.find(&id))
                    .set(triggers::updated_at.eq(now))
                    .execute(c)?;
                load_trigger(c, &id)?.ok_or_else(|| StoreError::not_found(format!("trigger {id}")))
            },
            |_| false,
        )
        .await
    }

    /// Looks a webhook token up for the ingress cache: the trigger (enabled or not), its
    /// deployment, and the definition the deployment runs — in one query. `None` when the token
    /// is unknown, or rotated away and past its grace at `now`.
    pub async fn resolve_token(&self, token: &str, now: i64) -> Result<Option<WebhookTarget>> {
        let token = token.to_owned();
        self.read(move |c| {
            let current_token = current_tokens.field(webhook_tokens::token);
            // `load`, not `first`: SQLite (3.47+, bundled) marks a statement whose LIMIT is a bound
            // parameter for re-preparation on every new binding, and diesel binds `first`'s
            // LIMIT 1 on each call — re-planning this six-table join on every cache miss. The
            // token is the primary key, so the query yields at most one row.
            let rows: Vec<TargetTuple> = webhook_tokens::table
                .inner_join(triggers::table.on(triggers::id.eq(webhook_tokens::trigger_id)))
                .inner_join(deployments::table.on(deployments::id.eq(triggers::deployment_id)))
                .inner_join(workflows::table.on(workflows::name.eq(deployments::workflow)))
                .inner_join(
                    workflow_versions::table.on(workflow_versions::workflow
                        .eq(deployments::workflow)
                        .and(
                            workflow_versions::version
                                .nullable()
                                .eq(deployments::pinned_version)
                                .or(deployments::pinned_version
                                    .is_null()
                                    .and(workflow_versions::version.eq(workflows::latest_version))),
                        )),
                )
                .left_join(
                    current_tokens.on(current_tokens
                        .field(webhook_tokens::trigger_id)
                        .eq(triggers::id)
                        .and(current_tokens.field(webhook_tokens::expires_at).is_null())),
                )
                .filter(webhook_tokens::token.eq(&token))
                .filter(
                    webhook_tokens::expires_at
                        .is_null()
                        .or(webhook_tokens::expires_at.gt(now)),
                )
                .select((
                    TriggerRecord::as_select(),
                    current_token.nullable(),
                    DeploymentRow::as_select(),
                    workflow_versions::version,
                    workflow_versions::definition,
                    webhook_tokens::expires_at,
                ))
                .load(c)?;
            Ok(rows.into_iter().next().map(
                |(trigger, current, deployment, workflow_version, definition, token_expires_at)| {
                    WebhookTarget {
                        trigger: trigger.with_token(current),
                        deployment,
                        workflow_version,
                        definition,
                        token_expires_at,
                    }
                },
            ))
        })
        .await
    }
}

fn insert_token(c: &mut DbConn, token: &str, trigger_id: &str, now: i64) -> Result<()> {
    diesel::insert_into(webhook_tokens::table)
        .values((
            webhook_tokens::token.eq(token),
            webhook_tokens::trigger_id.eq(trigger_id),
            webhook_tokens::expires_at.eq(None::<i64>),
            webhook_tokens::created_at.eq(now),
        ))
        .execute(c)
        .map_err(|e| {
            StoreError::on_constraint(
                e,
                "the webhook token is already in use",
                &format!("trigger {trigger_id}"),
            )
        })?;
    Ok(())
}
