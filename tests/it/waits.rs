//! Parked runs (SPEC 6): a `wait_for_webhook` step resumed through its resume URL, an `approval`
//! step decided through its HTML review page (as a browser would) or as JSON, a waiting run
//! cancelled, and a wait that expires.

use std::time::Duration;

use serde_json::{Value, json};
use triggerd_tests::{Backend, Reply, TestServer, raw_exchange, raw_head, send, str_field};

use crate::steps::{STEP_RUN_TIMEOUT, deploy_definition, start_run};

/// How long an expired wait may take to fail its run.
const EXPIRY_TIMEOUT: Duration = Duration::from_secs(10);

/// The security headers every HTML answer carries.
fn assert_html(reply: &Reply, status: u16, what: &str) {
    assert_eq!(reply.status, status, "{what}: {}", reply.text);
    assert_eq!(
        reply.header("content-type"),
        Some("text/html; charset=utf-8"),
        "{what}: {:?}",
        reply.headers
    );
    let csp = reply.header("content-security-policy").unwrap_or_default();
    for directive in [
        "default-src 'none'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{what}: CSP {csp:?}");
    }
    assert!(!csp.contains("script-src"), "{what}: CSP {csp:?}");
    assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_eq!(reply.header("referrer-policy"), Some("no-referrer"));
    assert!(
        reply.text.starts_with("<!DOCTYPE html>"),
        "{what}: {}",
        reply.text
    );
    assert!(!reply.text.contains("<script"), "{what}: {}", reply.text);
}

/// The value of attribute `name` of the first `<tag ...>` element in `html`.
fn attribute(html: &str, tag: &str, name: &str) -> String {
    let start = html
        .find(&format!("<{tag}"))
        .unwrap_or_else(|| panic!("no <{tag}> in {html}"));
    let element = &html[start..start + html[start..].find('>').expect("a closed tag")];
    let marker = format!(" {name}=\"");
    let at = element
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} on {element}"))
        + marker.len();
    let end = element[at..].find('"').expect("a closed attribute") + at;
    element[at..end].replace("&amp;", "&")
}

/// POSTs `body` as JSON to `url` without credentials.
async fn post_json(server: &TestServer, url: &str, body: &Value) -> Reply {
    send(server.plain().post(url).json(body)).await
}

/// POSTs `form` (already encoded) as a browser's form submission.
async fn post_form(server: &TestServer, url: &str, form: &str) -> Reply {
    send(
        server
            .plain()
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.to_owned()),
    )
    .await
}

/// A workflow with one `wait_for_webhook` step `cb` (timeout `timeout_seconds`), deployed; the
/// deployment id.
async fn deploy_callback(server: &TestServer, timeout_seconds: u64) -> String {
    deploy_definition(
        server,
        json!({
            "name": "callback",
            "steps": [{"id": "cb", "type": "wait_for_webhook",
                       "timeout_seconds": timeout_seconds, "extract": {"paid": "amount"}}],
            "output": {"paid": "{{ context.paid }}", "body": "{{ steps.cb.output }}"}
        }),
    )
    .await
}

/// A workflow with one `approval` step `ok` and an input `note`, deployed; the deployment id.
async fn deploy_review(server: &TestServer) -> String {
    deploy_definition(
        server,
        json!({
            "name": "review",
            "inputs": {"note": {"type": "string"}},
            "steps": [{"id": "ok", "type": "approval"}],
            "output": {"decision": "{{ steps.ok.output }}"}
        }),
    )
    .await
}

/// Starts a run and waits until it is parked; returns `(run id, run)`.
async fn parked_run(server: &TestServer, deployment_id: &str, input: Value) -> (String, Value) {
    let run_id = start_run(server, deployment_id, input).await;
    let run = server
        .wait_for_run_status(&run_id, "waiting", STEP_RUN_TIMEOUT)
        .await;
    (run_id, run)
}

/// The approval URLs of a run waiting for approval: `(review, approve, reject)`.
fn approval_urls(server: &TestServer, run: &Value) -> (String, String, String) {
    assert_eq!(run["waiting_reason"], "approval", "{run:#}");
    let payload = &run["waiting_payload"];
    let review = str_field(payload, "review_url");
    let prefix = format!("{}/api/approvals/", server.base_url());
    assert!(review.starts_with(&prefix), "{run:#}");
    assert_eq!(
        str_field(payload, "approve_url"),
        format!("{review}/approve")
    );
    assert_eq!(str_field(payload, "reject_url"), format!("{review}/reject"));
    assert!(run["waiting_expires_at"].is_string(), "{run:#}");
    (
        review.clone(),
        format!("{review}/approve"),
        format!("{review}/reject"),
    )
}

async fn wait_for_webhook_resumes_with_the_posted_json(backend: Backend) {
    let server = TestServer::start(backend).await;
    let dep_id = deploy_callback(&server, 600).await;
    let (run_id, run) = parked_run(&server, &dep_id, json!({})).await;
    assert_eq!(run["waiting_reason"], "webhook", "{run:#}");
    let resume_url = str_field(&run["waiting_payload"], "resume_url");
    let prefix = format!("{}/api/resume/", server.base_url());
    assert!(resume_url.starts_with(&prefix), "{run:#}");
    assert!(run["waiting_expires_at"].is_string(), "{run:#}");
    assert_eq!(run["final_output"], Value::Null, "{run:#}");

    // Refusals change nothing: wrong method, malformed JSON, too large, made-up tokens.
    let get = send(server.plain().get(&resume_url)).await;
    get.assert_error(405, "method_not_allowed");
    assert_eq!(get.header("allow"), Some("POST"));
    let malformed = send(
        server
            .plain()
            .post(&resume_url)
            .header("content-type", "application/json")
            .body("{\"amount\": "),
    )
    .await;
    malformed.assert_error(400, "malformed_json");
    assert_eq!(
        malformed.body["error"], "Received malformed JSON payload.",
        "{}",
        malformed.text
    );
    // Over the limit: refused from the Content-Length alone, before the body is sent.
    let path = resume_url
        .strip_prefix(server.base_url())
        .unwrap()
        .to_owned();
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
    // And a chunked body once it grows past the limit.
    let mut chunked = raw_head(
        "POST",
        &path,
        server.addr(),
        &[
            ("Content-Type", "application/json"),
            ("Transfer-Encoding", "chunked"),
        ],
    );
    let chunk = format!("\"{}\"", "x".repeat(262_144));
    chunked.extend_from_slice(format!("{:X}\r\n{chunk}\r\n", chunk.len()).as_bytes());
    raw_exchange(server.addr(), &chunked)
        .await
        .assert_error(413, "payload_too_large");
    let made_up = format!("{prefix}{run_id}.{}", "A".repeat(43));
    post_json(&server, &made_up, &json!({"amount": 1}))
        .await
        .assert_error(404, "not_found");
    post_json(&server, &format!("{prefix}garbage"), &json!({"amount": 1}))
        .await
        .assert_error(404, "not_found");
    let still = server.get_run(&run_id).await;
    assert_eq!(still["status"], "waiting", "{still:#}");
    assert_eq!(
        still["waiting_payload"], run["waiting_payload"],
        "{still:#}"
    );

    let resumed = post_json(&server, &resume_url, &json!({"amount": 12})).await;
    server.expect(&resumed, 200, "resume");
    assert_eq!(
        resumed.body,
        json!({"run_id": run_id, "status": "running"}),
        "{}",
        resumed.text
    );
    resumed.request_id();

    let run = server
        .wait_for_run_status(&run_id, "completed", STEP_RUN_TIMEOUT)
        .await;
    assert_eq!(
        run["final_output"],
        json!({"paid": 12, "body": {"amount": 12}}),
        "{run:#}"
    );
    assert_eq!(run["context"]["paid"], 12, "{run:#}");
    assert_eq!(run["waiting_reason"], Value::Null, "{run:#}");
    assert_eq!(run["waiting_payload"], Value::Null, "{run:#}");
    let execution = run["step_executions"]
        .as_array()
        .and_then(|e| e.last())
        .unwrap_or_else(|| panic!("no step execution: {run:#}"));
    assert_eq!(execution["step_id"], "cb", "{run:#}");
    assert_eq!(execution["status"], "completed", "{run:#}");
    assert_eq!(execution["output"], json!({"amount": 12}), "{run:#}");

    // Once only.
    post_json(&server, &resume_url, &json!({"amount": 13}))
        .await
        .assert_error(409, "conflict");
    post_json(&server, &made_up, &json!({"amount": 1}))
        .await
        .assert_error(404, "not_found");
    post_json(&server, &format!("{prefix}garbage"), &json!({"amount": 1}))
        .await
        .assert_error(404, "not_found");
    let after = server.get_run(&run_id).await;
    assert_eq!(after["final_output"], run["final_output"], "{after:#}");
}

async fn approval_approved_through_the_html_page_as_a_browser_would(backend: Backend) {
    let server = TestServer::start(backend).await;
    let dep_id = deploy_review(&server).await;
    let note = "<script>alert(1)</script> & \"quotes\"";
    let (run_id, run) = parked_run(&server, &dep_id, json!({"note": note})).await;
    let (review, approve, reject) = approval_urls(&server, &run);

    let page = send(server.plain().get(&review)).await;
    assert_html(&page, 200, "review page");
    let html = &page.text;
    assert!(html.contains("<html lang=\"en\">"), "{html}");
    assert!(html.contains("<title>"), "{html}");
    assert!(html.contains("<h1>"), "{html}");
    assert!(html.contains("<label for=\"comment\">"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; \\&quot;quotes\\&quot;"),
        "{html}"
    );
    for shown in [run_id.as_str(), "review", "(version 1)", "<code>ok</code>"] {
        assert!(html.contains(shown), "{shown} not on the page: {html}");
    }
    assert!(
        html.contains(str_field(&run, "waiting_expires_at").as_str()),
        "{html}"
    );
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );
    let action = attribute(html, "form", "action");
    assert!(action.ends_with("/approve"), "{html}");
    assert_eq!(attribute(html, "form", "method"), "post", "{html}");
    assert_eq!(format!("{}{action}", server.base_url()), approve, "{html}");
    let reject_action = html
        .split("formaction=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no reject button with a formaction: {html}"));
    assert_eq!(
        format!("{}{reject_action}", server.base_url()),
        reject,
        "{html}"
    );

    let wrong = send(server.plain().post(&review)).await;
    wrong.assert_error(405, "method_not_allowed");
    assert_eq!(wrong.header("allow"), Some("GET"));

    let decided = post_form(
        &server,
        &format!("{}{action}", server.base_url()),
        "comment=looks+good",
    )
    .await;
    assert_html(&decided, 200, "approve as a form");
    assert!(decided.text.contains("Approved"), "{}", decided.text);
    assert!(decided.text.contains(&run_id), "{}", decided.text);

    let run = server
        .wait_for_run_status(&run_id, "completed", STEP_RUN_TIMEOUT)
        .await;
    assert_eq!(
        run["final_output"],
        json!({"decision": {"approved": true, "comment": "looks good"}}),
        "{run:#}"
    );

    // Decided once: another decision, as JSON or as a form, and the page answer 409.
    post_json(&server, &reject, &json!({"comment": "too late"}))
        .await
        .assert_error(409, "conflict");
    let again = post_form(&server, &approve, "comment=again").await;
    assert_html(&again, 409, "second form decision");
    let page = send(server.plain().get(&review)).await;
    assert_html(&page, 409, "review page once decided");
    assert_eq!(
        server.get_run(&run_id).await["status"],
        "completed",
        "the run stays completed"
    );
}

async fn approval_rejected_fails_the_run(backend: Backend) {
    let server = TestServer::start(backend).await;
    let dep_id = deploy_review(&server).await;
    let (run_id, run) = parked_run(&server, &dep_id, json!({"note": "pay 12"})).await;
    let (review, _approve, reject) = approval_urls(&server, &run);

    // Refused comments and bodies change nothing.
    let long = "x".repeat(4_001);
    post_json(&server, &reject, &json!({"comment": long}))
        .await
        .assert_error(400, "bad_request");
    let malformed = send(
        server
            .plain()
            .post(&reject)
            .header("content-type", "application/json")
            .body("{"),
    )
    .await;
    malformed.assert_error(400, "malformed_json");
    post_json(&server, &reject, &json!({"comment": 5}))
        .await
        .assert_error(400, "bad_request");
    let made_up = format!(
        "{}/api/approvals/{run_id}.{}/reject",
        server.base_url(),
        "A".repeat(43)
    );
    post_json(&server, &made_up, &json!({}))
        .await
        .assert_error(404, "not_found");
    let unknown_page = send(server.plain().get(made_up.trim_end_matches("/reject"))).await;
    assert_html(&unknown_page, 404, "review page of an unknown token");
    assert_eq!(server.get_run(&run_id).await["status"], "waiting");

    let decided = post_json(&server, &reject, &json!({"comment": "wrong amount"})).await;
    server.expect(&decided, 200, "reject");
    assert_eq!(
        decided.body,
        json!({"run_id": run_id, "status": "failed", "decision": "rejected"}),
        "{}",
        decided.text
    );
    let run = server
        .wait_for_run_status(&run_id, "failed", STEP_RUN_TIMEOUT)
        .await;
    assert_eq!(run["error"]["code"], "rejected", "{run:#}");
    let message = str_field(&run["error"], "message");
    assert!(message.contains("wrong amount"), "{run:#}");
    assert_eq!(run["final_output"], Value::Null, "{run:#}");

    let page = send(server.plain().get(&review)).await;
    assert_html(&page, 409, "review page once rejected");
    post_json(&server, &reject, &json!({}))
        .await
        .assert_error(409, "conflict");
}

async fn cancel_a_waiting_run(backend: Backend) {
    let server = TestServer::start(backend).await;
    let dep_id = deploy_callback(&server, 600).await;
    let (run_id, run) = parked_run(&server, &dep_id, json!({})).await;
    let resume_url = str_field(&run["waiting_payload"], "resume_url");

    let cancelled = send(
        server
            .client()
            .post(server.api(&format!("/runs/{run_id}/cancel"))),
    )
    .await;
    server.expect(&cancelled, 200, "cancel a waiting run");
    assert_eq!(cancelled.body["status"], "cancelled", "{}", cancelled.text);
    let run = server.get_run(&run_id).await;
    assert_eq!(run["status"], "cancelled", "{run:#}");

    // The resume URL of a cancelled run is known but closed: 409 (`check` in app/src/waits.rs).
    post_json(&server, &resume_url, &json!({"amount": 1}))
        .await
        .assert_error(409, "conflict");
    assert_eq!(server.get_run(&run_id).await["status"], "cancelled");
}

async fn wait_expiry_fails_the_run_with_wait_timeout(backend: Backend) {
    let server = TestServer::start(backend).await;
    let dep_id = deploy_callback(&server, 1).await;
    let (run_id, run) = parked_run(&server, &dep_id, json!({})).await;
    let resume_url = str_field(&run["waiting_payload"], "resume_url");

    let run = server
        .wait_for_run_status(&run_id, "failed", EXPIRY_TIMEOUT)
        .await;
    assert_eq!(run["error"]["code"], "wait_timeout", "{run:#}");
    assert!(
        str_field(&run["error"], "message").contains("cb"),
        "{run:#}"
    );
    assert_eq!(run["waiting_reason"], Value::Null, "{run:#}");
    post_json(&server, &resume_url, &json!({"amount": 1}))
        .await
        .assert_error(409, "conflict");
}

triggerd_tests::e2e_tests!(
    wait_for_webhook_resumes_with_the_posted_json,
    approval_approved_through_the_html_page_as_a_browser_would,
    approval_rejected_fails_the_run,
    cancel_a_waiting_run,
    wait_expiry_fails_the_run_with_wait_timeout,
);
