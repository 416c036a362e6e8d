//! Webhook ingress (SPEC 4): accepted requests, input mapping, and every refusal with its status
//! and code. A refused request never creates a run.

use serde_json::{Value, json};
use triggerd_domain::ids::{IdKind, is_plausible_webhook_token, is_valid_id, new_webhook_token};
use triggerd_tests::{
    ADMIN_TOKEN, Backend, RUN_TIMEOUT, TestServer, order_workflow, raw_exchange, raw_head, send,
    sign, str_field,
};

const SECRET: &str = "whk-secret-7Yq2pLm9";

/// A workflow without inputs, to look at `trigger_input` alone.
fn capture_workflow() -> Value {
    json!({"name": "capture"})
}

async fn webhook_answers_201_with_run_and_request_ids(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = server.setup_webhook(order_workflow(), json!({})).await;
    assert!(is_plausible_webhook_token(&hook.token), "{}", hook.token);
    assert!(hook.token.len() >= 4 + 43, "{}", hook.token);
    assert_eq!(hook.url, server.webhook_url(&hook.token));

    let reply = send(
        server
            .plain()
            .post(&hook.url)
            .json(&json!({"email": "a@example.com"})),
    )
    .await;
    server.expect(&reply, 201, "webhook");
    assert_eq!(reply.body["status"], "pending");
    let run_id = str_field(&reply.body, "run_id");
    assert!(is_valid_id(IdKind::Run, &run_id), "{}", reply.text);
    assert_eq!(reply.body["request_id"], reply.request_id().as_str());
    let runs = server.runs_of_trigger(&hook.id).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["id"], run_id.as_str());
}

async fn webhook_run_has_mapped_input_redacted_trigger_input_and_final_output(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = server
        .setup_webhook(
            json!({
                "name": "mapped",
                "inputs": {
                    "email": {"type": "string", "required": true},
                    "value": {"type": "integer"},
                    "auth_seen": {"type": "string"}
                },
                "output": {"customer": "{{ input.email }}", "value": "{{ input.value }}"}
            }),
            json!({
                "secret": SECRET,
                "input_mapping": {
                    "email": "customer.email",
                    "value": "amount",
                    "auth_seen": "$headers.authorization"
                }
            }),
        )
        .await;
    let body = json!({"customer": {"email": "a@example.com"}, "amount": 42, "extra": [1, 2]});
    let bytes = serde_json::to_vec(&body).unwrap();
    let reply = send(
        server
            .plain()
            .post(&hook.url)
            .header("content-type", "application/json")
            .header("x-webhook-signature", sign(SECRET, &bytes))
            .header("authorization", "Bearer sekrit-auth-value")
            .header("cookie", "session=sekrit-cookie")
            .header("x-api-key", "sekrit-api-key")
            .header("X-Custom-Header", "Hello")
            .body(bytes),
    )
    .await;
    server.expect(&reply, 201, "signed webhook");
    let run_id = str_field(&reply.body, "run_id");

    let run = server.get_run(&run_id).await;
    assert_eq!(run["id"], run_id.as_str());
    assert_eq!(run["source"], "webhook");
    assert_eq!(run["trigger_id"], hook.id.as_str());
    assert_eq!(run["deployment_id"], hook.deployment_id.as_str());
    assert_eq!(
        run["input"],
        json!({"email": "a@example.com", "value": 42, "auth_seen": "[redacted]"})
    );
    let trigger_input = &run["trigger_input"];
    assert_eq!(trigger_input["method"], "POST");
    assert_eq!(trigger_input["path"], "");
    assert_eq!(trigger_input["query"], json!({}));
    assert_eq!(trigger_input["body"], body);
    let headers = &trigger_input["headers"];
    for name in [
        "authorization",
        "cookie",
        "x-api-key",
        "x-webhook-signature",
    ] {
        assert_eq!(headers[name], "[redacted]", "header {name}: {headers:#}");
    }
    assert_eq!(headers["x-custom-header"], "Hello", "{headers:#}");
    assert_eq!(headers["content-type"], "application/json", "{headers:#}");
    assert!(
        headers
            .as_object()
            .unwrap()
            .keys()
            .all(|k| *k == k.to_ascii_lowercase()),
        "header names are lower-cased: {headers:#}"
    );
    assert!(
        !run.to_string().contains("sekrit"),
        "a credential leaked into the run: {run:#}"
    );

    let run = server
        .wait_for_run_status(&run_id, "completed", RUN_TIMEOUT)
        .await;
    assert_eq!(
        run["final_output"],
        json!({"customer": "a@example.com", "value": 42})
    );
}

async fn query_and_rest_path_are_captured(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = server.setup_webhook(capture_workflow(), json!({})).await;
    let reply = send(
        server
            .plain()
            .post(format!("{}/orders/42?source=shop&n=5", hook.url))
            .json(&json!({"ok": true})),
    )
    .await;
    server.expect(&reply, 201, "webhook with path and query");
    let run = server.get_run(reply.body["run_id"].as_str().unwrap()).await;
    assert_eq!(run["trigger_input"]["path"], "orders/42");
    assert_eq!(
        run["trigger_input"]["query"],
        json!({"source": "shop", "n": "5"})
    );
    assert_eq!(run["trigger_input"]["body"], json!({"ok": true}));
}

async fn mapping_reads_headers_query_path_and_method_with_type_conversion(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = server
        .setup_webhook(
            json!({
                "name": "sources",
                "inputs": {
                    "email": {"type": "string", "required": true},
                    "event": {"type": "string"},
                    "ratio": {"type": "number"},
                    "count": {"type": "integer"},
                    "flag": {"type": "boolean"},
                    "route": {"type": "string"},
                    "verb": {"type": "string"}
                }
            }),
            json!({"input_mapping": {
                "email": "customer.email",
                "event": "$headers.x-event-type",
                "ratio": "$headers.x-ratio",
                "count": "$query.count",
                "flag": "$query.flag",
                "route": "$path",
                "verb": "$method"
            }}),
        )
        .await;
    let reply = send(
        server
            .plain()
            .post(format!("{}/orders/42?count=42&flag=true", hook.url))
            .header("X-Event-Type", "order.created")
            .header("X-Ratio", "1.5")
            .json(&json!({"customer": {"email": "a@example.com"}})),
    )
    .await;
    server.expect(&reply, 201, "webhook");
    let run = server.get_run(reply.body["run_id"].as_str().unwrap()).await;
    assert_eq!(
        run["input"],
        json!({
            "email": "a@example.com",
            "event": "order.created",
            "ratio": 1.5,
            "count": 42,
            "flag": true,
            "route": "orders/42",
            "verb": "POST"
        })
    );

    // A query value that is not an integer is an input error.
    let reply = send(
        server
            .plain()
            .post(format!("{}?count=many", hook.url))
            .json(&json!({"customer": {"email": "a@example.com"}})),
    )
    .await;
    reply.assert_error(422, "invalid_input");
    assert!(
        reply.details().iter().any(|d| d["input"] == "count"),
        "{}",
        reply.text
    );
    assert_eq!(server.runs_of_trigger(&hook.id).await.len(), 1);
}

async fn unmapped_inputs_read_top_level_body_fields(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = server.setup_webhook(order_workflow(), json!({})).await;
    let reply = send(server.plain().post(&hook.url).json(&json!({
        "email": "a@example.com", "value": 5, "undeclared": "dropped"
    })))
    .await;
    server.expect(&reply, 201, "webhook");
    let run = server.get_run(reply.body["run_id"].as_str().unwrap()).await;
    assert_eq!(
        run["input"],
        json!({"email": "a@example.com", "value": 5, "week": "current"})
    );
}

async fn body_without_content_type_is_parsed_when_it_is_json(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = server.setup_webhook(capture_workflow(), json!({})).await;
    let reply = send(server.plain().post(&hook.url).body(r#"{"a": [1, 2]}"#)).await;
    server.expect(&reply, 201, "webhook without content type");
    let run = server.get_run(reply.body["run_id"].as_str().unwrap()).await;
    assert_eq!(run["trigger_input"]["body"], json!({"a": [1, 2]}));
}

async fn configured_get_starts_a_run(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = server
        .setup_webhook(capture_workflow(), json!({"methods": ["GET", "POST"]}))
        .await;
    let reply = send(server.plain().get(format!("{}?ping=1", hook.url))).await;
    server.expect(&reply, 201, "GET webhook");
    let run = server.get_run(reply.body["run_id"].as_str().unwrap()).await;
    assert_eq!(run["trigger_input"]["method"], "GET");
    assert_eq!(run["trigger_input"]["query"], json!({"ping": "1"}));
}

async fn disallowed_method_gets_405_with_an_allow_header(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = server.setup_webhook(capture_workflow(), json!({})).await;
    for request in [
        server.plain().get(&hook.url),
        server.plain().put(&hook.url).json(&json!({})),
        server.plain().delete(&hook.url),
    ] {
        let reply = send(request).await;
        reply.assert_error(405, "method_not_allowed");
        let allow = reply.header("allow").expect("an Allow header");
        assert!(allow.contains("POST"), "Allow: {allow}");
    }
    let put_only = server
        .create_webhook_trigger(&hook.deployment_id, json!({"methods": ["PUT"]}))
        .await;
    let reply = send(
        server
            .plain()
            .post(str_field(&put_only, "url"))
            .json(&json!({})),
    )
    .await;
    reply.assert_error(405, "method_not_allowed");
    assert_eq!(reply.header("allow"), Some("PUT"));

    server.assert_no_runs(&hook.id).await;
    server.assert_no_runs(&str_field(&put_only, "id")).await;
}

async fn body_over_the_limit_gets_413_from_its_content_length(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = server
        .setup_webhook(capture_workflow(), json!({"max_body_bytes": 1024}))
        .await;
    // Exactly at the limit: accepted.
    let prefix = r#"{"pad":""#;
    let suffix = r#""}"#;
    let at_limit = format!(
        "{prefix}{}{suffix}",
        "x".repeat(1024 - prefix.len() - suffix.len())
    );
    assert_eq!(at_limit.len(), 1024);
    let reply = send(
        server
            .plain()
            .post(&hook.url)
            .header("content-type", "application/json")
            .body(at_limit),
    )
    .await;
    server.expect(&reply, 201, "body at the limit");

    // Over it: only the head is sent; the answer must not wait for the body.
    let path = format!("/api/webhooks/{}", hook.token);
    for length in ["1025", "10000000000"] {
        let head = raw_head(
            "POST",
            &path,
            server.addr(),
            &[
                ("Content-Type", "application/json"),
                ("Content-Length", length),
            ],
        );
        let reply = raw_exchange(server.addr(), &head).await;
        reply.assert_error(413, "payload_too_large");
    }
    assert_eq!(server.runs_of_trigger(&hook.id).await.len(), 1);
}

async fn default_body_limit_is_256_kib(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = server.setup_webhook(capture_workflow(), json!({})).await;
    let path = format!("/api/webhooks/{}", hook.token);
    let head = raw_head(
        "POST",
        &path,
        server.addr(),
        &[
            ("Content-Type", "application/json"),
            ("Content-Length", "262145"),
        ],
    );
    raw_exchange(server.addr(), &head)
        .await
        .assert_error(413, "payload_too_large");
    server.assert_no_runs(&hook.id).await;
}

async fn chunked_body_over_the_limit_gets_413_before_it_ends(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = server
        .setup_webhook(capture_workflow(), json!({"max_body_bytes": 1024}))
        .await;
    let path = format!("/api/webhooks/{}", hook.token);
    let mut request = raw_head(
        "POST",
        &path,
        server.addr(),
        &[
            ("Content-Type", "application/json"),
            ("Transfer-Encoding", "chunked"),
        ],
    );
    // One chunk past the limit, and no terminating chunk: the body never ends.
    let chunk = format!("{{\"pad\":\"{}\"}}", "x".repeat(1490));
    request.extend_from_slice(format!("{:X}\r\n{chunk}\r\n", chunk.len()).as_bytes());
    let reply = raw_exchange(server.addr(), &request).await;
    reply.assert_error(413, "payload_too_large");
    server.assert_no_runs(&hook.id).await;
}

async fn malformed_json_gets_400_with_the_exact_message(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = server.setup_webhook(order_workflow(), json!({})).await;
    let reply = send(
        server
            .plain()
            .post(&hook.url)
            .header("content-type", "application/json")
            .body(r#"{"email": "#),
    )
    .await;
    reply.assert_error(400, "malformed_json");
    assert_eq!(reply.body["error"], "Received malformed JSON payload.");
    server.assert_no_runs(&hook.id).await;
}

/// `{"email": ..., "deep": [[[...]]]}` with `deep` nested `levels` arrays deep (the body itself
/// one level more).
fn nested_body(levels: usize) -> String {
    format!(
        r#"{{"email": "deep@example.com", "deep": {}1{}}}"#,
        "[".repeat(levels),
        "]".repeat(levels)
    )
}

async fn json_nested_up_to_the_limit_round_trips_and_deeper_gets_400(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = server
        .setup_webhook(order_workflow(), json!({"rate_limit_per_minute": 0}))
        .await;
    let post = |body: String| {
        server
            .plain()
            .post(&hook.url)
            .header("content-type", "application/json")
            .body(body)
    };
    // 64 levels in all: accepted, and read back whole from every view.
    let body = nested_body(63);
    let reply = send(post(body.clone())).await;
    server.expect(&reply, 201, "a body 64 levels deep");
    let run = server.get_run(&str_field(&reply.body, "run_id")).await;
    let sent: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        run["trigger_input"]["body"], sent,
        "the body reads back whole"
    );
    let listed = server.runs_of_trigger(&hook.id).await;
    assert_eq!(listed[0]["trigger_input"]["body"], sent);
    // Deeper (65, and 127 — which serde_json alone would still parse): 400, nothing stored.
    for levels in [64, 126] {
        let reply = send(post(nested_body(levels))).await;
        reply.assert_error(400, "malformed_json");
        assert!(reply.text.contains("64 levels"), "{}", reply.text);
    }
    assert_eq!(server.runs_of_trigger(&hook.id).await.len(), 1);
    // The management API holds the same limit.
    let reply = send(
        server.client().post(server.api("/runs")).json(
            &serde_json::from_str::<Value>(&format!(
                r#"{{"deployment_id": "{}", "input": {}}}"#,
                hook.deployment_id,
                nested_body(100)
            ))
            .unwrap(),
        ),
    )
    .await;
    reply.assert_error(400, "malformed_json");
}

async fn missing_or_wrong_signature_gets_401_bad_signature(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = server
        .setup_webhook(order_workflow(), json!({"secret": SECRET}))
        .await;
    let body = br#"{"email": "a@example.com"}"#.to_vec();
    let post = |signature: Option<String>, bytes: Vec<u8>| {
        let mut request = server
            .plain()
            .post(&hook.url)
            .header("content-type", "application/json")
            .body(bytes);
        if let Some(signature) = signature {
            request = request.header("x-webhook-signature", signature);
        }
        send(request)
    };

    let refusals = [
        None,
        Some(String::new()),
        Some("not-hex".to_owned()),
        Some(sign("another-secret", &body)),
        Some(sign(SECRET, br#"{"email": "b@example.com"}"#)),
        Some(format!("sha256={}", sign("another-secret", &body))),
    ];
    for signature in refusals {
        post(signature, body.clone())
            .await
            .assert_error(401, "bad_signature");
    }
    server.assert_no_runs(&hook.id).await;

    let reply = post(Some(sign(SECRET, &body)), body.clone()).await;
    server.expect(&reply, 201, "valid signature");
    let reply = post(
        Some(format!("sha256={}", sign(SECRET, &body))),
        body.clone(),
    )
    .await;
    server.expect(&reply, 201, "valid signature with the sha256= prefix");
    assert_eq!(server.runs_of_trigger(&hook.id).await.len(), 2);
}

async fn missing_or_wrong_api_key_gets_401_unauthorized(backend: Backend) {
    let server = TestServer::start(backend).await;
    let keys = ["key-one-0123456789abcdef", "key-two-0123456789abcdef"];
    let hook = server
        .setup_webhook(order_workflow(), json!({"api_keys": keys}))
        .await;
    let body = json!({"email": "a@example.com"});
    let post = || server.plain().post(&hook.url).json(&body);

    for request in [
        post(),
        post().bearer_auth("key-three-0123456789abcdef"),
        post().header("x-api-key", "key-three-0123456789abcdef"),
        // The admin token is never a trigger API key.
        post().bearer_auth(ADMIN_TOKEN),
        post().header("x-api-key", ADMIN_TOKEN),
    ] {
        send(request).await.assert_error(401, "unauthorized");
    }
    server.assert_no_runs(&hook.id).await;

    let reply = send(post().bearer_auth(keys[0])).await;
    server.expect(&reply, 201, "Bearer API key");
    let reply = send(post().header("x-api-key", keys[1])).await;
    server.expect(&reply, 201, "X-API-Key");
    assert_eq!(server.runs_of_trigger(&hook.id).await.len(), 2);
}

async fn invalid_input_gets_422_with_each_problem_and_no_run(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = server.setup_webhook(order_workflow(), json!({})).await;
    let reply = send(
        server
            .plain()
            .post(&hook.url)
            .json(&json!({"value": "many", "week": "someday"})),
    )
    .await;
    reply.assert_error(422, "invalid_input");
    let details = reply.details();
    let mut inputs: Vec<&str> = details
        .iter()
        .map(|d| {
            assert!(d["message"].as_str().is_some_and(|m| !m.is_empty()), "{d}");
            d["input"].as_str().expect("detail names its input")
        })
        .collect();
    inputs.sort();
    assert_eq!(inputs, ["email", "value", "week"]);
    let email = details.iter().find(|d| d["input"] == "email").unwrap();
    assert_eq!(email["message"], "is required");
    server.assert_no_runs(&hook.id).await;
}

async fn unknown_token_gets_404_not_found(backend: Backend) {
    let server = TestServer::start(backend).await;
    let unknown = new_webhook_token().unwrap();
    for request in [
        server
            .plain()
            .post(server.webhook_url(&unknown))
            .json(&json!({})),
        server
            .plain()
            .post(format!("{}/some/rest", server.webhook_url(&unknown)))
            .json(&json!({})),
        // The token is checked before the method.
        server.plain().get(server.webhook_url(&unknown)),
        server
            .plain()
            .post(server.webhook_url("wht_nope"))
            .json(&json!({})),
        server
            .plain()
            .post(format!("{}/api/webhooks/", server.base_url()))
            .json(&json!({})),
    ] {
        send(request).await.assert_error(404, "not_found");
    }
}

async fn checks_run_in_the_documented_order(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = server
        .setup_webhook(
            order_workflow(),
            json!({"secret": SECRET, "max_body_bytes": 1024}),
        )
        .await;
    let path = format!("/api/webhooks/{}", hook.token);

    // method before size
    let head = raw_head("PUT", &path, server.addr(), &[("Content-Length", "4096")]);
    raw_exchange(server.addr(), &head)
        .await
        .assert_error(405, "method_not_allowed");
    // size before signature
    let head = raw_head("POST", &path, server.addr(), &[("Content-Length", "4096")]);
    raw_exchange(server.addr(), &head)
        .await
        .assert_error(413, "payload_too_large");
    // signature before parsing
    let malformed = b"{\"email\": ".to_vec();
    send(
        server
            .plain()
            .post(&hook.url)
            .header("content-type", "application/json")
            .body(malformed.clone()),
    )
    .await
    .assert_error(401, "bad_signature");
    send(
        server
            .plain()
            .post(&hook.url)
            .header("content-type", "application/json")
            .header("x-webhook-signature", sign(SECRET, &malformed))
            .body(malformed),
    )
    .await
    .assert_error(400, "malformed_json");
    // parsing before validation
    let empty = b"{}".to_vec();
    send(
        server
            .plain()
            .post(&hook.url)
            .header("content-type", "application/json")
            .header("x-webhook-signature", sign(SECRET, &empty))
            .body(empty),
    )
    .await
    .assert_error(422, "invalid_input");
    server.assert_no_runs(&hook.id).await;
}

triggerd_tests::e2e_tests!(
    webhook_answers_201_with_run_and_request_ids,
    json_nested_up_to_the_limit_round_trips_and_deeper_gets_400,
    webhook_run_has_mapped_input_redacted_trigger_input_and_final_output,
    query_and_rest_path_are_captured,
    mapping_reads_headers_query_path_and_method_with_type_conversion,
    unmapped_inputs_read_top_level_body_fields,
    body_without_content_type_is_parsed_when_it_is_json,
    configured_get_starts_a_run,
    disallowed_method_gets_405_with_an_allow_header,
    body_over_the_limit_gets_413_from_its_content_length,
    default_body_limit_is_256_kib,
    chunked_body_over_the_limit_gets_413_before_it_ends,
    malformed_json_gets_400_with_the_exact_message,
    missing_or_wrong_signature_gets_401_bad_signature,
    missing_or_wrong_api_key_gets_401_unauthorized,
    invalid_input_gets_422_with_each_problem_and_no_run,
    unknown_token_gets_404_not_found,
    checks_run_in_the_documented_order,
);
