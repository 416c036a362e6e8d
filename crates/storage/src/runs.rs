//! Runs, the webhook hot path (`ingest`), the activity log, and the workers' claims.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Text};

use crate::Store;
use crate::conn::DbConn;
use crate::error::{Result, StoreError};
use crate::schema::{activity, dedup_keys, runs};
use crate::store::{Page, fetch_limit, page};

/// A run.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = runs)]
pub struct RunRow {
    /// `run_...`.
    pub id: String,
    /// The deployment it belongs to (which may since have been deleted).
    pub deployment_id: String,
    /// The workflow's name.
    pub workflow: String,
    /// The workflow version it runs.
    pub workflow_version: i64,
    /// The trigger that started it, if any.
    pub trigger_id: Option<String>,
    /// `webhook`, `cron` or `api`.
    pub source: String,
    /// `pending`, `running`, `waiting`, `completed`, `failed` or `cancelled`.
    pub status: String,
    /// JSON text.
    pub input: String,
    /// JSON text.
    pub trigger_input: String,
    /// JSON text.
    pub context: String,
    /// JSON text (an array).
    pub step_executions: String,
    /// `webhook` or `approval` while waiting.
    pub waiting_reason: Option<String>,
    /// JSON text.
    pub waiting_payload: Option<String>,
    /// Microseconds since the epoch.
    pub waiting_expires_at: Option<i64>,
    /// JSON text.
    pub final_output: Option<String>,
    /// JSON text (`{code, message}`).
    pub error: Option<String>,
    /// Microseconds since the epoch.
    pub created_at: i64,
    /// Microseconds since the epoch.
    pub started_at: Option<i64>,
    /// Microseconds since the epoch.
    pub finished_at: Option<i64>,
    /// The worker holding the run.
    pub lease_owner: Option<String>,
    /// Until when it holds it, microseconds since the epoch.
    pub lease_expires_at: Option<i64>,
}

/// A run to store.
#[derive(Debug, Clone, PartialEq, Eq, Insertable)]
// `None` binds NULL instead of DEFAULT: the INSERT text no longer depends on the values, so
// diesel can cache its prepared statement (it re-prepares every INSERT that uses DEFAULT).
#[diesel(table_name = runs, treat_none_as_default_value = false)]
pub struct NewRun {
    /// `run_...`, chosen by the caller.
    pub id: String,
    /// The deployment.
    pub deployment_id: String,
    /// The workflow's name.
    pub workflow: String,
    /// The version the deployment runs.
    pub workflow_version: i64,
    /// The trigger that started it, if any.
    pub trigger_id: Option<String>,
    /// `webhook`, `cron` or `api`.
    pub source: String,
    /// Usually `pending`; a run without steps may be stored `completed` at once.
    pub status: String,
    /// JSON text.
    pub input: String,
    /// JSON text.
    pub trigger_input: String,
    /// JSON text.
    pub context: String,
    /// JSON text (an array).
    pub step_executions: String,
    /// JSON text, for a run stored finished.
    pub final_output: Option<String>,
    /// Microseconds since the epoch.
    pub created_at: i64,
    /// For a run stored finished.
    pub started_at: Option<i64>,
    /// For a run stored finished.
    pub finished_at: Option<i64>,
}

/// One inbound webhook request in a trigger's activity log.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = activity)]
pub struct ActivityRow {
    /// `req_...`, the `X-Request-Id`.
    pub id: String,
    /// The trigger (which may since have been deleted).
    pub trigger_id: String,
    /// Microseconds since the epoch.
    pub received_at: i64,
    /// HTTP method.
    pub method: String,
    /// The status code answered.
    pub status_code: i32,
    /// `accepted`, `method_not_allowed`, `too_large`, `rate_limited`, `bad_signature`,
    /// `unauthorized`, `malformed`, `invalid_input` or `failed`.
    pub outcome: String,
    /// The run started, if any.
    pub run_id: Option<String>,
    /// What went wrong, for people.
    pub error: Option<String>,
    /// Request body size.
    pub body_bytes: i64,
    /// Time to answer.
    pub duration_ms: i64,
    /// The sender's address.
    pub remote_addr: Option<String>,
    /// The request this one replays (`POST /triggers/{id}/requests/{request_id}/replay`).
    pub replay_of: Option<String>,
}

/// One activity row with what its request carried (see [`Store::get_activity`]).
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = activity)]
pub struct ActivityDetail {
    /// The row as the log lists it.
    #[diesel(embed)]
    pub row: ActivityRow,
    /// The request as JSON text, `{path, headers, query}` (headers and query redacted); `None`
    /// for an accepted request (its run's `trigger_input` holds it).
    pub request: Option<String>,
    /// The raw body, up to the trigger's `log_body_bytes`.
    pub body: Option<Vec<u8>>,
    /// Whether `body` was cut at that size.
    pub body_truncated: bool,
    /// The refusal's details as JSON text (the 422's `details`).
    pub details: Option<String>,
}

/// An activity row to store (its trigger is [`IngestWrite::trigger_id`]).
#[derive(Debug, Clone, PartialEq, Eq, Insertable)]
// `None` binds NULL instead of DEFAULT: the INSERT text no longer depends on the values, so
// diesel can cache its prepared statement (it re-prepares every INSERT that uses DEFAULT).
#[diesel(table_name = activity, treat_none_as_default_value = false)]
pub struct NewActivity {
    /// `req_...`, the `X-Request-Id`.
    pub id: String,
    /// Microseconds since the epoch.
    pub received_at: i64,
    /// HTTP method.
    pub method: String,
    /// The status code answered.
    pub status_code: i32,
    /// See [`ActivityRow::outcome`].
    pub outcome: String,
    /// The run started, if any.
    pub run_id: Option<String>,
    /// What went wrong, for people.
    pub error: Option<String>,
    /// Request body size.
    pub body_bytes: i64,
    /// Time to answer.
    pub duration_ms: i64,
    /// The sender's address.
    pub remote_addr: Option<String>,
    /// The request as JSON text, `{path, headers, query}` (redacted): kept for a request that
    /// starts no run (refused, filtered, duplicate). An accepted request's is not stored (its
    /// run's `trigger_input` holds it).
    pub request: Option<String>,
    /// The raw body, up to the trigger's `log_body_bytes`; kept like `request`.
    pub body: Option<Vec<u8>>,
    /// Whether `body` was cut.
    pub body_truncated: bool,
    /// The refusal's details, JSON text.
    pub details: Option<String>,
    /// The request this one replays.
    pub replay_of: Option<String>,
}

/// A de-duplication key claimed by an accepted request (`config.dedup`, see [`Store::ingest`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedupClaim {
    /// The key, unique per trigger while it lasts.
    pub key: String,
    /// Microseconds since the epoch: from then on the key no longer counts.
    pub expires_at: i64,
}

/// What [`Store::ingest`] did with a request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Ingested {
    /// Stored as given: the run (if any) and the activity row.
    Written,
    /// Its de-duplication key was taken, by the run named here: no run was stored, and the
    /// activity row was stored as `duplicate` (status 200) linking that run.
    Duplicate(String),
}

/// What one webhook request writes (see [`Store::ingest`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestWrite {
    /// The token the request came in on.
    pub token: String,
    /// The trigger the (possibly cached) token mapped to.
    pub trigger_id: String,
    /// Microseconds since the epoch: the token's grace is checked against it.
    pub now: i64,
    /// The run to start; `None` for a rejected request (only the activity row is written).
    pub run: Option<NewRun>,
    /// The activity log row.
    pub activity: NewActivity,
    /// The events storing the run emits (a run completed at ingest: `run.started`,
    /// `run.completed`): their deliveries are written in the same transaction.
    pub events: Vec<crate::hooks::OutboxEvent>,
    /// The request waits for the run to finish (`response.mode = "sync"`): the run is marked
    /// `awaited`, so that the node finishing it tells the waiting node (see `Store::watch_run`).
    pub awaited: bool,
    /// The de-duplication key the run claims (`config.dedup`): if the key is held by a run
    /// whose claim has not expired, nothing but a `duplicate` activity row is stored.
    pub dedup: Option<DedupClaim>,
}

impl IngestWrite {
    /// The write of a request that starts no run (refused, ignored by the filter, a failed
    /// replay): its activity row only, stored without a token check (see [`Store::ingest`]).
    pub fn log_only(trigger_id: String, activity: NewActivity) -> IngestWrite {
        IngestWrite {
            token: String::new(),
            trigger_id,
            now: activity.received_at,
            run: None,
            activity,
            events: Vec::new(),
            awaited: false,
            dedup: None,
        }
    }
}

/// Which runs [`Store::list_runs`] returns; `None` fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    /// Runs of this deployment.
    pub deployment_id: Option<String>,
    /// Runs started by this trigger.
    pub trigger_id: Option<String>,
    /// Runs in this status.
    pub status: Option<String>,
}

/// A worker's change to a run it holds (see [`Store::update_run`]). `None` fields are left as
/// they are; for nullable columns `Some(None)` clears them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunUpdate {
    /// The run.
    pub id: String,
    /// The worker that claimed it: the update applies only while it holds the lease.
    pub owner: String,
    /// New status.
    pub status: Option<String>,
    /// Microseconds since the epoch.
    pub started_at: Option<i64>,
    /// Microseconds since the epoch.
    pub finished_at: Option<i64>,
    /// JSON text.
    pub final_output: Option<String>,
    /// JSON text.
    pub error: Option<String>,
    /// JSON text (the whole array).
    pub step_executions: Option<String>,
    /// JSON text.
    pub context: Option<String>,
    /// Set or clear the waiting reason.
    pub waiting_reason: Option<Option<String>>,
    /// Set or clear the waiting payload.
    pub waiting_payload: Option<Option<String>>,
    /// Set or clear the waiting deadline.
    pub waiting_expires_at: Option<Option<i64>>,
    /// Extend the lease to this instant.
    pub lease_until: Option<i64>,
    /// Give the run up (clears `lease_owner` and `lease_expires_at`), e.g. when it finished or
    /// parks waiting; wins over `lease_until`.
    pub release_lease: bool,
    /// The events the change emits: their deliveries are written with it (the outbox).
    pub events: Vec<crate::hooks::OutboxEvent>,
}

#[derive(AsChangeset)]
#[diesel(table_name = runs)]
struct RunChanges {
    status: Option<String>,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    final_output: Option<String>,
    error: Option<String>,
    step_executions: Option<String>,
    context: Option<String>,
    waiting_reason: Option<Option<String>>,
    waiting_payload: Option<Option<String>>,
    waiting_expires_at: Option<Option<i64>>,
    lease_owner: Option<Option<String>>,
    lease_expires_at: Option<Option<i64>>,
}

impl RunChanges {
    fn is_empty(&self) -> bool {
        self.status.is_none()
            && self.started_at.is_none()
            && self.finished_at.is_none()
            && self.final_output.is_none()
            && self.error.is_none()
            && self.step_executions.is_none()
            && self.context.is_none()
            && self.waiting_reason.is_none()
            && self.waiting_payload.is_none()
            && self.waiting_expires_at.is_none()
            && self.lease_owner.is_none()
            && self.lease_expires_at.is_none()
    }
}

/// Unfinished runs, as the literal condition of the `runs_claimable` partial index (a bound
/// parameter would keep both planners from using it).
fn claimable() -> diesel::expression::SqlLiteral<Bool> {
    diesel::dsl::sql::<Bool>("runs.status IN ('pending', 'running')")
}

pub(crate) fn insert_run(c: &mut DbConn, run: &NewRun) -> Result<()> {
    diesel::insert_into(runs::table)
        .values(run)
        .execute(c)
        .map_err(|e| {
            StoreError::on_constraint(
                e,
                &format!("run id {} is taken", run.id),
                &format!("deployment {}", run.deployment_id),
            )
        })?;
    count_fires(c, [run])?;
    Ok(())
}

/// Counts the fires of the triggers that started `runs`, just inserted in this transaction:
/// `fire_count` up by their number, `last_fired_at` the newest `created_at`. Once per trigger
/// per write batch, on both backends.
///
/// On PostgreSQL it is ONE statement per batch, whatever the number of triggers — one round
/// trip — over arrays of ids and counts; the rows are already locked by the token re-check of the
/// same transaction. (The `runs_count_fire` row trigger it replaced ran PL/pgSQL and wrote a new
/// version of the trigger's row per run.)
///
/// On SQLite it is one cached prepared UPDATE per trigger ([`BumpFires`]). The row trigger it
/// replaced (migration 000005) made every INSERT into `runs` a multi-write statement, for which
/// SQLite copies each page the statement first touches into a statement journal: ~8 % of the
/// writer's CPU under `ingest`, plus the trigger program per row.
pub(crate) fn count_fires<'a>(
    c: &mut DbConn,
    runs: impl IntoIterator<Item = &'a NewRun>,
) -> QueryResult<()> {
    // A batch holds at most a few hundred runs over few triggers: a small vector beats a map.
    let mut ids: Vec<&str> = Vec::new();
    let mut counts: Vec<i64> = Vec::new();
    let mut last: Vec<i64> = Vec::new();
    for run in runs {
        let Some(trigger_id) = run.trigger_id.as_deref() else {
            continue;
        };
        match ids.iter().position(|id| *id == trigger_id) {
            Some(i) => {
                counts[i] += 1;
                last[i] = last[i].max(run.created_at);
            }
            None => {
                ids.push(trigger_id);
                counts.push(1);
                last.push(run.created_at);
            }
        }
    }
    if ids.is_empty() {
        return Ok(());
    }
    match c {
        DbConn::Sqlite(lite) => {
            for ((id, n), last) in ids.into_iter().zip(counts).zip(last) {
                BumpFires { id, n, last }.execute(lite)?;
            }
        }
        DbConn::Postgres(pg) => {
            use diesel::sql_types::Array;
            diesel::sql_query(
                "UPDATE triggers AS t SET fire_count = t.fire_count + f.n, last_fired_at = f.last \
                 FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS f(id, n, last) \
                 WHERE t.id = f.id",
            )
            .bind::<Array<Text>, _>(ids)
            .bind::<Array<BigInt>, _>(counts)
            .bind::<Array<BigInt>, _>(last)
            .execute(pg)?;
        }
    }
    Ok(())
}

/// `UPDATE triggers SET fire_count = fire_count + n, last_fired_at = last WHERE id = id` on
/// SQLite, as a statement diesel keeps prepared. diesel never caches an UPDATE it builds itself
/// (its SET list may vary), nor `sql_query`; a fixed fragment with a static query id is cached
/// by its type, like the hot path's INSERTs.
struct BumpFires<'a> {
    id: &'a str,
    n: i64,
    last: i64,
}

impl diesel::query_builder::QueryId for BumpFires<'_> {
    type QueryId = BumpFires<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl diesel::query_builder::QueryFragment<diesel::sqlite::Sqlite> for BumpFires<'_> {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::sqlite::Sqlite>,
    ) -> QueryResult<()> {
        out.push_sql("UPDATE triggers SET fire_count = fire_count + ");
        out.push_bind_param::<BigInt, _>(&self.n)?;
        out.push_sql(", last_fired_at = ");
        out.push_bind_param::<BigInt, _>(&self.last)?;
        out.push_sql(" WHERE id = ");
        out.push_bind_param::<Text, _>(&self.id)?;
        Ok(())
    }
}

impl RunQueryDsl<SqliteConnection> for BumpFires<'_> {}

/// Applies `update` to its run — only while `update.owner` holds the lease when
/// `require_lease` — and tells whether a row was changed (or, for an empty update, whether the
/// lease is held).
/// Applies `update`; `None` when it did not apply (the lease is not held, or no such run), else
/// how many deliveries its events caused.
pub(crate) fn apply_update(
    c: &mut DbConn,
    update: RunUpdate,
    require_lease: bool,
) -> Result<Option<usize>> {
    let (lease_owner, lease_expires_at) = if update.release_lease {
        (Some(None), Some(None))
    } else {
        (None, update.lease_until.map(Some))
    };
    let changes = RunChanges {
        status: update.status,
        started_at: update.started_at,
        finished_at: update.finished_at,
        final_output: update.final_output,
        error: update.error,
        step_executions: update.step_executions,
        context: update.context,
        waiting_reason: update.waiting_reason,
        waiting_payload: update.waiting_payload,
        waiting_expires_at: update.waiting_expires_at,
        lease_owner,
        lease_expires_at,
    };
    let held = runs::table
        .filter(runs::id.eq(&update.id))
        .filter(runs::lease_owner.eq(&update.owner));
    if changes.is_empty() {
        let exists: bool = diesel::select(diesel::dsl::exists(held)).get_result(c)?;
        return Ok(exists.then_some(0));
    }
    let n = if require_lease {
        diesel::update(held).set(changes).execute(c)?
    } else {
        diesel::update(runs::table.find(&update.id))
            .set(changes)
            .execute(c)?
    };
    if n != 1 {
        return Ok(None);
    }
    Ok(Some(crate::hooks::enqueue(c, &update.id, &update.events)?))
}

impl Store {
    /// Stores a run started through the API (`POST /runs`), through the group-commit writer.
    /// `Conflict` when the id is taken. The caller checks that the deployment exists.
    pub async fn create_run(&self, run: NewRun) -> Result<()> {
        self.write(move |c| insert_run(c, &run), |_| true).await
    }

    /// A run by id.
    pub async fn get_run(&self, id: &str) -> Result<Option<RunRow>> {
        let id = id.to_owned();
        self.read(move |c| {
            Ok(runs::table
                .find(id)
                .select(RunRow::as_select())
                .first(c)
                .optional()?)
        })
        .await
    }

    /// Runs newest first (by id), filtered, starting after `cursor` (an id).
    pub async fn list_runs(
        &self,
        filter: RunFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<RunRow>> {
        let cursor = cursor.map(str::to_owned);
        self.read(move |c| {
            let q = filtered_runs(&filter, cursor.as_deref(), limit).select(RunRow::as_select());
            Ok(page(q.load(c)?, limit, |r| &r.id))
        })
        .await
    }

    /// The ids and stored sizes (bytes of their JSON documents) of the runs [`Store::list_runs`]
    /// would list — one more than `limit` when there are more — read without reading any
    /// document: a caller can then load only the runs that fit its byte budget with
    /// [`Store::get_runs`].
    pub async fn list_run_sizes(
        &self,
        filter: RunFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, u64)>> {
        let cursor = cursor.map(str::to_owned);
        self.read(move |c| {
            let sizes: Vec<(String, i64)> = filtered_runs(&filter, cursor.as_deref(), limit)
                .select((runs::id, diesel::dsl::sql::<BigInt>(RUN_BYTES)))
                .load(c)?;
            Ok(sizes
                .into_iter()
                .map(|(id, n)| (id, u64::try_from(n).unwrap_or(0)))
                .collect())
        })
        .await
    }

    /// The runs with these ids, newest first (ids with no run are left out).
    pub async fn get_runs(&self, ids: Vec<String>) -> Result<Vec<RunRow>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.read(move |c| {
            Ok(runs::table
                .filter(runs::id.eq_any(&ids))
                .order(runs::id.desc())
                .select(RunRow::as_select())
                .load(c)?)
        })
        .await
    }

    /// The bytes of one run's stored JSON documents (what reading it loads); `None` when there is
    /// no such run.
    pub async fn run_bytes(&self, id: &str) -> Result<Option<u64>> {
        let id = id.to_owned();
        self.read(move |c| {
            Ok(runs::table
                .find(id)
                .select(diesel::dsl::sql::<BigInt>(RUN_BYTES))
                .first::<i64>(c)
                .optional()?
                .map(|n| u64::try_from(n).unwrap_or(0)))
        })
        .await
    }

    /// A trigger's activity log, newest first, optionally of one outcome, starting after
    /// `cursor` (an id).
    pub async fn list_activity(
        &self,
        trigger_id: &str,
        outcome: Option<&str>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<ActivityRow>> {
        let trigger_id = trigger_id.to_owned();
        let (outcome, cursor) = (outcome.map(str::to_owned), cursor.map(str::to_owned));
        self.read(move |c| {
            let mut q = activity::table
                .filter(activity::trigger_id.eq(trigger_id))
                .select(ActivityRow::as_select())
                .order(activity::id.desc())
                .limit(fetch_limit(limit))
                .into_boxed();
            if let Some(o) = outcome {
                q = q.filter(activity::outcome.eq(o));
            }
            if let Some(cursor) = cursor {
                q = q.filter(activity::id.lt(cursor));
            }
            Ok(page(q.load(c)?, limit, |a| &a.id))
        })
        .await
    }

    /// One activity row of a trigger with its stored request; `None` when the trigger has no
    /// such row (never logged, trimmed away, or another trigger's).
    pub async fn get_activity(&self, trigger_id: &str, id: &str) -> Result<Option<ActivityDetail>> {
        let (trigger_id, id) = (trigger_id.to_owned(), id.to_owned());
        self.read(move |c| {
            Ok(activity::table
                .find(&id)
                .filter(activity::trigger_id.eq(&trigger_id))
                .select(ActivityDetail::as_select())
                .first(c)
                .optional()?)
        })
        .await
    }

    /// Deletes the de-duplication keys that expired by `now` (µs), at most `max` of them (oldest
    /// expiry first), and returns how many were deleted.
    pub async fn prune_dedup_keys(&self, now: i64, max: i64) -> Result<u64> {
        self.write(
            move |c| {
                let expired: Vec<(String, String)> = dedup_keys::table
                    .filter(dedup_keys::expires_at.le(now))
                    .order(dedup_keys::expires_at.asc())
                    .limit(max)
                    .select((dedup_keys::trigger_id, dedup_keys::key))
                    .load(c)?;
                let mut deleted = 0;
                for (trigger_id, key) in &expired {
                    deleted += diesel::delete(dedup_keys::table.find((trigger_id, key)))
                        .execute(c)? as u64;
                }
                Ok(deleted)
            },
            |_| false,
        )
        .await
    }

    /// Sets the status code of activity row `id` (a sync webhook's final answer). A row trimmed
    /// away meanwhile is not an error.
    pub async fn set_activity_status(&self, id: &str, status_code: i32) -> Result<()> {
        let id = id.to_owned();
        self.write(
            move |c| {
                diesel::update(activity::table.find(&id))
                    .set(activity::status_code.eq(status_code))
                    .execute(c)?;
                Ok(())
            },
            |_| false,
        )
        .await
    }

    /// Keeps only the newest `keep` activity rows of a trigger (`TRIGGERD_ACTIVITY_RETENTION`)
    /// and returns how many were deleted. Cheap when there is nothing to delete: it reads at most
    /// `keep + 1` index entries.
    pub async fn prune_activity(&self, trigger_id: &str, keep: usize) -> Result<u64> {
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        // The search for the cut-off runs on a read connection: walking `keep` index entries
        // (3 ms on PostgreSQL with 1,000 rows, measured with pg_stat_statements) would hold
        // the one writer, and every webhook batch behind it. Ids only grow, so rows written
        // after this read are newer than the cut-off and stay. The read also finds the oldest
        // row, so that the DELETE's index scan starts there: on PostgreSQL the index keeps the
        // entries of rows deleted by earlier trims until VACUUM, and a scan from the start of
        // the trigger's range walked all of them on every trim (4 ms per 100 rows deleted).
        let id = trigger_id.to_owned();
        let bounds: Option<(String, String)> = self
            .read(move |c| {
                let newest_dropped: Option<String> = activity::table
                    .filter(activity::trigger_id.eq(&id))
                    .order(activity::id.desc())
                    .offset(keep)
                    .limit(1)
                    .select(activity::id)
                    .first(c)
                    .optional()?;
                let Some(newest_dropped) = newest_dropped else {
                    return Ok(None);
                };
                let oldest: Option<String> = activity::table
                    .filter(activity::trigger_id.eq(&id))
                    .order(activity::id.asc())
                    .select(activity::id)
                    .first(c)
                    .optional()?;
                Ok(oldest.map(|oldest| (oldest, newest_dropped)))
            })
            .await?;
        let Some((oldest, newest_dropped)) = bounds else {
            return Ok(0);
        };
        let trigger_id = trigger_id.to_owned();
        self.write(
            move |c| {
                let deleted = diesel::delete(
                    activity::table
                        .filter(activity::trigger_id.eq(&trigger_id))
                        .filter(activity::id.ge(oldest))
                        .filter(activity::id.le(newest_dropped)),
                )
                .execute(c)?;
                Ok(deleted as u64)
            },
            |_| false,
        )
        .await
    }

    /// Claims up to `limit` runs for worker `owner`: status `pending` or `running`, no lease or
    /// an expired one (a dead worker's runs are taken over), oldest first. Sets their lease to
    /// `owner` until `lease_until` and returns them, oldest first.
    ///
    /// Two claimers never get the same run: on PostgreSQL the rows are locked with
    /// `FOR UPDATE SKIP LOCKED` (so concurrent claimers on other nodes skip them rather than wait);
    /// on SQLite the claim runs on the single writer.
    pub async fn claim_runs(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: usize,
    ) -> Result<Vec<RunRow>> {
        let owner = owner.to_owned();
        let limit = limit.clamp(1, crate::store::MAX_PAGE) as i64;
        self.write(
            move |c| {
                let mut claimed: Vec<RunRow> = match c {
                    DbConn::Postgres(pg) => {
                        let ids: Vec<String> = runs::table
                            .filter(claimable())
                            .filter(
                                runs::lease_expires_at
                                    .is_null()
                                    .or(runs::lease_expires_at.le(now)),
                            )
                            .order(runs::id.asc())
                            .limit(limit)
                            .select(runs::id)
                            .for_update()
                            .skip_locked()
                            .load(pg)?;
                        if ids.is_empty() {
                            return Ok(Vec::new());
                        }
                        diesel::update(runs::table.filter(runs::id.eq_any(&ids)))
                            .set((
                                runs::lease_owner.eq(&owner),
                                runs::lease_expires_at.eq(lease_until),
                            ))
                            .returning(RunRow::as_returning())
                            .get_results(pg)?
                    }
                    // One statement. `INDEXED BY`: without ANALYZE statistics SQLite prefers
                    // `runs_status` and sorts every unfinished run on each claim; the partial
                    // index walks unfinished runs in id order and stops at the limit.
                    DbConn::Sqlite(lite) => diesel::sql_query(
                        "UPDATE runs SET lease_owner = ?, lease_expires_at = ? \
                         WHERE id IN (SELECT id FROM runs INDEXED BY runs_claimable \
                           WHERE status IN ('pending', 'running') \
                             AND (lease_expires_at IS NULL OR lease_expires_at <= ?) \
                           ORDER BY id LIMIT ?) \
                         RETURNING *",
                    )
                    .bind::<Text, _>(&owner)
                    .bind::<BigInt, _>(lease_until)
                    .bind::<BigInt, _>(now)
                    .bind::<BigInt, _>(limit)
                    .load(lite)?,
                };
                claimed.sort_by(|a, b| a.id.cmp(&b.id));
                Ok(claimed)
            },
            |_| false,
        )
        .await
    }

    /// Applies a worker's change to a run, through the group-commit writer, only while `owner`
    /// holds the run's lease. Returns `false` (and changes nothing) when it does not — the lease
    /// expired and another worker took the run, or the run does not exist.
    pub async fn update_run(&self, update: RunUpdate) -> Result<bool> {
        let wakes = update.release_lease
            && matches!(update.status.as_deref(), Some("pending") | Some("running"));
        let finished =
            crate::awaited::is_final(update.status.as_deref()).then(|| update.id.clone());
        let result = self
            .write(move |c| apply_update(c, update, true), |_| false)
            .await?;
        if let (Some(id), Some(_)) = (&finished, result) {
            crate::awaited::finished(id);
        }
        if result.is_some() && wakes {
            // A run handed back unfinished can be claimed again at once.
            self.runs_notify().notify_one();
        }
        if result.is_some_and(|n| n > 0) {
            crate::hooks::wake_delivery_workers();
        }
        Ok(result.is_some())
    }

    /// The earliest instant (µs) at which a run becomes claimable again: a lease of an
    /// unfinished run that expires (a worker that died), or a wait that expires.
    pub async fn next_lease_expiry(&self) -> Result<Option<i64>> {
        self.read(|c| {
            let lease: Option<i64> = runs::table
                .filter(claimable())
                .filter(runs::lease_expires_at.is_not_null())
                .select(diesel::dsl::min(runs::lease_expires_at))
                .first::<Option<i64>>(c)?;
            let wait: Option<i64> = runs::table
                .filter(runs::status.eq("waiting"))
                .select(diesel::dsl::min(runs::waiting_expires_at))
                .first::<Option<i64>>(c)?;
            Ok(match (lease, wait) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            })
        })
        .await
    }

    /// Claims up to `limit` waiting runs whose wait expired at `now` (and that no live worker
    /// holds) for worker `owner`, leased until `lease_until`, oldest first — for the worker to
    /// fail them with `wait_timeout`.
    pub async fn claim_expired_waits(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: usize,
    ) -> Result<Vec<RunRow>> {
        let owner = owner.to_owned();
        let limit = limit.clamp(1, crate::store::MAX_PAGE) as i64;
        self.write(
            move |c| {
                let due = runs::table
                    .filter(runs::status.eq("waiting"))
                    .filter(runs::waiting_expires_at.le(now))
                    .filter(
                        runs::lease_expires_at
                            .is_null()
                            .or(runs::lease_expires_at.le(now)),
                    )
                    .order(runs::id.asc())
                    .limit(limit)
                    .select(runs::id);
                let ids: Vec<String> = match c {
                    DbConn::Postgres(pg) => due.for_update().skip_locked().load(pg)?,
                    DbConn::Sqlite(lite) => due.load(lite)?,
                };
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                diesel::update(runs::table.filter(runs::id.eq_any(&ids)))
                    .set((
                        runs::lease_owner.eq(&owner),
                        runs::lease_expires_at.eq(lease_until),
                    ))
                    .execute(c)?;
                Ok(runs::table
                    .filter(runs::id.eq_any(&ids))
                    .order(runs::id.asc())
                    .select(RunRow::as_select())
                    .load(c)?)
            },
            |_| false,
        )
        .await
    }

    /// Clears every run's lease (and every event delivery's) and returns how many runs were held. Only for a database that one
    /// process owns (SQLite) and at that process's start: every lease then belongs to an earlier
    /// process of the same node, which is gone, so its runs can be resumed at once instead of
    /// after their leases expire.
    pub async fn release_all_leases(&self) -> Result<u64> {
        let released = self
            .write(
                |c| {
                    // Deliveries the previous process was sending are due again at once too.
                    use crate::schema::deliveries;
                    diesel::update(deliveries::table.filter(deliveries::lease_owner.is_not_null()))
                        .set((
                            deliveries::lease_owner.eq(None::<String>),
                            deliveries::lease_expires_at.eq(None::<i64>),
                        ))
                        .execute(c)?;
                    Ok(
                        diesel::update(runs::table.filter(runs::lease_owner.is_not_null()))
                            .set((
                                runs::lease_owner.eq(None::<String>),
                                runs::lease_expires_at.eq(None::<i64>),
                            ))
                            .execute(c)? as u64,
                    )
                },
                |n| *n > 0,
            )
            .await?;
        Ok(released)
    }

    /// The number of runs in each status, for metrics.
    pub async fn count_runs_by_status(&self) -> Result<Vec<(String, i64)>> {
        self.read(|c| {
            Ok(runs::table
                .group_by(runs::status)
                .select((runs::status, diesel::dsl::count_star()))
                .order(runs::status.asc())
                .load(c)?)
        })
        .await
    }
}

/// The bytes of a run's JSON documents, read without reading them (`octet_length` on both
/// backends: SQLite reads the length from the record header, PostgreSQL from the value's header).
const RUN_BYTES: &str = "CAST(octet_length(input) + octet_length(trigger_input) \
    + octet_length(context) + octet_length(step_executions) \
    + COALESCE(octet_length(waiting_payload), 0) + COALESCE(octet_length(final_output), 0) \
    + COALESCE(octet_length(error), 0) AS BIGINT)";

/// The runs matching `filter` after `cursor`, newest first, one more than a page of `limit`.
fn filtered_runs<'a>(
    filter: &RunFilter,
    cursor: Option<&str>,
    limit: usize,
) -> runs::BoxedQuery<'a, crate::conn::MultiBackend> {
    let mut q = runs::table
        .order(runs::id.desc())
        .limit(fetch_limit(limit))
        .into_boxed();
    if let Some(d) = &filter.deployment_id {
        q = q.filter(runs::deployment_id.eq(d.clone()));
    }
    if let Some(t) = &filter.trigger_id {
        q = q.filter(runs::trigger_id.eq(t.clone()));
    }
    if let Some(s) = &filter.status {
        q = q.filter(runs::status.eq(s.clone()));
    }
    if let Some(cursor) = cursor {
        q = q.filter(runs::id.lt(cursor.to_owned()));
    }
    q
}
