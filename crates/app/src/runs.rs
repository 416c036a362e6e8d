//! Runs: starting one (from a webhook, the API or cron), moving it between states, cancelling.
//!
//! Every status change goes through [`App::transition`] (or [`App::cancel_run`]), which asks the
//! domain's state machine ([`transition_events`]) whether the move is legal and which events it
//! emits; an illegal move is an [`AppError::IllegalTransition`], never a silent write. A run of
//! a workflow without steps is completed at start when it can be ([`App::prepare_run`]): that is
//! the compound move `pending` → `running` → `completed`, which emits `run.started` and
//! `run.completed`.

use serde_json::{Map, Value};
use triggerd_domain::definition::Definition;
use triggerd_domain::ids::{IdKind, new_id};
use triggerd_domain::run::{
    EventType, RunError, RunSource, RunStatus, run_root, run_scope, transition_events,
};
use triggerd_storage::{IngestWrite, Ingested, NewRun, OutboxEvent, RunRow, RunUpdate};

use crate::{App, AppError};

/// The run a source wants to start, with its input already mapped and validated.
#[derive(Debug, Clone)]
pub struct RunStart {
    /// `run_...`, chosen by the caller (a webhook answers with it).
    pub run_id: String,
    /// What started it.
    pub source: RunSource,
    /// The deployment.
    pub deployment_id: String,
    /// The workflow's name.
    pub workflow: String,
    /// The version the deployment runs.
    pub workflow_version: i64,
    /// The trigger that started it (webhook, cron).
    pub trigger_id: Option<String>,
    /// The validated input.
    pub input: Map<String, Value>,
    /// `trigger` of the templates: the request (webhook), `{scheduled_for}` (cron), `null` (API).
    pub trigger_input: Value,
    /// Microseconds since the epoch.
    pub created_at: i64,
}

/// A run ready to be written: the row, the status it is stored in, and the events that its
/// storing emits (`run.started` and `run.completed` for a run completed at start; none for a
/// pending one).
#[derive(Debug, Clone)]
pub struct PreparedRun {
    /// The row to store.
    pub row: NewRun,
    /// Its status.
    pub status: RunStatus,
    /// The events the write emits.
    pub events: Vec<EventType>,
    /// Those events for the outbox (written with the run: hand them to the write).
    pub outbox: Vec<OutboxEvent>,
}

/// The typed changes of a state move (see [`App::transition`]); `None` fields are left as they
/// are.
#[derive(Debug, Clone, Default)]
pub struct RunChange {
    /// The run's result.
    pub final_output: Option<Value>,
    /// Why it failed.
    pub error: Option<RunError>,
    /// The whole `step_executions` array.
    pub step_executions: Option<Value>,
    /// The run's own context (values its steps extracted).
    pub context: Option<Value>,
    /// Park (`Some(Some(..))`) or clear (`Some(None)`) the wait.
    pub waiting: Option<Option<Waiting>>,
    /// Extend the lease to this instant (µs) instead of releasing it.
    pub lease_until: Option<i64>,
}

/// What a waiting run waits for.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    /// `webhook` or `approval`.
    pub reason: String,
    /// `waiting_payload` (URLs to resume or decide).
    pub payload: Value,
    /// When the wait expires, µs since the epoch.
    pub expires_at: i64,
}

/// The result of a state move.
#[derive(Debug, Clone, PartialEq)]
pub struct Transitioned {
    /// The run's status now.
    pub status: RunStatus,
    /// The events the move emitted, in order.
    pub events: Vec<EventType>,
}

/// A run's `final_output`: the definition's `output` rendered over `scope` (or the input), or
/// the run's error (`template_error`, naming the missing value). The one rule, whichever path
/// finishes the run: the webhook's ingest write, the run worker, the step executor.
pub fn final_output(definition: &Definition, scope: &Value) -> Result<Value, RunError> {
    definition
        .render_output(scope)
        .map_err(|e| RunError::new(RunError::TEMPLATE_ERROR, format!("output: {e}")))
}

/// The template scope of a stored run: its input and trigger input, `context` = the
/// deployment's context store (`stored_context`) with the run's own values laid over it, the
/// finished steps' outputs (`steps`), `run`, and the `deployment` root.
pub fn scope_of(
    run: &RunRow,
    mut stored_context: Map<String, Value>,
    steps: Value,
    deployment: Value,
) -> Value {
    if let Ok(Value::Object(own)) = serde_json::from_str(&run.context) {
        stored_context.extend(own);
    }
    executing_scope(run, stored_context, steps, deployment, true)
}

/// [`scope_of`] for a run being executed, whose `context` (the store with the run's own values
/// over it) the executor holds already: the row's stored `context` is not read. Without
/// `with_trigger` (the definition's templates never read `trigger`), the trigger input is not
/// parsed and `trigger` is `null` — a webhook's body can cost many times its size once parsed.
pub fn executing_scope(
    run: &RunRow,
    context: Map<String, Value>,
    steps: Value,
    deployment: Value,
    with_trigger: bool,
) -> Value {
    let parse = |text: &str| serde_json::from_str(text).unwrap_or(Value::Null);
    run_scope(
        parse(&run.input),
        if with_trigger {
            parse(&run.trigger_input)
        } else {
            Value::Null
        },
        Value::Object(context),
        steps,
        run_root(&run.id, run.created_at),
        deployment,
    )
}

/// What [`executing_scope`] holds of memory, estimated before parsing: what the memory budget
/// is charged while a step runs with it.
pub fn scope_cost(run: &RunRow, with_trigger: bool) -> u64 {
    let estimate = triggerd_domain::memory::json_heap_bytes;
    let mut cost = estimate(run.input.as_bytes());
    if with_trigger {
        cost += estimate(run.trigger_input.as_bytes());
    }
    cost
}

/// A stored status as the domain's type; a row this build cannot read is a bug.
pub fn status_of(row: &RunRow) -> Result<RunStatus, AppError> {
    row.status
        .parse()
        .map_err(|e| AppError::internal(format!("run {}: {e}", row.id)))
}

impl App {
    /// The row for `start`. A run of a workflow without steps is completed here — `final_output`
    /// rendered from `output` over the run's scope — unless `output` reads `context` (the
    /// deployment's context store can change before the write commits) or `deployment` (its
    /// name and webhook URLs are read from the database) — the run worker finishes those — or
    /// fails to render (the worker then fails it with `template_error`). Decided from the
    /// definition, not from the values. Pure: nothing is written.
    pub fn prepare_run(&self, start: RunStart, definition: &Definition) -> PreparedRun {
        let mut row = NewRun {
            id: start.run_id,
            deployment_id: start.deployment_id,
            workflow: start.workflow,
            workflow_version: start.workflow_version,
            trigger_id: start.trigger_id,
            source: start.source.as_str().to_owned(),
            status: RunStatus::Pending.as_str().to_owned(),
            input: String::new(),
            trigger_input: String::new(),
            context: EMPTY_OBJECT.to_owned(),
            step_executions: EMPTY_ARRAY.to_owned(),
            final_output: None,
            created_at: start.created_at,
            started_at: None,
            finished_at: None,
        };
        let input = Value::Object(start.input);
        if !definition.steps.is_empty()
            || definition.output_reads("context")
            || output_reads_deployment_beyond_id(definition)
        {
            row.input = input.to_string();
            row.trigger_input = start.trigger_input.to_string();
            return pending(row);
        }
        // The output reads neither `context` nor more of `deployment` than its id: empty
        // stand-ins do not matter.
        let mut deployment = Map::with_capacity(1);
        deployment.insert("id".to_owned(), Value::String(row.deployment_id.clone()));
        let scope = run_scope(
            input,
            start.trigger_input,
            Value::Object(Map::new()),
            Value::Object(Map::new()),
            run_root(&row.id, row.created_at),
            Value::Object(deployment),
        );
        let rendered = final_output(definition, &scope);
        row.input = scope["input"].to_string();
        row.trigger_input = scope["trigger"].to_string();
        let Ok(output) = rendered else {
            return pending(row);
        };
        let path = [RunStatus::Running, RunStatus::Completed];
        let Ok(events) = transition_events(RunStatus::Pending, &path) else {
            return pending(row);
        };
        let now = self.now().max(row.created_at);
        row.status = RunStatus::Completed.as_str().to_owned();
        row.final_output = Some(output.to_string());
        row.started_at = Some(now);
        row.finished_at = Some(now);
        let outbox = outbox(&events, now);
        PreparedRun {
            row,
            status: RunStatus::Completed,
            events,
            outbox,
        }
    }

    /// Prepares and stores a run (API, cron); returns once it is committed.
    pub async fn start_run(
        &self,
        start: RunStart,
        definition: &Definition,
    ) -> Result<PreparedRun, AppError> {
        let prepared = self.prepare_run(start, definition);
        let (row, events) = (prepared.row.clone(), prepared.outbox.clone());
        self.store()
            .transaction(move |tx| {
                tx.insert_run(&row)?;
                tx.enqueue_events(&row.id, &events)
            })
            .await?;
        log_events(&prepared.row.id, &prepared.events);
        Ok(prepared)
    }

    /// [`App::start_run`] with run-scoped hooks (`hooks` of `POST /runs`), stored in the same
    /// transaction as the run, so they see every event of it.
    pub async fn start_run_with_hooks(
        &self,
        start: RunStart,
        definition: &Definition,
        hooks: Vec<triggerd_storage::HookRow>,
    ) -> Result<PreparedRun, AppError> {
        if hooks.is_empty() {
            return self.start_run(start, definition).await;
        }
        let prepared = self.prepare_run(start, definition);
        let (row, events) = (prepared.row.clone(), prepared.outbox.clone());
        self.store()
            .transaction(move |tx| {
                tx.insert_run(&row)?;
                for hook in &hooks {
                    tx.create_hook(hook)?;
                }
                tx.enqueue_events(&row.id, &events)
            })
            .await?;
        self.set_hooks_may_exist(true);
        log_events(&prepared.row.id, &prepared.events);
        Ok(prepared)
    }

    /// The webhook hot path's write: the request's run (prepared by [`App::prepare_run`]) and its
    /// activity row, batched with concurrent requests (group commit). Returns once durably
    /// committed; `TokenGone` when the token was rotated, removed or disabled in flight.
    ///
    /// With [`IngestWrite::dedup`], a key another run holds makes it [`Ingested::Duplicate`]:
    /// no run, and the activity row stored as `duplicate`.
    pub async fn ingest(&self, write: IngestWrite) -> Result<Ingested, AppError> {
        let events = !write.events.is_empty();
        let ingested = self.store().ingest(write).await?;
        if events && ingested == Ingested::Written && self.hooks_may_exist() {
            triggerd_storage::wake_delivery_workers();
        }
        Ok(ingested)
    }

    /// Moves a run held by worker `owner` along `path` (each step checked by the domain: e.g.
    /// `[Running, Completed]` from `pending`), with `change` applied in the same write, and
    /// returns the events the move emits. An empty `path` stores `change` without a move.
    /// Entering `running` from `pending` sets `started_at`; entering a final state sets
    /// `finished_at` and releases the lease, as does parking (`waiting`) — unless
    /// `change.lease_until` keeps it.
    ///
    /// `IllegalTransition` for a move the state machine forbids (nothing is written),
    /// `LeaseLost` when `owner` no longer holds the run.
    pub async fn transition(
        &self,
        run: &RunRow,
        owner: &str,
        path: &[RunStatus],
        change: RunChange,
    ) -> Result<Transitioned, AppError> {
        let from = status_of(run)?;
        let events = transition_events(from, path)?;
        let to = path.last().copied().unwrap_or(from);
        let now = self.now();
        let failed = (to == RunStatus::Failed && from != RunStatus::Failed)
            .then(|| change.error.clone())
            .flatten();
        let mut update = RunUpdate {
            id: run.id.clone(),
            owner: owner.to_owned(),
            status: (to != from).then(|| to.as_str().to_owned()),
            final_output: change.final_output.map(|v| v.to_string()),
            error: change.error.map(|e| json_text(&e)),
            step_executions: change.step_executions.map(|v| v.to_string()),
            context: change.context.map(|v| v.to_string()),
            lease_until: change.lease_until,
            events: outbox(&events, now),
            ..RunUpdate::default()
        };
        if from == RunStatus::Pending && path.contains(&RunStatus::Running) {
            update.started_at = Some(run.started_at.unwrap_or(now));
        }
        if to.is_terminal() {
            update.finished_at = Some(now);
            update
                .started_at
                .get_or_insert(run.started_at.unwrap_or(now));
        }
        match change.waiting {
            Some(Some(w)) => {
                update.waiting_reason = Some(Some(w.reason));
                update.waiting_payload = Some(Some(w.payload.to_string()));
                update.waiting_expires_at = Some(Some(w.expires_at));
            }
            Some(None) => clear_wait(&mut update),
            None if to.is_terminal() => clear_wait(&mut update),
            None => {}
        }
        update.release_lease =
            (to.is_terminal() || to == RunStatus::Waiting) && update.lease_until.is_none();
        if !self.store().update_run(update).await? {
            return Err(AppError::LeaseLost {
                run_id: run.id.clone(),
            });
        }
        log_events(&run.id, &events);
        if let Some(error) = &failed {
            log_failed(&run.id, &run.workflow, error);
        }
        Ok(Transitioned { status: to, events })
    }

    /// Starts a pending run held by worker `owner` under its deployment's concurrency cap
    /// (`max_concurrent_runs` = `cap` > 0): `running` when fewer than `cap` runs of the
    /// deployment run and no older run of it is pending (first in, first out, across nodes: the
    /// check and the start are one transaction that locks the deployment's row). Otherwise the run
    /// stays `pending`, its lease kept until `queued_until` (µs) — a safety net; a slot that frees
    /// up releases it at once ([`App::free_slot`]). Returns whether it started (with the events).
    pub async fn start_within_cap(
        &self,
        run: &RunRow,
        owner: &str,
        cap: u32,
        lease_until: i64,
        queued_until: i64,
    ) -> Result<Option<Vec<EventType>>, AppError> {
        let (id, deployment_id, owner) =
            (run.id.clone(), run.deployment_id.clone(), owner.to_owned());
        let now = self.now();
        let outcome = self
            .store()
            .transaction(move |tx| {
                tx.lock_deployment(&deployment_id)?;
                let Some(row) = tx.lock_run(&id)? else {
                    return Ok(Err(AppError::not_found(format!("run {id}"))));
                };
                if row.lease_owner.as_deref() != Some(owner.as_str()) {
                    return Ok(Err(AppError::LeaseLost { run_id: id }));
                }
                let from = match status_of(&row) {
                    Ok(s) => s,
                    Err(e) => return Ok(Err(e)),
                };
                let (running, older_pending) = tx.deployment_slots(&deployment_id, &id)?;
                let mut update = RunUpdate {
                    id: id.clone(),
                    ..RunUpdate::default()
                };
                if running < i64::from(cap) && !older_pending {
                    let events = match transition_events(from, &[RunStatus::Running]) {
                        Ok(e) => e,
                        Err(e) => return Ok(Err(e.into())),
                    };
                    update.status = Some(RunStatus::Running.as_str().to_owned());
                    update.started_at = Some(row.started_at.unwrap_or(now));
                    update.lease_until = Some(lease_until);
                    update.events = outbox(&events, now);
                    tx.force_update_run(update)?;
                    Ok(Ok(Some(events)))
                } else {
                    update.lease_until = Some(queued_until);
                    tx.force_update_run(update)?;
                    Ok(Ok(None))
                }
            })
            .await?;
        let started = outcome?;
        if let Some(events) = &started {
            log_events(&run.id, events);
        }
        Ok(started)
    }

    /// A run of a capped deployment stopped running (finished, parked, cancelled): its queued
    /// pending runs become claimable at once, and the workers are woken.
    pub async fn free_slot(&self, deployment_id: &str) -> Result<(), AppError> {
        let deployment_id = deployment_id.to_owned();
        self.store()
            .transaction(move |tx| tx.release_pending_of_deployment(&deployment_id))
            .await?;
        Ok(())
    }

    /// Hands a run back unfinished (its lease released) so that any worker may claim it again,
    /// e.g. on shutdown. No status change, no event.
    pub async fn release_run(&self, run: &RunRow, owner: &str) -> Result<(), AppError> {
        let update = RunUpdate {
            id: run.id.clone(),
            owner: owner.to_owned(),
            release_lease: true,
            ..RunUpdate::default()
        };
        if !self.store().update_run(update).await? {
            return Err(AppError::LeaseLost {
                run_id: run.id.clone(),
            });
        }
        Ok(())
    }

    /// Claims up to `limit` runnable runs for worker `owner`, leased for `lease` from now.
    pub async fn claim_runs(
        &self,
        owner: &str,
        lease: std::time::Duration,
        limit: usize,
    ) -> Result<Vec<RunRow>, AppError> {
        let now = self.now();
        Ok(self
            .store()
            .claim_runs(owner, now, now + lease.as_micros() as i64, limit)
            .await?)
    }

    /// Claims up to `limit` waiting runs whose wait has expired, for worker `owner`.
    pub async fn claim_expired_waits(
        &self,
        owner: &str,
        lease: std::time::Duration,
        limit: usize,
    ) -> Result<Vec<RunRow>, AppError> {
        let now = self.now();
        Ok(self
            .store()
            .claim_expired_waits(owner, now, now + lease.as_micros() as i64, limit)
            .await?)
    }

    /// Cancels a `pending`, `running` or `waiting` run, whoever works it: status `cancelled`,
    /// `finished_at` now, lease and wait cleared — in one transaction that locks the run. A
    /// worker holding it loses its lease (its next write is refused). `NotFound` for an unknown
    /// run; `IllegalTransition` (409) when it already finished.
    pub async fn cancel_run(&self, id: &str) -> Result<RunRow, AppError> {
        let id = id.to_owned();
        let now = self.now();
        let outcome = self
            .store()
            .transaction(move |tx| {
                let Some(row) = tx.lock_run(&id)? else {
                    return Ok(Err(AppError::not_found(format!("run {id}"))));
                };
                let from = match status_of(&row) {
                    Ok(s) => s,
                    Err(e) => return Ok(Err(e)),
                };
                let events = match transition_events(from, &[RunStatus::Cancelled]) {
                    Ok(events) => events,
                    Err(e) => return Ok(Err(e.into())),
                };
                let mut update = RunUpdate {
                    id: id.clone(),
                    status: Some(RunStatus::Cancelled.as_str().to_owned()),
                    finished_at: Some(now),
                    release_lease: true,
                    events: outbox(&events, now),
                    ..RunUpdate::default()
                };
                clear_wait(&mut update);
                tx.force_update_run(update)?;
                let row = tx.lock_run(&id)?.ok_or_else(|| {
                    triggerd_storage::StoreError::aborted(format!("run {id} vanished"))
                })?;
                Ok(Ok((row, events)))
            })
            .await?;
        let (row, events) = outcome?;
        log_events(&row.id, &events);
        Ok(row)
    }

    /// At the start of the one process that owns a SQLite database: hands back every run an
    /// earlier process of this node held (it is gone — killed, crashed), so they resume now
    /// rather than when their leases expire. Returns how many. Never on PostgreSQL, where other
    /// nodes may be working runs.
    pub async fn reclaim_runs_of_previous_process(&self) -> Result<u64, AppError> {
        if self.store().backend() != triggerd_storage::Backend::Sqlite {
            return Ok(0);
        }
        Ok(self.store().release_all_leases().await?)
    }

    /// Deletes finished runs created before `cutoff` (µs), and the records of cron slots fired
    /// before it; returns how many runs.
    pub async fn delete_finished_runs_before(&self, cutoff: i64) -> Result<u64, AppError> {
        let runs = self.store().delete_finished_runs_before(cutoff).await?;
        // A slot record only guards against firing a slot twice; slots that old never come due
        // again (a trigger's next slot only moves forward).
        self.store().delete_cron_slots_before(cutoff).await?;
        Ok(runs)
    }

    /// Deletes up to `max` de-duplication keys whose window has passed; returns how many.
    pub async fn prune_dedup_keys(&self, max: i64) -> Result<u64, AppError> {
        Ok(self.store().prune_dedup_keys(self.now(), max).await?)
    }

    /// Keeps the newest `keep` activity rows of a trigger; returns how many were deleted.
    pub async fn prune_activity(&self, trigger_id: &str, keep: usize) -> Result<u64, AppError> {
        Ok(self.store().prune_activity(trigger_id, keep).await?)
    }

    /// Records the status code finally answered to request `request_id` (a sync webhook answered
    /// after its run finished: its row was written with 202 when the run was stored).
    pub async fn set_activity_status(
        &self,
        request_id: &str,
        status_code: u16,
    ) -> Result<(), AppError> {
        Ok(self
            .store()
            .set_activity_status(request_id, i32::from(status_code))
            .await?)
    }
}

/// `{}` as stored.
const EMPTY_OBJECT: &str = "{}";
/// `[]` as stored.
const EMPTY_ARRAY: &str = "[]";

/// Whether `output` reads `deployment.name`, `deployment.webhook_urls` or the whole
/// `deployment` (read from the database by the run worker), rather than only `deployment.id`.
fn output_reads_deployment_beyond_id(definition: &Definition) -> bool {
    use triggerd_domain::path::Segment;
    definition.output.as_ref().is_some_and(|t| {
        t.expressions().iter().any(|p| match p.segments() {
            [Segment::Key(root), Segment::Key(field), ..] if root == "deployment" => field != "id",
            [Segment::Key(root), ..] => root == "deployment",
            _ => true,
        })
    })
}

fn pending(row: NewRun) -> PreparedRun {
    PreparedRun {
        row,
        status: RunStatus::Pending,
        events: Vec::new(),
        outbox: Vec::new(),
    }
}

fn clear_wait(update: &mut RunUpdate) {
    update.waiting_reason = Some(None);
    update.waiting_payload = Some(None);
    update.waiting_expires_at = Some(None);
}

fn json_text(error: &RunError) -> String {
    serde_json::to_string(error).unwrap_or_else(|_| "null".to_owned())
}

/// The outbox records of `events`, each with a new event id (`evt_...`, the `webhook-id` of its
/// deliveries), happening at `at` (µs). Hand them to the write of the change that emits them.
pub fn outbox(events: &[EventType], at: i64) -> Vec<OutboxEvent> {
    events
        .iter()
        .map(|e| OutboxEvent {
            id: new_id(IdKind::Event),
            event_type: e.as_str(),
            at,
        })
        .collect()
}

/// The one `info` line of a run that failed: its id, workflow, error code and message (`error`; never
/// its input, output or the request's body). Called wherever a run enters `failed`: the run
/// worker's moves ([`App::transition`]), a rejected approval, a cron run whose input no longer
/// fits.
pub(crate) fn log_failed(run_id: &str, workflow: &str, error: &RunError) {
    tracing::info!(%run_id, %workflow, code = %error.code, error = %error.message, "run failed");
}

/// The events a change emitted, for the debug log; their deliveries are written by the change's
/// transaction (see [`outbox`]).
pub(crate) fn log_events(run_id: &str, events: &[EventType]) {
    for event in events {
        tracing::debug!(%run_id, event = %event, "run event");
    }
}
