//! Runs parked by a `wait_for_webhook` or `approval` step, and what un-parks them: a POST to the
//! resume URL, a reviewer's decision, or the wait's expiry (handled by the run worker).
//!
//! A parked run costs a row — no task, no memory. Its wait token (in its URLs) is
//! `<run id>.<random>`: the run is found by its id, and the random part, 256 bits, is compared in
//! constant time with the one stored in `waiting_payload`. Resuming and deciding are ONE
//! transaction that locks the run, so two POSTs at once give one 200 and one 409.
//!
//! A resumed wait's execution entry becomes `resumed` with the posted output; the worker that
//! claims the run next applies the step's `extract`s, marks it `completed` and goes on — so what
//! happens after a step is written once, in the executor.

use serde_json::{Value, json};
use triggerd_domain::ids::{constant_time_eq, new_secret_token};
use triggerd_domain::run::{
    EventType, RunError, RunStatus, StepStatus, rfc3339, transition_events,
};
use triggerd_storage::{RunRow, RunUpdate, StoreError};

use crate::runs::status_of;
use crate::{App, AppError};

/// What a parked run waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitKind {
    /// `wait_for_webhook`: a POST to the resume URL.
    Webhook,
    /// `approval`: a reviewer's decision.
    Approval,
}

impl WaitKind {
    /// `waiting_reason` of the run.
    pub const fn reason(self) -> &'static str {
        match self {
            WaitKind::Webhook => "webhook",
            WaitKind::Approval => "approval",
        }
    }
}

/// A reviewer's decision on an approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Go on: the step's output is `{approved: true, comment}`.
    Approve,
    /// Stop: the run fails with code `rejected`.
    Reject,
}

/// A new wait token for `run_id`: `<run id>.<43 characters of 256 random bits>`.
pub fn new_wait_token(run_id: &str) -> Result<String, AppError> {
    let secret = new_secret_token("")
        .map_err(|e| AppError::internal(format!("no randomness for a wait token: {e}")))?;
    Ok(format!("{run_id}.{secret}"))
}

/// The `waiting_payload` of a step parked with `token` (public URLs under `public_url`).
pub fn waiting_payload(kind: WaitKind, public_url: &str, token: &str) -> Value {
    match kind {
        WaitKind::Webhook => json!({
            "resume_url": format!("{public_url}/api/resume/{token}"),
        }),
        WaitKind::Approval => json!({
            "review_url": format!("{public_url}/api/approvals/{token}"),
            "approve_url": format!("{public_url}/api/approvals/{token}/approve"),
            "reject_url": format!("{public_url}/api/approvals/{token}/reject"),
        }),
    }
}

/// The run id part of a wait token, if it has the token's shape.
fn run_id_of(token: &str) -> Option<&str> {
    let (run_id, secret) = token.split_once('.')?;
    (run_id.starts_with("run_") && secret.len() >= 43).then_some(run_id)
}

/// Whether `token` is the one stored in the run's `waiting_payload` (constant time).
fn token_matches(row: &RunRow, token: &str) -> bool {
    let stored = row
        .waiting_payload
        .as_deref()
        .and_then(|p| serde_json::from_str::<Value>(p).ok())
        .and_then(|p| {
            ["resume_url", "review_url"]
                .iter()
                .find_map(|k| p.get(*k).and_then(Value::as_str).map(str::to_owned))
        })
        .and_then(|url| url.rsplit('/').next().map(str::to_owned));
    stored.is_some_and(|s| constant_time_eq(s.as_bytes(), token.as_bytes()))
}

/// A waiting run found by its token, or why not: `NotFound` for an unknown token or a run that
/// is not (or no longer) waiting on it with `kind` — a decided or resumed wait answers
/// `Conflict`.
fn check(row: Option<RunRow>, token: &str, kind: WaitKind, now: i64) -> Result<RunRow, AppError> {
    let not_found = || AppError::not_found("wait token");
    let row = row.ok_or_else(not_found)?;
    let status = status_of(&row)?;
    if status != RunStatus::Waiting || row.waiting_reason.as_deref() != Some(kind.reason()) {
        // The token may be one this run had: answer 409 when it did, 404 otherwise (the URLs
        // of a run's earlier waits are in its step executions).
        let was_used = serde_json::from_str::<Value>(&row.step_executions)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .is_some_and(|execs| {
                execs.iter().any(|e| {
                    e["wait_token"]
                        .as_str()
                        .is_some_and(|t| constant_time_eq(t.as_bytes(), token.as_bytes()))
                })
            });
        return Err(if was_used {
            AppError::conflict(format!(
                "run {} is no longer waiting on this URL ({status})",
                row.id
            ))
        } else {
            not_found()
        });
    }
    if !token_matches(&row, token) {
        return Err(not_found());
    }
    if row.waiting_expires_at.is_some_and(|t| t <= now) {
        return Err(AppError::conflict(format!(
            "the wait of run {} has expired",
            row.id
        )));
    }
    Ok(row)
}

/// The last execution entry of a parked run, updated by `f`, as the new array.
fn with_last_entry(row: &RunRow, f: impl FnOnce(&mut Value)) -> String {
    let mut execs: Vec<Value> = match serde_json::from_str(&row.step_executions) {
        Ok(Value::Array(a)) => a,
        _ => Vec::new(),
    };
    if let Some(last) = execs.last_mut() {
        f(last);
    }
    Value::Array(execs).to_string()
}

impl App {
    /// A waiting run by its wait token (for the approval page). `NotFound`/`Conflict` as for
    /// [`App::resume`].
    pub async fn waiting_run(&self, token: &str, kind: WaitKind) -> Result<RunRow, AppError> {
        let run_id = run_id_of(token).ok_or_else(|| AppError::not_found("wait token"))?;
        let row = self.store().get_run(run_id).await?;
        check(row, token, kind, self.now())
    }

    /// Resumes a run parked by a `wait_for_webhook` step with `output` as the step's output.
    /// `NotFound` for an unknown token; `Conflict` when it was resumed already, or expired.
    pub async fn resume(&self, token: &str, output: Value) -> Result<String, AppError> {
        self.unpark(token, WaitKind::Webhook, Ok(output)).await
    }

    /// Records a reviewer's decision on an approval: approve resumes the run with output
    /// `{approved: true, comment}`, reject fails it with code `rejected`. `NotFound` for an
    /// unknown token; `Conflict` when it was decided already, or expired.
    pub async fn decide(
        &self,
        token: &str,
        decision: Decision,
        comment: Option<String>,
    ) -> Result<String, AppError> {
        let outcome = match decision {
            Decision::Approve => Ok(json!({"approved": true, "comment": comment})),
            Decision::Reject => Err(comment),
        };
        self.unpark(token, WaitKind::Approval, outcome).await
    }

    async fn unpark(
        &self,
        token: &str,
        kind: WaitKind,
        outcome: Result<Value, Option<String>>,
    ) -> Result<String, AppError> {
        let run_id = run_id_of(token)
            .ok_or_else(|| AppError::not_found("wait token"))?
            .to_owned();
        let (token, now) = (token.to_owned(), self.now());
        let result = self
            .store()
            .transaction(move |tx| {
                let row = match check(tx.lock_run(&run_id)?, &token, kind, now) {
                    Ok(row) => row,
                    Err(e) => return Ok(Err(e)),
                };
                let step_id = serde_json::from_str::<Value>(&row.step_executions)
                    .ok()
                    .and_then(|v| {
                        v.as_array()?
                            .last()?
                            .get("step_id")?
                            .as_str()
                            .map(str::to_owned)
                    })
                    .unwrap_or_default();
                let mut update = RunUpdate {
                    id: row.id.clone(),
                    waiting_reason: Some(None),
                    waiting_payload: Some(None),
                    waiting_expires_at: Some(None),
                    release_lease: true,
                    ..RunUpdate::default()
                };
                let to = match &outcome {
                    Ok(output) => {
                        update.step_executions = Some(with_last_entry(&row, |e| {
                            e["status"] = json!(StepStatus::Resumed);
                            e["output"] = output.clone();
                        }));
                        RunStatus::Running
                    }
                    Err(comment) => {
                        let error = RunError::rejected(&step_id, comment.as_deref());
                        update.step_executions = Some(with_last_entry(&row, |e| {
                            e["status"] = json!(StepStatus::Failed);
                            e["finished_at"] = json!(rfc3339(now));
                            e["output"] = json!({"approved": false, "comment": comment});
                            e["error"] = json!(error);
                        }));
                        update.error = Some(json!(error).to_string());
                        update.finished_at = Some(now);
                        RunStatus::Failed
                    }
                };
                let events: Vec<EventType> = match transition_events(RunStatus::Waiting, &[to]) {
                    Ok(e) => e,
                    Err(e) => return Ok(Err(e.into())),
                };
                update.status = Some(to.as_str().to_owned());
                update.events = crate::runs::outbox(&events, now);
                tx.force_update_run(update)?;
                if to == RunStatus::Running {
                    tx.wake_workers();
                }
                let rejected = outcome
                    .as_ref()
                    .err()
                    .map(|comment| RunError::rejected(&step_id, comment.as_deref()));
                Ok(Ok((row.id, row.workflow, events, rejected)))
            })
            .await
            .map_err(|e| match e {
                StoreError::NotFound { .. } => AppError::not_found("wait token"),
                other => other.into(),
            })?;
        let (run_id, workflow, events, rejected) = result?;
        crate::runs::log_events(&run_id, &events);
        if let Some(error) = &rejected {
            crate::runs::log_failed(&run_id, &workflow, error);
        }
        tracing::info!(%run_id, reason = kind.reason(), "waiting run un-parked");
        Ok(run_id)
    }
}
