//! # triggerd-storage
//!
//! All persistence of triggerd: the diesel schema over SQLite and PostgreSQL, the embedded
//! migrations of `migrations/sqlite` and `migrations/postgres`, and the one [`Store`] API the
//! other crates call — workflows, deployments, triggers and their webhook tokens, runs, the
//! webhook activity log, settings, and the workers' run claims.
//!
//! Writes go through one **group-commit writer** thread: concurrent writes (e.g. webhook
//! requests) are committed together in one transaction, each in its own savepoint, and each
//! caller is answered only after the commit — so a 201 means the run is durable. Reads use a pool
//! of connections on blocking threads.
//!
//! This crate must never: let SQL or diesel types leak out of its API (rows are plain structs,
//! instants are `i64` microseconds since the epoch, JSON is `String`); block an async runtime
//! thread; print a database URL's password; interpret JSON documents (that is `triggerd-domain`'s
//! job).
//!
//! ```no_run
//! # async fn example() -> Result<(), triggerd_storage::StoreError> {
//! use triggerd_storage::{Store, StoreOptions};
//!
//! let store = Store::open("sqlite://data/triggerd.db", StoreOptions::default()).await?;
//! let (version, created) = store.put_workflow("order-created", r#"{"steps":[]}"#, 0).await?;
//! assert!(created && version.version == 1);
//! store.shutdown().await;
//! # Ok(()) }
//! ```

mod awaited;
mod checkpoint;
mod conn;
mod context;
mod cron;
mod deployments;
mod error;
mod hooks;
mod ingest;
mod retention;
mod runs;
mod schema;
mod settings;
mod store;
mod triggers;
mod tx;
mod url;
mod workflows;
mod writer;

#[cfg(feature = "testing")]
pub mod testing;

pub use awaited::{LISTEN_POLL, RunWatch};
pub use conn::migrate;
pub use cron::CronSlotRow;
pub use deployments::{DeploymentRow, NewDeployment};
pub use error::{Result, StoreError};
pub use hooks::{
    AttemptRow, ClaimFairness, DeliveryNext, DeliveryRow, HookRow, OutboxEvent,
    deliveries_committed, wake_delivery_workers,
};
pub use runs::{
    ActivityDetail, ActivityRow, DedupClaim, IngestWrite, Ingested, NewActivity, NewRun, RunFilter,
    RunRow, RunUpdate,
};
pub use store::{MAX_PAGE, Page, Store, StoreOptions, StoreStats};
pub use triggers::{NewTrigger, TriggerPatch, TriggerRow, WebhookTarget};
pub use tx::Tx;
pub use url::{Backend, redact as redact_url};
pub use workflows::{WorkflowRow, WorkflowVersionRow};
