//! The per-token rate limit (SPEC 4.3): a token bucket of `rate_limit_per_minute`.

use serde_json::json;
use triggerd_tests::{
    Backend, Reply, TestServer, order_workflow, raw_exchange, raw_head, send, sign,
};

const SECRET: &str = "rl-secret-4Hw8";
const BODY: &str = r#"{"email": "a@example.com"}"#;

fn assert_rate_limited(reply: &Reply, max_wait_seconds: u64) {
    reply.assert_error(429, "rate_limited");
    assert_eq!(reply.body["error"], "rate limit exceeded");
    let retry_after: u64 = reply
        .header("retry-after")
        .expect("a Retry-After header")
        .parse()
        .expect("Retry-After is a whole number of seconds");
    assert!(
        (1..=max_wait_seconds).contains(&retry_after),
        "Retry-After {retry_after} outside 1..={max_wait_seconds}"
    );
}

async fn requests_over_the_rate_get_429_with_retry_after(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = server
        .setup_webhook(order_workflow(), json!({"rate_limit_per_minute": 2}))
        .await;
    let post = || {
        server
            .plain()
            .post(&hook.url)
            .header("content-type", "application/json")
            .body(BODY)
    };
    for _ in 0..2 {
        let reply = send(post()).await;
        server.expect(&reply, 201, "within the rate");
    }
    // One token every 30 s: the wait is at most 30 s.
    for _ in 0..2 {
        assert_rate_limited(&send(post()).await, 30);
    }
    assert_eq!(server.runs_of_trigger(&hook.id).await.len(), 2);
}

async fn refused_signatures_take_tokens_but_refused_methods_and_sizes_do_not(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = server
        .setup_webhook(
            order_workflow(),
            json!({"rate_limit_per_minute": 2, "secret": SECRET, "max_body_bytes": 1024}),
        )
        .await;
    // Refused before the rate limit: no token taken.
    for _ in 0..3 {
        send(server.plain().get(&hook.url))
            .await
            .assert_error(405, "method_not_allowed");
        let head = raw_head(
            "POST",
            &format!("/api/webhooks/{}", hook.token),
            server.addr(),
            &[("Content-Length", "4096")],
        );
        raw_exchange(server.addr(), &head)
            .await
            .assert_error(413, "payload_too_large");
    }
    let signed = || {
        server
            .plain()
            .post(&hook.url)
            .header("content-type", "application/json")
            .header("x-webhook-signature", sign(SECRET, BODY.as_bytes()))
            .body(BODY)
    };
    let reply = send(signed()).await;
    server.expect(&reply, 201, "first signed request");

    // Refused after the rate limit: takes the last token.
    send(
        server
            .plain()
            .post(&hook.url)
            .header("content-type", "application/json")
            .body(BODY),
    )
    .await
    .assert_error(401, "bad_signature");

    assert_rate_limited(&send(signed()).await, 30);
    assert_eq!(server.runs_of_trigger(&hook.id).await.len(), 1);
}

async fn rate_limits_are_per_token(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = server
        .setup_webhook(order_workflow(), json!({"rate_limit_per_minute": 1}))
        .await;
    let other = server
        .create_webhook_trigger(&hook.deployment_id, json!({"rate_limit_per_minute": 1}))
        .await;
    let post = |url: String| {
        server
            .plain()
            .post(url)
            .header("content-type", "application/json")
            .body(BODY)
    };
    server.expect(&send(post(hook.url.clone())).await, 201, "first trigger");
    assert_rate_limited(&send(post(hook.url.clone())).await, 60);
    let other_url = other["url"].as_str().unwrap().to_owned();
    server.expect(&send(post(other_url)).await, 201, "second trigger");
}

async fn zero_means_no_rate_limit(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = server
        .setup_webhook(order_workflow(), json!({"rate_limit_per_minute": 0}))
        .await;
    for _ in 0..80 {
        let reply = send(
            server
                .plain()
                .post(&hook.url)
                .header("content-type", "application/json")
                .body(BODY),
        )
        .await;
        server.expect(&reply, 201, "unlimited trigger");
    }
}

triggerd_tests::e2e_tests!(
    requests_over_the_rate_get_429_with_retry_after,
    refused_signatures_take_tokens_but_refused_methods_and_sizes_do_not,
    rate_limits_are_per_token,
    zero_means_no_rate_limit,
);
