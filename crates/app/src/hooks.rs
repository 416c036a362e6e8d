//! Event hooks (SPEC 7): creating, listing, removing them and their secrets; the deliveries'
//! log and manual retry; the body of an event. The deliveries themselves are written by each
//! run state change's own transaction (`OutboxEvent`s of [`crate::runs::outbox`]) and sent by the
//! delivery worker of `triggerd-delivery`.

use serde_json::{Map, Value, json};
use triggerd_domain::Problem;
use triggerd_domain::ids::{IdKind, new_hook_secret, new_id};
use triggerd_domain::run::{EventType, RunStatus, rfc3339};
use triggerd_storage::{DeliveryRow, HookRow, RunRow};

use crate::{App, AppError};

/// Where a hook listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookScope {
    /// Every run of every deployment of a workflow.
    Workflow(String),
    /// Every run of a deployment.
    Deployment(String),
    /// One run (`hooks` of `POST /runs`).
    Run(String),
}

/// A hook to create.
#[derive(Debug, Clone)]
pub struct NewHook {
    /// Where it listens.
    pub scope: HookScope,
    /// An absolute `http://` or `https://` URL.
    pub url: String,
    /// The event types it receives.
    pub events: Vec<EventType>,
    /// `whsec_...`; generated when `None`.
    pub secret: Option<String>,
}

/// Parses a hook request body's `url`, `events` and `secret` (problems at `prefix` + field, e.g.
/// `hooks[0].url`).
pub fn parse_hook_fields(
    body: &Map<String, Value>,
    prefix: &str,
) -> Result<(String, Vec<EventType>, Option<String>), Vec<Problem>> {
    let mut problems = Vec::new();
    let url = match body.get("url") {
        Some(Value::String(u)) if valid_url(u) => u.clone(),
        Some(other) => {
            problems.push(Problem::new(
                format!("{prefix}url"),
                format!("must be an absolute http:// or https:// URL, got {other}"),
            ));
            String::new()
        }
        None => {
            problems.push(Problem::new(format!("{prefix}url"), "is required"));
            String::new()
        }
    };
    let mut events = Vec::new();
    match body.get("events") {
        Some(Value::Array(items)) if !items.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                match EventType::ALL
                    .into_iter()
                    .find(|e| item.as_str() == Some(e.as_str()))
                {
                    Some(e) if !events.contains(&e) => events.push(e),
                    Some(_) => {}
                    None => problems.push(Problem::new(
                        format!("{prefix}events[{i}]"),
                        format!(
                            "unknown event {item}: expected one of {}",
                            EventType::ALL.map(EventType::as_str).join(", ")
                        ),
                    )),
                }
            }
        }
        _ => problems.push(Problem::new(
            format!("{prefix}events"),
            "must be a non-empty array of event types such as [\"run.completed\", \"run.failed\"]",
        )),
    }
    let secret = match body.get("secret") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if valid_secret(s) => Some(s.clone()),
        Some(_) => {
            problems.push(Problem::new(
                format!("{prefix}secret"),
                "must be whsec_ followed by the base64 of at least 24 bytes (or leave it out: one is generated)",
            ));
            None
        }
    };
    if problems.is_empty() {
        Ok((url, events, secret))
    } else {
        Err(problems)
    }
}

fn valid_url(u: &str) -> bool {
    let rest = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"));
    rest.is_some_and(|r| {
        let host = r.split(['/', '?', '#']).next().unwrap_or("");
        !host.is_empty() && !r.contains(char::is_whitespace)
    })
}

fn valid_secret(s: &str) -> bool {
    use base64::Engine as _;
    s.strip_prefix("whsec_").is_some_and(|b| {
        base64::engine::general_purpose::STANDARD
            .decode(b)
            .is_ok_and(|k| k.len() >= 24)
    })
}

/// A run-scoped hook row for `run_id` (`hooks` of `POST /runs`), its secret generated when not
/// given; stored by [`App::start_run_with_hooks`] in the run's own transaction.
pub fn run_hook(
    run_id: &str,
    url: String,
    events: &[EventType],
    secret: Option<String>,
    now: i64,
) -> Result<HookRow, AppError> {
    let secret = match secret {
        Some(s) => s,
        None => new_hook_secret()
            .map_err(|e| AppError::internal(format!("no randomness for a secret: {e}")))?,
    };
    Ok(HookRow {
        id: new_id(IdKind::Hook),
        scope: "run".to_owned(),
        workflow: None,
        deployment_id: None,
        run_id: Some(run_id.to_owned()),
        url,
        events: events_json(events),
        secret,
        origin: "run".to_owned(),
        created_at: now,
    })
}

impl App {
    /// Creates a hook. `NotFound` for an unknown workflow, deployment or run.
    pub async fn create_hook(&self, new: NewHook) -> Result<HookRow, AppError> {
        let (scope, workflow, deployment_id, run_id) = match &new.scope {
            HookScope::Workflow(w) => {
                if self.store().get_workflow(w).await?.is_none() {
                    return Err(AppError::not_found(format!("workflow {w}")));
                }
                ("workflow", Some(w.clone()), None, None)
            }
            HookScope::Deployment(d) => {
                self.deployment(d).await?;
                ("deployment", None, Some(d.clone()), None)
            }
            HookScope::Run(r) => ("run", None, None, Some(r.clone())),
        };
        let secret = match new.secret {
            Some(s) => s,
            None => new_hook_secret()
                .map_err(|e| AppError::internal(format!("no randomness for a secret: {e}")))?,
        };
        let row = HookRow {
            id: new_id(IdKind::Hook),
            scope: scope.to_owned(),
            workflow,
            deployment_id,
            run_id,
            url: new.url,
            events: events_json(&new.events),
            secret,
            origin: if scope == "run" { "run" } else { "api" }.to_owned(),
            created_at: self.now(),
        };
        let stored = row.clone();
        self.store()
            .transaction(move |tx| tx.create_hook(&stored))
            .await?;
        self.set_hooks_may_exist(true);
        tracing::info!(hook_id = %row.id, scope, "hook created");
        Ok(row)
    }

    /// Removes a hook; its pending deliveries are given up.
    pub async fn delete_hook(&self, id: &str) -> Result<(), AppError> {
        self.store().delete_hook(id, self.now()).await?;
        tracing::info!(hook_id = %id, "hook removed");
        Ok(())
    }

    /// A new generated secret for a hook; deliveries sent from now on are signed with it.
    pub async fn rotate_hook_secret(&self, id: &str) -> Result<HookRow, AppError> {
        let secret = new_hook_secret()
            .map_err(|e| AppError::internal(format!("no randomness for a secret: {e}")))?;
        let row = self.store().set_hook_secret(id, &secret).await?;
        tracing::info!(hook_id = %id, "hook secret rotated");
        Ok(row)
    }

    /// Sends a delivery again now (whatever its status), with the same `webhook-id`.
    pub async fn retry_delivery(&self, id: &str) -> Result<DeliveryRow, AppError> {
        let row = self.store().retry_delivery(id, self.now()).await?;
        tracing::info!(delivery_id = %id, "delivery retried by hand");
        Ok(row)
    }
}

/// `["run.completed","run.failed"]` as stored.
fn events_json(events: &[EventType]) -> String {
    Value::Array(events.iter().map(|e| json!(e.as_str())).collect()).to_string()
}

/// The status a run has when it emits `event_type`.
fn status_at(event_type: &str) -> &'static str {
    match event_type {
        "run.started" => RunStatus::Running.as_str(),
        "run.completed" => RunStatus::Completed.as_str(),
        "run.failed" => RunStatus::Failed.as_str(),
        "run.waiting" => RunStatus::Waiting.as_str(),
        _ => RunStatus::Cancelled.as_str(),
    }
}

/// The body of a delivery (SPEC 7): `{id, type, timestamp, data: {run_id, status, deployment_id,
/// workflow, trigger_id, input, final_output, error, created_at, started_at, finished_at}}`,
/// rendered from the run as the event left it: a run's input, creation and start never change
/// once set, and its result fields are set only by the final event — so they are `null` in the
/// data of the events before it, whenever the body is rendered.
pub fn event_body(delivery: &DeliveryRow, run: &RunRow) -> Value {
    let terminal = matches!(
        delivery.event_type.as_str(),
        "run.completed" | "run.failed" | "run.cancelled"
    );
    let parse = |text: Option<&str>| {
        text.and_then(|t| serde_json::from_str::<Value>(t).ok())
            .unwrap_or(Value::Null)
    };
    let time = |t: Option<i64>| t.map_or(Value::Null, |t| Value::String(rfc3339(t)));
    json!({
        "id": delivery.event_id,
        "type": delivery.event_type,
        "timestamp": rfc3339(delivery.occurred_at),
        "data": {
            "run_id": run.id,
            "status": status_at(&delivery.event_type),
            "deployment_id": run.deployment_id,
            "workflow": run.workflow,
            "trigger_id": run.trigger_id,
            "input": parse(Some(&run.input)),
            "final_output": if terminal { parse(run.final_output.as_deref()) } else { Value::Null },
            "error": if terminal { parse(run.error.as_deref()) } else { Value::Null },
            "created_at": rfc3339(run.created_at),
            "started_at": time(run.started_at),
            "finished_at": if terminal { time(run.finished_at) } else { Value::Null },
        }
    })
}
