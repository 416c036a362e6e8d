//! The SQLite WAL checkpointer: a thread with its own connection, so that checkpoints never run
//! inside a commit of the hot path.
//!
//! Why: with automatic checkpoints, the commit that pushes the WAL past the threshold copies the
//! WAL into the database file and fsyncs it before it returns; a group-commit writer doing that
//! was measured on this machine at p99 5 ms in one run and 667 ms in another. The writer runs
//! with `wal_autocheckpoint = 0` and this thread:
//!
//! * runs `wal_checkpoint(PASSIVE)` once per `interval` or after `every_commits` commits,
//!   whichever comes first, when anything was committed since the last one. PASSIVE takes no
//!   lock the writer waits on; once a checkpoint has copied the whole WAL, the writer's next
//!   commit starts the WAL from the beginning again, so under steady load the file stays bounded;
//! * runs `wal_checkpoint(TRUNCATE)` when the writer has been idle for `idle_truncate_after` and
//!   the WAL is not empty, to give the disk space back. TRUNCATE briefly blocks writers, which is
//!   why it waits for idleness (and gives up at once when it would have to wait);
//! * runs a last TRUNCATE when the writer stops;
//! * bounds the WAL under sustained load. PASSIVE alone cannot: the WAL is started over only by
//!   a write transaction that begins when *every* frame has been copied back, and under load
//!   the group-commit writer has always appended more by the time a checkpoint finishes, so the
//!   file grew without end (712 MB in a 15 s burst at 8,500 req/s). A RESTART checkpoint from
//!   here does not help either: it holds the write lock while it waits for readers, and a steady
//!   trickle of reads starves it (measured: the writer blocked for up to 2 s). So when the WAL
//!   file passes `restart_bytes`, this thread runs one more PASSIVE round (copying what was
//!   written during the last one) and then asks the writer (`Counters::wal_restart_wanted`) to
//!   finish the job between two batches: the writer runs a PASSIVE checkpoint itself — only the
//!   frames of the last few milliseconds are left — and its next transaction starts the WAL
//!   over. This thread skips its own rounds meanwhile, so the two never wait on each other.
//!   Measured (`triggerd-bench -s ingest`, 10 s, 2 cores): the WAL file peaked at 117–131 MB
//!   instead of 0.9–1.0 GB, throughput unchanged (14.3–14.9k req/s against 13.9–15.0k), p99
//!   9.3–9.6 ms against 8.8–8.9 ms, p99.9 19–23 ms against 12 ms (docs/performance.md).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use diesel::sql_types::Integer;
use diesel::{QueryableByName, RunQueryDsl, SqliteConnection};

use crate::conn::{DbConn, Role, Timeouts, establish};
use crate::url::DbUrl;
use crate::writer::Counters;

/// Settings of the checkpointer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CheckpointPolicy {
    pub(crate) interval: Duration,
    pub(crate) every_commits: u64,
    pub(crate) idle_truncate_after: Duration,
    /// WAL file size past which the writer is asked to start the WAL over.
    pub(crate) restart_bytes: u64,
}

/// Before the writer is asked to start an oversized WAL over, PASSIVE rounds repeat (at most
/// this many) until one finds at most `FEW_FRAMES` frames written since the one before: those
/// are what the writer then copies between two batches.
const MAX_CATCH_UP_ROUNDS: usize = 8;
/// 256 frames: about 1 MiB of pages, a millisecond or two to copy.
const FEW_FRAMES: i32 = 256;

#[derive(QueryableByName, Debug)]
pub(crate) struct CheckpointResult {
    #[diesel(sql_type = Integer)]
    pub(crate) busy: i32,
    /// Frames in the WAL.
    #[diesel(sql_type = Integer)]
    pub(crate) log: i32,
    /// Frames copied into the database.
    #[diesel(sql_type = Integer)]
    pub(crate) checkpointed: i32,
}

pub(crate) fn checkpoint(c: &mut SqliteConnection, mode: &str) -> Option<CheckpointResult> {
    match diesel::sql_query(format!("PRAGMA wal_checkpoint({mode})")).get_result(c) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::debug!(error = %e, mode, "WAL checkpoint did not run");
            None
        }
    }
}

/// The thread's body. `nudges` carries a message every `every_commits` commits; it disconnects
/// when the writer stops.
pub(crate) fn run(
    url: DbUrl,
    policy: CheckpointPolicy,
    counters: Arc<Counters>,
    nudges: Receiver<()>,
) {
    let wal_path = match &url {
        DbUrl::Sqlite(path) => {
            let mut p = path.clone().into_os_string();
            p.push("-wal");
            std::path::PathBuf::from(p)
        }
        DbUrl::Postgres(_) => return,
    };
    let wal_size = || std::fs::metadata(&wal_path).map_or(0, |m| m.len());
    let mut conn = None;
    let mut checkpointed_at_commit = counters.commits.load(Ordering::Relaxed);
    let mut last_seen_commit = checkpointed_at_commit;
    let mut last_activity = Instant::now();
    let mut wal_frames: i32 = 0;
    loop {
        let stopping = match nudges.recv_timeout(policy.interval) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        if conn.is_none() {
            conn = match establish(&url, Role::Checkpointer, &Timeouts::default()) {
                Ok(DbConn::Sqlite(c)) => Some(c),
                Ok(DbConn::Postgres(_)) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "WAL checkpointer cannot connect");
                    if stopping {
                        return;
                    }
                    continue;
                }
            };
        }
        let Some(c) = conn.as_mut() else { continue };
        let commits = counters.commits.load(Ordering::Relaxed);
        if commits != last_seen_commit {
            last_seen_commit = commits;
            last_activity = Instant::now();
        }
        if stopping {
            checkpoint(c, "TRUNCATE");
            return;
        }
        if counters.wal_restart_wanted.load(Ordering::Relaxed) {
            // The writer finishes the restart between two batches; a checkpoint from here
            // would only make one of the two wait.
            counters.wal_bytes.store(wal_size(), Ordering::Relaxed);
            continue;
        }
        if commits != checkpointed_at_commit {
            if let Some(r) = checkpoint(c, "PASSIVE") {
                checkpointed_at_commit = commits;
                wal_frames = r.log;
                tracing::trace!(
                    busy = r.busy,
                    log = r.log,
                    checkpointed = r.checkpointed,
                    "passive WAL checkpoint"
                );
            }
            let size = wal_size();
            counters.wal_bytes.store(size, Ordering::Relaxed);
            if size > policy.restart_bytes {
                // What was written during that round, and again, until a round finds little
                // new: the writer's part — the frames after the last round — stays small.
                let mut frames = wal_frames;
                for _ in 0..MAX_CATCH_UP_ROUNDS {
                    let Some(r) = checkpoint(c, "PASSIVE") else {
                        break;
                    };
                    let fresh = r.log.saturating_sub(frames);
                    frames = r.log;
                    if fresh <= FEW_FRAMES {
                        break;
                    }
                }
                counters.wal_restart_wanted.store(true, Ordering::Relaxed);
                tracing::debug!(
                    wal_bytes = size,
                    "WAL past its size target: the writer starts it over"
                );
            }
        } else if wal_frames > 0 && last_activity.elapsed() >= policy.idle_truncate_after {
            if let Some(r) = checkpoint(c, "TRUNCATE") {
                if r.busy == 0 {
                    wal_frames = 0;
                }
            }
            counters.wal_bytes.store(wal_size(), Ordering::Relaxed);
        }
    }
}
