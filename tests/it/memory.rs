//! The memory budget (`TRIGGERD_MEMORY_BUDGET_MB`, docs/configuration.md) and bounded answers:
//! a webhook body that would cost more to parse than the whole budget is refused with 413 before
//! it is parsed; large bodies that find the budget in use wait and then get 503; a page of runs
//! stops at its byte budget and its cursor continues.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;
use triggerd_tests::{Reply, TestServer, encode_query, send, str_field};

/// A body of `n` bytes of tiny JSON objects: each parses to hundreds of bytes.
fn tiny_objects(n: usize) -> String {
    let mut s = String::from("{\"rows\":[");
    while s.len() < n {
        s.push_str("{\"a\":0},");
    }
    s.pop();
    s.push_str("]}");
    s
}

/// A body of about `n` bytes in one string: it parses to about its size.
fn one_string(n: usize, tag: usize) -> String {
    format!(r#"{{"tag":{tag},"data":"{}"}}"#, "x".repeat(n))
}

async fn post_json(server: &TestServer, url: &str, body: String) -> Reply {
    send(
        server
            .plain()
            .post(url)
            .header("content-type", "application/json")
            .body(body),
    )
    .await
}

/// A gauge of `/metrics`.
async fn gauge(server: &TestServer, name: &str) -> f64 {
    let reply = send(server.plain().get(format!("{}/metrics", server.base_url()))).await;
    reply
        .text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{}", reply.text))
}

async fn a_body_too_costly_to_parse_gets_413_with_the_estimate_and_no_run(
    backend: triggerd_tests::Backend,
) {
    let server = TestServer::start_with(backend, &[("TRIGGERD_MEMORY_BUDGET_MB", "8")]).await;
    let hook = server
        .setup_webhook(
            json!({"name": "capture"}),
            json!({"max_body_bytes": 1_048_576}),
        )
        .await;
    // 600 KB of `{"a":0}`: tens of MB once parsed, more than the whole 8 MiB budget.
    let reply = post_json(&server, &hook.url, tiny_objects(600_000)).await;
    reply.assert_error(413, "payload_too_large");
    assert!(
        reply.body["error"]
            .as_str()
            .is_some_and(|m| m.contains("TRIGGERD_MEMORY_BUDGET_MB")),
        "{}",
        reply.text
    );
    let details = &reply.details()[0];
    assert_eq!(details["memory_budget_bytes"], json!(8 * 1024 * 1024));
    assert!(
        details["estimated_bytes"].as_u64().unwrap_or(0) > 8 * 1024 * 1024,
        "{details}"
    );
    let rows = server
        .wait_for_requests(&hook.id, 1, Duration::from_secs(10))
        .await;
    assert_eq!(rows[0]["outcome"], "too_large", "{rows:#?}");
    server.assert_no_runs(&hook.id).await;

    // The same size in one string costs about its size: accepted, and read back whole.
    let body = one_string(600_000, 1);
    let reply = post_json(&server, &hook.url, body.clone()).await;
    server.expect(&reply, 201, "a large body of one string");
    let run = server.get_run(&str_field(&reply.body, "run_id")).await;
    let sent: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(run["trigger_input"]["body"], sent);
}

async fn large_bodies_wait_for_the_budget_and_get_503_when_it_stays_in_use(
    backend: triggerd_tests::Backend,
) {
    let server = TestServer::start_with(
        backend,
        &[
            ("TRIGGERD_MEMORY_BUDGET_MB", "8"),
            ("TRIGGERD_MEMORY_WAIT_MS", "300"),
        ],
    )
    .await;
    let hook = server
        .setup_webhook(
            json!({"name": "capture"}),
            json!({"max_body_bytes": 4_194_304}),
        )
        .await;
    assert_eq!(
        gauge(&server, "triggerd_memory_budget_bytes").await,
        8.0 * 1024.0 * 1024.0
    );
    // A sender that declares a 3 MiB body and sends only its start holds the whole reading
    // allowance (a quarter of the budget) while the server waits for the rest.
    let path = hook.url.split_once("/api/").map(|(_, p)| p).unwrap();
    let mut stalled = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let head = format!(
        "POST /api/{path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{{\"data\":\"",
        server.addr(),
        3 * 1024 * 1024
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    stalled.flush().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while gauge(&server, "triggerd_memory_budget_reading_bytes").await == 0.0 {
        assert!(
            Instant::now() < deadline,
            "the stalled body never held the allowance"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Another large body waits 300 ms for the allowance, then gets 503 with Retry-After.
    let started = Instant::now();
    let reply = post_json(&server, &hook.url, one_string(200_000, 1)).await;
    reply.assert_error(503, "unavailable");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(reply.header("retry-after"), Some("1"), "{reply:?}");
    // A small webhook is never charged: it goes ahead at once.
    let small = post_json(&server, &hook.url, json!({"small": true}).to_string()).await;
    server.expect(&small, 201, "a small webhook while the budget is in use");
    // The sender gives up: its allowance comes back and the large body is taken.
    drop(stalled);
    let deadline = Instant::now() + Duration::from_secs(10);
    while gauge(&server, "triggerd_memory_budget_reading_bytes").await != 0.0 {
        assert!(
            Instant::now() < deadline,
            "the allowance was never given back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reply = post_json(&server, &hook.url, one_string(200_000, 2)).await;
    server.expect(&reply, 201, "a large body once the budget is free");
    let rows = server
        .wait_for_requests(&hook.id, 3, Duration::from_secs(10))
        .await;
    let outcomes: Vec<&str> = rows.iter().filter_map(|r| r["outcome"].as_str()).collect();
    assert!(outcomes.contains(&"failed"), "{rows:#?}");
    assert_eq!(server.runs_of_trigger(&hook.id).await.len(), 2);
}

async fn run_pages_stop_at_their_byte_budget_and_the_cursor_continues(
    backend: triggerd_tests::Backend,
) {
    let server = TestServer::start(backend).await;
    let hook = server
        .setup_webhook(
            json!({"name": "capture"}),
            json!({"max_body_bytes": 1_048_576}),
        )
        .await;
    // 12 runs of ~800 KB each: 9.6 MB in all; five fit the 4 MiB page budget, six do not.
    let mut sent = Vec::new();
    for tag in 0..12 {
        let reply = post_json(&server, &hook.url, one_string(800_000, tag)).await;
        server.expect(&reply, 201, "an 800 KB webhook");
        sent.push(str_field(&reply.body, "run_id"));
    }
    sent.reverse();
    let mut seen = Vec::new();
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = server.api(&format!("/runs?trigger_id={}&limit=200", hook.id));
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={}", encode_query(c)));
        }
        let reply = send(server.client().get(url)).await;
        server.expect(&reply, 200, "GET runs");
        assert!(
            reply.text.len() < 5 * 1024 * 1024,
            "a page of {} bytes",
            reply.text.len()
        );
        let data = reply.body["data"].as_array().unwrap();
        pages.push(data.len());
        for run in data {
            assert_eq!(
                run["trigger_input"]["body"]["data"].as_str().map(str::len),
                Some(800_000)
            );
            seen.push(str_field(run, "id"));
        }
        match reply.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, sent, "every run once, newest first; pages {pages:?}");
    assert!(pages.len() >= 3 && pages[0] < 12, "pages {pages:?}");
}

triggerd_tests::e2e_tests!(
    a_body_too_costly_to_parse_gets_413_with_the_estimate_and_no_run,
    large_bodies_wait_for_the_budget_and_get_503_when_it_stays_in_use,
    run_pages_stop_at_their_byte_budget_and_the_cursor_continues,
);
