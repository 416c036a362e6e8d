//! [`Store`]: opening, the read pool, the writer handle, shutdown and statistics. The operations
//! themselves live in one module per concept (`settings`, `workflows`, `deployments`,
//! `triggers`, `runs`).

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use diesel::Connection;
use diesel::r2d2::{Pool, R2D2Connection};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::checkpoint::{self, CheckpointPolicy};
use crate::conn::{DbConn, ReadManager, Role, Timeouts, establish, run_migrations};
use crate::error::{Result, StoreError};
use crate::url::{Backend, DbUrl};
use crate::writer::{BATCH_BUCKETS, Counters, Job, JobResult, Msg, Writer};

/// Tuning of a [`Store`]. `StoreOptions::default()` suits a single node.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Read connections in the pool (default 8).
    pub read_pool_size: u32,
    /// How long a read waits for a free pooled connection before `Unavailable` (default 5 s).
    pub acquire_timeout: Duration,
    /// SQLite `busy_timeout`: how long a connection waits for a lock (default 5 s).
    pub busy_timeout: Duration,
    /// PostgreSQL `lock_timeout`: how long a statement waits for a lock — a table or row lock,
    /// or the writer's batch lock another node holds — before its request fails `Unavailable`
    /// (default 5 s, as `busy_timeout`; zero: forever).
    pub lock_timeout: Duration,
    /// PostgreSQL `statement_timeout`: how long a statement may run before it is cancelled and
    /// its request fails `Unavailable` (default 10 s; zero: forever). Also the session's
    /// `idle_in_transaction_session_timeout`.
    pub statement_timeout: Duration,
    /// PostgreSQL: libpq's `connect_timeout` when the URL has none (default 5 s; whole seconds,
    /// libpq waits at least 2; zero: the operating system's TCP timeout).
    pub connect_timeout: Duration,
    /// Most jobs the writer commits in one transaction (default 512).
    pub max_batch: usize,
    /// Jobs that may wait for the writer before callers wait to enqueue (default 8192).
    pub queue_capacity: usize,
    /// SQLite: a passive WAL checkpoint at least this often while writes happen (default 1 s).
    pub checkpoint_interval: Duration,
    /// SQLite: also a passive checkpoint after this many commits (default 1000).
    pub checkpoint_every_commits: u64,
    /// SQLite: truncate the WAL after the writer has been idle this long (default 5 s).
    pub checkpoint_idle_truncate_after: Duration,
    /// SQLite: a WAL file larger than this after a checkpoint round is started over by a
    /// RESTART checkpoint (default 64 MiB; see `checkpoint.rs`).
    pub wal_restart_bytes: u64,
    /// SQLite: checkpoint from a background thread (default `true`). `false` leaves SQLite's
    /// automatic checkpoints on the writer — only to measure the difference: they stall commits.
    pub sqlite_background_checkpoints: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            read_pool_size: 8,
            acquire_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(5),
            lock_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            max_batch: 512,
            queue_capacity: 8192,
            checkpoint_interval: Duration::from_secs(1),
            checkpoint_every_commits: 1000,
            checkpoint_idle_truncate_after: Duration::from_secs(5),
            wal_restart_bytes: 64 * 1024 * 1024,
            sqlite_background_checkpoints: true,
        }
    }
}

/// Counters of the group-commit writer, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    /// Batches committed.
    pub commits: u64,
    /// Batches lost (connect, begin or commit failed; their jobs were answered `Unavailable`).
    pub failed_batches: u64,
    /// Jobs taken by the writer (committed or not).
    pub jobs: u64,
    /// The largest batch so far.
    pub max_batch: u64,
    /// Webhook requests written by the combined path (several accepted requests of a batch in
    /// one lookup and one multi-row INSERT per table).
    pub combined_ingests: u64,
    /// Times the combined path failed (e.g. a duplicate id) and the requests were written one by
    /// one instead.
    pub combined_fallbacks: u64,
    /// SQLite: the WAL file's size when last checked (about once a second while writes
    /// happen), bytes; 0 on PostgreSQL.
    pub wal_bytes: u64,
    /// SQLite: checkpoints that started a WAL over which had grown past
    /// [`StoreOptions::wal_restart_bytes`].
    pub wal_restarts: u64,
    /// Batches by size: entry `i` counts batches of `2^i` to `2^(i+1) - 1` jobs (1, 2–3, 4–7, …);
    /// the last entry also counts every larger batch.
    pub batch_sizes: [u64; BATCH_BUCKETS],
}

/// The persistence of triggerd over SQLite or PostgreSQL. Cheap to clone; every clone shares the
/// same writer thread and read pool.
///
/// Writes go through one group-commit writer thread per store; reads use a pool of connections
/// on blocking threads. All methods are `async` and never block the runtime.
///
/// A write whose caller stops waiting (its future is dropped) still runs once it was queued.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) url: DbUrl,
    pool: Pool<ReadManager>,
    tx: mpsc::Sender<Msg>,
    runs_notify: Arc<Notify>,
    counters: Arc<Counters>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    probe: tokio::sync::Mutex<Probe>,
    pub(crate) timeouts: crate::conn::Timeouts,
    /// The run-finished listener (PostgreSQL), started by the first `watch_run`.
    pub(crate) listener: std::sync::OnceLock<()>,
    /// Tells the listener to stop: set at shutdown and when the store is dropped.
    pub(crate) stopping: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("url", &self.inner.url)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the database the URL names (`sqlite://PATH`, `postgres://...` or
    /// `postgresql://...`), applies the pending migrations, and starts the writer thread (and, on
    /// SQLite, the WAL checkpointer). A SQLite file and its directory are created when missing.
    ///
    /// Fails with `InvalidUrl` for another scheme, `Unavailable` when the database cannot be
    /// reached, `Migration` when the schema cannot be brought up to date.
    pub async fn open(url: &str, opts: StoreOptions) -> Result<Store> {
        let url = DbUrl::parse(url)?;
        blocking(move || Self::open_blocking(url, opts)).await
    }

    fn open_blocking(url: DbUrl, opts: StoreOptions) -> Result<Store> {
        if let DbUrl::Sqlite(path) = &url {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                    path: dir.display().to_string(),
                    source,
                })?;
            }
        }
        let writer_role = if opts.sqlite_background_checkpoints {
            Role::Writer
        } else {
            Role::WriterAutoCheckpoint
        };
        let timeouts = Timeouts::of(&opts);
        let mut conn = establish(&url, writer_role, &timeouts).map_err(|e| {
            StoreError::unavailable(format!("cannot connect to the database {url}: {e}"))
        })?;
        run_migrations(&mut conn, &timeouts)?;

        let pool = Pool::builder()
            .max_size(opts.read_pool_size.max(1))
            .min_idle(Some(1))
            .connection_timeout(opts.acquire_timeout)
            .build(ReadManager {
                url: url.clone(),
                timeouts,
            })
            .map_err(|e| {
                StoreError::unavailable(format!("cannot open read connections to {url}: {e}"))
            })?;

        let counters = Arc::new(Counters::default());
        let runs_notify = Arc::new(Notify::new());
        let (tx, rx) = mpsc::channel(opts.queue_capacity.max(1));
        let mut threads = Vec::new();

        let after_commit: Option<Box<dyn FnMut() + Send>> = match url.backend() {
            Backend::Postgres => None,
            Backend::Sqlite if !opts.sqlite_background_checkpoints => None,
            Backend::Sqlite => {
                let (nudge_tx, nudge_rx) = std::sync::mpsc::sync_channel(1);
                let policy = CheckpointPolicy {
                    interval: opts.checkpoint_interval,
                    every_commits: opts.checkpoint_every_commits.max(1),
                    idle_truncate_after: opts.checkpoint_idle_truncate_after,
                    restart_bytes: opts.wal_restart_bytes,
                };
                let (url2, counters2) = (url.clone(), counters.clone());
                threads.push(spawn_thread("triggerd-checkpoint", move || {
                    checkpoint::run(url2, policy, counters2, nudge_rx)
                })?);
                let mut since_nudge = 0u64;
                Some(Box::new(move || {
                    since_nudge += 1;
                    if since_nudge >= policy.every_commits {
                        since_nudge = 0;
                        // A full channel means a nudge is already pending: nothing to do.
                        let _ = nudge_tx.try_send(());
                    }
                }))
            }
        };
        let writer = Writer {
            url: url.clone(),
            conn: Some(conn),
            timeouts,
            role: writer_role,
            max_batch: opts.max_batch.max(1),
            counters: counters.clone(),
            runs_notify: runs_notify.clone(),
            after_commit,
        };
        threads.insert(0, spawn_thread("triggerd-writer", move || writer.run(rx))?);

        Ok(Store {
            inner: Arc::new(Inner {
                url,
                pool,
                tx,
                runs_notify,
                counters,
                threads: Mutex::new(threads),
                probe: tokio::sync::Mutex::new(Probe::default()),
                timeouts,
                listener: std::sync::OnceLock::new(),
                stopping: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            }),
        })
    }

    /// Which database this store uses.
    pub fn backend(&self) -> Backend {
        self.inner.url.backend()
    }

    /// Checks that the database answers a query (for `/healthz`).
    pub async fn ping(&self) -> Result<()> {
        self.read(|c| c.ping().map_err(StoreError::from_diesel))
            .await
    }

    /// Checks that a write can be committed now (for `/healthz`): commits a tiny write through the
    /// writer — an upsert of the settings row `health_probe`, and on PostgreSQL the table locks a
    /// webhook's write takes (`runs`, `activity`, `triggers`, `webhook_tokens`), with `NOWAIT` —
    /// and waits at most `timeout` for it. `Unavailable`, saying why, when it failed or took
    /// longer: the writer is stuck behind a stalled or locked database, its queue is full, or
    /// someone holds a lock that would make a webhook wait.
    ///
    /// The answer is reused for `max_age`, and concurrent callers share one probe, so frequent
    /// health checks cost at most one small write per `max_age`. A probe that timed out stays
    /// queued and the next check waits for it instead of queueing another one.
    pub async fn probe_writes(&self, max_age: Duration, timeout: Duration) -> Result<()> {
        let mut probe = self.inner.probe.lock().await;
        if let Some((at, result)) = &probe.last
            && at.elapsed() < max_age
        {
            return result.clone().map_err(StoreError::unavailable);
        }
        let result = self.run_probe(&mut probe, timeout).await;
        probe.last = Some((Instant::now(), result.clone()));
        result.map_err(StoreError::unavailable)
    }

    async fn run_probe(&self, probe: &mut Probe, timeout: Duration) -> Result<(), String> {
        let mut rx = match probe.pending.take() {
            Some(rx) => rx,
            None => {
                let (job, rx) = Job::new(probe_write, |_| false);
                // Never wait for room in the queue: a full queue is the answer.
                self.inner.tx.try_send(Msg::Job(job)).map_err(|e| match e {
                    mpsc::error::TrySendError::Full(_) => "the write queue is full",
                    mpsc::error::TrySendError::Closed(_) => "the store is shut down",
                })?;
                rx
            }
        };
        match tokio::time::timeout(timeout, &mut rx).await {
            Err(_) => {
                probe.pending = Some(rx);
                Err(format!(
                    "a probe write was not committed within {} ms",
                    timeout.as_millis()
                ))
            }
            Ok(Ok(Ok(Ok(None)))) => Ok(()),
            Ok(Ok(Ok(Ok(Some(locked))))) => Err(format!("a webhook write would wait: {locked}")),
            Ok(Ok(Ok(Err(e)))) => Err(e.to_string()),
            Ok(Ok(Err(_panic))) => Err("the probe write panicked".to_owned()),
            Ok(Err(_)) => {
                Err("the probe write was not run: the database writer stopped".to_owned())
            }
        }
    }

    /// Stops the writer after it has committed every write queued so far; later writes fail with
    /// `Unavailable`. Reads keep working while a clone of the store lives. On SQLite the WAL is
    /// checkpointed and truncated. Calling it twice is harmless.
    pub async fn shutdown(&self) {
        self.inner
            .stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let (ack_tx, ack_rx) = oneshot::channel();
        if self.inner.tx.send(Msg::Shutdown(ack_tx)).await.is_ok() {
            let _ = ack_rx.await;
        }
        let threads = match self.inner.threads.lock() {
            Ok(mut t) => std::mem::take(&mut *t),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        if !threads.is_empty() {
            let _ = tokio::task::spawn_blocking(move || {
                for t in threads {
                    let _ = t.join();
                }
            })
            .await;
        }
    }

    /// Notified after a commit that stored a run the workers may claim (a new run, a released
    /// lease). Workers wait on `store.runs_notify().notified()` between claims.
    pub fn runs_notify(&self) -> Arc<Notify> {
        self.inner.runs_notify.clone()
    }

    /// The writer's counters so far.
    pub fn stats(&self) -> StoreStats {
        let c = &self.inner.counters;
        StoreStats {
            commits: c.commits.load(Ordering::Relaxed),
            failed_batches: c.failed_batches.load(Ordering::Relaxed),
            jobs: c.jobs.load(Ordering::Relaxed),
            max_batch: c.max_batch.load(Ordering::Relaxed),
            combined_ingests: c.combined_ingests.load(Ordering::Relaxed),
            combined_fallbacks: c.combined_fallbacks.load(Ordering::Relaxed),
            wal_bytes: c.wal_bytes.load(Ordering::Relaxed),
            wal_restarts: c.wal_restarts.load(Ordering::Relaxed),
            batch_sizes: std::array::from_fn(|i| c.batch_sizes[i].load(Ordering::Relaxed)),
        }
    }

    /// Runs `f` on a pooled read connection on a blocking thread.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConn) -> Result<T> + Send + 'static,
    {
        let pool = self.inner.pool.clone();
        blocking(move || {
            let mut conn = pool.get()?;
            f(&mut conn)
        })
        .await
    }

    /// Runs `f` in the writer's next batch, inside its own savepoint, and returns its result once
    /// the batch is committed. `wakes` tells from the result whether the run workers should be
    /// notified after the commit.
    pub(crate) async fn write<T, F>(&self, f: F, wakes: fn(&T) -> bool) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConn) -> Result<T> + Send + 'static,
    {
        let (job, rx) = Job::new(f, wakes);
        self.send(Msg::Job(job)).await?;
        self.receive(rx).await
    }

    /// Queues a message for the writer.
    pub(crate) async fn send(&self, msg: Msg) -> Result<()> {
        self.inner
            .tx
            .send(msg)
            .await
            .map_err(|_| StoreError::unavailable("the store is shut down"))
    }

    /// Waits for a job's result, re-raising its panic.
    pub(crate) async fn receive<T>(&self, rx: oneshot::Receiver<JobResult<T>>) -> Result<T> {
        match rx.await {
            Ok(Ok(result)) => result,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => Err(StoreError::unavailable(
                "the write was not run: the database writer stopped",
            )),
        }
    }
}

/// The settings key the write probe updates.
const PROBE_KEY: &str = "health_probe";

/// The last write probe of [`Store::probe_writes`]: when it ended and what it found, and a probe
/// still queued behind a stuck writer.
#[derive(Default)]
struct Probe {
    last: Option<(Instant, Result<(), String>)>,
    pending: Option<oneshot::Receiver<JobResult<Option<String>>>>,
}

/// The write probe, a writer job: an upsert of one settings row (so that the commit really
/// writes: a full disk shows), then, on PostgreSQL, the table locks of a webhook's write taken
/// `NOWAIT` in a savepoint of their own. Returns why a webhook would wait, if it would.
fn probe_write(c: &mut DbConn) -> Result<Option<String>> {
    use diesel::connection::SimpleConnection;

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    // The same statement on both backends (SQLite ≥ 3.24).
    c.batch_execute(&format!(
        "INSERT INTO settings (key, value) VALUES ('{PROBE_KEY}', '{now}') \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value"
    ))?;
    if matches!(c, DbConn::Postgres(_)) {
        // `ROW EXCLUSIVE` is what the INSERTs and UPDATEs of a webhook's write take, `ROW SHARE`
        // what its `FOR NO KEY UPDATE` of the token takes; they conflict only with what DDL,
        // `VACUUM FULL` or an explicit `LOCK TABLE` holds. Locks stay until the commit, which
        // costs nothing: other nodes' writers wait for this batch anyway.
        let locked = c.transaction::<_, diesel::result::Error, _>(|c| {
            c.batch_execute(
                "LOCK TABLE runs, activity, triggers IN ROW EXCLUSIVE MODE NOWAIT; \
                 LOCK TABLE webhook_tokens IN ROW SHARE MODE NOWAIT",
            )
        });
        if let Err(e) = locked {
            return Ok(Some(e.to_string()));
        }
    }
    Ok(None)
}

/// Runs blocking diesel code on tokio's blocking pool, re-raising its panic in the caller.
async fn blocking<T, F>(f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(StoreError::unavailable(
            "the database task was cancelled (runtime shutting down)",
        )),
    }
}

fn spawn_thread(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .map_err(|e| StoreError::unavailable(format!("cannot start the {name} thread: {e}")))
}

/// One page of a list, newest first (or by name for workflows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The rows of this page.
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Largest page any list returns.
pub const MAX_PAGE: usize = 1000;

/// The number of rows to ask for: one more than the page, to know whether another page follows.
pub(crate) fn fetch_limit(limit: usize) -> i64 {
    (limit.clamp(1, MAX_PAGE) + 1) as i64
}

/// Cuts the extra row off and derives the next cursor from the last row kept.
pub(crate) fn page<T>(mut rows: Vec<T>, limit: usize, key: impl Fn(&T) -> &str) -> Page<T> {
    let limit = limit.clamp(1, MAX_PAGE);
    let next_cursor = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|r| key(r).to_owned())
    } else {
        None
    };
    Page {
        items: rows,
        next_cursor,
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;
    use crate::testing::{TestDb, hold_writer};

    /// A job that panics loses its whole batch (the transaction's savepoint nesting is unknown
    /// after the unwind) and the panic reaches its caller; the writer goes on.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_job_is_re_raised_and_loses_only_its_batch() {
        let db = TestDb::sqlite();
        let store = db.open().await;
        let spawn_set = |key: &'static str| {
            let s = store.clone();
            tokio::spawn(async move { s.set_setting(key, "v").await })
        };
        let hold = {
            let s = store.clone();
            tokio::spawn(async move { hold_writer(&s, Duration::from_millis(500)).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let before = spawn_set("before");
        tokio::time::sleep(Duration::from_millis(20)).await;
        let boom = {
            let s = store.clone();
            tokio::spawn(async move {
                s.write(|_| -> Result<()> { panic!("boom") }, |_| false)
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let after = spawn_set("after");
        hold.await.unwrap_or_else(|e| panic!("{e}"));

        assert!(matches!(
            before.await,
            Ok(Err(StoreError::Unavailable { .. }))
        ));
        assert!(boom.await.is_err_and(|e| e.is_panic()));
        assert!(matches!(
            after.await,
            Ok(Err(StoreError::Unavailable { .. }))
        ));
        assert!(store.set_setting("next", "v").await.is_ok());
        assert!(matches!(store.get_setting("before").await, Ok(None)));
        assert!(matches!(store.get_setting("next").await, Ok(Some(_))));
        store.shutdown().await;
    }

    /// Time limits short enough for a test: locks 1 s, statements 3 s.
    fn short_timeouts() -> StoreOptions {
        StoreOptions {
            busy_timeout: Duration::from_secs(1),
            lock_timeout: Duration::from_secs(1),
            statement_timeout: Duration::from_secs(3),
            ..StoreOptions::default()
        }
    }

    /// A lock of the database held by a connection of its own, as another process would hold
    /// it, until dropped (at most 30 s).
    struct Held {
        release: Option<std::sync::mpsc::Sender<()>>,
        thread: Option<JoinHandle<()>>,
    }

    impl Held {
        /// Runs `sql` (e.g. `BEGIN; LOCK TABLE ...`) on a new connection to `url`; returns once
        /// it ran.
        async fn take(url: &str, sql: String) -> Held {
            let url = DbUrl::parse(url).unwrap_or_else(|e| panic!("{e}"));
            let (taken_tx, taken_rx) = oneshot::channel();
            let (release, released) = std::sync::mpsc::channel::<()>();
            let thread = std::thread::spawn(move || {
                use diesel::connection::SimpleConnection;
                let mut c = establish(&url, Role::Writer, &Timeouts::default())
                    .unwrap_or_else(|e| panic!("cannot connect: {e}"));
                c.batch_execute(&sql)
                    .unwrap_or_else(|e| panic!("{sql} failed: {e}"));
                let _ = taken_tx.send(());
                let _ = released.recv_timeout(Duration::from_secs(30));
                // Dropping the connection ends its transaction and session locks.
            });
            taken_rx
                .await
                .unwrap_or_else(|_| panic!("the lock was not taken"));
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

    /// PostgreSQL: a write waiting for a table another session locked gives up after
    /// `lock_timeout` (issue 13: webhooks waited 39 s, then got 201), and its whole batch with
    /// it — after one timeout, not one per job; the writer goes on once the lock is gone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_a_locked_table_ends_the_batch_after_one_lock_timeout() {
        let Some(db) = TestDb::postgres() else {
            return;
        };
        let store = db
            .open_with(short_timeouts())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let held = Held::take(
            db.url(),
            "BEGIN; LOCK TABLE settings IN ACCESS EXCLUSIVE MODE".into(),
        )
        .await;
        let started = Instant::now();
        // Eight writes queued behind a busy writer, so that they form one batch.
        let hold = {
            let s = store.clone();
            tokio::spawn(async move { hold_writer(&s, Duration::from_millis(300)).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let writes: Vec<_> = (0..8)
            .map(|i| {
                let s = store.clone();
                tokio::spawn(async move { s.set_setting(&format!("k{i}"), "v").await })
            })
            .collect();
        hold.await.unwrap_or_else(|e| panic!("{e}"));
        for w in writes {
            let result = tokio::time::timeout(Duration::from_secs(15), w)
                .await
                .unwrap_or_else(|_| panic!("a write waited for the lock for 15 s"))
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(
                matches!(&result, Err(StoreError::Unavailable { reason }) if reason.contains("lock timeout")),
                "{result:?}"
            );
        }
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(4),
            "the batch took {took:?}: one lock timeout (1 s) per job instead of one per batch?"
        );
        assert!(store.stats().failed_batches >= 1);
        drop(held);
        store
            .set_setting("after", "v")
            .await
            .unwrap_or_else(|e| panic!("the writer did not recover: {e}"));
        store.shutdown().await;
    }

    /// PostgreSQL: the batch lock another node's writer holds is waited for at most
    /// `lock_timeout` too (a stuck node must not stall every other node's webhooks for ever).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_another_nodes_batch_lock_is_waited_for_at_most_the_lock_timeout() {
        let Some(db) = TestDb::postgres() else {
            return;
        };
        let store = db
            .open_with(short_timeouts())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let held = Held::take(
            db.url(),
            format!("SELECT pg_advisory_lock({})", crate::writer::BATCH_LOCK_KEY),
        )
        .await;
        let started = Instant::now();
        let result = tokio::time::timeout(Duration::from_secs(15), store.set_setting("k", "v"))
            .await
            .unwrap_or_else(|_| panic!("the write waited for the batch lock for 15 s"));
        // `lock_timeout` (1 s) ended the wait, not `statement_timeout` (3 s).
        assert!(
            matches!(&result, Err(StoreError::Unavailable { reason }) if reason.contains("lock timeout")),
            "{result:?}"
        );
        let took = started.elapsed();
        assert!(took < Duration::from_secs(3), "{took:?}");
        drop(held);
        store
            .set_setting("k", "v")
            .await
            .unwrap_or_else(|e| panic!("the writer did not recover: {e}"));
        store.shutdown().await;
    }

    /// The health probe: fails, within its own timeout, while a webhook's write would wait (a
    /// locked `runs` table on PostgreSQL, SQLite's write lock held by another process); its
    /// answer is reused for `max_age`; it succeeds again once the lock is gone.
    async fn probe_writes_tells_whether_a_write_would_commit(backend: Backend) {
        let Some(db) = TestDb::new(backend) else {
            return;
        };
        let store = db
            .open_with(short_timeouts())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let fresh = Duration::ZERO;
        let probe = Duration::from_millis(500);
        store
            .probe_writes(fresh, probe)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            matches!(store.get_setting(PROBE_KEY).await, Ok(Some(_))),
            "the probe wrote nothing"
        );
        let lock = match backend {
            Backend::Postgres => "BEGIN; LOCK TABLE runs IN ACCESS EXCLUSIVE MODE",
            Backend::Sqlite => "BEGIN IMMEDIATE",
        };
        let held = Held::take(db.url(), lock.into()).await;
        // Within `max_age`, the last answer.
        assert!(
            store
                .probe_writes(Duration::from_secs(60), probe)
                .await
                .is_ok()
        );
        let started = Instant::now();
        let result = store.probe_writes(fresh, probe).await;
        assert!(
            matches!(result, Err(StoreError::Unavailable { .. })),
            "{result:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        // A second check while the first probe may still be queued: unavailable as well.
        assert!(store.probe_writes(fresh, probe).await.is_err());
        drop(held);
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Err(e) = store.probe_writes(fresh, Duration::from_secs(3)).await {
            assert!(Instant::now() < deadline, "still unavailable: {e}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        store.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_probe_writes_tells_whether_a_write_would_commit() {
        probe_writes_tells_whether_a_write_would_commit(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_probe_writes_tells_whether_a_write_would_commit() {
        probe_writes_tells_whether_a_write_would_commit(Backend::Postgres).await;
    }
}
