//! Event hooks and their outbox (SPEC 7).
//!
//! A run's state change carries its events ([`OutboxEvent`]); the code that writes the change
//! calls [`enqueue`] in the **same transaction**, which writes one delivery per matching hook
//! (workflow, deployment or run scope, subscribed to the event's type). A database without hooks
//! pays one `EXISTS` lookup per transaction. The delivery worker claims due deliveries with a
//! lease, sends them, and records each attempt.

use diesel::prelude::*;

use crate::Store;
use crate::conn::DbConn;
use crate::error::{Result, StoreError};
use crate::schema::{deliveries, delivery_attempts, hooks, runs};
use crate::store::{Page, fetch_limit, page};
use crate::tx::Tx;

/// An event a state change emits, for the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    /// `evt_...`: the `webhook-id` of every delivery of it.
    pub id: String,
    /// `run.started`, `run.completed`, …
    pub event_type: &'static str,
    /// When it happened (µs).
    pub at: i64,
}

/// A hook.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = hooks, treat_none_as_default_value = false)]
pub struct HookRow {
    /// `hook_...`
    pub id: String,
    /// `workflow`, `deployment` or `run`.
    pub scope: String,
    /// Scope `workflow`: the workflow's name.
    pub workflow: Option<String>,
    /// Scope `deployment`.
    pub deployment_id: Option<String>,
    /// Scope `run`.
    pub run_id: Option<String>,
    /// Where deliveries are POSTed.
    pub url: String,
    /// JSON array of event types.
    pub events: String,
    /// `whsec_...`
    pub secret: String,
    /// `api` or `run`.
    pub origin: String,
    /// µs since the epoch.
    pub created_at: i64,
}

/// A delivery of one event to one hook.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = deliveries)]
pub struct DeliveryRow {
    /// `dlv_...`
    pub id: String,
    /// The hook.
    pub hook_id: String,
    /// The event (`webhook-id`).
    pub event_id: String,
    /// Its type.
    pub event_type: String,
    /// The run.
    pub run_id: String,
    /// When the event happened (µs).
    pub occurred_at: i64,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    /// Attempts made.
    pub attempts: i64,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Option<i64>,
    /// The worker sending it.
    pub lease_owner: Option<String>,
    /// Until when.
    pub lease_expires_at: Option<i64>,
    /// The last attempt's error, if it failed.
    pub last_error: Option<String>,
    /// µs since the epoch.
    pub created_at: i64,
    /// When it was delivered or given up.
    pub finished_at: Option<i64>,
}

/// One attempt to send a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = delivery_attempts, treat_none_as_default_value = false)]
pub struct AttemptRow {
    /// The delivery.
    pub delivery_id: String,
    /// 1, 2, …
    pub attempt: i64,
    /// µs since the epoch.
    pub attempted_at: i64,
    /// The receiver's status, when it answered.
    pub status_code: Option<i32>,
    /// How long the attempt took.
    pub duration_ms: i64,
    /// Why it failed (connection, timeout, non-2xx, refused address).
    pub error: Option<String>,
    /// The first 4 KiB of the response body.
    pub response_body: Option<String>,
}

/// How a claim shares itself between receivers (see [`Store::claim_deliveries`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimFairness {
    /// At most this many deliveries of one hook per claim (0 counts as 1).
    pub per_hook: usize,
    /// Hooks to leave out: the claimer has enough of theirs in hand.
    pub skip_hooks: Vec<String>,
}

/// What an attempt's outcome does to its delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryNext {
    /// A 2xx came back.
    Delivered,
    /// Try again at this instant (µs).
    RetryAt(i64),
    /// Given up.
    Failed,
}

/// Wakes the delivery workers of this process: deliveries were committed. (A process-wide signal:
/// a worker woken for another store's deliveries finds nothing to claim and sleeps again.)
pub fn wake_delivery_workers() {
    DELIVERIES_COMMITTED.notify_waiters();
}

/// Resolves the next time deliveries are committed in this process.
pub fn deliveries_committed() -> tokio::sync::futures::Notified<'static> {
    DELIVERIES_COMMITTED.notified()
}

static DELIVERIES_COMMITTED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Whether any hook exists: the outbox's only cost when none does.
pub(crate) fn any_hooks(c: &mut DbConn) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(hooks::table.select(hooks::id))).get_result(c)
}

/// Writes the deliveries `events` of run `run_id` cause: one per hook of the run's workflow, its
/// deployment or the run itself that subscribes to the event's type. Call it in the transaction
/// that writes the state change.
pub(crate) fn enqueue(c: &mut DbConn, run_id: &str, events: &[OutboxEvent]) -> Result<usize> {
    if events.is_empty() || !any_hooks(c)? {
        return Ok(0);
    }
    enqueue_matching(c, run_id, events)
}

/// [`enqueue`] once it is known that hooks exist.
fn enqueue_matching(c: &mut DbConn, run_id: &str, events: &[OutboxEvent]) -> Result<usize> {
    let Some((workflow, deployment_id)) = runs::table
        .find(run_id)
        .select((runs::workflow, runs::deployment_id))
        .first::<(String, String)>(c)
        .optional()?
    else {
        return Ok(0);
    };
    let candidates = hook_candidates(c, &workflow, &deployment_id, Some(run_id))?;
    insert_deliveries(c, run_id, &candidates, events)
}

/// The hooks `(id, subscribed events as JSON)` a run of `workflow` on `deployment_id` may
/// notify: workflow- and deployment-scoped ones, and those of run `run_id` (`None` for a run
/// created in this very transaction, which cannot have any yet).
pub(crate) fn hook_candidates(
    c: &mut DbConn,
    workflow: &str,
    deployment_id: &str,
    run_id: Option<&str>,
) -> Result<Vec<(String, String)>> {
    let scoped = hooks::workflow
        .eq(workflow)
        .and(hooks::scope.eq("workflow"))
        .or(hooks::deployment_id
            .eq(deployment_id)
            .and(hooks::scope.eq("deployment")));
    Ok(match run_id {
        Some(run_id) => hooks::table
            .filter(scoped.or(hooks::run_id.eq(run_id).and(hooks::scope.eq("run"))))
            .order(hooks::id.asc())
            .select((hooks::id, hooks::events))
            .load(c)?,
        None => hooks::table
            .filter(scoped)
            .order(hooks::id.asc())
            .select((hooks::id, hooks::events))
            .load(c)?,
    })
}

/// Writes one delivery per event of run `run_id` and per hook of `candidates` subscribed to it.
pub(crate) fn insert_deliveries(
    c: &mut DbConn,
    run_id: &str,
    candidates: &[(String, String)],
    events: &[OutboxEvent],
) -> Result<usize> {
    let mut written = 0;
    for event in events {
        let quoted = format!("\"{}\"", event.event_type);
        for (hook_id, subscribed) in candidates {
            if !subscribed.contains(&quoted) {
                continue;
            }
            let id = delivery_id(&event.id, hook_id);
            diesel::insert_into(deliveries::table)
                .values((
                    deliveries::id.eq(&id),
                    deliveries::hook_id.eq(hook_id),
                    deliveries::event_id.eq(&event.id),
                    deliveries::event_type.eq(event.event_type),
                    deliveries::run_id.eq(run_id),
                    deliveries::occurred_at.eq(event.at),
                    deliveries::status.eq("pending"),
                    deliveries::attempts.eq(0_i64),
                    deliveries::next_attempt_at.eq(Some(event.at)),
                    deliveries::created_at.eq(event.at),
                ))
                .execute(c)?;
            written += 1;
        }
    }
    Ok(written)
}

/// Records one attempt of a delivery `owner` holds; `false` (nothing written) when it does not.
fn record_one(
    c: &mut DbConn,
    owner: &str,
    attempt: &AttemptRow,
    next: &DeliveryNext,
) -> Result<bool> {
    let (status, next_attempt_at, finished_at) = match *next {
        DeliveryNext::Delivered => ("delivered", None, Some(attempt.attempted_at)),
        DeliveryNext::RetryAt(t) => ("pending", Some(t), None),
        DeliveryNext::Failed => ("failed", None, Some(attempt.attempted_at)),
    };
    let update = MoveDelivery {
        id: &attempt.delivery_id,
        owner,
        status,
        attempts: attempt.attempt,
        next_attempt_at,
        last_error: attempt.error.as_deref(),
        finished_at,
    };
    let n = match c {
        DbConn::Sqlite(lite) => update.execute(lite)?,
        DbConn::Postgres(pg) => update.execute(pg)?,
    };
    if n == 0 {
        return Ok(false);
    }
    diesel::insert_into(delivery_attempts::table)
        .values(attempt)
        .execute(c)?;
    Ok(true)
}

/// [`record_one`] for several attempts on PostgreSQL in two round trips instead of two per
/// attempt: one `UPDATE ... FROM unnest(...)` of every delivery still held (returning their ids),
/// one multi-row INSERT of their attempts.
fn record_many_pg(
    pg: &mut diesel::PgConnection,
    owner: &str,
    attempts: &[(AttemptRow, DeliveryNext)],
) -> Result<Vec<bool>> {
    use diesel::sql_types::{Array, BigInt, Nullable, Text};

    #[derive(QueryableByName)]
    struct Held {
        #[diesel(sql_type = Text)]
        id: String,
    }

    let n = attempts.len();
    let (mut ids, mut statuses, mut counts, mut next_at, mut errors, mut finished) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for (attempt, next) in attempts {
        let (status, next_attempt_at, finished_at) = match *next {
            DeliveryNext::Delivered => ("delivered", None, Some(attempt.attempted_at)),
            DeliveryNext::RetryAt(t) => ("pending", Some(t), None),
            DeliveryNext::Failed => ("failed", None, Some(attempt.attempted_at)),
        };
        ids.push(attempt.delivery_id.as_str());
        statuses.push(status);
        counts.push(attempt.attempt);
        next_at.push(next_attempt_at);
        errors.push(attempt.error.as_deref());
        finished.push(finished_at);
    }
    let held: Vec<Held> = diesel::sql_query(
        "UPDATE deliveries d SET status = v.status, attempts = v.attempts, \
           next_attempt_at = v.next_attempt_at, lease_owner = NULL, lease_expires_at = NULL, \
           last_error = v.last_error, finished_at = v.finished_at \
         FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::bigint[]) \
           AS v(id, status, attempts, next_attempt_at, last_error, finished_at) \
         WHERE d.id = v.id AND d.lease_owner = $7 AND d.status = 'pending' \
         RETURNING d.id",
    )
    .bind::<Array<Text>, _>(&ids)
    .bind::<Array<Text>, _>(&statuses)
    .bind::<Array<BigInt>, _>(&counts)
    .bind::<Array<Nullable<BigInt>>, _>(&next_at)
    .bind::<Array<Nullable<Text>>, _>(&errors)
    .bind::<Array<Nullable<BigInt>>, _>(&finished)
    .bind::<Text, _>(owner)
    .load(pg)?;
    let held: std::collections::HashSet<String> = held.into_iter().map(|h| h.id).collect();
    let rows: Vec<&AttemptRow> = attempts
        .iter()
        .map(|(a, _)| a)
        .filter(|a| held.contains(&a.delivery_id))
        .collect();
    if !rows.is_empty() {
        diesel::insert_into(delivery_attempts::table)
            .values(rows)
            .execute(pg)?;
    }
    Ok(attempts
        .iter()
        .map(|(a, _)| held.contains(&a.delivery_id))
        .collect())
}

/// `SELECT id, next_attempt_at FROM deliveries WHERE hook_id = ? AND status = 'pending' AND
/// next_attempt_at <= now AND (lease free or lapsed) ORDER BY next_attempt_at LIMIT ?` on SQLite:
/// a fixed fragment diesel keeps prepared, with `status = 'pending'` written as a literal so that
/// SQLite can use the partial index `deliveries_hook_due` (a bound parameter cannot prove the
/// index's condition, and the range would become a scan of every delivery of the hook).
struct DueOfHook<'a> {
    hook_id: &'a str,
    now: i64,
    limit: i64,
}

impl diesel::query_builder::QueryId for DueOfHook<'_> {
    type QueryId = DueOfHook<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl diesel::query_builder::Query for DueOfHook<'_> {
    type SqlType = (
        diesel::sql_types::Text,
        diesel::sql_types::Nullable<diesel::sql_types::BigInt>,
    );
}

impl diesel::query_builder::QueryFragment<diesel::sqlite::Sqlite> for DueOfHook<'_> {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::sqlite::Sqlite>,
    ) -> QueryResult<()> {
        use diesel::sql_types::{BigInt, Text};
        out.push_sql(
            "SELECT id, next_attempt_at FROM deliveries INDEXED BY deliveries_hook_due \
             WHERE hook_id = ",
        );
        out.push_bind_param::<Text, _>(self.hook_id)?;
        out.push_sql(" AND status = 'pending' AND next_attempt_at <= ");
        out.push_bind_param::<BigInt, _>(&self.now)?;
        out.push_sql(" AND (lease_expires_at IS NULL OR lease_expires_at <= ");
        out.push_bind_param::<BigInt, _>(&self.now)?;
        out.push_sql(") ORDER BY next_attempt_at LIMIT ");
        out.push_bind_param::<BigInt, _>(&self.limit)?;
        Ok(())
    }
}

impl RunQueryDsl<diesel::SqliteConnection> for DueOfHook<'_> {}

/// The most deliveries one claim takes.
const CLAIM_LIMIT: usize = 1000;

/// Moves a delivery `owner` holds on after an attempt, lease released:
/// `UPDATE deliveries SET status, attempts, next_attempt_at, last_error, finished_at ... WHERE id
/// AND lease_owner AND status = 'pending'`. A fixed fragment with a static query id, so diesel
/// keeps it prepared (it never caches an UPDATE it builds itself: its SET list may vary) — one
/// runs per delivery sent.
struct MoveDelivery<'a> {
    id: &'a str,
    owner: &'a str,
    status: &'a str,
    attempts: i64,
    next_attempt_at: Option<i64>,
    last_error: Option<&'a str>,
    finished_at: Option<i64>,
}

impl diesel::query_builder::QueryId for MoveDelivery<'_> {
    type QueryId = MoveDelivery<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

macro_rules! move_delivery_for {
    ($backend:ty, $conn:ty) => {
        impl diesel::query_builder::QueryFragment<$backend> for MoveDelivery<'_> {
            fn walk_ast<'b>(
                &'b self,
                mut out: diesel::query_builder::AstPass<'_, 'b, $backend>,
            ) -> QueryResult<()> {
                use diesel::sql_types::{BigInt, Nullable, Text};
                out.push_sql("UPDATE deliveries SET status = ");
                out.push_bind_param::<Text, _>(self.status)?;
                out.push_sql(", attempts = ");
                out.push_bind_param::<BigInt, _>(&self.attempts)?;
                out.push_sql(", next_attempt_at = ");
                out.push_bind_param::<Nullable<BigInt>, _>(&self.next_attempt_at)?;
                out.push_sql(", lease_owner = NULL, lease_expires_at = NULL, last_error = ");
                out.push_bind_param::<Nullable<Text>, _>(&self.last_error)?;
                out.push_sql(", finished_at = ");
                out.push_bind_param::<Nullable<BigInt>, _>(&self.finished_at)?;
                out.push_sql(" WHERE id = ");
                out.push_bind_param::<Text, _>(self.id)?;
                out.push_sql(" AND lease_owner = ");
                out.push_bind_param::<Text, _>(self.owner)?;
                out.push_sql(" AND status = 'pending'");
                Ok(())
            }
        }

        impl RunQueryDsl<$conn> for MoveDelivery<'_> {}
    };
}

move_delivery_for!(diesel::sqlite::Sqlite, diesel::SqliteConnection);
move_delivery_for!(diesel::pg::Pg, diesel::PgConnection);

/// Removes a hook and gives up its pending deliveries (`failed`, "the hook was removed").
fn delete_hook(c: &mut DbConn, id: &str, now: i64) -> Result<()> {
    if diesel::delete(hooks::table.find(id)).execute(c)? == 0 {
        return Err(StoreError::not_found(format!("hook {id}")));
    }
    diesel::update(
        deliveries::table
            .filter(deliveries::hook_id.eq(id))
            .filter(deliveries::status.eq("pending")),
    )
    .set((
        deliveries::status.eq("failed"),
        deliveries::next_attempt_at.eq(None::<i64>),
        deliveries::last_error.eq(Some("the hook was removed")),
        deliveries::finished_at.eq(Some(now)),
    ))
    .execute(c)?;
    Ok(())
}

/// `dlv_` + the event's and the hook's unique parts: one delivery per (event, hook).
fn delivery_id(event_id: &str, hook_id: &str) -> String {
    let event = event_id.strip_prefix("evt_").unwrap_or(event_id);
    let hook = hook_id.strip_prefix("hook_").unwrap_or(hook_id);
    format!("dlv_{event}{hook}")
}

impl Tx<'_> {
    /// [`enqueue`] inside this transaction; wakes the delivery workers after the commit when it
    /// wrote any. Whether any hook exists is asked once per transaction (a cron round of 256
    /// runs asks once, not 256 times).
    pub fn enqueue_events(&mut self, run_id: &str, events: &[OutboxEvent]) -> Result<usize> {
        if events.is_empty() {
            return Ok(0);
        }
        let exist = match self.hooks_exist {
            Some(known) => known,
            None => {
                let known = any_hooks(self.conn())?;
                self.hooks_exist = Some(known);
                known
            }
        };
        if !exist {
            return Ok(0);
        }
        let n = enqueue_matching(self.conn(), run_id, events)?;
        if n > 0 {
            self.wake_deliveries();
        }
        Ok(n)
    }

    /// The workflow-scoped hooks of `workflow` that its definition declares (origins
    /// `definition`, `on_success_url`, `on_failure_url`), oldest first.
    pub fn declared_hooks(&mut self, workflow: &str) -> Result<Vec<HookRow>> {
        Ok(hooks::table
            .filter(hooks::scope.eq("workflow"))
            .filter(hooks::workflow.eq(workflow))
            .filter(hooks::origin.eq_any(["definition", "on_success_url", "on_failure_url"]))
            .order(hooks::id.asc())
            .select(HookRow::as_select())
            .load(self.conn())?)
    }

    /// Removes a hook; its pending deliveries are given up.
    pub fn delete_hook(&mut self, id: &str, now: i64) -> Result<()> {
        self.hooks_exist = None;
        delete_hook(self.conn(), id, now)
    }

    /// Stores a hook.
    pub fn create_hook(&mut self, hook: &HookRow) -> Result<()> {
        diesel::insert_into(hooks::table)
            .values(hook)
            .execute(self.conn())
            .map_err(|e| StoreError::on_constraint(e, "the hook id is taken", "hook"))?;
        self.hooks_exist = Some(true);
        Ok(())
    }
}

impl Store {
    /// Whether any hook exists.
    pub async fn any_hooks(&self) -> Result<bool> {
        self.read(|c| Ok(any_hooks(c)?)).await
    }

    /// A hook by id.
    pub async fn get_hook(&self, id: &str) -> Result<Option<HookRow>> {
        let id = id.to_owned();
        self.read(move |c| {
            Ok(hooks::table
                .find(id)
                .select(HookRow::as_select())
                .first(c)
                .optional()?)
        })
        .await
    }

    /// Hooks, oldest first, after `cursor` (an id); only those of `scope` when given.
    pub async fn list_hooks(
        &self,
        scope: Option<&str>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<HookRow>> {
        let (scope, cursor) = (scope.map(str::to_owned), cursor.map(str::to_owned));
        let fetch = fetch_limit(limit);
        self.read(move |c| {
            let mut q = hooks::table
                .select(HookRow::as_select())
                .order(hooks::id.asc())
                .limit(fetch)
                .into_boxed();
            if let Some(scope) = scope {
                q = q.filter(hooks::scope.eq(scope));
            }
            if let Some(cursor) = cursor {
                q = q.filter(hooks::id.gt(cursor));
            }
            Ok(page(q.load(c)?, limit, |h| &h.id))
        })
        .await
    }

    /// Removes a hook; its pending deliveries are given up (`failed`, "the hook was removed").
    /// `NotFound` when there is none.
    pub async fn delete_hook(&self, id: &str, now: i64) -> Result<()> {
        let id = id.to_owned();
        self.write(move |c| delete_hook(c, &id, now), |_| false)
            .await
    }

    /// Replaces a hook's secret.
    pub async fn set_hook_secret(&self, id: &str, secret: &str) -> Result<HookRow> {
        let (id, secret) = (id.to_owned(), secret.to_owned());
        self.write(
            move |c| {
                if diesel::update(hooks::table.find(&id))
                    .set(hooks::secret.eq(&secret))
                    .execute(c)?
                    == 0
                {
                    return Err(StoreError::not_found(format!("hook {id}")));
                }
                Ok(hooks::table
                    .find(&id)
                    .select(HookRow::as_select())
                    .first(c)?)
            },
            |_| false,
        )
        .await
    }

    /// Deliveries of a hook (`hook_id`) or of a run (`run_id`), newest first, before `cursor`.
    pub async fn list_deliveries(
        &self,
        hook_id: Option<&str>,
        run_id: Option<&str>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<DeliveryRow>> {
        let (hook_id, run_id, cursor) = (
            hook_id.map(str::to_owned),
            run_id.map(str::to_owned),
            cursor.map(str::to_owned),
        );
        let fetch = fetch_limit(limit);
        self.read(move |c| {
            let mut q = deliveries::table
                .select(DeliveryRow::as_select())
                .order(deliveries::id.desc())
                .limit(fetch)
                .into_boxed();
            if let Some(h) = hook_id {
                q = q.filter(deliveries::hook_id.eq(h));
            }
            if let Some(r) = run_id {
                q = q.filter(deliveries::run_id.eq(r));
            }
            if let Some(cursor) = cursor {
                q = q.filter(deliveries::id.lt(cursor));
            }
            Ok(page(q.load(c)?, limit, |d| &d.id))
        })
        .await
    }

    /// A delivery by id.
    pub async fn get_delivery(&self, id: &str) -> Result<Option<DeliveryRow>> {
        let id = id.to_owned();
        self.read(move |c| {
            Ok(deliveries::table
                .find(id)
                .select(DeliveryRow::as_select())
                .first(c)
                .optional()?)
        })
        .await
    }

    /// The attempts of deliveries, by delivery, oldest first.
    pub async fn delivery_attempts(&self, ids: Vec<String>) -> Result<Vec<AttemptRow>> {
        self.read(move |c| {
            Ok(delivery_attempts::table
                .filter(delivery_attempts::delivery_id.eq_any(ids))
                .order((
                    delivery_attempts::delivery_id.asc(),
                    delivery_attempts::attempt.asc(),
                ))
                .select(AttemptRow::as_select())
                .load(c)?)
        })
        .await
    }

    /// Claims up to `limit` due deliveries (pending, due at `now`, not leased or lease expired)
    /// for `owner` until `lease_until`; oldest due first. On PostgreSQL with `FOR UPDATE SKIP
    /// LOCKED`, so two nodes never claim the same delivery.
    pub async fn claim_deliveries(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: usize,
        fairness: ClaimFairness,
    ) -> Result<Vec<DeliveryRow>> {
        use diesel::sql_types::{Array, BigInt, Text};
        let owner = owner.to_owned();
        let limit = limit.clamp(1, CLAIM_LIMIT) as i64;
        let per_hook = fairness.per_hook.clamp(1, CLAIM_LIMIT) as i64;
        let skip = fairness.skip_hooks;
        self.write(
            move |c| {
                // One statement: per hook not in `skip`, its oldest due deliveries (at most
                // `per_hook`, one range of the index `deliveries_hook_due`), then the oldest
                // `limit` of those, leased and returned. One receiver's backlog neither fills a
                // claim nor is read past by every claim.
                let mut claimed: Vec<DeliveryRow> = match c {
                    // The outer SELECT locks `SKIP LOCKED` and re-checks the lease on the row it
                    // locked, so two nodes never claim the same delivery.
                    DbConn::Postgres(pg) => diesel::sql_query(
                        "UPDATE deliveries SET lease_owner = $1, lease_expires_at = $2 \
                         WHERE id IN (SELECT id FROM deliveries \
                           WHERE id IN (SELECT d.id FROM hooks h CROSS JOIN LATERAL ( \
                               SELECT x.id, x.next_attempt_at FROM deliveries x \
                               WHERE x.hook_id = h.id AND x.status = 'pending' \
                                 AND x.next_attempt_at <= $3 \
                                 AND (x.lease_expires_at IS NULL OR x.lease_expires_at <= $3) \
                               ORDER BY x.next_attempt_at LIMIT $5) d \
                             WHERE NOT (h.id = ANY($6)) \
                             ORDER BY d.next_attempt_at, d.id LIMIT $4) \
                             AND status = 'pending' \
                             AND (lease_expires_at IS NULL OR lease_expires_at <= $3) \
                           FOR UPDATE SKIP LOCKED) \
                         RETURNING *",
                    )
                    .bind::<Text, _>(&owner)
                    .bind::<BigInt, _>(lease_until)
                    .bind::<BigInt, _>(now)
                    .bind::<BigInt, _>(limit)
                    .bind::<BigInt, _>(per_hook)
                    .bind::<Array<Text>, _>(&skip)
                    .load(pg)?,
                    // SQLite has no LATERAL: the same plan spelled out — the hooks, then one
                    // index range per hook (a statement diesel keeps prepared), the oldest
                    // `limit` of those, then one UPDATE of the chosen ids. No round trips here.
                    DbConn::Sqlite(lite) => {
                        let hook_ids: Vec<String> = hooks::table
                            .select(hooks::id)
                            .load::<String>(lite)?
                            .into_iter()
                            .filter(|h| !skip.contains(h))
                            .collect();
                        let mut due: Vec<(i64, String)> = Vec::new();
                        for hook_id in &hook_ids {
                            let rows: Vec<(String, Option<i64>)> = DueOfHook {
                                hook_id,
                                now,
                                limit: per_hook,
                            }
                            .load(lite)?;
                            due.extend(rows.into_iter().map(|(id, at)| (at.unwrap_or(now), id)));
                        }
                        due.sort_unstable();
                        due.truncate(usize::try_from(limit).unwrap_or(0));
                        if due.is_empty() {
                            return Ok(Vec::new());
                        }
                        let ids: Vec<&str> = due.iter().map(|(_, id)| id.as_str()).collect();
                        diesel::update(deliveries::table.filter(deliveries::id.eq_any(&ids)))
                            .set((
                                deliveries::lease_owner.eq(Some(&owner)),
                                deliveries::lease_expires_at.eq(Some(lease_until)),
                            ))
                            .returning(DeliveryRow::as_returning())
                            .get_results(lite)?
                    }
                };
                claimed.sort_by(|a, b| (a.next_attempt_at, &a.id).cmp(&(b.next_attempt_at, &b.id)));
                Ok(claimed)
            },
            |_| false,
        )
        .await
    }

    /// Records an attempt of a delivery `owner` holds and moves the delivery on. Returns `false`
    /// (nothing written) when `owner` no longer holds it.
    pub async fn record_attempt(
        &self,
        owner: &str,
        attempt: AttemptRow,
        next: DeliveryNext,
    ) -> Result<bool> {
        let mut held = self.record_attempts(owner, vec![(attempt, next)]).await?;
        Ok(held.pop().unwrap_or(false))
    }

    /// [`Store::record_attempt`] for several attempts in one write (the delivery worker records
    /// what its sends finished since its last write); for each, whether `owner` still held it.
    pub async fn record_attempts(
        &self,
        owner: &str,
        attempts: Vec<(AttemptRow, DeliveryNext)>,
    ) -> Result<Vec<bool>> {
        let owner = owner.to_owned();
        self.write(
            move |c| {
                if let DbConn::Postgres(pg) = c
                    && attempts.len() > 1
                {
                    return record_many_pg(pg, &owner, &attempts);
                }
                let mut held = Vec::with_capacity(attempts.len());
                for (attempt, next) in &attempts {
                    held.push(record_one(c, &owner, attempt, next)?);
                }
                Ok(held)
            },
            |_| false,
        )
        .await
    }

    /// The runs `ids` that exist (one read; the delivery worker renders a claimed batch's events
    /// from them).
    pub async fn runs_by_ids(&self, ids: Vec<String>) -> Result<Vec<crate::RunRow>> {
        use crate::schema::runs;
        self.read(move |c| {
            Ok(runs::table
                .filter(runs::id.eq_any(&ids))
                .select(crate::RunRow::as_select())
                .load(c)?)
        })
        .await
    }

    /// The hooks `ids` that exist (one read).
    pub async fn hooks_by_ids(&self, ids: Vec<String>) -> Result<Vec<HookRow>> {
        self.read(move |c| {
            Ok(hooks::table
                .filter(hooks::id.eq_any(&ids))
                .select(HookRow::as_select())
                .load(c)?)
        })
        .await
    }

    /// Makes a delivery due now again (a manual retry): pending, next attempt now, lease
    /// cleared. Returns it; `NotFound` when there is none.
    pub async fn retry_delivery(&self, id: &str, now: i64) -> Result<DeliveryRow> {
        let id = id.to_owned();
        let row = self
            .write(
                move |c| {
                    let n = diesel::update(deliveries::table.find(&id))
                        .set((
                            deliveries::status.eq("pending"),
                            deliveries::next_attempt_at.eq(Some(now)),
                            deliveries::lease_owner.eq(None::<String>),
                            deliveries::lease_expires_at.eq(None::<i64>),
                            deliveries::finished_at.eq(None::<i64>),
                        ))
                        .execute(c)?;
                    if n == 0 {
                        return Err(StoreError::not_found(format!("delivery {id}")));
                    }
                    Ok(deliveries::table
                        .find(&id)
                        .select(DeliveryRow::as_select())
                        .first(c)?)
                },
                |_| false,
            )
            .await?;
        wake_delivery_workers();
        Ok(row)
    }

    /// The earliest `next_attempt_at` of a pending delivery (µs), or of a lease that expires.
    pub async fn next_delivery_due(&self) -> Result<Option<i64>> {
        self.read(|c| {
            // A delivery leased by a worker becomes claimable when its lease expires, not when
            // it was due: a worker sending it does not spin on it.
            Ok(deliveries::table
                .filter(deliveries::status.eq("pending"))
                .select(diesel::dsl::sql::<
                    diesel::sql_types::Nullable<diesel::sql_types::BigInt>,
                >(
                    "MIN(CASE WHEN lease_expires_at > next_attempt_at \
                     THEN lease_expires_at ELSE next_attempt_at END)",
                ))
                .first::<Option<i64>>(c)?)
        })
        .await
    }

    /// Deliveries by status, for `/metrics`: `(status, count)`, and the pending ones due by `now`.
    pub async fn count_deliveries(&self, now: i64) -> Result<(Vec<(String, i64)>, i64)> {
        self.read(move |c| {
            let by_status: Vec<(String, i64)> = deliveries::table
                .group_by(deliveries::status)
                .select((deliveries::status, diesel::dsl::count_star()))
                .load(c)?;
            let due: i64 = deliveries::table
                .filter(deliveries::status.eq("pending"))
                .filter(deliveries::next_attempt_at.le(now))
                .count()
                .get_result(c)?;
            Ok((by_status, due))
        })
        .await
    }
}
