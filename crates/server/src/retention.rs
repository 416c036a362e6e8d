//! `TRIGGERD_RUN_RETENTION_DAYS`: deletes finished runs older than the retention, at start and
//! then periodically, until shutdown.

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
