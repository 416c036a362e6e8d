//! JSON views of stored rows, exactly as SPEC 3 shows them. Secrets never leave through here.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use triggerd_domain::trigger::{TriggerConfig, TriggerType};
use triggerd_storage::{
    ActivityRow, DeploymentRow, RunRow, TriggerRow, WorkflowRow, WorkflowVersionRow,
};

/// RFC 3339 UTC text of an instant in microseconds since the epoch.
pub fn rfc3339(micros: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn opt_time(micros: Option<i64>) -> Value {
    micros.map_or(Value::Null, |m| Value::String(rfc3339(m)))
}

/// A stored JSON text as a value (`null` if it does not parse, which would be a bug).
fn parsed(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

fn opt_parsed(text: Option<&str>) -> Value {
    text.map_or(Value::Null, parsed)
}

/// A workflow at one version.
pub fn workflow(row: &WorkflowRow, version: &WorkflowVersionRow) -> Value {
    let definition = parsed(&version.definition);
    json!({
        "name": row.name,
        "version": version.version,
        "latest_version": row.latest_version,
        "description": definition.get("description").cloned().unwrap_or(Value::Null),
        "definition": definition,
        "created_at": rfc3339(row.created_at),
        "updated_at": rfc3339(row.updated_at),
        "version_created_at": rfc3339(version.created_at),
    })
}

/// A workflow in a list (no definition).
pub fn workflow_summary(row: &WorkflowRow) -> Value {
    json!({
        "name": row.name,
        "latest_version": row.latest_version,
        "created_at": rfc3339(row.created_at),
        "updated_at": rfc3339(row.updated_at),
    })
}

/// A deployment.
pub fn deployment(row: &DeploymentRow) -> Value {
    json!({
        "id": row.id,
        "workflow": row.workflow,
        "name": row.name,
        "version": row.pinned_version,
        "tracks_latest": row.pinned_version.is_none(),
        "created_at": rfc3339(row.created_at),
    })
}

/// A trigger; `public_url` builds a webhook's `url`.
pub fn trigger(row: &TriggerRow, public_url: &str) -> Value {
    let stored = parsed(&row.config);
    let trigger_type = if row.trigger_type == "cron" {
        TriggerType::Cron
    } else {
        TriggerType::Webhook
    };
    let config = match TriggerConfig::from_stored(trigger_type, &stored) {
        Ok(config) => config.public_json(),
        Err(_) => {
            // Never show secrets, even for a configuration this build cannot read.
            let mut shown = stored;
            if let Some(map) = shown.as_object_mut() {
                map.shift_remove("secret");
                map.shift_remove("api_keys");
            }
            shown
        }
    };
    let mut view = json!({
        "id": row.id,
        "deployment_id": row.deployment_id,
        "name": row.name,
        "trigger_type": row.trigger_type,
        "enabled": row.enabled,
        "declared": row.declared,
        "config": config,
        "last_fired_at": opt_time(row.last_fired_at),
        "fire_count": row.fire_count,
        "created_at": rfc3339(row.created_at),
        "updated_at": rfc3339(row.updated_at),
    });
    if trigger_type == TriggerType::Webhook {
        view["token"] = json!(row.token);
        view["url"] = row.token.as_ref().map_or(Value::Null, |t| {
            json!(format!("{public_url}/api/webhooks/{t}"))
        });
    } else {
        view["next_fire_at"] = opt_time(row.next_fire_at);
    }
    view
}

/// A run (SPEC 3 run object).
pub fn run(row: &RunRow) -> Value {
    json!({
        "id": row.id,
        "deployment_id": row.deployment_id,
        "workflow": row.workflow,
        "workflow_version": row.workflow_version,
        "trigger_id": row.trigger_id,
        "source": row.source,
        "status": row.status,
        "input": parsed(&row.input),
        "trigger_input": parsed(&row.trigger_input),
        "context": parsed(&row.context),
        "step_executions": parsed(&row.step_executions),
        "waiting_reason": row.waiting_reason,
        "waiting_payload": opt_parsed(row.waiting_payload.as_deref()),
        "waiting_expires_at": opt_time(row.waiting_expires_at),
        "final_output": opt_parsed(row.final_output.as_deref()),
        "error": opt_parsed(row.error.as_deref()),
        "created_at": rfc3339(row.created_at),
        "started_at": opt_time(row.started_at),
        "finished_at": opt_time(row.finished_at),
    })
}

/// A webhook activity-log row (SPEC 4.6).
pub fn activity(row: &ActivityRow) -> Value {
    json!({
        "id": row.id,
        "received_at": rfc3339(row.received_at),
        "method": row.method,
        "status_code": row.status_code,
        "outcome": row.outcome,
        "run_id": row.run_id,
        "error": row.error,
        "body_bytes": row.body_bytes,
        "duration_ms": row.duration_ms,
        "remote_addr": row.remote_addr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339(1_795_000_000_123_456),
            "2026-11-18T11:06:40.123456Z"
        );
    }

    #[test]
    fn trigger_view_hides_secrets() {
        let row = TriggerRow {
            id: "trg_1".into(),
            deployment_id: "dep_1".into(),
            name: None,
            trigger_type: "webhook".into(),
            enabled: true,
            config: r#"{"secret":"s3cret","api_keys":["0123456789abcdefXYZ"]}"#.into(),
            declared: false,
            fire_count: 0,
            last_fired_at: None,
            next_fire_at: None,
            created_at: 0,
            updated_at: 0,
            token: Some("wht_x".into()),
        };
        let view = trigger(&row, "http://h");
        let text = view.to_string();
        assert!(!text.contains("s3cret") && !text.contains("0123456789abcdefXYZ"));
        assert_eq!(view["config"]["secret_configured"], json!(true));
        assert_eq!(view["config"]["api_keys_configured"], json!(1));
        assert_eq!(view["url"], json!("http://h/api/webhooks/wht_x"));
    }
}
