//! # triggerd-scheduler
//!
//! Run execution. The [`RunWorker`] claims runs from the store (a lease per run, so two
//! processes on one PostgreSQL database never work the same run, and a run held by a dead
//! process is taken over when its lease expires) and moves them to a final state.
//!
//! What exists today: runs of workflows **without steps** complete at once — `pending` →
//! `running` → `completed` with `final_output` = the workflow's `output` rendered (or the input),
//! or `failed` with code `template_error` when the output template reads a missing value. (Most
//! step-less webhook runs never reach the worker: the webhook stores them `completed` in the
//! ingest write — see `triggerd-ingress`'s `webhook.rs` — when the output does not read the
//! deployment's context store and renders.) Runs of
//! workflows **with steps** are left `pending` (their lease is renewed rarely, so they cost
//! nothing) until step execution is built. Cron firing arrives later in this crate too.
//!
//! The worker never polls on a fixed interval for new work: it sleeps until the store signals
//! that runs were committed, or until the next lease could expire.
//!
//! ```no_run
//! # async fn example(store: triggerd_storage::Store) {
//! let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
//! let worker = triggerd_scheduler::RunWorker::new(store, "node-1".into());
//! let handle = tokio::spawn(worker.run(stop_rx));
//! // ... later:
//! let _ = stop_tx.send(true);
//! let _ = handle.await;
//! # }
//! ```

pub mod command;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinSet;
use triggerd_domain::definition::Definition;
use triggerd_domain::run::{RunError, RunStatus, stepless_scope};
use triggerd_storage::{RunRow, RunUpdate, Store, StoreError};

/// How long a claim holds a run before another worker may take it over.
pub const LEASE: Duration = Duration::from_secs(60);
/// How long runs with steps stay parked before they are looked at again.
const PARK: Duration = Duration::from_secs(3600);
/// Runs claimed per round.
const BATCH: usize = 512;

/// Claims runs and completes them.
#[derive(Debug)]
pub struct RunWorker {
    store: Store,
    owner: String,
    definitions: HashMap<(String, i64), Arc<Definition>>,
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

impl RunWorker {
    /// A worker that claims runs under the lease owner name `owner` (unique per process).
    pub fn new(store: Store, owner: String) -> Self {
        RunWorker {
            store,
            owner,
            definitions: HashMap::new(),
        }
    }

    /// Works until `stop` turns true. Each round claims what is due, finishes it, and sleeps
    /// until the store signals new runs or the lease period passes (for takeovers).
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let notify = self.store.runs_notify();
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
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep(LEASE) => {}
                _ = stop.changed() => {}
            }
        }
        tracing::info!(owner = %self.owner, "run worker stopped");
    }

    /// Claims one batch and finishes each run in it; returns how many were claimed.
    pub async fn round(&mut self) -> Result<usize, StoreError> {
        let now = now_micros();
        let claimed = self
            .store
            .claim_runs(&self.owner, now, now + LEASE.as_micros() as i64, BATCH)
            .await?;
        let count = claimed.len();
        // The deployment context store, read once per deployment per round.
        let mut contexts: HashMap<String, Value> = HashMap::new();
        let mut updates = JoinSet::new();
        for run in claimed {
            let definition = self.definition(&run).await?;
            if !contexts.contains_key(&run.deployment_id) {
                let stored = match self.store.get_context(&run.deployment_id).await {
                    Ok(pairs) => pairs,
                    Err(StoreError::NotFound { .. }) => Vec::new(),
                    Err(e) => return Err(e),
                };
                let map: serde_json::Map<String, Value> = stored
                    .into_iter()
                    .map(|(k, v)| (k, serde_json::from_str(&v).unwrap_or(Value::Null)))
                    .collect();
                contexts.insert(run.deployment_id.clone(), Value::Object(map));
            }
            let context = contexts
                .get(&run.deployment_id)
                .cloned()
                .unwrap_or(Value::Null);
            let update = self.finish(&run, definition.as_deref(), &context, now_micros());
            let store = self.store.clone();
            // Updates go out together so the store's writer commits them in one batch.
            let status = update.status.clone().unwrap_or_default();
            updates.spawn(async move {
                let result = store.update_run(update.clone()).await;
                if matches!(result, Ok(true)) && !status.is_empty() {
                    metrics::counter!("triggerd_runs_finished_total", "status" => status)
                        .increment(1);
                }
                (update.id, result)
            });
        }
        while let Some(joined) = updates.join_next().await {
            match joined {
                Ok((_, Ok(true))) => {}
                Ok((id, Ok(false))) => {
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

    async fn definition(&mut self, run: &RunRow) -> Result<Option<Arc<Definition>>, StoreError> {
        let key = (run.workflow.clone(), run.workflow_version);
        if let Some(d) = self.definitions.get(&key) {
            return Ok(Some(d.clone()));
        }
        let Some(version) = self
            .store
            .get_workflow_version(&run.workflow, run.workflow_version)
            .await?
        else {
            return Ok(None);
        };
        match Definition::from_json_str(&version.definition) {
            Ok(d) => {
                let d = Arc::new(d);
                self.definitions.insert(key, d.clone());
                Ok(Some(d))
            }
            Err(e) => {
                tracing::error!(workflow = %run.workflow, version = run.workflow_version, error = %e, "stored definition does not parse");
                Ok(None)
            }
        }
    }

    /// The state change for a claimed run.
    /// `stored_context` is the deployment's context store; the run's own context (values its
    /// steps extracted) is laid over it.
    fn finish(
        &self,
        run: &RunRow,
        definition: Option<&Definition>,
        stored_context: &Value,
        now: i64,
    ) -> RunUpdate {
        let mut update = RunUpdate {
            id: run.id.clone(),
            owner: self.owner.clone(),
            ..RunUpdate::default()
        };
        let Some(definition) = definition else {
            let error = RunError::new(
                "workflow_missing",
                format!(
                    "workflow {} version {} is not stored",
                    run.workflow, run.workflow_version
                ),
            );
            return fail(update, run, now, &error);
        };
        if !definition.steps.is_empty() {
            // Step execution is not built yet: the run stays pending; look again much later.
            update.lease_until = Some(now + PARK.as_micros() as i64);
            return update;
        }
        let mut context = stored_context.clone();
        if let (Some(base), Value::Object(own)) = (context.as_object_mut(), parse(&run.context)) {
            base.extend(own);
        }
        let scope = stepless_scope(
            parse(&run.input),
            parse(&run.trigger_input),
            context,
            &run.id,
            run.created_at,
            &run.deployment_id,
        );
        match definition.render_output(&scope) {
            Ok(output) => {
                update.status = Some(RunStatus::Completed.as_str().to_owned());
                update.started_at = Some(run.started_at.unwrap_or(now));
                update.finished_at = Some(now);
                update.final_output = Some(output.to_string());
                update.release_lease = true;
                update
            }
            Err(e) => fail(
                update,
                run,
                now,
                &RunError::new("template_error", format!("output: {e}")),
            ),
        }
    }
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

fn fail(mut update: RunUpdate, run: &RunRow, now: i64, error: &RunError) -> RunUpdate {
    update.status = Some(RunStatus::Failed.as_str().to_owned());
    update.started_at = Some(run.started_at.unwrap_or(now));
    update.finished_at = Some(now);
    update.error = Some(serde_json::to_string(error).unwrap_or_default());
    update.release_lease = true;
    update
}
