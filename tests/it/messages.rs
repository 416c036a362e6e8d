//! Error messages that tell the operator what is wrong: each names the thing and what to do.

use serde_json::json;
use triggerd_tests::{ADMIN_TOKEN, Backend, TestServer, order_workflow, send};

async fn authorization_without_bearer_says_what_is_wrong(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.api("/workflows");
    let with = |value: &str| {
        server
            .plain()
            .get(&url)
            .header("authorization", value.to_owned())
    };
    // The token alone, as in `-H "Authorization: dev-token"`.
    let bare = send(with(ADMIN_TOKEN)).await;
    bare.assert_error(401, "unauthorized");
    let message = bare.body["error"].as_str().unwrap_or_default().to_owned();
    assert!(
        message.contains("malformed Authorization header")
            && message.contains("no scheme")
            && message.contains("Bearer <token>")
            && !message.contains("missing"),
        "{message}"
    );
    let basic = send(with("Basic dXNlcjpwYXNz")).await;
    basic.assert_error(401, "unauthorized");
    assert!(
        basic.body["error"]
            .as_str()
            .is_some_and(|m| m.contains("\"Basic\"") && m.contains("Bearer")),
        "{}",
        basic.text
    );
    let missing = send(server.plain().get(&url)).await;
    missing.assert_error(401, "unauthorized");
    assert!(
        missing.text.contains("missing API token"),
        "{}",
        missing.text
    );
    let good = send(with(&format!("Bearer {ADMIN_TOKEN}"))).await;
    server.expect(&good, 200, "the right header");
}

async fn a_taken_deployment_name_names_the_existing_deployment(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.put_workflow("order-created", order_workflow()).await;
    let first = server.deploy("order-created", "production").await;
    let existing = first["id"].as_str().unwrap().to_owned();
    let again = send(
        server
            .client()
            .post(server.api("/workflows/order-created/deployments"))
            .json(&json!({"name": "production"})),
    )
    .await;
    again.assert_error(409, "conflict");
    let message = again.body["error"].as_str().unwrap_or_default();
    assert_eq!(
        message,
        format!("workflow order-created already has a deployment named production ({existing})")
    );
}

async fn a_cron_number_out_of_range_names_the_field_and_its_range(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.put_workflow("tick", json!({"name": "tick"})).await;
    let deployment = server.deploy("tick", "production").await;
    let id = deployment["id"].as_str().unwrap();
    let reply = send(
        server
            .client()
            .post(server.api(&format!("/deployments/{id}/triggers")))
            .json(&json!({"trigger_type": "cron", "config": {"schedule": "0 25 * * *"}})),
    )
    .await;
    assert_eq!(reply.status, 422, "{}", reply.text);
    assert!(
        reply.text.contains("the hour field allows 0 to 23, got 25"),
        "{}",
        reply.text
    );
    assert!(!reply.text.contains("Component error"), "{}", reply.text);
}

triggerd_tests::e2e_tests!(
    authorization_without_bearer_says_what_is_wrong,
    a_taken_deployment_name_names_the_existing_deployment,
    a_cron_number_out_of_range_names_the_field_and_its_range,
);
