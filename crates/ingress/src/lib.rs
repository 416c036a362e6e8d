//! # triggerd-ingress
//!
//! The HTTP surface of triggerd: the webhook endpoints (`/api/webhooks/{token}[/{rest}]`), the
//! endpoints of parked runs (`/api/resume/{token}`, `/api/approvals/{token}[/approve|/reject]`:
//! [`waits`]), the management API under `/api/v1`, `/healthz` and `/metrics`. It parses requests, calls
//! `triggerd-app` for every write (and reads from the store directly), and renders views; it
//! never executes runs itself, holds no SQL and no business rule that cron or the workers would
//! need too.
//!
//! The webhook hot path is [`webhook`]: read it top to bottom. Its trigger lookups come from an
//! in-memory [`cache::TriggerCache`]; the write re-checks the token, so a stale cache can never
//! start a run for a rotated, removed or disabled token.
//!
//! ```no_run
//! # async fn example(store: triggerd_storage::Store) -> std::io::Result<()> {
//! use std::sync::Arc;
//! use triggerd_app::{App, SystemClock};
//! use triggerd_ingress::{AppState, IngressConfig};
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let app = App::new(store, Arc::new(SystemClock), "http://127.0.0.1:8080");
//! let config = IngressConfig::new(triggerd_domain::ids::hash_token("admin-token"));
//! let state = Arc::new(AppState::new(app, config));
//! triggerd_ingress::serve(listener, state, std::future::pending()).await;
//! # Ok(()) }
//! ```

// `ApiError` carries its message, details and headers inline: it is built only on refusals,
// where one extra copy does not matter, and boxing it would cost an allocation per refusal.
#![allow(clippy::result_large_err)]

pub mod api;
pub mod cache;
pub mod error;
pub mod metrics;
pub mod openapi;
mod respond;
pub mod waits;
pub mod webhook;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use triggerd_app::App;
use triggerd_domain::ids::{IdKind, new_id};
use triggerd_storage::Store;

pub use error::ApiError;
pub use respond::{error_response, json_response};

/// The response body type of every route.
pub type Body = Full<Bytes>;

/// Settings of the HTTP layer.
#[derive(Clone)]
pub struct IngressConfig {
    /// Answer 200 `{"received": true}` instead of 404 for unknown webhook tokens.
    pub hide_unknown_tokens: bool,
    /// Hex SHA-256 of the admin API token.
    pub admin_token_hash: String,
    /// Largest management API body.
    pub max_api_body_bytes: u64,
    /// Activity-log rows kept per trigger (the newest); 0 keeps all.
    pub activity_retention: usize,
    /// How long a cached trigger is trusted before it is read again (other nodes' changes show
    /// up within this time; this node's own changes invalidate the cache at once).
    pub cache_ttl: Duration,
}

impl std::fmt::Debug for IngressConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngressConfig")
            .field("hide_unknown_tokens", &self.hide_unknown_tokens)
            .field("max_api_body_bytes", &self.max_api_body_bytes)
            .field("activity_retention", &self.activity_retention)
            .field("cache_ttl", &self.cache_ttl)
            .finish_non_exhaustive()
    }
}

impl IngressConfig {
    /// Defaults for everything but the admin token hash.
    pub fn new(admin_token_hash: String) -> Self {
        IngressConfig {
            hide_unknown_tokens: false,
            admin_token_hash,
            max_api_body_bytes: 1024 * 1024,
            activity_retention: 1000,
            cache_ttl: Duration::from_secs(2),
        }
    }
}

/// Everything a request handler needs; built once by the server.
#[derive(Debug)]
pub struct AppState {
    /// The application's operations (every write) and the store (reads).
    pub app: App,
    /// Settings.
    pub config: IngressConfig,
    /// Webhook trigger cache and rate-limit buckets.
    pub cache: cache::TriggerCache,
    /// The Prometheus recorder's handle, when the server installed one.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

impl AppState {
    /// Builds the state.
    pub fn new(app: App, config: IngressConfig) -> Self {
        let cache = cache::TriggerCache::new(config.cache_ttl, app.trigger_changes().clone());
        AppState {
            app,
            config,
            cache,
            metrics: None,
        }
    }

    /// The store, for reads (writes go through [`AppState::app`]).
    pub fn store(&self) -> &Store {
        self.app.store()
    }
}

/// Accepts connections on `listener` until `shutdown` resolves, then stops accepting and waits
/// (up to 30 s) for in-flight requests to finish.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, remote) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of file descriptors and the like: back off briefly instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                let service = hyper::service::service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(handle(&state, remote, req).await) }
                });
                let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(Duration::from_secs(30)) => tracing::warn!("shutdown timed out with connections still open"),
    }
}

/// `GET /api/v1/openapi.json`, served without a token.
const OPENAPI_ROUTE: (&str, &[Method]) = ("/api/v1/openapi.json", &[Method::GET]);
/// `GET /healthz`.
const HEALTH_ROUTE: (&str, &[Method]) = ("/healthz", &[Method::GET]);
/// `GET /metrics`.
const METRICS_ROUTE: (&str, &[Method]) = ("/metrics", &[Method::GET]);

/// Routes outside the management API's router, with the methods each may answer (matchit
/// syntax). A webhook endpoint answers the methods of `triggerd_domain::trigger::WEBHOOK_METHODS`
/// that its trigger's `config.methods` allows. The OpenAPI coverage test reads this table.
#[cfg(test)]
pub(crate) const TOP_LEVEL_ROUTES: [(&str, &[Method]); 9] = [
    ("/api/webhooks/{token}", WEBHOOK_METHODS),
    ("/api/webhooks/{token}/{*rest}", WEBHOOK_METHODS),
    waits::RESUME_ROUTE,
    waits::REVIEW_ROUTE,
    waits::APPROVE_ROUTE,
    waits::REJECT_ROUTE,
    OPENAPI_ROUTE,
    HEALTH_ROUTE,
    METRICS_ROUTE,
];

#[cfg(test)]
const WEBHOOK_METHODS: &[Method] = &[
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];

/// 405 with `Allow` unless the request's method is one of `route`'s.
fn refuse_method(route: (&str, &[Method]), method: &Method) -> Option<Response<Body>> {
    (!route.1.contains(method)).then(|| {
        let allow: Vec<&str> = route.1.iter().map(Method::as_str).collect();
        error_response(&ApiError::method_not_allowed(allow.join(", ")))
    })
}

/// Handles one request: routes it and stamps `X-Request-Id` on the response.
pub async fn handle(
    state: &AppState,
    remote: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let request_id = new_id(IdKind::Request);
    let path = req.uri().path();
    let mut response = if path.starts_with("/api/webhooks/") {
        webhook::handle(state, remote, req, &request_id).await
    } else if path.starts_with(waits::RESUME_PREFIX) || path.starts_with(waits::APPROVALS_PREFIX) {
        waits::handle(state, req).await
    } else if path == OPENAPI_ROUTE.0 {
        refuse_method(OPENAPI_ROUTE, req.method()).unwrap_or_else(openapi::serve)
    } else if path.starts_with("/api/v1/") || path == "/api/v1" {
        api::handle(state, req).await
    } else if path == HEALTH_ROUTE.0 {
        match refuse_method(HEALTH_ROUTE, req.method()) {
            Some(refused) => refused,
            None => health(state).await,
        }
    } else if path == METRICS_ROUTE.0 {
        match refuse_method(METRICS_ROUTE, req.method()) {
            Some(refused) => refused,
            None => metrics::render(state).await,
        }
    } else {
        error_response(&ApiError::not_found(format!("no route for {path}")))
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// `GET /healthz`.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "health",
    tag = "service",
    responses(
        (status = 200, description = "The database answers", body = openapi::HealthBody),
        (status = 503, description = "The database does not answer", body = openapi::HealthBody),
    )
)]
pub(crate) async fn health(state: &AppState) -> Response<Body> {
    match state.store().ping().await {
        Ok(()) => json_response(
            http::StatusCode::OK,
            &openapi::HealthBody {
                status: "ok".to_owned(),
                error: None,
            },
        ),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database does not answer");
            json_response(
                http::StatusCode::SERVICE_UNAVAILABLE,
                &openapi::HealthBody {
                    status: "unavailable".to_owned(),
                    error: Some("the database does not answer".to_owned()),
                },
            )
        }
    }
}
