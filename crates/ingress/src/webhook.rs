//! The webhook hot path: `/api/webhooks/{token}[/{rest}]` (docs/webhooks.md).
//!
//! Checks run in the documented order — token → method → size → rate limit → signature/API key →
//! parse → filter → mapping/validation → run — and each answer to a known token is recorded in
//! the trigger's activity log. The 201 is sent only after the store's group commit returns: from that
//! instant the run survives a crash. `triggerd-app` prepares the run (a run of a step-less
//! workflow is usually stored `completed` by that same write: `App::prepare_run`) and writes it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{Value, json};
use triggerd_app::AppError;
use triggerd_app::memory::{Charge, Refused};
use triggerd_app::runs::RunStart;
use triggerd_app::triggers::WebhookTrigger;
use triggerd_domain::activity::Outcome;
use triggerd_domain::ids::{IdKind, is_plausible_webhook_token, new_id};
use triggerd_domain::mapping::{
    MAX_JSON_DEPTH, headers_to_map, json_depth, query_to_map, trigger_input,
};
use triggerd_domain::run::{RunSource, RunStatus};
use triggerd_domain::trigger::{ResponseMode, WebhookConfig};
use triggerd_storage::{DedupClaim, IngestWrite, Ingested, NewActivity};

use crate::body::parse_body;
use crate::cache::CachedTrigger;
use crate::deadlines::read_body;
use crate::{ApiError, AppState, Body, error_response, json_response};

/// A request refused after the token was known: the error to answer and the activity outcome.
pub(crate) struct Refusal {
    pub(crate) error: ApiError,
    pub(crate) outcome: Outcome,
}

impl Refusal {
    fn new(error: ApiError, outcome: Outcome) -> Self {
        Refusal { error, outcome }
    }
}

/// What the checks produce for an accepted request.
pub(crate) struct Accepted {
    pub(crate) input: serde_json::Map<String, Value>,
    pub(crate) trigger_input: Value,
}

/// What the checks let through: a request to start a run, or one the trigger's filter ignores
/// (answered 200, no run, logged `filtered`).
pub(crate) enum Passed {
    Accepted(Accepted),
    Filtered,
}

/// What [`check`] read of a request, kept for its activity row when it starts no run (for
/// request inspection and replay).
struct Seen {
    parts: http::request::Parts,
    /// The body, when it was read whole.
    body: Option<Bytes>,
    /// Its size (declared, when it was refused unread for its size).
    size: u64,
    /// What processing a large body holds of the node's memory budget, until the run is
    /// written.
    charge: Charge,
}

/// Handles one webhook request.
pub async fn handle(
    state: &AppState,
    remote: SocketAddr,
    req: Request<Incoming>,
    request_id: &str,
) -> Response<Body> {
    let started = Instant::now();
    let received_at = state.app.now();
    let tail = req
        .uri()
        .path()
        .strip_prefix("/api/webhooks/")
        .unwrap_or("");
    let (token, rest) = match tail.split_once('/') {
        Some((token, rest)) => (token, rest),
        None => (tail, ""),
    };
    if !is_plausible_webhook_token(token) {
        return unknown_token(state);
    }
    let entry = match lookup(state, token).await {
        Ok(Some(entry)) => entry,
        Ok(None) => return unknown_token(state),
        Err(e) => return error_response(&e),
    };
    if entry
        .target
        .token_expires_at
        .is_some_and(|t| t <= received_at)
    {
        return unknown_token(state);
    }
    let token = token.to_owned();
    let rest = rest.to_owned();
    // `Method` clones without allocating for the standard methods: kept to log a failed write.
    let http_method = req.method().clone();
    let method = http_method.as_str().to_owned();

    let (result, mut seen) = check(state, &entry, req, &rest).await;
    let charge = std::mem::replace(&mut seen.charge, Charge::none());
    let body_bytes = seen.size;
    let duration_ms = started.elapsed().as_millis() as i64;
    let mut activity = NewActivity {
        id: request_id.to_owned(),
        received_at,
        method,
        status_code: 0,
        outcome: String::new(),
        run_id: None,
        error: None,
        body_bytes: body_bytes as i64,
        duration_ms,
        remote_addr: Some(remote.ip().to_string()),
        request: None,
        body: None,
        body_truncated: false,
        details: None,
        replay_of: None,
    };
    let config = &entry.target.config;
    // What a request that starts no run keeps in its row (and a duplicate's, see below).
    let keep = |activity: &mut NewActivity| {
        keep_request(activity, config, &seen.parts, &rest, seen.body.as_ref())
    };
    let accepted = match result {
        Ok(Passed::Accepted(accepted)) => accepted,
        Ok(Passed::Filtered) => {
            metrics::counter!("triggerd_webhook_requests_total", "outcome" => Outcome::Filtered.as_str())
                .increment(1);
            activity.status_code = 200;
            activity.outcome = Outcome::Filtered.as_str().to_owned();
            keep(&mut activity);
            tracing::debug!(trigger_id = %entry.target.trigger_id, %request_id, "webhook ignored by the trigger's filter");
            log_without_run(state, &entry, activity).await;
            return json_response(
                StatusCode::OK,
                &json!({"ignored": true, "request_id": request_id}),
            );
        }
        Err(refusal) => {
            metrics::counter!("triggerd_webhook_requests_total", "outcome" => refusal.outcome.as_str())
                .increment(1);
            log_refusal(&entry.target.trigger_id, request_id, &refusal);
            activity.status_code = i32::from(refusal.error.status.as_u16());
            activity.outcome = refusal.outcome.as_str().to_owned();
            activity.error = Some(refusal.error.message.clone());
            activity.details = refusal.error.details.as_ref().map(Value::to_string);
            keep(&mut activity);
            // Refusals are logged before answering so the log and the answer agree; a failed log
            // write does not change the answer.
            if !entry.target.enabled && state.config.hide_unknown_tokens {
                activity.status_code = 200;
            }
            log_without_run(state, &entry, activity).await;
            if !entry.target.enabled {
                return unknown_token(state);
            }
            return error_response(&refusal.error);
        }
    };

    let run_id = new_id(IdKind::Run);
    let target = &entry.target;
    let dedup = dedup_claim(&target.config, &accepted.trigger_input, received_at);
    if dedup.is_some() {
        // A duplicate's row keeps the request, like any request that starts no run: built only
        // for triggers that de-duplicate.
        keep(&mut activity);
    }
    drop(seen);
    let custom = match &target.config.response {
        ResponseMode::Custom {
            status,
            content_type,
            body,
        } => Some((
            status,
            content_type,
            body.render(&json!({"trigger": &accepted.trigger_input})),
        )),
        _ => None,
    };
    let mut prepared = state.app.prepare_run(
        run_start(target, &run_id, accepted, received_at),
        &target.definition,
    );
    // Sync mode: a run finished by the write itself is answered at once; otherwise the request
    // watches its run from before the write (no wake-up can come before the watch), holding one
    // of the node's waiting places.
    let mut sync_skipped = false;
    let (sync_now, waiting) = match &target.config.response {
        ResponseMode::Sync { .. } if prepared.status == RunStatus::Completed => (
            Some(crate::sync::completed(prepared.row.final_output.as_deref())),
            None,
        ),
        ResponseMode::Sync { timeout_seconds } => match state.sync_waits.enter() {
            Some(slot) => (
                None,
                Some((
                    slot,
                    state.store().watch_run(&run_id),
                    Duration::from_secs(u64::from(*timeout_seconds)),
                )),
            ),
            None => {
                sync_skipped = true;
                (None, None)
            }
        },
        _ => (None, None),
    };
    let status = match (&custom, &sync_now, &waiting) {
        (Some((_, _, Err(_))), _, _) => StatusCode::INTERNAL_SERVER_ERROR.as_u16(),
        (Some((status, _, _)), _, _) => **status,
        (_, Some(_), _) => 200,
        // The final code is recorded once the wait ends.
        (_, _, Some(_)) => 202,
        _ => 201,
    };
    activity.status_code = i32::from(status);
    activity.outcome = Outcome::Accepted.as_str().to_owned();
    activity.run_id = Some(run_id.clone());
    if let Some((_, _, Err(e))) = &custom {
        // The run was accepted and is stored with this row; the row records the 500 answered.
        activity.error = Some(template_failed(e));
    }
    let write = IngestWrite {
        token,
        trigger_id: target.trigger_id.clone(),
        now: received_at,
        run: Some(prepared.row),
        activity,
        events: std::mem::take(&mut prepared.outbox),
        awaited: waiting.is_some(),
        dedup,
    };
    // SAFETY (durability): the answer below is sent only after this commit returned.
    let written = state.app.ingest(write).await;
    // The run's texts are written (or dropped): a sync wait below holds none of it.
    drop(charge);
    match written {
        Ok(Ingested::Written) => {}
        Ok(Ingested::Duplicate(original)) => {
            // No run of its own: the waiting place (sync) is given back unused.
            drop(waiting);
            trim_activity(state, &entry);
            metrics::counter!("triggerd_webhook_requests_total", "outcome" => Outcome::Duplicate.as_str())
                .increment(1);
            tracing::debug!(trigger_id = %target.trigger_id, %request_id, run_id = %original, "duplicate webhook delivery: no new run");
            return json_response(
                StatusCode::OK,
                &json!({"run_id": original, "duplicate": true, "request_id": request_id}),
            );
        }
        Err(AppError::TokenGone) => return unknown_token(state),
        Err(e) => {
            let error = ApiError::from(e);
            // The run and its log row were not stored. Log the refusal in a write of its own,
            // off the answer's path and best effort: the store may be unable to take it either.
            let failed = NewActivity {
                id: request_id.to_owned(),
                received_at,
                method: http_method.as_str().to_owned(),
                status_code: i32::from(error.status.as_u16()),
                outcome: Outcome::Failed.as_str().to_owned(),
                run_id: None,
                error: Some(error.message.clone()),
                body_bytes: body_bytes as i64,
                duration_ms: started.elapsed().as_millis() as i64,
                remote_addr: Some(remote.ip().to_string()),
                request: None,
                body: None,
                body_truncated: false,
                details: None,
                replay_of: None,
            };
            let (app, trigger_id) = (state.app.clone(), target.trigger_id.clone());
            tokio::spawn(async move {
                let write = IngestWrite::log_only(trigger_id, failed);
                // A store that could not take the run may take the row a little later (a lock
                // released, a stall over): a few tries over about 15 s, then it is given up.
                for pause in FAILED_LOG_RETRIES {
                    tokio::time::sleep(pause).await;
                    match app.ingest(write.clone()).await {
                        Ok(_) => return,
                        Err(e) => {
                            tracing::debug!(error = %e, "could not log a webhook request the store refused; retrying")
                        }
                    }
                }
                tracing::warn!(request_id = %write.activity.id, "a webhook request answered 503 is missing from the activity log: the store refused the log row too");
            });
            metrics::counter!("triggerd_webhook_requests_total", "outcome" => Outcome::Failed.as_str())
                .increment(1);
            return error_response(&error);
        }
    }
    trim_activity(state, &entry);
    if prepared.status.is_terminal() {
        metrics::counter!("triggerd_runs_finished_total", "status" => prepared.status.as_str())
            .increment(1);
    }
    metrics::counter!("triggerd_webhook_requests_total", "outcome" => Outcome::Accepted.as_str())
        .increment(1);
    metrics::histogram!("triggerd_webhook_ingest_seconds").record(started.elapsed().as_secs_f64());
    if let Some(response) = sync_now {
        crate::sync::count(crate::sync::SyncResult::Completed);
        return response;
    }
    if let Some((slot, watch, timeout)) = waiting {
        // Boxed: the wait's state stays out of every request's future.
        let (response, result) = Box::pin(crate::sync::wait_for_run(
            state.store(),
            &state.sync_waits,
            watch,
            &run_id,
            timeout,
        ))
        .await;
        drop(slot);
        crate::sync::count(result);
        let code = response.status().as_u16();
        if code != 202 {
            // The row says 202 (written with the run); record what was answered. Off the
            // answer's path: the run's outcome is already durable, the log row follows.
            let (app, request_id) = (state.app.clone(), request_id.to_owned());
            tokio::spawn(async move {
                if let Err(e) = app.set_activity_status(&request_id, code).await {
                    tracing::warn!(%request_id, error = %e, "could not record a sync webhook's answer in the activity log");
                }
            });
        }
        return response;
    }
    match custom {
        Some((status, content_type, body)) => {
            custom_response(*status, content_type, body, &run_id, request_id)
        }
        None => {
            // The 201 says `pending` whatever the write stored.
            let mut response = json_response(
                StatusCode::CREATED,
                &json!({"run_id": run_id, "status": RunStatus::Pending.as_str(), "request_id": request_id}),
            );
            if sync_skipped {
                crate::sync::count_skipped();
                response.headers_mut().insert(
                    crate::sync::SKIPPED_HEADER,
                    header::HeaderValue::from_static(crate::sync::SKIPPED_VALUE),
                );
            }
            response
        }
    }
}

/// Logs a request that starts no run (refused, or ignored by the filter) before it is answered,
/// so the log and the answer agree; a failed log write does not change the answer.
async fn log_without_run(state: &AppState, entry: &CachedTrigger, activity: NewActivity) {
    let write = IngestWrite::log_only(entry.target.trigger_id.clone(), activity);
    if let Err(e) = state.app.ingest(write).await {
        tracing::warn!(error = %e, trigger_id = %entry.target.trigger_id, "could not log a webhook request that started no run");
    }
    trim_activity(state, entry);
}

/// Most bytes of header names and values an activity row keeps; headers past it are left out
/// and the row says `headers_truncated`.
const MAX_LOGGED_HEADER_BYTES: usize = 16 * 1024;
/// Most bytes of the query string an activity row keeps (cut at a parameter boundary).
const MAX_LOGGED_QUERY_BYTES: usize = 8 * 1024;

/// Keeps what a request that starts no run carried in its activity row: the path,
/// the headers and the query redacted as in `trigger_input`, and the body up to the trigger's
/// `log_body_bytes`. Each part is bounded, so a flood of refused requests writes bounded rows.
fn keep_request(
    activity: &mut NewActivity,
    config: &WebhookConfig,
    parts: &http::request::Parts,
    rest: &str,
    body: Option<&Bytes>,
) {
    let mut budget = MAX_LOGGED_HEADER_BYTES;
    let mut headers_truncated = false;
    let kept = parts.headers.iter().filter(|(name, value)| {
        let cost = name.as_str().len() + value.len();
        if cost > budget {
            headers_truncated = true;
            return false;
        }
        budget -= cost;
        true
    });
    let headers = headers_to_map(
        kept.map(|(n, v)| (n.as_str(), v.as_bytes())),
        redacted_headers(config),
    );
    let mut query = parts.uri.query().unwrap_or("");
    let query_truncated = query.len() > MAX_LOGGED_QUERY_BYTES;
    if query_truncated {
        let mut cut = MAX_LOGGED_QUERY_BYTES;
        while !query.is_char_boundary(cut) {
            cut -= 1;
        }
        query = &query[..query[..cut].rfind('&').unwrap_or(cut)];
    }
    let mut request = json!({
        "path": rest,
        "headers": headers,
        "query": query_to_map(query.as_bytes()),
    });
    if headers_truncated || query_truncated {
        request["truncated"] = json!(true);
    }
    activity.request = Some(request.to_string());
    if let Some(body) = body.filter(|b| !b.is_empty()) {
        let keep = body.len().min(config.log_body_bytes as usize);
        activity.body = (keep > 0).then(|| body[..keep].to_vec());
        activity.body_truncated = keep < body.len();
    }
}

/// One line per refused request, at `info` (rate-limited ones at `debug`: a flood must not
/// flood the log; `triggerd_webhook_requests_total` counts them): the trigger, the request id,
/// the outcome and the reason — never a secret or the body.
fn log_refusal(trigger_id: &str, request_id: &str, refusal: &Refusal) {
    let status = refusal.error.status.as_u16();
    let outcome = refusal.outcome.as_str();
    let reason = refusal.error.message.as_str();
    if refusal.outcome == Outcome::RateLimited {
        tracing::debug!(%trigger_id, %request_id, outcome, status, reason, "webhook refused");
    } else {
        tracing::info!(%trigger_id, %request_id, outcome, status, reason, "webhook refused");
    }
}

/// Pauses before each try to log a request whose write the store refused (503).
const FAILED_LOG_RETRIES: [Duration; 5] = [
    Duration::ZERO,
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
];

/// Keeps the trigger's activity log at `activity_retention` rows: every tenth of that many new
/// rows, the oldest beyond it are deleted by a background task, so neither accepted requests nor
/// a flood of refused ones wait for it.
fn trim_activity(state: &AppState, entry: &CachedTrigger) {
    let keep = state.config.activity_retention;
    if keep == 0 || !entry.runtime.note_logged((keep as u64 / 10).max(10)) {
        return;
    }
    let app = state.app.clone();
    let trigger_id = entry.target.trigger_id.clone();
    tokio::spawn(async move {
        match app.prune_activity(&trigger_id, keep).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(%trigger_id, deleted = n, "activity log trimmed"),
            Err(e) => tracing::warn!(%trigger_id, error = %e, "could not trim the activity log"),
        }
    });
}

/// 404, or 200 `{"received": true}` when unknown tokens are hidden. Not logged (no trigger).
fn unknown_token(state: &AppState) -> Response<Body> {
    metrics::counter!("triggerd_webhook_requests_total", "outcome" => "unknown_token").increment(1);
    if state.config.hide_unknown_tokens {
        json_response(StatusCode::OK, &json!({"received": true}))
    } else {
        error_response(&ApiError::not_found("unknown webhook token"))
    }
}

/// The cached trigger of `token`, read from the database on a miss.
async fn lookup(state: &AppState, token: &str) -> Result<Option<Arc<CachedTrigger>>, ApiError> {
    if let Some(entry) = state.cache.get(token) {
        return Ok(Some(entry));
    }
    let generation = state.cache.generation();
    let Some(target) = state.app.resolve_webhook(token).await? else {
        return Ok(None);
    };
    let runtime = state.cache.runtime(&target.trigger_id);
    let entry = Arc::new(CachedTrigger::new(target, runtime, generation));
    state.cache.insert(token, entry.clone());
    Ok(Some(entry))
}

/// Every check after the token; returns the mapped input (or that the filter ignores the request)
/// or the refusal, and what was read of the request.
async fn check(
    state: &AppState,
    entry: &CachedTrigger,
    req: Request<Incoming>,
    rest: &str,
) -> (Result<Passed, Refusal>, Seen) {
    let config = &entry.target.config;
    let (parts, body) = req.into_parts();
    let unread = |parts, size| Seen {
        parts,
        body: None,
        size,
        charge: Charge::none(),
    };
    if !entry.target.enabled {
        // Answered like an unknown token, but logged against the trigger.
        return (
            Err(Refusal::new(
                ApiError::not_found("trigger is disabled"),
                Outcome::Failed,
            )),
            unread(parts, 0),
        );
    }
    if !config.allows(parts.method.as_str()) {
        return (
            Err(Refusal::new(
                ApiError::method_not_allowed(config.allow_header()),
                Outcome::MethodNotAllowed,
            )),
            unread(parts, 0),
        );
    }
    let limit = config.max_body_bytes;
    let declared_length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(declared) = declared_length.filter(|n| *n > limit) {
        return (
            Err(Refusal::new(
                ApiError::payload_too_large(limit),
                Outcome::TooLarge,
            )),
            unread(parts, declared),
        );
    }
    // A large body is read holding part of the memory budget's reading allowance, so that
    // bodies waiting for the budget are bounded too.
    let reading = if parts.method == Method::GET {
        Charge::none()
    } else {
        match state
            .app
            .memory()
            .reading(declared_length.unwrap_or(limit))
            .await
        {
            Ok(charge) => charge,
            Err(refused) => {
                return (
                    Err(Refusal::new(ApiError::memory(&refused), Outcome::Failed)),
                    unread(parts, declared_length.unwrap_or(0)),
                );
            }
        }
    };
    let body: Bytes = if parts.method == Method::GET {
        Bytes::new()
    } else {
        match read_body(body, limit, state.config.body_read_timeout).await {
            Ok(bytes) => bytes,
            Err(error) if error.status == StatusCode::PAYLOAD_TOO_LARGE => {
                return (
                    Err(Refusal::new(error, Outcome::TooLarge)),
                    unread(parts, limit),
                );
            }
            // Cut off (400), or not complete within the body read timeout (408): logged `failed`.
            Err(error) => return (Err(Refusal::new(error, Outcome::Failed)), unread(parts, 0)),
        }
    };
    let size = body.len() as u64;
    let allowed = entry
        .runtime
        .bucket
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take(config.rate_limit_per_minute, Instant::now());
    // A rate-limited request's body is not kept: a flood writes no more than its rows.
    if let Err(retry_after) = allowed {
        return (
            Err(Refusal::new(
                ApiError::rate_limited(retry_after),
                Outcome::RateLimited,
            )),
            unread(parts, size),
        );
    }
    // What parsing and storing it will hold, charged in one step before any of it happens.
    let charge = match charge_processing(state, &parts.headers, &body).await {
        Ok(charge) => charge,
        Err(refusal) => return (Err(refusal), unread(parts, size)),
    };
    drop(reading);
    let result = authenticate_and_evaluate(state, entry, &parts, &body, rest).await;
    (
        result,
        Seen {
            parts,
            body: Some(body),
            size,
            charge,
        },
    )
}

/// Charges what making a run of `body` costs against the memory budget (nothing for a small
/// body): a 503 when the budget stays in use, a 413 when the body alone would need more than all
/// of it. Live, tested (dry run) and replayed requests all pass here before they parse.
pub(crate) async fn charge_processing(
    state: &AppState,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<Charge, Refusal> {
    let budget = state.app.memory();
    if body.len() < triggerd_app::memory::UNCHARGED_BYTES as usize || budget.bytes().is_none() {
        return Ok(Charge::none());
    }
    let cost = crate::body::processing_cost(headers, body);
    budget.charge(cost).await.map_err(|refused| {
        let outcome = match refused {
            Refused::TooLarge { .. } => Outcome::TooLarge,
            Refused::Busy { .. } => Outcome::Failed,
        };
        metrics::counter!("triggerd_memory_budget_refusals_total", "reason" => match refused {
            Refused::TooLarge { .. } => "too_large",
            Refused::Busy { .. } => "busy",
        })
        .increment(1);
        Refusal::new(ApiError::memory(&refused), outcome)
    })
}

/// The checks after the rate limit: signature, API key, parsing, filter, mapping.
async fn authenticate_and_evaluate(
    state: &AppState,
    entry: &CachedTrigger,
    parts: &http::request::Parts,
    body: &Bytes,
    rest: &str,
) -> Result<Passed, Refusal> {
    let config = &entry.target.config;
    if let Some(secret) = &config.secret {
        let now_secs = state.app.now() / 1_000_000;
        if let Err(e) = config.scheme.verify(secret, &parts.headers, body, now_secs) {
            return Err(Refusal::new(
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "bad_signature",
                    format!("signature check failed: {e}"),
                ),
                Outcome::BadSignature,
            ));
        }
    }
    if !config.api_keys.is_empty() && !api_key_matches(&parts.headers, config) {
        let error = ApiError::unauthorized(
            "missing or wrong API key: send Authorization: Bearer <key> or X-API-Key: <key>",
        );
        return Err(Refusal::new(error, Outcome::Unauthorized));
    }
    let parsed = parse(&parts.headers, body).await?;
    let headers = headers_to_map(
        parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes())),
        redacted_headers(config),
    );
    let query = query_to_map(parts.uri.query().unwrap_or("").as_bytes());
    let trigger_input = trigger_input(
        parts.method.as_str(),
        rest,
        Value::Object(query),
        Value::Object(headers),
        parsed,
    );
    evaluate(config, &entry.target.definition, trigger_input)
}

/// `trigger.body` from a raw body, within the depth limit.
pub(crate) async fn parse(headers: &http::HeaderMap, body: &Bytes) -> Result<Value, Refusal> {
    match parse_body(headers, body).await {
        Ok(v) if json_depth(&v) > MAX_JSON_DEPTH => {
            Err(Refusal::new(ApiError::too_deep(), Outcome::Malformed))
        }
        Ok(v) => Ok(v),
        Err(e) => Err(Refusal::new(ApiError::from(e), Outcome::Malformed)),
    }
}

/// The headers `trigger.headers` and the activity log redact besides the always-redacted ones:
/// the signature headers of the trigger's scheme, when it checks one.
pub(crate) fn redacted_headers(config: &WebhookConfig) -> &'static [&'static str] {
    if config.secret.is_some() {
        config.scheme.header_names()
    } else {
        &[]
    }
}

/// The run an accepted request (live or replayed) starts.
pub(crate) fn run_start(
    target: &WebhookTrigger,
    run_id: &str,
    accepted: Accepted,
    received_at: i64,
) -> RunStart {
    RunStart {
        run_id: run_id.to_owned(),
        source: RunSource::Webhook,
        deployment_id: target.deployment_id.clone(),
        workflow: target.workflow.clone(),
        workflow_version: target.workflow_version,
        trigger_id: Some(target.trigger_id.clone()),
        input: accepted.input,
        trigger_input: accepted.trigger_input,
        created_at: received_at,
    }
}

/// The de-duplication key an accepted request claims until its window ends; `None` without
/// `config.dedup` or when the request has no key.
pub(crate) fn dedup_claim(
    config: &WebhookConfig,
    trigger_input: &Value,
    received_at: i64,
) -> Option<DedupClaim> {
    let dedup = config.dedup.as_ref()?;
    Some(DedupClaim {
        key: dedup.key_of(trigger_input)?,
        expires_at: received_at.saturating_add(i64::from(dedup.window_seconds()) * 1_000_000),
    })
}

/// The filter, then input mapping and validation, of an authenticated request:
/// what a live request and a replayed one both go through.
pub(crate) fn evaluate(
    config: &WebhookConfig,
    definition: &triggerd_domain::definition::Definition,
    trigger_input: Value,
) -> Result<Passed, Refusal> {
    // The filter reads what mapping reads, after authentication, before mapping.
    if let Some(filter) = &config.filter
        && !filter.matches(&trigger_input)
    {
        return Ok(Passed::Filtered);
    }
    match config
        .input_mapping
        .apply(&definition.inputs, &trigger_input)
    {
        Ok(input) => Ok(Passed::Accepted(Accepted {
            input,
            trigger_input,
        })),
        Err(problems) => Err(Refusal::new(
            ApiError::invalid_input(problems),
            Outcome::InvalidInput,
        )),
    }
}

/// Whether the request presents one of the trigger's API keys as `Authorization: Bearer <key>`
/// or `X-API-Key`. Each presented key is hashed once and compared with every stored digest
/// ([`WebhookConfig::accepts_api_key`]).
fn api_key_matches(headers: &http::HeaderMap, config: &WebhookConfig) -> bool {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let x_api_key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    [bearer, x_api_key]
        .into_iter()
        .flatten()
        .any(|presented| config.accepts_api_key(presented))
}

/// The activity-log error and the answer's `error` when a custom response's template fails.
fn template_failed(e: &triggerd_domain::template::RenderError) -> String {
    format!("the custom response template failed: {e}")
}

/// The custom answer, sent after the run was stored. A template that cannot be
/// rendered from this request (it reads a value the request lacks) is answered **500**
/// `{"error", "code": "response_template_failed", "request_id", "run_id"}`: the run was
/// accepted and starts all the same, and the activity row says 500 with the same error.
fn custom_response(
    status: u16,
    content_type: &str,
    body: Result<Value, triggerd_domain::template::RenderError>,
    run_id: &str,
    request_id: &str,
) -> Response<Body> {
    let bytes = match body {
        Ok(Value::String(s)) => s.into_bytes(),
        Ok(Value::Null) => Vec::new(),
        Ok(other) => other.to_string().into_bytes(),
        Err(e) => {
            tracing::debug!(error = %e, %run_id, "custom webhook response template failed");
            return json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({"error": template_failed(&e), "code": "response_template_failed",
                        "request_id": request_id, "run_id": run_id}),
            );
        }
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    // 204 and 304 carry no body (RFC 9110); whatever the template rendered is not sent.
    let bytes = if matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED) {
        Vec::new()
    } else {
        bytes
    };
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    if let Ok(value) = header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> http::HeaderMap {
        pairs
            .iter()
            .map(|(n, v)| {
                (
                    http::HeaderName::from_static(n),
                    http::HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn api_keys_are_read_from_bearer_or_x_api_key() {
        let config = triggerd_domain::trigger::TriggerConfig::from_stored(
            triggerd_domain::trigger::TriggerType::Webhook,
            &serde_json::json!({"api_keys": ["k-0123456789abcdef", {"name": "ci", "key": "k-second-key-000000"}]}),
        )
        .unwrap();
        let triggerd_domain::trigger::TriggerConfig::Webhook(keys) = config else {
            unreachable!()
        };
        let keys = &*keys;
        assert!(api_key_matches(
            &headers(&[("authorization", "Bearer k-second-key-000000")]),
            keys
        ));
        assert!(api_key_matches(
            &headers(&[("x-api-key", "k-0123456789abcdef")]),
            keys
        ));
        assert!(!api_key_matches(
            &headers(&[("x-api-key", "k-0123456789abcdeF")]),
            keys
        ));
        assert!(!api_key_matches(
            &headers(&[("authorization", "k-0123456789abcdef")]),
            keys
        ));
        assert!(!api_key_matches(&headers(&[]), keys));
    }
}
