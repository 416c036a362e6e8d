//! Connections: the two-backend connection enum, per-connection set-up, the read pool's manager,
//! and the embedded migrations.

use std::fmt;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ManageConnection, R2D2Connection};
use diesel::{Connection, ConnectionError, PgConnection, SqliteConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::error::{Result, StoreError};
use crate::url::DbUrl;

/// A connection to either backend. Queries in the common subset run on it directly; statements
/// that differ (upserts, `FOR UPDATE SKIP LOCKED`) match on the variant (`per_backend!`).
///
/// Always built from the URL's scheme by this crate, never by `DbConn::establish` (which would
/// try each backend in turn).
#[derive(diesel::MultiConnection)]
pub enum DbConn {
    /// A SQLite connection.
    Sqlite(SqliteConnection),
    /// A PostgreSQL connection.
    Postgres(PgConnection),
}

impl fmt::Debug for DbConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sqlite(_) => "DbConn::Sqlite",
            Self::Postgres(_) => "DbConn::Postgres",
        })
    }
}

/// Runs the same code on the inner connection of either backend: `per_backend!(conn, c => expr)`.
/// The expression is compiled once per backend, so it may use backend-specific DSL
/// (`on_conflict`, `for_update().skip_locked()`).
macro_rules! per_backend {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            $crate::conn::DbConn::Sqlite($c) => $body,
            $crate::conn::DbConn::Postgres($c) => $body,
        }
    };
}
pub(crate) use per_backend;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");

/// `pg_advisory_lock` key held while migrating, so that nodes starting together migrate one at a
/// time. The ASCII bytes of "triggerd".
const MIGRATION_LOCK_KEY: i64 = 0x7472_6967_6765_7264;

/// What a connection is used for; decides its SQLite PRAGMAs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The group-commit writer (and the migration run at open).
    Writer,
    /// The writer with SQLite's automatic checkpoints left on (comparison benchmarks only).
    WriterAutoCheckpoint,
    /// A pooled read connection.
    Reader,
    /// The SQLite WAL checkpointer.
    Checkpointer,
}

/// Opens a connection of the backend the URL names and sets it up for `role`.
pub(crate) fn establish(
    url: &DbUrl,
    role: Role,
    busy_timeout: Duration,
) -> Result<DbConn, ConnectionError> {
    match url {
        DbUrl::Sqlite(path) => {
            let path = path.to_str().ok_or_else(|| {
                ConnectionError::BadConnection("the SQLite path is not valid UTF-8".into())
            })?;
            let mut c = SqliteConnection::establish(path)?;
            c.batch_execute(&sqlite_pragmas(role, busy_timeout))
                .map_err(ConnectionError::CouldntSetupConfiguration)?;
            Ok(DbConn::Sqlite(c))
        }
        DbUrl::Postgres(u) => {
            let mut c = PgConnection::establish(u)?;
            // Session settings: UTC, and a name that shows up in pg_stat_activity.
            c.batch_execute("SET TIME ZONE 'UTC'; SET application_name = 'triggerd'")
                .map_err(ConnectionError::CouldntSetupConfiguration)?;
            Ok(DbConn::Postgres(c))
        }
    }
}

/// The per-connection SQLite set-up.
///
/// * `journal_mode = WAL`: readers never block the writer and the writer never blocks readers.
/// * `synchronous = FULL`: the WAL is fsynced at every commit, so an acknowledged write survives
///   power loss, not only a process crash. Group commit pays one fsync per batch.
/// * `foreign_keys = ON`: SQLite checks foreign keys only when asked, per connection.
/// * `busy_timeout`: wait for locks instead of failing at once (another process, e.g.
///   `triggerd migrate`, may hold the write lock briefly).
/// * Checkpoints: `wal_autocheckpoint = 0` on the writer. With automatic checkpoints the commit
///   that crosses the threshold runs the checkpoint itself, inside the hot path: a plain
///   group-commit writer was measured at p99 5 ms in one run and 667 ms in another (a checkpoint
///   stall). Instead a separate checkpointer thread with its own connection runs
///   `wal_checkpoint(PASSIVE)` (never blocks the writer) about once a second or every N commits,
///   and `wal_checkpoint(TRUNCATE)` only when the writer has been idle (see `checkpoint.rs`).
///   Measured with the `ingest_latency` test (64 concurrent ingests, 10 s, release, this 2-core
///   VM): background checkpoints 4.4–4.6k ingests/s, p99 23–29 ms; automatic ones 3.0–3.5k/s,
///   p99 36–47 ms. Both show rare p99.9 outliers of 60–200 ms (fsync jitter of the disk).
///   `journal_size_limit` truncates a WAL that grew during a burst once it has been reset.
/// * `temp_store = MEMORY` on the writer: every job runs in a savepoint, and SQLite copies each
///   page a savepoint first modifies into a statement sub-journal — a temporary file by default.
/// * `cache_size` = 2 MiB on the writer (512 pages: the right edges of the B-trees the hot path
///   appends to, and a batch's dirty pages, many times over). Not more: at every commit SQLite
///   walks the page cache's hash table to drop pages past the end of the database
///   (`pcache1TruncateUnsafe`), and with 64 MiB that walk took 4.0 % of the server's CPU
///   samples under `ingest` (perf, ~8 % of the writer thread); with 2 MiB, 0.3 %.
/// * Readers are `query_only`: a read path that tries to write is a bug.
fn sqlite_pragmas(role: Role, busy_timeout: Duration) -> String {
    let busy_ms = match role {
        // The checkpointer gives way at once: a TRUNCATE that would wait for the writer is
        // simply retried at the next idle tick.
        Role::Checkpointer => 50,
        _ => busy_timeout.as_millis().min(i32::MAX as u128),
    };
    let mut sql = format!(
        "PRAGMA busy_timeout = {busy_ms}; PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL;"
    );
    match role {
        Role::Writer | Role::WriterAutoCheckpoint => {
            sql.push_str(
                " PRAGMA journal_mode = WAL; PRAGMA journal_size_limit = 67108864; \
                 PRAGMA temp_store = MEMORY; PRAGMA cache_size = -2048;",
            );
            if role == Role::Writer {
                sql.push_str(" PRAGMA wal_autocheckpoint = 0;");
            }
        }
        Role::Reader => sql.push_str(" PRAGMA query_only = ON;"),
        Role::Checkpointer => sql.push_str(" PRAGMA wal_autocheckpoint = 0;"),
    }
    sql
}

/// Applies every pending migration of the URL's backend. On PostgreSQL the run holds
/// `pg_advisory_lock`, so that several nodes starting at once migrate one after the other.
pub(crate) fn run_migrations(conn: &mut DbConn) -> Result<()> {
    fn migration_error(e: impl fmt::Display) -> StoreError {
        StoreError::Migration {
            reason: e.to_string(),
        }
    }
    match conn {
        DbConn::Sqlite(c) => {
            c.run_pending_migrations(SQLITE_MIGRATIONS)
                .map_err(migration_error)?;
        }
        DbConn::Postgres(c) => {
            c.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))?;
            let ran = c
                .run_pending_migrations(POSTGRES_MIGRATIONS)
                .map(drop)
                .map_err(migration_error);
            let unlocked =
                c.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"));
            ran?;
            unlocked?;
        }
    }
    Ok(())
}

/// The embedded migrations of a backend, for the migration tests.
#[cfg(feature = "testing")]
pub(crate) fn migrations(backend: crate::Backend) -> EmbeddedMigrations {
    match backend {
        crate::Backend::Sqlite => SQLITE_MIGRATIONS,
        crate::Backend::Postgres => POSTGRES_MIGRATIONS,
    }
}

/// The r2d2 manager of read connections: the backend and set-up come from the URL, not from
/// `DbConn::establish`.
pub(crate) struct ReadManager {
    pub(crate) url: DbUrl,
    pub(crate) busy_timeout: Duration,
}

impl fmt::Debug for ReadManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `DbUrl`'s Debug hides the password.
        f.debug_struct("ReadManager")
            .field("url", &self.url)
            .finish()
    }
}

impl ManageConnection for ReadManager {
    type Connection = DbConn;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<DbConn, Self::Error> {
        establish(&self.url, Role::Reader, self.busy_timeout)
            .map_err(diesel::r2d2::Error::ConnectionError)
    }

    fn is_valid(&self, conn: &mut DbConn) -> Result<(), Self::Error> {
        conn.ping().map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConn) -> bool {
        conn.is_broken()
    }
}
