//! Cron firing on a real database of each backend, with a [`TestClock`]: time is moved, never
//! waited for.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone as _, Utc};
use serde_json::{Map, Value, json};
use triggerd_domain::trigger::TriggerType;
use triggerd_storage::{RunFilter, RunRow, Store, TriggerRow};

use crate::testing::{T0, app_tests};
use crate::triggers::TriggerRequest;
use crate::{App, AppError, Clock as _, TestClock};

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

const SEC: i64 = 1_000_000;

/// A step-less workflow `wf` with a `tag` input, deployed as `production`; returns its id.
async fn deployment(app: &App) -> String {
    let definition = json!({
        "inputs": {"tag": {"type": "string", "required": true}},
        "output": {"tag": "{{ input.tag }}", "slot": "{{ trigger.scheduled_for }}"}
    });
    app.put_workflow("wf", object(definition)).await.unwrap();
    app.deploy("wf", "production", None).await.unwrap().0.id
}

async fn cron(app: &App, dep: &str, config: Value) -> Result<TriggerRow, AppError> {
    app.create_trigger(
        dep,
        TriggerRequest {
            trigger_type: TriggerType::Cron,
            name: None,
            enabled: true,
            config,
        },
    )
    .await
    .map(|(row, _)| row)
}

async fn trigger(app: &App, id: &str) -> TriggerRow {
    app.store().get_trigger(id).await.unwrap().unwrap()
}

/// The runs a trigger started, oldest first.
async fn runs_of(store: &Store, trigger_id: &str) -> Vec<RunRow> {
    let filter = RunFilter {
        trigger_id: Some(trigger_id.to_owned()),
        ..RunFilter::default()
    };
    let mut runs = store.list_runs(filter, None, 500).await.unwrap().items;
    runs.sort_by_key(slot_of);
    runs
}

fn slot_of(run: &RunRow) -> String {
    let trigger: Value = serde_json::from_str(&run.trigger_input).unwrap();
    trigger["scheduled_for"].as_str().unwrap().to_owned()
}

fn slots(list: &[DateTime<Utc>]) -> Vec<i64> {
    list.iter().map(DateTime::timestamp_micros).collect()
}

/// Each `catch_up` policy after a simulated downtime of 3 h 17 min, then an on-time slot.
async fn catch_up_policies_after_downtime(app: App, clock: Arc<TestClock>) {
    let dep = deployment(&app).await;
    let mut ids = Vec::new();
    for policy in ["none", "latest", "all"] {
        let t = cron(
            &app,
            &dep,
            json!({"schedule": "0 * * * *", "input": {"tag": policy}, "catch_up": policy}),
        )
        .await
        .unwrap();
        // T0 is 2023-11-14T22:13:20Z: the first slot is 23:00.
        assert_eq!(
            t.next_fire_at,
            Some(utc(2023, 11, 14, 23, 0).timestamp_micros())
        );
        ids.push(t.id);
    }
    // Nothing is due before the first slot.
    let round = app.fire_due_cron(100).await.unwrap();
    assert!(round.fired.is_empty() && round.triggers == 0);

    // Down from 22:13 to 02:30: 23:00, 00:00, 01:00 and 02:00 were missed.
    clock.set(utc(2023, 11, 15, 2, 30).timestamp_micros());
    let round = app.fire_due_cron(100).await.unwrap();
    assert_eq!(round.triggers, 3);
    let fired_of = |id: &str| -> Vec<i64> {
        round
            .fired
            .iter()
            .filter(|f| f.trigger_id == id)
            .map(|f| f.scheduled_for.timestamp_micros())
            .collect()
    };
    let skipped_of = |id: &str| round.skipped.iter().filter(|s| s.trigger_id == id).count();
    let missed = [
        utc(2023, 11, 14, 23, 0),
        utc(2023, 11, 15, 0, 0),
        utc(2023, 11, 15, 1, 0),
        utc(2023, 11, 15, 2, 0),
    ];
    assert_eq!(fired_of(&ids[0]), Vec::<i64>::new(), "none fires nothing");
    assert_eq!(skipped_of(&ids[0]), 4);
    assert_eq!(fired_of(&ids[1]), slots(&missed[3..]), "latest fires 02:00");
    assert_eq!(skipped_of(&ids[1]), 3);
    assert_eq!(fired_of(&ids[2]), slots(&missed), "all fires each");
    assert_eq!(skipped_of(&ids[2]), 0);

    for (id, fired) in ids.iter().zip([0, 1, 4]) {
        let t = trigger(&app, id).await;
        assert_eq!(t.fire_count, fired, "{id}");
        assert_eq!(
            t.next_fire_at,
            Some(utc(2023, 11, 15, 3, 0).timestamp_micros()),
            "next_fire_at is in the future"
        );
        assert_eq!(t.last_fired_at, (fired > 0).then(|| clock.now_micros()));
        let runs = runs_of(app.store(), id).await;
        assert_eq!(runs.len() as i64, fired);
        for run in &runs {
            assert_eq!(run.source, "cron");
            assert_eq!(run.status, "completed", "a step-less run completes at once");
            let output: Value = serde_json::from_str(run.final_output.as_deref().unwrap()).unwrap();
            assert_eq!(output["slot"].as_str().unwrap(), slot_of(run));
        }
    }
    let all_runs = runs_of(app.store(), &ids[2]).await;
    assert_eq!(
        all_runs.iter().map(slot_of).collect::<Vec<_>>(),
        [
            "2023-11-14T23:00:00.000000Z",
            "2023-11-15T00:00:00.000000Z",
            "2023-11-15T01:00:00.000000Z",
            "2023-11-15T02:00:00.000000Z"
        ]
    );
    let input: Value = serde_json::from_str(&all_runs[0].input).unwrap();
    assert_eq!(input, json!({"tag": "all"}));

    // A second round at the same instant fires nothing.
    let round = app.fire_due_cron(100).await.unwrap();
    assert!(round.fired.is_empty() && round.skipped.is_empty());

    // On time (2 s late): every policy fires 03:00, `none` included.
    clock.set(utc(2023, 11, 15, 3, 0).timestamp_micros() + 2 * SEC);
    let round = app.fire_due_cron(100).await.unwrap();
    assert_eq!(round.fired.len(), 3);
    assert!(round.skipped.is_empty());
    for slot in &round.fired {
        assert_eq!(slot.scheduled_for, utc(2023, 11, 15, 3, 0));
    }
}

/// Fires a trigger created at `from` by moving the clock to just before and just after each of
/// its slots until `until`; returns the slots fired.
async fn fire_through(
    app: &App,
    clock: &TestClock,
    dep: &str,
    schedule: &str,
    timezone: &str,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Vec<DateTime<Utc>> {
    clock.set(from.timestamp_micros());
    let t = cron(
        app,
        dep,
        json!({"schedule": schedule, "timezone": timezone, "input": {"tag": "dst"}, "catch_up": "all"}),
    )
    .await
    .unwrap();
    let mut fired = Vec::new();
    loop {
        let next = trigger(app, &t.id).await.next_fire_at.unwrap();
        assert!(next > clock.now_micros(), "next_fire_at is in the future");
        if next > until.timestamp_micros() {
            break;
        }
        clock.set(next - SEC);
        assert!(app.fire_due_cron(100).await.unwrap().fired.is_empty());
        clock.set(next + SEC / 2);
        let round = app.fire_due_cron(100).await.unwrap();
        assert_eq!(
            round.fired.len(),
            1,
            "{schedule} {timezone}: one slot at {next}"
        );
        assert!(round.skipped.is_empty());
        fired.push(round.fired[0].scheduled_for);
    }
    let runs = runs_of(app.store(), &t.id).await;
    assert_eq!(runs.len(), fired.len(), "one run per fired slot");
    app.delete_trigger(&t.id).await.unwrap();
    fired
}

/// A schedule, its time zone, the window and the slots expected to fire in it.
type Case = (
    &'static str,
    &'static str,
    DateTime<Utc>,
    DateTime<Utc>,
    Vec<DateTime<Utc>>,
);

/// Spring-forward and fall-back in London, New York and Lord Howe (a half-hour shift), for a
/// fixed-time and an interval schedule, through firing.
async fn dst_transitions_fire_per_spec(app: App, clock: Arc<TestClock>) {
    let dep = deployment(&app).await;
    let d = |y, mo, d, h, mi| utc(y, mo, d, h, mi);
    #[rustfmt::skip]
    let cases: [Case; 12] = [
        // London, spring forward on 2026-03-29 (01:00 GMT → 02:00 BST). 01:30 does not exist:
        // the fixed-time schedule fires once at the end of the gap (02:00 BST = 01:00Z).
        ("30 1 * * *", "Europe/London", d(2026, 3, 27, 12, 0), d(2026, 3, 31, 0, 0),
            vec![d(2026, 3, 28, 1, 30), d(2026, 3, 29, 1, 0), d(2026, 3, 30, 0, 30)]),
        // The interval schedule follows real time: no 01:30 that day.
        ("30 * * * *", "Europe/London", d(2026, 3, 29, 0, 0), d(2026, 3, 29, 3, 0),
            vec![d(2026, 3, 29, 0, 30), d(2026, 3, 29, 1, 30), d(2026, 3, 29, 2, 30)]),
        // London, fall back on 2026-10-25 (02:00 BST → 01:00 GMT): 01:30 happens twice.
        // Fixed time: once, at the first (BST, 00:30Z).
        ("30 1 * * *", "Europe/London", d(2026, 10, 23, 12, 0), d(2026, 10, 27, 0, 0),
            vec![d(2026, 10, 24, 0, 30), d(2026, 10, 25, 0, 30), d(2026, 10, 26, 1, 30)]),
        // Interval: both 01:30s (00:30Z and 01:30Z), two slots.
        ("30 * * * *", "Europe/London", d(2026, 10, 25, 0, 0), d(2026, 10, 25, 3, 0),
            vec![d(2026, 10, 25, 0, 30), d(2026, 10, 25, 1, 30), d(2026, 10, 25, 2, 30)]),
        // New York, spring forward on 2026-03-08 (02:00 EST → 03:00 EDT).
        ("30 2 * * *", "America/New_York", d(2026, 3, 7, 0, 0), d(2026, 3, 10, 0, 0),
            vec![d(2026, 3, 7, 7, 30), d(2026, 3, 8, 7, 0), d(2026, 3, 9, 6, 30)]),
        ("30 * * * *", "America/New_York", d(2026, 3, 8, 5, 0), d(2026, 3, 8, 9, 0),
            vec![d(2026, 3, 8, 5, 30), d(2026, 3, 8, 6, 30), d(2026, 3, 8, 7, 30), d(2026, 3, 8, 8, 30)]),
        // New York, fall back on 2026-11-01 (02:00 EDT → 01:00 EST).
        ("30 1 * * *", "America/New_York", d(2026, 10, 31, 0, 0), d(2026, 11, 3, 0, 0),
            vec![d(2026, 10, 31, 5, 30), d(2026, 11, 1, 5, 30), d(2026, 11, 2, 6, 30)]),
        ("30 * * * *", "America/New_York", d(2026, 11, 1, 4, 0), d(2026, 11, 1, 8, 0),
            vec![d(2026, 11, 1, 4, 30), d(2026, 11, 1, 5, 30), d(2026, 11, 1, 6, 30), d(2026, 11, 1, 7, 30)]),
        // Lord Howe, spring forward on 2026-10-04 by half an hour (02:00 → 02:30): 02:15 does
        // not exist, the fixed-time schedule fires at 02:30 (+11:00 = 15:30Z).
        ("15 2 * * *", "Australia/Lord_Howe", d(2026, 10, 2, 0, 0), d(2026, 10, 5, 0, 0),
            vec![d(2026, 10, 2, 15, 45), d(2026, 10, 3, 15, 30), d(2026, 10, 4, 15, 15)]),
        // The hourly schedule has no 02:00 that night: 01:00 (14:30Z), then 03:00 (16:00Z).
        ("0 * * * *", "Australia/Lord_Howe", d(2026, 10, 3, 13, 0), d(2026, 10, 3, 17, 30),
            vec![d(2026, 10, 3, 13, 30), d(2026, 10, 3, 14, 30), d(2026, 10, 3, 16, 0), d(2026, 10, 3, 17, 0)]),
        // Lord Howe, fall back on 2026-04-05 (02:00 +11:00 → 01:30 +10:30): 01:45 happens twice;
        // the fixed-time schedule fires at the first (14:45Z).
        ("45 1 * * *", "Australia/Lord_Howe", d(2026, 4, 3, 0, 0), d(2026, 4, 6, 0, 0),
            vec![d(2026, 4, 3, 14, 45), d(2026, 4, 4, 14, 45), d(2026, 4, 5, 15, 15)]),
        // Every 15 minutes follows real time: both 01:30–02:00 stretches, continuous in UTC.
        ("*/15 1 * * *", "Australia/Lord_Howe", d(2026, 4, 4, 13, 0), d(2026, 4, 4, 16, 0),
            vec![d(2026, 4, 4, 14, 0), d(2026, 4, 4, 14, 15), d(2026, 4, 4, 14, 30), d(2026, 4, 4, 14, 45),
                 d(2026, 4, 4, 15, 0), d(2026, 4, 4, 15, 15)]),
    ];
    for (schedule, timezone, from, until, expected) in cases {
        let fired = fire_through(&app, &clock, &dep, schedule, timezone, from, until).await;
        assert_eq!(fired, expected, "{schedule} in {timezone}");
    }
}

/// A one-time trigger fires once and then shows no next slot; one in the past is refused.
async fn at_fires_once_and_a_past_at_is_refused(app: App, clock: Arc<TestClock>) {
    let dep = deployment(&app).await;
    let at = utc(2023, 11, 14, 22, 15);
    let t = cron(
        &app,
        &dep,
        json!({"at": at.to_rfc3339(), "input": {"tag": "once"}}),
    )
    .await
    .unwrap();
    assert_eq!(t.next_fire_at, Some(at.timestamp_micros()));
    clock.set(at.timestamp_micros() + 3 * SEC);
    let round = app.fire_due_cron(100).await.unwrap();
    assert_eq!(round.fired.len(), 1);
    let t = trigger(&app, &t.id).await;
    assert_eq!((t.next_fire_at, t.fire_count), (None, 1));
    clock.advance(Duration::from_secs(86_400));
    assert!(app.fire_due_cron(100).await.unwrap().fired.is_empty());
    assert_eq!(runs_of(app.store(), &t.id).await.len(), 1);

    // In the past: refused when created or patched, nothing stored.
    let past = json!({"at": "2020-01-01T00:00:00Z", "input": {"tag": "x"}});
    match cron(&app, &dep, past).await {
        Err(AppError::InvalidConfig(problems)) => {
            assert_eq!(problems[0].path, "config.at");
            assert!(problems[0].message.contains("in the past"), "{problems:?}");
        }
        other => panic!("{other:?}"),
    }
    let changed = app
        .patch_trigger(&t.id, None, Some(json!({"at": "2020-01-01T00:00:00Z"})))
        .await;
    assert!(
        matches!(changed, Err(AppError::InvalidConfig(_))),
        "{changed:?}"
    );
}

/// A disabled trigger does not fire and has no next slot; enabled again, it fires from then on
/// without catching up on its disabled time.
async fn disabled_triggers_do_not_fire_or_catch_up(app: App, clock: Arc<TestClock>) {
    let dep = deployment(&app).await;
    let t = cron(
        &app,
        &dep,
        json!({"schedule": "*/5 * * * *", "input": {"tag": "x"}, "catch_up": "all"}),
    )
    .await
    .unwrap();
    let (off, _) = app.patch_trigger(&t.id, Some(false), None).await.unwrap();
    assert_eq!(off.next_fire_at, None);
    clock.advance(Duration::from_secs(3_600));
    assert!(app.fire_due_cron(100).await.unwrap().fired.is_empty());
    let (on, _) = app.patch_trigger(&t.id, Some(true), None).await.unwrap();
    let next = on.next_fire_at.unwrap();
    assert!(next > clock.now_micros() && next <= clock.now_micros() + 300 * SEC);
    clock.set(next);
    let round = app.fire_due_cron(100).await.unwrap();
    assert_eq!(round.fired.len(), 1);
    assert_eq!(trigger(&app, &t.id).await.fire_count, 1);
}

/// A new version whose inputs the trigger's fixed input no longer fits: the slot fires a run
/// that fails at once with `invalid_input`, visible in the runs — not a silent skip.
async fn a_fixed_input_that_no_longer_fits_fails_the_run_visibly(app: App, clock: Arc<TestClock>) {
    let dep = deployment(&app).await;
    let t = cron(
        &app,
        &dep,
        json!({"schedule": "* * * * *", "input": {"tag": "x"}}),
    )
    .await
    .unwrap();
    let v2 = json!({"inputs": {"count": {"type": "integer", "required": true}}});
    app.put_workflow("wf", object(v2)).await.unwrap();
    clock.advance(Duration::from_secs(60));
    let round = app.fire_due_cron(100).await.unwrap();
    assert_eq!(round.fired.len(), 1);
    let runs = runs_of(app.store(), &t.id).await;
    assert_eq!(runs[0].status, "failed");
    let error: Value = serde_json::from_str(runs[0].error.as_deref().unwrap()).unwrap();
    assert_eq!(error["code"], "invalid_input");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("input.count is required"),
        "{error}"
    );
    assert!(runs[0].finished_at.is_some() && runs[0].lease_owner.is_none());
}

/// Two nodes (two stores, two apps) on one database fire a `* * * * *` trigger over 90 slots,
/// concurrently each minute: every slot fires exactly once.
async fn two_nodes_fire_every_slot_exactly_once(app: App, clock: Arc<TestClock>) {
    let dep = deployment(&app).await;
    let Some(second_store) = app.store().reopen_for_tests().await else {
        return;
    };
    let node2 = App::new(second_store.clone(), clock.clone(), "http://triggerd.test");
    let t = cron(
        &app,
        &dep,
        json!({"schedule": "* * * * *", "input": {"tag": "x"}}),
    )
    .await
    .unwrap();
    let mut fired = 0;
    for _ in 0..90 {
        clock.advance(Duration::from_secs(60));
        let (a, b) = tokio::join!(app.fire_due_cron(100), node2.fire_due_cron(100));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.fired.len() + b.fired.len(), 1, "one node fires the slot");
        fired += 1;
    }
    let runs = runs_of(app.store(), &t.id).await;
    assert_eq!(runs.len(), fired);
    let mut seen: Vec<String> = runs.iter().map(slot_of).collect();
    seen.dedup();
    assert_eq!(seen.len(), fired, "no slot twice");
    assert_eq!(
        app.store().cron_slots(&t.id, 1000).await.unwrap().len(),
        fired
    );
    assert_eq!(trigger(&app, &t.id).await.fire_count, fired as i64);
    second_store.shutdown().await;
}

app_tests!(
    catch_up_policies_after_downtime,
    dst_transitions_fire_per_spec,
    at_fires_once_and_a_past_at_is_refused,
    disabled_triggers_do_not_fire_or_catch_up,
    a_fixed_input_that_no_longer_fits_fails_the_run_visibly,
    two_nodes_fire_every_slot_exactly_once,
);

#[test]
fn t0_is_the_documented_instant() {
    assert_eq!(
        DateTime::from_timestamp_micros(T0).unwrap(),
        utc(2023, 11, 14, 22, 13) + chrono::Duration::seconds(20)
    );
}
