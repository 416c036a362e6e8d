//! The management API: authentication, error shapes, workflows, deployments and API runs.

use serde_json::json;
use triggerd_domain::ids::{IdKind, is_valid_id, new_id};
use triggerd_tests::{
    ADMIN_TOKEN, Backend, RUN_TIMEOUT, TestServer, encode_query, order_workflow, send, str_field,
};

async fn healthz_answers_ok_without_auth(backend: Backend) {
    let server = TestServer::start(backend).await;
    let reply = send(server.plain().get(format!("{}/healthz", server.base_url()))).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body, json!({"status": "ok"}));
    reply.request_id();
}

async fn management_api_requires_the_admin_token(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.api("/workflows");

    send(server.plain().get(&url))
        .await
        .assert_error(401, "unauthorized");
    send(server.plain().get(&url).bearer_auth("not-the-token"))
        .await
        .assert_error(401, "unauthorized");
    send(
        server
            .plain()
            .get(&url)
            .header("authorization", format!("Basic {ADMIN_TOKEN}")),
    )
    .await
    .assert_error(401, "unauthorized");
    // Only exactly `Bearer <token>`: not two spaces, not the bare token, each with a message
    // that says what to send.
    for value in [format!("Bearer  {ADMIN_TOKEN}"), ADMIN_TOKEN.to_owned()] {
        let reply = send(server.plain().get(&url).header("authorization", value)).await;
        reply.assert_error(401, "unauthorized");
        assert!(
            reply.text.contains("malformed Authorization header"),
            "{}",
            reply.text
        );
    }
    // Writes are refused too, and nothing is stored.
    send(
        server
            .plain()
            .put(server.api("/workflows/order-created"))
            .json(&order_workflow()),
    )
    .await
    .assert_error(401, "unauthorized");

    let reply = send(server.client().get(&url)).await;
    server.expect(&reply, 200, "list workflows with the admin token");
    assert_eq!(reply.body["data"], json!([]));
    assert!(reply.body["next_cursor"].is_null());
}

async fn every_response_carries_a_request_id(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = server
        .setup_webhook(order_workflow(), json!({"rate_limit_per_minute": 0}))
        .await;
    let unknown_token = triggerd_domain::ids::new_webhook_token().unwrap();
    let requests = [
        server.plain().get(format!("{}/healthz", server.base_url())),
        server
            .plain()
            .get(format!("{}/no/such/page", server.base_url())),
        server.plain().get(server.api("/workflows")),
        server.client().get(server.api("/workflows")),
        server
            .client()
            .get(server.api("/runs/run_01ARZ3NDEKTSV4RRFFQ69G5FAV")),
        server
            .client()
            .put(server.api("/workflows/order-created"))
            .header("content-type", "application/json")
            .body("{"),
        server
            .plain()
            .post(&hook.url)
            .json(&json!({"email": "a@example.com"})),
        server.plain().post(&hook.url).json(&json!({})),
        server.plain().get(&hook.url),
        server
            .plain()
            .post(server.webhook_url(&unknown_token))
            .json(&json!({})),
    ];
    let mut ids = Vec::new();
    for request in requests {
        ids.push(send(request).await.request_id());
    }
    let mut distinct = ids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), ids.len(), "request ids repeat: {ids:?}");
    for id in &ids {
        assert!(is_valid_id(IdKind::Request, id), "{id} is not a req_ id");
    }
}

async fn put_workflow_rejects_malformed_json_with_400(backend: Backend) {
    let server = TestServer::start(backend).await;
    let reply = send(
        server
            .client()
            .put(server.api("/workflows/order-created"))
            .header("content-type", "application/json")
            .body(r#"{"name": "order-created", "inputs": "#),
    )
    .await;
    reply.assert_error(400, "malformed_json");
    let reply = send(server.client().get(server.api("/workflows/order-created"))).await;
    reply.assert_error(404, "not_found");
}

async fn put_workflow_rejects_a_non_json_content_type_with_415(backend: Backend) {
    let server = TestServer::start(backend).await;
    let reply = send(
        server
            .client()
            .put(server.api("/workflows/order-created"))
            .header("content-type", "text/plain")
            .body(order_workflow().to_string()),
    )
    .await;
    reply.assert_error(415, "unsupported_media_type");
}

async fn invalid_definition_gets_422_with_each_problem(backend: Backend) {
    let server = TestServer::start(backend).await;
    let reply = send(
        server
            .client()
            .put(server.api("/workflows/broken"))
            .json(&json!({
                "name": "broken",
                "inputs": {"email": {"type": "strng"}},
                "max_duration_seconds": 99999
            })),
    )
    .await;
    reply.assert_error(422, "invalid_definition");
    let details = reply.details();
    assert!(details.len() >= 2, "one detail per problem: {details:#?}");
    for detail in details {
        assert!(
            detail["path"].is_string() && detail["message"].as_str().is_some_and(|m| !m.is_empty()),
            "a detail is {{path, message}}: {detail}"
        );
    }
    let paths: Vec<&str> = details.iter().filter_map(|d| d["path"].as_str()).collect();
    assert!(
        paths.iter().any(|p| p.contains("email")),
        "no problem names inputs.email: {paths:?}"
    );
    assert!(
        paths.iter().any(|p| p.contains("max_duration_seconds")),
        "no problem names max_duration_seconds: {paths:?}"
    );
    send(server.client().get(server.api("/workflows/broken")))
        .await
        .assert_error(404, "not_found");
}

async fn identical_put_keeps_the_version_and_a_change_makes_a_new_one(backend: Backend) {
    let server = TestServer::start(backend).await;
    let first = server.put_workflow("order-created", order_workflow()).await;
    assert_eq!(first["name"], "order-created");
    let version = first["version"].as_i64().expect("integer version");

    let again = server.put_workflow("order-created", order_workflow()).await;
    assert_eq!(again["version"].as_i64(), Some(version), "{again}");

    let mut changed = order_workflow();
    changed["description"] = json!("now with a description");
    let next = server.put_workflow("order-created", changed).await;
    assert_eq!(next["version"].as_i64(), Some(version + 1), "{next}");

    let reply = send(server.client().get(server.api("/workflows/order-created"))).await;
    server.expect(&reply, 200, "GET workflow");
    assert_eq!(reply.body["version"].as_i64(), Some(version + 1));
}

async fn deployment_is_created_and_read_back(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.put_workflow("order-created", order_workflow()).await;
    let deployment = server.deploy("order-created", "production").await;
    let id = str_field(&deployment, "id");
    assert!(is_valid_id(IdKind::Deployment, &id), "{deployment}");
    assert_eq!(deployment["name"], "production");

    let reply = send(
        server
            .client()
            .get(server.api(&format!("/deployments/{id}"))),
    )
    .await;
    server.expect(&reply, 200, "GET deployment");
    assert_eq!(reply.body["id"], id.as_str());
    assert_eq!(reply.body["name"], "production");
}

async fn duplicate_deployment_name_gets_409_conflict(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.put_workflow("order-created", order_workflow()).await;
    server.deploy("order-created", "production").await;
    let reply = send(
        server
            .client()
            .post(server.api("/workflows/order-created/deployments"))
            .json(&json!({"name": "production"})),
    )
    .await;
    reply.assert_error(409, "conflict");
}

async fn unknown_ids_and_names_get_404_not_found(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client();
    let dep = new_id(IdKind::Deployment);
    let requests = [
        client.get(server.api(&format!("/deployments/{dep}"))),
        client.get(server.api(&format!("/runs/{}", new_id(IdKind::Run)))),
        client.get(server.api(&format!("/triggers/{}", new_id(IdKind::Trigger)))),
        client.get(server.api("/workflows/nope")),
        client
            .post(server.api("/workflows/nope/deployments"))
            .json(&json!({"name": "production"})),
        client
            .post(server.api(&format!("/deployments/{dep}/triggers")))
            .json(&json!({"trigger_type": "webhook", "config": {}})),
        client
            .post(server.api("/runs"))
            .json(&json!({"deployment_id": dep, "input": {}})),
    ];
    for request in requests {
        send(request).await.assert_error(404, "not_found");
    }
}

async fn api_run_with_invalid_input_gets_422_invalid_input(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.put_workflow("order-created", order_workflow()).await;
    let deployment = server.deploy("order-created", "production").await;
    let reply = send(server.client().post(server.api("/runs")).json(&json!({
        "deployment_id": deployment["id"],
        "input": {"value": "many", "week": "someday"}
    })))
    .await;
    reply.assert_error(422, "invalid_input");
    let mut inputs: Vec<&str> = reply
        .details()
        .iter()
        .map(|d| {
            assert!(d["message"].as_str().is_some_and(|m| !m.is_empty()), "{d}");
            d["input"].as_str().expect("detail names its input")
        })
        .collect();
    inputs.sort();
    assert_eq!(inputs, ["email", "value", "week"]);
    let runs = server
        .list_runs(&format!(
            "deployment_id={}",
            deployment["id"].as_str().unwrap()
        ))
        .await;
    assert!(runs.is_empty(), "{runs:#?}");
}

async fn api_run_completes_with_its_rendered_output(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.put_workflow("order-created", order_workflow()).await;
    let deployment = server.deploy("order-created", "production").await;
    let reply = send(server.client().post(server.api("/runs")).json(&json!({
        "deployment_id": deployment["id"],
        "input": {"email": "a@example.com", "value": 42, "undeclared": true}
    })))
    .await;
    server.expect(&reply, 201, "POST /runs");
    assert_eq!(reply.body["status"], "pending");
    let run_id = str_field(&reply.body, "run_id");
    assert!(is_valid_id(IdKind::Run, &run_id), "{}", reply.text);

    let run = server
        .wait_for_run_status(&run_id, "completed", RUN_TIMEOUT)
        .await;
    assert_eq!(run["id"], run_id.as_str());
    assert_eq!(run["deployment_id"], deployment["id"]);
    assert_eq!(run["workflow"], "order-created");
    assert_eq!(run["source"], "api");
    assert_eq!(
        run["input"],
        json!({"email": "a@example.com", "value": 42, "week": "current"})
    );
    assert_eq!(
        run["final_output"],
        json!({"customer": "a@example.com", "value": 42})
    );
    assert!(run["error"].is_null(), "{run:#}");
}

async fn run_without_output_ends_with_its_input(backend: Backend) {
    let server = TestServer::start(backend).await;
    server
        .put_workflow(
            "echo",
            json!({"name": "echo", "inputs": {"n": {"type": "integer", "required": true}}}),
        )
        .await;
    let deployment = server.deploy("echo", "production").await;
    let reply = send(
        server
            .client()
            .post(server.api("/runs"))
            .json(&json!({"deployment_id": deployment["id"], "input": {"n": 7}})),
    )
    .await;
    server.expect(&reply, 201, "POST /runs");
    let run = server
        .wait_for_run_status(
            reply.body["run_id"].as_str().unwrap(),
            "completed",
            RUN_TIMEOUT,
        )
        .await;
    assert_eq!(run["final_output"], json!({"n": 7}));
}

async fn run_list_filters_by_trigger_pages_newest_first_and_refuses_bad_cursors(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = server
        .setup_webhook(
            json!({"name": "echo", "inputs": {"n": {"type": "integer"}}}),
            json!({}),
        )
        .await;
    let mut created = Vec::new();
    for n in 0..3 {
        let reply = send(server.plain().post(&hook.url).json(&json!({"n": n}))).await;
        server.expect(&reply, 201, "webhook");
        created.push(str_field(&reply.body, "run_id"));
    }
    // A run of the same deployment that no trigger started.
    let reply = send(
        server
            .client()
            .post(server.api("/runs"))
            .json(&json!({"deployment_id": hook.deployment_id, "input": {"n": 9}})),
    )
    .await;
    server.expect(&reply, 201, "POST /runs");

    let page = |query: String| {
        let request = server.client().get(server.api(&format!("/runs?{query}")));
        async move { send(request).await }
    };
    let first = page(format!("trigger_id={}&limit=2", hook.id)).await;
    server.expect(&first, 200, "first page");
    let cursor = str_field(&first.body, "next_cursor");
    let second = page(format!(
        "trigger_id={}&limit=2&cursor={}",
        hook.id,
        encode_query(&cursor)
    ))
    .await;
    server.expect(&second, 200, "second page");
    assert!(second.body["next_cursor"].is_null(), "{}", second.text);

    let listed: Vec<String> = first.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second.body["data"].as_array().unwrap())
        .map(|run| str_field(run, "id"))
        .collect();
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();
    assert_eq!(listed, newest_first);

    let all = server
        .list_runs(&format!("deployment_id={}", hook.deployment_id))
        .await;
    assert_eq!(all.len(), 4);

    page("cursor=not-a-cursor".to_owned())
        .await
        .assert_error(400, "invalid_cursor");
}

triggerd_tests::e2e_tests!(
    healthz_answers_ok_without_auth,
    management_api_requires_the_admin_token,
    every_response_carries_a_request_id,
    put_workflow_rejects_malformed_json_with_400,
    put_workflow_rejects_a_non_json_content_type_with_415,
    invalid_definition_gets_422_with_each_problem,
    identical_put_keeps_the_version_and_a_change_makes_a_new_one,
    deployment_is_created_and_read_back,
    duplicate_deployment_name_gets_409_conflict,
    unknown_ids_and_names_get_404_not_found,
    api_run_with_invalid_input_gets_422_invalid_input,
    api_run_completes_with_its_rendered_output,
    run_without_output_ends_with_its_input,
    run_list_filters_by_trigger_pages_newest_first_and_refuses_bad_cursors,
);
