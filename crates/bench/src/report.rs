//! The results: one table for people, the same as JSON for tools.

use std::fmt::Write as _;

use serde::Serialize;

use crate::Settings;
use crate::scenario::{Outcome, STEP_BACKLOG_PER_CONNECTION};
use crate::stats::{format_mib, format_micros, format_rate, format_ratio};

/// The machine the figures were measured on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Cores this process may use (`nproc`).
    pub cores: usize,
    /// `model name` of `/proc/cpuinfo`.
    pub cpu_model: String,
    /// `MemTotal` of `/proc/meminfo`, bytes.
    pub memory: u64,
    /// `/proc/sys/kernel/osrelease`.
    pub kernel: String,
}

impl Machine {
    /// Reads `/proc`.
    pub fn current() -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| "unknown".to_owned());
        let memory = read("/proc/meminfo")
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kib| kib.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024);
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            memory,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
        }
    }
}

/// The size a report was measured at.
#[derive(Debug, Clone, Serialize)]
pub struct Size {
    /// Measured window per load, seconds.
    pub duration_secs: f64,
    /// Warm-up per load, seconds.
    pub warmup_secs: f64,
    /// Keep-alive connections.
    pub connections: usize,
    /// Triggers of `ingest-many`.
    pub many_triggers: usize,
    /// Cron triggers of `cron-scale`.
    pub cron_triggers: usize,
}

/// Everything one invocation measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Where.
    pub machine: Machine,
    /// How big.
    pub size: Size,
    /// The bare hyper server, the denominator of every ratio.
    pub baseline: Option<Outcome>,
    /// Each scenario on each backend.
    pub results: Vec<Outcome>,
}

impl Report {
    /// An empty report for `settings` on this machine.
    pub fn new(settings: &Settings) -> Report {
        Report {
            machine: Machine::current(),
            size: Size {
                duration_secs: settings.duration.as_secs_f64(),
                warmup_secs: settings.warmup.as_secs_f64(),
                connections: settings.connections,
                many_triggers: settings.many_triggers,
                cron_triggers: settings.cron_triggers,
            },
            baseline: None,
            results: Vec::new(),
        }
    }

    /// Whether any scenario failed.
    pub fn has_failures(&self) -> bool {
        self.baseline
            .iter()
            .chain(&self.results)
            .any(|o| o.error.is_some())
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The table: one row per outcome, then the errors of failed ones. The `cron-scale`
    /// columns (idle CPU, fired/due, slot lateness) are there only when it ran.
    pub fn table(&self) -> String {
        let cron = self.results.iter().any(|o| o.cron.is_some());
        let mut header = vec![
            "scenario",
            "backend",
            "req/s",
            "x base",
            "p50",
            "p99",
            "p99.9",
            "errors",
            "srv CPU",
            "load CPU",
            "other CPU",
            "RSS",
            "runs/s",
            "lag p50",
            "lag p99",
            "step p50",
            "step p99",
        ];
        if cron {
            header.extend(["idle CPU", "fired/due", "late p50", "late p99"]);
        }
        let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_owned()).collect()];
        for o in self.baseline.iter().chain(&self.results) {
            rows.push(row(o, cron));
        }
        let widths: Vec<usize> = (0..header.len())
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = format!(
            "{} cores ({}), {:.0} GiB; {} connections, {}s per load after {}s warm-up\n",
            self.machine.cores,
            self.machine.cpu_model,
            self.machine.memory as f64 / (1u64 << 30) as f64,
            self.size.connections,
            self.size.duration_secs,
            self.size.warmup_secs,
        );
        for (i, r) in rows.iter().enumerate() {
            let line: Vec<String> = r
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(c, (cell, w))| {
                    if c < 2 {
                        format!("{cell:<w$}")
                    } else {
                        format!("{cell:>w$}")
                    }
                })
                .collect();
            let _ = writeln!(out, "{}", line.join("  ").trim_end());
            if i == 0 {
                let total: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
                let _ = writeln!(out, "{}", "-".repeat(total));
            }
        }
        let notes: Vec<String> = self
            .baseline
            .iter()
            .chain(&self.results)
            .flat_map(|o| {
                let mut n = Vec::new();
                if let Some(e) = &o.error {
                    n.push(format!("{} on {} failed: {e}", o.scenario, o.backend));
                }
                if let Some(wal) = o.peak_wal {
                    n.push(format!(
                        "{} on {}: largest WAL file during the load {}",
                        o.scenario,
                        o.backend,
                        format_mib(wal)
                    ));
                }
                if o.scenario == "hooks-drain"
                    && let Some(e) = &o.e2e
                {
                    n.push(format!(
                        "{} on {}: {} of {} events drained in {:.2}s after they all fell due: {} events/s; arrival p50 {} p99 {} after that instant",
                        o.scenario,
                        o.backend,
                        e.completed,
                        e.accepted,
                        e.span_secs,
                        format_rate(e.runs_per_sec),
                        format_micros(e.lag.p50_us),
                        format_micros(e.lag.p99_us),
                    ));
                }
                if let Some(m) = &o.memory {
                    n.extend(m.lines(&format!("{} on {}", o.scenario, o.backend), o.peak_rss));
                }
                if let Some(d) = o.e2e.as_ref().and_then(|e| e.delivery_lag.as_ref()) {
                    n.push(format!(
                        "{} on {}: {} events delivered; run finished -> event received p50 {} p99 {} max {}",
                        o.scenario,
                        o.backend,
                        d.count,
                        format_micros(d.p50_us),
                        format_micros(d.p99_us),
                        format_micros(d.max_us),
                    ));
                }
                if let Some(l) = &o.load
                    && !l.errors.is_empty()
                {
                    n.push(format!(
                        "{} on {} errors: {:?}",
                        o.scenario, o.backend, l.errors
                    ));
                }
                n
            })
            .collect();
        if !notes.is_empty() {
            out.push('\n');
            for n in notes {
                let _ = writeln!(out, "{n}");
            }
        }
        let _ = writeln!(
            out,
            "\nreq/s: 2xx answers per second in the window; x base: ratio to the bare hyper \
             baseline of this run; p50..p99.9: request latency; CPU: the server process, this load \
             generator, and every other process of the machine over the window, in % of one core \
             (other CPU far from 0: the run was disturbed); RSS: peak resident memory (idle: after start-up); runs/s and lag: e2e \
             and steps (first request to last completion; finished_at - created_at; e2e-hooks: first request to \
             last event received, events/s; event received - created_at); step p50/p99: the http step's \
             finished_at - started_at. steps sends a webhook only while fewer than {} per connection of its \
             accepted runs have not reached the step's receiver, so its req/s and x base are the step-run rate, \
             not the ingest capacity; the receiver runs in this tool (its CPU is in load CPU).",
            STEP_BACKLOG_PER_CONNECTION
        );
        if self.results.iter().any(|o| o.memory.is_some()) {
            let _ = writeln!(
                out,
                "memory: RSS is VmHWM, the server's peak over its whole life (set-up, preload and \
                 settling included), compared with the goal (MB meaning MiB, as everywhere here). \
                 Per kind: requests sent in the mixed phase, answers by status (transport: no \
                 answer; timeout: none within 60 s), latency of the answered ones. A 503 is the \
                 server shedding load to stay within its memory budget: counted, not an error."
            );
        }
        if cron {
            let _ = writeln!(
                out,
                "cron-scale: idle CPU: the server from :15 to :45 of each measured minute (no slot due), % of \
                 one core; fired/due: runs found for the measured minute boundaries / slots due at them \
                 (computed from the schedules); late p50/p99: created_at - scheduled_for of those runs \
                 (created_at is when the firing round began); RSS: peak over the server's life, set-up \
                 included."
            );
        }
        out
    }
}

fn row(o: &Outcome, cron: bool) -> Vec<String> {
    let dash = || "-".to_owned();
    let mut r = vec![
        if o.triggers > 1 {
            format!("{} ({})", o.scenario, o.triggers)
        } else {
            o.scenario.clone()
        },
        o.backend.clone(),
    ];
    match &o.load {
        Some(l) => {
            r.push(format_rate(l.ok_per_sec));
            r.push(format_ratio(o.ratio));
            r.push(format_micros(l.latency.p50_us));
            r.push(format_micros(l.latency.p99_us));
            r.push(format_micros(l.latency.p999_us));
            r.push(l.error_count().to_string());
            for cpu in [l.server_cpu_pct, l.client_cpu_pct, l.others_cpu_pct] {
                r.push(cpu.map_or_else(dash, |c| format!("{c:.0}%")));
            }
        }
        None => r.extend(std::iter::repeat_with(dash).take(9)),
    }
    let rss = o
        .idle_rss
        .or(o.peak_rss)
        .or(o.load.as_ref().map(|l| l.server_peak_rss));
    r.push(rss.map_or_else(dash, format_mib));
    match &o.e2e {
        Some(e) => {
            r.push(format_rate(e.runs_per_sec));
            r.push(format_micros(e.lag.p50_us));
            r.push(format_micros(e.lag.p99_us));
        }
        None => r.extend(std::iter::repeat_with(dash).take(3)),
    }
    match &o.steps {
        Some(s) => {
            r.push(format_micros(s.latency.p50_us));
            r.push(format_micros(s.latency.p99_us));
        }
        None => r.extend(std::iter::repeat_with(dash).take(2)),
    }
    if cron {
        match &o.cron {
            Some(c) => {
                r.push(format!("{:.2}%", c.idle.server_pct));
                r.push(format!(
                    "{}/{}",
                    format_rate(c.runs_fired as f64),
                    format_rate(c.slots_due as f64)
                ));
                r.push(format_micros(c.lateness.p50_us));
                r.push(format_micros(c.lateness.p99_us));
            }
            None => r.extend(std::iter::repeat_with(dash).take(4)),
        }
    }
    if o.error.is_some() {
        r[1].push_str(" FAILED");
    }
    r
}
