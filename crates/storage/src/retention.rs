//! Run retention (`TRIGGERD_RUN_RETENTION_DAYS`): finished runs older than a cut-off are deleted.
//!
//! The search for old runs walks the runs table by primary key on a pooled read connection, so
//! the group-commit writer — and with it the webhook hot path — only ever sees small deletes by
//! id, one batch per writer job. Unfinished runs are never deleted, whatever their age.

use diesel::prelude::*;

use crate::Store;
use crate::error::Result;
use crate::schema::{deliveries, runs};

/// Runs examined and deleted per round: one read, then one writer job.
const BATCH: i64 = 500;

/// Statuses of finished runs.
const FINISHED: [&str; 3] = ["completed", "failed", "cancelled"];

impl Store {
    /// Deletes every finished run (`completed`, `failed`, `cancelled`) whose `finished_at` is
    /// before `cutoff` (microseconds since the epoch). Returns how many were deleted.
    ///
    /// Safe to run while the server takes traffic: the scan runs on a read connection and each
    /// delete is a small writer job that re-checks the run is still finished and old.
    pub async fn delete_finished_runs_before(&self, cutoff: i64) -> Result<u64> {
        let mut deleted = 0u64;
        let mut after = String::new();
        loop {
            let from = after.clone();
            let page: Vec<(String, Option<i64>, String)> = self
                .read(move |c| {
                    Ok(runs::table
                        .filter(runs::id.gt(from))
                        .select((runs::id, runs::finished_at, runs::status))
                        .order(runs::id.asc())
                        .limit(BATCH)
                        .load(c)?)
                })
                .await?;
            let Some((last, _, _)) = page.last() else {
                return Ok(deleted);
            };
            after = last.clone();
            let full = page.len() as i64 == BATCH;
            let old: Vec<String> = page
                .into_iter()
                .filter(|(_, finished_at, status)| {
                    finished_at.is_some_and(|t| t < cutoff) && FINISHED.contains(&status.as_str())
                })
                .map(|(id, _, _)| id)
                .collect();
            if !old.is_empty() {
                deleted += self
                    .write(
                        move |c| {
                            let gone: Vec<String> = runs::table
                                .filter(runs::id.eq_any(&old))
                                .filter(runs::finished_at.lt(cutoff))
                                .filter(runs::status.eq_any(FINISHED))
                                .select(runs::id)
                                .load(c)?;
                            let n = diesel::delete(runs::table.filter(runs::id.eq_any(&gone)))
                                .execute(c)?;
                            // Deliveries (and their attempts) go with their runs.
                            diesel::delete(
                                deliveries::table.filter(deliveries::run_id.eq_any(&gone)),
                            )
                            .execute(c)?;
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
