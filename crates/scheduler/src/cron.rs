//! The cron scheduler: fires due slots ([`App::fire_due_cron`]) and sleeps until the earliest
//! `next_fire_at` of all cron triggers — one indexed query, so 100,000 triggers cost nothing
//! between fires. It wakes early when a trigger changes on this node
//! ([`TriggerChanges`](triggerd_app::TriggerChanges)), and re-reads the earliest slot at least
//! every [`REMOTE_CHECK`] so changes made on other nodes of a cluster are seen within that delay.
//!
//! Every node runs one; correctness never rests on that: a slot's record, its run and the
//! trigger's next slot commit together, and the record's primary key refuses a second firing.

use std::time::Duration;

use tokio::sync::watch;
use triggerd_app::App;
use triggerd_app::cron::{CronRound, ROUND_TRIGGERS};

/// The longest sleep between two reads of the earliest slot: bounds how late a change made on
/// another node (or a jump of the system clock) is noticed.
pub const REMOTE_CHECK: Duration = Duration::from_secs(5);
/// The pause after a failed round (e.g. the database is unreachable).
const RETRY: Duration = Duration::from_secs(1);

/// Fires cron triggers until stopped.
#[derive(Debug)]
pub struct CronScheduler {
    app: App,
}

impl CronScheduler {
    /// A scheduler over `app` (its store and clock).
    pub fn new(app: App) -> Self {
        CronScheduler { app }
    }

    /// Fires due slots until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let changes = self.app.trigger_changes().clone();
        tracing::info!("cron scheduler started");
        loop {
            if *stop.borrow() {
                break;
            }
            // Register interest before reading so a change during the round is not missed.
            let notified = changes.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let delay = match self.fire_all_due().await {
                Ok(()) => self.until_next_slot().await,
                Err(e) => {
                    tracing::warn!(error = %e, "cron firing round failed; retrying shortly");
                    RETRY
                }
            };
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = &mut notified => {}
                _ = stop.changed() => {}
            }
        }
        tracing::info!("cron scheduler stopped");
    }

    /// Rounds until no due trigger is left.
    async fn fire_all_due(&self) -> Result<(), triggerd_app::AppError> {
        loop {
            let round = self.app.fire_due_cron(ROUND_TRIGGERS).await?;
            record(&round);
            if !round.more {
                return Ok(());
            }
        }
    }

    /// Real time until the earliest slot, at most [`REMOTE_CHECK`].
    async fn until_next_slot(&self) -> Duration {
        match self.app.store().earliest_cron_fire().await {
            Ok(Some(at)) => self
                .app
                .clock()
                .real_delay(at - self.app.now())
                .min(REMOTE_CHECK),
            Ok(None) => REMOTE_CHECK,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the next cron slot; retrying shortly");
                RETRY
            }
        }
    }
}

/// The round's metrics.
fn record(round: &CronRound) {
    if round.fired.is_empty() && round.skipped.is_empty() {
        return;
    }
    for slot in &round.fired {
        metrics::counter!("triggerd_cron_slots_fired_total").increment(1);
        let late = (round.now - slot.scheduled_for.timestamp_micros()).max(0) as f64 / 1e6;
        metrics::histogram!("triggerd_cron_fire_lateness_seconds").record(late);
        if slot.status.is_terminal() {
            metrics::counter!("triggerd_runs_finished_total", "status" => slot.status.as_str())
                .increment(1);
        }
    }
    metrics::counter!("triggerd_cron_slots_skipped_total").increment(round.skipped.len() as u64);
}
