//! The webhook activity log (SPEC 4.6): one row per request to a known token, with its outcome
//! and the id sent as `X-Request-Id`.

use std::time::Duration;

use serde_json::{Value, json};
use triggerd_tests::{
    Backend, Reply, TestServer, order_workflow, raw_exchange, raw_head, send, sign,
};

const SECRET: &str = "activity-secret-9Kd3";

/// Rows of refused requests may be written just after the response.
const LOG_TIMEOUT: Duration = Duration::from_secs(10);

async fn activity_log_records_each_request_with_its_outcome_and_request_id(backend: Backend) {
    let server = TestServer::start(backend).await;
    // Four requests take a token (accepted, bad signature, malformed, invalid input); the fifth
    // that reaches the rate limit is refused.
    let hook = server
        .setup_webhook(
            order_workflow(),
            json!({"secret": SECRET, "rate_limit_per_minute": 4, "max_body_bytes": 1024}),
        )
        .await;
    let signed = |body: &str| {
        server
            .plain()
            .post(&hook.url)
            .header("content-type", "application/json")
            .header("x-webhook-signature", sign(SECRET, body.as_bytes()))
            .body(body.to_owned())
    };
    let valid = r#"{"email": "a@example.com"}"#;
    let path = format!("/api/webhooks/{}", hook.token);

    // (reply, method, status, outcome), oldest first.
    let mut sent: Vec<(Reply, &str, u16, &str)> = Vec::new();
    sent.push((send(signed(valid)).await, "POST", 201, "accepted"));
    sent.push((
        send(server.plain().get(&hook.url)).await,
        "GET",
        405,
        "method_not_allowed",
    ));
    let head = raw_head("POST", &path, server.addr(), &[("Content-Length", "2048")]);
    sent.push((
        raw_exchange(server.addr(), &head).await,
        "POST",
        413,
        "too_large",
    ));
    sent.push((
        send(
            server
                .plain()
                .post(&hook.url)
                .header("content-type", "application/json")
                .body(valid),
        )
        .await,
        "POST",
        401,
        "bad_signature",
    ));
    sent.push((
        send(signed(r#"{"email": "#)).await,
        "POST",
        400,
        "malformed",
    ));
    sent.push((send(signed("{}")).await, "POST", 422, "invalid_input"));
    sent.push((send(signed(valid)).await, "POST", 429, "rate_limited"));
    for (reply, _, status, outcome) in &sent {
        assert_eq!(reply.status, *status, "{outcome}: {}", reply.text);
    }

    let rows = server
        .wait_for_requests(&hook.id, sent.len(), LOG_TIMEOUT)
        .await;
    assert_eq!(rows.len(), sent.len(), "{rows:#?}");
    // Newest first.
    for (row, (reply, method, status, outcome)) in rows.iter().zip(sent.iter().rev()) {
        assert_eq!(row["id"], reply.request_id().as_str(), "{outcome}: {row:#}");
        assert_eq!(row["outcome"], *outcome, "{row:#}");
        assert_eq!(row["status_code"], *status, "{row:#}");
        assert_eq!(row["method"], *method, "{row:#}");
        assert!(row["received_at"].is_string(), "{row:#}");
        assert!(row["duration_ms"].is_number(), "{row:#}");
        assert!(
            row["remote_addr"]
                .as_str()
                .is_some_and(|a| a.contains("127.0.0.1")),
            "{row:#}"
        );
        if *outcome == "accepted" {
            assert_eq!(row["run_id"], reply.body["run_id"], "{row:#}");
            assert_eq!(row["body_bytes"], valid.len(), "{row:#}");
            assert_eq!(reply.body["request_id"], row["id"]);
        } else {
            assert!(row["run_id"].is_null(), "{row:#}");
        }
    }

    // API key refusals are `unauthorized`.
    let keyed = server
        .create_webhook_trigger(
            &hook.deployment_id,
            json!({"api_keys": ["key-one-0123456789abcdef"]}),
        )
        .await;
    let keyed_id = keyed["id"].as_str().unwrap();
    let reply = send(
        server
            .plain()
            .post(keyed["url"].as_str().unwrap())
            .json(&json!({"email": "a@example.com"})),
    )
    .await;
    reply.assert_error(401, "unauthorized");
    let rows = server.wait_for_requests(keyed_id, 1, LOG_TIMEOUT).await;
    assert_eq!(rows[0]["id"], reply.request_id().as_str());
    assert_eq!(rows[0]["outcome"], "unauthorized");
    assert_eq!(rows[0]["status_code"], 401);
}

async fn requests_to_a_disabled_trigger_are_logged_but_not_to_a_rotated_away_token(
    backend: Backend,
) {
    let server = TestServer::start(backend).await;
    let hook = server.setup_webhook(order_workflow(), json!({})).await;
    let body = json!({"email": "a@example.com"});
    let reply = send(
        server
            .client()
            .patch(server.api(&format!("/triggers/{}", hook.id)))
            .json(&json!({"enabled": false})),
    )
    .await;
    server.expect(&reply, 200, "disable");
    let refused = send(server.plain().post(&hook.url).json(&body)).await;
    refused.assert_error(404, "not_found");
    let rows = server.wait_for_requests(&hook.id, 1, LOG_TIMEOUT).await;
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0]["id"], refused.request_id().as_str());
    assert_eq!(rows[0]["status_code"], 404);

    let reply = send(
        server
            .client()
            .patch(server.api(&format!("/triggers/{}", hook.id)))
            .json(&json!({"enabled": true})),
    )
    .await;
    server.expect(&reply, 200, "enable");
    let reply = send(
        server
            .client()
            .post(server.api(&format!("/triggers/{}/rotate", hook.id)))
            .json(&json!({})),
    )
    .await;
    server.expect(&reply, 200, "rotate");
    let new_url = reply.body["url"].as_str().unwrap().to_owned();
    send(server.plain().post(&hook.url).json(&body))
        .await
        .assert_error(404, "not_found");
    // The log then holds the disabled-time request and this accepted one, and nothing for the
    // rotated-away token sent in between.
    let accepted = send(server.plain().post(&new_url).json(&body)).await;
    server.expect(&accepted, 201, "new URL");
    let rows = server.wait_for_requests(&hook.id, 2, LOG_TIMEOUT).await;
    let ids: Vec<&Value> = rows.iter().map(|r| &r["id"]).collect();
    assert_eq!(
        ids,
        [
            &Value::from(accepted.request_id()),
            &Value::from(refused.request_id())
        ],
        "the rotated-away request is not logged: {rows:#?}"
    );
}

triggerd_tests::e2e_tests!(
    activity_log_records_each_request_with_its_outcome_and_request_id,
    requests_to_a_disabled_trigger_are_logged_but_not_to_a_rotated_away_token,
);
