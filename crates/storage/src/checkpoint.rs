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
//! * runs a last TRUNCATE when the writer stops.

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
}

#[derive(QueryableByName, Debug)]
struct CheckpointResult {
    #[diesel(sql_type = Integer)]
    busy: i32,
    /// Frames in the WAL.
    #[diesel(sql_type = Integer)]
    log: i32,
    /// Frames copied into the database.
    #[diesel(sql_type = Integer)]
    checkpointed: i32,
}

fn checkpoint(c: &mut SqliteConnection, mode: &str) -> Option<CheckpointResult> {
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
        } else if wal_frames > 0 && last_activity.elapsed() >= policy.idle_truncate_after {
            if let Some(r) = checkpoint(c, "TRUNCATE") {
                if r.busy == 0 {
                    wal_frames = 0;
                }
            }
        }
    }
}
