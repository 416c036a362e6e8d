//! De-duplication, request inspection and replay (SPEC 4.7).
//!
//! - `config.dedup`: a request whose key an earlier request claimed within the window starts no
//!   run and is answered 200 with the earlier run's id, logged `duplicate`.
//! - `GET /triggers/{id}/requests/{request_id}`: what a logged request carried — redacted
//!   headers and query, the body up to `log_body_bytes`, the refusal details.
//! - `POST .../replay`: the stored request through the trigger's current filter and mapping.

use serde_json::{Value, json};
use triggerd_tests::{Backend, RUN_TIMEOUT, Reply, TestServer, Webhook, send, str_field};

const SECRET: &str = "gh-hook-secret-Q4t8Zp";

/// `X-Hub-Signature-256` computed here with ring, independently of triggerd's signer.
fn github_signature(body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    let hex: String = ring::hmac::sign(&key, body)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// A signed GitHub `push` delivery with `delivery` as its `X-GitHub-Delivery`.
async fn deliver(server: &TestServer, hook: &Webhook, delivery: &str, body: &Value) -> Reply {
    let bytes = serde_json::to_vec(body).unwrap();
    send(
        server
            .plain()
            .post(&hook.url)
            .header("content-type", "application/json")
            .header("x-github-event", "push")
            .header("x-github-delivery", delivery)
            .header("x-hub-signature-256", github_signature(&bytes))
            .body(bytes),
    )
    .await
}

/// The GitHub trigger of these tests: pushes, de-duplicated by delivery id.
async fn github_hook(server: &TestServer, name: &str) -> Webhook {
    server
        .setup_webhook(
            json!({"name": name, "inputs": {"ref": {"type": "string", "required": true}},
                   "output": {"ref": "{{ input.ref }}"}}),
            json!({"secret": SECRET, "signature": {"scheme": "github"}, "dedup": "provider"}),
        )
        .await
}

async fn a_redelivery_starts_no_new_run_and_answers_the_original(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = github_hook(&server, "deploy").await;
    assert_eq!(
        hook.trigger["config"]["dedup"], "provider",
        "{}",
        hook.trigger
    );
    let push = json!({"ref": "refs/heads/main"});
    let first = deliver(&server, &hook, "d-1", &push).await;
    server.expect(&first, 201, "first delivery");
    let run_id = str_field(&first.body, "run_id");

    // GitHub's "Redeliver": the same delivery id, a fresh signature.
    let again = deliver(&server, &hook, "d-1", &push).await;
    server.expect(&again, 200, "redelivery");
    assert_eq!(
        again.body,
        json!({"run_id": run_id, "duplicate": true, "request_id": again.request_id()})
    );
    // Another delivery is another run.
    let other = deliver(&server, &hook, "d-2", &push).await;
    server.expect(&other, 201, "another delivery");
    assert_eq!(server.runs_of_trigger(&hook.id).await.len(), 2);

    let rows = server.wait_for_requests(&hook.id, 3, RUN_TIMEOUT).await;
    let seen: Vec<(&str, i64, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["outcome"].as_str().unwrap(),
                r["status_code"].as_i64().unwrap(),
                r["run_id"].as_str().unwrap(),
            )
        })
        .collect();
    let other_run = str_field(&other.body, "run_id");
    assert_eq!(
        seen,
        [
            ("accepted", 201, other_run.as_str()),
            ("duplicate", 200, run_id.as_str()),
            ("accepted", 201, run_id.as_str())
        ]
    );
    // The duplicate's row keeps its request (signature header redacted).
    let detail = request_detail(&server, &hook.id, &again.request_id()).await;
    assert_eq!(detail["request"]["headers"]["x-github-delivery"], "d-1");
    assert_eq!(
        detail["request"]["headers"]["x-hub-signature-256"],
        "[redacted]"
    );
    assert_eq!(detail["request"]["body"], push.to_string());

    // Twenty concurrent deliveries of one id: one run, every other answer names it.
    let bytes = serde_json::to_vec(&push).unwrap();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let request = server
            .plain()
            .post(&hook.url)
            .header("content-type", "application/json")
            .header("x-github-event", "push")
            .header("x-github-delivery", "d-3")
            .header("x-hub-signature-256", github_signature(&bytes))
            .body(bytes.clone());
        tasks.push(tokio::spawn(send(request)));
    }
    let mut replies = Vec::new();
    for task in tasks {
        replies.push(task.await.unwrap());
    }
    let created: Vec<&Reply> = replies.iter().filter(|r| r.status == 201).collect();
    assert_eq!(
        created.len(),
        1,
        "{:?}",
        replies.iter().map(|r| &r.text).collect::<Vec<_>>()
    );
    let winner = str_field(&created[0].body, "run_id");
    for reply in replies.iter().filter(|r| r.status != 201) {
        server.expect(reply, 200, "concurrent duplicate");
        assert_eq!(reply.body["run_id"], winner.as_str(), "{}", reply.text);
    }
    assert_eq!(server.runs_of_trigger(&hook.id).await.len(), 3);
    let metrics = send(server.plain().get(format!("{}/metrics", server.base_url()))).await;
    assert!(
        metrics
            .text
            .contains("triggerd_webhook_requests_total{outcome=\"duplicate\"} 20"),
        "{}",
        metrics.text
    );
}

async fn dedup_keys_read_any_path_and_expire_with_their_window(backend: Backend) {
    let server = TestServer::start(backend).await;
    // Stripe-like: the event id in the body; a one-second window.
    let hook = server
        .setup_webhook(
            json!({"name": "payments", "inputs": {"type": {"type": "string"}}}),
            json!({"dedup": {"key": "id", "window_seconds": 1}}),
        )
        .await;
    assert_eq!(
        hook.trigger["config"]["dedup"],
        json!({"key": "id", "window_seconds": 1})
    );
    let event = json!({"id": "evt_1", "type": "payment_intent.succeeded"});
    let post = |body: &Value| send(server.plain().post(&hook.url).json(body));
    let first = post(&event).await;
    server.expect(&first, 201, "first event");
    let again = post(&event).await;
    server.expect(&again, 200, "retried event");
    assert_eq!(again.body["run_id"], first.body["run_id"]);
    // Without the key: not de-duplicated.
    for _ in 0..2 {
        let reply = post(&json!({"type": "ping"})).await;
        server.expect(&reply, 201, "no key");
    }
    // Past the window the key is free again.
    let deadline = std::time::Instant::now() + RUN_TIMEOUT;
    loop {
        let reply = post(&event).await;
        if reply.status == 201 {
            assert_ne!(reply.body["run_id"], first.body["run_id"]);
            break;
        }
        server.expect(&reply, 200, "within the window");
        assert!(
            std::time::Instant::now() < deadline,
            "the key never expired"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(server.runs_of_trigger(&hook.id).await.len(), 4);
}

async fn bad_dedup_configurations_are_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = server
        .setup_webhook(json!({"name": "plain"}), json!({}))
        .await;
    for (config, path) in [
        // hmac-sha256 has no delivery id to pick.
        (
            json!({"secret": SECRET, "dedup": "provider"}),
            "config.dedup",
        ),
        (json!({"dedup": "yes"}), "config.dedup"),
        (json!({"dedup": {"key": "$cookies.x"}}), "config.dedup.key"),
        (json!({"dedup": {}}), "config.dedup.key"),
        (
            json!({"dedup": {"key": "id", "window_seconds": 604_801}}),
            "config.dedup.window_seconds",
        ),
        (
            json!({"log_body_bytes": 1_048_577}),
            "config.log_body_bytes",
        ),
    ] {
        let reply = send(
            server
                .client()
                .post(server.api(&format!("/deployments/{}/triggers", hook.deployment_id)))
                .json(&json!({"trigger_type": "webhook", "config": config})),
        )
        .await;
        reply.assert_error(422, "invalid_config");
        let paths: Vec<String> = reply
            .details()
            .iter()
            .map(|d| str_field(d, "path"))
            .collect();
        assert_eq!(paths, [path], "{config}: {}", reply.text);
    }
}

/// `GET /triggers/{id}/requests/{request_id}`; asserts 200.
async fn request_detail(server: &TestServer, trigger_id: &str, request_id: &str) -> Value {
    let reply = send(
        server
            .client()
            .get(server.api(&format!("/triggers/{trigger_id}/requests/{request_id}"))),
    )
    .await;
    server.expect(&reply, 200, "GET request detail");
    reply.body
}

async fn replay(server: &TestServer, trigger_id: &str, request_id: &str, body: Value) -> Reply {
    send(
        server
            .client()
            .post(server.api(&format!(
                "/triggers/{trigger_id}/requests/{request_id}/replay"
            )))
            .json(&body),
    )
    .await
}

async fn a_refused_request_is_inspected_then_replayed_after_the_mapping_is_fixed(backend: Backend) {
    // At the default level, `info`, to see the refusal's log line.
    let server = TestServer::start_with(backend, &[("RUST_LOG", "info")]).await;
    let hook = server
        .setup_webhook(
            json!({"name": "signup", "inputs": {"email": {"type": "string", "required": true}},
                   "output": {"email": "{{ input.email }}"}}),
            json!({"input_mapping": {"email": "customer.email"}, "api_keys": ["k-0123456789abcdef"]}),
        )
        .await;
    let body = r#"{"buyer": {"email": "ada@example.com"}}"#;
    let refused = send(
        server
            .plain()
            .post(format!("{}/signup?source=shop&token=hunter2", hook.url))
            .header("content-type", "application/json")
            .header("x-api-key", "k-0123456789abcdef")
            .header("x-shop-event", "created")
            .body(body),
    )
    .await;
    refused.assert_error(422, "invalid_input");
    let request_id = refused.request_id();
    // One `info` line says why, without the body or the key.
    let logs = server.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("webhook refused") && l.contains(&request_id))
        .unwrap_or_else(|| panic!("no log line for {request_id}:\n{logs}"));
    assert!(
        line.contains("invalid_input") && line.contains(&hook.id) && !line.contains("ada@"),
        "{line}"
    );

    let detail = request_detail(&server, &hook.id, &request_id).await;
    assert_eq!(detail["id"], request_id.as_str());
    assert_eq!(detail["outcome"], "invalid_input");
    assert_eq!(detail["status_code"], 422);
    assert_eq!(
        detail["details"],
        json!([{"input": "email", "message": "is required"}]),
        "{detail}"
    );
    let request = &detail["request"];
    assert_eq!(request["method"], "POST");
    assert_eq!(request["path"], "signup");
    assert_eq!(
        request["query"],
        json!({"source": "shop", "token": "[redacted]"})
    );
    assert_eq!(request["headers"]["x-shop-event"], "created");
    assert_eq!(request["headers"]["x-api-key"], "[redacted]");
    assert_eq!(request["headers"]["content-type"], "application/json");
    assert_eq!(request["body"], body);
    assert_eq!(request["body_encoding"], "utf8");
    assert_eq!(request["body_truncated"], false);
    assert!(
        !detail.to_string().contains("k-0123456789abcdef")
            && !detail.to_string().contains("hunter2"),
        "{detail}"
    );

    // Replayed as it is, it is refused again, and logged as a replay.
    let again = replay(&server, &hook.id, &request_id, json!({})).await;
    again.assert_error(422, "invalid_input");
    // Fix the mapping, replay: a run with the mapped input.
    let patched = send(
        server
            .client()
            .patch(server.api(&format!("/triggers/{}", hook.id)))
            .json(&json!({"config": {"input_mapping": {"email": "buyer.email"}}})),
    )
    .await;
    server.expect(&patched, 200, "fix the mapping");
    let replayed = replay(&server, &hook.id, &request_id, Value::Null).await;
    server.expect(&replayed, 201, "replay after the fix");
    assert_eq!(replayed.body["replay_of"], request_id.as_str());
    assert_eq!(replayed.body["request_id"], replayed.request_id().as_str());
    let run_id = str_field(&replayed.body, "run_id");
    let run = server
        .wait_for_run_status(&run_id, "completed", RUN_TIMEOUT)
        .await;
    assert_eq!(run["input"], json!({"email": "ada@example.com"}));
    assert_eq!(run["trigger_input"]["path"], "signup");
    assert_eq!(run["trigger_input"]["headers"]["x-shop-event"], "created");
    assert_eq!(run["final_output"], json!({"email": "ada@example.com"}));

    // The log: the original, the refused replay and the accepted one, linked to it.
    let rows = server.wait_for_requests(&hook.id, 3, RUN_TIMEOUT).await;
    let seen: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["outcome"].as_str().unwrap(),
                r["replay_of"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("accepted", request_id.as_str()),
            ("invalid_input", request_id.as_str()),
            ("invalid_input", "-")
        ]
    );
    // An accepted request shows the request its run holds.
    let accepted = request_detail(&server, &hook.id, &replayed.request_id()).await;
    assert_eq!(accepted["run_id"], run_id.as_str());
    assert_eq!(accepted["request"]["body_encoding"], "json");
    assert_eq!(
        accepted["request"]["body"],
        json!({"buyer": {"email": "ada@example.com"}})
    );
    // Which can be replayed too (no dedup configured: another run).
    let twice = replay(&server, &hook.id, &replayed.request_id(), json!({})).await;
    server.expect(&twice, 201, "replay of an accepted request");
    assert_ne!(twice.body["run_id"], run_id.as_str());

    // Unknown ids.
    let missing = "req_01J00000000000000000000000";
    send(
        server
            .client()
            .get(server.api(&format!("/triggers/{}/requests/{missing}", hook.id))),
    )
    .await
    .assert_error(404, "not_found");
    replay(&server, &hook.id, missing, json!({}))
        .await
        .assert_error(404, "not_found");
    replay(&server, &hook.id, &request_id, json!({"force": true}))
        .await
        .assert_error(400, "bad_request");
}

async fn unauthenticated_and_truncated_requests_are_kept_but_replayed_only_when_safe(
    backend: Backend,
) {
    let server = TestServer::start(backend).await;
    let hook = server
        .setup_webhook(
            json!({"name": "files", "inputs": {"name": {"type": "string", "required": true}}}),
            json!({"secret": SECRET, "signature": {"scheme": "github"}, "log_body_bytes": 16}),
        )
        .await;
    // A bad signature: kept (body cut at 16 bytes), refused for replay without consent.
    let body = r#"{"name": "report.pdf", "pad": "xxxxxxxxxxxxxxxxxxxxxxxx"}"#;
    let bad = send(
        server
            .plain()
            .post(&hook.url)
            .header("content-type", "application/json")
            .header("x-hub-signature-256", "sha256=00")
            .body(body),
    )
    .await;
    bad.assert_error(401, "bad_signature");
    let detail = request_detail(&server, &hook.id, &bad.request_id()).await;
    assert_eq!(detail["request"]["body"], &body[..16]);
    assert_eq!(detail["request"]["body_truncated"], true);
    assert_eq!(detail["body_bytes"], body.len());
    assert!(
        detail["error"]
            .as_str()
            .unwrap()
            .starts_with("signature check failed"),
        "{detail}"
    );
    let refused = replay(&server, &hook.id, &bad.request_id(), json!({})).await;
    refused.assert_error(409, "conflict");
    assert!(
        refused.text.contains("allow_unauthenticated"),
        "{}",
        refused.text
    );
    let cut = replay(
        &server,
        &hook.id,
        &bad.request_id(),
        json!({"allow_unauthenticated": true}),
    )
    .await;
    cut.assert_error(409, "conflict");
    assert!(cut.text.contains("not kept in full"), "{}", cut.text);

    // A body that is not UTF-8 is shown in base64; a short one is kept whole and, with consent,
    // replayed (it then fails mapping: the body is a blob, not an object with `name`).
    let binary: &[u8] = &[0xff, 0xfe, 0x00, 0x01];
    let blob = send(
        server
            .plain()
            .post(&hook.url)
            .header("content-type", "application/octet-stream")
            .body(binary.to_vec()),
    )
    .await;
    blob.assert_error(401, "bad_signature");
    let detail = request_detail(&server, &hook.id, &blob.request_id()).await;
    assert_eq!(detail["request"]["body_encoding"], "base64");
    assert_eq!(detail["request"]["body"], "//4AAQ==");
    let replayed = replay(
        &server,
        &hook.id,
        &blob.request_id(),
        json!({"allow_unauthenticated": true}),
    )
    .await;
    replayed.assert_error(422, "invalid_input");

    // A disabled trigger replays nothing.
    let disabled = send(
        server
            .client()
            .patch(server.api(&format!("/triggers/{}", hook.id)))
            .json(&json!({"enabled": false})),
    )
    .await;
    server.expect(&disabled, 200, "disable");
    replay(
        &server,
        &hook.id,
        &blob.request_id(),
        json!({"allow_unauthenticated": true}),
    )
    .await
    .assert_error(409, "conflict");
    server.assert_no_runs(&hook.id).await;
}

triggerd_tests::e2e_tests!(
    a_redelivery_starts_no_new_run_and_answers_the_original,
    dedup_keys_read_any_path_and_expire_with_their_window,
    bad_dedup_configurations_are_refused,
    a_refused_request_is_inspected_then_replayed_after_the_mapping_is_fixed,
    unauthenticated_and_truncated_requests_are_kept_but_replayed_only_when_safe,
);
