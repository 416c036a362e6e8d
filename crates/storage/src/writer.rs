//! The group-commit writer: one thread owns the write connection; every write of the process goes
//! through it.
//!
//! The thread takes the first waiting job, then every other job already queued (up to
//! `max_batch`), and runs them all in ONE transaction, each inside its own savepoint, so that a
//! failing job (a duplicate id, a token rotated in flight) rolls back only itself. It commits once
//! — one fsync for the whole batch — and only then answers each job. If the commit fails, every job
//! of the batch is answered `Unavailable` and nothing of the batch is stored.
//!
//! A job that fails `Unavailable` (a PostgreSQL lock or statement timeout, a full disk) ends its
//! batch the same way: the jobs after it would each wait as long again for the same stalled
//! database, so a batch of N webhooks would answer after N timeouts instead of one. The writer
//! reconnects and goes on with the next batch.
//!
//! Webhook requests come as data (`IngestJob`), not closures: the accepted ones of a batch are
//! first written together in one savepoint (see `ingest.rs`), and one by one only if that fails.
//!
//! Ordering matters for durability: a job's result (and so the webhook's 201) is sent only after
//! the commit has returned.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use diesel::Connection;
use diesel::connection::SimpleConnection;
use diesel::connection::{AnsiTransactionManager, TransactionManager};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::conn::{DbConn, Role, Timeouts, establish};
use crate::error::{Result, StoreError};
use crate::ingest::{ingest_many, ingest_one};
use crate::runs::{IngestWrite, Ingested};
use crate::url::DbUrl;

/// A panic caught on the writer thread, re-raised in the caller's task.
pub(crate) type Panic = Box<dyn Any + Send + 'static>;

/// Answers a job: called with `None` after a successful commit, `Some(reason)` when the batch
/// was lost.
type Answer = Box<dyn FnOnce(Option<&str>) + Send>;

/// What a job leaves behind after it ran in its savepoint: how to answer it once the batch's
/// fate is known, and whether it made work for the run workers.
struct Staged {
    answer: Answer,
    /// The job stored something the workers should look at (a new or released run).
    wakes_workers: bool,
    /// The job panicked: the transaction's savepoint nesting is unknown, the batch is abandoned.
    panicked: bool,
    /// The job failed `Unavailable` (this reason): the database is stalled or refuses writes,
    /// the batch is abandoned.
    unavailable: Option<String>,
}

/// A type-erased job: runs on the writer's connection inside the batch transaction — or, given
/// no connection, does not run and is answered with the reason its batch was lost.
pub(crate) struct Job(Box<RunJob>);

/// The body of a [`Job`].
type RunJob = dyn FnOnce(Option<&mut DbConn>) -> Staged + Send;

impl Job {
    /// Answers the job `Unavailable` with `reason`, without running it.
    fn abandon(self, reason: &str) {
        ((self.0)(None).answer)(Some(reason));
    }

    /// Wraps a typed job. `wakes` decides from its successful result whether to wake the workers.
    /// Returns the job and the receiver of its result.
    pub(crate) fn new<T, F>(f: F, wakes: fn(&T) -> bool) -> (Self, oneshot::Receiver<JobResult<T>>)
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConn) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        (Self::with_reply(f, wakes, tx), rx)
    }

    /// Wraps a typed job whose result goes to `tx`.
    fn with_reply<T, F>(f: F, wakes: fn(&T) -> bool, tx: oneshot::Sender<JobResult<T>>) -> Self
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConn) -> Result<T> + Send + 'static,
    {
        Job(Box::new(move |conn: Option<&mut DbConn>| {
            let Some(conn) = conn else {
                // Answered once the batch's fate is known: with the reason it was lost.
                return stage(Err(StoreError::unavailable("not run")), false, tx);
            };
            // The savepoint: a nested `transaction` inside the batch's transaction.
            match catch_unwind(AssertUnwindSafe(|| conn.transaction(f))) {
                Ok(result) => {
                    let wakes_workers = matches!(&result, Ok(t) if wakes(t));
                    let unavailable = match &result {
                        Err(StoreError::Unavailable { reason }) => Some(reason.clone()),
                        _ => None,
                    };
                    Staged {
                        unavailable,
                        ..stage(result, wakes_workers, tx)
                    }
                }
                Err(panic) => Staged {
                    wakes_workers: false,
                    panicked: true,
                    unavailable: None,
                    answer: Box::new(move |_| {
                        let _ = tx.send(Err(panic));
                    }),
                },
            }
        }))
    }
}

/// A job's result, held until the batch's fate is known.
fn stage<T: Send + 'static>(
    result: Result<T>,
    wakes_workers: bool,
    tx: oneshot::Sender<JobResult<T>>,
) -> Staged {
    Staged {
        wakes_workers,
        panicked: false,
        unavailable: None,
        answer: Box::new(move |lost: Option<&str>| {
            let result = match lost {
                None => result,
                Some(reason) => Err(StoreError::unavailable(reason)),
            };
            let _ = tx.send(Ok(result));
        }),
    }
}

/// A webhook request for the writer (see `ingest.rs`): plain data, so that the accepted requests
/// of a batch can be written together and, if that fails, one by one.
pub(crate) struct IngestJob {
    pub(crate) write: IngestWrite,
    pub(crate) reply: oneshot::Sender<JobResult<Ingested>>,
}

impl IngestJob {
    /// As an ordinary job, in its own savepoint.
    fn into_job(self) -> Job {
        let wakes: fn(&Ingested) -> bool = if self.wakes_workers() {
            |r| matches!(r, Ingested::Written)
        } else {
            |_| false
        };
        let write = self.write;
        Job::with_reply(move |c| ingest_one(c, &write), wakes, self.reply)
    }

    fn starts_run(&self) -> bool {
        self.write.run.is_some()
    }

    /// Whether storing it gives the run workers something to do: not for a rejected request, nor
    /// for a run stored finished (a step-less run completed at ingest).
    fn wakes_workers(&self) -> bool {
        self.write
            .run
            .as_ref()
            .is_some_and(|r| matches!(r.status.as_str(), "pending" | "running"))
    }
}

/// What a job's caller receives: the job's result, or the panic it raised.
pub(crate) type JobResult<T> = std::result::Result<Result<T>, Panic>;

/// Messages to the writer thread.
pub(crate) enum Msg {
    Job(Job),
    Ingest(Box<IngestJob>),
    /// Run everything queued before this message, then stop.
    Shutdown(oneshot::Sender<()>),
}

/// Counters of the writer, shared with [`Store::stats`](crate::Store::stats).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) commits: AtomicU64,
    pub(crate) failed_batches: AtomicU64,
    pub(crate) jobs: AtomicU64,
    pub(crate) max_batch: AtomicU64,
    pub(crate) combined_ingests: AtomicU64,
    pub(crate) combined_fallbacks: AtomicU64,
    /// SQLite: the WAL file's size when the checkpointer last looked, bytes.
    pub(crate) wal_bytes: AtomicU64,
    /// SQLite: checkpoints by the writer that let it start an oversized WAL over.
    pub(crate) wal_restarts: AtomicU64,
    /// SQLite: set by the checkpointer when the WAL passed its size target; the writer
    /// checkpoints between two batches and clears it (see `checkpoint.rs`).
    pub(crate) wal_restart_wanted: std::sync::atomic::AtomicBool,
    /// Batches by size: bucket `i` counts batches of `2^i ..= 2^(i+1)-1` jobs; the last bucket
    /// takes everything larger.
    pub(crate) batch_sizes: [AtomicU64; BATCH_BUCKETS],
}

/// A committed batch that took longer than this is logged: the disk (fsync) or the database
/// server is struggling, and every request of the batch waited that long.
const SLOW_BATCH: Duration = Duration::from_millis(500);

/// Number of batch-size buckets: 1, 2–3, 4–7, …, 512 and more.
pub(crate) const BATCH_BUCKETS: usize = 10;

impl Counters {
    fn record_batch(&self, size: usize) {
        let size = size as u64;
        self.jobs.fetch_add(size, Ordering::Relaxed);
        self.max_batch.fetch_max(size, Ordering::Relaxed);
        let bucket = (63 - size.max(1).leading_zeros() as usize).min(BATCH_BUCKETS - 1);
        self.batch_sizes[bucket].fetch_add(1, Ordering::Relaxed);
    }
}

/// One piece of a batch.
enum Work {
    Job(Job),
    Ingest(Box<IngestJob>),
}

impl Work {
    fn into_job(self) -> Job {
        match self {
            Work::Job(j) => j,
            Work::Ingest(i) => i.into_job(),
        }
    }
}

/// Answers every job of a batch that could not begin `Unavailable`, saying why.
fn abandon(batch: &mut Vec<Work>, reason: &str) {
    for work in batch.drain(..) {
        work.into_job().abandon(reason);
    }
}

/// Everything the writer thread needs.
pub(crate) struct Writer {
    pub(crate) url: DbUrl,
    pub(crate) conn: Option<DbConn>,
    pub(crate) timeouts: Timeouts,
    /// `Role::Writer`, or `Role::WriterAutoCheckpoint` to compare.
    pub(crate) role: Role,
    pub(crate) max_batch: usize,
    pub(crate) counters: Arc<Counters>,
    pub(crate) runs_notify: Arc<Notify>,
    /// Nudges the SQLite checkpointer after commits; `None` on PostgreSQL.
    pub(crate) after_commit: Option<Box<dyn FnMut() + Send>>,
}

impl Writer {
    /// The thread's body: runs until a `Shutdown` message or until every sender is gone.
    pub(crate) fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut shutdown_acks = Vec::new();
        let mut batch = Vec::with_capacity(self.max_batch);
        // After a `Shutdown`, the channel is closed: `blocking_recv` still hands out what was
        // queued before, then returns `None`.
        while let Some(first) = rx.blocking_recv() {
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Job(job) => batch.push(Work::Job(job)),
                    Msg::Ingest(job) => batch.push(Work::Ingest(job)),
                    Msg::Shutdown(ack) => {
                        shutdown_acks.push(ack);
                        rx.close();
                    }
                }
                if batch.len() < self.max_batch {
                    next = rx.try_recv().ok();
                }
            }
            if !batch.is_empty() {
                self.run_batch(&mut batch);
            }
        }
        // Every message that was queued has been taken: the store is drained.
        drop(self.conn.take());
        for ack in shutdown_acks {
            let _ = ack.send(());
        }
    }

    /// Runs one batch in one transaction and answers every job.
    fn run_batch(&mut self, batch: &mut Vec<Work>) {
        let size = batch.len();
        let started = std::time::Instant::now();
        let counters = self.counters.clone();
        self.counters.record_batch(size);
        let conn = match self.connection() {
            Ok(c) => c,
            Err(reason) => {
                abandon(batch, &reason);
                tracing::warn!(%reason, jobs = size, "database writer cannot connect");
                self.counters.failed_batches.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        if let Err(e) = begin(conn) {
            let reason = format!("cannot begin the write transaction: {e}");
            tracing::warn!(%reason, jobs = size, "write batch failed");
            abandon(batch, &reason);
            self.conn = None;
            self.counters.failed_batches.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut staged = Vec::with_capacity(size);
        // Why the batch is abandoned when a write of it failed `Unavailable`.
        let mut lost: Option<String> = None;
        let mut jobs = Vec::with_capacity(size);
        let mut accepted = Vec::new();
        for work in batch.drain(..) {
            match work {
                Work::Ingest(i) if i.starts_run() => accepted.push(i),
                Work::Ingest(i) => jobs.push(i.into_job()),
                Work::Job(j) => jobs.push(j),
            }
        }
        if accepted.len() > 1 {
            // The accepted webhook requests together, in one savepoint; one by one if that
            // fails. Alone in its batch (the usual case under load), the combined write needs
            // no savepoint of its own — two statements less per batch, on PostgreSQL two round
            // trips: if it fails, the whole transaction is rolled back and begun again before
            // the requests are written one by one.
            let alone = jobs.is_empty();
            let writes: Vec<&IngestWrite> = accepted.iter().map(|i| &i.write).collect();
            match catch_unwind(AssertUnwindSafe(|| {
                if alone {
                    ingest_many(conn, &writes)
                } else {
                    conn.transaction(|c| ingest_many(c, &writes))
                }
            })) {
                Ok(Ok(results)) => {
                    counters
                        .combined_ingests
                        .fetch_add(results.len() as u64, Ordering::Relaxed);
                    for (job, result) in accepted.drain(..).zip(results) {
                        let wakes = matches!(result, Ok(Ingested::Written)) && job.wakes_workers();
                        staged.push(stage(result, wakes, job.reply));
                    }
                }
                Ok(Err(StoreError::Unavailable { reason })) => {
                    // A stalled database, not a bad request: one by one, each would wait as
                    // long again. The requests, below, are answered `Unavailable`.
                    lost = Some(reason);
                }
                Ok(Err(e)) => {
                    counters.combined_fallbacks.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(error = %e, "combined webhook write failed; one by one");
                    if alone && let Err(e) = restart(conn) {
                        // The next batch reconnects.
                        let reason = format!("cannot begin the write transaction again: {e}");
                        tracing::warn!(%reason, jobs = size, "write batch failed");
                        self.conn = None;
                        self.counters.failed_batches.fetch_add(1, Ordering::Relaxed);
                        for i in accepted {
                            i.into_job().abandon(&reason);
                        }
                        return;
                    }
                }
                Err(panic) => {
                    // The first request gets the panic; the others, below, `Unavailable`.
                    let first = accepted.remove(0);
                    staged.push(Staged {
                        wakes_workers: false,
                        panicked: true,
                        unavailable: None,
                        answer: Box::new(move |_| {
                            let _ = first.reply.send(Err(panic));
                        }),
                    });
                }
            }
        }
        let mut panicked = staged.iter().any(|s| s.panicked);
        for job in accepted.into_iter().map(|i| i.into_job()).chain(jobs) {
            if panicked || lost.is_some() {
                // The batch is lost already: the job is answered `Unavailable` with the reason.
                staged.push((job.0)(None));
                continue;
            }
            let s = (job.0)(Some(&mut *conn));
            panicked = s.panicked;
            lost = s.unavailable.clone();
            staged.push(s);
        }
        let outcome = if panicked {
            Err("a job of the batch panicked; the batch was rolled back".to_owned())
        } else if let Some(reason) = lost {
            Err(format!(
                "a write of the batch failed ({reason}); the batch was rolled back"
            ))
        } else {
            <DbConn as Connection>::TransactionManager::commit_transaction(conn)
                .map_err(|e| format!("commit failed: {e}"))
        };
        match outcome {
            Ok(()) => {
                self.counters.commits.fetch_add(1, Ordering::Relaxed);
                let took = started.elapsed();
                if took > SLOW_BATCH {
                    tracing::warn!(
                        jobs = size,
                        ms = took.as_millis() as u64,
                        "slow write batch"
                    );
                }
                // SAFETY(durability): answers go out only now, after the commit returned.
                let wake = staged.iter().any(|s| s.wakes_workers);
                for s in staged {
                    (s.answer)(None);
                }
                if wake {
                    self.runs_notify.notify_waiters();
                    self.runs_notify.notify_one();
                }
                if let Some(after) = self.after_commit.as_mut() {
                    after();
                }
                if self.counters.wal_restart_wanted.load(Ordering::Relaxed) {
                    self.restart_wal();
                }
            }
            Err(reason) => {
                tracing::warn!(%reason, jobs = size, "write batch failed");
                self.counters.failed_batches.fetch_add(1, Ordering::Relaxed);
                // Closing the connection rolls back whatever is left of the transaction; the
                // next batch reconnects.
                self.conn = None;
                for s in staged {
                    (s.answer)(Some(&reason));
                }
            }
        }
    }

    /// SQLite, asked by the checkpointer (the WAL passed its size target): copies the frames
    /// the checkpointer has not, between two batches — the jobs of the last one are answered
    /// already — so that the next batch's transaction starts the WAL over. A reader still on an
    /// old snapshot keeps frames from being copied; then the next batch tries again.
    fn restart_wal(&mut self) {
        let Some(DbConn::Sqlite(c)) = self.conn.as_mut() else {
            self.counters
                .wal_restart_wanted
                .store(false, Ordering::Relaxed);
            return;
        };
        let started = std::time::Instant::now();
        match crate::checkpoint::checkpoint(c, "PASSIVE") {
            Some(r) if r.busy == 0 && r.checkpointed == r.log => {
                self.counters
                    .wal_restart_wanted
                    .store(false, Ordering::Relaxed);
                self.counters.wal_restarts.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    frames = r.log,
                    us = started.elapsed().as_micros() as u64,
                    "WAL copied back: the next transaction starts it over"
                );
            }
            _ => {}
        }
    }

    /// The write connection, reconnecting after a failure.
    fn connection(&mut self) -> std::result::Result<&mut DbConn, String> {
        if self.conn.is_none() {
            let c = establish(&self.url, self.role, &self.timeouts)
                .map_err(|e| format!("cannot connect to the database: {e}"))?;
            self.conn = Some(c);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| "no write connection".to_owned())
    }
}

/// Rolls the batch transaction back and begins it again (after a failed write outside any
/// savepoint).
fn restart(conn: &mut DbConn) -> diesel::QueryResult<()> {
    <DbConn as Connection>::TransactionManager::rollback_transaction(conn)?;
    begin(conn)
}

/// `pg_advisory_xact_lock` key that orders the write batches of every node on one PostgreSQL
/// database. The ASCII bytes of "trgbatch".
pub(crate) const BATCH_LOCK_KEY: i64 = 0x7472_6762_6174_6368;

/// Begins the batch transaction. On SQLite `BEGIN IMMEDIATE` takes the write lock up front, so
/// a batch that reads before it writes can never fail with `SQLITE_BUSY_SNAPSHOT` when another
/// process (e.g. `triggerd migrate`) wrote in between; `busy_timeout` covers the wait.
///
/// On PostgreSQL the batch first takes a transaction-level advisory lock, so the batches of
/// several nodes commit one after another — the same single-writer order as on SQLite. Without
/// it two nodes deadlock: each batch locks the token and trigger rows of its requests (the
/// token re-check, the `fire_count` bump) in arrival order, and PostgreSQL's deadlock detector
/// aborts only the waiting request's savepoint, so every later request of the batch on the
/// same row waits and deadlocks again (one second each). Taken first, while the transaction
/// holds nothing, the lock cannot be part of a cycle.
///
/// The session's `lock_timeout` (`conn.rs`) bounds the wait for it like any other lock: a node
/// whose batch is stuck (behind a locked table, say) makes the others answer 503 after that
/// long, not wait with it.
fn begin(conn: &mut DbConn) -> diesel::QueryResult<()> {
    match conn {
        DbConn::Sqlite(c) => AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE"),
        DbConn::Postgres(c) => {
            AnsiTransactionManager::begin_transaction(c)?;
            c.batch_execute(&format!("SELECT pg_advisory_xact_lock({BATCH_LOCK_KEY})"))
        }
    }
}
