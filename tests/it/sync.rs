//! Sync webhook responses (SPEC 4.5, `response.mode = "sync"`): the request waits for its run and
//! answers with its outcome — 200 `final_output`, 400 the run's error, 202 with `Location` at the
//! timeout or at shutdown — and the node's waiting places are bounded. The cross-node wake-up
//! (a run finished on another node of a PostgreSQL cluster) is in `cluster.rs`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use triggerd_tests::{Backend, Reply, TestServer, Webhook, send, str_field};

use crate::steps::STEP_RUN_TIMEOUT;

/// Far longer than any answer of these tests takes: a request still waiting at it is a bug.
const LONG_TIMEOUT: u64 = 120;

/// A workflow whose run parks at an `approval` step, so that a test decides when it finishes.
fn review_workflow() -> Value {
    json!({
        "name": "review",
        "inputs": {"note": {"type": "string"}},
        "steps": [{"id": "ok", "type": "approval"}],
        "output": {"note": "{{ input.note }}", "decision": "{{ steps.ok.output.approved }}"}
    })
}

fn sync_config(timeout_seconds: u64) -> Value {
    json!({"response": {"mode": "sync", "timeout_seconds": timeout_seconds}})
}

/// Sends `{"note": note}` to the webhook in a task of its own; the handle yields the reply.
fn send_in_background(
    server: &TestServer,
    hook: &Webhook,
    note: &str,
) -> tokio::task::JoinHandle<Reply> {
    let request = server
        .plain()
        .post(&hook.url)
        .json(&json!({"note": note}))
        .timeout(Duration::from_secs(LONG_TIMEOUT + 30));
    tokio::spawn(send(request))
}

/// Waits until the trigger's first run is parked at its approval; returns it.
async fn parked(server: &TestServer, trigger_id: &str) -> Value {
    let deadline = Instant::now() + STEP_RUN_TIMEOUT;
    loop {
        if let Some(run) = server.runs_of_trigger(trigger_id).await.first() {
            let run = server.get_run(&str_field(run, "id")).await;
            if run["status"] == "waiting" {
                return run;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no run of {trigger_id} parked within {STEP_RUN_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// POSTs `body` to one of a parked run's approval URLs (`approve_url`, `reject_url`).
async fn decide(server: &TestServer, run: &Value, which: &str, body: Value) {
    let url = str_field(&run["waiting_payload"], which);
    let reply = send(server.plain().post(&url).json(&body)).await;
    server.expect(&reply, 200, which);
}

/// The activity row of `request_id`, once its status code is `status` (a sync answer is recorded
/// just after it is sent).
async fn activity_row_with(
    server: &TestServer,
    trigger_id: &str,
    request_id: &str,
    status: u16,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = server.trigger_requests(trigger_id).await;
        let row = rows.iter().find(|r| r["id"] == request_id).cloned();
        if let Some(row) = row
            && row["status_code"] == status
        {
            return row;
        }
        assert!(
            Instant::now() < deadline,
            "request {request_id} not logged with {status}: {rows:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn a_run_finished_by_the_write_is_answered_200_with_its_output(backend: Backend) {
    let server = TestServer::start(backend).await;
    // Through the API.
    let hook = server
        .setup_webhook(
            json!({
                "name": "echo",
                "inputs": {"note": {"type": "string", "required": true}},
                "output": {"echo": "{{ input.note }}", "n": 3}
            }),
            json!({"response": {"mode": "sync"}}),
        )
        .await;
    assert_eq!(
        hook.trigger["config"]["response"],
        json!({"mode": "sync", "timeout_seconds": 30})
    );
    let reply = send(server.plain().post(&hook.url).json(&json!({"note": "hi"}))).await;
    server.expect(&reply, 200, "sync webhook");
    assert_eq!(reply.body, json!({"echo": "hi", "n": 3}), "{}", reply.text);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let row = activity_row_with(&server, &hook.id, &reply.request_id(), 200).await;
    assert_eq!(row["outcome"], "accepted", "{row:#}");
    let runs = server.runs_of_trigger(&hook.id).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["status"], "completed");
    // Invalid input is refused as in async mode, before any run.
    let refused = send(server.plain().post(&hook.url).json(&json!({}))).await;
    refused.assert_error(422, "invalid_input");

    // Declared in a definition, the same configuration means the same (issue 17: it was
    // accepted there and answered as async).
    server
        .put_workflow(
            "declared",
            json!({
                "name": "declared",
                "inputs": {"note": {"type": "string"}},
                "output": {"declared": "{{ input.note }}"},
                "triggers": [{"name": "inbound", "trigger_type": "webhook",
                              "config": {"response": {"mode": "sync", "timeout_seconds": 5}}}]
            }),
        )
        .await;
    let dep = server.deploy("declared", "production").await;
    let listed = send(
        server
            .client()
            .get(server.api(&format!("/deployments/{}/triggers", str_field(&dep, "id")))),
    )
    .await;
    server.expect(&listed, 200, "list triggers");
    let url = str_field(&listed.body["data"][0], "url");
    let reply = send(server.plain().post(&url).json(&json!({"note": "yes"}))).await;
    server.expect(&reply, 200, "declared sync webhook");
    assert_eq!(reply.body, json!({"declared": "yes"}), "{}", reply.text);
}

async fn the_request_waits_for_its_steps_and_answers_200_or_400(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = server
        .setup_webhook(review_workflow(), sync_config(LONG_TIMEOUT))
        .await;

    // Approved: the worker finishes the run; the request answers with its output.
    let waiting = send_in_background(&server, &hook, "ship it");
    let run = parked(&server, &hook.id).await;
    assert!(!waiting.is_finished(), "answered before the run finished");
    let started = Instant::now();
    decide(&server, &run, "approve_url", json!({})).await;
    let reply = waiting.await.expect("the request task");
    server.expect(&reply, 200, "sync webhook, approved");
    assert_eq!(
        reply.body,
        json!({"note": "ship it", "decision": true}),
        "{}",
        reply.text
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "woken {:?} after the approval",
        started.elapsed()
    );
    activity_row_with(&server, &hook.id, &reply.request_id(), 200).await;
    let runs = server.runs_of_trigger(&hook.id).await;
    assert_eq!(runs[0]["status"], "completed", "{runs:#?}");

    // Rejected: the run fails; 400 with its error and id.
    let second = server
        .setup_webhook(
            json!({"name": "review-2", "inputs": {"note": {"type": "string"}},
                   "steps": [{"id": "ok", "type": "approval"}]}),
            sync_config(LONG_TIMEOUT),
        )
        .await;
    let waiting = send_in_background(&server, &second, "no");
    let run = parked(&server, &second.id).await;
    decide(&server, &run, "reject_url", json!({"comment": "not today"})).await;
    let reply = waiting.await.expect("the request task");
    reply.assert_error(400, "rejected");
    assert_eq!(reply.body["run_id"], run["id"], "{}", reply.text);
    assert!(
        reply.body["error"]
            .as_str()
            .is_some_and(|e| e.contains("not today")),
        "{}",
        reply.text
    );
    activity_row_with(&server, &second.id, &reply.request_id(), 400).await;
}

async fn a_run_still_going_at_the_timeout_is_answered_202_with_its_location(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = server
        .setup_webhook(review_workflow(), sync_config(1))
        .await;
    let started = Instant::now();
    let reply = send(
        server
            .plain()
            .post(&hook.url)
            .json(&json!({"note": "later"})),
    )
    .await;
    let waited = started.elapsed();
    server.expect(&reply, 202, "sync webhook past its timeout");
    assert!(
        waited >= Duration::from_millis(950) && waited < Duration::from_secs(10),
        "answered after {waited:?}"
    );
    let run_id = str_field(&reply.body, "run_id");
    assert_eq!(reply.body["status"], "waiting", "{}", reply.text);
    assert_eq!(
        reply.header("location"),
        Some(format!("/api/v1/runs/{run_id}").as_str())
    );
    let row = activity_row_with(&server, &hook.id, &reply.request_id(), 202).await;
    assert_eq!(row["run_id"], run_id.as_str(), "{row:#}");
    // The run goes on: it can still be decided.
    let run = parked(&server, &hook.id).await;
    decide(&server, &run, "approve_url", json!({})).await;
    server
        .wait_for_run_status(&run_id, "completed", STEP_RUN_TIMEOUT)
        .await;
}

async fn waiting_places_are_bounded_and_shutdown_answers_202(backend: Backend) {
    let mut server = TestServer::start_with(backend, &[("TRIGGERD_MAX_SYNC_WAITS", "1")]).await;
    let hook = server
        .setup_webhook(review_workflow(), sync_config(LONG_TIMEOUT))
        .await;
    let first = send_in_background(&server, &hook, "first");
    parked(&server, &hook.id).await;
    // The one place is taken: the next request is answered as in async mode, and its run starts.
    let second = send(
        server
            .plain()
            .post(&hook.url)
            .json(&json!({"note": "second"})),
    )
    .await;
    server.expect(&second, 201, "sync webhook with no place left");
    assert_eq!(
        second.header("triggerd-sync"),
        Some("skipped-too-many-waiting")
    );
    assert_eq!(second.body["status"], "pending", "{}", second.text);
    let metrics = send(server.plain().get(format!("{}/metrics", server.base_url()))).await;
    assert!(
        metrics.text.contains("triggerd_sync_waiting 1"),
        "{}",
        metrics.text
    );
    assert!(
        metrics
            .text
            .contains("triggerd_sync_responses_total{result=\"skipped\"} 1"),
        "{}",
        metrics.text
    );

    // Shutdown answers the waiting request (202) instead of dropping it.
    tokio::task::block_in_place(|| server.terminate(Duration::from_secs(20)));
    let reply = first.await.expect("the request task");
    assert_eq!(reply.status, 202, "{}", reply.text);
    let run_id = str_field(&reply.body, "run_id");
    assert_eq!(
        reply.header("location"),
        Some(format!("/api/v1/runs/{run_id}").as_str())
    );
    assert_eq!(reply.body["status"], "waiting", "{}", reply.text);
}

triggerd_tests::e2e_tests!(
    a_run_finished_by_the_write_is_answered_200_with_its_output,
    the_request_waits_for_its_steps_and_answers_200_or_400,
    a_run_still_going_at_the_timeout_is_answered_202_with_its_location,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    waiting_places_are_bounded_and_shutdown_answers_202,
);
