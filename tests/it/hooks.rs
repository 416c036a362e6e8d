//! Event hooks end to end (SPEC 3, 7): real local receivers get signed events at workflow,
//! deployment and run scope; the signature is checked here by an independent HMAC (the test
//! builds `id.timestamp.body` itself); failing receivers are retried with the same `webhook-id`;
//! a hanging receiver does not delay another; private addresses are refused visibly; nothing is
//! lost across SIGKILL; two nodes send each attempt once.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use triggerd_tests::{Backend, ServerConfig, TestServer, send, str_field};

use crate::steps::{ARRIVAL_TIMEOUT, Received, Receiver};

/// Retries after 1 s, three times: failures are seen within seconds.
const FAST_RETRIES: (&str, &str) = ("TRIGGERD_RETRY_SCHEDULE", "1,1,1");
const PRIVATE: (&str, &str) = ("TRIGGERD_ALLOW_PRIVATE_NETWORKS", "true");

fn stepless() -> Value {
    json!({
        "name": "notify",
        "inputs": {"n": {"type": "integer", "required": true}},
        "output": {"twice": "{{ input.n }}"}
    })
}

/// Creates a hook through the API; returns its view (with the secret).
async fn hook(server: &TestServer, body: Value) -> Value {
    let reply = send(server.client().post(server.api("/hooks")).json(&body)).await;
    server.expect(&reply, 201, "create hook");
    assert!(
        str_field(&reply.body, "secret").starts_with("whsec_"),
        "{}",
        reply.text
    );
    reply.body
}

/// Checks a delivery's Standard Webhooks signature with HMAC-SHA256 of `id.timestamp.body`
/// computed here, keyed with the base64-decoded part of `secret` after `whsec_`.
fn assert_signed(request: &Received, secret: &str) {
    let id = request.header("webhook-id").expect("webhook-id");
    let ts = request
        .header("webhook-timestamp")
        .expect("webhook-timestamp");
    let signature = request
        .header("webhook-signature")
        .expect("webhook-signature");
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut message = format!("{id}.{ts}.").into_bytes();
    message.extend_from_slice(&request.body);
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key),
        &message,
    );
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
    );
    assert_eq!(signature, expected, "signature of {id}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let ts: i64 = ts.parse().unwrap();
    assert!((now - ts).abs() < 60, "timestamp {ts} is now");
    let body = request.json();
    assert_eq!(body["id"], id, "the body's id is the webhook-id");
}

async fn deliveries(server: &TestServer, path: &str) -> Vec<Value> {
    let reply = send(server.client().get(server.api(path))).await;
    server.expect(&reply, 200, "list deliveries");
    reply.body["data"].as_array().unwrap().clone()
}

/// Polls a list of deliveries until `done` holds for it.
async fn wait_deliveries(
    server: &TestServer,
    path: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + ARRIVAL_TIMEOUT;
    loop {
        let list = deliveries(server, path).await;
        if done(&list) {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "deliveries of {path} never reached the expected state: {list:#?}\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn events_at_every_scope_are_signed_and_shaped_per_spec(backend: Backend) {
    let server = TestServer::start_with(backend, &[PRIVATE, FAST_RETRIES]).await;
    let receiver = Receiver::start().await;
    let webhook = server
        .setup_webhook(stepless(), json!({"rate_limit_per_minute": 0}))
        .await;
    let workflow_hook = hook(
        &server,
        json!({"scope": "workflow", "workflow": "notify", "url": receiver.url("/workflow"),
               "events": ["run.started", "run.completed"]}),
    )
    .await;
    let given = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode([7u8; 32])
    );
    let deployment_hook = hook(
        &server,
        json!({"scope": "deployment", "deployment_id": webhook.deployment_id,
               "url": receiver.url("/deployment"), "events": ["run.completed"], "secret": given}),
    )
    .await;
    assert_eq!(deployment_hook["secret"], given.as_str());

    // A webhook's run completes in its ingest write: its events travel in the same commit.
    let reply = send(server.plain().post(&webhook.url).json(&json!({"n": 21}))).await;
    server.expect(&reply, 201, "webhook");
    let run_id = str_field(&reply.body, "run_id");
    let at_workflow = receiver.wait_for("/workflow", 2, ARRIVAL_TIMEOUT).await;
    let at_deployment = receiver.wait_for("/deployment", 1, ARRIVAL_TIMEOUT).await;
    let secret = str_field(&workflow_hook, "secret");
    for request in &at_workflow {
        assert_signed(request, &secret);
    }
    assert_signed(&at_deployment[0], &given);
    let types: Vec<Value> = at_workflow
        .iter()
        .map(|r| r.json()["type"].clone())
        .collect();
    assert!(types.contains(&json!("run.started")) && types.contains(&json!("run.completed")));
    let completed = at_deployment[0].json();
    assert_eq!(completed["type"], "run.completed");
    let data = &completed["data"];
    assert_eq!(data["run_id"], run_id.as_str());
    assert_eq!(data["status"], "completed");
    assert_eq!(data["deployment_id"], webhook.deployment_id.as_str());
    assert_eq!(data["workflow"], "notify");
    assert_eq!(data["trigger_id"], webhook.id.as_str());
    assert_eq!(data["input"], json!({"n": 21}));
    assert_eq!(data["final_output"], json!({"twice": 21}));
    assert_eq!(data["error"], Value::Null);
    for key in ["created_at", "started_at", "finished_at"] {
        assert!(data[key].is_string(), "{key}: {completed:#}");
    }
    let started = at_workflow
        .iter()
        .map(Received::json)
        .find(|b| b["type"] == "run.started")
        .unwrap();
    assert_eq!(started["data"]["status"], "running");
    assert_eq!(
        started["data"]["final_output"],
        Value::Null,
        "not yet at run.started"
    );

    // Run scope: hooks given with POST /runs see every event of that run only.
    let reply = send(server.client().post(server.api("/runs")).json(&json!({
        "deployment_id": webhook.deployment_id, "input": {"n": 2},
        "hooks": [{"url": receiver.url("/run"), "events": ["run.completed"]}]
    })))
    .await;
    server.expect(&reply, 201, "POST /runs with hooks");
    let run_secret = str_field(&reply.body["hooks"][0], "secret");
    let at_run = receiver.wait_for("/run", 1, ARRIVAL_TIMEOUT).await;
    assert_signed(&at_run[0], &run_secret);
    assert_eq!(at_run[0].json()["data"]["run_id"], reply.body["run_id"]);

    // The delivery log: each with its attempt; secrets only where documented.
    let id = str_field(&workflow_hook, "id");
    let log = wait_deliveries(&server, &format!("/hooks/{id}/deliveries"), |l| {
        l.len() == 4 && l.iter().all(|d| d["status"] == "delivered")
    })
    .await;
    assert_eq!(log[0]["attempt_log"][0]["status_code"], 200);
    let of_run = deliveries(&server, &format!("/runs/{run_id}/deliveries")).await;
    assert_eq!(of_run.len(), 3, "{of_run:#?}");
    let listed = send(server.client().get(server.api("/hooks"))).await;
    server.expect(&listed, 200, "list hooks");
    assert!(!listed.text.contains("whsec_"), "{}", listed.text);
    let read = send(
        server
            .client()
            .get(server.api(&format!("/hooks/{id}/secret"))),
    )
    .await;
    assert_eq!(read.body["secret"], secret.as_str());

    let metrics = send(server.plain().get(format!("{}/metrics", server.base_url()))).await;
    assert!(
        metrics
            .text
            .contains("triggerd_hook_attempts_total{outcome=\"delivered\"}")
            && metrics
                .text
                .contains("triggerd_hook_deliveries{status=\"delivered\"}")
            && metrics.text.contains("triggerd_hook_deliveries_due "),
        "{}",
        metrics.text
    );

    // Bad hooks: 422 naming each field, nothing stored.
    let bad = send(server.client().post(server.api("/hooks")).json(&json!({
        "scope": "workflow", "workflow": "notify", "url": "ftp://x", "events": ["run.exploded"]
    })))
    .await;
    bad.assert_error(422, "invalid_config");
    let paths: Vec<&str> = bad
        .details()
        .iter()
        .filter_map(|d| d["path"].as_str())
        .collect();
    assert_eq!(paths, ["url", "events[0]"]);
}

async fn hooks_declared_in_a_definition_follow_its_versions(backend: Backend) {
    let server = TestServer::start_with(backend, &[PRIVATE, FAST_RETRIES]).await;
    let receiver = Receiver::start().await;
    let mut definition = stepless();
    definition["hooks"] = json!([{"url": receiver.url("/declared"), "events": ["run.completed"]}]);
    definition["on_success_url"] = json!(receiver.url("/success"));
    let put = server.put_workflow("notify", definition.clone()).await;
    let hooks = put["hooks"].as_array().unwrap().clone();
    assert_eq!(hooks.len(), 2, "{put:#}");
    assert!(
        !put.to_string().contains("whsec_"),
        "no secret in the PUT answer"
    );
    let declared = hooks
        .iter()
        .find(|h| h["url"] == receiver.url("/declared").as_str())
        .unwrap();
    let id = str_field(declared, "id");
    let secret = send(
        server
            .client()
            .get(server.api(&format!("/hooks/{id}/secret"))),
    )
    .await;
    let secret = str_field(&secret.body, "secret");

    let deployment = server.deploy("notify", "production").await;
    let dep = str_field(&deployment, "id");
    let run = send(
        server
            .client()
            .post(server.api("/runs"))
            .json(&json!({"deployment_id": dep, "input": {"n": 3}})),
    )
    .await;
    server.expect(&run, 201, "run");
    let got = receiver.wait_for("/declared", 1, ARRIVAL_TIMEOUT).await;
    assert_signed(&got[0], &secret);
    receiver.wait_for("/success", 1, ARRIVAL_TIMEOUT).await;

    // The next version declares the same hook (kept: same id) and drops on_success_url.
    definition["description"] = json!("v2");
    definition.as_object_mut().unwrap().remove("on_success_url");
    let put = server.put_workflow("notify", definition).await;
    let hooks = put["hooks"].as_array().unwrap();
    assert_eq!(hooks.len(), 1);
    assert_eq!(
        hooks[0]["id"],
        id.as_str(),
        "an unchanged declared hook keeps its id"
    );
    let listed = send(server.client().get(server.api("/hooks"))).await;
    assert_eq!(listed.body["data"].as_array().unwrap().len(), 1);
    send(
        server
            .client()
            .post(server.api("/runs"))
            .json(&json!({"deployment_id": dep, "input": {"n": 4}})),
    )
    .await;
    receiver.wait_for("/declared", 2, ARRIVAL_TIMEOUT).await;
    assert_eq!(
        receiver.requests_to("/success").len(),
        1,
        "the removed hook got nothing more"
    );
}

async fn waiting_and_cancelled_events_are_delivered(backend: Backend) {
    let server = TestServer::start_with(backend, &[PRIVATE, FAST_RETRIES]).await;
    let receiver = Receiver::start().await;
    server
        .put_workflow(
            "review",
            json!({"steps": [{"id": "ok", "type": "approval", "timeout_seconds": 3600}]}),
        )
        .await;
    let deployment = server.deploy("review", "production").await;
    hook(
        &server,
        json!({"scope": "workflow", "workflow": "review", "url": receiver.url("/h"),
               "events": ["run.waiting", "run.cancelled", "run.started"]}),
    )
    .await;
    let reply = send(
        server
            .client()
            .post(server.api("/runs"))
            .json(&json!({"deployment_id": str_field(&deployment, "id")})),
    )
    .await;
    let run_id = str_field(&reply.body, "run_id");
    let got = receiver.wait_for("/h", 2, ARRIVAL_TIMEOUT).await;
    let types: Vec<Value> = got.iter().map(|r| r.json()["type"].clone()).collect();
    assert_eq!(types, [json!("run.started"), json!("run.waiting")]);
    assert_eq!(got[1].json()["data"]["status"], "waiting");
    let cancel = send(
        server
            .client()
            .post(server.api(&format!("/runs/{run_id}/cancel"))),
    )
    .await;
    server.expect(&cancel, 200, "cancel");
    let got = receiver.wait_for("/h", 3, ARRIVAL_TIMEOUT).await;
    let cancelled = got[2].json();
    assert_eq!(cancelled["type"], "run.cancelled");
    assert_eq!(cancelled["data"]["status"], "cancelled");
    assert!(cancelled["data"]["finished_at"].is_string());
}

/// Every event type reaches a hook of each scope: three runs of an approval workflow — approved
/// (`completed`), rejected (`failed`), cancelled — each with its own run-scoped hook.
async fn every_event_type_reaches_each_scope(backend: Backend) {
    let server = TestServer::start_with(backend, &[PRIVATE, FAST_RETRIES]).await;
    let receiver = Receiver::start().await;
    server
        .put_workflow(
            "review",
            json!({"steps": [{"id": "ok", "type": "approval", "timeout_seconds": 3600}]}),
        )
        .await;
    let deployment = server.deploy("review", "production").await;
    let dep = str_field(&deployment, "id");
    let all = [
        "run.started",
        "run.waiting",
        "run.completed",
        "run.failed",
        "run.cancelled",
    ];
    hook(
        &server,
        json!({"scope": "workflow", "workflow": "review", "url": receiver.url("/w"), "events": all}),
    )
    .await;
    hook(
        &server,
        json!({"scope": "deployment", "deployment_id": dep, "url": receiver.url("/d"), "events": all}),
    )
    .await;
    let mut runs = Vec::new();
    for (i, end) in ["approve", "reject", "cancel"].into_iter().enumerate() {
        let path = format!("/r{i}");
        let reply = send(server.client().post(server.api("/runs")).json(&json!({
            "deployment_id": dep, "hooks": [{"url": receiver.url(&path), "events": all}]
        })))
        .await;
        server.expect(&reply, 201, "run with a hook");
        let run_id = str_field(&reply.body, "run_id");
        let run = server
            .wait_for_run_status(&run_id, "waiting", ARRIVAL_TIMEOUT)
            .await;
        let review = str_field(&run["waiting_payload"], "review_url");
        let decided = match end {
            "cancel" => {
                send(
                    server
                        .client()
                        .post(server.api(&format!("/runs/{run_id}/cancel"))),
                )
                .await
            }
            decision => {
                send(
                    server
                        .plain()
                        .post(format!("{review}/{decision}"))
                        .json(&json!({})),
                )
                .await
            }
        };
        assert_eq!(decided.status, 200, "{end}: {}", decided.text);
        runs.push((path, run_id));
    }
    let expected = [
        ["run.started", "run.waiting", "run.completed"],
        ["run.started", "run.waiting", "run.failed"],
        ["run.started", "run.waiting", "run.cancelled"],
    ];
    for ((path, run_id), types) in runs.iter().zip(expected) {
        let got = receiver.wait_for(path, 3, ARRIVAL_TIMEOUT).await;
        let seen: Vec<String> = got.iter().map(|r| str_field(&r.json(), "type")).collect();
        assert_eq!(seen, types, "run scope {path}");
        assert!(
            got.iter()
                .all(|r| r.json()["data"]["run_id"] == run_id.as_str())
        );
    }
    for scope in ["/w", "/d"] {
        let got = receiver.wait_for(scope, 9, ARRIVAL_TIMEOUT).await;
        let mut seen: Vec<String> = got.iter().map(|r| str_field(&r.json(), "type")).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 5, "{scope} got every event type: {seen:?}");
    }
}

async fn a_failing_receiver_gets_the_same_webhook_id_until_it_succeeds(backend: Backend) {
    let server = TestServer::start_with(backend, &[PRIVATE, FAST_RETRIES]).await;
    let receiver = Receiver::start().await;
    receiver.reply("/flaky", 503, json!({"down": true}));
    let webhook = server
        .setup_webhook(stepless(), json!({"rate_limit_per_minute": 0}))
        .await;
    let h = hook(
        &server,
        json!({"scope": "workflow", "workflow": "notify", "url": receiver.url("/flaky"),
               "events": ["run.completed"]}),
    )
    .await;
    let reply = send(server.plain().post(&webhook.url).json(&json!({"n": 1}))).await;
    server.expect(&reply, 201, "webhook");
    receiver.wait_for("/flaky", 2, ARRIVAL_TIMEOUT).await;
    receiver.reply("/flaky", 200, json!({"ok": true}));
    let got = receiver.wait_for("/flaky", 3, ARRIVAL_TIMEOUT).await;
    let ids: HashSet<&str> = got.iter().filter_map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids.len(), 1, "the same webhook-id on every attempt");
    let id = str_field(&h, "id");
    let log = wait_deliveries(&server, &format!("/hooks/{id}/deliveries"), |l| {
        l.first().is_some_and(|d| d["status"] == "delivered")
    })
    .await;
    let codes: Vec<Value> = log[0]["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status_code"].clone())
        .collect();
    assert_eq!(codes[..2], [json!(503), json!(503)]);
    assert_eq!(codes.last(), Some(&json!(200)));
    assert_eq!(
        log[0]["attempt_log"][0]["response_body"],
        r#"{"down":true}"#
    );

    // A manual retry sends it again, with the same id.
    let dlv = str_field(&log[0], "id");
    let retried = send(
        server
            .client()
            .post(server.api(&format!("/deliveries/{dlv}/retry"))),
    )
    .await;
    server.expect(&retried, 200, "retry");
    let got = receiver
        .wait_for("/flaky", codes.len() + 1, ARRIVAL_TIMEOUT)
        .await;
    assert_eq!(
        got.last().unwrap().header("webhook-id"),
        got[0].header("webhook-id")
    );
}

async fn a_hanging_receiver_does_not_delay_another(backend: Backend) {
    let server = TestServer::start_with(backend, &[PRIVATE, FAST_RETRIES]).await;
    let receiver = Receiver::start().await;
    receiver.hold("/slow");
    let webhook = server
        .setup_webhook(stepless(), json!({"rate_limit_per_minute": 0}))
        .await;
    for path in ["/slow", "/fast"] {
        hook(
            &server,
            json!({"scope": "workflow", "workflow": "notify", "url": receiver.url(path),
                   "events": ["run.completed"]}),
        )
        .await;
    }
    // More events than a node sends at once (256): were the slow receiver's deliveries let take
    // every slot, the fast receiver's would wait for them. Each receiver gets a bounded share.
    const EVENTS: usize = 300;
    for n in 0..EVENTS {
        let reply = send(server.plain().post(&webhook.url).json(&json!({"n": n}))).await;
        server.expect(&reply, 201, "webhook");
    }
    // Every event reaches the fast receiver while the slow one holds its requests.
    receiver
        .wait_for("/fast", EVENTS, Duration::from_secs(20))
        .await;
    let held = receiver.requests_to("/slow").len();
    assert!(
        held <= 64,
        "the slow receiver holds {held} sends at once (at most 64 per receiver)"
    );
    receiver.release();
    receiver.wait_for("/slow", EVENTS, ARRIVAL_TIMEOUT).await;
}

async fn a_private_address_is_refused_with_a_visible_error(backend: Backend) {
    let server = TestServer::start(backend).await;
    let receiver = Receiver::start().await;
    let webhook = server
        .setup_webhook(stepless(), json!({"rate_limit_per_minute": 0}))
        .await;
    let h = hook(
        &server,
        json!({"scope": "workflow", "workflow": "notify", "url": receiver.url("/private"),
               "events": ["run.completed"]}),
    )
    .await;
    send(server.plain().post(&webhook.url).json(&json!({"n": 1}))).await;
    let id = str_field(&h, "id");
    let log = wait_deliveries(&server, &format!("/hooks/{id}/deliveries"), |l| {
        l.first().is_some_and(|d| d["status"] == "failed")
    })
    .await;
    let error = log[0]["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("127.0.0.1"), "{error}");
    assert!(receiver.requests().is_empty(), "nothing was sent");
    assert!(
        server.logs().contains("event delivery failed for good"),
        "{}",
        server.logs()
    );
}

async fn every_event_arrives_after_a_sigkill_and_a_receiver_outage(backend: Backend) {
    let config = ServerConfig::new(backend).with_env(&[PRIVATE, FAST_RETRIES]);
    let mut server = TestServer::start_config(config).await;
    let receiver = Receiver::start().await;
    receiver.reply("/down", 503, json!({}));
    let webhook = server
        .setup_webhook(stepless(), json!({"rate_limit_per_minute": 0}))
        .await;
    hook(
        &server,
        json!({"scope": "workflow", "workflow": "notify", "url": receiver.url("/down"),
               "events": ["run.started", "run.completed"]}),
    )
    .await;
    let mut runs = HashSet::new();
    for n in 0..20 {
        let reply = send(server.plain().post(&webhook.url).json(&json!({"n": n}))).await;
        server.expect(&reply, 201, "webhook");
        runs.insert(str_field(&reply.body, "run_id"));
    }
    receiver.wait_for("/down", 5, ARRIVAL_TIMEOUT).await;
    server.kill();
    receiver.reply("/down", 200, json!({}));
    server.restart().await;
    // Every event of every acknowledged run arrives (at least once), with its one id.
    let deadline = Instant::now() + ARRIVAL_TIMEOUT * 2;
    loop {
        let ok: HashMap<String, Value> = receiver
            .requests_to("/down")
            .iter()
            .map(Received::json)
            .map(|b| (str_field(&b, "id"), b))
            .collect();
        let per_run: HashSet<(String, String)> = ok
            .values()
            .map(|b| (str_field(&b["data"], "run_id"), str_field(b, "type")))
            .collect();
        if per_run.len() == 40 {
            assert!(per_run.iter().all(|(run, _)| runs.contains(run)));
            assert_eq!(ok.len(), 40, "one event id per event");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of 40 events arrived\n{}",
            per_run.len(),
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn two_nodes_send_each_event_once(backend: Backend) {
    let config = ServerConfig::new(backend).with_env(&[PRIVATE, FAST_RETRIES]);
    let nodes = TestServer::start_cluster(config, 2).await;
    let receiver = Receiver::start().await;
    let webhook = nodes[0]
        .setup_webhook(stepless(), json!({"rate_limit_per_minute": 0}))
        .await;
    hook(
        &nodes[1],
        json!({"scope": "deployment", "deployment_id": webhook.deployment_id,
               "url": receiver.url("/both"), "events": ["run.completed"]}),
    )
    .await;
    for n in 0..60 {
        let node = &nodes[n % 2];
        let url = node.webhook_url(&webhook.token);
        let reply = send(node.plain().post(url).json(&json!({"n": n}))).await;
        node.expect(&reply, 201, "webhook");
    }
    receiver.wait_for("/both", 60, ARRIVAL_TIMEOUT).await;
    // Give a duplicate a moment to show up, then count.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = receiver.requests_to("/both");
    let ids: HashSet<&str> = got.iter().filter_map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids.len(), 60);
    assert_eq!(got.len(), 60, "no event was sent twice");
}

triggerd_tests::e2e_tests!(
    events_at_every_scope_are_signed_and_shaped_per_spec,
    hooks_declared_in_a_definition_follow_its_versions,
    waiting_and_cancelled_events_are_delivered,
    every_event_type_reaches_each_scope,
    a_failing_receiver_gets_the_same_webhook_id_until_it_succeeds,
    a_hanging_receiver_does_not_delay_another,
    a_private_address_is_refused_with_a_visible_error,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    every_event_arrives_after_a_sigkill_and_a_receiver_outage,
);

/// Several nodes: PostgreSQL only.
mod cluster {
    pub(super) use super::two_nodes_send_each_event_once;

    triggerd_tests::postgres_tests!(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        two_nodes_send_each_event_once,
    );
}
