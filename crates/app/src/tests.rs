//! Unit tests of the operations, on a real database of each backend, with a [`TestClock`].

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use triggerd_domain::ids::{IdKind, new_id};
use triggerd_domain::run::{EventType, RunError, RunSource, RunStatus};
use triggerd_domain::trigger::{TriggerConfig, TriggerType};
use triggerd_storage::TriggerRow;

use crate::runs::{RunChange, RunStart};
use crate::testing::{T0, app_tests};
use crate::triggers::TriggerRequest;
use crate::{App, AppError, TestClock};

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

/// A workflow `wf` (with `steps` when `with_steps`) deployed as `production`.
async fn deployed(
    app: &App,
    definition: Value,
) -> (String, Arc<triggerd_domain::definition::Definition>) {
    app.put_workflow("wf", object(definition)).await.unwrap();
    let (dep, _) = app.deploy("wf", "production", None).await.unwrap();
    let (_, def) = app.deployment_definition(&dep).await.unwrap();
    (dep.id, def)
}

fn start(dep: &str, source: RunSource, trigger_id: Option<&str>) -> RunStart {
    RunStart {
        run_id: new_id(IdKind::Run),
        source,
        deployment_id: dep.to_owned(),
        workflow: "wf".into(),
        workflow_version: 1,
        trigger_id: trigger_id.map(str::to_owned),
        input: object(json!({"n": 2})),
        trigger_input: json!({"scheduled_for": "2023-11-14T22:13:20Z"}),
        created_at: T0,
    }
}

const STEPLESS: &str =
    r#"{"inputs": {"n": {"type": "integer"}}, "output": {"twice": "{{ input.n }}"}}"#;
const WITH_STEP: &str = r#"{"inputs": {"n": {"type": "integer"}},
    "steps": [{"id": "call", "type": "http", "request": {"url": "https://example.com/"}}]}"#;

async fn start_for_each_source_completes_stepless_runs_and_leaves_others_pending(
    app: App,
    clock: Arc<TestClock>,
) {
    let (dep, def) = deployed(&app, serde_json::from_str(STEPLESS).unwrap()).await;
    clock.advance(Duration::from_secs(3));
    for source in RunSource::ALL {
        let started = app
            .start_run(start(&dep, source, None), &def)
            .await
            .unwrap();
        assert_eq!(started.status, RunStatus::Completed, "{source}");
        assert_eq!(
            started.events,
            [EventType::RunStarted, EventType::RunCompleted]
        );
        let row = app.store().get_run(&started.row.id).await.unwrap().unwrap();
        assert_eq!(row.status, RunStatus::Completed.as_str());
        assert_eq!(row.source, source.as_str());
        assert_eq!(row.final_output.as_deref(), Some(r#"{"twice":2}"#));
        assert_eq!(row.started_at, Some(T0 + 3_000_000));
        assert_eq!(row.finished_at, row.started_at);
        assert_eq!(row.lease_owner, None);
    }
    // With steps: stored pending, no event yet.
    app.put_workflow("wf", object(serde_json::from_str(WITH_STEP).unwrap()))
        .await
        .unwrap();
    let (_, def) = app
        .deployment_definition(&app.deployment(&dep).await.unwrap())
        .await
        .unwrap();
    let started = app
        .start_run(start(&dep, RunSource::Cron, None), &def)
        .await
        .unwrap();
    assert_eq!(started.status, RunStatus::Pending);
    assert!(started.events.is_empty());
    let row = app.store().get_run(&started.row.id).await.unwrap().unwrap();
    assert_eq!(
        (row.status.as_str(), row.source.as_str()),
        ("pending", "cron")
    );
    assert_eq!(
        row.trigger_input,
        r#"{"scheduled_for":"2023-11-14T22:13:20Z"}"#
    );
}

async fn every_legal_and_illegal_transition_is_checked_with_its_events(
    app: App,
    clock: Arc<TestClock>,
) {
    let (dep, def) = deployed(&app, serde_json::from_str(WITH_STEP).unwrap()).await;
    // Each legal move from a run brought to `from`, and each illegal one.
    for from in RunStatus::ALL {
        for to in RunStatus::ALL {
            let started = app
                .start_run(start(&dep, RunSource::Api, None), &def)
                .await
                .unwrap();
            let mut row = claim(&app, &started.row.id).await;
            let path: &[RunStatus] = match from {
                RunStatus::Pending => &[],
                RunStatus::Running => &[RunStatus::Running],
                RunStatus::Waiting => &[RunStatus::Running, RunStatus::Waiting],
                RunStatus::Completed => &[RunStatus::Running, RunStatus::Completed],
                RunStatus::Failed => &[RunStatus::Failed],
                RunStatus::Cancelled => &[RunStatus::Cancelled],
            };
            if !path.is_empty() {
                let keep = RunChange {
                    lease_until: Some(T0 + 3_600_000_000),
                    ..RunChange::default()
                };
                app.transition(&row, "w1", path, keep).await.unwrap();
                // The set-up kept the lease (`lease_until`), so `w1` may try the move.
                row = app.store().get_run(&row.id).await.unwrap().unwrap();
            }
            assert_eq!(row.status, from.as_str());
            clock.advance(Duration::from_secs(1));
            let result = app
                .transition(&row, "w1", &[to], RunChange::default())
                .await;
            let expected = EventType::for_transition(from, to);
            if from.can_transition(to) {
                let moved = result.unwrap_or_else(|e| panic!("{from} -> {to}: {e}"));
                assert_eq!(moved.status, to);
                assert_eq!(moved.events, expected.into_iter().collect::<Vec<_>>());
                let after = app.store().get_run(&row.id).await.unwrap().unwrap();
                assert_eq!(after.status, to.as_str(), "{from} -> {to}");
                if to.is_terminal() {
                    assert_eq!(after.finished_at, Some(clock_now(&clock)));
                    assert!(after.started_at.is_some());
                    assert_eq!(after.lease_owner, None);
                }
            } else {
                assert!(
                    matches!(result, Err(AppError::IllegalTransition(_))),
                    "{from} -> {to}: {result:?}"
                );
                let after = app.store().get_run(&row.id).await.unwrap().unwrap();
                assert_eq!(
                    after.status,
                    from.as_str(),
                    "nothing written for {from} -> {to}"
                );
            }
        }
    }
}

fn clock_now(clock: &TestClock) -> i64 {
    use crate::Clock;
    clock.now_micros()
}

/// Claims exactly the run `id` for worker `w1`.
async fn claim(app: &App, id: &str) -> triggerd_storage::RunRow {
    let claimed = app
        .claim_runs("w1", Duration::from_secs(60), 1000)
        .await
        .unwrap();
    let row = claimed.into_iter().find(|r| r.id == id);
    row.unwrap_or_else(|| panic!("run {id} was not claimable"))
}

async fn a_worker_that_lost_the_lease_changes_nothing(app: App, _clock: Arc<TestClock>) {
    let (dep, def) = deployed(&app, serde_json::from_str(WITH_STEP).unwrap()).await;
    let started = app
        .start_run(start(&dep, RunSource::Api, None), &def)
        .await
        .unwrap();
    let row = claim(&app, &started.row.id).await;
    let result = app
        .transition(
            &row,
            "someone-else",
            &[RunStatus::Running],
            RunChange::default(),
        )
        .await;
    assert!(
        matches!(result, Err(AppError::LeaseLost { .. })),
        "{result:?}"
    );
    let after = app.store().get_run(&row.id).await.unwrap().unwrap();
    assert_eq!(after.status, "pending");
    // Failing records the error as `{code, message}`.
    app.transition(
        &row,
        "w1",
        &[RunStatus::Failed],
        RunChange {
            error: Some(RunError::timeout(5)),
            ..RunChange::default()
        },
    )
    .await
    .unwrap();
    let after = app.store().get_run(&row.id).await.unwrap().unwrap();
    let error: Value = serde_json::from_str(after.error.as_deref().unwrap()).unwrap();
    assert_eq!(error["code"], "timeout");
}

async fn cancel_moves_unfinished_runs_and_refuses_finished_ones(app: App, clock: Arc<TestClock>) {
    let (dep, def) = deployed(&app, serde_json::from_str(WITH_STEP).unwrap()).await;
    let started = app
        .start_run(start(&dep, RunSource::Api, None), &def)
        .await
        .unwrap();
    let held = claim(&app, &started.row.id).await;
    clock.advance(Duration::from_secs(7));
    let row = app.cancel_run(&started.row.id).await.unwrap();
    assert_eq!(row.status, "cancelled");
    assert_eq!(row.finished_at, Some(T0 + 7_000_000));
    assert_eq!(row.lease_owner, None);
    // The worker that held it can no longer write.
    let late = app
        .transition(&held, "w1", &[RunStatus::Running], RunChange::default())
        .await;
    assert!(late.is_err());
    let again = app.cancel_run(&started.row.id).await;
    assert!(
        matches!(again, Err(AppError::IllegalTransition(_))),
        "{again:?}"
    );
    assert!(matches!(
        app.cancel_run("run_01ARZ3NDEKTSV4RRFFQ69G5FAV").await,
        Err(AppError::NotFound { .. })
    ));
}

const DECLARED_V1: &str = r#"{"inputs": {"n": {"type": "integer"}}, "triggers": [
    {"name": "a", "trigger_type": "webhook", "config": {}},
    {"name": "b", "trigger_type": "webhook", "config": {"rate_limit_per_minute": 5}},
    {"name": "c", "trigger_type": "cron", "config": {"schedule": "0 9 * * *", "input": {"n": 1}}}]}"#;
const DECLARED_V2: &str = r#"{"inputs": {"n": {"type": "integer"}}, "triggers": [
    {"name": "a", "trigger_type": "webhook", "config": {"rate_limit_per_minute": 7}},
    {"name": "d", "trigger_type": "webhook", "config": {}},
    {"name": "c", "trigger_type": "webhook", "config": {}}]}"#;

/// Names and configs of a deployment's triggers, sorted by name.
async fn triggers_of(app: &App, dep: &str) -> Vec<(String, String, String, Option<String>)> {
    let mut rows: Vec<_> = app
        .store()
        .list_triggers(dep, None, 1000)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|t| {
            (
                t.name.unwrap_or_default(),
                t.trigger_type,
                t.config,
                t.token,
            )
        })
        .collect();
    rows.sort();
    rows
}

async fn deploy_and_put_sync_declared_triggers_in_one_transaction(app: App, clock: Arc<TestClock>) {
    app.put_workflow("wf", object(serde_json::from_str(DECLARED_V1).unwrap()))
        .await
        .unwrap();
    let generation = app.trigger_changes().generation();
    let (dep, report) = app.deploy("wf", "production", None).await.unwrap();
    assert!(app.trigger_changes().generation() > generation);
    assert_eq!(report.created_names(), ["a", "b", "c"]);
    let cron = report
        .created
        .iter()
        .find(|t| t.name.as_deref() == Some("c"))
        .unwrap();
    // 09:00 UTC after 2023-11-14T22:13:20Z.
    assert_eq!(cron.next_fire_at, Some(1_700_038_800_000_000));
    let before = triggers_of(&app, &dep.id).await;
    let token_a = before[0].3.clone().unwrap();

    // A failure in the middle of the sync of a new version leaves nothing of it.
    clock.advance(Duration::from_secs(1));
    let failing = app.clone();
    let failing = App {
        inner: Arc::new(crate::Inner {
            store: failing.store().clone(),
            clock: failing.clock().clone(),
            public_url: failing.public_url().to_owned(),
            options: failing.options(),
            changes: failing.trigger_changes().clone(),
            hooks_seen: Default::default(),
            fail_sync_after: Some(2),
            memory: crate::memory::MemoryBudget::unlimited(),
        }),
    };
    let result = failing
        .put_workflow("wf", object(serde_json::from_str(DECLARED_V2).unwrap()))
        .await;
    assert!(result.is_err(), "{result:?}");
    assert_eq!(triggers_of(&app, &dep.id).await, before);
    let (_, latest) = app.store().get_workflow("wf").await.unwrap().unwrap();
    assert_eq!(
        latest.version, 1,
        "the version is rolled back with its sync"
    );

    // Without the failure: the version and the whole sync.
    let put = app
        .put_workflow("wf", object(serde_json::from_str(DECLARED_V2).unwrap()))
        .await
        .unwrap();
    assert!(put.created);
    assert_eq!(put.version.version, 2);
    assert_eq!(put.synced.len(), 1);
    assert_eq!(put.synced[0].updated, ["a"]);
    assert_eq!(put.synced[0].created_names(), ["d", "c"]);
    assert_eq!(put.synced[0].removed, ["b"]);
    let after = triggers_of(&app, &dep.id).await;
    let names: Vec<_> = after.iter().map(|t| (t.0.as_str(), t.1.as_str())).collect();
    assert_eq!(
        names,
        [("a", "webhook"), ("c", "webhook"), ("d", "webhook")]
    );
    assert_eq!(
        after[0].3.as_deref(),
        Some(token_a.as_str()),
        "a keeps its URL"
    );
    assert!(after[0].2.contains("\"rate_limit_per_minute\":7"));

    // An identical PUT stores nothing and syncs nothing.
    let same = app
        .put_workflow("wf", object(serde_json::from_str(DECLARED_V2).unwrap()))
        .await
        .unwrap();
    assert!(!same.created && same.synced.is_empty());

    // A failing deploy leaves no deployment behind.
    let failing_deploy = App {
        inner: Arc::new(crate::Inner {
            store: app.store().clone(),
            clock: app.clock().clone(),
            public_url: app.public_url().to_owned(),
            options: app.options(),
            changes: app.trigger_changes().clone(),
            hooks_seen: Default::default(),
            fail_sync_after: Some(1),
            memory: crate::memory::MemoryBudget::unlimited(),
        }),
    };
    assert!(failing_deploy.deploy("wf", "staging", None).await.is_err());
    assert!(
        app.store()
            .get_deployment_by_name("wf", "staging")
            .await
            .unwrap()
            .is_none()
    );
}

async fn definitions_and_configs_this_build_cannot_honour_are_refused(
    app: App,
    _clock: Arc<TestClock>,
) {
    for (step, says) in [(
        json!({"id": "c", "type": "command", "command": ["true"]}),
        "TRIGGERD_ALLOW_COMMANDS=true",
    )] {
        match app
            .put_workflow("wf", object(json!({"steps": [step]})))
            .await
        {
            Err(AppError::InvalidDefinition(problems)) => {
                assert_eq!(problems[0].path, "steps[0].type");
                assert!(
                    problems[0].message.contains(says),
                    "{}",
                    problems[0].message
                );
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(app.store().get_workflow("wf").await.unwrap().is_none());
    // The sync response mode means the same in a definition as through the API (issue 17: it
    // was refused by the API and accepted, then answered async, in a definition).
    let sync = json!({"triggers": [{"name": "s", "trigger_type": "webhook",
        "config": {"response": {"mode": "sync", "timeout_seconds": 301}}}]});
    match app.put_workflow("wf", object(sync)).await {
        Err(AppError::InvalidDefinition(problems)) => {
            assert_eq!(
                problems[0].path,
                "triggers[0].config.response.timeout_seconds"
            );
        }
        other => panic!("{other:?}"),
    }
    let sync = json!({"triggers": [{"name": "s", "trigger_type": "webhook",
        "config": {"response": {"mode": "sync", "timeout_seconds": 5}}}]});
    app.put_workflow("wf", object(sync)).await.unwrap();
    // Declared hooks follow the definition's versions: kept (same id and secret) while declared
    // the same, removed when dropped, created when new.
    let v1 = json!({"hooks": [{"url": "https://example.com/h", "events": ["run.failed"]}],
                    "on_success_url": "https://example.com/ok"});
    let put = app.put_workflow("hooked", object(v1)).await.unwrap();
    assert_eq!(put.hooks.len(), 2);
    let origins: Vec<&str> = put.hooks.iter().map(|h| h.origin.as_str()).collect();
    assert!(origins.contains(&"definition") && origins.contains(&"on_success_url"));
    let v2 = json!({"hooks": [{"url": "https://example.com/h", "events": ["run.failed"]}],
                    "on_failure_url": "https://example.com/ko", "description": "v2"});
    let put2 = app.put_workflow("hooked", object(v2)).await.unwrap();
    let kept = put.hooks.iter().find(|h| h.origin == "definition").unwrap();
    assert!(
        put2.hooks.contains(kept),
        "unchanged hook keeps id and secret"
    );
    assert_eq!(put2.hooks.len(), 2);
    assert!(put2.hooks.iter().any(|h| h.origin == "on_failure_url"));
    let all = app.store().list_hooks(None, None, 100).await.unwrap().items;
    assert_eq!(all.len(), 2, "the on_success_url hook was removed");
    let (dep, _) = deployed(&app, json!({"max_concurrent_runs": 0})).await;
    let (sync, _) = app
        .create_trigger(
            &dep,
            TriggerRequest {
                trigger_type: TriggerType::Webhook,
                name: None,
                enabled: true,
                config: json!({"response": {"mode": "sync"}}),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&sync.config).unwrap()["response"],
        json!({"mode": "sync", "timeout_seconds": 30})
    );
}

async fn concurrent_trigger_patches_lose_no_update(app: App, _clock: Arc<TestClock>) {
    let (dep, _) = deployed(&app, json!({})).await;
    let (row, _) = app
        .create_trigger(
            &dep,
            TriggerRequest {
                trigger_type: TriggerType::Webhook,
                name: None,
                enabled: true,
                config: json!({}),
            },
        )
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..20u32 {
        let (app, id) = (app.clone(), row.id.clone());
        tasks.push(tokio::spawn(async move {
            let change = if i == 7 {
                json!({"secret": "a-long-secret-of-the-tests"})
            } else {
                json!({"rate_limit_per_minute": 100 + i})
            };
            app.patch_trigger(&id, None, Some(change)).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stored = app.store().get_trigger(&row.id).await.unwrap().unwrap();
    assert!(
        stored.config.contains("a-long-secret-of-the-tests"),
        "the secret set by one PATCH survives every other: {}",
        stored.config
    );
}

async fn declared_generated_api_keys_are_made_once_per_deployment(
    app: App,
    _clock: Arc<TestClock>,
) {
    let definition = |rate: u32, keys: Value| {
        object(
            json!({"triggers": [{"name": "hook", "trigger_type": "webhook",
            "config": {"rate_limit_per_minute": rate, "api_keys": keys}}]}),
        )
    };
    let ci = json!({"name": "ci", "generate": true});
    app.put_workflow("wf", definition(5, json!([ci])))
        .await
        .unwrap();
    let (dep, report) = app.deploy("wf", "production", None).await.unwrap();
    let shown = report.generated_for("hook");
    assert_eq!(shown.len(), 1);
    assert_eq!(shown[0].name, "ci");
    let (_, staging) = app.deploy("wf", "staging", None).await.unwrap();
    assert_ne!(
        staging.generated_for("hook")[0].key,
        shown[0].key,
        "each deployment has its own key"
    );
    let accepts = |row: &TriggerRow, key: &str| match crate::triggers::config_of(row).unwrap() {
        TriggerConfig::Webhook(w) => w.accepts_api_key(key),
        TriggerConfig::Cron(_) => false,
    };
    let row = |rows: Vec<TriggerRow>| rows.into_iter().next().unwrap();
    let first = row(app
        .store()
        .list_triggers(&dep.id, None, 10)
        .await
        .unwrap()
        .items);
    assert!(accepts(&first, &shown[0].key));
    assert!(
        !first.config.contains(&shown[0].key),
        "only the digest is stored"
    );

    // A new version that still declares the key: the trigger changes, the key does not.
    let put = app
        .put_workflow("wf", definition(6, json!([ci])))
        .await
        .unwrap();
    let synced = put
        .synced
        .iter()
        .find(|r| r.deployment_id == dep.id)
        .unwrap();
    assert_eq!(synced.updated, ["hook"]);
    assert!(synced.generated_api_keys.is_empty());
    let second = row(app
        .store()
        .list_triggers(&dep.id, None, 10)
        .await
        .unwrap()
        .items);
    assert!(accepts(&second, &shown[0].key));

    // Another key declared: only that one is generated.
    let put = app
        .put_workflow(
            "wf",
            definition(6, json!([ci, {"name": "next", "generate": true}])),
        )
        .await
        .unwrap();
    let synced = put
        .synced
        .iter()
        .find(|r| r.deployment_id == dep.id)
        .unwrap();
    let names: Vec<&str> = synced
        .generated_api_keys
        .iter()
        .map(|(t, k)| {
            assert_eq!(t, "hook");
            k.name.as_str()
        })
        .collect();
    assert_eq!(names, ["next"]);
    let third = row(app
        .store()
        .list_triggers(&dep.id, None, 10)
        .await
        .unwrap()
        .items);
    assert!(accepts(&third, &shown[0].key) && accepts(&third, &synced.generated_api_keys[0].1.key));
}

app_tests!(
    declared_generated_api_keys_are_made_once_per_deployment,
    start_for_each_source_completes_stepless_runs_and_leaves_others_pending,
    every_legal_and_illegal_transition_is_checked_with_its_events,
    a_worker_that_lost_the_lease_changes_nothing,
    cancel_moves_unfinished_runs_and_refuses_finished_ones,
    deploy_and_put_sync_declared_triggers_in_one_transaction,
    definitions_and_configs_this_build_cannot_honour_are_refused,
    concurrent_trigger_patches_lose_no_update,
);
