//! `memory`: the server's peak RSS under the worst request mix at default settings, against
//! the goal of issue 13 (item 7): below [`GOAL_BYTES`] (250 MB).
//!
//! The server runs with its defaults (only `TRIGGERD_ALLOW_PRIVATE_NETWORKS=true`, so that the
//! workflow's `http` step may call the receiver this tool serves on 127.0.0.1). The workflow
//! `mem` takes one input, `items` (an array), and its one step POSTs `items[0].id` to the
//! receiver, so the executor loads every run, big ones included. Two webhook triggers: A with
//! the default `max_body_bytes` (256 KiB), B with the largest allowed (16 MiB). Bodies are
//! object-heavy JSON (`{"items": [{"id", "sku", "qty", "price", "tags"}, ...]}`: many small
//! objects, the worst case for a `serde_json::Value` tree), built once.
//!
//! 1. Preload: [`DEFAULT_PRELOAD`] runs with ~255 KiB bodies through A, 8 at a time.
//! 2. For `--duration`, all at once, each client on its own keep-alive connection, every answer
//!    read to its end and dropped as it arrives ([`ApiClient::stream`]):
//!    8 clients page through `GET /runs?limit=200` (following `next_cursor` to its end, then
//!    again), 4 POST the ~16 MiB body to B, 2 read runs of B (`GET /runs?trigger_id=B&limit=5`,
//!    then `GET /runs/{id}` of each; A's preloaded runs while B has none) and B's activity log
//!    (`GET /triggers/B/requests?limit=200`), 8 POST ~300-byte bodies to A. The server's
//!    `VmRSS` is sampled every 50 ms from the preload on.
//! 3. Settle: until no run is pending or running (at most 30 s), then `VmHWM`, the peak over
//!    the server's life, which is the figure compared with the goal.
//!
//! Clients do not honour `Retry-After` (the worst case), but pause 50 ms after a 503 so that a
//! refusal does not become a busy loop. A 503 is the server shedding load to stay within its
//! budget: it is counted by status, never a failure. The scenario fails only when the server
//! exits (e.g. killed for lack of memory), when no preload webhook is accepted, or when a kind of
//! request gets no answer at all.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use triggerd_domain::trigger::{DEFAULT_MAX_BODY_BYTES, MAX_MAX_BODY_BYTES};

use crate::api::ApiClient;
use crate::process::memory;
use crate::scenario::{ADMIN_TOKEN, AbortOnDrop, BoxFuture, Outcome, Scenario, Triggerd};
use crate::stats::{Latency, LatencySummary, format_mib, format_micros, format_rate};
use crate::{Backend, Error, Settings, baseline, fixture};

/// The goal: peak RSS below 250 MB (MiB, as every figure of the table).
pub const GOAL_BYTES: u64 = 250 * 1024 * 1024;

/// Runs preloaded through trigger A.
pub const DEFAULT_PRELOAD: usize = 400;

/// How far below a trigger's `max_body_bytes` its large bodies stay.
const BODY_MARGIN: usize = 1024;

/// Trigger B's bodies: just under 16 MiB.
pub const DEFAULT_BIG_BODY: usize = MAX_MAX_BODY_BYTES as usize - BODY_MARGIN;

/// Trigger A's large bodies (the preload): just under the default 256 KiB.
const MEDIUM_BODY: usize = DEFAULT_MAX_BODY_BYTES as usize - BODY_MARGIN;

/// The small webhooks' bodies, like the other scenarios' (~300 bytes).
const SMALL_BODY: usize = 300;

/// Preload webhooks in flight at once.
const PRELOAD_CONCURRENCY: usize = 8;
/// Clients paging through `GET /runs?limit=200`.
const LIST_CLIENTS: usize = 8;
/// Clients POSTing the large body to B.
const BIG_CLIENTS: usize = 4;
/// Clients reading B's runs and activity log.
const READ_CLIENTS: usize = 2;
/// Clients POSTing small bodies to A.
const SMALL_CLIENTS: usize = 8;
/// The list page size (the API's largest).
const LIST_LIMIT: usize = 200;

/// How often the server's `VmRSS` is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);
/// The longest wait for the runs to finish after the mixed phase.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// A request without a full answer by then counts as `timeout` (its connection is replaced).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The pause after a 503 or a failed request.
const REFUSAL_PAUSE: Duration = Duration::from_millis(50);

/// See the module docs.
#[derive(Debug)]
pub struct Memory;

/// What the `memory` scenario measured (its peak, `VmHWM`, is [`Outcome::peak_rss`]).
#[derive(Debug, Clone, Serialize)]
pub struct MemoryReport {
    /// Peak RSS the goal allows (exclusive), bytes.
    pub goal_bytes: u64,
    /// Whether the peak stayed below the goal.
    pub met: bool,
    /// The largest `VmRSS` sampled every 50 ms from the preload to the end of settling, bytes.
    pub sampled_peak_rss: u64,
    /// `VmRSS` once settled, bytes.
    pub rss_after: u64,
    /// Body sizes: the small webhooks', trigger A's preload and trigger B's, bytes.
    pub body_bytes: BodySizes,
    /// The preload through trigger A.
    pub preload: KindReport,
    /// The mixed phase, per kind of request: list, big webhook, reads, small webhook.
    pub kinds: Vec<KindReport>,
    /// The list clients' pages.
    pub list: ListReport,
    /// Requests the workflow's step sent to the receiver.
    pub step_requests: u64,
    /// The mixed phase: `--duration`, then the answers still in flight, seconds.
    pub phase_secs: f64,
    /// Whether every run had finished when settling ended.
    pub settled: bool,
    /// From the end of the mixed phase to the end of settling, seconds.
    pub settle_secs: f64,
}

/// The bodies the scenario sends, bytes.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct BodySizes {
    /// The small webhooks to trigger A.
    pub small: usize,
    /// The preload to trigger A.
    pub medium: usize,
    /// The big webhooks to trigger B.
    pub big: usize,
}

/// One kind of request.
#[derive(Debug, Clone, Serialize)]
pub struct KindReport {
    /// `list`, `big webhook`, `reads`, `small webhook`, `preload`.
    pub kind: &'static str,
    /// What the clients send.
    pub what: String,
    /// Clients (connections).
    pub clients: usize,
    /// Requests sent.
    pub requests: u64,
    /// Answers by status, plus `transport` (no answer: connection failed or closed) and
    /// `timeout` (no full answer within 60 s).
    pub statuses: BTreeMap<String, u64>,
    /// Latency of the answered requests, up to the last byte of the answer.
    pub latency: LatencySummary,
    /// The largest answer body, bytes.
    pub largest_response_bytes: u64,
}

impl KindReport {
    /// Requests answered with an HTTP status.
    pub fn answered(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|(k, _)| k.parse::<u16>().is_ok())
            .map(|(_, v)| v)
            .sum()
    }

    /// Requests answered 2xx.
    pub fn ok(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|(k, _)| k.starts_with('2') && k.len() == 3)
            .map(|(_, v)| v)
            .sum()
    }

    /// `list (8 clients) GET ...: 96 requests, 200: 96; p99 1.20s, largest answer 52.1 MB`.
    pub fn line(&self) -> String {
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        format!(
            "{} ({} clients, {}): {} requests, {}; p50 {} p99 {} max {}; largest answer {}",
            self.kind,
            self.clients,
            self.what,
            format_rate(self.requests as f64),
            if statuses.is_empty() {
                "no answer".to_owned()
            } else {
                statuses.join(", ")
            },
            format_micros(self.latency.p50_us),
            format_micros(self.latency.p99_us),
            format_micros(self.latency.max_us),
            format_size(self.largest_response_bytes),
        )
    }
}

/// The list clients' 200 pages.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ListReport {
    /// Pages read (200 answers).
    pub pages: u64,
    /// Runs on them.
    pub items: u64,
    /// The most runs on one page.
    pub largest_page_items: u64,
    /// Pages with fewer than `limit` runs and a `next_cursor` (the server stopped a page early).
    pub short_pages: u64,
    /// Times a client followed `next_cursor` to its end (`null`).
    pub full_passes: u64,
    /// The largest page, bytes.
    pub largest_response_bytes: u64,
}

impl ListReport {
    fn page(&mut self, scan: &PageScan, bytes: u64) {
        let items = scan.items as u64;
        self.pages += 1;
        self.items += items;
        self.largest_page_items = self.largest_page_items.max(items);
        self.largest_response_bytes = self.largest_response_bytes.max(bytes);
        if items < LIST_LIMIT as u64 && scan.next_cursor.is_some() {
            self.short_pages += 1;
        }
        if scan.next_cursor.is_none() {
            self.full_passes += 1;
        }
    }

    fn merge(&mut self, other: &ListReport) {
        self.pages += other.pages;
        self.items += other.items;
        self.largest_page_items = self.largest_page_items.max(other.largest_page_items);
        self.short_pages += other.short_pages;
        self.full_passes += other.full_passes;
        self.largest_response_bytes = self
            .largest_response_bytes
            .max(other.largest_response_bytes);
    }
}

impl MemoryReport {
    /// The lines the table prints under the scenario `who` (`memory on sqlite`), for a peak of
    /// `peak_rss` bytes.
    pub fn lines(&self, who: &str, peak_rss: Option<u64>) -> Vec<String> {
        let mut out = vec![format!(
            "{who}: peak RSS {} (VmHWM over the server's life; largest sampled {}, {} once settled); goal below {}: {}",
            peak_rss.map_or_else(|| "unknown".to_owned(), format_mib),
            format_mib(self.sampled_peak_rss),
            format_mib(self.rss_after),
            format_mib(self.goal_bytes),
            if self.met { "met" } else { "NOT MET" },
        )];
        out.push(format!("{who}: {}", self.preload.line()));
        for k in &self.kinds {
            out.push(format!("{who}: {}", k.line()));
        }
        let l = &self.list;
        let mut list = format!(
            "{who}: list pages: {} read, {} runs, at most {} on a page, {} short (fewer than {LIST_LIMIT} with a next_cursor), {} passes to the end; largest list answer {}",
            format_rate(l.pages as f64),
            format_rate(l.items as f64),
            l.largest_page_items,
            l.short_pages,
            l.full_passes,
            format_size(l.largest_response_bytes),
        );
        let _ = write!(
            list,
            "; phase {:.1}s (the window, then the answers in flight); {} step requests received; {}",
            self.phase_secs,
            format_rate(self.step_requests as f64),
            if self.settled {
                format!(
                    "every run finished {:.1}s after the phase",
                    self.settle_secs
                )
            } else {
                format!(
                    "runs still unfinished {:.1}s after the phase",
                    self.settle_secs
                )
            }
        );
        out.push(list);
        out
    }
}

impl Scenario for Memory {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn about(&self) -> &'static str {
        "peak RSS under the worst mix (200-run list pages, 16 MiB webhooks, big-run reads, small webhooks) at default settings; goal < 250 MB; only with -s"
    }

    fn sends_load(&self) -> bool {
        // Its figure is memory, not a rate: no baseline to compare with.
        false
    }

    fn by_default(&self) -> bool {
        // Today it drives the server to gigabytes, and it takes the preload, the window, the
        // in-flight answers and up to 30 s of settling: only with `-s memory`.
        false
    }

    fn run<'a>(
        &'a self,
        settings: &'a Settings,
        backend: &'a Backend,
    ) -> BoxFuture<'a, Result<Outcome, Error>> {
        Box::pin(run(settings, backend))
    }
}

/// The workflow: input `items` (an array), one `http` step POSTing the first item's id to `url`.
pub fn workflow(url: &str) -> Value {
    json!({
        "name": "mem",
        "description": "triggerd-bench: a batch of order lines (the memory scenario)",
        "inputs": {"items": {"type": "array", "required": true}},
        "steps": [{
            "id": "call",
            "type": "http",
            "request": {
                "method": "POST",
                "url": url,
                "body": {"first": "{{ input.items[0].id }}"}
            }
        }],
        "output": {"status": "{{ steps.call.output.status }}"}
    })
}

/// A trigger's configuration: no secret, no rate limit, `items` mapped from the body, and
/// `max_body_bytes` when given (else the default).
pub fn trigger_config(max_body_bytes: Option<u64>) -> Value {
    let mut config = json!({
        "rate_limit_per_minute": 0,
        "input_mapping": {"items": "items"}
    });
    if let Some(max) = max_body_bytes {
        config["max_body_bytes"] = json!(max);
    }
    config
}

/// Bytes for people: `512 B`, `12.5 KB`, `99.8 MB` (KiB and MiB, as [`format_mib`]).
pub fn format_size(bytes: u64) -> String {
    match bytes {
        0..=1023 => format!("{bytes} B"),
        1024..=1_048_575 => format!("{:.1} KB", bytes as f64 / 1024.0),
        _ => format_mib(bytes),
    }
}

/// `{"items":[{"id":0,"sku":"SKU-0000","qty":1,"price":2450,"tags":["a","b"]}, ...]}` with as
/// many items as fit in `max_bytes` (at least one).
pub fn object_heavy_body(max_bytes: usize) -> Bytes {
    let mut out = String::with_capacity(max_bytes);
    out.push_str("{\"items\":[");
    let mut item = String::new();
    for i in 0usize.. {
        item.clear();
        let _ = write!(
            item,
            "{}{{\"id\":{i},\"sku\":\"SKU-{:04}\",\"qty\":{},\"price\":2450,\"tags\":[\"a\",\"b\"]}}",
            if i == 0 { "" } else { "," },
            i % 10_000,
            1 + i % 4,
        );
        if i > 0 && out.len() + item.len() + 2 > max_bytes {
            break;
        }
        out.push_str(&item);
    }
    out.push_str("]}");
    Bytes::from(out)
}

/// Reads a list answer (`{"data": [...], "next_cursor": ...}`) as it streams in, keeping only
/// what the scenario needs: the number of items, `next_cursor`, and the items' `id`s. Nothing
/// else is kept, so a page of a gigabyte costs this tool no memory.
#[derive(Debug, Default)]
pub struct PageScan {
    /// Items of `data` (objects two levels down).
    pub items: usize,
    /// The root's `next_cursor`, when it is a string.
    pub next_cursor: Option<String>,
    /// The items' `id`s (string fields `id` of the objects in `data`).
    pub ids: Vec<String>,
    /// Open containers, innermost last: `true` for an object.
    stack: Vec<bool>,
    in_string: bool,
    escaped: bool,
    /// In an object, the next string is a key.
    expect_key: bool,
    capture: Capture,
    buf: Vec<u8>,
    root_key: Vec<u8>,
    item_key: Vec<u8>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Capture {
    #[default]
    None,
    Key,
    Value,
}

/// Keys and values longer than this are not kept whole (cursors and ids are short).
const CAPTURE_MAX: usize = 256;

impl PageScan {
    /// Reads the next chunk of the answer.
    pub fn feed(&mut self, chunk: &[u8]) {
        let mut i = 0;
        while i < chunk.len() {
            if self.in_string && self.capture == Capture::None && !self.escaped {
                // Skip the string's body quickly: only a quote or a backslash matters.
                match chunk[i..].iter().position(|&c| c == b'"' || c == b'\\') {
                    Some(p) => i += p,
                    None => return,
                }
            }
            self.byte(chunk[i]);
            i += 1;
        }
    }

    fn byte(&mut self, b: u8) {
        if self.in_string {
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.in_string = false;
                self.end_string();
                return;
            }
            if self.capture != Capture::None && self.buf.len() < CAPTURE_MAX {
                self.buf.push(b);
            }
            return;
        }
        let depth = self.stack.len();
        match b {
            b'"' => {
                self.in_string = true;
                self.buf.clear();
                let in_object = self.stack.last() == Some(&true);
                self.capture = if in_object && self.expect_key {
                    if depth == 1 || depth == 3 {
                        Capture::Key
                    } else {
                        Capture::None
                    }
                } else if (depth == 1 && self.root_key == b"next_cursor")
                    || (depth == 3 && self.item_key == b"id")
                {
                    Capture::Value
                } else {
                    Capture::None
                };
            }
            b'{' => {
                if depth == 2 {
                    self.items += 1;
                }
                self.stack.push(true);
                self.expect_key = true;
            }
            b'[' => {
                self.stack.push(false);
                self.expect_key = false;
            }
            b'}' | b']' => {
                self.stack.pop();
                self.expect_key = false;
            }
            b':' => self.expect_key = false,
            b',' => self.expect_key = self.stack.last() == Some(&true),
            _ => {}
        }
    }

    fn end_string(&mut self) {
        let depth = self.stack.len();
        match self.capture {
            Capture::Key if depth == 1 => self.root_key.clone_from(&self.buf),
            Capture::Key => self.item_key.clone_from(&self.buf),
            Capture::Value => {
                let text = String::from_utf8_lossy(&self.buf).into_owned();
                if depth == 1 {
                    self.next_cursor = Some(text);
                } else {
                    self.ids.push(text);
                }
            }
            Capture::None => {}
        }
        self.capture = Capture::None;
    }
}

/// One client's tally of one kind of request.
#[derive(Debug, Default)]
struct Tally {
    requests: u64,
    statuses: BTreeMap<String, u64>,
    latency: Latency,
    largest: u64,
}

impl Tally {
    fn merge(&mut self, other: &Tally) {
        self.requests += other.requests;
        for (k, v) in &other.statuses {
            *self.statuses.entry(k.clone()).or_default() += v;
        }
        self.latency.merge(&other.latency);
        self.largest = self.largest.max(other.largest);
    }

    fn report(&self, kind: &'static str, what: String, clients: usize) -> KindReport {
        KindReport {
            kind,
            what,
            clients,
            requests: self.requests,
            statuses: self.statuses.clone(),
            latency: self.latency.summary(),
            largest_response_bytes: self.largest,
        }
    }
}

/// A client on one keep-alive connection, replaced after a failure.
struct Conn {
    addr: SocketAddr,
    api: Option<ApiClient>,
}

impl Conn {
    fn new(addr: SocketAddr) -> Conn {
        Conn { addr, api: None }
    }

    /// Sends one request, hands its answer to `on_chunk` as it arrives and records it in
    /// `tally`; returns the status and the answer's length, or `None` when there was no
    /// answer (after pausing, so that a dead server is not hammered).
    async fn exchange(
        &mut self,
        tally: &mut Tally,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        on_chunk: impl FnMut(&[u8]),
    ) -> Option<(u16, u64)> {
        tally.requests += 1;
        let started = Instant::now();
        let (addr, api) = (self.addr, &mut self.api);
        let attempt = async move {
            let client = match api.take() {
                Some(client) => client,
                None => ApiClient::connect(addr, ADMIN_TOKEN).await?,
            };
            api.insert(client)
                .stream(method, path, body, on_chunk)
                .await
        };
        let failure = match tokio::time::timeout(REQUEST_TIMEOUT, attempt).await {
            Ok(Ok((status, len))) => {
                tally.latency.record(started.elapsed());
                *tally.statuses.entry(status.to_string()).or_default() += 1;
                tally.largest = tally.largest.max(len);
                if status == 503 {
                    tokio::time::sleep(REFUSAL_PAUSE).await;
                }
                return Some((status, len));
            }
            Ok(Err(_)) => "transport",
            Err(_) => "timeout",
        };
        self.api = None;
        *tally.statuses.entry(failure.to_owned()).or_default() += 1;
        tokio::time::sleep(REFUSAL_PAUSE).await;
        None
    }
}

/// The largest `VmRSS` of a process, sampled every [`SAMPLE_EVERY`] until dropped.
struct Sampler {
    peak: Arc<AtomicU64>,
    _task: AbortOnDrop,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let peak = Arc::new(AtomicU64::new(0));
        let task = {
            let peak = peak.clone();
            tokio::spawn(async move {
                loop {
                    if let Some((rss, _)) = memory(pid) {
                        peak.fetch_max(rss, Ordering::Relaxed);
                    }
                    tokio::time::sleep(SAMPLE_EVERY).await;
                }
            })
        };
        Sampler {
            peak,
            _task: AbortOnDrop(task),
        }
    }

    fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

async fn run(settings: &Settings, backend: &Backend) -> Result<Outcome, Error> {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| Error::new(format!("cannot listen for the step's requests: {e}")))?;
    let target = listener
        .local_addr()
        .map_err(|e| Error::new(format!("cannot read the receiver's address: {e}")))?;
    let received = Arc::new(AtomicU64::new(0));
    let _receiver = {
        let received = received.clone();
        AbortOnDrop(tokio::spawn(baseline::serve_with(listener, move || {
            received.fetch_add(1, Ordering::Relaxed);
        })))
    };

    let server = Triggerd::start_with_env(
        settings,
        backend,
        &[("TRIGGERD_ALLOW_PRIVATE_NETWORKS", "true")],
    )
    .await?;
    let (addr, pid) = (server.addr(), server.pid());
    let mut api = ApiClient::connect(addr, ADMIN_TOKEN).await?;
    let deployment = fixture::deploy(&mut api, &workflow(&format!("http://{target}/"))).await?;
    let (_, token_a) = fixture::webhook(&mut api, &deployment, "a", &trigger_config(None)).await?;
    let (trigger_b, token_b) = fixture::webhook(
        &mut api,
        &deployment,
        "b",
        &trigger_config(Some(MAX_MAX_BODY_BYTES)),
    )
    .await?;
    drop(api);

    let small = object_heavy_body(SMALL_BODY);
    let medium = object_heavy_body(MEDIUM_BODY);
    let big = object_heavy_body(settings.memory_big_body);
    let body_bytes = BodySizes {
        small: small.len(),
        medium: medium.len(),
        big: big.len(),
    };
    let (path_a, path_b) = (
        format!("/api/webhooks/{token_a}"),
        format!("/api/webhooks/{token_b}"),
    );

    let sampler = Sampler::start(pid);
    let (preload, preloaded_ids) = preload(addr, &path_a, &medium, settings.memory_preload).await;

    let phase_start = Instant::now();
    let deadline = phase_start + settings.duration;
    let lists: Vec<JoinHandle<(Tally, ListReport)>> = (0..LIST_CLIENTS)
        .map(|_| tokio::spawn(list_client(addr, deadline)))
        .collect();
    let bigs: Vec<JoinHandle<Tally>> = (0..BIG_CLIENTS)
        .map(|_| tokio::spawn(post_client(addr, path_b.clone(), big.clone(), deadline)))
        .collect();
    let reads: Vec<JoinHandle<Tally>> = (0..READ_CLIENTS)
        .map(|_| {
            let fallback = preloaded_ids.clone();
            tokio::spawn(read_client(addr, trigger_b.clone(), fallback, deadline))
        })
        .collect();
    let smalls: Vec<JoinHandle<Tally>> = (0..SMALL_CLIENTS)
        .map(|_| tokio::spawn(post_client(addr, path_a.clone(), small.clone(), deadline)))
        .collect();

    let (mut list_tally, mut list) = (Tally::default(), ListReport::default());
    for task in lists {
        let (t, l) = task
            .await
            .map_err(|e| Error::new(format!("a list client failed: {e}")))?;
        list_tally.merge(&t);
        list.merge(&l);
    }
    let mut merged = Vec::new();
    for tasks in [bigs, reads, smalls] {
        let mut total = Tally::default();
        for task in tasks {
            let t = task
                .await
                .map_err(|e| Error::new(format!("a client failed: {e}")))?;
            total.merge(&t);
        }
        merged.push(total);
    }
    let kinds = vec![
        list_tally.report(
            "list",
            format!("GET /runs?limit={LIST_LIMIT}, following next_cursor"),
            LIST_CLIENTS,
        ),
        merged[0].report(
            "big webhook",
            format!("POST {} bytes to trigger B", format_rate(body_bytes.big as f64)),
            BIG_CLIENTS,
        ),
        merged[1].report(
            "reads",
            format!(
                "GET /runs?trigger_id=B&limit=5, /runs/{{id}} of each, /triggers/B/requests?limit={LIST_LIMIT}"
            ),
            READ_CLIENTS,
        ),
        merged[2].report(
            "small webhook",
            format!(
                "POST {} bytes to trigger A",
                format_rate(body_bytes.small as f64)
            ),
            SMALL_CLIENTS,
        ),
    ];

    let phase_end = Instant::now();
    let phase_secs = phase_end.duration_since(phase_start).as_secs_f64();
    let alive = memory(pid).is_some();
    let settled = alive && settle(addr, phase_end + SETTLE_TIMEOUT).await;
    let settle_secs = phase_end.elapsed().as_secs_f64();
    let end = memory(pid);
    let sampled_peak_rss = sampler.peak();

    let mut o = Outcome::new("memory", backend.name());
    o.peak_rss = Some(end.map_or(sampled_peak_rss, |(_, hwm)| hwm));
    let peak = o.peak_rss.unwrap_or(0);
    let mut problems = Vec::new();
    if end.is_none() {
        problems.push(format!(
            "the server exited during the scenario (killed for lack of memory?); the peak shown is the largest RSS sampled; its last lines:\n{}",
            server.log_tail()
        ));
    }
    if preload.ok() == 0 {
        problems.push(format!(
            "no preload webhook was accepted: {:?}",
            preload.statuses
        ));
    }
    for k in &kinds {
        if k.answered() == 0 {
            problems.push(format!(
                "no {} request was answered: {:?}",
                k.kind, k.statuses
            ));
        }
    }
    if !problems.is_empty() {
        o.error = Some(problems.join("; "));
    }
    o.memory = Some(MemoryReport {
        goal_bytes: GOAL_BYTES,
        met: end.is_some() && peak < GOAL_BYTES,
        sampled_peak_rss,
        rss_after: end.map_or(0, |(rss, _)| rss),
        body_bytes,
        preload,
        kinds,
        list,
        step_requests: received.load(Ordering::Relaxed),
        phase_secs,
        settled,
        settle_secs,
    });
    Ok(o)
}

/// `count` POSTs of `body` to `path`, [`PRELOAD_CONCURRENCY`] at a time; returns their tally and
/// the ids of the last runs they started (at most 5).
async fn preload(
    addr: SocketAddr,
    path: &str,
    body: &Bytes,
    count: usize,
) -> (KindReport, Arc<Vec<String>>) {
    let tasks: Vec<JoinHandle<(Tally, Vec<String>)>> = (0..PRELOAD_CONCURRENCY)
        .map(|w| {
            let (path, body) = (path.to_owned(), body.clone());
            tokio::spawn(async move {
                let mut conn = Conn::new(addr);
                let (mut tally, mut ids) = (Tally::default(), Vec::new());
                for _ in (w..count).step_by(PRELOAD_CONCURRENCY) {
                    let mut answer = Vec::new();
                    let sent = conn
                        .exchange(&mut tally, Method::POST, &path, Some(body.clone()), |c| {
                            answer.extend_from_slice(c)
                        })
                        .await;
                    if let Some((201, _)) = sent
                        && let Ok(v) = serde_json::from_slice::<Value>(&answer)
                        && let Some(id) = v["run_id"].as_str()
                    {
                        ids.push(id.to_owned());
                    }
                }
                (tally, ids)
            })
        })
        .collect();
    let (mut total, mut ids) = (Tally::default(), Vec::new());
    for task in tasks {
        if let Ok((t, i)) = task.await {
            total.merge(&t);
            ids.extend(i);
        }
    }
    let ids = ids.split_off(ids.len().saturating_sub(5));
    let what = format!("POST {} bytes to trigger A", format_rate(body.len() as f64));
    (
        total.report("preload", what, PRELOAD_CONCURRENCY),
        Arc::new(ids),
    )
}

/// Pages through `GET /runs?limit=200` until `deadline`, from the newest run to `next_cursor`
/// `null`, then from the newest again. A refused or failed page is asked for again.
async fn list_client(addr: SocketAddr, deadline: Instant) -> (Tally, ListReport) {
    let (mut conn, mut tally, mut list) =
        (Conn::new(addr), Tally::default(), ListReport::default());
    let mut cursor: Option<String> = None;
    while Instant::now() < deadline {
        let path = match &cursor {
            Some(c) => format!("/api/v1/runs?limit={LIST_LIMIT}&cursor={c}"),
            None => format!("/api/v1/runs?limit={LIST_LIMIT}"),
        };
        let mut scan = PageScan::default();
        let answer = conn
            .exchange(&mut tally, Method::GET, &path, None, |c| scan.feed(c))
            .await;
        if let Some((200, bytes)) = answer {
            list.page(&scan, bytes);
            cursor = scan.next_cursor;
        }
    }
    (tally, list)
}

/// POSTs `body` to `path` until `deadline`.
async fn post_client(addr: SocketAddr, path: String, body: Bytes, deadline: Instant) -> Tally {
    let (mut conn, mut tally) = (Conn::new(addr), Tally::default());
    while Instant::now() < deadline {
        conn.exchange(&mut tally, Method::POST, &path, Some(body.clone()), |_| {})
            .await;
    }
    tally
}

/// Until `deadline`: the newest 5 runs of `trigger` (or `fallback` while it has none), each run
/// whole, then the trigger's activity log.
async fn read_client(
    addr: SocketAddr,
    trigger: String,
    fallback: Arc<Vec<String>>,
    deadline: Instant,
) -> Tally {
    let (mut conn, mut tally) = (Conn::new(addr), Tally::default());
    while Instant::now() < deadline {
        let mut scan = PageScan::default();
        conn.exchange(
            &mut tally,
            Method::GET,
            &format!("/api/v1/runs?trigger_id={trigger}&limit=5"),
            None,
            |c| scan.feed(c),
        )
        .await;
        let ids = if scan.ids.is_empty() {
            fallback.as_slice()
        } else {
            scan.ids.as_slice()
        };
        for id in ids {
            if Instant::now() >= deadline {
                return tally;
            }
            conn.exchange(
                &mut tally,
                Method::GET,
                &format!("/api/v1/runs/{id}"),
                None,
                |_| {},
            )
            .await;
        }
        if Instant::now() >= deadline {
            break;
        }
        conn.exchange(
            &mut tally,
            Method::GET,
            &format!("/api/v1/triggers/{trigger}/requests?limit={LIST_LIMIT}"),
            None,
            |_| {},
        )
        .await;
    }
    tally
}

/// Polls `GET /runs?status=pending&limit=1` and `?status=running&limit=1` until both are empty
/// (true) or `deadline` passes (false).
async fn settle(addr: SocketAddr, deadline: Instant) -> bool {
    let (mut conn, mut tally) = (Conn::new(addr), Tally::default());
    loop {
        let mut busy = false;
        for status in ["pending", "running"] {
            let mut scan = PageScan::default();
            let answer = conn
                .exchange(
                    &mut tally,
                    Method::GET,
                    &format!("/api/v1/runs?status={status}&limit=1"),
                    None,
                    |c| scan.feed(c),
                )
                .await;
            busy |= !matches!(answer, Some((200, _))) || scan.items > 0;
        }
        if !busy {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_fill_their_limit_with_many_small_objects() {
        for max in [SMALL_BODY, MEDIUM_BODY, DEFAULT_BIG_BODY] {
            let body = object_heavy_body(max);
            assert!(body.len() <= max, "{} > {max}", body.len());
            // No room left for one more item (each is about 70 bytes).
            assert!(body.len() + 80 > max, "{} bytes for {max}", body.len());
            assert!(body.ends_with(b"]}"));
            if max == DEFAULT_BIG_BODY {
                // ~230,000 items: parsing it is the server's problem, not this test's.
                continue;
            }
            let v: Value = serde_json::from_slice(&body).expect("JSON");
            let items = v["items"].as_array().expect("items");
            assert_eq!(items[0]["sku"], "SKU-0000");
            assert_eq!(items[0]["tags"], json!(["a", "b"]));
            assert_eq!(items.last().unwrap()["id"], items.len() - 1);
        }
        assert!(MEDIUM_BODY < DEFAULT_MAX_BODY_BYTES as usize);
        assert!(DEFAULT_BIG_BODY < MAX_MAX_BODY_BYTES as usize);
        assert!(object_heavy_body(SMALL_BODY).len() > 250);
        // Too small for one item: still one.
        let tiny: Value = serde_json::from_slice(&object_heavy_body(10)).unwrap();
        assert_eq!(tiny["items"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn the_workflow_and_triggers_map_the_items() {
        let w = workflow("http://127.0.0.1:9/");
        assert_eq!(w["inputs"]["items"]["type"], "array");
        assert_eq!(w["steps"][0]["request"]["url"], "http://127.0.0.1:9/");
        assert_eq!(
            w["steps"][0]["request"]["body"]["first"],
            "{{ input.items[0].id }}"
        );
        assert_eq!(trigger_config(None)["input_mapping"]["items"], "items");
        assert!(trigger_config(None).get("max_body_bytes").is_none());
        assert_eq!(
            trigger_config(Some(MAX_MAX_BODY_BYTES))["max_body_bytes"],
            16_777_216
        );
    }

    fn scan_in_chunks(text: &str, chunk: usize) -> PageScan {
        let mut scan = PageScan::default();
        for c in text.as_bytes().chunks(chunk) {
            scan.feed(c);
        }
        scan
    }

    #[test]
    fn a_page_is_scanned_in_any_chunking() {
        let page = json!({
            "data": [
                {"id": "run_1", "input": {"items": [{"id": 0, "sku": "x\"}{[", "tags": ["a"]}]},
                 "trigger_input": {"id": "not-a-run", "next_cursor": "inner"}},
                {"id": "run_2", "note": "a \\\" quote", "steps": [{"id": "call"}]},
                {"input": {}, "id": "run_3"}
            ],
            "next_cursor": "cur_abc"
        })
        .to_string();
        for chunk in [1, 2, 3, 7, 64, page.len()] {
            let scan = scan_in_chunks(&page, chunk);
            assert_eq!(scan.items, 3, "chunks of {chunk}");
            assert_eq!(scan.ids, ["run_1", "run_2", "run_3"], "chunks of {chunk}");
            assert_eq!(scan.next_cursor.as_deref(), Some("cur_abc"));
        }
        let last = scan_in_chunks(r#"{"next_cursor": null, "data": [{"id":"r"}, {}]}"#, 5);
        assert_eq!((last.items, last.next_cursor), (2, None));
        let empty = scan_in_chunks(r#"{"data":[],"next_cursor":null}"#, 4);
        assert_eq!((empty.items, empty.ids.len()), (0, 0));
        let refusal = scan_in_chunks(r#"{"error":{"code":"overloaded","message":"m"}}"#, 4);
        assert_eq!((refusal.items, refusal.next_cursor), (0, None));
    }

    #[test]
    fn list_pages_count_short_pages_and_passes() {
        let mut l = ListReport::default();
        let scan = |items: usize, cursor: Option<&str>| PageScan {
            items,
            next_cursor: cursor.map(str::to_owned),
            ..PageScan::default()
        };
        l.page(&scan(200, Some("c")), 1_000);
        l.page(&scan(37, Some("c")), 5_000);
        l.page(&scan(12, None), 10);
        assert_eq!(
            (
                l.pages,
                l.items,
                l.largest_page_items,
                l.short_pages,
                l.full_passes
            ),
            (3, 249, 200, 1, 1)
        );
        assert_eq!(l.largest_response_bytes, 5_000);
    }

    fn report(statuses: &[(&str, u64)]) -> KindReport {
        let mut t = Tally::default();
        for (k, v) in statuses {
            t.statuses.insert((*k).to_owned(), *v);
            t.requests += v;
        }
        t.latency.record_micros(1_500);
        t.largest = 3 * 1024 * 1024;
        t.report("big webhook", "POST 16 bytes to trigger B".to_owned(), 4)
    }

    #[test]
    fn kinds_count_answers_by_status() {
        let k = report(&[("201", 5), ("503", 3), ("transport", 2)]);
        assert_eq!((k.requests, k.answered(), k.ok()), (10, 8, 5));
        assert_eq!(
            k.line(),
            "big webhook (4 clients, POST 16 bytes to trigger B): 10 requests, 201: 5, 503: 3, \
             transport: 2; p50 1.50ms p99 1.50ms max 1.50ms; largest answer 3.0 MB"
        );
        assert_eq!(format_size(96), "96 B");
        assert_eq!(format_size(1536), "1.5 KB");
        assert_eq!(format_size(104_632_840), "99.8 MB");
    }

    #[test]
    fn the_report_says_whether_the_goal_was_met() {
        let r = MemoryReport {
            goal_bytes: GOAL_BYTES,
            met: false,
            sampled_peak_rss: 300 << 20,
            rss_after: 40 << 20,
            body_bytes: BodySizes {
                small: 290,
                medium: 261_000,
                big: 16_000_000,
            },
            preload: report(&[("201", 400)]),
            kinds: vec![report(&[("201", 1)])],
            list: ListReport {
                pages: 3,
                items: 420,
                largest_page_items: 200,
                short_pages: 1,
                full_passes: 1,
                largest_response_bytes: 52 << 20,
            },
            step_requests: 401,
            phase_secs: 12.0,
            settled: true,
            settle_secs: 2.34,
        };
        let lines = r.lines("memory on sqlite", Some(2048 << 20));
        assert_eq!(lines.len(), 4);
        assert_eq!(
            lines[0],
            "memory on sqlite: peak RSS 2048.0 MB (VmHWM over the server's life; largest sampled \
             300.0 MB, 40.0 MB once settled); goal below 250.0 MB: NOT MET"
        );
        assert!(lines[1].starts_with("memory on sqlite: big webhook (4 clients"));
        assert!(
            lines[3].contains("1 short (fewer than 200 with a next_cursor)")
                && lines[3].contains("largest list answer 52.0 MB; phase 12.0s")
                && lines[3].contains("every run finished 2.3s after the phase"),
            "{}",
            lines[3]
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["goal_bytes"], GOAL_BYTES);
        assert_eq!(json["kinds"][0]["statuses"]["201"], 1);
        assert_eq!(json["list"]["largest_response_bytes"], 52u64 << 20);
    }
}
