//! The public endpoints of parked runs (SPEC 6): `POST /api/resume/{token}` resumes a run parked
//! by a `wait_for_webhook` step; `GET /api/approvals/{token}` is the reviewer's HTML page of an
//! `approval` step, and `POST /api/approvals/{token}/approve` and `/reject` record the decision.
//!
//! No API token: the wait token in the URL is the credential (256 random bits, compared in
//! constant time by `triggerd-app`). It is never logged — the logs name the run id.
//!
//! The approval page and the answers to a browser's form posts are HTML: every value in them is
//! escaped by [`escape`], and they are served with a Content-Security-Policy that allows no
//! script, no external asset and no form target but this origin. JSON clients get JSON.

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use triggerd_app::waits::{Decision, WaitKind};
use triggerd_domain::mapping::parse_urlencoded;
use triggerd_domain::run::{RunStatus, rfc3339};
use triggerd_storage::RunRow;
use utoipa::ToSchema;

use crate::openapi::ErrorBody;
use crate::{ApiError, AppState, Body, error_response, json_response, refuse_method};

/// Path prefix of the resume URLs.
pub(crate) const RESUME_PREFIX: &str = "/api/resume/";
/// Path prefix of the approval URLs.
pub(crate) const APPROVALS_PREFIX: &str = "/api/approvals/";

/// `POST /api/resume/{token}`.
pub(crate) const RESUME_ROUTE: (&str, &[Method]) = ("/api/resume/{token}", &[Method::POST]);
/// `GET /api/approvals/{token}`.
pub(crate) const REVIEW_ROUTE: (&str, &[Method]) = ("/api/approvals/{token}", &[Method::GET]);
/// `POST /api/approvals/{token}/approve`.
pub(crate) const APPROVE_ROUTE: (&str, &[Method]) =
    ("/api/approvals/{token}/approve", &[Method::POST]);
/// `POST /api/approvals/{token}/reject`.
pub(crate) const REJECT_ROUTE: (&str, &[Method]) =
    ("/api/approvals/{token}/reject", &[Method::POST]);

/// Largest resume body (the default webhook body limit).
pub const RESUME_MAX_BODY_BYTES: u64 = 262_144;
/// Largest decision body: a comment of [`MAX_COMMENT_CHARS`] characters, percent-encoded.
pub const DECISION_MAX_BODY_BYTES: u64 = 65_536;
/// Longest reviewer comment, in characters.
pub const MAX_COMMENT_CHARS: usize = 4_000;
/// Longest token looked up (a wait token is `run_<26>.<43>`, 74 characters); longer ones are
/// unknown without a database read.
const MAX_TOKEN_LEN: usize = 256;

/// The Content-Security-Policy of every HTML answer: nothing but inline style, forms posting to
/// this origin only, no framing.
pub const HTML_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// What `POST /api/resume/{token}` answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct Resumed {
    /// The run that goes on.
    pub run_id: String,
    /// Always `running`.
    pub status: String,
}

/// What a decision answers to a JSON client.
#[derive(Debug, Serialize, ToSchema)]
pub struct Decided {
    /// The run decided on.
    pub run_id: String,
    /// `running` once approved, `failed` once rejected.
    #[schema(pattern = "^(running|failed)$")]
    pub status: String,
    /// `approved` or `rejected`.
    #[schema(pattern = "^(approved|rejected)$")]
    pub decision: String,
}

/// The body of a decision: JSON, or the approval page's form (`comment=...`); may be empty.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    /// The reviewer's comment, at most 4,000 characters.
    #[schema(max_length = 4000)]
    pub comment: Option<String>,
}

/// Which endpoint a path under `/api/resume/` or `/api/approvals/` names.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Resume(&'a str),
    Review(&'a str),
    Decide(&'a str, Decision),
}

impl Route<'_> {
    fn methods(&self) -> (&'static str, &'static [Method]) {
        match self {
            Route::Resume(_) => RESUME_ROUTE,
            Route::Review(_) => REVIEW_ROUTE,
            Route::Decide(_, Decision::Approve) => APPROVE_ROUTE,
            Route::Decide(_, Decision::Reject) => REJECT_ROUTE,
        }
    }
}

fn route(path: &str) -> Option<Route<'_>> {
    let valid =
        |token: &str| !token.is_empty() && token.len() <= MAX_TOKEN_LEN && !token.contains('/');
    if let Some(token) = path.strip_prefix(RESUME_PREFIX) {
        return valid(token).then_some(Route::Resume(token));
    }
    let tail = path.strip_prefix(APPROVALS_PREFIX)?;
    let (token, action) = match tail.split_once('/') {
        Some((token, action)) => (token, Some(action)),
        None => (tail, None),
    };
    if !valid(token) {
        return None;
    }
    match action {
        None => Some(Route::Review(token)),
        Some("approve") => Some(Route::Decide(token, Decision::Approve)),
        Some("reject") => Some(Route::Decide(token, Decision::Reject)),
        Some(_) => None,
    }
}

/// Handles a request to a path under `/api/resume/` or `/api/approvals/`.
pub async fn handle(state: &AppState, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let Some(route) = route(&path) else {
        return error_response(&ApiError::not_found(format!("no route for {path}")));
    };
    if let Some(refused) = refuse_method(route.methods(), req.method()) {
        return refused;
    }
    match route {
        Route::Resume(token) => match resume(state, token, req).await {
            Ok(response) => response,
            Err(e) => error_response(&e),
        },
        Route::Review(token) => review(state, token).await,
        Route::Decide(token, decision) => decide(state, token, decision, req).await,
    }
}

/// Resume a run parked at a `wait_for_webhook` step.
///
/// The URL is the run's `waiting_payload.resume_url`; the posted JSON becomes the step's output.
/// No admin token: the URL's token is the credential.
#[utoipa::path(
    post,
    path = "/api/resume/{token}",
    operation_id = "resume",
    tag = "waits",
    params(("token" = String, Path, description = "The wait token of the run (from `waiting_payload.resume_url`)")),
    request_body(content = Value, description = "Any JSON value, at most 262144 bytes; it becomes the step's output (an empty body is `null`)", content_type = "application/json"),
    responses(
        (status = 200, description = "The run goes on with the posted JSON as the step's output", body = Resumed),
        (status = 400, description = "Malformed JSON body (`malformed_json`)", body = ErrorBody),
        (status = 404, description = "Unknown token", body = ErrorBody),
        (status = 405, description = "Method not allowed (see `Allow`)", body = ErrorBody),
        (status = 409, description = "Resumed already, cancelled, or the wait expired", body = ErrorBody),
        (status = 413, description = "Body over 262144 bytes", body = ErrorBody),
        (status = 503, description = "The database cannot take the write; nothing changed", body = ErrorBody),
    )
)]
pub(crate) async fn resume(
    state: &AppState,
    token: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let bytes = read_body(state, req, RESUME_MAX_BODY_BYTES).await?;
    let output = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).map_err(|_| ApiError::malformed_json())?
    };
    let run_id = state.app.resume(token, output).await?;
    tracing::info!(%run_id, "run resumed through its resume URL");
    Ok(json_response(
        StatusCode::OK,
        &Resumed {
            run_id,
            status: RunStatus::Running.as_str().to_owned(),
        },
    ))
}

/// The review page of a run waiting at an `approval` step.
///
/// An HTML page with the run's input and Approve and Reject buttons (the run's
/// `waiting_payload.review_url`). No admin token: the URL's token is the credential.
#[utoipa::path(
    get,
    path = "/api/approvals/{token}",
    operation_id = "review_approval",
    tag = "waits",
    params(("token" = String, Path, description = "The wait token of the run (from `waiting_payload.review_url`)")),
    responses(
        (status = 200, description = "The review page: the run's workflow, input and context, and a form to approve or reject", content_type = "text/html", body = String),
        (status = 404, description = "Unknown token (an HTML page)", content_type = "text/html", body = String),
        (status = 405, description = "Method not allowed (see `Allow`)", body = ErrorBody),
        (status = 409, description = "Decided already, cancelled, or expired (an HTML page)", content_type = "text/html", body = String),
        (status = 503, description = "The database does not answer (an HTML page)", content_type = "text/html", body = String),
    )
)]
pub(crate) async fn review(state: &AppState, token: &str) -> Response<Body> {
    match state.app.waiting_run(token, WaitKind::Approval).await {
        Ok(row) => html_response(StatusCode::OK, &review_page(&row, token)),
        Err(e) => html_error(&ApiError::from(e)),
    }
}

/// Approve a run waiting at an `approval` step; it continues.
///
/// JSON in and out; a form post from the review page gets an HTML page.
// Only the OpenAPI annotation: `decide` serves the route.
#[utoipa::path(
    post,
    path = "/api/approvals/{token}/approve",
    operation_id = "approve",
    tag = "waits",
    params(("token" = String, Path, description = "The wait token of the run (from `waiting_payload.approve_url`)")),
    request_body(
        description = "An optional comment, as JSON or as the review page's form; the body may be empty",
        content(
            (DecisionBody = "application/json"),
            (DecisionBody = "application/x-www-form-urlencoded"),
        ),
    ),
    responses(
        (status = 200, description = "Approved: the run goes on with output `{approved: true, comment}`; a form post gets an HTML page",
            content((Decided = "application/json"), (String = "text/html"))),
        (status = 400, description = "Malformed JSON, wrong shape, or a comment over 4,000 characters", body = ErrorBody),
        (status = 404, description = "Unknown token", body = ErrorBody),
        (status = 405, description = "Method not allowed (see `Allow`)", body = ErrorBody),
        (status = 409, description = "Decided already, cancelled, or expired", body = ErrorBody),
        (status = 413, description = "Body over 65536 bytes", body = ErrorBody),
        (status = 503, description = "The database cannot take the write; nothing changed", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn approve() {}

/// Reject a run waiting at an `approval` step; it fails with code `rejected`.
///
/// JSON in and out; a form post from the review page gets an HTML page.
// Only the OpenAPI annotation: `decide` serves the route.
#[utoipa::path(
    post,
    path = "/api/approvals/{token}/reject",
    operation_id = "reject",
    tag = "waits",
    params(("token" = String, Path, description = "The wait token of the run (from `waiting_payload.reject_url`)")),
    request_body(
        description = "An optional comment, as JSON or as the review page's form; the body may be empty",
        content(
            (DecisionBody = "application/json"),
            (DecisionBody = "application/x-www-form-urlencoded"),
        ),
    ),
    responses(
        (status = 200, description = "Rejected: the run failed with code `rejected`; a form post gets an HTML page",
            content((Decided = "application/json"), (String = "text/html"))),
        (status = 400, description = "Malformed JSON, wrong shape, or a comment over 4,000 characters", body = ErrorBody),
        (status = 404, description = "Unknown token", body = ErrorBody),
        (status = 405, description = "Method not allowed (see `Allow`)", body = ErrorBody),
        (status = 409, description = "Decided already, cancelled, or expired", body = ErrorBody),
        (status = 413, description = "Body over 65536 bytes", body = ErrorBody),
        (status = 503, description = "The database cannot take the write; nothing changed", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn reject() {}

/// `POST /api/approvals/{token}/approve` or `/reject`: JSON in, JSON out; a form post (a
/// browser) gets HTML pages, errors included.
async fn decide(
    state: &AppState,
    token: &str,
    decision: Decision,
    req: Request<Incoming>,
) -> Response<Body> {
    let form = essence(req.headers()).as_deref() == Some("application/x-www-form-urlencoded");
    let answer_error = |e: &ApiError| {
        if form {
            html_error(e)
        } else {
            error_response(e)
        }
    };
    let comment = match read_body(state, req, DECISION_MAX_BODY_BYTES)
        .await
        .and_then(|bytes| decision_comment(&bytes, form))
    {
        Ok(comment) => comment,
        Err(e) => return answer_error(&e),
    };
    let run_id = match state.app.decide(token, decision.clone(), comment).await {
        Ok(run_id) => run_id,
        Err(e) => return answer_error(&ApiError::from(e)),
    };
    let (word, status) = match decision {
        Decision::Approve => ("approved", RunStatus::Running.as_str()),
        Decision::Reject => ("rejected", RunStatus::Failed.as_str()),
    };
    tracing::info!(%run_id, decision = word, "approval decided");
    if form {
        html_response(StatusCode::OK, &decided_page(&run_id, &decision))
    } else {
        json_response(
            StatusCode::OK,
            &Decided {
                run_id,
                status: status.to_owned(),
                decision: word.to_owned(),
            },
        )
    }
}

/// The comment of a decision body: a form's `comment` field, or JSON `{"comment": ...}`; an
/// empty body or an empty comment is no comment.
fn decision_comment(bytes: &[u8], form: bool) -> Result<Option<String>, ApiError> {
    let comment = if form {
        match parse_urlencoded(bytes).remove("comment") {
            None => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => return Err(ApiError::bad_request("send one `comment` field")),
        }
    } else if bytes.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let value: Value = serde_json::from_slice(bytes).map_err(|_| ApiError::malformed_json())?;
        if value.is_null() {
            None
        } else {
            serde_json::from_value::<DecisionBody>(value)
                .map_err(|_| {
                    ApiError::bad_request(
                        "the body must be a JSON object {\"comment\": \"...\"} (comment optional)",
                    )
                })?
                .comment
        }
    };
    let comment = comment.filter(|c| !c.trim().is_empty());
    if let Some(c) = &comment
        && c.chars().count() > MAX_COMMENT_CHARS
    {
        return Err(ApiError::bad_request(format!(
            "the comment is longer than {MAX_COMMENT_CHARS} characters"
        )));
    }
    Ok(comment)
}

/// The lower-cased media type of the request, without parameters.
fn essence(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
}

/// The whole body, at most `limit` bytes: 413 from `Content-Length` before reading, or once the
/// body grows past the limit; 408 when it does not arrive within the body read timeout.
async fn read_body(
    state: &AppState,
    req: Request<Incoming>,
    limit: u64,
) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::payload_too_large(limit));
    }
    crate::deadlines::read_body(req.into_body(), limit, state.config.body_read_timeout).await
}

// ---------------------------------------------------------------------------------------------
// HTML
// ---------------------------------------------------------------------------------------------

/// `text` with `&`, `<`, `>`, `"` and `'` replaced by entities: safe in element content and in
/// quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An HTML response with the security headers of every page.
fn html_response(status: StatusCode, html: &str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(html.to_owned())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(HTML_CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// An error as an HTML page, with the error's status and headers.
fn html_error(error: &ApiError) -> Response<Body> {
    let (title, explanation) = match error.status {
        StatusCode::NOT_FOUND => (
            "Approval not found",
            "This approval link is unknown. Check that it was copied whole.",
        ),
        StatusCode::CONFLICT => (
            "Approval closed",
            "This approval has already been decided, or it expired, or its run was cancelled. Nothing was changed.",
        ),
        StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => (
            "Request refused",
            "The form could not be accepted. Nothing was changed.",
        ),
        StatusCode::SERVICE_UNAVAILABLE => (
            "Try again later",
            "The server cannot take the request right now. Nothing was changed.",
        ),
        _ => ("Error", "The request failed. Nothing was changed."),
    };
    let body = format!(
        "<h1>{}</h1>\n<p>{}</p>\n<p><small>{}</small></p>\n",
        escape(title),
        escape(explanation),
        escape(&error.message),
    );
    let mut response = html_response(error.status, &page(title, &body));
    for (name, value) in &error.headers {
        if let Ok(value) = HeaderValue::from_str(value) {
            response.headers_mut().insert(name.clone(), value);
        }
    }
    response
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem;line-height:1.5;color:#1a1a1a}\
pre{background:#f4f4f4;padding:.75rem;overflow:auto;white-space:pre-wrap;word-break:break-word}\
dt{font-weight:bold}dd{margin:0 0 .5rem 0}\
textarea{width:100%;box-sizing:border-box;font:inherit}\
button{font:inherit;padding:.5rem 1.25rem;margin:.5rem .5rem 0 0;cursor:pointer}\
button:focus,textarea:focus{outline:3px solid #1a5fb4;outline-offset:2px}";

/// A whole page around `body` (already escaped HTML); `title` is escaped here.
fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n\
         <title>{} - triggerd</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n{body}</main>\n</body>\n</html>\n",
        escape(title)
    )
}

/// A JSON text column, pretty-printed (the text itself when it does not parse).
fn pretty(json_text: &str) -> String {
    serde_json::from_str::<Value>(json_text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| json_text.to_owned())
}

/// The id of the step the run waits in: its last execution entry's.
fn waiting_step(row: &RunRow) -> String {
    serde_json::from_str::<Value>(&row.step_executions)
        .ok()
        .and_then(|v| {
            v.as_array()?
                .last()?
                .get("step_id")?
                .as_str()
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

/// The review page of a run waiting for approval under `token`.
fn review_page(row: &RunRow, token: &str) -> String {
    let base = format!("{APPROVALS_PREFIX}{token}");
    let expires = row
        .waiting_expires_at
        .map(rfc3339)
        .unwrap_or_else(|| "never".to_owned());
    let body = format!(
        "<h1>Approval requested</h1>\n\
         <p>Run <code>{run_id}</code> of workflow <strong>{workflow}</strong> waits for a decision at step <code>{step}</code>.</p>\n\
         <h2>Run</h2>\n<dl>\n\
         <dt>Workflow</dt><dd>{workflow} (version {version})</dd>\n\
         <dt>Run id</dt><dd><code>{run_id}</code></dd>\n\
         <dt>Step</dt><dd><code>{step}</code></dd>\n\
         <dt>Decide before</dt><dd><time datetime=\"{expires}\">{expires}</time></dd>\n\
         </dl>\n\
         <h2 id=\"input-heading\">Input</h2>\n<pre aria-labelledby=\"input-heading\">{input}</pre>\n\
         <h2 id=\"context-heading\">Context</h2>\n<pre aria-labelledby=\"context-heading\">{context}</pre>\n\
         <h2>Decision</h2>\n\
         <form method=\"post\" action=\"{approve}\">\n\
         <p><label for=\"comment\">Comment (optional, at most {max} characters)</label><br>\n\
         <textarea id=\"comment\" name=\"comment\" rows=\"4\" maxlength=\"{max}\"></textarea></p>\n\
         <button type=\"submit\">Approve</button>\n\
         <button type=\"submit\" formaction=\"{reject}\">Reject</button>\n\
         </form>\n",
        run_id = escape(&row.id),
        workflow = escape(&row.workflow),
        version = row.workflow_version,
        step = escape(&waiting_step(row)),
        expires = escape(&expires),
        input = escape(&pretty(&row.input)),
        context = escape(&pretty(&row.context)),
        approve = escape(&format!("{base}/approve")),
        reject = escape(&format!("{base}/reject")),
        max = MAX_COMMENT_CHARS,
    );
    page("Approval requested", &body)
}

/// The page answering a browser's decision.
fn decided_page(run_id: &str, decision: &Decision) -> String {
    let (title, text) = match decision {
        Decision::Approve => ("Approved", "was approved and goes on."),
        Decision::Reject => ("Rejected", "was rejected and has failed."),
    };
    let body = format!(
        "<h1>{}</h1>\n<p>Run <code>{}</code> {}</p>\n",
        escape(title),
        escape(run_id),
        escape(text),
    );
    page(title, &body)
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use triggerd_domain::run::StepStatus;

    use super::*;

    #[test]
    fn escape_replaces_every_special_character() {
        assert_eq!(
            escape("<script>alert(1)</script>"),
            "&lt;script&gt;alert(1)&lt;/script&gt;"
        );
        assert_eq!(
            escape(r#"a "quoted" 'value' & more"#),
            "a &quot;quoted&quot; &#39;value&#39; &amp; more"
        );
        assert_eq!(escape("&amp;"), "&amp;amp;");
        assert_eq!(escape("plain – ünïcode"), "plain – ünïcode");
        assert_eq!(escape(""), "");
    }

    fn row() -> RunRow {
        RunRow {
            id: "run_01J00000000000000000000000".into(),
            deployment_id: "dep_x".into(),
            workflow: "pay<ment>".into(),
            workflow_version: 3,
            trigger_id: None,
            source: "api".into(),
            status: RunStatus::Waiting.as_str().into(),
            input: json!({"note": "<script>alert(1)</script>", "q": "\"x\" & 'y'"}).to_string(),
            trigger_input: "null".into(),
            context: json!({"k": "</pre><img src=x>"}).to_string(),
            step_executions: json!([
                {"step_id": "first", "status": StepStatus::Completed},
                {"step_id": "ok<1>", "status": StepStatus::Waiting}
            ])
            .to_string(),
            waiting_reason: Some("approval".into()),
            waiting_payload: None,
            waiting_expires_at: Some(1_700_000_000_000_000),
            final_output: None,
            error: None,
            created_at: 0,
            started_at: None,
            finished_at: None,
            lease_owner: None,
            lease_expires_at: None,
        }
    }

    #[test]
    fn review_page_escapes_every_value_and_posts_to_relative_urls() {
        let html = review_page(&row(), "run_X.tok");
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<ment>"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(
            html.contains("&quot;\\&quot;x\\&quot; &amp; &#39;y&#39;&quot;"),
            "{html}"
        );
        assert!(html.contains("&lt;/pre&gt;&lt;img src=x&gt;"), "{html}");
        assert!(html.contains("pay&lt;ment&gt; (version 3)"), "{html}");
        assert!(html.contains("<code>ok&lt;1&gt;</code>"), "{html}");
        assert!(html.contains("run_01J00000000000000000000000"), "{html}");
        assert!(html.contains("2023-11-14T22:13:20"), "{html}");
        assert!(
            html.contains("action=\"/api/approvals/run_X.tok/approve\""),
            "{html}"
        );
        assert!(
            html.contains("formaction=\"/api/approvals/run_X.tok/reject\""),
            "{html}"
        );
        assert!(
            html.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"),
            "{html}"
        );
        assert!(html.contains("<title>"), "{html}");
        assert!(html.contains("<label for=\"comment\">"), "{html}");
        assert!(html.contains("id=\"comment\" name=\"comment\""), "{html}");
        // No script, no external asset.
        for forbidden in ["<script", "<link", "src=\"", "href=\"http", "javascript:"] {
            assert!(!html.contains(forbidden), "{forbidden} in {html}");
        }
    }

    #[test]
    fn html_answers_carry_the_security_headers() {
        let response = html_error(&ApiError::conflict("run <x> is no longer waiting"));
        assert_eq!(response.status(), StatusCode::CONFLICT);
        let h = response.headers();
        assert_eq!(h[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], HTML_CSP);
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(h[header::CACHE_CONTROL], "no-store");
        assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
    }

    #[test]
    fn decided_page_says_what_happened() {
        let html = decided_page("run_<1>", &Decision::Approve);
        assert!(html.contains("<h1>Approved</h1>") && html.contains("run_&lt;1&gt;"));
        let html = decided_page("run_1", &Decision::Reject);
        assert!(html.contains("<h1>Rejected</h1>"));
    }

    #[test]
    fn routes_are_recognised() {
        assert_eq!(
            route("/api/resume/run_1.abc"),
            Some(Route::Resume("run_1.abc"))
        );
        assert_eq!(route("/api/resume/"), None);
        assert_eq!(route("/api/resume/a/b"), None);
        assert_eq!(route("/api/approvals/t"), Some(Route::Review("t")));
        assert_eq!(
            route("/api/approvals/t/approve"),
            Some(Route::Decide("t", Decision::Approve))
        );
        assert_eq!(
            route("/api/approvals/t/reject"),
            Some(Route::Decide("t", Decision::Reject))
        );
        assert_eq!(route("/api/approvals/t/maybe"), None);
        assert_eq!(route("/api/approvals/t/approve/x"), None);
        assert_eq!(route("/api/approvals//approve"), None);
        assert_eq!(route(&format!("/api/resume/{}", "a".repeat(300))), None);
    }

    #[test]
    fn decision_comments_from_json_and_forms() {
        assert_eq!(decision_comment(b"", false).unwrap(), None);
        assert_eq!(decision_comment(b"null", false).unwrap(), None);
        assert_eq!(decision_comment(b"{}", false).unwrap(), None);
        assert_eq!(
            decision_comment(br#"{"comment": "ok"}"#, false).unwrap(),
            Some("ok".into())
        );
        assert_eq!(
            decision_comment(br#"{"comment": ""}"#, false).unwrap(),
            None
        );
        assert_eq!(
            decision_comment(b"{nope", false).unwrap_err().code,
            "malformed_json"
        );
        assert_eq!(
            decision_comment(br#"{"comment": 1}"#, false)
                .unwrap_err()
                .code,
            "bad_request"
        );
        assert_eq!(
            decision_comment(br#"{"coment": "x"}"#, false)
                .unwrap_err()
                .code,
            "bad_request"
        );
        assert_eq!(
            decision_comment(b"[1]", false).unwrap_err().code,
            "bad_request"
        );
        assert_eq!(
            decision_comment(b"comment=looks+good%21", true).unwrap(),
            Some("looks good!".into())
        );
        assert_eq!(decision_comment(b"comment=", true).unwrap(), None);
        assert_eq!(decision_comment(b"", true).unwrap(), None);
        assert_eq!(
            decision_comment(b"comment=a&comment=b", true)
                .unwrap_err()
                .code,
            "bad_request"
        );
        let long = "é".repeat(MAX_COMMENT_CHARS);
        assert_eq!(
            decision_comment(json!({"comment": long}).to_string().as_bytes(), false).unwrap(),
            Some(long.clone())
        );
        let longer = format!("{long}x");
        assert_eq!(
            decision_comment(json!({"comment": longer}).to_string().as_bytes(), false)
                .unwrap_err()
                .code,
            "bad_request"
        );
    }
}
