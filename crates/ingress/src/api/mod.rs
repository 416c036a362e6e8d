//! The management API under `/api/v1` (SPEC 3): routing, admin-token authentication, body and
//! query parsing. One module per group of routes; JSON views of stored rows in [`views`].

pub(crate) mod context;
pub(crate) mod hooks;
pub(crate) mod runs;
pub(crate) mod triggers;
pub mod views;
pub(crate) mod workflows;

use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use serde_json::Value;
use triggerd_domain::ids::verify_token_hash;

use crate::{ApiError, AppState, Body, error_response};

/// Default page size of lists.
pub const DEFAULT_LIMIT: usize = 50;
/// Largest page size of lists.
pub const MAX_LIMIT: usize = 200;

/// Every route of the API, with the methods each allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    Workflows,
    Deployments,
    Workflow,
    WorkflowVersions,
    WorkflowVersion,
    WorkflowDeployments,
    Deployment,
    DeploymentTriggers,
    DeploymentContext,
    Trigger,
    TriggerRotate,
    TriggerRequests,
    TriggerRequest,
    TriggerRequestReplay,
    TriggerTest,
    Runs,
    Run,
    RunCancel,
    RunDeliveries,
    Hooks,
    Hook,
    HookSecret,
    HookSecretRotate,
    HookDeliveries,
    DeliveryRetry,
}

impl Route {
    fn methods(self) -> &'static [Method] {
        match self {
            Route::Workflows | Route::WorkflowVersions | Route::WorkflowVersion => &[Method::GET],
            Route::Deployments => &[Method::GET],
            Route::Workflow => &[Method::GET, Method::PUT, Method::DELETE],
            Route::WorkflowDeployments
            | Route::TriggerRotate
            | Route::TriggerTest
            | Route::TriggerRequestReplay
            | Route::RunCancel
            | Route::HookSecretRotate
            | Route::DeliveryRetry => &[Method::POST],
            Route::RunDeliveries | Route::HookSecret | Route::HookDeliveries => &[Method::GET],
            Route::Hooks => &[Method::GET, Method::POST],
            Route::Hook => &[Method::GET, Method::DELETE],
            Route::Deployment => &[Method::GET, Method::DELETE],
            Route::TriggerRequests | Route::TriggerRequest | Route::Run => &[Method::GET],
            Route::DeploymentTriggers | Route::Runs => &[Method::GET, Method::POST],
            Route::Trigger => &[Method::GET, Method::PATCH, Method::DELETE],
            Route::DeploymentContext => &[Method::GET, Method::PATCH],
        }
    }
}

/// Every route under `/api/v1` (matchit syntax), in one table: the router is built from it and
/// the OpenAPI coverage test reads it.
pub(crate) const ROUTES: [(&str, Route); 25] = [
    ("/api/v1/workflows", Route::Workflows),
    ("/api/v1/deployments", Route::Deployments),
    ("/api/v1/workflows/{name}/versions", Route::WorkflowVersions),
    (
        "/api/v1/workflows/{name}/versions/{version}",
        Route::WorkflowVersion,
    ),
    ("/api/v1/workflows/{name}", Route::Workflow),
    (
        "/api/v1/workflows/{name}/deployments",
        Route::WorkflowDeployments,
    ),
    ("/api/v1/deployments/{id}", Route::Deployment),
    (
        "/api/v1/deployments/{id}/triggers",
        Route::DeploymentTriggers,
    ),
    ("/api/v1/deployments/{id}/context", Route::DeploymentContext),
    ("/api/v1/triggers/{id}", Route::Trigger),
    ("/api/v1/triggers/{id}/rotate", Route::TriggerRotate),
    ("/api/v1/triggers/{id}/requests", Route::TriggerRequests),
    (
        "/api/v1/triggers/{id}/requests/{request_id}",
        Route::TriggerRequest,
    ),
    (
        "/api/v1/triggers/{id}/requests/{request_id}/replay",
        Route::TriggerRequestReplay,
    ),
    ("/api/v1/triggers/{id}/test", Route::TriggerTest),
    ("/api/v1/runs/{id}/cancel", Route::RunCancel),
    ("/api/v1/runs", Route::Runs),
    ("/api/v1/runs/{id}", Route::Run),
    ("/api/v1/runs/{id}/deliveries", Route::RunDeliveries),
    ("/api/v1/hooks", Route::Hooks),
    ("/api/v1/hooks/{id}", Route::Hook),
    ("/api/v1/hooks/{id}/secret", Route::HookSecret),
    ("/api/v1/hooks/{id}/secret/rotate", Route::HookSecretRotate),
    ("/api/v1/hooks/{id}/deliveries", Route::HookDeliveries),
    ("/api/v1/deliveries/{id}/retry", Route::DeliveryRetry),
];

/// The routes of [`ROUTES`] with the methods each allows.
#[cfg(test)]
pub(crate) fn routes() -> impl Iterator<Item = (&'static str, &'static [Method])> {
    ROUTES.iter().map(|(path, route)| (*path, route.methods()))
}

fn router() -> &'static matchit::Router<Route> {
    static ROUTER: std::sync::OnceLock<matchit::Router<Route>> = std::sync::OnceLock::new();
    ROUTER.get_or_init(|| {
        let mut r = matchit::Router::new();
        for (path, route) in ROUTES {
            // The table above is static; a conflict is a programming error caught by the tests.
            if let Err(e) = r.insert(path, route) {
                tracing::error!(%path, error = %e, "route conflict");
            }
        }
        r
    })
}

/// A parsed API request: the route's path parameter, the query, the body.
pub(crate) struct Call {
    pub param: String,
    /// The second path parameter, for routes that have one.
    pub param2: String,
    pub query: serde_json::Map<String, Value>,
    pub body: Option<Value>,
    /// This call's `X-Request-Id`.
    pub request_id: String,
    /// The caller's address.
    pub remote: std::net::SocketAddr,
    /// What a large body holds of the memory budget while the call is handled.
    pub _charge: triggerd_app::memory::Charge,
}

/// Handles one request under `/api/v1`.
pub async fn handle(
    state: &AppState,
    remote: std::net::SocketAddr,
    req: Request<Incoming>,
    request_id: &str,
) -> Response<Body> {
    match dispatch(state, remote, req, request_id).await {
        Ok(response) => response,
        Err(e) => error_response(&e),
    }
}

async fn dispatch(
    state: &AppState,
    remote: std::net::SocketAddr,
    req: Request<Incoming>,
    request_id: &str,
) -> Result<Response<Body>, ApiError> {
    authenticate(state, req.headers())?;
    let path = req.uri().path().trim_end_matches('/');
    let matched = router()
        .at(path)
        .map_err(|_| ApiError::not_found(format!("no route for {}", req.uri().path())))?;
    let route = *matched.value;
    let mut params = matched.params.iter().map(|(_, v)| v.to_owned());
    let param = params.next().unwrap_or_default();
    let param2 = params.next().unwrap_or_default();
    let method = req.method().clone();
    if !route.methods().contains(&method) {
        let allow: Vec<&str> = route.methods().iter().map(Method::as_str).collect();
        return Err(ApiError::method_not_allowed(allow.join(", ")));
    }
    let query =
        triggerd_domain::mapping::parse_urlencoded(req.uri().query().unwrap_or("").as_bytes());
    let (body, charge) = if matches!(method, Method::POST | Method::PUT | Method::PATCH) {
        read_json(state, req).await?
    } else {
        (None, triggerd_app::memory::Charge::none())
    };
    let call = Call {
        param,
        param2,
        query,
        body,
        request_id: request_id.to_owned(),
        remote,
        _charge: charge,
    };
    match (route, method) {
        (Route::Workflows, _) => workflows::list(state, call).await,
        (Route::WorkflowVersions, _) => workflows::versions(state, call).await,
        (Route::WorkflowVersion, _) => workflows::version(state, call).await,
        (Route::Deployments, _) => workflows::list_deployments(state, call).await,
        (Route::Workflow, Method::PUT) => workflows::put(state, call).await,
        (Route::Workflow, Method::DELETE) => workflows::delete(state, call).await,
        (Route::Deployment, Method::DELETE) => workflows::delete_deployment(state, call).await,
        (Route::Workflow, _) => workflows::get(state, call).await,
        (Route::WorkflowDeployments, _) => workflows::deploy(state, call).await,
        (Route::Deployment, _) => workflows::get_deployment(state, call).await,
        (Route::DeploymentContext, Method::PATCH) => context::patch(state, call).await,
        (Route::DeploymentContext, _) => context::get(state, call).await,
        (Route::DeploymentTriggers, Method::POST) => triggers::create(state, call).await,
        (Route::DeploymentTriggers, _) => triggers::list(state, call).await,
        (Route::Trigger, Method::PATCH) => triggers::patch(state, call).await,
        (Route::Trigger, Method::DELETE) => triggers::delete(state, call).await,
        (Route::Trigger, _) => triggers::get(state, call).await,
        (Route::TriggerRotate, _) => triggers::rotate(state, call).await,
        (Route::TriggerRequests, _) => triggers::requests(state, call).await,
        (Route::TriggerRequest, _) => triggers::request(state, call).await,
        (Route::TriggerRequestReplay, _) => crate::replay::replay(state, call).await,
        (Route::TriggerTest, _) => triggers::test(state, call).await,
        (Route::RunCancel, _) => runs::cancel(state, call).await,
        (Route::Runs, Method::POST) => runs::create(state, call).await,
        (Route::Runs, _) => runs::list(state, call).await,
        (Route::Run, _) => runs::get(state, call).await,
        (Route::RunDeliveries, _) => hooks::run_deliveries(state, call).await,
        (Route::Hooks, Method::POST) => hooks::create(state, call).await,
        (Route::Hooks, _) => hooks::list(state, call).await,
        (Route::Hook, Method::DELETE) => hooks::delete(state, call).await,
        (Route::Hook, _) => hooks::get(state, call).await,
        (Route::HookSecret, _) => hooks::secret(state, call).await,
        (Route::HookSecretRotate, _) => hooks::rotate(state, call).await,
        (Route::HookDeliveries, _) => hooks::hook_deliveries(state, call).await,
        (Route::DeliveryRetry, _) => hooks::retry(state, call).await,
    }
}

/// Checks `Authorization: Bearer <admin token>` against the stored hash (constant time).
fn authenticate(state: &AppState, headers: &http::HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::unauthorized(
            "missing API token: send Authorization: Bearer <token>",
        ));
    };
    // Exactly `Bearer <token>`: one space, a token without whitespace.
    let token = value
        .to_str()
        .map_err(|_| malformed_authorization("it is not plain ASCII text"))?;
    let Some(token) = token.strip_prefix("Bearer ") else {
        return Err(malformed_authorization(&match token.split_once(' ') {
            None => "it holds no scheme (the word Bearer and a space before the token)".to_owned(),
            Some((scheme, _)) => format!("its scheme is {scheme:?}, not \"Bearer\""),
        }));
    };
    if token.is_empty() || token.contains(char::is_whitespace) {
        return Err(malformed_authorization(
            "the token after \"Bearer \" is empty or holds whitespace",
        ));
    }
    if verify_token_hash(token, &state.config.admin_token_hash) {
        Ok(())
    } else {
        Err(ApiError::unauthorized("wrong API token"))
    }
}

/// 401 for an `Authorization` header that is there but not `Bearer <token>`, saying why.
fn malformed_authorization(why: &str) -> ApiError {
    ApiError::unauthorized(format!(
        "malformed Authorization header: {why}; send exactly Authorization: Bearer <token>"
    ))
}

/// Reads a JSON body: 415 unless it is JSON, 413 past the limit, 400 `malformed_json`, 408 when
/// it does not arrive within the body read timeout. A large body is charged against the memory
/// budget before it is parsed (its parsed value, and a handler's copies of it), and the charge
/// is held while the call is handled; 503 when the budget stays in use.
async fn read_json(
    state: &AppState,
    req: Request<Incoming>,
) -> Result<(Option<Value>, triggerd_app::memory::Charge), ApiError> {
    let limit = state.config.max_api_body_bytes;
    let length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if length.is_some_and(|n| n > limit) {
        return Err(ApiError::payload_too_large(limit));
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    let bytes =
        crate::deadlines::read_body(req.into_body(), limit, state.config.body_read_timeout).await?;
    if bytes.is_empty() {
        return Ok((None, triggerd_app::memory::Charge::none()));
    }
    match content_type.as_deref() {
        Some("application/json") => {}
        Some(ct) if ct.ends_with("+json") => {}
        _ => return Err(ApiError::unsupported_media_type()),
    }
    let charge = if bytes.len() as u64 >= triggerd_app::memory::UNCHARGED_BYTES {
        let cost = 4 * bytes.len() as u64 + 3 * triggerd_domain::memory::json_heap_bytes(&bytes);
        state
            .app
            .memory()
            .charge_capped(cost)
            .await
            .map_err(|refused| ApiError::memory(&refused))?
    } else {
        triggerd_app::memory::Charge::none()
    };
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| ApiError::malformed_json())?;
    if triggerd_domain::mapping::json_depth(&value) > triggerd_domain::mapping::MAX_JSON_DEPTH {
        return Err(ApiError::too_deep());
    }
    Ok((Some(value), charge))
}

impl Call {
    /// The body, required to be a JSON object.
    pub fn object(&self) -> Result<&serde_json::Map<String, Value>, ApiError> {
        match &self.body {
            Some(Value::Object(map)) => Ok(map),
            Some(_) => Err(ApiError::bad_request("the body must be a JSON object")),
            None => Err(ApiError::bad_request("a JSON object body is required")),
        }
    }

    /// The body as an object, or an empty one when there is no body (or a JSON `null`).
    pub fn object_or_empty(&self) -> Result<serde_json::Map<String, Value>, ApiError> {
        match &self.body {
            None | Some(Value::Null) => Ok(serde_json::Map::new()),
            Some(_) => self.object().cloned(),
        }
    }

    /// A query parameter as text.
    pub fn query_str(&self, key: &str) -> Option<&str> {
        match self.query.get(key) {
            Some(Value::String(s)) => Some(s.as_str()),
            Some(Value::Array(items)) => items.last().and_then(Value::as_str),
            _ => None,
        }
    }

    /// `limit` (default 50, at most 200) and `cursor`, validated with `valid_cursor`.
    pub fn page(
        &self,
        valid_cursor: impl Fn(&str) -> bool,
    ) -> Result<(usize, Option<String>), ApiError> {
        let limit = match self.query_str("limit") {
            None => DEFAULT_LIMIT,
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "limit must be a whole number from 1 to {MAX_LIMIT}"
                    )));
                }
            },
        };
        let cursor = match self.query_str("cursor") {
            None | Some("") => None,
            Some(c) if valid_cursor(c) => Some(c.to_owned()),
            Some(_) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_cursor",
                    "unknown cursor: pass the next_cursor of a previous page",
                ));
            }
        };
        Ok((limit, cursor))
    }
}

/// A JSON number that is a whole number (`2` or `2.0`, as for inputs), as an integer.
pub(crate) fn whole_number(v: &Value) -> Option<i64> {
    triggerd_domain::inputs::whole_number(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_registered_and_matches() {
        let r = router();
        assert_eq!(
            *r.at("/api/v1/workflows/orders").unwrap().value,
            Route::Workflow
        );
        assert_eq!(
            *r.at("/api/v1/workflows/orders/deployments").unwrap().value,
            Route::WorkflowDeployments
        );
        assert_eq!(
            *r.at("/api/v1/triggers/trg_1/rotate").unwrap().value,
            Route::TriggerRotate
        );
        assert_eq!(*r.at("/api/v1/runs").unwrap().value, Route::Runs);
        assert_eq!(*r.at("/api/v1/runs/run_1").unwrap().value, Route::Run);
        assert!(r.at("/api/v1/nothing").is_err());
    }
}
