//! # triggerd-bench
//!
//! The load tool: measures triggerd's webhook hot path, end-to-end runs and runs with an `http`
//! step against a bare hyper server in the same invocation, and prints every rate as a ratio to
//! it; and, with `-s cron-scale`, 100,000 cron triggers firing ([`cron`]). It starts each
//! server itself (`triggerd serve` on a fresh SQLite file or PostgreSQL database, and the
//! baseline in a child process of this binary; the `steps` scenario's step target is the
//! baseline's handler served in this process), drives it with keep-alive HTTP/1.1 connections,
//! and records latency in HDR histograms. It never touches triggerd's crates beyond the domain's
//! signing helper and cron schedules (to compute the slots due): it speaks HTTP to the real
//! binary, as a webhook sender would.
//!
//! ```no_run
//! # async fn example(settings: triggerd_bench::Settings) -> Result<(), triggerd_bench::Error> {
//! let scenarios = triggerd_bench::scenario::registry();
//! let report = triggerd_bench::run_suite(&settings, &scenarios).await;
//! println!("{}", report.table());
//! # Ok(()) }
//! ```

pub mod api;
pub mod baseline;
pub mod cron;
pub mod fixture;
pub mod hooks;
pub mod load;
pub mod memory;
pub mod postgres;
pub mod process;
pub mod report;
pub mod scenario;
pub mod stats;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use report::Report;
use scenario::{Outcome, Scenario};

/// What went wrong, for people.
#[derive(Debug, Clone)]
pub struct Error(String);

impl Error {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Error {
        Error(message.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// Where a scenario's server keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// A fresh SQLite file in a temporary directory.
    Sqlite,
    /// A fresh database on the PostgreSQL server of this URL.
    Postgres(String),
}

impl Backend {
    /// `sqlite` or `postgres`.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }
}

/// How big and where.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The measured window of each load.
    pub duration: Duration,
    /// Load sent before the window (not for `e2e` and `steps`, where every run counts).
    pub warmup: Duration,
    /// Keep-alive connections, one request in flight each.
    pub connections: usize,
    /// Triggers of `ingest-many`.
    pub many_triggers: usize,
    /// Cron triggers of `cron-scale`.
    pub cron_triggers: usize,
    /// Speed of the server's clock in `cron-scale`: 1 (the system clock) for measurements; the
    /// smoke test runs it faster (`TRIGGERD_TEST_CLOCK`, 60: a minute a second).
    pub clock_speed: u32,
    /// How long `e2e` and `steps` wait for the last run to finish.
    pub e2e_timeout: Duration,
    /// How long `idle` lets a fresh server settle before reading its RSS.
    pub idle_settle: Duration,
    /// Runs the `memory` scenario creates with ~255 KiB bodies before its mixed load (400).
    pub memory_preload: usize,
    /// Size of the `memory` scenario's large webhook bodies, bytes (just under 16 MiB, the
    /// largest `max_body_bytes`; the smoke test sends smaller ones).
    pub memory_big_body: usize,
    /// The `triggerd` binary.
    pub triggerd: PathBuf,
    /// This tool's binary (it serves the baseline with `--serve-baseline`).
    pub bench_exe: PathBuf,
    /// Backends to run each scenario on.
    pub backends: Vec<Backend>,
    /// Print progress to stderr.
    pub progress: bool,
}

impl Settings {
    /// The full run's size: 10 s per load, 64 connections, 1,000 triggers (100,000 cron triggers).
    pub fn standard(triggerd: PathBuf, bench_exe: PathBuf) -> Settings {
        Settings {
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(1),
            connections: 64,
            many_triggers: 1000,
            cron_triggers: cron::DEFAULT_TRIGGERS,
            clock_speed: 1,
            e2e_timeout: Duration::from_secs(120),
            idle_settle: Duration::from_secs(1),
            memory_preload: memory::DEFAULT_PRELOAD,
            memory_big_body: memory::DEFAULT_BIG_BODY,
            triggerd,
            bench_exe,
            backends: vec![Backend::Sqlite],
            progress: true,
        }
    }
}

/// Runs the baseline (when a selected scenario sends load), then every scenario on every backend.
/// A scenario that fails is reported with its error; the others still run.
pub async fn run_suite(settings: &Settings, scenarios: &[Box<dyn Scenario>]) -> Report {
    let say = |line: String| {
        if settings.progress {
            eprintln!("triggerd-bench: {line}");
        }
    };
    let mut report = Report::new(settings);
    if scenarios.iter().any(|s| s.sends_load()) {
        say(format!(
            "baseline (bare hyper), {} connections, {:?} + {:?} warm-up",
            settings.connections, settings.duration, settings.warmup
        ));
        report.baseline = Some(
            scenario::run_baseline(settings)
                .await
                .unwrap_or_else(|e| Outcome::failed("baseline", "-", &e)),
        );
    }
    let base_rate = report
        .baseline
        .as_ref()
        .and_then(|b| b.load.as_ref())
        .map(|l| l.ok_per_sec)
        .unwrap_or(0.0);
    for backend in &settings.backends {
        for s in scenarios {
            say(format!("{} on {}", s.name(), backend.name()));
            let mut outcome = s
                .run(settings, backend)
                .await
                .unwrap_or_else(|e| Outcome::failed(s.name(), backend.name(), &e));
            if let Some(load) = &outcome.load {
                outcome.ratio = stats::ratio(load.ok_per_sec, base_rate);
            }
            if let Some(e) = &outcome.error {
                say(format!("{} on {} failed: {e}", s.name(), backend.name()));
            }
            report.results.push(outcome);
        }
    }
    report
}
