//! The deployment context store: `GET`/`PATCH /deployments/{id}/context` (SPEC 3). String keys
//! to JSON values; a PATCH with `null` deletes a key. Runs read it as the `context` root.

use http::{Response, StatusCode};
use serde_json::{Map, Value};

use super::Call;
use super::workflows::find_deployment;
use crate::openapi::{ErrorBody, bodies};
use crate::{ApiError, AppState, Body, json_response, now_micros};

/// Longest key.
const MAX_KEY_CHARS: usize = 128;
/// Largest value, as JSON text.
const MAX_VALUE_BYTES: usize = 64 * 1024;

fn object(pairs: Vec<(String, String)>) -> Value {
    let mut map = Map::with_capacity(pairs.len());
    for (key, value) in pairs {
        map.insert(key, serde_json::from_str(&value).unwrap_or(Value::Null));
    }
    Value::Object(map)
}

/// `GET /deployments/{id}/context`: the whole store as one object.
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
    let deployment = find_deployment(state, &call.param).await?;
    let pairs = state.store.get_context(&deployment.id).await?;
    Ok(json_response(StatusCode::OK, &object(pairs)))
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
    let deployment = find_deployment(state, &call.param).await?;
    let body = call.object()?;
    let mut changes = Vec::with_capacity(body.len());
    for (key, value) in body {
        // No control characters: PostgreSQL text cannot hold NUL, and a key is a name for people
        // and templates (`{{ context.key }}`) alike.
        if key.is_empty()
            || key.chars().count() > MAX_KEY_CHARS
            || key.chars().any(char::is_control)
        {
            return Err(ApiError::bad_request(format!(
                "context keys have 1 to {MAX_KEY_CHARS} characters and no control characters"
            )));
        }
        let text = match value {
            Value::Null => None,
            other => {
                let text = other.to_string();
                if text.len() > MAX_VALUE_BYTES {
                    return Err(ApiError::bad_request(format!(
                        "the value of \"{key}\" is {} bytes of JSON; the limit is {MAX_VALUE_BYTES}",
                        text.len()
                    )));
                }
                Some(text)
            }
        };
        changes.push((key.clone(), text));
    }
    let pairs = state
        .store
        .patch_context(&deployment.id, changes, now_micros())
        .await?;
    Ok(json_response(StatusCode::OK, &object(pairs)))
}
