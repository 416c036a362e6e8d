//! Request inspection and replay (docs/webhooks.md): `GET /triggers/{id}/requests/{request_id}` shows
//! what a logged request carried, and `POST .../replay` sends it through the trigger again.
//!
//! A request that started no run (refused, filtered, duplicate) keeps its path, redacted headers
//! and query, and its body up to the trigger's `log_body_bytes` in its activity row (see
//! `webhook::keep_request`). An accepted request keeps nothing more: its run's `trigger_input`
//! holds the request as mapping saw it, and is what inspection shows and replay reads.
//!
//! A replay goes through the trigger's **current** filter, input mapping, validation and
//! de-duplication — not its signature or API keys (the request was checked when it arrived, or
//! the row says it was refused for them), nor its rate limit. It is answered like an `async`
//! webhook, whatever the trigger's response mode, and logged as a new activity row whose
//! `replay_of` names the original.

use std::time::Instant;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use serde_json::{Map, Value, json};
use triggerd_app::AppError;
use triggerd_app::triggers::WebhookTrigger;
use triggerd_domain::activity::Outcome;
use triggerd_domain::ids::{IdKind, is_valid_id, new_id};
use triggerd_domain::mapping::trigger_input;
use triggerd_domain::run::RunStatus;
use triggerd_storage::{ActivityDetail, IngestWrite, Ingested, NewActivity};

use crate::api::Call;
use crate::webhook::{Passed, Refusal, dedup_claim, evaluate, parse, run_start};
use crate::{ApiError, AppState, Body, error_response, json_response};

/// A trigger's activity row `request_id`, or 404.
pub(crate) async fn detail(
    state: &AppState,
    trigger_id: &str,
    request_id: &str,
) -> Result<ActivityDetail, ApiError> {
    let not_found = || {
        ApiError::not_found(format!(
            "request {request_id} not found in the activity log of trigger {trigger_id} (it may have been trimmed: TRIGGERD_ACTIVITY_RETENTION keeps the newest rows)"
        ))
    };
    if !is_valid_id(IdKind::Request, request_id) {
        return Err(not_found());
    }
    state
        .store()
        .get_activity(trigger_id, request_id)
        .await?
        .ok_or_else(not_found)
}

/// What a logged request carried, as `GET /triggers/{id}/requests/{request_id}` shows it:
/// `{method, path, headers, query, body, body_encoding, body_truncated}`, or `None` when nothing
/// was kept.
pub(crate) async fn request_view(
    state: &AppState,
    detail: &ActivityDetail,
) -> Result<Option<Value>, ApiError> {
    match kept(state, detail).await? {
        Kept::Raw { request, body } => {
            let mut view = request;
            let (body, encoding) = match &body {
                None => (Value::Null, Value::Null),
                Some(bytes) => match std::str::from_utf8(bytes) {
                    Ok(text) => (json!(text), json!("utf8")),
                    Err(_) => (
                        json!(base64::engine::general_purpose::STANDARD.encode(bytes)),
                        json!("base64"),
                    ),
                },
            };
            view.insert("body".into(), body);
            view.insert("body_encoding".into(), encoding);
            view.insert("body_truncated".into(), json!(detail.body_truncated));
            Ok(Some(Value::Object(view)))
        }
        Kept::Run(trigger_input) => {
            let mut view = Map::new();
            for key in ["method", "path", "headers", "query", "body"] {
                view.insert(
                    key.into(),
                    trigger_input.get(key).cloned().unwrap_or(Value::Null),
                );
            }
            view.insert("body_encoding".into(), json!("json"));
            view.insert("body_truncated".into(), json!(false));
            Ok(Some(Value::Object(view)))
        }
        Kept::Nothing(_) => Ok(None),
    }
}

/// What is left of a logged request.
enum Kept {
    /// Kept in its row: `{method, path, headers, query}` and the raw body (up to the limit).
    Raw {
        request: Map<String, Value>,
        body: Option<Vec<u8>>,
    },
    /// Accepted: its run's `trigger_input`.
    Run(Value),
    /// Nothing: why.
    Nothing(String),
}

async fn kept(state: &AppState, detail: &ActivityDetail) -> Result<Kept, ApiError> {
    let row = &detail.row;
    if let Some(text) = &detail.request {
        let mut request = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => map,
            _ => return Err(ApiError::internal()),
        };
        request.insert("method".into(), json!(row.method));
        return Ok(Kept::Raw {
            request,
            body: detail.body.clone(),
        });
    }
    if row.outcome == Outcome::Accepted.as_str()
        && let Some(run_id) = &row.run_id
    {
        return match state.store().get_run(run_id).await? {
            Some(run) => Ok(Kept::Run(
                serde_json::from_str(&run.trigger_input).map_err(|_| ApiError::internal())?,
            )),
            None => Ok(Kept::Nothing(format!(
                "its run {run_id} was deleted (TRIGGERD_RUN_RETENTION_DAYS), and with it the request"
            ))),
        };
    }
    Ok(Kept::Nothing(
        "it was logged before this server kept requests (version without request inspection)"
            .to_owned(),
    ))
}

/// `POST /triggers/{id}/requests/{request_id}/replay`.
#[utoipa::path(
    post,
    path = "/api/v1/triggers/{id}/requests/{request_id}/replay",
    operation_id = "replay_trigger_request",
    tag = "triggers",
    summary = "Send a logged request through the trigger again",
    description = "Runs the request through the trigger's current filter, input mapping, validation and de-duplication (not its signature, API keys or rate limit; a request refused for its signature or API key is replayed only with `{\"allow_unauthenticated\": true}`) and answers as an `async` webhook would: 201 with the new run, 200 `{ignored}` or `{duplicate}`, or the refusal (422 `invalid_input` with details, 400 for a body that does not parse). The attempt is logged as a new activity row whose `replay_of` names the original; its id is this call's `X-Request-Id`. 409 when the request cannot be replayed: its body was not kept in full (over `log_body_bytes`, or a rate-limited or oversized request), its run was deleted, or the trigger is disabled.",
    params(
        ("id" = String, Path, description = "The trigger id (`trg_...`)"),
        ("request_id" = String, Path, description = "The logged request (`req_...`)"),
    ),
    request_body(content = Option<Object>, description = "Empty, or `{\"allow_unauthenticated\": true}` to replay a request refused as `bad_signature` or `unauthorized`"),
    responses(
        (status = 201, description = "A run was started", body = crate::api::views::ReplayStarted),
        (status = 200, description = "Ignored by the filter (`ignored: true`) or a duplicate (`duplicate: true`, the original `run_id`)", body = crate::api::views::ReplayStarted),
        (status = 400, description = "The stored body does not parse, or not a webhook trigger", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such trigger or request", body = crate::openapi::ErrorBody),
        (status = 409, description = "The request cannot be replayed (body not kept, run deleted, trigger disabled, or refused for its signature or API key without `allow_unauthenticated`)", body = crate::openapi::ErrorBody),
        (status = 422, description = "Refused by the trigger's current mapping (`invalid_input`)", body = crate::openapi::ErrorBody),
    )
)]
pub(crate) async fn replay(state: &AppState, call: Call) -> Result<Response<Body>, ApiError> {
    let started = Instant::now();
    let received_at = state.app.now();
    let row = crate::api::triggers::find(state, &call.param).await?;
    let not_webhook = || ApiError::bad_request("only webhook requests can be replayed");
    let token = row.token.clone().ok_or_else(not_webhook)?;
    let target = state
        .app
        .resolve_webhook(&token)
        .await?
        .ok_or_else(not_webhook)?;
    if !target.enabled {
        return Err(ApiError::conflict(format!(
            "trigger {} is disabled: enable it to replay requests",
            row.id
        )));
    }
    let allow_unauthenticated = allow_unauthenticated(call.body.as_ref())?;
    let original = detail(state, &row.id, &call.param2).await?;
    let outcome = original.row.outcome.as_str();
    if !allow_unauthenticated
        && [
            Outcome::BadSignature.as_str(),
            Outcome::Unauthorized.as_str(),
        ]
        .contains(&outcome)
    {
        return Err(ApiError::conflict(format!(
            "request {} was refused as {outcome}: nothing proves it came from the sender. Replay it anyway with {{\"allow_unauthenticated\": true}}",
            original.row.id
        )));
    }
    let kept = kept(state, &original).await?;
    let replay_of = original.row.id.clone();
    let mut activity = NewActivity {
        id: call.request_id.clone(),
        received_at,
        method: original.row.method.clone(),
        status_code: 0,
        outcome: String::new(),
        run_id: None,
        error: None,
        body_bytes: original.row.body_bytes,
        duration_ms: 0,
        remote_addr: Some(call.remote.ip().to_string()),
        request: None,
        body: None,
        body_truncated: false,
        details: None,
        replay_of: Some(replay_of.clone()),
    };
    // Held until the replayed run is written (a large stored body, as a live one would be).
    let mut charge = triggerd_app::memory::Charge::none();
    let trigger_input = match kept {
        Kept::Nothing(why) => {
            return Err(ApiError::conflict(format!(
                "request {replay_of} cannot be replayed: {why}"
            )));
        }
        Kept::Raw { request, body } => {
            if original.row.body_bytes > 0 && (body.is_none() || original.body_truncated) {
                return Err(ApiError::conflict(format!(
                    "request {replay_of} cannot be replayed: its body ({} bytes) was not kept in full (the trigger keeps log_body_bytes = {} bytes of a body; rate-limited and oversized requests keep none)",
                    original.row.body_bytes, target.config.log_body_bytes
                )));
            }
            activity.request = original.request.clone();
            activity.body = body.clone();
            let body = Bytes::from(body.unwrap_or_default());
            let headers = headers_of(&request);
            charge = match crate::webhook::charge_processing(state, &headers, &body).await {
                Ok(charge) => charge,
                Err(refusal) => {
                    return refused(state, &target, activity, refusal, started).await;
                }
            };
            let parsed = match parse(&headers, &body).await {
                Ok(parsed) => parsed,
                Err(refusal) => {
                    return refused(state, &target, activity, refusal, started).await;
                }
            };
            trigger_input(
                &original.row.method,
                request.get("path").and_then(Value::as_str).unwrap_or(""),
                request.get("query").cloned().unwrap_or_else(|| json!({})),
                request.get("headers").cloned().unwrap_or_else(|| json!({})),
                parsed,
            )
        }
        Kept::Run(trigger_input) => {
            let mut request = Map::new();
            for key in ["path", "headers", "query"] {
                request.insert(
                    key.into(),
                    trigger_input.get(key).cloned().unwrap_or(Value::Null),
                );
            }
            activity.request = Some(Value::Object(request).to_string());
            trigger_input
        }
    };
    let accepted = match evaluate(&target.config, &target.definition, trigger_input) {
        Ok(Passed::Accepted(accepted)) => accepted,
        Ok(Passed::Filtered) => {
            metrics::counter!("triggerd_webhook_replays_total", "outcome" => Outcome::Filtered.as_str())
                .increment(1);
            activity.status_code = 200;
            activity.outcome = Outcome::Filtered.as_str().to_owned();
            activity.duration_ms = started.elapsed().as_millis() as i64;
            log(state, &target, activity).await?;
            return Ok(json_response(
                StatusCode::OK,
                &json!({"ignored": true, "request_id": call.request_id, "replay_of": replay_of}),
            ));
        }
        Err(refusal) => return refused(state, &target, activity, refusal, started).await,
    };
    let run_id = new_id(IdKind::Run);
    let dedup = dedup_claim(&target.config, &accepted.trigger_input, received_at);
    let mut prepared = state.app.prepare_run(
        run_start(&target, &run_id, accepted, received_at),
        &target.definition,
    );
    activity.status_code = 201;
    activity.outcome = Outcome::Accepted.as_str().to_owned();
    activity.run_id = Some(run_id.clone());
    activity.duration_ms = started.elapsed().as_millis() as i64;
    let write = IngestWrite {
        token,
        trigger_id: target.trigger_id.clone(),
        now: received_at,
        run: Some(prepared.row),
        activity,
        events: std::mem::take(&mut prepared.outbox),
        awaited: false,
        dedup,
    };
    let written = state.app.ingest(write).await;
    drop(charge);
    match written {
        Ok(Ingested::Written) => {
            metrics::counter!("triggerd_webhook_replays_total", "outcome" => Outcome::Accepted.as_str())
                .increment(1);
            tracing::info!(trigger_id = %target.trigger_id, request_id = %call.request_id, %replay_of, %run_id, "webhook request replayed: run started");
            Ok(json_response(
                StatusCode::CREATED,
                &json!({"run_id": run_id, "status": RunStatus::Pending.as_str(),
                        "request_id": call.request_id, "replay_of": replay_of}),
            ))
        }
        Ok(Ingested::Duplicate(original)) => {
            metrics::counter!("triggerd_webhook_replays_total", "outcome" => Outcome::Duplicate.as_str())
                .increment(1);
            Ok(json_response(
                StatusCode::OK,
                &json!({"run_id": original, "duplicate": true,
                        "request_id": call.request_id, "replay_of": replay_of}),
            ))
        }
        Err(AppError::TokenGone) => Err(ApiError::conflict(format!(
            "trigger {} was rotated, disabled or removed during the replay: try again",
            target.trigger_id
        ))),
        Err(e) => Err(e.into()),
    }
}

/// The replay call's body: empty, or `{"allow_unauthenticated": bool}`.
fn allow_unauthenticated(body: Option<&Value>) -> Result<bool, ApiError> {
    let map = match body {
        None | Some(Value::Null) => return Ok(false),
        Some(Value::Object(map)) => map,
        Some(_) => {
            return Err(ApiError::bad_request(
                "the body must be empty or {\"allow_unauthenticated\": true}",
            ));
        }
    };
    if let Some(key) = map.keys().find(|k| *k != "allow_unauthenticated") {
        return Err(ApiError::bad_request(format!(
            "unknown field \"{key}\": a replay takes only allow_unauthenticated"
        )));
    }
    match map.get("allow_unauthenticated") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ApiError::bad_request(
            "allow_unauthenticated must be true or false",
        )),
    }
}

/// Logs a replay the trigger refuses and answers with the refusal.
async fn refused(
    state: &AppState,
    target: &WebhookTrigger,
    mut activity: NewActivity,
    refusal: Refusal,
    started: Instant,
) -> Result<Response<Body>, ApiError> {
    metrics::counter!("triggerd_webhook_replays_total", "outcome" => refusal.outcome.as_str())
        .increment(1);
    activity.status_code = i32::from(refusal.error.status.as_u16());
    activity.outcome = refusal.outcome.as_str().to_owned();
    activity.error = Some(refusal.error.message.clone());
    activity.details = refusal.error.details.as_ref().map(Value::to_string);
    activity.duration_ms = started.elapsed().as_millis() as i64;
    log(state, target, activity).await?;
    Ok(error_response(&refusal.error))
}

/// Writes the activity row of a replay that starts no run. Unlike a webhook's, a failed write
/// fails the call (503): the caller asked for this row.
async fn log(
    state: &AppState,
    target: &WebhookTrigger,
    activity: NewActivity,
) -> Result<(), ApiError> {
    state
        .app
        .ingest(IngestWrite::log_only(target.trigger_id.clone(), activity))
        .await?;
    Ok(())
}

/// The stored (lower-cased, redacted) headers as a header map, for parsing the body: its
/// `content-type` decides how. Values that are not valid header text are left out.
fn headers_of(request: &Map<String, Value>) -> HeaderMap {
    let mut map = HeaderMap::new();
    if let Some(Value::Object(headers)) = request.get("headers") {
        for (name, value) in headers {
            if let (Ok(name), Some(Ok(value))) = (
                HeaderName::from_bytes(name.as_bytes()),
                value.as_str().map(HeaderValue::from_str),
            ) {
                map.append(name, value);
            }
        }
    }
    map
}
