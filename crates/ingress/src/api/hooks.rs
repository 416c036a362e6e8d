//! Event hooks (SPEC 3, 7): create, list, remove, read and rotate the secret; the deliveries'
//! log; manual retry.

use http::{Response, StatusCode};
use serde_json::Value;
use triggerd_app::AppError;
use triggerd_app::hooks::{HookScope, NewHook, parse_hook_fields};
use triggerd_domain::Problem;
use triggerd_domain::ids::{IdKind, is_valid_id};
use triggerd_storage::HookRow;

use super::{Call, views};
use crate::openapi::{ErrorBody, bodies};
use crate::{ApiError, AppState, Body, json_response};

/// `POST /hooks` `{scope, workflow?, deployment_id?, url, events, secret?}`.
#[utoipa::path(
    post,
    path = "/api/v1/hooks",
    operation_id = "create_hook",
    tag = "hooks",
    summary = "Create an event hook at workflow or deployment scope",
    request_body = bodies::CreateHook,
    responses(
        (status = 201, description = "The hook, with its `secret` (shown only here and by `GET /hooks/{id}/secret`)", body = views::HookView),
        (status = 404, description = "No such workflow or deployment", body = ErrorBody),
        (status = 422, description = "A field is invalid (`invalid_config`); `details` lists each problem", body = ErrorBody),
    )
)]
pub(crate) async fn create(state: &AppState, call: Call) -> Result<Response<Body>, ApiError> {
    let body = call.object()?;
    if let Some(key) = body.keys().find(|k| {
        ![
            "scope",
            "workflow",
            "deployment_id",
            "url",
            "events",
            "secret",
        ]
        .contains(&k.as_str())
    }) {
        return Err(ApiError::bad_request(format!(
            "unknown field \"{key}\": a hook takes scope, workflow, deployment_id, url, events and secret"
        )));
    }
    let text = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_owned);
    let mut problems = Vec::new();
    let scope = match body.get("scope").and_then(Value::as_str) {
        Some("workflow") => match text("workflow") {
            Some(w) => Some(HookScope::Workflow(w)),
            None => {
                problems.push(Problem::new("workflow", "is required for scope workflow"));
                None
            }
        },
        Some("deployment") => match text("deployment_id") {
            Some(d) => Some(HookScope::Deployment(d)),
            None => {
                problems.push(Problem::new(
                    "deployment_id",
                    "is required for scope deployment",
                ));
                None
            }
        },
        Some("run") => {
            problems.push(Problem::new(
                "scope",
                "run-scoped hooks are created with the run: the hooks field of POST /api/v1/runs",
            ));
            None
        }
        _ => {
            problems.push(Problem::new(
                "scope",
                "must be \"workflow\" or \"deployment\"",
            ));
            None
        }
    };
    let fields = parse_hook_fields(body, "");
    let (url, events, secret) = match fields {
        Ok(f) if problems.is_empty() => f,
        Ok(_) => return Err(AppError::InvalidConfig(problems).into()),
        Err(more) => {
            problems.extend(more);
            return Err(AppError::InvalidConfig(problems).into());
        }
    };
    let Some(scope) = scope else {
        return Err(AppError::InvalidConfig(problems).into());
    };
    let row = state
        .app
        .create_hook(NewHook {
            scope,
            url,
            events,
            secret,
        })
        .await?;
    Ok(json_response(StatusCode::CREATED, &views::hook(&row, true)))
}

/// `GET /hooks`.
#[utoipa::path(
    get,
    path = "/api/v1/hooks",
    operation_id = "list_hooks",
    tag = "hooks",
    summary = "List hooks, oldest first",
    params(bodies::HookPageParams),
    responses(
        (status = 200, description = "A page of hooks", body = views::HookPage),
        (status = 400, description = "Bad `limit` (`bad_request`) or unknown `cursor` (`invalid_cursor`)", body = ErrorBody),
    )
)]
pub(crate) async fn list(state: &AppState, call: Call) -> Result<Response<Body>, ApiError> {
    let (limit, cursor) = call.page(|c| is_valid_id(IdKind::Hook, c))?;
    let scope = call.query_str("scope").map(str::to_owned);
    if let Some(s) = &scope
        && !["workflow", "deployment", "run"].contains(&s.as_str())
    {
        return Err(ApiError::bad_request(
            "scope must be workflow, deployment or run",
        ));
    }
    let page = state
        .store()
        .list_hooks(scope.as_deref(), cursor.as_deref(), limit)
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &views::HookPage {
            data: page.items.iter().map(|h| views::hook(h, false)).collect(),
            next_cursor: page.next_cursor,
        },
    ))
}

async fn find(state: &AppState, id: &str) -> Result<HookRow, ApiError> {
    let not_found = || ApiError::not_found(format!("hook {id} not found"));
    if !is_valid_id(IdKind::Hook, id) {
        return Err(not_found());
    }
    state.store().get_hook(id).await?.ok_or_else(not_found)
}

/// `GET /hooks/{id}`.
#[utoipa::path(
    get,
    path = "/api/v1/hooks/{id}",
    operation_id = "get_hook",
    tag = "hooks",
    summary = "Read a hook",
    params(("id" = String, Path, description = "The hook id (`hook_...`)")),
    responses(
        (status = 200, description = "The hook (without its secret)", body = views::HookView),
        (status = 404, description = "No such hook", body = ErrorBody),
    )
)]
pub(crate) async fn get(state: &AppState, call: Call) -> Result<Response<Body>, ApiError> {
    let row = find(state, &call.param).await?;
    Ok(json_response(StatusCode::OK, &views::hook(&row, false)))
}

/// `DELETE /hooks/{id}`.
#[utoipa::path(
    delete,
    path = "/api/v1/hooks/{id}",
    operation_id = "delete_hook",
    tag = "hooks",
    summary = "Remove a hook; its pending deliveries are given up",
    params(("id" = String, Path, description = "The hook id (`hook_...`)")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such hook", body = ErrorBody),
    )
)]
pub(crate) async fn delete(state: &AppState, call: Call) -> Result<Response<Body>, ApiError> {
    let row = find(state, &call.param).await?;
    state.app.delete_hook(&row.id).await?;
    Ok(crate::respond::no_content())
}

/// `GET /hooks/{id}/secret`.
#[utoipa::path(
    get,
    path = "/api/v1/hooks/{id}/secret",
    operation_id = "get_hook_secret",
    tag = "hooks",
    summary = "Read a hook's signing secret",
    params(("id" = String, Path, description = "The hook id (`hook_...`)")),
    responses(
        (status = 200, description = "The secret", body = views::HookSecret),
        (status = 404, description = "No such hook", body = ErrorBody),
    )
)]
pub(crate) async fn secret(state: &AppState, call: Call) -> Result<Response<Body>, ApiError> {
    let row = find(state, &call.param).await?;
    Ok(json_response(
        StatusCode::OK,
        &views::HookSecret { secret: row.secret },
    ))
}

/// `POST /hooks/{id}/secret/rotate`.
#[utoipa::path(
    post,
    path = "/api/v1/hooks/{id}/secret/rotate",
    operation_id = "rotate_hook_secret",
    tag = "hooks",
    summary = "Give a hook a new generated secret; deliveries from now on are signed with it",
    params(("id" = String, Path, description = "The hook id (`hook_...`)")),
    responses(
        (status = 200, description = "The new secret", body = views::HookSecret),
        (status = 404, description = "No such hook", body = ErrorBody),
    )
)]
pub(crate) async fn rotate(state: &AppState, call: Call) -> Result<Response<Body>, ApiError> {
    let row = find(state, &call.param).await?;
    let row = state.app.rotate_hook_secret(&row.id).await?;
    Ok(json_response(
        StatusCode::OK,
        &views::HookSecret { secret: row.secret },
    ))
}

/// A page of deliveries with their attempts.
async fn deliveries(
    state: &AppState,
    call: &Call,
    hook_id: Option<&str>,
    run_id: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let (limit, cursor) = call.page(|c| c.starts_with("dlv_") && c.len() < 128)?;
    let page = state
        .store()
        .list_deliveries(hook_id, run_id, cursor.as_deref(), limit)
        .await?;
    let ids = page.items.iter().map(|d| d.id.clone()).collect();
    let attempts = state.store().delivery_attempts(ids).await?;
    Ok(json_response(
        StatusCode::OK,
        &views::DeliveryPage {
            data: page
                .items
                .iter()
                .map(|d| views::delivery(d, &attempts))
                .collect(),
            next_cursor: page.next_cursor,
        },
    ))
}

/// `GET /hooks/{id}/deliveries`.
#[utoipa::path(
    get,
    path = "/api/v1/hooks/{id}/deliveries",
    operation_id = "list_hook_deliveries",
    tag = "hooks",
    summary = "A hook's deliveries with every attempt, newest first",
    params(("id" = String, Path, description = "The hook id (`hook_...`)"), bodies::DeliveryPageParams),
    responses(
        (status = 200, description = "A page of deliveries", body = views::DeliveryPage),
        (status = 404, description = "No such hook", body = ErrorBody),
    )
)]
pub(crate) async fn hook_deliveries(
    state: &AppState,
    call: Call,
) -> Result<Response<Body>, ApiError> {
    let row = find(state, &call.param).await?;
    deliveries(state, &call, Some(&row.id), None).await
}

/// `GET /runs/{id}/deliveries`.
#[utoipa::path(
    get,
    path = "/api/v1/runs/{id}/deliveries",
    operation_id = "list_run_deliveries",
    tag = "hooks",
    summary = "The deliveries a run's events caused, with every attempt, newest first",
    params(("id" = String, Path, description = "The run id (`run_...`)"), bodies::DeliveryPageParams),
    responses(
        (status = 200, description = "A page of deliveries", body = views::DeliveryPage),
        (status = 404, description = "No such run", body = ErrorBody),
    )
)]
pub(crate) async fn run_deliveries(
    state: &AppState,
    call: Call,
) -> Result<Response<Body>, ApiError> {
    let not_found = || ApiError::not_found(format!("run {} not found", call.param));
    if !is_valid_id(IdKind::Run, &call.param) {
        return Err(not_found());
    }
    let run = state
        .store()
        .get_run(&call.param)
        .await?
        .ok_or_else(not_found)?;
    deliveries(state, &call, None, Some(&run.id)).await
}

/// `POST /deliveries/{id}/retry`.
#[utoipa::path(
    post,
    path = "/api/v1/deliveries/{id}/retry",
    operation_id = "retry_delivery",
    tag = "hooks",
    summary = "Send a delivery again now, with the same webhook-id",
    params(("id" = String, Path, description = "The delivery id (`dlv_...`)")),
    responses(
        (status = 200, description = "The delivery, due now", body = views::DeliveryView),
        (status = 404, description = "No such delivery", body = ErrorBody),
    )
)]
pub(crate) async fn retry(state: &AppState, call: Call) -> Result<Response<Body>, ApiError> {
    if !call.param.starts_with("dlv_") || call.param.len() > 128 {
        return Err(ApiError::not_found(format!(
            "delivery {} not found",
            call.param
        )));
    }
    let row = state.app.retry_delivery(&call.param).await?;
    let attempts = state
        .store()
        .delivery_attempts(vec![row.id.clone()])
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &views::delivery(&row, &attempts),
    ))
}
