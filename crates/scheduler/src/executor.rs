//! Executes one claimed run of a workflow with steps, step by step.
//!
//! The run's state is committed before each step starts (its execution entry, `running`, with
//! the lease extended past the step's timeout) and after it ends (the entry's output or error,
//! the run's own context), so a run interrupted at any line — SIGKILL, a lost node — resumes at
//! its current step: the worker that claims it next finds that step's entry still `running`,
//! marks it interrupted and executes the step again with the next attempt number. So steps are
//! **at least once**: an `http` step may reach its receiver twice, which the
//! `Idempotency-Key: <run_id>:<step_id>` header lets the receiver detect.
//!
//! No step work happens inside a storage transaction: HTTP requests and processes run here, in
//! the worker's task; only the state changes go through `App::transition`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::watch;
use triggerd_app::memory::Charge;
use triggerd_app::runs::{
    RunChange, Waiting, executing_scope, final_output, scope_cost, status_of,
};
use triggerd_app::waits::{WaitKind, new_wait_token, waiting_payload};
use triggerd_app::{App, AppError};
use triggerd_delivery::OutboundClient;
use triggerd_domain::definition::{Definition, Step, StepKind};
use triggerd_domain::run::{RunError, RunStatus, StepStatus, rfc3339};
use triggerd_storage::RunRow;

use crate::LEASE;
use crate::steps::{self, StepFailure};

/// How long a run queued behind its deployment's concurrency cap waits before it is checked
/// again if no slot-freeing wakes it earlier (a run cancelled through the API, a node that died
/// with a slot).
const QUEUED_RECHECK: Duration = Duration::from_secs(30);

/// How often a worker checks, while a step runs, whether the run was cancelled.
const CANCEL_CHECK: Duration = Duration::from_secs(1);

/// What runs steps: the application, the outbound client, the worker's lease name.
#[derive(Debug, Clone)]
pub struct Executor {
    pub(crate) app: App,
    pub(crate) client: OutboundClient,
    pub(crate) owner: String,
}

/// How a run's execution ended on this worker.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// Completed, failed or timed out: the final state is stored.
    Finished(RunStatus),
    /// Cancelled through the API, or taken over by another worker: nothing more was written.
    Lost,
    /// The worker is stopping: the run was handed back (its lease released) at its current step.
    HandedBack,
    /// Parked at a `wait_for_webhook` or `approval` step: it waits as a row, not as a task.
    Parked,
    /// Left `pending`: its deployment is at its `max_concurrent_runs`.
    Queued,
}

/// The run being worked, as this worker keeps it between commits.
struct Progress {
    row: RunRow,
    executions: Vec<Value>,
    context: Map<String, Value>,
    outputs: Map<String, Value>,
}

impl Executor {
    /// Works `run` (claimed by this worker) to its end, or until it is lost or `stop` turns.
    /// Under a `max_concurrent_runs` cap, a pending run starts only when a slot is free (else it
    /// stays queued, `Ended::Queued`), and a run that stops running frees its slot for the next.
    pub async fn execute(
        &self,
        run: RunRow,
        definition: Arc<Definition>,
        stop: watch::Receiver<bool>,
    ) -> Result<Ended, AppError> {
        let cap = definition.max_concurrent_runs;
        let deployment_id = run.deployment_id.clone();
        let mut run = run;
        if cap > 0 && status_of(&run)? == RunStatus::Pending {
            let now = self.app.now();
            let started = self
                .app
                .start_within_cap(
                    &run,
                    &self.owner,
                    cap,
                    now + LEASE.as_micros() as i64,
                    now + QUEUED_RECHECK.as_micros() as i64,
                )
                .await;
            match started {
                Ok(Some(_)) => {
                    run.status = RunStatus::Running.as_str().to_owned();
                    run.started_at.get_or_insert(now);
                }
                Ok(None) => return Ok(Ended::Queued),
                Err(AppError::LeaseLost { .. }) => return Ok(Ended::Lost),
                Err(e) => return Err(e),
            }
        }
        let ended = self.run_to_end(run, definition, stop).await;
        if cap > 0 && !matches!(ended, Ok(Ended::HandedBack)) {
            if let Err(e) = self.app.free_slot(&deployment_id).await {
                tracing::warn!(%deployment_id, error = %e, "could not free a concurrency slot; queued runs start within a minute");
            }
        }
        ended
    }

    async fn run_to_end(
        &self,
        run: RunRow,
        definition: Arc<Definition>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<Ended, AppError> {
        let mut progress = Progress {
            executions: match serde_json::from_str(&run.step_executions) {
                Ok(Value::Array(a)) => a,
                _ => Vec::new(),
            },
            context: match serde_json::from_str(&run.context) {
                Ok(Value::Object(m)) => m,
                _ => Map::new(),
            },
            outputs: Map::new(),
            row: run,
        };
        let now = self.app.now();
        if status_of(&progress.row)? == RunStatus::Pending {
            let change = RunChange {
                lease_until: Some(now + LEASE.as_micros() as i64),
                ..RunChange::default()
            };
            self.app
                .transition(&progress.row, &self.owner, &[RunStatus::Running], change)
                .await?;
            progress.row.status = RunStatus::Running.as_str().to_owned();
            progress.row.started_at.get_or_insert(now);
        }
        let deployment = self
            .app
            .deployment_root(&progress.row.deployment_id)
            .await?;

        // A wait resumed (or approved) since: its step finishes here, like any other step.
        if let Some(last) = progress.executions.last()
            && last["status"] == StepStatus::Resumed.as_str()
        {
            let output = last["output"].clone();
            let step = last["step_id"]
                .as_str()
                .and_then(|id| definition.step(id))
                .cloned();
            if let Some(last) = progress.executions.last_mut() {
                last["status"] = json!(StepStatus::Completed);
                last["finished_at"] = json!(rfc3339(now));
            }
            if let Some(step) = step {
                if let Err(error) = self.extract(&step, &output, &mut progress).await {
                    return self.fail(&mut progress, error).await;
                }
            }
        }
        // `max_duration_seconds` counts the time the run works, not the time it waits for a
        // callback or a reviewer (a day by default).
        let started_at = progress.row.started_at.unwrap_or(now);
        let deadline = started_at
            + i64::from(definition.max_duration_seconds) * 1_000_000
            + waited_micros(&progress.executions);

        // Steps already finished (by this or an earlier worker), in order.
        let mut next = 0;
        for exec in &progress.executions {
            if exec["status"] == StepStatus::Completed.as_str()
                && let Some(id) = exec["step_id"].as_str()
            {
                progress
                    .outputs
                    .insert(id.to_owned(), json!({"output": exec["output"]}));
                next = definition
                    .steps
                    .iter()
                    .position(|s| s.id == id)
                    .map_or(next, |i| i + 1);
            }
        }
        // A step left `running` was interrupted (a crash, a lost node): it runs again.
        let mut attempt: u64 = 1;
        if let Some(last) = progress.executions.last_mut()
            && last["status"] == StepStatus::Running.as_str()
        {
            attempt = last["attempt"].as_u64().unwrap_or(1) + 1;
            last["status"] = json!(StepStatus::Failed);
            last["finished_at"] = json!(rfc3339(now));
            last["error"] = json!(RunError::new(
                "interrupted",
                "the worker stopped during this step; it was run again"
            ));
        }

        let reads_trigger = definition.reads("trigger");
        for step in &definition.steps[next.min(definition.steps.len())..] {
            let stopping = *stop.borrow();
            if stopping {
                return self.hand_back(&progress).await;
            }
            let now = self.app.now();
            if now >= deadline {
                return self
                    .fail(
                        &mut progress,
                        RunError::timeout(definition.max_duration_seconds.into()),
                    )
                    .await;
            }
            if let Some(kind) = wait_kind(step) {
                return self.park(&mut progress, step, kind, attempt).await;
            }
            let remaining = Duration::from_micros((deadline - now) as u64);
            let timeout = step_timeout(step).min(remaining);
            // SAFETY (crash safety): the step's entry is committed `running` before it starts.
            progress.executions.push(json!({
                "step_id": step.id, "type": step.kind.type_name(), "status": StepStatus::Running,
                "attempt": attempt, "started_at": rfc3339(now), "finished_at": null,
                "output": null, "error": null,
            }));
            let lease_until = now + (timeout + LEASE).as_micros() as i64;
            match self.save(&progress, lease_until).await {
                Ok(()) => {}
                Err(AppError::LeaseLost { .. }) => return Ok(Ended::Lost),
                Err(e) => return Err(e),
            }
            let (scope, charge) = self.scope(&progress, &deployment, reads_trigger).await?;
            let key = format!("{}:{}", progress.row.id, step.id);
            let work = self.run_step(step, &scope, &key, timeout);
            let outcome = tokio::select! {
                result = tokio::time::timeout(timeout, work) => match result {
                    Ok(result) => result,
                    Err(_) if timeout < step_timeout(step) => Err(StepFailure {
                        error: RunError::timeout(definition.max_duration_seconds.into()),
                        output: None,
                    }),
                    Err(_) => Err(StepFailure {
                        error: RunError::step_failed(&step.id, format!("timed out after {} s", timeout.as_secs())),
                        output: None,
                    }),
                },
                () = self.lost(&progress.row.id) => return Ok(Ended::Lost),
                () = async { drop(stop.wait_for(|s| *s).await) } => {
                    return self.hand_back(&progress).await;
                }
            };
            drop((scope, charge));
            let finished = rfc3339(self.app.now());
            let Some(entry) = progress.executions.last_mut() else {
                return Err(AppError::Internal {
                    reason: "no step entry".into(),
                });
            };
            entry["finished_at"] = json!(finished);
            match outcome {
                Ok(output) => {
                    entry["status"] = json!(StepStatus::Completed);
                    entry["output"] = output.clone();
                    if let Err(error) = self.extract(step, &output, &mut progress).await {
                        return self.fail(&mut progress, error).await;
                    }
                    progress
                        .outputs
                        .insert(step.id.clone(), json!({"output": output}));
                    attempt = 1;
                    match self
                        .save(&progress, self.app.now() + LEASE.as_micros() as i64)
                        .await
                    {
                        Ok(()) => {}
                        Err(AppError::LeaseLost { .. }) => return Ok(Ended::Lost),
                        Err(e) => return Err(e),
                    }
                }
                Err(failure) => {
                    entry["status"] = json!(StepStatus::Failed);
                    entry["output"] = failure.output.unwrap_or(Value::Null);
                    entry["error"] = json!(failure.error);
                    return self.fail(&mut progress, failure.error).await;
                }
            }
        }

        let (scope, charge) = self.scope(&progress, &deployment, reads_trigger).await?;
        let output = match final_output(&definition, &scope) {
            Ok(output) => output,
            Err(error) => return self.fail(&mut progress, error).await,
        };
        drop((scope, charge));
        let change = RunChange {
            final_output: Some(output),
            step_executions: Some(Value::Array(progress.executions.clone())),
            context: Some(Value::Object(progress.context.clone())),
            ..RunChange::default()
        };
        self.finish(&progress, RunStatus::Completed, change).await
    }

    /// Parks the run at a `wait_for_webhook` or `approval` step: its entry `waiting` with the
    /// wait token, the run `waiting` with the URLs to resume or decide, its lease released.
    async fn park(
        &self,
        progress: &mut Progress,
        step: &Step,
        kind: WaitKind,
        attempt: u64,
    ) -> Result<Ended, AppError> {
        let now = self.app.now();
        let token = new_wait_token(&progress.row.id)?;
        let payload = waiting_payload(kind, self.app.public_url(), &token);
        let expires_at = now + (step_timeout(step).as_micros() as i64);
        progress.executions.push(json!({
            "step_id": step.id, "type": step.kind.type_name(), "status": StepStatus::Waiting,
            "attempt": attempt, "started_at": rfc3339(now), "finished_at": null,
            "output": null, "error": null, "wait_token": token,
        }));
        let change = RunChange {
            step_executions: Some(Value::Array(progress.executions.clone())),
            context: Some(Value::Object(progress.context.clone())),
            waiting: Some(Some(Waiting {
                reason: kind.reason().to_owned(),
                payload,
                expires_at,
            })),
            ..RunChange::default()
        };
        match self
            .app
            .transition(&progress.row, &self.owner, &[RunStatus::Waiting], change)
            .await
        {
            Ok(_) => Ok(Ended::Parked),
            Err(AppError::LeaseLost { .. }) => Ok(Ended::Lost),
            Err(e) => Err(e),
        }
    }

    /// Fails a run whose wait expired (claimed by this worker): `wait_timeout`.
    pub async fn expire(&self, run: RunRow) -> Result<Ended, AppError> {
        let mut executions: Vec<Value> = match serde_json::from_str(&run.step_executions) {
            Ok(Value::Array(a)) => a,
            _ => Vec::new(),
        };
        let step_id = executions
            .last()
            .and_then(|e| e["step_id"].as_str())
            .unwrap_or("")
            .to_owned();
        let error = RunError::wait_timeout(&step_id);
        if let Some(last) = executions.last_mut() {
            last["status"] = json!(StepStatus::Failed);
            last["finished_at"] = json!(rfc3339(self.app.now()));
            last["error"] = json!(error);
        }
        tracing::info!(run_id = %run.id, step_id, "wait expired; the run fails");
        let progress = Progress {
            row: run,
            executions,
            context: Map::new(),
            outputs: Map::new(),
        };
        let change = RunChange {
            error: Some(error),
            step_executions: Some(Value::Array(progress.executions.clone())),
            ..RunChange::default()
        };
        self.finish(&progress, RunStatus::Failed, change).await
    }

    async fn run_step(
        &self,
        step: &Step,
        scope: &Value,
        idempotency_key: &str,
        timeout: Duration,
    ) -> Result<Value, StepFailure> {
        match &step.kind {
            StepKind::Http(http) => {
                steps::http(&self.client, &step.id, http, scope, idempotency_key).await
            }
            StepKind::Command(command) => steps::command(&step.id, command, scope, timeout).await,
            // Parked before they get here (see `park`).
            StepKind::WaitForWebhook { .. } | StepKind::Approval { .. } => Err(StepFailure {
                error: RunError::step_failed(&step.id, "a waiting step cannot be executed"),
                output: None,
            }),
        }
    }

    /// Applies `extract` (the run's context) and `extract_to_context` (also the deployment's
    /// context store) of a finished step.
    async fn extract(
        &self,
        step: &Step,
        output: &Value,
        progress: &mut Progress,
    ) -> Result<(), RunError> {
        let read = |path: &triggerd_domain::path::Path| {
            path.lookup(output).cloned().ok_or_else(|| {
                RunError::template_error(
                    &step.id,
                    format!("extract: the output has no value at `{path}`"),
                )
            })
        };
        for (key, path) in &step.extract {
            progress.context.insert(key.clone(), read(path)?);
        }
        if step.extract_to_context.is_empty() {
            return Ok(());
        }
        let mut persisted = Map::new();
        for (key, path) in &step.extract_to_context {
            let value = read(path)?;
            progress.context.insert(key.clone(), value.clone());
            persisted.insert(key.clone(), value);
        }
        match self
            .app
            .patch_context(&progress.row.deployment_id, persisted)
            .await
        {
            Ok(_) | Err(AppError::NotFound { .. }) => Ok(()),
            Err(e) => Err(RunError::step_failed(
                &step.id,
                format!("extract_to_context: {e}"),
            )),
        }
    }

    /// The run's template scope now: the deployment's context store under the run's own
    /// (`trigger` only when a template reads it), and what it holds of the node's memory budget
    /// (drop both together): a large run's parsed scope is charged, waiting for the budget if
    /// need be — the run is accepted already.
    async fn scope(
        &self,
        progress: &Progress,
        deployment: &Value,
        with_trigger: bool,
    ) -> Result<(Value, Charge), AppError> {
        let charge = self
            .app
            .memory()
            .charge_patiently(scope_cost(&progress.row, with_trigger))
            .await;
        let mut context = match self.app.context(&progress.row.deployment_id).await {
            Ok(map) => map,
            Err(AppError::NotFound { .. }) => Map::new(),
            Err(e) => return Err(e),
        };
        context.extend(progress.context.clone());
        let scope = executing_scope(
            &progress.row,
            context,
            Value::Object(progress.outputs.clone()),
            deployment.clone(),
            with_trigger,
        );
        Ok((scope, charge))
    }

    /// Commits the executions and context so far, keeping the lease until `lease_until`.
    async fn save(&self, progress: &Progress, lease_until: i64) -> Result<(), AppError> {
        let change = RunChange {
            step_executions: Some(Value::Array(progress.executions.clone())),
            context: Some(Value::Object(progress.context.clone())),
            lease_until: Some(lease_until),
            ..RunChange::default()
        };
        self.app
            .transition(&progress.row, &self.owner, &[], change)
            .await
            .map(drop)
    }

    async fn fail(&self, progress: &mut Progress, error: RunError) -> Result<Ended, AppError> {
        tracing::info!(run_id = %progress.row.id, code = %error.code, message = %error.message, "run failed");
        let change = RunChange {
            error: Some(error),
            step_executions: Some(Value::Array(progress.executions.clone())),
            context: Some(Value::Object(progress.context.clone())),
            ..RunChange::default()
        };
        self.finish(progress, RunStatus::Failed, change).await
    }

    async fn finish(
        &self,
        progress: &Progress,
        to: RunStatus,
        change: RunChange,
    ) -> Result<Ended, AppError> {
        match self
            .app
            .transition(&progress.row, &self.owner, &[to], change)
            .await
        {
            Ok(_) => {
                metrics::counter!("triggerd_runs_finished_total", "status" => to.as_str())
                    .increment(1);
                Ok(Ended::Finished(to))
            }
            Err(AppError::LeaseLost { .. }) => Ok(Ended::Lost),
            Err(e) => Err(e),
        }
    }

    /// Hands the run back at its current step (the server is stopping).
    async fn hand_back(&self, progress: &Progress) -> Result<Ended, AppError> {
        match self.app.release_run(&progress.row, &self.owner).await {
            Ok(()) | Err(AppError::LeaseLost { .. }) => Ok(Ended::HandedBack),
            Err(e) => Err(e),
        }
    }

    /// Resolves when the run is no longer this worker's: cancelled, finished by someone else,
    /// or its lease taken over. Checked every [`CANCEL_CHECK`] while a step runs.
    async fn lost(&self, run_id: &str) {
        loop {
            tokio::time::sleep(CANCEL_CHECK).await;
            match self.app.store().get_run(run_id).await {
                Ok(Some(row)) if row.lease_owner.as_deref() == Some(self.owner.as_str()) => {}
                Ok(_) => {
                    tracing::info!(%run_id, "run cancelled or taken over; its step is interrupted");
                    return;
                }
                Err(e) => tracing::warn!(%run_id, error = %e, "could not check the run"),
            }
        }
    }
}

/// What a waiting step waits for; `None` for steps that work.
fn wait_kind(step: &Step) -> Option<WaitKind> {
    match step.kind {
        StepKind::WaitForWebhook { .. } => Some(WaitKind::Webhook),
        StepKind::Approval { .. } => Some(WaitKind::Approval),
        _ => None,
    }
}

/// Time spent parked by finished waits (µs): from each wait entry's `started_at` to its
/// `finished_at`.
fn waited_micros(executions: &[Value]) -> i64 {
    let micros = |v: &Value| {
        v.as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp_micros())
    };
    executions
        .iter()
        .filter(|e| matches!(e["type"].as_str(), Some("wait_for_webhook" | "approval")))
        .filter_map(|e| Some(micros(&e["finished_at"])? - micros(&e["started_at"])?))
        .sum()
}

/// A step's own timeout.
fn step_timeout(step: &Step) -> Duration {
    Duration::from_secs(match &step.kind {
        StepKind::Http(h) => {
            // Every attempt, and the backoff between them.
            let attempts = u64::from(h.retries) + 1;
            let backoff: u64 = (1..=h.retries).map(|a| steps::backoff(a).as_secs()).sum();
            h.timeout_seconds.max(1) * attempts + backoff
        }
        StepKind::Command(c) => c.timeout_seconds.max(1),
        StepKind::WaitForWebhook { timeout_seconds } | StepKind::Approval { timeout_seconds } => {
            *timeout_seconds
        }
    })
}
