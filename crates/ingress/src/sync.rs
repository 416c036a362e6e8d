//! `response.mode = "sync"` (SPEC 4.5): the webhook request waits for its run to finish, up to
//! the trigger's `timeout_seconds`, and answers with the run's outcome.
//!
//! The run is stored exactly as in async mode (the group commit returns before any wait). A
//! waiting request holds no worker and does not poll: it sleeps on a [`RunWatch`] that the store
//! wakes when the run's final state commits — on this node directly, on another node of a
//! PostgreSQL cluster through `LISTEN`/`NOTIFY` — then reads the run once.
//!
//! * completed → **200** with `final_output` as the body (JSON);
//! * failed → **400** `{"error", "code", "run_id"}` from the run's error; cancelled → **400**
//!   with code `run_cancelled`;
//! * still going at the timeout (or the server shutting down) → **202**
//!   `{"run_id", "status"}` with `Location: /api/v1/runs/{id}`.
//!
//! At most [`IngressConfig::max_sync_waits`](crate::IngressConfig::max_sync_waits) requests wait
//! at once per node; past it a request is answered as in async mode (201) with the header
//! `Triggerd-Sync: skipped-too-many-waiting`, and the run still starts.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use serde_json::{Value, json};
use tokio::sync::watch;
use triggerd_domain::run::RunStatus;
use triggerd_storage::{RunRow, RunWatch, Store};

use crate::{Body, json_response};

/// The header of a sync request answered asynchronously because too many requests wait.
pub const SKIPPED_HEADER: &str = "triggerd-sync";

/// Its value.
pub const SKIPPED_VALUE: &str = "skipped-too-many-waiting";

/// The requests waiting for their runs on this node.
#[derive(Debug)]
pub struct SyncWaits {
    max: usize,
    waiting: AtomicUsize,
    stopping: watch::Sender<bool>,
}

/// A waiting request's place; dropping it frees the place.
#[derive(Debug)]
pub struct WaitSlot {
    waits: Arc<SyncWaits>,
}

impl Drop for WaitSlot {
    fn drop(&mut self) {
        self.waits.waiting.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!("triggerd_sync_waiting").decrement(1.0);
    }
}

impl SyncWaits {
    /// At most `max` requests waiting at once.
    pub fn new(max: usize) -> Arc<SyncWaits> {
        Arc::new(SyncWaits {
            max,
            waiting: AtomicUsize::new(0),
            stopping: watch::channel(false).0,
        })
    }

    /// A place to wait, or `None` when `max` requests wait already.
    pub fn enter(self: &Arc<Self>) -> Option<WaitSlot> {
        let entered = self
            .waiting
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok();
        if !entered {
            return None;
        }
        metrics::gauge!("triggerd_sync_waiting").increment(1.0);
        Some(WaitSlot {
            waits: self.clone(),
        })
    }

    /// Answers every waiting request (202) now and every later one without waiting: the server
    /// is shutting down.
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }

    /// How many requests wait now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }
}

/// How a sync request ended, for `triggerd_sync_responses_total{result}` and its log row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncResult {
    /// 200.
    Completed,
    /// 400.
    Failed,
    /// 202: the timeout passed.
    Timeout,
    /// 202: the server is shutting down.
    Shutdown,
}

impl SyncResult {
    fn as_str(self) -> &'static str {
        match self {
            SyncResult::Completed => "completed",
            SyncResult::Failed => "failed",
            SyncResult::Timeout => "timeout",
            SyncResult::Shutdown => "shutdown",
        }
    }
}

/// Waits (at most `timeout`) until run `run_id` — stored before this call, watched through
/// `watch` since before it was stored — is final, and answers for it.
pub async fn wait_for_run(
    store: &Store,
    waits: &SyncWaits,
    watch: RunWatch,
    run_id: &str,
    timeout: Duration,
) -> (Response<Body>, SyncResult) {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut stopping = waits.stopping.subscribe();
    let mut last: Option<RunRow> = None;
    let result = loop {
        if *stopping.borrow_and_update() {
            break SyncResult::Shutdown;
        }
        tokio::select! {
            () = watch.changed() => {}
            () = tokio::time::sleep_until(deadline) => break SyncResult::Timeout,
            _ = stopping.changed() => break SyncResult::Shutdown,
        }
        // A wake-up is a hint: read the run, and wait again unless it is final.
        match store.get_run(run_id).await {
            Ok(Some(run)) if is_final(&run.status) => {
                return finished(&run);
            }
            Ok(run) => last = run,
            Err(e) => {
                tracing::warn!(%run_id, error = %e, "sync webhook: cannot read the run; waiting on");
            }
        }
    };
    // One last read: a run that finished just now is answered with its outcome.
    if let Ok(Some(run)) = store.get_run(run_id).await {
        if is_final(&run.status) {
            return finished(&run);
        }
        last = Some(run);
    }
    let status = last.map_or_else(|| RunStatus::Pending.as_str().to_owned(), |r| r.status);
    (still_going(run_id, &status), result)
}

fn is_final(status: &str) -> bool {
    status
        .parse::<RunStatus>()
        .is_ok_and(RunStatus::is_terminal)
}

/// The answer for a finished run.
pub fn finished(run: &RunRow) -> (Response<Body>, SyncResult) {
    match run.status.as_str() {
        "completed" => (
            completed(run.final_output.as_deref()),
            SyncResult::Completed,
        ),
        "cancelled" => (
            json_response(
                StatusCode::BAD_REQUEST,
                &json!({"error": "the run was cancelled", "code": "run_cancelled", "run_id": run.id}),
            ),
            SyncResult::Failed,
        ),
        _ => {
            let error: Value = run
                .error
                .as_deref()
                .and_then(|e| serde_json::from_str(e).ok())
                .unwrap_or(Value::Null);
            let code = error["code"].as_str().unwrap_or("run_failed");
            let message = error["message"].as_str().unwrap_or("the run failed");
            (
                json_response(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": message, "code": code, "run_id": run.id}),
                ),
                SyncResult::Failed,
            )
        }
    }
}

/// 200 with the run's `final_output` (JSON text as stored; `null` when it has none).
pub fn completed(final_output: Option<&str>) -> Response<Body> {
    let bytes = Bytes::copy_from_slice(final_output.unwrap_or("null").as_bytes());
    let mut response = Response::new(Full::new(bytes));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// 202 with the run's id and status and where to follow it.
fn still_going(run_id: &str, status: &str) -> Response<Body> {
    let mut response = json_response(
        StatusCode::ACCEPTED,
        &json!({"run_id": run_id, "status": status}),
    );
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/runs/{run_id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// Counts a sync answer.
pub fn count(result: SyncResult) {
    metrics::counter!("triggerd_sync_responses_total", "result" => result.as_str()).increment(1);
}

/// Counts a sync request answered as async because too many requests wait.
pub fn count_skipped() {
    metrics::counter!("triggerd_sync_responses_total", "result" => "skipped").increment(1);
}
