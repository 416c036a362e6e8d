//! The `e2e-hooks` scenario's completion source: a local hyper server subscribed to
//! `run.completed` through an event hook (`POST /api/v1/hooks`, workflow scope), so completion is
//! measured where a user sees it — at the receiver — and the figures are delivered events/s and
//! the completion → delivery lag.
//!
//! The receiver verifies nothing (the end-to-end tests verify signatures); it answers 204 at once
//! and keeps each event's `webhook-id`, arrival time and body, parsed only after the load so that
//! the load generator's CPU is not spent on JSON while it measures.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::Error;
use crate::api::ApiClient;
use crate::scenario::{ADMIN_TOKEN, BoxFuture, Completion, CompletionSource, now_micros};

/// The workflow the bench's triggers start (see [`crate::fixture::setup`]).
const WORKFLOW: &str = "bench-order";

/// One event as it arrived.
struct Arrival {
    at_us: i64,
    webhook_id: Bytes,
    body: Bytes,
}

#[derive(Default)]
struct Received {
    arrivals: Mutex<Vec<Arrival>>,
    changed: Notify,
}

/// Receives `run.completed` events; see the module docs.
#[derive(Default)]
pub struct HookReceiver {
    received: Arc<Received>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for HookReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookReceiver").finish_non_exhaustive()
    }
}

impl Drop for HookReceiver {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.abort();
        }
    }
}

async fn serve(listener: TcpListener, received: Arc<Received>) {
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let received = received.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let received = received.clone();
            async move {
                let webhook_id = req
                    .headers()
                    .get("webhook-id")
                    .map(|v| Bytes::copy_from_slice(v.as_bytes()))
                    .unwrap_or_default();
                let body = req
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let at_us = now_micros();
                if let Ok(mut a) = received.arrivals.lock() {
                    a.push(Arrival {
                        at_us,
                        webhook_id,
                        body,
                    });
                }
                received.changed.notify_waiters();
                let mut response = Response::new(Full::new(Bytes::new()));
                *response.status_mut() = StatusCode::NO_CONTENT;
                Ok::<_, Infallible>(response)
            }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}

impl HookReceiver {
    fn unique(&self) -> usize {
        let arrivals = self.received.arrivals.lock().map(|a| {
            a.iter()
                .map(|x| x.webhook_id.clone())
                .collect::<HashSet<_>>()
                .len()
        });
        arrivals.unwrap_or(0)
    }
}

impl CompletionSource for HookReceiver {
    fn method(&self) -> &'static str {
        "event hook: a local receiver subscribed to run.completed; finished = the event's arrival"
    }

    fn prepare<'a>(&'a mut self, addr: SocketAddr) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let listener = TcpListener::bind(("127.0.0.1", 0))
                .await
                .map_err(|e| Error::new(format!("cannot listen for events: {e}")))?;
            let local = listener
                .local_addr()
                .map_err(|e| Error::new(format!("cannot read the receiver's address: {e}")))?;
            self.server = Some(tokio::spawn(serve(listener, self.received.clone())));
            let mut api = ApiClient::connect(addr, ADMIN_TOKEN).await?;
            api.expect(
                Method::POST,
                "/hooks",
                Some(&json!({
                    "scope": "workflow",
                    "workflow": WORKFLOW,
                    "url": format!("http://{local}/events"),
                    "events": ["run.completed"]
                })),
                201,
            )
            .await?;
            Ok(())
        })
    }

    fn collect<'a>(
        &'a mut self,
        _addr: SocketAddr,
        accepted: u64,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Vec<Completion>, Error>> {
        Box::pin(async move {
            let deadline = Instant::now() + timeout;
            loop {
                let changed = self.received.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                let unique = self.unique();
                if unique as u64 >= accepted {
                    break;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(Error::new(format!(
                        "{unique} of {accepted} events delivered after {timeout:?}"
                    )));
                }
                let _ = tokio::time::timeout(left.min(Duration::from_millis(200)), changed).await;
            }
            let arrivals = std::mem::take(
                &mut *self
                    .received
                    .arrivals
                    .lock()
                    .map_err(|_| Error::new("the receiver's list is poisoned"))?,
            );
            let mut seen = HashSet::new();
            let mut out = Vec::with_capacity(arrivals.len());
            for a in arrivals {
                // At least once: a repeated event counts once, at its first arrival.
                if !seen.insert(a.webhook_id.clone()) {
                    continue;
                }
                let event: Value = serde_json::from_slice(&a.body)
                    .map_err(|e| Error::new(format!("an event is not JSON: {e}")))?;
                let data = &event["data"];
                let at = |key: &str| {
                    data[key]
                        .as_str()
                        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                        .map(|t| t.timestamp_micros())
                };
                let (Some(created_us), Some(completed_us)) = (at("created_at"), at("finished_at"))
                else {
                    return Err(Error::new(format!(
                        "an event without created_at/finished_at: {event}"
                    )));
                };
                out.push(Completion {
                    created_us,
                    finished_us: a.at_us,
                    completed: event["type"] == "run.completed",
                    step_micros: Vec::new(),
                    error: None,
                    run_finished_us: Some(completed_us),
                });
            }
            Ok(out)
        })
    }
}
