//! # triggerd-scheduler
//!
//! Run execution. The [`RunWorker`] claims runs from the store (a lease per run, so two
//! processes on one PostgreSQL database never work the same run, and a run held by a dead
//! process is taken over when its lease expires) and moves them to a final state:
//! - runs of workflows **without steps** complete at once (`final_output` = `output` rendered,
//!   or `failed` with `template_error`); most never reach the worker, as the webhook's ingest
//!   write completes them (`triggerd_app::App::prepare_run`);
//! - runs **with steps** are worked by the [`executor`], one task per run: each step in order
//!   ([`steps`]: `http` through the SSRF-guarded client of `triggerd-delivery`, `command`
//!   through [`command`]), its execution recorded and committed before and after it runs, so a
//!   run interrupted at any point resumes at its current step.
//!
//! Every state change goes through `triggerd_app::App::transition`. The [`cron::CronScheduler`]
//! fires cron triggers' slots.
//!
//! The worker never polls on a fixed interval for new work: it sleeps until the store signals
//! that runs were committed, or until the next lease could expire.
//!
//! ```no_run
//! # async fn example(app: triggerd_app::App) -> Result<(), triggerd_delivery::OutboundError> {
//! use triggerd_delivery::{OutboundClient, OutboundConfig};
//! let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
//! let client = OutboundClient::new(OutboundConfig::default())?;
//! let worker = triggerd_scheduler::RunWorker::new(app, "node-1".into(), client);
//! let handle = tokio::spawn(worker.run(stop_rx));
//! // ... later:
//! let _ = stop_tx.send(true);
//! let _ = handle.await;
//! # Ok(()) }
//! ```

pub mod command;
pub mod cron;
pub mod executor;
pub mod steps;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinSet;
use triggerd_app::runs::{RunChange, final_output, scope_of};
use triggerd_app::{App, AppError};
use triggerd_delivery::OutboundClient;
use triggerd_domain::definition::Definition;
use triggerd_domain::run::{RunError, RunStatus};

use crate::executor::{Ended, Executor};
use triggerd_storage::RunRow;

/// How long a claim holds a run before another worker may take it over.
pub const LEASE: Duration = Duration::from_secs(60);
/// Runs with steps worked at once by one worker; more wait, claimed, for a free slot.
const MAX_EXECUTING: usize = 256;
/// How often a worker asks the database when the next lease expires.
const TAKEOVER_CHECK: Duration = Duration::from_secs(5);
/// How long a stopping worker gives its runs to hand back their current step.
const HAND_BACK: Duration = Duration::from_secs(10);
/// Runs claimed per round.
const BATCH: usize = 512;

/// Claims runs and completes them.
#[derive(Debug)]
pub struct RunWorker {
    app: App,
    owner: String,
    definitions: HashMap<(String, i64), Arc<Definition>>,
    executor: Executor,
    /// Runs with steps this worker is executing (their tasks hold the lease).
    executing: Arc<Mutex<HashSet<String>>>,
    tasks: JoinSet<()>,
    slots: Arc<tokio::sync::Semaphore>,
    stop: watch::Receiver<bool>,
    /// When the next lease expiry was last read, and that expiry.
    takeover: Option<(tokio::time::Instant, tokio::time::Instant)>,
}

impl RunWorker {
    /// A worker that claims runs under the lease owner name `owner` (unique per process);
    /// `http` steps go out through `client`.
    pub fn new(app: App, owner: String, client: OutboundClient) -> Self {
        let executor = Executor {
            app: app.clone(),
            client,
            owner: owner.clone(),
        };
        RunWorker {
            app,
            owner,
            definitions: HashMap::new(),
            executor,
            executing: Arc::default(),
            tasks: JoinSet::new(),
            slots: Arc::new(tokio::sync::Semaphore::new(MAX_EXECUTING)),
            stop: watch::channel(false).1,
            takeover: None,
        }
    }

    /// Works until `stop` turns true. Each round claims what is due, finishes it, and sleeps
    /// until the store signals new runs or the lease period passes (for takeovers).
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        self.stop = stop.clone();
        let notify = self.app.store().runs_notify();
        tracing::info!(owner = %self.owner, "run worker started");
        loop {
            if *stop.borrow() {
                break;
            }
            // Register interest before claiming so a commit between the claim and the wait
            // is not missed.
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let worked = match self.round().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "run worker round failed; retrying shortly");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            if worked == BATCH {
                continue; // more may be waiting
            }
            let takeover = self.until_next_takeover().await;
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep(takeover) => {}
                _ = stop.changed() => {}
                Some(_) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    // A run finished, parked or was handed back: the next expiry may have
                    // moved (a new wait).
                    self.takeover = None;
                }
            }
        }
        // The executing runs see `stop`, interrupt their step and hand the run back.
        let tasks = std::mem::take(&mut self.tasks);
        if tokio::time::timeout(HAND_BACK, tasks.join_all())
            .await
            .is_err()
        {
            tracing::warn!("runs did not hand back in time; they are taken over after their lease");
        }
        tracing::info!(owner = %self.owner, "run worker stopped");
    }

    /// How long until the earliest lease of an unfinished run expires (a run held by a worker
    /// that died becomes claimable then), at most [`LEASE`]. The database is asked at most every
    /// [`TAKEOVER_CHECK`] (the query reads every unfinished run); in between, the last answer
    /// stands.
    async fn until_next_takeover(&mut self) -> Duration {
        let now = tokio::time::Instant::now();
        if self
            .takeover
            .is_none_or(|(checked, at)| now >= checked + TAKEOVER_CHECK || at <= now)
        {
            let at = match self.app.store().next_lease_expiry().await {
                Ok(Some(at)) => {
                    let wait = (at - self.app.now()).max(0) as u64;
                    // A little after the expiry, so the claim sees it expired.
                    now + Duration::from_micros(wait).saturating_add(Duration::from_millis(20))
                }
                Ok(None) => now + LEASE,
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the next lease expiry");
                    now + LEASE
                }
            };
            self.takeover = Some((now, at));
        }
        let at = self.takeover.map_or(now + LEASE, |(_, at)| at);
        at.saturating_duration_since(now)
            .max(Duration::from_millis(20))
            .min(LEASE)
    }

    /// Claims one batch and finishes each run in it; returns how many were claimed.
    pub async fn round(&mut self) -> Result<usize, AppError> {
        // Waits that expired: their runs fail with `wait_timeout`.
        for run in self
            .app
            .claim_expired_waits(&self.owner, LEASE, BATCH)
            .await?
        {
            let executor = self.executor.clone();
            self.tasks.spawn(async move {
                let id = run.id.clone();
                if let Err(e) = executor.expire(run).await {
                    tracing::warn!(run_id = %id, error = %e, "could not fail an expired wait; retried after its lease");
                }
            });
        }
        let claimed = self.app.claim_runs(&self.owner, LEASE, BATCH).await?;
        let count = claimed.len();
        // The deployment context store, read once per deployment per round.
        let mut contexts: HashMap<String, Value> = HashMap::new();
        let mut roots: HashMap<String, Value> = HashMap::new();
        let mut updates = JoinSet::new();
        for run in claimed {
            let definition = self.definition(&run).await?;
            if let Some(definition) = definition.as_ref().filter(|d| !d.steps.is_empty()) {
                self.spawn_execution(run, definition.clone());
                continue;
            }
            if !contexts.contains_key(&run.deployment_id) {
                let stored = match self.app.context(&run.deployment_id).await {
                    Ok(map) => map,
                    Err(AppError::NotFound { .. }) => serde_json::Map::new(),
                    Err(e) => return Err(e),
                };
                contexts.insert(run.deployment_id.clone(), Value::Object(stored));
            }
            // The deployment's name and webhook URLs cost a read; only outputs that use them
            // get them (most runs reaching the worker read `context` instead).
            if definition
                .as_ref()
                .is_some_and(|d| d.output_reads("deployment"))
                && !roots.contains_key(&run.deployment_id)
            {
                let root = self.app.deployment_root(&run.deployment_id).await?;
                roots.insert(run.deployment_id.clone(), root);
            }
            let context = contexts
                .get(&run.deployment_id)
                .cloned()
                .unwrap_or(Value::Null);
            let root = roots
                .get(&run.deployment_id)
                .cloned()
                .unwrap_or_else(|| serde_json::json!({"id": run.deployment_id}));
            let (path, change) = self.finish(&run, definition.as_deref(), &context, root);
            let (app, owner) = (self.app.clone(), self.owner.clone());
            // Updates go out together so the store's writer commits them in one batch.
            updates.spawn(async move {
                let result = app.transition(&run, &owner, &path, change).await;
                if let Ok(moved) = &result
                    && moved.status.is_terminal()
                {
                    metrics::counter!("triggerd_runs_finished_total", "status" => moved.status.as_str())
                        .increment(1);
                }
                (run.id, result)
            });
        }
        while let Some(joined) = updates.join_next().await {
            match joined {
                Ok((_, Ok(_))) => {}
                Ok((id, Err(AppError::LeaseLost { .. }))) => {
                    tracing::warn!(run_id = %id, "lost the lease of a run before finishing it")
                }
                Ok((id, Err(e))) => {
                    tracing::warn!(run_id = %id, error = %e, "could not store a run's state; it will be retried after its lease")
                }
                Err(e) => tracing::error!(error = %e, "run update task panicked"),
            }
        }
        Ok(count)
    }

    /// Executes a run with steps in a task of its own (unless this worker already does).
    fn spawn_execution(&mut self, run: RunRow, definition: Arc<Definition>) {
        let id = run.id.clone();
        if !self
            .executing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone())
        {
            return;
        }
        let (executor, executing, slots, stop) = (
            self.executor.clone(),
            self.executing.clone(),
            self.slots.clone(),
            self.stop.clone(),
        );
        self.tasks.spawn(async move {
            let _slot = slots.acquire_owned().await;
            match executor.execute(run, definition, stop).await {
                Ok(Ended::Finished(status)) => {
                    tracing::debug!(run_id = %id, %status, "run finished")
                }
                Ok(Ended::Lost) => tracing::info!(run_id = %id, "run no longer ours (cancelled or taken over)"),
                Ok(Ended::HandedBack) => tracing::info!(run_id = %id, "run handed back at its current step"),
                Ok(Ended::Parked) => tracing::debug!(run_id = %id, "run parked waiting"),
                Ok(Ended::Queued) => tracing::debug!(run_id = %id, "run queued behind its deployment's concurrency cap"),
                Err(e) => tracing::warn!(run_id = %id, error = %e, "run execution stopped; it is retried after its lease"),
            }
            executing.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        });
    }

    async fn definition(&mut self, run: &RunRow) -> Result<Option<Arc<Definition>>, AppError> {
        let key = (run.workflow.clone(), run.workflow_version);
        if let Some(d) = self.definitions.get(&key) {
            return Ok(Some(d.clone()));
        }
        match self
            .app
            .workflow_definition(&run.workflow, run.workflow_version)
            .await
        {
            Ok(Some(d)) => {
                self.definitions.insert(key, d.clone());
                Ok(Some(d))
            }
            Ok(None) => Ok(None),
            Err(AppError::Internal { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The state move for a claimed run: the statuses it goes through and the changes.
    /// `stored_context` is the deployment's context store; the run's own context (values its
    /// steps extracted) is laid over it.
    fn finish(
        &self,
        run: &RunRow,
        definition: Option<&Definition>,
        stored_context: &Value,
        deployment: Value,
    ) -> (Vec<RunStatus>, RunChange) {
        let Some(definition) = definition else {
            let error = RunError::new(
                "workflow_missing",
                format!(
                    "workflow {} version {} is not stored or does not parse",
                    run.workflow, run.workflow_version
                ),
            );
            return fail(run, error);
        };
        let context = match stored_context {
            Value::Object(map) => map.clone(),
            _ => serde_json::Map::new(),
        };
        let scope = scope_of(
            run,
            context,
            Value::Object(serde_json::Map::new()),
            deployment,
        );
        match final_output(definition, &scope) {
            Ok(output) => (
                to_end(run, RunStatus::Completed),
                RunChange {
                    final_output: Some(output),
                    ..RunChange::default()
                },
            ),
            Err(error) => fail(run, error),
        }
    }
}

/// The path from the run's status to `end`: through `running` unless it is running already.
fn to_end(run: &RunRow, end: RunStatus) -> Vec<RunStatus> {
    if run.status == RunStatus::Running.as_str() || end == RunStatus::Failed {
        vec![end]
    } else {
        vec![RunStatus::Running, end]
    }
}

fn fail(run: &RunRow, error: RunError) -> (Vec<RunStatus>, RunChange) {
    (
        to_end(run, RunStatus::Failed),
        RunChange {
            error: Some(error),
            ..RunChange::default()
        },
    )
}
