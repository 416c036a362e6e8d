//! # triggerd-domain
//!
//! The pure logic of [triggerd](https://example.invalid/triggerd): everything that decides what a
//! workflow definition means and what an inbound request becomes, with no I/O — no network, no
//! database, no async runtime. Integrators embed it to validate definitions, map webhook requests
//! into typed inputs, render templates and verify webhook signatures in their own services; the
//! triggerd server is built on the same functions.
//!
//! | module | owns |
//! |---|---|
//! | [`definition`] | the workflow definition (docs/workflows.md): parsing from JSON/TOML, validation with every problem at once |
//! | [`inputs`] | declared inputs and validation of received values |
//! | [`path`], [`template`] | paths into JSON values and `{{ path }}` templates |
//! | [`mapping`] | request → `trigger_input` → run input (docs/webhooks.md) |
//! | [`filter`] | webhook filters: which requests start a run (docs/webhooks.md) |
//! | [`trigger`] | webhook and cron trigger configuration |
//! | [`api_keys`] | webhook API keys: named, generated or given, stored as SHA-256 digests |
//! | [`signature`] | webhook signature schemes (`hmac-sha256`, `github`, `stripe`, `slack`, `standard-webhooks`) |
//! | [`cron`] | five-field cron schedules in IANA time zones |
//! | [`run`] | run statuses, the legal transitions, event types |
//! | [`ids`] | prefixed time-sortable ids and random tokens |
//! | [`memory`] | what a JSON document costs in memory once parsed, estimated before parsing |
//! | [`activity`] | the outcomes of inbound webhook requests (the activity log) |
//!
//! ```
//! use serde_json::json;
//! use triggerd_domain::definition::Definition;
//!
//! let def = Definition::from_json_str(r#"{
//!     "name": "order-created",
//!     "inputs": {"email": {"type": "string", "required": true}},
//!     "output": {"greeting": "hello {{ input.email }}"}
//! }"#).unwrap();
//! let input = def.inputs.validate(json!({"email": "a@example.com"}).as_object().unwrap().clone()).unwrap();
//! let output = def.render_output(&json!({"input": input})).unwrap();
//! assert_eq!(output, json!({"greeting": "hello a@example.com"}));
//! ```
//!
//! This crate must never do I/O beyond reading the clock and the system's random source (for ids
//! and tokens); callers pass in everything else.

pub mod activity;
pub mod api_keys;
pub mod cron;
pub mod dedup;
pub mod definition;
pub mod filter;
pub mod ids;
pub mod inputs;
pub mod mapping;
pub mod memory;
pub mod path;
pub mod run;
pub mod signature;
pub mod template;
pub mod trigger;

use serde::{Deserialize, Serialize};

/// One problem in a definition or configuration: serialized as `{"path", "message"}` in a 422's
/// `details`. `path` points at the offending value, e.g. `steps[1].request.url`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// Where the problem is, as a path into the submitted document.
    pub path: String,
    /// What is wrong and, where possible, what was expected.
    pub message: String,
}

impl Problem {
    /// Builds a problem.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}
