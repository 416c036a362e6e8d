//! [`AppError`]: what an operation of this crate can fail with. The HTTP layer maps each variant
//! to one status code and `code` (SPEC 3) in one function.

use triggerd_domain::Problem;
use triggerd_domain::inputs::InputProblem;
use triggerd_domain::run::RunStateError;
use triggerd_storage::StoreError;

/// Everything an operation of [`App`](crate::App) can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The named thing does not exist (404).
    #[error("{what} not found")]
    NotFound {
        /// What was looked up, for people (`"trigger trg_..."`).
        what: String,
    },
    /// The change contradicts what is stored: a name taken, a workflow still deployed, a run
    /// already finished (409).
    #[error("{what}")]
    Conflict {
        /// What conflicted, for people.
        what: String,
    },
    /// A run cannot make the requested move (409).
    #[error(transparent)]
    IllegalTransition(#[from] RunStateError),
    /// A worker lost a run's lease (another worker took it over); nothing was changed.
    #[error("the lease of run {run_id} is no longer held by this worker")]
    LeaseLost {
        /// The run.
        run_id: String,
    },
    /// A workflow definition is invalid (422 `invalid_definition`).
    #[error("the definition is invalid: {} problem(s)", .0.len())]
    InvalidDefinition(Vec<Problem>),
    /// A trigger configuration is invalid (422 `invalid_config`).
    #[error("the trigger configuration is invalid: {} problem(s)", .0.len())]
    InvalidConfig(Vec<Problem>),
    /// A run input is invalid (422 `invalid_input`).
    #[error("the input is invalid: {} problem(s)", .0.len())]
    InvalidInput(Vec<InputProblem>),
    /// The request names something in a wrong way (400 `bad_request`).
    #[error("{message}")]
    BadRequest {
        /// What is wrong and what to send instead.
        message: String,
    },
    /// The webhook token was rotated, removed or disabled while the request was in flight (404).
    #[error("webhook token is no longer valid")]
    TokenGone,
    /// The database cannot take the write; nothing was stored (503).
    #[error("database unavailable: {reason}")]
    Unavailable {
        /// Why, for the operator's log.
        reason: String,
    },
    /// A bug or stored data this build cannot read (500); the log has the cause.
    #[error("internal error: {reason}")]
    Internal {
        /// What went wrong, for the operator's log.
        reason: String,
    },
}

impl AppError {
    pub(crate) fn not_found(what: impl Into<String>) -> Self {
        AppError::NotFound { what: what.into() }
    }

    pub(crate) fn conflict(what: impl Into<String>) -> Self {
        AppError::Conflict { what: what.into() }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        AppError::BadRequest {
            message: message.into(),
        }
    }

    pub(crate) fn internal(reason: impl Into<String>) -> Self {
        let reason = reason.into();
        tracing::error!(%reason, "internal error");
        AppError::Internal { reason }
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { what } => AppError::NotFound { what },
            StoreError::Conflict { what } => AppError::Conflict { what },
            StoreError::TokenGone => AppError::TokenGone,
            StoreError::Unavailable { reason } => AppError::Unavailable { reason },
            other => AppError::internal(other.to_string()),
        }
    }
}
