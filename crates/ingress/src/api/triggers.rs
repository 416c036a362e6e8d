//! Triggers: create, list, read, change, remove, rotate, and the activity log.

use http::{Response, StatusCode};
use serde_json::Value;
use triggerd_app::AppError;
use triggerd_app::triggers::{MAX_GRACE_SECONDS, TriggerRequest, config_of};
use triggerd_domain::Problem;
use triggerd_domain::activity::Outcome;
use triggerd_domain::ids::{IdKind, is_valid_id};
use triggerd_domain::inputs::is_valid_name;
use triggerd_domain::mapping::{headers_to_map, redact_query, trigger_input};
use triggerd_domain::trigger::{TriggerConfig, TriggerType};
use triggerd_storage::TriggerRow;

use super::{Call, views};
use crate::openapi::{ErrorBody, bodies};
use crate::respond::no_content;
use crate::{ApiError, AppState, Body, json_response};

fn invalid_config(problems: Vec<Problem>) -> ApiError {
    ApiError::from(AppError::InvalidConfig(problems))
}

fn view(state: &AppState, row: &TriggerRow) -> views::TriggerView {
    views::trigger(row, state.app.public_url())
}

/// `POST /deployments/{id}/triggers` `{trigger_type, name?, enabled?, config}`.
#[utoipa::path(
    post,
    path = "/api/v1/deployments/{id}/triggers",
    operation_id = "create_trigger",
    tag = "triggers",
    summary = "Create a webhook or cron trigger",
    params(("id" = String, Path, description = "The deployment id (`dep_...`)")),
    request_body = bodies::CreateTrigger,
    responses(
        (status = 201, description = "The trigger; a webhook's includes `token` and `url`, and `generated_api_keys` (shown this once) when `config.api_keys` asked the server to generate keys", body = views::TriggerView),
        (status = 404, description = "No such deployment", body = ErrorBody),
        (status = 409, description = "The trigger name is taken in this deployment (`conflict`)", body = ErrorBody),
        (status = 422, description = "The configuration is invalid (`invalid_config`); `details` lists each problem", body = ErrorBody),
    )
)]
pub(crate) async fn create(state: &AppState, call: Call) -> Result<Response<Body>, ApiError> {
    let deployment = state.app.deployment(&call.param).await?;
    let body = call.object()?;
    if let Some(key) = body
        .keys()
        .find(|k| !["trigger_type", "name", "enabled", "config"].contains(&k.as_str()))
    {
        return Err(ApiError::bad_request(format!(
            "unknown field \"{key}\": a trigger has trigger_type, name, enabled and config"
        )));
    }
    let trigger_type = match body.get("trigger_type").and_then(Value::as_str) {
        Some(t) => t
            .parse::<TriggerType>()
            .map_err(|p| invalid_config(vec![p]))?,
        None => {
            return Err(invalid_config(vec![Problem::new(
                "trigger_type",
                "is required: \"webhook\" or \"cron\"",
            )]));
        }
    };
    let name = match body.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(n)) if is_valid_name(n) => Some(n.clone()),
        Some(_) => {
            return Err(invalid_config(vec![Problem::new(
                "name",
                "trigger names use letters, digits, `_` and `-` (1 to 64 characters)",
            )]));
        }
    };
    let enabled = match body.get("enabled") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::bad_request("enabled must be true or false")),
    };
    let request = TriggerRequest {
        trigger_type,
        name,
        enabled,
        config: body.get("config").cloned().unwrap_or(Value::Null),
    };
    let (row, generated) = state.app.create_trigger(&deployment.id, request).await?;
    let view = views::trigger_with_keys(&row, state.app.public_url(), &generated);
    Ok(json_response(StatusCode::CREATED, &view))
}

/// `GET /deployments/{id}/triggers`.
#[utoipa::path(
    get,
    path = "/api/v1/deployments/{id}/triggers",
    operation_id = "list_triggers",
    tag = "triggers",
    summary = "List a deployment's triggers, newest first",
    params(("id" = String, Path, description = "The deployment id (`dep_...`)"), bodies::TriggerPageParams),
    responses(
        (status = 200, description = "A page of triggers", body = views::TriggerPage),
        (status = 400, description = "Bad `limit` (`bad_request`) or unknown `cursor` (`invalid_cursor`)", body = ErrorBody),
        (status = 404, description = "No such deployment", body = ErrorBody),
    )
)]
pub(crate) async fn list(state: &AppState, call: Call) -> Result<Response<Body>, ApiError> {
    let deployment = state.app.deployment(&call.param).await?;
    let (limit, cursor) = call.page(|c| is_valid_id(IdKind::Trigger, c))?;
    let page = state
        .store()
        .list_triggers(&deployment.id, cursor.as_deref(), limit)
        .await?;
    let data = page.items.iter().map(|row| view(state, row)).collect();
    Ok(json_response(
        StatusCode::OK,
        &views::TriggerPage {
            data,
            next_cursor: page.next_cursor,
        },
    ))
}

pub(crate) async fn find(state: &AppState, id: &str) -> Result<TriggerRow, ApiError> {
    if !is_valid_id(IdKind::Trigger, id) {
        return Err(ApiError::not_found(format!("trigger {id} not found")));
    }
    state
        .store()
        .get_trigger(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("trigger {id} not found")))
}

/// `GET /triggers/{id}`.
#[utoipa::path(
    get,
    path = "/api/v1/triggers/{id}",
    operation_id = "get_trigger",
    tag = "triggers",
    summary = "Read a trigger",
    params(("id" = String, Path, description = "The trigger id (`trg_...`)")),
    responses(
        (status = 200, description = "The trigger", body = views::TriggerView),
        (status = 404, description = "No such trigger", body = ErrorBody),
    )
)]
pub(crate) async fn get(state: &AppState, call: Call) -> Result<Response<Body>, ApiError> {
    let row = find(state, &call.param).await?;
    Ok(json_response(StatusCode::OK, &view(state, &row)))
}

/// `PATCH /triggers/{id}` `{enabled?, config?}`: config keys merge at the top level; `null`
/// removes a key; a webhook's `api_keys_add` / `api_keys_remove` add and remove single API keys.
#[utoipa::path(
    patch,
    path = "/api/v1/triggers/{id}",
    operation_id = "patch_trigger",
    tag = "triggers",
    summary = "Change a trigger's `enabled` or `config`",
    params(("id" = String, Path, description = "The trigger id (`trg_...`)")),
    request_body = bodies::PatchTrigger,
    responses(
        (status = 200, description = "The trigger after the change, with `generated_api_keys` (shown this once) when the change generated keys", body = views::TriggerView),
        (status = 404, description = "No such trigger", body = ErrorBody),
        (status = 422, description = "The merged configuration is invalid (`invalid_config`)", body = ErrorBody),
    )
)]
pub(crate) async fn patch(state: &AppState, call: Call) -> Result<Response<Body>, ApiError> {
    let row = find(state, &call.param).await?;
    let body = call.object()?;
    if let Some(key) = body
        .keys()
        .find(|k| !["enabled", "config"].contains(&k.as_str()))
    {
        return Err(ApiError::bad_request(format!(
            "unknown field \"{key}\": a trigger changes enabled and config"
        )));
    }
    let enabled = match body.get("enabled") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err(ApiError::bad_request("enabled must be true or false")),
    };
    let changes = match body.get("config").filter(|v| !v.is_null()) {
        None => None,
        Some(changes) if changes.is_object() => Some(changes.clone()),
        Some(_) => {
            return Err(invalid_config(vec![Problem::new(
                "config",
                "must be an object of the keys to change",
            )]));
        }
    };
    let (row, generated) = state.app.patch_trigger(&row.id, enabled, changes).await?;
    let view = views::trigger_with_keys(&row, state.app.public_url(), &generated);
    Ok(json_response(StatusCode::OK, &view))
}

/// `DELETE /triggers/{id}`: its URL stops at once.
#[utoipa::path(
    delete,
    path = "/api/v1/triggers/{id}",
    operation_id = "delete_trigger",
    tag = "triggers",
    summary = "Remove a trigger; its URL stops at once",
    params(("id" = String, Path, description = "The trigger id (`trg_...`)")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such trigger", body = ErrorBody),
    )
)]
pub(crate) async fn delete(state: &AppState, call: Call) -> Result<Response<Body>, ApiError> {
    if !is_valid_id(IdKind::Trigger, &call.param) {
        return Err(ApiError::not_found(format!(
            "trigger {} not found",
            call.param
        )));
    }
    state.app.delete_trigger(&call.param).await?;
    Ok(no_content())
}

/// `POST /triggers/{id}/rotate` `{grace_seconds?}`.
#[utoipa::path(
    post,
    path = "/api/v1/triggers/{id}/rotate",
    operation_id = "rotate_trigger",
    tag = "triggers",
    summary = "Give a webhook trigger a new token and URL",
    params(("id" = String, Path, description = "The trigger id (`trg_...`)")),
    request_body(content = Option<bodies::RotateTrigger>, description = "Optional: how long the old token keeps working"),
    responses(
        (status = 200, description = "The trigger with its new token and URL", body = views::TriggerRotated),
        (status = 400, description = "Bad `grace_seconds`", body = ErrorBody),
        (status = 404, description = "No such trigger", body = ErrorBody),
        (status = 409, description = "Not a webhook trigger (`conflict`)", body = ErrorBody),
    )
)]
pub(crate) async fn rotate(state: &AppState, call: Call) -> Result<Response<Body>, ApiError> {
    let row = find(state, &call.param).await?;
    let body = call.object_or_empty()?;
    if let Some(key) = body.keys().find(|k| k.as_str() != "grace_seconds") {
        return Err(ApiError::bad_request(format!(
            "unknown field \"{key}\": a rotation takes grace_seconds"
        )));
    }
    let grace = match body.get("grace_seconds") {
        None | Some(Value::Null) => 0,
        Some(v) => match super::whole_number(v).and_then(|n| u64::try_from(n).ok()) {
            Some(n) if n <= MAX_GRACE_SECONDS => n,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "grace_seconds must be a whole number from 0 to {MAX_GRACE_SECONDS} (7 days)"
                )));
            }
        },
    };
    let (row, old_valid_until) = state.app.rotate_trigger(&row.id, grace).await?;
    let view = views::TriggerRotated {
        trigger: view(state, &row),
        previous_token_valid_until: old_valid_until.map(views::rfc3339),
    };
    Ok(json_response(StatusCode::OK, &view))
}

/// `GET /triggers/{id}/requests?outcome=&limit=&cursor=`: the activity log, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/triggers/{id}/requests",
    operation_id = "list_trigger_requests",
    tag = "triggers",
    summary = "The trigger's activity log of inbound requests, newest first",
    params(("id" = String, Path, description = "The trigger id (`trg_...`)"), bodies::ActivityPageParams, bodies::ActivityFilters),
    responses(
        (status = 200, description = "A page of activity rows", body = views::ActivityPage),
        (status = 400, description = "Bad `limit`, `cursor` or `outcome`", body = ErrorBody),
        (status = 404, description = "No such trigger", body = ErrorBody),
    )
)]
pub(crate) async fn requests(state: &AppState, call: Call) -> Result<Response<Body>, ApiError> {
    let row = find(state, &call.param).await?;
    let (limit, cursor) = call.page(|c| is_valid_id(IdKind::Request, c))?;
    let outcome = call.query_str("outcome");
    if let Some(o) = outcome {
        o.parse::<Outcome>()
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    let page = state
        .store()
        .list_activity(&row.id, outcome, cursor.as_deref(), limit)
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &views::ActivityPage {
            data: page.items.iter().map(views::activity).collect(),
            next_cursor: page.next_cursor,
        },
    ))
}

/// `GET /triggers/{id}/requests/{request_id}`: one logged request with what it carried.
#[utoipa::path(
    get,
    path = "/api/v1/triggers/{id}/requests/{request_id}",
    operation_id = "get_trigger_request",
    tag = "triggers",
    summary = "One logged request: its headers, query, body and refusal details",
    description = "A request that started no run (refused, filtered, duplicate) shows the path, the headers and query (credentials redacted) and the body as received, up to the trigger's `log_body_bytes` (`body_truncated` beyond; rate-limited and oversized requests keep no body). An accepted request shows the request as its run's `trigger_input` holds it (`body_encoding: \"json\"`). `details` are the refusal's details (the 422 problems).",
    params(
        ("id" = String, Path, description = "The trigger id (`trg_...`)"),
        ("request_id" = String, Path, description = "The request id (`req_...`, the `X-Request-Id` the sender got)"),
    ),
    responses(
        (status = 200, description = "The row and its request", body = views::ActivityDetailView),
        (status = 404, description = "No such trigger, or no such request in its log", body = ErrorBody),
    )
)]
pub(crate) async fn request(state: &AppState, call: Call) -> Result<Response<Body>, ApiError> {
    let row = find(state, &call.param).await?;
    let detail = crate::replay::detail(state, &row.id, &call.param2).await?;
    let request = crate::replay::request_view(state, &detail).await?;
    Ok(json_response(
        StatusCode::OK,
        &views::ActivityDetailView {
            row: views::activity(&detail.row),
            request,
            details: detail
                .details
                .as_deref()
                .and_then(|d| serde_json::from_str(d).ok()),
        },
    ))
}

/// `POST /triggers/{id}/test` `{method?, path?, headers?, query?, body}`: a dry run of the input
/// mapping and validation a real request would get — 200 `{input, trigger_input}`, 200
/// `{input: null, trigger_input, ignored: true}` when the filter ignores it, or the same 422. No signature or API-key check, no run, no activity row, no rate-limit token.
#[utoipa::path(
    post,
    path = "/api/v1/triggers/{id}/test",
    operation_id = "test_trigger",
    tag = "triggers",
    summary = "Dry run: the input a request would start a run with",
    params(("id" = String, Path, description = "The trigger id (`trg_...`)")),
    request_body(content = Option<bodies::TestRequest>, description = "The request to try; every field optional"),
    responses(
        (status = 200, description = "The mapped and validated input", body = views::TestResult),
        (status = 400, description = "Bad body, or not a webhook trigger", body = ErrorBody),
        (status = 404, description = "No such trigger", body = ErrorBody),
        (status = 422, description = "The input a real request would be refused for (`invalid_input`)", body = ErrorBody),
    )
)]
pub(crate) async fn test(state: &AppState, call: Call) -> Result<Response<Body>, ApiError> {
    let row = find(state, &call.param).await?;
    if triggerd_app::triggers::type_of(&row)? != TriggerType::Webhook {
        return Err(ApiError::bad_request(
            "only webhook triggers map requests; a cron trigger's input is fixed",
        ));
    }
    let body = call.object_or_empty()?;
    if let Some(key) = body
        .keys()
        .find(|k| !["method", "path", "headers", "query", "body"].contains(&k.as_str()))
    {
        return Err(ApiError::bad_request(format!(
            "unknown field \"{key}\": a test request has method, path, headers, query and body"
        )));
    }
    let method = match body.get("method") {
        None | Some(Value::Null) => "POST".to_owned(),
        Some(Value::String(m)) => m.to_ascii_uppercase(),
        Some(_) => {
            return Err(ApiError::bad_request(
                "method must be a string such as \"POST\"",
            ));
        }
    };
    let path = match body.get("path") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(p)) => p.trim_start_matches('/').to_owned(),
        Some(_) => {
            return Err(ApiError::bad_request(
                "path must be a string (the URL rest after the token)",
            ));
        }
    };
    let object = |key: &str| -> Result<serde_json::Map<String, Value>, ApiError> {
        match body.get(key) {
            None | Some(Value::Null) => Ok(serde_json::Map::new()),
            Some(Value::Object(map)) => Ok(map.clone()),
            Some(_) => Err(ApiError::bad_request(format!("{key} must be an object"))),
        }
    };
    let raw_headers = object("headers")?;
    let mut query = object("query")?;
    redact_query(&mut query);
    let TriggerConfig::Webhook(config) = config_of(&row)? else {
        return Err(ApiError::internal());
    };
    let header_texts: Vec<(String, String)> = raw_headers
        .iter()
        .map(|(name, value)| {
            (
                name.clone(),
                value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_owned),
            )
        })
        .collect();
    let redact: &[&str] = if config.secret.is_some() {
        config.scheme.header_names()
    } else {
        &[]
    };
    let headers = headers_to_map(
        header_texts.iter().map(|(n, v)| (n.as_str(), v.as_bytes())),
        redact,
    );
    let request = trigger_input(
        &method,
        &path,
        Value::Object(query),
        Value::Object(headers),
        body.get("body").cloned().unwrap_or(Value::Null),
    );
    if let Some(filter) = &config.filter
        && !filter.matches(&request)
    {
        return Ok(json_response(
            StatusCode::OK,
            &views::TestResult {
                input: Value::Null,
                trigger_input: request,
                ignored: true,
            },
        ));
    }
    let deployment = state.app.deployment(&row.deployment_id).await?;
    let (_, definition) = state.app.deployment_definition(&deployment).await?;
    let input = config
        .input_mapping
        .apply(&definition.inputs, &request)
        .map_err(ApiError::invalid_input)?;
    Ok(json_response(
        StatusCode::OK,
        &views::TestResult {
            input: Value::Object(input),
            trigger_input: request,
            ignored: false,
        },
    ))
}
