//! Webhook triggers through the management API: the trigger object, write-only secrets,
//! configuration changes, rotation, disabling and removal.

use serde_json::{Value, json};
use triggerd_domain::ids::{IdKind, is_plausible_webhook_token, is_valid_id};
use triggerd_tests::{Backend, Reply, TestServer, Webhook, order_workflow, send, sign, str_field};

const BODY: &str = r#"{"email": "a@example.com"}"#;

async fn post_body(server: &TestServer, url: &str) -> Reply {
    send(
        server
            .plain()
            .post(url)
            .header("content-type", "application/json")
            .body(BODY),
    )
    .await
}

async fn patch_trigger(server: &TestServer, id: &str, patch: Value) -> Value {
    let reply = send(
        server
            .client()
            .patch(server.api(&format!("/triggers/{id}")))
            .json(&patch),
    )
    .await;
    server.expect(&reply, 200, "PATCH trigger");
    reply.body
}

async fn rotate(server: &TestServer, id: &str, body: Value) -> Value {
    let reply = send(
        server
            .client()
            .post(server.api(&format!("/triggers/{id}/rotate")))
            .json(&body),
    )
    .await;
    server.expect(&reply, 200, "rotate trigger");
    reply.body
}

async fn setup(server: &TestServer) -> Webhook {
    server.setup_webhook(order_workflow(), json!({})).await
}

async fn webhook_trigger_object_shows_token_url_defaults_and_hides_secrets(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.put_workflow("order-created", order_workflow()).await;
    let deployment = server.deploy("order-created", "production").await;
    let deployment_id = str_field(&deployment, "id");
    let reply = send(
        server
            .client()
            .post(server.api(&format!("/deployments/{deployment_id}/triggers")))
            .json(&json!({
                "trigger_type": "webhook",
                "name": "crm",
                "config": {
                    "input_mapping": {"email": "customer_email"},
                    "secret": "write-only-secret",
                    "api_keys": ["key-one-0123456789abcdef", "key-two-0123456789abcdef"]
                }
            })),
    )
    .await;
    server.expect(&reply, 201, "create trigger");
    let trigger = &reply.body;
    let id = str_field(trigger, "id");
    let token = str_field(trigger, "token");
    assert!(is_valid_id(IdKind::Trigger, &id), "{trigger:#}");
    assert!(is_plausible_webhook_token(&token), "{trigger:#}");
    assert_eq!(trigger["url"], server.webhook_url(&token).as_str());
    assert_eq!(trigger["deployment_id"], deployment_id.as_str());
    assert_eq!(trigger["name"], "crm");
    assert_eq!(trigger["trigger_type"], "webhook");
    assert_eq!(trigger["enabled"], true);
    assert_eq!(trigger["fire_count"], 0);
    assert!(trigger["last_fired_at"].is_null(), "{trigger:#}");

    let config = &trigger["config"];
    assert_eq!(config["input_mapping"], json!({"email": "customer_email"}));
    assert_eq!(config["secret_configured"], true);
    assert_eq!(config["api_keys_configured"], 2);
    assert_eq!(config["signature"]["scheme"], "hmac-sha256");
    assert_eq!(config["rate_limit_per_minute"], 60);
    assert_eq!(config["max_body_bytes"], 262_144);
    assert_eq!(config["methods"], json!(["POST"]));
    assert_eq!(config["response"]["mode"], "async");
    assert!(
        config.get("secret").is_none() && config.get("api_keys").is_none(),
        "secrets are write-only: {config:#}"
    );

    let reply = send(server.client().get(server.api(&format!("/triggers/{id}")))).await;
    server.expect(&reply, 200, "GET trigger");
    assert_eq!(reply.body["id"], id.as_str());
    assert_eq!(reply.body["config"], *config);
    assert!(!reply.text.contains("write-only-secret"), "{}", reply.text);
    assert!(!reply.text.contains("key-one-"), "{}", reply.text);

    let reply = send(
        server
            .client()
            .get(server.api(&format!("/deployments/{deployment_id}/triggers"))),
    )
    .await;
    server.expect(&reply, 200, "list triggers");
    let listed: Vec<&str> = reply.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["id"].as_str())
        .collect();
    assert_eq!(listed, [id.as_str()]);
    assert!(!reply.text.contains("write-only-secret"), "{}", reply.text);
}

async fn invalid_trigger_config_gets_422_invalid_config(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.put_workflow("order-created", order_workflow()).await;
    let deployment = server.deploy("order-created", "production").await;
    let url = server.api(&format!(
        "/deployments/{}/triggers",
        deployment["id"].as_str().unwrap()
    ));
    let reply = send(server.client().post(&url).json(&json!({
        "trigger_type": "webhook",
        "config": {"methods": ["TRACE"], "input_mapping": {"nope": "a"}}
    })))
    .await;
    reply.assert_error(422, "invalid_config");
    let paths: Vec<&str> = reply
        .details()
        .iter()
        .map(|d| {
            assert!(d["message"].as_str().is_some_and(|m| !m.is_empty()), "{d}");
            d["path"].as_str().expect("detail has a path")
        })
        .collect();
    assert!(paths.iter().any(|p| p.contains("methods")), "{paths:?}");
    assert!(paths.iter().any(|p| p.contains("nope")), "{paths:?}");

    // A body of the wrong shape is not a config problem.
    let reply = send(
        server
            .client()
            .post(&url)
            .header("content-type", "application/json")
            .body("{\"trigger_type\": "),
    )
    .await;
    reply.assert_error(400, "malformed_json");
}

async fn patching_the_config_merges_keys_and_takes_effect_at_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = server
        .setup_webhook(
            order_workflow(),
            json!({"input_mapping": {"email": "email"}, "rate_limit_per_minute": 30}),
        )
        .await;

    let trigger = patch_trigger(
        &server,
        &hook.id,
        json!({"config": {"secret": "now-signed"}}),
    )
    .await;
    assert_eq!(trigger["config"]["secret_configured"], true);
    assert_eq!(
        trigger["config"]["rate_limit_per_minute"], 30,
        "{trigger:#}"
    );
    assert_eq!(
        trigger["config"]["input_mapping"],
        json!({"email": "email"})
    );
    post_body(&server, &hook.url)
        .await
        .assert_error(401, "bad_signature");
    let reply = send(
        server
            .plain()
            .post(&hook.url)
            .header("content-type", "application/json")
            .header("x-webhook-signature", sign("now-signed", BODY.as_bytes()))
            .body(BODY),
    )
    .await;
    server.expect(&reply, 201, "signed after PATCH");

    let trigger = patch_trigger(&server, &hook.id, json!({"config": {"secret": null}})).await;
    assert_eq!(trigger["config"]["secret_configured"], false, "{trigger:#}");
    assert_eq!(
        trigger["config"]["rate_limit_per_minute"], 30,
        "{trigger:#}"
    );
    let reply = post_body(&server, &hook.url).await;
    server.expect(&reply, 201, "unsigned after the secret is removed");
    assert_eq!(server.runs_of_trigger(&hook.id).await.len(), 2);
}

async fn rotated_token_is_rejected_immediately(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = setup(&server).await;
    let reply = post_body(&server, &hook.url).await;
    server.expect(&reply, 201, "before rotation");

    let rotated = rotate(&server, &hook.id, json!({})).await;
    let new_token = str_field(&rotated, "token");
    let new_url = str_field(&rotated, "url");
    assert_ne!(new_token, hook.token);
    assert!(is_plausible_webhook_token(&new_token), "{rotated:#}");
    assert_eq!(new_url, server.webhook_url(&new_token));
    assert_eq!(rotated["id"], hook.id.as_str());

    post_body(&server, &hook.url)
        .await
        .assert_error(404, "not_found");
    let reply = post_body(&server, &new_url).await;
    server.expect(&reply, 201, "new URL");
    assert_eq!(server.runs_of_trigger(&hook.id).await.len(), 2);
}

async fn rotation_with_grace_keeps_the_old_url_working(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = setup(&server).await;
    let rotated = rotate(&server, &hook.id, json!({"grace_seconds": 600})).await;
    let new_url = str_field(&rotated, "url");
    assert_ne!(new_url, hook.url);

    let reply = post_body(&server, &hook.url).await;
    server.expect(&reply, 201, "old URL during the grace period");
    let reply = post_body(&server, &new_url).await;
    server.expect(&reply, 201, "new URL");
    assert_eq!(server.runs_of_trigger(&hook.id).await.len(), 2);

    // Rotating again without grace stops the current URL at once.
    let again = rotate(&server, &hook.id, json!({})).await;
    post_body(&server, &new_url)
        .await
        .assert_error(404, "not_found");
    let reply = post_body(&server, &str_field(&again, "url")).await;
    server.expect(&reply, 201, "newest URL");
}

async fn deleted_trigger_url_returns_404(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = setup(&server).await;
    let reply = send(
        server
            .client()
            .delete(server.api(&format!("/triggers/{}", hook.id))),
    )
    .await;
    server.expect(&reply, 204, "DELETE trigger");
    reply.request_id();
    post_body(&server, &hook.url)
        .await
        .assert_error(404, "not_found");
    send(
        server
            .client()
            .get(server.api(&format!("/triggers/{}", hook.id))),
    )
    .await
    .assert_error(404, "not_found");
}

async fn disabled_trigger_url_returns_404_until_enabled(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = setup(&server).await;
    let trigger = patch_trigger(&server, &hook.id, json!({"enabled": false})).await;
    assert_eq!(trigger["enabled"], false);
    post_body(&server, &hook.url)
        .await
        .assert_error(404, "not_found");
    server.assert_no_runs(&hook.id).await;

    let trigger = patch_trigger(&server, &hook.id, json!({"enabled": true})).await;
    assert_eq!(trigger["enabled"], true);
    let reply = post_body(&server, &hook.url).await;
    server.expect(&reply, 201, "enabled again");
}

async fn deleting_the_deployment_stops_its_webhooks(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = setup(&server).await;
    let reply = send(
        server
            .client()
            .delete(server.api(&format!("/deployments/{}", hook.deployment_id))),
    )
    .await;
    server.expect(&reply, 204, "DELETE deployment");
    post_body(&server, &hook.url)
        .await
        .assert_error(404, "not_found");
}

async fn deleting_a_deployed_workflow_gets_409_conflict(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = setup(&server).await;
    send(
        server
            .client()
            .delete(server.api(&format!("/workflows/{}", hook.workflow))),
    )
    .await
    .assert_error(409, "conflict");
}

triggerd_tests::e2e_tests!(
    webhook_trigger_object_shows_token_url_defaults_and_hides_secrets,
    invalid_trigger_config_gets_422_invalid_config,
    patching_the_config_merges_keys_and_takes_effect_at_once,
    rotated_token_is_rejected_immediately,
    rotation_with_grace_keeps_the_old_url_working,
    deleted_trigger_url_returns_404,
    disabled_trigger_url_returns_404_until_enabled,
    deleting_the_deployment_stops_its_webhooks,
    deleting_a_deployed_workflow_gets_409_conflict,
);
