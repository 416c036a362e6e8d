//! Durability: a 201 means the run survives SIGKILL (SPEC 4.5, 8).

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::sync::Notify;
use triggerd_tests::{Backend, TestServer, send, str_field, try_send};

const ROUNDS: usize = 3;
/// Concurrent senders during a burst.
const SENDERS: usize = 32;
/// The server is killed once this many 201s have come back.
const KILL_AFTER: usize = 300;
/// Time allowed to collect `KILL_AFTER` acknowledgements.
const BURST_TIMEOUT: Duration = Duration::from_secs(60);

async fn every_acknowledged_webhook_survives_sigkill(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let hook = server
        .setup_webhook(
            json!({"name": "burst", "inputs": {"n": {"type": "integer", "required": true}}}),
            json!({"rate_limit_per_minute": 0}),
        )
        .await;

    let mut acknowledged: Vec<String> = Vec::new();
    for round in 0..ROUNDS {
        let acked = burst_then_kill(&mut server, &hook.token, round).await;
        assert!(
            acked.len() >= KILL_AFTER,
            "round {round}: {} acks",
            acked.len()
        );
        acknowledged.extend(acked);

        server.restart().await;
        let missing = unreadable_runs(&server, &hook.id, &acknowledged).await;
        assert!(
            missing.is_empty(),
            "round {round}: {} of {} acknowledged runs are gone after SIGKILL: {missing:?}",
            missing.len(),
            acknowledged.len()
        );
    }
    let distinct: HashSet<&String> = acknowledged.iter().collect();
    assert_eq!(
        distinct.len(),
        acknowledged.len(),
        "a run id was acknowledged twice"
    );

    // The token survived the crashes too.
    let reply = send(
        server
            .plain()
            .post(server.webhook_url(&hook.token))
            .json(&json!({"n": -1})),
    )
    .await;
    server.expect(&reply, 201, "webhook after the last restart");
}

/// Fires webhooks from `SENDERS` tasks at full speed, SIGKILLs the server once `KILL_AFTER`
/// of them were acknowledged, and returns the run ids of every 201 received.
async fn burst_then_kill(server: &mut TestServer, token: &str, round: usize) -> Vec<String> {
    let url = server.webhook_url(token);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let enough = Arc::new(Notify::new());
    let mut senders = Vec::with_capacity(SENDERS);
    for sender in 0..SENDERS {
        let (client, url) = (server.plain().clone(), url.clone());
        let (acked, count, enough) = (Arc::clone(&acked), Arc::clone(&count), Arc::clone(&enough));
        senders.push(tokio::spawn(async move {
            let mut unexpected = Vec::new();
            for i in 0.. {
                let n = (round * SENDERS + sender) * 1_000_000 + i;
                // A transport error means the server is gone: this sender is done.
                let Ok(reply) = try_send(client.post(&url).json(&json!({"n": n}))).await else {
                    break;
                };
                if reply.status != 201 {
                    unexpected.push(format!("{} {}", reply.status, reply.text));
                    continue;
                }
                let run_id = str_field(&reply.body, "run_id");
                acked.lock().unwrap().push(run_id);
                if count.fetch_add(1, Ordering::SeqCst) + 1 == KILL_AFTER {
                    enough.notify_one();
                }
            }
            unexpected
        }));
    }

    let reached = tokio::time::timeout(BURST_TIMEOUT, enough.notified()).await;
    server.kill();
    let mut unexpected = Vec::new();
    for sender in senders {
        unexpected.extend(sender.await.expect("sender task"));
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(
        reached.is_ok(),
        "round {round}: only {} webhooks acknowledged within {BURST_TIMEOUT:?}",
        acked.len()
    );
    assert!(
        unexpected.is_empty(),
        "round {round}: {} non-201 answers during the burst, e.g. {:?}",
        unexpected.len(),
        unexpected.first()
    );
    acked
}

/// The acknowledged run ids that `GET /runs/{id}` does not return as runs of `trigger_id`.
async fn unreadable_runs(server: &TestServer, trigger_id: &str, run_ids: &[String]) -> Vec<String> {
    const READERS: usize = 8;
    let mut readers = Vec::with_capacity(READERS);
    for part in run_ids.chunks(run_ids.len().div_ceil(READERS)) {
        let (client, part) = (server.client().clone(), part.to_vec());
        let (api, trigger_id) = (server.api("/runs/"), trigger_id.to_owned());
        readers.push(tokio::spawn(async move {
            let mut missing = Vec::new();
            for id in part {
                let reply = send(client.get(format!("{api}{id}"))).await;
                if reply.status != 200
                    || reply.body["id"] != id
                    || reply.body["trigger_id"] != trigger_id
                {
                    missing.push(format!("{id} ({} {})", reply.status, reply.text));
                }
            }
            missing
        }));
    }
    let mut missing = Vec::new();
    for reader in readers {
        missing.extend(reader.await.expect("reader task"));
    }
    missing
}

triggerd_tests::e2e_tests!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    every_acknowledged_webhook_survives_sigkill,
);
