//! Runs: start one through the API, read, list.

use http::{Response, StatusCode};
use serde_json::Value;
use triggerd_app::AppError;
use triggerd_app::runs::RunStart;
use triggerd_domain::ids::{IdKind, is_valid_id, new_id};
use triggerd_domain::run::{RunSource, RunStatus};
use triggerd_storage::RunFilter;

use super::{Call, views};
use crate::openapi::{ErrorBody, bodies};
use crate::{ApiError, AppState, Body, json_response};

/// `POST /runs` `{deployment_id, input}`: validated like a webhook's input.
#[utoipa::path(
    post,
    path = "/api/v1/runs",
    operation_id = "create_run",
    tag = "runs",
    summary = "Start a run of a deployment",
    request_body = bodies::CreateRun,
    responses(
        (status = 201, description = "The run is stored, pending", body = views::RunCreated),
        (status = 404, description = "No such deployment", body = ErrorBody),
        (status = 422, description = "The input is invalid (`invalid_input`); `details` lists each problem", body = ErrorBody),
    )
)]
pub(crate) async fn create(state: &AppState, call: Call) -> Result<Response<Body>, ApiError> {
    let body = call.object()?;
    if let Some(key) = body
        .keys()
        .find(|k| !["deployment_id", "input", "hooks"].contains(&k.as_str()))
    {
        return Err(ApiError::bad_request(format!(
            "unknown field \"{key}\": a run takes deployment_id and input"
        )));
    }
    let Some(deployment_id) = body.get("deployment_id").and_then(Value::as_str) else {
        return Err(ApiError::bad_request("deployment_id is required"));
    };
    let input = match body.get("input") {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(map)) => map.clone(),
        Some(_) => return Err(ApiError::bad_request("input must be a JSON object")),
    };
    let deployment = state.app.deployment(deployment_id).await?;
    let (version, definition) = state.app.deployment_definition(&deployment).await?;
    let input = definition
        .inputs
        .validate(input)
        .map_err(|p| ApiError::from(AppError::InvalidInput(p)))?;
    let run_id = new_id(IdKind::Run);
    let hooks = run_hooks(body.get("hooks"), &run_id, state.app.now())?;
    let start = RunStart {
        run_id: run_id.clone(),
        source: RunSource::Api,
        deployment_id: deployment.id,
        workflow: deployment.workflow,
        workflow_version: version.version,
        trigger_id: None,
        input,
        trigger_input: Value::Null,
        created_at: state.app.now(),
    };
    let created: Vec<views::RunHookCreated> = hooks
        .iter()
        .map(|h| views::RunHookCreated {
            id: h.id.clone(),
            secret: h.secret.clone(),
        })
        .collect();
    state
        .app
        .start_run_with_hooks(start, &definition, hooks)
        .await?;
    Ok(json_response(
        StatusCode::CREATED,
        &views::RunCreated {
            run_id,
            status: RunStatus::Pending.as_str().to_owned(),
            hooks: (!created.is_empty()).then_some(created),
        },
    ))
}

/// The run-scoped hooks of `POST /runs` (`hooks: [{url, events, secret?}]`), at most 10; each
/// problem reported at `hooks[i].<field>` (422).
fn run_hooks(
    value: Option<&Value>,
    run_id: &str,
    now: i64,
) -> Result<Vec<triggerd_storage::HookRow>, ApiError> {
    let items = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) if items.len() <= 10 => items,
        Some(_) => {
            return Err(AppError::InvalidConfig(vec![triggerd_domain::Problem::new(
                "hooks",
                "must be an array of at most 10 hooks {url, events, secret?}",
            )])
            .into());
        }
    };
    let mut problems = Vec::new();
    let mut hooks = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let prefix = format!("hooks[{i}].");
        let Some(map) = item.as_object() else {
            problems.push(triggerd_domain::Problem::new(
                format!("hooks[{i}]"),
                "must be an object {url, events, secret?}",
            ));
            continue;
        };
        if let Some(key) = map
            .keys()
            .find(|k| !["url", "events", "secret"].contains(&k.as_str()))
        {
            problems.push(triggerd_domain::Problem::new(
                format!("{prefix}{key}"),
                "unknown field: a run's hook takes url, events and secret",
            ));
            continue;
        }
        match triggerd_app::hooks::parse_hook_fields(map, &prefix) {
            Ok((url, events, secret)) => {
                hooks.push(triggerd_app::hooks::run_hook(
                    run_id, url, &events, secret, now,
                )?);
            }
            Err(more) => problems.extend(more),
        }
    }
    if problems.is_empty() {
        Ok(hooks)
    } else {
        Err(AppError::InvalidConfig(problems).into())
    }
}

/// `GET /runs/{id}`.
#[utoipa::path(
    get,
    path = "/api/v1/runs/{id}",
    operation_id = "get_run",
    tag = "runs",
    summary = "Read a run",
    params(("id" = String, Path, description = "The run id (`run_...`)")),
    responses(
        (status = 200, description = "The run", body = views::RunView),
        (status = 404, description = "No such run", body = ErrorBody),
    )
)]
pub(crate) async fn get(state: &AppState, call: Call) -> Result<Response<Body>, ApiError> {
    let not_found = || ApiError::not_found(format!("run {} not found", call.param));
    if !is_valid_id(IdKind::Run, &call.param) {
        return Err(not_found());
    }
    // A run's documents can be large: charged by their stored size before they are read.
    let bytes = state
        .store()
        .run_bytes(&call.param)
        .await?
        .ok_or_else(not_found)?;
    let _charge = charge_answer(state, bytes).await?;
    let row = state
        .store()
        .get_run(&call.param)
        .await?
        .ok_or_else(not_found)?;
    Ok(crate::respond::json_response_sized(
        StatusCode::OK,
        &views::run(row),
        answer_size(bytes, 1),
    ))
}

/// The size of an answer of `runs` runs of `bytes` stored bytes: the documents as stored, and
/// each run's other fields.
fn answer_size(bytes: u64, runs: usize) -> usize {
    usize::try_from(bytes).unwrap_or(usize::MAX / 2) + 1024 * runs + 64
}

/// The most bytes of stored run documents one page of `GET /runs` holds (a page always holds
/// at least one run): a page of 200 runs of 256 KiB bodies would otherwise be 100 MB.
pub(crate) const RUN_PAGE_BYTES: u64 = 4 * 1024 * 1024;

/// Charges answering runs of `bytes` stored bytes against the memory budget: the rows, the
/// answer's text (the documents are copied into it unparsed) and the step executions' fields.
async fn charge_answer(
    state: &AppState,
    bytes: u64,
) -> Result<triggerd_app::memory::Charge, ApiError> {
    state
        .app
        .memory()
        .charge_capped(bytes.saturating_mul(3))
        .await
        .map_err(|refused| ApiError::memory(&refused))
}

/// The ids of the runs a page keeps: at most `limit`, and no more than [`RUN_PAGE_BYTES`] of
/// stored documents unless the first alone is larger; the bytes they hold; and whether runs
/// were left for the next page.
fn fit_page(sizes: &[(String, u64)], limit: usize) -> (Vec<String>, u64, bool) {
    let mut kept = Vec::new();
    let mut total = 0u64;
    for (id, size) in sizes.iter().take(limit) {
        if !kept.is_empty() && total.saturating_add(*size) > RUN_PAGE_BYTES {
            break;
        }
        total = total.saturating_add(*size);
        kept.push(id.clone());
    }
    let more = kept.len() < sizes.len();
    (kept, total, more)
}

/// `POST /runs/{id}/cancel`: a pending, running or waiting run becomes `cancelled`; 409 when it
/// already finished.
#[utoipa::path(
    post,
    path = "/api/v1/runs/{id}/cancel",
    operation_id = "cancel_run",
    tag = "runs",
    summary = "Cancel a pending, running or waiting run",
    params(("id" = String, Path, description = "The run id (`run_...`)")),
    responses(
        (status = 200, description = "The cancelled run", body = views::RunView),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "The run already finished (`conflict`)", body = ErrorBody),
    )
)]
pub(crate) async fn cancel(state: &AppState, call: Call) -> Result<Response<Body>, ApiError> {
    if !is_valid_id(IdKind::Run, &call.param) {
        return Err(ApiError::not_found(format!("run {} not found", call.param)));
    }
    let row = state.app.cancel_run(&call.param).await?;
    tracing::info!(run_id = %row.id, "run cancelled");
    Ok(json_response(StatusCode::OK, &views::run(row)))
}

/// `GET /runs?deployment_id=&trigger_id=&status=&limit=&cursor=`, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/runs",
    operation_id = "list_runs",
    tag = "runs",
    summary = "List runs, newest first",
    params(bodies::RunPageParams, bodies::RunFilters),
    responses(
        (status = 200, description = "A page of runs", body = views::RunPage),
        (status = 400, description = "Bad `limit`, `cursor` or `status`", body = ErrorBody),
    )
)]
pub(crate) async fn list(state: &AppState, call: Call) -> Result<Response<Body>, ApiError> {
    let (limit, cursor) = call.page(|c| is_valid_id(IdKind::Run, c))?;
    let status = match call.query_str("status") {
        None | Some("") => None,
        Some(s) => match s.parse::<RunStatus>() {
            Ok(status) => Some(status.as_str().to_owned()),
            Err(_) => {
                return Err(ApiError::bad_request(format!(
                    "unknown status \"{s}\": expected pending, running, waiting, completed, failed or cancelled"
                )));
            }
        },
    };
    let id_filter = |key: &str, kind: IdKind| -> Result<Option<String>, ApiError> {
        match call.query_str(key) {
            None | Some("") => Ok(None),
            Some(id) if is_valid_id(kind, id) => Ok(Some(id.to_owned())),
            Some(id) => Err(ApiError::bad_request(format!(
                "{key} \"{id}\" is not an id of the right kind (`{}...`)",
                kind.prefix()
            ))),
        }
    };
    let filter = RunFilter {
        deployment_id: id_filter("deployment_id", IdKind::Deployment)?,
        trigger_id: id_filter("trigger_id", IdKind::Trigger)?,
        status,
    };
    // Sizes first (no document is read), then only the runs that fit the page's byte budget.
    let sizes = state
        .store()
        .list_run_sizes(filter, cursor.as_deref(), limit)
        .await?;
    let (kept, bytes, more) = fit_page(&sizes, limit);
    let next_cursor = more.then(|| kept.last().cloned()).flatten();
    let _charge = charge_answer(state, bytes).await?;
    let count = kept.len();
    let rows = state.store().get_runs(kept).await?;
    Ok(crate::respond::json_response_sized(
        StatusCode::OK,
        &views::RunPage {
            data: rows.into_iter().map(views::run).collect(),
            next_cursor,
        },
        answer_size(bytes, count),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(list: &[u64]) -> Vec<(String, u64)> {
        list.iter()
            .enumerate()
            .map(|(i, n)| (format!("run_{i}"), *n))
            .collect()
    }

    #[test]
    fn a_page_stops_at_its_byte_budget_but_always_holds_one_run() {
        const MIB: u64 = 1024 * 1024;
        // Within the budget: the limit decides, and an extra row means more.
        let (kept, bytes, more) = fit_page(&sizes(&[10, 20, 30]), 2);
        assert_eq!((kept.len(), bytes, more), (2, 30, true));
        let (kept, _, more) = fit_page(&sizes(&[10, 20]), 2);
        assert_eq!((kept.len(), more), (2, false));
        // Past the budget: cut before the run that would cross it.
        let (kept, bytes, more) = fit_page(&sizes(&[MIB, 2 * MIB, MIB, 1]), 200);
        assert_eq!(kept, ["run_0", "run_1", "run_2"]);
        assert_eq!((bytes, more), (4 * MIB, true));
        // One run larger than the budget is a page of its own.
        let (kept, bytes, more) = fit_page(&sizes(&[9 * MIB, 1]), 200);
        assert_eq!((kept.len(), bytes, more), (1, 9 * MIB, true));
        assert_eq!(fit_page(&[], 50), (Vec::new(), 0, false));
    }
}
