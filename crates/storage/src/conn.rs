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

/// How long a connection may wait before its statement fails (and the request answers 503),
/// from [`StoreOptions`](crate::StoreOptions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timeouts {
    /// SQLite `busy_timeout`.
    pub(crate) busy: Duration,
    /// PostgreSQL `statement_timeout` (and `idle_in_transaction_session_timeout`); zero: none.
    pub(crate) statement: Duration,
    /// PostgreSQL `lock_timeout`; zero: none.
    pub(crate) lock: Duration,
    /// PostgreSQL: libpq's `connect_timeout` unless the URL sets one; zero: none.
    pub(crate) connect: Duration,
}

impl Timeouts {
    pub(crate) fn of(opts: &crate::StoreOptions) -> Self {
        Timeouts {
            busy: opts.busy_timeout,
            statement: opts.statement_timeout,
            lock: opts.lock_timeout,
            connect: opts.connect_timeout,
        }
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Self::of(&crate::StoreOptions::default())
    }
}

/// Opens a connection of the backend the URL names and sets it up for `role`.
pub(crate) fn establish(
    url: &DbUrl,
    role: Role,
    timeouts: &Timeouts,
) -> Result<DbConn, ConnectionError> {
    match url {
        DbUrl::Sqlite(path) => {
            let path = path.to_str().ok_or_else(|| {
                ConnectionError::BadConnection("the SQLite path is not valid UTF-8".into())
            })?;
            let mut c = SqliteConnection::establish(path)?;
            c.batch_execute(&sqlite_pragmas(role, timeouts.busy))
                .map_err(ConnectionError::CouldntSetupConfiguration)?;
            Ok(DbConn::Sqlite(c))
        }
        DbUrl::Postgres(u) => {
            let mut c = PgConnection::establish(&with_connect_timeout(u, timeouts.connect))
                .map_err(hint_missing_database)?;
            // Session settings: UTC, a name that shows up in pg_stat_activity, the time limits.
            c.batch_execute(&format!(
                "SET TIME ZONE 'UTC'; SET application_name = 'triggerd'; {}",
                postgres_limits(timeouts)
            ))
            .map_err(ConnectionError::CouldntSetupConfiguration)?;
            Ok(DbConn::Postgres(c))
        }
    }
}

/// PostgreSQL's `database "x" does not exist` with what to do about it: triggerd creates its
/// tables, not the database.
fn hint_missing_database(error: ConnectionError) -> ConnectionError {
    match error {
        ConnectionError::BadConnection(message) if message.contains("does not exist") => {
            ConnectionError::BadConnection(format!(
                "{}; create it first (triggerd creates its tables, not the database), e.g. \
                 `createdb -h HOST -U USER NAME` or `CREATE DATABASE name;` in psql",
                message.trim_end()
            ))
        }
        other => other,
    }
}

/// The PostgreSQL session's time limits, so that a stalled database (a table locked by someone
/// else, a server starved of I/O) answers the request with 503 within a bound instead of holding
/// it until the sender gave up and retried (issue 13: webhooks waited 39 s on a locked `runs`
/// table, then got 201).
///
/// * `lock_timeout`: how long a statement waits for any lock — a table lock, a row lock, and the
///   writer's batch advisory lock (`pg_advisory_xact_lock`, a lock like any other). The same
///   bound as SQLite's `busy_timeout` by default (5 s), so both backends answer 503 after about
///   as long.
/// * `statement_timeout`: how long a statement may run at all (default 10 s). Our statements take
///   milliseconds (the hot path's INSERTs; lists of at most 1000 rows; retention deletes 500 runs
///   per statement), so only a stalled server reaches it. Longer than the lock timeout, so a lock
///   wait is reported as what it is.
/// * `idle_in_transaction_session_timeout` = the statement timeout: our transactions never wait
///   for anything between statements (a writer job must not do I/O, see `tx.rs`), so a session
///   idle inside a transaction that long belongs to a stuck process — and on PostgreSQL it holds
///   the batch advisory lock every node's writer waits for. The server ends it.
///
/// Migrations run without them (`run_migrations`).
fn postgres_limits(t: &Timeouts) -> String {
    format!(
        "SET statement_timeout = {s}; SET lock_timeout = {l}; \
         SET idle_in_transaction_session_timeout = {s}",
        s = postgres_ms(t.statement),
        l = postgres_ms(t.lock),
    )
}

/// A duration as PostgreSQL's integer milliseconds: 0 only for zero (which means "no limit"),
/// otherwise rounded up.
fn postgres_ms(d: Duration) -> u128 {
    d.as_micros().div_ceil(1000).min(i32::MAX as u128)
}

/// `url` with libpq's `connect_timeout` (whole seconds, rounded up; libpq waits at least 2 s)
/// when the URL does not set one. Without it a connection attempt to an unreachable server waits
/// for the operating system's TCP timeout (minutes), and a reconnecting writer or a pool filling
/// up waits with it.
fn with_connect_timeout(url: &str, timeout: Duration) -> std::borrow::Cow<'_, str> {
    let query = url.split_once('?').map(|(_, q)| q);
    let has_one = query.is_some_and(|q| {
        q.split('&')
            .any(|kv| kv.split('=').next() == Some("connect_timeout"))
    });
    if timeout.is_zero() || has_one {
        return url.into();
    }
    let secs = timeout.as_millis().div_ceil(1000);
    let separator = if query.is_some() { '&' } else { '?' };
    format!("{url}{separator}connect_timeout={secs}").into()
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
///   `journal_size_limit` (256 MiB) truncates a WAL that grew past it once it has been reset.
///   It is above what the WAL reaches under sustained load (about 120 MB at 14–15k webhooks/s,
///   see `checkpoint.rs`): with 64 MiB, the writer truncated the file at nearly every restart
///   and the truncation showed as p99.9 40–50 ms (20–23 ms with 256 MiB; 12 ms with a WAL that
///   is never restarted and grows to 1 GB). The idle TRUNCATE gives the space back.
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
                " PRAGMA journal_mode = WAL; PRAGMA journal_size_limit = 268435456; \
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

/// Opens the database `url` names (a missing SQLite file is created, as by `Store::open`; its
/// directory is not), applies the pending migrations and returns their names, oldest first —
/// empty when the schema was up to date. For `triggerd migrate`, which says what it did.
pub fn migrate(url: &str, opts: &crate::StoreOptions) -> Result<Vec<String>> {
    let url = DbUrl::parse(url)?;
    let timeouts = Timeouts::of(opts);
    let mut conn = establish(&url, Role::WriterAutoCheckpoint, &timeouts).map_err(|e| {
        StoreError::unavailable(format!("cannot connect to the database {url}: {e}"))
    })?;
    run_migrations(&mut conn, &timeouts)
}

/// Applies every pending migration of the URL's backend and returns their names. On PostgreSQL
/// the run holds `pg_advisory_lock`, so that several nodes starting at once migrate one after
/// the other, and runs without the session's time limits: waiting for another node's migration,
/// or a long `CREATE INDEX`, is expected there. The limits are set again afterwards.
pub(crate) fn run_migrations(conn: &mut DbConn, timeouts: &Timeouts) -> Result<Vec<String>> {
    fn migration_error(e: impl fmt::Display) -> StoreError {
        StoreError::Migration {
            reason: e.to_string(),
        }
    }
    /// Runs the pending migrations of `source` and returns their names.
    fn run<C: MigrationHarness<B>, B: diesel::backend::Backend>(
        c: &mut C,
        source: EmbeddedMigrations,
    ) -> Result<Vec<String>> {
        let pending = c.pending_migrations(source).map_err(migration_error)?;
        c.run_migrations(&pending).map_err(migration_error)?;
        Ok(pending.iter().map(|m| m.name().to_string()).collect())
    }
    let applied = match conn {
        DbConn::Sqlite(c) => run(c, SQLITE_MIGRATIONS)?,
        DbConn::Postgres(c) => {
            let unlimited = Timeouts {
                statement: Duration::ZERO,
                lock: Duration::ZERO,
                ..*timeouts
            };
            c.batch_execute(&format!(
                "{}; SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})",
                postgres_limits(&unlimited)
            ))?;
            let ran = run(c, POSTGRES_MIGRATIONS);
            let unlocked = c.batch_execute(&format!(
                "SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY}); {}",
                postgres_limits(timeouts)
            ));
            let applied = ran?;
            unlocked?;
            applied
        }
    };
    Ok(applied)
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
    pub(crate) timeouts: Timeouts,
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
        establish(&self.url, Role::Reader, &self.timeouts)
            .map_err(diesel::r2d2::Error::ConnectionError)
    }

    fn is_valid(&self, conn: &mut DbConn) -> Result<(), Self::Error> {
        conn.ping().map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConn) -> bool {
        conn.is_broken()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_timeout_is_added_unless_the_url_has_one() {
        let five = Duration::from_secs(5);
        assert_eq!(
            with_connect_timeout("postgres://u@h/db", five),
            "postgres://u@h/db?connect_timeout=5"
        );
        assert_eq!(
            with_connect_timeout(
                "postgres://u@h/db?sslmode=disable",
                Duration::from_millis(2500)
            ),
            "postgres://u@h/db?sslmode=disable&connect_timeout=3"
        );
        for kept in [
            "postgres://u@h/db?connect_timeout=30",
            "postgres://u@h/db?sslmode=disable&connect_timeout=30",
        ] {
            assert_eq!(with_connect_timeout(kept, five), kept);
        }
        assert_eq!(
            with_connect_timeout("postgres://u@h/db", Duration::ZERO),
            "postgres://u@h/db"
        );
    }

    #[test]
    fn postgres_limits_are_whole_milliseconds_and_zero_only_for_none() {
        assert_eq!(postgres_ms(Duration::ZERO), 0);
        assert_eq!(postgres_ms(Duration::from_micros(1)), 1);
        assert_eq!(postgres_ms(Duration::from_millis(2500)), 2500);
        assert_eq!(postgres_ms(Duration::from_secs(u64::MAX)), i32::MAX as u128);
        let sql = postgres_limits(&Timeouts {
            statement: Duration::from_secs(10),
            lock: Duration::from_secs(5),
            ..Timeouts::default()
        });
        assert_eq!(
            sql,
            "SET statement_timeout = 10000; SET lock_timeout = 5000; \
             SET idle_in_transaction_session_timeout = 10000"
        );
    }
}
