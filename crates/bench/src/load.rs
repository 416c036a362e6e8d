//! The HTTP/1.1 load generator: a fixed number of keep-alive connections, each sending the next
//! request as soon as the previous answer is read (a closed loop), for a warm-up and then a
//! measured window.
//!
//! Requests are built before the timed phase ([`Prepared`]: bodies, signatures, headers); sending
//! one only clones reference-counted bytes and a small header map. Each connection records into
//! its own HDR histogram; they are merged at the end, so recording takes no lock.
//!
//! Latency is measured from the moment a request is handed to the connection until its whole
//! response body is read. A closed loop does not send while the server stalls, so a stall shows
//! once per connection rather than for every request a fixed-rate sender would have sent: the
//! percentiles describe what 64 busy senders experience, not an open-loop arrival process.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::process::{Monitor, machine_busy};
use crate::stats::{Latency, LatencySummary};

/// No single request may take longer than this; it then counts as a transport error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A request built before the load starts.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The method.
    pub method: Method,
    /// Path and query, e.g. `/api/webhooks/wht_...?currency=EUR`.
    pub uri: Uri,
    /// Headers (`Host` is added per target).
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl Prepared {
    /// A POST of `body` with `content-type: application/json` to `path` (path and query; an
    /// invalid one becomes `/`).
    pub fn post_json(path: &str, body: impl Into<Bytes>) -> Prepared {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Prepared {
            method: Method::POST,
            uri: Uri::try_from(path).unwrap_or_default(),
            headers,
            body: body.into(),
        }
    }

    fn request(&self, host: &HeaderValue) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(self.body.clone()));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        let headers = req.headers_mut();
        headers.clone_from(&self.headers);
        headers.insert(header::HOST, host.clone());
        req
    }
}

/// What to send, where, and for how long.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// The server.
    pub addr: SocketAddr,
    /// Keep-alive connections, each with one request in flight.
    pub connections: usize,
    /// Sent but not measured, before the window.
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
    /// Sent round-robin; connection `i` starts at request `i`.
    pub requests: Arc<Vec<Prepared>>,
    /// The server's process id, to sample its CPU and RSS over the window.
    pub server_pid: Option<u32>,
    /// Optional back-pressure: each request first takes a permit of this semaphore (the wait is
    /// not part of its latency); a 2xx answer keeps it, any other outcome gives it back. Whoever
    /// observes the work a 2xx started finish adds permits back, so at most the initial number
    /// of started-but-unfinished items is outstanding at any time (the `steps` scenario: runs
    /// whose step has not reached the receiver yet).
    pub gate: Option<Arc<Semaphore>>,
    /// When set, every request carries this header with a value no other request of the load
    /// has (`<connection>-<n>`): a delivery id, for the de-duplication scenario.
    pub unique_header: Option<HeaderName>,
}

/// What a load produced.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// Requests answered in the window (any status).
    pub requests: u64,
    /// Of those, answered 2xx.
    pub ok: u64,
    /// Non-2xx answers and transport errors in the window, by kind (`"503"`, `"transport"`).
    pub errors: BTreeMap<String, u64>,
    /// 2xx answers including the warm-up (e.g. runs created).
    pub ok_total: u64,
    /// Answers of any kind including the warm-up.
    pub answered_total: u64,
    /// Measured window, seconds.
    pub window_secs: f64,
    /// 2xx answers per second in the window.
    pub ok_per_sec: f64,
    /// Latency of every request in the window, any status.
    pub latency: LatencySummary,
    /// Server CPU over the window, % of one core.
    pub server_cpu_pct: Option<f64>,
    /// Largest server RSS sampled in the window, bytes.
    pub server_peak_rss: u64,
    /// This process's CPU over the window (the load generator), % of one core.
    pub client_cpu_pct: Option<f64>,
    /// CPU every other process of the machine used over the window, % of one core: other work
    /// competing for the same cores (a figure far from 0 means the run was disturbed).
    pub others_cpu_pct: Option<f64>,
    /// Wall-clock time of the first request sent (warm-up included).
    #[serde(skip)]
    pub first_sent: SystemTime,
}

impl LoadReport {
    /// Error count in the window.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// One connection's tally.
#[derive(Default)]
struct Tally {
    latency: Latency,
    requests: u64,
    ok: u64,
    ok_total: u64,
    answered_total: u64,
    errors: BTreeMap<String, u64>,
}

/// Runs the plan and returns the merged figures.
pub async fn run(plan: &LoadPlan) -> LoadReport {
    assert!(!plan.requests.is_empty(), "a load needs requests");
    let host = HeaderValue::from_str(&plan.addr.to_string())
        .unwrap_or_else(|_| HeaderValue::from_static("localhost"));
    let first_sent = SystemTime::now();
    let start = Instant::now();
    let measure_from = start + plan.warmup;
    let deadline = measure_from + plan.duration;

    let mut tasks = Vec::with_capacity(plan.connections);
    for i in 0..plan.connections {
        let requests = plan.requests.clone();
        let (addr, host, step) = (plan.addr, host.clone(), plan.connections);
        let gate = plan.gate.clone();
        let unique = plan.unique_header.clone();
        tasks.push(tokio::spawn(async move {
            let window = (measure_from, deadline);
            connection(addr, host, requests, (gate, unique), i, step, window).await
        }));
    }

    // Samples the server from the start of the window to its end.
    tokio::time::sleep_until(measure_from.into()).await;
    let mut server = plan.server_pid.map(|p| Monitor::start(&p.to_string()));
    let client = Monitor::start("self");
    let machine_start = (Instant::now(), machine_busy());
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::sleep(left.min(Duration::from_millis(100))).await;
        if let Some(m) = server.as_mut() {
            m.sample();
        }
    }
    let (server_cpu_pct, server_peak_rss) = server.map(Monitor::finish).unwrap_or((None, 0));
    let (client_cpu_pct, _) = client.finish();
    let machine_cpu_pct = match (machine_start, machine_busy()) {
        ((at, Some(a)), Some(b)) => {
            Some(b.saturating_sub(a).as_secs_f64() / at.elapsed().as_secs_f64() * 100.0)
        }
        _ => None,
    };
    let others_cpu_pct = machine_cpu_pct
        .map(|m| (m - server_cpu_pct.unwrap_or(0.0) - client_cpu_pct.unwrap_or(0.0)).max(0.0));

    let mut total = Tally::default();
    for task in tasks {
        // A connection task does not panic; if it did, its tally is lost, not the run.
        if let Ok(t) = task.await {
            total.latency.merge(&t.latency);
            total.requests += t.requests;
            total.ok += t.ok;
            total.ok_total += t.ok_total;
            total.answered_total += t.answered_total;
            for (k, v) in t.errors {
                *total.errors.entry(k).or_default() += v;
            }
        }
    }
    let window_secs = plan.duration.as_secs_f64();
    LoadReport {
        requests: total.requests,
        ok: total.ok,
        errors: total.errors,
        ok_total: total.ok_total,
        answered_total: total.answered_total,
        window_secs,
        ok_per_sec: total.ok as f64 / window_secs,
        latency: total.latency.summary(),
        server_cpu_pct,
        server_peak_rss,
        client_cpu_pct,
        others_cpu_pct,
        first_sent,
    }
}

/// A connection: the request sender and the connection future that does the I/O. Both are
/// polled by the same task (see [`exchange`]), so a request costs no cross-task wake-ups.
type Conn = (
    SendRequest<Full<Bytes>>,
    http1::Connection<TokioIo<TcpStream>, Full<Bytes>>,
);

async fn connect(addr: SocketAddr) -> Result<Conn, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))
}

/// Sends one request and reads the whole answer, driving the connection meanwhile; returns its
/// status, or `None` when the request or the connection failed.
async fn exchange(conn: &mut Conn, req: Request<Full<Bytes>>) -> Option<u16> {
    let (sender, io) = conn;
    let request = async {
        sender.ready().await?;
        let response = sender.send_request(req).await?;
        let status = response.status().as_u16();
        response.into_body().collect().await?;
        Ok::<_, hyper::Error>(status)
    };
    tokio::select! {
        biased;
        done = request => done.ok(),
        // The connection ended (closed by the server, or an error) before the answer.
        _ = io => None,
    }
}

async fn connection(
    addr: SocketAddr,
    host: HeaderValue,
    requests: Arc<Vec<Prepared>>,
    (gate, unique): (Option<Arc<Semaphore>>, Option<HeaderName>),
    first: usize,
    step: usize,
    (measure_from, deadline): (Instant, Instant),
) -> Tally {
    let mut tally = Tally::default();
    let mut next = first % requests.len();
    let mut conn: Option<Conn> = None;
    let mut sent_count: u64 = 0;
    loop {
        let mut permit = match &gate {
            Some(gate) => {
                let acquire = gate.clone().acquire_owned();
                match tokio::time::timeout_at(deadline.into(), acquire).await {
                    Ok(Ok(permit)) => Some(permit),
                    // The window ended while waiting (or the gate was closed).
                    _ => break,
                }
            }
            None => None,
        };
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let measured = now >= measure_from;
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match connect(addr).await {
                Ok(c) => conn.insert(c),
                Err(_) => {
                    if measured {
                        *tally.errors.entry("connect".to_owned()).or_default() += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let mut req = requests[next].request(&host);
        if let Some(name) = &unique {
            sent_count += 1;
            if let Ok(value) = HeaderValue::from_str(&format!("{first}-{sent_count}")) {
                req.headers_mut().insert(name.clone(), value);
            }
        }
        next = (next + step) % requests.len();
        let sent = Instant::now();
        let outcome = tokio::time::timeout(REQUEST_TIMEOUT, exchange(c, req)).await;
        let took = sent.elapsed();
        match outcome {
            Ok(Some(status)) => {
                let ok = (200..300).contains(&status);
                tally.answered_total += 1;
                tally.ok_total += u64::from(ok);
                if ok && let Some(p) = permit.take() {
                    // Given back by whoever sees the started work finish.
                    p.forget();
                }
                if measured {
                    tally.latency.record(took);
                    tally.requests += 1;
                    if ok {
                        tally.ok += 1;
                    } else {
                        *tally.errors.entry(status.to_string()).or_default() += 1;
                    }
                }
            }
            Ok(None) | Err(_) => {
                // The connection is in an unknown state: open a new one.
                conn = None;
                if measured {
                    let kind = if outcome.is_err() {
                        "timeout"
                    } else {
                        "transport"
                    };
                    *tally.errors.entry(kind.to_owned()).or_default() += 1;
                }
            }
        }
    }
    tally
}
