//! Workflows and deployments.

use http::{Response, StatusCode};
use serde_json::Value;
use triggerd_domain::Problem;
use triggerd_domain::definition::is_workflow_name;
use triggerd_domain::ids::{IdKind, is_valid_id};
use triggerd_domain::inputs::is_valid_name;

use super::{Call, views};
use crate::openapi::{ErrorBody, bodies};
use crate::respond::no_content;
use crate::{ApiError, AppState, Body, json_response};

/// `PUT /workflows/{name}`: a new version unless identical to the latest.
#[utoipa::path(
    put,
    path = "/api/v1/workflows/{name}",
    operation_id = "put_workflow",
    tag = "workflows",
    summary = "Create or update a workflow definition",
    params(("name" = String, Path, description = "The workflow's name", pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")),
    request_body = bodies::Definition,
    responses(
        (status = 200, description = "The workflow at its newest version; `created` is false when the definition was identical to the latest (no new version); `warnings` lists what is valid but likely to fail at run time (left out when none)", body = views::WorkflowPut),
        (status = 400, description = "Bad workflow name, body not JSON or not an object", body = ErrorBody),
        (status = 422, description = "The definition is invalid (`invalid_definition`); `details` lists each problem", body = ErrorBody),
    )
)]
pub(crate) async fn put(state: &AppState, call: Call) -> Result<Response<Body>, ApiError> {
    let name = call.param.clone();
    if !is_workflow_name(&name) {
        return Err(ApiError::bad_request(
            "workflow names use letters, digits, `.`, `_` and `-`, starting with a letter or digit",
        ));
    }
    let put = state
        .app
        .put_workflow(&name, call.object()?.clone())
        .await?;
    let synced = put.synced.iter().map(views::declared_sync).collect();
    let created = put.created;
    // The workflow row for its times and latest version; the version shown is the one THIS
    // definition was stored as (or the identical latest), not whatever is latest by now.
    let (row, _) = state
        .store()
        .get_workflow(&name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("workflow {name} not found")))?;
    let view = views::WorkflowPut {
        workflow: views::workflow(&row, &put.version),
        created,
        declared_triggers: synced,
        hooks: put.hooks.iter().map(|h| views::hook(h, false)).collect(),
        warnings: put.warnings.iter().map(views::definition_warning).collect(),
    };
    Ok(json_response(StatusCode::OK, &view))
}

/// `GET /workflows/{name}`: the latest version.
#[utoipa::path(
    get,
    path = "/api/v1/workflows/{name}",
    operation_id = "get_workflow",
    tag = "workflows",
    summary = "Read a workflow at its latest version",
    params(("name" = String, Path, description = "The workflow's name", pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")),
    responses(
        (status = 200, description = "The workflow", body = views::WorkflowView),
        (status = 404, description = "No such workflow", body = ErrorBody),
    )
)]
pub(crate) async fn get(state: &AppState, call: Call) -> Result<Response<Body>, ApiError> {
    let (row, latest) = state
        .store()
        .get_workflow(&call.param)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("workflow {} not found", call.param)))?;
    Ok(json_response(
        StatusCode::OK,
        &views::workflow(&row, &latest),
    ))
}

/// `GET /workflows`: by name.
#[utoipa::path(
    get,
    path = "/api/v1/workflows",
    operation_id = "list_workflows",
    tag = "workflows",
    summary = "List workflows by name",
    params(bodies::WorkflowPageParams),
    responses(
        (status = 200, description = "A page of workflows", body = views::WorkflowPage),
        (status = 400, description = "Bad `limit` (`bad_request`) or unknown `cursor` (`invalid_cursor`)", body = ErrorBody),
    )
)]
pub(crate) async fn list(state: &AppState, call: Call) -> Result<Response<Body>, ApiError> {
    let (limit, cursor) = call.page(is_workflow_name)?;
    let page = state
        .store()
        .list_workflows(cursor.as_deref(), limit)
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &views::WorkflowPage {
            data: page.items.iter().map(views::workflow_summary).collect(),
            next_cursor: page.next_cursor,
        },
    ))
}

/// `GET /workflows/{name}/versions`: newest first; the cursor is a version number.
#[utoipa::path(
    get,
    path = "/api/v1/workflows/{name}/versions",
    operation_id = "list_workflow_versions",
    tag = "workflows",
    summary = "List a workflow's versions, newest first",
    params(("name" = String, Path, description = "The workflow's name", pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"), bodies::VersionPageParams),
    responses(
        (status = 200, description = "A page of versions", body = views::WorkflowVersionPage),
        (status = 404, description = "No such workflow", body = ErrorBody),
        (status = 400, description = "Bad `limit` (`bad_request`) or unknown `cursor` (`invalid_cursor`)", body = ErrorBody),
    )
)]
pub(crate) async fn versions(state: &AppState, call: Call) -> Result<Response<Body>, ApiError> {
    let (limit, cursor) = call.page(|c| c.parse::<i64>().is_ok_and(|v| v > 0))?;
    let before = cursor.and_then(|c| c.parse::<i64>().ok());
    let (rows, next) = state
        .store()
        .list_workflow_versions(&call.param, before, limit)
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &views::WorkflowVersionPage {
            data: rows.iter().map(views::workflow_version).collect(),
            next_cursor: next.map(|v| v.to_string()),
        },
    ))
}

/// `GET /workflows/{name}/versions/{version}`.
#[utoipa::path(
    get,
    path = "/api/v1/workflows/{name}/versions/{version}",
    operation_id = "get_workflow_version",
    tag = "workflows",
    summary = "Read one version of a workflow",
    params(("name" = String, Path, description = "The workflow's name", pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"), ("version" = i64, Path, description = "The version number")),
    responses(
        (status = 200, description = "The workflow at that version", body = views::WorkflowView),
        (status = 404, description = "No such workflow or version", body = ErrorBody),
    )
)]
pub(crate) async fn version(state: &AppState, call: Call) -> Result<Response<Body>, ApiError> {
    let not_found = || {
        ApiError::not_found(format!(
            "version {} of workflow {} not found",
            call.param2, call.param
        ))
    };
    let number = call.param2.parse::<i64>().map_err(|_| not_found())?;
    let (row, _) = state
        .store()
        .get_workflow(&call.param)
        .await?
        .ok_or_else(not_found)?;
    let version = state
        .store()
        .get_workflow_version(&call.param, number)
        .await?
        .ok_or_else(not_found)?;
    Ok(json_response(
        StatusCode::OK,
        &views::workflow(&row, &version),
    ))
}

/// `DELETE /workflows/{name}`: 409 while deployments exist.
#[utoipa::path(
    delete,
    path = "/api/v1/workflows/{name}",
    operation_id = "delete_workflow",
    tag = "workflows",
    summary = "Delete a workflow and all its versions",
    params(("name" = String, Path, description = "The workflow's name", pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such workflow", body = ErrorBody),
        (status = 409, description = "The workflow still has deployments (`conflict`)", body = ErrorBody),
    )
)]
pub(crate) async fn delete(state: &AppState, call: Call) -> Result<Response<Body>, ApiError> {
    state.app.delete_workflow(&call.param).await?;
    Ok(no_content())
}

/// `GET /deployments`: newest first.
#[utoipa::path(
    get,
    path = "/api/v1/deployments",
    operation_id = "list_deployments",
    tag = "deployments",
    summary = "List deployments, newest first",
    params(bodies::DeploymentPageParams),
    responses(
        (status = 200, description = "A page of deployments", body = views::DeploymentPage),
        (status = 400, description = "Bad `limit` (`bad_request`) or unknown `cursor` (`invalid_cursor`)", body = ErrorBody),
    )
)]
pub(crate) async fn list_deployments(
    state: &AppState,
    call: Call,
) -> Result<Response<Body>, ApiError> {
    let (limit, cursor) = call.page(|c| is_valid_id(IdKind::Deployment, c))?;
    let page = state
        .store()
        .list_deployments(cursor.as_deref(), limit)
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &views::DeploymentPage {
            data: page.items.iter().map(views::deployment).collect(),
            next_cursor: page.next_cursor,
        },
    ))
}

/// `DELETE /deployments/{id}`: its triggers stop at once.
#[utoipa::path(
    delete,
    path = "/api/v1/deployments/{id}",
    operation_id = "delete_deployment",
    tag = "deployments",
    summary = "Delete a deployment; its triggers stop at once",
    params(("id" = String, Path, description = "The deployment id (`dep_...`)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such deployment", body = ErrorBody),
    )
)]
pub(crate) async fn delete_deployment(
    state: &AppState,
    call: Call,
) -> Result<Response<Body>, ApiError> {
    state.app.delete_deployment(&call.param).await?;
    Ok(no_content())
}

/// `POST /workflows/{name}/deployments` `{name, version?}`.
#[utoipa::path(
    post,
    path = "/api/v1/workflows/{name}/deployments",
    operation_id = "create_deployment",
    tag = "deployments",
    summary = "Deploy a workflow",
    params(("name" = String, Path, description = "The workflow's name", pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")),
    request_body = bodies::CreateDeployment,
    responses(
        (status = 201, description = "The deployment, with the declared triggers created for it", body = views::DeploymentCreated),
        (status = 400, description = "Bad body; `details` lists each problem", body = ErrorBody),
        (status = 404, description = "No such workflow or version", body = ErrorBody),
        (status = 409, description = "The deployment name is taken for this workflow (`conflict`)", body = ErrorBody),
    )
)]
pub(crate) async fn deploy(state: &AppState, call: Call) -> Result<Response<Body>, ApiError> {
    let body = call.object()?;
    let mut problems = Vec::new();
    let name = match body.get("name").and_then(Value::as_str) {
        Some(n) if is_valid_name(n) => n.to_owned(),
        _ => {
            problems.push(Problem::new(
                "name",
                "is required: letters, digits, `_` and `-` (1 to 64 characters), e.g. \"production\"",
            ));
            String::new()
        }
    };
    let pinned_version = match body.get("version") {
        None | Some(Value::Null) => None,
        Some(v) => match super::whole_number(v) {
            Some(n) if n >= 1 => Some(n),
            _ => {
                problems.push(Problem::new(
                    "version",
                    "must be a version number (1 or more), or left out to track the latest",
                ));
                None
            }
        },
    };
    if let Some(key) = body
        .keys()
        .find(|k| !["name", "version"].contains(&k.as_str()))
    {
        problems.push(Problem::new(
            key.as_str(),
            "unknown field: a deployment has name and version",
        ));
    }
    if !problems.is_empty() {
        return Err(
            ApiError::problems("bad_request", "the deployment", problems)
                .with_status(StatusCode::BAD_REQUEST),
        );
    }
    let (row, report) = state.app.deploy(&call.param, &name, pinned_version).await?;
    let view = views::DeploymentCreated {
        deployment: views::deployment(&row),
        triggers: report
            .created
            .iter()
            .map(|t| {
                let generated = report.generated_for(t.name.as_deref().unwrap_or_default());
                views::trigger_with_keys(t, state.app.public_url(), &generated)
            })
            .collect(),
    };
    Ok(json_response(StatusCode::CREATED, &view))
}

/// `GET /deployments/{id}`.
#[utoipa::path(
    get,
    path = "/api/v1/deployments/{id}",
    operation_id = "get_deployment",
    tag = "deployments",
    summary = "Read a deployment",
    params(("id" = String, Path, description = "The deployment id (`dep_...`)")),
    responses(
        (status = 200, description = "The deployment", body = views::DeploymentView),
        (status = 404, description = "No such deployment", body = ErrorBody),
    )
)]
pub(crate) async fn get_deployment(
    state: &AppState,
    call: Call,
) -> Result<Response<Body>, ApiError> {
    let row = state.app.deployment(&call.param).await?;
    Ok(json_response(StatusCode::OK, &views::deployment(&row)))
}
