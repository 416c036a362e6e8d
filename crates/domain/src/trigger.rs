//! Trigger configuration: webhook and cron (docs/api.md, docs/webhooks.md, docs/schedules.md).
//!
//! [`TriggerConfig::parse`] validates a trigger's `config` against the workflow's declared inputs
//! and reports every problem at once (the 422 `invalid_config` details, paths under `config.`).
//! A webhook config holds write-only secrets: [`WebhookConfig::public_json`] is what the API shows,
//! [`TriggerConfig::stored_json`] what is persisted (API keys as SHA-256 digests only, see
//! [`api_keys`]).
//!
//! ```
//! use serde_json::json;
//! use triggerd_domain::inputs::InputSpecs;
//! use triggerd_domain::trigger::{TriggerConfig, TriggerType};
//!
//! let specs = InputSpecs::parse(&json!({"email": {"type": "string"}})).unwrap();
//! let config = TriggerConfig::parse(TriggerType::Webhook,
//!     &json!({"input_mapping": {"email": "customer.email"}, "secret": "s3cret"}), &specs).unwrap();
//! let TriggerConfig::Webhook(webhook) = &config else { unreachable!() };
//! assert_eq!(webhook.public_json()["secret_configured"], json!(true));
//! assert!(webhook.public_json().get("secret").is_none());
//! ```

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::Problem;
use crate::api_keys::{self, ApiKey, GeneratedApiKey};
use crate::cron::{CatchUp, Schedule, When, parse_timezone};
use crate::dedup::Dedup;
use crate::filter::Filter;
use crate::inputs::{InputSpecs, describe};
use crate::mapping::InputMapping;
use crate::path::Path;
use crate::signature::SignatureScheme;
use crate::template::Template;

/// Default `rate_limit_per_minute`.
pub const DEFAULT_RATE_LIMIT_PER_MINUTE: u32 = 60;
/// Default `max_body_bytes` (256 KiB).
pub const DEFAULT_MAX_BODY_BYTES: u64 = 262_144;
/// Largest accepted `max_body_bytes` (16 MiB).
pub const MAX_MAX_BODY_BYTES: u64 = 16 * 1024 * 1024;
/// Default `response.timeout_seconds` of the `sync` mode.
pub const DEFAULT_SYNC_TIMEOUT_SECONDS: u32 = 30;
/// Default `log_body_bytes`: how much of a request's body its activity row keeps (64 KiB).
pub const DEFAULT_LOG_BODY_BYTES: u64 = 65_536;
/// Largest `log_body_bytes` (1 MiB).
pub const MAX_LOG_BODY_BYTES: u64 = 1024 * 1024;
/// Largest `response.timeout_seconds` of the `sync` mode.
pub const MAX_SYNC_TIMEOUT_SECONDS: u32 = 300;

/// `webhook` or `cron`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TriggerType {
    /// Started by an HTTP request to the trigger's URL.
    Webhook,
    /// Started on a schedule.
    Cron,
}

impl TriggerType {
    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerType::Webhook => "webhook",
            TriggerType::Cron => "cron",
        }
    }
}

impl fmt::Display for TriggerType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TriggerType {
    type Err = Problem;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "webhook" => Ok(TriggerType::Webhook),
            "cron" => Ok(TriggerType::Cron),
            other => Err(Problem::new(
                "trigger_type",
                format!("unknown trigger type \"{other}\": expected \"webhook\" or \"cron\""),
            )),
        }
    }
}

/// HTTP methods a webhook may allow.
pub const WEBHOOK_METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// How a webhook answers (docs/webhooks.md).
#[derive(Debug, Clone, PartialEq)]
pub enum ResponseMode {
    /// 201 with the run id once the run is stored.
    Async,
    /// Wait up to `timeout_seconds` for the run to finish.
    Sync {
        /// How long to wait.
        timeout_seconds: u32,
    },
    /// A fixed response rendered from the request (`trigger` root only).
    Custom {
        /// HTTP status code.
        status: u16,
        /// `Content-Type` of the response.
        content_type: String,
        /// The body template; JSON values are sent as JSON, strings as they are.
        body: Template,
    },
}

/// A validated webhook trigger configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookConfig {
    /// The compiled mapping.
    pub input_mapping: InputMapping,
    /// The mapping as written (shown back by the API).
    pub input_mapping_raw: Value,
    /// Which requests start a run (docs/webhooks.md); `None` lets every request through. Stored and
    /// shown as written ([`Filter::as_json`]).
    pub filter: Option<Filter>,
    /// Which requests count as repeats of an earlier one (docs/webhooks.md); `None`: none do.
    /// Stored and shown as written ([`Dedup::as_json`]).
    pub dedup: Option<Dedup>,
    /// How much of a request's body its activity row keeps when the request starts no run
    /// (refused, filtered, duplicate); 0 keeps none.
    pub log_body_bytes: u64,
    /// The signing secret, if any (write-only).
    pub secret: Option<String>,
    /// The signature scheme checked when a secret is set.
    pub scheme: SignatureScheme,
    /// API keys, any of which authenticates a sender: names and digests only (write-only; see
    /// [`api_keys`]).
    pub api_keys: Vec<ApiKey>,
    /// Token-bucket capacity per minute; 0 = unlimited.
    pub rate_limit_per_minute: u32,
    /// Largest accepted body.
    pub max_body_bytes: u64,
    /// Allowed methods, upper-case.
    pub methods: Vec<String>,
    /// How the webhook answers.
    pub response: ResponseMode,
    /// `config.response` as written.
    response_raw: Value,
}

/// A validated cron trigger configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct CronConfig {
    /// The schedule or the one-time instant.
    pub when: When,
    /// The schedule as written (`schedule` or `at`).
    pub when_raw: Value,
    /// The IANA zone the schedule is read in.
    pub timezone: chrono_tz::Tz,
    /// The fixed, validated input of each run.
    pub input: Map<String, Value>,
    /// What to do with slots missed while triggerd was down.
    pub catch_up: CatchUp,
}

impl CronConfig {
    /// The next slot strictly after `after`, or `None` (a one-time trigger that has fired).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.when.next_after(after, self.timezone)
    }

    /// The configuration as stored and shown: `{schedule | at, timezone, input, catch_up}`.
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        match &self.when {
            When::At(_) => map.insert("at".into(), self.when_raw.clone()),
            When::Schedule(_) => map.insert("schedule".into(), self.when_raw.clone()),
        };
        map.insert("timezone".into(), json!(self.timezone.name()));
        map.insert("input".into(), Value::Object(self.input.clone()));
        map.insert("catch_up".into(), json!(self.catch_up));
        Value::Object(map)
    }
}

/// A validated trigger configuration of either type.
#[derive(Debug, Clone, PartialEq)]
pub enum TriggerConfig {
    /// A webhook trigger.
    Webhook(Box<WebhookConfig>),
    /// A cron trigger.
    Cron(Box<CronConfig>),
}

const WEBHOOK_FIELDS: [&str; 11] = [
    "input_mapping",
    "filter",
    "dedup",
    "log_body_bytes",
    "secret",
    "signature",
    "api_keys",
    "rate_limit_per_minute",
    "max_body_bytes",
    "methods",
    "response",
];
const CRON_FIELDS: [&str; 5] = ["schedule", "at", "timezone", "input", "catch_up"];

fn unknown_fields(
    map: &Map<String, Value>,
    known: &[&str],
    what: &str,
    problems: &mut Vec<Problem>,
) {
    for key in map.keys() {
        if !known.contains(&key.as_str()) {
            problems.push(Problem::new(
                format!("config.{key}"),
                format!("unknown field: a {what} config has {}", known.join(", ")),
            ));
        }
    }
}

/// A whole number at `map[key]` (reported as `{at}.{key}`), or `default` when absent.
fn uint(
    map: &Map<String, Value>,
    at: &str,
    key: &str,
    default: u64,
    max: u64,
    problems: &mut Vec<Problem>,
) -> u64 {
    match map.get(key) {
        None | Some(Value::Null) => default,
        Some(v @ Value::Number(_))
            if crate::inputs::whole_number(v).is_some_and(|n| n >= 0 && n as u64 <= max) =>
        {
            crate::inputs::whole_number(v).map_or(default, |n| n as u64)
        }
        Some(other) => {
            problems.push(Problem::new(
                format!("{at}.{key}"),
                format!("must be a whole number from 0 to {max}, got {other}"),
            ));
            default
        }
    }
}

impl TriggerConfig {
    /// Validates `config` for a trigger of `trigger_type` on a workflow declaring `specs`.
    pub fn parse(
        trigger_type: TriggerType,
        config: &Value,
        specs: &InputSpecs,
    ) -> Result<TriggerConfig, Vec<Problem>> {
        Self::parse_with(trigger_type, config, Some(specs))
    }

    /// Reads a configuration that was validated when it was stored (see
    /// [`TriggerConfig::stored_json`]) without checking it against the workflow's inputs again:
    /// a deployment that tracks the latest version keeps working when an input it maps is
    /// removed (the mapped value is then dropped like any undeclared input), and a cron
    /// trigger's fixed input is validated when a run is created.
    pub fn from_stored(
        trigger_type: TriggerType,
        config: &Value,
    ) -> Result<TriggerConfig, Vec<Problem>> {
        Self::parse_with(trigger_type, config, None)
    }

    fn parse_with(
        trigger_type: TriggerType,
        config: &Value,
        specs: Option<&InputSpecs>,
    ) -> Result<TriggerConfig, Vec<Problem>> {
        let empty = Map::new();
        let map = match config {
            Value::Object(map) => map,
            Value::Null => &empty,
            other => {
                return Err(vec![Problem::new(
                    "config",
                    format!("must be an object, got {}", describe(other)),
                )]);
            }
        };
        let mut problems = Vec::new();
        let parsed = match trigger_type {
            TriggerType::Webhook => parse_webhook(map, specs, &mut problems)
                .map(|c| TriggerConfig::Webhook(Box::new(c))),
            TriggerType::Cron => {
                parse_cron(map, specs, &mut problems).map(|c| TriggerConfig::Cron(Box::new(c)))
            }
        };
        match parsed {
            Some(config) if problems.is_empty() => Ok(config),
            _ => Err(problems),
        }
    }

    /// The type of this configuration.
    pub fn trigger_type(&self) -> TriggerType {
        match self {
            TriggerConfig::Webhook(_) => TriggerType::Webhook,
            TriggerConfig::Cron(_) => TriggerType::Cron,
        }
    }

    /// The configuration to persist, secrets included, defaults filled in.
    pub fn stored_json(&self) -> Value {
        match self {
            TriggerConfig::Webhook(w) => {
                let mut value = w.public_json();
                if let Value::Object(map) = &mut value {
                    map.shift_remove("secret_configured");
                    map.shift_remove("api_keys_configured");
                    match &w.secret {
                        Some(secret) => {
                            map.insert("secret".into(), json!(secret));
                        }
                        // A scheme without a secret is refused on input; without a secret the
                        // scheme is only shown, never stored.
                        None => {
                            map.shift_remove("signature");
                        }
                    }
                    map.shift_remove("api_key_names");
                    if !w.api_keys.is_empty() {
                        let keys = w.api_keys.iter().map(ApiKey::to_json).collect();
                        map.insert("api_keys".into(), Value::Array(keys));
                    }
                }
                value
            }
            TriggerConfig::Cron(c) => c.to_json(),
        }
    }

    /// Makes a webhook's API keys storable (see [`api_keys::resolve`]): generates the keys asked
    /// for with `{"generate": true}` and dates new keys with `now` (RFC 3339). `previous` is the
    /// configuration this one replaces, if any; with `reuse_generated` (a declared trigger) a
    /// key generated before under the same name is kept rather than made again. Returns the keys
    /// generated now, to be shown once. Nothing to do for a cron trigger.
    ///
    /// # Errors
    /// [`IdError::RandomnessUnavailable`](crate::ids::IdError) if no key could be generated.
    pub fn resolve_api_keys(
        &mut self,
        previous: Option<&TriggerConfig>,
        reuse_generated: bool,
        now: &str,
    ) -> Result<Vec<GeneratedApiKey>, crate::ids::IdError> {
        let TriggerConfig::Webhook(w) = self else {
            return Ok(Vec::new());
        };
        let previous = match previous {
            Some(TriggerConfig::Webhook(p)) => p.api_keys.as_slice(),
            _ => &[],
        };
        api_keys::resolve(&mut w.api_keys, previous, reuse_generated, now)
    }

    /// The configuration as the API shows it: secrets replaced by `secret_configured`,
    /// `api_keys_configured` (a count) and `api_key_names`.
    pub fn public_json(&self) -> Value {
        match self {
            TriggerConfig::Webhook(w) => w.public_json(),
            TriggerConfig::Cron(c) => c.to_json(),
        }
    }
}

impl WebhookConfig {
    /// The configuration as the API shows it (no secret, no keys).
    pub fn public_json(&self) -> Value {
        let mut value = json!({
            "input_mapping": self.input_mapping_raw,
            "secret_configured": self.secret.is_some(),
            "signature": {"scheme": self.scheme.as_str()},
            "api_keys_configured": self.api_keys.len(),
            "api_key_names": self.api_keys.iter().map(|k| k.name.as_str()).collect::<Vec<_>>(),
            "rate_limit_per_minute": self.rate_limit_per_minute,
            "max_body_bytes": self.max_body_bytes,
            "methods": self.methods,
            "response": self.response_raw,
        });
        // Shown (and so stored) only when set: configurations without one read as before.
        if let Value::Object(map) = &mut value {
            if let Some(filter) = &self.filter {
                map.insert("filter".into(), filter.as_json().clone());
            }
            if let Some(dedup) = &self.dedup {
                map.insert("dedup".into(), dedup.as_json().clone());
            }
            map.insert("log_body_bytes".into(), json!(self.log_body_bytes));
        }
        value
    }

    /// Whether `presented` is one of the trigger's API keys (hashed once, compared with every
    /// stored digest in constant time).
    pub fn accepts_api_key(&self, presented: &str) -> bool {
        api_keys::matches(&self.api_keys, presented)
    }

    /// Whether `method` (upper-case) is allowed.
    pub fn allows(&self, method: &str) -> bool {
        self.methods.iter().any(|m| m == method)
    }

    /// The `Allow` header value for a 405.
    pub fn allow_header(&self) -> String {
        self.methods.join(", ")
    }
}

/// Merges a PATCH of a trigger's config into the stored one (RFC 7386 at the top level): keys in
/// `patch` replace stored ones, `null` removes a key (e.g. `"secret": null` removes the secret).
pub fn merge_config(stored: &Value, patch: &Value) -> Value {
    let mut merged = stored.as_object().cloned().unwrap_or_default();
    if let Some(patch) = patch.as_object() {
        for (k, v) in patch {
            if v.is_null() {
                merged.shift_remove(k);
            } else {
                merged.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(merged)
}

/// Merges a PATCH of a webhook trigger's config like [`merge_config`], and applies its key
/// changes: `api_keys_remove` (names) and `api_keys_add` (entries, as in `api_keys`) change the
/// stored keys without resending the others (see [`api_keys::edit`]), so a key can be rotated
/// without downtime — add a new one, move the senders, remove the old one by name. `api_keys`
/// itself still replaces the whole list; giving it together with either is refused.
pub fn merge_webhook_config(stored: &Value, patch: &Value) -> Result<Value, Vec<Problem>> {
    let mut plain = patch.as_object().cloned().unwrap_or_default();
    let remove = plain
        .shift_remove("api_keys_remove")
        .filter(|v| !v.is_null());
    let add = plain.shift_remove("api_keys_add").filter(|v| !v.is_null());
    let mut merged = merge_config(stored, &Value::Object(plain));
    if remove.is_none() && add.is_none() {
        return Ok(merged);
    }
    if patch.get("api_keys").is_some() {
        return Err(vec![Problem::new(
            "config.api_keys",
            "give either api_keys (the whole new list) or api_keys_add / api_keys_remove (changes to the current keys), not both",
        )]);
    }
    let keys = api_keys::edit(merged.get("api_keys"), remove.as_ref(), add.as_ref())?;
    if let Value::Object(map) = &mut merged {
        if keys.as_array().is_some_and(Vec::is_empty) {
            map.shift_remove("api_keys");
        } else {
            map.insert("api_keys".into(), keys);
        }
    }
    Ok(merged)
}

fn parse_webhook(
    map: &Map<String, Value>,
    specs: Option<&InputSpecs>,
    problems: &mut Vec<Problem>,
) -> Option<WebhookConfig> {
    unknown_fields(map, &WEBHOOK_FIELDS, "webhook", problems);
    let input_mapping_raw = map.get("input_mapping").cloned().unwrap_or(Value::Null);
    let input_mapping = InputMapping::parse(&input_mapping_raw, specs)
        .map_err(|p| problems.extend(p))
        .unwrap_or_default();
    let input_mapping_raw = if input_mapping_raw.is_null() {
        json!({})
    } else {
        input_mapping_raw
    };
    let filter = match map.get("filter") {
        None | Some(Value::Null) => None,
        Some(value) => Filter::parse(value, "config.filter")
            .map_err(|p| problems.extend(p))
            .ok(),
    };

    let secret = match map.get("secret") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(_) => {
            problems.push(Problem::new("config.secret", "must be a non-empty string"));
            None
        }
    };
    let scheme_value = match map.get("signature") {
        None | Some(Value::Null) => None,
        Some(Value::Object(sig)) => match sig.get("scheme") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        },
        Some(v @ Value::String(_)) => Some(v),
        Some(_) => {
            problems.push(Problem::new(
                "config.signature",
                "must be an object such as {\"scheme\": \"hmac-sha256\"}",
            ));
            None
        }
    };
    let scheme = match scheme_value {
        None => SignatureScheme::default(),
        Some(Value::String(s)) => s.parse::<SignatureScheme>().unwrap_or_else(|_| {
            problems.push(Problem::new(
                "config.signature.scheme",
                format!("unknown signature scheme \"{s}\": expected hmac-sha256, github, stripe, slack or standard-webhooks"),
            ));
            SignatureScheme::default()
        }),
        Some(_) => {
            problems.push(Problem::new("config.signature.scheme", "must be a string"));
            SignatureScheme::default()
        }
    };
    if scheme_value.is_some() && secret.is_none() && map.get("secret").is_none_or(Value::is_null) {
        problems.push(Problem::new(
            "config.secret",
            "a signature scheme is set but no secret: add \"secret\" or remove \"signature\"",
        ));
    }
    if let Some(secret) = &secret
        && let Err(e) = scheme.check_secret(secret)
    {
        problems.push(Problem::new("config.secret", e.to_string()));
    }

    let api_keys = api_keys::parse(map.get("api_keys"), "config.api_keys", &[], problems);

    let rate_limit_per_minute = uint(
        map,
        "config",
        "rate_limit_per_minute",
        u64::from(DEFAULT_RATE_LIMIT_PER_MINUTE),
        1_000_000,
        problems,
    ) as u32;
    let max_body_bytes = uint(
        map,
        "config",
        "max_body_bytes",
        DEFAULT_MAX_BODY_BYTES,
        MAX_MAX_BODY_BYTES,
        problems,
    );
    if max_body_bytes == 0 {
        problems.push(Problem::new("config.max_body_bytes", "must be at least 1"));
    }

    let methods = match map.get("methods") {
        None | Some(Value::Null) => vec!["POST".to_owned()],
        Some(Value::Array(items)) if !items.is_empty() => {
            let mut out: Vec<String> = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item.as_str().map(str::to_ascii_uppercase) {
                    Some(m) if WEBHOOK_METHODS.contains(&m.as_str()) => {
                        if !out.contains(&m) {
                            out.push(m);
                        }
                    }
                    _ => problems.push(Problem::new(
                        format!("config.methods[{i}]"),
                        format!("must be one of {}", WEBHOOK_METHODS.join(", ")),
                    )),
                }
            }
            out
        }
        Some(_) => {
            problems.push(Problem::new(
                "config.methods",
                "must be a non-empty array such as [\"POST\"]",
            ));
            Vec::new()
        }
    };

    let dedup = match map.get("dedup") {
        None | Some(Value::Null) => None,
        Some(value) => Dedup::parse(value, scheme, "config.dedup")
            .map_err(|p| problems.extend(p))
            .ok(),
    };
    let log_body_bytes = uint(
        map,
        "config",
        "log_body_bytes",
        DEFAULT_LOG_BODY_BYTES,
        MAX_LOG_BODY_BYTES,
        problems,
    );

    let (response, response_raw) = parse_response(map.get("response"), problems);
    Some(WebhookConfig {
        input_mapping,
        input_mapping_raw,
        filter,
        dedup,
        log_body_bytes,
        secret,
        scheme,
        api_keys,
        rate_limit_per_minute,
        max_body_bytes,
        methods,
        response,
        response_raw,
    })
}

fn parse_response(value: Option<&Value>, problems: &mut Vec<Problem>) -> (ResponseMode, Value) {
    let default = (ResponseMode::Async, json!({"mode": "async"}));
    let map = match value {
        None | Some(Value::Null) => return default,
        Some(Value::Object(map)) => map,
        Some(_) => {
            problems.push(Problem::new(
                "config.response",
                "must be an object such as {\"mode\": \"async\"}",
            ));
            return default;
        }
    };
    match map.get("mode").and_then(Value::as_str).unwrap_or("async") {
        "async" => default,
        "sync" => {
            let timeout = uint(
                map,
                "config.response",
                "timeout_seconds",
                u64::from(DEFAULT_SYNC_TIMEOUT_SECONDS),
                u64::from(MAX_SYNC_TIMEOUT_SECONDS),
                problems,
            ) as u32;
            let timeout = timeout.max(1);
            (
                ResponseMode::Sync {
                    timeout_seconds: timeout,
                },
                json!({"mode": "sync", "timeout_seconds": timeout}),
            )
        }
        "custom" => {
            let status = uint(map, "config.response", "status", 200, 599, problems) as u16;
            // 1xx are interim answers, not a webhook's final response (hyper cannot send one as
            // such); 204 and 304 are sent without a body.
            if status < 200 {
                problems.push(Problem::new(
                    "config.response.status",
                    "must be an HTTP status from 200 to 599 (1xx statuses are interim, not answers; 204 and 304 are sent without a body)",
                ));
            }
            let content_type = match map.get("content_type") {
                None | Some(Value::Null) => "application/json".to_owned(),
                Some(Value::String(s)) if is_media_type(s) => s.clone(),
                Some(_) => {
                    problems.push(Problem::new(
                        "config.response.content_type",
                        "must be a media type such as \"application/json\" or \"text/plain; charset=utf-8\" (printable ASCII, type/subtype)",
                    ));
                    "application/json".to_owned()
                }
            };
            let body_raw = map.get("body").cloned().unwrap_or(Value::Null);
            let body = match Template::compile(&body_raw) {
                Ok(t) => {
                    for path in t.expressions() {
                        if path.root() != Some("trigger") {
                            problems.push(Problem::new(
                                "config.response.body",
                                format!("`{path}`: a custom response can only read `trigger` (the request)"),
                            ));
                        } else if let Some(why) = never_in_a_request(path) {
                            problems.push(Problem::new(
                                "config.response.body",
                                format!("`{path}` can never be read: {why}"),
                            ));
                        }
                    }
                    t
                }
                Err(errors) => {
                    for e in errors {
                        problems.push(Problem::new(
                            format!("config.response.body{}", e.location),
                            e.kind.to_string(),
                        ));
                    }
                    Template::literal(Value::Null)
                }
            };
            (
                ResponseMode::Custom {
                    status,
                    content_type: content_type.clone(),
                    body,
                },
                json!({"mode": "custom", "status": status, "content_type": content_type, "body": body_raw}),
            )
        }
        other => {
            problems.push(Problem::new(
                "config.response.mode",
                format!("unknown response mode \"{other}\": expected async, sync or custom"),
            ));
            default
        }
    }
}

/// Why a `trigger...` path of a custom response could not read anything from any request, or
/// `None` when some request may have it. `trigger` is `{method, path, query, headers, body}`;
/// `method` and `path` are strings, header names are lower-case and header values strings. What
/// only a request can tell (a body field, a query parameter) is found out when rendering.
fn never_in_a_request(path: &Path) -> Option<&'static str> {
    use crate::path::Segment;
    let rest = path.segments().get(1..).unwrap_or_default();
    match rest {
        [] => None,
        [Segment::Key(k), more @ ..] => match k.as_str() {
            "method" | "path" if !more.is_empty() => {
                Some("`trigger.method` and `trigger.path` are strings, with nothing inside")
            }
            "headers" | "query" if matches!(more.first(), Some(Segment::Index(_))) => {
                Some("`trigger.headers` and `trigger.query` are objects, read by name")
            }
            "headers" => match more {
                [Segment::Key(name), ..] if name.bytes().any(|b| b.is_ascii_uppercase()) => Some(
                    "header names are lower-case in `trigger.headers` (write `trigger.headers.x-name`)",
                ),
                [_, _, ..] => Some("a header's value is a string, with nothing inside"),
                _ => None,
            },
            "method" | "path" | "query" | "body" => None,
            _ => Some("a request is `trigger.method`, `.path`, `.query`, `.headers` and `.body`"),
        },
        [Segment::Index(_), ..] => {
            Some("a request is `trigger.method`, `.path`, `.query`, `.headers` and `.body`")
        }
    }
}

/// Whether `s` can be sent as a `Content-Type`: `type/subtype` with optional parameters, in
/// printable ASCII.
fn is_media_type(s: &str) -> bool {
    let essence = s.split(';').next().unwrap_or("").trim();
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    s.len() <= 256
        && s.bytes().all(|b| (0x20..0x7f).contains(&b))
        && essence
            .split_once('/')
            .is_some_and(|(t, sub)| token(t) && token(sub))
}

fn parse_cron(
    map: &Map<String, Value>,
    specs: Option<&InputSpecs>,
    problems: &mut Vec<Problem>,
) -> Option<CronConfig> {
    unknown_fields(map, &CRON_FIELDS, "cron", problems);
    let schedule = map.get("schedule").filter(|v| !v.is_null());
    let at = map.get("at").filter(|v| !v.is_null());
    let when = match (schedule, at) {
        (Some(_), Some(_)) => {
            problems.push(Problem::new(
                "config",
                "give either \"schedule\" or \"at\", not both",
            ));
            None
        }
        (None, None) => {
            problems.push(Problem::new(
                "config.schedule",
                "is required: a five-field cron pattern such as \"0 9 * * 1\" (or \"at\" for a one-time trigger)",
            ));
            None
        }
        (Some(Value::String(s)), None) => match Schedule::parse(s) {
            Ok(schedule) if schedule.never_fires() => {
                problems.push(Problem::new(
                    "config.schedule",
                    format!("{s:?} never fires: no date matches it (such as February 30th)"),
                ));
                None
            }
            Ok(schedule) => Some((When::Schedule(schedule), json!(s))),
            Err(e) => {
                problems.push(Problem::new("config.schedule", e.to_string()));
                None
            }
        },
        (None, Some(Value::String(s))) => match DateTime::parse_from_rfc3339(s) {
            Ok(t) => Some((When::At(t.with_timezone(&Utc)), json!(s))),
            Err(e) => {
                problems.push(Problem::new(
                    "config.at",
                    format!("must be an RFC 3339 instant such as \"2026-12-01T09:00:00Z\": {e}"),
                ));
                None
            }
        },
        (Some(_), None) => {
            problems.push(Problem::new("config.schedule", "must be a string"));
            None
        }
        (None, Some(_)) => {
            problems.push(Problem::new("config.at", "must be a string"));
            None
        }
    };
    let timezone = match map.get("timezone") {
        None | Some(Value::Null) => Some(chrono_tz::UTC),
        Some(Value::String(s)) => parse_timezone(s)
            .map_err(|e| problems.push(Problem::new("config.timezone", e.to_string())))
            .ok(),
        Some(_) => {
            problems.push(Problem::new(
                "config.timezone",
                "must be an IANA zone name such as \"Europe/London\"",
            ));
            None
        }
    };
    let input = match map.get("input") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(other) => {
            problems.push(Problem::new(
                "config.input",
                format!("must be an object, got {}", describe(other)),
            ));
            Map::new()
        }
    };
    let input = match specs.map(|specs| specs.validate(input.clone())) {
        None => input,
        Some(Ok(input)) => input,
        Some(Err(input_problems)) => {
            for p in input_problems {
                problems.push(Problem::new(format!("config.input.{}", p.input), p.message));
            }
            Map::new()
        }
    };
    let catch_up = match map.get("catch_up") {
        None | Some(Value::Null) => CatchUp::default(),
        Some(v) => serde_json::from_value::<CatchUp>(v.clone()).unwrap_or_else(|_| {
            problems.push(Problem::new(
                "config.catch_up",
                "must be \"none\", \"latest\" or \"all\"",
            ));
            CatchUp::default()
        }),
    };
    let (when, when_raw) = when?;
    Some(CronConfig {
        when,
        when_raw,
        timezone: timezone?,
        input,
        catch_up,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn specs() -> InputSpecs {
        InputSpecs::parse(&json!({
            "email": {"type": "string", "required": true},
            "week": {"type": "string", "default": "current", "enum": ["current", "previous"]}
        }))
        .unwrap()
    }

    fn webhook(config: Value) -> Result<WebhookConfig, Vec<Problem>> {
        TriggerConfig::parse(TriggerType::Webhook, &config, &specs()).map(|c| match c {
            TriggerConfig::Webhook(w) => *w,
            TriggerConfig::Cron(_) => unreachable!(),
        })
    }

    fn cron(config: Value) -> Result<CronConfig, Vec<Problem>> {
        TriggerConfig::parse(TriggerType::Cron, &config, &specs()).map(|c| match c {
            TriggerConfig::Cron(c) => *c,
            TriggerConfig::Webhook(_) => unreachable!(),
        })
    }

    fn paths(problems: Vec<Problem>) -> Vec<String> {
        problems.into_iter().map(|p| p.path).collect()
    }

    #[test]
    fn whole_number_floats_count_as_whole_numbers_and_fractions_do_not() {
        let w = webhook(json!({"rate_limit_per_minute": 60.0, "max_body_bytes": 1024.0})).unwrap();
        assert_eq!((w.rate_limit_per_minute, w.max_body_bytes), (60, 1024));
        for bad in [json!(60.5), json!(-1), json!("60")] {
            let problems = webhook(json!({"rate_limit_per_minute": bad})).unwrap_err();
            assert_eq!(paths(problems), ["config.rate_limit_per_minute"]);
        }
        let never = cron(json!({"schedule": "0 0 30 2 *", "input": {"email": "a@b"}})).unwrap_err();
        assert_eq!(paths(never), ["config.schedule"]);
    }

    #[test]
    fn webhook_defaults_match_the_spec() {
        let w = webhook(Value::Null).unwrap();
        assert_eq!(
            w.public_json(),
            json!({"input_mapping": {}, "secret_configured": false, "signature": {"scheme": "hmac-sha256"},
                   "api_keys_configured": 0, "api_key_names": [], "rate_limit_per_minute": 60, "max_body_bytes": 262144,
                   "methods": ["POST"], "response": {"mode": "async"}, "log_body_bytes": 65536})
        );
        assert!(w.allows("POST") && !w.allows("GET"));
        assert_eq!(w.allow_header(), "POST");
    }

    #[test]
    fn secrets_are_write_only_but_stored() {
        let config = TriggerConfig::parse(
            TriggerType::Webhook,
            &json!({"secret": "s3cret", "api_keys": ["0123456789abcdef0123"], "signature": {"scheme": "github"}}),
            &specs(),
        )
        .unwrap();
        let public = config.public_json();
        assert_eq!(public["secret_configured"], json!(true));
        assert_eq!(public["api_keys_configured"], json!(1));
        assert_eq!(public["api_key_names"], json!(["key-1"]));
        assert!(public.get("secret").is_none() && public.get("api_keys").is_none());
        let stored = config.stored_json();
        assert_eq!(stored["secret"], json!("s3cret"));
        // The key is stored hashed: its name and SHA-256, never the key.
        assert_eq!(
            stored["api_keys"],
            json!([{"name": "key-1", "sha256": crate::ids::hash_token("0123456789abcdef0123")}])
        );
        assert!(!stored.to_string().contains("0123456789abcdef0123"));
        assert!(stored.get("api_key_names").is_none());
        // The stored form parses back to the same configuration.
        assert_eq!(
            TriggerConfig::parse(TriggerType::Webhook, &stored, &specs()).unwrap(),
            config
        );
    }

    #[test]
    fn a_filter_is_checked_stored_and_shown_as_written() {
        let filter = json!({"all": [{"path": "$headers.X-GitHub-Event", "equals": "push"},
                                    {"path": "ref", "equals": "refs/heads/main"}]});
        let config = TriggerConfig::parse(
            TriggerType::Webhook,
            &json!({"filter": filter, "secret": "s3cret"}),
            &specs(),
        )
        .unwrap();
        assert_eq!(config.public_json()["filter"], filter);
        let stored = config.stored_json();
        assert_eq!(stored["filter"], filter);
        assert_eq!(
            TriggerConfig::from_stored(TriggerType::Webhook, &stored).unwrap(),
            config
        );
        let TriggerConfig::Webhook(w) = &config else {
            unreachable!()
        };
        assert!(w.filter.is_some());
        // No filter: nothing shown, nothing stored.
        let plain = webhook(json!({"filter": null})).unwrap();
        assert!(plain.filter.is_none() && plain.public_json().get("filter").is_none());
        let problems = webhook(
            json!({"filter": {"any": [{"path": "ref", "matches": "[a-"}]},
                                      "methods": ["TRACE"]}),
        )
        .unwrap_err();
        assert_eq!(
            paths(problems),
            ["config.filter.any[0].matches", "config.methods[0]"]
        );
    }

    #[test]
    fn every_webhook_problem_is_reported() {
        let problems = webhook(json!({
            "input_mapping": {"nope": "a"},
            "signature": {"scheme": "md5"},
            "api_keys": ["short"],
            "rate_limit_per_minute": -1,
            "max_body_bytes": 999_999_999,
            "methods": ["POST", "TRACE"],
            "response": {"mode": "later"},
            "colour": "red"
        }))
        .unwrap_err();
        assert_eq!(
            paths(problems),
            vec![
                "config.colour",
                "config.input_mapping.nope",
                "config.signature.scheme",
                "config.secret",
                "config.api_keys[0]",
                "config.rate_limit_per_minute",
                "config.max_body_bytes",
                "config.methods[1]",
                "config.response.mode",
            ]
        );
    }

    #[test]
    fn standard_webhooks_secret_must_be_base64() {
        let problems =
            webhook(json!({"secret": "whsec_!!!", "signature": {"scheme": "standard-webhooks"}}))
                .unwrap_err();
        assert_eq!(paths(problems), vec!["config.secret"]);
        assert!(webhook(json!({"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "signature": "standard-webhooks"})).is_ok());
    }

    #[test]
    fn response_modes_parse() {
        let w = webhook(json!({"response": {"mode": "sync"}})).unwrap();
        assert_eq!(
            w.response,
            ResponseMode::Sync {
                timeout_seconds: 30
            }
        );
        let w = webhook(
            json!({"response": {"mode": "custom", "status": 200, "content_type": "text/plain",
                                           "body": "{{ trigger.query.challenge }}"}}),
        )
        .unwrap();
        assert!(matches!(
            w.response,
            ResponseMode::Custom { status: 200, .. }
        ));
        let problems =
            webhook(json!({"response": {"mode": "custom", "body": "{{ input.email }}"}}))
                .unwrap_err();
        assert_eq!(paths(problems), vec!["config.response.body"]);
        let problems =
            webhook(json!({"response": {"mode": "sync", "timeout_seconds": 301}})).unwrap_err();
        assert_eq!(paths(problems), vec!["config.response.timeout_seconds"]);
    }

    #[test]
    fn cron_config_validates_schedule_zone_input_and_catch_up() {
        let c = cron(json!({"schedule": "0 9 * * 1", "timezone": "Europe/London", "input": {"email": "a@b"}})).unwrap();
        assert_eq!(
            c.to_json(),
            json!({"schedule": "0 9 * * 1", "timezone": "Europe/London",
                   "input": {"email": "a@b", "week": "current"}, "catch_up": "latest"})
        );
        // Monday 2026-11-23 09:00 London = 09:00Z (GMT).
        let after = Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).unwrap();
        assert_eq!(
            c.next_after(after),
            Some(Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap())
        );

        let problems = cron(json!({"schedule": "0 0 9 * * 1", "timezone": "Mars/Base", "input": {"week": "x"}, "catch_up": "some"}))
            .unwrap_err();
        assert_eq!(
            paths(problems),
            vec![
                "config.schedule",
                "config.timezone",
                "config.input.email",
                "config.input.week",
                "config.catch_up"
            ]
        );
        assert_eq!(
            paths(cron(json!({"input": {"email": "x"}})).unwrap_err()),
            vec!["config.schedule"]
        );
        assert_eq!(
            paths(cron(json!({"schedule": "@daily", "at": "2026-01-01T00:00:00Z", "input": {"email": "x"}})).unwrap_err()),
            vec!["config"]
        );
    }

    #[test]
    fn one_time_trigger_fires_once() {
        let c = cron(json!({"at": "2026-12-01T09:00:00+01:00", "input": {"email": "x"}})).unwrap();
        let at = Utc.with_ymd_and_hms(2026, 12, 1, 8, 0, 0).unwrap();
        assert_eq!(c.next_after(at - chrono::Duration::seconds(1)), Some(at));
        assert_eq!(c.next_after(at), None);
        assert_eq!(c.to_json()["at"], json!("2026-12-01T09:00:00+01:00"));
        assert_eq!(
            paths(cron(json!({"at": "tomorrow", "input": {"email": "x"}})).unwrap_err()),
            vec!["config.at"]
        );
    }

    #[test]
    fn patch_merges_top_level_keys() {
        let stored = json!({"secret": "s", "rate_limit_per_minute": 60, "methods": ["POST"]});
        let merged = merge_config(
            &stored,
            &json!({"rate_limit_per_minute": 5, "secret": null}),
        );
        assert_eq!(
            merged,
            json!({"rate_limit_per_minute": 5, "methods": ["POST"]})
        );
    }

    #[test]
    fn api_keys_are_checked_by_digest_and_old_plain_keys_still_work() {
        // A configuration stored before keys were hashed holds them as plain strings: it is
        // read (and hashed) as it is, no migration needed.
        let old = TriggerConfig::from_stored(
            TriggerType::Webhook,
            &json!({"api_keys": ["legacy-key-0123456789", "other-key-0123456789"]}),
        )
        .unwrap();
        let TriggerConfig::Webhook(w) = &old else {
            unreachable!()
        };
        assert!(w.accepts_api_key("legacy-key-0123456789"));
        assert!(w.accepts_api_key("other-key-0123456789"));
        assert!(!w.accepts_api_key("legacy-key-012345678"));
        assert_eq!(w.public_json()["api_key_names"], json!(["key-1", "key-2"]));
        assert!(!old.stored_json().to_string().contains("legacy-key"));

        let mut config = TriggerConfig::parse(
            TriggerType::Webhook,
            &json!({"api_keys": [{"name": "ci", "generate": true}]}),
            &specs(),
        )
        .unwrap();
        let generated = config
            .resolve_api_keys(None, false, "2026-12-03T09:00:00Z")
            .unwrap();
        let TriggerConfig::Webhook(w) = &config else {
            unreachable!()
        };
        assert!(w.accepts_api_key(&generated[0].key));
        let stored = config.stored_json();
        assert!(!stored.to_string().contains(&generated[0].key));
        assert_eq!(
            stored["api_keys"][0]["created_at"],
            json!("2026-12-03T09:00:00Z")
        );
        assert_eq!(stored["api_keys"][0]["generated"], json!(true));
        assert_eq!(
            TriggerConfig::from_stored(TriggerType::Webhook, &stored).unwrap(),
            config
        );
    }

    #[test]
    fn patch_adds_and_removes_keys_by_name() {
        let stored =
            json!({"methods": ["POST"], "api_keys": [{"name": "old", "sha256": "00".repeat(32)}]});
        let merged = merge_webhook_config(
            &stored,
            &json!({"api_keys_add": [{"name": "new", "generate": true}], "methods": ["PUT"]}),
        )
        .unwrap();
        assert_eq!(
            merged,
            json!({"methods": ["PUT"], "api_keys": [{"name": "old", "sha256": "00".repeat(32)},
                                                    {"name": "new", "generate": true}]})
        );
        let merged = merge_webhook_config(&stored, &json!({"api_keys_remove": ["old"]})).unwrap();
        assert_eq!(merged, json!({"methods": ["POST"]}));
        let problems =
            merge_webhook_config(&stored, &json!({"api_keys_remove": ["gone"]})).unwrap_err();
        assert_eq!(paths(problems), ["config.api_keys_remove[0]"]);
        let problems = merge_webhook_config(
            &stored,
            &json!({"api_keys": [], "api_keys_add": ["0123456789abcdef0123"]}),
        )
        .unwrap_err();
        assert_eq!(paths(problems), ["config.api_keys"]);
        // Without key changes it is the plain merge.
        assert_eq!(
            merge_webhook_config(&stored, &json!({"api_keys": null})).unwrap(),
            json!({"methods": ["POST"]})
        );
    }

    #[test]
    fn custom_response_paths_that_no_request_has_are_refused() {
        let parse = |body: &str| {
            webhook(json!({"response": {"mode": "custom", "body": {"x": body}}})).map(|_| ())
        };
        for ok in [
            "{{ trigger }}",
            "{{ trigger.body.challenge }}",
            "{{ trigger.query.challenge }}",
            "{{ trigger.headers.x-challenge }}",
            "{{ trigger.method }} {{ trigger.path }}",
            "{{ trigger.query.a[0] }}",
        ] {
            assert_eq!(parse(ok), Ok(()), "{ok}");
        }
        for bad in [
            "{{ trigger.bodyy.challenge }}",
            "{{ trigger[0] }}",
            "{{ trigger.method.name }}",
            "{{ trigger.headers.X-Challenge }}",
            "{{ trigger.headers.x-challenge.value }}",
            "{{ trigger.query[0] }}",
            "{{ input.email }}",
        ] {
            assert_eq!(
                paths(parse(bad).unwrap_err()),
                ["config.response.body"],
                "{bad}"
            );
        }
        // Syntax errors name the place inside the body.
        assert_eq!(
            paths(parse("{{ trigger.body.a").unwrap_err()),
            ["config.response.body.x"]
        );
    }

    #[test]
    fn trigger_type_parses() {
        assert_eq!("cron".parse::<TriggerType>().unwrap(), TriggerType::Cron);
        assert!("email".parse::<TriggerType>().is_err());
    }

    #[test]
    fn custom_responses_refuse_interim_statuses_and_bad_content_types() {
        let specs = InputSpecs::default();
        let parse = |response: Value| {
            TriggerConfig::parse(TriggerType::Webhook, &json!({"response": response}), &specs)
        };
        for status in [100, 101, 199] {
            let problems = parse(json!({"mode": "custom", "status": status})).unwrap_err();
            assert_eq!(problems[0].path, "config.response.status", "{status}");
        }
        for ct in ["text", "text/plain\r\nX-Evil: 1", "", "a b/c"] {
            let problems = parse(json!({"mode": "custom", "content_type": ct})).unwrap_err();
            assert_eq!(problems[0].path, "config.response.content_type", "{ct:?}");
        }
        for (status, ct) in [
            (200, "text/plain; charset=utf-8"),
            (204, "application/json"),
            (599, "application/vnd.api+json"),
        ] {
            assert!(
                parse(json!({"mode": "custom", "status": status, "content_type": ct})).is_ok(),
                "{status} {ct}"
            );
        }
    }
}
