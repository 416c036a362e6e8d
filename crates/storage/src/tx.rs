//! [`Tx`]: several reads and writes in ONE transaction of the writer, for the operations of
//! `triggerd-app` that must not be left half-done — a workflow version with the sync of its
//! deployments' declared triggers, a deployment with its declared triggers, a trigger's
//! read-merge-write, a run's checked state change.
//!
//! The closure given to [`Store::transaction`] runs on the writer thread inside its own savepoint
//! of the current batch: when it returns `Err`, everything it wrote is rolled back and the rest of
//! the batch commits; when it returns `Ok`, its writes commit with the batch, and the caller gets
//! the result only after that commit. The closure must only compute and call `Tx` methods — no
//! I/O, no sleeping, no waiting on anything: every write of the node (and, on PostgreSQL, the
//! locks its batch holds) waits for it.
//!
//! Rows that a read-modify-write depends on are read with `lock_*`: on PostgreSQL that is
//! `SELECT … FOR UPDATE`, so a concurrent change from another node waits for this transaction
//! (or this one for it) instead of being overwritten; on SQLite the single writer serialises
//! everything already.

use diesel::prelude::*;

use crate::Store;
use crate::conn::DbConn;
use crate::deployments::{self, DeploymentRow, NewDeployment};
use crate::error::{Result, StoreError};
use crate::runs::{self, NewRun, RunRow, RunUpdate};
use crate::schema::{deployments as deployments_t, runs as runs_t, triggers, webhook_tokens};
use crate::triggers::{self as trig, NewTrigger, TriggerPatch, TriggerRow};
use crate::workflows::{self, WorkflowVersionRow};

/// One transaction on the writer's connection (see the module docs).
pub struct Tx<'a> {
    c: &'a mut DbConn,
    wakes_workers: bool,
    wakes_deliveries: bool,
    /// Whether any hook exists, once asked in this transaction (see [`Tx::enqueue_events`]).
    pub(crate) hooks_exist: Option<bool>,
    /// Runs this transaction finished, for their watchers (see `awaited`).
    finished_runs: Vec<String>,
}

impl std::fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx").finish_non_exhaustive()
    }
}

impl Store {
    /// Runs `f` as one transaction of the writer (see [`Tx`]); its result is returned once it is
    /// committed. `f` returning `Err` rolls back everything it wrote.
    pub async fn transaction<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T> + Send + 'static,
    {
        let (result, _, wakes_deliveries) = self
            .write(
                move |c| {
                    let mut tx = Tx {
                        c,
                        wakes_workers: false,
                        wakes_deliveries: false,
                        hooks_exist: None,
                        finished_runs: Vec::new(),
                    };
                    let result = f(&mut tx)?;
                    Ok((
                        result,
                        tx.wakes_workers,
                        (tx.wakes_deliveries, tx.finished_runs),
                    ))
                },
                |(_, wakes, _)| *wakes,
            )
            .await?;
        let (wakes_deliveries, finished_runs) = wakes_deliveries;
        if wakes_deliveries {
            crate::hooks::wake_delivery_workers();
        }
        for id in &finished_runs {
            crate::awaited::finished(id);
        }
        Ok(result)
    }
}

/// `FOR UPDATE` of the rows `ids` of a table with a text `id` on PostgreSQL; nothing on SQLite.
macro_rules! lock_rows {
    ($c:expr, $table:path, $id_col:path, $id:expr) => {
        match $c {
            DbConn::Postgres(pg) => {
                let _: Vec<String> = $table
                    .filter($id_col.eq($id))
                    .select($id_col)
                    .for_update()
                    .load(pg)?;
            }
            DbConn::Sqlite(_) => {}
        }
    };
}

impl Tx<'_> {
    /// The connection, for the `Tx` methods other modules of this crate define.
    pub(crate) fn conn(&mut self) -> &mut DbConn {
        self.c
    }

    /// A deployment, locked for the rest of the transaction.
    pub fn lock_deployment(&mut self, id: &str) -> Result<Option<DeploymentRow>> {
        lock_rows!(self.c, deployments_t::table, deployments_t::id, id);
        Ok(deployments_t::table
            .find(id)
            .select(DeploymentRow::as_select())
            .first(self.c)
            .optional()?)
    }

    /// Every deployment of a workflow, oldest first, locked for the rest of the transaction.
    pub fn lock_deployments_of_workflow(&mut self, workflow: &str) -> Result<Vec<DeploymentRow>> {
        lock_rows!(
            self.c,
            deployments_t::table,
            deployments_t::workflow,
            workflow
        );
        Ok(deployments::deployments_of_workflow(self.c, workflow)?)
    }

    /// A version of a workflow, or its latest when `version` is `None`.
    pub fn workflow_version(
        &mut self,
        workflow: &str,
        version: Option<i64>,
    ) -> Result<Option<WorkflowVersionRow>> {
        use crate::schema::workflow_versions;
        match version {
            None => Ok(workflows::latest_version(self.c, workflow)?),
            Some(v) => Ok(workflow_versions::table
                .find((workflow, v))
                .select(WorkflowVersionRow::as_select())
                .first(self.c)
                .optional()?),
        }
    }

    /// [`Store::put_workflow`] inside this transaction.
    pub fn put_workflow(
        &mut self,
        name: &str,
        definition_json: &str,
        now: i64,
    ) -> Result<(WorkflowVersionRow, bool)> {
        workflows::put_workflow(self.c, name, definition_json, now)
    }

    /// [`Store::create_deployment`] inside this transaction.
    pub fn create_deployment(&mut self, new: NewDeployment) -> Result<DeploymentRow> {
        deployments::create_deployment(self.c, new)
    }

    /// Every trigger of a deployment with its current token, oldest first.
    pub fn triggers_of_deployment(&mut self, deployment_id: &str) -> Result<Vec<TriggerRow>> {
        let ids: Vec<String> = triggers::table
            .filter(triggers::deployment_id.eq(deployment_id))
            .order(triggers::id.asc())
            .select(triggers::id)
            .load(self.c)?;
        let mut rows = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(row) = trig::load_trigger(self.c, &id)? {
                rows.push(row);
            }
        }
        Ok(rows)
    }

    /// A trigger with its current token, locked for the rest of the transaction.
    pub fn lock_trigger(&mut self, id: &str) -> Result<Option<TriggerRow>> {
        lock_rows!(self.c, triggers::table, triggers::id, id);
        Ok(trig::load_trigger(self.c, id)?)
    }

    /// [`Store::create_trigger`] inside this transaction.
    pub fn create_trigger(&mut self, new: NewTrigger) -> Result<TriggerRow> {
        trig::create_trigger(self.c, new)
    }

    /// [`Store::update_trigger`] inside this transaction.
    pub fn update_trigger(
        &mut self,
        id: &str,
        patch: &TriggerPatch,
        now: i64,
    ) -> Result<TriggerRow> {
        trig::update_trigger(self.c, id, patch, now)
    }

    /// [`Store::delete_trigger`] inside this transaction.
    pub fn delete_trigger(&mut self, id: &str) -> Result<()> {
        trig::delete_trigger(self.c, id)
    }

    /// Whether a webhook token exists (current or in its grace period).
    pub fn token_exists(&mut self, token: &str) -> Result<bool> {
        Ok(
            diesel::select(diesel::dsl::exists(webhook_tokens::table.find(token)))
                .get_result(self.c)?,
        )
    }

    /// A run, locked for the rest of the transaction.
    pub fn lock_run(&mut self, id: &str) -> Result<Option<RunRow>> {
        lock_rows!(self.c, runs_t::table, runs_t::id, id);
        Ok(runs_t::table
            .find(id)
            .select(RunRow::as_select())
            .first(self.c)
            .optional()?)
    }

    /// Stores a run; the run workers are woken after the commit when it is unfinished.
    pub fn insert_run(&mut self, run: &NewRun) -> Result<()> {
        runs::insert_run(self.c, run)?;
        if matches!(run.status.as_str(), "pending" | "running") {
            self.wakes_workers = true;
        }
        Ok(())
    }

    /// How many runs of a deployment are `running`, and whether a `pending` run of it older
    /// than `run_id` exists (for the concurrency cap: first in, first out).
    pub fn deployment_slots(&mut self, deployment_id: &str, run_id: &str) -> Result<(i64, bool)> {
        let running: i64 = runs_t::table
            .filter(runs_t::deployment_id.eq(deployment_id))
            .filter(runs_t::status.eq("running"))
            .count()
            .get_result(self.c)?;
        let older_pending: bool = diesel::select(diesel::dsl::exists(
            runs_t::table
                .filter(runs_t::deployment_id.eq(deployment_id))
                .filter(runs_t::status.eq("pending"))
                .filter(runs_t::id.lt(run_id)),
        ))
        .get_result(self.c)?;
        Ok((running, older_pending))
    }

    /// Releases the leases of a deployment's pending runs (a slot under its concurrency cap
    /// freed up), waking the workers after the commit. Returns how many.
    pub fn release_pending_of_deployment(&mut self, deployment_id: &str) -> Result<usize> {
        let n = diesel::update(
            runs_t::table
                .filter(runs_t::deployment_id.eq(deployment_id))
                .filter(runs_t::status.eq("pending")),
        )
        .set((
            runs_t::lease_owner.eq(None::<String>),
            runs_t::lease_expires_at.eq(None::<i64>),
        ))
        .execute(self.c)?;
        if n > 0 {
            self.wakes_workers = true;
        }
        Ok(n)
    }

    /// Wakes the run workers after the commit (a run became claimable).
    pub fn wake_workers(&mut self) {
        self.wakes_workers = true;
    }

    /// Wakes the delivery workers after the commit (deliveries were written).
    pub(crate) fn wake_deliveries(&mut self) {
        self.wakes_deliveries = true;
    }

    /// Applies `update` to a run whoever holds its lease (`update.owner` is ignored), e.g. a
    /// cancellation through the API; the holder's next lease-checked update then fails. `NotFound`
    /// when there is no such run.
    pub fn force_update_run(&mut self, update: RunUpdate) -> Result<()> {
        let id = update.id.clone();
        let finishes = crate::awaited::is_final(update.status.as_deref());
        match runs::apply_update(self.c, update, false)? {
            None => return Err(StoreError::not_found(format!("run {id}"))),
            Some(0) => {}
            Some(_) => self.wakes_deliveries = true,
        }
        if finishes {
            self.finished_runs.push(id);
        }
        Ok(())
    }
}
