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
    /// Distinct `webhook-id`s so far, kept as events arrive: counting them again on every
    /// arrival (under the lock the receiver takes) made the drain quadratic.
    ids: Mutex<HashSet<Bytes>>,
    distinct: std::sync::atomic::AtomicUsize,
    changed: Notify,
}

impl Received {
    /// Keeps one arrival.
    fn record(&self, arrival: Arrival) {
        let new = self
            .ids
            .lock()
            .map(|mut ids| ids.insert(arrival.webhook_id.clone()))
            .unwrap_or(false);
        if new {
            self.distinct
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if let Ok(mut a) = self.arrivals.lock() {
            a.push(arrival);
        }
        self.changed.notify_waiters();
    }

    /// Distinct `webhook-id`s so far.
    fn distinct(&self) -> usize {
        self.distinct.load(std::sync::atomic::Ordering::Relaxed)
    }
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

/// Serves events into `received`. Before `open_at_us` (µs since the epoch) every event is
/// refused with 503 and a `Retry-After` pointing at that instant (`hooks-drain`); from then on
/// each is kept and answered 204.
async fn serve(listener: TcpListener, received: Arc<Received>, open_at_us: i64) {
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
                let mut response = Response::new(Full::new(Bytes::new()));
                if at_us < open_at_us {
                    // Come back exactly at the opening (whole seconds, rounded up).
                    let wait = (open_at_us - at_us + 999_999) / 1_000_000;
                    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                    if let Ok(v) = http::HeaderValue::from_str(&wait.max(1).to_string()) {
                        response.headers_mut().insert("retry-after", v);
                    }
                    return Ok::<_, Infallible>(response);
                }
                received.record(Arrival {
                    at_us,
                    webhook_id,
                    body,
                });
                *response.status_mut() = StatusCode::NO_CONTENT;
                Ok(response)
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
        self.received.distinct()
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
            self.server = Some(tokio::spawn(serve(
                listener,
                self.received.clone(),
                i64::MIN,
            )));
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

/// `hooks-drain`: the delivery worker's capacity alone. During the `e2e` load the receiver
/// answers every event at once with 503 and a `Retry-After` that points every retry at one
/// instant, [`DRAIN_MARGIN`] after the load ends (the server runs with a retry step longer than
/// that, `TRIGGERD_RETRY_SCHEDULE=600`, so the `Retry-After` decides). From that instant the
/// receiver answers 204, and the whole backlog — one event per accepted webhook, all due at once
/// — drains with nothing else running. Reported: events/s = events ÷ (last arrival − the
/// instant), and the arrivals' times after it.
#[derive(Debug)]
pub struct HooksDrain;

/// Between the end of the load and the instant every retry is due: the load's last events are
/// attempted (and answered 503) before it.
pub const DRAIN_MARGIN: Duration = Duration::from_secs(2);

impl crate::scenario::Scenario for HooksDrain {
    fn name(&self) -> &'static str {
        "hooks-drain"
    }

    fn about(&self) -> &'static str {
        "the e2e load with every event refused (503 + Retry-After) until the load is over, then drained at once: the delivery worker's events/s alone"
    }

    fn run<'a>(
        &'a self,
        settings: &'a crate::Settings,
        backend: &'a crate::Backend,
    ) -> BoxFuture<'a, Result<crate::scenario::Outcome, Error>> {
        Box::pin(async move {
            use crate::scenario::{AbortOnDrop, Outcome, Triggerd, plan, request_count};
            let listener = TcpListener::bind(("127.0.0.1", 0))
                .await
                .map_err(|e| Error::new(format!("cannot listen for events: {e}")))?;
            let local = listener
                .local_addr()
                .map_err(|e| Error::new(format!("cannot read the receiver's address: {e}")))?;
            let server = Triggerd::start_with_env(
                settings,
                backend,
                &[
                    ("TRIGGERD_ALLOW_PRIVATE_NETWORKS", "true"),
                    ("TRIGGERD_RETRY_SCHEDULE", "600"),
                ],
            )
            .await?;
            let hooks = crate::fixture::setup(server.addr(), ADMIN_TOKEN, 1, 1).await?;
            let load_time = settings.duration + settings.warmup;
            let open_at_us = now_micros()
                + i64::try_from((load_time + DRAIN_MARGIN + Duration::from_secs(1)).as_micros())
                    .unwrap_or(i64::MAX);
            let received = Arc::new(Received::default());
            let _receiver =
                AbortOnDrop(tokio::spawn(serve(listener, received.clone(), open_at_us)));
            let mut api = ApiClient::connect(server.addr(), ADMIN_TOKEN).await?;
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
            let requests = crate::fixture::signed_requests(&hooks, request_count(1));
            let mut plan = plan(settings, server.addr(), server.pid(), requests);
            plan.duration += plan.warmup;
            plan.warmup = Duration::ZERO;
            let report = crate::load::run(&plan).await;
            let accepted = report.ok_total;
            let deadline = Instant::now()
                + Duration::from_micros(u64::try_from(open_at_us - now_micros()).unwrap_or(0))
                + settings.e2e_timeout;
            loop {
                let changed = received.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                let got = received.distinct();
                if got as u64 >= accepted {
                    break;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(Error::new(format!(
                        "{got} of {accepted} events drained; server log:\n{}",
                        server.log_tail()
                    )));
                }
                let _ = tokio::time::timeout(left.min(Duration::from_millis(200)), changed).await;
            }
            let arrivals = std::mem::take(
                &mut *received
                    .arrivals
                    .lock()
                    .map_err(|_| Error::new("the receiver's list is poisoned"))?,
            );
            let mut seen = HashSet::new();
            let mut lag = crate::stats::Latency::new();
            let mut last_us = open_at_us;
            for a in &arrivals {
                if seen.insert(a.webhook_id.clone()) {
                    lag.record_micros(u64::try_from(a.at_us - open_at_us).unwrap_or(0));
                    last_us = last_us.max(a.at_us);
                }
            }
            let span_secs = (last_us - open_at_us) as f64 / 1e6;
            let drained = seen.len() as u64;
            let mut o = Outcome::new(self.name(), backend.name());
            o.triggers = 1;
            o.e2e = Some(crate::scenario::E2eReport {
                method: "drain: events per second from the instant every retry fell due to the last arrival; lag = arrival - that instant",
                accepted,
                completed: drained,
                failed: 0,
                runs_per_sec: if span_secs > 0.0 {
                    drained as f64 / span_secs
                } else {
                    0.0
                },
                span_secs,
                drain_secs: span_secs,
                lag: lag.summary(),
                delivery_lag: None,
            });
            o.load = Some(report);
            o.peak_rss = server.peak_rss();
            Ok(o)
        })
    }
}
