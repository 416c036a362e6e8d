//! `GET /metrics` in the Prometheus text format.
//!
//! Counters and histograms are recorded where things happen (`metrics` macros, cheap: an atomic
//! add) and rendered by the Prometheus recorder the server installs. Figures that live in the
//! store — runs by status (the pending count is the queue depth) and the group-commit writer's
//! batch sizes — are read at scrape time, so the hot path pays nothing for them.
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `triggerd_webhook_requests_total{outcome}` | counter | webhook requests by activity outcome, plus `unknown_token` |
//! | `triggerd_webhook_ingest_seconds` | histogram | time from request to answer of accepted webhooks (includes the commit) |
//! | `triggerd_runs_finished_total{status}` | counter | runs this process finished |
//! | `triggerd_runs{status}` | gauge | runs in the database by status |
//! | `triggerd_hook_attempts_total{outcome}` | counter | event-hook delivery attempts: `delivered`, `retrying`, `failed` |
//! | `triggerd_hook_delivery_lag_seconds` | histogram | from an event to its successful delivery |
//! | `triggerd_hook_deliveries{status}`, `triggerd_hook_deliveries_due` | gauge | deliveries in the database by status; pending ones due now (backlog) |
//! | `triggerd_cron_slots_fired_total` | counter | cron slots this process fired (each started one run) |
//! | `triggerd_cron_slots_skipped_total` | counter | cron slots skipped by their trigger's `catch_up` policy |
//! | `triggerd_cron_fire_lateness_seconds` | histogram | time from a slot to its firing (caught-up slots included) |
//! | `triggerd_store_commits_total`, `triggerd_store_jobs_total`, `triggerd_store_failed_batches_total` | counter | group-commit writer |
//! | `triggerd_store_batch_size` | histogram | jobs per committed batch |
//! | `triggerd_sqlite_wal_bytes`, `triggerd_sqlite_wal_restarts_total` | gauge, counter | SQLite: the WAL file's size; checkpoints that started it over |
//! | `triggerd_memory_budget_bytes`, `triggerd_memory_budget_in_use_bytes`, `triggerd_memory_budget_reading_bytes` | gauge | the memory budget (`TRIGGERD_MEMORY_BUDGET_MB`), what large work holds of it now, and what large bodies being read hold of its reading allowance |
//! | `triggerd_memory_budget_refusals_total{reason}` | counter | large webhook bodies refused by the budget: `busy` (503) or `too_large` (413) |

use std::fmt::Write as _;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::{AppState, Body};

/// Buckets of `triggerd_webhook_ingest_seconds`: 0.5 ms to 10 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
];

/// Buckets of `triggerd_cron_fire_lateness_seconds`: 10 ms to 1 h (caught-up slots are late).
const LATENESS_BUCKETS: [f64; 12] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 30.0, 60.0, 600.0, 3600.0,
];

/// Installs the process-wide Prometheus recorder; call once at start. Returns `None` (and logs)
/// if a recorder is already installed.
pub fn install_recorder() -> Option<PrometheusHandle> {
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("triggerd_webhook_ingest_seconds".into()),
            &LATENCY_BUCKETS,
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("triggerd_cron_fire_lateness_seconds".into()),
                &LATENESS_BUCKETS,
            )
        });
    match builder.and_then(PrometheusBuilder::install_recorder) {
        Ok(handle) => Some(handle),
        Err(e) => {
            tracing::warn!(error = %e, "metrics recorder not installed; /metrics will only show store figures");
            None
        }
    }
}

/// Metrics in the Prometheus text format.
///
/// Webhook requests by outcome, runs by status, ingest latency, database writes, cron slots and
/// event-hook attempts. No authentication: restrict it at the network or proxy if needed.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "service",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)),
)]
pub async fn render(state: &AppState) -> Response<Body> {
    let mut text = match &state.metrics {
        Some(handle) => {
            handle.run_upkeep();
            handle.render()
        }
        None => String::new(),
    };
    match state.store().count_runs_by_status().await {
        Ok(counts) => {
            text.push_str("# HELP triggerd_runs Runs in the database by status (pending = queue depth).\n# TYPE triggerd_runs gauge\n");
            for status in triggerd_domain::run::RunStatus::ALL.map(|s| s.as_str()) {
                let n = counts
                    .iter()
                    .find(|(s, _)| s == status)
                    .map_or(0, |(_, n)| *n);
                let _ = writeln!(text, "triggerd_runs{{status=\"{status}\"}} {n}");
            }
        }
        Err(e) => tracing::warn!(error = %e, "metrics: cannot count runs"),
    }
    match state.store().count_deliveries(state.app.now()).await {
        Ok((by_status, due)) => {
            text.push_str("# HELP triggerd_hook_deliveries Event-hook deliveries in the database by status.\n# TYPE triggerd_hook_deliveries gauge\n");
            for status in ["pending", "delivered", "failed"] {
                let n = by_status
                    .iter()
                    .find(|(s, _)| s == status)
                    .map_or(0, |(_, n)| *n);
                let _ = writeln!(text, "triggerd_hook_deliveries{{status=\"{status}\"}} {n}");
            }
            let _ = write!(
                text,
                "# HELP triggerd_hook_deliveries_due Pending deliveries due now (the backlog).\n# TYPE triggerd_hook_deliveries_due gauge\ntriggerd_hook_deliveries_due {due}\n"
            );
        }
        Err(e) => tracing::warn!(error = %e, "metrics: cannot count deliveries"),
    }
    let stats = state.store().stats();
    let _ = write!(
        text,
        "# HELP triggerd_store_commits_total Transactions committed by the group-commit writer.\n# TYPE triggerd_store_commits_total counter\ntriggerd_store_commits_total {}\n\
         # HELP triggerd_store_jobs_total Writes committed by the group-commit writer.\n# TYPE triggerd_store_jobs_total counter\ntriggerd_store_jobs_total {}\n\
         # HELP triggerd_store_failed_batches_total Batches whose commit failed (their requests got 503).\n# TYPE triggerd_store_failed_batches_total counter\ntriggerd_store_failed_batches_total {}\n",
        stats.commits, stats.jobs, stats.failed_batches
    );
    if state.store().backend() == triggerd_storage::Backend::Sqlite {
        let _ = write!(
            text,
            "# HELP triggerd_sqlite_wal_bytes Size of the SQLite write-ahead log file, bytes (checked about once a second while writes happen).\n# TYPE triggerd_sqlite_wal_bytes gauge\ntriggerd_sqlite_wal_bytes {}\n\
             # HELP triggerd_sqlite_wal_restarts_total Checkpoints that started a WAL grown past its size target over.\n# TYPE triggerd_sqlite_wal_restarts_total counter\ntriggerd_sqlite_wal_restarts_total {}\n",
            stats.wal_bytes, stats.wal_restarts
        );
    }
    let memory = state.app.memory();
    let _ = write!(
        text,
        "# HELP triggerd_memory_budget_bytes Memory large work may hold at once (TRIGGERD_MEMORY_BUDGET_MB; 0: no budget).\n# TYPE triggerd_memory_budget_bytes gauge\ntriggerd_memory_budget_bytes {}\n\
         # HELP triggerd_memory_budget_in_use_bytes What large work (bodies, run pages, executing runs) holds of the budget now.\n# TYPE triggerd_memory_budget_in_use_bytes gauge\ntriggerd_memory_budget_in_use_bytes {}\n\
         # HELP triggerd_memory_budget_reading_bytes What large bodies being read hold of the budget's reading allowance (a quarter of it).\n# TYPE triggerd_memory_budget_reading_bytes gauge\ntriggerd_memory_budget_reading_bytes {}\n",
        memory.bytes().unwrap_or(0),
        memory.in_use(),
        memory.reading_in_use()
    );
    text.push_str("# HELP triggerd_store_batch_size Writes per committed batch.\n# TYPE triggerd_store_batch_size histogram\n");
    let mut cumulative = 0;
    for (i, count) in stats.batch_sizes.iter().enumerate() {
        cumulative += count;
        // Bucket i holds batches of 2^i ..= 2^(i+1)-1 jobs; the last one is open-ended.
        if i + 1 < stats.batch_sizes.len() {
            let _ = writeln!(
                text,
                "triggerd_store_batch_size_bucket{{le=\"{}\"}} {cumulative}",
                (1u64 << (i + 1)) - 1
            );
        }
    }
    let _ = writeln!(
        text,
        "triggerd_store_batch_size_bucket{{le=\"+Inf\"}} {cumulative}"
    );
    let _ = writeln!(text, "triggerd_store_batch_size_sum {}", stats.jobs);
    let _ = writeln!(text, "triggerd_store_batch_size_count {cumulative}");

    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}
