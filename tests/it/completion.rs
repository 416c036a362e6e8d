//! How a webhook run of a workflow without steps completes (SPEC 2 "No steps"): stored
//! `completed` by the ingest write itself when its output does not read `context`, otherwise
//! finished by the run worker — the same run object either way. A workflow with steps starts
//! `pending` and the worker runs its steps.

use serde_json::{Value, json};
use triggerd_tests::{Backend, RUN_TIMEOUT, TestServer, send, str_field};

use crate::steps::{ARRIVAL_TIMEOUT, Receiver, STEP_RUN_TIMEOUT, STEP_SETTINGS};

/// Posts `body` to the webhook and returns the run id of its 201.
async fn post(server: &TestServer, url: &str, body: Value) -> String {
    let reply = send(server.plain().post(url).json(&body)).await;
    server.expect(&reply, 201, "webhook");
    assert_eq!(
        reply.body["status"], "pending",
        "the 201 body is SPEC 4.5's"
    );
    str_field(&reply.body, "run_id")
}

/// The fields every finished step-less run has, whichever path finished it.
fn assert_completed_shape(run: &Value) {
    assert_eq!(run["status"], "completed", "{run:#}");
    assert_eq!(run["error"], Value::Null, "{run:#}");
    assert_eq!(run["step_executions"], json!([]), "{run:#}");
    assert_eq!(run["context"], json!({}), "{run:#}");
    assert_eq!(run["waiting_reason"], Value::Null, "{run:#}");
    assert_eq!(run["waiting_payload"], Value::Null, "{run:#}");
    assert_eq!(run["waiting_expires_at"], Value::Null, "{run:#}");
    let (created, started, finished) = (
        str_field(run, "created_at"),
        str_field(run, "started_at"),
        str_field(run, "finished_at"),
    );
    // RFC 3339 instants of one format compare as text.
    assert!(created <= started, "{run:#}");
    assert!(started <= finished, "{run:#}");
}

/// The run object with the fields that differ between two runs (ids, instants, values) removed.
fn shape(run: &Value) -> Vec<String> {
    let mut keys: Vec<String> = run.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

async fn stepless_run_is_completed_when_the_webhook_answers(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = server
        .setup_webhook(
            json!({
                "name": "at-ingest",
                "inputs": {"email": {"type": "string", "required": true}},
                "output": {
                    "customer": "{{ input.email }}",
                    "via": "{{ trigger.method }}",
                    "run": "{{ run.id }}",
                    "deployment": "{{ deployment.id }}",
                    "text": "from {{ input.email }}"
                }
            }),
            json!({}),
        )
        .await;
    let run_id = post(&server, &hook.url, json!({"email": "a@example.com"})).await;
    // No waiting: the run was committed completed before the 201.
    let run = server.get_run(&run_id).await;
    assert_completed_shape(&run);
    assert_eq!(
        run["final_output"],
        json!({
            "customer": "a@example.com",
            "via": "POST",
            "run": run_id,
            "deployment": run["deployment_id"],
            "text": "from a@example.com"
        })
    );
    assert_eq!(run["input"], json!({"email": "a@example.com"}));
    assert_eq!(
        run["trigger_input"]["body"],
        json!({"email": "a@example.com"})
    );

    // Without an output the final output is the input.
    let plain = server
        .setup_webhook(
            json!({"name": "no-output", "inputs": {"n": {"type": "integer"}}}),
            json!({}),
        )
        .await;
    let run_id = post(&server, &plain.url, json!({"n": 7})).await;
    let plain_run = server.get_run(&run_id).await;
    assert_completed_shape(&plain_run);
    assert_eq!(plain_run["final_output"], json!({"n": 7}));
    assert_eq!(shape(&plain_run), shape(&run));

    // Counted like a run the worker finished.
    let metrics = send(server.plain().get(format!("{}/metrics", server.base_url()))).await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .text
            .contains("triggerd_runs_finished_total{status=\"completed\"} 2"),
        "{}",
        metrics.text
    );
    assert!(
        metrics
            .text
            .contains("triggerd_runs{status=\"completed\"} 2"),
        "{}",
        metrics.text
    );
}

async fn output_reading_context_sees_the_context_when_the_run_finishes(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = server
        .setup_webhook(
            json!({
                "name": "with-context",
                "inputs": {"email": {"type": "string", "required": true}},
                "output": {"customer": "{{ input.email }}", "token": "{{ context.crm_token }}"}
            }),
            json!({}),
        )
        .await;
    let context_url = server.api(&format!("/deployments/{}/context", hook.deployment_id));
    for token in ["t-1", "t-2"] {
        let patched = send(
            server
                .client()
                .patch(&context_url)
                .json(&json!({"crm_token": token})),
        )
        .await;
        server.expect(&patched, 200, "patch context");
        let run_id = post(&server, &hook.url, json!({"email": "a@example.com"})).await;
        let run = server
            .wait_for_run_status(&run_id, "completed", RUN_TIMEOUT)
            .await;
        assert_completed_shape(&run);
        assert_eq!(
            run["final_output"],
            json!({"customer": "a@example.com", "token": token})
        );
    }

    // The same run object as a run completed at ingest.
    let fast = server
        .setup_webhook(
            json!({
                "name": "without-context",
                "inputs": {"email": {"type": "string", "required": true}},
                "output": {"customer": "{{ input.email }}"}
            }),
            json!({}),
        )
        .await;
    let fast_id = post(&server, &fast.url, json!({"email": "a@example.com"})).await;
    let fast_run = server.get_run(&fast_id).await;
    let slow_id = post(&server, &hook.url, json!({"email": "a@example.com"})).await;
    let slow_run = server
        .wait_for_run_status(&slow_id, "completed", RUN_TIMEOUT)
        .await;
    assert_completed_shape(&fast_run);
    assert_eq!(shape(&fast_run), shape(&slow_run));
    for same in ["source", "input", "context", "step_executions", "error"] {
        assert_eq!(fast_run[same], slow_run[same], "{same}");
    }
}

async fn stepless_output_that_does_not_render_fails_with_template_error(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = server
        .setup_webhook(
            json!({"name": "broken", "output": {"x": "{{ trigger.body.missing }}"}}),
            json!({}),
        )
        .await;
    let run_id = post(&server, &hook.url, json!({})).await;
    let run = server
        .wait_for_run_status(&run_id, "failed", RUN_TIMEOUT)
        .await;
    assert_eq!(run["error"]["code"], "template_error", "{run:#}");
    assert_eq!(run["final_output"], Value::Null, "{run:#}");
}

async fn run_of_a_workflow_with_steps_starts_pending(backend: Backend) {
    // The step calls a local receiver that answers only when told to, so the run is certainly
    // unfinished while it is looked at.
    let receiver = Receiver::start().await;
    receiver.hold("/hold");
    let server = TestServer::start_with(backend, &STEP_SETTINGS).await;
    let hook = server
        .setup_webhook(
            json!({
                "name": "with-steps",
                "inputs": {"a": {"type": "integer"}},
                "steps": [{"id": "call", "type": "http",
                           "request": {"method": "POST", "url": receiver.url("/hold"), "body": {}}}],
                "output": {"x": "{{ input.a }}"}
            }),
            json!({}),
        )
        .await;
    // Stored pending: the ingest write does not run steps.
    let run_id = post(&server, &hook.url, json!({"a": 1})).await;
    let run = server.get_run(&run_id).await;
    assert!(
        matches!(run["status"].as_str(), Some("pending" | "running")),
        "{run:#}"
    );
    assert_eq!(run["finished_at"], Value::Null, "{run:#}");
    assert_eq!(run["final_output"], Value::Null, "{run:#}");

    // The worker took it: running, with its step in flight.
    receiver.wait_for("/hold", 1, ARRIVAL_TIMEOUT).await;
    let run = server.get_run(&run_id).await;
    assert_eq!(run["status"], "running", "{run:#}");
    str_field(&run, "started_at");
    // Its step's execution is recorded while it runs.
    assert_eq!(run["step_executions"][0]["step_id"], "call", "{run:#}");
    assert_eq!(run["step_executions"][0]["status"], "running", "{run:#}");
    assert_eq!(
        run["step_executions"][0]["finished_at"],
        Value::Null,
        "{run:#}"
    );
    assert_eq!(run["finished_at"], Value::Null, "{run:#}");
    assert_eq!(run["final_output"], Value::Null, "{run:#}");

    receiver.release();
    let run = server
        .wait_for_run_status(&run_id, "completed", STEP_RUN_TIMEOUT)
        .await;
    assert_eq!(run["final_output"], json!({"x": 1}), "{run:#}");
    assert_eq!(run["step_executions"][0]["status"], "completed", "{run:#}");
}

triggerd_tests::e2e_tests!(
    stepless_run_is_completed_when_the_webhook_answers,
    output_reading_context_sees_the_context_when_the_run_finishes,
    stepless_output_that_does_not_render_fails_with_template_error,
    run_of_a_workflow_with_steps_starts_pending,
);
