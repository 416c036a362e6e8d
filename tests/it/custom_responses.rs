//! Custom webhook responses (SPEC 4.5, issue 17): the ready examples of `docs/webhooks.md`
//! (Slack's `url_verification` challenge, an echo handshake) answered exactly, a template that
//! fails for a request (500 `response_template_failed`, the run stored, the activity row saying
//! so), and templates that can never work refused when the trigger is created.
//!
//! The trigger configurations are read from `docs/webhooks.md`: a line
//! `<!-- response-example: NAME -->` right before a fenced `json` block (indented or not) marks
//! the body of `POST /deployments/{id}/triggers` of example NAME, so the documented examples are
//! the tested ones.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use triggerd_domain::signature::sign_hmac_sha256_hex;
use triggerd_tests::{Backend, Reply, TestServer, send, str_field};

const WEBHOOKS_DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/webhooks.md");

/// The trigger body of the documented response example `name`.
fn documented_example(name: &str) -> Value {
    let markdown = std::fs::read_to_string(WEBHOOKS_DOC)
        .unwrap_or_else(|e| panic!("cannot read {WEBHOOKS_DOC}: {e}"));
    let marker = format!("<!-- response-example: {name} -->");
    let mut lines = markdown.lines().skip_while(|l| l.trim() != marker);
    assert!(lines.next().is_some(), "docs/webhooks.md has no `{marker}`");
    assert_eq!(
        lines.next().map(str::trim),
        Some("```json"),
        "`{marker}` must be followed by a ```json block"
    );
    let text: Vec<&str> = lines.take_while(|l| l.trim() != "```").collect();
    serde_json::from_str(&text.join("\n"))
        .unwrap_or_else(|e| panic!("the `{name}` example is not JSON: {e}"))
}

/// Creates the documented trigger `name` on a workflow without inputs; returns the trigger.
async fn documented_trigger(server: &TestServer, name: &str) -> Value {
    let workflow = format!("doc-{name}");
    server
        .put_workflow(&workflow, json!({ "name": workflow }))
        .await;
    let deployment = str_field(&server.deploy(&workflow, "production").await, "id");
    let reply = send(
        server
            .client()
            .post(server.api(&format!("/deployments/{deployment}/triggers")))
            .json(&documented_example(name)),
    )
    .await;
    server.expect(
        &reply,
        201,
        &format!("create the documented `{name}` trigger"),
    );
    reply.body
}

fn content_type(reply: &Reply) -> &str {
    reply.header("content-type").unwrap_or_default()
}

async fn slack_url_verification_challenge_is_answered_exactly(backend: Backend) {
    let server = TestServer::start(backend).await;
    let example = documented_example("slack-url-verification");
    let secret = example["config"]["secret"]
        .as_str()
        .expect("the example has Slack's signing secret")
        .to_owned();
    let trigger = documented_trigger(&server, "slack-url-verification").await;
    let (id, url) = (str_field(&trigger, "id"), str_field(&trigger, "url"));

    // What Slack sends when the Request URL is saved (from Slack's documentation).
    let body = r#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs();
    let signature = sign_hmac_sha256_hex(secret.as_bytes(), format!("v0:{ts}:{body}").as_bytes());
    let reply = send(
        server
            .plain()
            .post(&url)
            .header("content-type", "application/json")
            .header("x-slack-request-timestamp", ts.to_string())
            .header("x-slack-signature", format!("v0={signature}"))
            .body(body),
    )
    .await;
    server.expect(&reply, 200, "Slack's url_verification");
    assert_eq!(
        reply.text,
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );
    assert_eq!(content_type(&reply), "text/plain");
    // The run starts all the same (SPEC 4.5).
    let runs = server.runs_of_trigger(&id).await;
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(runs[0]["trigger_input"]["body"]["type"], "url_verification");

    // Unsigned, it is refused like any request to a signed trigger.
    send(
        server
            .plain()
            .post(&url)
            .header("content-type", "application/json")
            .body(body),
    )
    .await
    .assert_error(401, "bad_signature");
}

async fn echo_handshake_answers_the_challenge_of_a_get(backend: Backend) {
    let server = TestServer::start(backend).await;
    let trigger = documented_trigger(&server, "echo-handshake").await;
    let (id, url) = (str_field(&trigger, "id"), str_field(&trigger, "url"));
    let reply = send(
        server
            .plain()
            .get(format!("{url}?challenge=a1b2-c3d4%20e5")),
    )
    .await;
    server.expect(&reply, 200, "the verification GET");
    assert_eq!(reply.text, "a1b2-c3d4 e5");
    assert_eq!(content_type(&reply), "text/plain");
    let reply = send(
        server
            .plain()
            .post(format!("{url}?challenge=xyz"))
            .json(&json!({"event": "ping"})),
    )
    .await;
    server.expect(&reply, 200, "a POST with a challenge");
    assert_eq!(reply.text, "xyz");
    assert_eq!(server.runs_of_trigger(&id).await.len(), 2);
}

async fn a_template_failing_for_a_request_answers_500_and_the_run_is_stored(backend: Backend) {
    let server = TestServer::start(backend).await;
    let trigger = documented_trigger(&server, "echo-handshake").await;
    let (id, url) = (str_field(&trigger, "id"), str_field(&trigger, "url"));

    // No `challenge` in the query: `{{ trigger.query.challenge }}` reads nothing.
    let reply = send(server.plain().post(&url).json(&json!({"event": "ping"}))).await;
    reply.assert_error(500, "response_template_failed");
    let request_id = reply.request_id();
    let error = str_field(&reply.body, "error");
    assert!(
        error.starts_with("the custom response template failed: ")
            && error.contains("trigger.query.challenge"),
        "{error}"
    );
    assert_eq!(
        reply.body["request_id"],
        json!(request_id),
        "{}",
        reply.text
    );
    assert_eq!(content_type(&reply), "application/json");

    // The request was accepted: its run is stored and runs.
    let run_id = str_field(&reply.body, "run_id");
    let run = server.get_run(&run_id).await;
    assert_eq!(run["trigger_id"], json!(id), "{run}");
    assert_eq!(run["trigger_input"]["body"], json!({"event": "ping"}));
    assert_eq!(server.runs_of_trigger(&id).await.len(), 1);

    // The activity row, written with the run, records what was answered.
    let rows = server.trigger_requests(&id).await;
    assert_eq!(rows.len(), 1, "{rows:#?}");
    let row = &rows[0];
    assert_eq!(row["id"], json!(request_id));
    assert_eq!(row["status_code"], json!(500), "{row}");
    assert_eq!(row["outcome"], json!("accepted"), "{row}");
    assert_eq!(row["run_id"], json!(run_id), "{row}");
    assert_eq!(row["error"], json!(error), "{row}");

    // The next request that has the value is answered as configured.
    let reply = send(server.plain().get(format!("{url}?challenge=ok"))).await;
    server.expect(&reply, 200, "a request with the challenge");
    assert_eq!(reply.text, "ok");
}

async fn templates_that_can_never_render_are_refused_at_creation(backend: Backend) {
    let server = TestServer::start(backend).await;
    server
        .put_workflow("refused", json!({"name": "refused"}))
        .await;
    let deployment = str_field(&server.deploy("refused", "production").await, "id");
    let create = |body: Value| {
        send(
            server
                .client()
                .post(server.api(&format!("/deployments/{deployment}/triggers")))
                .json(&json!({"trigger_type": "webhook", "config": {"response":
                    {"mode": "custom", "content_type": "text/plain", "body": body}}})),
        )
    };
    // A syntax error names the place inside the body; a path no request has names the body.
    for (body, path) in [
        (json!("{{ trigger.query.challenge"), "config.response.body"),
        (json!({"a": ["{{ }}"]}), "config.response.body.a[0]"),
        (json!("{{ input.email }}"), "config.response.body"),
        (
            json!("{{ trigger.bodyy.challenge }}"),
            "config.response.body",
        ),
        (
            json!("{{ trigger.headers.X-Challenge }}"),
            "config.response.body",
        ),
        (
            json!({"challenge": "{{ trigger.method.name }}"}),
            "config.response.body",
        ),
    ] {
        let reply = create(body.clone()).await;
        reply.assert_error(422, "invalid_config");
        let paths: Vec<String> = reply
            .details()
            .iter()
            .map(|d| str_field(d, "path"))
            .collect();
        assert_eq!(paths, [path], "{body}: {}", reply.text);
    }
    let reply = create(json!({"challenge": "{{ trigger.body.challenge }}"})).await;
    server.expect(&reply, 201, "a template some request can fill");
}

triggerd_tests::e2e_tests!(
    slack_url_verification_challenge_is_answered_exactly,
    echo_handshake_answers_the_challenge_of_a_get,
    a_template_failing_for_a_request_answers_500_and_the_run_is_stored,
    templates_that_can_never_render_are_refused_at_creation,
);
