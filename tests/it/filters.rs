//! Webhook filters (SPEC 4.7): `config.filter` decides which authenticated requests start a run.
//! A request the filter does not match is answered 200 `{"ignored": true, "request_id"}`, starts
//! no run and is logged `filtered`; a bad filter is refused when the trigger is created, patched
//! or declared, naming the path of the problem.

use serde_json::{Value, json};
use triggerd_tests::{Backend, Reply, TestServer, Webhook, send, str_field};

const SECRET: &str = "gh-hook-secret-Q4t8Zp";

/// GitHub's "only pushes to main" filter (docs/webhooks.md).
fn push_to_main() -> Value {
    json!({"all": [
        {"path": "$headers.x-github-event", "equals": "push"},
        {"path": "ref", "equals": "refs/heads/main"}
    ]})
}

/// `X-Hub-Signature-256`: `sha256=` and the hex HMAC-SHA256 of the raw body, computed here with
/// ring rather than with triggerd's own signer.
fn github_signature(secret: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// A GitHub delivery of `event` with `body`, signed unless `signed` is false.
async fn deliver(
    server: &TestServer,
    hook: &Webhook,
    event: &str,
    body: &Value,
    signed: bool,
) -> Reply {
    let bytes = serde_json::to_vec(body).unwrap();
    let mut request = server
        .plain()
        .post(&hook.url)
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958");
    if signed {
        request = request.header("x-hub-signature-256", github_signature(SECRET, &bytes));
    }
    send(request.body(bytes)).await
}

/// Asserts the 200 answer to a filtered request.
fn assert_ignored(server: &TestServer, reply: &Reply, what: &str) {
    server.expect(reply, 200, what);
    assert_eq!(
        reply.body,
        json!({"ignored": true, "request_id": reply.request_id()}),
        "{what}"
    );
}

async fn github_push_to_main_filter_ignores_pings_and_other_branches(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = server
        .setup_webhook(
            json!({"name": "deploy-site", "inputs": {"ref": {"type": "string"}}}),
            json!({"secret": SECRET, "signature": {"scheme": "github"}, "filter": push_to_main()}),
        )
        .await;
    // Shown back as written.
    assert_eq!(
        hook.trigger["config"]["filter"],
        push_to_main(),
        "{}",
        hook.trigger
    );

    // GitHub's first delivery to a new hook: a ping, which has no `ref`.
    let ping = deliver(
        &server,
        &hook,
        "ping",
        &json!({"zen": "Design for failure.", "hook_id": 42}),
        true,
    )
    .await;
    assert_ignored(&server, &ping, "signed ping");
    let other_branch = deliver(
        &server,
        &hook,
        "push",
        &json!({"ref": "refs/heads/dev", "repository": {"full_name": "acme/site"}}),
        true,
    )
    .await;
    assert_ignored(&server, &other_branch, "push to dev");
    server.assert_no_runs(&hook.id).await;

    // Authentication comes first: unsigned requests are refused whatever the filter says.
    let unsigned_ping = deliver(&server, &hook, "ping", &json!({"zen": "x"}), false).await;
    unsigned_ping.assert_error(401, "bad_signature");
    let main = json!({"ref": "refs/heads/main", "repository": {"full_name": "acme/site"}});
    let unsigned_push = deliver(&server, &hook, "push", &main, false).await;
    unsigned_push.assert_error(401, "bad_signature");
    server.assert_no_runs(&hook.id).await;

    let push = deliver(&server, &hook, "push", &main, true).await;
    server.expect(&push, 201, "signed push to main");
    let run_id = str_field(&push.body, "run_id");
    let runs = server.runs_of_trigger(&hook.id).await;
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(runs[0]["id"], run_id.as_str());
    assert_eq!(
        server.get_run(&run_id).await["input"],
        json!({"ref": "refs/heads/main"})
    );

    // The activity log, newest first.
    let rows = server
        .wait_for_requests(&hook.id, 5, triggerd_tests::RUN_TIMEOUT)
        .await;
    let seen: Vec<(String, i64, Value)> = rows
        .iter()
        .map(|r| {
            (
                str_field(r, "outcome"),
                r["status_code"].as_i64().unwrap_or_default(),
                r["run_id"].clone(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("accepted".to_owned(), 201, json!(run_id)),
            ("bad_signature".to_owned(), 401, Value::Null),
            ("bad_signature".to_owned(), 401, Value::Null),
            ("filtered".to_owned(), 200, Value::Null),
            ("filtered".to_owned(), 200, Value::Null),
        ],
        "{rows:#?}"
    );
    assert_eq!(rows[4]["id"], ping.request_id().as_str());
    assert_eq!(rows[3]["id"], other_branch.request_id().as_str());

    // Only filtered ones in the log's outcome filter.
    let reply = send(
        server
            .client()
            .get(server.api(&format!("/triggers/{}/requests?outcome=filtered", hook.id))),
    )
    .await;
    server.expect(&reply, 200, "requests?outcome=filtered");
    assert_eq!(
        reply.body["data"].as_array().map(Vec::len),
        Some(2),
        "{}",
        reply.text
    );

    let metrics = send(server.plain().get(format!("{}/metrics", server.base_url()))).await;
    assert_eq!(metrics.status, 200);
    for line in [
        "triggerd_webhook_requests_total{outcome=\"filtered\"} 2",
        "triggerd_webhook_requests_total{outcome=\"accepted\"} 1",
        "triggerd_webhook_requests_total{outcome=\"bad_signature\"} 2",
    ] {
        assert!(
            metrics.text.contains(line),
            "missing {line}:\n{}",
            metrics.text
        );
    }
}

async fn every_operator_is_applied_to_real_requests(backend: Backend) {
    let server = TestServer::start(backend).await;
    let filter = json!({"all": [
        {"path": "$method", "in": ["POST", "PUT"]},
        {"path": "$query.env", "prefix": "prod"},
        {"path": "order.id", "exists": true},
        {"path": "$body.customer.email", "matches": "(?i)@example\\.com$"},
        {"not": {"path": "test", "equals": true}},
        {"any": [
            {"path": "amount", "equals": 5},
            {"path": "$headers.X-Priority", "equals": "high"},
            {"path": "$path", "prefix": "urgent/"}
        ]}
    ]});
    let hook = server
        .setup_webhook(
            json!({"name": "orders"}),
            json!({"methods": ["GET", "POST", "PUT"], "filter": filter}),
        )
        .await;
    let good = json!({"order": {"id": 7}, "customer": {"email": "a@Example.com"}, "amount": 5});
    let with = |key: &str, value: Value| {
        let mut body = good.clone();
        body[key] = value;
        body
    };
    let plain = server.plain();
    let url = |rest: &str, query: &str| format!("{}{rest}?{query}", hook.url);
    let cases: Vec<(&str, reqwest::RequestBuilder, bool)> = vec![
        (
            "all conditions hold",
            plain.post(url("", "env=production")).json(&good),
            true,
        ),
        (
            "PUT is in the list",
            plain.put(url("", "env=prod-eu")).json(&good),
            true,
        ),
        (
            "amount as a float equals 5",
            plain
                .post(url("", "env=prod"))
                .json(&with("amount", json!(5.0))),
            true,
        ),
        (
            "GET is not in the list",
            plain.get(url("", "env=prod")),
            false,
        ),
        (
            "query prefix differs",
            plain.post(url("", "env=staging")).json(&good),
            false,
        ),
        (
            "query parameter missing",
            plain.post(&hook.url).json(&good),
            false,
        ),
        (
            "order.id missing",
            plain
                .post(url("", "env=prod"))
                .json(&with("order", json!({}))),
            false,
        ),
        (
            "email does not match",
            plain
                .post(url("", "env=prod"))
                .json(&with("customer", json!({"email": "a@example.org"}))),
            false,
        ),
        (
            "email is not a string",
            plain
                .post(url("", "env=prod"))
                .json(&with("customer", json!({"email": 5}))),
            false,
        ),
        (
            "not: a test order",
            plain
                .post(url("", "env=prod"))
                .json(&with("test", json!(true))),
            false,
        ),
        (
            "not: test false passes",
            plain
                .post(url("", "env=prod"))
                .json(&with("test", json!(false))),
            true,
        ),
        (
            "any: none holds (\"5\" is not 5)",
            plain
                .post(url("", "env=prod"))
                .json(&with("amount", json!("5"))),
            false,
        ),
        (
            "any: the header holds",
            plain
                .post(url("", "env=prod"))
                .header("X-Priority", "high")
                .json(&with("amount", json!(9))),
            true,
        ),
        (
            "any: the path holds",
            plain
                .post(url("/urgent/1", "env=prod"))
                .json(&with("amount", json!(9))),
            true,
        ),
    ];
    let mut accepted = 0;
    for (what, request, passes) in cases {
        let reply = send(request).await;
        if passes {
            server.expect(&reply, 201, what);
            accepted += 1;
        } else {
            assert_ignored(&server, &reply, what);
        }
    }
    assert_eq!(server.runs_of_trigger(&hook.id).await.len(), accepted);
}

async fn a_filter_runs_before_input_validation(backend: Backend) {
    let server = TestServer::start(backend).await;
    // `email` is required: a ping without it would be a 422 without the filter.
    let hook = server
        .setup_webhook(
            triggerd_tests::order_workflow(),
            json!({"filter": {"path": "$headers.x-github-event", "equals": "push"}}),
        )
        .await;
    let ping = send(
        server
            .plain()
            .post(&hook.url)
            .header("x-github-event", "ping")
            .json(&json!({"zen": "Keep it logically awesome."})),
    )
    .await;
    assert_ignored(&server, &ping, "ping without the required input");
    let push = send(
        server
            .plain()
            .post(&hook.url)
            .header("x-github-event", "push")
            .json(&json!({"zen": "no email"})),
    )
    .await;
    push.assert_error(422, "invalid_input");
    server.assert_no_runs(&hook.id).await;
}

/// `POST /deployments/{id}/triggers` of a webhook, answer as it comes.
async fn create(server: &TestServer, deployment_id: &str, config: Value) -> Reply {
    send(
        server
            .client()
            .post(server.api(&format!("/deployments/{deployment_id}/triggers")))
            .json(&json!({"trigger_type": "webhook", "config": config})),
    )
    .await
}

fn problem_paths(reply: &Reply) -> Vec<String> {
    reply
        .details()
        .iter()
        .map(|d| str_field(d, "path"))
        .collect()
}

async fn bad_filters_are_refused_naming_the_path(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = server
        .setup_webhook(json!({"name": "guarded"}), json!({}))
        .await;
    let deep = (0..9).fold(
        json!({"path": "ref", "exists": true}),
        |c, _| json!({"not": c}),
    );
    for (filter, path) in [
        (
            json!({"all": [{"path": "ref", "exists": true}, {"path": "ref", "matches": "(unclosed"}]}),
            "config.filter.all[1].matches",
        ),
        (json!({"path": "a..b", "equals": 1}), "config.filter.path"),
        (
            json!({"path": "$cookies.session", "exists": true}),
            "config.filter.path",
        ),
        (
            json!({"path": "ref", "startswith": "refs/"}),
            "config.filter.startswith",
        ),
        (
            json!({"any": [{"path": "ref", "matches": "(\\w{100}){100}"}]}),
            "config.filter.any[0].matches",
        ),
        (
            json!({"path": "ref", "exists": "yes"}),
            "config.filter.exists",
        ),
        (json!({"any": []}), "config.filter.any"),
        (
            json!({"any": vec![json!({"path": "ref", "exists": true}); 65]}),
            "config.filter",
        ),
        (deep, "config.filter.not.not.not.not.not.not.not.not"),
        (json!("ref == main"), "config.filter"),
    ] {
        let reply = create(&server, &hook.deployment_id, json!({"filter": filter})).await;
        reply.assert_error(422, "invalid_config");
        assert_eq!(problem_paths(&reply), [path], "{filter}: {}", reply.text);
    }

    // PATCH: a bad filter is refused, a good one applies, `null` removes it.
    let patch = |config: Value| {
        server
            .client()
            .patch(server.api(&format!("/triggers/{}", hook.id)))
            .json(&json!({"config": config}))
    };
    let reply = send(patch(json!({"filter": {"path": "ref", "matches": "[a-"}}))).await;
    reply.assert_error(422, "invalid_config");
    assert_eq!(
        problem_paths(&reply),
        ["config.filter.matches"],
        "{}",
        reply.text
    );
    let only_main = json!({"path": "ref", "equals": "refs/heads/main"});
    let reply = send(patch(json!({"filter": only_main}))).await;
    server.expect(&reply, 200, "PATCH a good filter");
    assert_eq!(reply.body["config"]["filter"], only_main, "{}", reply.text);
    let dev = json!({"ref": "refs/heads/dev"});
    assert_ignored(
        &server,
        &send(server.plain().post(&hook.url).json(&dev)).await,
        "dev after PATCH",
    );
    let reply = send(patch(json!({"filter": null}))).await;
    server.expect(&reply, 200, "PATCH filter: null");
    assert!(
        reply.body["config"].get("filter").is_none(),
        "{}",
        reply.text
    );
    let reply = send(server.plain().post(&hook.url).json(&dev)).await;
    server.expect(&reply, 201, "dev without a filter");

    // A trigger declared in a definition: the path is under `triggers[0].config`.
    let reply = send(server.client().put(server.api("/workflows/declared")).json(
        &json!({"name": "declared", "triggers": [{"name": "gh", "trigger_type": "webhook",
                "config": {"filter": {"not": {"path": "ref", "matches": "(("}}}}]}),
    ))
    .await;
    reply.assert_error(422, "invalid_definition");
    assert_eq!(
        problem_paths(&reply),
        ["triggers[0].config.filter.not.matches"],
        "{}",
        reply.text
    );
}

async fn the_dry_run_says_when_the_filter_would_ignore_a_request(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = server
        .setup_webhook(
            json!({"name": "deploy-site", "inputs": {"ref": {"type": "string"}}}),
            json!({"filter": push_to_main()}),
        )
        .await;
    let test = |headers: Value, body: Value| {
        send(
            server
                .client()
                .post(server.api(&format!("/triggers/{}/test", hook.id)))
                .json(&json!({"headers": headers, "body": body})),
        )
    };
    let ping = test(json!({"X-GitHub-Event": "ping"}), json!({"zen": "x"})).await;
    server.expect(&ping, 200, "dry run of a ping");
    assert_eq!(ping.body["ignored"], true, "{}", ping.text);
    assert_eq!(ping.body["input"], Value::Null, "{}", ping.text);
    let push = test(
        json!({"X-GitHub-Event": "push"}),
        json!({"ref": "refs/heads/main"}),
    )
    .await;
    server.expect(&push, 200, "dry run of a push to main");
    assert_eq!(push.body["input"], json!({"ref": "refs/heads/main"}));
    assert!(push.body.get("ignored").is_none(), "{}", push.text);
}

triggerd_tests::e2e_tests!(
    the_dry_run_says_when_the_filter_would_ignore_a_request,
    github_push_to_main_filter_ignores_pings_and_other_branches,
    every_operator_is_applied_to_real_requests,
    a_filter_runs_before_input_validation,
    bad_filters_are_refused_naming_the_path,
);
