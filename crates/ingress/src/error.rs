//! The one error type of the HTTP layer and its mapping to status codes and `code` strings
//! (SPEC 3 error table). Every error response is built here.

use http::StatusCode;
use serde_json::{Value, json};
use triggerd_app::AppError;
use triggerd_domain::Problem;
use triggerd_domain::inputs::InputProblem;
use triggerd_storage::StoreError;

/// An error answered to a client: status, stable `code`, message for people, optional `details`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// The machine-readable `code`.
    pub code: &'static str,
    /// The human message (`error` in the body).
    pub message: String,
    /// Optional `details`.
    pub details: Option<Value>,
    /// Extra headers (`Allow`, `Retry-After`).
    pub headers: Vec<(http::HeaderName, String)>,
}

impl ApiError {
    /// An error without details.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
            headers: Vec::new(),
        }
    }

    /// 400 `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 400 `malformed_json` with the SPEC's exact message.
    pub fn malformed_json() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "Received malformed JSON payload.",
        )
    }

    /// 400 `malformed_json` for a JSON document nested deeper than
    /// [`MAX_JSON_DEPTH`](triggerd_domain::mapping::MAX_JSON_DEPTH) levels.
    pub fn too_deep() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!(
                "Received malformed JSON payload: it nests more than {} levels deep.",
                triggerd_domain::mapping::MAX_JSON_DEPTH
            ),
        )
    }

    /// 400 `bad_request` for a webhook body that cannot be split as its content type says (a
    /// `multipart/form-data` body without a boundary, truncated, with too many parts, ...);
    /// `message` says what is wrong.
    pub fn malformed_body(message: impl Into<String>) -> Self {
        Self::bad_request(message)
    }

    /// 401 `unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 405 `method_not_allowed` with an `Allow` header.
    pub fn method_not_allowed(allow: String) -> Self {
        let mut e = Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("method not allowed; allowed: {allow}"),
        );
        e.headers.push((http::header::ALLOW, allow));
        e
    }

    /// 409 `conflict`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 413 `payload_too_large`.
    pub fn payload_too_large(limit: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("body is larger than the limit of {limit} bytes"),
        )
    }

    /// 415 `unsupported_media_type`.
    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json",
        )
    }

    /// 422 with `details` listing each problem (`{path, message}`).
    pub fn problems(code: &'static str, what: &str, problems: Vec<Problem>) -> Self {
        let mut e = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            code,
            format!("{what} is invalid: {} problem(s)", problems.len()),
        );
        e.details = Some(json!(problems));
        e
    }

    /// 422 `invalid_input` with `details` listing each input problem (`{input, message}`).
    pub fn invalid_input(problems: Vec<InputProblem>) -> Self {
        let mut e = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            format!("the input is invalid: {} problem(s)", problems.len()),
        );
        e.details = Some(json!(problems));
        e
    }

    /// 429 `rate_limited` with `Retry-After`.
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "rate limit exceeded",
        );
        e.headers
            .push((http::header::RETRY_AFTER, retry_after_secs.to_string()));
        e
    }

    /// The memory budget's refusal: 503 `unavailable` with `Retry-After` while it is in use,
    /// 413 `payload_too_large` for a body that alone would need more than all of it.
    pub fn memory(refused: &triggerd_app::memory::Refused) -> Self {
        use triggerd_app::memory::Refused;
        const MIB: f64 = 1024.0 * 1024.0;
        match refused {
            Refused::Busy { budget, waited } => {
                let mut e = Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    format!(
                        "the server is busy with other large requests: its memory budget \
                         ({:.0} MiB, TRIGGERD_MEMORY_BUDGET_MB) stayed in use for {} s; nothing \
                         was stored, retry later",
                        *budget as f64 / MIB,
                        waited.as_secs_f64()
                    ),
                );
                e.headers.push((http::header::RETRY_AFTER, "1".to_owned()));
                e
            }
            Refused::TooLarge { cost, budget } => {
                let mut e = Self::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!(
                        "processing this body would need about {:.0} MiB of memory, more than \
                         the server's whole memory budget of {:.0} MiB: send a smaller body (or \
                         one of fewer, larger JSON values), or raise TRIGGERD_MEMORY_BUDGET_MB",
                        *cost as f64 / MIB,
                        *budget as f64 / MIB
                    ),
                );
                e.details = Some(json!([{
                    "path": "body",
                    "message": "costs more memory to process than the server's whole budget",
                    "estimated_bytes": cost,
                    "memory_budget_bytes": budget,
                }]));
                e
            }
        }
    }

    /// 503 `unavailable`.
    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the database cannot take the write right now; nothing was stored, retry later",
        )
    }

    /// 500 `internal` (a bug; the log has the cause).
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the server log has the details",
        )
    }

    /// The same error with another status (e.g. a `details` list on a 400).
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// The JSON body.
    pub fn body(&self) -> crate::openapi::ErrorBody {
        crate::openapi::ErrorBody {
            error: self.message.clone(),
            code: self.code.to_owned(),
            details: self.details.clone(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { what } => ApiError::not_found(format!("{what} not found")),
            StoreError::Conflict { what } => ApiError::conflict(what),
            StoreError::TokenGone => ApiError::not_found("unknown webhook token"),
            StoreError::Unavailable { reason } => {
                tracing::warn!(%reason, "database unavailable");
                ApiError::unavailable()
            }
            other => {
                tracing::error!(error = %other, "storage error");
                ApiError::internal()
            }
        }
    }
}

impl From<crate::body::MalformedBody> for ApiError {
    /// A body that cannot become `trigger.body` (SPEC 4.1): a JSON body keeps the SPEC's exact
    /// `malformed_json` answer; a multipart part declared JSON that does not parse is
    /// `malformed_json` naming the part; a multipart body that cannot be split is `bad_request`.
    fn from(e: crate::body::MalformedBody) -> Self {
        use crate::body::MalformedBody;
        match e {
            MalformedBody::Json => ApiError::malformed_json(),
            MalformedBody::JsonPart { .. } => {
                Self::new(StatusCode::BAD_REQUEST, "malformed_json", e.to_string())
            }
            MalformedBody::Multipart { .. } => ApiError::malformed_body(e.to_string()),
        }
    }
}

impl From<AppError> for ApiError {
    /// The one mapping of the application's errors to SPEC 3's statuses and codes.
    fn from(e: AppError) -> Self {
        match e {
            AppError::NotFound { what } => ApiError::not_found(format!("{what} not found")),
            AppError::Conflict { what } => ApiError::conflict(what),
            AppError::IllegalTransition(e) => ApiError::conflict(e.to_string()),
            AppError::LeaseLost { run_id } => {
                ApiError::conflict(format!("run {run_id} was changed concurrently; retry"))
            }
            AppError::InvalidDefinition(problems) => {
                ApiError::problems("invalid_definition", "the definition", problems)
            }
            AppError::InvalidConfig(problems) => {
                ApiError::problems("invalid_config", "the trigger configuration", problems)
            }
            AppError::InvalidInput(problems) => ApiError::invalid_input(problems),
            AppError::BadRequest { message } => ApiError::bad_request(message),
            AppError::TokenGone => ApiError::not_found("unknown webhook token"),
            AppError::Unavailable { reason } => {
                tracing::warn!(%reason, "database unavailable");
                ApiError::unavailable()
            }
            AppError::Internal { .. } => ApiError::internal(),
        }
    }
}
