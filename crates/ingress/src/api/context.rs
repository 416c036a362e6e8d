//! The deployment context store: `GET`/`PATCH /deployments/{id}/context` (SPEC 3). String keys
//! to JSON values; a PATCH with `null` deletes a key. Runs read it as the `context` root.

use http::{Response, StatusCode};
use serde_json::{Map, Value};

use super::Call;
use super::workflows::find_deployment;
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
pub(super) async fn get(state: &AppState, call: Call) -> Result<Response<Body>, ApiError> {
    let deployment = find_deployment(state, &call.param).await?;
    let pairs = state.store.get_context(&deployment.id).await?;
    Ok(json_response(StatusCode::OK, &object(pairs)))
}

/// `PATCH /deployments/{id}/context` `{key: value | null, ...}`: sets and deletes keys in one
/// transaction; answers the whole store after the change.
pub(super) async fn patch(state: &AppState, call: Call) -> Result<Response<Body>, ApiError> {
    let deployment = find_deployment(state, &call.param).await?;
    let body = call.object()?;
    let mut changes = Vec::with_capacity(body.len());
    for (key, value) in body {
        if key.is_empty() || key.chars().count() > MAX_KEY_CHARS {
            return Err(ApiError::bad_request(format!(
                "context keys have 1 to {MAX_KEY_CHARS} characters"
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
