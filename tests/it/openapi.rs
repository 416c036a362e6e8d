//! `GET /api/v1/openapi.json` against the real server: served without a token, every documented
//! operation is routed, and what the server answers is among the documented statuses; list
//! pagination holds under concurrent inserts.

use std::collections::HashSet;

use serde_json::{Value, json};
use triggerd_tests::{Backend, TestServer, encode_query, send, str_field};

/// A path of the document with its parameters filled in.
fn concrete(path: &str) -> String {
    path.replace("{token}", "wht_unknown")
        .replace("{rest}", "a/b")
        .replace("{id}", "x_unknown")
        .replace("{name}", "no-such-workflow")
        .replace("{version}", "1")
}

async fn openapi_document_describes_every_route_the_server_answers(backend: Backend) {
    let server = TestServer::start(backend).await;
    let reply = send(
        server
            .plain()
            .get(format!("{}/api/v1/openapi.json", server.base_url())),
    )
    .await;
    server.expect(&reply, 200, "GET /api/v1/openapi.json without a token");
    assert_eq!(
        reply.header("content-type"),
        Some("application/json"),
        "{:?}",
        reply.headers
    );
    let doc = reply.body;
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.contains_key("/api/v1/runs/{id}/cancel"), "{paths:?}");
    let mut operations = 0;
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            let url = format!("{}{}", server.base_url(), concrete(path));
            let method: reqwest::Method = method.to_ascii_uppercase().parse().unwrap();
            let mut request = server.client().request(method.clone(), &url);
            if operation.get("requestBody").is_some() {
                request = request.json(&json!({}));
            }
            let reply = send(request).await;
            let what = format!("{method} {path} -> {} {}", reply.status, reply.text);
            assert_ne!(reply.status, 405, "{what}");
            assert!(
                !reply.body["error"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("no route"),
                "documented but not routed: {what}"
            );
            let responses = operation["responses"].as_object().unwrap();
            assert!(
                responses.contains_key(&reply.status.to_string())
                    || responses.contains_key("default"),
                "status not in the document: {what}"
            );
            operations += 1;
        }
    }
    assert!(operations > 30, "only {operations} operations");

    // A method the document does not list for a path is refused with 405 and `Allow`.
    let refused = send(server.client().post(server.api("/runs/x_unknown"))).await;
    refused.assert_error(405, "method_not_allowed");
    assert_eq!(refused.header("allow"), Some("GET"));
    let refused = send(
        server
            .plain()
            .post(format!("{}/healthz", server.base_url())),
    )
    .await;
    refused.assert_error(405, "method_not_allowed");
}

/// Pages through `GET /runs` while other runs are being created: every run that existed before
/// the first page appears exactly once, in strictly decreasing id order.
async fn run_pages_have_no_duplicates_or_gaps_under_concurrent_inserts(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = server
        .setup_webhook(
            json!({"name": "pages", "inputs": {"n": {"type": "integer"}}}),
            json!({}),
        )
        .await;
    let create = |n: i64| {
        let request = server
            .client()
            .post(server.api("/runs"))
            .json(&json!({"deployment_id": hook.deployment_id, "input": {"n": n}}));
        async move {
            let reply = send(request).await;
            assert_eq!(reply.status, 201, "{}", reply.text);
            str_field(&reply.body, "run_id")
        }
    };
    let mut before = HashSet::new();
    for n in 0..45 {
        before.insert(create(n).await);
    }

    let writer = async {
        let mut created = Vec::new();
        for n in 100..140 {
            created.push(create(n).await);
        }
        created
    };
    let reader = async {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = format!("deployment_id={}&limit=7", hook.deployment_id);
            if let Some(c) = &cursor {
                query.push_str(&format!("&cursor={}", encode_query(c)));
            }
            let page = send(server.client().get(server.api(&format!("/runs?{query}")))).await;
            server.expect(&page, 200, "GET /runs page");
            let data = page.body["data"].as_array().unwrap();
            assert!(data.len() <= 7, "{}", page.text);
            seen.extend(data.iter().map(|r| str_field(r, "id")));
            match &page.body["next_cursor"] {
                Value::String(next) => cursor = Some(next.clone()),
                _ => break,
            }
            tokio::task::yield_now().await;
        }
        seen
    };
    let (created, seen) = tokio::join!(writer, reader);
    assert_eq!(created.len(), 40);

    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(
        unique.len(),
        seen.len(),
        "duplicates across pages: {seen:?}"
    );
    assert!(
        seen.windows(2).all(|w| w[0] > w[1]),
        "not newest first: {seen:?}"
    );
    let missing: Vec<&String> = before.iter().filter(|id| !unique.contains(id)).collect();
    assert!(missing.is_empty(), "runs skipped by paging: {missing:?}");
    let all = server
        .list_runs(&format!("deployment_id={}", hook.deployment_id))
        .await;
    assert_eq!(all.len(), 85);
}

/// Every `summary` and `description` of the document is written for API users: no Rust paths,
/// intra-doc links or references to documents outside the repository.
async fn openapi_texts_are_for_api_users(backend: Backend) {
    let server = TestServer::start(backend).await;
    let reply = send(
        server
            .plain()
            .get(format!("{}/api/v1/openapi.json", server.base_url())),
    )
    .await;
    server.expect(&reply, 200, "GET /api/v1/openapi.json");
    fn texts<'a>(value: &'a Value, path: &str, out: &mut Vec<(String, &'a str)>) {
        match value {
            Value::Object(map) => {
                for (key, v) in map {
                    let here = format!("{path}/{key}");
                    match (key.as_str(), v) {
                        ("summary" | "description", Value::String(text)) => out.push((here, text)),
                        _ => texts(v, &here, out),
                    }
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    texts(v, &format!("{path}/{i}"), out);
                }
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    texts(&reply.body, "", &mut found);
    assert!(found.len() > 100, "only {} texts", found.len());
    let bad: Vec<_> = found
        .iter()
        .filter(|(_, text)| {
            [
                "SPEC",
                "[`",
                "crate::",
                "Store::",
                "App::",
                "Documentation only",
                "issue ",
            ]
            .iter()
            .any(|needle| text.contains(needle))
        })
        .collect();
    assert!(bad.is_empty(), "texts with source notes: {bad:#?}");
}

triggerd_tests::e2e_tests!(
    openapi_texts_are_for_api_users,
    openapi_document_describes_every_route_the_server_answers,
    run_pages_have_no_duplicates_or_gaps_under_concurrent_inserts,
);
