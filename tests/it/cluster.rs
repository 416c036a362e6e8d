//! Several `triggerd serve` processes on one PostgreSQL database (SPEC 8): any node takes
//! webhooks, each run is worked by one node, and a token change made through one node holds on
//! every node at once (the write re-checks the token, whatever a node has cached).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Barrier;
use triggerd_domain::ids::{IdKind, new_id};
use triggerd_storage::{NewRun, Store, StoreOptions};
use triggerd_tests::{Backend, RUN_TIMEOUT, ServerConfig, TestServer, send, str_field};

/// Webhooks sent at once, spread over the nodes and the triggers.
const REQUESTS: usize = 240;
/// Runs waiting in the database when the nodes start.
const WAITING_RUNS: usize = 1500;

/// What a node logs when it finishes a run whose lease another node took: a run worked twice.
const LOST_LEASE: &str = "lost the lease";

fn spread_workflow() -> Value {
    json!({"name": "spread", "inputs": {"n": {"type": "integer", "required": true}}})
}

async fn two_nodes_complete_every_webhook_run_exactly_once(backend: Backend) {
    let nodes = TestServer::start_cluster(ServerConfig::new(backend), 2).await;
    let first = nodes[0]
        .setup_webhook(spread_workflow(), json!({"rate_limit_per_minute": 0}))
        .await;
    // A second trigger, created through the other node, so that both nodes' write batches lock
    // several triggers' tokens.
    let second = nodes[1]
        .create_webhook_trigger(&first.deployment_id, json!({"rate_limit_per_minute": 0}))
        .await;
    let triggers = [
        (first.id.clone(), first.token.clone()),
        (str_field(&second, "id"), str_field(&second, "token")),
    ];

    // Request n goes to node n % 2 for trigger (n / 2) % 2: every node gets both triggers.
    let start = Arc::new(Barrier::new(REQUESTS));
    let mut tasks = Vec::with_capacity(REQUESTS);
    for n in 0..REQUESTS {
        let node = &nodes[n % 2];
        let (_, token) = &triggers[(n / 2) % 2];
        let request = node
            .plain()
            .post(node.webhook_url(token))
            .json(&json!({"n": n}));
        let start = Arc::clone(&start);
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            send(request).await
        }));
    }
    let mut acknowledged: HashMap<String, usize> = HashMap::new();
    for (n, task) in tasks.into_iter().enumerate() {
        let reply = task.await.expect("sender task");
        nodes[n % 2].expect(&reply, 201, &format!("webhook {n}"));
        let previous = acknowledged.insert(str_field(&reply.body, "run_id"), n);
        assert_eq!(previous, None, "a run id was acknowledged twice");
    }

    let runs = wait_until_all_finished(&nodes[0], &first.deployment_id, REQUESTS).await;
    assert_eq!(
        runs.keys().collect::<HashSet<_>>(),
        acknowledged.keys().collect::<HashSet<_>>(),
        "the stored runs are not the acknowledged ones"
    );
    for (id, run) in &runs {
        let n = acknowledged[id];
        assert_completed_once(run, &json!({"n": n}));
        assert_eq!(
            run["trigger_id"],
            triggers[(n / 2) % 2].0.as_str(),
            "{run:#}"
        );
    }
    // Both nodes read the same runs.
    let seen_by_second = nodes[1]
        .list_runs(&format!("deployment_id={}", first.deployment_id))
        .await;
    assert_eq!(seen_by_second.len(), REQUESTS);
    // Each trigger counts its own fires, whichever node took them.
    for (id, _) in &triggers {
        let reply = send(
            nodes[1]
                .client()
                .get(nodes[1].api(&format!("/triggers/{id}"))),
        )
        .await;
        nodes[1].expect(&reply, 200, "GET trigger");
        assert_eq!(reply.body["fire_count"], REQUESTS / 2, "{}", reply.text);
    }
    assert_no_run_worked_twice(&nodes);
}

async fn runs_waiting_in_the_database_are_claimed_once_by_nodes_starting_together(
    backend: Backend,
) {
    let mut seeder = TestServer::start(backend).await;
    seeder.put_workflow("spread", spread_workflow()).await;
    let deployment = seeder.deploy("spread", "production").await;
    let deployment_id = str_field(&deployment, "id");
    seeder.kill();

    // Runs stored while no node runs: whichever node starts first finds them all waiting.
    let store = Store::open(seeder.database_url(), StoreOptions::default())
        .await
        .unwrap_or_else(|e| panic!("open the store: {e}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_micros() as i64;
    let mut inserts = Vec::with_capacity(WAITING_RUNS);
    for n in 0..WAITING_RUNS {
        let (store, deployment_id) = (store.clone(), deployment_id.clone());
        inserts.push(tokio::spawn(async move {
            store
                .create_run(NewRun {
                    id: new_id(IdKind::Run),
                    deployment_id,
                    workflow: "spread".into(),
                    workflow_version: 1,
                    trigger_id: None,
                    source: "api".into(),
                    status: "pending".into(),
                    input: json!({"n": n}).to_string(),
                    trigger_input: "null".into(),
                    context: "{}".into(),
                    step_executions: "[]".into(),
                    final_output: None,
                    created_at: now,
                    started_at: None,
                    finished_at: None,
                })
                .await
        }));
    }
    for insert in inserts {
        insert
            .await
            .expect("insert task")
            .unwrap_or_else(|e| panic!("store a waiting run: {e}"));
    }
    store.shutdown().await;

    // Three nodes start at once; their run workers claim from the same waiting runs.
    let nodes = seeder.start_nodes(3).await;
    let runs = wait_until_all_finished(&nodes[0], &deployment_id, WAITING_RUNS).await;
    let mut inputs = HashSet::new();
    for run in runs.values() {
        assert_completed_once(run, &run["input"]);
        inputs.insert(run["input"]["n"].as_u64().expect("input n"));
    }
    assert_eq!(inputs.len(), WAITING_RUNS);
    assert_no_run_worked_twice(&nodes);
}

async fn a_token_changed_through_one_node_stops_working_on_the_other_at_once(backend: Backend) {
    let nodes = TestServer::start_cluster(ServerConfig::new(backend), 2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let hook = a.setup_webhook(spread_workflow(), json!({})).await;
    let post = |node: &TestServer, token: &str| {
        send(
            node.plain()
                .post(node.webhook_url(token))
                .json(&json!({"n": 1})),
        )
    };

    // B caches the trigger (for up to its cache TTL of 2 s) ...
    let reply = post(b, &hook.token).await;
    b.expect(&reply, 201, "B before the rotation");
    // ... and A rotates it: B refuses the old token at once, its cache notwithstanding.
    let reply = send(
        a.client()
            .post(a.api(&format!("/triggers/{}/rotate", hook.id)))
            .json(&json!({})),
    )
    .await;
    a.expect(&reply, 200, "rotate through A");
    let new_token = str_field(&reply.body, "token");
    post(b, &hook.token).await.assert_error(404, "not_found");
    let reply = post(b, &new_token).await;
    b.expect(&reply, 201, "B with the new token");

    // The same for a trigger disabled through A while B has the new token cached.
    let reply = send(
        a.client()
            .patch(a.api(&format!("/triggers/{}", hook.id)))
            .json(&json!({"enabled": false})),
    )
    .await;
    a.expect(&reply, 200, "disable through A");
    post(b, &new_token).await.assert_error(404, "not_found");

    // And for a trigger deleted through A.
    let other = b
        .create_webhook_trigger(&hook.deployment_id, json!({}))
        .await;
    let other_token = str_field(&other, "token");
    let reply = post(b, &other_token).await;
    b.expect(&reply, 201, "B before the delete");
    let reply = send(
        a.client()
            .delete(a.api(&format!("/triggers/{}", str_field(&other, "id")))),
    )
    .await;
    a.expect(&reply, 204, "delete through A");
    post(b, &other_token).await.assert_error(404, "not_found");

    assert_eq!(a.runs_of_trigger(&hook.id).await.len(), 2);
    assert_eq!(a.runs_of_trigger(&str_field(&other, "id")).await.len(), 1);
}

/// Polls the runs of a deployment until `count` of them exist and all are finished; returns them
/// by id.
async fn wait_until_all_finished(
    node: &TestServer,
    deployment_id: &str,
    count: usize,
) -> HashMap<String, Value> {
    let deadline = Instant::now() + RUN_TIMEOUT;
    loop {
        let runs = node
            .list_runs(&format!("deployment_id={deployment_id}"))
            .await;
        let unfinished = runs
            .iter()
            .filter(|r| matches!(r["status"].as_str(), Some("pending" | "running")))
            .count();
        if runs.len() >= count && unfinished == 0 {
            assert_eq!(runs.len(), count, "more runs than expected");
            return runs
                .into_iter()
                .map(|run| (str_field(&run, "id"), run))
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "{} runs of {count} stored, {unfinished} unfinished after {RUN_TIMEOUT:?}\nnode log:\n{}",
            runs.len(),
            node.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The run completed with `output`, and its instants are in order.
fn assert_completed_once(run: &Value, output: &Value) {
    assert_eq!(run["status"], "completed", "{run:#}");
    assert_eq!(&run["final_output"], output, "{run:#}");
    assert!(run["error"].is_null(), "{run:#}");
    let instant = |field: &str| {
        run[field]
            .as_str()
            .unwrap_or_else(|| panic!("no {field} in {run:#}"))
            .to_owned()
    };
    // RFC 3339 in UTC with a fixed number of digits: ordered as text.
    let (created, started, finished) = (
        instant("created_at"),
        instant("started_at"),
        instant("finished_at"),
    );
    assert!(
        created <= started && started <= finished,
        "instants out of order: {run:#}"
    );
}

/// No node finished a run whose lease another node held: a run worked by two nodes would make
/// the slower one log that it lost the lease (its update is refused).
fn assert_no_run_worked_twice(nodes: &[TestServer]) {
    for (i, node) in nodes.iter().enumerate() {
        let logs = node.logs();
        assert!(
            !logs.contains(LOST_LEASE),
            "node {i} worked a run another node held:\n{logs}"
        );
    }
}

/// A sync webhook request waits on the node that received it; its run is finished on another
/// node (the approval is rejected through the second node's URL, which fails the run in that
/// node's transaction). The waiting node learns it from PostgreSQL (`LISTEN`/`NOTIFY`), not at
/// its timeout, and not by reading the run in a loop.
async fn a_sync_request_is_woken_by_a_run_finished_on_another_node(backend: Backend) {
    let nodes = TestServer::start_cluster(ServerConfig::new(backend), 2).await;
    let hook = nodes[0]
        .setup_webhook(
            json!({"name": "review", "steps": [{"id": "ok", "type": "approval"}]}),
            json!({"response": {"mode": "sync", "timeout_seconds": 120}}),
        )
        .await;
    let request = nodes[0]
        .plain()
        .post(&hook.url)
        .json(&json!({}))
        .timeout(Duration::from_secs(150));
    let waiting = tokio::spawn(send(request));
    let deadline = Instant::now() + RUN_TIMEOUT;
    let run = loop {
        if let Some(run) = nodes[1].runs_of_trigger(&hook.id).await.first() {
            let run = nodes[1].get_run(&str_field(run, "id")).await;
            if run["status"] == "waiting" {
                break run;
            }
        }
        assert!(Instant::now() < deadline, "the run never parked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!waiting.is_finished(), "answered before the run finished");
    // The approval URLs carry the first node's public URL: send the same path to the second.
    let reject = str_field(&run["waiting_payload"], "reject_url");
    let path = &reject[reject.find("/api/approvals/").expect("an approval URL")..];
    let started = Instant::now();
    let decided = send(
        nodes[1]
            .plain()
            .post(format!("{}{path}", nodes[1].base_url()))
            .json(&json!({"comment": "decided elsewhere"})),
    )
    .await;
    nodes[1].expect(&decided, 200, "reject through the second node");
    let reply = waiting.await.expect("the request task");
    reply.assert_error(400, "rejected");
    assert_eq!(reply.body["run_id"], run["id"], "{}", reply.text);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "woken {:?} after the run failed on the other node",
        started.elapsed()
    );
}

async fn concurrent_duplicates_on_two_nodes_start_one_run(backend: Backend) {
    let nodes = TestServer::start_cluster(ServerConfig::new(backend), 2).await;
    let hook = nodes[0]
        .setup_webhook(
            spread_workflow(),
            json!({"rate_limit_per_minute": 0, "dedup": {"key": "$headers.webhook-id"}}),
        )
        .await;
    // Rounds of one delivery id sent to both nodes at once, released together.
    const ROUNDS: usize = 10;
    const PER_NODE: usize = 4;
    let barrier = Arc::new(Barrier::new(2 * PER_NODE));
    for round in 0..ROUNDS {
        let mut tasks = Vec::new();
        for node in &nodes {
            for _ in 0..PER_NODE {
                let request = node
                    .plain()
                    .post(node.webhook_url(&hook.token))
                    .header("webhook-id", format!("msg_{round}"))
                    .json(&json!({"n": round}));
                let barrier = barrier.clone();
                tasks.push(tokio::spawn(async move {
                    barrier.wait().await;
                    send(request).await
                }));
            }
        }
        let mut created = Vec::new();
        let mut named = HashSet::new();
        for task in tasks {
            let reply = task.await.unwrap();
            match reply.status {
                201 => created.push(str_field(&reply.body, "run_id")),
                200 => assert_eq!(reply.body["duplicate"], true, "{}", reply.text),
                _ => panic!("round {round}: {} {}", reply.status, reply.text),
            }
            named.insert(str_field(&reply.body, "run_id"));
        }
        assert_eq!(created.len(), 1, "round {round}: runs {created:?}");
        assert_eq!(
            named.len(),
            1,
            "round {round}: every answer names the one run: {named:?}"
        );
    }
    assert_eq!(nodes[1].runs_of_trigger(&hook.id).await.len(), ROUNDS);
}

triggerd_tests::postgres_tests!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    two_nodes_complete_every_webhook_run_exactly_once,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    runs_waiting_in_the_database_are_claimed_once_by_nodes_starting_together,
    a_token_changed_through_one_node_stops_working_on_the_other_at_once,
    a_sync_request_is_woken_by_a_run_finished_on_another_node,
    concurrent_duplicates_on_two_nodes_start_one_run,
);
