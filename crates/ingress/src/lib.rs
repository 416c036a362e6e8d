//! # triggerd-ingress
//!
//! The HTTP surface of triggerd: the webhook endpoints (`/api/webhooks/{token}[/{rest}]`), the
//! endpoints of parked runs (`/api/resume/{token}`, `/api/approvals/{token}[/approve|/reject]`:
//! [`waits`]), the management API under `/api/v1`, `/healthz`, `/metrics` and the web dashboard
//! (`/` and `/ui/`: [`dashboard`]). It parses requests, calls
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
mod body;
pub mod cache;
pub mod dashboard;
mod deadlines;
pub mod error;
pub mod metrics;
pub mod openapi;
mod replay;
mod respond;
pub mod sync;
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

/// Default [`IngressConfig::header_read_timeout`]: a request's headers are one packet or a few;
/// ten seconds allows for a slow network, not for a client that trickles them.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`IngressConfig::body_read_timeout`]: time for a 256 KiB webhook body (the default
/// limit) at under 10 KB/s, or 16 MiB (the largest) at 560 KB/s. It is also how long a body
/// stalled in mid-send can delay a shutdown.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default [`IngressConfig::idle_timeout`]: longer than the pause between webhooks of a busy
/// sender, so its kept-alive connection is reused rather than re-opened.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default [`IngressConfig::max_connections`]. Each connection holds one file descriptor (the
/// server lowers the cap to fit the process's open-file limit).
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

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
    /// How long a request's headers may take, from their first byte (from the accept for a
    /// connection's first request); past it the connection is closed. `Duration::MAX`: no limit
    /// (as for the other timeouts).
    pub header_read_timeout: Duration,
    /// How long a request's body may take to arrive once its handler reads it; past it the
    /// answer is 408 `request_timeout` and the connection is closed.
    pub body_read_timeout: Duration,
    /// How long a kept-alive connection may stay silent after its last answer before it is
    /// closed.
    pub idle_timeout: Duration,
    /// Connections served at once; further ones wait in the listen backlog until one closes.
    pub max_connections: usize,
    /// Sync webhook requests (`response.mode = "sync"`) waiting for their runs at once; past it a
    /// request is answered as in async mode (see [`sync`]).
    pub max_sync_waits: usize,
}

impl std::fmt::Debug for IngressConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngressConfig")
            .field("hide_unknown_tokens", &self.hide_unknown_tokens)
            .field("max_api_body_bytes", &self.max_api_body_bytes)
            .field("activity_retention", &self.activity_retention)
            .field("cache_ttl", &self.cache_ttl)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("body_read_timeout", &self.body_read_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_connections", &self.max_connections)
            .field("max_sync_waits", &self.max_sync_waits)
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
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_sync_waits: DEFAULT_MAX_SYNC_WAITS,
        }
    }
}

/// Default [`IngressConfig::max_sync_waits`]: a waiting request costs a connection and a few
/// KiB, so a thousand fit well within the default connection limit.
pub const DEFAULT_MAX_SYNC_WAITS: usize = 1000;

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
    /// The sync webhook requests waiting for their runs.
    pub sync_waits: Arc<sync::SyncWaits>,
}

impl AppState {
    /// Builds the state.
    pub fn new(app: App, config: IngressConfig) -> Self {
        let cache = cache::TriggerCache::new(config.cache_ttl, app.trigger_changes().clone());
        let sync_waits = sync::SyncWaits::new(config.max_sync_waits);
        AppState {
            app,
            config,
            cache,
            metrics: None,
            sync_waits,
        }
    }

    /// The store, for reads (writes go through [`AppState::app`]).
    pub fn store(&self) -> &Store {
        self.app.store()
    }
}

/// Accepts connections on `listener` until `shutdown` resolves, then stops accepting and waits
/// (up to 30 s) for in-flight requests to finish.
///
/// At most `config.max_connections` connections are served at once: the next one is accepted
/// only when one closes, so the excess waits in the kernel's listen backlog (and past the
/// backlog is refused by the kernel) instead of using up the process's file descriptors. Each
/// connection is closed when it misses a deadline of [`deadlines`]: its request headers
/// (`header_read_timeout`) or its next request (`idle_timeout`); a webhook body that does not
/// arrive in `body_read_timeout` is answered 408.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's own header timeout would start whenever the server waits for a request, making it
    // the idle timeout too; `deadlines` times both, for HTTP/1 and HTTP/2 alike.
    builder.http1().header_read_timeout(None);
    let config = &state.config;
    let (header_read_timeout, idle_timeout) = (config.header_read_timeout, config.idle_timeout);
    let permits = Arc::new(tokio::sync::Semaphore::new(
        config
            .max_connections
            .clamp(1, tokio::sync::Semaphore::MAX_PERMITS),
    ));
    let mut warned_full: Option<tokio::time::Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if warned_full.is_none_or(|at| at.elapsed() >= CONNECTION_LIMIT_WARNING_INTERVAL) {
                    warned_full = Some(tokio::time::Instant::now());
                    tracing::warn!(
                        max_connections = config.max_connections,
                        "connection limit reached: new connections wait until one closes \
                         (TRIGGERD_MAX_CONNECTIONS)"
                    );
                }
                tokio::select! {
                    permit = permits.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_closed) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let clock = deadlines::ConnectionClock::new(header_read_timeout, idle_timeout);
        let service = hyper::service::service_fn({
            let state = state.clone();
            let clock = clock.clone();
            move |req| {
                let state = state.clone();
                // The connection's clocks stop until the handler has answered.
                let in_flight = clock.begin_request();
                async move {
                    let response = handle(&state, remote, req).await;
                    drop(in_flight);
                    Ok::<_, Infallible>(response)
                }
            }
        });
        let io = TokioIo::new(deadlines::TrackedIo::new(stream, clock.clone()));
        let conn = graceful.watch(builder.serve_connection(io, service).into_owned());
        ::metrics::gauge!("triggerd_http_connections").increment(1.0);
        tokio::spawn(async move {
            tokio::select! {
                ended = conn => if let Err(e) = ended {
                    tracing::debug!(error = %e, "connection ended with an error");
                },
                // Dropping the connection closes its socket.
                overdue = clock.overdue() => {
                    ::metrics::counter!("triggerd_http_connection_timeouts_total", "phase" => overdue.as_str())
                        .increment(1);
                    tracing::debug!(%remote, phase = overdue.as_str(), "connection closed: deadline missed");
                }
            }
            ::metrics::gauge!("triggerd_http_connections").decrement(1.0);
            drop(permit);
        });
    }
    drop(listener);
    // Requests waiting for their runs answer 202 now rather than hold the shutdown.
    state.sync_waits.stop();
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(Duration::from_secs(30)) => tracing::warn!("shutdown timed out with connections still open"),
    }
}

/// How often "connection limit reached" is logged while the limit holds.
const CONNECTION_LIMIT_WARNING_INTERVAL: Duration = Duration::from_secs(60);

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
        api::handle(state, remote, req, &request_id).await
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
    } else if dashboard::is_dashboard_path(path) {
        dashboard::serve(req.method(), path, req.headers())
    } else {
        error_response(&ApiError::not_found(format!("no route for {path}")))
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// How long `/healthz` reuses the answer of its write probe: load balancers may check every
/// second from several places; each node then commits at most one probe write a second.
const HEALTH_PROBE_MAX_AGE: Duration = Duration::from_secs(1);

/// How long `/healthz` waits for the database: a read answered and a write committed within this
/// time, or 503. A commit takes milliseconds (p99 ~25 ms under load); one that takes seconds
/// means webhooks wait as long, and a load balancer should send them elsewhere.
const HEALTH_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Health check for load balancers and liveness probes.
///
/// 200 `{"status":"ok"}` while the database answers a read and commits a small probe write (the
/// result is cached for about a second), else 503 saying which of the two failed. No
/// authentication; the details (they may name the database host) go to the server's log.
// The probe is `Store::probe_writes`, cached for `HEALTH_PROBE_MAX_AGE`.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "health",
    tag = "service",
    responses(
        (status = 200, description = "The database answers and commits writes", body = openapi::HealthBody),
        (status = 503, description = "The database does not answer or cannot commit a write", body = openapi::HealthBody),
    )
)]
pub(crate) async fn health(state: &AppState) -> Response<Body> {
    let store = state.store();
    let read = match tokio::time::timeout(HEALTH_PROBE_TIMEOUT, store.ping()).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!(
            "no answer within {} ms",
            HEALTH_PROBE_TIMEOUT.as_millis()
        )),
    };
    let problem = match read {
        Err(reason) => {
            tracing::warn!(%reason, "health check: database does not answer");
            Some("the database does not answer")
        }
        Ok(()) => match store
            .probe_writes(HEALTH_PROBE_MAX_AGE, HEALTH_PROBE_TIMEOUT)
            .await
        {
            Ok(()) => None,
            Err(e) => {
                tracing::warn!(reason = %e, "health check: database cannot commit a write");
                Some(
                    "the database cannot commit a write now (a probe write failed or timed out); \
                     webhooks would be answered 503",
                )
            }
        },
    };
    match problem {
        None => json_response(
            http::StatusCode::OK,
            &openapi::HealthBody {
                status: "ok".to_owned(),
                error: None,
            },
        ),
        Some(why) => json_response(
            http::StatusCode::SERVICE_UNAVAILABLE,
            &openapi::HealthBody {
                status: "unavailable".to_owned(),
                error: Some(why.to_owned()),
            },
        ),
    }
}
