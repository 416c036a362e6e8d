//! Webhook payloads (SPEC 4.1), end to end: each kind of body a sender may post, read back as
//! the run's `trigger_input.body` through the runs API, and the refusals of bodies that are too
//! large or malformed (no run; the activity row says why).

use base64::Engine as _;
use serde_json::{Value, json};
use triggerd_tests::{
    Backend, Reply, TestServer, Webhook, raw_exchange, raw_head, send, str_field,
};

/// How long a refused request's activity row may take to appear.
const LOG_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

const BOUNDARY: &str = "----triggerd-test-7MA4YWxkTrZu0gW";

/// A workflow without inputs, to look at `trigger_input` alone.
fn capture_workflow() -> Value {
    json!({"name": "capture"})
}

/// One part of a hand-built `multipart/form-data` body.
struct Part<'a> {
    /// The `Content-Disposition` parameters after `form-data; `.
    disposition: &'a str,
    content_type: Option<&'a str>,
    data: &'a [u8],
}

fn part<'a>(disposition: &'a str, content_type: Option<&'a str>, data: &'a [u8]) -> Part<'a> {
    Part {
        disposition,
        content_type,
        data,
    }
}

/// The raw bytes of a `multipart/form-data` body with [`BOUNDARY`] (RFC 7578).
fn multipart(parts: &[Part<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for p in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        body.extend_from_slice(
            format!("Content-Disposition: form-data; {}\r\n", p.disposition).as_bytes(),
        );
        if let Some(ct) = p.content_type {
            body.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(p.data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn multipart_content_type() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

/// POSTs `body` with `content_type` (none when `None`) to the hook.
async fn post(
    server: &TestServer,
    hook: &Webhook,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Reply {
    let mut request = server.plain().post(&hook.url).body(body);
    if let Some(ct) = content_type {
        request = request.header("content-type", ct);
    }
    send(request).await
}

/// Asserts a 201 and returns the stored run's `trigger_input.body`.
async fn stored_body(server: &TestServer, reply: &Reply, what: &str) -> Value {
    server.expect(reply, 201, what);
    let run = server.get_run(&str_field(&reply.body, "run_id")).await;
    run["trigger_input"]["body"].clone()
}

/// Waits for the activity row of `reply` and returns it.
async fn activity_row(server: &TestServer, hook: &Webhook, reply: &Reply, count: usize) -> Value {
    let rows = server.wait_for_requests(&hook.id, count, LOG_TIMEOUT).await;
    let id = reply.request_id();
    rows.into_iter()
        .find(|row| row["id"] == id.as_str())
        .unwrap_or_else(|| panic!("no activity row {id}"))
}

async fn json_body_is_parsed_with_or_without_a_content_type(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = server.setup_webhook(capture_workflow(), json!({})).await;
    let sent = json!({"order": {"id": 42, "lines": [1, 2]}, "note": "caf\u{e9}", "ok": true});
    let bytes = serde_json::to_vec(&sent).unwrap();
    for content_type in [
        Some("application/json"),
        Some("application/json; charset=utf-8"),
        Some("application/vnd.example+json"),
        None,
    ] {
        let reply = post(&server, &hook, content_type, bytes.clone()).await;
        let body = stored_body(&server, &reply, &format!("JSON as {content_type:?}")).await;
        assert_eq!(body, sent, "content type {content_type:?}");
    }
    assert_eq!(server.runs_of_trigger(&hook.id).await.len(), 4);
}

async fn form_body_becomes_an_object_with_repeated_fields_as_arrays(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = server.setup_webhook(capture_workflow(), json!({})).await;
    let reply = post(
        &server,
        &hook,
        Some("application/x-www-form-urlencoded"),
        b"event=order.created&tag=a&tag=b&tag=c&note=caf%C3%A9+au+lait&empty=".to_vec(),
    )
    .await;
    let body = stored_body(&server, &reply, "form body").await;
    assert_eq!(
        body,
        json!({
            "event": "order.created",
            "tag": ["a", "b", "c"],
            "note": "caf\u{e9} au lait",
            "empty": ""
        })
    );
}

async fn multipart_body_becomes_an_object_of_parts(backend: Backend) {
    let server = TestServer::start(backend).await;
    // A declared input reads the top-level part of the same name, as for a JSON body.
    let hook = server
        .setup_webhook(
            json!({"name": "upload", "inputs": {"event": {"type": "string", "required": true}}}),
            json!({}),
        )
        .await;
    let every_byte: Vec<u8> = (0..=255u8).collect();
    let body = multipart(&[
        part(r#"name="event""#, None, b"order.created"),
        part(
            r#"name="meta""#,
            Some("application/json"),
            br#"{"id": 7, "tags": ["x", "y"]}"#,
        ),
        part(r#"name="tag""#, None, b"first"),
        part(
            r#"name="file"; filename="all-bytes.bin""#,
            Some("application/octet-stream"),
            &every_byte,
        ),
        part(
            r#"name="tag""#,
            Some("text/plain; charset=utf-8"),
            "second \u{2713}".as_bytes(),
        ),
    ]);
    let reply = post(&server, &hook, Some(&multipart_content_type()), body).await;
    server.expect(&reply, 201, "multipart body");
    let run = server.get_run(&str_field(&reply.body, "run_id")).await;
    assert_eq!(run["input"], json!({"event": "order.created"}));
    let body = &run["trigger_input"]["body"];
    let data_base64 = base64::engine::general_purpose::STANDARD.encode(&every_byte);
    assert_eq!(
        *body,
        json!({
            "event": "order.created",
            "meta": {"id": 7, "tags": ["x", "y"]},
            "tag": ["first", "second \u{2713}"],
            "file": {
                "filename": "all-bytes.bin",
                "content_type": "application/octet-stream",
                "size": 256,
                "data_base64": data_base64
            }
        })
    );
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(body["file"]["data_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(decoded, every_byte, "the file's bytes round-trip exactly");
    let names: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(
        names,
        ["event", "meta", "tag", "file"],
        "parts in the order sent"
    );
}

async fn multipart_over_the_body_limit_gets_413_and_no_run(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = server
        .setup_webhook(capture_workflow(), json!({"max_body_bytes": 1024}))
        .await;
    let big = vec![b'x'; 2000];
    let body = multipart(&[part(
        r#"name="file"; filename="big.txt""#,
        Some("text/plain"),
        &big,
    )]);
    // With a Content-Length: refused from the head.
    let reply = post(
        &server,
        &hook,
        Some(&multipart_content_type()),
        body.clone(),
    )
    .await;
    reply.assert_error(413, "payload_too_large");

    // Chunked, so the size shows only while reading: refused by the body limit all the same.
    let path = format!("/api/webhooks/{}", hook.token);
    let mut request = raw_head(
        "POST",
        &path,
        server.addr(),
        &[
            ("Content-Type", &multipart_content_type()),
            ("Transfer-Encoding", "chunked"),
        ],
    );
    request.extend_from_slice(format!("{:X}\r\n", body.len()).as_bytes());
    request.extend_from_slice(&body);
    request.extend_from_slice(b"\r\n0\r\n\r\n");
    let chunked = raw_exchange(server.addr(), &request).await;
    chunked.assert_error(413, "payload_too_large");

    server.assert_no_runs(&hook.id).await;
    for reply in [&reply, &chunked] {
        let row = activity_row(&server, &hook, reply, 2).await;
        assert_eq!(row["outcome"], "too_large", "{row:#}");
        assert_eq!(row["status_code"], 413, "{row:#}");
    }
}

async fn malformed_multipart_gets_400_no_run_and_a_malformed_activity_row(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = server.setup_webhook(capture_workflow(), json!({})).await;
    let body = multipart(&[part(r#"name="event""#, None, b"order.created")]);
    let cases: [(String, Vec<u8>, &str, &str); 4] = [
        // The body's boundary is not the declared one.
        (
            "multipart/form-data; boundary=not-the-one-used".to_owned(),
            body.clone(),
            "bad_request",
            "multipart/form-data",
        ),
        // No boundary at all.
        (
            "multipart/form-data".to_owned(),
            body.clone(),
            "bad_request",
            "boundary",
        ),
        // Cut off before the closing delimiter.
        (
            multipart_content_type(),
            body[..body.len() - BOUNDARY.len() - 10].to_vec(),
            "bad_request",
            "multipart/form-data",
        ),
        // A part declared JSON that does not parse.
        (
            multipart_content_type(),
            multipart(&[part(r#"name="meta""#, Some("application/json"), b"{nope")]),
            "malformed_json",
            "\"meta\"",
        ),
    ];
    let mut replies = Vec::new();
    for (content_type, body, code, says) in cases {
        let reply = post(&server, &hook, Some(&content_type), body).await;
        reply.assert_error(400, code);
        let message = reply.body["error"].as_str().unwrap_or_default();
        assert!(
            message.contains(says),
            "{content_type}: the message should mention {says:?}: {}",
            reply.text
        );
        replies.push(reply);
    }
    server.assert_no_runs(&hook.id).await;
    for reply in &replies {
        let row = activity_row(&server, &hook, reply, replies.len()).await;
        assert_eq!(row["outcome"], "malformed", "{row:#}");
        assert_eq!(row["status_code"], 400, "{row:#}");
        assert!(row["run_id"].is_null(), "{row:#}");
    }
}

async fn binary_bodies_are_stored_as_base64_with_their_content_type(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = server.setup_webhook(capture_workflow(), json!({})).await;
    let every_byte: Vec<u8> = (0..=255u8).rev().collect();
    let png: Vec<u8> = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR".to_vec();
    for (content_type, bytes) in [
        ("application/octet-stream", every_byte),
        ("image/png", png),
        (
            "application/xml; charset=utf-8",
            b"<order id=\"7\"/>".to_vec(),
        ),
    ] {
        let reply = post(&server, &hook, Some(content_type), bytes.clone()).await;
        let body = stored_body(&server, &reply, content_type).await;
        assert_eq!(
            body,
            json!({
                "content_type": content_type,
                "size": bytes.len(),
                "data_base64": base64::engine::general_purpose::STANDARD.encode(&bytes)
            }),
            "{content_type}"
        );
    }
}

async fn every_allowed_method_starts_a_run_and_get_ignores_its_body(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = server
        .setup_webhook(
            capture_workflow(),
            json!({"methods": ["GET", "POST", "PUT", "PATCH", "DELETE"]}),
        )
        .await;
    let sent = json!({"n": 1});
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
        let request = server
            .plain()
            .request(method.parse().unwrap(), &hook.url)
            .json(&sent);
        let reply = send(request).await;
        server.expect(&reply, 201, method);
        let run = server.get_run(&str_field(&reply.body, "run_id")).await;
        assert_eq!(run["trigger_input"]["method"], method, "{run:#}");
        let expected = if method == "GET" {
            Value::Null
        } else {
            sent.clone()
        };
        assert_eq!(run["trigger_input"]["body"], expected, "{method}: {run:#}");
    }
    assert_eq!(server.runs_of_trigger(&hook.id).await.len(), 5);
}

triggerd_tests::e2e_tests!(
    json_body_is_parsed_with_or_without_a_content_type,
    form_body_becomes_an_object_with_repeated_fields_as_arrays,
    multipart_body_becomes_an_object_of_parts,
    multipart_over_the_body_limit_gets_413_and_no_run,
    malformed_multipart_gets_400_no_run_and_a_malformed_activity_row,
    binary_bodies_are_stored_as_base64_with_their_content_type,
    every_allowed_method_starts_a_run_and_get_ignores_its_body,
);
