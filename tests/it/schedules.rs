//! Cron triggers fired by the real binary (SPEC 5): within their minute on the real clock;
//! every slot exactly once with three nodes on one PostgreSQL database and across a SIGKILL, on
//! a clock that runs 120 times faster (`TRIGGERD_TEST_CLOCK`, a minute every half second).

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use triggerd_tests::{Backend, ServerConfig, TestServer, send, str_field};

/// Minutes of the fast clock per real second.
const SPEED: u64 = 120;

fn stepless() -> Value {
    json!({
        "name": "tick",
        "inputs": {"tag": {"type": "string", "required": true}},
        "output": {"tag": "{{ input.tag }}", "slot": "{{ trigger.scheduled_for }}"}
    })
}

fn instant(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(
        value
            .as_str()
            .unwrap_or_else(|| panic!("not an instant: {value}")),
    )
    .unwrap_or_else(|e| panic!("{value}: {e}"))
    .with_timezone(&Utc)
}

/// Puts the `tick` workflow, deploys it and creates a cron trigger with `config`.
async fn cron_trigger(server: &TestServer, config: Value) -> Value {
    server.put_workflow("tick", stepless()).await;
    let deployment = server.deploy("tick", "production").await;
    let reply = send(
        server
            .client()
            .post(server.api(&format!(
                "/deployments/{}/triggers",
                str_field(&deployment, "id")
            )))
            .json(&json!({"trigger_type": "cron", "config": config})),
    )
    .await;
    server.expect(&reply, 201, "create cron trigger");
    reply.body
}

async fn get_trigger(server: &TestServer, id: &str) -> Value {
    let reply = send(server.client().get(server.api(&format!("/triggers/{id}")))).await;
    server.expect(&reply, 200, "GET trigger");
    reply.body
}

/// Polls the trigger's runs until there are at least `count`; panics at the deadline.
async fn wait_for_runs(server: &TestServer, trigger_id: &str, count: usize, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let runs = server.runs_of_trigger(trigger_id).await;
        if runs.len() >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {count} runs within {within:?}\nserver log:\n{}",
            runs.len(),
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `TRIGGERD_TEST_CLOCK`: from now on, time runs [`SPEED`] times faster.
fn fast_clock() -> String {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis();
    format!("{now_ms}x{SPEED}")
}

/// The slots of the runs, checked: each a whole minute, none twice, none missing between the
/// first and the last. Returns how many.
fn assert_every_slot_once(runs: &[Value]) -> usize {
    let mut slots = BTreeSet::new();
    for run in runs {
        assert_eq!(run["source"], "cron", "{run:#}");
        let slot = instant(&run["trigger_input"]["scheduled_for"]);
        assert_eq!(slot.timestamp() % 60, 0, "a whole minute: {slot}");
        assert!(slots.insert(slot), "slot {slot} fired twice");
    }
    let (first, last) = (slots.first().unwrap(), slots.last().unwrap());
    let expected = ((*last - *first).num_minutes() + 1) as usize;
    assert_eq!(
        slots.len(),
        expected,
        "a slot between {first} and {last} is missing"
    );
    slots.len()
}

async fn a_cron_trigger_fires_within_its_minute(backend: Backend) {
    let server = TestServer::start(backend).await;
    let trigger = cron_trigger(
        &server,
        json!({"schedule": "* * * * *", "input": {"tag": "real"}}),
    )
    .await;
    let id = str_field(&trigger, "id");
    let slot = instant(&trigger["next_fire_at"]);
    let wait = (slot - Utc::now()).to_std().unwrap_or_default();
    assert!(
        wait <= Duration::from_secs(60),
        "the next slot is within a minute: {slot}"
    );
    wait_for_runs(&server, &id, 1, wait + Duration::from_secs(10)).await;

    let runs = server.runs_of_trigger(&id).await;
    let run = &runs[0];
    assert_eq!(run["source"], "cron");
    assert_eq!(instant(&run["trigger_input"]["scheduled_for"]), slot);
    assert_eq!(
        run["status"], "completed",
        "a step-less run completes as it fires"
    );
    assert_eq!(run["input"], json!({"tag": "real"}));
    let late = instant(&run["created_at"]) - slot;
    assert!(
        late >= chrono::Duration::zero() && late < chrono::Duration::seconds(2),
        "fired {late} after its slot"
    );

    let trigger = get_trigger(&server, &id).await;
    assert_eq!(trigger["fire_count"], 1);
    assert_eq!(
        instant(&trigger["last_fired_at"]),
        instant(&run["created_at"])
    );
    assert_eq!(
        instant(&trigger["next_fire_at"]),
        slot + chrono::Duration::minutes(1),
        "next_fire_at moved on"
    );
    let metrics = send(server.plain().get(format!("{}/metrics", server.base_url()))).await;
    assert!(
        metrics.text.contains("triggerd_cron_slots_fired_total 1"),
        "{}",
        metrics.text
    );
    assert!(
        metrics
            .text
            .contains("triggerd_cron_fire_lateness_seconds_bucket")
    );
}

async fn three_nodes_fire_every_slot_exactly_once(backend: Backend) {
    let config = ServerConfig::new(backend).with_env(&[("TRIGGERD_TEST_CLOCK", &fast_clock())]);
    let nodes = TestServer::start_cluster(config, 3).await;
    let trigger = cron_trigger(
        &nodes[0],
        json!({"schedule": "* * * * *", "input": {"tag": "cluster"}, "catch_up": "all"}),
    )
    .await;
    let id = str_field(&trigger, "id");
    // 40 slots at a minute every half second: 20 s.
    wait_for_runs(&nodes[1], &id, 40, Duration::from_secs(60)).await;
    let runs = nodes[2].runs_of_trigger(&id).await;
    let fired = assert_every_slot_once(&runs);
    let trigger = get_trigger(&nodes[0], &id).await;
    assert!(trigger["fire_count"].as_u64().unwrap() >= fired as u64);
    // Every node ran its scheduler; none fired a slot another node had fired.
    for node in &nodes {
        assert!(!node.logs().contains("panicked"), "{}", node.logs());
    }
}

async fn a_sigkill_while_firing_loses_no_slot_and_doubles_none(backend: Backend) {
    let config = ServerConfig::new(backend).with_env(&[("TRIGGERD_TEST_CLOCK", &fast_clock())]);
    let mut server = TestServer::start_config(config).await;
    let trigger = cron_trigger(
        &server,
        json!({"schedule": "* * * * *", "input": {"tag": "crash"}, "catch_up": "all"}),
    )
    .await;
    let id = str_field(&trigger, "id");
    for round in 0..3 {
        wait_for_runs(&server, &id, 5 * (round + 1), Duration::from_secs(30)).await;
        server.kill();
        // Down for about 1.5 s: three minutes of the fast clock.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        server.restart().await;
    }
    let before = server.runs_of_trigger(&id).await.len();
    // After the last restart the missed slots are caught up, then firing goes on.
    wait_for_runs(&server, &id, before + 6, Duration::from_secs(30)).await;
    let runs = server.runs_of_trigger(&id).await;
    assert_every_slot_once(&runs);
}

triggerd_tests::e2e_tests!(
    a_cron_trigger_fires_within_its_minute,
    the_schedules_example_deploys_and_bad_schedules_are_refused,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    a_sigkill_while_firing_loses_no_slot_and_doubles_none,
);

/// Several nodes: PostgreSQL only.
mod cluster {
    pub(super) use super::three_nodes_fire_every_slot_exactly_once;

    triggerd_tests::postgres_tests!(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        three_nodes_fire_every_slot_exactly_once,
    );
}

/// The example of docs/schedules.md, applied as a user would: its declared cron triggers show
/// their next slots; a one-time trigger in the past and an unknown time zone are refused with
/// 422; a disabled trigger shows no next slot.
async fn the_schedules_example_deploys_and_bad_schedules_are_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let example: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/nightly-cron/workflow.json"
        ))
        .expect("examples/nightly-cron/workflow.json"),
    )
    .expect("the example is JSON");
    server.put_workflow("nightly-cron", example).await;
    let deployment = server.deploy("nightly-cron", "production").await;
    let dep = str_field(&deployment, "id");
    let reply = send(
        server
            .client()
            .get(server.api(&format!("/deployments/{dep}/triggers"))),
    )
    .await;
    server.expect(&reply, 200, "list triggers");
    let triggers = reply.body["data"].as_array().expect("data").clone();
    let by_name = |name: &str| {
        triggers
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("no trigger {name}: {triggers:#?}"))
            .clone()
    };
    let now = Utc::now();
    let morning = instant(&by_name("weekday-morning")["next_fire_at"]);
    let london = morning.with_timezone(&chrono_tz::Europe::London);
    assert_eq!(london.format("%H:%M").to_string(), "07:30", "{morning}");
    assert!(morning > now && morning - now <= chrono::Duration::days(4));
    let refresh = instant(&by_name("refresh")["next_fire_at"]);
    assert_eq!(refresh.timestamp() % 900, 0);
    assert!(refresh > now && refresh - now <= chrono::Duration::minutes(15));
    assert_eq!(
        by_name("launch")["next_fire_at"],
        json!("2030-01-15T08:00:00.000000Z")
    );

    let create = |config: Value| {
        server
            .client()
            .post(server.api(&format!("/deployments/{dep}/triggers")))
            .json(&json!({"trigger_type": "cron", "config": config}))
    };
    let past = send(create(
        json!({"at": "2020-01-01T00:00:00Z", "input": {"kind": "launch"}}),
    ))
    .await;
    past.assert_error(422, "invalid_config");
    assert_eq!(past.details()[0]["path"], "config.at", "{}", past.text);
    let zone = send(create(
        json!({"schedule": "0 9 * * *", "timezone": "Mars/Olympus", "input": {"kind": "daily"}}),
    ))
    .await;
    zone.assert_error(422, "invalid_config");
    let seconds = send(create(
        json!({"schedule": "0 0 9 * * *", "input": {"kind": "daily"}}),
    ))
    .await;
    seconds.assert_error(422, "invalid_config");
    let never = send(create(
        json!({"schedule": "0 0 30 2 *", "input": {"kind": "daily"}}),
    ))
    .await;
    never.assert_error(422, "invalid_config");
    assert!(
        never.details()[0]["message"]
            .as_str()
            .unwrap()
            .contains("never fires"),
        "{}",
        never.text
    );

    let id = str_field(&by_name("refresh"), "id");
    let off = send(
        server
            .client()
            .patch(server.api(&format!("/triggers/{id}")))
            .json(&json!({"enabled": false})),
    )
    .await;
    server.expect(&off, 200, "disable");
    assert_eq!(off.body["next_fire_at"], Value::Null);
    let on = send(
        server
            .client()
            .patch(server.api(&format!("/triggers/{id}")))
            .json(&json!({"enabled": true})),
    )
    .await;
    server.expect(&on, 200, "enable");
    assert_eq!(instant(&on.body["next_fire_at"]), refresh);
}
