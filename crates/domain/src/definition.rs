//! The workflow definition (`docs/workflows.md`): parsed from JSON or TOML, validated with every problem
//! reported at once.
//!
//! [`Definition::from_json_str`] / [`Definition::from_toml_str`] / [`Definition::from_value`]
//! check the whole document — unknown fields, input declarations, step ids and types, template
//! syntax and the steps they refer to, limits, declared triggers (with their cron schedules and
//! input mappings) and hooks — and return either a compiled [`Definition`] or every [`Problem`]
//! with the path of the offending value (`steps[1].request.url`).
//!
//! ```
//! use triggerd_domain::definition::{Definition, DefinitionError};
//!
//! let err = Definition::from_json_str(r#"{"name": "x", "inputs": {"id": {"type": "string"}}, "steps": [
//!     {"id": "a", "type": "http", "request": {"url": "https://example.com/{{ input.id }}"}},
//!     {"id": "a", "type": "teleport"}
//! ], "max_duration_seconds": 9000}"#).unwrap_err();
//! let DefinitionError::Invalid(problems) = err else { unreachable!() };
//! let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
//! assert_eq!(paths, ["steps[1].id", "steps[1].type", "max_duration_seconds"]);
//! ```

use serde_json::{Map, Value};

use crate::Problem;
use crate::inputs::{InputSpecs, describe, is_valid_name};
use crate::path::{Path, Segment};
use crate::run::EventType;
use crate::template::{Expression, RenderError, Template};
use crate::trigger::{ResponseMode, TriggerConfig, TriggerType};

/// Default `max_duration_seconds`.
pub const DEFAULT_MAX_DURATION_SECONDS: u32 = 1800;
/// Largest `max_duration_seconds`.
pub const MAX_DURATION_SECONDS: u32 = 7200;
/// Default `timeout_seconds` of `wait_for_webhook` and `approval` steps (one day).
pub const DEFAULT_WAIT_TIMEOUT_SECONDS: u64 = 86_400;
/// Largest wait timeout (30 days).
pub const MAX_WAIT_TIMEOUT_SECONDS: u64 = 30 * 86_400;
/// Default `request.timeout_seconds` of an `http` step.
pub const DEFAULT_HTTP_TIMEOUT_SECONDS: u64 = 30;
/// Default `timeout_seconds` of a `command` step.
pub const DEFAULT_COMMAND_TIMEOUT_SECONDS: u64 = 60;

/// Why a definition was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DefinitionError {
    /// The text is not JSON (or TOML); the API answers 400 `malformed_json`.
    #[error("the definition does not parse: {message}")]
    Syntax {
        /// The parser's message, with line and column.
        message: String,
    },
    /// The document parsed but breaks rules; the API answers 422 `invalid_definition`.
    #[error("the definition has {} problem(s); the first: {}", .0.len(), .0.first().map(ToString::to_string).unwrap_or_default())]
    Invalid(Vec<Problem>),
}

/// A validated, compiled workflow definition.
#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    /// The workflow's name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Declared inputs.
    pub inputs: InputSpecs,
    /// Steps, in order.
    pub steps: Vec<Step>,
    /// The output template; `None` = the run's output is its input.
    pub output: Option<Template>,
    /// 0 = unlimited.
    pub max_concurrent_runs: u32,
    /// Past this the run fails with code `timeout`.
    pub max_duration_seconds: u32,
    /// Receives `run.completed`.
    pub on_success_url: Option<String>,
    /// Receives `run.failed`.
    pub on_failure_url: Option<String>,
    /// Triggers created for each deployment.
    pub triggers: Vec<DeclaredTrigger>,
    /// Workflow-scoped event hooks.
    pub hooks: Vec<DeclaredHook>,
    source: Value,
    warnings: Vec<Problem>,
}

/// One step.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Unique within the workflow; usable in paths (`steps.<id>.output`).
    pub id: String,
    /// What the step does.
    pub kind: StepKind,
    /// Output path → context key, for this run.
    pub extract: Vec<(String, Path)>,
    /// Output path → context key, persisted in the deployment's context store.
    pub extract_to_context: Vec<(String, Path)>,
}

/// The step types (`docs/steps.md`).
#[derive(Debug, Clone, PartialEq)]
pub enum StepKind {
    /// An outbound HTTP request.
    Http(Box<HttpStep>),
    /// Park until a POST to the resume URL.
    WaitForWebhook {
        /// How long to wait before the run fails with `wait_timeout`.
        timeout_seconds: u64,
    },
    /// Park until a person approves or rejects.
    Approval {
        /// How long to wait before the run fails with `wait_timeout`.
        timeout_seconds: u64,
    },
    /// Run a program (only when the server allows commands).
    Command(Box<CommandStep>),
}

impl StepKind {
    /// The `type` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            StepKind::Http(_) => "http",
            StepKind::WaitForWebhook { .. } => "wait_for_webhook",
            StepKind::Approval { .. } => "approval",
            StepKind::Command(_) => "command",
        }
    }
}

/// An `http` step.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpStep {
    /// Upper-case method.
    pub method: String,
    /// URL template.
    pub url: Template,
    /// Header name → value template.
    pub headers: Vec<(String, Template)>,
    /// Body template (sent as JSON).
    pub body: Option<Template>,
    /// Per-attempt timeout.
    pub timeout_seconds: u64,
    /// Accepted statuses; `None` = any 2xx.
    pub expect_status: Option<Vec<u16>>,
    /// Extra attempts after a failure.
    pub retries: u32,
}

/// A `command` step.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandStep {
    /// Program and arguments, each a template; no shell.
    pub command: Vec<Template>,
    /// Environment variables.
    pub env: Vec<(String, Template)>,
    /// Working directory.
    pub working_dir: Option<Template>,
    /// Kill after this long.
    pub timeout_seconds: u64,
}

/// A trigger declared in the definition.
#[derive(Debug, Clone, PartialEq)]
pub struct DeclaredTrigger {
    /// Unique within the workflow; keys the trigger per deployment.
    pub name: String,
    /// The validated configuration.
    pub config: TriggerConfig,
}

/// An event hook declared in the definition (workflow scope).
#[derive(Debug, Clone, PartialEq)]
pub struct DeclaredHook {
    /// Where events are POSTed.
    pub url: String,
    /// Which events.
    pub events: Vec<EventType>,
}

const TOP_FIELDS: [&str; 11] = [
    "name",
    "description",
    "inputs",
    "steps",
    "output",
    "max_concurrent_runs",
    "max_duration_seconds",
    "on_success_url",
    "on_failure_url",
    "triggers",
    "hooks",
];

impl Definition {
    /// Parses and validates a JSON document.
    pub fn from_json_str(text: &str) -> Result<Definition, DefinitionError> {
        let value: Value = serde_json::from_str(text).map_err(|e| DefinitionError::Syntax {
            message: e.to_string(),
        })?;
        Definition::from_value(value).map_err(DefinitionError::Invalid)
    }

    /// Parses and validates a TOML document (same fields as JSON).
    pub fn from_toml_str(text: &str) -> Result<Definition, DefinitionError> {
        let value: Value = toml::from_str(text).map_err(|e| DefinitionError::Syntax {
            message: e.to_string(),
        })?;
        Definition::from_value(value).map_err(DefinitionError::Invalid)
    }

    /// Validates a JSON value, reporting every problem at once.
    pub fn from_value(value: Value) -> Result<Definition, Vec<Problem>> {
        let mut problems = Vec::new();
        let Some(map) = value.as_object() else {
            return Err(vec![Problem::new(
                "",
                format!(
                    "a definition must be a JSON object, got {}",
                    describe(&value)
                ),
            )]);
        };
        for key in map.keys() {
            if !TOP_FIELDS.contains(&key.as_str()) {
                problems.push(Problem::new(key, "unknown field"));
            }
        }
        let name = match map.get("name") {
            Some(Value::String(s)) if is_workflow_name(s) => s.clone(),
            Some(Value::String(_)) => {
                problems.push(Problem::new("name", "use letters, digits, `.`, `_` and `-`, starting with a letter or digit (1 to 100 characters)"));
                String::new()
            }
            None | Some(Value::Null) => {
                problems.push(Problem::new("name", "is required"));
                String::new()
            }
            Some(other) => {
                problems.push(Problem::new(
                    "name",
                    format!("must be a string, got {}", describe(other)),
                ));
                String::new()
            }
        };
        let description = optional_string(map, "description", &mut problems);
        let inputs = InputSpecs::parse_into(
            map.get("inputs").unwrap_or(&Value::Null),
            "inputs",
            &mut problems,
        );
        let steps = parse_steps(map.get("steps"), &inputs, &mut problems);
        let step_ids: Vec<&str> = steps.iter().map(|s| s.id.as_str()).collect();
        let output = match map.get("output") {
            None | Some(Value::Null) => None,
            Some(v) => compile_template(
                v,
                "output",
                &Refs {
                    steps: &step_ids,
                    inputs: &inputs,
                },
                &mut problems,
            ),
        };
        let max_concurrent_runs = bounded(
            map,
            "max_concurrent_runs",
            0,
            0,
            u64::from(u32::MAX),
            &mut problems,
        ) as u32;
        let max_duration_seconds = bounded(
            map,
            "max_duration_seconds",
            u64::from(DEFAULT_MAX_DURATION_SECONDS),
            1,
            u64::from(MAX_DURATION_SECONDS),
            &mut problems,
        ) as u32;
        let on_success_url = optional_url(map, "on_success_url", &mut problems);
        let on_failure_url = optional_url(map, "on_failure_url", &mut problems);
        let triggers = parse_triggers(map.get("triggers"), &inputs, &mut problems);
        let hooks = parse_hooks(map.get("hooks"), &mut problems);
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut definition = Definition {
            name,
            description,
            inputs,
            steps,
            output,
            max_concurrent_runs,
            max_duration_seconds,
            on_success_url,
            on_failure_url,
            source: without_api_keys(value, &triggers),
            triggers,
            hooks,
            warnings: Vec::new(),
        };
        definition.warnings = template_warnings(&definition);
        Ok(definition)
    }

    /// What is valid but likely to fail at run time, each with the path of the template
    /// expression: a template that reads, without `| default: <value>`, a value no run is sure to
    /// have — an optional input without a default, or a request's header, query parameter or
    /// body field (`trigger.headers.*`, `trigger.query.*`, `trigger.body.*`) — and a header name
    /// with capitals (header names are lower-case in `trigger.headers`). The API shows them in
    /// the answer to `PUT /workflows/{name}` as `warnings`; they never refuse a definition.
    ///
    /// ```
    /// use serde_json::json;
    /// use triggerd_domain::definition::Definition;
    ///
    /// let def = Definition::from_value(json!({"name": "shop", "output": {
    ///     "event": "{{ trigger.headers.x-shop-event }}",
    ///     "kind": "{{ trigger.headers.x-shop-kind | default: \"unknown\" }}"}})).unwrap();
    /// let paths: Vec<_> = def.warnings().iter().map(|w| w.path.as_str()).collect();
    /// assert_eq!(paths, ["output.event"]);
    /// ```
    pub fn warnings(&self) -> &[Problem] {
        &self.warnings
    }

    /// The document as submitted (key order kept), for storage and for showing it back — except
    /// that each declared webhook's `config.api_keys` is in its stored form: every key named, a
    /// key given as such replaced by its SHA-256 (`{"name", "sha256"}`), so no API key of a
    /// definition is ever stored. The form is stable: the same document gives the same source.
    pub fn source(&self) -> &Value {
        &self.source
    }

    /// The step with this id.
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id == id)
    }

    /// Whether rendering `output` may read the scope root `root` — e.g. `context`, the
    /// deployment's context store, which can change between storing a run and finishing it. A
    /// path that does not start with a key counts as reading every root.
    pub fn output_reads(&self, root: &str) -> bool {
        self.output.as_ref().is_some_and(|t| {
            t.expressions()
                .iter()
                .any(|p| p.root().is_none_or(|r| r == root))
        })
    }

    /// Whether any template of the definition (its `output`, a step's request or command) may
    /// read the scope root `root`; a path that does not start with a key counts as reading every
    /// root. An executor need not build a root nothing reads.
    pub fn reads(&self, root: &str) -> bool {
        templates_of(self).iter().any(|(_, t)| {
            t.expressions()
                .iter()
                .any(|p| p.root().is_none_or(|r| r == root))
        })
    }

    /// The run's `final_output`: `output` rendered against `scope` (an object with the roots
    /// `input`, `context`, `steps`, ...), or `scope.input` when there is no `output`.
    pub fn render_output(&self, scope: &Value) -> Result<Value, RenderError> {
        match &self.output {
            Some(t) => t.render(scope),
            None => Ok(scope.get("input").cloned().unwrap_or(Value::Null)),
        }
    }
}

/// `value` with each declared webhook's `config.api_keys` replaced by its stored form (digests,
/// names; `generate` entries kept as they are, to be generated per deployment).
fn without_api_keys(mut value: Value, triggers: &[DeclaredTrigger]) -> Value {
    let Some(items) = value.get_mut("triggers").and_then(Value::as_array_mut) else {
        return value;
    };
    for (item, declared) in items.iter_mut().zip(triggers) {
        let TriggerConfig::Webhook(webhook) = &declared.config else {
            continue;
        };
        if let Some(keys) = item
            .get_mut("config")
            .and_then(|c| c.get_mut("api_keys"))
            .filter(|k| !k.is_null())
        {
            *keys = Value::Array(
                webhook
                    .api_keys
                    .iter()
                    .map(crate::api_keys::ApiKey::to_json)
                    .collect(),
            );
        }
    }
    value
}

/// A stored definition as it may be shown (secrets are write-only): in each declared
/// trigger's `config`, `secret` becomes `"secret_configured": true` and `api_keys` becomes
/// `"api_keys_configured": <count>` and `"api_key_names": [...]`. Everything else is kept as
/// written.
///
/// ```
/// use serde_json::json;
/// use triggerd_domain::definition::redact_secrets;
/// let shown = redact_secrets(&json!({"triggers": [{"name": "crm", "trigger_type": "webhook",
///     "config": {"secret": "s3cret", "api_keys": ["0123456789abcdef-1", {"name": "ci", "generate": true}]}}]}));
/// assert_eq!(shown["triggers"][0]["config"], json!({"secret_configured": true,
///     "api_keys_configured": 2, "api_key_names": ["key-1", "ci"]}));
/// ```
pub fn redact_secrets(definition: &Value) -> Value {
    let mut shown = definition.clone();
    if let Some(triggers) = shown.get_mut("triggers").and_then(Value::as_array_mut) {
        for trigger in triggers {
            let Some(config) = trigger.get_mut("config").and_then(Value::as_object_mut) else {
                continue;
            };
            if let Some(secret) = config.shift_remove("secret") {
                config.insert("secret_configured".into(), Value::Bool(!secret.is_null()));
            }
            if let Some(keys) = config.shift_remove("api_keys") {
                let count = keys.as_array().map_or(0, Vec::len);
                config.insert("api_keys_configured".into(), Value::from(count));
                let names = crate::api_keys::names(&keys);
                config.insert("api_key_names".into(), Value::from(names));
            }
        }
    }
    shown
}

/// Whether `name` may name a workflow (it appears in URLs): letters, digits, `.`, `_`, `-`,
/// starting with a letter or digit, 1 to 100 characters.
pub fn is_workflow_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 100
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Whether `url` is an absolute `http`/`https` URL with a host.
pub fn is_http_url(url: &str) -> bool {
    match url.parse::<http::Uri>() {
        Ok(uri) => {
            matches!(uri.scheme_str(), Some("http" | "https"))
                && uri.host().is_some_and(|h| !h.is_empty())
        }
        Err(_) => false,
    }
}

fn optional_string(
    map: &Map<String, Value>,
    key: &str,
    problems: &mut Vec<Problem>,
) -> Option<String> {
    match map.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            problems.push(Problem::new(
                key,
                format!("must be a string, got {}", describe(other)),
            ));
            None
        }
    }
}

fn optional_url(
    map: &Map<String, Value>,
    key: &str,
    problems: &mut Vec<Problem>,
) -> Option<String> {
    let url = optional_string(map, key, problems)?;
    if is_http_url(&url) {
        Some(url)
    } else {
        problems.push(Problem::new(
            key,
            "must be an absolute http:// or https:// URL",
        ));
        None
    }
}

/// A whole number at `map[key]` in `min..=max`, or `default` when absent.
fn bounded(
    map: &Map<String, Value>,
    key: &str,
    default: u64,
    min: u64,
    max: u64,
    problems: &mut Vec<Problem>,
) -> u64 {
    bounded_at(map.get(key), key, default, min, max, problems)
}

fn bounded_at(
    value: Option<&Value>,
    at: &str,
    default: u64,
    min: u64,
    max: u64,
    problems: &mut Vec<Problem>,
) -> u64 {
    match value {
        None | Some(Value::Null) => default,
        Some(v @ Value::Number(n)) => {
            match crate::inputs::whole_number(v).and_then(|w| u64::try_from(w).ok()) {
                Some(v) if v > max => {
                    problems.push(Problem::new(at, format!("must be at most {max}, got {v}")));
                    default
                }
                Some(v) if v < min => {
                    problems.push(Problem::new(at, format!("must be at least {min}, got {v}")));
                    default
                }
                Some(v) => v,
                None => {
                    problems.push(Problem::new(
                        at,
                        format!("must be a whole number from {min} to {max}, got {n}"),
                    ));
                    default
                }
            }
        }
        Some(other) => {
            problems.push(Problem::new(
                at,
                format!(
                    "must be a whole number from {min} to {max}, got {}",
                    describe(other)
                ),
            ));
            default
        }
    }
}

/// Compiles a template at `at`, checking its syntax and that `steps.<id>` and `input.<name>` references name one of
/// the steps and inputs in `ctx`.
fn compile_template(
    value: &Value,
    at: &str,
    ctx: &Refs<'_>,
    problems: &mut Vec<Problem>,
) -> Option<Template> {
    match Template::compile(value) {
        Ok(template) => {
            for path in template.expressions() {
                if let Some(message) = check_reference(path, ctx) {
                    problems.push(Problem::new(at, message));
                }
            }
            Some(template)
        }
        Err(errors) => {
            for e in errors {
                problems.push(Problem::new(
                    format!("{at}{}", e.location),
                    e.kind.to_string(),
                ));
            }
            None
        }
    }
}

/// Every template of a compiled definition with the path where it was written: `output`, each
/// step's request, command, environment and working directory, and each declared webhook's
/// custom response body.
fn templates_of(definition: &Definition) -> Vec<(String, &Template)> {
    let mut out: Vec<(String, &Template)> = Vec::new();
    if let Some(t) = &definition.output {
        out.push(("output".to_owned(), t));
    }
    for (i, step) in definition.steps.iter().enumerate() {
        let at = format!("steps[{i}]");
        match &step.kind {
            StepKind::Http(http) => {
                out.push((format!("{at}.request.url"), &http.url));
                for (name, t) in &http.headers {
                    out.push((format!("{at}.request.headers.{name}"), t));
                }
                if let Some(t) = &http.body {
                    out.push((format!("{at}.request.body"), t));
                }
            }
            StepKind::Command(command) => {
                for (j, t) in command.command.iter().enumerate() {
                    out.push((format!("{at}.command[{j}]"), t));
                }
                for (name, t) in &command.env {
                    out.push((format!("{at}.env.{name}"), t));
                }
                if let Some(t) = &command.working_dir {
                    out.push((format!("{at}.working_dir"), t));
                }
            }
            StepKind::WaitForWebhook { .. } | StepKind::Approval { .. } => {}
        }
    }
    for (i, trigger) in definition.triggers.iter().enumerate() {
        if let TriggerConfig::Webhook(webhook) = &trigger.config
            && let ResponseMode::Custom { body, .. } = &webhook.response
        {
            out.push((format!("triggers[{i}].config.response.body"), body));
        }
    }
    out
}

/// The warnings of [`Definition::warnings`].
fn template_warnings(definition: &Definition) -> Vec<Problem> {
    let mut warnings = Vec::new();
    for (at, template) in templates_of(definition) {
        for expr in template.reads() {
            if let Some(message) = read_warning(expr, &definition.inputs) {
                warnings.push(Problem::new(format!("{at}{}", expr.location()), message));
            }
        }
    }
    warnings
}

/// Why `expr` may read nothing at run time, or `None` when every run has the value (or the
/// expression has a `default`). Kept narrow on purpose: steps' outputs and the context store are
/// the workflow's own data, not warned about.
fn read_warning(expr: &Expression, inputs: &InputSpecs) -> Option<String> {
    let path = expr.path();
    let segments = path.segments();
    if let [
        Segment::Key(root),
        Segment::Key(headers),
        Segment::Key(name),
        ..,
    ] = segments
        && root == "trigger"
        && headers == "headers"
        && name.bytes().any(|b| b.is_ascii_uppercase())
    {
        return Some(format!(
            "`{path}` never reads anything: header names are lower-case in `trigger.headers` \
             (write `trigger.headers.{}`)",
            name.to_ascii_lowercase()
        ));
    }
    if expr.fallback().is_some() {
        return None;
    }
    let why = match segments {
        [Segment::Key(root), Segment::Key(name), ..] if root == "input" => {
            let spec = inputs.get(name)?;
            if spec.required || spec.default.is_some() {
                return None;
            }
            format!("input \"{name}\" is optional and has no default")
        }
        [Segment::Key(root), Segment::Key(part), _, ..] if root == "trigger" => {
            match part.as_str() {
                "headers" => "a sender may leave out any header".to_owned(),
                "query" => "a request may come without any query parameter".to_owned(),
                "body" => "a request body may lack any field".to_owned(),
                _ => return None,
            }
        }
        _ => return None,
    };
    Some(format!(
        "`{path}` may be absent ({why}); a run without it fails with `template_error`: write \
         `{{{{ {path} | default: <value> }}}}` to render a fallback instead"
    ))
}

/// What a template at some point of the definition may refer to.
struct Refs<'a> {
    /// Steps that run before this point.
    steps: &'a [&'a str],
    inputs: &'a InputSpecs,
}

fn check_reference(path: &Path, ctx: &Refs<'_>) -> Option<String> {
    let earlier_steps = ctx.steps;
    if path.root() == Some("input") {
        return match path.segments().get(1) {
            Some(Segment::Key(name)) if ctx.inputs.get(name).is_none() => Some(format!(
                "`{path}` refers to input \"{name}\", which is not declared in inputs"
            )),
            _ => None,
        };
    }
    if path.root() != Some("steps") {
        return None;
    }
    match path.segments() {
        [_] => Some(format!("`{path}`: name a step, as in `steps.<id>.output`")),
        [_, Segment::Key(id), rest @ ..] => {
            if !earlier_steps.contains(&id.as_str()) {
                Some(format!(
                    "`{path}` refers to step \"{id}\", which does not run before this point"
                ))
            } else if matches!(rest.first(), Some(Segment::Key(k)) if k != "output")
                || matches!(rest.first(), Some(Segment::Index(_)))
            {
                Some(format!(
                    "`{path}`: a step exposes only `output`, as in `steps.{id}.output`"
                ))
            } else {
                None
            }
        }
        _ => Some(format!("`{path}`: name a step, as in `steps.<id>.output`")),
    }
}

const STEP_TYPES: [&str; 4] = ["http", "wait_for_webhook", "approval", "command"];

fn parse_steps(
    value: Option<&Value>,
    inputs: &InputSpecs,
    problems: &mut Vec<Problem>,
) -> Vec<Step> {
    let items = match value {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => {
            problems.push(Problem::new(
                "steps",
                format!("must be an array of steps, got {}", describe(other)),
            ));
            return Vec::new();
        }
    };
    let mut steps: Vec<Step> = Vec::with_capacity(items.len());
    let mut seen: Vec<String> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("steps[{i}]");
        let Some(map) = item.as_object() else {
            problems.push(Problem::new(
                &at,
                format!("must be an object with id and type, got {}", describe(item)),
            ));
            continue;
        };
        let id = match map.get("id") {
            Some(Value::String(id)) if is_valid_name(id) => {
                if seen.contains(id) {
                    problems.push(Problem::new(
                        format!("{at}.id"),
                        format!("duplicate step id \"{id}\": step ids must be unique"),
                    ));
                }
                Some(id.clone())
            }
            Some(Value::String(_)) => {
                problems.push(Problem::new(
                    format!("{at}.id"),
                    "step ids use letters, digits, `_` and `-` (1 to 64 characters)",
                ));
                None
            }
            None | Some(Value::Null) => {
                problems.push(Problem::new(format!("{at}.id"), "is required"));
                None
            }
            Some(other) => {
                problems.push(Problem::new(
                    format!("{at}.id"),
                    format!("must be a string, got {}", describe(other)),
                ));
                None
            }
        };
        let earlier: Vec<&str> = seen.iter().map(String::as_str).collect();
        let ctx = Refs {
            steps: &earlier,
            inputs,
        };
        let kind = parse_step_kind(map, &at, &ctx, problems);
        let extract = parse_extract(map.get("extract"), &format!("{at}.extract"), problems);
        let extract_to_context = parse_extract(
            map.get("extract_to_context"),
            &format!("{at}.extract_to_context"),
            problems,
        );
        if let Some(id) = &id {
            seen.push(id.clone());
        }
        if let (Some(id), Some(kind)) = (id, kind) {
            steps.push(Step {
                id,
                kind,
                extract,
                extract_to_context,
            });
        }
    }
    steps
}

fn check_fields(
    map: &Map<String, Value>,
    at: &str,
    step_type: &str,
    own: &[&str],
    problems: &mut Vec<Problem>,
) {
    const COMMON: [&str; 4] = ["id", "type", "extract", "extract_to_context"];
    for key in map.keys() {
        if !COMMON.contains(&key.as_str()) && !own.contains(&key.as_str()) {
            let mut fields: Vec<&str> = COMMON.to_vec();
            fields.extend_from_slice(own);
            problems.push(Problem::new(
                format!("{at}.{key}"),
                format!(
                    "unknown field for a {step_type} step: expected {}",
                    fields.join(", ")
                ),
            ));
        }
    }
}

fn parse_step_kind(
    map: &Map<String, Value>,
    at: &str,
    ctx: &Refs<'_>,
    problems: &mut Vec<Problem>,
) -> Option<StepKind> {
    let step_type = match map.get("type") {
        Some(Value::String(t)) if STEP_TYPES.contains(&t.as_str()) => t.as_str(),
        Some(Value::String(t)) => {
            problems.push(Problem::new(
                format!("{at}.type"),
                format!(
                    "unknown step type \"{t}\": expected one of {}",
                    STEP_TYPES.join(", ")
                ),
            ));
            return None;
        }
        None | Some(Value::Null) => {
            problems.push(Problem::new(
                format!("{at}.type"),
                format!("is required: one of {}", STEP_TYPES.join(", ")),
            ));
            return None;
        }
        Some(other) => {
            problems.push(Problem::new(
                format!("{at}.type"),
                format!("must be a string, got {}", describe(other)),
            ));
            return None;
        }
    };
    match step_type {
        "http" => {
            check_fields(
                map,
                at,
                "http",
                &["request", "expect_status", "retries"],
                problems,
            );
            parse_http(map, at, ctx, problems).map(|h| StepKind::Http(Box::new(h)))
        }
        "wait_for_webhook" | "approval" => {
            check_fields(map, at, step_type, &["timeout_seconds"], problems);
            let timeout_seconds = bounded_at(
                map.get("timeout_seconds"),
                &format!("{at}.timeout_seconds"),
                DEFAULT_WAIT_TIMEOUT_SECONDS,
                1,
                MAX_WAIT_TIMEOUT_SECONDS,
                problems,
            );
            Some(if step_type == "approval" {
                StepKind::Approval { timeout_seconds }
            } else {
                StepKind::WaitForWebhook { timeout_seconds }
            })
        }
        _ => {
            check_fields(
                map,
                at,
                "command",
                &["command", "env", "working_dir", "timeout_seconds"],
                problems,
            );
            parse_command(map, at, ctx, problems).map(|c| StepKind::Command(Box::new(c)))
        }
    }
}

const HTTP_METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

fn parse_http(
    map: &Map<String, Value>,
    at: &str,
    ctx: &Refs<'_>,
    problems: &mut Vec<Problem>,
) -> Option<HttpStep> {
    let rat = format!("{at}.request");
    let Some(request) = map.get("request").and_then(Value::as_object) else {
        problems.push(Problem::new(
            &rat,
            "is required: an object with at least \"url\"",
        ));
        return None;
    };
    for key in request.keys() {
        if !["method", "url", "headers", "body", "timeout_seconds"].contains(&key.as_str()) {
            problems.push(Problem::new(
                format!("{rat}.{key}"),
                "unknown field: a request has method, url, headers, body and timeout_seconds",
            ));
        }
    }
    let method = match request.get("method") {
        None | Some(Value::Null) => Some("GET".to_owned()),
        Some(Value::String(m)) if HTTP_METHODS.contains(&m.to_ascii_uppercase().as_str()) => {
            Some(m.to_ascii_uppercase())
        }
        Some(_) => {
            problems.push(Problem::new(
                format!("{rat}.method"),
                format!("must be one of {}", HTTP_METHODS.join(", ")),
            ));
            None
        }
    };
    let url = match request.get("url") {
        Some(v @ Value::String(_)) => compile_template(v, &format!("{rat}.url"), ctx, problems),
        None | Some(Value::Null) => {
            problems.push(Problem::new(format!("{rat}.url"), "is required"));
            None
        }
        Some(other) => {
            problems.push(Problem::new(
                format!("{rat}.url"),
                format!("must be a string, got {}", describe(other)),
            ));
            None
        }
    };
    if let Some(Value::String(u)) = request.get("url")
        && !u.contains("{{")
        && !is_http_url(u)
    {
        problems.push(Problem::new(
            format!("{rat}.url"),
            "must be an absolute http:// or https:// URL",
        ));
    }
    let headers = parse_string_templates(
        request.get("headers"),
        &format!("{rat}.headers"),
        ctx,
        problems,
    );
    let body = match request.get("body") {
        None | Some(Value::Null) => None,
        Some(v) => compile_template(v, &format!("{rat}.body"), ctx, problems),
    };
    let timeout_seconds = bounded_at(
        request.get("timeout_seconds"),
        &format!("{rat}.timeout_seconds"),
        DEFAULT_HTTP_TIMEOUT_SECONDS,
        1,
        300,
        problems,
    );
    let expect_status = match map.get("expect_status") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) if !items.is_empty() => Some(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    bounded_at(
                        Some(v),
                        &format!("{at}.expect_status[{i}]"),
                        200,
                        100,
                        599,
                        problems,
                    ) as u16
                })
                .collect(),
        ),
        Some(v @ Value::Number(_)) => Some(vec![bounded_at(
            Some(v),
            &format!("{at}.expect_status"),
            200,
            100,
            599,
            problems,
        ) as u16]),
        Some(_) => {
            problems.push(Problem::new(
                format!("{at}.expect_status"),
                "must be a status code or a non-empty array of them",
            ));
            None
        }
    };
    let retries = bounded_at(
        map.get("retries"),
        &format!("{at}.retries"),
        0,
        0,
        10,
        problems,
    ) as u32;
    Some(HttpStep {
        method: method?,
        url: url?,
        headers: headers?,
        body,
        timeout_seconds,
        expect_status,
        retries,
    })
}

fn parse_command(
    map: &Map<String, Value>,
    at: &str,
    ctx: &Refs<'_>,
    problems: &mut Vec<Problem>,
) -> Option<CommandStep> {
    let cat = format!("{at}.command");
    let command = match map.get("command") {
        Some(Value::Array(items)) if !items.is_empty() => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let here = format!("{cat}[{i}]");
                if item.is_string() {
                    out.extend(compile_template(item, &here, ctx, problems));
                } else {
                    problems.push(Problem::new(
                        here,
                        format!("must be a string, got {}", describe(item)),
                    ));
                }
            }
            Some(out)
        }
        _ => {
            problems.push(Problem::new(
                &cat,
                "is required: a non-empty array [program, args...] (no shell)",
            ));
            None
        }
    };
    let env = parse_string_templates(map.get("env"), &format!("{at}.env"), ctx, problems);
    let working_dir = match map.get("working_dir") {
        None | Some(Value::Null) => None,
        Some(v @ Value::String(_)) => {
            compile_template(v, &format!("{at}.working_dir"), ctx, problems)
        }
        Some(other) => {
            problems.push(Problem::new(
                format!("{at}.working_dir"),
                format!("must be a string, got {}", describe(other)),
            ));
            None
        }
    };
    let timeout_seconds = bounded_at(
        map.get("timeout_seconds"),
        &format!("{at}.timeout_seconds"),
        DEFAULT_COMMAND_TIMEOUT_SECONDS,
        1,
        3600,
        problems,
    );
    Some(CommandStep {
        command: command?,
        env: env?,
        working_dir,
        timeout_seconds,
    })
}

/// An object of name → string template (headers, env).
fn parse_string_templates(
    value: Option<&Value>,
    at: &str,
    ctx: &Refs<'_>,
    problems: &mut Vec<Problem>,
) -> Option<Vec<(String, Template)>> {
    match value {
        None | Some(Value::Null) => Some(Vec::new()),
        Some(Value::Object(map)) => {
            let mut out = Vec::with_capacity(map.len());
            let before = problems.len();
            for (k, v) in map {
                let here = format!("{at}.{k}");
                if v.is_string() {
                    if let Some(t) = compile_template(v, &here, ctx, problems) {
                        out.push((k.clone(), t));
                    }
                } else {
                    problems.push(Problem::new(
                        here,
                        format!("must be a string, got {}", describe(v)),
                    ));
                }
            }
            (problems.len() == before).then_some(out)
        }
        Some(other) => {
            problems.push(Problem::new(
                at,
                format!(
                    "must be an object of name → string, got {}",
                    describe(other)
                ),
            ));
            None
        }
    }
}

fn parse_extract(
    value: Option<&Value>,
    at: &str,
    problems: &mut Vec<Problem>,
) -> Vec<(String, Path)> {
    let map = match value {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Object(map)) => map,
        Some(other) => {
            problems.push(Problem::new(
                at,
                format!(
                    "must be an object of context key → output path, got {}",
                    describe(other)
                ),
            ));
            return Vec::new();
        }
    };
    let mut out = Vec::with_capacity(map.len());
    for (key, path) in map {
        let here = format!("{at}.{key}");
        if !is_valid_name(key) {
            problems.push(Problem::new(
                &here,
                "context keys use letters, digits, `_` and `-` (1 to 64 characters)",
            ));
        }
        match path.as_str().map(Path::parse) {
            Some(Ok(p)) => out.push((key.clone(), p)),
            Some(Err(e)) => problems.push(Problem::new(here, format!("bad output path: {e}"))),
            None => problems.push(Problem::new(
                here,
                format!(
                    "must be a path into the step output such as \"body.id\", got {}",
                    describe(path)
                ),
            )),
        }
    }
    out
}

fn parse_triggers(
    value: Option<&Value>,
    inputs: &InputSpecs,
    problems: &mut Vec<Problem>,
) -> Vec<DeclaredTrigger> {
    let items = match value {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => {
            problems.push(Problem::new(
                "triggers",
                format!("must be an array, got {}", describe(other)),
            ));
            return Vec::new();
        }
    };
    let mut out: Vec<DeclaredTrigger> = Vec::with_capacity(items.len());
    let mut seen: Vec<&str> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("triggers[{i}]");
        let Some(map) = item.as_object() else {
            problems.push(Problem::new(
                &at,
                format!(
                    "must be an object with name, trigger_type and config, got {}",
                    describe(item)
                ),
            ));
            continue;
        };
        for key in map.keys() {
            if !["name", "trigger_type", "config"].contains(&key.as_str()) {
                problems.push(Problem::new(
                    format!("{at}.{key}"),
                    "unknown field: a declared trigger has name, trigger_type and config",
                ));
            }
        }
        let name = match map.get("name").and_then(Value::as_str) {
            Some(n) if is_valid_name(n) => {
                if seen.contains(&n) {
                    problems.push(Problem::new(
                        format!("{at}.name"),
                        format!("duplicate trigger name \"{n}\""),
                    ));
                }
                seen.push(n);
                Some(n.to_owned())
            }
            Some(_) => {
                problems.push(Problem::new(
                    format!("{at}.name"),
                    "trigger names use letters, digits, `_` and `-` (1 to 64 characters)",
                ));
                None
            }
            None => {
                problems.push(Problem::new(
                    format!("{at}.name"),
                    "is required: declared triggers are keyed by name",
                ));
                None
            }
        };
        let trigger_type = match map
            .get("trigger_type")
            .and_then(Value::as_str)
            .map(str::parse::<TriggerType>)
        {
            Some(Ok(t)) => Some(t),
            Some(Err(p)) => {
                problems.push(Problem::new(format!("{at}.trigger_type"), p.message));
                None
            }
            None => {
                problems.push(Problem::new(
                    format!("{at}.trigger_type"),
                    "is required: \"webhook\" or \"cron\"",
                ));
                None
            }
        };
        let Some(trigger_type) = trigger_type else {
            continue;
        };
        let config = match TriggerConfig::parse(
            trigger_type,
            map.get("config").unwrap_or(&Value::Null),
            inputs,
        ) {
            Ok(c) => Some(c),
            Err(config_problems) => {
                problems.extend(
                    config_problems
                        .into_iter()
                        .map(|p| Problem::new(format!("{at}.{}", p.path), p.message)),
                );
                None
            }
        };
        if let (Some(name), Some(config)) = (name, config) {
            out.push(DeclaredTrigger { name, config });
        }
    }
    out
}

fn parse_hooks(value: Option<&Value>, problems: &mut Vec<Problem>) -> Vec<DeclaredHook> {
    let items = match value {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => {
            problems.push(Problem::new(
                "hooks",
                format!("must be an array, got {}", describe(other)),
            ));
            return Vec::new();
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("hooks[{i}]");
        let Some(map) = item.as_object() else {
            problems.push(Problem::new(
                &at,
                format!(
                    "must be an object with url and events, got {}",
                    describe(item)
                ),
            ));
            continue;
        };
        for key in map.keys() {
            if !["url", "events"].contains(&key.as_str()) {
                problems.push(Problem::new(
                    format!("{at}.{key}"),
                    "unknown field: a declared hook has url and events",
                ));
            }
        }
        let url = match map.get("url").and_then(Value::as_str) {
            Some(u) if is_http_url(u) => Some(u.to_owned()),
            _ => {
                problems.push(Problem::new(
                    format!("{at}.url"),
                    "is required: an absolute http:// or https:// URL",
                ));
                None
            }
        };
        let events = match map.get("events") {
            None | Some(Value::Null) => Some(EventType::ALL.to_vec()),
            Some(Value::Array(names)) if !names.is_empty() => {
                let mut events = Vec::with_capacity(names.len());
                for (j, name) in names.iter().enumerate() {
                    match name.as_str().and_then(|n| n.parse::<EventType>().ok()) {
                        Some(e) => events.push(e),
                        None => problems.push(Problem::new(
                            format!("{at}.events[{j}]"),
                            "unknown event: expected run.started, run.completed, run.failed, run.waiting or run.cancelled",
                        )),
                    }
                }
                Some(events)
            }
            Some(_) => {
                problems.push(Problem::new(
                    format!("{at}.events"),
                    "must be a non-empty array of event names",
                ));
                None
            }
        };
        if let (Some(url), Some(events)) = (url, events) {
            out.push(DeclaredHook { url, events });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problems(v: Value) -> Vec<(String, String)> {
        Definition::from_value(v)
            .unwrap_err()
            .into_iter()
            .map(|p| (p.path, p.message))
            .collect()
    }

    fn paths(v: Value) -> Vec<String> {
        problems(v).into_iter().map(|(p, _)| p).collect()
    }

    const SPEC_EXAMPLE: &str = r#"{
      "name": "order-created",
      "description": "optional",
      "inputs": {
        "email":  { "type": "string",  "required": true },
        "value":  { "type": "integer" },
        "week":   { "type": "string",  "default": "current", "enum": ["current", "previous"] }
      },
      "steps": [
        { "id": "enrich", "type": "http",
          "request": { "method": "POST", "url": "https://crm.example.com/lookup",
                       "headers": { "Authorization": "Bearer {{ context.crm_token }}" },
                       "body": { "email": "{{ input.email }}" } },
          "extract": { "customer_id": "body.id" } },
        { "id": "confirm", "type": "approval", "timeout_seconds": 86400 },
        { "id": "notify", "type": "http",
          "request": { "method": "POST", "url": "https://chat.example.com/hook",
                       "body": { "text": "order for {{ steps.enrich.output.body.name }}" } } }
      ],
      "output": { "customer": "{{ context.customer_id }}" },
      "max_concurrent_runs": 0,
      "max_duration_seconds": 1800,
      "on_success_url": null,
      "on_failure_url": null,
      "triggers": [
        { "name": "crm", "trigger_type": "webhook", "config": { "input_mapping": { "email": "customer_email", "value": "amount" } } },
        { "name": "weekly", "trigger_type": "cron", "config": { "schedule": "0 9 * * 1", "timezone": "Europe/London", "input": { "week": "current", "email": "ops@example.com" } } }
      ],
      "hooks": [ { "url": "https://example.com/runs", "events": ["run.completed", "run.failed"] } ]
    }"#;

    #[test]
    fn the_spec_example_is_valid() {
        let def = Definition::from_json_str(SPEC_EXAMPLE).unwrap();
        assert_eq!(def.name, "order-created");
        assert_eq!(def.inputs.len(), 3);
        assert_eq!(def.steps.len(), 3);
        assert_eq!(
            def.steps[1].kind,
            StepKind::Approval {
                timeout_seconds: 86400
            }
        );
        assert_eq!(def.steps[0].extract[0].0, "customer_id");
        let StepKind::Http(http) = &def.steps[0].kind else {
            panic!("http step expected")
        };
        assert_eq!(http.method, "POST");
        assert_eq!(http.timeout_seconds, 30);
        assert_eq!(def.triggers.len(), 2);
        assert_eq!(def.triggers[1].config.trigger_type(), TriggerType::Cron);
        assert_eq!(
            def.hooks[0].events,
            vec![EventType::RunCompleted, EventType::RunFailed]
        );
        assert_eq!(def.max_duration_seconds, 1800);
        assert_eq!(def.source()["name"], json!("order-created"));
    }

    #[test]
    fn toml_parses_to_the_same_definition() {
        let toml = r#"
name = "order-created"
output = { greeting = "hi {{ input.email }}" }

[inputs.email]
type = "string"
required = true

[[steps]]
id = "wait"
type = "wait_for_webhook"

[[triggers]]
name = "crm"
trigger_type = "webhook"
config = { input_mapping = { email = "customer.email" } }
"#;
        let def = Definition::from_toml_str(toml).unwrap();
        let json = Definition::from_value(def.source().clone()).unwrap();
        assert_eq!(def, json);
        assert_eq!(
            def.steps[0].kind,
            StepKind::WaitForWebhook {
                timeout_seconds: DEFAULT_WAIT_TIMEOUT_SECONDS
            }
        );
        assert!(matches!(
            Definition::from_toml_str("name = "),
            Err(DefinitionError::Syntax { .. })
        ));
        assert!(matches!(
            Definition::from_json_str("{"),
            Err(DefinitionError::Syntax { .. })
        ));
    }

    #[test]
    fn minimal_definition_gets_defaults() {
        let def = Definition::from_value(json!({"name": "x"})).unwrap();
        assert!(def.steps.is_empty() && def.output.is_none() && def.triggers.is_empty());
        assert_eq!(def.max_concurrent_runs, 0);
        assert_eq!(def.max_duration_seconds, DEFAULT_MAX_DURATION_SECONDS);
        let out = def.render_output(&json!({"input": {"a": 1}})).unwrap();
        assert_eq!(out, json!({"a": 1}));
    }

    #[test]
    fn name_is_required_and_must_be_url_safe() {
        assert_eq!(
            problems(json!({})),
            vec![("name".into(), "is required".into())]
        );
        assert_eq!(paths(json!({"name": "has space"})), vec!["name"]);
        assert_eq!(paths(json!({"name": "-x"})), vec!["name"]);
        assert_eq!(paths(json!({"name": 3})), vec!["name"]);
        assert!(Definition::from_value(json!({"name": "orders.v2_new-1"})).is_ok());
        assert_eq!(paths(json!([1])), vec![""]);
    }

    #[test]
    fn unknown_fields_are_reported() {
        assert_eq!(paths(json!({"name": "x", "stepz": []})), vec!["stepz"]);
        assert_eq!(
            paths(json!({"name": "x", "steps": [{"id": "a", "type": "approval", "timeout": 5}]})),
            vec!["steps[0].timeout"]
        );
        assert_eq!(
            paths(
                json!({"name": "x", "steps": [{"id": "a", "type": "http", "request": {"url": "https://a.example", "verb": "GET"}}]})
            ),
            vec!["steps[0].request.verb"]
        );
    }

    #[test]
    fn duplicate_step_ids_are_reported() {
        let got = problems(json!({"name": "x", "steps": [
            {"id": "a", "type": "approval"}, {"id": "a", "type": "approval"}]}));
        assert_eq!(
            got,
            vec![(
                "steps[1].id".into(),
                "duplicate step id \"a\": step ids must be unique".into()
            )]
        );
    }

    #[test]
    fn unknown_step_type_is_reported() {
        let got = problems(json!({"name": "x", "steps": [{"id": "a", "type": "email"}]}));
        assert_eq!(
            got,
            vec![("steps[0].type".into(), "unknown step type \"email\": expected one of http, wait_for_webhook, approval, command".into())]
        );
        assert_eq!(
            paths(json!({"name": "x", "steps": [{"id": "a"}]})),
            vec!["steps[0].type"]
        );
        assert_eq!(
            paths(json!({"name": "x", "steps": [{"type": "approval"}]})),
            vec!["steps[0].id"]
        );
        assert_eq!(
            paths(json!({"name": "x", "steps": [{"id": "a.b", "type": "approval"}]})),
            vec!["steps[0].id"]
        );
        assert_eq!(
            paths(json!({"name": "x", "steps": {"id": "a"}})),
            vec!["steps"]
        );
        assert_eq!(paths(json!({"name": "x", "steps": [3]})), vec!["steps[0]"]);
    }

    #[test]
    fn bad_template_syntax_is_reported_with_its_location() {
        let got = paths(json!({"name": "x", "steps": [{"id": "a", "type": "http",
            "request": {"url": "https://a.example/{{ input.id", "headers": {"X": "{{ }}"},
                        "body": {"list": ["{{ secrets.x }}"]}}}],
            "output": "{{ nope }}"}));
        assert_eq!(
            got,
            vec![
                "steps[0].request.url",
                "steps[0].request.headers.X",
                "steps[0].request.body.list[0]",
                "output"
            ]
        );
    }

    #[test]
    fn templates_must_refer_to_declared_inputs_and_earlier_steps() {
        let got = problems(json!({"name": "x", "inputs": {"email": {"type": "string"}},
            "steps": [
                {"id": "a", "type": "http", "request": {"url": "https://a.example/{{ steps.b.output.id }}",
                                                        "body": "{{ input.emial }}"}},
                {"id": "b", "type": "http", "request": {"url": "https://a.example/{{ steps.a.output.id }}",
                                                        "body": "{{ steps.a.status }}"}}
            ],
            "output": {"a": "{{ steps.b.output }}", "b": "{{ steps.zz.output }}", "c": "{{ input.email }}"}}));
        assert_eq!(
            got,
            vec![
                ("steps[0].request.url".into(), "`steps.b.output.id` refers to step \"b\", which does not run before this point".into()),
                ("steps[0].request.body".into(), "`input.emial` refers to input \"emial\", which is not declared in inputs".into()),
                ("steps[1].request.body".into(), "`steps.a.status`: a step exposes only `output`, as in `steps.a.output`".into()),
                ("output".into(), "`steps.zz.output` refers to step \"zz\", which does not run before this point".into()),
            ]
        );
    }

    #[test]
    fn limits_are_enforced() {
        assert_eq!(
            problems(json!({"name": "x", "max_duration_seconds": 7201})),
            vec![(
                "max_duration_seconds".into(),
                "must be at most 7200, got 7201".into()
            )]
        );
        assert_eq!(
            paths(json!({"name": "x", "max_duration_seconds": 0})),
            vec!["max_duration_seconds"]
        );
        assert_eq!(
            paths(json!({"name": "x", "max_concurrent_runs": -1})),
            vec!["max_concurrent_runs"]
        );
        assert_eq!(
            paths(json!({"name": "x", "max_concurrent_runs": "2"})),
            vec!["max_concurrent_runs"]
        );
        assert_eq!(
            paths(json!({"name": "x", "steps": [
                {"id": "a", "type": "approval", "timeout_seconds": 99_999_999},
                {"id": "b", "type": "http", "request": {"url": "https://a.example", "timeout_seconds": 301}, "retries": 11, "expect_status": [200, 700]}
            ]})),
            vec![
                "steps[0].timeout_seconds",
                "steps[1].request.timeout_seconds",
                "steps[1].expect_status[1]",
                "steps[1].retries"
            ]
        );
    }

    #[test]
    fn http_step_requires_a_url_and_a_known_method() {
        assert_eq!(
            paths(json!({"name": "x", "steps": [
                {"id": "a", "type": "http"},
                {"id": "b", "type": "http", "request": {"method": "FETCH"}},
                {"id": "c", "type": "http", "request": {"url": "ftp://a.example"}}
            ]})),
            vec![
                "steps[0].request",
                "steps[1].request.method",
                "steps[1].request.url",
                "steps[2].request.url"
            ]
        );
    }

    #[test]
    fn command_step_is_validated() {
        let def = Definition::from_value(json!({"name": "x", "inputs": {"f": {"type": "string"}}, "steps": [
            {"id": "c", "type": "command", "command": ["echo", "{{ input.f }}"], "env": {"A": "1"}}]}))
        .unwrap();
        let StepKind::Command(cmd) = &def.steps[0].kind else {
            panic!("command expected")
        };
        assert_eq!(cmd.command.len(), 2);
        assert_eq!(cmd.timeout_seconds, DEFAULT_COMMAND_TIMEOUT_SECONDS);
        assert_eq!(
            paths(json!({"name": "x", "steps": [
                {"id": "c", "type": "command", "command": "echo hi"},
                {"id": "d", "type": "command", "command": ["echo", 3], "env": {"A": 1}, "working_dir": 5}
            ]})),
            vec![
                "steps[0].command",
                "steps[1].command[1]",
                "steps[1].env.A",
                "steps[1].working_dir"
            ]
        );
    }

    #[test]
    fn extract_paths_are_validated() {
        assert_eq!(
            paths(
                json!({"name": "x", "steps": [{"id": "a", "type": "approval",
                "extract": {"ok": "approved", "bad key": "x", "p": "a..b"}, "extract_to_context": ["x"]}]})
            ),
            vec![
                "steps[0].extract.bad key",
                "steps[0].extract.p",
                "steps[0].extract_to_context"
            ]
        );
    }

    #[test]
    fn bad_cron_in_declared_triggers_is_reported() {
        let got = problems(json!({"name": "x", "triggers": [
            {"name": "t", "trigger_type": "cron", "config": {"schedule": "0 0 9 * * 1"}}]}));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, "triggers[0].config.schedule");
        assert!(got[0].1.contains("five fields"), "{}", got[0].1);
    }

    #[test]
    fn api_keys_of_declared_triggers_are_stored_as_digests() {
        const KEY: &str = "declared-key-0123456789";
        let document = json!({"name": "x", "triggers": [{"name": "crm", "trigger_type": "webhook",
            "config": {"api_keys": [KEY, {"name": "ci", "generate": true}]}}]});
        let def = Definition::from_value(document).unwrap();
        let keys = &def.source()["triggers"][0]["config"]["api_keys"];
        assert_eq!(
            *keys,
            json!([{"name": "key-1", "sha256": crate::ids::hash_token(KEY)},
                   {"name": "ci", "generate": true}])
        );
        assert!(!def.source().to_string().contains(KEY));
        // The stored source parses to the same definition and the same source.
        let again = Definition::from_value(def.source().clone()).unwrap();
        assert_eq!(again.source(), def.source());
        assert_eq!(again.triggers, def.triggers);
        let shown = redact_secrets(def.source());
        assert_eq!(
            shown["triggers"][0]["config"],
            json!({"api_keys_configured": 2, "api_key_names": ["key-1", "ci"]})
        );
        let bad = problems(
            json!({"name": "x", "triggers": [{"name": "crm", "trigger_type": "webhook",
            "config": {"api_keys": [{"name": "ci", "generate": "yes"}]}}]}),
        );
        assert_eq!(bad[0].0, "triggers[0].config.api_keys[0].generate");
    }

    #[test]
    fn declared_triggers_are_checked() {
        assert_eq!(
            paths(
                json!({"name": "x", "inputs": {"email": {"type": "string"}}, "triggers": [
                    {"name": "a", "trigger_type": "webhook", "config": {"input_mapping": {"mail": "x"}}},
                    {"name": "a", "trigger_type": "webhook"},
                    {"trigger_type": "sms"},
                    {"name": "c", "trigger_type": "cron", "config": {"schedule": "@daily", "timezone": "Nowhere/City"}},
                    {"name": "d", "trigger_type": "webhook", "extra": 1}
                ]})
            ),
            vec![
                "triggers[0].config.input_mapping.mail",
                "triggers[1].name",
                "triggers[2].name",
                "triggers[2].trigger_type",
                "triggers[3].config.timezone",
                "triggers[4].extra",
            ]
        );
    }

    #[test]
    fn hooks_and_callback_urls_are_checked() {
        assert_eq!(
            paths(
                json!({"name": "x", "on_success_url": "not a url", "on_failure_url": "https://ok.example/f",
                "hooks": [{"url": "https://ok.example", "events": ["run.exploded"]}, {"events": []}, "x"]})
            ),
            vec![
                "on_success_url",
                "hooks[0].events[0]",
                "hooks[1].url",
                "hooks[1].events",
                "hooks[2]"
            ]
        );
        let def =
            Definition::from_value(json!({"name": "x", "hooks": [{"url": "https://ok.example"}]}))
                .unwrap();
        assert_eq!(def.hooks[0].events, EventType::ALL.to_vec());
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let got = paths(json!({
            "name": "",
            "inputs": {"a": {"type": "date"}},
            "steps": [{"id": "s", "type": "nope"}, {"id": "s", "type": "approval"}],
            "max_duration_seconds": 100000,
            "triggers": [{"name": "t", "trigger_type": "cron", "config": {"schedule": "* * *"}}]
        }));
        assert_eq!(
            got,
            vec![
                "name",
                "inputs.a.type",
                "steps[0].type",
                "steps[1].id",
                "max_duration_seconds",
                "triggers[0].config.schedule"
            ]
        );
    }

    #[test]
    fn reads_looks_at_every_step_template_and_the_output() {
        let def = |steps: Value, output: Value| {
            Definition::from_value(json!({"name": "x", "inputs": {"n": {"type": "integer"}}, "steps": steps, "output": output})).unwrap()
        };
        let http = |body: Value| {
            json!([{"id": "s", "type": "http",
                    "request": {"method": "POST", "url": "https://example.com/", "body": body}}])
        };
        assert!(def(http(json!({"r": "{{ trigger.body.ref }}"})), json!("x")).reads("trigger"));
        assert!(!def(http(json!({"n": "{{ input.n }}"})), json!("x")).reads("trigger"));
        assert!(def(http(json!("static")), json!("{{ trigger.headers }}")).reads("trigger"));
        let url = json!([{"id": "s", "type": "http",
                          "request": {"method": "GET", "url": "https://example.com/{{ trigger.path }}"}}]);
        assert!(def(url, Value::Null).reads("trigger"));
        assert!(
            !Definition::from_value(json!({"name": "x"}))
                .unwrap()
                .reads("trigger")
        );
    }

    #[test]
    fn output_reads_names_the_roots_the_output_template_uses() {
        let def = |output: Value| {
            Definition::from_value(
                json!({"name": "x", "inputs": {"a": {"type": "string"}}, "output": output}),
            )
            .unwrap()
        };
        let ctx = def(json!({"a": "{{ input.a }}", "b": ["id {{ context.k }}"]}));
        assert!(ctx.output_reads("context"));
        assert!(ctx.output_reads("input"));
        assert!(!ctx.output_reads("trigger"));
        assert!(!def(json!({"a": "{{ input.a }}"})).output_reads("context"));
        assert!(!def(json!("static")).output_reads("context"));
        let none = Definition::from_value(json!({"name": "x"})).unwrap();
        assert!(!none.output_reads("context"));
    }

    #[test]
    fn render_output_reports_missing_values() {
        let def =
            Definition::from_value(json!({"name": "x", "output": {"c": "{{ context.customer }}"}}))
                .unwrap();
        assert!(
            def.render_output(&json!({"input": {}, "context": {}}))
                .is_err()
        );
        assert_eq!(
            def.render_output(&json!({"context": {"customer": "c1"}}))
                .unwrap(),
            json!({"c": "c1"})
        );
    }

    #[test]
    fn templates_reading_what_may_be_absent_are_warned_about() {
        let def = Definition::from_value(json!({
            "name": "shop",
            "inputs": {"id": {"type": "string", "required": true}, "coupon": {"type": "string"},
                       "channel": {"type": "string", "default": "web"}},
            "steps": [{"id": "notify", "type": "http",
                       "request": {"url": "https://chat.example.com/{{ trigger.query.room }}",
                                   "headers": {"X-Event": "{{ trigger.headers.x-shop-event | default: \"none\" }}"},
                                   "body": {"text": "order {{ input.id }} via {{ input.channel }}",
                                            "items": ["{{ trigger.body.items[0] }}", "{{ trigger.body }}"]}}}],
            "output": {"coupon": "{{ input.coupon }}", "n": "{{ steps.notify.output.body.n }}",
                       "ctx": "{{ context.k }}", "m": "{{ trigger.method }}",
                       "upper": "{{ trigger.headers.X-Shop-Event | default: \"x\" }}"},
            "triggers": [{"name": "shop", "trigger_type": "webhook", "config": {"response": {
                "mode": "custom", "body": {"ok": true, "event": "{{ trigger.headers.x-shop-event }}"}}}}]
        }))
        .unwrap();
        let got: Vec<&str> = def.warnings().iter().map(|w| w.path.as_str()).collect();
        assert_eq!(
            got,
            [
                "output.coupon",
                "output.upper",
                "steps[0].request.url",
                "steps[0].request.body.items[0]",
                "triggers[0].config.response.body.event",
            ],
            "{:#?}",
            def.warnings()
        );
        let message = |path: &str| {
            def.warnings()
                .iter()
                .find(|w| w.path == path)
                .map(|w| w.message.clone())
                .unwrap()
        };
        assert_eq!(
            message("steps[0].request.url"),
            "`trigger.query.room` may be absent (a request may come without any query parameter); \
             a run without it fails with `template_error`: write \
             `{{ trigger.query.room | default: <value> }}` to render a fallback instead"
        );
        assert!(
            message("output.upper").contains("header names are lower-case"),
            "{}",
            message("output.upper")
        );
        // Warnings never refuse a definition, and a definition without risky reads has none.
        let quiet = Definition::from_value(json!({"name": "q", "output": "{{ input }}"})).unwrap();
        assert!(quiet.warnings().is_empty());
    }

    #[test]
    fn default_is_accepted_where_templates_are_checked_and_other_filters_are_refused() {
        let def = Definition::from_value(json!({
            "name": "x", "inputs": {"a": {"type": "string"}},
            "steps": [{"id": "s", "type": "http", "request": {
                "url": "https://a.example/{{ input.a | default: \"none\" }}",
                "headers": {"X-A": "{{ trigger.headers.x-a | default: \"-\" }}"}}}],
            "output": {"a": "{{ steps.s.output.body.a | default: 0 }}"}
        }))
        .unwrap();
        assert!(def.warnings().is_empty(), "{:?}", def.warnings());
        assert_eq!(
            def.render_output(&json!({"steps": {"s": {"output": {"body": {}}}}}))
                .unwrap(),
            json!({"a": 0})
        );
        let got = problems(json!({
            "name": "x", "inputs": {"a": {"type": "string"}},
            "output": {"a": "{{ input.a | upper }}", "b": "{{ input.a | default: 1 }}"}
        }));
        assert_eq!(got.len(), 1, "{got:#?}");
        assert_eq!(got[0].0, "output.a");
        assert!(got[0].1.contains("unknown filter `upper`"), "{}", got[0].1);
        // A default does not excuse a read of an undeclared input or a later step.
        let got = problems(json!({
            "name": "x", "inputs": {"a": {"type": "string"}},
            "output": {"b": "{{ input.zz | default: 1 }}",
                       "c": "{{ steps.nope.output | default: 1 }}"}
        }));
        assert_eq!(got.len(), 2, "{got:#?}");
        assert!(got[0].1.contains("input \"zz\""), "{}", got[0].1);
        assert!(got[1].1.contains("step \"nope\""), "{}", got[1].1);
        // A declared custom response: `default` is understood there too.
        assert!(
            Definition::from_value(json!({"name": "x", "triggers": [{"name": "t",
                "trigger_type": "webhook", "config": {"response": {"mode": "custom",
                "body": {"e": "{{ trigger.headers.x-e | default: \"none\" }}"}}}}]}))
            .unwrap()
            .warnings()
            .is_empty()
        );
        assert_eq!(
            paths(json!({"name": "x", "triggers": [{"name": "t",
                "trigger_type": "webhook", "config": {"response": {"mode": "custom",
                "body": {"e": "{{ trigger.headers.x-e | first }}"}}}}]})),
            ["triggers[0].config.response.body.e"]
        );
    }

    /// Checks every example of docs/templates.md: each fenced block follows a
    /// `<!-- check: KIND -->` line naming how it is checked.
    #[test]
    fn docs_examples_are_correct() {
        let doc = include_str!("../../../docs/templates.md");
        let mut scope: Option<Value> = None;
        let mut last: Option<Definition> = None;
        let mut checked = 0;
        let mut lines = doc.lines().enumerate();
        let mut kind: Option<String> = None;
        while let Some((n, line)) = lines.next() {
            if let Some(k) = line
                .strip_prefix("<!-- check: ")
                .and_then(|l| l.strip_suffix(" -->"))
            {
                kind = Some(k.to_owned());
                continue;
            }
            if !line.starts_with("```") {
                continue;
            }
            let mut block = String::new();
            for (_, l) in lines.by_ref() {
                if l.starts_with("```") {
                    break;
                }
                block.push_str(l);
                block.push('\n');
            }
            // The one unchecked block: the syntax summary at the top.
            if n < 12 && kind.is_none() {
                continue;
            }
            let what = kind
                .take()
                .unwrap_or_else(|| panic!("line {}: a block without `<!-- check: ... -->`", n + 1));
            match what.as_str() {
                "scope" => scope = Some(serde_json::from_str(&block).unwrap()),
                "renders" => {
                    let scope = scope.as_ref().expect("a scope block comes first");
                    for l in block.lines() {
                        let (template, expected) = l.split_once(" → ").unwrap();
                        let template: Value = serde_json::from_str(template.trim())
                            .unwrap_or_else(|e| panic!("{l}: {e}"));
                        let got = Template::compile(&template)
                            .unwrap_or_else(|e| panic!("{l}: {e:?}"))
                            .render(scope);
                        match expected.trim() {
                            "template_error" => assert!(got.is_err(), "{l}: {got:?}"),
                            text => {
                                let expected: Value = serde_json::from_str(text)
                                    .unwrap_or_else(|e| panic!("{l}: {e}"));
                                assert_eq!(got, Ok(expected), "{l}");
                            }
                        }
                        checked += 1;
                    }
                }
                "refused" => {
                    for l in block.lines() {
                        let (template, message) = l.split_once(" → ").unwrap();
                        let template: Value = serde_json::from_str(template.trim())
                            .unwrap_or_else(|e| panic!("{l}: {e}"));
                        let errors = Template::compile(&template)
                            .expect_err(l)
                            .into_iter()
                            .map(|e| e.kind.to_string())
                            .collect::<Vec<_>>();
                        assert!(
                            errors.iter().any(|e| e.contains(message.trim())),
                            "{l}: {errors:?}"
                        );
                        checked += 1;
                    }
                }
                "definition" => {
                    last = Some(Definition::from_json_str(&block).unwrap());
                    checked += 1;
                }
                "definition-toml" => {
                    last = Some(Definition::from_toml_str(&block).unwrap());
                    checked += 1;
                }
                "warnings" => {
                    let def = last.take().expect("a definition comes before its warnings");
                    let expected: Vec<Problem> = serde_json::from_str(&block).unwrap();
                    assert_eq!(def.warnings(), expected.as_slice());
                    checked += 1;
                }
                other => panic!("line {}: unknown check `{other}`", n + 1),
            }
        }
        assert!(checked > 40, "only {checked} examples checked");
    }
}
