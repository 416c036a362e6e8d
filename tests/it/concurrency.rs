//! Many webhooks at once: each gets its own durable run.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::json;
use tokio::sync::Barrier;
use triggerd_tests::{Backend, TestServer, send, str_field};

const REQUESTS: usize = 200;

async fn concurrent_webhooks_each_get_a_distinct_durable_run(backend: Backend) {
    let server = TestServer::start(backend).await;
    let hook = server
        .setup_webhook(
            json!({"name": "burst", "inputs": {"n": {"type": "integer", "required": true}}}),
            json!({"rate_limit_per_minute": 0}),
        )
        .await;

    let start = Arc::new(Barrier::new(REQUESTS));
    let mut tasks = Vec::with_capacity(REQUESTS);
    for n in 0..REQUESTS {
        let request = server.plain().post(&hook.url).json(&json!({"n": n}));
        let start = Arc::clone(&start);
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            send(request).await
        }));
    }
    let mut run_ids = Vec::with_capacity(REQUESTS);
    for (n, task) in tasks.into_iter().enumerate() {
        let reply = task.await.expect("sender task");
        server.expect(&reply, 201, &format!("webhook {n}"));
        run_ids.push(str_field(&reply.body, "run_id"));
    }
    let distinct: HashSet<&String> = run_ids.iter().collect();
    assert_eq!(distinct.len(), REQUESTS, "run ids repeat");

    for (n, run_id) in run_ids.iter().enumerate() {
        let run = server.get_run(run_id).await;
        assert_eq!(run["input"], json!({"n": n}), "{run:#}");
        assert_eq!(run["trigger_id"], hook.id.as_str());
    }
    let listed: HashSet<String> = server
        .runs_of_trigger(&hook.id)
        .await
        .iter()
        .map(|run| str_field(run, "id"))
        .collect();
    assert_eq!(listed, run_ids.into_iter().collect::<HashSet<_>>());
}

triggerd_tests::e2e_tests!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    concurrent_webhooks_each_get_a_distinct_durable_run,
);
