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

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use triggerd_app::App;
use triggerd_app::hooks::event_body;
use triggerd_domain::signature::sign_standard_webhooks;
use triggerd_storage::{
    AttemptRow, ClaimFairness, DeliveryNext, DeliveryRow, HookRow, RunRow, deliveries_committed,
};

use crate::{OutboundClient, OutboundError, OutboundRequest};

/// The retry schedule after the first attempt: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
pub const DEFAULT_SCHEDULE: [u64; 7] = [5, 300, 1_800, 7_200, 18_000, 36_000, 36_000];
/// One attempt's limit: connect, send, response.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);
/// How much of a receiver's response body an attempt keeps.
pub const KEPT_RESPONSE_BYTES: usize = 4096;
/// Deliveries sent at once by one worker. A send waiting on a slow receiver costs a socket and a
/// timer, not a thread.
const CONCURRENCY: usize = 256;
/// Sends to one hook at once, at most, while it answers well.
const PER_HOOK_IN_FLIGHT: usize = 64;
/// Sends to one hook at once, at most, for [`SLOW_FOR`] after one of its attempts took longer
/// than [`SLOW_ATTEMPT`] (a hanging receiver, a timeout): it holds at most this many slots.
const SLOW_HOOK_IN_FLIGHT: usize = 8;
/// An attempt this long marks its hook slow.
const SLOW_ATTEMPT: Duration = Duration::from_secs(1);
/// How long a hook stays marked slow after its last slow or failed attempt.
const SLOW_FOR: Duration = Duration::from_secs(30);
/// Claimed deliveries of one hook held at once (sending or queued), at most about, per sending
/// slot it may use: a claim takes at most [`PER_HOOK_HELD`] of one hook, and none of a hook held
/// this many times its limit already.
const HELD_PER_SLOT: usize = 4;
/// The most deliveries of one hook a claim takes.
const PER_HOOK_HELD: usize = HELD_PER_SLOT * PER_HOOK_IN_FLIGHT;
/// No claim while this many claimed deliveries wait (each hook's share is bounded: with many
/// stalled receivers, memory is).
const QUEUE_MAX: usize = 4096;
/// Deliveries claimed at once at most.
const CLAIM_BATCH: usize = 512;
/// The next claim starts when fewer than this many claimed deliveries of hooks that answer well
/// wait, so that sends go on while it runs (a claim waits for the writer's next commit). Below
/// what a hook may hold ([`HELD_PER_SLOT`] × [`PER_HOOK_IN_FLIGHT`]) less its sends, so a claim
/// made for a busy single receiver is not refused for holding it in full.
const LOW_WATER: usize = 128;
/// Finished attempts recorded in one write at most.
const RECORD_BATCH: usize = 512;
/// How long a claim holds a delivery. Against a fast receiver a claimed delivery waits for a
/// slot for milliseconds; behind a slow one (its [`SLOW_HOOK_IN_FLIGHT`] sends taking up to
/// [`ATTEMPT_TIMEOUT`] each) it may wait longer than its lease allows, and is then not sent but
/// left to the claim after its lease (see `dispatch`): late, never twice at once.
const LEASE: Duration = Duration::from_secs(60);
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

/// A claimed delivery with what its attempt needs (read once per claimed batch).
struct Claimed {
    delivery: DeliveryRow,
    /// When this worker's lease of it ends (µs).
    lease_until: i64,
    hook: Option<Arc<HookRow>>,
    run: Option<Arc<RunRow>>,
}

/// Each hook's share of the sending slots: how many of its sends are going, and whether it was
/// slow lately (then its share is [`SLOW_HOOK_IN_FLIGHT`], else [`PER_HOOK_IN_FLIGHT`]).
#[derive(Default)]
struct Shares {
    in_flight: HashMap<String, usize>,
    slow_until: HashMap<String, Instant>,
}

/// What a send task reports when it ends: its hook, and whether the attempt was slow.
type SendEnd = (String, bool);

impl Shares {
    fn limit(&self, hook_id: &str) -> usize {
        match self.slow_until.get(hook_id) {
            Some(until) if *until > Instant::now() => SLOW_HOOK_IN_FLIGHT,
            _ => PER_HOOK_IN_FLIGHT,
        }
    }

    fn is_slow(&self, hook_id: &str) -> bool {
        self.limit(hook_id) < PER_HOOK_IN_FLIGHT
    }

    fn can_send(&self, hook_id: &str) -> bool {
        self.in_flight.get(hook_id).copied().unwrap_or(0) < self.limit(hook_id)
    }

    fn started(&mut self, hook_id: &str) {
        *self.in_flight.entry(hook_id.to_owned()).or_insert(0) += 1;
    }

    /// Notes a finished send. A send task does not panic (its errors are outcomes); if one did,
    /// its count stays until the worker restarts, which only lowers that hook's share.
    fn finished(&mut self, joined: Result<SendEnd, tokio::task::JoinError>) {
        let Ok((hook_id, slow)) = joined else {
            return;
        };
        if slow {
            self.slow_until
                .insert(hook_id.clone(), Instant::now() + SLOW_FOR);
        } else if self.slow_until.len() > 1024 {
            let now = Instant::now();
            self.slow_until.retain(|_, until| *until > now);
        }
        if let Some(n) = self.in_flight.get_mut(&hook_id) {
            *n -= 1;
            if *n == 0 {
                self.in_flight.remove(&hook_id);
            }
        }
    }

    /// The hooks this worker holds [`HELD_PER_SLOT`] times their share of deliveries of (queued
    /// or sending): the next claim leaves them out.
    fn held_in_full(&self, queue: &VecDeque<Claimed>) -> Vec<String> {
        let mut held: HashMap<&str, usize> = self
            .in_flight
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        for c in queue {
            *held.entry(c.delivery.hook_id.as_str()).or_insert(0) += 1;
        }
        held.into_iter()
            .filter(|(h, n)| *n >= HELD_PER_SLOT * self.limit(h))
            .map(|(h, _)| h.to_owned())
            .collect()
    }
}

/// What a claim found.
type ClaimResult = Result<Vec<Claimed>, triggerd_storage::StoreError>;

/// A finished attempt, on its way to the recorder.
struct Finished {
    row: AttemptRow,
    next: DeliveryNext,
    occurred_at: i64,
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
    /// [`ATTEMPT_TIMEOUT`]) and are recorded.
    ///
    /// Claims up to [`CLAIM_BATCH`] due deliveries at once, in the background while sends go on,
    /// reads their runs and hooks in one read each, sends at most [`CONCURRENCY`] at a time, and a
    /// recorder writes finished attempts in batches: at a steady flow, a few database round trips
    /// per hundred deliveries. One receiver gets at most [`PER_HOOK_IN_FLIGHT`] sends at once —
    /// [`SLOW_HOOK_IN_FLIGHT`] while it is slow — and about [`HELD_PER_SLOT`] claimed
    /// deliveries per send it may have going; a claim takes at most [`PER_HOOK_HELD`] of one
    /// hook and none of a hook held in full, so a slow or dead receiver's backlog never keeps the
    /// others' deliveries waiting.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let slots = Arc::new(Semaphore::new(CONCURRENCY));
        let mut tasks: JoinSet<SendEnd> = JoinSet::new();
        let mut shares = Shares::default();
        let mut queue: VecDeque<Claimed> = VecDeque::new();
        // The claim in progress, with how many it asked for: it runs while sends go on.
        let mut claim: Option<(usize, tokio::task::JoinHandle<ClaimResult>)> = None;
        // Whether a claim may find something (false once one came back short, until new
        // deliveries are committed or one falls due).
        let mut more_due = true;
        let mut hooks_checked: Option<Instant> = None;
        let (done_tx, done_rx) = mpsc::unbounded_channel::<Finished>();
        let recorder = tokio::spawn(self.clone().record(done_rx));
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
            while let Some(joined) = tasks.try_join_next() {
                shares.finished(joined);
            }
            // Claimed deliveries of hooks that answer well: the next claim starts when they run
            // low. A slow hook's queued deliveries do not count (they wait for its few slots).
            let in_hand = queue
                .iter()
                .filter(|c| !shares.is_slow(&c.delivery.hook_id))
                .count();
            if claim.is_none() && more_due && in_hand < LOW_WATER && queue.len() < QUEUE_MAX {
                let limit = CLAIM_BATCH - in_hand;
                let skip_hooks = shares.held_in_full(&queue);
                let worker = self.clone();
                claim = Some((
                    limit,
                    tokio::spawn(async move { worker.claim(limit, skip_hooks).await }),
                ));
            }
            self.dispatch(&mut queue, &slots, &mut tasks, &mut shares, &done_tx);
            if claim.is_none() && queue.is_empty() {
                // Idle: sleep until a delivery falls due or new ones are committed.
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
                more_due = true;
                continue;
            }
            let claiming = async {
                match claim.as_mut() {
                    Some((_, handle)) => handle.await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                joined = claiming => {
                    let limit = claim.take().map_or(0, |(limit, _)| limit);
                    match joined {
                        Ok(Ok(batch)) => {
                            // Deliveries committed while the claim ran may not be in it.
                            let committed_meanwhile = tokio::select! {
                                biased;
                                () = &mut committed => true,
                                () = std::future::ready(()) => false,
                            };
                            // Short, and no hook gave all a claim takes of one: nothing more due.
                            let mut per_hook: HashMap<&str, usize> = HashMap::new();
                            for c in &batch {
                                *per_hook.entry(c.delivery.hook_id.as_str()).or_insert(0) += 1;
                            }
                            let capped = per_hook.values().any(|n| *n >= PER_HOOK_HELD);
                            more_due = batch.len() == limit || capped || committed_meanwhile;
                            queue.extend(batch);
                        }
                        Ok(Err(e)) => {
                            more_due = false;
                            tracing::warn!(error = %e, "claiming deliveries failed; retrying shortly");
                        }
                        Err(e) => {
                            more_due = false;
                            tracing::warn!(error = %e, "the delivery claim task failed; retrying shortly");
                        }
                    }
                }
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                    shares.finished(joined);
                }
                () = &mut committed => more_due = true,
                // Other nodes' deliveries, retries falling due, stale queued ones: look again.
                () = tokio::time::sleep(RECHECK) => more_due = true,
                _ = stop.changed() => {}
            }
        }
        if let Some((_, handle)) = claim.take() {
            // Claimed deliveries not sent: their leases expire and they are sent then.
            let _ = handle.await;
        }
        while tasks.join_next().await.is_some() {}
        drop(done_tx);
        let _ = recorder.await;
        tracing::info!("delivery worker stopped");
    }

    /// Starts sends from `queue`, oldest first, while slots are free, skipping deliveries whose
    /// hook has its share of sends going (they stay queued). A delivery whose lease
    /// would end before its attempt could is dropped: the claim after its lease sends it.
    fn dispatch(
        &self,
        queue: &mut VecDeque<Claimed>,
        slots: &Arc<Semaphore>,
        tasks: &mut JoinSet<SendEnd>,
        shares: &mut Shares,
        done: &mpsc::UnboundedSender<Finished>,
    ) {
        let latest_start = self.app.now() + ATTEMPT_TIMEOUT.as_micros() as i64;
        let mut kept = VecDeque::with_capacity(queue.len());
        while let Some(claimed) = queue.pop_front() {
            if latest_start > claimed.lease_until {
                tracing::debug!(delivery_id = %claimed.delivery.id, "a claimed delivery waited too long for a slot; it is sent after its lease");
                continue;
            }
            if !shares.can_send(&claimed.delivery.hook_id) {
                kept.push_back(claimed);
                continue;
            }
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                kept.push_back(claimed);
                kept.extend(queue.drain(..));
                break;
            };
            let hook_id = claimed.delivery.hook_id.clone();
            shares.started(&hook_id);
            let (worker, done) = (self.clone(), done.clone());
            tasks.spawn(async move {
                let started = Instant::now();
                let finished = worker.attempt(claimed).await;
                drop(permit);
                // Slots are held by time, not by failures: a receiver that refuses at once (a
                // fast 503, a closed port) costs its slot for milliseconds.
                let slow = started.elapsed() > SLOW_ATTEMPT;
                let _ = done.send(finished);
                (hook_id, slow)
            });
        }
        *queue = kept;
    }

    /// Claims up to `limit` due deliveries and reads their runs and hooks.
    async fn claim(&self, limit: usize, skip_hooks: Vec<String>) -> ClaimResult {
        let store = self.app.store();
        let now = self.app.now();
        let lease_until = now + LEASE.as_micros() as i64;
        let batch = store
            .claim_deliveries(
                &self.owner,
                now,
                lease_until,
                limit,
                ClaimFairness {
                    per_hook: PER_HOOK_HELD,
                    skip_hooks,
                },
            )
            .await?;
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut run_ids: Vec<String> = batch.iter().map(|d| d.run_id.clone()).collect();
        run_ids.sort_unstable();
        run_ids.dedup();
        let mut hook_ids: Vec<String> = batch.iter().map(|d| d.hook_id.clone()).collect();
        hook_ids.sort_unstable();
        hook_ids.dedup();
        let (runs, hooks) =
            tokio::try_join!(store.runs_by_ids(run_ids), store.hooks_by_ids(hook_ids))?;
        let runs: HashMap<String, Arc<RunRow>> = runs
            .into_iter()
            .map(|r| (r.id.clone(), Arc::new(r)))
            .collect();
        let hooks: HashMap<String, Arc<HookRow>> = hooks
            .into_iter()
            .map(|h| (h.id.clone(), Arc::new(h)))
            .collect();
        Ok(batch
            .into_iter()
            .map(|delivery| Claimed {
                lease_until,
                hook: hooks.get(&delivery.hook_id).cloned(),
                run: runs.get(&delivery.run_id).cloned(),
                delivery,
            })
            .collect())
    }

    /// Writes finished attempts, as many at once as have finished since the last write, until
    /// every sender is gone.
    async fn record(self, mut done: mpsc::UnboundedReceiver<Finished>) {
        let mut batch = Vec::with_capacity(RECORD_BATCH);
        while done.recv_many(&mut batch, RECORD_BATCH).await > 0 {
            let finished = std::mem::take(&mut batch);
            let rows = finished
                .iter()
                .map(|f| (f.row.clone(), f.next.clone()))
                .collect();
            match self.app.store().record_attempts(&self.owner, rows).await {
                Ok(held) => {
                    let now = self.app.now();
                    for (f, held) in finished.iter().zip(held) {
                        if !held {
                            tracing::debug!(delivery_id = %f.row.delivery_id, "lost the delivery's lease; its attempt is not recorded");
                            continue;
                        }
                        let outcome = match &f.next {
                            DeliveryNext::Delivered => "delivered",
                            DeliveryNext::RetryAt(_) => "retrying",
                            DeliveryNext::Failed => "failed",
                        };
                        metrics::counter!("triggerd_hook_attempts_total", "outcome" => outcome)
                            .increment(1);
                        if f.next == DeliveryNext::Delivered {
                            let lag = (now - f.occurred_at).max(0) as f64 / 1e6;
                            metrics::histogram!("triggerd_hook_delivery_lag_seconds").record(lag);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(attempts = finished.len(), error = %e, "could not record delivery attempts; they are sent again after their leases")
                }
            }
        }
    }

    /// One attempt of a claimed delivery, and what it does to the delivery.
    async fn attempt(&self, claimed: Claimed) -> Finished {
        let delivery = &claimed.delivery;
        let attempt = delivery.attempts + 1;
        let started = Instant::now();
        let attempted_at = self.app.now();
        let outcome = self.send(&claimed).await;
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
        let next = if error.is_none() {
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
        if let Some(e) = &error {
            if matches!(next, DeliveryNext::Failed) {
                tracing::warn!(delivery_id = %delivery.id, hook_id = %delivery.hook_id, attempt, error = %e, "event delivery failed for good");
            } else {
                tracing::info!(delivery_id = %delivery.id, hook_id = %delivery.hook_id, attempt, error = %e, "event delivery attempt failed; will retry");
            }
        }
        Finished {
            row: AttemptRow {
                delivery_id: delivery.id.clone(),
                attempt,
                attempted_at,
                status_code,
                duration_ms,
                error,
                response_body,
            },
            next,
            occurred_at: delivery.occurred_at,
        }
    }

    /// Sends once: `(status, first 4 KiB of the body, Retry-After in µs)`, or why it failed and
    /// whether retrying is pointless.
    async fn send(&self, claimed: &Claimed) -> Result<(u16, String, Option<u64>), (String, bool)> {
        let delivery = &claimed.delivery;
        let Some(hook) = &claimed.hook else {
            return Err(("the hook was removed".to_owned(), true));
        };
        let Some(run) = &claimed.run else {
            return Err(("the run no longer exists".to_owned(), true));
        };
        let body = event_body(delivery, run).to_string();
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
