//! [`Store`]: opening, the read pool, the writer handle, shutdown and statistics. The operations
//! themselves live in one module per concept (`settings`, `workflows`, `deployments`,
//! `triggers`, `runs`).

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use diesel::r2d2::{Pool, R2D2Connection};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::checkpoint::{self, CheckpointPolicy};
use crate::conn::{DbConn, ReadManager, Role, establish, run_migrations};
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
            max_batch: 512,
            queue_capacity: 8192,
            checkpoint_interval: Duration::from_secs(1),
            checkpoint_every_commits: 1000,
            checkpoint_idle_truncate_after: Duration::from_secs(5),
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
        let mut conn = establish(&url, writer_role, opts.busy_timeout).map_err(|e| {
            StoreError::unavailable(format!("cannot connect to the database {url}: {e}"))
        })?;
        run_migrations(&mut conn)?;

        let pool = Pool::builder()
            .max_size(opts.read_pool_size.max(1))
            .min_idle(Some(1))
            .connection_timeout(opts.acquire_timeout)
            .build(ReadManager {
                url: url.clone(),
                busy_timeout: opts.busy_timeout,
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
            busy_timeout: opts.busy_timeout,
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

    /// Stops the writer after it has committed every write queued so far; later writes fail with
    /// `Unavailable`. Reads keep working while a clone of the store lives. On SQLite the WAL is
    /// checkpointed and truncated. Calling it twice is harmless.
    pub async fn shutdown(&self) {
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
                "the write was not run: the database writer could not reach the database",
            )),
        }
    }
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
}
