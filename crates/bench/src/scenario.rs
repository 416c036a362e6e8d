//! Scenarios: each starts a fresh `triggerd serve` (fresh SQLite file, or a fresh PostgreSQL
//! database), sets it up through the management API, loads it and reports. New scenarios (hook
//! delivery) implement [`Scenario`] and join [`registry`]; one that needs a server setting starts
//! it with [`Triggerd::start_with_env`] (as [`Steps`] and [`crate::cron::CronScale`] do).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, UNIX_EPOCH};

use http::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::api::ApiClient;
use crate::load::{self, LoadPlan, LoadReport, Prepared};
use crate::postgres::PgDatabase;
use crate::process::{ServerProcess, TempDir, memory};
use crate::stats::{Latency, LatencySummary};
use crate::{Backend, Error, Settings, baseline, fixture};

/// A boxed future, so that scenarios can be trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The admin token every server under test is started with.
pub const ADMIN_TOKEN: &str = "tdb_bench_admin_token_0123456789abcdef";

/// One benchmark scenario.
pub trait Scenario: Send + Sync {
    /// Its name on the command line and in the table.
    fn name(&self) -> &'static str;
    /// One line for `--list`.
    fn about(&self) -> &'static str;
    /// Whether it sends load (and so needs the baseline to compare with).
    fn sends_load(&self) -> bool {
        true
    }
    /// Whether it runs when no scenario is named (`cron-scale`, minutes long, and `memory`, which
    /// drives the server to gigabytes, run only when asked for with `-s`).
    fn by_default(&self) -> bool {
        true
    }
    /// Runs it against a fresh server on `backend`.
    fn run<'a>(
        &'a self,
        settings: &'a Settings,
        backend: &'a Backend,
    ) -> BoxFuture<'a, Result<Outcome, Error>>;
}

/// Every scenario, in the order they run.
pub fn registry() -> Vec<Box<dyn Scenario>> {
    vec![
        Box::new(Ingest {
            many: false,
            dedup: false,
        }),
        Box::new(Ingest {
            many: true,
            dedup: false,
        }),
        Box::new(Ingest {
            many: false,
            dedup: true,
        }),
        Box::new(EndToEnd {
            name: "e2e",
            about: "webhook -> run completed (no steps): runs/s from the first request to the last completion, completion-lag percentiles",
            source: || Box::new(RunsApi),
            env: &[],
        }),
        Box::new(EndToEnd {
            name: "e2e-hooks",
            about: "e2e with an event hook on run.completed to a local receiver: delivered events/s, webhook -> delivery and completion -> delivery lag",
            source: || Box::<crate::hooks::HookReceiver>::default(),
            env: &[("TRIGGERD_ALLOW_PRIVATE_NETWORKS", "true")],
        }),
        Box::new(crate::hooks::HooksDrain),
        Box::new(Steps),
        Box::new(Idle),
        Box::new(crate::cron::CronScale),
        Box::new(crate::memory::Memory),
    ]
}

/// What one scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The scenario's name.
    pub scenario: String,
    /// `sqlite`, `postgres`, or `-` for the baseline.
    pub backend: String,
    /// Webhook triggers the load was spread over.
    pub triggers: usize,
    /// The load's figures.
    pub load: Option<LoadReport>,
    /// 2xx/s relative to the baseline's in the same invocation.
    pub ratio: Option<f64>,
    /// Webhook → run completed.
    pub e2e: Option<E2eReport>,
    /// The `steps` scenario's step executions.
    pub steps: Option<StepReport>,
    /// RSS once started with an empty database and settled (the `idle` scenario), bytes.
    pub idle_rss: Option<u64>,
    /// The server's peak RSS over its whole life (`VmHWM`), bytes.
    pub peak_rss: Option<u64>,
    /// The `cron-scale` scenario's figures.
    pub cron: Option<crate::cron::CronReport>,
    /// SQLite: the largest the WAL file grew during the load (the `ingest` scenarios), bytes.
    pub peak_wal: Option<u64>,
    /// The `memory` scenario's figures (its peak is `peak_rss`).
    pub memory: Option<crate::memory::MemoryReport>,
    /// Why the scenario could not finish.
    pub error: Option<String>,
}

impl Outcome {
    /// An empty outcome of `scenario` on `backend`.
    pub fn new(scenario: &str, backend: &str) -> Outcome {
        Outcome {
            scenario: scenario.to_owned(),
            backend: backend.to_owned(),
            triggers: 0,
            load: None,
            ratio: None,
            e2e: None,
            steps: None,
            idle_rss: None,
            peak_rss: None,
            cron: None,
            peak_wal: None,
            memory: None,
            error: None,
        }
    }

    /// An outcome that only says what went wrong.
    pub fn failed(scenario: &str, backend: &str, error: &Error) -> Outcome {
        let mut o = Outcome::new(scenario, backend);
        o.error = Some(error.to_string());
        o
    }
}

/// A `triggerd serve` with a database of its own; the process stops (and the database is
/// dropped) when this is dropped.
#[derive(Debug)]
pub struct Triggerd {
    // Field order is drop order: the process first, then its database and directory.
    process: ServerProcess,
    _database: Option<PgDatabase>,
    _dir: TempDir,
}

impl Triggerd {
    /// Starts one on a fresh database, with no `TRIGGERD_*` variable but its listen address,
    /// database URL and admin token (so it runs with the defaults, whatever the caller exports).
    pub async fn start(settings: &Settings, backend: &Backend) -> Result<Triggerd, Error> {
        Triggerd::start_with_env(settings, backend, &[]).await
    }

    /// Like [`Triggerd::start`], plus the scenario's own environment `env` (set last, so it
    /// may also replace the listen address, database URL or token): the one way a scenario
    /// changes a server setting, e.g. `TRIGGERD_ALLOW_PRIVATE_NETWORKS=true` for `steps`.
    pub async fn start_with_env(
        settings: &Settings,
        backend: &Backend,
        env: &[(&str, &str)],
    ) -> Result<Triggerd, Error> {
        let (bin, backend) = (settings.triggerd.clone(), backend.clone());
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        tokio::task::spawn_blocking(move || {
            let dir = TempDir::new()?;
            let database = match &backend {
                Backend::Sqlite => None,
                Backend::Postgres(url) => Some(PgDatabase::create(url)?),
            };
            let url = match &database {
                Some(db) => db.url().to_owned(),
                None => format!("sqlite://{}/triggerd.db", dir.path().display()),
            };
            let mut command = Command::new(&bin);
            command.arg("serve").current_dir(dir.path());
            for (key, _) in std::env::vars_os() {
                if key.to_string_lossy().starts_with("TRIGGERD_") {
                    command.env_remove(key);
                }
            }
            command
                .env("TRIGGERD_LISTEN", "127.0.0.1:0")
                .env("TRIGGERD_DATABASE_URL", &url)
                .env("TRIGGERD_API_TOKEN", ADMIN_TOKEN)
                .env("RUST_LOG", "warn")
                .envs(env);
            let process = ServerProcess::spawn(command, &format!("{}", bin.display()))?;
            Ok(Triggerd {
                process,
                _database: database,
                _dir: dir,
            })
        })
        .await
        .map_err(|e| Error::new(format!("server start-up task failed: {e}")))?
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.process.addr()
    }

    /// Its SQLite WAL file; `None` on PostgreSQL.
    pub fn wal_path(&self) -> Option<std::path::PathBuf> {
        self._database
            .is_none()
            .then(|| self._dir.path().join("triggerd.db-wal"))
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// `VmHWM`, bytes.
    pub fn peak_rss(&self) -> Option<u64> {
        memory(self.pid()).map(|(_, hwm)| hwm)
    }

    /// The server's last log lines.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }
}

/// The plan every load scenario uses: the settings' connections, warm-up and duration.
pub(crate) fn plan(
    settings: &Settings,
    addr: SocketAddr,
    pid: u32,
    requests: Vec<Prepared>,
) -> LoadPlan {
    LoadPlan {
        addr,
        connections: settings.connections,
        warmup: settings.warmup,
        duration: settings.duration,
        requests: Arc::new(requests),
        server_pid: Some(pid),
        gate: None,
        unique_header: None,
    }
}

/// How many distinct requests to prepare for `triggers` triggers: a few bodies per trigger, at
/// least 1,024 so consecutive requests differ.
pub(crate) fn request_count(triggers: usize) -> usize {
    (triggers * 4).max(1024)
}

/// The baseline: the bare hyper server of [`crate::baseline`] in a child process, same load.
pub async fn run_baseline(settings: &Settings) -> Result<Outcome, Error> {
    let exe = settings.bench_exe.clone();
    let process = tokio::task::spawn_blocking(move || {
        let mut command = Command::new(&exe);
        command.args(["--serve-baseline", "127.0.0.1:0"]);
        ServerProcess::spawn(command, "the baseline server")
    })
    .await
    .map_err(|e| Error::new(format!("baseline start-up task failed: {e}")))??;
    let requests = fixture::plain_requests("/baseline", request_count(1));
    let report = load::run(&plan(settings, process.addr(), process.pid(), requests)).await;
    let mut o = Outcome::new("baseline", "-");
    o.peak_rss = memory(process.pid()).map(|(_, hwm)| hwm);
    o.load = Some(report);
    o.ratio = Some(1.0);
    Ok(o)
}

/// `ingest` (one trigger) and `ingest-many` (`Settings::many_triggers`): signed webhooks with
/// input mapping, as fast as the connections allow.
#[derive(Debug)]
pub struct Ingest {
    /// Spread over many triggers.
    pub many: bool,
    /// `ingest-dedup`: the trigger de-duplicates by a header every request sets to a new value
    /// (each request claims a new key: the cost of `config.dedup` when nothing repeats).
    pub dedup: bool,
}

/// The delivery-id header of `ingest-dedup`.
const DELIVERY_HEADER: &str = "x-bench-delivery";

impl Scenario for Ingest {
    fn name(&self) -> &'static str {
        match (self.many, self.dedup) {
            (_, true) => "ingest-dedup",
            (true, false) => "ingest-many",
            (false, false) => "ingest",
        }
    }

    fn about(&self) -> &'static str {
        if self.dedup {
            "ingest with config.dedup keyed by a delivery-id header unique per request: the cost of de-duplication"
        } else if self.many {
            "signed ~300-byte webhooks spread over many triggers (default 1,000): cache and rate-limit structures at scale"
        } else {
            "signed ~300-byte JSON webhooks with input mapping to one trigger: req/s, latency, CPU, RSS"
        }
    }

    fn run<'a>(
        &'a self,
        settings: &'a Settings,
        backend: &'a Backend,
    ) -> BoxFuture<'a, Result<Outcome, Error>> {
        Box::pin(async move {
            let server = Triggerd::start(settings, backend).await?;
            let triggers = if self.many { settings.many_triggers } else { 1 };
            let hooks = fixture::setup(server.addr(), ADMIN_TOKEN, triggers, 8).await?;
            let mut plan = plan(
                settings,
                server.addr(),
                server.pid(),
                fixture::signed_requests(&hooks, request_count(triggers)),
            );
            if self.dedup {
                let mut api = crate::api::ApiClient::connect(server.addr(), ADMIN_TOKEN).await?;
                for hook in &hooks {
                    api.expect(
                        http::Method::PATCH,
                        &format!("/triggers/{}", hook.id),
                        Some(&serde_json::json!({"config": {"dedup": {"key": format!("$headers.{DELIVERY_HEADER}")}}})),
                        200,
                    )
                    .await?;
                }
                plan.unique_header = Some(http::HeaderName::from_static(DELIVERY_HEADER));
            }
            // The WAL file's size, sampled every 20 ms while the load runs.
            let peak_wal = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let sampler = server.wal_path().map(|wal| {
                let peak = peak_wal.clone();
                tokio::spawn(async move {
                    loop {
                        let size = std::fs::metadata(&wal).map_or(0, |m| m.len());
                        peak.fetch_max(size, std::sync::atomic::Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                })
            });
            let report = load::run(&plan).await;
            let mut o = Outcome::new(self.name(), backend.name());
            if let Some(sampler) = sampler {
                sampler.abort();
                o.peak_wal = Some(peak_wal.load(std::sync::atomic::Ordering::Relaxed));
            }
            if self.dedup {
                // Every accepted request had a key of its own: each must have started a run.
                let mut api = crate::api::ApiClient::connect(server.addr(), ADMIN_TOKEN).await?;
                let trigger = api
                    .expect(
                        http::Method::GET,
                        &format!("/triggers/{}", hooks[0].id),
                        None,
                        200,
                    )
                    .await?;
                let fired = trigger["fire_count"].as_u64().unwrap_or(0);
                if fired != report.ok_total {
                    o.error = Some(format!(
                        "{} requests accepted but {fired} runs started: keys were not unique per request",
                        report.ok_total
                    ));
                }
            }
            o.triggers = triggers;
            o.peak_rss = server.peak_rss();
            if report.ok == 0 {
                o.error = Some(format!(
                    "no webhook was accepted ({:?}); server log:\n{}",
                    report.errors,
                    server.log_tail()
                ));
            }
            o.load = Some(report);
            Ok(o)
        })
    }
}

/// `idle`: the RSS of a started server with an empty database.
#[derive(Debug)]
pub struct Idle;

impl Scenario for Idle {
    fn name(&self) -> &'static str {
        "idle"
    }

    fn about(&self) -> &'static str {
        "RSS of a started server with an empty database"
    }

    fn sends_load(&self) -> bool {
        false
    }

    fn run<'a>(
        &'a self,
        settings: &'a Settings,
        backend: &'a Backend,
    ) -> BoxFuture<'a, Result<Outcome, Error>> {
        Box::pin(async move {
            let server = Triggerd::start(settings, backend).await?;
            // Let start-up work (migrations, the worker's first round) finish and settle.
            tokio::time::sleep(settings.idle_settle).await;
            let (rss, hwm) = memory(server.pid())
                .ok_or_else(|| Error::new("cannot read the server's /proc status"))?;
            let mut o = Outcome::new(self.name(), backend.name());
            o.idle_rss = Some(rss);
            o.peak_rss = Some(hwm);
            Ok(o)
        })
    }
}

/// A run's creation and completion, in microseconds since the Unix epoch (server clock; the
/// server runs on this machine, so it is the same clock as the load's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// When the webhook was received (the run's `created_at`).
    pub created_us: i64,
    /// When the run reached its final state (or, for a hook receiver, when the hook arrived).
    pub finished_us: i64,
    /// `completed` (not `failed`).
    pub completed: bool,
    /// `finished_at - started_at` of each finished step execution, microseconds (empty for
    /// step-less runs and for sources that do not see runs).
    pub step_micros: Vec<u64>,
    /// A failed run's error (`code: message`), to explain a failed scenario.
    pub error: Option<String>,
    /// For a hook receiver, when the run finished (`finished_at` in the event; `finished_us` is
    /// then the event's arrival).
    pub run_finished_us: Option<i64>,
}

/// Where the e2e scenario learns that runs finished. Today: [`RunsApi`], which reads the runs
/// after the load. A receiver of event hooks (a local hyper server subscribed to `run.completed`)
/// implements the same trait: `prepare` starts it and registers the hook before the load,
/// `collect` waits until `accepted` hooks arrived and returns their arrival times.
pub trait CompletionSource: Send {
    /// How completion is measured, for the report.
    fn method(&self) -> &'static str;

    /// Called once the server is set up, before the load.
    fn prepare<'a>(&'a mut self, _addr: SocketAddr) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async { Ok(()) })
    }

    /// Waits (at most `timeout`) until `accepted` runs have finished and returns them.
    fn collect<'a>(
        &'a mut self,
        addr: SocketAddr,
        accepted: u64,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Vec<Completion>, Error>>;
}

/// Completion read from the management API after the load: poll
/// `GET /runs?status=pending&limit=1` and `?status=running&limit=1` until both are empty (every
/// accepted run is committed before its 201, so then every run is final), then page through
/// `GET /runs?status=completed` and `?status=failed` (200 per page, the API's largest) for `created_at` and
/// `finished_at`. The polling adds up to its interval (20 ms) to the drain time, not to the lag.
#[derive(Debug)]
pub struct RunsApi;

#[derive(Deserialize)]
struct RunPage {
    data: Vec<RunLite>,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct RunLite {
    status: String,
    created_at: String,
    finished_at: Option<String>,
    #[serde(default)]
    step_executions: Vec<StepLite>,
    #[serde(default)]
    error: Value,
}

#[derive(Deserialize)]
struct StepLite {
    started_at: Option<String>,
    finished_at: Option<String>,
}

fn micros(rfc3339: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .map(|t| t.timestamp_micros())
}

async fn runs_page(api: &mut ApiClient, query: &str) -> Result<RunPage, Error> {
    let body = api
        .expect(Method::GET, &format!("/runs?{query}"), None, 200)
        .await?;
    serde_json::from_value(body).map_err(|e| Error::new(format!("unexpected runs page: {e}")))
}

impl CompletionSource for RunsApi {
    fn method(&self) -> &'static str {
        "runs API: poll until no run is pending or running, then read created_at/finished_at (and step_executions) of every run"
    }

    fn collect<'a>(
        &'a mut self,
        addr: SocketAddr,
        _accepted: u64,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Vec<Completion>, Error>> {
        Box::pin(async move {
            let mut api = ApiClient::connect(addr, ADMIN_TOKEN).await?;
            let deadline = Instant::now() + timeout;
            loop {
                let pending = runs_page(&mut api, "status=pending&limit=1").await?;
                let running = runs_page(&mut api, "status=running&limit=1").await?;
                if pending.data.is_empty() && running.data.is_empty() {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(Error::new(format!(
                        "runs still unfinished after {timeout:?}"
                    )));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let mut out = Vec::new();
            for status in ["completed", "failed"] {
                let mut cursor: Option<String> = None;
                loop {
                    let mut query = format!("status={status}&limit=200");
                    if let Some(c) = &cursor {
                        query.push_str(&format!("&cursor={c}"));
                    }
                    let page = runs_page(&mut api, &query).await?;
                    for run in &page.data {
                        let created = micros(&run.created_at);
                        let finished = run.finished_at.as_deref().and_then(micros);
                        if let (Some(created_us), Some(finished_us)) = (created, finished) {
                            let step_micros = run
                                .step_executions
                                .iter()
                                .filter_map(|e| {
                                    let started = micros(e.started_at.as_deref()?)?;
                                    let finished = micros(e.finished_at.as_deref()?)?;
                                    Some(u64::try_from(finished - started).unwrap_or(0))
                                })
                                .collect();
                            let error = (!run.error.is_null()).then(|| {
                                format!(
                                    "{}: {}",
                                    run.error["code"].as_str().unwrap_or("?"),
                                    run.error["message"].as_str().unwrap_or("?")
                                )
                            });
                            out.push(Completion {
                                created_us,
                                finished_us,
                                completed: run.status == "completed",
                                step_micros,
                                error,
                                run_finished_us: None,
                            });
                        }
                    }
                    match page.next_cursor {
                        Some(c) => cursor = Some(c),
                        None => break,
                    }
                }
            }
            Ok(out)
        })
    }
}

/// Webhook → run completed.
#[derive(Debug, Clone, Serialize)]
pub struct E2eReport {
    /// How completion was observed.
    pub method: &'static str,
    /// Runs accepted (2xx), warm-up included.
    pub accepted: u64,
    /// Runs that reached `completed`.
    pub completed: u64,
    /// Runs that reached `failed`.
    pub failed: u64,
    /// Completed runs per second, from the first request sent to the last completion.
    pub runs_per_sec: f64,
    /// First request to last completion, seconds.
    pub span_secs: f64,
    /// Last completion after the end of the load, seconds (negative: before it ended).
    pub drain_secs: f64,
    /// `finished_at - created_at` of each run (for a hook receiver: arrival - `created_at`).
    pub lag: LatencySummary,
    /// For a hook receiver: arrival - `finished_at`, the completion → delivery lag.
    pub delivery_lag: Option<LatencySummary>,
}

/// Sums up completions against the load that created them.
pub fn e2e_report(
    method: &'static str,
    load: &LoadReport,
    load_end_us: i64,
    completions: &[Completion],
) -> E2eReport {
    let first_us = load
        .first_sent
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    let mut lag = Latency::new();
    let mut delivery_lag = Latency::new();
    let mut last_us = first_us;
    let (mut completed, mut failed) = (0, 0);
    for c in completions {
        lag.record_micros(u64::try_from(c.finished_us - c.created_us).unwrap_or(0));
        if let Some(run_finished_us) = c.run_finished_us {
            delivery_lag.record_micros(u64::try_from(c.finished_us - run_finished_us).unwrap_or(0));
        }
        last_us = last_us.max(c.finished_us);
        if c.completed {
            completed += 1;
        } else {
            failed += 1;
        }
    }
    let span_secs = (last_us - first_us) as f64 / 1e6;
    E2eReport {
        method,
        accepted: load.ok_total,
        completed,
        failed,
        runs_per_sec: if span_secs > 0.0 {
            completed as f64 / span_secs
        } else {
            0.0
        },
        span_secs,
        drain_secs: (last_us - load_end_us) as f64 / 1e6,
        lag: lag.summary(),
        delivery_lag: completions
            .iter()
            .any(|c| c.run_finished_us.is_some())
            .then(|| delivery_lag.summary()),
    }
}

/// `e2e`: the `ingest` load with no warm-up (every run counts), then waits for every run to
/// complete.
pub struct EndToEnd {
    /// Its name: `e2e`, or `e2e-hooks` with [`crate::hooks::HookReceiver`].
    pub name: &'static str,
    /// Its `--list` line.
    pub about: &'static str,
    /// Makes the completion source of one run.
    pub source: fn() -> Box<dyn CompletionSource>,
    /// The server's extra environment (see [`Triggerd::start_with_env`]).
    pub env: &'static [(&'static str, &'static str)],
}

impl std::fmt::Debug for EndToEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndToEnd").finish_non_exhaustive()
    }
}

impl Scenario for EndToEnd {
    fn name(&self) -> &'static str {
        self.name
    }

    fn about(&self) -> &'static str {
        self.about
    }

    fn run<'a>(
        &'a self,
        settings: &'a Settings,
        backend: &'a Backend,
    ) -> BoxFuture<'a, Result<Outcome, Error>> {
        Box::pin(async move {
            let server = Triggerd::start_with_env(settings, backend, self.env).await?;
            let hooks = fixture::setup(server.addr(), ADMIN_TOKEN, 1, 1).await?;
            let mut source = (self.source)();
            source.prepare(server.addr()).await?;
            let requests = fixture::signed_requests(&hooks, request_count(1));
            let mut plan = plan(settings, server.addr(), server.pid(), requests);
            // No warm-up: from the first request on, every run counts.
            plan.duration += plan.warmup;
            plan.warmup = Duration::ZERO;
            let report = load::run(&plan).await;
            let load_end_us = now_micros();
            let completions = source
                .collect(server.addr(), report.ok_total, settings.e2e_timeout)
                .await?;
            let mut o = Outcome::new(self.name(), backend.name());
            o.triggers = 1;
            let e2e = e2e_report(source.method(), &report, load_end_us, &completions);
            if e2e.completed + e2e.failed != e2e.accepted {
                o.error = Some(format!(
                    "{} runs accepted but {} found finished",
                    e2e.accepted,
                    e2e.completed + e2e.failed
                ));
            }
            o.e2e = Some(e2e);
            o.load = Some(report);
            o.peak_rss = server.peak_rss();
            Ok(o)
        })
    }
}

/// The step executions the `steps` scenario saw.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// Requests the step's target (the in-process receiver) answered.
    pub received: u64,
    /// The most runs the load let be accepted but not yet seen at the receiver.
    pub backlog: usize,
    /// `finished_at - started_at` of every finished step execution (one per run).
    pub latency: LatencySummary,
}

/// Runs the `steps` load lets be accepted but not yet seen at the receiver, per connection
/// (64 connections: 256, the number of runs with steps one node works at a time).
pub const STEP_BACKLOG_PER_CONNECTION: usize = 4;

/// Aborts a task when dropped.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Now, µs since the Unix epoch.
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// `steps`: runs of a workflow with one `http` step, started by webhooks like `e2e`, whose step
/// POSTs to the baseline's handler served in this process on 127.0.0.1 (the server runs with
/// `TRIGGERD_ALLOW_PRIVATE_NETWORKS=true`, the only setting a scenario changes). Webhooks
/// would be accepted far faster than steps execute, so the load is gated: a connection sends
/// its next webhook only while fewer than [`STEP_BACKLOG_PER_CONNECTION`] × connections
/// accepted runs have not yet reached the receiver. So req/s (and its ratio to the baseline)
/// is the rate at which runs go through, not the ingest capacity, and the queue of pending
/// runs stays bounded: the drain after the load is short and the lag is not a backlog's age.
#[derive(Debug)]
pub struct Steps;

impl Scenario for Steps {
    fn name(&self) -> &'static str {
        "steps"
    }

    fn about(&self) -> &'static str {
        "webhook -> run with one http step to a local hyper receiver -> completed: runs/s, step latency (finished_at - started_at), completion lag"
    }

    fn run<'a>(
        &'a self,
        settings: &'a Settings,
        backend: &'a Backend,
    ) -> BoxFuture<'a, Result<Outcome, Error>> {
        Box::pin(async move {
            let listener = TcpListener::bind(("127.0.0.1", 0))
                .await
                .map_err(|e| Error::new(format!("cannot listen for the step's requests: {e}")))?;
            let target = listener
                .local_addr()
                .map_err(|e| Error::new(format!("cannot read the receiver's address: {e}")))?;
            let backlog = settings.connections.max(1) * STEP_BACKLOG_PER_CONNECTION;
            let gate = Arc::new(Semaphore::new(backlog));
            let received = Arc::new(AtomicU64::new(0));
            let _receiver = {
                let (gate, received) = (gate.clone(), received.clone());
                AbortOnDrop(tokio::spawn(baseline::serve_with(listener, move || {
                    received.fetch_add(1, Ordering::Relaxed);
                    gate.add_permits(1);
                })))
            };

            let server = Triggerd::start_with_env(
                settings,
                backend,
                &[("TRIGGERD_ALLOW_PRIVATE_NETWORKS", "true")],
            )
            .await?;
            let workflow = fixture::step_workflow("bench-steps", &format!("http://{target}/"));
            let hooks =
                fixture::setup_workflow(server.addr(), ADMIN_TOKEN, &workflow, 1, 1).await?;
            let requests = fixture::signed_requests(&hooks, request_count(1));
            let mut plan = plan(settings, server.addr(), server.pid(), requests);
            // No warm-up, as in e2e: every run counts.
            plan.duration += plan.warmup;
            plan.warmup = Duration::ZERO;
            plan.gate = Some(gate);
            let report = load::run(&plan).await;
            let load_end_us = now_micros();
            let mut source = RunsApi;
            let completions = source
                .collect(server.addr(), report.ok_total, settings.e2e_timeout)
                .await?;

            let mut step_latency = Latency::new();
            for c in &completions {
                for &us in &c.step_micros {
                    step_latency.record_micros(us);
                }
            }
            let e2e = e2e_report(source.method(), &report, load_end_us, &completions);
            let steps = StepReport {
                received: received.load(Ordering::Relaxed),
                backlog,
                latency: step_latency.summary(),
            };
            let mut o = Outcome::new(self.name(), backend.name());
            o.triggers = 1;
            if e2e.completed + e2e.failed != e2e.accepted {
                o.error = Some(format!(
                    "{} runs accepted but {} found finished",
                    e2e.accepted,
                    e2e.completed + e2e.failed
                ));
            } else if e2e.failed > 0 {
                let first = completions.iter().find_map(|c| c.error.as_deref());
                o.error = Some(format!(
                    "{} of {} runs failed, e.g. {}",
                    e2e.failed,
                    e2e.accepted,
                    first.unwrap_or("(no error recorded)")
                ));
            } else if steps.latency.count != e2e.completed {
                o.error = Some(format!(
                    "{} runs completed but {} step executions finished (one each expected)",
                    e2e.completed, steps.latency.count
                ));
            }
            o.e2e = Some(e2e);
            o.steps = Some(steps);
            o.load = Some(report);
            o.peak_rss = server.peak_rss();
            Ok(o)
        })
    }
}
