//! Cron firing's storage: the due triggers (through the `next_fire_at` index, never a scan of
//! every trigger), the slot records whose primary key `(trigger_id, scheduled_for)` makes a second
//! firing of a slot impossible, and the trigger's counters — all written by `triggerd-app` in ONE
//! [`Tx`](crate::Tx) per round.

use diesel::prelude::*;

use crate::Store;
use crate::conn::{DbConn, per_backend};
use crate::deployments::DeploymentRow;
use crate::error::Result;
use crate::schema::{cron_slots, deployments, triggers};
use crate::triggers::{TriggerRecord, TriggerRow};
use crate::tx::Tx;

/// A fired slot, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = cron_slots)]
pub struct CronSlotRow {
    /// The trigger.
    pub trigger_id: String,
    /// The slot, µs since the epoch (UTC).
    pub scheduled_for: i64,
    /// The run it started.
    pub run_id: String,
    /// When it was fired, µs since the epoch.
    pub fired_at: i64,
}

impl Tx<'_> {
    /// Up to `limit` enabled cron triggers whose `next_fire_at` is at or before `now`, earliest
    /// first, locked for the rest of the transaction. On PostgreSQL the rows are taken with
    /// `FOR UPDATE SKIP LOCKED`, so another node's firing round skips them instead of waiting (and
    /// after this one commits, their `next_fire_at` no longer matches).
    pub fn lock_due_cron_triggers(&mut self, now: i64, limit: usize) -> Result<Vec<TriggerRow>> {
        let limit = limit.clamp(1, crate::store::MAX_PAGE) as i64;
        // One query for the rows (cron triggers have no token): a round may hold hundreds.
        macro_rules! due {
            () => {
                triggers::table
                    .filter(triggers::next_fire_at.le(now))
                    .filter(triggers::trigger_type.eq("cron"))
                    .filter(triggers::enabled.eq(true))
                    .order((triggers::next_fire_at.asc(), triggers::id.asc()))
                    .limit(limit)
                    .select(TriggerRecord::as_select())
            };
        }
        let records: Vec<TriggerRecord> = match self.conn() {
            DbConn::Postgres(pg) => due!().for_update().skip_locked().load(pg)?,
            DbConn::Sqlite(lite) => due!().load(lite)?,
        };
        Ok(records.into_iter().map(|r| r.with_token(None)).collect())
    }

    /// A deployment, read without a lock.
    pub fn deployment(&mut self, id: &str) -> Result<Option<DeploymentRow>> {
        Ok(deployments::table
            .find(id)
            .select(DeploymentRow::as_select())
            .first(self.conn())
            .optional()?)
    }

    /// Records that `scheduled_for` of `trigger_id` fired and started `run_id`. Returns `false`,
    /// writing nothing, when that slot was already recorded: the caller must then not start its
    /// run.
    pub fn record_cron_slot(
        &mut self,
        trigger_id: &str,
        scheduled_for: i64,
        run_id: &str,
        now: i64,
    ) -> Result<bool> {
        let row = (
            cron_slots::trigger_id.eq(trigger_id),
            cron_slots::scheduled_for.eq(scheduled_for),
            cron_slots::run_id.eq(run_id),
            cron_slots::fired_at.eq(now),
        );
        // MultiConnection has no ON CONFLICT: the insert runs on the inner connection.
        let inserted = per_backend!(self.conn(), c => diesel::insert_into(cron_slots::table)
            .values(row)
            .on_conflict((cron_slots::trigger_id, cron_slots::scheduled_for))
            .do_nothing()
            .execute(c))?;
        Ok(inserted == 1)
    }

    /// Moves a cron trigger on to its next slot after a firing round (`None`: a one-time
    /// trigger that has fired). Its `fire_count` and `last_fired_at` follow the runs inserted.
    pub fn set_next_fire_at(&mut self, trigger_id: &str, next_fire_at: Option<i64>) -> Result<()> {
        diesel::update(triggers::table.find(trigger_id))
            .set(triggers::next_fire_at.eq(next_fire_at))
            .execute(self.conn())?;
        Ok(())
    }
}

impl Store {
    /// The earliest `next_fire_at` of an enabled cron trigger (µs), read through the index.
    pub async fn earliest_cron_fire(&self) -> Result<Option<i64>> {
        self.read(|c| {
            Ok(triggers::table
                .filter(triggers::next_fire_at.is_not_null())
                .filter(triggers::trigger_type.eq("cron"))
                .filter(triggers::enabled.eq(true))
                .select(diesel::dsl::min(triggers::next_fire_at))
                .first::<Option<i64>>(c)?)
        })
        .await
    }

    /// The recorded slots of a trigger, oldest first (at most `limit`).
    pub async fn cron_slots(&self, trigger_id: &str, limit: usize) -> Result<Vec<CronSlotRow>> {
        let trigger_id = trigger_id.to_owned();
        let limit = limit.clamp(1, 100_000) as i64;
        self.read(move |c| {
            Ok(cron_slots::table
                .filter(cron_slots::trigger_id.eq(trigger_id))
                .order(cron_slots::scheduled_for.asc())
                .limit(limit)
                .select(CronSlotRow::as_select())
                .load(c)?)
        })
        .await
    }

    /// Deletes slot records fired before `cutoff` (µs), with the runs retention. Returns how many.
    ///
    /// Walks the slots in key order on a read connection, as the runs retention does, so the
    /// writer only sees small deletes by key.
    pub async fn delete_cron_slots_before(&self, cutoff: i64) -> Result<u64> {
        const BATCH: i64 = 1_000;
        let mut deleted = 0u64;
        let mut after = (String::new(), i64::MIN);
        loop {
            let from = after.clone();
            let page: Vec<(String, i64, i64)> = self
                .read(move |c| {
                    Ok(cron_slots::table
                        .filter(
                            cron_slots::trigger_id
                                .gt(from.0.clone())
                                .or(cron_slots::trigger_id
                                    .eq(from.0)
                                    .and(cron_slots::scheduled_for.gt(from.1))),
                        )
                        .order((
                            cron_slots::trigger_id.asc(),
                            cron_slots::scheduled_for.asc(),
                        ))
                        .limit(BATCH)
                        .select((
                            cron_slots::trigger_id,
                            cron_slots::scheduled_for,
                            cron_slots::fired_at,
                        ))
                        .load(c)?)
                })
                .await?;
            let Some((last_trigger, last_slot, _)) = page.last() else {
                return Ok(deleted);
            };
            after = (last_trigger.clone(), *last_slot);
            let full = page.len() as i64 == BATCH;
            let old: Vec<(String, i64)> = page
                .into_iter()
                .filter(|(_, _, fired_at)| *fired_at < cutoff)
                .map(|(t, s, _)| (t, s))
                .collect();
            if !old.is_empty() {
                deleted += self
                    .write(
                        move |c| {
                            let mut n = 0;
                            for (trigger_id, slot) in &old {
                                n += diesel::delete(cron_slots::table.find((trigger_id, slot)))
                                    .execute(c)?;
                            }
                            Ok(n as u64)
                        },
                        |_| false,
                    )
                    .await?;
            }
            if !full {
                return Ok(deleted);
            }
        }
    }
}
