//! # triggerd-app
//!
//! The application's operations, called by every adapter — the HTTP layer (`triggerd-ingress`),
//! the background workers (`triggerd-scheduler`: run execution, cron firing; `triggerd-delivery`)
//! and the CLI. It sits between them and storage:
//!
//! ```text
//!   ingress   scheduler   delivery   server      adapters
//!        \        |         |        /
//!                   app                           operations: every write goes through here
//!                    |
//!                 storage  ->  domain
//! ```
//!
//! | module | owns |
//! |---|---|
//! | [`runs`] | starting a run (webhook, API, cron) — a step-less run is completed at start —, moving a run between states through [`App::transition`], checked by the domain's state machine, which returns the events each move emits; cancelling |
//! | [`triggers`] | creating, changing (one read-merge-write transaction), rotating and removing triggers; resolving a webhook token to a typed trigger; the next cron slot; [`TriggerChanges`], which replaces hand-placed cache invalidations |
//! | [`deployments`] | storing a workflow version and deploying, each with the declared-trigger sync in the **same** transaction; the context store |
//! | [`hooks`] | event hooks and their secrets, the deliveries' log and manual retry, the body of an event (the deliveries are written by each state change's transaction) |
//! | [`cron`] | firing due cron slots: slot record, run and next slot in one transaction (exactly once per slot) |
//! | [`clock`] | the [`Clock`] every time-dependent decision reads, a [`TestClock`] and a [`ScaledClock`] |
//!
//! **Rules.** Every write goes through `App`; reads may go straight to the [`Store`]
//! ([`App::store`]). This is the one place where storage rows (string-typed) and domain types
//! convert: a status, a source, an outcome or a trigger configuration is parsed or encoded here
//! and nowhere else. This crate must never: speak HTTP, hold SQL, sleep or do I/O inside a storage
//! transaction (every write of the node waits for it), or write a run's status without asking
//! the domain's state machine.
//!
//! ```no_run
//! # async fn example(store: triggerd_storage::Store) -> Result<(), triggerd_app::AppError> {
//! use std::sync::Arc;
//! use triggerd_app::{App, clock::SystemClock};
//!
//! let app = App::new(store, Arc::new(SystemClock), "http://127.0.0.1:8080");
//! let row = app.cancel_run("run_01J...").await?;
//! assert_eq!(row.status, "cancelled");
//! # Ok(()) }
//! ```

pub mod clock;
pub mod cron;
#[cfg(test)]
mod cron_tests;
pub mod deployments;
mod error;
pub mod hooks;
pub mod memory;
pub mod runs;
#[cfg(test)]
mod tests;
pub mod triggers;
pub mod waits;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;
use triggerd_storage::Store;

pub use clock::{Clock, ScaledClock, SystemClock, TestClock};
pub use error::AppError;

/// The application: the store, the clock and the public URL, shared by every adapter. Cheap to
/// clone.
#[derive(Clone)]
pub struct App {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    clock: Arc<dyn Clock>,
    public_url: String,
    options: AppOptions,
    changes: Arc<TriggerChanges>,
    /// Set once a hook is known to exist (created here, or seen by the delivery worker): the
    /// webhook path then wakes the delivery workers after its commit. Only a wake-up hint —
    /// deliveries are written by the transaction whatever it says.
    hooks_seen: std::sync::atomic::AtomicBool,
    /// Tests only: make the declared-trigger sync fail after this many changes.
    fail_sync_after: Option<usize>,
    /// Bytes of large work in memory at once (webhook bodies, run pages, run execution).
    memory: memory::MemoryBudget,
}

impl fmt::Debug for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("App")
            .field("store", &self.inner.store)
            .field("public_url", &self.inner.public_url)
            .finish_non_exhaustive()
    }
}

/// What the server allows (SPEC 8 settings that change what definitions may hold).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppOptions {
    /// `TRIGGERD_ALLOW_COMMANDS`: definitions may use `command` steps.
    pub allow_commands: bool,
    /// `TRIGGERD_MEMORY_BUDGET_MB` in bytes: large work in memory at once (0: no budget).
    pub memory_budget_bytes: u64,
    /// `TRIGGERD_MEMORY_WAIT_MS`: the longest a request waits for the budget.
    pub memory_wait: std::time::Duration,
}

impl Default for AppOptions {
    fn default() -> Self {
        AppOptions {
            allow_commands: false,
            memory_budget_bytes: memory::DEFAULT_MEMORY_BUDGET_BYTES,
            memory_wait: memory::DEFAULT_MEMORY_WAIT,
        }
    }
}

impl App {
    /// The application over `store`, reading time from `clock`; `public_url` (no trailing slash
    /// needed) is the base of the webhook URLs it hands out. Default [`AppOptions`].
    pub fn new(store: Store, clock: Arc<dyn Clock>, public_url: &str) -> App {
        Self::with_options(store, clock, public_url, AppOptions::default())
    }

    /// [`App::new`] with `options`.
    pub fn with_options(
        store: Store,
        clock: Arc<dyn Clock>,
        public_url: &str,
        options: AppOptions,
    ) -> App {
        App {
            inner: Arc::new(Inner {
                store,
                clock,
                options,
                public_url: public_url.trim_end_matches('/').to_owned(),
                changes: Arc::new(TriggerChanges::default()),
                hooks_seen: std::sync::atomic::AtomicBool::new(false),
                fail_sync_after: None,
                memory: memory::MemoryBudget::new(options.memory_budget_bytes, options.memory_wait),
            }),
        }
    }

    /// What the server allows.
    pub fn options(&self) -> AppOptions {
        self.inner.options
    }

    /// The node's memory budget (see [`memory`]).
    pub fn memory(&self) -> &memory::MemoryBudget {
        &self.inner.memory
    }

    /// The store, for reads.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// Microseconds since the epoch, now, by [`App::clock`].
    pub fn now(&self) -> i64 {
        self.inner.clock.now_micros()
    }

    /// The base of the URLs this server hands out, without a trailing slash.
    pub fn public_url(&self) -> &str {
        &self.inner.public_url
    }

    /// The public URL of a webhook token.
    pub fn webhook_url(&self, token: &str) -> String {
        format!("{}/api/webhooks/{token}", self.inner.public_url)
    }

    /// Stores a server setting (e.g. the admin token's hash).
    pub async fn set_setting(&self, key: &str, value: &str) -> Result<(), AppError> {
        Ok(self.inner.store.set_setting(key, value).await?)
    }

    /// Whether hooks may exist (see `hooks_seen`): a wake-up hint for the delivery workers.
    pub fn hooks_may_exist(&self) -> bool {
        self.inner.hooks_seen.load(Ordering::Relaxed)
    }

    /// Records that hooks exist (or may): the webhook path wakes the delivery workers from now
    /// on.
    pub fn set_hooks_may_exist(&self, exist: bool) {
        self.inner.hooks_seen.store(exist, Ordering::Relaxed);
    }

    /// Told of every change to a trigger made through this `App` (and so on this node).
    pub fn trigger_changes(&self) -> &Arc<TriggerChanges> {
        &self.inner.changes
    }
}

/// The change feed of triggers: a generation number that grows with every committed change to a
/// trigger, a deployment or a workflow version made on this node, and a [`Notify`] for waiters.
///
/// Caches compare the generation they were filled at with [`TriggerChanges::generation`] (one
/// atomic load) instead of being invalidated by hand after each write; the cron scheduler waits
/// on [`TriggerChanges::notified`]. Other nodes' changes are not seen here: caches bound that by
/// a TTL.
#[derive(Debug, Default)]
pub struct TriggerChanges {
    generation: AtomicU64,
    notify: Notify,
}

impl TriggerChanges {
    /// The current generation.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Records a committed change and wakes every waiter.
    pub fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.notify.notify_waiters();
    }

    /// Resolves at the next change.
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Shared set-up of the unit tests: an `App` on a fresh database of each backend with a
    //! [`TestClock`].

    use std::future::Future;
    use std::sync::Arc;

    use triggerd_storage::Backend;
    use triggerd_storage::testing::TestDb;

    use crate::{App, TestClock};

    /// 2023-11-14T22:13:20Z.
    pub const T0: i64 = 1_700_000_000_000_000;

    /// Runs `f` with an app on a fresh database of `backend` (skipped when not configured).
    pub async fn with_app<F, Fut>(backend: Backend, f: F)
    where
        F: FnOnce(App, Arc<TestClock>) -> Fut,
        Fut: Future<Output = ()>,
    {
        let Some(db) = TestDb::new(backend) else {
            return;
        };
        let store = db.open().await;
        let clock = Arc::new(TestClock::new(T0));
        let app = App::new(store.clone(), clock.clone(), "http://triggerd.test");
        f(app, clock).await;
        store.shutdown().await;
    }

    /// Declares `sqlite::name` and `postgres::name` for each `async fn name(app, clock)`.
    macro_rules! app_tests {
        ($($name:ident),* $(,)?) => {
            mod sqlite {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        $crate::testing::with_app(triggerd_storage::Backend::Sqlite, super::$name).await;
                    }
                )*
            }
            mod postgres {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        $crate::testing::with_app(triggerd_storage::Backend::Postgres, super::$name).await;
                    }
                )*
            }
        };
    }
    pub(crate) use app_tests;
}
