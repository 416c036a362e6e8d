//! `cron-scale`: many cron triggers on one server — [`DEFAULT_TRIGGERS`] (100,000) by default,
//! spread over [`TIMEZONES`] and four cadences ([`mix`]) on [`DEPLOYMENTS`] deployments of a
//! step-less workflow, created through the management API [`SETUP_CONNECTIONS`] at a time.
//!
//! Then it watches at least [`MIN_BOUNDARIES`] minute boundaries (more when `--duration` is
//! longer than that many minutes) without sending anything while it measures:
//!
//! - **idle CPU**: the server's `utime + stime` (`/proc/<pid>/stat`) over the quiet part of each
//!   minute, from :15 to :45 ([`IDLE_FROM_US`], [`IDLE_TO_US`]), when no slot is due; the rest
//!   of each minute, :45 to :15 around a boundary, is the **fire window**. Both are also split
//!   by thread (`/proc/<pid>/task/*/stat`) and come with the CPU of every other process;
//! - **slot lateness**: `created_at − trigger_input.scheduled_for` of every run whose slot lies
//!   in the measured minutes, read back afterwards through `GET /api/v1/runs` (newest first,
//!   200 a page, until the runs are older than the window). `created_at` is the instant the
//!   server's firing round began (one round fires up to 256 triggers in one transaction), so a
//!   run becomes visible up to one round's duration after it; `finished_at − scheduled_for`
//!   (a step-less run is stamped finished as the round prepares it) is reported beside it;
//! - **runs fired vs slots due**: the slots due are computed here for every trigger from its
//!   schedule and time zone with the server's own cron code (`triggerd_domain::cron`, croner),
//!   and matched one by one against the runs: each due `(trigger, slot)` must have exactly one
//!   run, and no other run may claim a slot in the window;
//! - **RSS**: the server's `VmHWM` (its peak over its whole life, set-up included), and the
//!   largest `VmRSS` sampled during the window.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::DateTime;
use http::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use triggerd_domain::cron::{Schedule, parse_timezone};

use crate::api::ApiClient;
use crate::process::{cpu_time, machine_busy, memory, thread_cpu_times};
use crate::scenario::{ADMIN_TOKEN, BoxFuture, Outcome, Scenario, Triggerd};
use crate::stats::{Latency, LatencySummary};
use crate::{Backend, Error, Settings};

/// Cron triggers created by default (`--cron-triggers`).
pub const DEFAULT_TRIGGERS: usize = 100_000;
/// Deployments the triggers are spread over, round-robin.
pub const DEPLOYMENTS: usize = 10;
/// Management API connections creating triggers at once.
pub const SETUP_CONNECTIONS: usize = 32;
/// Minute boundaries measured at least, whatever `--duration` says.
pub const MIN_BOUNDARIES: usize = 3;
/// The idle window of each minute starts this long after its boundary (µs)…
pub const IDLE_FROM_US: i64 = 15_000_000;
/// …and ends this long after it.
pub const IDLE_TO_US: i64 = 45_000_000;
/// The first measured boundary is at least this long after set-up ends (µs), so that the
/// window starts ([`IDLE_TO_US`] of the minute before it) after set-up.
const LEAD_IN_US: i64 = 20_000_000;
const MINUTE_US: i64 = 60_000_000;
/// Seed of the mix's choices, so every run creates the same triggers.
const SEED: u64 = 0x0074_7269_6767_6572;
/// The workflow every trigger runs.
pub const WORKFLOW: &str = "bench-cron";

/// Time zones the triggers are spread over: whole-hour, half-hour (Kolkata, St John's) and
/// 45-minute (Kathmandu, Chatham) offsets, both hemispheres' DST, and Lord Howe's 30-minute DST.
pub const TIMEZONES: [&str; 12] = [
    "UTC",
    "Europe/London",
    "America/New_York",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "America/St_Johns",
    "Pacific/Chatham",
    "Europe/Berlin",
    "Asia/Tokyo",
    "America/Los_Angeles",
    "Pacific/Auckland",
];

/// How often a trigger fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cadence {
    /// `* * * * *`.
    EveryMinute,
    /// `*/5 * * * *`, or every five minutes from minute 1 to 4 (`3-59/5 * * * *`).
    EveryFiveMinutes,
    /// Once an hour at a random minute.
    Hourly,
    /// Once a day at a random time.
    Daily,
}

impl Cadence {
    /// Its name in the fixed input and the report.
    pub fn as_str(self) -> &'static str {
        match self {
            Cadence::EveryMinute => "every-minute",
            Cadence::EveryFiveMinutes => "every-five-minutes",
            Cadence::Hourly => "hourly",
            Cadence::Daily => "daily",
        }
    }
}

/// One trigger to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronSpec {
    /// Its cadence.
    pub cadence: Cadence,
    /// The five-field schedule.
    pub schedule: String,
    /// The IANA time zone it is read in.
    pub timezone: &'static str,
}

impl CronSpec {
    /// The body of `POST /deployments/{id}/triggers` for the `n`-th trigger.
    pub fn body(&self, n: usize) -> Value {
        json!({
            "trigger_type": "cron",
            "name": format!("cron-{n}"),
            "config": {
                "schedule": self.schedule,
                "timezone": self.timezone,
                "input": {"kind": self.cadence.as_str(), "n": n}
            }
        })
    }
}

/// The step-less workflow of every trigger: its fixed input, rendered into the output.
pub fn workflow() -> Value {
    json!({
        "name": WORKFLOW,
        "description": "triggerd-bench: a scheduled job",
        "inputs": {
            "kind": {"type": "string", "required": true},
            "n": {"type": "integer", "required": true}
        },
        "output": {"job": "{{ input.kind }} #{{ input.n }}"}
    })
}

/// SplitMix64: a tiny deterministic generator, so the mix is the same in every run.
#[derive(Debug)]
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `count` triggers: 1 % `* * * * *` (at least one; 1,000 of 100,000, so every minute boundary
/// fires that burst), 4 % every five minutes (a quarter on `*/5`, the rest on minutes 1–4 of
/// each five), 35 % hourly at a random minute and the rest (60 %) daily at a random time, each in
/// a time zone of [`TIMEZONES`] (the every-minute ones in turn, the others at random). With
/// 100,000 that is about 2,400–2,600 slots at each boundary.
pub fn mix(count: usize) -> Vec<CronSpec> {
    let mut rng = SplitMix(SEED);
    let every_minute = if count == 0 { 0 } else { (count / 100).max(1) };
    let five = (count * 4 / 100).min(count - every_minute);
    let hourly = (count * 35 / 100).min(count - every_minute - five);
    let daily = count - every_minute - five - hourly;
    let mut specs = Vec::with_capacity(count);
    for i in 0..every_minute {
        specs.push(CronSpec {
            cadence: Cadence::EveryMinute,
            schedule: "* * * * *".to_owned(),
            timezone: TIMEZONES[i % TIMEZONES.len()],
        });
    }
    for i in 0..five {
        let schedule = if i % 4 == 0 {
            "*/5 * * * *".to_owned()
        } else {
            format!("{}-59/5 * * * *", 1 + rng.below(4))
        };
        let timezone = TIMEZONES[rng.below(TIMEZONES.len())];
        specs.push(CronSpec {
            cadence: Cadence::EveryFiveMinutes,
            schedule,
            timezone,
        });
    }
    for _ in 0..hourly {
        let schedule = format!("{} * * * *", rng.below(60));
        let timezone = TIMEZONES[rng.below(TIMEZONES.len())];
        specs.push(CronSpec {
            cadence: Cadence::Hourly,
            schedule,
            timezone,
        });
    }
    for _ in 0..daily {
        let schedule = format!("{} {} * * *", rng.below(60), rng.below(24));
        let timezone = TIMEZONES[rng.below(TIMEZONES.len())];
        specs.push(CronSpec {
            cadence: Cadence::Daily,
            schedule,
            timezone,
        });
    }
    specs
}

/// The server's clock as this tool sees it: the system clock, or the same scaled clock the
/// server is given with `TRIGGERD_TEST_CLOCK` (`Settings::clock_speed` > 1, for the smoke
/// test: a minute a second at 60).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerClock {
    anchor_us: i64,
    speed: u32,
}

impl ServerClock {
    /// The system clock.
    pub const REAL: ServerClock = ServerClock {
        anchor_us: 0,
        speed: 1,
    };

    /// `speed` times faster than the system clock from `anchor_ms` (ms since the epoch).
    pub fn scaled(anchor_ms: i64, speed: u32) -> ServerClock {
        ServerClock {
            anchor_us: anchor_ms * 1000,
            speed: speed.max(1),
        }
    }

    /// The value of `TRIGGERD_TEST_CLOCK` for the server, or `None` for the system clock.
    pub fn env_value(&self) -> Option<String> {
        (self.speed > 1).then(|| format!("{}x{}", self.anchor_us / 1000, self.speed))
    }

    /// Its time at system time `real_us` (µs since the epoch).
    pub fn at(&self, real_us: i64) -> i64 {
        self.anchor_us + (real_us - self.anchor_us) * i64::from(self.speed)
    }

    /// Its time now.
    pub fn now_us(&self) -> i64 {
        self.at(real_now_us())
    }

    /// The real time until it shows `us` (zero when it already has).
    pub fn until(&self, us: i64) -> Duration {
        let ahead = (us - self.now_us()).max(0);
        Duration::from_micros((ahead / i64::from(self.speed)) as u64)
    }

    /// Sleeps until it shows `us`.
    pub async fn sleep_until(&self, us: i64) {
        tokio::time::sleep(self.until(us)).await;
    }
}

fn real_now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Minute boundaries measured for a `--duration`: one a minute, at least [`MIN_BOUNDARIES`].
pub fn boundaries_for(duration: Duration) -> usize {
    ((duration.as_secs_f64() / 60.0).ceil() as usize).max(MIN_BOUNDARIES)
}

/// `count` consecutive minute boundaries (µs), the first at least 20 s after `ready_us`.
pub fn plan_boundaries(ready_us: i64, count: usize) -> Vec<i64> {
    let first = (ready_us + LEAD_IN_US + MINUTE_US - 1).div_euclid(MINUTE_US) * MINUTE_US;
    (0..count as i64).map(|i| first + i * MINUTE_US).collect()
}

/// The slots of `schedule` in `timezone` in `(from_exclusive_us, to_inclusive_us]`, as µs.
pub fn due_slots(
    schedule: &str,
    timezone: &str,
    from_exclusive_us: i64,
    to_inclusive_us: i64,
) -> Result<Vec<i64>, Error> {
    let parsed =
        Schedule::parse(schedule).map_err(|e| Error::new(format!("schedule {schedule:?}: {e}")))?;
    let tz =
        parse_timezone(timezone).map_err(|e| Error::new(format!("time zone {timezone:?}: {e}")))?;
    let instant = |us: i64| {
        DateTime::from_timestamp_micros(us)
            .ok_or_else(|| Error::new(format!("{us} µs is not a representable instant")))
    };
    let limit = ((to_inclusive_us - from_exclusive_us) / MINUTE_US + 1).max(0) as usize;
    Ok(parsed
        .slots_between(
            instant(from_exclusive_us)?,
            instant(to_inclusive_us)?,
            tz,
            limit,
        )
        .into_iter()
        .map(|t| t.timestamp_micros())
        .collect())
}

/// The due slots of every trigger (`ids[i]` was created from `specs[i]`) in
/// `(from_exclusive_us, to_inclusive_us]`; identical schedule and zone pairs are computed once.
pub fn expected_slots(
    ids: &[String],
    specs: &[CronSpec],
    from_exclusive_us: i64,
    to_inclusive_us: i64,
) -> Result<HashMap<String, Vec<i64>>, Error> {
    let mut cache: HashMap<(&str, &str), Vec<i64>> = HashMap::new();
    let mut out = HashMap::with_capacity(ids.len());
    for (id, spec) in ids.iter().zip(specs) {
        let key = (spec.schedule.as_str(), spec.timezone);
        let slots = match cache.get(&key) {
            Some(s) => s.clone(),
            None => {
                let s = due_slots(key.0, key.1, from_exclusive_us, to_inclusive_us)?;
                cache.insert(key, s.clone());
                s
            }
        };
        if !slots.is_empty() {
            out.insert(id.clone(), slots);
        }
    }
    Ok(out)
}

/// A run a cron slot started, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FiredRun {
    /// Its trigger.
    pub trigger_id: String,
    /// `trigger_input.scheduled_for`, µs.
    pub scheduled_us: i64,
    /// `created_at`, µs: when its firing round began.
    pub created_us: i64,
    /// `finished_at`, µs: a step-less run is stamped finished as its round prepares it, before
    /// the round commits.
    pub finished_us: Option<i64>,
    /// Whether it is `completed` (a step-less run completes as it fires).
    pub completed: bool,
}

/// One measured minute boundary.
#[derive(Debug, Clone, Serialize)]
pub struct BoundaryReport {
    /// The boundary (RFC 3339, server clock).
    pub at: String,
    /// Slots due at it.
    pub due: u64,
    /// Runs found for it.
    pub fired: u64,
    /// Median lateness of its runs, µs.
    pub late_p50_us: u64,
    /// Largest lateness of its runs, µs: when its last firing round began.
    pub late_max_us: u64,
    /// Largest `finished_at − scheduled_for` of its runs, µs: when its last run was prepared.
    pub finished_max_us: u64,
}

/// One slot instant's runs.
#[derive(Debug, Clone, Default)]
pub struct SlotTally {
    /// Slots due at it.
    pub due: u64,
    /// Runs found for it.
    pub fired: u64,
    /// Their `created_at − scheduled_for`.
    pub lateness: Latency,
    /// Their `finished_at − scheduled_for`.
    pub finished: Latency,
}

/// Runs matched against the slots due.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Slots due in the window.
    pub due: u64,
    /// Runs whose slot lies in the window.
    pub fired: u64,
    /// Due slots with no run.
    pub missing: u64,
    /// Runs for a slot that already had one.
    pub duplicates: u64,
    /// Runs for a slot in the window that was not due for their trigger.
    pub unexpected: u64,
    /// Runs created before their slot.
    pub early: u64,
    /// Runs in the window not `completed`.
    pub not_completed: u64,
    /// `created_at − scheduled_for` of every run in the window.
    pub lateness: Latency,
    /// `finished_at − scheduled_for` of every finished run in the window.
    pub finished: Latency,
    /// Per slot instant: due, fired, lateness, finished.
    pub per_slot: BTreeMap<i64, SlotTally>,
}

/// Matches `runs` against `expected` (trigger → due slots) over `(from_exclusive_us,
/// to_inclusive_us]`; runs of slots outside it are ignored.
pub fn tally(
    expected: &HashMap<String, Vec<i64>>,
    runs: &[FiredRun],
    from_exclusive_us: i64,
    to_inclusive_us: i64,
) -> Tally {
    let mut t = Tally::default();
    let mut due: HashSet<(&str, i64)> = HashSet::new();
    for (id, slots) in expected {
        for &slot in slots {
            due.insert((id.as_str(), slot));
            t.per_slot.entry(slot).or_default().due += 1;
        }
    }
    t.due = due.len() as u64;
    let mut seen: HashSet<(&str, i64)> = HashSet::new();
    for run in runs {
        if run.scheduled_us <= from_exclusive_us || run.scheduled_us > to_inclusive_us {
            continue;
        }
        t.fired += 1;
        let key = (run.trigger_id.as_str(), run.scheduled_us);
        if !seen.insert(key) {
            t.duplicates += 1;
        } else if !due.contains(&key) {
            t.unexpected += 1;
        }
        if !run.completed {
            t.not_completed += 1;
        }
        let late = run.created_us - run.scheduled_us;
        if late < 0 {
            t.early += 1;
        }
        let late = u64::try_from(late).unwrap_or(0);
        t.lateness.record_micros(late);
        let finished = run
            .finished_us
            .map(|f| u64::try_from(f - run.scheduled_us).unwrap_or(0));
        if let Some(f) = finished {
            t.finished.record_micros(f);
        }
        let slot = t.per_slot.entry(run.scheduled_us).or_default();
        slot.fired += 1;
        slot.lateness.record_micros(late);
        if let Some(f) = finished {
            slot.finished.record_micros(f);
        }
    }
    t.missing = due.iter().filter(|k| !seen.contains(*k)).count() as u64;
    t
}

/// CPU times at one instant, seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuSample {
    /// Real time since the first sample.
    pub wall: f64,
    /// The server's `utime + stime`.
    pub server: f64,
    /// This tool's.
    pub own: f64,
    /// The whole machine's busy time.
    pub machine: f64,
    /// The server's live threads, by name.
    pub threads: BTreeMap<String, f64>,
}

impl CpuSample {
    fn take(pid: u32, since: Instant) -> Option<CpuSample> {
        Some(CpuSample {
            wall: since.elapsed().as_secs_f64(),
            server: cpu_time(&pid.to_string())?.as_secs_f64(),
            own: cpu_time("self")?.as_secs_f64(),
            machine: machine_busy()?.as_secs_f64(),
            threads: thread_cpu_times(pid)
                .into_iter()
                .map(|(name, t)| (name, t.as_secs_f64()))
                .collect(),
        })
    }
}

/// CPU over a set of windows, in % of one core.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CpuShare {
    /// Real time the windows cover, seconds.
    pub wall_secs: f64,
    /// Server CPU time in them, seconds.
    pub server_secs: f64,
    /// The server's CPU, % of one core.
    pub server_pct: f64,
    /// Every other process's (the machine's busy time minus the server and this tool), % of one
    /// core: far from 0 means the measurement was disturbed.
    pub others_pct: f64,
    /// The server's CPU by thread name, % of one core; `(ended)` is the time of threads that
    /// ended within a window (the process's time minus its live threads').
    pub threads_pct: BTreeMap<String, f64>,
}

/// CPU over the windows `samples[i]..samples[i + 1]` for each `i` in `starts`.
pub fn cpu_share(samples: &[CpuSample], starts: impl IntoIterator<Item = usize>) -> CpuShare {
    let (mut wall, mut server, mut others) = (0.0, 0.0, 0.0);
    let mut threads: BTreeMap<String, f64> = BTreeMap::new();
    for i in starts {
        let (Some(a), Some(b)) = (samples.get(i), samples.get(i + 1)) else {
            continue;
        };
        wall += b.wall - a.wall;
        server += b.server - a.server;
        others += ((b.machine - a.machine) - (b.server - a.server) - (b.own - a.own)).max(0.0);
        let mut live = 0.0;
        for (name, end) in &b.threads {
            // A name's time only grows while its threads live; a name first seen within the
            // window counts from zero.
            let start = a.threads.get(name).copied().unwrap_or(0.0);
            let used = (end - start).max(0.0);
            live += used;
            *threads.entry(name.clone()).or_default() += used;
        }
        let ended = ((b.server - a.server) - live).max(0.0);
        if ended > 0.0 {
            *threads.entry("(ended)".to_owned()).or_default() += ended;
        }
    }
    let pct = |x: f64| if wall > 0.0 { x / wall * 100.0 } else { 0.0 };
    CpuShare {
        wall_secs: wall,
        server_secs: server,
        server_pct: pct(server),
        others_pct: pct(others),
        threads_pct: threads.into_iter().map(|(k, v)| (k, pct(v))).collect(),
    }
}

/// The value of counter `name` in a Prometheus text exposition.
pub fn counter(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.trim().parse::<f64>().ok().map(|v| v as u64)
    })
}

/// What `cron-scale` measured.
#[derive(Debug, Clone, Serialize)]
pub struct CronReport {
    /// Cron triggers created.
    pub triggers: usize,
    /// Of which, by cadence.
    pub mix: BTreeMap<&'static str, usize>,
    /// Deployments they are spread over.
    pub deployments: usize,
    /// Time zones they are spread over.
    pub timezones: usize,
    /// Creating them through the API, seconds.
    pub setup_secs: f64,
    /// Triggers created per second.
    pub setup_per_sec: f64,
    /// 1: the system clock; more: the server ran on a scaled test clock (the smoke test), and
    /// lateness is in its (scaled) time.
    pub clock_speed: u32,
    /// The measured boundaries.
    pub boundaries: Vec<BoundaryReport>,
    /// Slots due at them.
    pub slots_due: u64,
    /// Runs found for slots at them.
    pub runs_fired: u64,
    /// Due slots without a run.
    pub missing: u64,
    /// Second runs for a slot.
    pub duplicates: u64,
    /// Runs for slots that were not due.
    pub unexpected: u64,
    /// Runs created before their slot.
    pub early: u64,
    /// Runs not `completed`.
    pub not_completed: u64,
    /// `triggerd_cron_slots_fired_total` over the window (from :45 before the first boundary
    /// to :45 after the last).
    pub metric_fired: Option<u64>,
    /// `triggerd_cron_slots_skipped_total` over the window.
    pub metric_skipped: Option<u64>,
    /// `created_at − scheduled_for` of every run at the measured boundaries.
    pub lateness: LatencySummary,
    /// `finished_at − scheduled_for` of the same runs (stamped as the round prepares each run,
    /// before it commits).
    pub finished: LatencySummary,
    /// CPU from :15 to :45 of each measured minute.
    pub idle: CpuShare,
    /// CPU from :45 to :15 around each boundary.
    pub fire: CpuShare,
    /// Server CPU per fired slot above the idle rate in the fire windows, µs.
    pub fire_cpu_per_slot_us: Option<f64>,
    /// Whether every measured boundary's last firing round began before :15, i.e. the idle
    /// windows held no firing.
    pub idle_windows_clean: bool,
    /// Largest `VmRSS` sampled in the window, bytes.
    pub window_rss_max: u64,
}

/// `cron-scale`: see the module docs.
#[derive(Debug)]
pub struct CronScale;

impl Scenario for CronScale {
    fn name(&self) -> &'static str {
        "cron-scale"
    }

    fn about(&self) -> &'static str {
        "100,000 cron triggers (--cron-triggers) over 12 time zones: idle CPU between minute boundaries, slot lateness, runs fired vs slots due, RSS; >= 3 minutes, only with -s"
    }

    fn sends_load(&self) -> bool {
        false
    }

    fn by_default(&self) -> bool {
        false
    }

    fn run<'a>(
        &'a self,
        settings: &'a Settings,
        backend: &'a Backend,
    ) -> BoxFuture<'a, Result<Outcome, Error>> {
        Box::pin(run(self.name(), settings, backend))
    }
}

async fn run(name: &str, settings: &Settings, backend: &Backend) -> Result<Outcome, Error> {
    let say = |line: String| {
        if settings.progress {
            eprintln!("triggerd-bench: {name}: {line}");
        }
    };
    let clock = if settings.clock_speed > 1 {
        ServerClock::scaled(real_now_us() / 1000, settings.clock_speed)
    } else {
        ServerClock::REAL
    };
    let clock_env = clock.env_value();
    let env: Vec<(&str, &str)> = clock_env
        .as_deref()
        .map(|v| vec![("TRIGGERD_TEST_CLOCK", v)])
        .unwrap_or_default();
    let server = Triggerd::start_with_env(settings, backend, &env).await?;
    let pid = server.pid();
    let specs = mix(settings.cron_triggers);

    let started = Instant::now();
    let ids = setup(server.addr(), &specs, settings.progress).await?;
    let setup_secs = started.elapsed().as_secs_f64();
    say(format!(
        "{} cron triggers created in {setup_secs:.1} s ({:.0}/s)",
        ids.len(),
        ids.len() as f64 / setup_secs.max(1e-9)
    ));

    let boundaries = plan_boundaries(clock.now_us(), boundaries_for(settings.duration));
    let (first, last) = (boundaries[0], boundaries[boundaries.len() - 1]);
    let window_start = first - MINUTE_US + IDLE_TO_US;
    say(format!(
        "measuring {} minute boundaries, {} to {} (idle windows :15-:45)",
        boundaries.len(),
        rfc3339(first),
        rfc3339(last)
    ));

    clock.sleep_until(window_start).await;
    let fired_before = metric_counters(server.addr()).await;
    let t0 = Instant::now();
    let sample = |server: &Triggerd| {
        CpuSample::take(pid, t0).ok_or_else(|| {
            Error::new(format!(
                "cannot read the CPU times of the server (pid {pid}): has it exited? Its log:\n{}",
                server.log_tail()
            ))
        })
    };
    let mut samples = vec![sample(&server)?];
    let mut window_rss_max = 0;
    for &b in &boundaries {
        for offset in [IDLE_FROM_US, IDLE_TO_US] {
            clock.sleep_until(b + offset).await;
            samples.push(sample(&server)?);
            if let Some((rss, _)) = memory(pid) {
                window_rss_max = window_rss_max.max(rss);
            }
        }
    }
    let fired_after = metric_counters(server.addr()).await;
    let peak_rss = server.peak_rss();

    say("reading the runs back".to_owned());
    let runs = read_runs(server.addr(), window_start).await?;
    let from_exclusive = first - MINUTE_US;
    let expected = expected_slots(&ids, &specs, from_exclusive, last)?;
    let t = tally(&expected, &runs, from_exclusive, last);

    let idle = cpu_share(&samples, (0..boundaries.len()).map(|i| 2 * i + 1));
    let fire = cpu_share(&samples, (0..boundaries.len()).map(|i| 2 * i));
    let fire_cpu_per_slot_us = (t.fired > 0).then(|| {
        let above_idle = fire.server_secs - idle.server_pct / 100.0 * fire.wall_secs;
        above_idle.max(0.0) / t.fired as f64 * 1e6
    });
    let boundary_reports: Vec<BoundaryReport> = boundaries
        .iter()
        .map(|b| {
            let slot = t.per_slot.get(b).cloned().unwrap_or_default();
            let late = slot.lateness.summary();
            BoundaryReport {
                at: rfc3339(*b),
                due: slot.due,
                fired: slot.fired,
                late_p50_us: late.p50_us,
                late_max_us: late.max_us,
                finished_max_us: slot.finished.summary().max_us,
            }
        })
        .collect();
    let idle_windows_clean = boundary_reports
        .iter()
        .all(|b| (b.finished_max_us.max(b.late_max_us) as i64) < IDLE_FROM_US);
    let mut mix_counts = BTreeMap::new();
    for s in &specs {
        *mix_counts.entry(s.cadence.as_str()).or_insert(0) += 1;
    }
    let delta =
        |before: Option<(u64, u64)>, after: Option<(u64, u64)>, f: fn((u64, u64)) -> u64| {
            Some(f(after?).saturating_sub(f(before?)))
        };
    let report = CronReport {
        triggers: ids.len(),
        mix: mix_counts,
        deployments: DEPLOYMENTS.min(specs.len().max(1)),
        timezones: TIMEZONES.len(),
        setup_secs,
        setup_per_sec: ids.len() as f64 / setup_secs.max(1e-9),
        clock_speed: settings.clock_speed.max(1),
        boundaries: boundary_reports,
        slots_due: t.due,
        runs_fired: t.fired,
        missing: t.missing,
        duplicates: t.duplicates,
        unexpected: t.unexpected,
        early: t.early,
        not_completed: t.not_completed,
        metric_fired: delta(fired_before, fired_after, |c| c.0),
        metric_skipped: delta(fired_before, fired_after, |c| c.1),
        lateness: t.lateness.summary(),
        finished: t.finished.summary(),
        idle,
        fire,
        fire_cpu_per_slot_us,
        idle_windows_clean,
        window_rss_max,
    };

    let mut o = Outcome::new(name, backend.name());
    o.triggers = ids.len();
    o.peak_rss = peak_rss;
    if report.runs_fired == 0
        || report.missing > 0
        || report.duplicates > 0
        || report.unexpected > 0
    {
        o.error = Some(format!(
            "{} runs for {} slots due: {} missing, {} duplicates, {} not due",
            report.runs_fired,
            report.slots_due,
            report.missing,
            report.duplicates,
            report.unexpected
        ));
    } else if report.not_completed > 0 || report.early > 0 {
        o.error = Some(format!(
            "{} runs not completed, {} created before their slot",
            report.not_completed, report.early
        ));
    }
    o.cron = Some(report);
    Ok(o)
}

fn rfc3339(us: i64) -> String {
    DateTime::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| us.to_string())
}

fn micros(rfc3339: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .map(|t| t.timestamp_micros())
}

/// `(fired, skipped)` from `/metrics`, or `None` when it cannot be read.
async fn metric_counters(addr: SocketAddr) -> Option<(u64, u64)> {
    let mut api = ApiClient::connect(addr, ADMIN_TOKEN).await.ok()?;
    let (status, text) = api.get_text("/metrics").await.ok()?;
    (status == 200).then(|| {
        (
            counter(&text, "triggerd_cron_slots_fired_total").unwrap_or(0),
            counter(&text, "triggerd_cron_slots_skipped_total").unwrap_or(0),
        )
    })
}

/// Puts the workflow, creates the deployments, then every trigger ([`SETUP_CONNECTIONS`]
/// connections, each POST waiting for its answer; a 503 is retried). Returns the trigger ids in
/// the order of `specs`.
async fn setup(addr: SocketAddr, specs: &[CronSpec], progress: bool) -> Result<Vec<String>, Error> {
    let mut api = ApiClient::connect(addr, ADMIN_TOKEN).await?;
    api.expect(
        Method::PUT,
        &format!("/workflows/{WORKFLOW}"),
        Some(&workflow()),
        200,
    )
    .await?;
    let mut deployments = Vec::new();
    for d in 0..DEPLOYMENTS.min(specs.len().max(1)) {
        let deployment = api
            .expect(
                Method::POST,
                &format!("/workflows/{WORKFLOW}/deployments"),
                Some(&json!({"name": format!("cron-{d}")})),
                201,
            )
            .await?;
        deployments.push(
            deployment["id"]
                .as_str()
                .ok_or_else(|| Error::new(format!("deployment without id: {deployment}")))?
                .to_owned(),
        );
    }
    let deployments = Arc::new(deployments);
    let specs = Arc::new(specs.to_vec());
    let created = Arc::new(AtomicUsize::new(0));
    let ticker = progress.then(|| {
        let (created, total) = (created.clone(), specs.len());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(15)).await;
                eprintln!(
                    "triggerd-bench: cron-scale: {} of {total} triggers created",
                    created.load(Ordering::Relaxed)
                );
            }
        })
    });
    let workers = SETUP_CONNECTIONS.clamp(1, specs.len().max(1));
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let (deployments, specs, created) = (deployments.clone(), specs.clone(), created.clone());
        tasks.spawn(async move {
            let mut api = ApiClient::connect(addr, ADMIN_TOKEN).await?;
            let mut ids = Vec::new();
            for i in (w..specs.len()).step_by(workers) {
                let path = format!(
                    "/deployments/{}/triggers",
                    deployments[i % deployments.len()]
                );
                let body = specs[i].body(i);
                let mut attempt = 0;
                let trigger = loop {
                    let (status, value) = api.call(Method::POST, &path, Some(&body)).await?;
                    match status {
                        201 => break value,
                        503 if attempt < 10 => {
                            attempt += 1;
                            tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                        }
                        _ => {
                            return Err(Error::new(format!(
                                "POST /api/v1{path}: expected 201, got {status}: {value}"
                            )));
                        }
                    }
                };
                let id = trigger["id"]
                    .as_str()
                    .ok_or_else(|| Error::new(format!("trigger without id: {trigger}")))?;
                ids.push((i, id.to_owned()));
                created.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, Error>(ids)
        });
    }
    let mut all = Vec::with_capacity(specs.len());
    let mut failure = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(ids)) => all.extend(ids),
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(e) => failure = failure.or(Some(Error::new(format!("setup task failed: {e}")))),
        }
    }
    if let Some(t) = ticker {
        t.abort();
    }
    if let Some(e) = failure {
        return Err(e);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, id)| id).collect())
}

#[derive(Deserialize)]
struct RunPage {
    data: Vec<RunLite>,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct RunLite {
    trigger_id: Option<String>,
    source: String,
    status: String,
    created_at: String,
    finished_at: Option<String>,
    #[serde(default)]
    trigger_input: Value,
}

/// The cron runs created at or after `since_us`: `GET /runs` newest first, 200 a page, until a
/// page reaches a run created before it.
async fn read_runs(addr: SocketAddr, since_us: i64) -> Result<Vec<FiredRun>, Error> {
    let mut api = ApiClient::connect(addr, ADMIN_TOKEN).await?;
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/runs?limit=200".to_owned();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let body = api.expect(Method::GET, &path, None, 200).await?;
        let page: RunPage = serde_json::from_value(body)
            .map_err(|e| Error::new(format!("unexpected runs page: {e}")))?;
        let mut older = false;
        for run in page.data {
            let Some(created_us) = micros(&run.created_at) else {
                continue;
            };
            older |= created_us < since_us;
            let scheduled = run.trigger_input["scheduled_for"].as_str().and_then(micros);
            if let (true, Some(trigger_id), Some(scheduled_us)) =
                (run.source == "cron", run.trigger_id, scheduled)
            {
                out.push(FiredRun {
                    trigger_id,
                    scheduled_us,
                    created_us,
                    finished_us: run.finished_at.as_deref().and_then(micros),
                    completed: run.status == "completed",
                });
            }
        }
        match page.next_cursor {
            Some(c) if !older => cursor = Some(c),
            _ => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn us(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .unwrap()
            .timestamp_micros()
    }

    #[test]
    fn the_mix_of_100000_has_1000_every_minute_and_parses() {
        let specs = mix(100_000);
        assert_eq!(specs.len(), 100_000);
        let count = |c: Cadence| specs.iter().filter(|s| s.cadence == c).count();
        assert_eq!(count(Cadence::EveryMinute), 1_000);
        assert_eq!(count(Cadence::EveryFiveMinutes), 4_000);
        assert_eq!(count(Cadence::Hourly), 35_000);
        assert_eq!(count(Cadence::Daily), 60_000);
        assert_eq!(
            specs.iter().filter(|s| s.schedule == "*/5 * * * *").count(),
            1_000
        );
        // Every zone is used, and the choice is the same in every run.
        for tz in TIMEZONES {
            assert!(specs.iter().any(|s| s.timezone == tz), "{tz} unused");
        }
        assert_eq!(mix(100_000), specs);
        // Every distinct schedule and zone is valid for the server's parser.
        let distinct: HashSet<(&str, &str)> = specs
            .iter()
            .map(|s| (s.schedule.as_str(), s.timezone))
            .collect();
        for (schedule, tz) in distinct {
            Schedule::parse(schedule).unwrap();
            parse_timezone(tz).unwrap();
        }
        assert_eq!(specs[7].body(7)["config"]["input"]["n"], 7);
        assert_eq!(specs[7].body(7)["trigger_type"], "cron");
    }

    #[test]
    fn small_mixes_keep_one_trigger_every_minute() {
        assert!(mix(0).is_empty());
        let small = mix(40);
        assert_eq!(small.len(), 40);
        assert_eq!(small[0].schedule, "* * * * *");
        assert_eq!(mix(1).len(), 1);
    }

    #[test]
    fn slots_are_counted_without_a_cron_library_where_that_is_easy() {
        // 12:00 exclusive to 12:10 inclusive: ten minute boundaries.
        let (from, to) = (us(2026, 12, 3, 12, 0), us(2026, 12, 3, 12, 10));
        for tz in TIMEZONES {
            let every = due_slots("* * * * *", tz, from, to).unwrap();
            let minutes: Vec<i64> = (1..=10).map(|m| from + m * MINUTE_US).collect();
            assert_eq!(every, minutes, "{tz}");
            // Every zone's offset is a multiple of 15 minutes, so */5 is the same UTC minutes.
            let five = due_slots("*/5 * * * *", tz, from, to).unwrap();
            assert_eq!(five, vec![from + 5 * MINUTE_US, to], "{tz}");
        }
        let offset = due_slots("3-59/5 * * * *", "UTC", from, to).unwrap();
        assert_eq!(offset, vec![from + 3 * MINUTE_US, from + 8 * MINUTE_US]);
        // Minute 10 of every hour in Kolkata (UTC+5:30) is minute 40 in UTC; Chatham (UTC+13:45
        // in its December summer) minute 50 is UTC minute 5.
        let day = (us(2026, 12, 3, 0, 0), us(2026, 12, 3, 23, 59));
        let kolkata = due_slots("10 * * * *", "Asia/Kolkata", day.0, day.1).unwrap();
        assert_eq!(kolkata.len(), 24);
        assert!(
            kolkata
                .iter()
                .all(|t| t.rem_euclid(3_600_000_000) == 40 * MINUTE_US)
        );
        let chatham = due_slots("50 * * * *", "Pacific/Chatham", day.0, day.1).unwrap();
        assert!(
            chatham
                .iter()
                .all(|t| t.rem_euclid(3_600_000_000) == 5 * MINUTE_US)
        );
        // Daily at 09:30 in New York (EST, UTC-5) is 14:30 UTC.
        let daily = due_slots("30 9 * * *", "America/New_York", day.0, day.1).unwrap();
        assert_eq!(daily, vec![us(2026, 12, 3, 14, 30)]);
        assert!(due_slots("not cron", "UTC", from, to).is_err());
        assert!(due_slots("* * * * *", "Mars/Olympus", from, to).is_err());
    }

    #[test]
    fn runs_are_matched_one_by_one_against_the_slots_due() {
        let (from, to) = (us(2026, 12, 3, 12, 0), us(2026, 12, 3, 12, 3));
        let ids = vec!["trg_a".to_owned(), "trg_b".to_owned(), "trg_c".to_owned()];
        let specs = vec![
            CronSpec {
                cadence: Cadence::EveryMinute,
                schedule: "* * * * *".into(),
                timezone: "UTC",
            },
            CronSpec {
                cadence: Cadence::Hourly,
                schedule: "2 * * * *".into(),
                timezone: "UTC",
            },
            CronSpec {
                cadence: Cadence::Daily,
                schedule: "0 3 * * *".into(),
                timezone: "UTC",
            },
        ];
        let expected = expected_slots(&ids, &specs, from, to).unwrap();
        assert_eq!(expected.len(), 2, "trg_c has nothing due");
        let run = |id: &str, minute: i64, late_ms: i64| FiredRun {
            trigger_id: id.to_owned(),
            scheduled_us: from + minute * MINUTE_US,
            created_us: from + minute * MINUTE_US + late_ms * 1000,
            finished_us: Some(from + minute * MINUTE_US + late_ms * 1000 + 2_000),
            completed: true,
        };
        let all = vec![
            run("trg_a", 1, 5),
            run("trg_a", 2, 10),
            run("trg_a", 3, 20),
            run("trg_b", 2, 400),
            run("trg_a", 0, 1), // before the window: ignored
        ];
        let t = tally(&expected, &all, from, to);
        assert_eq!((t.due, t.fired, t.missing), (4, 4, 0));
        assert_eq!(
            (t.duplicates, t.unexpected, t.early, t.not_completed),
            (0, 0, 0, 0)
        );
        assert_eq!(t.lateness.count(), 4);
        assert!((399_000..=401_000).contains(&t.lateness.quantile_micros(1.0)));
        assert!((401_000..=403_000).contains(&t.finished.quantile_micros(1.0)));
        assert_eq!(t.per_slot[&(from + 2 * MINUTE_US)].due, 2);
        assert_eq!(t.per_slot[&(from + 2 * MINUTE_US)].fired, 2);

        let mut wrong = all[..2].to_vec();
        wrong.push(run("trg_a", 1, 7)); // fired twice
        wrong.push(run("trg_c", 1, 7)); // not due
        wrong.push(run("trg_b", 2, -5)); // before its slot
        let t = tally(&expected, &wrong, from, to);
        assert_eq!((t.due, t.fired), (4, 5));
        assert_eq!(
            (t.missing, t.duplicates, t.unexpected, t.early),
            (1, 1, 1, 1)
        );
    }

    #[test]
    fn boundaries_start_twenty_seconds_after_setup_at_least() {
        let base = us(2026, 12, 3, 12, 0);
        let secs = |s: i64| base + s * 1_000_000;
        assert_eq!(
            plan_boundaries(secs(10), 3),
            vec![secs(60), secs(120), secs(180)]
        );
        assert_eq!(plan_boundaries(secs(40), 1), vec![secs(60)]);
        assert_eq!(plan_boundaries(secs(41), 1), vec![secs(120)]);
        assert_eq!(plan_boundaries(secs(-20), 1), vec![secs(0)]);
        assert_eq!(boundaries_for(Duration::from_secs(10)), 3);
        assert_eq!(boundaries_for(Duration::from_secs(180)), 3);
        assert_eq!(boundaries_for(Duration::from_secs(181)), 4);
        assert_eq!(boundaries_for(Duration::from_secs(600)), 10);
    }

    #[test]
    fn cpu_is_split_into_idle_and_fire_windows() {
        let s = |wall: f64, server: f64, own: f64, machine: f64| CpuSample {
            wall,
            server,
            own,
            machine,
            threads: BTreeMap::from([("triggerd-writer".to_owned(), server / 2.0)]),
        };
        // Fire 0-30 s (server 3 s), idle 30-60 s (server 0.15 s, others 0.3 s), fire 60-90 s.
        let samples = [
            s(0.0, 10.0, 1.0, 20.0),
            s(30.0, 13.0, 1.0, 23.5),
            s(60.0, 13.15, 1.0, 23.95),
            s(90.0, 16.0, 1.2, 27.0),
        ];
        let idle = cpu_share(&samples, [1]);
        assert!((idle.wall_secs - 30.0).abs() < 1e-9);
        assert!((idle.server_pct - 0.5).abs() < 1e-9, "{idle:?}");
        assert!((idle.others_pct - 1.0).abs() < 1e-9, "{idle:?}");
        // The writer thread had half the server's time; the rest belonged to ended threads.
        assert!(
            (idle.threads_pct["triggerd-writer"] - 0.25).abs() < 1e-9,
            "{idle:?}"
        );
        assert!(
            (idle.threads_pct["(ended)"] - 0.25).abs() < 1e-9,
            "{idle:?}"
        );
        let fire = cpu_share(&samples, [0, 2]);
        assert!((fire.wall_secs - 60.0).abs() < 1e-9);
        assert!((fire.server_secs - 5.85).abs() < 1e-9, "{fire:?}");
        assert_eq!(cpu_share(&samples, [3]), CpuShare::default());
    }

    #[test]
    fn the_scaled_clock_matches_the_server_s_formula() {
        let clock = ServerClock::scaled(1_000, 60);
        assert_eq!(clock.env_value().as_deref(), Some("1000x60"));
        assert_eq!(clock.at(1_000_000), 1_000_000);
        assert_eq!(clock.at(2_000_000), 61_000_000);
        assert_eq!(ServerClock::REAL.env_value(), None);
        assert_eq!(ServerClock::REAL.at(123), 123);
        let now = ServerClock::REAL.now_us();
        assert_eq!(ServerClock::REAL.until(now - 5), Duration::ZERO);
        assert!(ServerClock::REAL.until(now + 60_000_000) <= Duration::from_secs(60));
    }

    #[test]
    fn counters_are_read_from_the_exposition() {
        let text = "# TYPE triggerd_cron_slots_fired_total counter\n\
                    triggerd_cron_slots_fired_total 2500\n\
                    triggerd_cron_slots_fired_total_x 1\n\
                    triggerd_cron_slots_skipped_total 0\n";
        assert_eq!(counter(text, "triggerd_cron_slots_fired_total"), Some(2500));
        assert_eq!(counter(text, "triggerd_cron_slots_skipped_total"), Some(0));
        assert_eq!(counter(text, "triggerd_runs"), None);
    }
}
