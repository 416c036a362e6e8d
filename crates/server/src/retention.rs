//! `TRIGGERD_RUN_RETENTION_DAYS`: deletes finished runs older than the retention, at start and
//! then periodically, until shutdown. And the trim of expired de-duplication keys, always on.

use std::time::Duration;

use tokio::sync::watch;
use triggerd_app::App;

/// Longest wait between two sweeps.
const MAX_INTERVAL: Duration = Duration::from_secs(3600);
/// Shortest wait between two sweeps.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// How long to wait between sweeps for a retention of `days`: a tenth of it, from 1 s to 1 h, so
/// a run is deleted at most ~10 % later than its retention says.
pub fn interval(days: f64) -> Duration {
    Duration::from_secs_f64((days * 86_400.0 / 10.0).min(MAX_INTERVAL.as_secs_f64()))
        .max(MIN_INTERVAL)
}

/// Sweeps until `stop` turns true.
pub async fn run(app: App, days: f64, mut stop: watch::Receiver<bool>) {
    let keep_micros = (days * 86_400.0 * 1e6) as i64;
    let every = interval(days);
    tracing::info!(days, every_secs = every.as_secs_f64(), "run retention on");
    loop {
        let cutoff = app.now().saturating_sub(keep_micros);
        match app.delete_finished_runs_before(cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                deleted = n,
                days,
                "deleted finished runs past their retention"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "run retention sweep failed; retrying at the next one")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
    }
}

/// How often expired de-duplication keys are trimmed.
const DEDUP_TRIM_INTERVAL: Duration = Duration::from_secs(60);
/// Most keys deleted in one write; a trim takes rounds of this many until none are left, so
/// webhook batches wait behind no long delete.
const DEDUP_TRIM_BATCH: i64 = 5_000;

/// Trims expired de-duplication keys (`config.dedup`) every minute until `stop` turns true. An
/// expired key no longer counts whether or not it was trimmed: this only bounds the table.
pub async fn dedup_keys(app: App, mut stop: watch::Receiver<bool>) {
    loop {
        let mut deleted = 0;
        loop {
            match app.prune_dedup_keys(DEDUP_TRIM_BATCH).await {
                Ok(n) => {
                    deleted += n;
                    if n < DEDUP_TRIM_BATCH as u64 || *stop.borrow() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not trim expired de-duplication keys; retrying in a minute");
                    break;
                }
            }
        }
        if deleted > 0 {
            tracing::debug!(deleted, "expired de-duplication keys trimmed");
        }
        tokio::select! {
            () = tokio::time::sleep(DEDUP_TRIM_INTERVAL) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_a_tenth_of_the_retention_between_one_second_and_one_hour() {
        assert_eq!(interval(30.0), MAX_INTERVAL);
        assert_eq!(interval(0.0), MIN_INTERVAL);
        assert_eq!(interval(1.0 / 24.0), Duration::from_secs(360));
    }
}
