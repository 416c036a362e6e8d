//! Workflows and deployments.

use http::{Response, StatusCode};
use serde_json::{Value, json};
use triggerd_domain::Problem;
use triggerd_domain::definition::{Definition, is_workflow_name};
use triggerd_domain::ids::{IdKind, is_valid_id, new_id};
use triggerd_domain::inputs::is_valid_name;
use triggerd_storage::{DeploymentRow, NewDeployment, WorkflowVersionRow};

use super::{Call, list_response, views};
use crate::respond::no_content;
use crate::{ApiError, AppState, Body, json_response, now_micros};

/// `PUT /workflows/{name}`: a new version unless identical to the latest.
pub(super) async fn put(state: &AppState, call: Call) -> Result<Response<Body>, ApiError> {
    let name = call.param.clone();
    if !is_workflow_name(&name) {
        return Err(ApiError::bad_request(
            "workflow names use letters, digits, `.`, `_` and `-`, starting with a letter or digit",
        ));
    }
    let mut document = call.object()?.clone();
    match document.get("name") {
        None | Some(Value::Null) => {
            document.insert("name".into(), json!(name));
        }
        Some(Value::String(n)) if *n == name => {}
        Some(_) => {
            let problem = Problem::new(
                "name",
                format!("must match the name in the URL (\"{name}\")"),
            );
            return Err(ApiError::problems(
                "invalid_definition",
                "the definition",
                vec![problem],
            ));
        }
    }
    let definition = Definition::from_value(Value::Object(document))
        .map_err(|problems| ApiError::problems("invalid_definition", "the definition", problems))?;
    let text = definition.source().to_string();
    let (version, created) = state.store.put_workflow(&name, &text, now_micros()).await?;
    let mut synced = Vec::new();
    if created {
        // Deployments that track the latest version run the new one from now on, with its
        // declared triggers.
        state.cache.invalidate_all();
        tracing::info!(workflow = %name, version = version.version, "workflow version stored");
        for deployment in state.store.deployments_of_workflow(&name).await? {
            if deployment.pinned_version.is_none() {
                let report = super::declared::sync(state, &deployment, &definition).await?;
                if !report.is_empty() {
                    let mut changes = report.summary();
                    changes["deployment_id"] = json!(deployment.id);
                    synced.push(changes);
                }
            }
        }
    }
    let (row, latest) = state
        .store
        .get_workflow(&name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("workflow {name} not found")))?;
    let mut view = views::workflow(&row, &latest);
    view["created"] = json!(created);
    view["declared_triggers"] = json!(synced);
    Ok(json_response(StatusCode::OK, &view))
}

/// `GET /workflows/{name}`: the latest version.
pub(super) async fn get(state: &AppState, call: Call) -> Result<Response<Body>, ApiError> {
    let (row, latest) = state
        .store
        .get_workflow(&call.param)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("workflow {} not found", call.param)))?;
    Ok(json_response(
        StatusCode::OK,
        &views::workflow(&row, &latest),
    ))
}

/// `GET /workflows`: by name.
pub(super) async fn list(state: &AppState, call: Call) -> Result<Response<Body>, ApiError> {
    let (limit, cursor) = call.page(is_workflow_name)?;
    let page = state.store.list_workflows(cursor.as_deref(), limit).await?;
    Ok(list_response(
        page.items.iter().map(views::workflow_summary).collect(),
        page.next_cursor,
    ))
}

/// `GET /workflows/{name}/versions`: newest first; the cursor is a version number.
pub(super) async fn versions(state: &AppState, call: Call) -> Result<Response<Body>, ApiError> {
    let (limit, cursor) = call.page(|c| c.parse::<i64>().is_ok_and(|v| v > 0))?;
    let before = cursor.and_then(|c| c.parse::<i64>().ok());
    let (rows, next) = state
        .store
        .list_workflow_versions(&call.param, before, limit)
        .await?;
    let data = rows
        .iter()
        .map(|v| {
            json!({
                "version": v.version,
                "created_at": views::rfc3339(v.created_at),
                "definition": serde_json::from_str::<Value>(&v.definition).unwrap_or(Value::Null),
            })
        })
        .collect();
    Ok(list_response(data, next.map(|v| v.to_string())))
}

/// `GET /workflows/{name}/versions/{version}`.
pub(super) async fn version(state: &AppState, call: Call) -> Result<Response<Body>, ApiError> {
    let not_found = || {
        ApiError::not_found(format!(
            "version {} of workflow {} not found",
            call.param2, call.param
        ))
    };
    let number = call.param2.parse::<i64>().map_err(|_| not_found())?;
    let (row, _) = state
        .store
        .get_workflow(&call.param)
        .await?
        .ok_or_else(not_found)?;
    let version = state
        .store
        .get_workflow_version(&call.param, number)
        .await?
        .ok_or_else(not_found)?;
    Ok(json_response(
        StatusCode::OK,
        &views::workflow(&row, &version),
    ))
}

/// `DELETE /workflows/{name}`: 409 while deployments exist.
pub(super) async fn delete(state: &AppState, call: Call) -> Result<Response<Body>, ApiError> {
    state.store.delete_workflow(&call.param).await?;
    tracing::info!(workflow = %call.param, "workflow deleted");
    Ok(no_content())
}

/// `GET /deployments`: newest first.
pub(super) async fn list_deployments(
    state: &AppState,
    call: Call,
) -> Result<Response<Body>, ApiError> {
    let (limit, cursor) = call.page(|c| is_valid_id(IdKind::Deployment, c))?;
    let page = state
        .store
        .list_deployments(cursor.as_deref(), limit)
        .await?;
    Ok(list_response(
        page.items.iter().map(views::deployment).collect(),
        page.next_cursor,
    ))
}

/// `DELETE /deployments/{id}`: its triggers stop at once.
pub(super) async fn delete_deployment(
    state: &AppState,
    call: Call,
) -> Result<Response<Body>, ApiError> {
    let row = find_deployment(state, &call.param).await?;
    state.store.delete_deployment(&row.id).await?;
    state.cache.invalidate_all();
    tracing::info!(deployment_id = %row.id, "deployment deleted");
    Ok(no_content())
}

/// `POST /workflows/{name}/deployments` `{name, version?}`.
pub(super) async fn deploy(state: &AppState, call: Call) -> Result<Response<Body>, ApiError> {
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
        Some(v) => match v.as_i64() {
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
    let row = state
        .store
        .create_deployment(NewDeployment {
            id: new_id(IdKind::Deployment),
            workflow: call.param.clone(),
            name,
            pinned_version,
            now: now_micros(),
        })
        .await?;
    tracing::info!(deployment_id = %row.id, workflow = %row.workflow, name = %row.name, "deployment created");
    let (_, definition) = deployment_definition(state, &row).await?;
    let report = super::declared::sync(state, &row, &definition).await?;
    let mut view = views::deployment(&row);
    view["triggers"] = report
        .created
        .iter()
        .map(|t| views::trigger(t, &state.config.public_url))
        .collect();
    Ok(json_response(StatusCode::CREATED, &view))
}

/// `GET /deployments/{id}`.
pub(super) async fn get_deployment(
    state: &AppState,
    call: Call,
) -> Result<Response<Body>, ApiError> {
    let row = find_deployment(state, &call.param).await?;
    Ok(json_response(StatusCode::OK, &views::deployment(&row)))
}

/// The deployment `id`, or 404.
pub(super) async fn find_deployment(state: &AppState, id: &str) -> Result<DeploymentRow, ApiError> {
    if !is_valid_id(IdKind::Deployment, id) {
        return Err(ApiError::not_found(format!("deployment {id} not found")));
    }
    state
        .store
        .get_deployment(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("deployment {id} not found")))
}

/// The definition a deployment runs now: its pinned version, or the workflow's latest.
pub(super) async fn deployment_definition(
    state: &AppState,
    deployment: &DeploymentRow,
) -> Result<(WorkflowVersionRow, Definition), ApiError> {
    let version = match deployment.pinned_version {
        Some(v) => {
            state
                .store
                .get_workflow_version(&deployment.workflow, v)
                .await?
        }
        None => state
            .store
            .get_workflow(&deployment.workflow)
            .await?
            .map(|(_, latest)| latest),
    }
    .ok_or_else(|| {
        ApiError::not_found(format!(
            "workflow {} of deployment {} not found",
            deployment.workflow, deployment.id
        ))
    })?;
    let definition = Definition::from_json_str(&version.definition).map_err(|e| {
        tracing::error!(error = %e, workflow = %deployment.workflow, "stored definition does not parse");
        ApiError::internal()
    })?;
    Ok((version, definition))
}
