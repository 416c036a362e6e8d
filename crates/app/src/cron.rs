//! Cron firing (SPEC 5): a round fires every due slot of every due cron trigger.
//!
//! A round is ONE transaction of the writer: it takes the due triggers (those whose
//! `next_fire_at` has passed, through an index), and for each slot the `catch_up` policy fires
//! ([`CatchUp::due`]) it records the slot, stores the slot's run (`source = "cron"`,
//! `trigger_input = {"scheduled_for": …}`, the trigger's fixed input) and moves the trigger's
//! `fire_count`, `last_fired_at` and `next_fire_at` on. The primary key of the slot record
//! `(trigger_id, scheduled_for)` makes a second firing of a slot impossible — on another node of
//! a PostgreSQL cluster, after a restart, or after a crash at any line: a slot whose record
//! exists is never fired again, and the record commits only together with its run.
//!
//! Catch-up is evaluated against the trigger's `next_fire_at`, the first slot not yet handled:
//! every slot from it up to now is due.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use triggerd_domain::cron::CatchUp;
use triggerd_domain::definition::Definition;
use triggerd_domain::ids::{IdKind, new_id};
use triggerd_domain::run::{EventType, RunError, RunSource, RunStatus, rfc3339, transition_events};
use triggerd_domain::trigger::TriggerConfig;
use triggerd_storage::{RunUpdate, StoreError, Tx};

use crate::runs::{PreparedRun, RunStart, log_events};
use crate::triggers::config_of;
use crate::{App, AppError};

/// Triggers handled per round (one transaction); a round that took this many is followed by
/// another at once.
pub const ROUND_TRIGGERS: usize = 256;

/// A slot that fired.
#[derive(Debug, Clone, PartialEq)]
pub struct FiredSlot {
    /// The trigger.
    pub trigger_id: String,
    /// The slot.
    pub scheduled_for: DateTime<Utc>,
    /// The run it started.
    pub run_id: String,
    /// The run's status as stored: `pending`, `completed` (a workflow without steps), or
    /// `failed` (the fixed input no longer fits the workflow's inputs).
    pub status: RunStatus,
}

/// A slot that came due and was not fired, by the trigger's `catch_up` policy.
#[derive(Debug, Clone, PartialEq)]
pub struct SkippedSlot {
    /// The trigger.
    pub trigger_id: String,
    /// The slot.
    pub scheduled_for: DateTime<Utc>,
    /// The policy that skipped it.
    pub catch_up: CatchUp,
}

/// What a firing round did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CronRound {
    /// When the round ran.
    pub now: i64,
    /// Triggers the round handled.
    pub triggers: usize,
    /// Fired slots, by trigger, oldest first.
    pub fired: Vec<FiredSlot>,
    /// Skipped slots (at most [`Due::MAX_SKIPPED`](triggerd_domain::cron::Due::MAX_SKIPPED)
    /// per trigger).
    pub skipped: Vec<SkippedSlot>,
    /// True when the round took [`ROUND_TRIGGERS`]: more may be due.
    pub more: bool,
}

/// What a round knows about a deployment, loaded once per round.
type Target = Result<(String, i64, Arc<Definition>), String>;

impl App {
    /// Fires every due slot of up to `limit` due cron triggers, in one transaction (see the
    /// module docs). Returns what it did once it is committed.
    pub async fn fire_due_cron(&self, limit: usize) -> Result<CronRound, AppError> {
        let now = self.now();
        let app = self.clone();
        let (round, events) = self
            .store()
            .transaction(move |tx| app.fire_round(tx, now, limit))
            .await?;
        for (run_id, events) in &events {
            log_events(run_id, events);
        }
        for slot in &round.skipped {
            tracing::info!(trigger_id = %slot.trigger_id, scheduled_for = %slot.scheduled_for.to_rfc3339(),
                catch_up = %slot.catch_up, "cron slot skipped by its catch_up policy");
        }
        for slot in &round.fired {
            tracing::debug!(trigger_id = %slot.trigger_id, scheduled_for = %slot.scheduled_for.to_rfc3339(),
                run_id = %slot.run_id, status = %slot.status, "cron slot fired");
        }
        Ok(round)
    }

    /// The body of [`App::fire_due_cron`]'s transaction.
    #[allow(clippy::type_complexity)]
    fn fire_round(
        &self,
        tx: &mut Tx<'_>,
        now: i64,
        limit: usize,
    ) -> Result<(CronRound, Vec<(String, Vec<EventType>)>), StoreError> {
        let due = tx.lock_due_cron_triggers(now, limit)?;
        let now_at = DateTime::from_timestamp_micros(now).unwrap_or_default();
        let mut round = CronRound {
            now,
            triggers: due.len(),
            more: due.len() >= limit,
            ..CronRound::default()
        };
        let mut events = Vec::new();
        let mut targets: HashMap<String, Target> = HashMap::new();
        for row in due {
            let config = match config_of(&row) {
                Ok(TriggerConfig::Cron(c)) => c,
                Ok(TriggerConfig::Webhook(_)) | Err(_) => {
                    tracing::error!(trigger_id = %row.id, "a due cron trigger's configuration does not parse; it will not fire");
                    tx.set_next_fire_at(&row.id, None)?;
                    continue;
                }
            };
            let next_due = row
                .next_fire_at
                .and_then(DateTime::from_timestamp_micros)
                .unwrap_or(now_at);
            let due = config
                .catch_up
                .due(&config.when, next_due, now_at, config.timezone);
            round
                .skipped
                .extend(due.skipped.iter().map(|slot| SkippedSlot {
                    trigger_id: row.id.clone(),
                    scheduled_for: *slot,
                    catch_up: config.catch_up,
                }));
            let target = match targets.get(&row.deployment_id) {
                Some(t) => t.clone(),
                None => {
                    let t = load_target(tx, &row.deployment_id)?;
                    targets.insert(row.deployment_id.clone(), t.clone());
                    t
                }
            };
            let (workflow, version, definition) = match target {
                Ok(t) => t,
                Err(e) => {
                    // Cannot happen while the deployment exists (its triggers go with it).
                    tracing::error!(trigger_id = %row.id, error = %e, "a cron trigger's workflow cannot be read; its due slots are not fired");
                    tx.set_next_fire_at(
                        &row.id,
                        config.next_after(now_at).map(|t| t.timestamp_micros()),
                    )?;
                    continue;
                }
            };
            for slot in due.fire {
                let run_id = new_id(IdKind::Run);
                if !tx.record_cron_slot(&row.id, slot.timestamp_micros(), &run_id, now)? {
                    continue;
                }
                let trigger_input = json!({ "scheduled_for": rfc3339(slot.timestamp_micros()) });
                let (status, run_events) = match definition.inputs.validate(config.input.clone()) {
                    Ok(input) => {
                        let start = RunStart {
                            run_id: run_id.clone(),
                            source: RunSource::Cron,
                            deployment_id: row.deployment_id.clone(),
                            workflow: workflow.clone(),
                            workflow_version: version,
                            trigger_id: Some(row.id.clone()),
                            input,
                            trigger_input,
                            created_at: now,
                        };
                        let PreparedRun {
                            row: run,
                            status,
                            events,
                            outbox,
                        } = self.prepare_run(start, &definition);
                        tx.insert_run(&run)?;
                        tx.enqueue_events(&run.id, &outbox)?;
                        (status, events)
                    }
                    Err(problems) => {
                        let message = problems
                            .iter()
                            .map(|p| format!("input.{} {}", p.input, p.message))
                            .collect::<Vec<_>>()
                            .join("; ");
                        let error = RunError::new(
                            RunError::INVALID_INPUT,
                            format!(
                                "the trigger's fixed input does not fit version {version} of {workflow}: {message}"
                            ),
                        );
                        crate::runs::log_failed(&run_id, &workflow, &error);
                        let start = RunStart {
                            run_id: run_id.clone(),
                            source: RunSource::Cron,
                            deployment_id: row.deployment_id.clone(),
                            workflow: workflow.clone(),
                            workflow_version: version,
                            trigger_id: Some(row.id.clone()),
                            input: config.input.clone(),
                            trigger_input,
                            created_at: now,
                        };
                        let events = failed_at_start(tx, self, start, &definition, error)?;
                        (RunStatus::Failed, events)
                    }
                };
                events.push((run_id.clone(), run_events));
                round.fired.push(FiredSlot {
                    trigger_id: row.id.clone(),
                    scheduled_for: slot,
                    run_id,
                    status,
                });
            }
            let next = config.next_after(now_at).map(|t| t.timestamp_micros());
            tx.set_next_fire_at(&row.id, next)?;
        }
        Ok((round, events))
    }
}

/// A deployment's workflow name, the version it runs and that version's definition.
fn load_target(tx: &mut Tx<'_>, deployment_id: &str) -> Result<Target, StoreError> {
    let Some(deployment) = tx.deployment(deployment_id)? else {
        return Ok(Err(format!("deployment {deployment_id} does not exist")));
    };
    let Some(version) = tx.workflow_version(&deployment.workflow, deployment.pinned_version)?
    else {
        return Ok(Err(format!(
            "workflow {} of deployment {deployment_id} does not exist",
            deployment.workflow
        )));
    };
    Ok(
        match crate::deployments::parse_stored(
            &version.workflow,
            version.version,
            &version.definition,
        ) {
            Ok(definition) => Ok((deployment.workflow, version.version, Arc::new(definition))),
            Err(e) => Err(e.to_string()),
        },
    )
}

/// Stores a run that fails as it starts (`pending` → `running` → `failed`) with `error`.
fn failed_at_start(
    tx: &mut Tx<'_>,
    app: &App,
    start: RunStart,
    definition: &Definition,
    error: RunError,
) -> Result<Vec<EventType>, StoreError> {
    let path = [RunStatus::Running, RunStatus::Failed];
    let events = transition_events(RunStatus::Pending, &path)
        .map_err(|e| StoreError::aborted(e.to_string()))?;
    let now = app.now();
    let mut run = app.prepare_run(start, definition).row;
    run.status = RunStatus::Pending.as_str().to_owned();
    run.final_output = None;
    run.started_at = None;
    run.finished_at = None;
    tx.insert_run(&run)?;
    tx.force_update_run(RunUpdate {
        id: run.id.clone(),
        status: Some(RunStatus::Failed.as_str().to_owned()),
        started_at: Some(now),
        finished_at: Some(now),
        error: Some(serde_json::to_string(&error).unwrap_or_else(|_| Value::Null.to_string())),
        release_lease: true,
        events: crate::runs::outbox(&events, now),
        ..RunUpdate::default()
    })?;
    Ok(events)
}
