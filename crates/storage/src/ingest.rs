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
use crate::runs::{DedupClaim, IngestWrite, Ingested, NewActivity, NewRun, count_fires};
use crate::schema::{activity, dedup_keys, runs, triggers, webhook_tokens};
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
    /// With a de-duplication key ([`IngestWrite::dedup`]) held by an unexpired claim, no run is
    /// stored: the activity row is stored as `duplicate` (status 200, linking the run holding the
    /// key) and the answer is [`Ingested::Duplicate`]. Claims are made in the batch's
    /// transaction, in order, so two requests with one key — in one batch, or on two nodes of one
    /// PostgreSQL database — start one run.
    ///
    /// `Unavailable` when the batch could not be committed; `Conflict` when the run or request id
    /// is taken (only this request fails).
    pub async fn ingest(&self, write: IngestWrite) -> Result<Ingested> {
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

/// Writes one request. Runs inside its own savepoint.
pub(crate) fn ingest_one(c: &mut DbConn, w: &IngestWrite) -> Result<Ingested> {
    let Some(run) = &w.run else {
        insert_rejected(c, &w.trigger_id, &w.activity)?;
        return Ok(Ingested::Written);
    };
    let states = token_states(c, &[w.token.as_str()])?;
    if !still_valid(states.get(&w.token), &w.trigger_id, w.now) {
        return Err(StoreError::TokenGone);
    }
    if let Some(claim) = &w.dedup
        && let Some(original) = claim_key(c, &w.trigger_id, claim, &run.id, w.now)?
    {
        insert_activity(
            c,
            ActivityInsert::duplicate(&w.activity, &w.trigger_id, &original),
        )?;
        return Ok(Ingested::Duplicate(original));
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
    });
    insert_activity(c, ActivityInsert::new(&w.activity, &w.trigger_id))?;
    count_fires(c, [run])?;
    if w.awaited {
        mark_awaited(c, &[run.id.as_str()])?;
    }
    if !w.events.is_empty() && crate::hooks::any_hooks(c)? {
        let candidates = crate::hooks::hook_candidates(c, &run.workflow, &run.deployment_id, None)?;
        crate::hooks::insert_deliveries(c, &run.id, &candidates, &w.events)?;
    }
    Ok(Ingested::Written)
}

/// Inserts one activity row (on the inner connection, as the hot path does).
fn insert_activity(c: &mut DbConn, row: ActivityInsert<'_>) -> Result<()> {
    let id = row.id;
    per_backend!(c, c => {
        diesel::insert_into(activity::table)
            .values(row)
            .execute(c)
            .map_err(|e| StoreError::on_constraint(
                e,
                &format!("request id {id} is taken"),
                "trigger",
            ))?;
    });
    Ok(())
}

/// Claims `claim.key` of `trigger_id` for `run_id`: `None` when claimed (the key was free, or
/// its last claim expired by `now`), or the run holding it.
///
/// The INSERT comes first and does nothing on a conflict: on PostgreSQL it waits for another
/// transaction inserting the same key, so of two concurrent claims one inserts and the other
/// reads the committed holder (the batch lock orders nodes' batches already; this holds without
/// it). An expired claim is taken over under the row's lock.
fn claim_key(
    c: &mut DbConn,
    trigger_id: &str,
    claim: &DedupClaim,
    run_id: &str,
    now: i64,
) -> Result<Option<String>> {
    let row = (
        dedup_keys::trigger_id.eq(trigger_id),
        dedup_keys::key.eq(&claim.key),
        dedup_keys::run_id.eq(run_id),
        dedup_keys::expires_at.eq(claim.expires_at),
    );
    let inserted = per_backend!(c, c => diesel::insert_into(dedup_keys::table)
        .values(row)
        .on_conflict_do_nothing()
        .execute(c)?);
    if inserted == 1 {
        return Ok(None);
    }
    let q = dedup_keys::table
        .find((trigger_id, &claim.key))
        .select((dedup_keys::run_id, dedup_keys::expires_at));
    let holder: Option<(String, i64)> = match c {
        DbConn::Postgres(pg) => q.for_update().first(pg).optional()?,
        DbConn::Sqlite(lite) => q.first(lite).optional()?,
    };
    match holder {
        Some((holder, expires_at)) if expires_at > now => Ok(Some(holder)),
        Some(_) => {
            diesel::update(dedup_keys::table.find((trigger_id, &claim.key)))
                .set((
                    dedup_keys::run_id.eq(run_id),
                    dedup_keys::expires_at.eq(claim.expires_at),
                ))
                .execute(c)?;
            Ok(None)
        }
        // Trimmed between the two statements (PostgreSQL): free again.
        None => {
            per_backend!(c, c => diesel::insert_into(dedup_keys::table)
                .values(row)
                .on_conflict_do_nothing()
                .execute(c)?);
            Ok(None)
        }
    }
}

/// PostgreSQL: the de-duplication keys of a batch's valid requests claimed in one statement —
/// each claim alone would be a round trip on the one writer connection. Returns the keys the
/// statement inserted, with the run each went to (the first request of the batch with that
/// key). A key it did not insert is held already: [`claim_key`] settles it (an expired claim is
/// taken over). SQLite claims one by one (no round trips to save): an empty map.
fn claim_keys_at_once<'w>(
    c: &mut DbConn,
    writes: &[&'w IngestWrite],
    states: &HashMap<String, TokenState>,
) -> Result<HashMap<(&'w str, &'w str), String>> {
    let DbConn::Postgres(pg) = c else {
        return Ok(HashMap::new());
    };
    let mut rows = Vec::new();
    for w in writes {
        if let (Some(run), Some(claim)) = (&w.run, &w.dedup)
            && still_valid(states.get(&w.token), &w.trigger_id, w.now)
        {
            rows.push((
                dedup_keys::trigger_id.eq(w.trigger_id.as_str()),
                dedup_keys::key.eq(claim.key.as_str()),
                dedup_keys::run_id.eq(run.id.as_str()),
                dedup_keys::expires_at.eq(claim.expires_at),
            ));
        }
    }
    if rows.is_empty() {
        return Ok(HashMap::new());
    }
    // Rows of one statement are inserted in order: of two with one key, the first is inserted
    // and the second skipped by DO NOTHING.
    let inserted: Vec<(String, String, String)> = diesel::insert_into(dedup_keys::table)
        .values(rows)
        .on_conflict_do_nothing()
        .returning((dedup_keys::trigger_id, dedup_keys::key, dedup_keys::run_id))
        .get_results(pg)?;
    // The map's keys are borrowed from the writes, so that it lives as long as the batch.
    let keys: HashMap<(&str, &str), (&'w str, &'w str)> = writes
        .iter()
        .filter_map(|w| {
            let d = w.dedup.as_ref()?;
            let k = (w.trigger_id.as_str(), d.key.as_str());
            Some((k, k))
        })
        .collect();
    let mut claimed = HashMap::with_capacity(inserted.len());
    for (trigger_id, key, run_id) in &inserted {
        if let Some(k) = keys.get(&(trigger_id.as_str(), key.as_str())) {
            claimed.insert(*k, run_id.clone());
        }
    }
    Ok(claimed)
}

/// Writes several accepted requests (each with a run) at once: one lookup, one multi-row INSERT
/// per table. Returns each request's result (`Ok` or `TokenGone`); any database error fails the
/// whole call, and the caller falls back to [`ingest_one`] for each.
pub(crate) fn ingest_many(
    c: &mut DbConn,
    writes: &[&IngestWrite],
) -> Result<Vec<Result<Ingested>>> {
    let tokens: Vec<&str> = writes.iter().map(|w| w.token.as_str()).collect();
    let states = token_states(c, &tokens)?;
    let mut results = Vec::with_capacity(writes.len());
    let mut new_runs: Vec<&NewRun> = Vec::with_capacity(writes.len());
    let mut new_activity: Vec<ActivityInsert<'_>> = Vec::with_capacity(writes.len());
    let claimed = claim_keys_at_once(c, writes, &states)?;
    for w in writes {
        match &w.run {
            Some(run) if still_valid(states.get(&w.token), &w.trigger_id, w.now) => {
                // Claims in request order: a later request of the batch with a key claimed
                // earlier in it is a duplicate of that one.
                if let Some(claim) = &w.dedup {
                    let holder = match claimed.get(&(w.trigger_id.as_str(), claim.key.as_str())) {
                        // Claimed by the batch's INSERT: by this request, or an earlier one.
                        Some(holder) if holder == &run.id => None,
                        Some(holder) => Some(holder.clone()),
                        // Held already (or claimed one by one, on SQLite).
                        None => claim_key(c, &w.trigger_id, claim, &run.id, w.now)?,
                    };
                    if let Some(original) = holder {
                        results.push(Ok(Ingested::Duplicate(original)));
                        continue;
                    }
                }
                new_runs.push(run);
                new_activity.push(ActivityInsert::new(&w.activity, &w.trigger_id));
                results.push(Ok(Ingested::Written));
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
    for (w, result) in writes.iter().zip(&results) {
        if let Ok(Ingested::Duplicate(original)) = result {
            new_activity.push(ActivityInsert::duplicate(
                &w.activity,
                &w.trigger_id,
                original,
            ));
        }
    }
    if new_activity.is_empty() {
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
            if !new_runs.is_empty() {
                diesel::insert_into(runs::table)
                    .values(new_runs.clone())
                    .execute(c)?;
            }
            diesel::insert_into(activity::table)
                .values(new_activity)
                .execute(c)?;
        }
    }
    if new_runs.is_empty() {
        return Ok(results);
    }
    count_fires(c, new_runs)?;
    let stored = |w: &&IngestWrite, r: &Result<Ingested>| -> bool {
        w.run.is_some() && matches!(r, Ok(Ingested::Written))
    };
    let awaited: Vec<&str> = writes
        .iter()
        .zip(&results)
        .filter(|(w, r)| w.awaited && stored(w, r))
        .filter_map(|(w, _)| w.run.as_ref().map(|run| run.id.as_str()))
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
            let Some(run) = w.run.as_ref().filter(|_| stored(w, result)) else {
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
    request: Option<&'a str>,
    body: Option<&'a [u8]>,
    body_truncated: bool,
    details: Option<&'a str>,
    replay_of: Option<&'a str>,
}

impl<'a> ActivityInsert<'a> {
    /// The row of a request whose run is stored: without the request (the run's
    /// `trigger_input` holds it).
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
            request: None,
            body: None,
            body_truncated: false,
            details: a.details.as_deref(),
            replay_of: a.replay_of.as_deref(),
        }
    }

    /// The row of a request found to be a duplicate of `original`'s: answered 200, no run of
    /// its own, with the request kept.
    fn duplicate(a: &'a NewActivity, trigger_id: &'a str, original: &'a str) -> Self {
        Self {
            status_code: 200,
            outcome: "duplicate",
            run_id: Some(original),
            error: None,
            request: a.request.as_deref(),
            body: a.body.as_deref(),
            body_truncated: a.body_truncated,
            ..Self::new(a, trigger_id)
        }
    }
}

/// The activity row of a rejected request, in one statement: `INSERT ... SELECT ... WHERE` the
/// trigger exists, so nothing is written for a trigger removed meanwhile.
fn insert_rejected(c: &mut DbConn, trigger_id: &str, act: &NewActivity) -> Result<()> {
    use diesel::sql_types::{BigInt, Binary, Bool, Integer, Nullable, Text};
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
            act.request.as_deref().into_sql::<Nullable<Text>>(),
            act.body.as_deref().into_sql::<Nullable<Binary>>(),
            act.body_truncated.into_sql::<Bool>(),
            act.details.as_deref().into_sql::<Nullable<Text>>(),
            act.replay_of.as_deref().into_sql::<Nullable<Text>>(),
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
            activity::request,
            activity::body,
            activity::body_truncated,
            activity::details,
            activity::replay_of,
        ))
        .execute(c)
        .map_err(|e| {
            StoreError::on_constraint(e, &format!("request id {} is taken", act.id), "trigger")
        })?;
    Ok(())
}
