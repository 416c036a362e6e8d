//! One function per step type: render the step's templates against the run's scope, do the
//! work (outside any storage transaction), and return the step's output or the run's error.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Map, Value, json};
use triggerd_delivery::{OutboundClient, OutboundError, OutboundRequest};
use triggerd_domain::definition::{CommandStep, HttpStep};
use triggerd_domain::run::RunError;
use triggerd_domain::template::Template;

use crate::command::{self, CommandError, CommandSpec};

/// Largest response body an `http` step keeps (and parses).
pub const MAX_HTTP_RESPONSE_BYTES: usize = 1024 * 1024;
/// Largest stdout, and stderr, a `command` step keeps.
pub const MAX_COMMAND_OUTPUT_BYTES: usize = 1024 * 1024;

/// A failed step: the run's error, and the output of the last attempt when there was one (it is
/// recorded in the step's execution).
#[derive(Debug)]
pub struct StepFailure {
    /// Why the run fails.
    pub error: RunError,
    /// What the step produced before failing (a response, a command's output).
    pub output: Option<Value>,
}

impl StepFailure {
    fn new(error: RunError) -> Self {
        StepFailure {
            error,
            output: None,
        }
    }
}

fn render(step_id: &str, template: &Template, scope: &Value) -> Result<Value, StepFailure> {
    template
        .render(scope)
        .map_err(|e| StepFailure::new(RunError::template_error(step_id, e)))
}

fn render_text(step_id: &str, template: &Template, scope: &Value) -> Result<String, StepFailure> {
    template
        .render_text(scope)
        .map_err(|e| StepFailure::new(RunError::template_error(step_id, e)))
}

/// Backoff before retry `attempt` (1-based) of an `http` step: 1 s, 2 s, 4 s, … at most 30 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(5)).min(Duration::from_secs(30))
}

/// Runs an `http` step. Every attempt carries `Idempotency-Key: <run_id>:<step_id>`, so a
/// receiver can tell a retry, or a re-execution after a crash, from a new request.
pub async fn http(
    client: &OutboundClient,
    step_id: &str,
    step: &HttpStep,
    scope: &Value,
    idempotency_key: &str,
) -> Result<Value, StepFailure> {
    let url = render_text(step_id, &step.url, scope)?;
    let mut headers = Vec::with_capacity(step.headers.len() + 2);
    for (name, value) in &step.headers {
        headers.push((name.clone(), render_text(step_id, value, scope)?));
    }
    let has = |headers: &[(String, String)], name: &str| {
        headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
    };
    let body = match &step.body {
        None => None,
        Some(template) => {
            let value = render(step_id, template, scope)?;
            match value {
                // A text body with the step's own content type is sent as that text.
                Value::String(text) if has(&headers, "content-type") => Some(Bytes::from(text)),
                other => {
                    if !has(&headers, "content-type") {
                        headers.push(("content-type".into(), "application/json".into()));
                    }
                    Some(Bytes::from(other.to_string()))
                }
            }
        }
    };
    if !has(&headers, "idempotency-key") {
        headers.push(("idempotency-key".into(), idempotency_key.to_owned()));
    }
    let method = http::Method::from_bytes(step.method.as_bytes()).map_err(|_| {
        StepFailure::new(RunError::step_failed(
            step_id,
            format!("{:?} is not an HTTP method", step.method),
        ))
    })?;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let request = OutboundRequest {
            method: method.clone(),
            url: url.clone(),
            headers: headers.clone(),
            body: body.clone(),
            timeout: Duration::from_secs(step.timeout_seconds.max(1)),
            max_response_bytes: MAX_HTTP_RESPONSE_BYTES,
        };
        let failure = match client.send(request).await {
            Ok(response) => {
                let output = response_output(&response);
                let expected = match &step.expect_status {
                    Some(list) => list.contains(&response.status),
                    None => (200..300).contains(&response.status),
                };
                if expected {
                    return Ok(output);
                }
                let wanted = match &step.expect_status {
                    Some(list) => format!("one of {list:?}"),
                    None => "a 2xx status".to_owned(),
                };
                StepFailure {
                    error: RunError::step_failed(
                        step_id,
                        format!(
                            "{} {url} answered {} (expected {wanted})",
                            step.method, response.status
                        ),
                    ),
                    output: Some(output),
                }
            }
            Err(e) => {
                let failure = StepFailure::new(RunError::step_failed(
                    step_id,
                    format!("{} {url}: {e}", step.method),
                ));
                if !e.is_retryable() || matches!(e, OutboundError::Refused { .. }) {
                    return Err(failure);
                }
                failure
            }
        };
        if attempt > step.retries {
            return Err(failure);
        }
        tracing::info!(step_id, attempt, "http step failed; retrying");
        tokio::time::sleep(backoff(attempt)).await;
    }
}

/// `{status, headers, body}`: the body parsed when it is JSON, else text.
fn response_output(response: &triggerd_delivery::OutboundResponse) -> Value {
    let mut headers = Map::new();
    for (name, value) in &response.headers {
        match headers.get_mut(name) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(value);
            }
            _ => {
                headers.insert(name.clone(), Value::String(value.clone()));
            }
        }
    }
    let body = if response.body.is_empty() {
        Value::Null
    } else if let Some(parsed) = (!response.body_truncated)
        .then(|| serde_json::from_slice::<Value>(&response.body).ok())
        .flatten()
    {
        parsed
    } else {
        Value::String(String::from_utf8_lossy(&response.body).into_owned())
    };
    let mut output = json!({"status": response.status, "headers": headers, "body": body});
    if response.body_truncated {
        output["body_truncated"] = Value::Bool(true);
    }
    output
}

/// Runs a `command` step; `timeout` is the step's own timeout, possibly cut to the run's time
/// left. A non-zero exit fails the run (with the output recorded).
pub async fn command(
    step_id: &str,
    step: &CommandStep,
    scope: &Value,
    timeout: Duration,
) -> Result<Value, StepFailure> {
    let mut argv = Vec::with_capacity(step.command.len());
    for arg in &step.command {
        argv.push(render_text(step_id, arg, scope)?);
    }
    let mut env = Vec::with_capacity(step.env.len());
    for (name, value) in &step.env {
        env.push((name.clone(), render_text(step_id, value, scope)?));
    }
    let working_dir = match &step.working_dir {
        Some(t) => Some(PathBuf::from(render_text(step_id, t, scope)?)),
        None => None,
    };
    let spec = CommandSpec {
        argv,
        env,
        working_dir,
        timeout,
        max_output_bytes: MAX_COMMAND_OUTPUT_BYTES,
    };
    match command::run(spec).await {
        Ok(out) if out.exit_code == Some(0) => Ok(out.to_json()),
        Ok(out) => {
            let how = match (out.exit_code, out.signal) {
                (Some(code), _) => format!("exited with code {code}"),
                (None, Some(signal)) => format!("was killed by signal {signal}"),
                (None, None) => "ended abnormally".to_owned(),
            };
            Err(StepFailure {
                error: RunError::step_failed(step_id, format!("the command {how}")),
                output: Some(out.to_json()),
            })
        }
        Err(CommandError::Timeout { after, output }) => Err(StepFailure {
            error: RunError::step_failed(
                step_id,
                format!(
                    "the command timed out after {} s and was killed",
                    after.as_secs()
                ),
            ),
            output: Some(output.to_json()),
        }),
        Err(e) => Err(StepFailure::new(RunError::step_failed(step_id, e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_up_to_thirty() {
        let secs: Vec<u64> = (1..=8).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
    }
}
