//! The one error type of this crate.

use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// Everything a [`Store`](crate::Store) call can fail with.
///
/// The HTTP layer maps each variant to one status code: `NotFound` → 404, `Conflict` → 409,
/// `TokenGone` → 404 (the token was rotated, removed or disabled while the request was in flight),
/// `Unavailable` → 503 (nothing was stored, the client may retry), anything else → 500.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The named thing does not exist (`"workflow order-created"`, `"trigger trg_..."`).
    #[error("{what} not found")]
    NotFound {
        /// What was looked up, for people.
        what: String,
    },

    /// The write contradicts what is stored: a name is taken, a workflow is still deployed, an id
    /// is used twice.
    #[error("conflict: {what}")]
    Conflict {
        /// What conflicted, for people.
        what: String,
    },

    /// The database could not take the write (or answer the read): the connection is down, the
    /// disk is full, a lock or statement timeout ended the wait for a stalled or locked database,
    /// the batch's commit failed, or the store was shut down. Nothing of the
    /// request was stored; the client may retry.
    #[error("database unavailable: {reason}")]
    Unavailable {
        /// Why, for the operator's log. Never contains the database URL's password.
        reason: String,
    },

    /// The webhook token no longer maps to an enabled trigger (rotated without grace, grace over,
    /// trigger removed or disabled). Nothing of the request was stored.
    #[error("webhook token is no longer valid")]
    TokenGone,

    /// A [`Tx`](crate::Tx) closure gave up: everything it wrote is rolled back. `reason` says
    /// why, for the operator's log.
    #[error("transaction aborted: {reason}")]
    Aborted {
        /// Why the caller gave up.
        reason: String,
    },

    /// The database URL is not one this crate understands.
    #[error("invalid database URL: {reason} (expected sqlite://PATH or postgres://...)")]
    InvalidUrl {
        /// What is wrong with it (the URL itself is not repeated: it may hold a password).
        reason: String,
    },

    /// The SQLite file's directory could not be created.
    #[error("cannot create the directory of the SQLite database {path}: {source}")]
    CreateDir {
        /// The directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },

    /// Running the embedded schema migrations failed.
    #[error("database migration failed: {reason}")]
    Migration {
        /// The migration harness's message.
        reason: String,
    },

    /// Any other database error: a bug or a schema out of step with this build.
    #[error("database error: {source}")]
    Database {
        /// The diesel error.
        #[source]
        source: DieselError,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    /// A [`Tx`](crate::Tx) closure's way to give up and roll back what it wrote.
    pub fn aborted(reason: impl Into<String>) -> Self {
        Self::Aborted {
            reason: reason.into(),
        }
    }

    pub(crate) fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound { what: what.into() }
    }

    pub(crate) fn conflict(what: impl Into<String>) -> Self {
        Self::Conflict { what: what.into() }
    }

    pub(crate) fn unavailable(reason: impl Into<String>) -> Self {
        Self::Unavailable {
            reason: reason.into(),
        }
    }

    /// Classifies a diesel error: connection-level failures, a busy or full SQLite database and a
    /// PostgreSQL lock or statement timeout are `Unavailable` (the caller answers 503), the rest is
    /// `Database`.
    pub(crate) fn from_diesel(e: DieselError) -> Self {
        if is_unavailable(&e) {
            Self::Unavailable {
                reason: e.to_string(),
            }
        } else {
            Self::Database { source: e }
        }
    }

    /// Maps a unique violation to `Conflict { what }` and a foreign-key violation to
    /// `NotFound { what: missing }`; anything else as [`StoreError::from_diesel`].
    pub(crate) fn on_constraint(e: DieselError, conflict: &str, missing: &str) -> Self {
        match &e {
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                Self::conflict(conflict)
            }
            DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _) => {
                Self::not_found(missing)
            }
            _ => Self::from_diesel(e),
        }
    }
}

fn is_unavailable(e: &DieselError) -> bool {
    match e {
        // A dropped connection, or a transaction PostgreSQL aborted to break a cycle: both are
        // worth a retry by the client.
        DieselError::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::SerializationFailure,
            _,
        ) => true,
        DieselError::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            // SQLite (and libpq for some conditions) reports these only through the message.
            let m = info.message();
            m.contains("database is locked")
                || m.contains("database or disk is full")
                || m.contains("disk I/O error")
                || m.contains("unable to open database")
                || m.contains("server closed the connection")
                || m.contains("terminating connection")
                || m.contains("no connection to the server")
                || m.contains("deadlock detected")
                || m.contains("the database system is")
                // PostgreSQL's `lock_timeout`, `statement_timeout` (and a cancel by an operator),
                // and a `NOWAIT` lock that is taken: the database is stalled or locked by someone
                // else, and the limits of `conn.rs` ended the wait.
                || m.contains("canceling statement due to")
                || m.contains("could not obtain lock")
        }
        DieselError::BrokenTransactionManager => true,
        _ => false,
    }
}

impl From<DieselError> for StoreError {
    fn from(e: DieselError) -> Self {
        Self::from_diesel(e)
    }
}

impl From<diesel::r2d2::PoolError> for StoreError {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        Self::unavailable(format!("no database connection available: {e}"))
    }
}
