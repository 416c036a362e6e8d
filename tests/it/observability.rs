//! `/metrics` and the bounded activity log.

use std::time::{Duration, Instant};

use serde_json::json;
use triggerd_tests::{Backend, TestServer, order_workflow, send};

async fn metrics_count_webhooks_by_outcome_and_runs_by_status(backend: Backend) {
    let server = TestServer::start_with(backend, &[("RUST_LOG", "info")]).await;
    let hook = server.setup_webhook(order_workflow(), json!({})).await;
    let post = |body: &'static str| {
        server
            .plain()
            .post(&hook.url)
            .header("content-type", "application/json")
            .body(body)
    };
    let accepted = send(post(r#"{"email": "a@example.com", "value": 5}"#)).await;
    server.expect(&accepted, 201, "accepted webhook");
    server.expect(&send(post("{nope")).await, 400, "malformed webhook");
    let unknown = format!("{}/api/webhooks/wht_{}", server.base_url(), "A".repeat(43));
    server.expect(
        &send(server.plain().post(&unknown).body("{}")).await,
        404,
        "unknown token",
    );
    let run_id = accepted.body["run_id"].as_str().unwrap().to_owned();
    server
        .wait_for_run_status(&run_id, "completed", Duration::from_secs(10))
        .await;

    // No auth: Prometheus scrapes it.
    let metrics = send(server.plain().get(format!("{}/metrics", server.base_url()))).await;
    assert_eq!(metrics.status, 200);
    let text = metrics.text;
    for line in [
        "triggerd_webhook_requests_total{outcome=\"accepted\"} 1",
        "triggerd_webhook_requests_total{outcome=\"malformed\"} 1",
        "triggerd_webhook_requests_total{outcome=\"unknown_token\"} 1",
        "triggerd_runs{status=\"completed\"} 1",
        "triggerd_runs{status=\"pending\"} 0",
        "triggerd_runs_finished_total{status=\"completed\"} 1",
        "triggerd_webhook_ingest_seconds_count 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in:\n{text}"
        );
    }
    assert!(
        text.contains("triggerd_store_batch_size_bucket{le=\"+Inf\"}"),
        "{text}"
    );
    let commits: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("triggerd_store_commits_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        commits >= 3,
        "the writer committed the setup, the requests and the run: {commits}\n{text}"
    );
    // stderr is a pipe here: plain text, no ANSI colour codes (issue 13).
    let logs = server.logs();
    assert!(logs.contains("INFO"), "{logs}");
    assert!(
        !logs.contains('\u{1b}'),
        "colour codes in a piped log: {logs:?}"
    );
}

async fn activity_log_keeps_only_the_newest_rows(backend: Backend) {
    let server = TestServer::start_with(backend, &[("TRIGGERD_ACTIVITY_RETENTION", "20")]).await;
    let hook = server
        .setup_webhook(order_workflow(), json!({"rate_limit_per_minute": 0}))
        .await;
    let mut last_request_id = String::new();
    for _ in 0..60 {
        let reply = send(
            server
                .plain()
                .post(&hook.url)
                .header("content-type", "application/json")
                .body("{nope"),
        )
        .await;
        server.expect(&reply, 400, "malformed webhook");
        last_request_id = reply.request_id();
    }
    // Trimming runs in the background after every 10 rows; wait for the last one.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = server.trigger_requests(&hook.id).await;
        if rows.len() == 20 {
            assert_eq!(
                rows[0]["id"],
                json!(last_request_id),
                "the newest row is kept"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "activity log still has {} rows",
            rows.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn json_logs_are_one_object_per_line_and_name_each_failed_run(backend: Backend) {
    let server = TestServer::start_with(
        backend,
        &[("TRIGGERD_LOG_FORMAT", "json"), ("RUST_LOG", "info")],
    )
    .await;
    // The output reads a body field that is never sent: the run fails with `template_error`.
    let hook = server
        .setup_webhook(
            json!({
                "name": "log-failures",
                "inputs": {"email": {"type": "string"}},
                "output": {"missing": "{{ trigger.body.nope }}"}
            }),
            json!({}),
        )
        .await;
    let secret_body = "body-value-that-must-not-be-logged";
    let reply = send(
        server
            .plain()
            .post(&hook.url)
            .json(&json!({"email": secret_body})),
    )
    .await;
    server.expect(&reply, 201, "webhook");
    let run_id = reply.body["run_id"].as_str().unwrap().to_owned();
    server
        .wait_for_run_status(&run_id, "failed", Duration::from_secs(10))
        .await;

    // The line is written as the run fails; wait for it rather than assume it is there.
    let deadline = Instant::now() + Duration::from_secs(10);
    let failed = loop {
        let logs = server.logs();
        let line = logs
            .lines()
            .find(|l| l.contains("\"run failed\"") && l.contains(&run_id));
        if let Some(line) = line {
            break (line.to_owned(), logs);
        }
        assert!(
            Instant::now() < deadline,
            "no `run failed` line for {run_id}:\n{logs}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (line, logs) = failed;
    // The harness interleaves the server's stdout as `[stdout] ...` lines; stderr is the log.
    for (i, l) in logs
        .lines()
        .filter(|l| !l.trim_start().starts_with("[stdout]"))
        .enumerate()
    {
        let value: serde_json::Value = serde_json::from_str(l)
            .unwrap_or_else(|e| panic!("log line {i} is not JSON ({e}): {l:?}"));
        assert!(value.is_object(), "log line {i} is not an object: {l}");
        assert!(
            value["level"].is_string() && value["fields"].is_object(),
            "{l}"
        );
    }
    let event: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["level"], json!("INFO"), "{line}");
    let fields = &event["fields"];
    assert_eq!(fields["message"], json!("run failed"), "{line}");
    assert_eq!(fields["run_id"], json!(run_id), "{line}");
    assert_eq!(fields["workflow"], json!("log-failures"), "{line}");
    assert_eq!(fields["code"], json!("template_error"), "{line}");
    assert!(
        fields["error"].as_str().is_some_and(|e| e.contains("nope")),
        "the run's error message names the missing value: {line}"
    );
    assert!(
        !logs.contains(secret_body),
        "a request body reached the log:\n{logs}"
    );
    assert_eq!(
        logs.lines()
            .filter(|l| l.contains("\"run failed\""))
            .count(),
        1,
        "one line per failed run:\n{logs}"
    );
}

triggerd_tests::e2e_tests!(
    json_logs_are_one_object_per_line_and_name_each_failed_run,
    metrics_count_webhooks_by_outcome_and_runs_by_status,
    activity_log_keeps_only_the_newest_rows,
);
