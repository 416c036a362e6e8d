//! JSON views of stored rows, as the API documents them. Secrets never leave through here.
//!
//! Each view is a typed struct: handlers serialise it, and the OpenAPI document
//! ([`crate::openapi`]) takes its schema from the same type (`utoipa::ToSchema`), so the document
//! cannot drift from what the API answers.

use serde::Serialize;
use serde_json::Value;
use triggerd_domain::api_keys::GeneratedApiKey;
use triggerd_domain::definition::redact_secrets;
use triggerd_domain::trigger::TriggerType;
use triggerd_storage::{
    ActivityRow, AttemptRow, DeliveryRow, DeploymentRow, HookRow, RunRow, TriggerRow, WorkflowRow,
    WorkflowVersionRow,
};
use utoipa::ToSchema;

pub use triggerd_domain::run::rfc3339;

fn opt_time(micros: Option<i64>) -> Option<String> {
    micros.map(rfc3339)
}

/// A stored JSON text as a value (`null` if it does not parse, which would be a bug).
fn parsed(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// A workflow at one version.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowView {
    /// The workflow's name.
    pub name: String,
    /// The version shown.
    pub version: i64,
    /// The newest version.
    pub latest_version: i64,
    /// The definition's `description`.
    pub description: Option<String>,
    /// The definition of this version, as stored (secrets shown as `secret_configured`).
    #[schema(value_type = Object)]
    pub definition: Value,
    /// When the workflow was first stored (RFC 3339).
    pub created_at: String,
    /// When its newest version was stored.
    pub updated_at: String,
    /// When this version was stored.
    pub version_created_at: String,
}

/// What `PUT /workflows/{name}` answers: the workflow at its newest version, whether that
/// version is new, and the declared triggers it created, updated or removed per deployment.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowPut {
    #[serde(flatten)]
    pub workflow: WorkflowView,
    /// `false` when the definition was identical to the latest version (no new version).
    pub created: bool,
    /// Per deployment tracking the latest version: `{deployment_id, created, updated, removed}`.
    pub declared_triggers: Vec<DeclaredSync>,
    /// The workflow-scoped hooks the definition declares (`hooks`, `on_success_url`,
    /// `on_failure_url`), kept across versions while declared the same; their secrets are read
    /// with `GET /hooks/{id}/secret`.
    pub hooks: Vec<HookView>,
    /// What is valid but likely to fail at run time, such as a template that reads an optional
    /// header without `| default: <value>` (docs/templates.md). Never a refusal; left out when
    /// there is none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(required = false)]
    pub warnings: Vec<DefinitionWarning>,
}

/// A warning about a stored definition.
#[derive(Debug, Serialize, ToSchema)]
pub struct DefinitionWarning {
    /// Where, as a path into the definition (`output.event`, `steps[0].request.url`).
    pub path: String,
    /// What may go wrong and what to write instead.
    pub message: String,
}

/// The view of a definition warning.
pub fn definition_warning(warning: &triggerd_domain::Problem) -> DefinitionWarning {
    DefinitionWarning {
        path: warning.path.clone(),
        message: warning.message.clone(),
    }
}

/// The declared triggers one deployment gained, changed and lost with a new version.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeclaredSync {
    /// The deployment.
    pub deployment_id: String,
    /// Names of the triggers created.
    pub created: Vec<String>,
    /// Names of the triggers updated in place.
    pub updated: Vec<String>,
    /// Names of the triggers removed.
    pub removed: Vec<String>,
    /// API keys generated for this deployment's declared triggers by this change
    /// (`{"name", "generate": true}` in a trigger's `api_keys`), with the trigger they belong
    /// to: shown this once. Left out when none was generated.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(required = false)]
    pub generated_api_keys: Vec<GeneratedKeyView>,
}

/// The view of one deployment's declared-trigger sync.
pub fn declared_sync(report: &triggerd_app::deployments::SyncReport) -> DeclaredSync {
    DeclaredSync {
        deployment_id: report.deployment_id.clone(),
        created: report.created_names(),
        updated: report.updated.clone(),
        removed: report.removed.clone(),
        generated_api_keys: report
            .generated_api_keys
            .iter()
            .map(|(trigger, key)| GeneratedKeyView::new(Some(trigger), key))
            .collect(),
    }
}

/// A workflow in a list (no definition).
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowSummary {
    /// The workflow's name.
    pub name: String,
    /// The newest version.
    pub latest_version: i64,
    /// When it was first stored.
    pub created_at: String,
    /// When its newest version was stored.
    pub updated_at: String,
}

/// One version of a workflow.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowVersionView {
    /// The version number (1, 2, ...).
    pub version: i64,
    /// When it was stored.
    pub created_at: String,
    /// The definition of this version.
    #[schema(value_type = Object)]
    pub definition: Value,
}

/// A deployment.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeploymentView {
    /// `dep_...`
    pub id: String,
    /// The workflow it runs.
    pub workflow: String,
    /// Its name (`production`, `staging`).
    pub name: String,
    /// The pinned version; `null` when it tracks the latest.
    pub version: Option<i64>,
    /// Whether it runs the workflow's latest version.
    pub tracks_latest: bool,
    /// When it was created.
    pub created_at: String,
}

/// What `POST /workflows/{name}/deployments` answers: the deployment and the declared triggers
/// of its definition, created with it.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeploymentCreated {
    #[serde(flatten)]
    pub deployment: DeploymentView,
    /// The triggers declared in the definition, created for this deployment.
    pub triggers: Vec<TriggerView>,
}

/// A trigger. A webhook's has `token` and `url`, a cron trigger's
/// `next_fire_at`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TriggerView {
    /// `trg_...`
    pub id: String,
    /// The deployment it starts runs of.
    pub deployment_id: String,
    /// Its name; declared triggers always have one.
    pub name: Option<String>,
    /// `webhook` or `cron`.
    #[schema(pattern = "^(webhook|cron)$")]
    pub trigger_type: String,
    /// Disabled triggers start no runs (a webhook's URL answers 404).
    pub enabled: bool,
    /// Whether it comes from the workflow definition's `triggers` (managed by the definition).
    pub declared: bool,
    /// The configuration, without secrets: `secret_configured`, `api_keys_configured` (a count)
    /// and `api_key_names` instead of `secret` and `api_keys`.
    #[schema(value_type = Object)]
    pub config: Value,
    /// When it last started a run.
    pub last_fired_at: Option<String>,
    /// How many runs it started.
    pub fire_count: i64,
    /// When it was created.
    pub created_at: String,
    /// When it last changed.
    pub updated_at: String,
    /// Webhook triggers: the current token (`wht_...`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Webhook triggers: the URL senders call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Cron triggers: the next slot (`null` once a one-time trigger has fired).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, required = false)]
    pub next_fire_at: Option<Option<String>>,
    /// Only in the answer of the call that generated them (`{"name", "generate": true}` in
    /// `config.api_keys` or `config.api_keys_add`): the new API keys, shown this once. Only their
    /// digests are stored; a lost key is replaced by generating another.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(required = false)]
    pub generated_api_keys: Vec<GeneratedKeyView>,
}

/// An API key the server generated, shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct GeneratedKeyView {
    /// The declared trigger it belongs to (in `PUT /workflows/{name}` answers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    pub trigger: Option<String>,
    /// The key's name (`config.api_key_names`).
    pub name: String,
    /// The key (`whk_...`), to give to the sender as `Authorization: Bearer <key>` or
    /// `X-API-Key: <key>`.
    pub key: String,
}

impl GeneratedKeyView {
    fn new(trigger: Option<&str>, key: &GeneratedApiKey) -> Self {
        GeneratedKeyView {
            trigger: trigger.map(str::to_owned),
            name: key.name.clone(),
            key: key.key.clone(),
        }
    }
}

/// What `POST /triggers/{id}/rotate` answers: the trigger with its new token and URL.
#[derive(Debug, Serialize, ToSchema)]
pub struct TriggerRotated {
    #[serde(flatten)]
    pub trigger: TriggerView,
    /// Until when the previous token still works; `null` when it stopped at once.
    pub previous_token_valid_until: Option<String>,
}

/// A run.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunView {
    /// `run_...`
    pub id: String,
    /// The deployment it belongs to.
    pub deployment_id: String,
    /// The workflow's name.
    pub workflow: String,
    /// The workflow version it runs.
    pub workflow_version: i64,
    /// The trigger that started it; `null` for runs started through the API.
    pub trigger_id: Option<String>,
    /// `webhook`, `cron` or `api`.
    #[schema(pattern = "^(webhook|cron|api)$")]
    pub source: String,
    /// `pending`, `running`, `waiting`, `completed`, `failed` or `cancelled`.
    #[schema(pattern = "^(pending|running|waiting|completed|failed|cancelled)$")]
    pub status: String,
    /// The validated input.
    #[schema(value_type = Object)]
    pub input: Json,
    /// The request that started it (`method`, `path`, `query`, `headers`, `body`), with
    /// secrets redacted; `{scheduled_for}` for cron runs; `null` for API runs.
    #[schema(value_type = Object)]
    pub trigger_input: Json,
    /// The context store as the run sees it.
    #[schema(value_type = Object)]
    pub context: Json,
    /// One entry per step execution.
    #[schema(value_type = Vec<Object>)]
    pub step_executions: StepExecutions,
    /// `webhook` or `approval` while waiting.
    pub waiting_reason: Option<String>,
    /// What the wait needs (resume or approval URLs).
    #[schema(value_type = Object)]
    pub waiting_payload: Json,
    /// When the wait expires.
    pub waiting_expires_at: Option<String>,
    /// The rendered `output` once completed.
    #[schema(value_type = Object)]
    pub final_output: Json,
    /// `{code, message}` once failed.
    #[schema(value_type = Object)]
    pub error: Json,
    /// When it was created.
    pub created_at: String,
    /// When it started.
    pub started_at: Option<String>,
    /// When it finished.
    pub finished_at: Option<String>,
}

/// What `POST /runs` answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunCreated {
    /// The new run's id.
    pub run_id: String,
    /// Always `pending`.
    pub status: String,
    /// The run-scoped hooks created with it (when `hooks` was given), with their secrets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hooks: Option<Vec<RunHookCreated>>,
}

/// A run-scoped hook created by `POST /runs`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunHookCreated {
    /// `hook_...`
    pub id: String,
    /// `whsec_...`: shown only here (and by `GET /hooks/{id}/secret`).
    pub secret: String,
}

/// A webhook activity-log row: one inbound request to a known token.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActivityView {
    /// `req_...`, the `X-Request-Id` the sender got.
    pub id: String,
    /// When the request arrived.
    pub received_at: String,
    /// Its HTTP method.
    pub method: String,
    /// The status code it was answered with.
    pub status_code: i32,
    /// `accepted`, `method_not_allowed`, `too_large`, `rate_limited`, `bad_signature`,
    /// `unauthorized`, `malformed`, `invalid_input`, `failed`, `filtered` or `duplicate`.
    pub outcome: String,
    /// The run it started (for a `duplicate`, the run of the request it repeats).
    pub run_id: Option<String>,
    /// Why it was refused.
    pub error: Option<String>,
    /// Size of its body.
    pub body_bytes: i64,
    /// Time to answer it.
    pub duration_ms: i64,
    /// The sender's address.
    pub remote_addr: Option<String>,
    /// The request this one replays (`POST /triggers/{id}/requests/{request_id}/replay`).
    pub replay_of: Option<String>,
}

/// One activity-log row with what its request carried (`GET /triggers/{id}/requests/{request_id}`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ActivityDetailView {
    /// The row as the log lists it.
    #[serde(flatten)]
    pub row: ActivityView,
    /// The request: `{method, path, headers, query, body, body_encoding, body_truncated}` —
    /// headers and query redacted; `body` as text (`body_encoding: "utf8"`) or base64
    /// (`"base64"`), cut at the trigger's `log_body_bytes` (`body_truncated`), or, for an
    /// accepted request (read from its run's `trigger_input`), the parsed body
    /// (`body_encoding: "json"`). `null` when nothing was kept (a run deleted by retention, a
    /// row written before request inspection existed).
    #[schema(value_type = Option<Object>)]
    pub request: Option<Value>,
    /// The refusal's details (the 422 `details`: each problem with its input and message).
    #[schema(value_type = Option<Object>)]
    pub details: Option<Value>,
}

/// What `POST /triggers/{id}/requests/{request_id}/replay` answers when it does not refuse.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayStarted {
    /// The run started (201), or, for a duplicate (200), the run holding the key.
    pub run_id: Option<String>,
    /// `pending` when a run was started.
    pub status: Option<String>,
    /// `true` when the trigger's filter ignored the request.
    pub ignored: Option<bool>,
    /// `true` when the request's de-duplication key is held by `run_id`.
    pub duplicate: Option<bool>,
    /// The replay's own activity row (this call's `X-Request-Id`).
    pub request_id: String,
    /// The request replayed.
    pub replay_of: String,
}

/// What `POST /triggers/{id}/test` answers: the input a real request would start a run with.
#[derive(Debug, Serialize, ToSchema)]
pub struct TestResult {
    /// The mapped and validated input; `null` when the filter ignores the request.
    #[schema(value_type = Object)]
    pub input: Value,
    /// The request as the mapping saw it (headers lower-cased and redacted).
    #[schema(value_type = Object)]
    pub trigger_input: Value,
    /// Present and `true` when the trigger's `filter` ignores the request (a real one would get
    /// 200 `{"ignored": true}` and start no run).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ignored: bool,
}

/// An event hook. Its secret is shown only when the hook is created (and through
/// `GET /hooks/{id}/secret`).
#[derive(Debug, Serialize, ToSchema)]
pub struct HookView {
    /// `hook_...`
    pub id: String,
    /// `workflow`, `deployment` or `run`.
    pub scope: String,
    /// Scope `workflow`: the workflow's name.
    pub workflow: Option<String>,
    /// Scope `deployment`.
    pub deployment_id: Option<String>,
    /// Scope `run`.
    pub run_id: Option<String>,
    /// Where events are POSTed.
    pub url: String,
    /// The event types it receives.
    pub events: Vec<String>,
    /// Always `true`: every hook signs its deliveries.
    pub secret_configured: bool,
    /// `whsec_...`: only in the answer to its creation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// When it was created.
    pub created_at: String,
}

/// A hook's signing secret (`GET /hooks/{id}/secret`, rotation).
#[derive(Debug, Serialize, ToSchema)]
pub struct HookSecret {
    /// `whsec_...`: the HMAC key is the base64-decoded part after the prefix.
    pub secret: String,
}

/// One attempt to send a delivery.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptView {
    /// 1, 2, …
    pub attempt: i64,
    /// When it was made.
    pub attempted_at: String,
    /// The receiver's status, when it answered.
    pub status_code: Option<i32>,
    /// How long it took.
    pub duration_ms: i64,
    /// Why it failed.
    pub error: Option<String>,
    /// The first 4 KiB of the receiver's answer.
    pub response_body: Option<String>,
}

/// A delivery of one event to one hook, with its attempts.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    /// `dlv_...`
    pub id: String,
    /// The hook.
    pub hook_id: String,
    /// The event id: the `webhook-id` header of every attempt.
    pub event_id: String,
    /// `run.started`, `run.completed`, …
    pub event_type: String,
    /// The run.
    pub run_id: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    /// Attempts made so far.
    pub attempts: i64,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Option<String>,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// When the event happened.
    pub created_at: String,
    /// When it was delivered or given up.
    pub finished_at: Option<String>,
    /// Every attempt, oldest first.
    pub attempt_log: Vec<AttemptView>,
}

/// A hook.
pub fn hook(row: &HookRow, with_secret: bool) -> HookView {
    HookView {
        id: row.id.clone(),
        scope: row.scope.clone(),
        workflow: row.workflow.clone(),
        deployment_id: row.deployment_id.clone(),
        run_id: row.run_id.clone(),
        url: row.url.clone(),
        events: serde_json::from_str(&row.events).unwrap_or_default(),
        secret_configured: true,
        secret: with_secret.then(|| row.secret.clone()),
        created_at: rfc3339(row.created_at),
    }
}

/// A delivery with its attempts (those of `attempts` that are its own).
pub fn delivery(row: &DeliveryRow, attempts: &[AttemptRow]) -> DeliveryView {
    DeliveryView {
        id: row.id.clone(),
        hook_id: row.hook_id.clone(),
        event_id: row.event_id.clone(),
        event_type: row.event_type.clone(),
        run_id: row.run_id.clone(),
        status: row.status.clone(),
        attempts: row.attempts,
        next_attempt_at: if row.status == "pending" {
            opt_time(row.next_attempt_at)
        } else {
            None
        },
        last_error: row.last_error.clone(),
        created_at: rfc3339(row.created_at),
        finished_at: opt_time(row.finished_at),
        attempt_log: attempts
            .iter()
            .filter(|a| a.delivery_id == row.id)
            .map(|a| AttemptView {
                attempt: a.attempt,
                attempted_at: rfc3339(a.attempted_at),
                status_code: a.status_code,
                duration_ms: a.duration_ms,
                error: a.error.clone(),
                response_body: a.response_body.clone(),
            })
            .collect(),
    }
}

/// Declares a list page type `{data, next_cursor}` of one item type, with its schema.
macro_rules! page {
    ($(#[$doc:meta])* $name:ident of $item:ty) => {
        $(#[$doc])*
        #[derive(Debug, Serialize, ToSchema)]
        pub struct $name {
            /// This page's items, newest first.
            pub data: Vec<$item>,
            /// Pass as `cursor` for the next page; `null` on the last page.
            pub next_cursor: Option<String>,
        }
    };
}

page!(
    /// A page of workflows, by name.
    WorkflowPage of WorkflowSummary
);
page!(
    /// A page of a workflow's versions, newest first.
    WorkflowVersionPage of WorkflowVersionView
);
page!(
    /// A page of deployments.
    DeploymentPage of DeploymentView
);
page!(
    /// A page of triggers.
    TriggerPage of TriggerView
);
page!(
    /// A page of runs.
    RunPage of RunView
);
page!(
    /// A page of a trigger's activity log.
    ActivityPage of ActivityView
);
page!(
    /// A page of hooks.
    HookPage of HookView
);
page!(
    /// A page of deliveries, newest first.
    DeliveryPage of DeliveryView
);

/// A workflow at one version.
pub fn workflow(row: &WorkflowRow, version: &WorkflowVersionRow) -> WorkflowView {
    let definition = redact_secrets(&parsed(&version.definition));
    WorkflowView {
        name: row.name.clone(),
        version: version.version,
        latest_version: row.latest_version,
        description: definition
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_owned),
        definition,
        created_at: rfc3339(row.created_at),
        updated_at: rfc3339(row.updated_at),
        version_created_at: rfc3339(version.created_at),
    }
}

/// A workflow in a list (no definition).
pub fn workflow_summary(row: &WorkflowRow) -> WorkflowSummary {
    WorkflowSummary {
        name: row.name.clone(),
        latest_version: row.latest_version,
        created_at: rfc3339(row.created_at),
        updated_at: rfc3339(row.updated_at),
    }
}

/// One version of a workflow.
pub fn workflow_version(row: &WorkflowVersionRow) -> WorkflowVersionView {
    WorkflowVersionView {
        version: row.version,
        created_at: rfc3339(row.created_at),
        definition: redact_secrets(&parsed(&row.definition)),
    }
}

/// A run's step executions as shown: the wait token a parked step keeps (to tell a late POST
/// 409 from an unknown token 404) is a credential, and never leaves (the waiting run's
/// `waiting_payload` carries its URLs while it waits).
/// A stored JSON document answered as it is stored: moved into the answer, never parsed (a
/// run's documents can be megabytes, and a parsed copy costs many times that).
pub type Json = Box<serde_json::value::RawValue>;

/// A stored JSON text as an answer's value without parsing it (`null` if it is not JSON, which
/// would be a bug).
fn raw(text: String) -> Json {
    serde_json::value::RawValue::from_string(text).unwrap_or_else(|_| null())
}

fn null() -> Json {
    serde_json::value::RawValue::from_string("null".to_owned()).unwrap_or_default()
}

fn opt_raw(text: Option<String>) -> Json {
    text.map_or_else(null, raw)
}

/// A run's step executions, each entry's fields kept as stored text, without the internal
/// `wait_token` (the resume URL's secret, which only `waiting_payload` shows while waiting).
#[derive(Debug, Default)]
pub struct StepExecutions(Vec<Vec<(String, Json)>>);

impl StepExecutions {
    fn parse(text: &str) -> StepExecutions {
        serde_json::from_str(text).unwrap_or_default()
    }
}

/// One step execution's fields, in stored order.
struct StepEntry(Vec<(String, Json)>);

impl<'de> serde::Deserialize<'de> for StepEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = StepEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a step execution object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<StepEntry, A::Error> {
                let mut fields = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, Json>()? {
                    if key != "wait_token" {
                        fields.push((key, value));
                    }
                }
                Ok(StepEntry(fields))
            }
        }
        d.deserialize_map(Fields)
    }
}

impl<'de> serde::Deserialize<'de> for StepExecutions {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let entries = Vec::<StepEntry>::deserialize(d)?;
        Ok(StepExecutions(entries.into_iter().map(|e| e.0).collect()))
    }
}

impl Serialize for StepExecutions {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        struct Entry<'a>(&'a [(String, Json)]);
        impl Serialize for Entry<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut map = s.serialize_map(Some(self.0.len()))?;
                for (key, value) in self.0 {
                    map.serialize_entry(key, value)?;
                }
                map.end()
            }
        }
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for entry in &self.0 {
            seq.serialize_element(&Entry(entry))?;
        }
        seq.end()
    }
}

/// A deployment.
pub fn deployment(row: &DeploymentRow) -> DeploymentView {
    DeploymentView {
        id: row.id.clone(),
        workflow: row.workflow.clone(),
        name: row.name.clone(),
        version: row.pinned_version,
        tracks_latest: row.pinned_version.is_none(),
        created_at: rfc3339(row.created_at),
    }
}

/// A trigger with the API keys generated by the call that answers it (shown once).
pub fn trigger_with_keys(
    row: &TriggerRow,
    public_url: &str,
    generated: &[GeneratedApiKey],
) -> TriggerView {
    let mut view = trigger(row, public_url);
    view.generated_api_keys = generated
        .iter()
        .map(|k| GeneratedKeyView::new(None, k))
        .collect();
    view
}

/// A trigger; `public_url` builds a webhook's `url`.
pub fn trigger(row: &TriggerRow, public_url: &str) -> TriggerView {
    let trigger_type = triggerd_app::triggers::type_of(row).unwrap_or(TriggerType::Webhook);
    let config = match triggerd_app::triggers::config_of(row) {
        Ok(config) => config.public_json(),
        Err(_) => {
            // Never show secrets, even for a configuration this build cannot read.
            let mut shown = parsed(&row.config);
            if let Some(map) = shown.as_object_mut() {
                map.shift_remove("secret");
                map.shift_remove("api_keys");
            }
            shown
        }
    };
    let webhook = trigger_type == TriggerType::Webhook;
    TriggerView {
        id: row.id.clone(),
        deployment_id: row.deployment_id.clone(),
        name: row.name.clone(),
        trigger_type: row.trigger_type.clone(),
        enabled: row.enabled,
        declared: row.declared,
        config,
        last_fired_at: opt_time(row.last_fired_at),
        fire_count: row.fire_count,
        created_at: rfc3339(row.created_at),
        updated_at: rfc3339(row.updated_at),
        token: row.token.clone().filter(|_| webhook),
        url: row
            .token
            .as_ref()
            .filter(|_| webhook)
            .map(|t| format!("{public_url}/api/webhooks/{t}")),
        next_fire_at: (!webhook).then(|| opt_time(row.next_fire_at)),
        generated_api_keys: Vec::new(),
    }
}

/// A run, its documents answered as stored.
pub fn run(row: RunRow) -> RunView {
    RunView {
        step_executions: StepExecutions::parse(&row.step_executions),
        id: row.id,
        deployment_id: row.deployment_id,
        workflow: row.workflow,
        workflow_version: row.workflow_version,
        trigger_id: row.trigger_id,
        source: row.source,
        status: row.status,
        input: raw(row.input),
        trigger_input: raw(row.trigger_input),
        context: raw(row.context),
        waiting_reason: row.waiting_reason,
        waiting_payload: opt_raw(row.waiting_payload),
        waiting_expires_at: opt_time(row.waiting_expires_at),
        final_output: opt_raw(row.final_output),
        error: opt_raw(row.error),
        created_at: rfc3339(row.created_at),
        started_at: opt_time(row.started_at),
        finished_at: opt_time(row.finished_at),
    }
}

/// A webhook activity-log row: one inbound request to a known token.
pub fn activity(row: &ActivityRow) -> ActivityView {
    ActivityView {
        id: row.id.clone(),
        received_at: rfc3339(row.received_at),
        method: row.method.clone(),
        status_code: row.status_code,
        outcome: row.outcome.clone(),
        run_id: row.run_id.clone(),
        error: row.error.clone(),
        body_bytes: row.body_bytes,
        duration_ms: row.duration_ms,
        remote_addr: row.remote_addr.clone(),
        replay_of: row.replay_of.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn run_documents_are_answered_as_stored_without_the_wait_token() {
        let executions = StepExecutions::parse(
            r#"[{"step_id":"w","status":"waiting","wait_token":"wtk_secret","output":{"a":[1,2]}},{"step_id":"x"}]"#,
        );
        assert_eq!(
            serde_json::to_string(&executions).unwrap(),
            r#"[{"step_id":"w","status":"waiting","output":{"a":[1,2]}},{"step_id":"x"}]"#
        );
        assert_eq!(
            serde_json::to_string(&raw(r#"{"b":1,"a":[true]}"#.to_owned())).unwrap(),
            r#"{"b":1,"a":[true]}"#
        );
        assert_eq!(serde_json::to_string(&opt_raw(None)).unwrap(), "null");
        assert_eq!(
            serde_json::to_string(&raw("not json".to_owned())).unwrap(),
            "null"
        );
        assert_eq!(
            serde_json::to_string(&StepExecutions::parse("junk")).unwrap(),
            "[]"
        );
    }

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
        let view = serde_json::to_value(trigger(&row, "http://h")).unwrap();
        let text = view.to_string();
        assert!(!text.contains("s3cret") && !text.contains("0123456789abcdefXYZ"));
        assert_eq!(view["config"]["secret_configured"], json!(true));
        assert_eq!(view["config"]["api_keys_configured"], json!(1));
        assert_eq!(view["config"]["api_key_names"], json!(["key-1"]));
        assert!(view.get("generated_api_keys").is_none());
        assert_eq!(view["url"], json!("http://h/api/webhooks/wht_x"));
    }
}
