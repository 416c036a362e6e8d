//! Test harness (feature `testing`): a fresh database per test on either backend, and a macro
//! that runs one behaviour against both — the storage suite and the end-to-end tests share it.
//!
//! * SQLite: a file in a new temporary directory, removed afterwards.
//! * PostgreSQL: `CREATE DATABASE triggerd_t_<random>` through the server named by
//!   `TRIGGERD_TEST_POSTGRES_URL` (e.g. `postgres://postgres@127.0.0.1:5432/test`), dropped
//!   afterwards. When the variable is unset the PostgreSQL half is skipped with a printed notice —
//!   unless `CI=true`, where it fails, as it fails whenever the server cannot be reached.
//!
//! ```ignore
//! async fn identical_put_creates_no_version(store: Store, _db: TestDb) {
//!     store.put_workflow("wf", "{}", 1).await.unwrap();
//!     assert!(!store.put_workflow("wf", "{}", 2).await.unwrap().1);
//! }
//! triggerd_storage::store_tests!(identical_put_creates_no_version);
//! ```

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use diesel_migrations::MigrationHarness;

use crate::conn::{DbConn, Role, Timeouts, establish, migrations};
use crate::url::DbUrl;
use crate::{Backend, Store, StoreOptions};

/// The environment variable naming the PostgreSQL server tests create their databases on.
pub const POSTGRES_URL_VAR: &str = "TRIGGERD_TEST_POSTGRES_URL";

/// A fresh, empty database for one test; removed (file) or dropped (PostgreSQL) on drop.
#[derive(Debug)]
pub struct TestDb {
    backend: Backend,
    url: String,
    cleanup: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    Dir(PathBuf),
    Postgres { admin_url: String, name: String },
}

impl TestDb {
    /// A fresh database of `backend`; `None` when PostgreSQL is not configured (outside CI).
    pub fn new(backend: Backend) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => Some(Self::sqlite()),
            Backend::Postgres => Self::postgres(),
        }
    }

    /// A SQLite file in a new temporary directory.
    pub fn sqlite() -> TestDb {
        let dir = std::env::temp_dir().join(format!("triggerd-test-{}", unique_suffix()));
        TestDb {
            backend: Backend::Sqlite,
            url: format!("sqlite://{}", dir.join("triggerd.db").display()),
            cleanup: Cleanup::Dir(dir),
        }
    }

    /// A new database on the server of `TRIGGERD_TEST_POSTGRES_URL`.
    ///
    /// Returns `None` (after printing a notice) when the variable is unset. Panics when it is
    /// unset and `CI=true`, or when the server cannot be reached or refuses `CREATE DATABASE`.
    pub fn postgres() -> Option<TestDb> {
        let admin_url = match std::env::var(POSTGRES_URL_VAR) {
            Ok(u) if !u.trim().is_empty() => u,
            _ => {
                if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
                    panic!(
                        "{POSTGRES_URL_VAR} is not set but CI=true: PostgreSQL tests must run in \
                         CI (e.g. {POSTGRES_URL_VAR}=postgres://postgres@127.0.0.1:5432/test)"
                    );
                }
                eprintln!("notice: {POSTGRES_URL_VAR} is not set; skipping a PostgreSQL test");
                return None;
            }
        };
        let name = format!("triggerd_t_{}", unique_suffix());
        let mut admin = PgConnection::establish(&admin_url).unwrap_or_else(|e| {
            panic!(
                "cannot reach the PostgreSQL of {POSTGRES_URL_VAR} ({}): {e}",
                crate::redact_url(&admin_url)
            )
        });
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name} failed: {e}"));
        Some(TestDb {
            backend: Backend::Postgres,
            url: with_database(&admin_url, &name),
            cleanup: Cleanup::Postgres { admin_url, name },
        })
    }

    /// The database URL (it may hold a password: do not print it).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Opens a store on this database with default options, panicking on failure.
    pub async fn open(&self) -> Store {
        self.open_with(StoreOptions::default())
            .await
            .unwrap_or_else(|e| panic!("cannot open the test store: {e}"))
    }

    /// Opens a store on this database.
    pub async fn open_with(&self, opts: StoreOptions) -> crate::Result<Store> {
        Store::open(&self.url, opts).await
    }

    /// Reverts every applied migration, then runs every migration up, down and up again, one at a
    /// time, then reverts all of them and applies them all again. Blocking; returns what went
    /// wrong.
    pub fn check_migrations_reversible(&self) -> Result<(), String> {
        let url = DbUrl::parse(&self.url).map_err(|e| e.to_string())?;
        let conn =
            establish(&url, Role::Writer, &Timeouts::default()).map_err(|e| e.to_string())?;
        let source = || migrations(self.backend);
        fn step<C: MigrationHarness<B>, B: diesel::backend::Backend>(
            c: &mut C,
            source: &dyn Fn() -> diesel_migrations::EmbeddedMigrations,
        ) -> Result<usize, String>
        where
            diesel_migrations::EmbeddedMigrations: diesel::migration::MigrationSource<B>,
        {
            // Start from an empty schema, whatever was applied before.
            c.revert_all_migrations(source())
                .map_err(|e| format!("revert all first: {e}"))?;
            let mut count = 0;
            while c
                .has_pending_migration(source())
                .map_err(|e| e.to_string())?
            {
                let up = c
                    .run_next_migration(source())
                    .map(|v| v.to_string())
                    .map_err(|e| e.to_string())?;
                let down = c
                    .revert_last_migration(source())
                    .map(|v| v.to_string())
                    .map_err(|e| format!("down of {up}: {e}"))?;
                if up != down {
                    return Err(format!("ran {up} but reverted {down}"));
                }
                c.run_next_migration(source())
                    .map_err(|e| format!("up again of {up}: {e}"))?;
                count += 1;
            }
            let reverted = c
                .revert_all_migrations(source())
                .map(|v| v.len())
                .map_err(|e| format!("revert all: {e}"))?;
            if reverted != count {
                return Err(format!("reverted {reverted} of {count}"));
            }
            c.run_pending_migrations(source())
                .map_err(|e| format!("all up again: {e}"))?;
            Ok(count)
        }
        let count = match conn {
            DbConn::Sqlite(mut c) => step(&mut c, &source)?,
            DbConn::Postgres(mut c) => step(&mut c, &source)?,
        };
        if count == 0 {
            return Err("no migration found".into());
        }
        Ok(())
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Postgres { admin_url, name } => {
                let dropped = PgConnection::establish(admin_url).map(|mut c| {
                    c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                });
                if !matches!(dropped, Ok(Ok(()))) {
                    eprintln!("warning: could not drop the test database {name}");
                }
            }
        }
    }
}

/// Keeps the store's writer busy for `hold` (a job that sleeps), so that writes sent meanwhile
/// queue up and land in one batch. Returns once that job is committed.
pub async fn hold_writer(store: &Store, hold: std::time::Duration) {
    let _ = store
        .write(
            move |_| {
                std::thread::sleep(hold);
                Ok(())
            },
            |_| false,
        )
        .await;
}

/// Runs one behaviour on a fresh database of `backend`: opens a store, calls `f`, shuts the
/// store down, drops the database. Skips (returns) when the backend is not configured.
pub async fn run_on<F, Fut>(backend: Backend, f: F)
where
    F: FnOnce(Store, TestDb) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let store = db.open().await;
    f(store.clone(), db).await;
    store.shutdown().await;
}

/// Declares, for each behaviour `async fn name(store: Store, db: TestDb)` in scope, a test
/// `sqlite::name` and a test `postgres::name`, each on a fresh database.
#[macro_export]
macro_rules! store_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::testing::run_on($crate::Backend::Sqlite, super::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::testing::run_on($crate::Backend::Postgres, super::$name).await;
                }
            )*
        }
    };
}

/// A name part unique across processes and calls.
fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{:016x}", h.finish())
}

/// `url` with its database name replaced by `name` (query parameters kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{name}", &base[..path_start]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

impl Store {
    /// A second store on the same database (another node of a cluster, for tests): its own
    /// writer and read pool. `None` for a SQLite file, which one process owns.
    pub async fn reopen_for_tests(&self) -> Option<Store> {
        let url = match &self.inner.url {
            DbUrl::Postgres(url) => url.clone(),
            DbUrl::Sqlite(_) => return None,
        };
        Some(
            Store::open(&url, StoreOptions::default())
                .await
                .expect("reopen the test database"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_name_is_replaced() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/test?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgresql://h", "x"), "postgresql://h/x");
    }
}
