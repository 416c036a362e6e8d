//! A smoke run of every scenario at a tiny size against the real `triggerd` binary: checks that
//! the tool reports sane numbers, never how fast anything is.
//!
//! The binary is `target/<profile>/triggerd` (`cargo test --workspace` builds it, because
//! `triggerd-server` has an integration test) or `TRIGGERD_BIN`. Without it the test is skipped
//! with a notice — except under `CI=true`, where a missing binary is a failure.

use std::path::PathBuf;
use std::time::Duration;

use triggerd_bench::process::locate_triggerd;
use triggerd_bench::scenario::{Outcome, registry};
use triggerd_bench::{Backend, Settings, run_suite};

fn triggerd() -> Option<PathBuf> {
    let explicit = std::env::var_os("TRIGGERD_BIN").map(PathBuf::from);
    let exe = std::env::current_exe().expect("the test binary's path");
    let found = locate_triggerd(explicit.as_deref(), &exe);
    if found.is_none() {
        let why = "no triggerd binary in target/<profile>/ (build it with \
                   `cargo build -p triggerd-server`, or run `cargo test --workspace`, or set \
                   TRIGGERD_BIN)";
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{why}; CI=true, so the smoke test may not be skipped"
        );
        eprintln!("SKIPPED the benchmark smoke test: {why}");
    }
    found
}

fn tiny(triggerd: PathBuf) -> Settings {
    let mut backends = vec![Backend::Sqlite];
    if let Ok(url) = std::env::var("TRIGGERD_TEST_POSTGRES_URL")
        && !url.is_empty()
    {
        backends.push(Backend::Postgres(url));
    }
    Settings {
        duration: Duration::from_millis(200),
        warmup: Duration::from_millis(50),
        connections: 4,
        many_triggers: 20,
        // cron-scale: 40 triggers, on a clock 60 times faster (a minute a second), so its three
        // minute boundaries take seconds.
        cron_triggers: 40,
        clock_speed: 60,
        e2e_timeout: Duration::from_secs(30),
        idle_settle: Duration::from_millis(200),
        // memory: 16 runs of ~255 KiB preloaded, 1 MiB bodies instead of 16 MiB.
        memory_preload: 16,
        memory_big_body: 1 << 20,
        triggerd,
        bench_exe: PathBuf::from(env!("CARGO_BIN_EXE_triggerd-bench")),
        backends,
        progress: false,
    }
}

fn assert_sane_load(o: &Outcome) {
    let what = format!("{} on {}", o.scenario, o.backend);
    assert!(o.error.is_none(), "{what} failed: {:?}", o.error);
    let l = o.load.as_ref().unwrap_or_else(|| panic!("{what}: no load"));
    assert!(l.ok > 0, "{what}: nothing accepted: {l:?}");
    assert_eq!(l.error_count(), 0, "{what}: errors {:?}", l.errors);
    assert_eq!(l.requests, l.ok, "{what}");
    assert!(
        l.ok_total >= l.ok && l.answered_total >= l.ok_total,
        "{what}: {l:?}"
    );
    assert_eq!(
        l.latency.count, l.requests,
        "{what}: one latency per request"
    );
    let p = &l.latency;
    assert!(
        0 < p.p50_us && p.p50_us <= p.p99_us && p.p99_us <= p.p999_us && p.p999_us <= p.max_us,
        "{what}: percentiles out of order: {p:?}"
    );
    assert!(l.ok_per_sec > 0.0, "{what}");
    let ratio = o.ratio.unwrap_or_else(|| panic!("{what}: no ratio"));
    assert!(ratio > 0.0 && ratio.is_finite(), "{what}: ratio {ratio}");
    assert!(l.server_cpu_pct.is_some(), "{what}: no server CPU");
    assert!(
        l.server_peak_rss > 1 << 20,
        "{what}: RSS {}",
        l.server_peak_rss
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_reports_sane_numbers() {
    let Some(bin) = triggerd() else { return };
    let settings = tiny(bin);
    let scenarios = registry();
    let report = run_suite(&settings, &scenarios).await;
    let table = report.table();
    println!("{table}");

    let baseline = report.baseline.as_ref().expect("a baseline");
    assert_sane_load(baseline);
    assert_eq!(baseline.ratio, Some(1.0));

    let expected = scenarios.len() * settings.backends.len();
    assert_eq!(report.results.len(), expected, "{table}");
    for o in &report.results {
        let what = format!("{} on {}", o.scenario, o.backend);
        match o.scenario.as_str() {
            "ingest" => {
                assert_sane_load(o);
                assert_eq!(o.triggers, 1);
            }
            "ingest-dedup" => {
                assert_sane_load(o);
                assert!(o.error.is_none(), "{what}: {:?}", o.error);
            }
            "ingest-many" => {
                assert_sane_load(o);
                assert_eq!(o.triggers, settings.many_triggers);
            }
            "e2e" => {
                assert_sane_load(o);
                let e = o.e2e.as_ref().expect("e2e figures");
                let load = o.load.as_ref().expect("load");
                assert_eq!(e.accepted, load.ok_total, "{what}");
                assert_eq!(
                    e.completed, e.accepted,
                    "{what}: every run completes: {e:?}"
                );
                assert_eq!(e.failed, 0, "{what}");
                assert_eq!(e.lag.count, e.completed, "{what}");
                assert!(e.runs_per_sec > 0.0 && e.span_secs > 0.0, "{what}: {e:?}");
                assert!(e.lag.p50_us <= e.lag.p99_us, "{what}: {e:?}");
                assert!(e.delivery_lag.is_none(), "{what}: {e:?}");
            }
            "e2e-hooks" => {
                assert_sane_load(o);
                let e = o.e2e.as_ref().expect("e2e figures");
                let load = o.load.as_ref().expect("load");
                assert_eq!(e.accepted, load.ok_total, "{what}");
                // One run.completed event per accepted webhook, each counted once.
                assert_eq!(
                    e.completed, e.accepted,
                    "{what}: every event arrives: {e:?}"
                );
                assert_eq!(e.failed, 0, "{what}");
                let d = e.delivery_lag.as_ref().expect("completion -> delivery lag");
                assert_eq!(d.count, e.completed, "{what}");
                assert!(d.p50_us <= d.p99_us, "{what}: {d:?}");
                assert!(e.runs_per_sec > 0.0, "{what}: {e:?}");
                assert!(table.contains("run finished -> event received"), "{table}");
            }
            "hooks-drain" => {
                assert_sane_load(o);
                let e = o.e2e.as_ref().expect("drain figures");
                let load = o.load.as_ref().expect("load");
                assert_eq!(e.accepted, load.ok_total, "{what}");
                // Every event refused during the load arrives once the receiver opens.
                assert_eq!(e.completed, e.accepted, "{what}: every event drains: {e:?}");
                assert_eq!(e.lag.count, e.completed, "{what}");
                assert!(e.runs_per_sec > 0.0, "{what}: {e:?}");
                assert!(table.contains("drained in"), "{table}");
            }
            "steps" => {
                assert_sane_load(o);
                let e = o.e2e.as_ref().expect("completion figures");
                let load = o.load.as_ref().expect("load");
                assert_eq!(e.accepted, load.ok_total, "{what}");
                assert_eq!(
                    e.completed, e.accepted,
                    "{what}: every run completes: {e:?}"
                );
                assert_eq!(e.failed, 0, "{what}");
                assert!(e.runs_per_sec > 0.0 && e.span_secs > 0.0, "{what}: {e:?}");
                let s = o.steps.as_ref().expect("step figures");
                assert_eq!(s.latency.count, e.completed, "{what}: one step per run");
                assert!(
                    s.received >= e.completed,
                    "{what}: the receiver saw every step: {s:?}"
                );
                assert!(
                    0 < s.latency.p50_us && s.latency.p50_us <= s.latency.p99_us,
                    "{what}: {s:?}"
                );
                // The gate: never more accepted runs than the backlog ahead of the receiver.
                assert!(
                    load.ok_total <= s.received + s.backlog as u64,
                    "{what}: {} accepted, {s:?}",
                    load.ok_total
                );
                assert!(table.contains("step p99"), "{table}");
            }
            "idle" => {
                assert!(o.error.is_none(), "{what}: {:?}", o.error);
                let rss = o.idle_rss.expect("idle RSS");
                assert!((1 << 20..1 << 30).contains(&rss), "{what}: RSS {rss}");
                assert!(o.load.is_none());
            }
            "cron-scale" => {
                assert!(o.error.is_none(), "{what}: {:?}", o.error);
                assert!(o.load.is_none());
                assert_eq!(o.triggers, settings.cron_triggers, "{what}");
                let c = o.cron.as_ref().expect("cron figures");
                assert_eq!(c.boundaries.len(), 3, "{what}: {c:?}");
                // At least the every-minute trigger fires at each boundary.
                assert!(c.slots_due >= 3, "{what}: {c:?}");
                assert_eq!(c.runs_fired, c.slots_due, "{what}: {c:?}");
                assert_eq!((c.missing, c.duplicates, c.unexpected), (0, 0, 0), "{what}");
                assert_eq!(c.lateness.count, c.runs_fired, "{what}");
                assert!(c.lateness.p50_us <= c.lateness.p99_us, "{what}: {c:?}");
                assert!(
                    c.idle.wall_secs > 0.0 && c.fire.wall_secs > 0.0,
                    "{what}: {c:?}"
                );
                assert!(c.idle.server_pct >= 0.0, "{what}: {c:?}");
                assert!(o.peak_rss.is_some_and(|r| r > 1 << 20), "{what}");
                assert!(table.contains("fired/due"), "{table}");
            }
            "memory" => {
                assert!(o.error.is_none(), "{what}: {:?}", o.error);
                assert!(o.load.is_none());
                let peak = o.peak_rss.expect("peak RSS");
                assert!(peak > 1 << 20, "{what}: RSS {peak}");
                let m = o.memory.as_ref().expect("memory figures");
                assert_eq!(m.met, peak < m.goal_bytes, "{what}");
                assert!(m.preload.ok() > 0, "{what}: {:?}", m.preload);
                assert!(
                    m.preload.requests == settings.memory_preload as u64,
                    "{what}: {:?}",
                    m.preload
                );
                let kinds: Vec<&str> = m.kinds.iter().map(|k| k.kind).collect();
                assert_eq!(
                    kinds,
                    ["list", "big webhook", "reads", "small webhook"],
                    "{what}"
                );
                for k in &m.kinds {
                    assert!(k.answered() > 0, "{what}: {k:?}");
                    assert_eq!(k.latency.count, k.answered(), "{what}: {k:?}");
                }
                let big = m.body_bytes.big;
                assert!(
                    big <= settings.memory_big_body && big + 80 > settings.memory_big_body,
                    "{what}: {big}"
                );
                assert!(
                    m.list.pages > 0 && m.list.largest_response_bytes > 0,
                    "{what}"
                );
                assert!(table.contains("goal below 250.0 MB"), "{table}");
            }
            other => panic!("a scenario the smoke test does not know: {other}"),
        }
        assert!(table.contains(&o.scenario), "{table}");
    }
    assert!(!report.has_failures(), "{table}");

    let json: serde_json::Value = serde_json::from_str(&report.to_json()).expect("JSON report");
    assert_eq!(json["results"].as_array().map(Vec::len), Some(expected));
    assert!(json["baseline"]["load"]["latency"]["p99_us"].as_u64() > Some(0));
    assert!(json["machine"]["cores"].as_u64() >= Some(1));
}
