//! The delivery worker: sends the outbox's due deliveries (SPEC 7).
//!
//! It claims due deliveries in batches with a lease (on PostgreSQL `FOR UPDATE SKIP LOCKED`, so
//! several nodes never send the same attempt at once), sends each through the SSRF-guarded
//! [`OutboundClient`] with bounded concurrency — a slow or dead receiver holds one slot for at
//! most [`ATTEMPT_TIMEOUT`], never the others, ingress or run execution — signed per Standard
//! Webhooks (`webhook-id` = the event id, the same on every attempt), and records every attempt.
//! A failed attempt is retried on the schedule ([`DEFAULT_SCHEDULE`], `TRIGGERD_RETRY_SCHEDULE`),
//! with jitter, honouring a receiver's `Retry-After` up to the schedule's step; past the last step
//! the delivery is `failed`. The worker sleeps until the next delivery is due or new ones are
//! committed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use triggerd_app::App;
use triggerd_app::hooks::event_body;
use triggerd_domain::signature::sign_standard_webhooks;
use triggerd_storage::{AttemptRow, DeliveryNext, DeliveryRow, deliveries_committed};

use crate::{OutboundClient, OutboundError, OutboundRequest};

/// The retry schedule after the first attempt: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
pub const DEFAULT_SCHEDULE: [u64; 7] = [5, 300, 1_800, 7_200, 18_000, 36_000, 36_000];
/// One attempt's limit: connect, send, response.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);
/// How much of a receiver's response body an attempt keeps.
pub const KEPT_RESPONSE_BYTES: usize = 4096;
/// Deliveries sent at once by one worker.
const CONCURRENCY: usize = 64;
/// How long a claim holds a delivery: longer than an attempt.
const LEASE: Duration = Duration::from_secs(30);
/// The longest sleep: bounds how late deliveries committed by another node (or left by a dead
/// one) are noticed.
const RECHECK: Duration = Duration::from_secs(5);

/// Parses `TRIGGERD_RETRY_SCHEDULE`: whole seconds, comma-separated (`1,1,2`).
pub fn parse_schedule(text: &str) -> Result<Vec<u64>, String> {
    let steps: Result<Vec<u64>, _> = text.split(',').map(|s| s.trim().parse::<u64>()).collect();
    match steps {
        Ok(steps) if !steps.is_empty() && steps.len() <= 50 => Ok(steps),
        _ => Err(format!(
            "expected whole seconds separated by commas (1 to 50 steps), e.g. 5,300,1800; got {text:?}"
        )),
    }
}

/// Sends deliveries until stopped.
#[derive(Debug, Clone)]
pub struct DeliveryWorker {
    app: App,
    owner: String,
    client: OutboundClient,
    schedule: Arc<Vec<u64>>,
}

impl DeliveryWorker {
    /// A worker claiming under `owner` (unique per process), sending through `client`, retrying
    /// on `schedule` (seconds after each failed attempt).
    pub fn new(app: App, owner: String, client: OutboundClient, schedule: Vec<u64>) -> Self {
        DeliveryWorker {
            app,
            owner,
            client,
            schedule: Arc::new(schedule),
        }
    }

    /// Sends due deliveries until `stop` turns true; attempts in flight finish (at most
    /// [`ATTEMPT_TIMEOUT`]).
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let slots = Arc::new(Semaphore::new(CONCURRENCY));
        let mut tasks = JoinSet::new();
        let mut hooks_checked: Option<Instant> = None;
        tracing::info!(owner = %self.owner, "delivery worker started");
        loop {
            if *stop.borrow() {
                break;
            }
            let committed = deliveries_committed();
            tokio::pin!(committed);
            committed.as_mut().enable();
            if hooks_checked.is_none_or(|t| t.elapsed() >= RECHECK) {
                // The webhook path's wake-up hint: learn of hooks created on other nodes.
                if let Ok(any) = self.app.store().any_hooks().await {
                    self.app.set_hooks_may_exist(any);
                }
                hooks_checked = Some(Instant::now());
            }
            while tasks.try_join_next().is_some() {}
            let free = slots.available_permits();
            let mut claimed = 0;
            if free > 0 {
                let now = self.app.now();
                let lease_until = now + LEASE.as_micros() as i64;
                match self
                    .app
                    .store()
                    .claim_deliveries(&self.owner, now, lease_until, free)
                    .await
                {
                    Ok(batch) => {
                        claimed = batch.len();
                        for delivery in batch {
                            let Ok(permit) = slots.clone().acquire_owned().await else {
                                break;
                            };
                            let worker = self.clone();
                            tasks.spawn(async move {
                                worker.attempt(delivery).await;
                                drop(permit);
                            });
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "claiming deliveries failed; retrying shortly")
                    }
                }
            }
            if claimed > 0 && claimed == free {
                // Possibly more due: claim again as soon as a slot frees up.
                tokio::select! {
                    _ = tasks.join_next() => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
            let delay = match self.app.store().next_delivery_due().await {
                Ok(Some(at)) => self
                    .app
                    .clock()
                    .real_delay(at - self.app.now())
                    .clamp(Duration::from_millis(1), RECHECK),
                _ => RECHECK,
            };
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = &mut committed => {}
                _ = stop.changed() => {}
            }
        }
        while tasks.join_next().await.is_some() {}
        tracing::info!("delivery worker stopped");
    }

    /// One attempt of `delivery`, recorded with its outcome.
    async fn attempt(&self, delivery: DeliveryRow) {
        let attempt = delivery.attempts + 1;
        let started = Instant::now();
        let attempted_at = self.app.now();
        let outcome = self.send(&delivery).await;
        let duration_ms = started.elapsed().as_millis() as i64;
        let (status_code, error, response_body, retry_after, permanent) = match outcome {
            Ok((status, body, _)) if (200..300).contains(&status) => {
                (Some(i32::from(status)), None, Some(body), None, false)
            }
            Ok((status, body, retry_after)) => (
                Some(i32::from(status)),
                Some(format!("the receiver answered {status}")),
                Some(body),
                retry_after,
                false,
            ),
            Err((error, permanent)) => (None, Some(error), None, None, permanent),
        };
        let delivered = error.is_none();
        let next = if delivered {
            DeliveryNext::Delivered
        } else if permanent {
            DeliveryNext::Failed
        } else {
            match self.schedule.get((attempt - 1) as usize) {
                Some(&step) => {
                    let mut delay = jittered(step, &delivery.id, attempt);
                    if let Some(asked) = retry_after {
                        delay = asked.min(step * 1_000_000);
                    }
                    DeliveryNext::RetryAt(self.app.now() + delay as i64)
                }
                None => DeliveryNext::Failed,
            }
        };
        let outcome_label = match &next {
            DeliveryNext::Delivered => "delivered",
            DeliveryNext::RetryAt(_) => "retrying",
            DeliveryNext::Failed => "failed",
        };
        if let Some(e) = &error {
            let level_failed = matches!(next, DeliveryNext::Failed);
            if level_failed {
                tracing::warn!(delivery_id = %delivery.id, hook_id = %delivery.hook_id, attempt, error = %e, "event delivery failed for good");
            } else {
                tracing::info!(delivery_id = %delivery.id, hook_id = %delivery.hook_id, attempt, error = %e, "event delivery attempt failed; will retry");
            }
        }
        let row = AttemptRow {
            delivery_id: delivery.id.clone(),
            attempt,
            attempted_at,
            status_code,
            duration_ms,
            error,
            response_body,
        };
        match self
            .app
            .store()
            .record_attempt(&self.owner, row, next)
            .await
        {
            Ok(true) => {
                metrics::counter!("triggerd_hook_attempts_total", "outcome" => outcome_label)
                    .increment(1);
                if delivered {
                    let lag = (self.app.now() - delivery.occurred_at).max(0) as f64 / 1e6;
                    metrics::histogram!("triggerd_hook_delivery_lag_seconds").record(lag);
                }
            }
            Ok(false) => {
                tracing::debug!(delivery_id = %delivery.id, "lost the delivery's lease; its attempt is not recorded")
            }
            Err(e) => {
                tracing::warn!(delivery_id = %delivery.id, error = %e, "could not record a delivery attempt; it is sent again after its lease")
            }
        }
    }

    /// Sends once: `(status, first 4 KiB of the body, Retry-After in µs)`, or why it failed and
    /// whether retrying is pointless.
    async fn send(
        &self,
        delivery: &DeliveryRow,
    ) -> Result<(u16, String, Option<u64>), (String, bool)> {
        let store = self.app.store();
        let hook = match store.get_hook(&delivery.hook_id).await {
            Ok(Some(h)) => h,
            Ok(None) => return Err(("the hook was removed".to_owned(), true)),
            Err(e) => return Err((format!("cannot read the hook: {e}"), false)),
        };
        let run = match store.get_run(&delivery.run_id).await {
            Ok(Some(r)) => r,
            Ok(None) => return Err(("the run no longer exists".to_owned(), true)),
            Err(e) => return Err((format!("cannot read the run: {e}"), false)),
        };
        let body = event_body(delivery, &run).to_string();
        let timestamp = self.app.now() / 1_000_000;
        let signature = match sign_standard_webhooks(
            &hook.secret,
            &delivery.event_id,
            timestamp,
            body.as_bytes(),
        ) {
            Ok(s) => s,
            Err(e) => return Err((format!("cannot sign with the hook's secret: {e}"), true)),
        };
        let request = OutboundRequest {
            method: http::Method::POST,
            url: hook.url.clone(),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("webhook-id".into(), delivery.event_id.clone()),
                ("webhook-timestamp".into(), timestamp.to_string()),
                ("webhook-signature".into(), signature),
            ],
            body: Some(Bytes::from(body)),
            timeout: ATTEMPT_TIMEOUT,
            max_response_bytes: KEPT_RESPONSE_BYTES,
        };
        match self.client.send(request).await {
            Ok(response) => {
                let retry_after = response
                    .headers
                    .iter()
                    .find(|(name, _)| name == "retry-after")
                    .and_then(|(_, v)| v.trim().parse::<u64>().ok())
                    .map(|s| s.saturating_mul(1_000_000));
                Ok((
                    response.status,
                    String::from_utf8_lossy(&response.body).into_owned(),
                    retry_after,
                ))
            }
            Err(e) => {
                let permanent = matches!(
                    e,
                    OutboundError::Refused { .. } | OutboundError::InvalidUrl { .. }
                );
                Err((e.to_string(), permanent))
            }
        }
    }
}

/// `step` seconds ± 10 %, in µs, spread by the delivery id and attempt (no two receivers' retries
/// line up), deterministic for a given delivery and attempt.
fn jittered(step: u64, id: &str, attempt: i64) -> u64 {
    let micros = step.saturating_mul(1_000_000);
    let spread = micros / 10;
    if spread == 0 {
        return micros;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes().chain(attempt.to_le_bytes()) {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    micros - spread + hash % (2 * spread + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_parse_and_jitter_stays_within_ten_percent() {
        assert_eq!(parse_schedule("1, 2,3").unwrap(), [1, 2, 3]);
        assert!(parse_schedule("").is_err());
        assert!(parse_schedule("1,x").is_err());
        for attempt in 1..20 {
            let d = jittered(300, "dlv_x", attempt);
            assert!((270_000_000..=330_000_000).contains(&d), "{d}");
        }
        assert_eq!(jittered(0, "dlv_x", 1), 0);
        assert_ne!(jittered(300, "dlv_a", 1), jittered(300, "dlv_b", 1));
    }
}
