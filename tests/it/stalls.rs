//! A stalled database (issue 13). With the `runs` table locked by another session for 40 s,
//! webhooks waited 39 s and then got 201, long after their senders had retried, and `/healthz`
//! kept answering 200. Now a webhook is answered 503 within a bound set by the lock timeout, and
//! stores nothing; `/healthz` answers 503 while a write cannot commit; both recover once the lock
//! is gone.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::{Connection as _, PgConnection, SqliteConnection};
use serde_json::{Value, json};
use triggerd_tests::{Backend, Reply, TestServer, order_workflow, send};

/// `TRIGGERD_DB_LOCK_TIMEOUT_SECS` of the servers of these tests.
const LOCK_TIMEOUT_SECS: u64 = 2;

/// The longest a webhook may wait for its answer while the database is locked: its batch may
/// start only once the batch before it (another request's, the health probe's) timed out, then
/// times out itself — twice the lock timeout — plus slack for a busy test machine.
const BOUND: Duration = Duration::from_millis(2 * LOCK_TIMEOUT_SECS * 1000 + 2500);

/// How long the lock is held at most, whatever the test does: long enough that a server without
/// time limits answers only after it (and the test fails), short enough not to hang the suite.
const MAX_HOLD: Duration = Duration::from_secs(20);

/// A lock on the server's database, held from a connection of the test's own until dropped.
struct Held {
    release: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Held {
    /// Locks what a webhook's write needs, as another process would: on PostgreSQL the `runs`
    /// table in `ACCESS EXCLUSIVE` mode (what a migration, `VACUUM FULL` or an operator's `LOCK
    /// TABLE` holds), on SQLite the write lock (`BEGIN IMMEDIATE`). Returns once it is held.
    async fn take(server: &TestServer) -> Held {
        let (backend, url) = (server.backend(), server.database_url().to_owned());
        let (taken_tx, taken_rx) = tokio::sync::oneshot::channel();
        let (release, released) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let hold = |c: &mut dyn SimpleConnection, sql: &str| {
                c.batch_execute(sql)
                    .unwrap_or_else(|e| panic!("{sql} failed: {e}"));
                let _ = taken_tx.send(());
                let _ = released.recv_timeout(MAX_HOLD);
            };
            // Dropping the connection ends its transaction, and the lock with it.
            match backend {
                Backend::Postgres => {
                    let mut c = PgConnection::establish(&url)
                        .unwrap_or_else(|e| panic!("cannot connect to the test database: {e}"));
                    hold(&mut c, "BEGIN; LOCK TABLE runs IN ACCESS EXCLUSIVE MODE");
                }
                Backend::Sqlite => {
                    let path = url.trim_start_matches("sqlite://");
                    let mut c = SqliteConnection::establish(path)
                        .unwrap_or_else(|e| panic!("cannot open {path}: {e}"));
                    hold(&mut c, "PRAGMA busy_timeout = 10000; BEGIN IMMEDIATE");
                }
            }
        });
        taken_rx
            .await
            .unwrap_or_else(|_| panic!("the test could not lock the database"));
        Held {
            release: Some(release),
            thread: Some(thread),
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        drop(self.release.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn healthz(server: &TestServer) -> Reply {
    send(server.plain().get(format!("{}/healthz", server.base_url()))).await
}

fn order(n: usize) -> Value {
    json!({"email": format!("buyer{n}@example.com"), "value": n})
}

async fn a_locked_database_answers_503_in_bounded_time_and_healthz_tells(backend: Backend) {
    let server = TestServer::start_with(
        backend,
        &[(
            "TRIGGERD_DB_LOCK_TIMEOUT_SECS",
            &LOCK_TIMEOUT_SECS.to_string(),
        )],
    )
    .await;
    let hook = server.setup_webhook(order_workflow(), json!({})).await;
    let reply = send(server.plain().post(&hook.url).json(&order(0))).await;
    server.expect(&reply, 201, "a webhook before the lock");
    let reply = healthz(&server).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body, json!({"status": "ok"}));

    let held = Held::take(&server).await;
    // Several senders at once: each is answered 503 within the bound — not 201 once the lock is
    // gone, not 500.
    let senders: Vec<_> = (1..=6)
        .map(|n| {
            let request = server.plain().post(&hook.url).json(&order(n));
            tokio::spawn(async move {
                let started = Instant::now();
                let reply = send(request).await;
                (reply, started.elapsed())
            })
        })
        .collect();
    for sender in senders {
        let (reply, took) = sender.await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            reply.status,
            503,
            "a webhook on a locked database got {} after {took:?}: {}\n{}",
            reply.status,
            reply.text,
            server.logs()
        );
        reply.assert_error(503, "unavailable");
        assert!(
            took < BOUND,
            "a webhook waited {took:?} for its 503 (bound {BOUND:?})"
        );
    }
    let started = Instant::now();
    let reply = healthz(&server).await;
    assert_eq!(
        reply.status, 503,
        "/healthz while a write cannot commit: {}",
        reply.text
    );
    assert_eq!(reply.body["status"], "unavailable", "{}", reply.text);
    assert!(
        reply.body["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot commit")),
        "{}",
        reply.text
    );
    assert!(started.elapsed() < BOUND, "{:?}", started.elapsed());

    drop(held);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let reply = healthz(&server).await;
        if reply.status == 200 {
            assert_eq!(reply.body, json!({"status": "ok"}));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/healthz still answers {} after the lock was released: {}\n{}",
            reply.status,
            reply.text,
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let reply = send(server.plain().post(&hook.url).json(&order(7))).await;
    server.expect(&reply, 201, "a webhook after the lock");
    // The refused requests stored nothing: only the first and the last run exist.
    let runs = server.runs_of_trigger(&hook.id).await;
    assert_eq!(runs.len(), 2, "{runs:#?}");
    // But each 503 is in the activity log (issue 13), written once the store could take it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = server.trigger_requests(&hook.id).await;
        let refused: Vec<&Value> = rows.iter().filter(|r| r["status_code"] == 503).collect();
        if refused.len() == 6 {
            for row in refused {
                assert_eq!(row["outcome"], "failed", "{row:#}");
                assert_eq!(row["run_id"], Value::Null, "{row:#}");
                assert!(row["error"].is_string(), "{row:#}");
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the 503 answers are not all logged: {rows:#?}\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

triggerd_tests::e2e_tests!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    a_locked_database_answers_503_in_bounded_time_and_healthz_tells,
);
