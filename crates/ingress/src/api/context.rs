//! The deployment context store: `GET`/`PATCH /deployments/{id}/context` (SPEC 3). String keys
//! to JSON values; a PATCH with `null` deletes a key. Runs read it as the `context` root.

use http::{Response, StatusCode};

use super::Call;
use crate::openapi::{ErrorBody, bodies};
use crate::{ApiError, AppState, Body, json_response};

#[utoipa::path(
    get,
    path = "/api/v1/deployments/{id}/context",
    operation_id = "get_context",
    tag = "deployments",
    summary = "Read the deployment's context store",
    params(("id" = String, Path, description = "The deployment id (`dep_...`)")),
    responses(
        (status = 200, description = "The whole store: key to JSON value", body = Object),
        (status = 404, description = "No such deployment", body = ErrorBody),
    )
)]
pub(crate) async fn get(state: &AppState, call: Call) -> Result<Response<Body>, ApiError> {
    let deployment = state.app.deployment(&call.param).await?;
    let context = state.app.context(&deployment.id).await?;
    Ok(json_response(StatusCode::OK, &context))
}

/// `PATCH /deployments/{id}/context` `{key: value | null, ...}`: sets and deletes keys in one
/// transaction; answers the whole store after the change.
#[utoipa::path(
    patch,
    path = "/api/v1/deployments/{id}/context",
    operation_id = "patch_context",
    tag = "deployments",
    summary = "Set and delete context keys in one transaction",
    params(("id" = String, Path, description = "The deployment id (`dep_...`)")),
    request_body(content = bodies::ContextPatch, description = "Keys to set; `null` deletes a key"),
    responses(
        (status = 200, description = "The whole store after the change", body = Object),
        (status = 400, description = "Bad key or value too large, or the body is not an object", body = ErrorBody),
        (status = 404, description = "No such deployment", body = ErrorBody),
    )
)]
pub(crate) async fn patch(state: &AppState, call: Call) -> Result<Response<Body>, ApiError> {
    let deployment = state.app.deployment(&call.param).await?;
    let changes = call.object()?.clone();
    let context = state.app.patch_context(&deployment.id, changes).await?;
    Ok(json_response(StatusCode::OK, &context))
}
