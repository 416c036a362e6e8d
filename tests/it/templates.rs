//! Templates (docs/templates.md): `{{ path | default: <value> }}` renders a fallback where a value
//! may be missing; `PUT /workflows/{name}` warns about reads no run is sure to have (an optional
//! header, without a default) and stores the definition all the same; any filter other than
//! `default` is refused with 422 naming `default`.

use serde_json::{Value, json};
use triggerd_tests::{Backend, TestServer, send, str_field};

/// A step-less workflow whose output reads the optional `X-Shop-Event` header, as `event`.
fn shop_events(event: &str) -> Value {
    json!({"name": "shop-events", "output": {"event": event, "method": "{{ trigger.method }}"}})
}

async fn put(server: &TestServer, definition: &Value) -> triggerd_tests::Reply {
    send(
        server
            .client()
            .put(server.api("/workflows/shop-events"))
            .json(definition),
    )
    .await
}

async fn optional_header_is_warned_about_and_default_completes_the_run(backend: Backend) {
    let server = TestServer::start(backend).await;

    // Without a default: stored (200), with a warning pointing at the template.
    let reply = put(&server, &shop_events("{{ trigger.headers.x-shop-event }}")).await;
    server.expect(&reply, 200, "PUT without a default");
    assert_eq!(reply.body["created"], true, "{}", reply.text);
    let warnings = reply.body["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{}", reply.text);
    assert_eq!(warnings[0]["path"], "output.event", "{}", reply.text);
    let message = warnings[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("`trigger.headers.x-shop-event` may be absent")
            && message.contains("| default: <value>"),
        "{message}"
    );

    // With `| default: "unknown"`: a new version, and no warning at all.
    let reply = put(
        &server,
        &shop_events("{{ trigger.headers.x-shop-event | default: \"unknown\" }}"),
    )
    .await;
    server.expect(&reply, 200, "PUT with a default");
    assert_eq!(reply.body["version"], 2, "{}", reply.text);
    assert!(reply.body.get("warnings").is_none(), "{}", reply.text);

    let deployment = server.deploy("shop-events", "production").await;
    let trigger = server
        .create_webhook_trigger(&str_field(&deployment, "id"), json!({}))
        .await;
    let url = str_field(&trigger, "url");

    // A webhook without the header: accepted, and its run completes with the default.
    let reply = send(server.plain().post(&url).json(&json!({"id": 1}))).await;
    server.expect(&reply, 201, "webhook without X-Shop-Event");
    let run = server
        .wait_for_run_status(
            &str_field(&reply.body, "run_id"),
            "completed",
            triggerd_tests::RUN_TIMEOUT,
        )
        .await;
    assert_eq!(
        run["final_output"],
        json!({"event": "unknown", "method": "POST"}),
        "{run:#}"
    );

    // With the header, its value.
    let reply = send(
        server
            .plain()
            .post(&url)
            .header("X-Shop-Event", "order.created")
            .json(&json!({"id": 2})),
    )
    .await;
    server.expect(&reply, 201, "webhook with X-Shop-Event");
    let run = server
        .wait_for_run_status(
            &str_field(&reply.body, "run_id"),
            "completed",
            triggerd_tests::RUN_TIMEOUT,
        )
        .await;
    assert_eq!(
        run["final_output"],
        json!({"event": "order.created", "method": "POST"}),
        "{run:#}"
    );
}

async fn a_filter_other_than_default_is_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let reply = put(
        &server,
        &shop_events("{{ trigger.headers.x-shop-event | upcase }}"),
    )
    .await;
    reply.assert_error(422, "invalid_definition");
    let details = reply.details();
    assert_eq!(details.len(), 1, "{}", reply.text);
    assert_eq!(details[0]["path"], "output.event", "{}", reply.text);
    let message = details[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("unknown filter `upcase`")
            && message.contains("the only filter is `default`"),
        "{message}"
    );
    // A bad default value names what a default may be.
    let reply = put(
        &server,
        &shop_events("{{ trigger.headers.x-shop-event | default: unknown }}"),
    )
    .await;
    reply.assert_error(422, "invalid_definition");
    let message = reply.details()[0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("one JSON literal"), "{message}");
    // Nothing was stored.
    let reply = send(server.client().get(server.api("/workflows/shop-events"))).await;
    reply.assert_error(404, "not_found");
}

async fn a_custom_response_renders_its_default(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = server
        .setup_webhook(
            json!({"name": "acked"}),
            json!({"response": {"mode": "custom", "status": 200, "body": {
                "received": true,
                "event": "{{ trigger.headers.x-shop-event | default: \"unknown\" }}"}}}),
        )
        .await;
    let reply = send(server.plain().post(&hook.url).json(&json!({}))).await;
    server.expect(&reply, 200, "custom response without the header");
    assert_eq!(
        reply.body,
        json!({"received": true, "event": "unknown"}),
        "{}",
        reply.text
    );
    let reply = send(
        server
            .plain()
            .post(&hook.url)
            .header("x-shop-event", "order.paid")
            .json(&json!({})),
    )
    .await;
    server.expect(&reply, 200, "custom response with the header");
    assert_eq!(reply.body["event"], "order.paid", "{}", reply.text);
}

triggerd_tests::e2e_tests!(
    optional_header_is_warned_about_and_default_completes_the_run,
    a_filter_other_than_default_is_refused,
    a_custom_response_renders_its_default,
);
