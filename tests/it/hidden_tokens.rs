//! `TRIGGERD_HIDE_UNKNOWN_TOKENS=true`: a token that does not (or no longer) work answers like
//! an accepted request, without starting a run.

use serde_json::json;
use triggerd_domain::ids::new_webhook_token;
use triggerd_tests::{Backend, Reply, TestServer, order_workflow, send, str_field};

const BODY: &str = r#"{"email": "a@example.com"}"#;

fn assert_hidden(reply: &Reply) {
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body, json!({"received": true}));
    reply.request_id();
}

async fn hidden_unknown_tokens_answer_200_received_and_start_nothing(backend: Backend) {
    let server = TestServer::start_with(backend, &[("TRIGGERD_HIDE_UNKNOWN_TOKENS", "true")]).await;
    let post = |url: String| {
        server
            .plain()
            .post(url)
            .header("content-type", "application/json")
            .body(BODY)
    };

    let unknown = new_webhook_token().unwrap();
    assert_hidden(&send(post(server.webhook_url(&unknown))).await);
    assert_hidden(&send(post(server.webhook_url("wht_nope"))).await);

    // Rotated away.
    let rotated = server.setup_webhook(order_workflow(), json!({})).await;
    let reply = send(
        server
            .client()
            .post(server.api(&format!("/triggers/{}/rotate", rotated.id)))
            .json(&json!({})),
    )
    .await;
    server.expect(&reply, 200, "rotate");
    let new_url = str_field(&reply.body, "url");
    assert_hidden(&send(post(rotated.url.clone())).await);

    // Disabled.
    let disabled = server
        .create_webhook_trigger(&rotated.deployment_id, json!({}))
        .await;
    let reply = send(
        server
            .client()
            .patch(server.api(&format!("/triggers/{}", str_field(&disabled, "id"))))
            .json(&json!({"enabled": false})),
    )
    .await;
    server.expect(&reply, 200, "disable");
    assert_hidden(&send(post(str_field(&disabled, "url"))).await);

    // Removed.
    let removed = server
        .create_webhook_trigger(&rotated.deployment_id, json!({}))
        .await;
    let reply = send(
        server
            .client()
            .delete(server.api(&format!("/triggers/{}", str_field(&removed, "id")))),
    )
    .await;
    server.expect(&reply, 204, "delete");
    assert_hidden(&send(post(str_field(&removed, "url"))).await);

    server.assert_no_runs(&rotated.id).await;
    server.assert_no_runs(&str_field(&disabled, "id")).await;
    let all = server
        .list_runs(&format!("deployment_id={}", rotated.deployment_id))
        .await;
    assert!(all.is_empty(), "{all:#?}");

    // A working token still starts runs.
    let reply = send(post(new_url)).await;
    server.expect(&reply, 201, "current token");
    assert_eq!(server.runs_of_trigger(&rotated.id).await.len(), 1);
}

triggerd_tests::e2e_tests!(hidden_unknown_tokens_answer_200_received_and_start_nothing,);
