//! Runs: start one through the API, read, list.

use http::{Response, StatusCode};
use serde_json::{Value, json};
use triggerd_domain::ids::{IdKind, is_valid_id, new_id};
use triggerd_domain::run::RunStatus;
use triggerd_storage::{NewRun, RunFilter};

use super::workflows::{deployment_definition, find_deployment};
use super::{Call, list_response, views};
use crate::{ApiError, AppState, Body, json_response, now_micros};

/// `POST /runs` `{deployment_id, input}`: validated like a webhook's input.
pub(super) async fn create(state: &AppState, call: Call) -> Result<Response<Body>, ApiError> {
    let body = call.object()?;
    if let Some(key) = body
        .keys()
        .find(|k| !["deployment_id", "input", "hooks"].contains(&k.as_str()))
    {
        return Err(ApiError::bad_request(format!(
            "unknown field \"{key}\": a run takes deployment_id and input"
        )));
    }
    if body.get("hooks").is_some_and(|h| !h.is_null()) {
        return Err(ApiError::bad_request(
            "run-scoped hooks are not available in this version",
        ));
    }
    let Some(deployment_id) = body.get("deployment_id").and_then(Value::as_str) else {
        return Err(ApiError::bad_request("deployment_id is required"));
    };
    let input = match body.get("input") {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(map)) => map.clone(),
        Some(_) => return Err(ApiError::bad_request("input must be a JSON object")),
    };
    let deployment = find_deployment(state, deployment_id).await?;
    let (version, definition) = deployment_definition(state, &deployment).await?;
    let input = definition
        .inputs
        .validate(input)
        .map_err(ApiError::invalid_input)?;
    let run_id = new_id(IdKind::Run);
    let now = now_micros();
    state
        .store
        .create_run(NewRun {
            id: run_id.clone(),
            deployment_id: deployment.id.clone(),
            workflow: deployment.workflow.clone(),
            workflow_version: version.version,
            trigger_id: None,
            source: "api".to_owned(),
            status: RunStatus::Pending.as_str().to_owned(),
            input: Value::Object(input).to_string(),
            trigger_input: "null".to_owned(),
            context: "{}".to_owned(),
            step_executions: "[]".to_owned(),
            final_output: None,
            created_at: now,
            started_at: None,
            finished_at: None,
        })
        .await?;
    Ok(json_response(
        StatusCode::CREATED,
        &json!({"run_id": run_id, "status": "pending"}),
    ))
}

/// `GET /runs/{id}`.
pub(super) async fn get(state: &AppState, call: Call) -> Result<Response<Body>, ApiError> {
    let not_found = || ApiError::not_found(format!("run {} not found", call.param));
    if !is_valid_id(IdKind::Run, &call.param) {
        return Err(not_found());
    }
    let row = state
        .store
        .get_run(&call.param)
        .await?
        .ok_or_else(not_found)?;
    Ok(json_response(StatusCode::OK, &views::run(&row)))
}

/// `POST /runs/{id}/cancel`: a pending, running or waiting run becomes `cancelled`; 409 when it
/// already finished.
pub(super) async fn cancel(state: &AppState, call: Call) -> Result<Response<Body>, ApiError> {
    if !is_valid_id(IdKind::Run, &call.param) {
        return Err(ApiError::not_found(format!("run {} not found", call.param)));
    }
    let row = state.store.cancel_run(&call.param, now_micros()).await?;
    tracing::info!(run_id = %row.id, "run cancelled");
    Ok(json_response(StatusCode::OK, &views::run(&row)))
}

/// `GET /runs?deployment_id=&trigger_id=&status=&limit=&cursor=`, newest first.
pub(super) async fn list(state: &AppState, call: Call) -> Result<Response<Body>, ApiError> {
    let (limit, cursor) = call.page(|c| is_valid_id(IdKind::Run, c))?;
    let status = match call.query_str("status") {
        None | Some("") => None,
        Some(s) => match s.parse::<RunStatus>() {
            Ok(status) => Some(status.as_str().to_owned()),
            Err(_) => {
                return Err(ApiError::bad_request(format!(
                    "unknown status \"{s}\": expected pending, running, waiting, completed, failed or cancelled"
                )));
            }
        },
    };
    let filter = RunFilter {
        deployment_id: call
            .query_str("deployment_id")
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        trigger_id: call
            .query_str("trigger_id")
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        status,
    };
    let page = state
        .store
        .list_runs(filter, cursor.as_deref(), limit)
        .await?;
    Ok(list_response(
        page.items.iter().map(views::run).collect(),
        page.next_cursor,
    ))
}
