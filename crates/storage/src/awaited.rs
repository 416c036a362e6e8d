//! Runs that a request waits for (a webhook with `response.mode = "sync"`, SPEC 4.5): the waiting
//! request is woken when its run reaches a final state, without polling the database.
//!
//! * **This process.** Every run update that commits a final state through this crate
//!   ([`Store::update_run`], [`crate::Tx::force_update_run`]) calls [`finished`] after its
//!   commit; a registered watcher of that run is woken.
//! * **Other nodes (PostgreSQL).** The ingest write marks the run `awaited`; a database trigger
//!   (migration 000009) sends `NOTIFY triggerd_run_finished, '<run id>'` in the transaction that
//!   finishes an awaited run, on whichever node. Each node that has watched a run keeps one
//!   connection that `LISTEN`s ([`Store::watch_run`] starts it on first use) and wakes the
//!   watcher. libpq offers no blocking wait through diesel, so the listener reads the socket's
//!   pending notifications every [`LISTEN_POLL`] — a non-blocking `recv` on a local socket, not a
//!   query: a run finished on another node is seen within that much. When the listening
//!   connection breaks, notifications may have been missed: every watcher is woken to read its
//!   run once again, and the listener reconnects.
//!
//! A wake-up is a hint: the watcher reads its run and waits again if it is not final.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use tokio::sync::Notify;

use crate::conn::{DbConn, Role, establish};
use crate::store::Store;
use crate::url::DbUrl;

/// How often the listening connection's pending notifications are read.
pub const LISTEN_POLL: Duration = Duration::from_millis(20);

/// How often the listening connection is checked with a statement.
const HEALTH_CHECK: Duration = Duration::from_secs(30);

/// The channel of the database trigger.
const CHANNEL: &str = "triggerd_run_finished";

/// The runs watched in this process.
static WATCHED: Watched = Watched {
    count: AtomicUsize::new(0),
    runs: Mutex::new(None),
};

struct Watched {
    /// How many runs are watched: [`finished`] costs an atomic load when none is.
    count: AtomicUsize,
    runs: Mutex<Option<HashMap<String, Arc<Notify>>>>,
}

impl Watched {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Arc<Notify>>) -> T) -> T {
        let mut guard = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        f(guard.get_or_insert_with(HashMap::new))
    }
}

/// A watch of one run; dropping it stops watching.
#[derive(Debug)]
pub struct RunWatch {
    run_id: String,
    notify: Arc<Notify>,
}

impl RunWatch {
    /// Resolves when the run may have reached a final state (read it to know). A wake-up that
    /// happened before this call is not lost: it is kept for the next call.
    pub async fn changed(&self) {
        self.notify.notified().await;
    }
}

impl Drop for RunWatch {
    fn drop(&mut self) {
        WATCHED.with(|runs| {
            if runs.remove(&self.run_id).is_some() {
                WATCHED.count.fetch_sub(1, Ordering::Relaxed);
            }
        });
    }
}

/// Wakes the watcher of `run_id`, if any: the run reached a final state (its update committed).
pub(crate) fn finished(run_id: &str) {
    if WATCHED.count.load(Ordering::Relaxed) == 0 {
        return;
    }
    if let Some(n) = WATCHED.with(|runs| runs.get(run_id).cloned()) {
        // `notify_one` keeps a permit when nobody is waiting yet: the wake-up is not lost.
        n.notify_one();
    }
}

/// Wakes every watcher (notifications may have been missed).
fn wake_all() {
    let all: Vec<Arc<Notify>> = WATCHED.with(|runs| runs.values().cloned().collect());
    for n in all {
        n.notify_one();
    }
}

/// Whether `status` is final.
pub(crate) fn is_final(status: Option<&str>) -> bool {
    matches!(status, Some("completed" | "failed" | "cancelled"))
}

impl Store {
    /// Starts watching run `run_id` (call it before the run is written, so that no wake-up can
    /// come before the watch). On PostgreSQL, also starts this store's listener for other nodes'
    /// notifications if it is not running yet. Two watches of one run: the second replaces the
    /// first (run ids are unique; it does not happen).
    pub fn watch_run(&self, run_id: &str) -> RunWatch {
        if let DbUrl::Postgres(_) = &self.inner.url {
            self.inner.listener.get_or_init(|| {
                let url = self.inner.url.clone();
                let timeouts = self.inner.timeouts;
                let stop = self.inner.stopping.clone();
                let spawned = std::thread::Builder::new()
                    .name("triggerd-listen".into())
                    .spawn(move || listen(url, timeouts, stop));
                if let Err(e) = &spawned {
                    tracing::error!(error = %e, "cannot start the run-finished listener; sync webhook requests see runs finished on other nodes only at their timeout");
                }
            });
        }
        let notify = Arc::new(Notify::new());
        let replaced = WATCHED.with(|runs| runs.insert(run_id.to_owned(), notify.clone()));
        if replaced.is_none() {
            WATCHED.count.fetch_add(1, Ordering::Relaxed);
        }
        RunWatch {
            run_id: run_id.to_owned(),
            notify,
        }
    }
}

/// The listener: LISTENs on its own connection and wakes watchers until the store shuts down;
/// reconnects (waking every watcher) when the connection breaks.
fn listen(url: DbUrl, timeouts: crate::conn::Timeouts, stop: Arc<std::sync::atomic::AtomicBool>) {
    let mut backoff = Duration::from_millis(100);
    while !stop.load(Ordering::Relaxed) {
        let mut conn = match establish(&url, Role::Reader, &timeouts) {
            Ok(DbConn::Postgres(pg)) => pg,
            Ok(DbConn::Sqlite(_)) => return,
            Err(e) => {
                tracing::warn!(error = %e, "run-finished listener cannot connect; retrying");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if let Err(e) = conn.batch_execute(&format!("LISTEN {CHANNEL}")) {
            tracing::warn!(error = %e, "run-finished listener cannot LISTEN; retrying");
            std::thread::sleep(backoff);
            continue;
        }
        backoff = Duration::from_millis(100);
        tracing::debug!("run-finished listener listening");
        // Runs that finished while nobody listened are found by their watchers' next read.
        wake_all();
        let mut last_check = std::time::Instant::now();
        'connected: while !stop.load(Ordering::Relaxed) {
            // A connection that died silently (no reset seen) shows at the next statement.
            if last_check.elapsed() >= HEALTH_CHECK {
                last_check = std::time::Instant::now();
                if let Err(e) = conn.batch_execute("SELECT 1") {
                    tracing::warn!(error = %e, "run-finished listener lost its connection; reconnecting");
                    break 'connected;
                }
            }
            for note in conn.notifications_iter() {
                match note {
                    Ok(n) => finished(&n.payload),
                    Err(e) => {
                        tracing::warn!(error = %e, "run-finished listener lost its connection; reconnecting");
                        break 'connected;
                    }
                }
            }
            std::thread::sleep(LISTEN_POLL);
        }
        wake_all();
    }
}
