//! Management routes beyond the webhook walk-through: the trigger dry run and run cancellation.

use std::time::{Duration, Instant};

use serde_json::json;
use triggerd_tests::{Backend, RUN_TIMEOUT, TestServer, order_workflow, send, str_field};

use crate::steps::{ARRIVAL_TIMEOUT, Receiver, STEP_RUN_TIMEOUT, STEP_SETTINGS, start_run};

async fn trigger_test_maps_and_validates_without_starting_anything(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = server
        .setup_webhook(
            order_workflow(),
            json!({"secret": "dry-run-secret", "input_mapping": {"email": "customer.email", "value": "$query.v"}}),
        )
        .await;
    let test_url = server.api(&format!("/triggers/{}/test", hook.id));
    let ok = send(server.client().post(&test_url).json(&json!({
        "query": {"v": "7"},
        "headers": {"X-Webhook-Signature": "abc", "X-Event": "order"},
        "body": {"customer": {"email": "a@example.com"}}
    })))
    .await;
    server.expect(&ok, 200, "dry run");
    assert_eq!(
        ok.body["input"],
        json!({"email": "a@example.com", "value": 7, "week": "current"})
    );
    assert_eq!(
        ok.body["trigger_input"]["headers"]["x-webhook-signature"],
        json!("[redacted]")
    );
    assert_eq!(
        ok.body["trigger_input"]["headers"]["x-event"],
        json!("order")
    );

    let bad = send(
        server
            .client()
            .post(&test_url)
            .json(&json!({"query": {"v": "seven"}, "body": {}})),
    )
    .await;
    bad.assert_error(422, "invalid_input");
    assert_eq!(
        bad.details(),
        &vec![
            json!({"input": "email", "message": "is required"}),
            json!({"input": "value", "message": "must be an integer, got \"seven\""}),
        ]
    );
    let wrong_shape = send(
        server
            .client()
            .post(&test_url)
            .json(&json!({"headers": []})),
    )
    .await;
    wrong_shape.assert_error(400, "bad_request");

    // Nothing was started or logged.
    server.assert_no_runs(&hook.id).await;
    assert!(server.trigger_requests(&hook.id).await.is_empty());
    let unknown = send(
        server
            .client()
            .post(server.api("/triggers/trg_01M84SV21RSM2AN7XA96Q8VT9W/test"))
            .json(&json!({})),
    )
    .await;
    unknown.assert_error(404, "not_found");
}

async fn cancel_stops_an_unfinished_run_and_refuses_a_finished_one(backend: Backend) {
    // The first step calls a local receiver that answers only when told to: the run is
    // deterministically running (its step in flight) when it is cancelled.
    let receiver = Receiver::start().await;
    receiver.hold("/hold");
    let server = TestServer::start_with(backend, &STEP_SETTINGS).await;
    let step = |id: &str, path: &str| {
        json!({"id": id, "type": "http",
               "request": {"method": "POST", "url": receiver.url(path), "body": {}}})
    };
    server
        .put_workflow(
            "held",
            json!({"name": "held", "steps": [step("held", "/hold"), step("after", "/after")]}),
        )
        .await;
    let deployment = server.deploy("held", "production").await;
    let dep_id = deployment["id"].as_str().unwrap();
    let run_id = start_run(&server, dep_id, json!({})).await;
    receiver.wait_for("/hold", 1, ARRIVAL_TIMEOUT).await;
    assert_eq!(server.get_run(&run_id).await["status"], json!("running"));
    let cancel_url = server.api(&format!("/runs/{run_id}/cancel"));

    let cancelled = send(server.client().post(&cancel_url)).await;
    server.expect(&cancelled, 200, "cancel");
    assert_eq!(cancelled.body["status"], json!("cancelled"));
    assert!(cancelled.body["finished_at"].is_string());
    assert_eq!(server.get_run(&run_id).await["status"], json!("cancelled"));
    send(server.client().post(&cancel_url))
        .await
        .assert_error(409, "conflict");

    // Once its step is answered, the cancelled run goes no further. A second run of the
    // deployment, started after the release, walks both steps; when it has completed, the
    // cancelled run's worker has had its answer just as long.
    receiver.release();
    let second = start_run(&server, dep_id, json!({})).await;
    server
        .wait_for_run_status(&second, "completed", STEP_RUN_TIMEOUT)
        .await;
    let run = server.get_run(&run_id).await;
    assert_eq!(run["status"], json!("cancelled"), "{run:#}");
    assert_eq!(run["finished_at"], cancelled.body["finished_at"], "{run:#}");
    assert_eq!(run["final_output"], serde_json::Value::Null, "{run:#}");
    let cancelled_key = format!("{run_id}:after");
    assert!(
        receiver
            .requests_to("/after")
            .iter()
            .all(|r| r.header("idempotency-key") != Some(cancelled_key.as_str())),
        "the cancelled run went on to its next step: {:#?}",
        receiver.summary()
    );
    assert!(
        run["step_executions"]
            .as_array()
            .is_none_or(|executions| executions.iter().all(|e| e["step_id"] != "after")),
        "{run:#}"
    );

    // A run that completed cannot be cancelled either.
    let hook = server.setup_webhook(order_workflow(), json!({})).await;
    let accepted = send(
        server
            .plain()
            .post(&hook.url)
            .json(&json!({"email": "a@example.com", "value": 1})),
    )
    .await;
    server.expect(&accepted, 201, "webhook");
    let done = accepted.body["run_id"].as_str().unwrap().to_owned();
    server
        .wait_for_run_status(&done, "completed", RUN_TIMEOUT)
        .await;
    send(
        server
            .client()
            .post(server.api(&format!("/runs/{done}/cancel"))),
    )
    .await
    .assert_error(409, "conflict");
    send(server.client().post(server.api("/runs/run_nope/cancel")))
        .await
        .assert_error(404, "not_found");
}

async fn declared_triggers_follow_the_definition_per_deployment(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut definition = order_workflow();
    definition["triggers"] = json!([
        {"name": "crm", "trigger_type": "webhook", "config": {"input_mapping": {"email": "customer_email"}}},
        {"name": "weekly", "trigger_type": "cron",
         "config": {"schedule": "0 9 * * 1", "timezone": "Europe/London", "input": {"email": "ops@example.com"}}}
    ]);
    server
        .put_workflow("order-created", definition.clone())
        .await;
    let deployment = server.deploy("order-created", "production").await;
    let dep_id = deployment["id"].as_str().unwrap().to_owned();
    let created = deployment["triggers"]
        .as_array()
        .expect("the deployment lists its declared triggers");
    assert_eq!(created.len(), 2);
    let crm = created
        .iter()
        .find(|t| t["name"] == json!("crm"))
        .unwrap()
        .clone();
    let weekly = created
        .iter()
        .find(|t| t["name"] == json!("weekly"))
        .unwrap();
    assert_eq!(crm["declared"], json!(true));
    assert!(weekly["next_fire_at"].is_string(), "{weekly}");
    let url = crm["url"].as_str().unwrap().to_owned();

    let run = send(
        server
            .plain()
            .post(&url)
            .json(&json!({"customer_email": "a@example.com", "value": 3})),
    )
    .await;
    server.expect(&run, 201, "webhook to a declared trigger");

    // A new version: crm changes its mapping, weekly goes, hourly arrives.
    definition["triggers"] = json!([
        {"name": "crm", "trigger_type": "webhook", "config": {"input_mapping": {"email": "contact.email"}}},
        {"name": "hourly", "trigger_type": "cron", "config": {"schedule": "@hourly", "input": {"email": "ops@example.com"}}}
    ]);
    let put = server
        .put_workflow("order-created", definition.clone())
        .await;
    assert_eq!(
        put["declared_triggers"],
        json!([{"created": ["hourly"], "updated": ["crm"], "removed": ["weekly"], "deployment_id": dep_id}])
    );
    let listed = send(
        server
            .client()
            .get(server.api(&format!("/deployments/{dep_id}/triggers"))),
    )
    .await;
    server.expect(&listed, 200, "list triggers");
    let mut names: Vec<&str> = listed.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["crm", "hourly"]);
    let crm_now = listed.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == json!("crm"))
        .unwrap();
    assert_eq!(
        crm_now["token"], crm["token"],
        "re-applying keeps the token"
    );
    assert_eq!(
        crm_now["config"]["input_mapping"],
        json!({"email": "contact.email"})
    );
    let run = send(
        server
            .plain()
            .post(&url)
            .json(&json!({"contact": {"email": "b@example.com"}, "value": 4})),
    )
    .await;
    server.expect(&run, 201, "the same URL maps with the new mapping");
    let run_id = run.body["run_id"].as_str().unwrap().to_owned();
    assert_eq!(
        server.get_run(&run_id).await["input"]["email"],
        json!("b@example.com")
    );

    // Identical re-PUT: no version, no changes.
    let again = server.put_workflow("order-created", definition).await;
    assert_eq!(again["declared_triggers"], json!([]));
    assert_eq!(again["version"], put["version"]);
}

async fn context_store_is_patched_read_and_seen_by_runs(backend: Backend) {
    let server = TestServer::start(backend).await;
    server
        .put_workflow(
            "greeter",
            json!({"name": "greeter", "output": {"token": "{{ context.crm_token }}", "n": "{{ context.limits.n }}"}}),
        )
        .await;
    let deployment = server.deploy("greeter", "production").await;
    let dep_id = deployment["id"].as_str().unwrap();
    let url = server.api(&format!("/deployments/{dep_id}/context"));
    let empty = send(server.client().get(&url)).await;
    server.expect(&empty, 200, "empty context");
    assert_eq!(empty.body, json!({}));
    let patched = send(
        server
            .client()
            .patch(&url)
            .json(&json!({"crm_token": "t-1", "limits": {"n": 3}, "gone": 1})),
    )
    .await;
    server.expect(&patched, 200, "patch context");
    let patched = send(server.client().patch(&url).json(&json!({"gone": null}))).await;
    assert_eq!(
        patched.body,
        json!({"crm_token": "t-1", "limits": {"n": 3}})
    );
    assert_eq!(send(server.client().get(&url)).await.body, patched.body);
    send(server.client().patch(&url).json(&json!([1])))
        .await
        .assert_error(400, "bad_request");
    // A NUL (or any control character) in a key is refused on both backends alike.
    send(server.client().patch(&url).json(&json!({"a\u{0}b": 1})))
        .await
        .assert_error(400, "bad_request");
    assert_eq!(send(server.client().get(&url)).await.body, patched.body);
    send(
        server
            .client()
            .get(server.api("/deployments/dep_01M84SV219WB4CAMA3BXHTBGK9/context")),
    )
    .await
    .assert_error(404, "not_found");

    // A run renders its output with the stored context.
    let created = send(
        server
            .client()
            .post(server.api("/runs"))
            .json(&json!({"deployment_id": dep_id})),
    )
    .await;
    server.expect(&created, 201, "create run");
    let run = server
        .wait_for_run_status(
            created.body["run_id"].as_str().unwrap(),
            "completed",
            RUN_TIMEOUT,
        )
        .await;
    assert_eq!(run["final_output"], json!({"token": "t-1", "n": 3}));
}

async fn workflow_versions_are_listed_and_read(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut definition = order_workflow();
    for description in ["one", "two", "three"] {
        definition["description"] = json!(description);
        server
            .put_workflow("order-created", definition.clone())
            .await;
    }
    let first = send(
        server
            .client()
            .get(server.api("/workflows/order-created/versions?limit=2")),
    )
    .await;
    server.expect(&first, 200, "versions page 1");
    let versions: Vec<i64> = first.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, [3, 2]);
    assert_eq!(
        first.body["data"][0]["definition"]["description"],
        json!("three")
    );
    let cursor = first.body["next_cursor"].as_str().unwrap().to_owned();
    let second = send(server.client().get(server.api(&format!(
        "/workflows/order-created/versions?limit=2&cursor={cursor}"
    ))))
    .await;
    assert_eq!(second.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(second.body["next_cursor"], json!(null));
    let one = send(
        server
            .client()
            .get(server.api("/workflows/order-created/versions/1")),
    )
    .await;
    server.expect(&one, 200, "version 1");
    assert_eq!(one.body["version"], json!(1));
    assert_eq!(one.body["latest_version"], json!(3));
    assert_eq!(one.body["definition"]["description"], json!("one"));
    send(
        server
            .client()
            .get(server.api("/workflows/order-created/versions/9")),
    )
    .await
    .assert_error(404, "not_found");
    send(server.client().get(server.api("/workflows/nope/versions")))
        .await
        .assert_error(404, "not_found");
    send(
        server
            .client()
            .get(server.api("/workflows/order-created/versions?cursor=x")),
    )
    .await
    .assert_error(400, "invalid_cursor");
}

async fn cron_triggers_show_next_fire_at_in_their_zone(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.put_workflow("order-created", order_workflow()).await;
    let deployment = server.deploy("order-created", "production").await;
    let url = server.api(&format!(
        "/deployments/{}/triggers",
        deployment["id"].as_str().unwrap()
    ));
    let create = |config: serde_json::Value| {
        let request = server
            .client()
            .post(&url)
            .json(&json!({"trigger_type": "cron", "config": config}));
        async move { send(request).await }
    };
    let input = json!({"email": "ops@example.com"});
    let next = |reply: &triggerd_tests::Reply| {
        reply.body["next_fire_at"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };

    let kolkata =
        create(json!({"schedule": "0 9 * * *", "timezone": "Asia/Kolkata", "input": input})).await;
    server.expect(&kolkata, 201, "Kolkata");
    assert!(
        next(&kolkata).ends_with("T03:30:00.000000Z"),
        "09:00 IST is 03:30Z: {}",
        kolkata.text
    );
    let utc = create(json!({"schedule": "0 9 * * *", "input": input})).await;
    assert!(next(&utc).ends_with("T09:00:00.000000Z"), "{}", utc.text);
    assert_eq!(utc.body["config"]["timezone"], json!("UTC"));
    let new_york =
        create(json!({"schedule": "0 9 * * *", "timezone": "America/New_York", "input": input}))
            .await;
    let ny = next(&new_york);
    assert!(
        ny.ends_with("T13:00:00.000000Z") || ny.ends_with("T14:00:00.000000Z"),
        "EDT or EST: {ny}"
    );
    let once = create(json!({"at": "2030-01-01T09:00:00+01:00", "input": input})).await;
    assert_eq!(next(&once), "2030-01-01T08:00:00.000000Z");
    assert!(
        once.body.get("token").is_none() && once.body.get("url").is_none(),
        "{}",
        once.text
    );

    let bad = create(json!({"schedule": "0 0 9 * * *", "timezone": "Mars/Olympus", "input": {"week": "someday"}})).await;
    bad.assert_error(422, "invalid_config");
    let paths: Vec<&str> = bad
        .details()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "config.schedule",
            "config.timezone",
            "config.input.email",
            "config.input.week"
        ]
    );
}

async fn a_config_file_sets_what_the_environment_does_not(backend: Backend) {
    let file = std::env::temp_dir().join(format!(
        "triggerd-config-{}-{:?}.toml",
        std::process::id(),
        backend
    ));
    // The harness sets TRIGGERD_LISTEN, which wins over the file's `listen`.
    std::fs::write(
        &file,
        "public_url = \"https://hooks.example.test\"\nlisten = \"127.0.0.1:1\"\n",
    )
    .unwrap();
    let server =
        TestServer::start_with(backend, &[("TRIGGERD_CONFIG", file.to_str().unwrap())]).await;
    let hook = server.setup_webhook(order_workflow(), json!({})).await;
    let _ = std::fs::remove_file(&file);
    assert!(
        hook.trigger["url"]
            .as_str()
            .unwrap()
            .starts_with("https://hooks.example.test/api/webhooks/wht_"),
        "{}",
        hook.trigger
    );
    assert!(
        !server.base_url().ends_with(":1"),
        "the environment's listen address won"
    );
}

async fn finished_runs_are_deleted_after_the_run_retention(backend: Backend) {
    // 0.00002 days = 1.728 s; the sweep runs every second at that size.
    let server = TestServer::start_with(
        backend,
        &[
            ("TRIGGERD_RUN_RETENTION_DAYS", "0.00002"),
            ("RUST_LOG", "info"),
        ],
    )
    .await;
    server
        .put_workflow("short-lived", json!({"name": "short-lived"}))
        .await;
    let deployment = server.deploy("short-lived", "production").await;
    let reply = send(
        server
            .client()
            .post(server.api("/runs"))
            .json(&json!({"deployment_id": deployment["id"], "input": {}})),
    )
    .await;
    server.expect(&reply, 201, "POST /runs");
    let run_id = str_field(&reply.body, "run_id");
    server
        .wait_for_run_status(&run_id, "completed", Duration::from_secs(10))
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reply = send(server.client().get(server.api(&format!("/runs/{run_id}")))).await;
        if reply.status == 404 {
            break;
        }
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert!(
            Instant::now() < deadline,
            "the finished run was not deleted within 30 s: {}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        server.logs().contains("deleted finished runs"),
        "{}",
        server.logs()
    );
}

/// Secrets of triggers declared in a definition are write-only like any other (SPEC 3): no
/// response of the workflow, version, deployment or trigger routes carries them.
async fn declared_trigger_secrets_never_come_back(backend: Backend) {
    const SECRET: &str = "declared-secret-9f3c2a77e1";
    const KEY: &str = "declared-api-key-4b8d0c6e55";
    let server = TestServer::start(backend).await;
    let definition = json!({
        "name": "guarded",
        "triggers": [{"name": "crm", "trigger_type": "webhook",
                      "config": {"secret": SECRET, "api_keys": [KEY]}}]
    });
    let mut bodies = Vec::new();
    let put = send(
        server
            .client()
            .put(server.api("/workflows/guarded"))
            .json(&definition),
    )
    .await;
    server.expect(&put, 200, "put");
    bodies.push(put.body.to_string());
    let config = &put.body["definition"]["triggers"][0]["config"];
    assert_eq!(config["secret_configured"], json!(true), "{config}");
    assert_eq!(config["api_keys_configured"], json!(1), "{config}");
    let deployment = server.deploy("guarded", "production").await;
    bodies.push(deployment.to_string());
    let dep_id = str_field(&deployment, "id");
    for path in [
        "/workflows/guarded".to_owned(),
        "/workflows/guarded/versions".to_owned(),
        "/workflows/guarded/versions/1".to_owned(),
        "/workflows".to_owned(),
        format!("/deployments/{dep_id}"),
        format!("/deployments/{dep_id}/triggers"),
    ] {
        let reply = send(server.client().get(server.api(&path))).await;
        server.expect(&reply, 200, &path);
        bodies.push(reply.body.to_string());
    }
    for body in &bodies {
        assert!(
            !body.contains(SECRET) && !body.contains(KEY),
            "a secret leaked: {body}"
        );
    }
    // The secret is still in force: an unsigned request to the declared trigger is refused.
    let triggers = send(
        server
            .client()
            .get(server.api(&format!("/deployments/{dep_id}/triggers"))),
    )
    .await;
    let url = str_field(&triggers.body["data"][0], "url");
    send(server.plain().post(&url).json(&json!({})))
        .await
        .assert_error(401, "bad_signature");
}

/// Twenty clients PUT different definitions of one workflow at once: each is told the version
/// its own definition was stored as (issue 13 item 3).
async fn concurrent_puts_each_get_their_own_version(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut puts = Vec::new();
    for i in 0..20 {
        let request = server
            .client()
            .put(server.api("/workflows/raced"))
            .json(&json!({"description": format!("client {i}")}));
        puts.push(tokio::spawn(async move { (i, send(request).await) }));
    }
    let mut versions = std::collections::HashSet::new();
    for put in puts {
        let (i, reply) = put.await.unwrap();
        server.expect(&reply, 200, "put");
        let mine = format!("client {i}");
        assert_eq!(
            reply.body["definition"]["description"],
            json!(mine),
            "{}",
            reply.body
        );
        let version = reply.body["version"].as_i64().unwrap();
        assert!(versions.insert(version), "version {version} told twice");
        let stored = send(
            server
                .client()
                .get(server.api(&format!("/workflows/raced/versions/{version}"))),
        )
        .await;
        assert_eq!(stored.body["definition"]["description"], json!(mine));
    }
    assert_eq!(versions.len(), 20, "every PUT stored its own version");
}

/// A custom response can only carry a final status (issue 13 item 5): 1xx and a content type
/// that is not a media type are refused at creation; 204 is answered without a body.
async fn custom_responses_carry_only_final_statuses(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = server
        .setup_webhook(json!({"name": "answers"}), json!({}))
        .await;
    let create = |response: serde_json::Value| {
        server
            .client()
            .post(server.api(&format!("/deployments/{}/triggers", hook.deployment_id)))
            .json(&json!({"trigger_type": "webhook", "config": {"response": response}}))
    };
    for (response, path) in [
        (
            json!({"mode": "custom", "status": 100}),
            "config.response.status",
        ),
        (
            json!({"mode": "custom", "status": 101}),
            "config.response.status",
        ),
        (
            json!({"mode": "custom", "content_type": "text/plain\r\nSet-Cookie: a=b"}),
            "config.response.content_type",
        ),
    ] {
        let reply = send(create(response)).await;
        reply.assert_error(422, "invalid_config");
        assert_eq!(reply.details()[0]["path"], json!(path), "{}", reply.body);
    }
    let created = send(create(
        json!({"mode": "custom", "status": 204, "body": "ignored"}),
    ))
    .await;
    server.expect(&created, 201, "create 204 trigger");
    let url = str_field(&created.body, "url");
    let answer = server
        .plain()
        .post(&url)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 204);
    assert!(answer.headers().get("x-request-id").is_some());
    assert!(answer.bytes().await.unwrap().is_empty());
}

/// Credentials in the query string are stored redacted, like credential headers (issue 13 item
/// 6); other parameters are kept and mapped as before.
async fn credential_query_parameters_are_redacted(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = server
        .setup_webhook(
            json!({"name": "q", "inputs": {"currency": {"type": "string"}}}),
            json!({"input_mapping": {"currency": "$query.currency"}}),
        )
        .await;
    let url = format!("{}?token=tok-8d1f&api_key=key-2c9e&currency=USD", hook.url);
    let accepted = send(server.plain().post(&url).json(&json!({}))).await;
    server.expect(&accepted, 201, "webhook");
    let run = server.get_run(&str_field(&accepted.body, "run_id")).await;
    let query = &run["trigger_input"]["query"];
    assert_eq!(query["token"], json!("[redacted]"), "{run:#}");
    assert_eq!(query["api_key"], json!("[redacted]"), "{run:#}");
    assert_eq!(run["input"]["currency"], json!("USD"), "{run:#}");
    assert!(!run.to_string().contains("tok-8d1f") && !run.to_string().contains("key-2c9e"));
}

triggerd_tests::e2e_tests!(
    credential_query_parameters_are_redacted,
    custom_responses_carry_only_final_statuses,
    concurrent_puts_each_get_their_own_version,
    declared_trigger_secrets_never_come_back,
    finished_runs_are_deleted_after_the_run_retention,
    trigger_test_maps_and_validates_without_starting_anything,
    cancel_stops_an_unfinished_run_and_refuses_a_finished_one,
    declared_triggers_follow_the_definition_per_deployment,
    context_store_is_patched_read_and_seen_by_runs,
    workflow_versions_are_listed_and_read,
    cron_triggers_show_next_fire_at_in_their_zone,
    a_config_file_sets_what_the_environment_does_not,
);
