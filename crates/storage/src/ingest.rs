//! The webhook hot path: storing a request's run and activity row through the group-commit
//! writer.
//!
//! Accepted requests of one batch are first written together — one token lookup for all of them,
//! then the runs and the activity rows (multi-row INSERTs on PostgreSQL; the cached one-row
//! statements on SQLite) — inside one savepoint. If that
//! fails (a duplicate id), the savepoint is rolled back and each request is written alone in its
//! own savepoint, so only the bad one fails. Rejected requests (activity row only) are always
//! written alone.

use std::collections::HashMap;

use diesel::prelude::*;

use crate::Store;
use crate::conn::{DbConn, per_backend};
use crate::error::{Result, StoreError};
use crate::runs::{IngestWrite, NewActivity, NewRun, count_fires};
use crate::schema::{activity, runs, triggers, webhook_tokens};
use crate::writer::{IngestJob, Msg};

impl Store {
    /// The webhook hot path: stores a request's run (if any) and its activity row, batched with
    /// concurrent requests (group commit). Returns once the batch is durably committed: the
    /// caller may answer 201 from then on.
    ///
    /// With a run, the write first re-checks, in the same transaction, that `token` still maps to
    /// `trigger_id`, is current or within its grace at `now`, and that the trigger is enabled;
    /// otherwise it fails with `TokenGone` and nothing is stored. Storing the run bumps the
    /// trigger's `fire_count` and sets `last_fired_at` to the run's `created_at`. Without a run
    /// (a rejected request) only the activity row is written, and silently not at all when the
    /// trigger is gone.
    ///
    /// `Unavailable` when the batch could not be committed; `Conflict` when the run or request id
    /// is taken (only this request fails).
    pub async fn ingest(&self, write: IngestWrite) -> Result<()> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.send(Msg::Ingest(Box::new(IngestJob { write, reply })))
            .await?;
        self.receive(rx).await
    }
}

/// A token's row as the re-check sees it: its trigger, its expiry, whether the trigger is
/// enabled.
type TokenState = (String, Option<i64>, bool);

/// Whether a request on `token` for `trigger_id` may start a run at `now`.
fn still_valid(state: Option<&TokenState>, trigger_id: &str, now: i64) -> bool {
    state.is_some_and(|(owner, expires_at, enabled)| {
        owner == trigger_id && *enabled && expires_at.is_none_or(|t| t > now)
    })
}

/// Reads the tokens' state for the re-check.
///
/// On PostgreSQL the token and trigger rows are locked (`FOR NO KEY UPDATE`) until the batch
/// commits: a rotation or disable committed meanwhile by another node is seen (the lock re-reads
/// the newest row version), and one still running waits for this batch. On SQLite the single
/// writer serialises everything already.
fn token_states(c: &mut DbConn, tokens: &[&str]) -> QueryResult<HashMap<String, TokenState>> {
    // A batch's requests mostly share a few tokens; each once.
    let mut tokens = tokens.to_vec();
    tokens.sort_unstable();
    tokens.dedup();
    // SQLite, or one token on PostgreSQL: a lookup by primary key per token, a statement SQLite
    // and diesel keep prepared. (SQLite would prepare an `IN` list of N binds afresh for every
    // batch, and with no round trips to save, N prepared lookups cost less: `ingest-many` spreads
    // a batch over hundreds of tokens.)
    let one_by_one = matches!(c, DbConn::Sqlite(_)) || tokens.len() == 1;
    let rows: Vec<(String, String, Option<i64>, bool)> = if one_by_one {
        let mut rows = Vec::with_capacity(tokens.len());
        for token in tokens {
            // `load`, not `first`: SQLite re-plans a statement whenever a bound LIMIT changes
            // value, and diesel re-binds `first`'s LIMIT 1 on every execution.
            let q = webhook_tokens::table
                .inner_join(triggers::table)
                .filter(webhook_tokens::token.eq(token))
                .select((
                    webhook_tokens::token,
                    webhook_tokens::trigger_id,
                    webhook_tokens::expires_at,
                    triggers::enabled,
                ));
            match c {
                DbConn::Postgres(pg) => rows.extend(q.for_no_key_update().load(pg)?),
                DbConn::Sqlite(lite) => rows.extend(q.load(lite)?),
            }
        }
        rows
    } else {
        let q = webhook_tokens::table
            .inner_join(triggers::table)
            .filter(webhook_tokens::token.eq_any(&tokens))
            .select((
                webhook_tokens::token,
                webhook_tokens::trigger_id,
                webhook_tokens::expires_at,
                triggers::enabled,
            ));
        match c {
            // A stable lock order between nodes: rows are locked in token order.
            DbConn::Postgres(pg) => q
                .order(webhook_tokens::token.asc())
                .for_no_key_update()
                .load(pg)?,
            DbConn::Sqlite(lite) => q.load(lite)?,
        }
    };
    Ok(rows
        .into_iter()
        .map(|(token, owner, expires_at, enabled)| (token, (owner, expires_at, enabled)))
        .collect())
}

/// Writes one request. Returns whether it stored a run. Runs inside its own savepoint.
pub(crate) fn ingest_one(c: &mut DbConn, w: &IngestWrite) -> Result<bool> {
    let Some(run) = &w.run else {
        insert_rejected(c, &w.trigger_id, &w.activity)?;
        return Ok(false);
    };
    let states = token_states(c, &[w.token.as_str()])?;
    if !still_valid(states.get(&w.token), &w.trigger_id, w.now) {
        return Err(StoreError::TokenGone);
    }
    // The trigger's `fire_count` and `last_fired_at` follow this insert (`count_fires`). On the
    // inner connection: the hot path skips MultiConnection's extra pass over every query and its
    // binds.
    per_backend!(c, c => {
        diesel::insert_into(runs::table)
            .values(run)
            .execute(c)
            .map_err(|e| StoreError::on_constraint(
                e,
                &format!("run id {} is taken", run.id),
                "deployment",
            ))?;
        diesel::insert_into(activity::table)
            .values((&w.activity, activity::trigger_id.eq(&w.trigger_id)))
            .execute(c)
            .map_err(|e| StoreError::on_constraint(
                e,
                &format!("request id {} is taken", w.activity.id),
                "trigger",
            ))?;
    });
    count_fires(c, [run])?;
    if w.awaited {
        mark_awaited(c, &[run.id.as_str()])?;
    }
    if !w.events.is_empty() && crate::hooks::any_hooks(c)? {
        let candidates = crate::hooks::hook_candidates(c, &run.workflow, &run.deployment_id, None)?;
        crate::hooks::insert_deliveries(c, &run.id, &candidates, &w.events)?;
    }
    Ok(true)
}

/// Writes several accepted requests (each with a run) at once: one lookup, one multi-row INSERT
/// per table. Returns each request's result (`Ok` or `TokenGone`); any database error fails the
/// whole call, and the caller falls back to [`ingest_one`] for each.
pub(crate) fn ingest_many(c: &mut DbConn, writes: &[&IngestWrite]) -> Result<Vec<Result<()>>> {
    let tokens: Vec<&str> = writes.iter().map(|w| w.token.as_str()).collect();
    let states = token_states(c, &tokens)?;
    let mut results = Vec::with_capacity(writes.len());
    let mut new_runs: Vec<&NewRun> = Vec::with_capacity(writes.len());
    let mut new_activity: Vec<ActivityInsert<'_>> = Vec::with_capacity(writes.len());
    for w in writes {
        match &w.run {
            Some(run) if still_valid(states.get(&w.token), &w.trigger_id, w.now) => {
                new_runs.push(run);
                new_activity.push(ActivityInsert::new(&w.activity, &w.trigger_id));
                results.push(Ok(()));
            }
            Some(_) => results.push(Err(StoreError::TokenGone)),
            // Not called with rejected requests; refuse rather than guess.
            None => {
                return Err(StoreError::conflict(
                    "a rejected request cannot be written with accepted ones",
                ));
            }
        }
    }
    if new_runs.is_empty() {
        return Ok(results);
    }
    match c {
        // SQLite: the one-row statements, prepared once and kept (diesel does not cache a
        // multi-row INSERT, and SQLite would parse and plan it again for every batch); one row
        // costs no more executed alone, as there is no round trip to save.
        DbConn::Sqlite(c) => {
            for run in &new_runs {
                diesel::insert_into(runs::table).values(*run).execute(c)?;
            }
            for a in new_activity {
                diesel::insert_into(activity::table).values(a).execute(c)?;
            }
        }
        // PostgreSQL: each statement is a round trip on the one writer connection; one
        // multi-row INSERT per table.
        DbConn::Postgres(c) => {
            diesel::insert_into(runs::table)
                .values(new_runs.clone())
                .execute(c)?;
            diesel::insert_into(activity::table)
                .values(new_activity)
                .execute(c)?;
        }
    }
    count_fires(c, new_runs)?;
    let awaited: Vec<&str> = writes
        .iter()
        .zip(&results)
        .filter_map(|(w, r)| match (&w.run, r) {
            (Some(run), Ok(())) if w.awaited => Some(run.id.as_str()),
            _ => None,
        })
        .collect();
    if !awaited.is_empty() {
        mark_awaited(c, &awaited)?;
    }
    // The outbox: one `EXISTS` per batch when no hook exists.
    // The runs of a batch are new (no run-scoped hook can name them yet) and mostly of a few
    // deployments: the hooks are looked up once per deployment of the batch.
    if writes.iter().any(|w| !w.events.is_empty()) && crate::hooks::any_hooks(c)? {
        let mut candidates: Vec<(&str, Vec<(String, String)>)> = Vec::new();
        for (w, result) in writes.iter().zip(&results) {
            let (Some(run), Ok(())) = (&w.run, result) else {
                continue;
            };
            if w.events.is_empty() {
                continue;
            }
            let at = match candidates
                .iter()
                .position(|(dep, _)| *dep == run.deployment_id)
            {
                Some(at) => at,
                None => {
                    let found =
                        crate::hooks::hook_candidates(c, &run.workflow, &run.deployment_id, None)?;
                    candidates.push((&run.deployment_id, found));
                    candidates.len() - 1
                }
            };
            crate::hooks::insert_deliveries(c, &run.id, &candidates[at].1, &w.events)?;
        }
    }
    Ok(results)
}

/// Marks runs a sync request waits for (one statement, only when a batch holds any).
fn mark_awaited(c: &mut DbConn, ids: &[&str]) -> Result<()> {
    diesel::update(runs::table.filter(runs::id.eq_any(ids)))
        .set(runs::awaited.eq(true))
        .execute(c)?;
    Ok(())
}

/// An activity row with its trigger, for multi-row inserts.
#[derive(Insertable)]
#[diesel(table_name = activity, treat_none_as_default_value = false)]
struct ActivityInsert<'a> {
    id: &'a str,
    trigger_id: &'a str,
    received_at: i64,
    method: &'a str,
    status_code: i32,
    outcome: &'a str,
    run_id: Option<&'a str>,
    error: Option<&'a str>,
    body_bytes: i64,
    duration_ms: i64,
    remote_addr: Option<&'a str>,
}

impl<'a> ActivityInsert<'a> {
    fn new(a: &'a NewActivity, trigger_id: &'a str) -> Self {
        Self {
            id: &a.id,
            trigger_id,
            received_at: a.received_at,
            method: &a.method,
            status_code: a.status_code,
            outcome: &a.outcome,
            run_id: a.run_id.as_deref(),
            error: a.error.as_deref(),
            body_bytes: a.body_bytes,
            duration_ms: a.duration_ms,
            remote_addr: a.remote_addr.as_deref(),
        }
    }
}

/// The activity row of a rejected request, in one statement: `INSERT ... SELECT ... WHERE` the
/// trigger exists, so nothing is written for a trigger removed meanwhile.
fn insert_rejected(c: &mut DbConn, trigger_id: &str, act: &NewActivity) -> Result<()> {
    use diesel::sql_types::{BigInt, Integer, Nullable, Text};
    diesel::insert_into(activity::table)
        .values(triggers::table.filter(triggers::id.eq(trigger_id)).select((
            act.id.as_str().into_sql::<Text>(),
            triggers::id,
            act.received_at.into_sql::<BigInt>(),
            act.method.as_str().into_sql::<Text>(),
            act.status_code.into_sql::<Integer>(),
            act.outcome.as_str().into_sql::<Text>(),
            act.run_id.as_deref().into_sql::<Nullable<Text>>(),
            act.error.as_deref().into_sql::<Nullable<Text>>(),
            act.body_bytes.into_sql::<BigInt>(),
            act.duration_ms.into_sql::<BigInt>(),
            act.remote_addr.as_deref().into_sql::<Nullable<Text>>(),
        )))
        .into_columns((
            activity::id,
            activity::trigger_id,
            activity::received_at,
            activity::method,
            activity::status_code,
            activity::outcome,
            activity::run_id,
            activity::error,
            activity::body_bytes,
            activity::duration_ms,
            activity::remote_addr,
        ))
        .execute(c)
        .map_err(|e| {
            StoreError::on_constraint(e, &format!("request id {} is taken", act.id), "trigger")
        })?;
    Ok(())
}
